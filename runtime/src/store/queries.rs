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
    /// The outcome JSON contains this text (e.g. `"plan":"pro"`).
    pub outcome: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub limit: i64,
    pub offset: i64,
}

#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct CallSummary {
    pub call_sid: String,
    pub stream_sid: Option<String>,
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
}

#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct EventView {
    pub seq: i64,
    pub kind: String,
    pub detail: String,
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
pub struct BlockEntry {
    pub number: String,
    pub reason: String,
    pub created_by: String,
    pub created_at: i64,
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

const CALL_COLUMNS: &str = "SELECT call_sid, stream_sid, direction, from_enc, to_enc, policy, policy_version, node, started_at, ended_at, end_reason, outcome FROM calls";

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
    Ok(CallSummary {
        call_sid: row.try_get("call_sid").map_err(err)?,
        stream_sid: row.try_get("stream_sid").map_err(err)?,
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
        outcome: outcome.and_then(|o| serde_json::from_str(&o).ok()),
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
            if let Some(o) = &f.outcome {
                q.and(
                    "outcome LIKE $?",
                    Some(Arg::Text(format!("%{}%", o.replace(['%', '_'], "")))),
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

    pub async fn events(&self, call_sid: &str) -> Result<Vec<EventView>, StoreError> {
        let rows = sqlx::query(
            "SELECT seq, kind, detail, at FROM call_events WHERE call_sid = $1 ORDER BY seq",
        )
        .bind(call_sid)
        .fetch_all(self.pool())
        .await
        .map_err(err)?;
        rows.iter()
            .map(|r| {
                Ok(EventView {
                    seq: r.try_get("seq").map_err(err)?,
                    kind: r.try_get("kind").map_err(err)?,
                    detail: r.try_get("detail").map_err(err)?,
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

    /// Adds or replaces a blocklist entry.
    pub async fn block(
        &self,
        number: &str,
        reason: &str,
        by: &str,
        pii: &Pii,
    ) -> Result<BlockEntry, StoreError> {
        let now = hark_actors::records::now_ms();
        let normalized = crate::pii::normalize(number);
        sqlx::query(
            "INSERT INTO blocklist (number_hash, number_enc, reason, created_by, created_at) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (number_hash) DO UPDATE SET reason = excluded.reason, created_by = excluded.created_by, created_at = excluded.created_at",
        )
        .bind(pii.hash_number(&normalized))
        .bind(pii.encrypt(&normalized))
        .bind(reason)
        .bind(by)
        .bind(now)
        .execute(self.pool())
        .await
        .map_err(err)?;
        Ok(BlockEntry {
            number: normalized,
            reason: reason.to_owned(),
            created_by: by.to_owned(),
            created_at: now,
        })
    }

    /// Whether it was there.
    pub async fn unblock(&self, number: &str, pii: &Pii) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM blocklist WHERE number_hash = $1")
            .bind(pii.hash_number(number))
            .execute(self.pool())
            .await
            .map_err(err)?;
        Ok(done.rows_affected() > 0)
    }

    /// The reason, when `number` is blocked.
    pub async fn blocked(&self, number: &str, pii: &Pii) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT reason FROM blocklist WHERE number_hash = $1")
            .bind(pii.hash_number(number))
            .fetch_optional(self.pool())
            .await
            .map_err(err)?;
        row.map(|r| r.try_get("reason").map_err(err)).transpose()
    }

    pub async fn blocklist(&self, pii: &Pii) -> Result<Vec<BlockEntry>, StoreError> {
        let rows = sqlx::query("SELECT number_enc, reason, created_by, created_at FROM blocklist ORDER BY created_at DESC")
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
        sqlx::query(
            "INSERT INTO audit_log (at, actor, action, target, detail) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(hark_actors::records::now_ms())
        .bind(actor)
        .bind(action)
        .bind(target)
        .bind(detail)
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

    pub async fn create_token(
        &self,
        id: &str,
        name: &str,
        role: &str,
        token_hash: &str,
    ) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO api_tokens (id, name, role, token_hash, created_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(id)
            .bind(name)
            .bind(role)
            .bind(token_hash)
            .bind(hark_actors::records::now_ms())
            .execute(self.pool())
            .await
            .map_err(err)?;
        Ok(())
    }

    /// `(name, role)` of the token with this hash.
    pub async fn token(&self, token_hash: &str) -> Result<Option<(String, String)>, StoreError> {
        let row = sqlx::query("SELECT name, role FROM api_tokens WHERE token_hash = $1")
            .bind(token_hash)
            .fetch_optional(self.pool())
            .await
            .map_err(err)?;
        row.map(|r| {
            Ok((
                r.try_get("name").map_err(err)?,
                r.try_get("role").map_err(err)?,
            ))
        })
        .transpose()
    }

    /// Deletes turns (transcripts) that started before `before_ms`; how many.
    pub async fn purge_transcripts(&self, before_ms: i64) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM turns WHERE started_at < $1")
            .bind(before_ms)
            .execute(self.pool())
            .await
            .map_err(err)?;
        Ok(done.rows_affected())
    }
}
