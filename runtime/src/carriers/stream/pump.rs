//! One stream of a call: the carrier's messages in (decoded, counted,
//! rate-limited, delivered), the call's commands out (batched into one
//! flush), until the stream or the call ends. A stream that ends while the
//! caller is away for a transfer leaves the call running.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket};
use futures::{SinkExt, StreamExt};
use hark_actors::CallContext;
use hark_actors::media_in::deliver;
use hark_actors::metrics as m;
use hark_actors::{EndReason, SupervisorMsg};
use hark_carrier::port::{BadInput, Decoded, Event, Frame, StreamCodec};
use metrics::Counter;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Error as WsError;
use tracing::Span;

use super::dtmf::TokenBucket;
use super::writer::Writer;
use super::{BadLog, DTMF_DROPPED, HARD_MESSAGE_LIMIT};
use crate::state::AppState;

/// A call's tree as one stream sees it.
pub(super) struct Attached {
    pub(super) ctx: Arc<CallContext>,
    pub(super) supervisor: ractor::ActorRef<SupervisorMsg>,
    /// True once the tree has ended.
    pub(super) ended: watch::Receiver<bool>,
    /// The call's commands for this stream.
    pub(super) rx: mpsc::Receiver<hark_actors::Command>,
}

/// One stream of a call: the carrier's messages in, the call's commands
/// out, until the stream or the call ends.
pub(super) async fn pump<C: StreamCodec>(
    mut socket: WebSocket,
    app: Arc<AppState>,
    codec: C,
    bad: BadLog,
    call: Attached,
) {
    let Attached {
        ctx,
        supervisor,
        mut ended,
        mut rx,
    } = call;
    let mut writer = Writer::new(codec);
    let write_timeout = app.config.write_timeout();
    let mut session = Session {
        ctx: Arc::clone(&ctx),
        span: ctx.span.clone(),
        bad,
        frames_received: metrics::counter!(m::FRAMES_RECEIVED),
        dtmf_dropped: metrics::counter!(DTMF_DROPPED),
        max_bytes: app.config.max_message_bytes,
        messages: 0,
        dtmf: TokenBucket::new(app.config.call.dtmf_per_second),
        dtmf_logged: false,
    };
    let done = async move {
        let _ = ended.wait_for(|over| *over).await;
    };
    tokio::pin!(done);
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
    // One task per stream reads the carrier's messages and writes the call's.
    loop {
        tokio::select! {
            // Almost every wake-up is a frame from the carrier: look there first.
            biased;
            msg = socket.next() => {
                let Some(reason) = session.on_frame(&mut writer.codec, msg) else { continue };
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
                    tracing::warn!(parent: &session.span, timeout_secs = media_timeout.as_secs(), "nothing from the carrier in time; ending the call");
                    let _ = supervisor.send_message(SupervisorMsg::Hangup { reason: EndReason::MediaTimeout });
                    break;
                }
            }
        }
    }
    if !finished {
        if ctx.is_away() {
            // The caller left this stream for a transfer; the call goes on.
            app.switchboard.stream_ended(&ctx.ids.call_id);
            let _ = tokio::time::timeout(Duration::from_secs(2), socket.close()).await;
            return;
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), &mut done).await;
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
}

struct Session {
    ctx: Arc<CallContext>,
    span: Span,
    bad: BadLog,
    frames_received: Counter,
    dtmf_dropped: Counter,
    max_bytes: usize,
    /// Messages received: the inactivity check watches it move.
    messages: u64,
    dtmf: TokenBucket,
    dtmf_logged: bool,
}

impl Session {
    /// Handles one read from the socket; `Some(reason)` ends the call.
    fn on_frame<C: StreamCodec>(
        &mut self,
        codec: &mut C,
        msg: Option<Result<Message, axum::Error>>,
    ) -> Option<EndReason> {
        let msg = match msg {
            None => return Some(EndReason::SocketClosed),
            Some(Err(e)) => {
                let e = e.into_inner();
                // A message over the hard limit leaves the stream unreadable.
                if let Some(WsError::Capacity(cap)) = e.downcast_ref::<WsError>() {
                    self.bad
                        .report(&self.span, &BadInput::TooLarge(HARD_MESSAGE_LIMIT));
                    tracing::warn!(parent: &self.span, error = %cap, "stream unusable; ending the call");
                    return Some(EndReason::BadStream);
                }
                tracing::info!(parent: &self.span, error = %e, "socket error");
                return Some(EndReason::SocketClosed);
            }
            Some(Ok(msg)) => msg,
        };
        self.messages = self.messages.wrapping_add(1);
        let decoded = match &msg {
            Message::Text(text) if text.len() > self.max_bytes => {
                Err(BadInput::TooLarge(text.len()))
            }
            Message::Text(text) => codec.decode(Frame::Text(text.as_str())),
            Message::Binary(bytes) => codec.decode(Frame::Binary(bytes)),
            Message::Close(_) => return Some(EndReason::SocketClosed),
            Message::Ping(_) | Message::Pong(_) => return None,
        };
        match decoded {
            Ok(Decoded::Event(event)) => self.on_event(event),
            Ok(Decoded::Ignored { what }) => {
                tracing::debug!(parent: &self.span, what, "ignored");
                None
            }
            Ok(Decoded::Start(_)) => {
                self.bad.report(&self.span, &BadInput::DuplicateStart);
                None
            }
            Err(e) => {
                if e == BadInput::BadBase64 {
                    // A media message all the same, only its payload unusable.
                    self.frames_received.increment(1);
                }
                self.bad.report(&self.span, &e);
                None
            }
        }
    }

    fn on_event(&mut self, event: Event<'_>) -> Option<EndReason> {
        match event {
            Event::Audio { .. } => {
                self.frames_received.increment(1);
                deliver(&self.ctx, event);
            }
            Event::Dtmf { .. } => {
                if !self.dtmf.take(Instant::now()) {
                    // Each digit is a caller turn (and an LLM request).
                    self.dtmf_dropped.increment(1);
                    if !self.dtmf_logged {
                        self.dtmf_logged = true;
                        tracing::warn!(parent: &self.span, per_second = self.dtmf.rate, "DTMF faster than the call's limit; the excess is dropped (only counted from now on)");
                    }
                } else if !deliver(&self.ctx, event) {
                    self.bad.report(&self.span, &BadInput::Flood);
                }
            }
            Event::Played { .. } => {
                if !deliver(&self.ctx, event) {
                    self.bad.report(&self.span, &BadInput::Flood);
                }
            }
            Event::Stop => return Some(EndReason::Stop),
        }
        None
    }
}
