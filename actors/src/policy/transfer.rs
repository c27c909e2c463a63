//! `[transfer]`: what a transfer request does — nothing but the escalation
//! line (`off`, the default), redirect the call to a number or SIP address
//! (`cold`), or hand the caller to an agent with a whispered summary
//! (`warm`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::Checks;

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum TransferMode {
    /// The request is recorded and the escalation line said; the bot goes on.
    #[default]
    Off,
    /// The call is redirected to `to[target]` and leaves Hark.
    Cold,
    /// The caller holds in a conference while an agent is dialed, hears
    /// the summary and accepts with a key; then the bot leaves.
    Warm,
}

impl TransferMode {
    pub fn as_str(self) -> &'static str {
        match self {
            TransferMode::Off => "off",
            TransferMode::Cold => "cold",
            TransferMode::Warm => "warm",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TransferSettings {
    pub mode: TransferMode,
    /// Cold: where each target goes (E.164 number or `sip:` URI); `default`
    /// catches targets not listed.
    pub to: BTreeMap<String, String>,
    /// Warm: the skill an agent needs; empty: the request's target.
    pub skill: String,
    /// Warm: how long the agent's phone may ring.
    pub ring_secs: u32,
    /// Warm: how long the agent has, once answered, to accept with a key.
    pub accept_secs: u32,
    /// The key the agent presses to take the call.
    pub accept_key: String,
    /// With no agent free, how long the caller waits on hold (0: not at all).
    pub hold_secs: u32,
    /// After the agent's leg ends, how long before they are offered another call.
    pub wrap_up_secs: u32,
    /// How long the model has to write the agent's summary before a
    /// template from the transcript and slots is used.
    pub summary_ms: u32,
    /// Hold audio for the conference (Twilio `waitUrl`); empty: the carrier's.
    pub hold_music_url: String,
    /// Said when the caller comes back to the bot (no answer, declined).
    pub back_line: String,
    /// Said when nobody was free within `hold_secs`; the call's outcome
    /// gets the slot `callback_requested = true`.
    pub fallback_line: String,
}

impl Default for TransferSettings {
    fn default() -> Self {
        Self {
            mode: TransferMode::Off,
            to: BTreeMap::new(),
            skill: String::new(),
            ring_secs: 20,
            accept_secs: 15,
            accept_key: "1".into(),
            hold_secs: 60,
            wrap_up_secs: 30,
            summary_ms: 2000,
            hold_music_url: String::new(),
            back_line: "I couldn't reach a colleague just now, so I'm back with you. How can I \
                        help?"
                .into(),
            fallback_line: "Everyone is busy right now. A colleague will call you back as soon as \
                            someone is free."
                .into(),
        }
    }
}

/// Whether `to` is a place a call can be sent: an E.164 number or a SIP URI.
pub fn is_address(to: &str) -> bool {
    let e164 = to
        .strip_prefix('+')
        .is_some_and(|d| (8..=15).contains(&d.len()) && d.chars().all(|c| c.is_ascii_digit()));
    let sip = to
        .strip_prefix("sip:")
        .is_some_and(|rest| rest.contains('@') && !rest.contains(['<', '>', '"', ' ']));
    e164 || sip
}

impl TransferSettings {
    pub fn validate(&self, check: &mut Checks) {
        for (target, to) in &self.to {
            check.that(
                is_address(to),
                &format!("transfer.to.{target}"),
                format!("{to:?} is neither an E.164 number (+14155550100) nor a sip: URI"),
            );
        }
        check.that(
            self.mode != TransferMode::Cold || !self.to.is_empty(),
            "transfer.to",
            "mode = \"cold\" needs at least one target's number or SIP address".into(),
        );
        check.that(
            self.accept_key.chars().count() == 1
                && self
                    .accept_key
                    .chars()
                    .all(|c| c.is_ascii_digit() || c == '*' || c == '#'),
            "transfer.accept_key",
            "must be one key: 0-9, * or #".into(),
        );
        for (field, secs, max) in [
            ("transfer.ring_secs", self.ring_secs, 120),
            ("transfer.accept_secs", self.accept_secs, 120),
        ] {
            check.that(
                (1..=max).contains(&secs),
                field,
                format!("must be 1 to {max} seconds"),
            );
        }
        check.that(
            self.hold_secs <= 1800,
            "transfer.hold_secs",
            "must be at most 1800 seconds".into(),
        );
        check.that(
            self.wrap_up_secs <= 3600,
            "transfer.wrap_up_secs",
            "must be at most 3600 seconds".into(),
        );
        check.that(
            (100..=10_000).contains(&self.summary_ms),
            "transfer.summary_ms",
            "must be 100 to 10000 milliseconds".into(),
        );
        check.that(
            self.hold_music_url.is_empty()
                || self.hold_music_url.starts_with("https://")
                || self.hold_music_url.starts_with("http://"),
            "transfer.hold_music_url",
            "must be an http(s) URL".into(),
        );
        if self.mode != TransferMode::Off {
            for (field, text) in [
                ("transfer.back_line", &self.back_line),
                ("transfer.fallback_line", &self.fallback_line),
            ] {
                check.that(!text.trim().is_empty(), field, "must not be empty".into());
            }
        }
    }

    /// Cold: where `target` goes.
    pub fn address_for(&self, target: &str) -> Option<&str> {
        self.to
            .get(target)
            .or_else(|| self.to.get("default"))
            .map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_e164_numbers_or_sip_uris() {
        for ok in ["+14155550100", "+919876543210", "sip:agent@pbx.example.com"] {
            assert!(is_address(ok), "{ok}");
        }
        for bad in [
            "",
            "14155550100",
            "+1",
            "+1415555010x",
            "sip:nohost",
            "sip:a@b<c>",
            "+१२३४५६७८९",
        ] {
            assert!(!is_address(bad), "{bad}");
        }
    }

    #[test]
    fn bad_settings_name_their_fields() {
        let t = TransferSettings {
            mode: TransferMode::Cold,
            accept_key: "12".into(),
            ring_secs: 0,
            summary_ms: 5,
            ..TransferSettings::default()
        };
        let mut check = Checks::default();
        t.validate(&mut check);
        let fields: Vec<_> = check.0.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "transfer.to",
                "transfer.accept_key",
                "transfer.ring_secs",
                "transfer.summary_ms"
            ]
        );
        let mut check = Checks::default();
        let t = TransferSettings {
            to: BTreeMap::from([("sales".into(), "0800 SALES".into())]),
            ..TransferSettings::default()
        };
        t.validate(&mut check);
        assert_eq!(check.0[0].field, "transfer.to.sales");
    }

    #[test]
    fn a_target_not_listed_goes_to_default() {
        let t = TransferSettings {
            to: BTreeMap::from([
                ("sales".into(), "+14155550100".into()),
                ("default".into(), "sip:desk@pbx.example.com".into()),
            ]),
            ..TransferSettings::default()
        };
        assert_eq!(t.address_for("sales"), Some("+14155550100"));
        assert_eq!(t.address_for("billing"), Some("sip:desk@pbx.example.com"));
    }
}
