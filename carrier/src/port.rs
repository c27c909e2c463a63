//! The carrier port: what a call and the carrier carrying it say to each
//! other, in no carrier's words.
//!
//! A carrier adapter (one folder per carrier) turns its wire messages into
//! [`Event`]s for the call and the call's [`Command`]s into wire messages;
//! [`Capabilities`] say what its stream can do. The call core speaks only
//! this module: it knows no carrier.
//!
//! Call control (hang up, redirect, dial, conferences) is the carrier's
//! REST side, behind [`CallControl`]; an operation a carrier lacks answers
//! [`ControlError::Unsupported`] rather than failing somewhere later.

use std::collections::BTreeMap;
use std::fmt;

use bytes::Bytes;

/// A point in the bot's audio. The call asks for one after each chunk; a
/// carrier that reports playback answers with [`Event::Played`] once the
/// audio before it has been heard. `turn` is the bot turn (its generation),
/// so a late answer for a cancelled turn is recognised and ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkpoint {
    pub turn: u64,
    pub seq: u32,
}

impl Checkpoint {
    /// Parses the name [`Display`](fmt::Display) writes (`"{turn}.{seq}"`);
    /// `None` for any other name (a checkpoint that is not Hark's).
    pub fn parse(name: &str) -> Option<Self> {
        let (t, s) = name.split_once('.')?;
        Some(Self {
            turn: t.parse().ok()?,
            seq: s.parse().ok()?,
        })
    }
}

impl fmt::Display for Checkpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.turn, self.seq)
    }
}

/// What arrives from the carrier during a call, decoded.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Event<'a> {
    /// Caller audio in the stream's format; `seq` is the carrier's message
    /// sequence (for ordering and logs), 0 when it has none.
    Audio { seq: u64, payload: &'a [u8] },
    /// A key the caller pressed: `0`–`9`, `*`, `#`, `A`–`D`.
    Dtmf { seq: u64, digit: char },
    /// The audio before `checkpoint` has played.
    Played { seq: u64, checkpoint: Checkpoint },
    /// The carrier ended the stream (hang-up or redirect).
    Stop,
}

/// What the call asks the carrier's stream to do, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Bot audio in the call core's format (μ-law, 8 kHz, mono); the
    /// adapter converts when its stream differs.
    Audio(Bytes),
    /// Report (or, without playback reports, let Hark estimate) when the
    /// audio sent so far has played.
    Checkpoint(Checkpoint),
    /// Drop any audio buffered and not yet played (barge-in).
    Clear,
    /// End the stream; `reason` is a short label (the call's end reason).
    Close { reason: &'static str },
}

/// Audio encodings a carrier stream may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// G.711 μ-law (North America, Japan).
    Mulaw,
    /// G.711 A-law (most of the rest of the world).
    Alaw,
    /// 16-bit signed linear PCM, little-endian.
    L16,
}

impl Codec {
    pub fn as_str(self) -> &'static str {
        match self {
            Codec::Mulaw => "mulaw",
            Codec::Alaw => "alaw",
            Codec::L16 => "l16",
        }
    }
}

/// One stream's audio format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediaFormat {
    pub codec: Codec,
    pub sample_rate: u32,
    pub channels: u16,
}

impl MediaFormat {
    /// What the call core hears and speaks: μ-law, 8 kHz, mono.
    pub const CORE: MediaFormat = MediaFormat {
        codec: Codec::Mulaw,
        sample_rate: 8000,
        channels: 1,
    };
}

/// What a carrier's stream can do; fixed when the stream starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    pub format: MediaFormat,
    /// The carrier answers checkpoints once their audio has played (Twilio,
    /// Telnyx marks). Without it (Asterisk, WebRTC) Hark estimates playback
    /// from the audio it sent and the real-time clock.
    pub reports_playback: bool,
    /// The carrier can drop audio it has buffered (`clear`). Without it a
    /// barge-in can only stop sending: what the carrier holds still plays.
    pub clears_audio: bool,
}

impl Capabilities {
    /// Twilio Media Streams: μ-law 8 kHz, `mark` echoes, `clear`.
    pub const TWILIO: Capabilities = Capabilities {
        format: MediaFormat::CORE,
        reports_playback: true,
        clears_audio: true,
    };
}

/// A call's state as carriers report it in their status callbacks,
/// normalised (each carrier maps its own names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallStatus {
    Queued,
    Ringing,
    InProgress,
    Completed,
    Busy,
    NoAnswer,
    Failed,
    Canceled,
}

impl CallStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CallStatus::Queued => "queued",
            CallStatus::Ringing => "ringing",
            CallStatus::InProgress => "in_progress",
            CallStatus::Completed => "completed",
            CallStatus::Busy => "busy",
            CallStatus::NoAnswer => "no_answer",
            CallStatus::Failed => "failed",
            CallStatus::Canceled => "canceled",
        }
    }

    /// The call is over (no more callbacks will change it).
    pub fn is_final(self) -> bool {
        !matches!(
            self,
            CallStatus::Queued | CallStatus::Ringing | CallStatus::InProgress
        )
    }
}

/// An outbound call to place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dial {
    /// E.164 numbers.
    pub to: String,
    pub from: String,
    /// Where the carrier fetches what to do once answered.
    pub answer_url: String,
    /// Where the carrier reports status changes.
    pub status_url: Option<String>,
    pub timeout_secs: u32,
    /// Ask the carrier whether a person or a machine answered.
    pub machine_detection: MachineDetection,
    /// Where the carrier reports its verdict (asynchronously: the call is
    /// answered and its stream starts while detection goes on).
    pub amd_url: Option<String>,
}

/// The carrier's answering-machine detection for a placed call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MachineDetection {
    #[default]
    Off,
    /// A verdict as soon as a person or machine is known.
    Enable,
    /// For a machine, wait for the end of its greeting (the beep) too.
    DetectMessageEnd,
}

impl MachineDetection {
    pub fn as_str(self) -> &'static str {
        match self {
            MachineDetection::Off => "off",
            MachineDetection::Enable => "enable",
            MachineDetection::DetectMessageEnd => "detect_message_end",
        }
    }
}

/// An operation on a conference (warm transfer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConferenceOp {
    /// Move a live call into the named conference. It hears `wait_url`
    /// (the carrier's hold audio when `None`) until someone who starts the
    /// conference joins; the conference ends when it leaves. With
    /// `recording_callback` the conference is recorded from the start and
    /// the recording reported there (only with the caller's consent).
    Join {
        call_id: String,
        room: String,
        wait_url: Option<String>,
        recording_callback: Option<String>,
    },
    /// Hold or resume a participant.
    Hold {
        room: String,
        call_id: String,
        hold: bool,
    },
    /// Remove a participant from the conference.
    Remove { room: String, call_id: String },
}

/// Why a message could not be used. Each is a `reason` label of `hark_bad_messages_total`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadInput {
    #[error("message is not JSON: {0}")]
    NotJson(String),
    #[error("JSON does not have the documented shape: {0}")]
    Invalid(String),
    #[error("unknown event {0:?}")]
    UnknownEvent(String),
    #[error("message of {0} bytes is over the limit")]
    TooLarge(usize),
    #[error("binary WebSocket message where the carrier sends text")]
    Binary,
    #[error("media payload is not valid base64")]
    BadBase64,
    #[error("media before start")]
    MediaBeforeStart,
    #[error("a second start on the same stream")]
    DuplicateStart,
    #[error("message for another stream")]
    WrongStream,
    #[error("unsupported media format {0}")]
    UnsupportedFormat(String),
    #[error("control messages (dtmf, mark) faster than the call can take them")]
    Flood,
    #[error("call id {0:?} is not one this carrier issues")]
    BadCallId(String),
}

impl BadInput {
    pub fn reason(&self) -> &'static str {
        match self {
            BadInput::NotJson(_) => "not_json",
            BadInput::Invalid(_) => "invalid_message",
            BadInput::UnknownEvent(_) => "unknown_event",
            BadInput::TooLarge(_) => "too_large",
            BadInput::Binary => "binary_message",
            BadInput::BadBase64 => "bad_base64",
            BadInput::MediaBeforeStart => "media_before_start",
            BadInput::DuplicateStart => "duplicate_start",
            BadInput::WrongStream => "wrong_stream",
            BadInput::UnsupportedFormat(_) => "unsupported_format",
            BadInput::Flood => "flood",
            BadInput::BadCallId(_) => "bad_call_id",
        }
    }

    /// Small index per reason, for "log each reason once per call" bitsets.
    pub fn index(&self) -> u32 {
        match self {
            BadInput::NotJson(_) => 0,
            BadInput::Invalid(_) => 1,
            BadInput::UnknownEvent(_) => 2,
            BadInput::TooLarge(_) => 3,
            BadInput::Binary => 4,
            BadInput::BadBase64 => 5,
            BadInput::MediaBeforeStart => 6,
            BadInput::DuplicateStart => 7,
            BadInput::WrongStream => 8,
            BadInput::UnsupportedFormat(_) => 9,
            BadInput::Flood => 10,
            BadInput::BadCallId(_) => 11,
        }
    }
}

/// One WebSocket message from the carrier, without the socket library.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Frame<'a> {
    Text(&'a str),
    Binary(&'a [u8]),
}

/// One message to the carrier.
#[derive(Debug, Clone, PartialEq)]
pub enum Outgoing {
    Text(String),
    Binary(Bytes),
    /// Close the socket with this code and reason.
    Close {
        code: u16,
        reason: &'static str,
    },
}

/// What a stream's first message establishes.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamStart {
    /// The carrier's id for the call, already checked to be one it issues.
    pub call_id: String,
    pub stream_id: String,
    pub capabilities: Capabilities,
    /// Parameters the call's webhook answer attached to the stream (Hark's
    /// stream token, test-only fault plans).
    pub params: BTreeMap<String, String>,
}

/// One decoded message.
#[derive(Debug, Clone, PartialEq)]
pub enum Decoded<'a> {
    /// The stream started: the call may begin.
    Start(StreamStart),
    Event(Event<'a>),
    /// A message that means nothing to the call (a handshake, a foreign
    /// checkpoint); `what` says which, for debug logs.
    Ignored {
        what: &'static str,
    },
}

/// A carrier's media stream protocol: its messages in, the call's commands
/// out. One value per stream; it keeps the stream's ids and reused buffers
/// so the per-frame path allocates nothing. Pure: no I/O, no clock.
pub trait StreamCodec: Send + 'static {
    /// The carrier's name, as on records, logs and metrics.
    const CARRIER: &'static str;

    fn new() -> Self;

    /// Decodes one message. Before [`Decoded::Start`] only a start (or a
    /// handshake) is valid; after it, messages of another stream are
    /// [`BadInput::WrongStream`]. Audio is handed out in the call core's
    /// format ([`MediaFormat::CORE`]).
    fn decode<'a>(&'a mut self, frame: Frame<'a>) -> Result<Decoded<'a>, BadInput>;

    /// Encodes one command of the call for the wire.
    fn encode(&mut self, command: Command) -> Outgoing;
}

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// This carrier has no such operation.
    #[error("{carrier} does not support {operation}")]
    Unsupported {
        carrier: &'static str,
        operation: &'static str,
    },
    /// The carrier refused (bad number, unknown call, bad credentials).
    #[error("{carrier} refused {operation}: {reason}")]
    Refused {
        carrier: &'static str,
        operation: &'static str,
        reason: String,
    },
    /// The carrier could not be reached or did not answer in time.
    #[error("{carrier} unreachable for {operation}: {reason}")]
    Unavailable {
        carrier: &'static str,
        operation: &'static str,
        reason: String,
    },
}

/// Call control on the carrier that carries the call. Every operation
/// defaults to [`ControlError::Unsupported`]; a carrier implements what it has.
#[async_trait::async_trait]
pub trait CallControl: Send + Sync {
    fn carrier(&self) -> &'static str;

    /// Ends a live call.
    async fn hang_up(&self, call_id: &str) -> Result<(), ControlError> {
        let _ = call_id;
        Err(self.unsupported("hang_up"))
    }

    /// Points a live call at new instructions (e.g. to leave the stream).
    async fn redirect(&self, call_id: &str, url: &str) -> Result<(), ControlError> {
        let _ = (call_id, url);
        Err(self.unsupported("redirect"))
    }

    /// Sends a live call on to `to` (an E.164 number or a `sip:` URI); the
    /// call leaves Hark.
    async fn forward(&self, call_id: &str, to: &str) -> Result<(), ControlError> {
        let _ = (call_id, to);
        Err(self.unsupported("forward"))
    }

    /// Places a call; returns the carrier's id for it.
    async fn dial(&self, dial: &Dial) -> Result<String, ControlError> {
        let _ = dial;
        Err(self.unsupported("dial"))
    }

    async fn conference(&self, op: &ConferenceOp) -> Result<(), ControlError> {
        let _ = op;
        Err(self.unsupported("conference"))
    }

    /// A call's state as the carrier has it now (Twilio's words: `queued`,
    /// `ringing`, `in-progress`, `completed`, `busy`, `no-answer`…): for
    /// callbacks that never arrived (the node was down).
    async fn status(&self, call_id: &str) -> Result<String, ControlError> {
        let _ = call_id;
        Err(self.unsupported("status"))
    }

    fn unsupported(&self, operation: &'static str) -> ControlError {
        ControlError::Unsupported {
            carrier: self.carrier(),
            operation,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoint_names_round_trip() {
        let c = Checkpoint { turn: 12, seq: 7 };
        assert_eq!(c.to_string(), "12.7");
        assert_eq!(Checkpoint::parse("12.7"), Some(c));
        assert_eq!(Checkpoint::parse("greeting"), None);
        assert_eq!(Checkpoint::parse("1.x"), None);
        assert_eq!(Checkpoint::parse("१.२"), None);
    }

    struct StreamOnly;

    impl CallControl for StreamOnly {
        fn carrier(&self) -> &'static str {
            "stream_only"
        }
    }

    #[test]
    fn a_carrier_without_call_control_answers_unsupported() {
        let rt = futures_lite_block_on(async {
            let c = StreamOnly;
            (
                c.hang_up("x").await,
                c.redirect("x", "http://h/").await,
                c.conference(&ConferenceOp::Remove {
                    room: "r".into(),
                    call_id: "x".into(),
                })
                .await,
            )
        });
        for r in [rt.0, rt.1, rt.2] {
            assert!(
                matches!(
                    r,
                    Err(ControlError::Unsupported {
                        carrier: "stream_only",
                        ..
                    })
                ),
                "{r:?}"
            );
        }
    }

    /// Polls a future that never waits (the defaults return at once).
    fn futures_lite_block_on<F: std::future::Future>(f: F) -> F::Output {
        use std::task::{Context, Poll, Waker};
        let mut f = std::pin::pin!(f);
        let mut cx = Context::from_waker(Waker::noop());
        loop {
            if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
                return v;
            }
        }
    }
}
