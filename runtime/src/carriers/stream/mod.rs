//! One carrier media stream: the WebSocket between a carrier and a call's
//! actor tree, for any carrier with a [`StreamCodec`].
//!
//! One task per stream decodes the carrier's messages into port events for
//! the call, and drains the call's commands into the socket, batching
//! whatever is ready into one flush. Bad input is counted by reason, logged
//! once per call per reason, and skipped; the call only ends when the stream
//! itself is unusable.
//!
//! Before a call starts, its `start` must carry a valid stream token for its
//! call SID (required when Twilio signatures are on; checked whenever one is
//! present), and no other stream of the call may be live on this node. Once
//! it runs, nothing lives forever: a stream silent for `media_timeout_secs`
//! ends the call, every socket write has `write_timeout_secs`, DTMF is
//! rate-limited, and DTMF and echoed marks each have a bounded queue.
//!
//! A call outlives its streams: the session that starts a call hands it to
//! an owner task (admission, registry claim) and the switchboard; a stream
//! that ends while the caller is away (a transfer) leaves the call running,
//! and a new stream of that call attaches to the same tree.
//!
//! # Layout
//! - [`pump`] — one stream of a call: messages in, commands out.
//! - [`writer`] — batched, deadline-bound socket writes; [`dtmf`] — the
//!   per-call DTMF limit; [`rules`] — who the consent rule asks, profanity
//!   blocks; [`resume`] — a call taken over from a lost node: its turns
//!   and slots read back.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures::StreamExt;
use hark_actors::fault::FaultPlan;
use hark_actors::metrics as m;
use hark_actors::records::Record;
use hark_actors::util::Escaped;
use hark_actors::{CallArgs, CallIds, EndReason, SupervisorMsg, start_call};
use hark_carrier::port::{BadInput, Decoded, Frame, StreamCodec, StreamStart};
use tokio::sync::{mpsc, watch};
use tracing::Span;

use crate::carriers::CALLS_REJECTED;

mod dtmf;
mod pump;
mod resume;
mod rules;
mod writer;

use crate::cluster::{CallClaim, Refused};
use crate::lifecycle::CallSlot;
use crate::state::AppState;
use crate::stream_token::{self, StreamClaims, TokenError};
use pump::{Attached, pump};

/// `hark_dtmf_dropped_total`: digits over the per-call rate.
pub const DTMF_DROPPED: &str = "hark_dtmf_dropped_total";

/// Outbound messages queued per call. Pacing keeps ~20 in flight, so a full
/// queue means the socket has stopped draining.
const OUTBOUND_QUEUE: usize = 512;

/// The stream's read buffer: Twilio frames are ~400 bytes; larger messages
/// take several reads. tungstenite zero-fills it on every read, so small is cheap.
pub const READ_BUFFER_BYTES: usize = 1024;

/// Hard limit per WebSocket message. Between `max_message_bytes` and this a
/// message is skipped and the call goes on; beyond it the stream is unusable.
pub const HARD_MESSAGE_LIMIT: usize = 1 << 20;

/// Which bad-message reasons this call has already logged.
struct BadLog {
    logged: u32,
}

impl BadLog {
    fn report(&mut self, span: &Span, bad: &BadInput) {
        metrics::counter!(m::BAD_MESSAGES, "reason" => bad.reason()).increment(1);
        let bit = 1 << bad.index();
        if self.logged & bit == 0 {
            self.logged |= bit;
            tracing::warn!(parent: span, reason = bad.reason(), error = %bad, "bad carrier message skipped (more of this kind are only counted)");
        }
    }
}

pub async fn run<C: StreamCodec>(mut socket: WebSocket, app: Arc<AppState>, slot: CallSlot) {
    let pre_span = tracing::info_span!(
        "stream",
        carrier = C::CARRIER,
        call_id = tracing::field::Empty
    );
    let mut bad = BadLog { logged: 0 };
    let mut codec = C::new();

    let start = match await_start(&mut socket, &mut codec, &app, &pre_span, &mut bad).await {
        Ok(start) => start,
        Err(Some(reason)) => {
            refuse(&mut socket, reason).await;
            return;
        }
        Err(None) => return,
    };
    let claims = match call_claims(&app, &start) {
        Ok(claims) => claims,
        Err(e) => {
            metrics::counter!(CALLS_REJECTED, "reason" => "bad_token").increment(1);
            tracing::warn!(parent: &pre_span, reason = e.label(), error = %e, "stream refused: no valid stream token for this call");
            refuse(&mut socket, e.label()).await;
            return;
        }
    };
    // A call away from its stream (back from hold) goes on on this one.
    if let Some((ctx, supervisor, ended)) = app.switchboard.attach(&start.call_id) {
        // The call keeps the place it was admitted with.
        drop(slot);
        let (tx, rx) = mpsc::channel(OUTBOUND_QUEUE);
        ctx.outbound.replace(tx);
        let _ = supervisor.send_message(SupervisorMsg::StreamAttached {
            stream_id: start.stream_id.clone(),
        });
        let call = Attached {
            ctx,
            supervisor,
            ended,
            rx,
        };
        return pump(socket, app, codec, bad, call).await;
    }
    let claim = match CallClaim::new(&app.live_calls, &start.call_id) {
        Ok(claim) => claim,
        Err(why) => {
            metrics::counter!(CALLS_REJECTED, "reason" => "duplicate_call").increment(1);
            tracing::warn!(parent: &pre_span, ?why, "stream refused: this call already has a live stream");
            refuse(
                &mut socket,
                match why {
                    Refused::Duplicate => "duplicate_call",
                    Refused::TooManyStreams => "too_many_streams",
                },
            )
            .await;
            return;
        }
    };
    let ids = CallIds {
        carrier: C::CARRIER,
        call_id: start.call_id.clone(),
        stream_id: start.stream_id.clone(),
    };
    let fault = fault_plan(&app, &start, &pre_span);
    let (tx, rx) = mpsc::channel(OUTBOUND_QUEUE);
    // The policy (and version) the webhook chose; an unsigned local stream
    // without a token names it, or is routed by its `to`.
    let live = if claims.policy_version.is_empty() && claims.policy.is_empty() {
        app.policies.route(&claims.to, None)
    } else {
        app.policies.resolve(&claims.policy, &claims.policy_version)
    };
    let caller = claims.from.clone();
    // The other party: the callee of a call Hark placed.
    let other_party = if claims.direction.starts_with("outbound") {
        claims.to.clone()
    } else {
        claims.from.clone()
    };
    let ask_consent = rules::asks_consent(&live.policy, &claims);
    let placed = match &claims.outbound {
        Some(id) => Some(app.dialer.placed(id, &app.lookups, &app.pii).await),
        None => None,
    };
    // A call taken over from a lost node goes on from its records.
    let (resumed, record_base) = match claims.resume {
        Some(index) => (
            resume::resumed(&app, &ids.call_id, &pre_span).await,
            claim
                .record_base()
                .max(index.saturating_mul(crate::cluster::live_calls::RECORDS_PER_STREAM)),
        ),
        None => (Default::default(), claim.record_base()),
    };
    if let Some(cluster) = &app.cluster {
        cluster.call_started(&ids.call_id).await;
    }
    app.records.send(Record::CallStarted {
        call_sid: ids.call_id.clone(),
        stream_sid: ids.stream_id.clone(),
        carrier: C::CARRIER.into(),
        direction: claims.direction.clone(),
        from: claims.from.clone(),
        to: claims.to.clone(),
        policy: live.policy.name.clone(),
        policy_version: live.policy.version.clone(),
        node: app.node.clone(),
        started_at_ms: hark_actors::records::now_ms(),
    });
    let call = match start_call(CallArgs {
        placed,
        resumed,
        ids: ids.clone(),
        capabilities: start.capabilities,
        policy: Arc::clone(&live.policy),
        providers: live.providers.clone(),
        settings: app.config.call.clone(),
        outbound: tx,
        fault,
        records: Arc::clone(&app.records),
        recordings: Some(app.recordings.sink()),
        transfer: app.desk.clone(),
        record_base,
        ask_consent,
        languages: Arc::clone(&live.languages),
    })
    .await
    {
        Ok(call) => call,
        Err(e) => {
            tracing::error!(parent: &pre_span, error = %e, "could not start the call");
            app.records.send(Record::CallEnded {
                call_sid: ids.call_id.clone(),
                ended_at_ms: hark_actors::records::now_ms(),
                end_reason: "start_failed".into(),
            });
            return;
        }
    };
    // The call outlives this stream when the caller is away for a
    // transfer: one task owns it (its admission, its claim) until its tree ends.
    let (ended_tx, ended) = watch::channel(false);
    let placement = claims.outbound.clone();
    app.switchboard.add(
        Arc::clone(&call.ctx),
        call.supervisor.clone(),
        claims,
        ended.clone(),
    );
    // A verdict that came while the tree was starting reaches it now.
    if let Some(verdict) = placement.and_then(|id| app.dialer.take_verdict(&id)) {
        let _ = call
            .supervisor
            .send_message(SupervisorMsg::Answered(verdict));
    }
    let owner = Arc::clone(&app);
    let ctx = Arc::clone(&call.ctx);
    let active = ActiveCall::new();
    tokio::spawn(async move {
        let _ = call.done.await;
        owner.switchboard.remove(&ctx.ids.call_id);
        // Before the stream closes: a `<Connect action>` then finds it ended.
        if let Some(cluster) = &owner.cluster {
            cluster.call_ended(&ctx.ids.call_id).await;
        }
        let _ = ended_tx.send(true);
        match ctx.end_reason() {
            Some(EndReason::Profanity) => {
                rules::block_for_profanity(&owner, &caller, live.policy.rules.profanity.block_days);
            }
            Some(EndReason::DoNotCall) => rules::do_not_call(&owner, &other_party),
            _ => {}
        }
        drop(active);
        drop(claim);
        drop(slot);
    });
    let call = Attached {
        ctx: Arc::clone(&call.ctx),
        supervisor: call.supervisor,
        ended,
        rx,
    };
    pump(socket, app, codec, bad, call).await;
}

/// Who the call is, from its stream token; from the stream's own parameters
/// only when Twilio signatures are off and no token was given (local tools).
fn call_claims(app: &AppState, start: &StreamStart) -> Result<StreamClaims, TokenError> {
    let param = |k: &str| start.params.get(k).cloned().unwrap_or_default();
    match start.params.get(stream_token::PARAM) {
        Some(token) => app
            .stream_tokens
            .verify(token, &start.call_id, stream_token::now_secs()),
        None if app.twilio_auth_token.is_some() => Err(TokenError::Missing),
        None => Ok(StreamClaims {
            call_sid: start.call_id.clone(),
            from: param("from"),
            to: param("to"),
            direction: match param("direction").as_str() {
                "" => "inbound".into(),
                d => d.to_owned(),
            },
            policy: param("policy"),
            policy_version: String::new(),
            exp: 0,
            outbound: None,
            resume: None,
        }),
    }
}

/// Closes a stream that may not become a call, saying why.
async fn refuse(socket: &mut WebSocket, reason: &'static str) {
    let close = Message::Close(Some(CloseFrame {
        code: 1008, // policy violation
        reason: reason.into(),
    }));
    let _ = tokio::time::timeout(Duration::from_secs(2), socket.send(close)).await;
}

/// Counts a started call in `hark_calls_total` and, while it lasts, `hark_calls_active`.
struct ActiveCall;

impl ActiveCall {
    fn new() -> Self {
        metrics::counter!(m::CALLS_TOTAL).increment(1);
        metrics::gauge!(m::CALLS_ACTIVE).increment(1.0);
        Self
    }
}

impl Drop for ActiveCall {
    fn drop(&mut self) {
        metrics::gauge!(m::CALLS_ACTIVE).decrement(1.0);
    }
}

/// Reads until the stream starts. `Err(Some(reason))`: refuse the stream
/// with `reason` (a start no call may come of); `Err(None)`: it ended or
/// never started.
async fn await_start<C: StreamCodec>(
    stream: &mut WebSocket,
    codec: &mut C,
    app: &AppState,
    span: &Span,
    bad: &mut BadLog,
) -> Result<StreamStart, Option<&'static str>> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(app.config.start_timeout_secs);
    loop {
        let msg = match tokio::time::timeout_at(deadline, stream.next()).await {
            Err(_) => {
                tracing::warn!(parent: span, "no start message in time; closing the stream");
                return Err(None);
            }
            Ok(None) | Ok(Some(Err(_))) => return Err(None),
            Ok(Some(Ok(msg))) => msg,
        };
        let decoded = match &msg {
            Message::Text(t) if t.len() > app.config.max_message_bytes => {
                Err(BadInput::TooLarge(t.len()))
            }
            Message::Text(t) => codec.decode(Frame::Text(t.as_str())),
            Message::Binary(b) => codec.decode(Frame::Binary(b)),
            Message::Close(_) => return Err(None),
            _ => continue,
        };
        match decoded {
            Ok(Decoded::Start(start)) => {
                span.record("call_id", tracing::field::display(Escaped(&start.call_id)));
                return Ok(start);
            }
            Ok(Decoded::Ignored { .. }) => {}
            Ok(Decoded::Event(_)) => {
                bad.report(span, &BadInput::Invalid("an event before start".into()))
            }
            Err(e @ (BadInput::UnsupportedFormat(_) | BadInput::BadCallId(_))) => {
                // No call can come of this stream.
                bad.report(span, &e);
                tracing::warn!(parent: span, reason = e.reason(), error = %EscapedError(&e), "stream refused");
                return Err(Some(e.reason()));
            }
            Err(e) => bad.report(span, &e),
        }
    }
}

/// A bad-input error for a log line: its text may carry the peer's bytes.
struct EscapedError<'a>(&'a BadInput);

impl std::fmt::Display for EscapedError<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", Escaped(&self.0.to_string()))
    }
}

fn fault_plan(app: &AppState, start: &StreamStart, span: &Span) -> Option<FaultPlan> {
    let spec = start.params.get("hark_fault")?;
    if !app.config.call.fault_injection {
        tracing::warn!(parent: span, "hark_fault parameter ignored: call.fault_injection is off");
        return None;
    }
    match FaultPlan::parse(spec) {
        Ok(plan) => {
            tracing::warn!(parent: span, spec = %Escaped(spec), "fault injection armed for this call");
            Some(plan)
        }
        Err(e) => {
            tracing::warn!(parent: span, error = %e, "bad hark_fault parameter ignored");
            None
        }
    }
}
