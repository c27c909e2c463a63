//! Outbound calls through the API: place one (`POST /calls`), and follow
//! each request's state as the carrier reports it (`/outbound`).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use hark_carrier::port::MachineDetection;
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::Caller;
use super::{ApiError, Fail, bad, query_error};
use crate::outbound::{Outcome, PlaceError, Request};
use crate::state::AppState;
use crate::store::outbound::Placement;

pub fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(place_call))
        .routes(routes!(list_outbound))
        .routes(routes!(get_outbound))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlaceCall {
    /// The callee: E.164, or a national number read in
    /// `outbound.default_region`.
    #[schema(min_length = 3, max_length = 40)]
    to: String,
    /// The caller ID (E.164); default `outbound.caller_id`.
    #[schema(max_length = 40)]
    from: Option<String>,
    /// A live policy's name; default: the default policy.
    #[schema(max_length = 200)]
    policy: Option<String>,
    /// The lead's fields: `{caller.NAME}` in the policy's prompt and
    /// voicemail message.
    #[serde(default)]
    variables: BTreeMap<String, String>,
    /// `off` (default), `enable` or `detect_message_end`.
    #[serde(default)]
    #[schema(value_type = String)]
    machine_detection: MachineDetection,
    /// The same key again gets the first request's call, not a second call.
    #[schema(min_length = 1, max_length = 200)]
    idempotency_key: Option<String>,
}

impl From<PlaceError> for Fail {
    fn from(e: PlaceError) -> Self {
        match e {
            PlaceError::Store(e) if e.is_unavailable() => Fail(
                StatusCode::SERVICE_UNAVAILABLE,
                "the do-not-call list could not be checked (database unreachable); nothing was dialed"
                    .into(),
            ),
            PlaceError::Store(e) => e.into(),
            PlaceError::NoCallControl => Fail(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
            other => bad(other.to_string()),
        }
    }
}

#[utoipa::path(post, path = "/api/v1/calls", request_body = PlaceCall,
    description = "Places an outbound call. The number is checked against the do-not-call list and the blocklist first: a listed number is never dialed (409, on record as `refused` with its reason). 201: dialed (its `state` follows the carrier; `failed` if the carrier refused it); 200: the idempotency key was used before (that request). Roles: admin, ai_ops.",
    responses((status = 201, body = Placement), (status = 200, body = Placement), (status = 409, body = Placement), (status = 415, body = ApiError), (status = 422, body = ApiError), (status = 400, body = ApiError), (status = 401, body = ApiError), (status = 403, body = ApiError), (status = 503, body = ApiError)),
    security(("bearer" = ["admin", "ai_ops"])))]
async fn place_call(
    State(app): State<Arc<AppState>>,
    caller: Caller,
    body: Result<Json<PlaceCall>, JsonRejection>,
) -> Result<(StatusCode, Json<Placement>), Fail> {
    let Json(body) =
        body.map_err(|e| Fail(e.status(), format!("bad JSON body: {}", e.body_text())))?;
    let catalog = app.policies.catalog();
    let policy = match body.policy.as_deref() {
        Some(name) if catalog.get(name).is_none() => {
            return Err(bad(format!("policy: {name:?} is not a live policy")));
        }
        Some(name) => name.to_owned(),
        None => catalog.default_name().to_owned(),
    };
    let req = Request {
        to: body.to,
        from: body.from,
        policy,
        variables: body.variables,
        machine_detection: body.machine_detection,
        idempotency_key: body.idempotency_key,
    };
    let outcome = app
        .dialer
        .place(req, &caller.name, &app.store, &app.pii)
        .await?;
    Ok(match outcome {
        Outcome::Placed(p) => (StatusCode::CREATED, Json(p)),
        Outcome::Replayed(p) => (StatusCode::OK, Json(p)),
        Outcome::Refused(p) => (StatusCode::CONFLICT, Json(p)),
    })
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Newest first; 1 to 1000 (default 100).
    limit: Option<i64>,
}

#[utoipa::path(get, path = "/api/v1/outbound", params(ListQuery),
    description = "Calls Hark was asked to place, newest first: refused (and why), or their state as the carrier reports it. Roles: admin, ai_ops.",
    responses((status = 200, body = Vec<Placement>), (status = 400, body = ApiError), (status = 401, body = ApiError), (status = 403, body = ApiError)),
    security(("bearer" = ["admin", "ai_ops"])))]
async fn list_outbound(
    State(app): State<Arc<AppState>>,
    _caller: Caller,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<Vec<Placement>>, Fail> {
    let Query(q) = q.map_err(query_error)?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(bad("limit: 1 to 1000"));
    }
    Ok(Json(app.store.placements(limit, &app.pii).await?))
}

#[utoipa::path(get, path = "/api/v1/outbound/{id}", params(("id" = String, Path, description = "The placement's id (OB…)")),
    description = "One call Hark was asked to place: its state, reason, call SID and answering-machine verdict. Roles: admin, ai_ops.",
    responses((status = 200, body = Placement), (status = 401, body = ApiError), (status = 403, body = ApiError), (status = 404, body = ApiError)),
    security(("bearer" = ["admin", "ai_ops"])))]
async fn get_outbound(
    State(app): State<Arc<AppState>>,
    _caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Placement>, Fail> {
    match app.store.placement(&id, &app.pii).await? {
        Some((p, _)) => Ok(Json(p)),
        None => Err(Fail(StatusCode::NOT_FOUND, "no such placement".into())),
    }
}
