//! `[vad]` and `[barge_in]`: when the caller is speaking, when their turn
//! ends, when they may talk over the bot.

use serde::{Deserialize, Serialize};

use super::{Checks, FRAME_MS};

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
    /// After an interruption whose words were only a backchannel ("ok",
    /// "haan"…), or when no words came this long after the caller stopped,
    /// the bot says what it had not yet said, from the sentence cut off.
    /// 0: never.
    pub resume_after_ms: u32,
    /// Words added to the built-in backchannels.
    pub backchannels: Vec<String>,
    /// `immediate`: speech over the bot cancels its turn (`clear`) at once.
    /// `confirm`: it stops new audio, keeping what is queued, until an
    /// interim transcript holds a word that is not a backchannel or speech
    /// passes `confirm_ms`; otherwise the turn carries on.
    pub mode: BargeInMode,
    pub confirm_ms: u32,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum BargeInMode {
    #[default]
    Immediate,
    Confirm,
}

impl Default for BargeInSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            min_speech_ms: 100,
            resume_after_ms: 0,
            backchannels: Vec::new(),
            mode: BargeInMode::Immediate,
            confirm_ms: 800,
        }
    }
}

/// Checks `[vad]` and `[barge_in]` (together: one bounds the other).
pub(super) fn validate(vad: &VadSettings, barge: &BargeInSettings, check: &mut Checks) {
    check.range("vad.onset_ms", vad.onset_ms, FRAME_MS, 1000);
    check.range("vad.endpointing_ms", vad.endpointing_ms, 100, 5000);
    check.that(
        (-90.0..=-20.0).contains(&vad.silence_floor_dbfs),
        "vad.silence_floor_dbfs",
        format!("{} is outside -90..=-20", vad.silence_floor_dbfs),
    );
    check.range(
        "barge_in.min_speech_ms",
        barge.min_speech_ms,
        FRAME_MS,
        2000,
    );
    check.that(
        barge.min_speech_ms >= vad.onset_ms,
        "barge_in.min_speech_ms",
        format!(
            "{} is shorter than vad.onset_ms ({}): speech cannot interrupt before it is speech",
            barge.min_speech_ms, vad.onset_ms
        ),
    );
    check.range("barge_in.confirm_ms", barge.confirm_ms, 200, 5000);
    check.that(
        barge.resume_after_ms == 0 || (300..=10_000).contains(&barge.resume_after_ms),
        "barge_in.resume_after_ms",
        format!(
            "{} is outside 300..=10000 (0: never resume)",
            barge.resume_after_ms
        ),
    );
}
