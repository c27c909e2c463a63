//! Leads on record (issue 18): one row per number per list, the number and
//! custom fields encrypted, found by keyed hash. An import merges into the
//! leads already there (later values win), all in one transaction per batch.

use std::collections::BTreeMap;

use serde::Serialize;
use sqlx::Row as _;

use super::{Store, StoreError};
use crate::campaigns::import::LeadRow;
use crate::pii::Pii;

fn err(e: sqlx::Error) -> StoreError {
    StoreError::from_sqlx(e)
}

/// A lead as the API shows it.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct Lead {
    /// `LD…`: Hark's id.
    pub id: String,
    pub list: String,
    /// E.164; empty once erased.
    pub number: String,
    pub fields: BTreeMap<String, String>,
    pub region: String,
    /// IANA names joined by `&`; empty: unknown (never dialed).
    pub time_zone: String,
    pub priority: i64,
    /// `yes`, `no`, or empty (not given).
    pub consent: String,
    /// `new`, `queued`, `attempting`, `contacted`, `qualified`,
    /// `not_interested`, `callback`, `voicemail`, `do_not_call`, `bad_number`.
    pub status: String,
    /// `ai`, `agent:NAME` or `skill:NAME`.
    pub owner: String,
    pub created_at: i64,
    pub updated_at: i64,
}

/// What an import did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Imported {
    pub created: usize,
    /// Rows merged into a lead already on the list.
    pub merged: usize,
}

/// Rows written per transaction.
const BATCH: usize = 500;

macro_rules! lead_columns {
    () => {
        "SELECT id, list_name, number_enc, fields_enc, region, time_zone, priority, consent, status, owner, created_at, updated_at FROM leads"
    };
}

fn consent_text(c: Option<bool>) -> &'static str {
    match c {
        Some(true) => "yes",
        Some(false) => "no",
        None => "",
    }
}

pub(super) fn lead_of(row: &sqlx::any::AnyRow, pii: &Pii) -> Result<Lead, StoreError> {
    let number: Vec<u8> = row.try_get("number_enc").map_err(err)?;
    let fields: Vec<u8> = row.try_get("fields_enc").map_err(err)?;
    let fields = if fields.is_empty() {
        BTreeMap::new()
    } else {
        pii.decrypt(&fields)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default()
    };
    Ok(Lead {
        id: row.try_get("id").map_err(err)?,
        list: row.try_get("list_name").map_err(err)?,
        number: if number.is_empty() {
            String::new()
        } else {
            pii.decrypt(&number)
                .unwrap_or_else(|_| "<unreadable>".into())
        },
        fields,
        region: row.try_get("region").map_err(err)?,
        time_zone: row.try_get("time_zone").map_err(err)?,
        priority: row.try_get("priority").map_err(err)?,
        consent: row.try_get("consent").map_err(err)?,
        status: row.try_get("status").map_err(err)?,
        owner: row.try_get("owner").map_err(err)?,
        created_at: row.try_get("created_at").map_err(err)?,
        updated_at: row.try_get("updated_at").map_err(err)?,
    })
}

/// `LD` + time + a counter + random: ids sort in the order leads were
/// imported (a list reads back in its file's order).
fn new_lead_id(now_ms: i64) -> String {
    static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed) & 0xff_ffff;
    let mut bytes = [0u8; 4];
    rand::fill(&mut bytes);
    format!("LD{now_ms:012x}{seq:06x}{:08x}", u32::from_be_bytes(bytes))
}

impl Store {
    /// Writes `rows` to `list`, merging into leads with the same number.
    pub async fn leads_import(
        &self,
        list: &str,
        rows: &[LeadRow],
        default_owner: &str,
        pii: &Pii,
    ) -> Result<Imported, StoreError> {
        let mut done = Imported::default();
        let now = hark_actors::records::now_ms();
        for batch in rows.chunks(BATCH) {
            let mut tx = self.begin_write().await?;
            for row in batch {
                let hash = pii.hash_number(&row.number);
                let fields = serde_json::to_string(&row.fields).unwrap_or_else(|_| "{}".into());
                let owner = if row.owner.is_empty() {
                    default_owner
                } else {
                    &row.owner
                };
                // A new number (the common case): one statement.
                let inserted = sqlx::query(
                    "INSERT INTO leads (id, list_name, number_hash, number_enc, fields_enc, region, time_zone, priority, consent, status, owner, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'new', $10, $11, $11) ON CONFLICT (list_name, number_hash) DO NOTHING",
                )
                .bind(new_lead_id(now))
                .bind(list)
                .bind(&hash)
                .bind(pii.encrypt(&row.number))
                .bind(pii.encrypt(&fields))
                .bind(&row.region)
                .bind(&row.time_zone)
                .bind(row.priority)
                .bind(consent_text(row.consent))
                .bind(owner)
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(err)?;
                if inserted.rows_affected() == 1 {
                    done.created += 1;
                    continue;
                }
                // On the list already: merged, the file's values winning.
                let found = sqlx::query(concat!(
                    lead_columns!(),
                    " WHERE list_name = $1 AND number_hash = $2"
                ))
                .bind(list)
                .bind(&hash)
                .fetch_one(&mut *tx)
                .await
                .map_err(err)?;
                let old = lead_of(&found, pii)?;
                let mut merged = LeadRow {
                    row: row.row,
                    number: row.number.clone(),
                    region: row.region.clone(),
                    time_zone: old.time_zone,
                    priority: old.priority,
                    consent: match old.consent.as_str() {
                        "yes" => Some(true),
                        "no" => Some(false),
                        _ => None,
                    },
                    owner: old.owner,
                    fields: old.fields,
                };
                crate::campaigns::import::merge(&mut merged, row.clone());
                let fields = serde_json::to_string(&merged.fields).unwrap_or_else(|_| "{}".into());
                sqlx::query(
                    "UPDATE leads SET fields_enc = $3, region = $4, time_zone = $5, priority = $6, consent = $7, owner = $8, updated_at = $9 \
                     WHERE list_name = $1 AND number_hash = $2",
                )
                .bind(list)
                .bind(&hash)
                .bind(pii.encrypt(&fields))
                .bind(&merged.region)
                .bind(&merged.time_zone)
                .bind(merged.priority)
                .bind(consent_text(merged.consent))
                .bind(&merged.owner)
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(err)?;
                done.merged += 1;
            }
            tx.commit().await.map_err(err)?;
        }
        Ok(done)
    }

    /// The region a list reads national numbers in, if an import ever
    /// named one.
    pub async fn list_region(&self, list: &str) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT region FROM lead_lists WHERE name = $1")
            .bind(list)
            .fetch_optional(self.pool())
            .await
            .map_err(err)?;
        row.map(|r| r.try_get("region").map_err(err)).transpose()
    }

    /// Remembers `region` as the list's: imports that name none use it.
    pub async fn set_list_region(
        &self,
        list: &str,
        region: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO lead_lists (name, region, created_at, updated_at) VALUES ($1, $2, $3, $3) \
             ON CONFLICT (name) DO UPDATE SET region = excluded.region, updated_at = excluded.updated_at",
        )
        .bind(list)
        .bind(region)
        .bind(now_ms)
        .execute(self.pool())
        .await
        .map_err(err)?;
        Ok(())
    }

    pub async fn lead(&self, id: &str, pii: &Pii) -> Result<Option<Lead>, StoreError> {
        let row = sqlx::query(concat!(lead_columns!(), " WHERE id = $1"))
            .bind(id)
            .fetch_optional(self.pool())
            .await
            .map_err(err)?;
        row.map(|r| lead_of(&r, pii)).transpose()
    }

    /// A list's leads, in the order they were first imported.
    pub async fn leads_of_list(
        &self,
        list: &str,
        limit: i64,
        pii: &Pii,
    ) -> Result<Vec<Lead>, StoreError> {
        let rows = sqlx::query(concat!(
            lead_columns!(),
            " WHERE list_name = $1 ORDER BY created_at, id LIMIT $2"
        ))
        .bind(list)
        .bind(limit)
        .fetch_all(self.pool())
        .await
        .map_err(err)?;
        rows.iter().map(|r| lead_of(r, pii)).collect()
    }

    /// Leads owned by any of `owners` (an agent's own name and skills),
    /// highest priority first, most recently moved first.
    pub async fn agent_queue(
        &self,
        owners: &[String],
        limit: i64,
        pii: &Pii,
    ) -> Result<Vec<Lead>, StoreError> {
        let mut out = Vec::new();
        for owner in owners {
            let rows = sqlx::query(concat!(
                lead_columns!(),
                " WHERE owner = $1 ORDER BY priority DESC, updated_at DESC LIMIT $2"
            ))
            .bind(owner)
            .bind(limit)
            .fetch_all(self.pool())
            .await
            .map_err(err)?;
            for r in &rows {
                out.push(lead_of(r, pii)?);
            }
        }
        out.sort_by(|a, b| {
            b.priority
                .cmp(&a.priority)
                .then(b.updated_at.cmp(&a.updated_at))
        });
        out.truncate(usize::try_from(limit).unwrap_or(0));
        Ok(out)
    }

    /// Erases the number and fields of every lead with number hash `hash`
    /// (its status stays: why it is not called again).
    pub async fn erase_leads_to(&self, hash: &str) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "UPDATE leads SET number_enc = $2, fields_enc = $2, number_hash = 'erased:' || id WHERE number_hash = $1",
        )
        .bind(hash)
        .bind(Vec::<u8>::new())
        .execute(self.pool())
        .await
        .map_err(err)?;
        Ok(done.rows_affected())
    }
}
