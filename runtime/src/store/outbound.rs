//! Outbound calls on record (issue 16): the do-not-call list, and each call
//! Hark was asked to place — refused and why, or dialed and the state the
//! carrier reports. Numbers and the lead's variables are encrypted; lookups
//! go by keyed hash.

use serde::Serialize;
use sqlx::Row as _;

use super::queries::audit_in;
use super::{Store, StoreError};
use crate::pii::Pii;
use hark_actors::records::PlacementMove;

fn err(e: sqlx::Error) -> StoreError {
    StoreError::from_sqlx(e)
}

#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct DncEntry {
    pub number: String,
    pub reason: String,
    /// `api`, `import` or `rule:NAME`.
    pub source: String,
    pub created_by: String,
    /// Milliseconds since the Unix epoch.
    pub created_at: i64,
}

/// A call Hark was asked to place, as the API shows it.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct Placement {
    /// `OB…`: Hark's id for the request.
    pub id: String,
    pub to: String,
    pub from: String,
    pub policy: String,
    /// `off`, `enable` or `detect_message_end`.
    pub machine_detection: String,
    /// The carrier's call SID, once dialed.
    pub call_sid: Option<String>,
    /// `refused`, `dialing`, then the carrier's: `queued`, `initiated`,
    /// `ringing`, `in-progress`, `completed`, `busy`, `no-answer`,
    /// `failed`, `canceled`.
    pub state: String,
    /// Why it was refused or failed (`do_not_call`, `blocklist`, the
    /// carrier's error); empty otherwise.
    pub reason: String,
    /// The carrier's answering-machine verdict (`human`, `machine_end_beep`…).
    pub answered_by: Option<String>,
    pub idempotency_key: Option<String>,
    pub created_by: String,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A placement as written, with what stays private: the lead's variables.
pub struct NewPlacement<'a> {
    pub placement: &'a Placement,
    pub variables_json: &'a str,
}

/// Whether the state is one that will not change again: `refused`, or a
/// final carrier status (the port's `CallStatus::is_final`).
pub fn is_final(state: &str) -> bool {
    state == "refused" || hark_carrier::twilio::status::parse(state).is_some_and(|s| s.is_final())
}

/// The columns a placement is read from (a macro: `sqlx` takes only static SQL).
macro_rules! columns {
    () => {
        "SELECT id, idempotency_key, to_enc, from_number, policy, variables_enc, machine_detection, call_sid, state, reason, answered_by, created_by, created_at, updated_at FROM outbound_calls"
    };
}

/// Erases a placement's number and lead variables (`$2`: an empty blob),
/// by the call it dialed.
pub(super) const ERASE_PLACEMENT_OF_CALL: &str =
    "UPDATE outbound_calls SET to_enc = $2, to_hash = '', variables_enc = $2 WHERE call_sid = $1";

/// The `UPDATE` a [`PlacementMove`] is. States only move forward (dialing,
/// queued, initiated, ringing, in-progress, then a final one, kept):
/// callbacks and the dialer's own update may arrive in any order.
pub(super) fn advance(
    m: &PlacementMove,
) -> sqlx::query::Query<'_, sqlx::Any, sqlx::any::AnyArguments> {
    sqlx::query(
        "UPDATE outbound_calls SET call_sid = COALESCE($2, call_sid), \
         state = CASE WHEN $3 IS NULL THEN state \
           WHEN (CASE state WHEN 'dialing' THEN 0 WHEN 'queued' THEN 1 WHEN 'initiated' THEN 2 WHEN 'ringing' THEN 3 WHEN 'in-progress' THEN 4 ELSE 5 END) \
              < (CASE $3 WHEN 'dialing' THEN 0 WHEN 'queued' THEN 1 WHEN 'initiated' THEN 2 WHEN 'ringing' THEN 3 WHEN 'in-progress' THEN 4 ELSE 5 END) \
           THEN $3 ELSE state END, \
         reason = COALESCE($4, reason), answered_by = COALESCE($5, answered_by), updated_at = $6 WHERE id = $1",
    )
    .bind(&m.id)
    .bind(&m.call_sid)
    .bind(&m.state)
    .bind(&m.reason)
    .bind(&m.answered_by)
    .bind(m.at_ms)
}

/// A number or lead erased on request: an empty blob.
fn readable(blob: &[u8], pii: &Pii, erased: &str) -> String {
    if blob.is_empty() {
        return erased.to_owned();
    }
    pii.decrypt(blob).unwrap_or_else(|_| "<unreadable>".into())
}

fn placement(row: &sqlx::any::AnyRow, pii: &Pii) -> Result<(Placement, String), StoreError> {
    let to: Vec<u8> = row.try_get("to_enc").map_err(err)?;
    let vars: Vec<u8> = row.try_get("variables_enc").map_err(err)?;
    Ok((
        Placement {
            id: row.try_get("id").map_err(err)?,
            idempotency_key: row.try_get("idempotency_key").map_err(err)?,
            to: readable(&to, pii, ""),
            from: row.try_get("from_number").map_err(err)?,
            policy: row.try_get("policy").map_err(err)?,
            machine_detection: row.try_get("machine_detection").map_err(err)?,
            call_sid: row.try_get("call_sid").map_err(err)?,
            state: row.try_get("state").map_err(err)?,
            reason: row.try_get("reason").map_err(err)?,
            answered_by: row.try_get("answered_by").map_err(err)?,
            created_by: row.try_get("created_by").map_err(err)?,
            created_at: row.try_get("created_at").map_err(err)?,
            updated_at: row.try_get("updated_at").map_err(err)?,
        },
        readable(&vars, pii, "{}"),
    ))
}

impl Store {
    /// Adds (or re-reasons) numbers on the do-not-call list in one
    /// transaction, audited once per number.
    pub async fn dnc_add(
        &self,
        numbers: &[String],
        reason: &str,
        source: &str,
        by: &str,
        pii: &Pii,
    ) -> Result<(), StoreError> {
        let now = hark_actors::records::now_ms();
        let mut tx = self.begin_write().await?;
        for number in numbers {
            sqlx::query(
                "INSERT INTO dnc (number_hash, number_enc, reason, source, created_by, created_at) VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (number_hash) DO UPDATE SET reason = excluded.reason, source = excluded.source, created_by = excluded.created_by, created_at = excluded.created_at",
            )
            .bind(pii.hash_number(number))
            .bind(pii.encrypt(number))
            .bind(reason)
            .bind(source)
            .bind(by)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(err)?;
            audit_in(&mut tx, by, "dnc_add", &pii.audit_ref(number), source).await?;
        }
        tx.commit().await.map_err(err)?;
        Ok(())
    }

    /// Lists a number whose owner asked not to be called again (the
    /// do-not-call rule; idempotent).
    pub async fn dnc_asked(&self, number: &str, pii: &Pii) -> Result<(), StoreError> {
        const SOURCE: &str = "rule:do_not_call";
        let numbers = [number.to_owned()];
        self.dnc_add(
            &numbers,
            "asked not to be called again",
            SOURCE,
            SOURCE,
            pii,
        )
        .await
    }

    pub async fn dnc_remove(&self, number: &str, by: &str, pii: &Pii) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let done = sqlx::query("DELETE FROM dnc WHERE number_hash = $1")
            .bind(pii.hash_number(number))
            .execute(&mut *tx)
            .await
            .map_err(err)?;
        let found = done.rows_affected() > 0;
        if found {
            audit_in(&mut tx, by, "dnc_remove", &pii.audit_ref(number), "").await?;
        }
        tx.commit().await.map_err(err)?;
        Ok(found)
    }

    pub async fn dnc_list(&self, pii: &Pii) -> Result<Vec<DncEntry>, StoreError> {
        let rows = sqlx::query(
            "SELECT number_enc, reason, source, created_by, created_at FROM dnc ORDER BY created_at DESC",
        )
        .fetch_all(self.pool())
        .await
        .map_err(err)?;
        rows.iter()
            .map(|r| {
                let enc: Vec<u8> = r.try_get("number_enc").map_err(err)?;
                Ok(DncEntry {
                    number: pii.decrypt(&enc).unwrap_or_else(|_| "<unreadable>".into()),
                    reason: r.try_get("reason").map_err(err)?,
                    source: r.try_get("source").map_err(err)?,
                    created_by: r.try_get("created_by").map_err(err)?,
                    created_at: r.try_get("created_at").map_err(err)?,
                })
            })
            .collect()
    }

    /// Why `number` may not be dialed: `do_not_call` or `blocklist` (an
    /// expired block does not count); `None` when it may.
    pub async fn dial_refusal(
        &self,
        number: &str,
        pii: &Pii,
    ) -> Result<Option<&'static str>, StoreError> {
        let hash = pii.hash_number(number);
        let dnc = sqlx::query("SELECT 1 AS x FROM dnc WHERE number_hash = $1")
            .bind(&hash)
            .fetch_optional(self.pool())
            .await
            .map_err(err)?;
        if dnc.is_some() {
            return Ok(Some("do_not_call"));
        }
        Ok(self.blocked(number, pii).await?.map(|_| "blocklist"))
    }

    /// Writes a new placement; with an idempotency key already used, writes
    /// nothing and answers the first one instead (`Ok(Some(first))`).
    pub async fn placement_insert(
        &self,
        new: NewPlacement<'_>,
        pii: &Pii,
    ) -> Result<Option<Placement>, StoreError> {
        let p = new.placement;
        let done = sqlx::query(
            "INSERT INTO outbound_calls (id, idempotency_key, to_hash, to_enc, from_number, policy, variables_enc, machine_detection, call_sid, state, reason, answered_by, created_by, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) ON CONFLICT (idempotency_key) DO NOTHING",
        )
        .bind(&p.id)
        .bind(&p.idempotency_key)
        .bind(pii.hash_number(&p.to))
        .bind(pii.encrypt(&p.to))
        .bind(&p.from)
        .bind(&p.policy)
        .bind(pii.encrypt(new.variables_json))
        .bind(&p.machine_detection)
        .bind(&p.call_sid)
        .bind(&p.state)
        .bind(&p.reason)
        .bind(&p.answered_by)
        .bind(&p.created_by)
        .bind(p.created_at)
        .bind(p.updated_at)
        .execute(self.pool())
        .await
        .map_err(err)?;
        if done.rows_affected() > 0 {
            return Ok(None);
        }
        let Some(key) = &p.idempotency_key else {
            return Err(StoreError::Query("placement not written".into()));
        };
        let row = sqlx::query(concat!(columns!(), " WHERE idempotency_key = $1"))
            .bind(key)
            .fetch_one(self.pool())
            .await
            .map_err(err)?;
        Ok(Some(placement(&row, pii)?.0))
    }

    /// The placement with its lead's variables (JSON).
    pub async fn placement(
        &self,
        id: &str,
        pii: &Pii,
    ) -> Result<Option<(Placement, String)>, StoreError> {
        let row = sqlx::query(concat!(columns!(), " WHERE id = $1"))
            .bind(id)
            .fetch_optional(self.pool())
            .await
            .map_err(err)?;
        row.map(|r| placement(&r, pii)).transpose()
    }

    pub async fn placements(&self, limit: i64, pii: &Pii) -> Result<Vec<Placement>, StoreError> {
        let rows = sqlx::query(concat!(
            columns!(),
            " ORDER BY created_at DESC, id LIMIT $1"
        ))
        .bind(limit)
        .fetch_all(self.pool())
        .await
        .map_err(err)?;
        rows.iter()
            .map(|r| placement(r, pii).map(|(p, _)| p))
            .collect()
    }

    /// Erases the number and lead variables of every placement to the
    /// number with keyed hash `hash` (refused ones, which dialed no call,
    /// included); the do-not-call list keeps the number, as the blocklist does.
    pub async fn erase_placements_to(&self, hash: &str) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "UPDATE outbound_calls SET to_enc = $2, to_hash = '', variables_enc = $2 WHERE to_hash = $1",
        )
        .bind(hash)
        .bind(Vec::<u8>::new())
        .execute(self.pool())
        .await
        .map_err(err)?;
        Ok(done.rows_affected())
    }
}
