//! `[history]` and `[records]`: what a call keeps in memory and on record.

use serde::{Deserialize, Serialize};

use super::Checks;

/// How much of the conversation a call keeps in memory (and the model sees).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HistorySettings {
    /// Turns (caller, bot, tool results) kept; older ones are on record,
    /// not in memory, and not sent to the model.
    pub max_turns: usize,
}

impl Default for HistorySettings {
    fn default() -> Self {
        Self { max_turns: 40 }
    }
}

/// What a call leaves on record, beyond what every call keeps.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RecordSettings {
    /// Keep the DTMF digits pressed (encrypted, like transcripts). Off:
    /// only that a key was pressed — digits are often PINs and card numbers.
    pub dtmf_digits: bool,
}

impl HistorySettings {
    pub(super) fn validate(&self, check: &mut Checks) {
        check.range("history.max_turns", self.max_turns, 4, 1000);
    }
}
