//! Twilio's requests: the incoming-call webhook, call status callbacks and
//! the Media Streams upgrade. Each is checked against `X-Twilio-Signature`
//! when an auth token is configured (403 and `hark_twilio_signature_failures_total`
//! otherwise); calls from blocked numbers, or from numbers over their hourly
//! attempt limit, get `<Reject/>` and a record saying why. An admitted call
//! gets a stream token (see `stream_token`) that its Media Stream must show.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Extension;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use hark_actors::records::{Record, now_ms};

use super::placement::{self, Target};
use super::request::{check, direction, host, pairs, request_url, scheme};
use crate::carriers::CALLS_REJECTED;
use crate::carriers::stream::{self, HARD_MESSAGE_LIMIT, READ_BUFFER_BYTES};
use crate::http_limits::{ClientAddr, ConnTicket};
use crate::server::refuse;
use crate::state::AppState;
use crate::stream_token::StreamClaims;
use hark_carrier::twilio::status as call_status;
use hark_carrier::twilio::{TwilioStream, ids, twiml};

/// Longest a webhook waits for the blocklist.
const BLOCKLIST_WAIT: Duration = Duration::from_millis(500);
/// Status callback events are numbered from here, apart from the call's own
/// events (which each stream numbers from `stream_index * 1_000_000`).
pub const STATUS_EVENT_BASE: u32 = 4_290_000_000;

pub async fn media(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    uri: Uri,
    ticket: Option<Extension<Arc<ConnTicket>>>,
    client: Option<Extension<ClientAddr>>,
    ws: WebSocketUpgrade,
) -> Response {
    let client = client.map(|c| c.0);
    if app.twilio_auth_token.is_some() {
        let Some(host) = host(&app, &headers) else {
            return refuse(StatusCode::BAD_REQUEST, "no usable Host header");
        };
        let url = request_url(&headers, &uri, &host, "wss", "ws");
        if let Some(refused) = check(&app, "media", &headers, &url, &[], client) {
            return refused;
        }
    }
    let slot = match app.lifecycle.admit() {
        Ok(slot) => slot,
        Err(refusal) => return refuse(StatusCode::SERVICE_UNAVAILABLE, refusal.message()),
    };
    // Now a call: bounded by max_calls, no longer by its client's cap. The
    // connection keeps its place in the total for as long as the call lasts.
    let ticket = ticket.map(|t| t.0);
    if let Some(t) = &ticket {
        t.graduate();
    }
    ws.read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(0)
        .max_message_size(HARD_MESSAGE_LIMIT)
        .max_frame_size(HARD_MESSAGE_LIMIT)
        .on_upgrade(move |socket| async move {
            stream::run::<TwilioStream>(socket, app, slot).await;
            drop(ticket);
        })
}

pub async fn voice(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    uri: Uri,
    Query(query): Query<BTreeMap<String, String>>,
    client: Option<Extension<ClientAddr>>,
    Form(params): Form<BTreeMap<String, String>>,
) -> Response {
    let Some(host) = host(&app, &headers) else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "no usable Host header and no public_host configured",
        );
    };
    let url = request_url(&headers, &uri, &host, "https", "http");
    if let Some(refused) = check(
        &app,
        "voice",
        &headers,
        &url,
        &pairs(&params),
        client.map(|c| c.0),
    ) {
        return refused;
    }
    let Some(call_sid) = params.get("CallSid").filter(|s| !s.is_empty()).cloned() else {
        return refuse(StatusCode::BAD_REQUEST, "CallSid is required");
    };
    // A draining node in a cluster still places calls (on the others);
    // on its own, or with Redis away, it can only refuse them.
    if app.lifecycle.is_draining() && !app.cluster.as_ref().is_some_and(|c| c.is_up()) {
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            crate::lifecycle::Refusal::Draining.message(),
        );
    }
    let from = params.get("From").cloned().unwrap_or_default();
    // A withheld number is nobody in particular: it is never blocked, and
    // callers who withhold theirs do not share one attempt limit.
    if let Some(caller) = caller_identity(&from) {
        let from = caller;
        // The database being away (or slow) must not stop or delay calls:
        // past a short wait the call is let through.
        let lookup = tokio::time::timeout(BLOCKLIST_WAIT, app.lookups.blocked(&from, &app.pii));
        let blocked = match lookup.await {
            Ok(Ok(b)) => b,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "blocklist unavailable; call allowed");
                None
            }
            Err(_) => {
                tracing::warn!("blocklist lookup too slow; call allowed");
                None
            }
        };
        let reason = match blocked {
            Some(_) => Some("blocked"),
            None if !app.caller_limit.admit(&app.pii.hash_number(&from)).await => {
                Some("rate_limited")
            }
            None => None,
        };
        if let Some(reason) = reason {
            return reject(&app, &params, query.get("policy"), reason);
        }
    }
    let get = |k: &str| params.get(k).cloned().unwrap_or_default();
    // An outbound call names its policy in the webhook URL it was placed
    // with (covered by Twilio's signature); an inbound one is routed by the
    // number it called.
    let live = app
        .policies
        .route(&get("To"), query.get("policy").map(String::as_str));
    let base = format!("{}://{host}", scheme(&headers, "https", "http"));
    let action = placement::action_query(&live.policy.name, None);
    let Target::Stream { url, action } =
        placement::target(&app, &base, &call_sid, &live.policy, &action, "").await
    else {
        return refuse_busy(&app, &params, query.get("policy"), &live.policy.busy_line);
    };
    // What the stream may claim: the numbers checked above, this call only.
    let claims = StreamClaims {
        call_sid,
        from: from.clone(),
        to: get("To"),
        direction: direction(&params),
        policy: live.policy.name.clone(),
        policy_version: live.policy.version.clone(),
        exp: 0,
        outbound: None,
        resume: None,
    };
    placement::connect(&app, "", &url, action.as_deref(), claims)
}

/// Every node full: the policy's busy line, then the hang-up, on record
/// as a rejected call (`rejected_no_capacity`).
fn refuse_busy(
    app: &AppState,
    params: &BTreeMap<String, String>,
    named: Option<&String>,
    line: &str,
) -> Response {
    record_rejection(app, params, named, "no_capacity");
    (
        [(header::CONTENT_TYPE, "text/xml; charset=utf-8")],
        twiml::say_and_hang_up(line),
    )
        .into_response()
}

/// `<Reject/>`, counted, with a call record saying why. A webhook replayed
/// for a call already on record changes nothing of it (first record wins).
fn reject(
    app: &AppState,
    params: &BTreeMap<String, String>,
    named: Option<&String>,
    reason: &'static str,
) -> Response {
    record_rejection(app, params, named, reason);
    (
        [(header::CONTENT_TYPE, "text/xml; charset=utf-8")],
        twiml::reject(),
    )
        .into_response()
}

/// Counts a call refused at the webhook and puts it on record (first record wins).
fn record_rejection(
    app: &AppState,
    params: &BTreeMap<String, String>,
    named: Option<&String>,
    reason: &'static str,
) {
    metrics::counter!(CALLS_REJECTED, "reason" => reason).increment(1);
    let call_sid = params.get("CallSid").cloned().unwrap_or_default();
    tracing::info!(call_sid = %hark_actors::util::Escaped(&call_sid), from = %crate::pii::mask(params.get("From").map_or("", |s| s)), reason, "call rejected");
    if !call_sid.is_empty() && !app.live_calls.is_live(&call_sid) {
        let get = |k: &str| params.get(k).cloned().unwrap_or_default();
        let live = app.policies.route(&get("To"), named.map(String::as_str));
        app.records.send(Record::CallRejected {
            call_sid,
            direction: direction(params),
            from: get("From"),
            to: get("To"),
            policy: live.policy.name.clone(),
            policy_version: live.policy.version.clone(),
            node: app.node.clone(),
            at_ms: now_ms(),
            end_reason: format!("rejected_{reason}"),
        });
    }
}

/// Twilio's call status callback (`statusCallback`): the status goes on the
/// call's record as an event.
pub async fn status(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    uri: Uri,
    Query(query): Query<BTreeMap<String, String>>,
    client: Option<Extension<ClientAddr>>,
    Form(params): Form<BTreeMap<String, String>>,
) -> Response {
    let Some(host) = host(&app, &headers) else {
        return refuse(StatusCode::BAD_REQUEST, "no usable Host header");
    };
    let url = request_url(&headers, &uri, &host, "https", "http");
    if let Some(refused) = check(
        &app,
        "status",
        &headers,
        &url,
        &pairs(&params),
        client.map(|c| c.0),
    ) {
        return refused;
    }
    let (Some(call_sid), Some(status)) = (params.get("CallSid"), params.get("CallStatus")) else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "CallSid and CallStatus are required",
        );
    };
    if !ids::is_call_sid(call_sid) {
        return refuse(StatusCode::BAD_REQUEST, "CallSid is not a Twilio call SID");
    }
    // Normalised to the carrier port's statuses (`in_progress`, `no_answer`…).
    let Some(status) = call_status::parse(status) else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "CallStatus is not one Twilio documents",
        );
    };
    // Status callbacks carry their own sequence number; kept apart from the
    // call's own events.
    let seq = params
        .get("SequenceNumber")
        .and_then(|s| s.parse::<u32>().ok())
        .unwrap_or(0);
    // A final status for a call another node holds (away on hold there)
    // is that node's to act on.
    if status.is_final()
        && let Some(answer) =
            super::owner::forward_to_owner(&app, call_sid, &headers, &uri, &params).await
    {
        return answer;
    }
    // A call away from its stream (on hold for a transfer) ends here: no
    // stream will say so.
    if status.is_final()
        && app.switchboard.is_waiting(call_sid)
        && let Some(supervisor) = app.switchboard.supervisor(call_sid)
    {
        let _ = supervisor.send_message(hark_actors::SupervisorMsg::Hangup {
            reason: hark_actors::EndReason::Completed,
        });
    }
    let mut detail = status.as_str().to_owned();
    if let Some(d) = params
        .get("CallDuration")
        .and_then(|d| d.parse::<u64>().ok())
    {
        detail.push_str(&format!(" after {d} s"));
    }
    // A call Hark placed: its placement follows the carrier's state.
    if let Some(id) = query.get("outbound") {
        // Twilio's own name (`initiated` is its own state there).
        let raw = params.get("CallStatus").map_or("", String::as_str);
        let sid = Some(call_sid.as_str()).filter(|s| hark_carrier::twilio::ids::is_call_sid(s));
        app.dialer.status(id, raw, sid);
    }
    app.records.send(Record::Event {
        call_sid: call_sid.clone(),
        seq: STATUS_EVENT_BASE + seq.min(999_999),
        kind: "twilio_status".into(),
        detail,
        private: false,
        at_ms: now_ms(),
    });
    StatusCode::NO_CONTENT.into_response()
}

/// What carriers put in `From` for a caller who withholds their number,
/// spelled on a keypad: ANONYMOUS, RESTRICTED, UNKNOWN, BLOCKED, UNAVAILABLE.
const WITHHELD: [&str; 5] = [
    "+266696687",
    "+7378742833",
    "+8656696",
    "+2562533",
    "+86282452253",
];

/// The caller's number in E.164, if `from` names one: a valid number (by
/// libphonenumber's rules), not a carrier's stand-in for a withheld one.
pub fn caller_identity(from: &str) -> Option<String> {
    let from = from.trim();
    if !from.starts_with('+') || WITHHELD.contains(&from) {
        return None;
    }
    let number = phonenumber::parse(None, from).ok()?;
    phonenumber::is_valid(&number)
        .then(|| number.format().mode(phonenumber::Mode::E164).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn withheld_and_invalid_numbers_are_nobody() {
        assert_eq!(
            caller_identity("+14155550100").as_deref(),
            Some("+14155550100")
        );
        assert_eq!(
            caller_identity(" +919876543210 ").as_deref(),
            Some("+919876543210")
        );
        for nobody in [
            "",
            "anonymous",
            "Restricted",
            "+266696687",
            "+7378742833",
            "+8656696",
            "+2562533",
            "+86282452253",
            "+1",
            "+999999999999999",
            "12345",
        ] {
            assert_eq!(caller_identity(nobody), None, "{nobody}");
        }
    }
}
