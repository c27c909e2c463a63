//! `[outbound]`: how a call Hark placed begins. The bot does not speak
//! first: it waits for the callee's first words or, when the call was
//! placed with machine detection, for the carrier's verdict — so a person
//! is not talked over and a machine does not get the pitch. A machine gets
//! the voicemail message after its beep (the carrier's `machine_end_*`
//! verdict or Hark's own detector, whichever comes first), or a hang-up.

use serde::{Deserialize, Serialize};

use super::Checks;

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum MachineAction {
    /// Say `voicemail_message` after the beep, then hang up.
    #[default]
    LeaveMessage,
    /// Hang up as soon as a machine is known.
    HangUp,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct OutboundSettings {
    pub on_machine: MachineAction,
    /// Left after the beep; a template like the system prompt
    /// (`{caller.NAME}` from the lead's variables).
    pub voicemail_message: String,
    /// From the answer: how long the bot stays quiet waiting for the
    /// callee's words (or, with machine detection, the verdict) before it
    /// takes the callee for a silent person and speaks.
    pub answer_timeout_ms: u32,
    /// Once a machine is known: how long to wait for its beep before the
    /// message is left anyway.
    pub beep_timeout_secs: u32,
}

impl Default for OutboundSettings {
    fn default() -> Self {
        Self {
            on_machine: MachineAction::LeaveMessage,
            voicemail_message: "Hello, this is a call for you. We will try again later. Goodbye."
                .into(),
            answer_timeout_ms: 5000,
            beep_timeout_secs: 30,
        }
    }
}

impl OutboundSettings {
    pub fn validate(&self, prompt: &super::PromptSettings, check: &mut Checks) {
        check.that(
            (500..=30_000).contains(&self.answer_timeout_ms),
            "outbound.answer_timeout_ms",
            format!("{} is outside 500..=30000", self.answer_timeout_ms),
        );
        check.that(
            (1..=120).contains(&self.beep_timeout_secs),
            "outbound.beep_timeout_secs",
            format!("{} is outside 1..=120", self.beep_timeout_secs),
        );
        check.that(
            self.on_machine != MachineAction::LeaveMessage
                || !self.voicemail_message.trim().is_empty(),
            "outbound.voicemail_message",
            "on_machine = \"leave_message\" needs a message".into(),
        );
        prompt.validate_template("outbound.voicemail_message", &self.voicemail_message, check);
    }
}

#[cfg(test)]
mod tests {
    use crate::policy::PolicyFile;

    #[test]
    fn bad_outbound_settings_name_their_fields() {
        let text = "[prompt]\ncaller_fields = [\"name\"]\n[outbound]\non_machine = \"leave_message\"\nvoicemail_message = \"Hi {caller.nmae}\"\nanswer_timeout_ms = 10\nbeep_timeout_secs = 0\n";
        let policy: PolicyFile = toml::from_str(text).unwrap();
        let errors = policy.validate();
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        for f in [
            "outbound.voicemail_message",
            "outbound.answer_timeout_ms",
            "outbound.beep_timeout_secs",
        ] {
            assert!(fields.contains(&f), "{f} missing from {errors:?}");
        }
        let bad: Result<PolicyFile, _> = toml::from_str("[outbound]\non_machine = \"shout\"\n");
        assert!(bad.is_err());
    }

    #[test]
    fn the_message_takes_the_leads_fields() {
        let text = "[prompt]\ncaller_fields = [\"name\"]\n[outbound]\nvoicemail_message = \"Hi {caller.name}, Asha here.\"\n";
        let policy: PolicyFile = toml::from_str(text).unwrap();
        assert!(policy.validate().is_empty(), "{:?}", policy.validate());
        let lead = std::collections::BTreeMap::from([("name".to_owned(), "प्रिया".to_owned())]);
        assert_eq!(policy.voicemail_for(&lead), "Hi प्रिया, Asha here.");
    }
}
