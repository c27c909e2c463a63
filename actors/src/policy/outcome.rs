//! `[outcome]`: what a finished call means. The bot fills typed slots with
//! the `record_outcome` tool; the call then ends `qualified` when every
//! required slot is filled, else with the disposition the bot chose (one
//! the policy lists), else `callback` when a callback window was given, else
//! the policy's `default_disposition`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Checks;

/// The disposition of a call whose required slots are all filled.
pub const QUALIFIED: &str = "qualified";
/// The disposition a callback window implies, when the policy lists it.
pub const CALLBACK: &str = "callback";
/// Given to an outbound call a machine answered (message left or hung up on).
pub const VOICEMAIL: &str = "voicemail";
/// Given to a call whose caller asked not to be called again.
pub const DO_NOT_CALL: &str = "do_not_call";
/// The `record_outcome` argument that carries the bot's disposition.
pub const DISPOSITION_ARG: &str = "disposition";
const MAX_SLOTS: usize = 32;
const MAX_DISPOSITIONS: usize = 16;

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SlotType {
    String,
    Number,
    Integer,
    Boolean,
    /// One of `values`.
    Enum,
    /// `{ "start": RFC 3339, "end": RFC 3339 }`, each with its offset.
    CallbackWindow,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Slot {
    #[serde(rename = "type")]
    pub kind: SlotType,
    /// The allowed values of an `enum` slot.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
    /// A call is `qualified` only when every required slot is filled.
    #[serde(default)]
    pub required: bool,
    /// What the slot means, for the model (sent in the tool's schema).
    #[serde(default)]
    pub description: String,
    /// Never logged, masked in the API for every role, left out of the
    /// outcome search index.
    #[serde(default)]
    pub sensitive: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct OutcomeSettings {
    /// Slots by name; empty: `record_outcome` is not offered.
    pub slots: BTreeMap<String, Slot>,
    /// Dispositions the bot may end a call with, besides `qualified`
    /// (e.g. `not_interested`, `callback`, `escalated`, `voicemail`).
    pub dispositions: Vec<String>,
    /// When no other disposition applies.
    pub default_disposition: String,
}

impl Default for OutcomeSettings {
    fn default() -> Self {
        Self {
            slots: BTreeMap::new(),
            dispositions: Vec::new(),
            default_disposition: "incomplete".into(),
        }
    }
}

/// `snake_case` of 1 to `max` ASCII letters, digits and `_`.
fn is_label(s: &str, max: usize) -> bool {
    (1..=max).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

impl OutcomeSettings {
    /// Whether calls under this policy have an outcome at all.
    pub fn is_used(&self) -> bool {
        !self.slots.is_empty() || !self.dispositions.is_empty()
    }

    pub(super) fn validate(&self, check: &mut Checks) {
        check.that(
            self.slots.len() <= MAX_SLOTS,
            "outcome.slots",
            format!("at most {MAX_SLOTS} slots"),
        );
        for (name, slot) in &self.slots {
            let field = format!("outcome.slots.{name}");
            check.that(
                is_label(name, 64) && name != DISPOSITION_ARG,
                &field,
                "a slot name is 1 to 64 lower-case letters, digits and '_' (and not \"disposition\")"
                    .into(),
            );
            match slot.kind {
                SlotType::Enum => {
                    check.that(
                        !slot.values.is_empty(),
                        &format!("{field}.values"),
                        "an enum slot needs its values".into(),
                    );
                    let mut seen = std::collections::BTreeSet::new();
                    for v in &slot.values {
                        check.that(
                            !v.trim().is_empty() && seen.insert(v),
                            &format!("{field}.values"),
                            format!("{v:?}: values must be non-empty and different"),
                        );
                    }
                }
                _ => check.that(
                    slot.values.is_empty(),
                    &format!("{field}.values"),
                    "only an enum slot has values".into(),
                ),
            }
            check.that(
                slot.description.chars().count() <= 500,
                &format!("{field}.description"),
                "at most 500 characters".into(),
            );
        }
        check.that(
            self.dispositions.len() <= MAX_DISPOSITIONS,
            "outcome.dispositions",
            format!("at most {MAX_DISPOSITIONS}"),
        );
        let mut seen = std::collections::BTreeSet::new();
        for d in &self.dispositions {
            check.that(
                is_label(d, 32) && d != QUALIFIED && seen.insert(d),
                "outcome.dispositions",
                format!(
                    "{d:?}: each is 1 to 32 lower-case letters, digits and '_', listed once; \"qualified\" is implied by the required slots"
                ),
            );
        }
        check.that(
            is_label(&self.default_disposition, 32) && self.default_disposition != QUALIFIED,
            "outcome.default_disposition",
            format!(
                "{:?}: 1 to 32 lower-case letters, digits and '_', not \"qualified\"",
                self.default_disposition
            ),
        );
    }

    /// The call's disposition from what the bot recorded.
    pub fn disposition(
        &self,
        slots: &serde_json::Map<String, serde_json::Value>,
        chosen: Option<&str>,
    ) -> String {
        let mut required = self.slots.iter().filter(|(_, s)| s.required).peekable();
        if required.peek().is_some() && required.all(|(name, _)| slots.contains_key(name)) {
            return QUALIFIED.into();
        }
        if let Some(chosen) = chosen.filter(|c| self.dispositions.iter().any(|d| d == c)) {
            return chosen.to_owned();
        }
        let has_window = self
            .slots
            .iter()
            .any(|(name, s)| s.kind == SlotType::CallbackWindow && slots.contains_key(name));
        if has_window && self.dispositions.iter().any(|d| d == CALLBACK) {
            return CALLBACK.into();
        }
        self.default_disposition.clone()
    }

    /// The names of the sensitive slots.
    pub fn sensitive(&self) -> Vec<String> {
        self.slots
            .iter()
            .filter(|(_, s)| s.sensitive)
            .map(|(n, _)| n.clone())
            .collect()
    }
}

impl Slot {
    /// Whether `value` is one this slot takes.
    pub fn check(&self, value: &Value) -> Result<(), String> {
        check_slot(self, value)
    }
}

fn check_slot(slot: &Slot, value: &Value) -> Result<(), String> {
    let ok = match slot.kind {
        SlotType::String => value.as_str().is_some_and(|s| !s.trim().is_empty()),
        SlotType::Number => value.is_number(),
        SlotType::Integer => value.is_i64() || value.is_u64(),
        SlotType::Boolean => value.is_boolean(),
        SlotType::Enum => {
            return match value {
                Value::String(s) if slot.values.contains(s) => Ok(()),
                other => Err(format!("must be one of {:?}, not {other}", slot.values)),
            };
        }
        SlotType::CallbackWindow => return check_window(value, std::time::SystemTime::now()),
    };
    if ok {
        Ok(())
    } else {
        let kind = match slot.kind {
            SlotType::String => "non-empty string",
            SlotType::Number => "number",
            SlotType::Integer => "integer",
            _ => "boolean",
        };
        Err(format!("must be a {kind}, not {value}"))
    }
}

/// A callback window: `start` before `end`, both RFC 3339 with an offset,
/// and not over by `now` (a campaign schedules from it).
pub fn check_window(value: &Value, now: std::time::SystemTime) -> Result<(), String> {
    let time = |key: &str| -> Result<chrono::DateTime<chrono::FixedOffset>, String> {
        let text = value
            .get(key)
            .and_then(Value::as_str)
            .ok_or_else(|| format!("needs \"{key}\": an RFC 3339 time with its offset"))?;
        chrono::DateTime::parse_from_rfc3339(text).map_err(|e| {
            format!("{key} {text:?} is not an RFC 3339 time with an offset (e.g. 2026-12-01T10:00:00+05:30): {e}")
        })
    };
    let Some(obj) = value.as_object() else {
        return Err(format!("must be {{\"start\": …, \"end\": …}}, not {value}"));
    };
    if let Some(k) = obj.keys().find(|k| *k != "start" && *k != "end") {
        return Err(format!("has no field {k:?}; only start and end"));
    }
    let (start, end) = (time("start")?, time("end")?);
    if start >= end {
        return Err("start must be before end".into());
    }
    let now_ms = now
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    if end.timestamp_millis() <= now_ms {
        return Err("the window is already over; ask for a time in the future".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Map, Value, json};

    fn settings() -> OutcomeSettings {
        let slot = |kind, required| Slot {
            kind,
            values: Vec::new(),
            required,
            description: String::new(),
            sensitive: false,
        };
        OutcomeSettings {
            slots: [
                ("amount".to_owned(), slot(SlotType::Number, true)),
                ("timeline".to_owned(), slot(SlotType::String, true)),
                ("callback".to_owned(), slot(SlotType::CallbackWindow, false)),
            ]
            .into(),
            dispositions: vec!["not_interested".into(), "callback".into()],
            default_disposition: "incomplete".into(),
        }
    }

    fn slots(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn dispositions_follow_the_documented_order() {
        let s = settings();
        let all = slots(json!({"amount": 5, "timeline": "soon"}));
        assert_eq!(s.disposition(&all, Some("not_interested")), QUALIFIED);
        let some = slots(json!({"amount": 5}));
        assert_eq!(
            s.disposition(&some, Some("not_interested")),
            "not_interested"
        );
        assert_eq!(s.disposition(&some, Some("made_up")), "incomplete");
        let window = slots(json!({"callback": {"start": "x", "end": "y"}}));
        assert_eq!(s.disposition(&window, None), CALLBACK);
        assert_eq!(s.disposition(&Map::new(), None), "incomplete");
    }

    #[test]
    fn without_required_slots_nothing_is_qualified() {
        let mut s = settings();
        for slot in s.slots.values_mut() {
            slot.required = false;
        }
        let all = slots(json!({"amount": 5, "timeline": "soon"}));
        assert_eq!(s.disposition(&all, None), "incomplete");
    }

    #[test]
    fn bad_names_values_and_dispositions_are_reported() {
        let mut s = settings();
        s.slots.insert(
            "Bad Name".into(),
            Slot {
                kind: SlotType::Enum,
                values: vec!["a".into(), "a".into()],
                required: false,
                description: String::new(),
                sensitive: false,
            },
        );
        s.dispositions.push("qualified".into());
        s.dispositions.push("callback".into());
        s.default_disposition = "Nope".into();
        let mut check = Checks::default();
        s.validate(&mut check);
        let fields: Vec<&str> = check.0.iter().map(|e| e.field.as_str()).collect();
        assert!(fields.contains(&"outcome.slots.Bad Name"), "{fields:?}");
        assert!(
            fields.contains(&"outcome.slots.Bad Name.values"),
            "{fields:?}"
        );
        assert_eq!(
            fields
                .iter()
                .filter(|f| **f == "outcome.dispositions")
                .count(),
            2,
            "{fields:?}"
        );
        assert!(
            fields.contains(&"outcome.default_disposition"),
            "{fields:?}"
        );
    }
}
