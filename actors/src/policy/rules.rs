//! `[rules]`: what Hark enforces on every live call, whatever the model
//! says: consent to record, profanity from the caller, a silent caller.

use serde::{Deserialize, Serialize};

use super::Checks;

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RuleSettings {
    pub consent: ConsentSettings,
    pub profanity: ProfanitySettings,
    pub do_not_call: super::do_not_call::DoNotCallSettings,
    pub idle: IdleSettings,
    pub call_length: CallLengthSettings,
    pub escalation: EscalationSettings,
    pub claims: ClaimSettings,
    pub menu: super::menu::MenuSettings,
    pub language_switch: LanguageSwitchSettings,
}

/// `[rules.language_switch]`: going on in another of the policy's
/// languages when the caller does (the STT must report each word's
/// language: Deepgram with `stt_language = "multi"`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LanguageSwitchSettings {
    /// Words in a row in another language before switching; 0: off.
    pub after_words: u32,
}

/// `[rules.claims]`: what the bot must never say. Each sentence is checked
/// before TTS; on a hit the rest of that reply is dropped and only the
/// continuation is asked for again, once, with `instruction`; a second hit
/// says `safe_line` instead.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ClaimSettings {
    /// Words or phrases, matched as whole words ("guaranteed returns").
    pub phrases: Vec<String>,
    /// Regular expressions, case-insensitive (`\b\d+\s*% returns`).
    pub patterns: Vec<String>,
    /// Given to the model for the regenerated continuation; `{claim}` is
    /// what was blocked.
    pub instruction: String,
    pub safe_line: String,
}

impl Default for ClaimSettings {
    fn default() -> Self {
        Self {
            phrases: Vec::new(),
            patterns: Vec::new(),
            instruction: "Your reply was cut off because it made a claim you must never make \
                          (\"{claim}\"). Continue the reply from where it stopped, without \
                          repeating anything already said and without that claim or any like it."
                .into(),
            safe_line: "I can't advise on that. A qualified colleague can help you with it.".into(),
        }
    }
}

/// What may raise a transfer request.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum EscalationTrigger {
    /// The caller asks for a person ("human", "agent", "manager", "इंसान"…).
    Keywords,
    /// `not_understood_turns` turns in a row without words or a reply.
    NotUnderstood,
    /// The caller's mood over `sentiment_window` turns at or below
    /// `sentiment_threshold` (an embedded lexicon scorer).
    Sentiment,
    /// The model calls `transfer_call` (needs `[tools] transfer_targets`).
    Tool,
    /// The caller presses `dtmf_key`.
    Dtmf,
}

/// `[rules.escalation]`: when the caller should get a person. A request is
/// recorded with its reason and target and the line is said; the call goes
/// on with the bot until transfers exist.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct EscalationSettings {
    /// Empty: escalation is off.
    pub triggers: Vec<EscalationTrigger>,
    /// Words or phrases to add to the built-in English, Hindi and Hinglish ones.
    pub keywords: Vec<String>,
    pub not_understood_turns: u32,
    /// The sum of the last `sentiment_window` turns' scores (each word -4 … +3).
    pub sentiment_threshold: i32,
    pub sentiment_window: u32,
    pub dtmf_key: String,
    /// Where the request is for (a team or queue name; the model's tool
    /// names its own target).
    pub target: String,
    /// Said when a request is raised.
    pub line: String,
    /// The call's disposition once a request is raised (one `[outcome]`
    /// lists); empty: left to the model.
    pub disposition: String,
}

impl Default for EscalationSettings {
    fn default() -> Self {
        Self {
            triggers: Vec::new(),
            keywords: Vec::new(),
            not_understood_turns: 3,
            sentiment_threshold: -6,
            sentiment_window: 3,
            dtmf_key: "0".into(),
            target: "agent".into(),
            line: "I've asked for a colleague to help you. Someone will get back to you as soon \
                   as possible."
                .into(),
            disposition: String::new(),
        }
    }
}

/// `[rules.call_length]`: the longest a call may run under this policy.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CallLengthSettings {
    /// Seconds; 0: the runtime's `call.max_duration_secs` (which also caps this).
    pub max_secs: u32,
    /// Said when the time is up; empty: the goodbye line.
    pub closing: String,
}

/// Whom the consent question is put to.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ConsentMode {
    /// Never asked; nothing is recorded.
    #[default]
    Off,
    /// Asked only of callers whose number starts with a `required_for`
    /// prefix (all-party-consent jurisdictions), or is withheld or invalid
    /// (their jurisdiction is unknown); others may be recorded unasked.
    Optional,
    /// Asked of every caller.
    Required,
}

/// What a caller's "no" (or no clear answer) turns off.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum ConsentCovers {
    /// The call's audio (the recording issue's `recording_allowed`).
    Recording,
    /// The transcript's text in the records (turns keep their times).
    Transcript,
}

/// `[rules.consent]`: the question before anything is recorded.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ConsentSettings {
    pub mode: ConsentMode,
    /// E.164 prefixes (`+49`, `+1415`) whose callers are always asked.
    pub required_for: Vec<String>,
    /// What a decline covers: `recording`, and optionally `transcript`.
    pub covers: Vec<ConsentCovers>,
    /// The question, said before the greeting.
    pub prompt: String,
    /// Said once when the answer was not a clear yes or no.
    pub reask: String,
    /// Said after a yes, then the greeting.
    pub accepted: String,
    /// Said after a no, then the greeting.
    pub declined: String,
    /// Said when the answer stayed unclear (taken as a no), then the greeting.
    pub unclear: String,
    /// Words or phrases to add to the built-in yes and no lists (English,
    /// Hindi, Hinglish).
    pub yes: Vec<String>,
    pub no: Vec<String>,
    /// Seconds of silence after the question before it counts as unclear.
    pub wait_secs: u32,
}

impl Default for ConsentSettings {
    fn default() -> Self {
        Self {
            mode: ConsentMode::Off,
            required_for: Vec::new(),
            covers: vec![ConsentCovers::Recording],
            prompt: "This call may be recorded for quality and training. Is that okay? \
                     Please say yes or no, or press 1 for yes and 2 for no."
                .into(),
            reask: "Sorry, I didn't catch that. May we record this call? Please say yes or no, \
                    or press 1 or 2."
                .into(),
            accepted: "Thank you.".into(),
            declined: "Understood, this call will not be recorded.".into(),
            unclear: "I'll take that as a no: this call will not be recorded.".into(),
            yes: Vec::new(),
            no: Vec::new(),
            wait_secs: 8,
        }
    }
}

impl ConsentSettings {
    /// Whether a caller from `number` (E.164; `None` when withheld or
    /// invalid) is asked.
    pub fn asks(&self, number: Option<&str>) -> bool {
        match self.mode {
            ConsentMode::Off => false,
            ConsentMode::Required => true,
            ConsentMode::Optional => {
                number.is_none_or(|n| self.required_for.iter().any(|p| n.starts_with(p.as_str())))
            }
        }
    }

    pub fn covers(&self, what: ConsentCovers) -> bool {
        self.covers.contains(&what)
    }
}

/// `[rules.idle]`: a caller who says nothing.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct IdleSettings {
    /// Seconds of silence after the bot has finished before a re-prompt; 0: off.
    pub after_secs: u32,
    /// Re-prompts before the call ends.
    pub reprompts: u32,
    pub reprompt: String,
    /// Said before the call ends for silence.
    pub goodbye: String,
}

impl Default for IdleSettings {
    fn default() -> Self {
        Self {
            after_secs: 0,
            reprompts: 2,
            reprompt: "Are you still there?".into(),
            goodbye: "I haven't heard anything, so I'll end the call now. Goodbye.".into(),
        }
    }
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
        self.do_not_call.validate(check);
        let c = &self.consent;
        if c.mode != ConsentMode::Off {
            for (field, line) in [
                ("prompt", &c.prompt),
                ("reask", &c.reask),
                ("declined", &c.declined),
                ("unclear", &c.unclear),
            ] {
                check.that(
                    !line.trim().is_empty(),
                    &format!("rules.consent.{field}"),
                    "must not be empty while consent is asked".into(),
                );
            }
        }
        for prefix in &c.required_for {
            check.that(
                prefix.len() >= 2
                    && prefix.len() <= 16
                    && prefix.starts_with('+')
                    && prefix.bytes().skip(1).all(|b| b.is_ascii_digit()),
                "rules.consent.required_for",
                format!("{prefix:?} is not an E.164 prefix like \"+49\" or \"+1415\""),
            );
        }
        check.that(
            !c.required_for.is_empty() || c.mode != ConsentMode::Optional,
            "rules.consent.required_for",
            "mode = \"optional\" asks only these callers: name at least one prefix".into(),
        );
        check.that(
            c.covers.contains(&ConsentCovers::Recording),
            "rules.consent.covers",
            "must include \"recording\"".into(),
        );
        for w in c.yes.iter().chain(&c.no) {
            check.that(
                !w.trim().is_empty(),
                "rules.consent.yes",
                "a yes or no phrase must not be empty".into(),
            );
        }
        check.range("rules.consent.wait_secs", c.wait_secs, 2, 60);
        let claims = &self.claims;
        for (i, pattern) in claims.patterns.iter().enumerate() {
            if let Err(e) = crate::rules::claims::compile(pattern) {
                check.that(
                    false,
                    &format!("rules.claims.patterns[{i}]"),
                    format!("{pattern:?} is not a valid pattern: {e}"),
                );
            }
        }
        for phrase in &claims.phrases {
            check.that(
                !phrase.trim().is_empty(),
                "rules.claims.phrases",
                "a phrase must not be empty".into(),
            );
        }
        if !claims.phrases.is_empty() || !claims.patterns.is_empty() {
            check.that(
                !claims.safe_line.trim().is_empty(),
                "rules.claims.safe_line",
                "must not be empty".into(),
            );
            check.that(
                !claims.instruction.trim().is_empty(),
                "rules.claims.instruction",
                "must not be empty".into(),
            );
        }
        let after = self.language_switch.after_words;
        check.that(
            after == 0 || (2..=20).contains(&after),
            "rules.language_switch.after_words",
            format!("{after} is outside 2..=20 (0: off)"),
        );
        let e = &self.escalation;
        if !e.triggers.is_empty() {
            check.that(
                !e.line.trim().is_empty(),
                "rules.escalation.line",
                "must not be empty".into(),
            );
            check.that(
                !e.target.trim().is_empty(),
                "rules.escalation.target",
                "must not be empty".into(),
            );
            check.range(
                "rules.escalation.not_understood_turns",
                e.not_understood_turns,
                1,
                10,
            );
            check.range(
                "rules.escalation.sentiment_threshold",
                e.sentiment_threshold,
                -100,
                -1,
            );
            check.range(
                "rules.escalation.sentiment_window",
                e.sentiment_window,
                1,
                10,
            );
            let mut key = e.dtmf_key.chars();
            check.that(
                matches!(
                    (key.next(), key.next()),
                    (Some('0'..='9' | '*' | '#'), None)
                ),
                "rules.escalation.dtmf_key",
                format!("{:?} is not one key (0-9, *, #)", e.dtmf_key),
            );
        }
        let l = &self.call_length;
        check.that(
            l.max_secs == 0 || l.max_secs >= 10,
            "rules.call_length.max_secs",
            format!(
                "{} is under 10 seconds (0: the runtime's limit)",
                l.max_secs
            ),
        );
        let i = &self.idle;
        if i.after_secs > 0 {
            check.range("rules.idle.after_secs", i.after_secs, 3, 300);
            check.range("rules.idle.reprompts", i.reprompts, 0, 10);
            check.that(
                !i.goodbye.trim().is_empty(),
                "rules.idle.goodbye",
                "must not be empty".into(),
            );
            check.that(
                i.reprompts == 0 || !i.reprompt.trim().is_empty(),
                "rules.idle.reprompt",
                "must not be empty".into(),
            );
        }
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

#[cfg(test)]
mod tests {
    use crate::policy::{PolicyError, PolicyFile};

    #[test]
    fn bad_consent_and_idle_settings_are_reported_with_field_and_line() {
        let text = r#"
[rules.consent]
mode = "optional"
covers = ["transcript"]
prompt = " "

[rules.idle]
after_secs = 1
"#;
        let PolicyError::Invalid { errors, .. } = PolicyFile::parse(text, "t", "t").unwrap_err()
        else {
            panic!("expected Invalid");
        };
        let got: Vec<(&str, Option<usize>)> =
            errors.iter().map(|e| (e.field.as_str(), e.line)).collect();
        assert_eq!(
            got,
            [
                ("rules.consent.prompt", Some(5)),
                ("rules.consent.required_for", Some(2)),
                ("rules.consent.covers", Some(4)),
                ("rules.idle.after_secs", Some(8)),
            ],
            "{errors:?}"
        );
        let bad_prefix =
            "[rules.consent]\nmode = \"optional\"\nrequired_for = [\"49\", \"+1-415\"]\n";
        let PolicyError::Invalid { errors, .. } =
            PolicyFile::parse(bad_prefix, "t", "t").unwrap_err()
        else {
            panic!("expected Invalid");
        };
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(errors[0].reason.contains("E.164 prefix"), "{errors:?}");
    }

    #[test]
    fn consent_lines_follow_the_language() {
        let text = "language = \"hi\"\n[languages.hi]\nconsent_prompt = \"क्या हम रिकॉर्ड कर सकते हैं?\"\nidle_reprompt = \"क्या आप लाइन पर हैं?\"\n[languages.en]\nconsent_prompt = \"May we record?\"\n";
        let p = PolicyFile::parse(text, "t", "t").unwrap();
        assert_eq!(p.rules.consent.prompt, "क्या हम रिकॉर्ड कर सकते हैं?");
        assert_eq!(p.rules.idle.reprompt, "क्या आप लाइन पर हैं?");
        assert_eq!(p.in_language("en").rules.consent.prompt, "May we record?");
    }
}
