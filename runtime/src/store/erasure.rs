//! Recordings on record, and erasing a person's (or a call's) personal
//! data on request: recordings, transcripts, numbers, slot values, DTMF.
//! What stays: that the call happened, when, how it ended, its consent
//! decisions, and the blocklist (it is why the person is not called again).

use sqlx::Row as _;

use super::{Row, Store, StoreError};
use crate::pii::Pii;

fn err(e: sqlx::Error) -> StoreError {
    StoreError::from_sqlx(e)
}

/// What erasing a call's personal data runs, per call (`$1`), in the order
/// of `Erased`'s counts: turn text, private event details (DTMF digits),
/// outcome values and the callback window, both numbers and their hashes.
const ERASE_PERSONAL: [&str; 4] = [
    "UPDATE turns SET text_enc = NULL, heard_enc = NULL \
     WHERE call_sid = $1 AND (text_enc IS NOT NULL OR heard_enc IS NOT NULL)",
    "UPDATE call_events SET detail = '', detail_enc = NULL \
     WHERE call_sid = $1 AND (detail_enc IS NOT NULL OR kind = 'dtmf')",
    "UPDATE calls SET outcome = NULL, outcome_enc = NULL, callback_start = NULL, callback_end = NULL \
     WHERE call_sid = $1 AND (outcome IS NOT NULL OR outcome_enc IS NOT NULL)",
    "UPDATE calls SET from_enc = NULL, to_enc = NULL, from_hash = NULL, to_hash = NULL \
     WHERE call_sid = $1",
];

/// A call's recording as the `recordings` table has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordingRow {
    pub call_sid: String,
    pub state: String,
    pub object_key: String,
    pub duration_ms: i64,
    pub bytes: i64,
    pub key_id: String,
    pub started_at: i64,
}

/// What an erasure removed from the database.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Erased {
    pub calls: u64,
    pub turns: u64,
    pub events: u64,
    pub outcomes: u64,
    /// Object keys of the recordings marked deleted (to delete from storage).
    pub recordings: Vec<String>,
}

impl Store {
    pub async fn recording(&self, call_sid: &str) -> Result<Option<RecordingRow>, StoreError> {
        let row = sqlx::query(
            "SELECT call_sid, state, object_key, duration_ms, bytes, key_id, started_at \
             FROM recordings WHERE call_sid = $1",
        )
        .bind(call_sid)
        .fetch_optional(self.pool())
        .await
        .map_err(err)?;
        row.map(|r| {
            Ok(RecordingRow {
                call_sid: r.try_get("call_sid").map_err(err)?,
                state: r.try_get("state").map_err(err)?,
                object_key: r.try_get("object_key").map_err(err)?,
                duration_ms: r.try_get("duration_ms").map_err(err)?,
                bytes: r.try_get("bytes").map_err(err)?,
                key_id: r.try_get("key_id").map_err(err)?,
                started_at: r.try_get("started_at").map_err(err)?,
            })
        })
        .transpose()
    }

    /// The calls from or to the number with keyed hash `hash`.
    pub async fn calls_of_number(&self, hash: &str) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query("SELECT call_sid FROM calls WHERE from_hash = $1 OR to_hash = $1")
            .bind(hash)
            .fetch_all(self.pool())
            .await
            .map_err(err)?;
        rows.iter()
            .map(|r| r.try_get::<String, _>("call_sid").map_err(err))
            .collect()
    }

    /// Erases the personal data of `calls` in one transaction: transcript
    /// text, private event details (DTMF digits), both numbers and their
    /// hashes, outcome slot values and the callback window; their
    /// recordings are marked `deleted` (the caller deletes the objects).
    pub async fn erase_calls(&self, calls: &[String], at_ms: i64) -> Result<Erased, StoreError> {
        let mut tx = self.begin_write().await?;
        let mut out = Erased::default();
        for call in calls {
            let keys = sqlx::query(
                "SELECT object_key FROM recordings WHERE call_sid = $1 AND state <> 'deleted'",
            )
            .bind(call)
            .fetch_all(&mut *tx)
            .await
            .map_err(err)?;
            for k in keys {
                out.recordings
                    .push(k.try_get::<String, _>("object_key").map_err(err)?);
            }
            sqlx::query(
                "UPDATE recordings SET state = 'deleted', object_key = '', updated_at = $2 WHERE call_sid = $1",
            )
            .bind(call)
            .bind(at_ms)
            .execute(&mut *tx)
            .await
            .map_err(err)?;
            // Turns, private event details, outcome values, numbers: each
            // statement's count goes to its field of `out`.
            let counts = [
                &mut out.turns,
                &mut out.events,
                &mut out.outcomes,
                &mut out.calls,
            ];
            for (count, sql) in counts.into_iter().zip(ERASE_PERSONAL) {
                *count += sqlx::query(sql)
                    .bind(call)
                    .execute(&mut *tx)
                    .await
                    .map_err(err)?
                    .rows_affected();
            }
            // The placement that dialed it: the number and the lead's fields.
            sqlx::query(super::outbound::ERASE_PLACEMENT_OF_CALL)
                .bind(call)
                .bind(Vec::<u8>::new())
                .execute(&mut *tx)
                .await
                .map_err(err)?;
        }
        tx.commit().await.map_err(err)?;
        Ok(out)
    }

    /// Recordings started before `before_ms` and not deleted: `(call, object key)`.
    pub async fn expired_recordings(
        &self,
        before_ms: i64,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let rows = sqlx::query(
            "SELECT call_sid, object_key FROM recordings WHERE started_at < $1 AND state <> 'deleted' \
             ORDER BY started_at LIMIT 1000",
        )
        .bind(before_ms)
        .fetch_all(self.pool())
        .await
        .map_err(err)?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("call_sid").map_err(err)?,
                    r.try_get("object_key").map_err(err)?,
                ))
            })
            .collect()
    }

    /// Marks these calls' recordings deleted.
    pub async fn recordings_deleted(&self, calls: &[String], at_ms: i64) -> Result<(), StoreError> {
        for call in calls {
            sqlx::query(
                "UPDATE recordings SET state = 'deleted', object_key = '', updated_at = $2 WHERE call_sid = $1",
            )
            .bind(call)
            .bind(at_ms)
            .execute(self.pool())
            .await
            .map_err(err)?;
        }
        Ok(())
    }
}

/// Rows as erasure sees them: whose they are, and what is left of them.
impl Row {
    /// The call a row is about ("" for a node's own rows).
    pub fn call_sid(&self) -> &str {
        match self {
            Row::Call { call_sid, .. }
            | Row::CallEnd { call_sid, .. }
            | Row::Rejected { call_sid, .. }
            | Row::Turn { call_sid, .. }
            | Row::Event { call_sid, .. }
            | Row::Consent { call_sid, .. }
            | Row::Recording { call_sid, .. }
            | Row::Outcome { call_sid, .. } => call_sid,
            Row::NodeRestarted { .. } | Row::Placement(_) | Row::Erased => "",
        }
    }

    /// Whether this row names the number with keyed hash `hash`.
    pub fn has_number(&self, hash: &str) -> bool {
        match self {
            Row::Call {
                from_hash, to_hash, ..
            }
            | Row::Rejected {
                from_hash, to_hash, ..
            } => from_hash == hash || to_hash == hash,
            _ => false,
        }
    }

    /// This row with the personal data of its call erased (`None`: it
    /// carries nothing else and is dropped for an [`Row::Erased`]).
    pub fn erased(self, pii: &Pii) -> Option<Self> {
        match self {
            Row::Call {
                call_sid,
                stream_sid,
                carrier,
                direction,
                policy,
                policy_version,
                node,
                started_at,
                ..
            } => Some(Row::Call {
                call_sid,
                stream_sid,
                carrier,
                direction,
                from_enc: pii.encrypt(""),
                from_hash: String::new(),
                to_enc: pii.encrypt(""),
                to_hash: String::new(),
                policy,
                policy_version,
                node,
                started_at,
            }),
            Row::Rejected {
                call_sid,
                direction,
                policy,
                policy_version,
                node,
                at,
                end_reason,
                ..
            } => Some(Row::Rejected {
                call_sid,
                direction,
                from_enc: pii.encrypt(""),
                from_hash: String::new(),
                to_enc: pii.encrypt(""),
                to_hash: String::new(),
                policy,
                policy_version,
                node,
                at,
                end_reason,
            }),
            Row::Event {
                detail_enc: Some(_),
                ..
            }
            | Row::Turn { .. }
            | Row::Outcome { .. }
            | Row::Recording { .. } => None,
            other => Some(other),
        }
    }
}
