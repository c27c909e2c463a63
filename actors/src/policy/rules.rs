//! `[rules]`: what Hark enforces on every live call, whatever the model
//! says. Today: profanity from the caller.

use serde::{Deserialize, Serialize};

use super::Checks;

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RuleSettings {
    pub profanity: ProfanitySettings,
}

/// What a caller's profanity does.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ProfanityAction {
    /// Not checked.
    #[default]
    Off,
    /// The first time: the warning line; the second: the goodbye, and the call ends.
    WarnThenEnd,
    /// The goodbye at once, and the call ends.
    End,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ProfanitySettings {
    pub action: ProfanityAction,
    /// Words to add to the built-in English, Hindi and Hinglish lists.
    pub words: Vec<String>,
    /// Said instead of a reply the first time (`warn_then_end`).
    pub warning: String,
    /// Said before the call ends.
    pub goodbye: String,
    /// A call ended for profanity puts the caller's number on the
    /// blocklist (reason `profanity`) for this many days; 0: not blocked.
    pub block_days: u32,
}

impl Default for ProfanitySettings {
    fn default() -> Self {
        Self {
            action: ProfanityAction::Off,
            words: Vec::new(),
            warning: "Please keep the conversation respectful, or I will have to end the call."
                .into(),
            goodbye: "I'm ending this call now because of the language used. Goodbye.".into(),
            block_days: 30,
        }
    }
}

impl RuleSettings {
    pub(super) fn validate(&self, check: &mut Checks) {
        let p = &self.profanity;
        if p.action != ProfanityAction::Off {
            check.that(
                !p.goodbye.trim().is_empty(),
                "rules.profanity.goodbye",
                "must not be empty".into(),
            );
        }
        if p.action == ProfanityAction::WarnThenEnd {
            check.that(
                !p.warning.trim().is_empty(),
                "rules.profanity.warning",
                "must not be empty with action = \"warn_then_end\"".into(),
            );
        }
        check.that(
            p.block_days <= 3650,
            "rules.profanity.block_days",
            format!("{} is over 3650 (ten years)", p.block_days),
        );
        for w in &p.words {
            check.that(
                !w.trim().is_empty() && !w.trim().contains(char::is_whitespace),
                "rules.profanity.words",
                format!("{w:?}: one word each (matched as a whole word)"),
            );
        }
    }
}
