//! Campaigns on record (issue 18): definitions and states, where each
//! campaign's leads are, and the daily roll-ups (`campaign_daily`,
//! `campaign_daily_outcomes`: kept when retention deletes calls). The
//! scheduler's leases: `scheduling.rs`.

use serde::Serialize;
use sqlx::Row as _;

use super::{Store, StoreError};
use crate::campaigns::spec::CampaignSpec;

fn err(e: sqlx::Error) -> StoreError {
    StoreError::from_sqlx(e)
}

/// A campaign as the API shows it.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct Campaign {
    pub name: String,
    pub spec: CampaignSpec,
    /// `draft`, `running`, `paused`, `completed`.
    pub state: String,
    pub created_by: String,
    pub created_at: i64,
    pub updated_at: i64,
}

/// Where a campaign's leads are.
#[derive(Debug, Clone, Default, Serialize, PartialEq, utoipa::ToSchema)]
pub struct Progress {
    /// Leads due now or later.
    pub waiting: i64,
    /// Attempts in flight.
    pub dialing: i64,
    pub done: i64,
    /// Done leads by why they were not called (or not again):
    /// `do_not_call`, `blocklist`, `no_consent`, `unknown_time_zone`,
    /// `no_calling_window`, `max_attempts`, `invalid_number`.
    pub not_dialed: std::collections::BTreeMap<String, i64>,
    /// The campaign's leads by status.
    pub statuses: std::collections::BTreeMap<String, i64>,
}

/// One campaign-day of analytics.
#[derive(Debug, Clone, Default, Serialize, PartialEq, utoipa::ToSchema)]
pub struct Day {
    /// `YYYY-MM-DD` (UTC).
    pub day: String,
    pub dials: i64,
    pub connects: i64,
    pub qualified: i64,
    pub voicemails: i64,
    pub handle_ms: i64,
    pub consent_asked: i64,
    pub consent_given: i64,
    /// `slot → value → calls`.
    pub outcomes: std::collections::BTreeMap<String, std::collections::BTreeMap<String, i64>>,
}

impl Store {
    /// Writes a new campaign as `draft`; `false` when the name is taken.
    pub async fn campaign_create(
        &self,
        name: &str,
        spec: &CampaignSpec,
        by: &str,
    ) -> Result<bool, StoreError> {
        let now = hark_actors::records::now_ms();
        let json = serde_json::to_string(spec).map_err(|e| StoreError::Query(e.to_string()))?;
        let done = sqlx::query(
            "INSERT INTO campaigns (name, spec, state, next_dial_at, created_by, created_at, updated_at) \
             VALUES ($1, $2, 'draft', 0, $3, $4, $4) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(json)
        .bind(by)
        .bind(now)
        .execute(self.pool())
        .await
        .map_err(err)?;
        Ok(done.rows_affected() == 1)
    }

    /// Replaces a draft's definition; `false` when it is no longer a draft.
    pub async fn campaign_redefine(
        &self,
        name: &str,
        spec: &CampaignSpec,
    ) -> Result<bool, StoreError> {
        let json = serde_json::to_string(spec).map_err(|e| StoreError::Query(e.to_string()))?;
        let done = sqlx::query(
            "UPDATE campaigns SET spec = $2, updated_at = $3 WHERE name = $1 AND state = 'draft'",
        )
        .bind(name)
        .bind(json)
        .bind(hark_actors::records::now_ms())
        .execute(self.pool())
        .await
        .map_err(err)?;
        Ok(done.rows_affected() == 1)
    }

    /// Campaigns not completed (`campaigns.max_campaigns` bounds them).
    pub async fn campaign_count(&self) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM campaigns WHERE state <> 'completed'")
            .fetch_one(self.pool())
            .await
            .map_err(err)?;
        row.try_get("n").map_err(err)
    }

    fn campaign_of(row: &sqlx::any::AnyRow) -> Result<Campaign, StoreError> {
        let spec: String = row.try_get("spec").map_err(err)?;
        Ok(Campaign {
            name: row.try_get("name").map_err(err)?,
            spec: serde_json::from_str(&spec).map_err(|e| StoreError::Query(e.to_string()))?,
            state: row.try_get("state").map_err(err)?,
            created_by: row.try_get("created_by").map_err(err)?,
            created_at: row.try_get("created_at").map_err(err)?,
            updated_at: row.try_get("updated_at").map_err(err)?,
        })
    }

    pub async fn campaign(&self, name: &str) -> Result<Option<Campaign>, StoreError> {
        let row = sqlx::query("SELECT name, spec, state, created_by, created_at, updated_at FROM campaigns WHERE name = $1")
            .bind(name)
            .fetch_optional(self.pool())
            .await
            .map_err(err)?;
        row.map(|r| Self::campaign_of(&r)).transpose()
    }

    pub async fn campaigns(&self) -> Result<Vec<Campaign>, StoreError> {
        let rows = sqlx::query(
            "SELECT name, spec, state, created_by, created_at, updated_at FROM campaigns ORDER BY name",
        )
        .fetch_all(self.pool())
        .await
        .map_err(err)?;
        rows.iter().map(Self::campaign_of).collect()
    }

    /// Moves a campaign from one of `from` to `to`; `false` when it was in
    /// none of them.
    pub async fn campaign_move(
        &self,
        name: &str,
        from: &[&str],
        to: &str,
    ) -> Result<bool, StoreError> {
        let now = hark_actors::records::now_ms();
        for state in from {
            let done = sqlx::query(
                "UPDATE campaigns SET state = $3, updated_at = $4 WHERE name = $1 AND state = $2",
            )
            .bind(name)
            .bind(state)
            .bind(to)
            .bind(now)
            .execute(self.pool())
            .await
            .map_err(err)?;
            if done.rows_affected() == 1 {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Puts every lead of `lists` not yet in the campaign into it (due now,
    /// status `queued`); how many joined.
    pub async fn campaign_enroll(&self, name: &str, lists: &[String]) -> Result<u64, StoreError> {
        let now = hark_actors::records::now_ms();
        let mut tx = self.begin_write().await?;
        let mut joined = 0;
        for list in lists {
            let done = sqlx::query(
                "INSERT INTO campaign_leads (campaign, lead_id, priority, state, attempts, next_at, attempt_key, dialed_at, last_result, reason, updated_at) \
                 SELECT $1, id, priority, 'waiting', 0, $3, NULL, NULL, '', '', $3 FROM leads WHERE list_name = $2 \
                 ON CONFLICT (campaign, lead_id) DO NOTHING",
            )
            .bind(name)
            .bind(list)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(err)?;
            joined += done.rows_affected();
            sqlx::query("UPDATE leads SET status = 'queued', updated_at = $2 WHERE list_name = $1 AND status = 'new'")
                .bind(list)
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(err)?;
        }
        tx.commit().await.map_err(err)?;
        Ok(joined)
    }

    /// Every campaign past draft, highest priority first.
    pub async fn campaigns_started(&self) -> Result<Vec<Campaign>, StoreError> {
        let mut started: Vec<Campaign> = self
            .campaigns()
            .await?
            .into_iter()
            .filter(|c| c.state != "draft")
            .collect();
        started.sort_by_key(|c| std::cmp::Reverse(c.spec.priority));
        Ok(started)
    }

    /// Marks the campaign completed when none of its leads waits or is in
    /// flight; whether it did.
    pub async fn campaign_complete_if_done(&self, name: &str) -> Result<bool, StoreError> {
        let now = hark_actors::records::now_ms();
        let done = sqlx::query(
            "UPDATE campaigns SET state = 'completed', updated_at = $2 WHERE name = $1 AND state = 'running' \
             AND NOT EXISTS (SELECT 1 FROM campaign_leads WHERE campaign = $1 AND state <> 'done')",
        )
        .bind(name)
        .bind(now)
        .execute(self.pool())
        .await
        .map_err(err)?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn campaign_progress(&self, name: &str) -> Result<Progress, StoreError> {
        let mut p = Progress::default();
        let rows = sqlx::query(
            "SELECT state, reason, COUNT(*) AS n FROM campaign_leads WHERE campaign = $1 GROUP BY state, reason",
        )
        .bind(name)
        .fetch_all(self.pool())
        .await
        .map_err(err)?;
        for r in &rows {
            let state: String = r.try_get("state").map_err(err)?;
            let reason: String = r.try_get("reason").map_err(err)?;
            let n: i64 = r.try_get("n").map_err(err)?;
            match state.as_str() {
                "waiting" => p.waiting += n,
                "dialing" => p.dialing += n,
                _ => {
                    p.done += n;
                    if !reason.is_empty() {
                        *p.not_dialed.entry(reason).or_default() += n;
                    }
                }
            }
        }
        let rows = sqlx::query(
            "SELECT l.status, COUNT(*) AS n FROM campaign_leads cl JOIN leads l ON l.id = cl.lead_id WHERE cl.campaign = $1 GROUP BY l.status",
        )
        .bind(name)
        .fetch_all(self.pool())
        .await
        .map_err(err)?;
        for r in &rows {
            p.statuses.insert(
                r.try_get("status").map_err(err)?,
                r.try_get("n").map_err(err)?,
            );
        }
        Ok(p)
    }

    /// A campaign's days from `from` to `to` (inclusive, `YYYY-MM-DD`).
    pub async fn campaign_days(
        &self,
        name: &str,
        from: &str,
        to: &str,
    ) -> Result<Vec<Day>, StoreError> {
        let rows = sqlx::query(
            "SELECT day, dials, connects, qualified, voicemails, handle_ms, consent_asked, consent_given FROM campaign_daily \
             WHERE campaign = $1 AND day >= $2 AND day <= $3 ORDER BY day",
        )
        .bind(name)
        .bind(from)
        .bind(to)
        .fetch_all(self.pool())
        .await
        .map_err(err)?;
        let mut days: Vec<Day> = rows
            .iter()
            .map(|r| {
                Ok(Day {
                    day: r.try_get("day").map_err(err)?,
                    dials: r.try_get("dials").map_err(err)?,
                    connects: r.try_get("connects").map_err(err)?,
                    qualified: r.try_get("qualified").map_err(err)?,
                    voicemails: r.try_get("voicemails").map_err(err)?,
                    handle_ms: r.try_get("handle_ms").map_err(err)?,
                    consent_asked: r.try_get("consent_asked").map_err(err)?,
                    consent_given: r.try_get("consent_given").map_err(err)?,
                    outcomes: Default::default(),
                })
            })
            .collect::<Result<_, StoreError>>()?;
        let rows = sqlx::query(
            "SELECT day, slot, value, n FROM campaign_daily_outcomes WHERE campaign = $1 AND day >= $2 AND day <= $3",
        )
        .bind(name)
        .bind(from)
        .bind(to)
        .fetch_all(self.pool())
        .await
        .map_err(err)?;
        for r in &rows {
            let day: String = r.try_get("day").map_err(err)?;
            if let Some(d) = days.iter_mut().find(|d| d.day == day) {
                d.outcomes
                    .entry(r.try_get("slot").map_err(err)?)
                    .or_default()
                    .insert(
                        r.try_get("value").map_err(err)?,
                        r.try_get("n").map_err(err)?,
                    );
            }
        }
        Ok(days)
    }
}
