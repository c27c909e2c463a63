//! The runtime config's `[outbound]` section.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct OutboundSettings {
    /// The region (ISO 3166 two letters) a number without `+` is read in:
    /// `4155550100` is `+14155550100` with `US`.
    pub default_region: String,
    /// The caller ID a request that names none is placed from (E.164);
    /// empty: requests must name one.
    pub caller_id: String,
    /// How long the callee's phone rings before the carrier gives up (`no-answer`).
    pub ring_timeout_secs: u32,
    /// Calls placed but not yet over kept in memory for their webhooks and
    /// stream (beyond it, the oldest are read back from the database).
    pub max_pending: usize,
}

impl Default for OutboundSettings {
    fn default() -> Self {
        Self {
            default_region: "US".into(),
            caller_id: String::new(),
            ring_timeout_secs: 30,
            max_pending: 10_000,
        }
    }
}

impl OutboundSettings {
    pub fn validate(&self) -> Vec<String> {
        let mut errors = Vec::new();
        if self
            .default_region
            .parse::<phonenumber::country::Id>()
            .is_err()
        {
            errors.push(format!(
                "outbound.default_region: {:?} is not a region libphonenumber knows (e.g. US, IN, GB)",
                self.default_region
            ));
        }
        if !self.caller_id.is_empty() && super::phone::e164(&self.caller_id, None).is_err() {
            errors.push(format!(
                "outbound.caller_id: {:?} is not a valid E.164 number",
                self.caller_id
            ));
        }
        if !(5..=600).contains(&self.ring_timeout_secs) {
            errors.push(format!(
                "outbound.ring_timeout_secs: {} is outside 5..=600",
                self.ring_timeout_secs
            ));
        }
        if !(16..=1_000_000).contains(&self.max_pending) {
            errors.push(format!(
                "outbound.max_pending: {} is outside 16..=1000000",
                self.max_pending
            ));
        }
        errors
    }
}
