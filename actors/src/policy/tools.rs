//! `[tools]`: the tools the LLM may call (`record_outcome` comes from
//! `[outcome]`).

use serde::{Deserialize, Serialize};

/// Tools the LLM may call.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ToolSettings {
    /// Offer `end_call`: the bot hangs up after its last words.
    pub end_call: bool,
    /// Where `transfer_call` may send the caller; empty: the tool is not offered.
    pub transfer_targets: Vec<String>,
}

impl Default for ToolSettings {
    fn default() -> Self {
        Self {
            end_call: true,
            transfer_targets: Vec::new(),
        }
    }
}
