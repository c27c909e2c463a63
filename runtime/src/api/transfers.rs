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

/// Asks the node holding `call_sid` (when another live node does) to
/// transfer it: its status and, for an error, its message; `None` to
/// answer here.
async fn on_its_node(
    app: &AppState,
    call_sid: &str,
    headers: &axum::http::HeaderMap,
    target: &str,
) -> Option<(StatusCode, Option<String>)> {
    use crate::cluster::forward;
    let cluster = app.cluster.as_ref()?;
    // Forwarded once at most.
    if headers.contains_key(forward::HEADER) {
        return None;
    }
    let entry = cluster.call_entry(call_sid).await.ok()??;
    if entry.ended || entry.node == cluster.node {
        return None;
    }
    let base = cluster.node_url(&entry.node).await.ok()??;
    let auth = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let sent = cluster
        .http()
        .post(format!("{base}/api/v1/calls/{call_sid}/transfer"))
        .header(axum::http::header::AUTHORIZATION, auth)
        .header(forward::HEADER, "api")
        .json(&serde_json::json!({ "target": target }))
        .timeout(forward::FORWARD_TIMEOUT)
        .send()
        .await
        .ok()
        .filter(|r| !r.status().is_server_error());
    let label = if sent.is_some() { "ok" } else { "failed" };
    metrics::counter!(forward::FORWARDS, "result" => label).increment(1);
    let res = sent?;
    let code = StatusCode::from_u16(res.status().as_u16()).ok()?;
    if code.is_success() {
        return Some((code, None));
    }
    let body: serde_json::Value = res.json().await.unwrap_or_default();
    let error = body["error"]
        .as_str()
        .unwrap_or("refused by the call's node");
    Some((code, Some(error.to_owned())))
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
    description = "Hands a live call to a person, as its policy's [transfer] says (the escalation line first); in a cluster, a call on another node is transferred there. Accepted: the transfer runs; its steps are call events. Audited. Roles: admin, agent.",
    responses((status = 202), (status = 400, body = ApiError), (status = 401, body = ApiError), (status = 403, body = ApiError), (status = 404, body = ApiError), (status = 409, body = ApiError), (status = 415, body = ApiError), (status = 422, body = ApiError)),
    security(("bearer" = ["admin", "agent"])))]
async fn transfer(
    State(app): State<Arc<AppState>>,
    caller: Caller,
    Path(call_sid): Path<String>,
    headers: axum::http::HeaderMap,
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
    // A call on another node of the cluster: the request goes there, with
    // the caller's own token (every node knows it), and its answer comes back.
    if app.switchboard.context(&call_sid).is_none()
        && let Some((code, error)) = on_its_node(&app, &call_sid, &headers, &b.target).await
    {
        return match error {
            None => Ok(code),
            Some(error) => Err(Fail(code, error)),
        };
    }
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
