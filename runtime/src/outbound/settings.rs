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
    #[serde(deserialize_with = "e164_text")]
    pub caller_id: String,
    /// How long the callee's phone rings before the carrier gives up (`no-answer`).
    pub ring_timeout_secs: u32,
    /// Calls placed but not yet over kept in memory for their webhooks and
    /// stream (beyond it, the oldest are read back from the database).
    pub max_pending: usize,
}

/// An E.164 number as text. `HARK_OUTBOUND__CALLER_ID=+14155550100` reads
/// as a TOML integer (the `+` lost): put it back.
fn e164_text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Text {
        S(String),
        N(u64),
    }
    Ok(match Text::deserialize(d)? {
        Text::S(s) => s,
        Text::N(n) => format!("+{n}"),
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_caller_id_from_the_environment_keeps_its_plus() {
        let s: OutboundSettings = toml::from_str("caller_id = +14155550100").unwrap();
        assert_eq!(s.caller_id, "+14155550100");
        let s: OutboundSettings = toml::from_str("caller_id = \"+919876543210\"").unwrap();
        assert_eq!(s.caller_id, "+919876543210");
        assert!(s.validate().is_empty());
        let bad: OutboundSettings =
            toml::from_str("default_region = \"XX\"\ncaller_id = \"12\"\nring_timeout_secs = 1")
                .unwrap();
        assert_eq!(bad.validate().len(), 3, "{:?}", bad.validate());
    }
}
