//! Per-call runtime settings: the `[call]` section of the runtime config.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Per-call runtime settings (the `[call]` section of the runtime config).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CallSettings {
    /// Child restarts allowed within `restart_window_secs` before the call is ended.
    pub restart_budget: u32,
    pub restart_window_secs: u64,
    /// How far ahead of real-time playback audio is sent to the carrier.
    pub playback_lead_ms: u64,
    /// Synthesized audio buffered in Hark per call; TTS waits when it is full.
    pub max_queued_audio_ms: u64,
    /// Inbound frames an actor may have queued before new frames are dropped.
    pub mailbox_frames: usize,
    /// Longest wait for a goodbye or apology to play before the stream is closed.
    pub goodbye_timeout_secs: u64,
    /// Test only: honour the `hark_fault` stream parameter (see `fault.rs`).
    pub fault_injection: bool,
    /// A call this long is ended with the policy's goodbye.
    pub max_duration_secs: u64,
    /// DTMF digits a call may send per second (bursts of as many); more are
    /// counted and dropped. Each digit is a caller turn and an LLM request.
    pub dtmf_per_second: u32,
}

impl Default for CallSettings {
    fn default() -> Self {
        Self {
            restart_budget: 3,
            restart_window_secs: 60,
            playback_lead_ms: 300,
            max_queued_audio_ms: 2000,
            mailbox_frames: 50,
            goodbye_timeout_secs: 15,
            fault_injection: false,
            max_duration_secs: 4 * 3600,
            dtmf_per_second: 10,
        }
    }
}

impl CallSettings {
    pub fn validate(&self) -> Vec<String> {
        let mut errors = Vec::new();
        if self.restart_window_secs == 0 {
            errors.push("call.restart_window_secs: must be at least 1".to_owned());
        }
        if !(20..=5000).contains(&self.playback_lead_ms) {
            errors.push(format!(
                "call.playback_lead_ms: {} is outside 20..=5000",
                self.playback_lead_ms
            ));
        }
        if !(200..=60_000).contains(&self.max_queued_audio_ms) {
            errors.push(format!(
                "call.max_queued_audio_ms: {} is outside 200..=60000",
                self.max_queued_audio_ms
            ));
        }
        if !(5..=5000).contains(&self.mailbox_frames) {
            errors.push(format!(
                "call.mailbox_frames: {} is outside 5..=5000",
                self.mailbox_frames
            ));
        }
        if !(1..=7 * 24 * 3600).contains(&self.max_duration_secs) {
            errors.push(format!(
                "call.max_duration_secs: {} is outside 1..=604800",
                self.max_duration_secs
            ));
        }
        if !(1..=100).contains(&self.dtmf_per_second) {
            errors.push(format!(
                "call.dtmf_per_second: {} is outside 1..=100",
                self.dtmf_per_second
            ));
        }
        errors
    }

    pub fn restart_window(&self) -> Duration {
        Duration::from_secs(self.restart_window_secs)
    }

    pub fn playback_lead(&self) -> Duration {
        Duration::from_millis(self.playback_lead_ms)
    }

    pub fn goodbye_timeout(&self) -> Duration {
        Duration::from_secs(self.goodbye_timeout_secs)
    }

    pub fn max_duration(&self) -> Duration {
        Duration::from_secs(self.max_duration_secs)
    }

    /// Audio budget in 20 ms frames.
    pub fn queued_audio_frames(&self) -> usize {
        (self.max_queued_audio_ms / 20).max(1) as usize
    }
}
