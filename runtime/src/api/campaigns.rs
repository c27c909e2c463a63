//! Campaigns: define one (a draft), start, pause, resume or complete it,
//! follow its leads, and read its analytics per day (JSON or CSV).

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::Caller;
use super::{ApiError, Fail, bad, query_error};
use crate::campaigns::spec::{CampaignSpec, check_name};
use crate::state::AppState;
use crate::store::campaigns::{Campaign, Day, Progress};

pub fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(list_campaigns))
        .routes(routes!(put_campaign, get_campaign))
        .routes(routes!(start))
        .routes(routes!(pause))
        .routes(routes!(resume))
        .routes(routes!(complete))
        .routes(routes!(stats))
}

fn campaign_name(name: &str) -> Result<(), Fail> {
    check_name("name", name).map_err(bad)
}

fn not_found(name: &str) -> Fail {
    Fail(StatusCode::NOT_FOUND, format!("no campaign named {name:?}"))
}

#[utoipa::path(get, path = "/api/v1/campaigns",
    description = "Every campaign with its definition and state. Roles: admin, ai_ops.",
    responses((status = 200, body = Vec<Campaign>), (status = 401, body = ApiError), (status = 403, body = ApiError)),
    security(("bearer" = ["admin", "ai_ops"])))]
async fn list_campaigns(
    State(app): State<Arc<AppState>>,
    _caller: Caller,
) -> Result<Json<Vec<Campaign>>, Fail> {
    Ok(Json(app.store.campaigns().await?))
}

#[utoipa::path(put, path = "/api/v1/campaigns/{name}", request_body = CampaignSpec,
    params(("name" = String, Path, description = "The campaign's name (its metric label when in `campaigns.metric_names`)", pattern = "^[A-Za-z0-9_-]{1,64}$")),
    description = "Defines a campaign as a draft (201). A draft can be defined again; a campaign past draft cannot (409), nor a new one while `campaigns.max_campaigns` are not completed (409). Every bad field is named (422). Audited. Roles: admin, ai_ops.",
    responses((status = 201, body = Campaign), (status = 400, body = ApiError), (status = 401, body = ApiError), (status = 403, body = ApiError), (status = 409, body = ApiError), (status = 415, body = ApiError), (status = 422, body = ApiError)),
    security(("bearer" = ["admin", "ai_ops"])))]
async fn put_campaign(
    State(app): State<Arc<AppState>>,
    caller: Caller,
    Path(name): Path<String>,
    body: Result<Json<CampaignSpec>, JsonRejection>,
) -> Result<(StatusCode, Json<Campaign>), Fail> {
    campaign_name(&name)?;
    let Json(spec) =
        body.map_err(|e| Fail(e.status(), format!("bad JSON body: {}", e.body_text())))?;
    let errors = spec.validate();
    if !errors.is_empty() {
        return Err(Fail(StatusCode::UNPROCESSABLE_ENTITY, errors.join("; ")));
    }
    match app.store.campaign(&name).await? {
        Some(c) if c.state != "draft" => {
            return Err(Fail(
                StatusCode::CONFLICT,
                format!(
                    "campaign {name:?} is {}: only a draft can be defined again",
                    c.state
                ),
            ));
        }
        Some(_) => {
            if !app.store.campaign_redefine(&name, &spec).await? {
                return Err(Fail(
                    StatusCode::CONFLICT,
                    format!("campaign {name:?} started meanwhile"),
                ));
            }
        }
        None => {
            let max = app.config.campaigns.max_campaigns;
            if app.store.campaign_count().await? >= max as i64 {
                return Err(Fail(
                    StatusCode::CONFLICT,
                    format!(
                        "campaigns.max_campaigns ({max}) campaigns not completed: complete one first"
                    ),
                ));
            }
            if !app
                .store
                .campaign_create(&name, &spec, &caller.name)
                .await?
            {
                return Err(Fail(
                    StatusCode::CONFLICT,
                    format!("campaign {name:?} exists"),
                ));
            }
        }
    }
    app.store
        .audit(&caller.name, "campaign_define", &name, "")
        .await?;
    let c = app
        .store
        .campaign(&name)
        .await?
        .ok_or_else(|| not_found(&name))?;
    Ok((StatusCode::CREATED, Json(c)))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CampaignStatus {
    campaign: Campaign,
    progress: Progress,
}

#[utoipa::path(get, path = "/api/v1/campaigns/{name}",
    params(("name" = String, Path, description = "The campaign's name")),
    description = "A campaign with where its leads are: waiting, in flight, done (and why not dialed), by status. Roles: admin, ai_ops.",
    responses((status = 200, body = CampaignStatus), (status = 401, body = ApiError), (status = 403, body = ApiError), (status = 404, body = ApiError)),
    security(("bearer" = ["admin", "ai_ops"])))]
async fn get_campaign(
    State(app): State<Arc<AppState>>,
    _caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<CampaignStatus>, Fail> {
    let campaign = app
        .store
        .campaign(&name)
        .await?
        .ok_or_else(|| not_found(&name))?;
    let progress = app.store.campaign_progress(&name).await?;
    Ok(Json(CampaignStatus { campaign, progress }))
}

/// Moves a campaign `from` one of its states `to` another, enrolling its
/// lists' leads first when it (re)starts.
async fn transition(
    app: &AppState,
    caller: &Caller,
    name: &str,
    from: &[&str],
    to: &str,
) -> Result<Json<CampaignStatus>, Fail> {
    let c = app
        .store
        .campaign(name)
        .await?
        .ok_or_else(|| not_found(name))?;
    if !from.contains(&c.state.as_str()) {
        return Err(Fail(
            StatusCode::CONFLICT,
            format!(
                "campaign {name:?} is {}: it must be {} to become {to}",
                c.state,
                from.join(" or ")
            ),
        ));
    }
    if to == "running" {
        if app.policies.catalog().get(&c.spec.policy).is_none() {
            return Err(Fail(
                StatusCode::CONFLICT,
                format!("policy {:?} is not live", c.spec.policy),
            ));
        }
        if c.spec.caller_ids.is_empty() && app.config.outbound.caller_id.is_empty() {
            return Err(Fail(
                StatusCode::CONFLICT,
                "no caller ID: give caller_ids or set outbound.caller_id".into(),
            ));
        }
        if !app.dialer.can_dial() {
            return Err(Fail(
                StatusCode::CONFLICT,
                "no carrier call control is configured (TWILIO_ACCOUNT_SID and the auth token)"
                    .into(),
            ));
        }
        app.store.campaign_enroll(name, &c.spec.lists).await?;
    }
    if !app.store.campaign_move(name, from, to).await? {
        return Err(Fail(
            StatusCode::CONFLICT,
            format!("campaign {name:?} changed meanwhile; try again"),
        ));
    }
    app.store
        .audit(&caller.name, "campaign_state", name, to)
        .await?;
    tracing::info!(campaign = %name, state = %to, "campaign state changed");
    let campaign = app
        .store
        .campaign(name)
        .await?
        .ok_or_else(|| not_found(name))?;
    let progress = app.store.campaign_progress(name).await?;
    Ok(Json(CampaignStatus { campaign, progress }))
}

#[utoipa::path(post, path = "/api/v1/campaigns/{name}/start",
    params(("name" = String, Path, description = "The campaign's name")),
    description = "draft → running: its lists' leads join it and dialing begins (each in its own calling window). 409 when not a draft, its policy is not live, or there is no caller ID or call control. Audited. Roles: admin, ai_ops.",
    responses((status = 200, body = CampaignStatus), (status = 401, body = ApiError), (status = 403, body = ApiError), (status = 404, body = ApiError), (status = 409, body = ApiError)),
    security(("bearer" = ["admin", "ai_ops"])))]
async fn start(
    State(app): State<Arc<AppState>>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<CampaignStatus>, Fail> {
    transition(&app, &caller, &name, &["draft"], "running").await
}

#[utoipa::path(post, path = "/api/v1/campaigns/{name}/pause",
    params(("name" = String, Path, description = "The campaign's name")),
    description = "running → paused: no new calls (calls in progress go on and are settled). Audited. Roles: admin, ai_ops.",
    responses((status = 200, body = CampaignStatus), (status = 401, body = ApiError), (status = 403, body = ApiError), (status = 404, body = ApiError), (status = 409, body = ApiError)),
    security(("bearer" = ["admin", "ai_ops"])))]
async fn pause(
    State(app): State<Arc<AppState>>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<CampaignStatus>, Fail> {
    transition(&app, &caller, &name, &["running"], "paused").await
}

#[utoipa::path(post, path = "/api/v1/campaigns/{name}/resume",
    params(("name" = String, Path, description = "The campaign's name")),
    description = "paused → running; leads added to its lists meanwhile join. Audited. Roles: admin, ai_ops.",
    responses((status = 200, body = CampaignStatus), (status = 401, body = ApiError), (status = 403, body = ApiError), (status = 404, body = ApiError), (status = 409, body = ApiError)),
    security(("bearer" = ["admin", "ai_ops"])))]
async fn resume(
    State(app): State<Arc<AppState>>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<CampaignStatus>, Fail> {
    transition(&app, &caller, &name, &["paused"], "running").await
}

#[utoipa::path(post, path = "/api/v1/campaigns/{name}/complete",
    params(("name" = String, Path, description = "The campaign's name")),
    description = "Ends a campaign before its leads are done (it also completes on its own when they are). Audited. Roles: admin, ai_ops.",
    responses((status = 200, body = CampaignStatus), (status = 401, body = ApiError), (status = 403, body = ApiError), (status = 404, body = ApiError), (status = 409, body = ApiError)),
    security(("bearer" = ["admin", "ai_ops"])))]
async fn complete(
    State(app): State<Arc<AppState>>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<CampaignStatus>, Fail> {
    transition(
        &app,
        &caller,
        &name,
        &["draft", "running", "paused"],
        "completed",
    )
    .await
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct StatsQuery {
    /// First day (`YYYY-MM-DD`, UTC); default: 30 days ago.
    #[param(format = Date)]
    from: Option<String>,
    /// Last day; default: today.
    #[param(format = Date)]
    to: Option<String>,
    /// `json` (default) or `csv`.
    #[param(pattern = "^(json|csv)$")]
    format: Option<String>,
}

/// A day's figures with its rates.
#[derive(Debug, Serialize, ToSchema)]
pub struct DayStats {
    #[serde(flatten)]
    day: Day,
    /// connects / dials.
    connection_rate: f64,
    /// qualified / connects.
    conversion_rate: f64,
    /// voicemails / dials.
    voicemail_rate: f64,
    /// consent given / consent asked.
    consent_rate: f64,
    /// handle time / connects, in seconds.
    average_handle_secs: f64,
}

fn ratio(a: i64, b: i64) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

fn day_param(name: &str, v: Option<&str>, default: chrono::NaiveDate) -> Result<String, Fail> {
    match v {
        None => Ok(default.to_string()),
        Some(v) => chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d")
            .map(|d| d.to_string())
            .map_err(|_| bad(format!("{name}: {v:?} is not a date (YYYY-MM-DD)"))),
    }
}

#[utoipa::path(get, path = "/api/v1/campaigns/{name}/stats",
    params(("name" = String, Path, description = "The campaign's name"), StatsQuery),
    description = "Per day (UTC): dials, connects (connection rate), qualified (conversion rate), average handle time, consent acceptance, voicemail rate, outcomes by slot. Kept after transcript retention. JSON, or CSV with `format=csv`. Roles: admin, ai_ops.",
    responses((status = 200, content((Vec<DayStats> = "application/json"), (String = "text/csv"))), (status = 400, body = ApiError), (status = 401, body = ApiError), (status = 403, body = ApiError), (status = 404, body = ApiError)),
    security(("bearer" = ["admin", "ai_ops"])))]
async fn stats(
    State(app): State<Arc<AppState>>,
    _caller: Caller,
    Path(name): Path<String>,
    query: Result<Query<StatsQuery>, QueryRejection>,
) -> Result<Response, Fail> {
    let Query(q) = query.map_err(query_error)?;
    let today = chrono::Utc::now().date_naive();
    let from = day_param(
        "from",
        q.from.as_deref(),
        today - chrono::Duration::days(30),
    )?;
    let to = day_param("to", q.to.as_deref(), today)?;
    let csv = match q.format.as_deref() {
        None | Some("json") => false,
        Some("csv") => true,
        Some(other) => return Err(bad(format!("format: {other:?} is not json or csv"))),
    };
    if app.store.campaign(&name).await?.is_none() {
        return Err(not_found(&name));
    }
    let days: Vec<DayStats> = app
        .store
        .campaign_days(&name, &from, &to)
        .await?
        .into_iter()
        .map(|d| DayStats {
            connection_rate: ratio(d.connects, d.dials),
            conversion_rate: ratio(d.qualified, d.connects),
            voicemail_rate: ratio(d.voicemails, d.dials),
            consent_rate: ratio(d.consent_given, d.consent_asked),
            average_handle_secs: ratio(d.handle_ms, d.connects) / 1000.0,
            day: d,
        })
        .collect();
    if !csv {
        return Ok(Json(days).into_response());
    }
    Ok((
        [(header::CONTENT_TYPE, "text/csv; charset=utf-8")],
        stats_csv(&days),
    )
        .into_response())
}

fn stats_csv(days: &[DayStats]) -> String {
    let mut w = csv::Writer::from_writer(Vec::new());
    let _ = w.write_record([
        "day",
        "dials",
        "connects",
        "connection_rate",
        "qualified",
        "conversion_rate",
        "average_handle_secs",
        "consent_asked",
        "consent_given",
        "consent_rate",
        "voicemails",
        "voicemail_rate",
        "outcomes",
    ]);
    for d in days {
        let outcomes: Vec<String> = d
            .day
            .outcomes
            .iter()
            .flat_map(|(slot, values)| values.iter().map(move |(v, n)| format!("{slot}={v}:{n}")))
            .collect();
        let _ = w.write_record([
            d.day.day.clone(),
            d.day.dials.to_string(),
            d.day.connects.to_string(),
            format!("{:.4}", d.connection_rate),
            d.day.qualified.to_string(),
            format!("{:.4}", d.conversion_rate),
            format!("{:.1}", d.average_handle_secs),
            d.day.consent_asked.to_string(),
            d.day.consent_given.to_string(),
            format!("{:.4}", d.consent_rate),
            d.day.voicemails.to_string(),
            format!("{:.4}", d.voicemail_rate),
            outcomes.join(" "),
        ]);
    }
    String::from_utf8(w.into_inner().unwrap_or_default()).unwrap_or_default()
}
