//! `[rules.do_not_call]`: the settings of the rule that honours "don't
//! call me again" (the rule itself: `rules/do_not_call.rs`).

use serde::{Deserialize, Serialize};

use super::Checks;

/// `[rules.do_not_call]`: a caller who says they do not want to be called
/// again ("don't call me again", "मुझे कॉल मत करो", "call mat karna") hears
/// `goodbye`, the call ends, and their number goes on the do-not-call list
/// for every campaign (source `rule:do_not_call`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DoNotCallSettings {
    /// On by default: honouring the request is not a policy choice.
    pub enabled: bool,
    /// Phrases (up to four words) to add to the built-in English, Hindi and
    /// Hinglish ones.
    pub phrases: Vec<String>,
    pub goodbye: String,
}

impl Default for DoNotCallSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            phrases: Vec::new(),
            goodbye: "Understood. We won't call you again. Goodbye.".into(),
        }
    }
}

impl DoNotCallSettings {
    pub(super) fn validate(&self, check: &mut Checks) {
        if self.enabled {
            check.that(
                !self.goodbye.trim().is_empty(),
                "rules.do_not_call.goodbye",
                "must not be empty".into(),
            );
        }
        for phrase in &self.phrases {
            let words = crate::rules::phrases::words(phrase).len();
            check.that(
                (1..=crate::rules::phrases::MAX_WORDS).contains(&words),
                "rules.do_not_call.phrases",
                format!(
                    "{phrase:?}: 1 to {} words",
                    crate::rules::phrases::MAX_WORDS
                ),
            );
        }
    }
}
