//! The policy file AI Ops edit (`policies/*.toml`): persona, turn-taking and providers.
//!
//! Parsed with `deny_unknown_fields` so a typo is an error, not a silently
//! ignored knob; every knob has a default so a file only says what it changes.
//! A parsed file is then validated as a whole and *every* problem is reported
//! with its field path, so one edit-run cycle fixes them all.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Length of one audio frame: Twilio's packetisation and the VAD's step.
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
    /// System prompt given to the LLM before the conversation history.
    pub system_prompt: String,
    pub vad: VadSettings,
    pub barge_in: BargeInSettings,
    pub providers: ProviderSettings,
    pub stt: SttSettings,
    pub llm: BTreeMap<String, LlmSettings>,
    pub tts: TtsSettings,
    pub timeouts: Timeouts,
    pub tools: ToolSettings,
    pub records: RecordSettings,
    pub history: HistorySettings,
    pub sim: SimSettings,
}

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
            system_prompt: "You are a helpful, concise phone agent. Answer in one or two short \
                            sentences that sound natural when spoken."
                .into(),
            vad: VadSettings::default(),
            barge_in: BargeInSettings::default(),
            providers: ProviderSettings::default(),
            stt: SttSettings::default(),
            llm: BTreeMap::from([("openai".to_owned(), LlmSettings::default())]),
            tts: TtsSettings::default(),
            timeouts: Timeouts::default(),
            tools: ToolSettings::default(),
            records: RecordSettings::default(),
            history: HistorySettings::default(),
            sim: SimSettings::default(),
        }
    }
}

/// webrtc-vad aggressiveness: higher modes report speech less readily.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum VadMode {
    Quality,
    LowBitrate,
    Aggressive,
    VeryAggressive,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct VadSettings {
    pub mode: VadMode,
    /// Speech must last this long before it counts as the caller starting to talk.
    pub onset_ms: u32,
    /// Silence this long after speech ends the caller's turn.
    pub endpointing_ms: u32,
    /// Frames quieter than this (RMS, dBFS) are silence whatever webrtc-vad
    /// says: its hangover would otherwise add up to 100 ms to endpointing.
    pub silence_floor_dbfs: f64,
}

impl Default for VadSettings {
    fn default() -> Self {
        Self {
            mode: VadMode::Aggressive,
            onset_ms: 60,
            endpointing_ms: 500,
            silence_floor_dbfs: -55.0,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct BargeInSettings {
    /// Whether the caller may interrupt the bot by talking over it.
    pub enabled: bool,
    /// Speech must last this long (at least `vad.onset_ms`) to interrupt the bot.
    pub min_speech_ms: u32,
}

impl Default for BargeInSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            min_speech_ms: 100,
        }
    }
}

/// Streaming speech-to-text implementations.
pub const STREAMING_STT: &[&str] = &["sim", "deepgram"];
/// Per-utterance transcription, used while the streaming STT is down.
pub const BATCH_STT: &[&str] = &["openai"];
/// Speech synthesis implementations.
pub const TTS: &[&str] = &["sim", "elevenlabs", "openai"];

/// Which providers serve the calls, in order of preference. A provider whose
/// API key is not set is replaced by the simulation, and said so at start-up.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ProviderSettings {
    /// A streaming STT (`sim`, `deepgram`), then optionally `openai` to
    /// transcribe utterances one by one while the stream is down.
    pub stt: Vec<String>,
    /// `sim`, `openai`, or the name of an OpenAI-compatible endpoint from the
    /// runtime config (`[providers.openai_compatible.NAME]`), tried in order.
    pub llm: Vec<String>,
    /// `sim`, `elevenlabs`, `openai`, tried in order for each sentence.
    pub tts: Vec<String>,
}

impl Default for ProviderSettings {
    fn default() -> Self {
        Self {
            stt: vec!["deepgram".into(), "openai".into()],
            llm: vec!["openai".into()],
            tts: vec!["elevenlabs".into(), "openai".into()],
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SttSettings {
    pub deepgram: DeepgramSettings,
    pub openai: OpenAiSttSettings,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DeepgramSettings {
    /// `nova-3` and `nova-2-phonecall` do well on 8 kHz phone audio.
    pub model: String,
    pub language: String,
    /// Deepgram's own utterance end (Hark's VAD decides turns; this is a backstop).
    pub utterance_end_ms: u16,
    pub smart_format: bool,
}

impl Default for DeepgramSettings {
    fn default() -> Self {
        Self {
            model: "nova-3".into(),
            language: "en-US".into(),
            utterance_end_ms: 1000,
            smart_format: true,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct OpenAiSttSettings {
    /// `gpt-4o-mini-transcribe` or `whisper-1`.
    pub model: String,
    pub language: String,
}

impl Default for OpenAiSttSettings {
    fn default() -> Self {
        Self {
            model: "gpt-4o-mini-transcribe".into(),
            language: "en".into(),
        }
    }
}

/// Model settings for one LLM provider (`[llm.openai]`, `[llm.groq]`, ...).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LlmSettings {
    pub model: String,
    pub temperature: f32,
    pub max_tokens: u32,
}

impl Default for LlmSettings {
    fn default() -> Self {
        Self {
            model: "gpt-4o-mini".into(),
            temperature: 0.6,
            max_tokens: 300,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TtsSettings {
    pub elevenlabs: ElevenLabsSettings,
    pub openai: OpenAiTtsSettings,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ElevenLabsSettings {
    pub voice_id: String,
    /// `eleven_flash_v2_5` has the lowest latency.
    pub model_id: String,
    pub stability: f32,
    pub similarity_boost: f32,
}

impl Default for ElevenLabsSettings {
    fn default() -> Self {
        Self {
            voice_id: "21m00Tcm4TlvDq8ikWAM".into(),
            model_id: "eleven_flash_v2_5".into(),
            stability: 0.5,
            similarity_boost: 0.75,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct OpenAiTtsSettings {
    pub model: String,
    pub voice: String,
}

impl Default for OpenAiTtsSettings {
    fn default() -> Self {
        Self {
            model: "gpt-4o-mini-tts".into(),
            voice: "alloy".into(),
        }
    }
}

/// How long each stage may take before Hark retries or falls back.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Timeouts {
    /// Request → first token; past it the attempt counts as failed.
    pub llm_first_token_ms: u64,
    /// All LLM attempts of one turn (retry, fallback) must start within this.
    pub turn_budget_ms: u64,
    /// Sentence → first audio byte before the next TTS provider takes the sentence.
    pub tts_first_byte_ms: u64,
    /// End of speech → final transcript before the utterance goes to the fallback STT.
    pub stt_final_ms: u64,
    /// The fallback STT's answer for one utterance; past it the utterance is
    /// lost and the caller hears the fallback line.
    pub stt_fallback_ms: u64,
    /// Longest wait between STT reconnection attempts (backoff doubles from 100 ms).
    pub stt_reconnect_max_ms: u64,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            llm_first_token_ms: 3000,
            turn_budget_ms: 8000,
            tts_first_byte_ms: 2000,
            stt_final_ms: 2000,
            stt_fallback_ms: 8000,
            stt_reconnect_max_ms: 5000,
        }
    }
}

impl Timeouts {
    pub fn llm_first_token(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.llm_first_token_ms)
    }

    pub fn turn_budget(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.turn_budget_ms)
    }

    pub fn tts_first_byte(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.tts_first_byte_ms)
    }

    pub fn stt_final(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.stt_final_ms)
    }

    pub fn stt_fallback(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.stt_fallback_ms)
    }

    pub fn stt_reconnect_max(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.stt_reconnect_max_ms)
    }
}

/// A `record_outcome` slot: a JSON type, or a list of allowed strings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum SlotSpec {
    /// `string`, `number`, `integer` or `boolean`.
    Type(String),
    OneOf(Vec<String>),
}

/// Tools the LLM may call.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ToolSettings {
    /// Offer `end_call`: the bot hangs up after its last words.
    pub end_call: bool,
    /// Where `transfer_call` may send the caller; empty: the tool is not offered.
    pub transfer_targets: Vec<String>,
    /// `record_outcome` slots; empty: the tool is not offered.
    pub outcome: BTreeMap<String, SlotSpec>,
}

impl Default for ToolSettings {
    fn default() -> Self {
        Self {
            end_call: true,
            transfer_targets: Vec::new(),
            outcome: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SimSettings {
    pub stt: SimSttSettings,
    pub llm: SimLlmSettings,
    pub tts: SimTtsSettings,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SimSttSettings {
    /// Delay from the end of the caller's speech to the final transcript.
    pub final_delay_ms: u64,
    /// Transcripts for successive utterances (cycled); empty gives a placeholder
    /// that names the utterance length.
    pub script: Vec<String>,
}

impl Default for SimSttSettings {
    fn default() -> Self {
        Self {
            final_delay_ms: 150,
            script: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SimLlmSettings {
    /// Time to first token.
    pub first_token_ms: u64,
    /// Streaming rate after the first token; 0 streams the whole reply at once.
    pub tokens_per_second: f64,
    /// Reply when no `replies` entry matches; `{user}` is replaced by the caller's words.
    pub template: String,
    /// Canned replies: the first whose `when` occurs in the caller's words (case-insensitive).
    pub replies: Vec<SimReply>,
}

impl Default for SimLlmSettings {
    fn default() -> Self {
        Self {
            first_token_ms: 250,
            tokens_per_second: 40.0,
            template: "I heard you say: {user}. What else can I do for you?".into(),
            replies: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SimReply {
    pub when: String,
    pub say: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SimTtsSettings {
    /// Time to the first audio chunk of a sentence.
    pub first_byte_ms: u64,
    /// Synthesis time per second of audio (0.2 = five times faster than real time; 0 = instant).
    pub real_time_factor: f64,
    /// Audio length per character of text.
    pub ms_per_char: u32,
}

impl Default for SimTtsSettings {
    fn default() -> Self {
        Self {
            first_byte_ms: 120,
            real_time_factor: 0.2,
            ms_per_char: 60,
        }
    }
}

/// One problem in a policy file, with the field it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: &'static str,
    pub reason: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.reason)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    // The cause is in the message and not a `source`, so that printing the
    // error chain (`{:#}`) says it once.
    #[error("cannot read policy file {path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("policy file {origin} is not valid: {message}")]
    Parse { origin: String, message: String },
    #[error("policy file {origin} has {} error(s):\n{}", errors.len(), list(errors))]
    Invalid {
        origin: String,
        errors: Vec<FieldError>,
    },
}

fn list(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(|e| format!("  - {e}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The shipped default policy (`policies/default.toml`), compiled in so that
/// `hark serve` runs from any folder without a policy file.
pub const BUILTIN_DEFAULT: &str = include_str!("../../policies/default.toml");

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
        let table: toml::Table = toml::from_str(text).map_err(|e| PolicyError::Parse {
            origin: origin.to_owned(),
            message: e.to_string(),
        })?;
        let has_name = table.contains_key("name");
        let mut policy: PolicyFile =
            table
                .try_into()
                .map_err(|e: toml::de::Error| PolicyError::Parse {
                    origin: origin.to_owned(),
                    message: e.to_string(),
                })?;
        if !has_name {
            policy.name = default_name.to_owned();
        }
        let errors = policy.validate();
        if errors.is_empty() {
            Ok(policy)
        } else {
            Err(PolicyError::Invalid {
                origin: origin.to_owned(),
                errors,
            })
        }
    }

    /// Every semantic problem in the policy; empty when it is usable.
    pub fn validate(&self) -> Vec<FieldError> {
        let mut errors = Vec::new();
        let mut check = |ok: bool, field: &'static str, reason: String| {
            if !ok {
                errors.push(FieldError { field, reason });
            }
        };
        check(
            !self.name.trim().is_empty() && self.name.len() <= 64,
            "name",
            "must be 1 to 64 characters".into(),
        );
        check(
            self.name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
            "name",
            format!("{:?} may only use letters, digits, '-' and '_'", self.name),
        );
        check(
            !self.system_prompt.trim().is_empty(),
            "system_prompt",
            "must not be empty".into(),
        );
        for (field, text) in [
            ("goodbye", &self.goodbye),
            ("apology", &self.apology),
            ("fallback_line", &self.fallback_line),
        ] {
            check(!text.trim().is_empty(), field, "must not be empty".into());
        }
        let vad = &self.vad;
        check(
            (FRAME_MS..=1000).contains(&vad.onset_ms),
            "vad.onset_ms",
            format!("{} is outside 20..=1000", vad.onset_ms),
        );
        check(
            (100..=5000).contains(&vad.endpointing_ms),
            "vad.endpointing_ms",
            format!("{} is outside 100..=5000", vad.endpointing_ms),
        );
        check(
            (-90.0..=-20.0).contains(&vad.silence_floor_dbfs),
            "vad.silence_floor_dbfs",
            format!("{} is outside -90..=-20", vad.silence_floor_dbfs),
        );
        let barge = &self.barge_in;
        check(
            (FRAME_MS..=2000).contains(&barge.min_speech_ms),
            "barge_in.min_speech_ms",
            format!("{} is outside 20..=2000", barge.min_speech_ms),
        );
        check(
            barge.min_speech_ms >= vad.onset_ms,
            "barge_in.min_speech_ms",
            format!(
                "{} is shorter than vad.onset_ms ({}): speech cannot interrupt before it is speech",
                barge.min_speech_ms, vad.onset_ms
            ),
        );
        let p = &self.providers;
        check(
            (1..=2).contains(&p.stt.len()),
            "providers.stt",
            "needs a streaming STT, then at most one fallback".into(),
        );
        if let Some(first) = p.stt.first() {
            check(
                STREAMING_STT.contains(&first.as_str()),
                "providers.stt",
                format!("{first:?} is not a streaming STT (one of {STREAMING_STT:?})"),
            );
        }
        for f in p.stt.iter().skip(1) {
            check(
                BATCH_STT.contains(&f.as_str()),
                "providers.stt",
                format!("{f:?} cannot be the fallback STT (one of {BATCH_STT:?})"),
            );
        }
        check(
            (1..=3).contains(&p.llm.len()),
            "providers.llm",
            "needs 1 to 3 providers".into(),
        );
        for name in &p.llm {
            check(
                name == "sim" || self.llm.contains_key(name),
                "providers.llm",
                format!("{name:?} has no [llm.{name}] section with its model"),
            );
        }
        check(
            (1..=3).contains(&p.tts.len()),
            "providers.tts",
            "needs 1 to 3 providers".into(),
        );
        for name in &p.tts {
            check(
                TTS.contains(&name.as_str()),
                "providers.tts",
                format!("{name:?} is not a TTS (one of {TTS:?})"),
            );
        }
        for (name, llm) in &self.llm {
            check(
                !llm.model.trim().is_empty(),
                "llm.*.model",
                format!("[llm.{name}] needs a model"),
            );
            check(
                (0.0..=2.0).contains(&llm.temperature),
                "llm.*.temperature",
                format!(
                    "[llm.{name}] temperature {} is outside 0..=2",
                    llm.temperature
                ),
            );
            check(
                (1..=4096).contains(&llm.max_tokens),
                "llm.*.max_tokens",
                format!(
                    "[llm.{name}] max_tokens {} is outside 1..=4096",
                    llm.max_tokens
                ),
            );
        }
        check(
            !self.tts.elevenlabs.voice_id.trim().is_empty(),
            "tts.elevenlabs.voice_id",
            "must not be empty".into(),
        );
        let t = &self.timeouts;
        for (field, v, lo, hi) in [
            (
                "timeouts.llm_first_token_ms",
                t.llm_first_token_ms,
                100,
                60_000,
            ),
            ("timeouts.turn_budget_ms", t.turn_budget_ms, 500, 120_000),
            (
                "timeouts.tts_first_byte_ms",
                t.tts_first_byte_ms,
                100,
                30_000,
            ),
            ("timeouts.stt_final_ms", t.stt_final_ms, 100, 30_000),
            ("timeouts.stt_fallback_ms", t.stt_fallback_ms, 500, 60_000),
            (
                "timeouts.stt_reconnect_max_ms",
                t.stt_reconnect_max_ms,
                100,
                60_000,
            ),
        ] {
            check(
                (lo..=hi).contains(&v),
                field,
                format!("{v} is outside {lo}..={hi}"),
            );
        }
        check(
            t.turn_budget_ms >= t.llm_first_token_ms,
            "timeouts.turn_budget_ms",
            "must be at least timeouts.llm_first_token_ms".into(),
        );
        for (slot, spec) in &self.tools.outcome {
            let ok = match spec {
                SlotSpec::Type(t) => {
                    ["string", "number", "integer", "boolean"].contains(&t.as_str())
                }
                SlotSpec::OneOf(values) => !values.is_empty(),
            };
            check(
                ok,
                "tools.outcome",
                format!(
                    "slot {slot:?}: a type (string, number, integer, boolean) or a non-empty list of values"
                ),
            );
        }
        check(
            (4..=1000).contains(&self.history.max_turns),
            "history.max_turns",
            format!("{} is outside 4..=1000", self.history.max_turns),
        );
        let sim = &self.sim;
        check(
            sim.stt.final_delay_ms <= 10_000,
            "sim.stt.final_delay_ms",
            format!("{} is over 10000", sim.stt.final_delay_ms),
        );
        check(
            sim.llm.first_token_ms <= 30_000,
            "sim.llm.first_token_ms",
            format!("{} is over 30000", sim.llm.first_token_ms),
        );
        check(
            sim.llm.tokens_per_second.is_finite() && sim.llm.tokens_per_second >= 0.0,
            "sim.llm.tokens_per_second",
            format!("{} must be a number >= 0", sim.llm.tokens_per_second),
        );
        check(
            !sim.llm.template.trim().is_empty(),
            "sim.llm.template",
            "must not be empty".into(),
        );
        for reply in &sim.llm.replies {
            check(
                !reply.when.trim().is_empty() && !reply.say.trim().is_empty(),
                "sim.llm.replies",
                format!("entry {:?} needs a non-empty `when` and `say`", reply.when),
            );
        }
        check(
            sim.tts.first_byte_ms <= 30_000,
            "sim.tts.first_byte_ms",
            format!("{} is over 30000", sim.tts.first_byte_ms),
        );
        check(
            sim.tts.real_time_factor.is_finite()
                && (0.0..=10.0).contains(&sim.tts.real_time_factor),
            "sim.tts.real_time_factor",
            format!("{} is outside 0..=10", sim.tts.real_time_factor),
        );
        check(
            (10..=500).contains(&sim.tts.ms_per_char),
            "sim.tts.ms_per_char",
            format!("{} is outside 10..=500", sim.tts.ms_per_char),
        );
        errors
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
    pub fn barge_in_frames(&self) -> u32 {
        self.barge_in.min_speech_ms.div_ceil(FRAME_MS)
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
        let fields: Vec<_> = errors.iter().map(|e| e.field).collect();
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
