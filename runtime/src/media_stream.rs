//! One Twilio Media Stream: the WebSocket between Twilio and a call's actor tree.
//!
//! One task per stream parses Twilio's messages and feeds the call, and
//! drains the call's outbound queue into the socket, batching whatever is
//! ready into one flush. Bad input is counted by reason, logged once per call
//! per reason, and skipped; the call only ends when the stream itself is
//! unusable.
//!
//! Before a call starts, its `start` must carry a valid stream token for its
//! call SID (required when Twilio signatures are on; checked whenever one is
//! present), and no other stream of the call may be live on this node. Once
//! it runs, nothing lives forever: a stream silent for `media_timeout_secs`
//! ends the call, every socket write has `write_timeout_secs`, DTMF is
//! rate-limited and echoed marks share a bounded queue.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use futures::{SinkExt, StreamExt};
use hark_actors::call::CallContext;
use hark_actors::fault::FaultPlan;
use hark_actors::media_in::{deliver_dtmf, deliver_mark, deliver_media};
use hark_actors::metrics as m;
use hark_actors::records::Record;
use hark_actors::util::Escaped;
use hark_actors::{CallArgs, CallIds, EndReason, MarkId, Outbound, SupervisorMsg, start_call};
use metrics::Counter;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Error as WsError;
use tracing::Span;

use crate::cluster::{CallClaim, Refused};
use crate::lifecycle::CallSlot;
use crate::server::AppState;
use crate::stream_token::{self, StreamClaims, TokenError};
use crate::twilio::messages::{MarkBody, OutMedia, StartMeta};
use crate::twilio::{BadMessage, HarkMessage, TwilioEvent};
use crate::webhooks::CALLS_REJECTED;

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
    fn report(&mut self, span: &Span, bad: &BadMessage) {
        metrics::counter!(m::BAD_MESSAGES, "reason" => bad.reason()).increment(1);
        let bit = 1 << bad.index();
        if self.logged & bit == 0 {
            self.logged |= bit;
            tracing::warn!(parent: span, reason = bad.reason(), error = %bad, "bad Twilio message skipped (more of this kind are only counted)");
        }
    }
}

pub async fn run(mut socket: WebSocket, app: Arc<AppState>, slot: CallSlot) {
    let pre_span = tracing::info_span!("stream", call_sid = tracing::field::Empty);
    let mut bad = BadLog { logged: 0 };

    let Some(start) = await_start(&mut socket, &app, &pre_span, &mut bad).await else {
        return;
    };
    if !start.media_format.is_mulaw_8k_mono() {
        let err = BadMessage::UnsupportedFormat(format!("{:?}", start.media_format));
        bad.report(&pre_span, &err);
        return;
    }
    let claims = match call_claims(&app, &start) {
        Ok(claims) => claims,
        Err(e) => {
            metrics::counter!(CALLS_REJECTED, "reason" => "bad_token").increment(1);
            tracing::warn!(parent: &pre_span, reason = e.label(), error = %e, "stream refused: no valid stream token for this call");
            refuse(&mut socket, e.label()).await;
            return;
        }
    };
    let claim = match CallClaim::new(&app.live_calls, &start.call_sid) {
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
        call_sid: start.call_sid.clone(),
        stream_sid: start.stream_sid.clone(),
        account_sid: start.account_sid.clone(),
    };
    let fault = fault_plan(&app, &start, &pre_span);
    let (tx, mut rx) = mpsc::channel(OUTBOUND_QUEUE);
    let live = app.live();
    app.records.send(Record::CallStarted {
        call_sid: ids.call_sid.clone(),
        stream_sid: ids.stream_sid.clone(),
        direction: claims.direction,
        from: claims.from,
        to: claims.to,
        policy: live.policy.name.clone(),
        policy_version: live.policy.version.clone(),
        node: app.node.clone(),
        started_at_ms: hark_actors::records::now_ms(),
    });
    let call = match start_call(CallArgs {
        ids: ids.clone(),
        policy: Arc::clone(&live.policy),
        providers: live.providers.clone(),
        settings: app.config.call.clone(),
        outbound: tx,
        fault,
        records: Arc::clone(&app.records),
        record_base: claim.record_base(),
    })
    .await
    {
        Ok(call) => call,
        Err(e) => {
            tracing::error!(parent: &pre_span, error = %e, "could not start the call");
            app.records.send(Record::CallEnded {
                call_sid: ids.call_sid.clone(),
                ended_at_ms: hark_actors::records::now_ms(),
                end_reason: "start_failed".into(),
            });
            return;
        }
    };
    let active = ActiveCall::new();
    let mut writer = Writer::new(ids.stream_sid.clone());
    let write_timeout = app.config.write_timeout();
    let mut session = Session {
        ctx: Arc::clone(&call.ctx),
        span: call.ctx.span.clone(),
        bad,
        frames_received: metrics::counter!(m::FRAMES_RECEIVED),
        dtmf_dropped: metrics::counter!(DTMF_DROPPED),
        decoded: Vec::with_capacity(hark_actors::ulaw::FRAME_SAMPLES),
        max_bytes: app.config.max_message_bytes,
        messages: 0,
        dtmf: TokenBucket::new(app.config.call.dtmf_per_second),
        dtmf_logged: false,
    };
    let supervisor = call.supervisor.clone();
    let mut done = call.done;
    let mut grace = app.lifecycle.grace_over();
    let mut ending = false;
    let mut finished = false;
    // Inactivity is checked on a coarse tick against a message count, so
    // the per-frame path only bumps an integer.
    let media_timeout = app.config.media_timeout();
    let tick = (media_timeout / 5).max(Duration::from_millis(100));
    let mut idle_check = tokio::time::interval_at(Instant::now() + tick, tick);
    idle_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seen = 0u64;
    let mut quiet_since = Instant::now();
    // One task per stream reads Twilio's messages and writes the call's.
    loop {
        tokio::select! {
            // Almost every wake-up is a frame from Twilio: look there first.
            biased;
            msg = socket.next() => {
                let Some(reason) = session.on_frame(msg) else { continue };
                let _ = supervisor.send_message(SupervisorMsg::Hangup { reason });
                break;
            }
            Some(out) = rx.recv(), if !writer.closed => {
                let Err(reason) = writer.write_within(&mut socket, out, &mut rx, write_timeout).await else {
                    continue;
                };
                if reason == EndReason::OutboundStalled {
                    tracing::warn!(parent: &session.span, timeout_secs = write_timeout.as_secs(), "socket write timed out; ending the call");
                }
                let _ = supervisor.send_message(SupervisorMsg::Hangup { reason });
                break;
            }
            _ = &mut done => { finished = true; break; }
            Ok(()) = grace.changed(), if !ending => {
                let over = *grace.borrow_and_update();
                if over {
                    ending = true;
                    let _ = supervisor.send_message(SupervisorMsg::EndCall { reason: EndReason::Shutdown });
                }
            }
            now = idle_check.tick() => {
                if session.messages != seen {
                    seen = session.messages;
                    quiet_since = now;
                } else if now.duration_since(quiet_since) >= media_timeout {
                    tracing::warn!(parent: &session.span, timeout_secs = media_timeout.as_secs(), "nothing from Twilio in time; ending the call");
                    let _ = supervisor.send_message(SupervisorMsg::Hangup { reason: EndReason::MediaTimeout });
                    break;
                }
            }
        }
    }
    if !finished {
        let _ = tokio::time::timeout(Duration::from_secs(5), done).await;
    }
    // The tree is down; send what it queued last (its close frame).
    let flush = async {
        while let Ok(out) = rx.try_recv() {
            if writer.closed || writer.write_batch(&mut socket, out, &mut rx).await.is_err() {
                break;
            }
        }
        if !writer.closed {
            let _ = socket.close().await;
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(2), flush).await;
    drop(session);
    drop(call.ctx);
    drop(active);
    drop(claim);
    drop(slot);
}

/// Who the call is, from its stream token; from the stream's own parameters
/// only when Twilio signatures are off and no token was given (local tools).
fn call_claims(app: &AppState, start: &StartMeta) -> Result<StreamClaims, TokenError> {
    let param = |k: &str| start.custom_parameters.get(k).cloned().unwrap_or_default();
    match start.custom_parameters.get(stream_token::PARAM) {
        Some(token) => app
            .stream_tokens
            .verify(token, &start.call_sid, stream_token::now_secs()),
        None if app.twilio_auth_token.is_some() => Err(TokenError::Missing),
        None => Ok(StreamClaims {
            call_sid: start.call_sid.clone(),
            from: param("from"),
            to: param("to"),
            direction: match param("direction").as_str() {
                "" => "inbound".into(),
                d => d.to_owned(),
            },
            policy: param("policy"),
            policy_version: String::new(),
            exp: 0,
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

/// Reads until `start`. Returns its metadata, or `None`
/// if the stream ends or never starts.
async fn await_start(
    stream: &mut WebSocket,
    app: &AppState,
    span: &Span,
    bad: &mut BadLog,
) -> Option<StartMeta> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(app.config.start_timeout_secs);
    loop {
        let msg = match tokio::time::timeout_at(deadline, stream.next()).await {
            Err(_) => {
                tracing::warn!(parent: span, "no start message in time; closing the stream");
                return None;
            }
            Ok(None) | Ok(Some(Err(_))) => return None,
            Ok(Some(Ok(msg))) => msg,
        };
        let text = match msg {
            Message::Text(t) => t,
            Message::Binary(_) => {
                bad.report(span, &BadMessage::Binary);
                continue;
            }
            Message::Close(_) => return None,
            _ => continue,
        };
        if text.len() > app.config.max_message_bytes {
            bad.report(span, &BadMessage::TooLarge(text.len()));
            continue;
        }
        match TwilioEvent::parse(text.as_str()) {
            Ok(TwilioEvent::Start { start, .. }) => {
                span.record(
                    "call_sid",
                    tracing::field::display(Escaped(&start.call_sid)),
                );
                return Some(start);
            }
            Ok(TwilioEvent::Connected { .. }) => {}
            Ok(TwilioEvent::Media { .. }) => bad.report(span, &BadMessage::MediaBeforeStart),
            Ok(other) => bad.report(
                span,
                &BadMessage::Invalid(format!("{} before start", other.name())),
            ),
            Err(e) => bad.report(span, &e),
        }
    }
}

fn fault_plan(app: &AppState, start: &StartMeta, span: &Span) -> Option<FaultPlan> {
    let spec = start.custom_parameters.get("hark_fault")?;
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

struct Session {
    ctx: Arc<CallContext>,
    span: Span,
    bad: BadLog,
    frames_received: Counter,
    dtmf_dropped: Counter,
    /// Reused base64 output buffer: no allocation per frame.
    decoded: Vec<u8>,
    max_bytes: usize,
    /// Messages received: the inactivity check watches it move.
    messages: u64,
    dtmf: TokenBucket,
    dtmf_logged: bool,
}

/// `rate` per second, in bursts of up to `rate`.
struct TokenBucket {
    rate: f64,
    tokens: f64,
    at: Instant,
}

impl TokenBucket {
    fn new(rate: u32) -> Self {
        let rate = f64::from(rate.max(1));
        Self {
            rate,
            tokens: rate,
            at: Instant::now(),
        }
    }

    fn take(&mut self, now: Instant) -> bool {
        let refill = now.saturating_duration_since(self.at).as_secs_f64() * self.rate;
        self.tokens = (self.tokens + refill).min(self.rate);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

impl Session {
    /// Handles one read from the socket; `Some(reason)` ends the call.
    fn on_frame(&mut self, msg: Option<Result<Message, axum::Error>>) -> Option<EndReason> {
        let msg = match msg {
            None => return Some(EndReason::SocketClosed),
            Some(Err(e)) => {
                let e = e.into_inner();
                // A message over the hard limit leaves the stream unreadable.
                if let Some(WsError::Capacity(cap)) = e.downcast_ref::<WsError>() {
                    self.bad
                        .report(&self.span, &BadMessage::TooLarge(HARD_MESSAGE_LIMIT));
                    tracing::warn!(parent: &self.span, error = %cap, "stream unusable; ending the call");
                    return Some(EndReason::BadStream);
                }
                tracing::info!(parent: &self.span, error = %e, "socket error");
                return Some(EndReason::SocketClosed);
            }
            Some(Ok(msg)) => msg,
        };
        self.messages = self.messages.wrapping_add(1);
        match msg {
            Message::Text(text) => self.on_text(&text),
            Message::Binary(_) => {
                self.bad.report(&self.span, &BadMessage::Binary);
                None
            }
            Message::Close(_) => Some(EndReason::SocketClosed),
            Message::Ping(_) | Message::Pong(_) => None,
        }
    }

    fn on_text(&mut self, text: &Utf8Bytes) -> Option<EndReason> {
        if text.len() > self.max_bytes {
            self.bad
                .report(&self.span, &BadMessage::TooLarge(text.len()));
            return None;
        }
        let event = match TwilioEvent::parse(text.as_str()) {
            Ok(e) => e,
            Err(e) => {
                self.bad.report(&self.span, &e);
                return None;
            }
        };
        let ours = |sid: &Cow<'_, str>| sid.as_ref() == self.ctx.ids.stream_sid;
        match event {
            TwilioEvent::Media {
                sequence_number,
                media,
                stream_sid,
            } => {
                if !ours(&stream_sid) {
                    self.bad.report(&self.span, &BadMessage::WrongStream);
                    return None;
                }
                self.frames_received.increment(1);
                self.decoded.clear();
                if STANDARD
                    .decode_vec(media.payload.as_bytes(), &mut self.decoded)
                    .is_err()
                {
                    self.bad.report(&self.span, &BadMessage::BadBase64);
                    return None;
                }
                deliver_media(&self.ctx, sequence_number.0, &self.decoded);
            }
            TwilioEvent::Dtmf {
                sequence_number,
                dtmf,
                stream_sid,
            } => {
                let digit = dtmf.digit.chars().next().filter(|d| {
                    dtmf.digit.len() == 1 && (d.is_ascii_digit() || "*#ABCD".contains(*d))
                });
                match (ours(&stream_sid), digit) {
                    (true, Some(digit)) => {
                        if !self.dtmf.take(Instant::now()) {
                            // Each digit is a caller turn (and an LLM request).
                            self.dtmf_dropped.increment(1);
                            if !self.dtmf_logged {
                                self.dtmf_logged = true;
                                tracing::warn!(parent: &self.span, per_second = self.dtmf.rate, "DTMF faster than the call's limit; the excess is dropped (only counted from now on)");
                            }
                        } else if !deliver_dtmf(&self.ctx, sequence_number.0, digit) {
                            self.bad.report(&self.span, &BadMessage::Flood);
                        }
                    }
                    (false, _) => self.bad.report(&self.span, &BadMessage::WrongStream),
                    (true, None) => self.bad.report(
                        &self.span,
                        &BadMessage::Invalid(format!("dtmf digit {:?}", dtmf.digit)),
                    ),
                }
            }
            TwilioEvent::Mark {
                sequence_number,
                mark,
                stream_sid,
            } => {
                if !ours(&stream_sid) {
                    self.bad.report(&self.span, &BadMessage::WrongStream);
                    return None;
                }
                // Only our own marks mean anything; parsed here, no copy travels.
                match MarkId::parse(&mark.name) {
                    Some(id) => {
                        if !deliver_mark(&self.ctx, sequence_number.0, id) {
                            self.bad.report(&self.span, &BadMessage::Flood);
                        }
                    }
                    None => {
                        tracing::debug!(parent: &self.span, name = %Escaped(&mark.name), "ignoring a foreign mark")
                    }
                }
            }
            TwilioEvent::Stop { .. } => return Some(EndReason::Stop),
            TwilioEvent::Start { .. } => self.bad.report(&self.span, &BadMessage::DuplicateStart),
            TwilioEvent::Connected { .. } => {
                tracing::debug!(parent: &self.span, "connected after start ignored");
            }
        }
        None
    }
}

/// Serializes the call's outbound messages into reused buffers.
struct Writer {
    stream_sid: String,
    b64: String,
    name: String,
    json: Vec<u8>,
    /// A close frame was sent: nothing more goes out.
    closed: bool,
}

impl Writer {
    fn new(stream_sid: String) -> Self {
        Self {
            stream_sid,
            b64: String::with_capacity(1200),
            name: String::with_capacity(24),
            json: Vec::with_capacity(1400),
            closed: false,
        }
    }

    fn encode(&mut self, out: Outbound) -> Message {
        let sid = Cow::Borrowed(self.stream_sid.as_str());
        let msg = match out {
            Outbound::Media(audio) => {
                self.b64.clear();
                STANDARD.encode_string(&audio, &mut self.b64);
                HarkMessage::Media {
                    stream_sid: sid,
                    media: OutMedia {
                        payload: Cow::Borrowed(&self.b64),
                    },
                }
            }
            Outbound::Mark(id) => {
                self.name.clear();
                let _ = write!(self.name, "{id}");
                HarkMessage::Mark {
                    stream_sid: sid,
                    mark: MarkBody {
                        name: Cow::Borrowed(&self.name),
                    },
                }
            }
            Outbound::Clear => HarkMessage::Clear { stream_sid: sid },
            Outbound::Close(reason) => {
                self.closed = true;
                return Message::Close(Some(CloseFrame {
                    code: 1000,
                    reason: reason.as_str().into(),
                }));
            }
        };
        msg.write_json(&mut self.json);
        // The frame owns its bytes; the buffer is re-made at the size it had.
        let cap = self.json.capacity();
        let text = String::from_utf8(std::mem::replace(&mut self.json, Vec::with_capacity(cap)))
            .unwrap_or_default();
        Message::Text(text.into())
    }

    /// [`Writer::write_batch`] within `limit`. A socket that takes longer is
    /// stuck (a peer that stopped reading): nothing more goes out on it.
    async fn write_within<S>(
        &mut self,
        socket: &mut S,
        first: Outbound,
        rx: &mut mpsc::Receiver<Outbound>,
        limit: Duration,
    ) -> Result<(), EndReason>
    where
        S: futures::Sink<Message> + Unpin,
    {
        match tokio::time::timeout(limit, self.write_batch(socket, first, rx)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(EndReason::SocketClosed),
            Err(_) => {
                self.closed = true;
                Err(EndReason::OutboundStalled)
            }
        }
    }

    /// Writes `first` and whatever else is already queued, then flushes once.
    async fn write_batch<S>(
        &mut self,
        socket: &mut S,
        first: Outbound,
        rx: &mut mpsc::Receiver<Outbound>,
    ) -> Result<(), S::Error>
    where
        S: futures::Sink<Message> + Unpin,
    {
        let mut next = Some(first);
        while let Some(out) = next.take() {
            let msg = self.encode(out);
            socket.feed(msg).await?;
            if self.closed {
                break;
            }
            next = rx.try_recv().ok();
        }
        socket.flush().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    /// A socket whose peer stopped reading: it never takes another message.
    struct Stuck;

    impl futures::Sink<Message> for Stuck {
        type Error = axum::Error;
        fn poll_ready(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Pending
        }
        fn start_send(self: Pin<&mut Self>, _: Message) -> Result<(), Self::Error> {
            Ok(())
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Pending
        }
        fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Pending
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_write_to_a_socket_nobody_reads_times_out_and_ends_the_call() {
        let mut writer = Writer::new("MZ1".into());
        let (_tx, mut rx) = mpsc::channel(4);
        let began = Instant::now();
        let r = writer
            .write_within(&mut Stuck, Outbound::Clear, &mut rx, Duration::from_secs(5))
            .await;
        assert_eq!(r, Err(EndReason::OutboundStalled));
        assert_eq!(began.elapsed(), Duration::from_secs(5));
        assert!(
            writer.closed,
            "nothing more may be written to a stuck socket"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn dtmf_is_limited_to_its_rate_in_bursts_of_as_many() {
        let mut bucket = TokenBucket::new(10);
        let t0 = Instant::now();
        assert_eq!((0..100).filter(|_| bucket.take(t0)).count(), 10);
        // A second later, ten more.
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!((0..100).filter(|_| bucket.take(t1)).count(), 10);
        // Half a second: five.
        let t2 = t1 + Duration::from_millis(500);
        assert_eq!((0..100).filter(|_| bucket.take(t2)).count(), 5);
    }
}
