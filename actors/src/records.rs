//! What a call leaves on record: its start and end, each turn (with the
//! heard part of an interrupted bot turn), events and the outcome. Actors
//! hand records to a [`RecordSink`] and never wait: storing them (batched,
//! spooled to disk while the database is away) is the runtime's job.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Record {
    CallStarted {
        call_sid: String,
        stream_sid: String,
        /// The carrier's name (`twilio`).
        carrier: String,
        /// `inbound` or `outbound`.
        direction: String,
        from: String,
        to: String,
        policy: String,
        policy_version: String,
        node: String,
        started_at_ms: i64,
    },
    CallEnded {
        call_sid: String,
        ended_at_ms: i64,
        end_reason: String,
    },
    /// A call refused at the webhook (`<Reject/>`): started and ended at
    /// once. Stored only if the call has no record yet, so a webhook replayed
    /// for a call on record cannot rewrite it.
    CallRejected {
        call_sid: String,
        direction: String,
        from: String,
        to: String,
        policy: String,
        policy_version: String,
        node: String,
        at_ms: i64,
        end_reason: String,
    },
    /// This node restarted: every call it left open (a crash, SIGKILL) ended
    /// before `at_ms`, with reason `node_restarted`.
    NodeRestarted { node: String, at_ms: i64 },
    /// An outbound placement moved on (the runtime's dialer). Through the
    /// record writer so an outage loses none of them.
    Placement(PlacementMove),
    Turn {
        call_sid: String,
        /// Per call, from 0: with `call_sid`, the record's identity.
        seq: u32,
        /// `caller` or `bot`.
        speaker: String,
        text: String,
        /// Of an interrupted bot turn: what the caller heard before talking over it.
        heard: Option<String>,
        interrupted: bool,
        started_at_ms: i64,
        ended_at_ms: i64,
    },
    Event {
        call_sid: String,
        seq: u32,
        /// `barge_in`, `dtmf`, `child_restart`, `provider_fault`, `tool_call`, …
        kind: String,
        detail: String,
        /// The detail is personal (digits pressed): encrypted at rest,
        /// masked for the `viewer` role.
        #[serde(default)]
        private: bool,
        at_ms: i64,
    },
    /// A consent decision (`consent_records`).
    Consent {
        call_sid: String,
        seq: u32,
        /// When the question was first put; the decision's time if never asked.
        asked_at_ms: i64,
        /// `accepted`, `declined`, `unclear`, `not_required`.
        answer: String,
        /// `speech`, `dtmf`, `silence`, `not_asked`.
        how: String,
        at_ms: i64,
    },
    /// A call recording's state (`recordings`): `recording`, `encoding`,
    /// `pending_upload`, `stored`, `deleted`.
    Recording {
        call_sid: String,
        state: String,
        #[serde(default)]
        object_key: String,
        #[serde(default)]
        duration_ms: u64,
        /// Bytes of the Ogg Opus file (what a reader gets).
        #[serde(default)]
        bytes: u64,
        /// The PII key it is sealed with.
        #[serde(default)]
        key_id: String,
        started_at_ms: i64,
        at_ms: i64,
    },
    Outcome {
        call_sid: String,
        slots: serde_json::Map<String, serde_json::Value>,
        /// `qualified`, or one of the policy's dispositions.
        #[serde(default)]
        disposition: Option<String>,
        /// Slots whose values are masked for every reader and never indexed.
        #[serde(default)]
        sensitive: Vec<String>,
        /// The callback window the bot recorded, as given (RFC 3339).
        #[serde(default)]
        callback: Option<CallbackWindow>,
        at_ms: i64,
    },
}

/// When to call back, as the bot recorded it: RFC 3339 with offsets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallbackWindow {
    pub start: String,
    pub end: String,
}

/// What a finished call means, for its record.
#[derive(Debug, Clone, PartialEq)]
pub struct CallOutcome {
    pub slots: serde_json::Map<String, serde_json::Value>,
    pub disposition: String,
    pub sensitive: Vec<String>,
    pub callback: Option<CallbackWindow>,
}

impl CallOutcome {
    /// The outcome of a call under `settings` that recorded `slots` and,
    /// maybe, chose a disposition.
    pub fn decide(
        settings: &crate::policy::OutcomeSettings,
        slots: serde_json::Map<String, serde_json::Value>,
        chosen: Option<&str>,
    ) -> Self {
        let disposition = settings.disposition(&slots, chosen);
        let callback = settings
            .slots
            .iter()
            .filter(|(_, s)| s.kind == crate::policy::SlotType::CallbackWindow)
            .find_map(|(name, _)| slots.get(name))
            .and_then(|w| {
                Some(CallbackWindow {
                    start: w.get("start")?.as_str()?.to_owned(),
                    end: w.get("end")?.as_str()?.to_owned(),
                })
            });
        Self {
            slots,
            disposition,
            sensitive: settings.sensitive(),
            callback,
        }
    }
}

impl Record {
    /// The call the record is about (none for a node's own records).
    pub fn call_sid(&self) -> &str {
        match self {
            Record::CallStarted { call_sid, .. }
            | Record::CallEnded { call_sid, .. }
            | Record::CallRejected { call_sid, .. }
            | Record::Turn { call_sid, .. }
            | Record::Event { call_sid, .. }
            | Record::Consent { call_sid, .. }
            | Record::Outcome { call_sid, .. }
            | Record::Recording { call_sid, .. } => call_sid,
            Record::NodeRestarted { .. } | Record::Placement(_) => "",
        }
    }
}

/// An outbound placement moved on: its call SID once dialed, the carrier's
/// state (applied only forward: a late `ringing` never undoes
/// `in-progress`, a final state is kept), a reason, the answering-machine
/// verdict. No personal data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlacementMove {
    pub id: String,
    pub call_sid: Option<String>,
    pub state: Option<String>,
    pub reason: Option<String>,
    pub answered_by: Option<String>,
    pub at_ms: i64,
}

/// Where records go. `send` must not block or fail: the sink owns overflow.
pub trait RecordSink: Send + Sync {
    fn send(&self, record: Record);
}

/// Keeps records in memory; for tests and tools.
#[derive(Default)]
pub struct MemorySink(pub std::sync::Mutex<Vec<Record>>);

impl RecordSink for MemorySink {
    fn send(&self, record: Record) {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(record);
    }
}

/// One call's handle on the sink, numbering its turns and events.
pub struct CallRecorder {
    call_sid: String,
    sink: Arc<dyn RecordSink>,
    turns: AtomicU32,
    events: AtomicU32,
    consents: AtomicU32,
    /// A decline covering the transcript: turns keep their shape, not their text.
    withhold_text: AtomicBool,
}

impl CallRecorder {
    pub fn new(call_sid: &str, sink: Arc<dyn RecordSink>) -> Self {
        Self {
            call_sid: call_sid.to_owned(),
            sink,
            turns: AtomicU32::new(0),
            events: AtomicU32::new(0),
            consents: AtomicU32::new(0),
            withhold_text: AtomicBool::new(false),
        }
    }

    /// Numbers this stream's turns and events from `base` (a call's later
    /// streams follow its earlier ones). Call before recording anything.
    pub fn start_at(&self, base: u32) {
        self.turns.store(base, Ordering::Relaxed);
        self.events.store(base, Ordering::Relaxed);
        self.consents.store(base, Ordering::Relaxed);
    }

    /// From now on, turns are stored without their text.
    pub fn withhold_text(&self) {
        self.withhold_text.store(true, Ordering::Relaxed);
    }

    pub fn consent(&self, answer: &str, how: &str, asked_at_ms: i64) {
        let at_ms = now_ms();
        self.sink.send(Record::Consent {
            call_sid: self.call_sid.clone(),
            seq: self.consents.fetch_add(1, Ordering::Relaxed),
            asked_at_ms: if asked_at_ms > 0 { asked_at_ms } else { at_ms },
            answer: answer.to_owned(),
            how: how.to_owned(),
            at_ms,
        });
    }

    pub fn send(&self, record: Record) {
        self.sink.send(record);
    }

    pub fn caller_turn(&self, text: &str, started_at_ms: i64) {
        self.turn("caller", text, None, started_at_ms);
    }

    /// A bot turn that ended: `heard` is set when the caller cut it short.
    pub fn bot_turn(&self, text: &str, heard: Option<&str>, started_at_ms: i64) {
        self.turn("bot", text, heard, started_at_ms);
    }

    fn turn(&self, speaker: &str, text: &str, heard: Option<&str>, started_at_ms: i64) {
        if text.trim().is_empty() {
            return;
        }
        let (text, heard) = if self.withhold_text.load(Ordering::Relaxed) {
            ("", heard.map(|_| ""))
        } else {
            (text, heard)
        };
        self.sink.send(Record::Turn {
            call_sid: self.call_sid.clone(),
            seq: self.turns.fetch_add(1, Ordering::Relaxed),
            speaker: speaker.to_owned(),
            text: text.to_owned(),
            heard: heard.map(str::to_owned),
            interrupted: heard.is_some(),
            started_at_ms,
            ended_at_ms: now_ms(),
        });
    }

    pub fn event(&self, kind: &str, detail: impl Into<String>) {
        self.event_with(kind, detail.into(), false);
    }

    /// An event whose detail is personal: encrypted at rest.
    pub fn private_event(&self, kind: &str, detail: impl Into<String>) {
        self.event_with(kind, detail.into(), true);
    }

    fn event_with(&self, kind: &str, detail: String, private: bool) {
        self.sink.send(Record::Event {
            call_sid: self.call_sid.clone(),
            seq: self.events.fetch_add(1, Ordering::Relaxed),
            kind: kind.to_owned(),
            detail,
            private,
            at_ms: now_ms(),
        });
    }

    pub fn outcome(&self, outcome: CallOutcome) {
        self.sink.send(Record::Outcome {
            call_sid: self.call_sid.clone(),
            slots: outcome.slots,
            disposition: Some(outcome.disposition),
            sensitive: outcome.sensitive,
            callback: outcome.callback,
            at_ms: now_ms(),
        });
    }

    /// The slots recorded so far (no disposition yet): on record as they
    /// fill, so a call taken over from a lost node keeps them. The call's
    /// final outcome replaces it.
    pub fn slots(&self, slots: serde_json::Map<String, serde_json::Value>, sensitive: Vec<String>) {
        self.sink.send(Record::Outcome {
            call_sid: self.call_sid.clone(),
            slots,
            disposition: None,
            sensitive,
            callback: None,
            at_ms: now_ms(),
        });
    }

    pub fn ended(&self, end_reason: &str) {
        self.sink.send(Record::CallEnded {
            call_sid: self.call_sid.clone(),
            ended_at_ms: now_ms(),
            end_reason: end_reason.to_owned(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn turns_and_events_are_numbered_per_call_and_empty_turns_skipped() {
        let sink = Arc::new(MemorySink::default());
        let rec = CallRecorder::new("CA1", sink.clone());
        rec.caller_turn("hello", 1);
        rec.bot_turn("  ", None, 2);
        rec.bot_turn("Hi there. How can I help?", Some("Hi there."), 3);
        rec.event("barge_in", "");
        rec.event("dtmf", "5");
        let got = sink.0.lock().unwrap().clone();
        assert_eq!(got.len(), 4);
        assert!(
            matches!(&got[1], Record::Turn { seq: 1, interrupted: true, heard: Some(h), .. } if h == "Hi there.")
        );
        assert!(matches!(&got[3], Record::Event { seq: 1, kind, .. } if kind == "dtmf"));
        let json = serde_json::to_string(&got[0]).unwrap();
        assert_eq!(serde_json::from_str::<Record>(&json).unwrap(), got[0]);
    }

    #[test]
    fn a_decline_covering_the_transcript_keeps_the_turns_shape_not_their_words() {
        let sink = Arc::new(MemorySink::default());
        let rec = CallRecorder::new("CA1", sink.clone());
        rec.bot_turn("May we record?", None, 1);
        rec.withhold_text();
        rec.caller_turn("No", 2);
        rec.bot_turn("Understood. How can I help?", Some("Understood."), 3);
        rec.consent("declined", "speech", 1);
        let got = sink.0.lock().unwrap().clone();
        let texts: Vec<(&str, Option<&str>)> = got
            .iter()
            .filter_map(|r| match r {
                Record::Turn { text, heard, .. } => Some((text.as_str(), heard.as_deref())),
                _ => None,
            })
            .collect();
        assert_eq!(
            texts,
            [("May we record?", None), ("", None), ("", Some(""))]
        );
        assert!(
            matches!(&got[3], Record::Consent { seq: 0, answer, asked_at_ms: 1, .. } if answer == "declined")
        );
        let json = serde_json::to_string(&got[0]).unwrap();
        assert_eq!(serde_json::from_str::<Record>(&json).unwrap(), got[0]);
    }
}
