//! Reads and admin writes for the API: calls with filters, a call's events
//! and transcript (decrypted here, for callers allowed to see them), the
//! blocklist, the audit log, API tokens, and the retention purge.

use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::{AssertSqlSafe, Row as _};

use super::{Store, StoreError};
use crate::pii::Pii;

#[derive(Debug, Clone, Default)]
pub struct CallFilter {
    /// `active` (no end yet) or `ended`.
    pub status: Option<String>,
    pub direction: Option<String>,
    /// Started at or after / before (ms since the epoch).
    pub since: Option<i64>,
    pub until: Option<i64>,
    pub policy: Option<String>,
    /// An outcome slot and its value (`plan`, `"pro"`): matched by keyed
    /// hash, values are never stored in clear.
    pub outcome: Option<(String, serde_json::Value)>,
    /// `qualified`, or a disposition a policy lists.
    pub disposition: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub limit: i64,
    pub offset: i64,
}

#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct CallSummary {
    pub call_sid: String,
    pub stream_sid: Option<String>,
    /// The carrier that carried the call (`twilio`).
    pub carrier: Option<String>,
    pub direction: Option<String>,
    /// Phone numbers, decrypted (masked for the `viewer` role).
    pub from: Option<String>,
    pub to: Option<String>,
    pub policy: Option<String>,
    pub policy_version: Option<String>,
    pub node: Option<String>,
    /// Milliseconds since the Unix epoch.
    pub started_at: Option<i64>,
    pub ended_at: Option<i64>,
    pub end_reason: Option<String>,
    pub duration_ms: Option<i64>,
    #[schema(value_type = Option<Object>)]
    pub outcome: Option<serde_json::Value>,
    /// `qualified` (every required slot filled), or one the policy lists.
    pub disposition: Option<String>,
    /// The callback window the bot recorded: RFC 3339 with offsets.
    pub callback_start: Option<String>,
    pub callback_end: Option<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct EventView {
    pub seq: i64,
    pub kind: String,
    pub detail: String,
    pub at: i64,
}

/// One consent decision: when the question was put, the answer, how it
/// came (`speech`, `dtmf`, `silence`, `not_asked`) and when.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct ConsentView {
    pub seq: i64,
    pub asked_at: i64,
    /// `accepted`, `declined`, `unclear` (taken as a no), `not_required`.
    pub answer: String,
    pub how: String,
    pub at: i64,
}

#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct TurnView {
    pub seq: i64,
    pub speaker: String,
    /// Everything said in the turn.
    pub text: String,
    /// Of an interrupted bot turn: the part the caller heard.
    pub heard: Option<String>,
    pub interrupted: bool,
    pub started_at: i64,
    pub ended_at: i64,
}

#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct TokenInfo {
    pub name: String,
    pub role: String,
    pub created_at: i64,
    /// Milliseconds since the Unix epoch; none: does not expire.
    pub expires_at: Option<i64>,
}

/// An audit row inside the transaction of the change it records: both or
/// neither. Audit rows hold no personal data (keyed references only).
pub(super) async fn audit_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    actor: &str,
    action: &str,
    target: &str,
    detail: &str,
) -> Result<(), StoreError> {
    audit_row(actor, action, target, detail)
        .execute(&mut **tx)
        .await
        .map_err(err)?;
    Ok(())
}

/// The `INSERT` of one audit row, stamped now.
fn audit_row<'q>(
    actor: &'q str,
    action: &'q str,
    target: &'q str,
    detail: &'q str,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments> {
    sqlx::query(
        "INSERT INTO audit_log (at, actor, action, target, detail) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(hark_actors::records::now_ms())
    .bind(actor)
    .bind(action)
    .bind(target)
    .bind(detail)
}

/// What a retention purge erased.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Purged {
    pub turns: u64,
    pub events: u64,
    pub outcomes: u64,
}

#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct BlockEntry {
    pub number: String,
    pub reason: String,
    pub created_by: String,
    pub created_at: i64,
    /// Milliseconds since the Unix epoch; none: until removed. An
    /// automatic block (`profanity`) expires.
    pub expires_at: Option<i64>,
}

#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct AuditEntry {
    pub id: i64,
    pub at: i64,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub detail: String,
}

/// A query with `$n` placeholders built as conditions are added.
struct Sql {
    text: String,
    args: Vec<Arg>,
    conditions: usize,
}

enum Arg {
    Text(String),
    Int(i64),
}

impl Sql {
    fn new(base: &str) -> Self {
        Self {
            text: base.to_owned(),
            args: Vec::new(),
            conditions: 0,
        }
    }

    /// Adds a condition; `$?` in it becomes the next placeholder for `arg`.
    fn and(&mut self, cond: &str, arg: Option<Arg>) {
        self.text.push_str(if self.conditions == 0 {
            " WHERE "
        } else {
            " AND "
        });
        self.conditions += 1;
        match arg {
            Some(arg) => {
                self.args.push(arg);
                let n = self.args.len();
                self.text.push_str(&cond.replace("$?", &format!("${n}")));
            }
            None => self.text.push_str(cond),
        }
    }

    fn query(&self) -> sqlx::query::Query<'_, sqlx::Any, sqlx::any::AnyArguments> {
        // Only fixed fragments and numbered placeholders: values are bound.
        let mut q = sqlx::query(AssertSqlSafe(self.text.clone()));
        for a in &self.args {
            q = match a {
                Arg::Text(t) => q.bind(t.clone()),
                Arg::Int(i) => q.bind(*i),
            };
        }
        q
    }
}

const CALL_COLUMNS: &str = "SELECT call_sid, stream_sid, carrier, direction, from_enc, to_enc, policy, policy_version, node, started_at, ended_at, end_reason, outcome, outcome_enc, disposition, sensitive_slots, callback_start, callback_end FROM calls";

/// What a `viewer` sees instead of a personal value.
pub const MASKED: &str = "***";

/// The outcome slots to show: decrypted (values masked for `viewer`, and
/// sensitive slots' for everyone). Rows from before outcomes were
/// encrypted hold them in clear.
fn outcome_view(
    clear: Option<String>,
    enc: Option<Vec<u8>>,
    sensitive: &[String],
    pii: &Pii,
    mask: bool,
) -> Option<serde_json::Value> {
    let mut value: serde_json::Value = match enc {
        Some(enc) => match pii.decrypt(&enc) {
            Ok(text) => serde_json::from_str(&text).ok()?,
            Err(_) => return Some("<unreadable: key not loaded>".into()),
        },
        None => serde_json::from_str(&clear?).ok()?,
    };
    if let Some(slots) = value.as_object_mut() {
        for (slot, v) in slots.iter_mut() {
            if mask || sensitive.contains(slot) {
                *v = MASKED.into();
            }
        }
    }
    Some(value)
}

fn err(e: sqlx::Error) -> StoreError {
    StoreError::from_sqlx(e)
}

fn call_row(row: &AnyRow, pii: &Pii, mask: bool) -> Result<CallSummary, StoreError> {
    let number = |col: &str| -> Result<Option<String>, StoreError> {
        let blob: Option<Vec<u8>> = row.try_get(col).map_err(err)?;
        Ok(blob.map(|b| match pii.decrypt(&b) {
            Ok(n) if mask => crate::pii::mask(&n),
            Ok(n) => n,
            Err(_) => "<unreadable: key not loaded>".into(),
        }))
    };
    let started_at: Option<i64> = row.try_get("started_at").map_err(err)?;
    let ended_at: Option<i64> = row.try_get("ended_at").map_err(err)?;
    let outcome: Option<String> = row.try_get("outcome").map_err(err)?;
    let outcome_enc: Option<Vec<u8>> = row.try_get("outcome_enc").map_err(err)?;
    let sensitive: Option<String> = row.try_get("sensitive_slots").map_err(err)?;
    let sensitive: Vec<String> = sensitive
        .and_then(|s| serde_json::from_str(&s).ok())
        .unwrap_or_default();
    Ok(CallSummary {
        call_sid: row.try_get("call_sid").map_err(err)?,
        stream_sid: row.try_get("stream_sid").map_err(err)?,
        carrier: row.try_get("carrier").map_err(err)?,
        direction: row.try_get("direction").map_err(err)?,
        from: number("from_enc")?,
        to: number("to_enc")?,
        policy: row.try_get("policy").map_err(err)?,
        policy_version: row.try_get("policy_version").map_err(err)?,
        node: row.try_get("node").map_err(err)?,
        started_at,
        ended_at,
        end_reason: row.try_get("end_reason").map_err(err)?,
        duration_ms: started_at.zip(ended_at).map(|(s, e)| e - s),
        outcome: outcome_view(outcome, outcome_enc, &sensitive, pii, mask),
        disposition: row.try_get("disposition").map_err(err)?,
        callback_start: row.try_get("callback_start").map_err(err)?,
        callback_end: row.try_get("callback_end").map_err(err)?,
    })
}

impl Store {
    /// Calls matching `f`, newest first, and how many match in all.
    pub async fn list_calls(
        &self,
        f: &CallFilter,
        pii: &Pii,
        mask: bool,
    ) -> Result<(Vec<CallSummary>, i64), StoreError> {
        let build = |base: &str| {
            let mut q = Sql::new(base);
            match f.status.as_deref() {
                Some("active") => q.and("ended_at IS NULL", None),
                Some("ended") => q.and("ended_at IS NOT NULL", None),
                _ => {}
            }
            if let Some(d) = &f.direction {
                q.and("direction = $?", Some(Arg::Text(d.clone())));
            }
            if let Some(t) = f.since {
                q.and("started_at >= $?", Some(Arg::Int(t)));
            }
            if let Some(t) = f.until {
                q.and("started_at < $?", Some(Arg::Int(t)));
            }
            if let Some(p) = &f.policy {
                q.and("policy = $?", Some(Arg::Text(p.clone())));
            }
            if let Some(d) = &f.disposition {
                q.and("disposition = $?", Some(Arg::Text(d.clone())));
            }
            if let Some((slot, value)) = &f.outcome {
                let pair = serde_json::json!({ slot.as_str(): pii.hash_slot(slot, value) });
                let pair = pair.to_string();
                // `{"plan":"h:…"}` → `"plan":"h:…"`, as it appears in the index.
                let inner = pair
                    .get(1..pair.len().saturating_sub(1))
                    .unwrap_or_default();
                q.and(
                    "outcome LIKE $?",
                    Some(Arg::Text(format!("%{}%", inner.replace(['%', '_'], "")))),
                );
            }
            if let Some(n) = &f.from {
                q.and("from_hash = $?", Some(Arg::Text(pii.hash_number(n))));
            }
            if let Some(n) = &f.to {
                q.and("to_hash = $?", Some(Arg::Text(pii.hash_number(n))));
            }
            q
        };
        let mut page = build(CALL_COLUMNS);
        page.args.push(Arg::Int(f.limit));
        page.args.push(Arg::Int(f.offset));
        let n = page.args.len();
        page.text.push_str(&format!(
            " ORDER BY started_at DESC, call_sid LIMIT ${} OFFSET ${n}",
            n - 1
        ));
        let rows = page.query().fetch_all(self.pool()).await.map_err(err)?;
        let calls = rows
            .iter()
            .map(|r| call_row(r, pii, mask))
            .collect::<Result<Vec<_>, _>>()?;
        let total: i64 = build("SELECT COUNT(*) AS n FROM calls")
            .query()
            .fetch_one(self.pool())
            .await
            .map_err(err)?
            .try_get("n")
            .map_err(err)?;
        Ok((calls, total))
    }

    pub async fn call(
        &self,
        call_sid: &str,
        pii: &Pii,
        mask: bool,
    ) -> Result<Option<CallSummary>, StoreError> {
        let mut q = Sql::new(CALL_COLUMNS);
        q.and("call_sid = $?", Some(Arg::Text(call_sid.to_owned())));
        let row = q.query().fetch_optional(self.pool()).await.map_err(err)?;
        row.map(|r| call_row(&r, pii, mask)).transpose()
    }

    /// The outcome slots on record for a call, decrypted and unmasked: for
    /// the node taking the call over, never for a reader.
    pub async fn slots(
        &self,
        call_sid: &str,
        pii: &Pii,
    ) -> Result<serde_json::Map<String, serde_json::Value>, StoreError> {
        let row = sqlx::query("SELECT outcome_enc FROM calls WHERE call_sid = $1")
            .bind(call_sid)
            .fetch_optional(self.pool())
            .await
            .map_err(err)?;
        let enc: Option<Vec<u8>> = match row {
            Some(r) => r.try_get("outcome_enc").map_err(err)?,
            None => None,
        };
        Ok(enc
            .and_then(|e| pii.decrypt(&e).ok())
            .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
            .and_then(|v| match v {
                serde_json::Value::Object(slots) => Some(slots),
                _ => None,
            })
            .unwrap_or_default())
    }

    /// A call's events; personal details decrypted, or masked for `viewer`.
    pub async fn events(
        &self,
        call_sid: &str,
        pii: &Pii,
        mask: bool,
    ) -> Result<Vec<EventView>, StoreError> {
        let rows = sqlx::query(
            "SELECT seq, kind, detail, detail_enc, at FROM call_events WHERE call_sid = $1 ORDER BY seq",
        )
        .bind(call_sid)
        .fetch_all(self.pool())
        .await
        .map_err(err)?;
        rows.iter()
            .map(|r| {
                let enc: Option<Vec<u8>> = r.try_get("detail_enc").map_err(err)?;
                let detail = match enc {
                    Some(_) if mask => MASKED.to_owned(),
                    Some(enc) => pii
                        .decrypt(&enc)
                        .unwrap_or_else(|_| "<unreadable: key not loaded>".into()),
                    None => r.try_get("detail").map_err(err)?,
                };
                Ok(EventView {
                    seq: r.try_get("seq").map_err(err)?,
                    kind: r.try_get("kind").map_err(err)?,
                    detail,
                    at: r.try_get("at").map_err(err)?,
                })
            })
            .collect()
    }

    /// A call's consent decisions, in order.
    pub async fn consents(&self, call_sid: &str) -> Result<Vec<ConsentView>, StoreError> {
        let rows = sqlx::query(
            "SELECT seq, asked_at, answer, how, at FROM consent_records WHERE call_sid = $1 ORDER BY seq",
        )
        .bind(call_sid)
        .fetch_all(self.pool())
        .await
        .map_err(err)?;
        rows.iter()
            .map(|r| {
                Ok(ConsentView {
                    seq: r.try_get("seq").map_err(err)?,
                    asked_at: r.try_get("asked_at").map_err(err)?,
                    answer: r.try_get("answer").map_err(err)?,
                    how: r.try_get("how").map_err(err)?,
                    at: r.try_get("at").map_err(err)?,
                })
            })
            .collect()
    }

    pub async fn transcript(&self, call_sid: &str, pii: &Pii) -> Result<Vec<TurnView>, StoreError> {
        let rows = sqlx::query(
            "SELECT seq, speaker, text_enc, heard_enc, interrupted, started_at, ended_at FROM turns WHERE call_sid = $1 ORDER BY seq",
        )
        .bind(call_sid)
        .fetch_all(self.pool())
        .await
        .map_err(err)?;
        let open = |b: Option<Vec<u8>>| {
            b.map(|b| {
                pii.decrypt(&b)
                    .unwrap_or_else(|_| "<unreadable: key not loaded>".into())
            })
        };
        rows.iter()
            .map(|r| {
                Ok(TurnView {
                    seq: r.try_get("seq").map_err(err)?,
                    speaker: r.try_get("speaker").map_err(err)?,
                    text: open(r.try_get("text_enc").map_err(err)?).unwrap_or_default(),
                    heard: open(r.try_get("heard_enc").map_err(err)?),
                    interrupted: r.try_get::<i64, _>("interrupted").map_err(err)? != 0,
                    started_at: r.try_get("started_at").map_err(err)?,
                    ended_at: r.try_get("ended_at").map_err(err)?,
                })
            })
            .collect()
    }

    /// Adds or replaces a blocklist entry, and its audit row, in one
    /// transaction (the audit names the number by keyed hash only).
    pub async fn block(
        &self,
        number: &str,
        reason: &str,
        by: &str,
        expires_at: Option<i64>,
        pii: &Pii,
    ) -> Result<BlockEntry, StoreError> {
        let now = hark_actors::records::now_ms();
        let normalized = crate::pii::normalize(number);
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO blocklist (number_hash, number_enc, reason, created_by, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (number_hash) DO UPDATE SET reason = excluded.reason, created_by = excluded.created_by, created_at = excluded.created_at, expires_at = excluded.expires_at",
        )
        .bind(pii.hash_number(&normalized))
        .bind(pii.encrypt(&normalized))
        .bind(reason)
        .bind(by)
        .bind(now)
        .bind(expires_at)
        .execute(&mut *tx)
        .await
        .map_err(err)?;
        // A typed reason may name someone: only a rule's fixed label is audited.
        let detail = if by.starts_with("rule:") { reason } else { "" };
        audit_in(
            &mut tx,
            by,
            "block_number",
            &pii.audit_ref(&normalized),
            detail,
        )
        .await?;
        tx.commit().await.map_err(err)?;
        Ok(BlockEntry {
            number: normalized,
            reason: reason.to_owned(),
            created_by: by.to_owned(),
            created_at: now,
            expires_at,
        })
    }

    /// Removes a blocklist entry (audited in the same transaction); whether
    /// it was there.
    pub async fn unblock(&self, number: &str, by: &str, pii: &Pii) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let done = sqlx::query("DELETE FROM blocklist WHERE number_hash = $1")
            .bind(pii.hash_number(number))
            .execute(&mut *tx)
            .await
            .map_err(err)?;
        let found = done.rows_affected() > 0;
        if found {
            audit_in(&mut tx, by, "unblock_number", &pii.audit_ref(number), "").await?;
        }
        tx.commit().await.map_err(err)?;
        Ok(found)
    }

    /// The reason, when `number` is blocked (an expired block is not).
    pub async fn blocked(&self, number: &str, pii: &Pii) -> Result<Option<String>, StoreError> {
        let row = sqlx::query(
            "SELECT reason FROM blocklist WHERE number_hash = $1 AND (expires_at IS NULL OR expires_at > $2)",
        )
        .bind(pii.hash_number(number))
        .bind(hark_actors::records::now_ms())
            .fetch_optional(self.pool())
            .await
            .map_err(err)?;
        row.map(|r| r.try_get("reason").map_err(err)).transpose()
    }

    pub async fn blocklist(&self, pii: &Pii) -> Result<Vec<BlockEntry>, StoreError> {
        let rows = sqlx::query("SELECT number_enc, reason, created_by, created_at, expires_at FROM blocklist ORDER BY created_at DESC")
            .fetch_all(self.pool())
            .await
            .map_err(err)?;
        rows.iter()
            .map(|r| {
                let enc: Vec<u8> = r.try_get("number_enc").map_err(err)?;
                Ok(BlockEntry {
                    number: pii.decrypt(&enc).unwrap_or_else(|_| "<unreadable>".into()),
                    reason: r.try_get("reason").map_err(err)?,
                    created_by: r.try_get("created_by").map_err(err)?,
                    created_at: r.try_get("created_at").map_err(err)?,
                    expires_at: r.try_get("expires_at").map_err(err)?,
                })
            })
            .collect()
    }

    pub async fn audit(
        &self,
        actor: &str,
        action: &str,
        target: &str,
        detail: &str,
    ) -> Result<(), StoreError> {
        audit_row(actor, action, target, detail)
            .execute(self.pool())
            .await
            .map_err(err)?;
        Ok(())
    }

    pub async fn audit_log(&self, limit: i64) -> Result<Vec<AuditEntry>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, at, actor, action, target, detail FROM audit_log ORDER BY id DESC LIMIT $1",
        )
        .bind(limit)
        .fetch_all(self.pool())
        .await
        .map_err(err)?;
        rows.iter()
            .map(|r| {
                Ok(AuditEntry {
                    id: r.try_get("id").map_err(err)?,
                    at: r.try_get("at").map_err(err)?,
                    actor: r.try_get("actor").map_err(err)?,
                    action: r.try_get("action").map_err(err)?,
                    target: r.try_get("target").map_err(err)?,
                    detail: r.try_get("detail").map_err(err)?,
                })
            })
            .collect()
    }

    /// Checks this node's PII keys against the ones the database's rows are
    /// under, and records new ones. A key id (or the hash key) the database
    /// knows with another fingerprint is an error naming it.
    pub async fn check_pii_keys(&self, keys: &[(String, String)]) -> Result<(), StoreError> {
        for (id, fingerprint) in keys {
            let known = sqlx::query("SELECT fingerprint FROM pii_keys WHERE key_id = $1")
                .bind(id)
                .fetch_optional(self.pool())
                .await
                .map_err(err)?;
            match known {
                Some(row) => {
                    let known: String = row.try_get("fingerprint").map_err(err)?;
                    if &known != fingerprint {
                        let which = if id == "#hash" {
                            "HARK_PII_HASH_KEY".to_owned()
                        } else {
                            format!("PII key {id:?}")
                        };
                        return Err(StoreError::Keys(format!(
                            "{which} is not the one this database's rows were written with (fingerprint {known}, this node's {fingerprint}): give every node the same keys"
                        )));
                    }
                }
                None => {
                    sqlx::query("INSERT INTO pii_keys (key_id, fingerprint, created_at) VALUES ($1, $2, $3) ON CONFLICT (key_id) DO NOTHING")
                        .bind(id)
                        .bind(fingerprint)
                        .bind(hark_actors::records::now_ms())
                        .execute(self.pool())
                        .await
                        .map_err(err)?;
                }
            }
        }
        Ok(())
    }

    /// Creates a token (its hash) and audits it, in one transaction.
    pub async fn create_token(
        &self,
        id: &str,
        name: &str,
        role: &str,
        token_hash: &str,
        expires_at: Option<i64>,
        by: &str,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        sqlx::query("INSERT INTO api_tokens (id, name, role, token_hash, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6)")
            .bind(id)
            .bind(name)
            .bind(role)
            .bind(token_hash)
            .bind(hark_actors::records::now_ms())
            .bind(expires_at)
            .execute(&mut *tx)
            .await
            .map_err(err)?;
        let detail = match expires_at {
            Some(t) => format!("role {role}, expires {t}"),
            None => format!("role {role}"),
        };
        audit_in(&mut tx, by, "create_token", name, &detail).await?;
        tx.commit().await.map_err(err)
    }

    /// Revokes (deletes) the token named `name`, audited in the same
    /// transaction; whether there was one.
    pub async fn revoke_token(&self, name: &str, by: &str) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let done = sqlx::query("DELETE FROM api_tokens WHERE name = $1")
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(err)?;
        let found = done.rows_affected() > 0;
        if found {
            audit_in(&mut tx, by, "revoke_token", name, "").await?;
        }
        tx.commit().await.map_err(err)?;
        Ok(found)
    }

    /// Every token: name, role, created, expiry (never its hash).
    pub async fn tokens(&self) -> Result<Vec<TokenInfo>, StoreError> {
        let rows =
            sqlx::query("SELECT name, role, created_at, expires_at FROM api_tokens ORDER BY name")
                .fetch_all(self.pool())
                .await
                .map_err(err)?;
        rows.iter()
            .map(|r| {
                Ok(TokenInfo {
                    name: r.try_get("name").map_err(err)?,
                    role: r.try_get("role").map_err(err)?,
                    created_at: r.try_get("created_at").map_err(err)?,
                    expires_at: r.try_get("expires_at").map_err(err)?,
                })
            })
            .collect()
    }

    /// `(name, role, expires_at)` of the token with this hash.
    pub async fn token(
        &self,
        token_hash: &str,
    ) -> Result<Option<(String, String, Option<i64>)>, StoreError> {
        let row =
            sqlx::query("SELECT name, role, expires_at FROM api_tokens WHERE token_hash = $1")
                .bind(token_hash)
                .fetch_optional(self.pool())
                .await
                .map_err(err)?;
        row.map(|r| {
            Ok((
                r.try_get("name").map_err(err)?,
                r.try_get("role").map_err(err)?,
                r.try_get("expires_at").map_err(err)?,
            ))
        })
        .transpose()
    }

    /// Erases what was said and the personal details of calls older than
    /// `before_ms`: turn text, event details, outcome slot values. The rows
    /// stay — who spoke when, what happened, how the call ended and how
    /// long it took — so counts and analytics survive. How many of each.
    pub async fn purge_personal(&self, before_ms: i64) -> Result<Purged, StoreError> {
        let mut tx = self.begin_write().await?;
        let turns = sqlx::query(
            "UPDATE turns SET text_enc = NULL, heard_enc = NULL \
             WHERE started_at < $1 AND (text_enc IS NOT NULL OR heard_enc IS NOT NULL)",
        )
        .bind(before_ms)
        .execute(&mut *tx)
        .await
        .map_err(err)?
        .rows_affected();
        let events = sqlx::query(
            "UPDATE call_events SET detail = '', detail_enc = NULL \
             WHERE at < $1 AND (detail <> '' OR detail_enc IS NOT NULL)",
        )
        .bind(before_ms)
        .execute(&mut *tx)
        .await
        .map_err(err)?
        .rows_affected();
        let outcomes = sqlx::query(
            "UPDATE calls SET outcome = NULL, outcome_enc = NULL \
             WHERE started_at < $1 AND (outcome IS NOT NULL OR outcome_enc IS NOT NULL)",
        )
        .bind(before_ms)
        .execute(&mut *tx)
        .await
        .map_err(err)?
        .rows_affected();
        tx.commit().await.map_err(err)?;
        Ok(Purged {
            turns,
            events,
            outcomes,
        })
    }
}
