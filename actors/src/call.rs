//! What every actor of one call shares: its ids and span, its policy and
//! providers, the routes to its (restartable) children, the turn generation,
//! the history and the outbound socket queue.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use bytes::Bytes;
use ractor::{ActorRef, Message};
use serde::{Deserialize, Serialize};
use tokio::sync::{Semaphore, mpsc};
use tracing::Span;

use crate::backlog::Backlog;
use crate::call_supervisor::SupervisorMsg;
use crate::fault::FaultPlan;
use crate::history::History;
use crate::media_in::MediaInMsg;
use crate::media_out::MediaOutMsg;
use crate::policy::PolicyMsg;
use crate::policy_file::PolicyFile;
use crate::providers::Providers;
use crate::providers::ToolCall;
use crate::stt::SttMsg;
use crate::tools::Tools;
use crate::tts::TtsMsg;
use crate::ulaw::FRAME_SAMPLES;
use crate::vad::VadMsg;

/// A bot turn's number. Advanced by the supervisor for every new bot turn and
/// on every cancellation; audio of an older generation is stale.
pub type Generation = u64;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallIds {
    pub call_sid: String,
    pub stream_sid: String,
    pub account_sid: String,
}

/// Why a call ended; the label of `hark_calls_ended_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// Twilio sent `stop` (caller hung up, or the call was redirected).
    Stop,
    /// The socket closed or failed without a `stop`.
    SocketClosed,
    /// The node is shutting down; the caller heard the goodbye line.
    Shutdown,
    /// A child kept failing; the caller heard the apology.
    RestartBudget,
    /// The stream could not be used (e.g. a message too large to read).
    BadStream,
    /// The socket could not keep up with outbound audio.
    OutboundStalled,
    /// The bot hung up (the LLM called `end_call`).
    BotEnded,
    /// Nothing arrived from Twilio for `media_timeout_secs` (Twilio sends
    /// media every 20 ms, silence included): the peer is gone.
    MediaTimeout,
    /// The call reached `call.max_duration_secs`; the caller heard the goodbye.
    MaxDuration,
}

impl EndReason {
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::Stop => "stop",
            EndReason::SocketClosed => "socket_closed",
            EndReason::Shutdown => "shutdown",
            EndReason::RestartBudget => "restart_budget",
            EndReason::BadStream => "bad_stream",
            EndReason::OutboundStalled => "outbound_stalled",
            EndReason::BotEnded => "bot_ended",
            EndReason::MediaTimeout => "media_timeout",
            EndReason::MaxDuration => "max_duration",
        }
    }
}

impl fmt::Display for EndReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A mark Hark sends after each audio chunk; Twilio echoes it once played.
/// Its wire name is `"{generation}.{seq}"`, so a client can tell which turn
/// the audio before it belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MarkId {
    pub generation: Generation,
    pub seq: u32,
}

impl MarkId {
    pub fn parse(name: &str) -> Option<Self> {
        let (g, s) = name.split_once('.')?;
        Some(Self {
            generation: g.parse().ok()?,
            seq: s.parse().ok()?,
        })
    }
}

impl fmt::Display for MarkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.generation, self.seq)
    }
}

/// What the call asks its socket writer to send to Twilio, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Outbound {
    /// μ-law 8 kHz audio.
    Media(Bytes),
    Mark(MarkId),
    Clear,
    /// Close the stream; Twilio then continues the call's TwiML (usually hangs up).
    Close(EndReason),
}

/// The children of a call, as named in logs and the `actor` metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChildKind {
    MediaIn,
    Vad,
    Stt,
    Policy,
    Tts,
    MediaOut,
}

impl ChildKind {
    pub const ALL: [ChildKind; 6] = [
        ChildKind::MediaIn,
        ChildKind::Vad,
        ChildKind::Stt,
        ChildKind::Policy,
        ChildKind::Tts,
        ChildKind::MediaOut,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ChildKind::MediaIn => "media_in",
            ChildKind::Vad => "vad",
            ChildKind::Stt => "stt",
            ChildKind::Policy => "policy",
            ChildKind::Tts => "tts",
            ChildKind::MediaOut => "media_out",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == name)
    }
}

/// Per-call runtime settings (the `[call]` section of the runtime config).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CallSettings {
    /// Child restarts allowed within `restart_window_secs` before the call is ended.
    pub restart_budget: u32,
    pub restart_window_secs: u64,
    /// How far ahead of real-time playback audio is sent to Twilio.
    pub playback_lead_ms: u64,
    /// Synthesized audio buffered in Hark per call; TTS waits when it is full.
    pub max_queued_audio_ms: u64,
    /// Inbound frames an actor may have queued before new frames are dropped.
    pub mailbox_frames: usize,
    /// Longest wait for a goodbye or apology to play before the stream is closed.
    pub goodbye_timeout_secs: u64,
    /// Test only: honour the `hark_fault` stream parameter (see `fault.rs`).
    pub fault_injection: bool,
    /// A call this long is ended with the policy's goodbye.
    pub max_duration_secs: u64,
    /// DTMF digits a call may send per second (bursts of as many); more are
    /// counted and dropped. Each digit is a caller turn and an LLM request.
    pub dtmf_per_second: u32,
}

impl Default for CallSettings {
    fn default() -> Self {
        Self {
            restart_budget: 3,
            restart_window_secs: 60,
            playback_lead_ms: 300,
            max_queued_audio_ms: 2000,
            mailbox_frames: 50,
            goodbye_timeout_secs: 15,
            fault_injection: false,
            max_duration_secs: 4 * 3600,
            dtmf_per_second: 10,
        }
    }
}

impl CallSettings {
    pub fn validate(&self) -> Vec<String> {
        let mut errors = Vec::new();
        if self.restart_window_secs == 0 {
            errors.push("call.restart_window_secs: must be at least 1".to_owned());
        }
        if !(20..=5000).contains(&self.playback_lead_ms) {
            errors.push(format!(
                "call.playback_lead_ms: {} is outside 20..=5000",
                self.playback_lead_ms
            ));
        }
        if !(200..=60_000).contains(&self.max_queued_audio_ms) {
            errors.push(format!(
                "call.max_queued_audio_ms: {} is outside 200..=60000",
                self.max_queued_audio_ms
            ));
        }
        if !(5..=5000).contains(&self.mailbox_frames) {
            errors.push(format!(
                "call.mailbox_frames: {} is outside 5..=5000",
                self.mailbox_frames
            ));
        }
        if !(1..=7 * 24 * 3600).contains(&self.max_duration_secs) {
            errors.push(format!(
                "call.max_duration_secs: {} is outside 1..=604800",
                self.max_duration_secs
            ));
        }
        if !(1..=100).contains(&self.dtmf_per_second) {
            errors.push(format!(
                "call.dtmf_per_second: {} is outside 1..=100",
                self.dtmf_per_second
            ));
        }
        errors
    }

    pub fn restart_window(&self) -> Duration {
        Duration::from_secs(self.restart_window_secs)
    }

    pub fn playback_lead(&self) -> Duration {
        Duration::from_millis(self.playback_lead_ms)
    }

    pub fn goodbye_timeout(&self) -> Duration {
        Duration::from_secs(self.goodbye_timeout_secs)
    }

    pub fn max_duration(&self) -> Duration {
        Duration::from_secs(self.max_duration_secs)
    }

    /// Audio budget in 20 ms frames.
    pub fn queued_audio_frames(&self) -> usize {
        (self.max_queued_audio_ms / 20).max(1) as usize
    }
}

/// The current address of one child. Children are respawned on failure, so
/// their senders look the address up for every message instead of keeping an
/// `ActorRef` that may be dead.
pub struct Route<M: Message>(ArcSwapOption<ActorRef<M>>);

impl<M: Message> Default for Route<M> {
    fn default() -> Self {
        Self(ArcSwapOption::empty())
    }
}

impl<M: Message> Route<M> {
    /// Sends to the child's current incarnation; false if there is none or it is gone.
    pub fn send(&self, msg: M) -> bool {
        match &*self.0.load() {
            Some(actor) => actor.send_message(msg).is_ok(),
            None => false,
        }
    }

    pub fn get(&self) -> Option<ActorRef<M>> {
        self.0.load_full().map(|a| (*a).clone())
    }

    pub(crate) fn set(&self, actor: ActorRef<M>) {
        self.0.store(Some(Arc::new(actor)));
    }
}

#[derive(Default)]
pub struct Routes {
    pub supervisor: Route<SupervisorMsg>,
    pub media_in: Route<MediaInMsg>,
    pub vad: Route<VadMsg>,
    pub stt: Route<SttMsg>,
    pub policy: Route<PolicyMsg>,
    pub tts: Route<TtsMsg>,
    pub media_out: Route<MediaOutMsg>,
}

/// Mailbox bounds for the per-frame hops.
pub struct Backlogs {
    pub media_in: Arc<Backlog>,
    /// DTMF and echoed marks queued for `MediaIn`: Twilio's own rate is a few
    /// a second, so a full queue is a flood.
    pub control: Arc<Backlog>,
    pub vad: Arc<Backlog>,
    pub stt: Arc<Backlog>,
}

/// Control messages (DTMF, mark echoes) `MediaIn` may have queued.
pub const CONTROL_BACKLOG: usize = 64;

pub struct CallContext {
    pub ids: CallIds,
    /// The call's span (`call_sid`, `stream_sid`); every actor logs under it.
    pub span: Span,
    pub policy: Arc<PolicyFile>,
    pub providers: Providers,
    pub settings: CallSettings,
    pub routes: Routes,
    generation: AtomicU64,
    history: Mutex<History>,
    pub outbound: mpsc::Sender<Outbound>,
    /// Synthesized audio in flight between `Tts` and Twilio, in 20 ms frames.
    /// `Tts` acquires before sending a chunk; the permit travels with the chunk
    /// and is released when `MediaOut` sends or drops it.
    pub audio_budget: Arc<Semaphore>,
    pub backlogs: Backlogs,
    pub fault: Option<Arc<FaultPlan>>,
    /// The tools the policy offers the LLM.
    pub tools: Tools,
    outcome: Mutex<serde_json::Map<String, serde_json::Value>>,
    /// The call's records (turns, events, outcome): never waited on.
    pub recorder: crate::records::CallRecorder,
}

impl CallContext {
    pub fn new(
        ids: CallIds,
        policy: Arc<PolicyFile>,
        providers: Providers,
        settings: CallSettings,
        outbound: mpsc::Sender<Outbound>,
        fault: Option<FaultPlan>,
        records: Arc<dyn crate::records::RecordSink>,
    ) -> Arc<Self> {
        let span = tracing::info_span!("call", call_sid = %crate::util::Escaped(&ids.call_sid), stream_sid = %crate::util::Escaped(&ids.stream_sid));
        let frames = settings.mailbox_frames;
        Arc::new(Self {
            recorder: crate::records::CallRecorder::new(&ids.call_sid, records),
            ids,
            span,
            providers,
            audio_budget: Arc::new(Semaphore::new(settings.queued_audio_frames())),
            settings,
            routes: Routes::default(),
            generation: AtomicU64::new(0),
            history: Mutex::new(History::default()),
            outbound,
            backlogs: Backlogs {
                media_in: Backlog::new(frames),
                control: Backlog::new(CONTROL_BACKLOG),
                vad: Backlog::new(frames),
                // In batches of `media_in::STT_BATCH_FRAMES` frames.
                stt: Backlog::new((frames / crate::media_in::STT_BATCH_FRAMES).max(2)),
            },
            fault: fault.map(Arc::new),
            tools: Tools::from_policy(&policy),
            outcome: Mutex::new(serde_json::Map::new()),
            policy,
        })
    }

    /// The current turn generation; anything older is stale.
    pub fn generation(&self) -> Generation {
        self.generation.load(Ordering::Acquire)
    }

    /// Only the supervisor advances the generation.
    /// The turn controller moved on to `generation`: anything older is stale.
    pub(crate) fn set_generation(&self, generation: Generation) {
        self.generation.store(generation, Ordering::Release);
    }

    /// Records tools called in turn `generation` and their results, unless
    /// the turn is stale (checked under the history lock, as for sentences).
    pub fn record_tool_round(
        &self,
        generation: Generation,
        calls: Vec<(ToolCall, String)>,
    ) -> bool {
        let mut history = self.history();
        if self.generation() != generation {
            return false;
        }
        history.push_tool_round(generation, calls);
        true
    }

    /// Counts a provider failure and puts it on the call's record.
    pub fn provider_fault(&self, provider: &'static str, e: &crate::providers::ProviderError) {
        e.count(provider);
        self.recorder
            .event("provider_fault", format!("{provider}: {}", e.kind()));
    }

    /// Merges outcome slots the bot recorded (values are not logged).
    pub fn record_outcome(&self, slots: serde_json::Map<String, serde_json::Value>) {
        let mut outcome = self.outcome.lock().unwrap_or_else(PoisonError::into_inner);
        outcome.extend(slots);
    }

    /// The outcome slots recorded so far.
    pub fn outcome(&self) -> serde_json::Map<String, serde_json::Value> {
        self.outcome
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Records a sentence the bot is about to speak, unless its turn is stale.
    /// The generation is checked under the history lock, so a sentence is
    /// either recorded before a cancellation cuts the turn or not at all.
    pub fn record_bot_sentence(&self, generation: Generation, sentence: &str) -> bool {
        let mut history = self.history();
        if self.generation() != generation {
            return false;
        }
        history.push_bot_sentence(generation, sentence);
        true
    }

    pub fn history(&self) -> MutexGuard<'_, History> {
        // A panic while holding the lock cannot leave History half-updated in a
        // way that matters more than losing the call, so poisoning is ignored.
        self.history.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Frames (rounded up) in a μ-law buffer of `len` bytes.
pub fn frames_in(len: usize) -> usize {
    len.div_ceil(FRAME_SAMPLES)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mark_names_round_trip() {
        let m = MarkId {
            generation: 12,
            seq: 7,
        };
        assert_eq!(m.to_string(), "12.7");
        assert_eq!(MarkId::parse("12.7"), Some(m));
        assert_eq!(MarkId::parse("greeting"), None);
        assert_eq!(MarkId::parse("1.x"), None);
    }

    #[test]
    fn child_names_round_trip() {
        for k in ChildKind::ALL {
            assert_eq!(ChildKind::from_name(k.as_str()), Some(k));
        }
    }
}
