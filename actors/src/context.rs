//! What every actor of one call shares: its ids and span, its policy and
//! providers, the routes to its (restartable) children, the turn generation,
//! the history and the carrier command queue.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::{Semaphore, mpsc};
use tracing::Span;

use crate::backlog::Backlog;
use crate::fault::FaultPlan;
use crate::history::History;
pub use crate::outbound::Placed;
use crate::policy::PolicyFile;
use crate::protocol::STT_BATCH_FRAMES;
use crate::protocol::{CallIds, Capabilities, Command, Generation};
use crate::providers::{Providers, ToolCall};
use crate::records::RecordSink;
pub use crate::routes::{Route, Routes};
use crate::settings::CallSettings;
use crate::tools::Tools;
use crate::ulaw::FRAME_SAMPLES;

/// Mailbox bounds for the per-frame hops.
pub struct Backlogs {
    pub media_in: Arc<Backlog>,
    /// Playback reports queued for `MediaIn`: carriers send a few a second,
    /// so a full queue is a flood.
    pub played: Arc<Backlog>,
    /// DTMF digits queued for `MediaIn`, apart from playback reports so a
    /// flood of forged marks cannot crowd out the caller's keys.
    pub dtmf: Arc<Backlog>,
    pub vad: Arc<Backlog>,
    pub stt: Arc<Backlog>,
}

/// Playback reports (mark echoes) `MediaIn` may have queued.
pub const PLAYED_BACKLOG: usize = 64;

/// DTMF digits `MediaIn` may have queued (the carrier adapter's rate limit
/// lets bursts of `dtmf_per_second` through; this holds a few bursts).
pub const DTMF_BACKLOG: usize = 64;

/// Everything needed to start a call.
pub struct CallArgs {
    pub ids: CallIds,
    pub policy: Arc<PolicyFile>,
    pub providers: Providers,
    pub settings: CallSettings,
    /// What the carrier's stream can do (playback reports, codec).
    pub capabilities: Capabilities,
    /// Commands to the carrier's stream, in order.
    pub outbound: mpsc::Sender<Command>,
    pub fault: Option<FaultPlan>,
    /// Where the call's records go.
    pub records: Arc<dyn RecordSink>,
    /// The first turn and event number of this stream (0 for a call's first
    /// stream; a call that comes back on a new stream continues after it).
    pub record_base: u32,
    /// Whether the consent rule asks this caller (decided by the runtime,
    /// which knows the number: `ConsentSettings::asks`).
    pub ask_consent: bool,
    /// The policy's other languages, for switching mid-call (empty: none).
    pub languages: Languages,
    /// Where the call's recording goes, if it is recorded (`None`: nowhere).
    pub recordings: Option<Arc<dyn crate::recording::RecordingSink>>,
    /// Call control for transfers (`None`: the carrier has none; a
    /// transfer request then only says the escalation line).
    pub transfer: Option<Arc<dyn crate::transfer::desk::TransferDesk>>,
    /// A call Hark placed (`None`: the caller called in).
    pub placed: Option<Placed>,
    /// A call taken over from a lost node: its turns and slots so far
    /// (empty: a new call). It goes on without an opening: the caller
    /// speaks next.
    pub resumed: crate::history::Resumed,
}

/// Commands to the carrier's current stream. A call outlives its streams
/// (a caller on hold comes back on a new one), so the sender can be
/// replaced; a few sends a second take an uncontended lock.
pub struct Outbound(Mutex<mpsc::Sender<Command>>);

impl Outbound {
    pub fn new(tx: mpsc::Sender<Command>) -> Self {
        Self(Mutex::new(tx))
    }

    pub fn try_send(&self, cmd: Command) -> Result<(), mpsc::error::TrySendError<Command>> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .try_send(cmd)
    }

    /// From now on commands go to `tx` (a new stream of the call).
    pub fn replace(&self, tx: mpsc::Sender<Command>) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = tx;
    }
}

/// A language a call can be spoken in: the policy as spoken in it (lines,
/// STT language, voices) and the providers built for that.
#[derive(Clone)]
pub struct Spoken {
    pub code: String,
    pub policy: Arc<PolicyFile>,
    pub providers: Providers,
}

/// Language code → how the call sounds in it; built once per policy.
pub type Languages = Arc<std::collections::BTreeMap<String, Spoken>>;

/// What the caller allowed: read by the recording (`recording_allowed`) and
/// the records (transcript text). Nothing is allowed until a rule decides.
#[derive(Debug)]
pub struct ConsentFlags {
    recording: std::sync::atomic::AtomicBool,
    transcript: std::sync::atomic::AtomicBool,
}

impl ConsentFlags {
    pub fn recording_allowed(&self) -> bool {
        self.recording.load(Ordering::Acquire)
    }

    pub fn transcript_allowed(&self) -> bool {
        self.transcript.load(Ordering::Acquire)
    }

    pub(crate) fn set(&self, recording: bool, transcript: bool) {
        self.recording.store(recording, Ordering::Release);
        self.transcript.store(transcript, Ordering::Release);
    }
}

pub struct CallContext {
    pub ids: CallIds,
    pub capabilities: Capabilities,
    /// The call's span (`carrier`, `call_id`, `stream_id`); every actor logs under it.
    pub span: Span,
    pub policy: Arc<PolicyFile>,
    /// The policy's system prompt with its variables filled for this call.
    pub system_prompt: String,
    pub providers: Providers,
    pub settings: CallSettings,
    pub routes: Routes,
    generation: AtomicU64,
    history: Mutex<History>,
    pub outbound: Outbound,
    /// The caller has left the stream for a transfer (on hold, or with an
    /// agent): the stream's end does not end the call.
    away: std::sync::atomic::AtomicBool,
    pub transfer: Option<Arc<dyn crate::transfer::desk::TransferDesk>>,
    /// Synthesized audio in flight between `Tts` and the carrier, in 20 ms frames.
    /// `Tts` acquires before sending a chunk; the permit travels with the chunk
    /// and is released when `MediaOut` sends or drops it.
    pub audio_budget: Arc<Semaphore>,
    pub backlogs: Backlogs,
    pub fault: Option<Arc<FaultPlan>>,
    /// The tools the policy offers the LLM.
    pub tools: Tools,
    outcome: Mutex<Recorded>,
    /// Why the call ended, once it has (for the carrier session).
    ended: std::sync::OnceLock<crate::protocol::EndReason>,
    /// The call's records (turns, events, outcome): never waited on.
    pub recorder: crate::records::CallRecorder,
    /// What the consent rule decided; the recording reads `recording_allowed`.
    pub consent: ConsentFlags,
    /// The recording: off until consent (or the policy) starts it.
    pub recording: crate::recording::Recording,
    pub ask_consent: bool,
    /// What the bot must never say (`[rules.claims]`), compiled for the call.
    pub claims: crate::rules::claims::Claims,
    /// A call Hark placed: its lead and machine detection.
    pub placed: Option<Placed>,
    /// Taken over from a lost node (no opening, history from the records).
    pub resumed: bool,
    /// `Vad` runs the beep detector while this is set (an outbound call
    /// whose callee is not yet known to be a person).
    pub listen_for_beep: std::sync::atomic::AtomicBool,
    languages: Languages,
    /// The language the call is in now: lines, STT and voices come from it.
    spoken: arc_swap::ArcSwap<Spoken>,
}

impl CallContext {
    pub fn new(args: CallArgs) -> Arc<Self> {
        let CallArgs {
            ids,
            capabilities,
            policy,
            providers,
            settings,
            outbound,
            fault,
            records,
            record_base,
            ask_consent,
            languages,
            recordings,
            transfer,
            placed,
            resumed,
        } = args;
        let spoken = arc_swap::ArcSwap::from_pointee(Spoken {
            code: policy.language.clone(),
            policy: Arc::clone(&policy),
            providers: providers.clone(),
        });
        let span = tracing::info_span!(
            "call",
            carrier = ids.carrier,
            call_id = %crate::util::Escaped(&ids.call_id),
            stream_id = %crate::util::Escaped(&ids.stream_id),
        );
        let recorder = crate::records::CallRecorder::new(&ids.call_id, records);
        recorder.start_at(record_base);
        let frames = settings.mailbox_frames;
        Arc::new(Self {
            recorder,
            ids,
            capabilities,
            span,
            providers,
            audio_budget: Arc::new(Semaphore::new(settings.queued_audio_frames())),
            settings,
            routes: Routes::default(),
            generation: AtomicU64::new(0),
            history: Mutex::new(History::resumed(&resumed.turns)),
            resumed: resumed.is_resumed(),
            outbound: Outbound::new(outbound),
            away: std::sync::atomic::AtomicBool::new(false),
            transfer,
            backlogs: Backlogs {
                media_in: Backlog::new(frames),
                played: Backlog::new(PLAYED_BACKLOG),
                dtmf: Backlog::new(DTMF_BACKLOG),
                vad: Backlog::new(frames),
                // In batches of `STT_BATCH_FRAMES` frames.
                stt: Backlog::new((frames / STT_BATCH_FRAMES).max(2)),
            },
            fault: fault.map(Arc::new),
            tools: Tools::from_policy(&policy),
            // Nothing is known about an inbound caller yet that may go to
            // the model; an outbound call brings its lead's fields.
            system_prompt: policy.system_prompt_for(
                placed
                    .as_ref()
                    .map(|p| &p.lead)
                    .unwrap_or(&std::collections::BTreeMap::new()),
            ),
            listen_for_beep: std::sync::atomic::AtomicBool::new(
                placed.is_some() && !resumed.is_resumed(),
            ),
            placed,
            outcome: Mutex::new(Recorded {
                slots: resumed.slots,
                disposition: None,
            }),
            ended: std::sync::OnceLock::new(),
            consent: ConsentFlags {
                recording: std::sync::atomic::AtomicBool::new(false),
                transcript: std::sync::atomic::AtomicBool::new(true),
            },
            recording: crate::recording::Recording::new(
                recordings.filter(|_| policy.recording != crate::policy::RecordingMode::Never),
            ),
            ask_consent,
            claims: crate::rules::claims::Claims::new(&policy.rules.claims),
            languages,
            spoken,
            policy,
        })
    }

    /// Puts bot turns older than `before` (all, if `None`) on record: the text
    /// said and, when the caller cut in, the part they heard. `turn_starts`:
    /// each bot turn not yet on record, with its wall-clock start.
    pub(crate) fn record_bot_turns(
        &self,
        turn_starts: &mut Vec<(crate::protocol::Generation, i64)>,
        before: Option<crate::protocol::Generation>,
    ) {
        let due: Vec<(crate::protocol::Generation, i64)> = turn_starts
            .iter()
            .copied()
            .filter(|(g, _)| before.is_none_or(|b| *g < b))
            .collect();
        if due.is_empty() {
            return;
        }
        turn_starts.retain(|(g, _)| before.is_some_and(|b| *g >= b));
        let history = self.history();
        for (generation, started_ms) in due {
            let turns: Vec<&crate::history::Turn> = history
                .turns()
                .iter()
                .filter(|t| t.speaker == crate::history::Speaker::Bot && t.generation == generation)
                .collect();
            let heard: Vec<String> = turns
                .iter()
                .map(|t| t.text())
                .filter(|t| !t.is_empty())
                .collect();
            let said: Vec<String> = turns
                .iter()
                .map(|t| t.said.clone().unwrap_or_else(|| t.text()))
                .filter(|t| !t.is_empty())
                .collect();
            let interrupted = turns.iter().any(|t| t.interrupted);
            let heard = heard.join(" ");
            self.recorder.bot_turn(
                &said.join(" "),
                interrupted.then_some(heard.as_str()),
                started_ms,
            );
        }
    }

    /// Whether the caller is away from the stream for a transfer.
    pub fn is_away(&self) -> bool {
        self.away.load(Ordering::Acquire)
    }

    pub(crate) fn set_away(&self, away: bool) {
        self.away.store(away, Ordering::Release);
    }

    /// The language the call is in now, with its lines and providers.
    pub fn spoken(&self) -> Arc<Spoken> {
        self.spoken.load_full()
    }

    /// How the call would sound in `code`: the start language or one of
    /// the policy's others.
    pub fn language(&self, code: &str) -> Option<Spoken> {
        let start = &self.policy.language;
        if code == start {
            return Some(Spoken {
                code: start.clone(),
                policy: Arc::clone(&self.policy),
                providers: self.providers.clone(),
            });
        }
        self.languages.get(code).cloned()
    }

    /// Goes on in `code`; `false` when the call cannot be spoken in it or
    /// already is.
    pub(crate) fn switch_language(&self, code: &str) -> bool {
        if self.spoken.load().code == code {
            return false;
        }
        match self.language(code) {
            Some(spoken) => {
                self.spoken.store(Arc::new(spoken));
                true
            }
            None => false,
        }
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

    /// Merges outcome slots the bot recorded (values are not logged) and
    /// the disposition it chose, if any (the latest wins).
    pub fn record_outcome(
        &self,
        slots: serde_json::Map<String, serde_json::Value>,
        disposition: Option<String>,
    ) {
        let mut outcome = self.outcome.lock().unwrap_or_else(PoisonError::into_inner);
        outcome.slots.extend(slots);
        if disposition.is_some() {
            outcome.disposition = disposition;
        }
        let so_far = outcome.slots.clone();
        drop(outcome);
        self.recorder.slots(so_far, self.policy.outcome.sensitive());
    }

    /// The call's outcome so far; `None` when its policy has none and the
    /// bot recorded nothing.
    pub fn outcome(&self) -> Option<crate::records::CallOutcome> {
        let outcome = self.outcome.lock().unwrap_or_else(PoisonError::into_inner);
        if !self.policy.outcome.is_used() && outcome.slots.is_empty() {
            return None;
        }
        Some(crate::records::CallOutcome::decide(
            &self.policy.outcome,
            outcome.slots.clone(),
            outcome.disposition.as_deref(),
        ))
    }

    /// Why the call ended; `None` while it goes on.
    pub fn end_reason(&self) -> Option<crate::protocol::EndReason> {
        self.ended.get().copied()
    }

    /// At the end of the call: its outcome to the record, counted by
    /// disposition (slot values are not logged).
    pub fn finish_outcome(&self, reason: crate::protocol::EndReason) {
        use crate::protocol::EndReason;
        let _ = self.ended.set(reason);
        let mut outcome = self.outcome();
        // A machine answered, or the caller asked not to be called again:
        // that is the outcome, whatever the policy's slots say.
        let forced = match reason {
            EndReason::Voicemail | EndReason::Machine => Some(crate::policy::outcome::VOICEMAIL),
            EndReason::DoNotCall => Some(crate::policy::outcome::DO_NOT_CALL),
            _ => None,
        };
        if let Some(disposition) = forced {
            let mut o = outcome.unwrap_or_else(|| {
                crate::records::CallOutcome::decide(
                    &self.policy.outcome,
                    serde_json::Map::new(),
                    None,
                )
            });
            o.disposition = disposition.into();
            outcome = Some(o);
        }
        let Some(outcome) = outcome else {
            return;
        };
        metrics::counter!(crate::metrics::CALL_DISPOSITIONS, "policy" => self.policy.name.clone(), "disposition" => outcome.disposition.clone()).increment(1);
        tracing::info!(parent: &self.span, disposition = %outcome.disposition, slots = outcome.slots.len(), "call outcome");
        self.recorder.outcome(outcome);
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

/// What the bot recorded with `record_outcome`.
#[derive(Default)]
struct Recorded {
    slots: serde_json::Map<String, serde_json::Value>,
    disposition: Option<String>,
}

/// Frames (rounded up) in a μ-law buffer of `len` bytes.
pub fn frames_in(len: usize) -> usize {
    len.div_ceil(FRAME_SAMPLES)
}
