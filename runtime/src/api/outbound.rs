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

/// Whether the carrier is asked who answered (Twilio `MachineDetection`).
#[derive(Debug, Clone, Copy, Default, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Detection {
    #[default]
    Off,
    /// A verdict as soon as a person or a machine is known.
    Enable,
    /// For a machine, at the end of its greeting (the beep).
    DetectMessageEnd,
}

impl From<Detection> for MachineDetection {
    fn from(d: Detection) -> Self {
        match d {
            Detection::Off => MachineDetection::Off,
            Detection::Enable => MachineDetection::Enable,
            Detection::DetectMessageEnd => MachineDetection::DetectMessageEnd,
        }
    }
}

/// What a number typed by a person may hold: digits, spaces, `().-`, a
/// leading `+` (the schema's `pattern`). Whether it is a number anyone can
/// dial is libphonenumber's call: a request for one that is not is refused,
/// on record.
fn dialable(s: &str) -> bool {
    let rest = s.strip_prefix('+').unwrap_or(s);
    (3..=40).contains(&rest.len())
        && rest.starts_with(|c: char| c.is_ascii_digit() || c == '(')
        && rest
            .chars()
            .all(|c| c.is_ascii_digit() || " ().-".contains(c))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlaceCall {
    /// The callee: E.164 (`+14155550123`), or national (`(415) 555-0123`)
    /// read in `outbound.default_region`.
    #[schema(pattern = "^\\+?[0-9(][0-9 ().-]{2,39}$")]
    to: String,
    /// The caller ID (E.164); default `outbound.caller_id`.
    #[schema(pattern = "^\\+[1-9][0-9]{6,14}$")]
    from: Option<String>,
    /// A live policy's name; default: the default policy.
    #[schema(min_length = 1, max_length = 200)]
    policy: Option<String>,
    /// The lead's fields (at most 50): `{caller.NAME}` in the policy's
    /// prompt and voicemail message.
    #[serde(default)]
    variables: BTreeMap<String, String>,
    #[serde(default)]
    machine_detection: Detection,
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
            // The node is not set up to place calls: nothing to retry.
            PlaceError::NoCallControl | PlaceError::NoCallerId => {
                Fail(StatusCode::CONFLICT, e.to_string())
            }
            other => bad(other.to_string()),
        }
    }
}

#[utoipa::path(post, path = "/api/v1/calls", request_body = PlaceCall,
    description = "Places an outbound call. The number is checked against the do-not-call list and the blocklist first: a listed number is never dialed (409, on record as `refused` with its reason: `do_not_call`, `blocklist`, or `invalid_number` for one libphonenumber says no one can dial); 404 for a policy that is not live; 409 (`error`) when the node has no carrier account or no caller ID to place calls with. 201: dialed (its `state` follows the carrier; `failed` if the carrier refused it); 200: the idempotency key was used before (that request). Roles: admin, ai_ops.",
    responses((status = 201, body = Placement), (status = 200, body = Placement), (status = 409, description = "refused (on record, a placement) or the node cannot place calls (an error)"), (status = 415, body = ApiError), (status = 422, body = ApiError), (status = 400, body = ApiError), (status = 401, body = ApiError), (status = 403, body = ApiError), (status = 404, body = ApiError), (status = 503, body = ApiError)),
    security(("bearer" = ["admin", "ai_ops"])))]
async fn place_call(
    State(app): State<Arc<AppState>>,
    caller: Caller,
    body: Result<Json<PlaceCall>, JsonRejection>,
) -> Result<(StatusCode, Json<Placement>), Fail> {
    let Json(body) =
        body.map_err(|e| Fail(e.status(), format!("bad JSON body: {}", e.body_text())))?;
    if !dialable(&body.to) {
        return Err(bad(format!(
            "to: {:?} is not a phone number (digits, spaces, ().-, a leading +)",
            body.to.chars().take(40).collect::<String>()
        )));
    }
    if let Some(from) = &body.from
        && crate::api::blocklist::check_number(from).is_err()
    {
        return Err(bad("from: not an E.164 number like +14155550100"));
    }
    if body.variables.len() > 50 {
        return Err(bad("variables: at most 50"));
    }
    let catalog = app.policies.catalog();
    let policy = match body.policy.as_deref() {
        Some(name) if catalog.get(name).is_none() => {
            return Err(Fail(
                StatusCode::NOT_FOUND,
                format!("policy: {name:?} is not a live policy"),
            ));
        }
        Some(name) => name.to_owned(),
        None => catalog.default_name().to_owned(),
    };
    let req = Request {
        to: body.to,
        from: body.from,
        policy,
        variables: body.variables,
        machine_detection: body.machine_detection.into(),
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
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Newest first; 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
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

#[cfg(test)]
mod tests {
    use super::dialable;

    #[test]
    fn what_a_person_may_type_as_a_number() {
        for ok in [
            "+14155550123",
            "(415) 555-0123",
            "098765 43210",
            "415.555.0123",
            "000",
        ] {
            assert!(dialable(ok), "{ok}");
        }
        for bad in [
            "banana",
            "",
            "+",
            "12",
            "+(",
            "415-555-0123 ext 5",
            "४१५५५५०१२३",
            "+1 415 555 0123 0000 0000 0000 0000 0000 0000 0000",
        ] {
            assert!(!dialable(bad), "{bad}");
        }
    }
}
