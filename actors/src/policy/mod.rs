//! The policy AI Ops edit (`policies/*.toml`): persona, turn-taking,
//! providers, timeouts, tools, memory. One file per section; each checks
//! itself.
//!
//! Parsed with `deny_unknown_fields` so a typo is an error (with its line),
//! not a silently ignored knob; every knob has a default so a file only
//! says what it changes. A parsed file is then validated as a whole and
//! *every* problem is reported with its field path, so one edit-run cycle
//! fixes them all.
//!
//! # Layout
//! - [`prompt`] — `[prompt]`: the system prompt's variables;
//!   [`languages`] — `language`, `[languages.CODE]`: lines and voices;
//!   [`turn_taking`] — `[vad]`, `[barge_in]`; [`timeouts`] — `[timeouts]`;
//!   [`tools`] — `[tools]`; [`transfer`] — `[transfer]`; [`outbound`] — `[outbound]`; [`outcome`] — `[outcome]` (slots,
//!   dispositions); [`rules`] — `[rules]` (consent, profanity, idle, escalation, claims); [`menu`] — `[rules.menu]`; [`do_not_call`] — `[rules.do_not_call]`; [`memory`] — `[history]`, `[records]`.
//! - [`providers`] — `[providers]` and each role's vendor settings, whose
//!   types live with their providers (`providers/<role>/<vendor>.rs`).
//! - [`errors`] — `PolicyError`, `FieldError`, the `Checks` collector.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

pub mod do_not_call;
pub mod errors;
pub mod languages;
pub mod memory;
pub mod menu;
pub mod outbound;
pub mod outcome;
pub mod prompt;
pub mod providers;
pub mod rules;
pub mod timeouts;
pub mod tools;
pub mod transfer;
pub mod turn_taking;

pub use errors::{Checks, FieldError, PolicyError};
pub use languages::LanguageSettings;
pub use memory::{HistorySettings, RecordSettings, RecordingMode};
pub use menu::{MenuChoice, MenuSettings};
pub use outbound::{MachineAction, OutboundSettings};
pub use outcome::{OutcomeSettings, Slot, SlotType};
pub use prompt::PromptSettings;
pub use providers::{
    BATCH_STT, ProviderSettings, STREAMING_STT, SimSettings, SttSettings, TTS, TtsSettings,
};
pub use rules::{
    CallLengthSettings, ClaimSettings, ConsentCovers, ConsentMode, ConsentSettings,
    EscalationSettings, EscalationTrigger, IdleSettings, ProfanityAction, ProfanitySettings,
    RuleSettings,
};
pub use timeouts::Timeouts;
pub use tools::ToolSettings;
pub use transfer::{TransferMode, TransferSettings};
pub use turn_taking::{BargeInMode, BargeInSettings, VadMode, VadSettings};

pub use crate::providers::llm::openai::LlmSettings;
pub use crate::providers::llm::sim::{SimLlmSettings, SimReply};
pub use crate::providers::stt::deepgram::DeepgramSettings;
pub use crate::providers::stt::openai::OpenAiSttSettings;
pub use crate::providers::stt::sim::SimSttSettings;
pub use crate::providers::tts::elevenlabs::ElevenLabsSettings;
pub use crate::providers::tts::openai::OpenAiTtsSettings;
pub use crate::providers::tts::sim::SimTtsSettings;

/// Length of one audio frame: the carriers' packetisation and the VAD's step.
pub const FRAME_MS: u32 = 20;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyFile {
    /// Shown in logs and records; defaults to the file stem when loaded from disk.
    pub name: String,
    /// Free-form version string AI Ops bump on each change.
    pub version: String,
    /// Spoken when the call connects; empty means the bot waits for the caller.
    pub greeting: String,
    /// Spoken when Hark ends a call itself (e.g. node shutdown).
    pub goodbye: String,
    /// Spoken when the call cannot go on (a component keeps failing).
    pub apology: String,
    /// Spoken when the LLM cannot produce a reply for a turn.
    pub fallback_line: String,
    /// Said by the carrier (`<Say>`) when every node of the cluster is full.
    pub busy_line: String,
    /// Said by the carrier while a call whose node was lost moves to another.
    pub reconnect_line: String,
    /// The language calls start in: a `[languages]` key when there are any.
    pub language: String,
    /// Per language: STT language, voices, greeting and lines.
    pub languages: BTreeMap<String, LanguageSettings>,
    /// System prompt given to the LLM before the conversation history: a
    /// template whose variables `[prompt]` fills (see [`prompt`]).
    pub system_prompt: String,
    pub prompt: PromptSettings,
    pub vad: VadSettings,
    pub barge_in: BargeInSettings,
    pub providers: ProviderSettings,
    pub stt: SttSettings,
    pub llm: BTreeMap<String, LlmSettings>,
    pub tts: TtsSettings,
    pub timeouts: Timeouts,
    pub tools: ToolSettings,
    pub outcome: OutcomeSettings,
    pub rules: RuleSettings,
    pub records: RecordSettings,
    /// Whether the call's audio may be recorded: `never` (the default),
    /// `with_consent` (`[rules.consent]` decides), `always` (after the notice).
    pub recording: RecordingMode,
    /// Said before anything else when `recording = "always"`.
    pub recording_notice: String,
    pub history: HistorySettings,
    pub transfer: TransferSettings,
    pub outbound: OutboundSettings,
    pub sim: SimSettings,
}

impl Default for PolicyFile {
    fn default() -> Self {
        Self {
            name: "default".into(),
            version: "1".into(),
            greeting: "Hello, thanks for calling. How can I help you today?".into(),
            goodbye: "We have to end the call now. Thank you for calling, goodbye.".into(),
            apology:
                "I'm sorry, something went wrong on our side. Please call again later. Goodbye."
                    .into(),
            fallback_line: "Sorry, I didn't quite get that. Could you say it again?".into(),
            busy_line: "All our lines are busy right now. Please call again in a few minutes. \
                        Goodbye."
                .into(),
            reconnect_line: "Sorry, the line dropped for a moment. I'm still here.".into(),
            language: "en".into(),
            languages: BTreeMap::new(),
            system_prompt: "You are a helpful, concise phone agent. Answer in one or two short \
                            sentences that sound natural when spoken."
                .into(),
            prompt: PromptSettings::default(),
            vad: VadSettings::default(),
            barge_in: BargeInSettings::default(),
            providers: ProviderSettings::default(),
            stt: SttSettings::default(),
            llm: BTreeMap::from([("openai".to_owned(), LlmSettings::default())]),
            tts: TtsSettings::default(),
            timeouts: Timeouts::default(),
            tools: ToolSettings::default(),
            outcome: OutcomeSettings::default(),
            rules: RuleSettings::default(),
            records: RecordSettings::default(),
            recording: RecordingMode::Never,
            recording_notice: String::new(),
            history: HistorySettings::default(),
            transfer: TransferSettings::default(),
            outbound: OutboundSettings::default(),
            sim: SimSettings::default(),
        }
    }
}

/// The shipped default policy (`policies/default.toml`), compiled in so that
/// `hark serve` runs from any folder without a policy file.
pub const BUILTIN_DEFAULT: &str = include_str!("../../../policies/default.toml");

impl PolicyFile {
    /// The built-in default policy.
    pub fn builtin() -> Result<Self, PolicyError> {
        Self::parse(BUILTIN_DEFAULT, "(built-in default policy)", "default")
    }

    /// Reads, parses and validates a policy file. The name defaults to the file stem.
    pub fn load(path: &Path) -> Result<Self, PolicyError> {
        let text = std::fs::read_to_string(path).map_err(|error| PolicyError::Io {
            path: path.to_owned(),
            error,
        })?;
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("default");
        Self::parse(&text, &path.display().to_string(), stem)
    }

    /// Parses and validates policy text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str, default_name: &str) -> Result<Self, PolicyError> {
        // Straight from the text, so an unknown or mistyped field's error
        // carries its line and column.
        let parse_error = |e: toml::de::Error| PolicyError::Parse {
            origin: origin.to_owned(),
            message: e.to_string(),
        };
        let mut policy: PolicyFile = toml::from_str(text).map_err(parse_error)?;
        let table: toml::Table = toml::from_str(text).map_err(parse_error)?;
        if !table.contains_key("name") {
            policy.name = default_name.to_owned();
        }
        let mut errors = policy.validate();
        errors::set_lines(text, &mut errors);
        if errors.is_empty() {
            let start = policy.language.clone();
            Ok(policy.in_language(&start))
        } else {
            Err(PolicyError::Invalid {
                origin: origin.to_owned(),
                errors,
            })
        }
    }

    /// Every semantic problem in the policy; empty when it is usable. Each
    /// section checks itself.
    pub fn validate(&self) -> Vec<FieldError> {
        let mut check = Checks::default();
        check.that(
            !self.name.trim().is_empty() && self.name.len() <= 64,
            "name",
            "must be 1 to 64 characters".into(),
        );
        check.that(
            self.name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
            "name",
            format!("{:?} may only use letters, digits, '-' and '_'", self.name),
        );
        check.that(
            !self.system_prompt.trim().is_empty(),
            "system_prompt",
            "must not be empty".into(),
        );
        for (field, text) in [
            ("goodbye", &self.goodbye),
            ("apology", &self.apology),
            ("fallback_line", &self.fallback_line),
            ("busy_line", &self.busy_line),
            ("reconnect_line", &self.reconnect_line),
        ] {
            check.that(!text.trim().is_empty(), field, "must not be empty".into());
        }
        self.prompt.validate(&self.system_prompt, &mut check);
        languages::validate(&self.language, &self.languages, &mut check);
        turn_taking::validate(&self.vad, &self.barge_in, &mut check);
        providers::validate(&self.providers, &self.llm, &self.tts, &self.sim, &mut check);
        self.timeouts.validate(&mut check);
        self.outcome.validate(&mut check);
        self.rules.validate(&mut check);
        menu::validate(self, &mut check);
        memory::validate_recording(self, &mut check);
        check.that(
            !self
                .rules
                .escalation
                .triggers
                .contains(&EscalationTrigger::Tool)
                || !self.tools.transfer_targets.is_empty(),
            "rules.escalation.triggers",
            "\"tool\" needs [tools] transfer_targets (the model's transfer_call)".into(),
        );
        let disposition = &self.rules.escalation.disposition;
        check.that(
            disposition.is_empty() || self.outcome.dispositions.contains(disposition),
            "rules.escalation.disposition",
            format!(
                "{disposition:?} is not one of [outcome] dispositions {:?}",
                self.outcome.dispositions
            ),
        );
        self.history.validate(&mut check);
        self.transfer.validate(&mut check);
        self.outbound.validate(&self.prompt, &mut check);
        check.0
    }

    /// The system prompt for one call, its variables filled from `[prompt]`
    /// and what is known about the caller.
    pub fn system_prompt_for(&self, caller: &BTreeMap<String, String>) -> String {
        self.prompt.render(&self.system_prompt, caller)
    }

    /// The voicemail message for one call, filled like the system prompt.
    pub fn voicemail_for(&self, caller: &BTreeMap<String, String>) -> String {
        self.prompt.render(&self.outbound.voicemail_message, caller)
    }

    /// Frames of speech before speech-start (rounded up to whole frames).
    pub fn onset_frames(&self) -> u32 {
        self.vad.onset_ms.div_ceil(FRAME_MS)
    }

    /// Frames of silence that end the caller's turn.
    pub fn endpoint_frames(&self) -> u32 {
        self.vad.endpointing_ms.div_ceil(FRAME_MS)
    }

    /// Frames of speech before the caller may interrupt the bot.
    /// Frames of speech that interrupt the bot: `min_speech_ms`, or in
    /// `confirm` mode `confirm_ms` (an interim word may confirm sooner).
    pub fn barge_in_frames(&self) -> u32 {
        let ms = match self.barge_in.mode {
            BargeInMode::Immediate => self.barge_in.min_speech_ms,
            BargeInMode::Confirm => self.barge_in.confirm_ms.max(self.barge_in.min_speech_ms),
        };
        ms.div_ceil(FRAME_MS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_defaults_named_after_the_file() {
        let p = PolicyFile::parse("", "test", "support").unwrap();
        assert_eq!(p.name, "support");
        assert_eq!(p.vad, VadSettings::default());
        assert_eq!(p.onset_frames(), 3);
        assert_eq!(p.endpoint_frames(), 25);
    }

    #[test]
    fn shipped_default_policy_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/default.toml");
        let p = PolicyFile::load(&path).unwrap();
        assert_eq!(p.name, "default");
    }

    #[test]
    fn the_built_in_policy_is_the_shipped_file() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/default.toml");
        assert_eq!(
            PolicyFile::builtin().unwrap(),
            PolicyFile::load(&path).unwrap()
        );
    }

    #[test]
    fn a_missing_file_names_its_cause_once_in_the_error_chain() {
        let err = PolicyFile::load(Path::new("/nonexistent/policy.toml")).unwrap_err();
        let mut chain = vec![err.to_string()];
        let mut cause = std::error::Error::source(&err);
        while let Some(c) = cause {
            chain.push(c.to_string());
            cause = c.source();
        }
        let printed = chain.join(": ");
        assert_eq!(
            printed.matches("No such file or directory").count(),
            1,
            "{printed}"
        );
    }

    #[test]
    fn unknown_field_is_rejected_with_its_name() {
        let err = PolicyFile::parse("[vad]\nonset = 3\n", "t", "t").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("unknown field `onset`"), "{text}");
    }

    #[test]
    fn wrong_type_is_rejected_with_its_field() {
        let err = PolicyFile::parse("[vad]\nonset_ms = \"fast\"\n", "t", "t").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("onset_ms"), "{text}");
    }

    #[test]
    fn unknown_enum_value_names_the_choices() {
        let err = PolicyFile::parse("[providers]\nstt = [\"whisperx\"]\n", "t", "t").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("whisperx") && text.contains("sim"), "{text}");
    }

    #[test]
    fn every_semantic_error_is_reported() {
        let text = r#"
            name = "bad name!"
            system_prompt = " "
            [vad]
            onset_ms = 0
            endpointing_ms = 99999
            [barge_in]
            min_speech_ms = 10
            [sim.tts]
            real_time_factor = -1.0
        "#;
        let PolicyError::Invalid { errors, .. } = PolicyFile::parse(text, "t", "t").unwrap_err()
        else {
            panic!("expected Invalid");
        };
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        for f in [
            "name",
            "system_prompt",
            "vad.onset_ms",
            "vad.endpointing_ms",
            "barge_in.min_speech_ms",
            "sim.tts.real_time_factor",
        ] {
            assert!(fields.contains(&f), "missing {f} in {fields:?}");
        }
    }

    #[test]
    fn a_vendor_section_checks_itself_and_its_errors_carry_the_full_path() {
        let text = r#"
            [providers]
            llm = ["groq"]
            [llm.groq]
            model = "llama"
            temperature = 5.0
            [tts.elevenlabs]
            voice_id = " "
            [sim.llm]
            template = ""
        "#;
        let PolicyError::Invalid { errors, .. } = PolicyFile::parse(text, "t", "t").unwrap_err()
        else {
            panic!("expected Invalid");
        };
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "llm.groq.temperature",
                "tts.elevenlabs.voice_id",
                "sim.llm.template"
            ]
        );
        // A typo in a vendor's table is a parse error with its line.
        let typo = "[stt.deepgram]\nmodle = \"nova-3\"\n";
        let text = PolicyFile::parse(typo, "t", "t").unwrap_err().to_string();
        assert!(
            text.contains("line 2") && text.contains("unknown field `modle`"),
            "{text}"
        );
    }

    #[test]
    fn a_scripted_sim_reply_can_call_a_tool_with_arguments() {
        let text = r#"
            [outcome.slots.plan]
            type = "enum"
            values = ["basic", "pro"]
            [sim.llm]
            replies = [{ when = "pro plan", say = "Let me note that.", tool = "record_outcome", arguments = { plan = "pro" }, then = "Done." }]
        "#;
        let p = PolicyFile::parse(text, "t", "t").unwrap();
        let reply = &p.sim.llm.replies[0];
        assert_eq!(reply.tool.as_deref(), Some("record_outcome"));
        assert_eq!(reply.arguments["plan"], "pro");
        assert_eq!(reply.then, "Done.");
    }

    #[test]
    fn the_system_prompt_is_a_template_checked_with_its_line() {
        let text = "system_prompt = \"You are {persona}.\\n{goals}\\nCaller: {caller.name}.\"\n[prompt]\npersona = \"Asha from Acme\"\ngoals = [\"qualify\"]\ncaller_fields = [\"name\"]\n";
        let p = PolicyFile::parse(text, "t", "t").unwrap();
        let caller = BTreeMap::from([("name".to_owned(), "Ravi".to_owned())]);
        assert_eq!(
            p.system_prompt_for(&caller),
            "You are Asha from Acme.\n- qualify\nCaller: Ravi."
        );
        let bad = text.replace("{caller.name}", "{caller.email}");
        let PolicyError::Invalid { errors, .. } = PolicyFile::parse(&bad, "t", "t").unwrap_err()
        else {
            panic!("expected Invalid");
        };
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].field, "system_prompt");
        assert_eq!(errors[0].line, Some(1));
        assert!(errors[0].reason.contains("{caller.email}"), "{errors:?}");
    }

    #[test]
    fn barge_in_shorter_than_onset_is_rejected() {
        let text = "[vad]\nonset_ms = 200\n[barge_in]\nmin_speech_ms = 100\n";
        let err = PolicyFile::parse(text, "t", "t").unwrap_err().to_string();
        assert!(err.contains("barge_in.min_speech_ms"), "{err}");
    }

    #[test]
    fn syntax_error_reports_the_line() {
        let err = PolicyFile::parse("greeting = \"unterminated\n", "f.toml", "f")
            .unwrap_err()
            .to_string();
        assert!(err.contains("f.toml") && err.contains("line 1"), "{err}");
    }
}
