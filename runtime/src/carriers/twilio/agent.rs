//! The webhooks of a warm transfer, each checked against
//! `X-Twilio-Signature` like every Twilio request:
//!
//! - `POST /twilio/agent/answer?call=` — the agent picked up: the whisper
//!   (summary, then the accept key), heard by the agent alone.
//! - `POST /twilio/agent/accept?call=` — the key pressed (`Digits`, empty
//!   on timeout): the accept key joins the conference, anything else hangs up.
//! - `POST /twilio/agent/status?call=` — the agent leg's status callback:
//!   not answered, or ended; an accepted agent is released, after wrap-up,
//!   when their leg ends.
//! - `POST /twilio/return?call=` — the caller comes back from hold: a new
//!   Media Stream of the same call, with a new stream token.
//! - `POST /twilio/recording?call=` — the conference's recording (made only
//!   with the caller's consent) is ready: its SID and length go on the
//!   call's record.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Extension;
use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use hark_actors::protocol::{AgentEvent, TransferMsg};
use hark_actors::records::{Record, now_ms};
use hark_carrier::port::CallStatus;
use hark_carrier::twilio::status as call_status;
use hark_carrier::twilio::{ids, twiml};
use serde::Deserialize;

use super::desk::{release, room};
use super::request::{Params, verified, xml};
use crate::http_limits::ClientAddr;
use crate::server::refuse;
use crate::state::AppState;
use crate::stream_token;

/// Agent-leg status callbacks go on the caller's record numbered from here
/// (below the caller's own status callbacks, above every stream's events).
pub const AGENT_EVENT_BASE: u32 = 4_280_000_000;

/// Conference recording callbacks go on the caller's record from here, one
/// number per recording status.
pub const RECORDING_EVENT_BASE: u32 = 4_279_000_000;

#[derive(Deserialize)]
pub struct ForCall {
    call: String,
}

/// `<Connect><Stream>` to this node (`base`: `scheme://host`) for a call
/// whose stream may claim `claims`, with a token minted now.
pub(super) fn stream_answer(
    app: &AppState,
    base: &str,
    claims: stream_token::StreamClaims,
) -> Response {
    super::placement::connect(app, "", &super::placement::stream_url(base), None, claims)
}

/// An agent leg's request: signature checked, and the leg it is about
/// (`CallSid`) one this node dialed for `call`. The URL base, the leg's
/// SID and the leg; or the refusal to answer.
fn agent_request(
    app: &AppState,
    route: &'static str,
    req: (&HeaderMap, &Uri, Option<Extension<ClientAddr>>),
    call: &str,
    params: &BTreeMap<String, String>,
) -> Result<(String, String, crate::switchboard::AgentLeg), Box<Response>> {
    let (headers, uri, client) = req;
    let base = verified(app, route, headers, uri, params, client.map(|c| c.0))?;
    let leg_sid = params.get("CallSid").cloned().unwrap_or_default();
    if !ids::is_call_sid(&leg_sid) || !ids::is_call_sid(call) {
        return Err(Box::new(refuse(
            StatusCode::BAD_REQUEST,
            "CallSid and call must be Twilio call SIDs",
        )));
    }
    match app.switchboard.leg(&leg_sid) {
        Some(leg) if leg.call_sid == call => Ok((base, leg_sid, leg)),
        _ => Err(Box::new(refuse(
            StatusCode::NOT_FOUND,
            "no such agent leg on this node",
        ))),
    }
}

/// Tells the caller's `Transfer` what the agent's leg did; false when the
/// caller's call is no longer here.
fn tell(app: &AppState, call: &str, leg: &str, event: AgentEvent) -> bool {
    app.switchboard.context(call).is_some_and(|ctx| {
        ctx.routes.transfer.send(TransferMsg::Agent {
            leg: leg.to_owned(),
            event,
        })
    })
}

pub async fn answer(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    uri: Uri,
    Query(q): Query<ForCall>,
    client: Option<Extension<ClientAddr>>,
    Form(params): Params,
) -> Response {
    let req = (&headers, &uri, client);
    let (base, leg_sid, leg) = match agent_request(&app, "agent_answer", req, &q.call, &params) {
        Ok(found) => found,
        Err(refused) => return *refused,
    };
    if !tell(&app, &q.call, &leg_sid, AgentEvent::Answered) {
        return xml(twiml::say_and_hang_up("The caller has hung up."));
    }
    let summary = app
        .switchboard
        .handoff(&q.call)
        .map(|h| h.summary.clone())
        .unwrap_or_default();
    let action = format!("{base}/twilio/agent/accept?call={}", q.call);
    xml(twiml::whisper(
        &summary,
        leg.accept_key,
        leg.accept.as_secs().max(1),
        &action,
    ))
}

pub async fn accept(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    uri: Uri,
    Query(q): Query<ForCall>,
    client: Option<Extension<ClientAddr>>,
    Form(params): Params,
) -> Response {
    let req = (&headers, &uri, client);
    let (_, leg_sid, leg) = match agent_request(&app, "agent_accept", req, &q.call, &params) {
        Ok(found) => found,
        Err(refused) => return *refused,
    };
    let digits = params.get("Digits").map(String::as_str).unwrap_or("");
    let accepted = digits.chars().eq(std::iter::once(leg.accept_key));
    if !accepted {
        tell(&app, &q.call, &leg_sid, AgentEvent::Declined);
        return xml(twiml::say_and_hang_up(""));
    }
    app.switchboard.leg_accepted(&leg_sid);
    if !tell(&app, &q.call, &leg_sid, AgentEvent::Accepted) {
        return xml(twiml::say_and_hang_up("The caller has hung up."));
    }
    xml(twiml::join_conference(&room(&q.call)))
}

pub async fn status(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    uri: Uri,
    Query(q): Query<ForCall>,
    client: Option<Extension<ClientAddr>>,
    Form(params): Params,
) -> Response {
    let req = (&headers, &uri, client);
    let (_, leg_sid, leg) = match agent_request(&app, "agent_status", req, &q.call, &params) {
        Ok(found) => found,
        Err(refused) => return *refused,
    };
    let Some(status) = params.get("CallStatus").and_then(|s| call_status::parse(s)) else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "CallStatus is not one Twilio documents",
        );
    };
    let seq = params
        .get("SequenceNumber")
        .and_then(|s| s.parse::<u32>().ok())
        .unwrap_or(0);
    app.records.send(Record::Event {
        call_sid: leg.call_sid.clone(),
        seq: AGENT_EVENT_BASE + seq.min(9_999_999),
        kind: "agent_leg".into(),
        detail: format!("{leg_sid} {}", status.as_str()),
        private: false,
        at_ms: now_ms(),
    });
    if status.is_final() {
        app.switchboard.remove_leg(&leg_sid);
        if leg.accepted {
            // With the caller until now: free again after wrap-up.
            release(&app.store, &leg.call_sid, leg.wrap_up).await;
        } else {
            let event = if status == CallStatus::Completed {
                AgentEvent::Left
            } else {
                AgentEvent::NoAnswer
            };
            tell(&app, &q.call, &leg_sid, event);
        }
    }
    StatusCode::NO_CONTENT.into_response()
}

/// The caller's call, redirected here from hold: a new stream of it.
pub async fn back(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    uri: Uri,
    Query(q): Query<ForCall>,
    client: Option<Extension<ClientAddr>>,
    Form(params): Params,
) -> Response {
    let base = match verified(&app, "return", &headers, &uri, &params, client.map(|c| c.0)) {
        Ok(base) => base,
        Err(refused) => return *refused,
    };
    let call_sid = params.get("CallSid").map(String::as_str).unwrap_or("");
    let claims = match app.switchboard.claims(call_sid) {
        Some(claims) if call_sid == q.call && app.switchboard.is_waiting(call_sid) => claims,
        _ => {
            tracing::warn!(call_sid = %hark_actors::util::Escaped(call_sid), "a call came back that is not waiting here");
            return xml(twiml::say_and_hang_up(
                "Sorry, we could not bring you back. Please call again.",
            ));
        }
    };
    stream_answer(&app, &base, claims)
}

/// The conference's recording status callback (`recordingStatusCallback`).
pub async fn recording(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    uri: Uri,
    Query(q): Query<ForCall>,
    client: Option<Extension<ClientAddr>>,
    Form(params): Params,
) -> Response {
    if let Err(refused) = verified(
        &app,
        "recording",
        &headers,
        &uri,
        &params,
        client.map(|c| c.0),
    ) {
        return *refused;
    }
    let get = |k: &str| params.get(k).map(String::as_str).unwrap_or("");
    let (sid, status) = (get("RecordingSid"), get("RecordingStatus"));
    if !ids::is_call_sid(&q.call) || !ids::is_sid(sid, "RE") {
        return refuse(
            StatusCode::BAD_REQUEST,
            "call must be a call SID and RecordingSid a recording SID",
        );
    }
    let index = match status {
        "in-progress" => 0,
        "completed" => 1,
        "absent" => 2,
        "failed" => 3,
        _ => {
            return refuse(
                StatusCode::BAD_REQUEST,
                "RecordingStatus is not one Twilio documents",
            );
        }
    };
    let secs = get("RecordingDuration").parse::<u64>().unwrap_or(0);
    app.records.send(Record::Event {
        call_sid: q.call.clone(),
        seq: RECORDING_EVENT_BASE + index,
        kind: "conference_recording".into(),
        detail: format!("{sid} {status} {secs} s"),
        private: false,
        at_ms: now_ms(),
    });
    StatusCode::NO_CONTENT.into_response()
}
