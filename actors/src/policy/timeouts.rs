//! `[timeouts]`: how long each stage may take before Hark retries or falls back.

use serde::{Deserialize, Serialize};

use super::Checks;

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

impl Timeouts {
    pub(super) fn validate(&self, check: &mut Checks) {
        check.range(
            "timeouts.llm_first_token_ms",
            self.llm_first_token_ms,
            100,
            60_000,
        );
        check.range("timeouts.turn_budget_ms", self.turn_budget_ms, 500, 120_000);
        check.range(
            "timeouts.tts_first_byte_ms",
            self.tts_first_byte_ms,
            100,
            30_000,
        );
        check.range("timeouts.stt_final_ms", self.stt_final_ms, 100, 30_000);
        check.range(
            "timeouts.stt_fallback_ms",
            self.stt_fallback_ms,
            500,
            60_000,
        );
        check.range(
            "timeouts.stt_reconnect_max_ms",
            self.stt_reconnect_max_ms,
            100,
            60_000,
        );
        check.that(
            self.turn_budget_ms >= self.llm_first_token_ms,
            "timeouts.turn_budget_ms",
            "must be at least timeouts.llm_first_token_ms".into(),
        );
    }
}
