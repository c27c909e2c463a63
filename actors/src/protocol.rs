//! The call protocol: every id and message the actors of one call exchange.
//!
//! A leaf: it names no actor, so an actor, the supervisor and the shared
//! context can each be read with this file alone beside them. The table in
//! ARCHITECTURE.md ("Messages") is this file in prose; a new message goes
//! here first.
//!
//! The carrier side of a call is [`hark_carrier::port`]: `Command`s out,
//! `Event`s in; the call core uses nothing else of any carrier.

use std::fmt;

use bytes::Bytes;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;

use crate::backlog::Slot;
use crate::providers::{ProviderError, SpeechInfo, SttEvent, SttSession};
use crate::ulaw::FRAME_SAMPLES;

pub use hark_carrier::port::{Capabilities, Checkpoint, Command};

/// A bot turn's number. Advanced by the supervisor for every new bot turn and
/// on every cancellation; audio of an older generation is stale.
pub type Generation = u64;

/// Who a call is, in its carrier's terms (validated by the carrier's adapter).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallIds {
    /// The carrier's name (`twilio`), as on the call's record.
    pub carrier: &'static str,
    /// The carrier's id for the call (Twilio's call SID).
    pub call_id: String,
    /// The carrier's id for this media stream (a call may have several).
    pub stream_id: String,
}

pub use crate::outbound::AnsweredBy;

/// Why a call ended; the label of `hark_calls_ended_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// The carrier ended the stream (caller hung up, or the call was redirected).
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
    /// Nothing arrived from the carrier for `media_timeout_secs` (carriers
    /// send media every 20 ms, silence included): the peer is gone.
    MediaTimeout,
    /// The call reached `call.max_duration_secs`; the caller heard the goodbye.
    MaxDuration,
    /// The caller's language broke the policy's profanity rule; the caller
    /// heard its goodbye.
    Profanity,
    /// The caller stayed silent through the idle rule's re-prompts.
    Idle,
    /// The caller chose a menu key that ends the call.
    Menu,
    /// The caller was handed on: redirected (cold) or joined to an agent (warm).
    Transferred,
    /// The carrier reported the call over while it had no stream (the
    /// caller hung up on hold).
    Completed,
    /// An outbound call reached a machine: the voicemail message was left.
    Voicemail,
    /// An outbound call reached a machine (or a fax) and hung up on it.
    Machine,
    /// The caller asked not to be called again (the do-not-call rule); they
    /// heard its goodbye, and their number goes on the do-not-call list.
    DoNotCall,
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
            EndReason::Profanity => "profanity",
            EndReason::Idle => "idle",
            EndReason::Menu => "menu",
            EndReason::Transferred => "transferred",
            EndReason::Completed => "completed",
            EndReason::Voicemail => "voicemail",
            EndReason::Machine => "machine",
            EndReason::DoNotCall => "do_not_call",
        }
    }
}

impl fmt::Display for EndReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The children of a call, as named in logs and the `actor` metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChildKind {
    MediaIn,
    Vad,
    Stt,
    Llm,
    Tts,
    MediaOut,
    Transfer,
}

impl ChildKind {
    pub const ALL: [ChildKind; 7] = [
        ChildKind::MediaIn,
        ChildKind::Vad,
        ChildKind::Stt,
        ChildKind::Llm,
        ChildKind::Tts,
        ChildKind::MediaOut,
        ChildKind::Transfer,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ChildKind::MediaIn => "media_in",
            ChildKind::Vad => "vad",
            ChildKind::Stt => "stt",
            ChildKind::Llm => "policy",
            ChildKind::Tts => "tts",
            ChildKind::MediaOut => "media_out",
            ChildKind::Transfer => "transfer",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == name)
    }
}

/// Caller audio goes to `Stt` in 100 ms batches: streaming STT takes 20–250 ms
/// chunks, and five times fewer messages. `Vad` still gets every 20 ms frame,
/// so turn-taking timing does not change.
pub const STT_BATCH_FRAMES: usize = 5;

/// Largest payload carried inline (no heap) in a message: one 20 ms frame.
const INLINE: usize = FRAME_SAMPLES;

// To the supervisor (from every child and the runtime).

#[derive(Debug)]
pub enum SupervisorMsg {
    // From `Vad`.
    /// An answering machine's beep just ended (outbound calls, while the
    /// callee is not yet known to be a person).
    Beep {
        hz: f32,
        ms: u32,
    },
    SpeechStarted {
        at: Instant,
    },
    BargeIn {
        at: Instant,
    },
    SpeechEnded {
        last_voice: Instant,
        speech_ms: u32,
    },
    // From `Stt`.
    /// `languages`: each word's language when the STT reports them.
    Utterance {
        text: String,
        languages: Vec<String>,
    },
    /// The caller spoke but no transcriber could say what (fallback timed
    /// out or failed): ask them to say it again.
    Unheard,
    // From `MediaIn`.
    Dtmf {
        digit: char,
    },
    // From `MediaOut`.
    PlaybackStarted {
        generation: Generation,
    },
    PlaybackFinished {
        generation: Generation,
    },
    OutboundStalled,
    // From `Llm`.
    /// The LLM called `end_call`: hang up once turn `generation` has played.
    BotEndsCall {
        generation: Generation,
    },
    /// The task writing turn `generation` failed: end it with the fallback line.
    TurnFailed {
        generation: Generation,
    },
    /// The model called `transfer_call` with a valid target.
    TransferRequested {
        generation: Generation,
        target: String,
    },
    // From `Transfer`.
    /// How a transfer ended for the bot.
    TransferOver(TransferOutcome),
    // From the runtime.
    /// Someone asked through the API for the caller to be handed to `target`.
    TransferAsked {
        target: String,
    },
    /// A new stream of this call started (the caller came back from hold).
    StreamAttached {
        stream_id: String,
    },
    // From the runtime (and the supervisor's own timers).
    /// The carrier's answering-machine verdict for an outbound call.
    Answered(AnsweredBy),
    /// The outbound callee said nothing (and no verdict came) for
    /// `outbound.answer_timeout_ms`; or a machine gave no beep in
    /// `beep_timeout_secs` (`machine`).
    AnswerTimeout {
        machine: bool,
    },
    /// The stream is gone (carrier `stop`, socket closed): end now, silently.
    Hangup {
        reason: EndReason,
    },
    /// End the call with the policy's goodbye line (e.g. node shutdown).
    EndCall {
        reason: EndReason,
    },
    /// The goodbye or apology took too long to play.
    EndTimeout,
    // Its own timer.
    /// The caller has been silent since timer `armed` was set (stale
    /// timers' messages are ignored).
    Silence {
        armed: u64,
    },
    /// An interim transcript of what the caller is saying (barge-in `confirm`).
    Interim {
        text: String,
    },
    /// `barge_in.resume_after_ms` after the caller stopped talking over
    /// turn `generation`: resume it unless their words came.
    ResumeCheck {
        generation: Generation,
    },
}

/// How a transfer ended, for the supervisor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransferOutcome {
    /// The caller is with someone else now: the bot leaves.
    HandedOn,
    /// The caller stays with (or comes back to) the bot, who says `line`.
    Back { line: String },
}

/// What the agent's leg did, as the carrier's callbacks report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentEvent {
    /// The agent picked up and is hearing the summary.
    Answered,
    /// The agent pressed the accept key and joined the conference.
    Accepted,
    /// The agent pressed another key, or none in time.
    Declined,
    /// The agent's phone did not answer, was busy, or the call failed.
    NoAnswer,
    /// The agent's leg ended.
    Left,
}

impl AgentEvent {
    pub fn as_str(self) -> &'static str {
        match self {
            AgentEvent::Answered => "answered",
            AgentEvent::Accepted => "accepted",
            AgentEvent::Declined => "declined",
            AgentEvent::NoAnswer => "no_answer",
            AgentEvent::Left => "left",
        }
    }
}

// To `Transfer` (from the supervisor, the runtime and its own timers).

#[derive(Debug)]
pub enum TransferMsg {
    /// Hand the caller on (the escalation line has played).
    Start { target: String },
    /// The agent's leg `leg` reported `event`.
    Agent { leg: String, event: AgentEvent },
    /// Attempt `attempt` ran out of time (ringing, accepting, or holding).
    Timeout { attempt: u32 },
    /// Look again for a free agent while the caller holds.
    Retry { attempt: u32 },
}

// To `MediaIn` (from the carrier adapter).

/// One inbound `media` payload, already base64-decoded.
#[derive(Debug)]
pub enum InboundAudio {
    /// The usual 20 ms frame (or less), stored inline.
    Inline { len: u8, data: [u8; INLINE] },
    /// A larger payload (no carrier promises 160 bytes).
    Heap(Vec<u8>),
}

impl InboundAudio {
    pub fn from_slice(bytes: &[u8]) -> Self {
        if bytes.len() <= INLINE {
            let mut data = [0u8; INLINE];
            data[..bytes.len()].copy_from_slice(bytes);
            Self::Inline {
                len: bytes.len() as u8,
                data,
            }
        } else {
            Self::Heap(bytes.to_vec())
        }
    }

    pub fn as_slice(&self) -> &[u8] {
        match self {
            Self::Inline { len, data } => &data[..*len as usize],
            Self::Heap(v) => v,
        }
    }
}

#[derive(Debug)]
pub enum MediaInMsg {
    Media {
        seq: u64,
        audio: InboundAudio,
        received: Instant,
        slot: Slot,
    },
    Dtmf {
        seq: u64,
        digit: char,
        slot: Slot,
    },
    /// The carrier played the bot's audio up to `checkpoint`.
    Played {
        seq: u64,
        checkpoint: Checkpoint,
        slot: Slot,
    },
}

// To `Vad` (from `MediaIn`).

#[derive(Debug)]
pub enum VadMsg {
    Frame {
        pcm: [i16; FRAME_SAMPLES],
        received: Instant,
        slot: Slot,
    },
}

// To `Stt` (from `MediaIn`, `Vad`, and its own tasks).

#[derive(Debug)]
pub enum SttMsg {
    /// Caller audio, μ-law, in batches of [`STT_BATCH_FRAMES`] frames.
    Audio { ulaw: Bytes, slot: Slot },
    /// From `Vad`: the caller started talking.
    SpeechStarted,
    /// From `Vad`: the caller stopped; `last_voice` is when their last voiced frame arrived.
    EndOfSpeech {
        info: SpeechInfo,
        last_voice: Instant,
    },
    /// From a session's event pump; `None` when the session's stream ended.
    Provider {
        session: u64,
        event: Option<SttEvent>,
    },
    /// A connection attempt finished.
    Connected(Result<SttSession, ProviderError>),
    /// Time to try connecting again.
    Reconnect,
    /// The call changed language: open a session for it once the caller
    /// is not mid-utterance.
    Renew,
    /// No final transcript arrived in time for this utterance.
    FinalTimeout { utterance: u64 },
    /// The fallback transcriber finished this utterance.
    Transcribed {
        utterance: u64,
        result: Result<String, ProviderError>,
    },
}

// To `Llm` (from the supervisor).

#[derive(Debug)]
pub enum LlmMsg {
    /// Reply to the caller. `caller_text` is added to the history first; it is
    /// `None` when a turn is retried after a restart (the words are already there).
    Respond {
        generation: Generation,
        caller_text: Option<String>,
    },
    /// Speak a fixed line (greeting, goodbye, apology).
    Say {
        generation: Generation,
        text: String,
    },
    /// Every turn older than `generation` is cancelled.
    Cancel { generation: Generation },
}

// To `Tts` (from `Llm` and the supervisor).

#[derive(Debug)]
pub enum TtsMsg {
    Speak {
        generation: Generation,
        index: u32,
        text: String,
    },
    /// No more sentences will come for this turn.
    EndOfTurn { generation: Generation },
    /// Every turn older than `generation` is cancelled.
    Cancel { generation: Generation },
    /// From the synthesis task: the sentence is fully sent (or failed).
    SentenceDone { generation: Generation },
}

// To `MediaOut` (from `Tts`, `MediaIn` and the supervisor).

#[derive(Debug)]
pub enum MediaOutMsg {
    /// A bot turn begins; `speech_end` (end of the caller's speech) starts the
    /// response-latency clock.
    TurnStarted {
        generation: Generation,
        speech_end: Option<Instant>,
    },
    Audio {
        generation: Generation,
        /// Sentence index within the turn.
        index: u32,
        chunk: Bytes,
        permit: OwnedSemaphorePermit,
    },
    EndOfTurn {
        generation: Generation,
    },
    /// Every turn older than `generation` is cancelled; `clear` tells the carrier to
    /// drop the audio it has buffered.
    Cancel {
        generation: Generation,
        clear: bool,
    },
    /// The carrier played the audio up to this checkpoint.
    Played(Checkpoint),
    /// Barge-in `confirm`: stop sending turn `generation`'s audio, keeping
    /// it queued (`held`), or go on (`!held`).
    Hold {
        generation: Generation,
        held: bool,
    },
    Tick,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn child_names_round_trip() {
        for k in ChildKind::ALL {
            assert_eq!(ChildKind::from_name(k.as_str()), Some(k));
        }
    }
}
