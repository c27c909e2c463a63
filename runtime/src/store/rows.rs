//! Records as stored: personal data (phone numbers, transcript text)
//! already encrypted, so neither the queue, the spool file nor the database
//! ever holds it in clear.

use hark_actors::records::Record;
use serde::{Deserialize, Serialize};
use sqlx::Any;
use sqlx::any::AnyArguments;
use sqlx::query::Query;

use crate::pii::Pii;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum Row {
    Call {
        call_sid: String,
        stream_sid: String,
        /// Rows spooled before carriers were named are Twilio's.
        #[serde(default = "twilio")]
        carrier: String,
        direction: String,
        from_enc: Vec<u8>,
        from_hash: String,
        to_enc: Vec<u8>,
        to_hash: String,
        policy: String,
        policy_version: String,
        node: String,
        started_at: i64,
    },
    CallEnd {
        call_sid: String,
        ended_at: i64,
        end_reason: String,
    },
    /// A call refused at the webhook; stored only if the call is not on record.
    Rejected {
        call_sid: String,
        direction: String,
        from_enc: Vec<u8>,
        from_hash: String,
        to_enc: Vec<u8>,
        to_hash: String,
        policy: String,
        policy_version: String,
        node: String,
        at: i64,
        end_reason: String,
    },
    /// Ends the calls a node left open when it went down.
    NodeRestarted { node: String, at: i64 },
    /// An outbound placement moved on (no personal data).
    Placement(hark_actors::records::PlacementMove),
    /// A spooled row whose personal data was erased on request: it keeps
    /// its place in the spool (the writer counts rows) and writes nothing.
    Erased,
    Turn {
        call_sid: String,
        seq: i64,
        speaker: String,
        text_enc: Vec<u8>,
        heard_enc: Option<Vec<u8>>,
        interrupted: bool,
        started_at: i64,
        ended_at: i64,
    },
    Event {
        call_sid: String,
        seq: i64,
        kind: String,
        /// Empty when the detail is personal (then in `detail_enc`).
        detail: String,
        #[serde(default)]
        detail_enc: Option<Vec<u8>>,
        at: i64,
    },
    Consent {
        call_sid: String,
        seq: i64,
        asked_at: i64,
        answer: String,
        how: String,
        at: i64,
    },
    /// A recording's state; a later state overwrites an earlier one, and
    /// nothing overwrites `deleted`.
    Recording {
        call_sid: String,
        state: String,
        object_key: String,
        duration_ms: i64,
        bytes: i64,
        key_id: String,
        started_at: i64,
        at: i64,
    },
    Outcome {
        call_sid: String,
        /// The slots with keyed hashes for values (`{"plan":"h:…"}`): what
        /// filters match on. The values themselves are only in `slots_enc`.
        slots: String,
        #[serde(default)]
        slots_enc: Option<Vec<u8>>,
        #[serde(default)]
        disposition: Option<String>,
        /// A JSON list of slot names masked for every reader.
        #[serde(default)]
        sensitive: Option<String>,
        #[serde(default)]
        callback_start: Option<String>,
        #[serde(default)]
        callback_end: Option<String>,
    },
}

fn twilio() -> String {
    "twilio".into()
}

impl Row {
    /// Encrypts what must not rest in clear.
    pub fn from_record(record: Record, pii: &Pii) -> Self {
        match record {
            Record::CallStarted {
                call_sid,
                stream_sid,
                carrier,
                direction,
                from,
                to,
                policy,
                policy_version,
                node,
                started_at_ms,
            } => Row::Call {
                call_sid,
                stream_sid,
                carrier,
                direction,
                from_enc: pii.encrypt(&from),
                from_hash: pii.hash_number(&from),
                to_enc: pii.encrypt(&to),
                to_hash: pii.hash_number(&to),
                policy,
                policy_version,
                node,
                started_at: started_at_ms,
            },
            Record::CallRejected {
                call_sid,
                direction,
                from,
                to,
                policy,
                policy_version,
                node,
                at_ms,
                end_reason,
            } => Row::Rejected {
                call_sid,
                direction,
                from_enc: pii.encrypt(&from),
                from_hash: pii.hash_number(&from),
                to_enc: pii.encrypt(&to),
                to_hash: pii.hash_number(&to),
                policy,
                policy_version,
                node,
                at: at_ms,
                end_reason,
            },
            Record::NodeRestarted { node, at_ms } => Row::NodeRestarted { node, at: at_ms },
            Record::Placement(m) => Row::Placement(m),
            Record::CallEnded {
                call_sid,
                ended_at_ms,
                end_reason,
            } => Row::CallEnd {
                call_sid,
                ended_at: ended_at_ms,
                end_reason,
            },
            Record::Turn {
                call_sid,
                seq,
                speaker,
                text,
                heard,
                interrupted,
                started_at_ms,
                ended_at_ms,
            } => Row::Turn {
                call_sid,
                seq: i64::from(seq),
                speaker,
                text_enc: pii.encrypt(&text),
                heard_enc: heard.map(|h| pii.encrypt(&h)),
                interrupted,
                started_at: started_at_ms,
                ended_at: ended_at_ms,
            },
            Record::Event {
                call_sid,
                seq,
                kind,
                detail,
                private,
                at_ms,
            } => {
                let (detail, detail_enc) = if private {
                    (String::new(), Some(pii.encrypt(&detail)))
                } else {
                    (detail, None)
                };
                Row::Event {
                    call_sid,
                    seq: i64::from(seq),
                    kind,
                    detail,
                    detail_enc,
                    at: at_ms,
                }
            }
            Record::Consent {
                call_sid,
                seq,
                asked_at_ms,
                answer,
                how,
                at_ms,
            } => Row::Consent {
                call_sid,
                seq: i64::from(seq),
                asked_at: asked_at_ms,
                answer,
                how,
                at: at_ms,
            },
            Record::Recording {
                call_sid,
                state,
                object_key,
                duration_ms,
                bytes,
                key_id,
                started_at_ms,
                at_ms,
            } => Row::Recording {
                call_sid,
                state,
                object_key,
                duration_ms: duration_ms as i64,
                bytes: bytes as i64,
                key_id,
                started_at: started_at_ms,
                at: at_ms,
            },
            Record::Outcome {
                call_sid,
                slots,
                disposition,
                sensitive,
                callback,
                ..
            } => {
                // Sensitive slots are not indexed: nobody can search by them.
                let index: serde_json::Map<String, serde_json::Value> = slots
                    .iter()
                    .filter(|(slot, _)| !sensitive.contains(slot))
                    .map(|(slot, value)| (slot.clone(), pii.hash_slot(slot, value).into()))
                    .collect();
                let (callback_start, callback_end) = callback.map(|w| (w.start, w.end)).unzip();
                Row::Outcome {
                    call_sid,
                    slots: serde_json::Value::Object(index).to_string(),
                    slots_enc: Some(pii.encrypt(&serde_json::Value::Object(slots).to_string())),
                    disposition,
                    sensitive: (!sensitive.is_empty())
                        .then(|| serde_json::Value::from(sensitive).to_string()),
                    callback_start,
                    callback_end,
                }
            }
        }
    }

    /// The idempotent statement for this row: calls merge field by field (a
    /// call's end may arrive before its start) and the first start wins (a
    /// replayed webhook or stream cannot rewrite it); turns and events are
    /// inserted once.
    pub fn query(&self) -> Query<'_, Any, AnyArguments> {
        match self {
            Row::Call {
                call_sid,
                stream_sid,
                carrier,
                direction,
                from_enc,
                from_hash,
                to_enc,
                to_hash,
                policy,
                policy_version,
                node,
                started_at,
            } => sqlx::query(
                "INSERT INTO calls (call_sid, stream_sid, direction, from_enc, from_hash, to_enc, to_hash, policy, policy_version, node, started_at, carrier) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
                 ON CONFLICT (call_sid) DO UPDATE SET stream_sid = excluded.stream_sid, carrier = excluded.carrier, direction = excluded.direction, \
                 from_enc = excluded.from_enc, from_hash = excluded.from_hash, to_enc = excluded.to_enc, to_hash = excluded.to_hash, \
                 policy = excluded.policy, policy_version = excluded.policy_version, node = excluded.node, started_at = excluded.started_at \
                 WHERE calls.started_at IS NULL",
            )
            .bind(call_sid)
            .bind(stream_sid)
            .bind(direction)
            .bind(from_enc.as_slice())
            .bind(from_hash)
            .bind(to_enc.as_slice())
            .bind(to_hash)
            .bind(policy)
            .bind(policy_version)
            .bind(node)
            .bind(*started_at)
            .bind(carrier),
            Row::Rejected {
                call_sid,
                direction,
                from_enc,
                from_hash,
                to_enc,
                to_hash,
                policy,
                policy_version,
                node,
                at,
                end_reason,
            } => sqlx::query(
                "INSERT INTO calls (call_sid, stream_sid, direction, from_enc, from_hash, to_enc, to_hash, policy, policy_version, node, started_at, ended_at, end_reason) \
                 VALUES ($1, '', $2, $3, $4, $5, $6, $7, $8, $9, $10, $10, $11) ON CONFLICT (call_sid) DO NOTHING",
            )
            .bind(call_sid)
            .bind(direction)
            .bind(from_enc.as_slice())
            .bind(from_hash)
            .bind(to_enc.as_slice())
            .bind(to_hash)
            .bind(policy)
            .bind(policy_version)
            .bind(node)
            .bind(*at)
            .bind(end_reason),
            Row::Erased => sqlx::query("SELECT 1"),
            Row::Placement(m) => super::outbound::advance(m),
            Row::NodeRestarted { node, at } => sqlx::query(
                "UPDATE calls SET ended_at = $2, end_reason = 'node_restarted' \
                 WHERE node = $1 AND ended_at IS NULL AND started_at IS NOT NULL AND started_at < $2",
            )
            .bind(node)
            .bind(*at),
            Row::CallEnd {
                call_sid,
                ended_at,
                end_reason,
            } => sqlx::query(
                "INSERT INTO calls (call_sid, ended_at, end_reason) VALUES ($1, $2, $3) \
                 ON CONFLICT (call_sid) DO UPDATE SET ended_at = excluded.ended_at, end_reason = excluded.end_reason",
            )
            .bind(call_sid)
            .bind(*ended_at)
            .bind(end_reason),
            Row::Turn {
                call_sid,
                seq,
                speaker,
                text_enc,
                heard_enc,
                interrupted,
                started_at,
                ended_at,
            } => sqlx::query(
                "INSERT INTO turns (call_sid, seq, speaker, text_enc, heard_enc, interrupted, started_at, ended_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (call_sid, seq) DO NOTHING",
            )
            .bind(call_sid)
            .bind(*seq)
            .bind(speaker)
            .bind(text_enc.as_slice())
            .bind(heard_enc.as_deref())
            .bind(i64::from(*interrupted))
            .bind(*started_at)
            .bind(*ended_at),
            Row::Event {
                call_sid,
                seq,
                kind,
                detail,
                detail_enc,
                at,
            } => sqlx::query(
                "INSERT INTO call_events (call_sid, seq, kind, detail, detail_enc, at) VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (call_sid, seq) DO NOTHING",
            )
            .bind(call_sid)
            .bind(*seq)
            .bind(kind)
            .bind(detail)
            .bind(detail_enc.as_deref())
            .bind(*at),
            Row::Consent {
                call_sid,
                seq,
                asked_at,
                answer,
                how,
                at,
            } => sqlx::query(
                "INSERT INTO consent_records (call_sid, seq, asked_at, answer, how, at) VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (call_sid, seq) DO NOTHING",
            )
            .bind(call_sid)
            .bind(*seq)
            .bind(*asked_at)
            .bind(answer)
            .bind(how)
            .bind(*at),
            Row::Recording {
                call_sid,
                state,
                object_key,
                duration_ms,
                bytes,
                key_id,
                started_at,
                at,
            } => sqlx::query(
                "INSERT INTO recordings (call_sid, state, object_key, channels, codec, duration_ms, bytes, key_id, started_at, updated_at) \
                 VALUES ($1, $2, $3, 2, 'opus', $4, $5, $6, $7, $8) \
                 ON CONFLICT (call_sid) DO UPDATE SET state = excluded.state, \
                 object_key = CASE WHEN excluded.object_key <> '' THEN excluded.object_key ELSE recordings.object_key END, \
                 duration_ms = CASE WHEN excluded.duration_ms > 0 THEN excluded.duration_ms ELSE recordings.duration_ms END, \
                 bytes = CASE WHEN excluded.bytes > 0 THEN excluded.bytes ELSE recordings.bytes END, \
                 key_id = CASE WHEN excluded.key_id <> '' THEN excluded.key_id ELSE recordings.key_id END, \
                 updated_at = excluded.updated_at \
                 WHERE recordings.state <> 'deleted' AND recordings.updated_at <= excluded.updated_at",
            )
            .bind(call_sid)
            .bind(state)
            .bind(object_key)
            .bind(*duration_ms)
            .bind(*bytes)
            .bind(key_id)
            .bind(*started_at)
            .bind(*at),
            Row::Outcome {
                call_sid,
                slots,
                slots_enc,
                disposition,
                sensitive,
                callback_start,
                callback_end,
            } => sqlx::query(
                "INSERT INTO calls (call_sid, outcome, outcome_enc, disposition, sensitive_slots, callback_start, callback_end) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) \
                 ON CONFLICT (call_sid) DO UPDATE SET outcome = excluded.outcome, outcome_enc = excluded.outcome_enc, \
                 disposition = excluded.disposition, sensitive_slots = excluded.sensitive_slots, \
                 callback_start = excluded.callback_start, callback_end = excluded.callback_end",
            )
            .bind(call_sid)
            .bind(slots)
            .bind(slots_enc.as_deref())
            .bind(disposition.as_deref())
            .bind(sensitive.as_deref())
            .bind(callback_start.as_deref())
            .bind(callback_end.as_deref()),
        }
    }
}
