//! Tools the LLM may call, built from the policy: `end_call`,
//! `transfer_call` (to the policy's targets) and `record_outcome` (the
//! policy's `[outcome]` slots, and a disposition).
//!
//! Arguments come from a model and are never trusted: they are parsed and
//! checked against the policy, and anything wrong goes back to the model as
//! a tool result saying what was wrong, so it can correct itself. Nothing a
//! model sends can panic the call.

use serde_json::{Map, Value, json};

use crate::policy::outcome::DISPOSITION_ARG;
use crate::policy::{OutcomeSettings, PolicyFile, Slot, SlotType};
use crate::providers::{ToolCall, ToolSpec};

/// What a valid tool call asks the call to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    None,
    /// Hang up once the bot's current words have played.
    EndCall {
        reason: Option<String>,
    },
    /// Transfer to a policy target (not available yet: reported to the model).
    Transfer {
        target: String,
    },
    /// A sensitive slot is about to be asked for: the recording is silent
    /// until a sensitive slot is recorded.
    Sensitive {
        slot: String,
    },
    /// Store these outcome slots (merged with earlier ones) and, when
    /// given, the disposition the bot chose.
    Outcome {
        slots: Map<String, Value>,
        disposition: Option<String>,
    },
}

/// The answer to one tool call.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// The `tool` message the model reads next.
    pub result: String,
    pub effect: Effect,
    /// The `outcome` label of `hark_tool_calls_total`.
    pub label: &'static str,
}

impl Outcome {
    fn error(message: String) -> Self {
        Self {
            result: json!({ "error": message }).to_string(),
            effect: Effect::None,
            label: "invalid",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Tools {
    end_call: bool,
    transfer_targets: Vec<String>,
    outcome: OutcomeSettings,
}

impl Tools {
    pub fn from_policy(policy: &PolicyFile) -> Self {
        let t = &policy.tools;
        Self {
            end_call: t.end_call,
            transfer_targets: t.transfer_targets.clone(),
            outcome: policy.outcome.clone(),
        }
    }

    /// The tools offered to the model.
    pub fn specs(&self) -> Vec<ToolSpec> {
        let mut specs = Vec::new();
        if self.end_call {
            specs.push(ToolSpec {
                name: "end_call",
                description: "Hang up after your last words have been heard. Say goodbye first.".into(),
                parameters: json!({
                    "type": "object",
                    "properties": { "reason": { "type": "string", "description": "Why the call ends." } },
                    "additionalProperties": false,
                }),
            });
        }
        if !self.transfer_targets.is_empty() {
            specs.push(ToolSpec {
                name: "transfer_call",
                description: "Transfer the caller to a human team.".into(),
                parameters: json!({
                    "type": "object",
                    "properties": {
                        "target": { "type": "string", "enum": self.transfer_targets },
                        "reason": { "type": "string" },
                    },
                    "required": ["target"],
                    "additionalProperties": false,
                }),
            });
        }
        if self.outcome.is_used() {
            let mut properties: Map<String, Value> = self
                .outcome
                .slots
                .iter()
                .map(|(name, slot)| (name.clone(), slot_schema(slot)))
                .collect();
            if !self.outcome.dispositions.is_empty() {
                properties.insert(
                    DISPOSITION_ARG.into(),
                    json!({
                        "type": "string",
                        "enum": self.outcome.dispositions,
                        "description": "How the call ends, when it does not end qualified.",
                    }),
                );
            }
            specs.push(ToolSpec {
                name: "record_outcome",
                description:
                    "Record what was learned in this call. Call it as soon as you know a value."
                        .into(),
                parameters: json!({
                    "type": "object",
                    "properties": properties,
                    "additionalProperties": false,
                }),
            });
        }
        let sensitive = self.outcome.sensitive();
        if !sensitive.is_empty() {
            specs.push(ToolSpec {
                name: "sensitive_input",
                description: "Call this just before you ask the caller for a sensitive value (card number, PIN): the recording stays silent until you record it with record_outcome.".into(),
                parameters: json!({
                    "type": "object",
                    "properties": { "slot": { "type": "string", "enum": sensitive } },
                    "required": ["slot"],
                    "additionalProperties": false,
                }),
            });
        }
        specs
    }

    /// Checks a call's arguments and says what it does.
    pub fn run(&self, call: &ToolCall) -> Outcome {
        let args = match parse_args(&call.arguments) {
            Ok(a) => a,
            Err(e) => return Outcome::error(e),
        };
        match call.name.as_str() {
            "end_call" if self.end_call => self.end_call(args),
            "transfer_call" if !self.transfer_targets.is_empty() => self.transfer(args),
            "record_outcome" if self.outcome.is_used() => self.record(args),
            "sensitive_input" => self.sensitive_input(args),
            other => {
                let offered: Vec<&str> = self.specs().iter().map(|s| s.name).collect();
                Outcome::error(format!("unknown tool {other:?}; available: {offered:?}"))
            }
        }
    }

    fn sensitive_input(&self, args: Map<String, Value>) -> Outcome {
        let sensitive = self.outcome.sensitive();
        match (args.get("slot"), args.len()) {
            (Some(Value::String(slot)), 1) if sensitive.contains(slot) => Outcome {
                result: json!({ "ok": true, "note": "the recording is silent until you record this slot" })
                    .to_string(),
                effect: Effect::Sensitive { slot: slot.clone() },
                label: "ok",
            },
            _ if sensitive.is_empty() => {
                Outcome::error("unknown tool \"sensitive_input\": no slot is sensitive".into())
            }
            _ => Outcome::error(format!(
                "sensitive_input takes one argument, \"slot\": one of {sensitive:?}"
            )),
        }
    }

    fn end_call(&self, args: Map<String, Value>) -> Outcome {
        if let Some(k) = args.keys().find(|k| *k != "reason") {
            return Outcome::error(format!("end_call has no argument {k:?}; only \"reason\""));
        }
        let reason = match args.get("reason") {
            None => None,
            Some(Value::String(r)) => Some(r.clone()),
            Some(other) => {
                return Outcome::error(format!("\"reason\" must be a string, not {other}"));
            }
        };
        Outcome {
            result: json!({ "ok": true, "note": "the call ends after your last words" })
                .to_string(),
            effect: Effect::EndCall { reason },
            label: "ok",
        }
    }

    fn transfer(&self, args: Map<String, Value>) -> Outcome {
        if let Some(k) = args.keys().find(|k| *k != "target" && *k != "reason") {
            return Outcome::error(format!("transfer_call has no argument {k:?}"));
        }
        let target = match args.get("target") {
            Some(Value::String(t)) if self.transfer_targets.contains(t) => t.clone(),
            Some(Value::String(t)) => {
                return Outcome::error(format!(
                    "unknown target {t:?}; targets are {:?}",
                    self.transfer_targets
                ));
            }
            Some(other) => {
                return Outcome::error(format!("\"target\" must be a string, not {other}"));
            }
            None => return Outcome::error("\"target\" is required".into()),
        };
        // Valid, but this node cannot transfer calls yet: say so, so the model
        // tells the caller instead of promising a transfer that won't happen.
        Outcome {
            result: json!({
                "ok": false,
                "error": format!("transfers to {target:?} are not available on this line; offer to take a message instead"),
            })
            .to_string(),
            effect: Effect::Transfer { target },
            label: "unavailable",
        }
    }

    fn record(&self, mut args: Map<String, Value>) -> Outcome {
        let names = || {
            let mut names: Vec<&str> = self.outcome.slots.keys().map(String::as_str).collect();
            if !self.outcome.dispositions.is_empty() {
                names.push(DISPOSITION_ARG);
            }
            names
        };
        if args.is_empty() {
            return Outcome::error(format!(
                "record_outcome needs at least one slot: {:?}",
                names()
            ));
        }
        let mut problems = Vec::new();
        let disposition = match args.remove(DISPOSITION_ARG) {
            None => None,
            Some(Value::String(d)) if self.outcome.dispositions.contains(&d) => Some(d),
            Some(other) => {
                problems.push(format!(
                    "disposition must be one of {:?}, not {other}",
                    self.outcome.dispositions
                ));
                None
            }
        };
        for (name, value) in &args {
            match self.outcome.slots.get(name) {
                None => problems.push(format!("unknown slot {name:?}")),
                Some(slot) => {
                    if let Err(e) = slot.check(value) {
                        problems.push(format!("slot {name:?}: {e}"));
                    }
                }
            }
        }
        if !problems.is_empty() {
            return Outcome::error(format!("{}; slots are {:?}", problems.join("; "), names()));
        }
        let mut recorded: Vec<&str> = args.keys().map(String::as_str).collect();
        if disposition.is_some() {
            recorded.push(DISPOSITION_ARG);
        }
        Outcome {
            result: json!({ "ok": true, "recorded": recorded }).to_string(),
            effect: Effect::Outcome {
                slots: args,
                disposition,
            },
            label: "ok",
        }
    }
}

/// A slot's JSON schema, as the model sees it.
fn slot_schema(slot: &Slot) -> Value {
    let mut schema = match slot.kind {
        SlotType::String => json!({ "type": "string" }),
        SlotType::Number => json!({ "type": "number" }),
        SlotType::Integer => json!({ "type": "integer" }),
        SlotType::Boolean => json!({ "type": "boolean" }),
        SlotType::Enum => json!({ "type": "string", "enum": slot.values }),
        SlotType::CallbackWindow => json!({
            "type": "object",
            "properties": {
                "start": { "type": "string", "format": "date-time" },
                "end": { "type": "string", "format": "date-time" },
            },
            "required": ["start", "end"],
            "additionalProperties": false,
            "description": "When to call back: RFC 3339 times with their UTC offset, e.g. 2026-12-01T10:00:00+05:30.",
        }),
    };
    if !slot.description.is_empty()
        && let Some(obj) = schema.as_object_mut()
    {
        let text = match obj.get("description").and_then(Value::as_str) {
            Some(format) => format!("{} {format}", slot.description),
            None => slot.description.clone(),
        };
        obj.insert("description".into(), text.into());
    }
    schema
}

fn parse_args(raw: &str) -> Result<Map<String, Value>, String> {
    if raw.trim().is_empty() {
        return Ok(Map::new());
    }
    match serde_json::from_str::<Value>(raw) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => Err(format!("arguments must be a JSON object, not {other}")),
        Err(e) => Err(format!(
            "arguments are not valid JSON ({e}): {}",
            raw.chars().take(200).collect::<String>()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(kind: SlotType, values: &[&str]) -> Slot {
        Slot {
            kind,
            values: values.iter().map(|v| (*v).to_owned()).collect(),
            required: true,
            description: String::new(),
            sensitive: false,
        }
    }

    fn tools() -> Tools {
        let mut p = PolicyFile::default();
        p.tools.transfer_targets = vec!["sales".into()];
        let slots = &mut p.outcome.slots;
        slots.insert("interested".into(), slot(SlotType::Boolean, &[]));
        slots.insert("plan".into(), slot(SlotType::Enum, &["basic", "pro"]));
        slots.insert("callback".into(), slot(SlotType::CallbackWindow, &[]));
        p.outcome.dispositions = vec!["not_interested".into()];
        Tools::from_policy(&p)
    }

    fn call(name: &str, args: &str) -> ToolCall {
        ToolCall {
            id: "c1".into(),
            name: name.into(),
            arguments: args.into(),
        }
    }

    #[test]
    fn offers_only_configured_tools() {
        let names: Vec<_> = tools().specs().iter().map(|s| s.name).collect();
        assert_eq!(names, ["end_call", "transfer_call", "record_outcome"]);
        let plain: Vec<_> = Tools::from_policy(&PolicyFile::default())
            .specs()
            .iter()
            .map(|s| s.name)
            .collect();
        assert_eq!(plain, ["end_call"]);
    }

    #[test]
    fn valid_calls_have_effects() {
        let t = tools();
        assert_eq!(
            t.run(&call("end_call", "")).effect,
            Effect::EndCall { reason: None }
        );
        let o = t.run(&call(
            "record_outcome",
            r#"{"interested":true,"plan":"pro"}"#,
        ));
        assert_eq!(o.label, "ok");
        assert!(
            matches!(&o.effect, Effect::Outcome { slots, disposition: None } if slots.len() == 2)
        );
        let d = t.run(&call(
            "record_outcome",
            r#"{"disposition":"not_interested","callback":{"start":"2099-01-02T10:00:00+05:30","end":"2099-01-02T12:00:00+05:30"}}"#,
        ));
        assert_eq!(d.label, "ok", "{}", d.result);
        assert!(
            matches!(&d.effect, Effect::Outcome { slots, disposition: Some(x) } if x == "not_interested" && slots.contains_key("callback"))
        );
        let tr = t.run(&call("transfer_call", r#"{"target":"sales"}"#));
        assert_eq!(
            tr.effect,
            Effect::Transfer {
                target: "sales".into()
            }
        );
        assert!(tr.result.contains("not available"));
    }

    #[test]
    fn bad_arguments_become_errors_for_the_model() {
        let t = tools();
        for (name, args, expect) in [
            ("record_outcome", r#"{"interested": tru"#, "not valid JSON"),
            ("record_outcome", "[1,2]", "JSON object"),
            (
                "record_outcome",
                r#"{"interested":"yes"}"#,
                "must be a boolean",
            ),
            ("record_outcome", r#"{"plan":"gold"}"#, "one of"),
            ("record_outcome", r#"{"budget":5}"#, "unknown slot"),
            ("record_outcome", "{}", "at least one slot"),
            (
                "record_outcome",
                r#"{"disposition":"qualified"}"#,
                "disposition must be one of",
            ),
            ("record_outcome", r#"{"callback":"tomorrow"}"#, "must be {"),
            (
                "record_outcome",
                r#"{"callback":{"start":"2099-01-02 10:00","end":"2099-01-02T12:00:00Z"}}"#,
                "not an RFC 3339 time",
            ),
            (
                "record_outcome",
                r#"{"callback":{"start":"2099-01-02T10:00:00","end":"2099-01-02T12:00:00"}}"#,
                "not an RFC 3339 time",
            ),
            (
                "record_outcome",
                r#"{"callback":{"start":"2099-01-02T12:00:00Z","end":"2099-01-02T10:00:00Z"}}"#,
                "before end",
            ),
            (
                "record_outcome",
                r#"{"callback":{"start":"2001-01-02T10:00:00Z","end":"2001-01-02T12:00:00Z"}}"#,
                "already over",
            ),
            ("transfer_call", r#"{"target":"mars"}"#, "unknown target"),
            ("transfer_call", "{}", "required"),
            ("end_call", r#"{"reason":5}"#, "must be a string"),
            ("launch_rockets", "{}", "unknown tool"),
        ] {
            let o = t.run(&call(name, args));
            assert_eq!(o.effect, Effect::None, "{name} {args}");
            assert_eq!(o.label, "invalid");
            let v: Value = serde_json::from_str(&o.result).unwrap();
            assert!(
                v["error"].as_str().unwrap().contains(expect),
                "{name} {args}: {}",
                o.result
            );
        }
    }
}
