//! `[tools]`: the tools the LLM may call.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::Checks;

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

impl ToolSettings {
    pub(super) fn validate(&self, check: &mut Checks) {
        for (slot, spec) in &self.outcome {
            let ok = match spec {
                SlotSpec::Type(t) => {
                    ["string", "number", "integer", "boolean"].contains(&t.as_str())
                }
                SlotSpec::OneOf(values) => !values.is_empty(),
            };
            check.that(
                ok,
                "tools.outcome",
                format!(
                    "slot {slot:?}: a type (string, number, integer, boolean) or a non-empty list of values"
                ),
            );
        }
    }
}
