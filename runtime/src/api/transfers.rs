//! Transfers through the API: an agent or admin hands a live call to a
//! person, and reads the handoff (summary, transcript, slots) the agent
//! taking a call gets.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use hark_actors::SupervisorMsg;
use hark_actors::policy::TransferMode;
use hark_actors::transfer::Handoff;
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::Caller;
use super::{ApiError, Fail};
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(transfer))
        .routes(routes!(handoff))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TransferRequest {
    /// The team or skill asked for (cold: a `[transfer.to]` key).
    #[schema(pattern = "^[A-Za-z0-9._-]{1,64}$")]
    target: String,
}

/// What the agent taking the call gets.
#[derive(Debug, serde::Serialize, ToSchema)]
pub struct HandoffView {
    summary: String,
    /// `model` or `template` (the model did not answer in time).
    summary_source: String,
    target: String,
    language: String,
    /// `[{speaker, text}]`, oldest first.
    #[schema(value_type = Vec<Object>)]
    transcript: serde_json::Value,
    #[schema(value_type = Object)]
    slots: serde_json::Value,
}

impl From<&Handoff> for HandoffView {
    fn from(h: &Handoff) -> Self {
        Self {
            summary: h.summary.clone(),
            summary_source: h.summary_source.into(),
            target: h.target.clone(),
            language: h.language.clone(),
            transcript: serde_json::to_value(&h.transcript).unwrap_or_default(),
            slots: serde_json::Value::Object(h.slots.clone()),
        }
    }
}

fn plain(target: &str) -> bool {
    !target.is_empty()
        && target.len() <= 64
        && target
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

#[utoipa::path(post, path = "/api/v1/calls/{call_sid}/transfer", request_body = TransferRequest,
    params(("call_sid" = String, Path, description = "The call's SID")),
    description = "Hands a live call on this node to a person, as its policy's [transfer] says (the escalation line first). Accepted: the transfer runs; its steps are call events. Audited. Roles: admin, agent.",
    responses((status = 202), (status = 400, body = ApiError), (status = 401, body = ApiError), (status = 403, body = ApiError), (status = 404, body = ApiError), (status = 409, body = ApiError), (status = 415, body = ApiError), (status = 422, body = ApiError)),
    security(("bearer" = ["admin", "agent"])))]
async fn transfer(
    State(app): State<Arc<AppState>>,
    caller: Caller,
    Path(call_sid): Path<String>,
    b: Result<Json<TransferRequest>, JsonRejection>,
) -> Result<StatusCode, Fail> {
    let Json(b) = b.map_err(|e| Fail(e.status(), format!("bad JSON body: {}", e.body_text())))?;
    if !plain(&b.target) {
        return Err(super::bad(
            "target: 1-64 letters, digits, '.', '_', '-'".to_owned(),
        ));
    }
    let not_here = || {
        Fail(
            StatusCode::NOT_FOUND,
            "no live call with that SID on this node".into(),
        )
    };
    let ctx = app.switchboard.context(&call_sid).ok_or_else(not_here)?;
    if ctx.policy.transfer.mode == TransferMode::Off {
        return Err(Fail(
            StatusCode::CONFLICT,
            format!(
                "the call's policy {:?} has no [transfer] (mode = \"off\")",
                ctx.policy.name
            ),
        ));
    }
    if ctx.is_away() {
        return Err(Fail(
            StatusCode::CONFLICT,
            "the call is already being transferred".into(),
        ));
    }
    let supervisor = app.switchboard.supervisor(&call_sid).ok_or_else(not_here)?;
    app.store
        .audit(&caller.name, "transfer", &call_sid, &b.target)
        .await?;
    supervisor
        .send_message(SupervisorMsg::TransferAsked { target: b.target })
        .map_err(|_| not_here())?;
    Ok(StatusCode::ACCEPTED)
}

#[utoipa::path(get, path = "/api/v1/calls/{call_sid}/handoff",
    params(("call_sid" = String, Path, description = "The call's SID")),
    description = "The handoff of a call transferred to an agent from this node: the summary the agent heard, the transcript and the slots. Kept in memory for the node's last 10,000 transfers. Audited. Roles: admin, agent.",
    responses((status = 200, body = HandoffView), (status = 401, body = ApiError), (status = 403, body = ApiError), (status = 404, body = ApiError)),
    security(("bearer" = ["admin", "agent"])))]
async fn handoff(
    State(app): State<Arc<AppState>>,
    caller: Caller,
    Path(call_sid): Path<String>,
) -> Result<Json<HandoffView>, Fail> {
    let h = app.switchboard.handoff(&call_sid).ok_or_else(|| {
        Fail(
            StatusCode::NOT_FOUND,
            "no handoff for that call on this node".into(),
        )
    })?;
    app.store
        .audit(&caller.name, "read_handoff", &call_sid, "")
        .await?;
    Ok(Json(HandoffView::from(&*h)))
}
