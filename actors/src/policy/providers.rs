//! `[providers]` and each role's vendor settings (`[stt.*]`, `[llm.*]`,
//! `[tts.*]`, `[sim.*]`). Each vendor's settings type lives in its provider
//! folder with its own `validate`; this section names which ones a role
//! has, one typed field per vendor — so a typo in a vendor's table is a
//! parse error with its line, not a value carried around unchecked.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::Checks;
use crate::providers::llm::openai::LlmSettings;
use crate::providers::llm::sim::SimLlmSettings;
use crate::providers::stt::deepgram::DeepgramSettings;
use crate::providers::stt::openai::OpenAiSttSettings;
use crate::providers::stt::sim::SimSttSettings;
use crate::providers::tts::elevenlabs::ElevenLabsSettings;
use crate::providers::tts::openai::OpenAiTtsSettings;
use crate::providers::tts::sim::SimTtsSettings;

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

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TtsSettings {
    pub elevenlabs: ElevenLabsSettings,
    pub openai: OpenAiTtsSettings,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SimSettings {
    pub stt: SimSttSettings,
    pub llm: SimLlmSettings,
    pub tts: SimTtsSettings,
}

/// Checks `[providers]` against the vendors each role has, and each
/// vendor's own settings.
pub(super) fn validate(
    p: &ProviderSettings,
    llm: &BTreeMap<String, LlmSettings>,
    tts: &TtsSettings,
    sim: &SimSettings,
    check: &mut Checks,
) {
    check.that(
        (1..=2).contains(&p.stt.len()),
        "providers.stt",
        "needs a streaming STT, then at most one fallback".into(),
    );
    if let Some(first) = p.stt.first() {
        check.that(
            STREAMING_STT.contains(&first.as_str()),
            "providers.stt",
            format!("{first:?} is not a streaming STT (one of {STREAMING_STT:?})"),
        );
    }
    for f in p.stt.iter().skip(1) {
        check.that(
            BATCH_STT.contains(&f.as_str()),
            "providers.stt",
            format!("{f:?} cannot be the fallback STT (one of {BATCH_STT:?})"),
        );
    }
    check.that(
        (1..=3).contains(&p.llm.len()),
        "providers.llm",
        "needs 1 to 3 providers".into(),
    );
    for name in &p.llm {
        check.that(
            name == "sim" || llm.contains_key(name),
            "providers.llm",
            format!("{name:?} has no [llm.{name}] section with its model"),
        );
    }
    check.that(
        (1..=3).contains(&p.tts.len()),
        "providers.tts",
        "needs 1 to 3 providers".into(),
    );
    for name in &p.tts {
        check.that(
            TTS.contains(&name.as_str()),
            "providers.tts",
            format!("{name:?} is not a TTS (one of {TTS:?})"),
        );
    }
    for (name, settings) in llm {
        check.section(&format!("llm.{name}"), settings.validate());
    }
    check.section("tts.elevenlabs", tts.elevenlabs.validate());
    check.section("sim.stt", sim.stt.validate());
    check.section("sim.llm", sim.llm.validate());
    check.section("sim.tts", sim.tts.validate());
}
