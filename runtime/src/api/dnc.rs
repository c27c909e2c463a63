//! The do-not-call list: numbers outbound calls never dial (changes audited).

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::Caller;
use super::{ApiError, Fail, bad};
use crate::state::AppState;
use crate::store::outbound::DncEntry;

/// Numbers one request may add.
const MAX_NUMBERS: usize = 10_000;

pub fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(list_dnc))
        .routes(routes!(add_dnc))
        .routes(routes!(remove_dnc))
}

#[utoipa::path(get, path = "/api/v1/dnc",
    description = "The do-not-call list. Roles: admin, ai_ops.",
    responses((status = 200, body = Vec<DncEntry>), (status = 401, body = ApiError), (status = 403, body = ApiError)),
    security(("bearer" = ["admin", "ai_ops"])))]
async fn list_dnc(
    State(app): State<Arc<AppState>>,
    _caller: Caller,
) -> Result<Json<Vec<DncEntry>>, Fail> {
    Ok(Json(app.store.dnc_list(&app.pii).await?))
}

/// Where numbers came from: one by one, or a file (`hark dnc import`).
#[derive(Debug, Clone, Copy, Default, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DncSource {
    #[default]
    Api,
    Import,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewDnc {
    /// E.164, or national numbers read in `outbound.default_region`.
    #[schema(min_items = 1, max_items = 10000)]
    numbers: Vec<String>,
    #[schema(min_length = 1, max_length = 500, pattern = "\\S")]
    reason: String,
    #[serde(default)]
    source: DncSource,
}

/// A number that could not be read.
#[derive(Debug, Serialize, ToSchema)]
pub struct RowError {
    /// Its place in `numbers`, from 1 (a file's line).
    row: usize,
    number: String,
    reason: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DncAdded {
    /// Numbers on the list now (each once, in E.164).
    added: usize,
    errors: Vec<RowError>,
}

#[utoipa::path(post, path = "/api/v1/dnc", request_body = NewDnc,
    description = "Adds numbers to the do-not-call list (one or a whole import). Numbers that cannot be read are reported by row; the rest are added (201; 200 when none could be read). Audited. Roles: admin, ai_ops.",
    responses((status = 201, body = DncAdded), (status = 400, body = ApiError), (status = 401, body = ApiError), (status = 403, body = ApiError), (status = 200, body = DncAdded), (status = 415, body = ApiError), (status = 422, body = ApiError)),
    security(("bearer" = ["admin", "ai_ops"])))]
async fn add_dnc(
    State(app): State<Arc<AppState>>,
    caller: Caller,
    body: Result<Json<NewDnc>, JsonRejection>,
) -> Result<(StatusCode, Json<DncAdded>), Fail> {
    let Json(body) =
        body.map_err(|e| Fail(e.status(), format!("bad JSON body: {}", e.body_text())))?;
    let reason = body.reason.trim();
    if reason.is_empty() || body.reason.chars().count() > 500 {
        return Err(bad("reason: 1 to 500 characters, not all blank"));
    }
    if body.numbers.is_empty() || body.numbers.len() > MAX_NUMBERS {
        return Err(bad(format!("numbers: 1 to {MAX_NUMBERS}")));
    }
    let source = match body.source {
        DncSource::Api => "api",
        DncSource::Import => "import",
    };
    let mut numbers = Vec::with_capacity(body.numbers.len());
    let mut errors = Vec::new();
    for (i, raw) in body.numbers.iter().enumerate() {
        match app.dialer.normalise(raw) {
            Ok(n) if !numbers.contains(&n) => numbers.push(n),
            Ok(_) => {}
            Err(e) => errors.push(RowError {
                row: i + 1,
                number: raw.chars().take(40).collect(),
                reason: e.to_string(),
            }),
        }
    }
    if numbers.is_empty() {
        return Ok((StatusCode::OK, Json(DncAdded { added: 0, errors })));
    }
    app.store
        .dnc_add(&numbers, reason, source, &caller.name, &app.pii)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(DncAdded {
            added: numbers.len(),
            errors,
        }),
    ))
}

#[utoipa::path(delete, path = "/api/v1/dnc/{number}", params(("number" = String, Path, description = "E.164 number", pattern = "^\\+[1-9][0-9]{6,14}$")),
    description = "Takes a number off the do-not-call list. Audited. Roles: admin.",
    responses((status = 204), (status = 400, body = ApiError), (status = 401, body = ApiError), (status = 403, body = ApiError), (status = 404, body = ApiError)),
    security(("bearer" = ["admin"])))]
async fn remove_dnc(
    State(app): State<Arc<AppState>>,
    caller: Caller,
    Path(number): Path<String>,
) -> Result<StatusCode, Fail> {
    // As it was listed; a number libphonenumber would not list is not on it.
    let number = match app.dialer.normalise(&number) {
        Ok(n) => n,
        Err(_) => super::blocklist::check_number(&number)?,
    };
    if !app
        .store
        .dnc_remove(&number, &caller.name, &app.pii)
        .await?
    {
        return Err(Fail(
            StatusCode::NOT_FOUND,
            "that number is not on the do-not-call list".into(),
        ));
    }
    Ok(StatusCode::NO_CONTENT)
}
