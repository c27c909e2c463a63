//! The campaign scheduler every node runs. Each tick, for each running
//! campaign: settle the attempts whose calls are over (placement state,
//! the call's disposition and answering-machine verdict → the lead's status
//! and next attempt, the day's roll-up), claim due leads under a lease in
//! the database, and dial them through the outbound dialer (which checks
//! the do-not-call list and blocklist and records a refusal, and whose
//! answer webhook places the call through the cluster).
//!
//! Why no lead is dialed twice: a claim marks the lead `dialing` under an
//! attempt key in the same transaction that takes it (`SKIP LOCKED` on
//! PostgreSQL), and the dialer's idempotency key is that attempt key — a
//! second dial of the same attempt, from a restart or another node,
//! replays the first placement instead of calling.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::Semaphore;

use super::retry::{self, Attempt};
use super::spec::CampaignSpec;
use super::window;
use super::{ATTEMPTS, CampaignSettings, DIALS, NOT_DIALED, QUALIFIED};
use crate::outbound::Request;
use crate::state::AppState;
use crate::store::campaigns::Campaign;
use crate::store::scheduling::{Claimed, Due, InFlight, Settle, Tally, Verdict};

/// A claim whose placement is not on record after this long never dialed
/// (its node stopped between the claim and the dial): the attempt is given back.
const UNPLACED_MS: i64 = 60_000;
/// A placement still `dialing` after this long (the carrier's answer to the
/// dial normally takes under a second) belongs to a node that stopped
/// mid-dial with no status callback since: settled as failed (retried after
/// `failed_secs`: if the carrier did place it, the lead may hear from the
/// campaign once more than planned — never within the same attempt).
const UNANSWERED_MS: i64 = 30_000;
/// A completed call whose record has not ended after this long is settled
/// on what is known (the placement's state).
const RECORD_WAIT_MS: i64 = 30_000;
/// With no campaign running or paused and nothing in flight, the scheduler
/// looks this often instead of every tick (a node without campaigns pays
/// one query every two seconds).
const IDLE_LOOK: Duration = Duration::from_secs(2);

/// Whether `due` may be called at `now` (ms), and when, or never.
pub fn judge(settings: &CampaignSettings, spec: &CampaignSpec, due: &Due, now: i64) -> Verdict {
    if due.consent == "no" || (spec.require_consent && due.consent != "yes") {
        return Verdict::Never("no_consent");
    }
    let zones = window::zones(&due.time_zone);
    if zones.is_empty() {
        return Verdict::Never("unknown_time_zone");
    }
    let Some(calendar) = spec.calendar(settings.window_for(&due.region)) else {
        return Verdict::Never("no_calling_window");
    };
    let Some(now_utc) = DateTime::<Utc>::from_timestamp_millis(now) else {
        return Verdict::Later(now + 60_000);
    };
    match calendar.next_open(now_utc, &zones) {
        Some(open) if open <= now_utc => Verdict::Dial,
        Some(open) => Verdict::Later(open.timestamp_millis()),
        None => Verdict::Never("no_calling_window"),
    }
}

/// How an attempt in flight stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Standing {
    /// Not over yet.
    Pending,
    /// Never dialed: give the attempt back.
    Undo,
    Over(Attempt),
}

/// Reads an attempt's placement and call.
pub fn standing(f: &InFlight, now: i64, stale_ms: i64) -> Standing {
    let Some(state) = f.placement.as_deref() else {
        return if now - f.dialed_at > UNPLACED_MS {
            Standing::Undo
        } else {
            Standing::Pending
        };
    };
    let machine = f
        .answered_by
        .as_deref()
        .is_some_and(|a| a.starts_with("machine") || a == "fax");
    match state {
        "refused" => Standing::Over(Attempt::Refused(f.placement_reason.clone())),
        "busy" => Standing::Over(Attempt::Busy),
        "no-answer" => Standing::Over(Attempt::NoAnswer),
        "failed" | "canceled" => Standing::Over(Attempt::Failed),
        "completed" => {
            let ended = f.ended_at.is_some();
            if !ended && now - f.placement_updated < RECORD_WAIT_MS {
                return Standing::Pending;
            }
            let disposition = f
                .disposition
                .clone()
                .or_else(|| machine.then(|| "voicemail".to_owned()));
            let callback_at_ms = f
                .callback_start
                .as_deref()
                .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
                .map(|t| t.timestamp_millis());
            Standing::Over(Attempt::Answered {
                disposition,
                callback_at_ms,
            })
        }
        "dialing" if now - f.placement_updated > UNANSWERED_MS => Standing::Over(Attempt::Failed),
        _ if now - f.dialed_at > stale_ms => Standing::Over(Attempt::Failed),
        _ => Standing::Pending,
    }
}

/// The UTC day of an instant (ms).
fn day_of(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .map(|t| t.date_naive().to_string())
        .unwrap_or_default()
}

pub struct Scheduler {
    app: Arc<AppState>,
    dials: Arc<Semaphore>,
    caller_turn: AtomicUsize,
    /// When each quiet attempt was last looked up with the carrier.
    asked: std::sync::Mutex<std::collections::HashMap<String, i64>>,
    /// Campaigns whose policy is not live, warned about once (not every tick).
    policyless: std::sync::Mutex<std::collections::HashSet<String>>,
}

/// Runs the scheduler on this node (unless `campaigns.scheduler = false`).
pub fn spawn(app: Arc<AppState>) {
    if !app.config.campaigns.scheduler {
        return;
    }
    if app.store.backend == crate::store::Backend::Sqlite {
        tracing::info!(
            "campaigns: SQLite is a single-node mode — run campaigns on one node only (PostgreSQL leases leads across nodes)"
        );
    }
    let scheduler = Arc::new(Scheduler {
        dials: Arc::new(Semaphore::new(app.config.campaigns.max_dials_in_flight)),
        caller_turn: AtomicUsize::new(0),
        asked: Default::default(),
        policyless: Default::default(),
        app,
    });
    tokio::spawn(async move {
        let every = scheduler.app.config.campaigns.tick_ms;
        let mut idle_until = tokio::time::Instant::now();
        loop {
            // Jittered (±25%): nodes whose ticks fell into step would see
            // the same one win every claim; the pace is the clock's, not
            // the tick's.
            let jitter = rand::random_range(every * 3 / 4..=every * 5 / 4);
            tokio::time::sleep(Duration::from_millis(jitter)).await;
            if scheduler.app.lifecycle.is_draining() || tokio::time::Instant::now() < idle_until {
                continue;
            }
            match scheduler.tick().await {
                Ok(true) => {}
                Ok(false) => idle_until = tokio::time::Instant::now() + IDLE_LOOK,
                Err(e) => {
                    tracing::warn!(error = %e, "campaign scheduler: tick failed; next tick retries")
                }
            }
        }
    });
}

impl Scheduler {
    /// One pass; whether there was anything to look after.
    async fn tick(self: &Arc<Self>) -> Result<bool, crate::store::StoreError> {
        let campaigns = self.app.store.campaigns_started().await?;
        let active = campaigns
            .iter()
            .any(|c| c.state == "running" || c.state == "paused");
        // Calls in flight are settled whatever their campaign's state now.
        let mut in_flight: std::collections::HashMap<String, Vec<InFlight>> = Default::default();
        for (name, f) in self.app.store.campaigns_in_flight().await? {
            in_flight.entry(name).or_default().push(f);
        }
        if !active && in_flight.is_empty() {
            return Ok(false);
        }
        for campaign in &campaigns {
            if let Some(flights) = in_flight.remove(&campaign.name) {
                self.settle(campaign, flights).await?;
            }
            if campaign.state != "running" {
                continue;
            }
            self.claim(campaign).await?;
            if self
                .app
                .store
                .campaign_complete_if_done(&campaign.name)
                .await?
            {
                tracing::info!(campaign = %campaign.name, "campaign completed: every lead is done");
            }
        }
        Ok(true)
    }

    async fn claim(self: &Arc<Self>, c: &Campaign) -> Result<(), crate::store::StoreError> {
        let app = &self.app;
        let live = app.policies.catalog().get(&c.spec.policy).is_some();
        let newly = {
            let mut policyless = self
                .policyless
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if live {
                policyless.remove(&c.name);
                false
            } else {
                policyless.insert(c.name.clone())
            }
        };
        if !live {
            if newly {
                tracing::warn!(campaign = %c.name, policy = %c.spec.policy, "campaign's policy is not live: nothing dialed until it is");
            }
            return Ok(());
        }
        let settings = &app.config.campaigns;
        let interval = 60_000 / i64::from(c.spec.calls_per_minute.max(1));
        let burst = (2 * settings.tick_ms as i64 / interval.max(1) + 1).max(2);
        let now = hark_actors::records::now_ms();
        let (mut claimed, never) = app
            .store
            .campaign_claim(&c.name, now, burst, |spec, due| {
                judge(settings, spec, due, now)
            })
            .await?;
        for (_, reason) in &never {
            metrics::counter!(NOT_DIALED, "campaign" => settings.metric_label(&c.name), "reason" => *reason)
                .increment(1);
        }
        if claimed.is_empty() {
            return Ok(());
        }
        app.store.claimed_details(&mut claimed, &app.pii).await?;
        for lead in claimed {
            let Ok(permit) = Arc::clone(&self.dials).acquire_owned().await else {
                return Ok(());
            };
            let me = Arc::clone(self);
            let campaign = c.clone();
            tokio::spawn(async move {
                me.dial(&campaign, lead).await;
                drop(permit);
            });
        }
        Ok(())
    }

    async fn dial(&self, c: &Campaign, lead: Claimed) {
        let app = &self.app;
        let from = (!c.spec.caller_ids.is_empty()).then(|| {
            let turn = self.caller_turn.fetch_add(1, Ordering::Relaxed);
            c.spec.caller_ids[turn % c.spec.caller_ids.len()].clone()
        });
        let req = Request {
            to: lead.number,
            from,
            policy: c.spec.policy.clone(),
            variables: serde_json::from_str(&lead.fields_json).unwrap_or_default(),
            machine_detection: c.spec.detection().unwrap_or_default(),
            idempotency_key: Some(lead.attempt_key.clone()),
        };
        let by = format!("campaign:{}", c.name);
        match app.dialer.place(req, &by, &app.store, &app.pii).await {
            Ok(crate::outbound::Outcome::Placed(_)) => {
                let label = app.config.campaigns.metric_label(&c.name);
                metrics::counter!(DIALS, "campaign" => label).increment(1);
            }
            Ok(_) => {}
            // The attempt stays claimed; with no placement on record it is
            // given back after `UNPLACED_MS`.
            Err(e) => {
                tracing::warn!(campaign = %c.name, lead = %lead.lead_id, error = %e, "campaign call not placed")
            }
        }
    }

    async fn settle(
        &self,
        c: &Campaign,
        flights: Vec<InFlight>,
    ) -> Result<(), crate::store::StoreError> {
        let app = &self.app;
        let now = hark_actors::records::now_ms();
        let stale = app.config.campaigns.stale_after_secs as i64 * 1000;
        for f in flights {
            let attempt = match standing(&f, now, stale) {
                Standing::Pending => {
                    self.reconcile(&f, now).await;
                    continue;
                }
                Standing::Undo => {
                    let undo = Settle {
                        lead_id: f.lead_id.clone(),
                        attempt_key: f.attempt_key.clone(),
                        next_at: None,
                        result: String::new(),
                        reason: String::new(),
                        lead_status: String::new(),
                        owner: None,
                        undo: true,
                        tally: Tally::default(),
                    };
                    if app.store.campaign_settle(&c.name, &undo).await? {
                        tracing::info!(campaign = %c.name, lead = %f.lead_id, "claimed attempt never placed: given back");
                    }
                    continue;
                }
                Standing::Over(a) => a,
            };
            let attempts = u32::try_from(f.attempts).unwrap_or(u32::MAX);
            let d = retry::decide(&attempt, attempts, c.spec.max_attempts, &c.spec.retry, now);
            let tally = self.tally(c, &f, &attempt).await?;
            let settle = Settle {
                lead_id: f.lead_id.clone(),
                attempt_key: f.attempt_key.clone(),
                next_at: d.retry_at_ms,
                result: attempt.name().to_owned(),
                reason: match &attempt {
                    Attempt::Refused(r) => r.clone(),
                    _ => d.reason.to_owned(),
                },
                lead_status: d.status.to_owned(),
                owner: c.spec.owners.get(d.status).cloned(),
                undo: false,
                tally,
            };
            // Asked not to be called again: listed (again: idempotent) before
            // the attempt settles, so an outage when the call ended loses nothing.
            if matches!(&attempt, Attempt::Answered { disposition: Some(d), .. } if d == "do_not_call")
                && let Some(lead) = app.store.lead(&f.lead_id, &app.pii).await?
                && !lead.number.is_empty()
            {
                app.store.dnc_asked(&lead.number, &app.pii).await?;
            }
            if app.store.campaign_settle(&c.name, &settle).await? {
                let label = app.config.campaigns.metric_label(&c.name);
                metrics::counter!(ATTEMPTS, "campaign" => label.clone(), "result" => attempt.name().to_owned())
                    .increment(1);
                if d.status == retry::status::QUALIFIED {
                    metrics::counter!(QUALIFIED, "campaign" => label.clone()).increment(1);
                }
                if let Attempt::Refused(reason) = &attempt {
                    metrics::counter!(NOT_DIALED, "campaign" => label, "reason" => reason.clone())
                        .increment(1);
                }
            }
        }
        Ok(())
    }

    /// Looks a quiet attempt's call up with the carrier (a status callback
    /// lost while this node was down would otherwise leave it in flight
    /// until `stale_after_secs`).
    async fn reconcile(&self, f: &InFlight, now: i64) {
        let every = self.app.config.campaigns.reconcile_after_secs as i64 * 1000;
        let (Some(id), Some(sid)) = (&f.placement_id, &f.call_sid) else {
            return;
        };
        if now - f.placement_updated < every {
            return;
        }
        {
            let mut asked = self
                .asked
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if asked.get(&f.attempt_key).is_some_and(|at| now - at < every) {
                return;
            }
            asked.retain(|_, at| now - *at < 10 * every);
            asked.insert(f.attempt_key.clone(), now);
        }
        if self.app.dialer.reconcile(id, sid).await {
            tracing::debug!(placement = %id, "quiet campaign call looked up with the carrier");
        }
    }

    /// What the attempt adds to its day's roll-up. A read that fails fails
    /// the settle: it is tried again next tick rather than counted short.
    async fn tally(
        &self,
        c: &Campaign,
        f: &InFlight,
        attempt: &Attempt,
    ) -> Result<Tally, crate::store::StoreError> {
        let mut t = Tally {
            day: day_of(f.dialed_at),
            dialed: !matches!(attempt, Attempt::Refused(_)),
            ..Tally::default()
        };
        let Attempt::Answered { disposition, .. } = attempt else {
            return Ok(t);
        };
        t.voicemail = disposition.as_deref() == Some("voicemail");
        t.connected = !t.voicemail;
        t.qualified = disposition.as_deref() == Some("qualified");
        if let (Some(s), Some(e)) = (f.started_at, f.ended_at) {
            t.handle_ms = (e - s).max(0);
        }
        if let Some(d) = disposition {
            t.outcomes.push(("disposition".into(), d.clone()));
        }
        let Some(sid) = &f.call_sid else {
            return Ok(t);
        };
        (t.consent_asked, t.consent_given) = self.app.store.consent_of(sid).await?;
        let live = self.app.policies.catalog().get(&c.spec.policy).cloned();
        for (name, value) in self.app.store.slots(sid, &self.app.pii).await? {
            let counted = slot_value(live.as_deref(), &name, &value);
            t.outcomes.push((name, counted));
        }
        Ok(t)
    }
}

/// A slot's value as counted: an enum's or a boolean's value (bounded by
/// the policy), anything else only as `filled` (free text may be personal).
fn slot_value(
    live: Option<&crate::policies::Live>,
    name: &str,
    value: &serde_json::Value,
) -> String {
    use hark_actors::policy::outcome::SlotType;
    let slot = live.and_then(|l| l.policy.outcome.slots.get(name));
    match (slot, value) {
        (Some(s), serde_json::Value::String(v))
            if s.kind == SlotType::Enum && !s.sensitive && s.values.contains(v) =>
        {
            v.clone()
        }
        (Some(s), serde_json::Value::Bool(b)) if !s.sensitive => b.to_string(),
        _ => "filled".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: &str) -> CampaignSpec {
        serde_json::from_str(json).unwrap()
    }

    fn due(zone: &str, region: &str, consent: &str) -> Due {
        Due {
            lead_id: "LD1".into(),
            attempts: 0,
            region: region.into(),
            time_zone: zone.into(),
            consent: consent.into(),
        }
    }

    fn ms(s: &str) -> i64 {
        DateTime::parse_from_rfc3339(s).unwrap().timestamp_millis()
    }

    #[test]
    fn leads_are_judged_in_their_own_zone_on_an_injected_clock() {
        let settings = CampaignSettings::default();
        let s = spec(r#"{"policy": "p", "lists": ["a"]}"#);
        // 14:00 UTC: 09:00 in New York (US window 08-21), 19:30 in Kolkata
        // (IN 09-21), 06:00 in Los Angeles.
        let now = ms("2026-11-27T14:00:00Z");
        let ny = due("America/New_York", "US", "");
        let kol = due("Asia/Calcutta", "IN", "");
        let la = due("America/Los_Angeles", "US", "");
        assert!(matches!(judge(&settings, &s, &ny, now), Verdict::Dial));
        assert!(matches!(judge(&settings, &s, &kol, now), Verdict::Dial));
        match judge(&settings, &s, &la, now) {
            Verdict::Later(at) => assert_eq!(at, ms("2026-11-27T16:00:00Z")),
            v => panic!("{v:?}"),
        }
        // 16:00 UTC is 21:30 in Kolkata: shut until 09:00 tomorrow (03:30 UTC).
        match judge(&settings, &s, &kol, ms("2026-11-27T16:00:00Z")) {
            Verdict::Later(at) => assert_eq!(at, ms("2026-11-28T03:30:00Z")),
            v => panic!("{v:?}"),
        }
        // A campaign window narrows the country's.
        let narrow = spec(r#"{"policy": "p", "lists": ["a"], "window": "10:00-12:00"}"#);
        assert!(matches!(
            judge(&settings, &narrow, &ny, now),
            Verdict::Later(_)
        ));
    }

    #[test]
    fn leads_without_a_zone_or_consent_are_never_dialed() {
        let settings = CampaignSettings::default();
        let s = spec(r#"{"policy": "p", "lists": ["a"]}"#);
        let now = ms("2026-11-27T14:00:00Z");
        assert!(matches!(
            judge(&settings, &s, &due("", "US", ""), now),
            Verdict::Never("unknown_time_zone")
        ));
        assert!(matches!(
            judge(&settings, &s, &due("America/New_York", "US", "no"), now),
            Verdict::Never("no_consent")
        ));
        let strict = spec(r#"{"policy": "p", "lists": ["a"], "require_consent": true}"#);
        assert!(matches!(
            judge(&settings, &strict, &due("America/New_York", "US", ""), now),
            Verdict::Never("no_consent")
        ));
        assert!(matches!(
            judge(
                &settings,
                &strict,
                &due("America/New_York", "US", "yes"),
                now
            ),
            Verdict::Dial
        ));
        let late = spec(r#"{"policy": "p", "lists": ["a"], "window": "21:30-23:00"}"#);
        assert!(matches!(
            judge(&settings, &late, &due("America/New_York", "US", ""), now),
            Verdict::Never("no_calling_window")
        ));
    }

    fn flight(state: Option<&str>) -> InFlight {
        InFlight {
            lead_id: "LD1".into(),
            attempts: 1,
            attempt_key: "k".into(),
            dialed_at: 1_000_000,
            placement: state.map(str::to_owned),
            placement_updated: 1_000_000,
            ..InFlight::default()
        }
    }

    #[test]
    fn an_attempt_is_read_from_its_placement_and_call() {
        let stale = 7_200_000;
        let t = 1_000_000;
        assert_eq!(standing(&flight(None), t + 1000, stale), Standing::Pending);
        assert_eq!(
            standing(&flight(None), t + UNPLACED_MS + 1, stale),
            Standing::Undo
        );
        assert_eq!(
            standing(&flight(Some("ringing")), t + 1000, stale),
            Standing::Pending
        );
        assert_eq!(
            standing(&flight(Some("ringing")), t + stale + 1, stale),
            Standing::Over(Attempt::Failed)
        );
        assert_eq!(
            standing(&flight(Some("no-answer")), t, stale),
            Standing::Over(Attempt::NoAnswer)
        );
        assert_eq!(
            standing(&flight(Some("busy")), t, stale),
            Standing::Over(Attempt::Busy)
        );
        let mut refused = flight(Some("refused"));
        refused.placement_reason = "do_not_call".into();
        assert_eq!(
            standing(&refused, t, stale),
            Standing::Over(Attempt::Refused("do_not_call".into()))
        );
        // Completed: waits for the call's record, then reads its disposition.
        let mut done = flight(Some("completed"));
        assert_eq!(standing(&done, t + 1000, stale), Standing::Pending);
        done.ended_at = Some(t + 900);
        done.disposition = Some("callback".into());
        done.callback_start = Some("2026-11-28T10:00:00+05:30".into());
        assert_eq!(
            standing(&done, t + 1000, stale),
            Standing::Over(Attempt::Answered {
                disposition: Some("callback".into()),
                callback_at_ms: Some(ms("2026-11-28T04:30:00Z")),
            })
        );
        // A machine with no disposition of the call's own: voicemail.
        let mut vm = flight(Some("completed"));
        vm.ended_at = Some(t);
        vm.answered_by = Some("machine_end_beep".into());
        assert_eq!(
            standing(&vm, t, stale),
            Standing::Over(Attempt::Answered {
                disposition: Some("voicemail".into()),
                callback_at_ms: None
            })
        );
    }
}
