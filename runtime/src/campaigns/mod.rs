//! Campaigns (issue 18): lead lists imported and merged, and a durable
//! scheduler that calls them through the outbound dialer — in each lead's
//! local calling window, paced, retried by outcome, never a listed number,
//! never the same attempt twice (on one node or several).
//!
//! # Layout
//! - [`import`] — lead files (CSV, JSON) into leads, errors by row and field.
//! - [`window`] — calling windows in the lead's zone(s): days, holidays, DST.
//! - [`retry`] — an attempt's result into the lead's status and next attempt.
//! - [`spec`] — a campaign's definition, checked field by field.
//! - [`scheduler`] — the loop every node runs: settle what ended, claim what
//!   is due (leases in the database), dial.
//! - on record: `store/leads.rs`, `store/campaigns.rs`; the API:
//!   `api/leads.rs`, `api/campaigns.rs`.

pub mod import;
pub mod retry;
pub mod scheduler;
pub mod spec;
pub mod window;

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use window::Window;

/// `hark_campaign_attempts_total{campaign, result}`: settled attempts by
/// result (`answered`, `voicemail`, `no_answer`, `busy`, `failed`, `refused`).
pub const ATTEMPTS: &str = "hark_campaign_attempts_total";
/// `hark_campaign_leads_not_dialed_total{campaign, reason}`.
pub const NOT_DIALED: &str = "hark_campaign_leads_not_dialed_total";
/// `hark_campaign_qualified_total{campaign}`.
pub const QUALIFIED: &str = "hark_campaign_qualified_total";
/// `hark_campaign_dials_total{campaign}`: calls started.
pub const DIALS: &str = "hark_campaign_dials_total";

/// The `campaign` label of the campaigns not in `metric_names`.
pub const OTHER: &str = "other";

/// The runtime config's `[campaigns]` section.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CampaignSettings {
    /// Whether this node runs the scheduler (every node may: leases keep
    /// them apart).
    pub scheduler: bool,
    /// How often the scheduler looks for due leads and ended attempts.
    pub tick_ms: u64,
    /// Campaigns not completed (drafts, running, paused) at once: the
    /// scheduler looks at each running one every tick.
    pub max_campaigns: usize,
    /// Campaigns counted under their own `campaign` label on the
    /// `hark_campaign_*` counters — the label's bounded, configured set;
    /// every other campaign is counted as `campaign="other"`. (Each
    /// campaign's own figures are always in its stats.)
    pub metric_names: BTreeSet<String>,
    /// Carrier requests this node has in flight at once.
    pub max_dials_in_flight: usize,
    /// Calling windows by the number's country (ISO 3166), `*` for the
    /// rest (`HH:MM-HH:MM`, end up to `24:00`). A campaign's `window` can
    /// only narrow them. Defaults: US, CA, GB 08:00-21:00; IN 09:00-21:00;
    /// others 09:00-20:00.
    pub default_windows: BTreeMap<String, String>,
    /// An attempt whose call has not ended after this long is settled as
    /// `failed`.
    pub stale_after_secs: u64,
    /// A placed call with no news from the carrier for this long is looked
    /// up with the carrier (its status callback may have come while this
    /// node was down), and again at most this often.
    pub reconcile_after_secs: u64,
}

impl Default for CampaignSettings {
    fn default() -> Self {
        let windows = [
            ("US", "08:00-21:00"),
            ("CA", "08:00-21:00"),
            ("IN", "09:00-21:00"),
            ("GB", "08:00-21:00"),
            ("*", "09:00-20:00"),
        ];
        Self {
            scheduler: true,
            tick_ms: 250,
            max_campaigns: 100,
            metric_names: BTreeSet::new(),
            max_dials_in_flight: 64,
            default_windows: windows
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            stale_after_secs: 7200,
            reconcile_after_secs: 120,
        }
    }
}

impl CampaignSettings {
    pub fn validate(&self) -> Vec<String> {
        let mut errors = Vec::new();
        if !(20..=10_000).contains(&self.tick_ms) {
            errors.push(format!(
                "campaigns.tick_ms: {} is outside 20..=10000",
                self.tick_ms
            ));
        }
        if !(1..=1000).contains(&self.max_campaigns) {
            errors.push(format!(
                "campaigns.max_campaigns: {} is outside 1..=1000",
                self.max_campaigns
            ));
        }
        if self.metric_names.len() > 1000 {
            errors.push(format!(
                "campaigns.metric_names: {} names, at most 1000",
                self.metric_names.len()
            ));
        }
        for name in &self.metric_names {
            if !spec::name_ok(name) || name == OTHER {
                errors.push(format!(
                    "campaigns.metric_names: {name:?} is not a campaign name (A-Z a-z 0-9 _ -, up to 64, not \"{OTHER}\")"
                ));
            }
        }
        if !(1..=10_000).contains(&self.max_dials_in_flight) {
            errors.push(format!(
                "campaigns.max_dials_in_flight: {} is outside 1..=10000",
                self.max_dials_in_flight
            ));
        }
        if !(1..=86_400).contains(&self.reconcile_after_secs) {
            errors.push("campaigns.reconcile_after_secs: 1 to 86400".into());
        }
        if self.stale_after_secs < 300 {
            errors.push("campaigns.stale_after_secs: at least 300".into());
        }
        if !self.default_windows.contains_key("*") {
            errors
                .push("campaigns.default_windows: needs a \"*\" entry for other countries".into());
        }
        for (country, w) in &self.default_windows {
            if country != "*"
                && country
                    .to_uppercase()
                    .parse::<phonenumber::country::Id>()
                    .is_err()
            {
                errors.push(format!(
                    "campaigns.default_windows.{country}: not a country libphonenumber knows"
                ));
            }
            if let Err(e) = w.parse::<Window>() {
                errors.push(format!("campaigns.default_windows.{country}: {e}"));
            }
        }
        errors
    }

    /// The `campaign` label of a campaign's counters.
    pub fn metric_label(&self, campaign: &str) -> String {
        if self.metric_names.contains(campaign) {
            campaign.to_owned()
        } else {
            OTHER.to_owned()
        }
    }

    /// The default window for a lead in `region`.
    pub fn window_for(&self, region: &str) -> Window {
        // Keys from the environment arrive in lower case (beside the
        // defaults' upper case ones), and override them.
        self.default_windows
            .get(&region.to_ascii_lowercase())
            .or_else(|| {
                self.default_windows
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(region))
                    .map(|(_, w)| w)
            })
            .or_else(|| self.default_windows.get("*"))
            .and_then(|w| w.parse().ok())
            .unwrap_or(Window {
                start: 9 * 60,
                end: 20 * 60,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_configured_campaigns_get_their_own_metric_label() {
        let s: CampaignSettings = toml::from_str("metric_names = [\"q4\"]").unwrap();
        assert!(s.validate().is_empty(), "{:?}", s.validate());
        assert_eq!(s.metric_label("q4"), "q4");
        assert_eq!(s.metric_label("q5"), "other");
        let bad: CampaignSettings =
            toml::from_str("metric_names = [\"other\", \"a b\", \"ok\"]").unwrap();
        let errors = bad.validate().join("; ");
        assert!(errors.contains("\"other\" is not"), "{errors}");
        assert!(errors.contains("\"a b\" is not"), "{errors}");
        assert!(!errors.contains("\"ok\""), "{errors}");
    }

    #[test]
    fn default_windows_are_per_country_and_checked() {
        let s = CampaignSettings::default();
        assert!(s.validate().is_empty(), "{:?}", s.validate());
        assert_eq!(s.window_for("US").to_string(), "08:00-21:00");
        assert_eq!(s.window_for("IN").to_string(), "09:00-21:00");
        assert_eq!(s.window_for("FR").to_string(), "09:00-20:00");
        let env: CampaignSettings =
            toml::from_str("[default_windows]\nin = \"10:00-11:00\"\n\"*\" = \"00:00-24:00\"")
                .unwrap();
        assert!(env.validate().is_empty(), "{:?}", env.validate());
        assert_eq!(env.window_for("IN").to_string(), "10:00-11:00");
        let both: CampaignSettings = toml::from_str(
            "[default_windows]\nUS = \"08:00-21:00\"\nus = \"00:00-24:00\"\n\"*\" = \"09:00-20:00\"",
        )
        .unwrap();
        assert_eq!(both.window_for("US").to_string(), "00:00-24:00");
        let bad: CampaignSettings =
            toml::from_str("tick_ms = 1\n[default_windows]\nXX = \"9-5\"").unwrap();
        let e = bad.validate().join("\n");
        assert!(
            e.contains("tick_ms") && e.contains("\"*\"") && e.contains("XX"),
            "{e}"
        );
        assert!(toml::from_str::<CampaignSettings>("speed = 1").is_err());
    }
}
