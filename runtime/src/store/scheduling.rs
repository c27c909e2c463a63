//! The campaign scheduler's leases (issue 18): a claim locks the campaign
//! row (`FOR UPDATE` on PostgreSQL: every node's claims for one campaign
//! take turns, so pacing and concurrency hold across nodes) and takes due
//! leads with `FOR UPDATE SKIP LOCKED`, marking them `dialing` under an
//! attempt key; an attempt is settled only under its own key, with the
//! lead's status and the day's roll-up in the same transaction.

use sqlx::Row as _;

use super::{Backend, Store, StoreError};
use crate::campaigns::spec::CampaignSpec;
use crate::pii::Pii;

fn err(e: sqlx::Error) -> StoreError {
    StoreError::from_sqlx(e)
}

/// A lead taken for dialing (its row is `dialing` under `attempt_key`).
#[derive(Debug, Clone)]
pub struct Claimed {
    pub lead_id: String,
    pub attempt: i64,
    pub attempt_key: String,
    pub number: String,
    pub fields_json: String,
}

/// A due lead the claim looks at: whether it may be called now is the
/// scheduler's call (its zone, the campaign's calendar).
#[derive(Debug, Clone)]
pub struct Due {
    pub lead_id: String,
    pub attempts: i64,
    pub region: String,
    pub time_zone: String,
    pub consent: String,
}

/// What the claim decided for one due lead.
#[derive(Debug, Clone)]
pub enum Verdict {
    /// Dial now.
    Dial,
    /// Not now: due again at this instant (ms).
    Later(i64),
    /// Never in this campaign, and why.
    Never(&'static str),
}

/// An attempt in flight, with what is known of its call.
#[derive(Debug, Clone, Default)]
pub struct InFlight {
    pub lead_id: String,
    pub attempts: i64,
    pub attempt_key: String,
    pub dialed_at: i64,
    /// The placement's id and state (`None`: not written yet).
    pub placement_id: Option<String>,
    pub placement: Option<String>,
    pub placement_reason: String,
    pub answered_by: Option<String>,
    pub placement_updated: i64,
    pub call_sid: Option<String>,
    pub started_at: Option<i64>,
    pub ended_at: Option<i64>,
    pub disposition: Option<String>,
    pub callback_start: Option<String>,
}

/// How an attempt is settled.
#[derive(Debug, Clone)]
pub struct Settle {
    pub lead_id: String,
    pub attempt_key: String,
    /// `waiting` (with `next_at`) or `done`.
    pub next_at: Option<i64>,
    pub result: String,
    pub reason: String,
    pub lead_status: String,
    /// The new owner, if a rule moved the lead.
    pub owner: Option<String>,
    /// Not dialed after all (the claim's placement was never written): the
    /// attempt is given back and nothing is counted.
    pub undo: bool,
    pub tally: Tally,
}

/// What one settled attempt adds to its day.
#[derive(Debug, Clone, Default)]
pub struct Tally {
    pub day: String,
    pub dialed: bool,
    pub connected: bool,
    pub qualified: bool,
    pub voicemail: bool,
    pub handle_ms: i64,
    pub consent_asked: bool,
    pub consent_given: bool,
    /// `(slot, value)` pairs: the disposition and the slots filled.
    pub outcomes: Vec<(String, String)>,
}

const LOCK_CAMPAIGN_PG: &str =
    "SELECT spec, state, next_dial_at FROM campaigns WHERE name = $1 FOR UPDATE";
const LOCK_CAMPAIGN_SQLITE: &str =
    "SELECT spec, state, next_dial_at FROM campaigns WHERE name = $1";
const DUE_PG: &str = "SELECT cl.lead_id, cl.attempts, l.region, l.time_zone, l.consent FROM campaign_leads cl JOIN leads l ON l.id = cl.lead_id \
     WHERE cl.campaign = $1 AND cl.state = 'waiting' AND cl.next_at <= $2 ORDER BY cl.priority DESC, cl.next_at, cl.lead_id LIMIT $3 FOR UPDATE OF cl SKIP LOCKED";
const DUE_SQLITE: &str = "SELECT cl.lead_id, cl.attempts, l.region, l.time_zone, l.consent FROM campaign_leads cl JOIN leads l ON l.id = cl.lead_id \
     WHERE cl.campaign = $1 AND cl.state = 'waiting' AND cl.next_at <= $2 ORDER BY cl.priority DESC, cl.next_at, cl.lead_id LIMIT $3";

/// The pacing clock: how many calls may start at `now` and where the clock
/// goes after `taken` of them. A late tick catches up on up to `burst`
/// missed calls; further behind (a start, a pause) the pace starts again
/// from now, so a campaign does not dial its missed minutes at once.
pub fn pace(
    next_dial_at: i64,
    now: i64,
    interval_ms: i64,
    burst: i64,
) -> (i64, impl Fn(i64) -> i64) {
    let interval = interval_ms.max(1);
    let burst = burst.max(1);
    let (base, allowed) = if now < next_dial_at {
        (next_dial_at, 0)
    } else if (now - next_dial_at) / interval + 1 > burst {
        // Missed more than a burst (a start, a pause, a stall): the debt
        // is dropped and the pace starts again from now.
        (now, 1)
    } else {
        (next_dial_at, (now - next_dial_at) / interval + 1)
    };
    (allowed, move |taken: i64| base + taken * interval)
}

impl Store {
    /// Takes leads to dial now. Under the campaign row's lock: how many
    /// calls may start (pacing, `max_concurrent`), then up to that many due
    /// leads, each judged by `judge` (its window, its consent); those not
    /// to be called now move to when they may be, or out of the campaign.
    pub async fn campaign_claim(
        &self,
        name: &str,
        now: i64,
        burst: i64,
        judge: impl Fn(&CampaignSpec, &Due) -> Verdict,
    ) -> Result<(Vec<Claimed>, Vec<(String, &'static str)>), StoreError> {
        let pg = self.backend == Backend::Postgres;
        let mut tx = self.begin_write().await?;
        let Some(row) = sqlx::query(if pg {
            LOCK_CAMPAIGN_PG
        } else {
            LOCK_CAMPAIGN_SQLITE
        })
        .bind(name)
        .fetch_optional(&mut *tx)
        .await
        .map_err(err)?
        else {
            return Ok((Vec::new(), Vec::new()));
        };
        let state: String = row.try_get("state").map_err(err)?;
        if state != "running" {
            return Ok((Vec::new(), Vec::new()));
        }
        let spec: CampaignSpec =
            serde_json::from_str(&row.try_get::<String, _>("spec").map_err(err)?)
                .map_err(|e| StoreError::Query(e.to_string()))?;
        let next_dial_at: i64 = row.try_get("next_dial_at").map_err(err)?;
        let dialing: i64 = sqlx::query(
            "SELECT COUNT(*) AS n FROM campaign_leads WHERE campaign = $1 AND state = 'dialing'",
        )
        .bind(name)
        .fetch_one(&mut *tx)
        .await
        .map_err(err)?
        .try_get("n")
        .map_err(err)?;
        let interval = 60_000 / i64::from(spec.calls_per_minute.max(1));
        let (paced, clock) = pace(next_dial_at, now, interval, burst);
        let room = (i64::from(spec.max_concurrent) - dialing).max(0).min(paced);
        let mut claimed = Vec::new();
        let mut never = Vec::new();
        if room > 0 {
            // Leads outside their window are looked past: a few more than room.
            let due = sqlx::query(if pg { DUE_PG } else { DUE_SQLITE })
                .bind(name)
                .bind(now)
                .bind(room * 4 + 16)
                .fetch_all(&mut *tx)
                .await
                .map_err(err)?;
            for r in &due {
                let d = Due {
                    lead_id: r.try_get("lead_id").map_err(err)?,
                    attempts: r.try_get("attempts").map_err(err)?,
                    region: r.try_get("region").map_err(err)?,
                    time_zone: r.try_get("time_zone").map_err(err)?,
                    consent: r.try_get("consent").map_err(err)?,
                };
                match judge(&spec, &d) {
                    Verdict::Dial if (claimed.len() as i64) < room => {
                        let attempt = d.attempts + 1;
                        let key = format!("campaign:{name}:{}:{attempt}", d.lead_id);
                        sqlx::query(
                            "UPDATE campaign_leads SET state = 'dialing', attempts = $3, attempt_key = $4, dialed_at = $5, updated_at = $5 \
                             WHERE campaign = $1 AND lead_id = $2",
                        )
                        .bind(name)
                        .bind(&d.lead_id)
                        .bind(attempt)
                        .bind(&key)
                        .bind(now)
                        .execute(&mut *tx)
                        .await
                        .map_err(err)?;
                        claimed.push(Claimed {
                            lead_id: d.lead_id,
                            attempt,
                            attempt_key: key,
                            number: String::new(),
                            fields_json: String::new(),
                        });
                    }
                    Verdict::Dial => {}
                    Verdict::Later(at) => {
                        sqlx::query("UPDATE campaign_leads SET next_at = $3, updated_at = $4 WHERE campaign = $1 AND lead_id = $2")
                            .bind(name)
                            .bind(&d.lead_id)
                            .bind(at)
                            .bind(now)
                            .execute(&mut *tx)
                            .await
                            .map_err(err)?;
                    }
                    Verdict::Never(reason) => {
                        sqlx::query("UPDATE campaign_leads SET state = 'done', reason = $3, updated_at = $4 WHERE campaign = $1 AND lead_id = $2")
                            .bind(name)
                            .bind(&d.lead_id)
                            .bind(reason)
                            .bind(now)
                            .execute(&mut *tx)
                            .await
                            .map_err(err)?;
                        never.push((d.lead_id, reason));
                    }
                }
            }
            sqlx::query("UPDATE campaigns SET next_dial_at = $2 WHERE name = $1")
                .bind(name)
                .bind(clock(claimed.len() as i64))
                .execute(&mut *tx)
                .await
                .map_err(err)?;
        }
        tx.commit().await.map_err(err)?;
        Ok((claimed, never))
    }

    /// The number and fields of claimed leads.
    pub async fn claimed_details(
        &self,
        claimed: &mut [Claimed],
        pii: &Pii,
    ) -> Result<(), StoreError> {
        for c in claimed.iter_mut() {
            if let Some(lead) = self.lead(&c.lead_id, pii).await? {
                c.number = lead.number;
                c.fields_json = serde_json::to_string(&lead.fields).unwrap_or_else(|_| "{}".into());
            }
        }
        Ok(())
    }

    /// Every campaign's attempts in flight (`(campaign, attempt)`), with
    /// their placements and calls: a paused or completed campaign's calls
    /// are settled too.
    pub async fn campaigns_in_flight(&self) -> Result<Vec<(String, InFlight)>, StoreError> {
        let rows = sqlx::query(
            "SELECT cl.campaign, cl.lead_id, cl.attempts, cl.attempt_key, cl.dialed_at, o.id AS p_id, o.state AS p_state, o.reason AS p_reason, o.answered_by, \
             o.updated_at AS p_updated, o.call_sid, c.started_at, c.ended_at, c.disposition, c.callback_start \
             FROM campaign_leads cl LEFT JOIN outbound_calls o ON o.idempotency_key = cl.attempt_key \
             LEFT JOIN calls c ON c.call_sid = o.call_sid \
             WHERE cl.state = 'dialing'",
        )
        .fetch_all(self.pool())
        .await
        .map_err(err)?;
        rows.iter()
            .map(|r| {
                let campaign: String = r.try_get("campaign").map_err(err)?;
                Ok((
                    campaign,
                    InFlight {
                        lead_id: r.try_get("lead_id").map_err(err)?,
                        attempts: r.try_get("attempts").map_err(err)?,
                        attempt_key: r
                            .try_get::<Option<String>, _>("attempt_key")
                            .map_err(err)?
                            .unwrap_or_default(),
                        dialed_at: r
                            .try_get::<Option<i64>, _>("dialed_at")
                            .map_err(err)?
                            .unwrap_or_default(),
                        placement_id: r.try_get("p_id").map_err(err)?,
                        placement: r.try_get("p_state").map_err(err)?,
                        placement_reason: r
                            .try_get::<Option<String>, _>("p_reason")
                            .map_err(err)?
                            .unwrap_or_default(),
                        answered_by: r.try_get("answered_by").map_err(err)?,
                        placement_updated: r
                            .try_get::<Option<i64>, _>("p_updated")
                            .map_err(err)?
                            .unwrap_or_default(),
                        call_sid: r.try_get("call_sid").map_err(err)?,
                        started_at: r.try_get("started_at").map_err(err)?,
                        ended_at: r.try_get("ended_at").map_err(err)?,
                        disposition: r.try_get("disposition").map_err(err)?,
                        callback_start: r.try_get("callback_start").map_err(err)?,
                    },
                ))
            })
            .collect()
    }

    /// Whether the call asked the consent question, and the answer.
    pub async fn consent_of(&self, call_sid: &str) -> Result<(bool, bool), StoreError> {
        let decisions = self.consents(call_sid).await?;
        let given = decisions.last().is_some_and(|d| d.answer == "yes");
        Ok((!decisions.is_empty(), given))
    }

    /// Settles one attempt; `false` when another node already did (the row
    /// is no longer `dialing` under this key): nothing is counted twice.
    pub async fn campaign_settle(&self, name: &str, s: &Settle) -> Result<bool, StoreError> {
        let now = hark_actors::records::now_ms();
        let mut tx = self.begin_write().await?;
        let moved = if s.undo {
            sqlx::query(
                "UPDATE campaign_leads SET state = 'waiting', attempts = attempts - 1, attempt_key = NULL, updated_at = $4 \
                 WHERE campaign = $1 AND lead_id = $2 AND state = 'dialing' AND attempt_key = $3",
            )
            .bind(name)
            .bind(&s.lead_id)
            .bind(&s.attempt_key)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(err)?
        } else {
            sqlx::query(
                "UPDATE campaign_leads SET state = $4, next_at = COALESCE($5, next_at), last_result = $6, reason = $7, updated_at = $8 \
                 WHERE campaign = $1 AND lead_id = $2 AND state = 'dialing' AND attempt_key = $3",
            )
            .bind(name)
            .bind(&s.lead_id)
            .bind(&s.attempt_key)
            .bind(if s.next_at.is_some() { "waiting" } else { "done" })
            .bind(s.next_at)
            .bind(&s.result)
            .bind(&s.reason)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(err)?
        };
        if moved.rows_affected() != 1 {
            return Ok(false);
        }
        if !s.undo {
            sqlx::query("UPDATE leads SET status = $2, owner = COALESCE($3, owner), updated_at = $4 WHERE id = $1")
                .bind(&s.lead_id)
                .bind(&s.lead_status)
                .bind(&s.owner)
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(err)?;
            let t = &s.tally;
            if t.dialed {
                sqlx::query(
                    "INSERT INTO campaign_daily (campaign, day, dials, connects, qualified, voicemails, handle_ms, consent_asked, consent_given) \
                     VALUES ($1, $2, 1, $3, $4, $5, $6, $7, $8) ON CONFLICT (campaign, day) DO UPDATE SET \
                     dials = campaign_daily.dials + 1, connects = campaign_daily.connects + excluded.connects, \
                     qualified = campaign_daily.qualified + excluded.qualified, voicemails = campaign_daily.voicemails + excluded.voicemails, \
                     handle_ms = campaign_daily.handle_ms + excluded.handle_ms, consent_asked = campaign_daily.consent_asked + excluded.consent_asked, \
                     consent_given = campaign_daily.consent_given + excluded.consent_given",
                )
                .bind(name)
                .bind(&t.day)
                .bind(i64::from(t.connected))
                .bind(i64::from(t.qualified))
                .bind(i64::from(t.voicemail))
                .bind(t.handle_ms)
                .bind(i64::from(t.consent_asked))
                .bind(i64::from(t.consent_given))
                .execute(&mut *tx)
                .await
                .map_err(err)?;
                for (slot, value) in &t.outcomes {
                    sqlx::query(
                        "INSERT INTO campaign_daily_outcomes (campaign, day, slot, value, n) VALUES ($1, $2, $3, $4, 1) \
                         ON CONFLICT (campaign, day, slot, value) DO UPDATE SET n = campaign_daily_outcomes.n + 1",
                    )
                    .bind(name)
                    .bind(&t.day)
                    .bind(slot)
                    .bind(value)
                    .execute(&mut *tx)
                    .await
                    .map_err(err)?;
                }
            }
        }
        tx.commit().await.map_err(err)?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::pace;

    #[test]
    fn the_pacing_clock_keeps_the_rate_and_bounds_bursts() {
        // 60/min: one a second. On time: one now, the clock a second on.
        let (n, clock) = pace(10_000, 10_000, 1000, 3);
        assert_eq!((n, clock(1)), (1, 11_000));
        // Early: none.
        assert_eq!(pace(10_000, 9_999, 1000, 3).0, 0);
        // A tick late by 2.5 s: the missed ones, within the burst.
        let (n, clock) = pace(10_000, 12_500, 1000, 3);
        assert_eq!((n, clock(3)), (3, 13_000));
        // Back after an hour: one now, and no debt carried.
        let (n, clock) = pace(10_000, 3_610_000, 1000, 3);
        assert_eq!(n, 1);
        assert_eq!(clock(1), 3_611_000);
        // Fewer taken than allowed (no leads): the clock moves only by those.
        let (_, clock) = pace(10_000, 10_500, 1000, 3);
        assert_eq!(clock(0), 10_000);
    }
}
