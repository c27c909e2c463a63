//! `hark policy simulate`: a call in text. The caller's lines stand in for
//! speech — each is carried by a recorded utterance through the real VAD,
//! endpointer, turn controller, LLM actor and tools, and heard by the
//! simulated STT as the typed line — and the bot's audio is drained by a
//! carrier that reports no playback, so Hark estimates it as it does for
//! Asterisk. What comes out is the call's own record: the bot's lines, tool
//! calls, slots as they fill, the disposition and how the call ended.
//!
//! With simulated providers the whole call runs on a paused clock (instant,
//! deterministic: the behaviour fixtures use it); with the policy's own LLM
//! it runs in real time.
//!
//! # Layout
//! - [`script`] — the script format (`dtmf 1`, `silence 8s`, caller lines).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use hark_carrier::port::{Capabilities, Command, Event};
use serde::Serialize;
use serde_json::{Map, Value};
use tokio::sync::mpsc;

use crate::media_in::deliver;
use crate::policy::PolicyFile;
use crate::providers::Providers;
use crate::providers::stt::sim::{SimStt, TypedLines};
use crate::providers::tts::sim::SimTts;
use crate::records::{MemorySink, Record};
use crate::{CallArgs, CallHandle, CallIds, CallSettings, start_call};

pub mod script;

pub use script::{ScriptError, Step};

/// The utterance that carries each typed line (1.3 s of "yes").
const CARRIER_SPEECH: &[u8] = include_bytes!("../../../tests/fixtures/speech/yes.ulaw");
const FRAME: usize = 160;
/// The bot is done when a half-second of silence brings no audio from it.
const QUIET_STEP_MS: u64 = 500;
/// Past this, a step stops waiting for the bot to finish.
const SETTLE_LIMIT: Duration = Duration::from_secs(120);
/// How a sensitive slot's value is shown.
pub const MASKED: &str = "***";

/// One thing that happened, in order.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Decision {
    Caller {
        text: String,
    },
    Dtmf {
        key: char,
    },
    Silence {
        ms: u64,
    },
    Bot {
        text: String,
        /// Cut short by the caller; `heard` is what played before.
        interrupted: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        heard: Option<String>,
    },
    /// A tool the model called and whether it was accepted.
    Tool {
        detail: String,
    },
    /// A slot filled (sensitive values masked).
    Slot {
        name: String,
        value: Value,
    },
    /// Anything else the call put on record (`barge_in`, `child_restart`…).
    Event {
        event: String,
        detail: String,
    },
    Outcome {
        disposition: String,
        slots: Map<String, Value>,
        #[serde(skip_serializing_if = "Option::is_none")]
        callback: Option<crate::records::CallbackWindow>,
    },
    Ended {
        reason: String,
    },
}

impl std::fmt::Display for Decision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Decision::Caller { text } if text.is_empty() => {
                write!(f, "caller: [speaks; no words heard]")
            }
            Decision::Caller { text } => write!(f, "caller: {text}"),
            Decision::Dtmf { key } => write!(f, "caller: [presses {key}]"),
            Decision::Silence { ms } => write!(f, "caller: [silent {:.1} s]", *ms as f64 / 1000.0),
            Decision::Bot {
                text,
                interrupted: true,
                heard,
            } => write!(
                f,
                "bot: {text}  [interrupted; heard: {:?}]",
                heard.as_deref().unwrap_or("")
            ),
            Decision::Bot { text, .. } => write!(f, "bot: {text}"),
            Decision::Tool { detail } => write!(f, "  tool {detail}"),
            Decision::Slot { name, value } => write!(f, "  slot {name} = {value}"),
            Decision::Event { event, detail } if detail.is_empty() => write!(f, "  event {event}"),
            Decision::Event { event, detail } => write!(f, "  event {event}: {detail}"),
            Decision::Outcome {
                disposition,
                slots,
                callback,
            } => {
                write!(f, "outcome: {disposition} {}", Value::Object(slots.clone()))?;
                if let Some(w) = callback {
                    write!(f, " callback {} .. {}", w.start, w.end)?;
                }
                Ok(())
            }
            Decision::Ended { reason } => write!(f, "ended: {reason}"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SimulateError {
    #[error("the call could not start: {0}")]
    Start(String),
}

/// A call driven by text.
pub struct Simulation {
    handle: CallHandle,
    out: mpsc::Receiver<Command>,
    typed: TypedLines,
    records: Arc<MemorySink>,
    read: usize,
    seq: u64,
    slots: Map<String, Value>,
    sensitive: Vec<String>,
    ended: bool,
    /// Audio commands seen: the bot is talking while this grows.
    audio_frames: u64,
    /// Their bytes (μ-law: 8 a millisecond).
    audio_bytes: u64,
    /// When the caller's next frame is due.
    next_frame: tokio::time::Instant,
    /// When the bot's audio sent so far has played (the carrier reports no
    /// playback, so Hark estimates it the same way).
    played_until: tokio::time::Instant,
}

impl Simulation {
    /// Starts the call: the greeting plays. `providers` are the policy's
    /// (the LLM is what matters); STT and TTS are replaced by text.
    pub async fn start(
        policy: Arc<PolicyFile>,
        mut providers: Providers,
    ) -> Result<(Self, Vec<Decision>), SimulateError> {
        let typed: TypedLines = Arc::new(Mutex::new(VecDeque::new()));
        providers.stt = Arc::new(SimStt::typed(policy.sim.stt.clone(), Arc::clone(&typed)));
        providers.stt_fallback = None;
        providers.tts = vec![Arc::new(SimTts::new(policy.sim.tts.clone()))];
        // Its other languages: the same model, text for speech.
        let languages = policy
            .languages
            .keys()
            .filter(|code| **code != policy.language)
            .map(|code| {
                let spoken = Arc::new(policy.in_language(code));
                let mut p = providers.clone();
                p.stt = Arc::new(SimStt::typed(spoken.sim.stt.clone(), Arc::clone(&typed)));
                p.tts = vec![Arc::new(SimTts::new(spoken.sim.tts.clone()))];
                let spoken = crate::context::Spoken {
                    code: code.clone(),
                    policy: spoken,
                    providers: p,
                };
                (code.clone(), spoken)
            })
            .collect();
        let (tx, out) = mpsc::channel(1024);
        let records = Arc::new(MemorySink::default());
        let sensitive = policy.outcome.sensitive();
        // A typed call has no number: asked wherever the policy asks at all.
        let policy_asks = policy.rules.consent.asks(None);
        let handle = start_call(CallArgs {
            placed: None,
            resumed: Default::default(),
            ids: CallIds {
                carrier: "sim",
                call_id: "SIM0001".into(),
                stream_id: "SIMSTREAM0001".into(),
            },
            capabilities: Capabilities {
                reports_playback: false,
                ..Capabilities::TWILIO
            },
            providers,
            policy,
            settings: CallSettings::default(),
            outbound: tx,
            transfer: None,
            fault: None,
            records: Arc::clone(&records) as Arc<dyn crate::records::RecordSink>,
            record_base: 0,
            ask_consent: policy_asks,
            recordings: None,
            languages: Arc::new(languages),
        })
        .await
        .map_err(|e| SimulateError::Start(e.to_string()))?;
        let mut sim = Self {
            handle,
            out,
            typed,
            records,
            read: 0,
            seq: 0,
            slots: Map::new(),
            sensitive,
            ended: false,
            audio_frames: 0,
            audio_bytes: 0,
            next_frame: tokio::time::Instant::now(),
            played_until: tokio::time::Instant::now(),
        };
        let mut got = Vec::new();
        sim.settle(&mut got).await;
        Ok((sim, got))
    }

    /// Whether the call is over (the bot hung up, or a fault ended it).
    pub fn ended(&self) -> bool {
        self.ended
    }

    /// Runs one step; what happened because of it.
    pub async fn step(&mut self, step: &Step) -> Vec<Decision> {
        let mut got = Vec::new();
        if self.ended {
            return got;
        }
        match step {
            Step::SayThenOverlap(text) => {
                self.speak(text.clone(), &mut got).await;
                self.until_bot_has_spoken(Duration::from_secs(1), &mut got)
                    .await;
            }
            Step::Say(text) => {
                self.speak(text.clone(), &mut got).await;
                self.settle(&mut got).await;
            }
            Step::Mumble => {
                self.speak(String::new(), &mut got).await;
                self.settle(&mut got).await;
            }
            Step::Dtmf(key) => {
                got.push(Decision::Dtmf { key: *key });
                self.seq += 1;
                deliver(
                    &self.handle.ctx,
                    Event::Dtmf {
                        seq: self.seq,
                        digit: *key,
                    },
                );
                self.settle(&mut got).await;
            }
            Step::Silence(d) => {
                got.push(Decision::Silence {
                    ms: d.as_millis() as u64,
                });
                let silence = vec![crate::ulaw::SILENCE; (d.as_millis() as usize) * 8];
                self.send(&silence, &mut got).await;
            }
        }
        got
    }

    /// The caller hangs up (if the call is still on); the outcome and end.
    pub async fn hang_up(mut self) -> Vec<Decision> {
        let mut got = Vec::new();
        if !self.handle.done.is_finished() {
            deliver(&self.handle.ctx, Event::Stop);
        }
        let _ = tokio::time::timeout(Duration::from_secs(10), &mut self.handle.done).await;
        self.collect(&mut got);
        got
    }

    /// Sends audio frame by frame at the real-time pace, collecting what
    /// the call does meanwhile.
    async fn send(&mut self, audio: &[u8], got: &mut Vec<Decision>) {
        for frame in audio.chunks(FRAME) {
            if self.ended {
                return;
            }
            // One frame every 20 ms across calls too, as a carrier sends them.
            let now = tokio::time::Instant::now();
            self.next_frame = self.next_frame.max(now);
            tokio::time::sleep_until(self.next_frame).await;
            self.next_frame += Duration::from_millis(20);
            self.seq += 1;
            deliver(
                &self.handle.ctx,
                Event::Audio {
                    seq: self.seq,
                    payload: frame,
                },
            );
            self.collect(got);
        }
    }

    /// The caller says `text` (heard as typed; empty: no words), carried
    /// by a recorded utterance.
    async fn speak(&mut self, text: String, got: &mut Vec<Decision>) {
        self.typed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push_back(text.clone());
        got.push(Decision::Caller { text });
        self.send(CARRIER_SPEECH, got).await;
    }

    /// Stays silent until the bot's audio sent since now covers `enough`
    /// (or the answer never comes).
    async fn until_bot_has_spoken(&mut self, enough: Duration, got: &mut Vec<Decision>) {
        let from = self.audio_bytes;
        let want = enough.as_millis() as u64 * 8;
        let step = vec![crate::ulaw::SILENCE; 20 * 8];
        let mut waited = Duration::ZERO;
        while !self.ended && self.audio_bytes - from < want && waited < SETTLE_LIMIT {
            self.send(&step, got).await;
            waited += Duration::from_millis(20);
        }
    }

    /// Stays silent until the bot has answered and finished (a half-second
    /// with no audio from it). An answer may take the endpointing, the
    /// transcript and the whole turn budget to start.
    async fn settle(&mut self, got: &mut Vec<Decision>) {
        let policy = &self.handle.ctx.policy;
        let answer_within = Duration::from_millis(
            u64::from(policy.vad.endpointing_ms)
                + policy.sim.stt.final_delay_ms
                + policy.timeouts.turn_budget_ms
                + 1000,
        );
        let step = vec![crate::ulaw::SILENCE; 100 * 8];
        let frames = self.audio_frames;
        let mut waited = Duration::ZERO;
        while !self.ended && self.audio_frames == frames && waited < answer_within {
            self.send(&step, got).await;
            waited += Duration::from_millis(100);
        }
        let silence = vec![crate::ulaw::SILENCE; QUIET_STEP_MS as usize * 8];
        let mut waited = Duration::ZERO;
        while !self.ended && waited < SETTLE_LIMIT {
            let before = self.audio_frames;
            self.send(&silence, got).await;
            waited += Duration::from_millis(QUIET_STEP_MS);
            if self.audio_frames == before && tokio::time::Instant::now() >= self.played_until {
                break;
            }
        }
        self.collect(got);
    }

    /// Drains the call's commands and records into decisions.
    fn collect(&mut self, got: &mut Vec<Decision>) {
        let now = tokio::time::Instant::now();
        while let Ok(command) = self.out.try_recv() {
            match command {
                Command::Audio(audio) => {
                    self.audio_frames += 1;
                    self.audio_bytes += audio.len() as u64;
                    // μ-law 8 kHz: 125 µs a byte.
                    self.played_until = self.played_until.max(now)
                        + Duration::from_micros(audio.len() as u64 * 125);
                }
                Command::Clear => self.played_until = now,
                Command::Close { .. } => self.ended = true,
                Command::Checkpoint(_) => {}
            }
        }
        let records: Vec<Record> = {
            let all = self
                .records
                .0
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            all.get(self.read..)
                .map(<[Record]>::to_vec)
                .unwrap_or_default()
        };
        self.read += records.len();
        for record in records {
            match record {
                Record::Turn {
                    speaker,
                    text,
                    heard,
                    interrupted,
                    ..
                } if speaker == "bot" => got.push(Decision::Bot {
                    text,
                    interrupted,
                    heard,
                }),
                Record::Event { kind, detail, .. } if kind == "tool_call" => {
                    got.push(Decision::Tool { detail });
                    self.slot_changes(got);
                }
                Record::Event { kind, .. } if kind == "dtmf" => {}
                Record::Event { kind, detail, .. } => got.push(Decision::Event {
                    event: kind,
                    detail,
                }),
                // Slots on record as they fill; the call's outcome follows.
                Record::Outcome {
                    disposition: None, ..
                } => {}
                Record::Outcome {
                    slots,
                    disposition,
                    callback,
                    ..
                } => got.push(Decision::Outcome {
                    disposition: disposition.unwrap_or_default(),
                    slots: self.masked(slots),
                    callback,
                }),
                Record::CallEnded { end_reason, .. } => {
                    self.ended = true;
                    got.push(Decision::Ended { reason: end_reason });
                }
                _ => {}
            }
        }
    }

    /// Slots the bot filled or changed since the last look.
    fn slot_changes(&mut self, got: &mut Vec<Decision>) {
        let Some(outcome) = self.handle.ctx.outcome() else {
            return;
        };
        for (name, value) in self.masked(outcome.slots) {
            if self.slots.get(&name) != Some(&value) {
                self.slots.insert(name.clone(), value.clone());
                got.push(Decision::Slot { name, value });
            }
        }
    }

    fn masked(&self, mut slots: Map<String, Value>) -> Map<String, Value> {
        for (name, value) in slots.iter_mut() {
            if self.sensitive.contains(name) {
                *value = MASKED.into();
            }
        }
        slots
    }
}
