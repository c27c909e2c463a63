//! The blocklist: numbers whose calls are rejected (changes audited).

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::Caller;
use super::{ApiError, Fail, bad};
use crate::state::AppState;
use axum::extract::Path;
use axum::extract::rejection::JsonRejection;

use crate::store::queries::BlockEntry;

/// This resource's routes, each with its roles and OpenAPI entry.
pub fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(list_blocklist))
        .routes(routes!(add_block))
        .routes(routes!(remove_block))
}

#[utoipa::path(get, path = "/api/v1/blocklist",
    description = "Blocked numbers. Roles: admin, ai_ops, agent.",
    responses((status = 200, body = Vec<BlockEntry>), (status = 401, body = ApiError), (status = 403, body = ApiError)),
    security(("bearer" = ["admin", "ai_ops", "agent"])))]
async fn list_blocklist(
    State(app): State<Arc<AppState>>,
    _caller: Caller,
) -> Result<Json<Vec<BlockEntry>>, Fail> {
    Ok(Json(app.store.blocklist(&app.pii).await?))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewBlock {
    /// E.164, e.g. `+15551234567`.
    #[schema(pattern = "^\\+[1-9][0-9]{6,14}$")]
    number: String,
    #[schema(min_length = 1, max_length = 500, pattern = "\\S")]
    reason: String,
}

/// E.164: `+`, then 7 to 15 digits, the first not 0.
pub(super) fn check_number(n: &str) -> Result<String, Fail> {
    if !crate::outbound::phone::is_e164_shape(n) {
        return Err(bad(format!(
            "number: {n:?} is not an E.164 number like +15551234567"
        )));
    }
    Ok(n.to_owned())
}

#[utoipa::path(post, path = "/api/v1/blocklist", request_body = NewBlock,
    description = "Blocks a number: its calls get <Reject/>. Audited. Roles: admin, agent.",
    responses((status = 201, body = BlockEntry), (status = 400, body = ApiError), (status = 401, body = ApiError), (status = 403, body = ApiError), (status = 415, body = ApiError), (status = 422, body = ApiError)),
    security(("bearer" = ["admin", "agent"])))]
async fn add_block(
    State(app): State<Arc<AppState>>,
    caller: Caller,
    body: Result<Json<NewBlock>, JsonRejection>,
) -> Result<(StatusCode, Json<BlockEntry>), Fail> {
    let Json(body) =
        body.map_err(|e| Fail(e.status(), format!("bad JSON body: {}", e.body_text())))?;
    let number = check_number(&body.number)?;
    let reason = body.reason.trim();
    if reason.is_empty() || body.reason.chars().count() > 500 {
        return Err(bad("reason: 1 to 500 characters, not all blank"));
    }
    let entry = app
        .store
        .block(&number, reason, &caller.name, None, &app.pii)
        .await?;
    Ok((StatusCode::CREATED, Json(entry)))
}

#[utoipa::path(delete, path = "/api/v1/blocklist/{number}", params(("number" = String, Path, description = "E.164 number", pattern = "^\\+[1-9][0-9]{6,14}$")),
    description = "Unblocks a number. Audited. Roles: admin.",
    responses((status = 204), (status = 400, body = ApiError), (status = 401, body = ApiError), (status = 403, body = ApiError), (status = 404, body = ApiError)),
    security(("bearer" = ["admin"])))]
async fn remove_block(
    State(app): State<Arc<AppState>>,
    caller: Caller,
    Path(number): Path<String>,
) -> Result<StatusCode, Fail> {
    let number = check_number(&number)?;
    if !app.store.unblock(&number, &caller.name, &app.pii).await? {
        return Err(Fail(
            StatusCode::NOT_FOUND,
            "that number is not blocked".into(),
        ));
    }
    Ok(StatusCode::NO_CONTENT)
}
