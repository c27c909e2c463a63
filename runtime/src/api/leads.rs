//! Lead lists: import (CSV or JSON, bad rows reported by row and field,
//! the rest kept and merged by number), read a list or a lead, and an
//! agent's queue (the leads its name or skills own).

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::Caller;
use super::{ApiError, Fail, bad, query_error};
use crate::campaigns::import::{self, Format, RowError};
use crate::campaigns::spec::check_name;
use crate::state::AppState;
use crate::store::leads::Lead;

pub fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(import_leads, list_leads))
        .routes(routes!(get_lead))
        .routes(routes!(agent_queue))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ImportQuery {
    /// Where numbers without `+` are read (ISO 3166); remembered as the
    /// list's region. Default: the list's region, else
    /// `outbound.default_region`.
    #[param(pattern = "^[A-Z]{2}$")]
    region: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ImportReport {
    /// New leads on the list.
    created: usize,
    /// Rows merged into a lead already on the list (same number).
    merged: usize,
    /// Rows merged into an earlier row of the same file.
    duplicates: usize,
    /// Rows not imported: row (CSV line, header = 1; JSON item from 1),
    /// field, reason.
    errors: Vec<RowError>,
    /// Imported rows whose time zone is unknown (no explicit `time_zone`,
    /// and none from the number): never dialed until one is given.
    unknown_time_zone: Vec<usize>,
    /// Where numbers without `+` were read.
    #[schema(pattern = "^[A-Z]{2}$")]
    region: String,
}

fn list_name(list: &str) -> Result<(), Fail> {
    check_name("list", list).map_err(bad)
}

#[utoipa::path(post, path = "/api/v1/lists/{list}/leads",
    params(("list" = String, Path, description = "The list's name", pattern = "^[A-Za-z0-9_-]{1,64}$"), ImportQuery),
    request_body(description = "CSV: a header row (a `phone`, `number` or `phone_number` column; optional `time_zone`, `priority`, `consent`, `owner`; any other column is a custom field), then one lead per row. JSON: an array of objects with the same keys (an item that is not an object is reported as a bad row).", content(
        (String = "text/csv"),
        (Vec<serde_json::Value> = "application/json")
    )),
    description = "Imports leads into a list (created on first use). Numbers into E.164 (those without + in `region`, else the list's region: the last one an import named, else the node's `outbound.default_region`), a lead per number (rows with a number already on the list merge into it, later values winning). Bad rows are reported by row, field and reason; the rest are imported (201; 200 when none could be). A file that cannot be read as a whole (no phone column, not a JSON array) is 400 and imports nothing. Roles: admin, ai_ops.",
    responses((status = 201, body = ImportReport), (status = 200, body = ImportReport), (status = 400, body = ApiError), (status = 401, body = ApiError), (status = 403, body = ApiError), (status = 413, body = ApiError), (status = 415, body = ApiError)),
    security(("bearer" = ["admin", "ai_ops"])))]
async fn import_leads(
    State(app): State<Arc<AppState>>,
    caller: Caller,
    Path(list): Path<String>,
    query: Result<Query<ImportQuery>, QueryRejection>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<ImportReport>), Fail> {
    list_name(&list)?;
    let Query(q) = query.map_err(query_error)?;
    // A region libphonenumber does not know: rows with a + still import,
    // the others are reported (each saying why).
    let named = q.region.is_some();
    let region = match q.region {
        Some(region) => region,
        None => match app.store.list_region(&list).await? {
            Some(region) => region,
            None => app.config.outbound.default_region.clone(),
        },
    };
    if region.len() != 2 || !region.chars().all(|c| c.is_ascii_uppercase()) {
        return Err(bad(format!(
            "region: {region:?} is not two capital letters (ISO 3166, e.g. US, IN)"
        )));
    }
    let kind = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let format = if kind.starts_with("text/csv") {
        Format::Csv
    } else if kind.starts_with("application/json") {
        Format::Json
    } else {
        return Err(Fail(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content-Type: text/csv or application/json".into(),
        ));
    };
    let text =
        std::str::from_utf8(&body).map_err(|e| bad(format!("the body is not UTF-8: {e}")))?;
    // Parsing 10,000 rows takes a while: off the runtime's threads.
    let parsed = tokio::task::spawn_blocking({
        let text = text.to_owned();
        let region = region.clone();
        move || import::parse(&text, format, &region)
    })
    .await
    .map_err(|_| Fail(StatusCode::INTERNAL_SERVER_ERROR, "internal error".into()))?;
    if let Some(why) = parsed.unreadable {
        return Err(bad(why));
    }
    let unknown_time_zone = parsed
        .leads
        .iter()
        .filter(|l| l.time_zone.is_empty())
        .map(|l| l.row)
        .collect();
    let done = app
        .store
        .leads_import(&list, &parsed.leads, "ai", &app.pii)
        .await?;
    // Only a region libphonenumber knows becomes the list's.
    if named && region.parse::<phonenumber::country::Id>().is_ok() {
        let now = hark_actors::records::now_ms();
        app.store.set_list_region(&list, &region, now).await?;
    }
    app.store
        .audit(
            &caller.name,
            "leads_import",
            &list,
            &format!("{} created, {} merged", done.created, done.merged),
        )
        .await?;
    let status = if parsed.leads.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((
        status,
        Json(ImportReport {
            created: done.created,
            merged: done.merged,
            duplicates: parsed.merged,
            errors: parsed.errors,
            unknown_time_zone,
            region,
        }),
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct Limit {
    /// Default 100.
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
}

impl Limit {
    fn get(&self) -> Result<i64, Fail> {
        let n = self.limit.unwrap_or(100);
        if (1..=1000).contains(&n) {
            Ok(n)
        } else {
            Err(bad(format!("limit: {n} is outside 1..=1000")))
        }
    }
}

#[utoipa::path(get, path = "/api/v1/lists/{list}/leads",
    params(("list" = String, Path, description = "The list's name", pattern = "^[A-Za-z0-9_-]{1,64}$"), Limit),
    description = "A list's leads in import order, numbers and fields decrypted. Roles: admin, ai_ops.",
    responses((status = 200, body = Vec<Lead>), (status = 400, body = ApiError), (status = 401, body = ApiError), (status = 403, body = ApiError)),
    security(("bearer" = ["admin", "ai_ops"])))]
async fn list_leads(
    State(app): State<Arc<AppState>>,
    _caller: Caller,
    Path(list): Path<String>,
    query: Result<Query<Limit>, QueryRejection>,
) -> Result<Json<Vec<Lead>>, Fail> {
    list_name(&list)?;
    let Query(q) = query.map_err(query_error)?;
    Ok(Json(
        app.store.leads_of_list(&list, q.get()?, &app.pii).await?,
    ))
}

#[utoipa::path(get, path = "/api/v1/leads/{id}",
    params(("id" = String, Path, description = "The lead's id (`LD…`)")),
    description = "One lead. Roles: admin, ai_ops.",
    responses((status = 200, body = Lead), (status = 401, body = ApiError), (status = 403, body = ApiError), (status = 404, body = ApiError)),
    security(("bearer" = ["admin", "ai_ops"])))]
async fn get_lead(
    State(app): State<Arc<AppState>>,
    _caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Lead>, Fail> {
    match app.store.lead(&id, &app.pii).await? {
        Some(lead) => Ok(Json(lead)),
        None => Err(Fail(StatusCode::NOT_FOUND, "no such lead".into())),
    }
}

#[utoipa::path(get, path = "/api/v1/agents/{name}/queue",
    params(("name" = String, Path, description = "The agent's name"), Limit),
    description = "The leads in an agent's pool: owned by `agent:NAME` or by `skill:S` for one of its skills (campaigns hand leads over by status, e.g. qualified leads to `skill:sales`). Highest priority first. Roles: admin, agent.",
    responses((status = 200, body = Vec<Lead>), (status = 400, body = ApiError), (status = 401, body = ApiError), (status = 403, body = ApiError), (status = 404, body = ApiError)),
    security(("bearer" = ["admin", "agent"])))]
async fn agent_queue(
    State(app): State<Arc<AppState>>,
    _caller: Caller,
    Path(name): Path<String>,
    query: Result<Query<Limit>, QueryRejection>,
) -> Result<Json<Vec<Lead>>, Fail> {
    let Query(q) = query.map_err(query_error)?;
    let limit = q.get()?;
    let Some(agent) = app
        .store
        .agents()
        .await?
        .into_iter()
        .find(|a| a.name == name)
    else {
        return Err(Fail(
            StatusCode::NOT_FOUND,
            format!("no agent named {name:?}"),
        ));
    };
    let mut owners = vec![format!("agent:{}", agent.name)];
    owners.extend(agent.skills.iter().map(|s| format!("skill:{s}")));
    Ok(Json(app.store.agent_queue(&owners, limit, &app.pii).await?))
}
