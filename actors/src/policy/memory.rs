//! `[history]`, `[records]` and `recording`: what a call keeps in memory,
//! on record, and whether its audio may be recorded.

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

/// Whether a call's audio may be recorded.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RecordingMode {
    /// Never, whatever the caller says.
    #[default]
    Never,
    /// From the caller's yes to `[rules.consent]`; never after a no.
    WithConsent,
    /// Always: `recording_notice` is said first.
    Always,
}

/// Checks `recording` against its notice and the consent rule.
pub(super) fn validate_recording(p: &super::PolicyFile, check: &mut Checks) {
    let consent = p.rules.consent.mode != super::ConsentMode::Off;
    match p.recording {
        RecordingMode::Always => {
            check.that(
                !p.recording_notice.trim().is_empty(),
                "recording_notice",
                "recording = \"always\" needs a notice, said before anything else".into(),
            );
            check.that(
                !consent,
                "recording",
                "\"always\" announces the recording, [rules.consent] asks for it: choose one \
                 (\"with_consent\")"
                    .into(),
            );
        }
        RecordingMode::WithConsent => check.that(
            consent,
            "recording",
            "\"with_consent\" needs [rules.consent] mode = \"required\" or \"optional\"".into(),
        ),
        RecordingMode::Never => {}
    }
}

impl HistorySettings {
    pub(super) fn validate(&self, check: &mut Checks) {
        check.range("history.max_turns", self.max_turns, 4, 1000);
    }
}

#[cfg(test)]
mod tests {
    use crate::policy::{PolicyError, PolicyFile, RecordingMode};

    fn fields(text: &str) -> Vec<String> {
        match PolicyFile::parse(text, "t", "t") {
            Err(PolicyError::Invalid { errors, .. }) => {
                errors.iter().map(|e| e.field.clone()).collect()
            }
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn recording_modes_need_their_notice_or_their_question() {
        assert_eq!(fields("recording = \"always\"\n"), ["recording_notice"]);
        assert_eq!(fields("recording = \"with_consent\"\n"), ["recording"]);
        assert_eq!(
            fields(
                "recording = \"always\"\nrecording_notice = \"Recorded.\"\n[rules.consent]\nmode = \"required\"\n"
            ),
            ["recording"]
        );
        let ok = PolicyFile::parse(
            "recording = \"with_consent\"\n[rules.consent]\nmode = \"required\"\n",
            "t",
            "t",
        )
        .unwrap();
        assert_eq!(ok.recording, RecordingMode::WithConsent);
        assert!(PolicyFile::parse("recording = \"sometimes\"\n", "t", "t").is_err());
    }
}
