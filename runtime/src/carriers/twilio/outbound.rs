//! The webhooks of a call Hark placed, each checked against
//! `X-Twilio-Signature` like every Twilio request:
//!
//! - `POST /twilio/outbound/answer?id=` — the callee picked up: a Media
//!   Stream with a stream token minted now (so it is fresh however long the
//!   phone rang) naming the placement.
//! - `POST /twilio/outbound/amd?id=` — the asynchronous answering-machine
//!   verdict (`AnsweredBy`): on record, counted, and told to the call's tree
//!   (or kept for its stream if that has not started).
//! - status callbacks go to `/twilio/status?outbound=ID` (the call's own
//!   record as for every call, and the placement's state).

use std::sync::Arc;

use axum::Extension;
use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use hark_actors::SupervisorMsg;
use hark_actors::records::{Record, now_ms};
use hark_carrier::twilio::{ids, twiml};
use serde::Deserialize;

use super::placement::{self, Target};
use super::request::{Params, verified, xml};
use crate::http_limits::ClientAddr;
use crate::outbound::{ANSWERED_BY, answered_by};
use crate::server::refuse;
use crate::state::AppState;
use crate::stream_token::StreamClaims;

/// Answering-machine verdicts go on the call's record numbered from here.
pub const AMD_EVENT_BASE: u32 = 4_278_000_000;

#[derive(Deserialize)]
pub struct ForPlacement {
    id: String,
}

/// The placed call was answered: stream it into a call tree.
pub async fn answer(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    uri: Uri,
    Query(q): Query<ForPlacement>,
    client: Option<Extension<ClientAddr>>,
    Form(params): Params,
) -> Response {
    let base = match verified(
        &app,
        "outbound_answer",
        &headers,
        &uri,
        &params,
        client.map(|c| c.0),
    ) {
        Ok(base) => base,
        Err(refused) => return *refused,
    };
    let call_sid = params.get("CallSid").map(String::as_str).unwrap_or("");
    if !ids::is_call_sid(call_sid) {
        return refuse(StatusCode::BAD_REQUEST, "CallSid is not a Twilio call SID");
    }
    let Some(placement) = app
        .dialer
        .answering(&q.id, call_sid, &app.lookups, &app.pii)
        .await
    else {
        tracing::warn!(id = %hark_actors::util::Escaped(&q.id), "an answer for a call this node did not place");
        return xml(twiml::say_and_hang_up(
            "Sorry, this call cannot go on. Goodbye.",
        ));
    };
    // In a cluster, a draining node is simply not picked below.
    if app.lifecycle.is_draining() && app.cluster.is_none() {
        return xml(twiml::say_and_hang_up(
            "Sorry, please expect our call later. Goodbye.",
        ));
    }
    let live = app.policies.route(&placement.to, Some(&placement.policy));
    let query = placement::action_query(&live.policy.name, Some(&placement.id));
    let Target::Stream { url, action } =
        placement::target(&app, &base, call_sid, &live.policy, &query, "").await
    else {
        return xml(twiml::say_and_hang_up(&live.policy.busy_line));
    };
    let claims = StreamClaims {
        call_sid: call_sid.to_owned(),
        from: placement.from,
        to: placement.to,
        direction: "outbound-api".into(),
        policy: live.policy.name.clone(),
        policy_version: live.policy.version.clone(),
        exp: 0,
        outbound: Some(placement.id),
        resume: None,
    };
    placement::connect(&app, "", &url, action.as_deref(), claims)
}

/// The carrier's answering-machine verdict (`AsyncAmdStatusCallback`).
pub async fn amd(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    uri: Uri,
    Query(q): Query<ForPlacement>,
    client: Option<Extension<ClientAddr>>,
    Form(params): Params,
) -> Response {
    if let Err(refused) = verified(
        &app,
        "outbound_amd",
        &headers,
        &uri,
        &params,
        client.map(|c| c.0),
    ) {
        return *refused;
    }
    let call_sid = params.get("CallSid").map(String::as_str).unwrap_or("");
    let raw = params.get("AnsweredBy").map(String::as_str).unwrap_or("");
    let Some(verdict) = answered_by(raw) else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "AnsweredBy is not one Twilio documents",
        );
    };
    if !ids::is_call_sid(call_sid) {
        return refuse(StatusCode::BAD_REQUEST, "CallSid is not a Twilio call SID");
    }
    // The call's tree is on another node: the verdict goes there.
    if let Some(answer) =
        super::owner::forward_to_owner(&app, call_sid, &headers, &uri, &params).await
    {
        return answer;
    }
    metrics::counter!(ANSWERED_BY, "verdict" => verdict.as_str()).increment(1);
    let detail = match params.get("MachineDetectionDuration") {
        Some(ms) => format!("{raw} after {} ms", ms.parse::<u64>().unwrap_or(0)),
        None => raw.to_owned(),
    };
    app.records.send(Record::Event {
        call_sid: call_sid.to_owned(),
        seq: AMD_EVENT_BASE,
        kind: "twilio_answered_by".into(),
        detail,
        private: false,
        at_ms: now_ms(),
    });
    let supervisor = app.switchboard.supervisor(call_sid);
    app.dialer
        .verdict(&q.id, verdict, raw, supervisor.is_none());
    if let Some(supervisor) = supervisor {
        let _ = supervisor.send_message(SupervisorMsg::Answered(verdict));
    }
    StatusCode::NO_CONTENT.into_response()
}
