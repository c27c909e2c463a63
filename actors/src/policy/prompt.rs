//! `[prompt]`: what fills the system prompt's named variables.
//!
//! `system_prompt` is a template: `{persona}`, `{goals}` (one `- goal` line
//! each) and `{caller.NAME}` for each name in `caller_fields` (what is known
//! about the caller — for outbound calls, the lead's fields; a field with no
//! value for a call reads `unknown`). `{{` and `}}` are literal braces. Any
//! other variable, or a `{` never closed, is an error at check time.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::Checks;

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PromptSettings {
    /// Who the agent is (`{persona}`).
    pub persona: String,
    /// What the agent is trying to achieve (`{goals}`), in order.
    pub goals: Vec<String>,
    /// Fields known about the caller that the prompt may use as
    /// `{caller.NAME}`.
    pub caller_fields: Vec<String>,
}

/// A piece of a template.
#[derive(Debug, PartialEq)]
enum Piece<'a> {
    Text(&'a str),
    Var(&'a str),
}

/// Splits a template into text and variables; `Err` names what is wrong.
fn pieces(template: &str) -> Result<Vec<Piece<'_>>, String> {
    let mut out = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find(['{', '}']) {
        // Braces are ASCII, so every index here is a character boundary.
        let (text, tail) = rest.split_at(open);
        if !text.is_empty() {
            out.push(Piece::Text(text));
        }
        if let Some(after) = tail.strip_prefix("{{") {
            out.push(Piece::Text("{"));
            rest = after;
        } else if let Some(after) = tail.strip_prefix("}}") {
            out.push(Piece::Text("}"));
            rest = after;
        } else if let Some(after) = tail.strip_prefix('}') {
            out.push(Piece::Text("}"));
            rest = after;
        } else {
            let body = tail.strip_prefix('{').unwrap_or(tail);
            let Some((var, after)) = body.split_once('}') else {
                return Err("a `{` is never closed (write `{{` for a brace)".into());
            };
            out.push(Piece::Var(var.trim()));
            rest = after;
        }
    }
    if !rest.is_empty() {
        out.push(Piece::Text(rest));
    }
    Ok(out)
}

impl PromptSettings {
    fn known(&self, var: &str) -> bool {
        match var.strip_prefix("caller.") {
            Some(field) => self.caller_fields.iter().any(|f| f == field),
            None => var == "persona" || var == "goals",
        }
    }

    /// Checks `template` (the policy's `system_prompt`) against what this
    /// section provides.
    pub(super) fn validate(&self, template: &str, check: &mut Checks) {
        self.validate_template("system_prompt", template, check);
        for (i, field) in self.caller_fields.iter().enumerate() {
            check.that(
                !field.is_empty() && field.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                "prompt.caller_fields",
                format!("entry {i} ({field:?}): letters, digits and '_' only"),
            );
        }
    }

    /// Checks another template (at `field`) that this section fills.
    pub(super) fn validate_template(&self, field: &str, template: &str, check: &mut Checks) {
        match pieces(template) {
            Err(reason) => check.that(false, field, reason),
            Ok(pieces) => {
                for piece in pieces {
                    if let Piece::Var(var) = piece {
                        check.that(
                            self.known(var),
                            field,
                            format!(
                                "unknown variable {{{var}}}: use {{persona}}, {{goals}} or {{caller.NAME}} with NAME in prompt.caller_fields ({:?})",
                                self.caller_fields
                            ),
                        );
                    }
                }
            }
        }
    }

    /// The system prompt for one call: `template` with its variables filled.
    /// A template that does not check renders as written.
    pub fn render(&self, template: &str, caller: &BTreeMap<String, String>) -> String {
        let Ok(pieces) = pieces(template) else {
            return template.to_owned();
        };
        let mut out = String::with_capacity(template.len() + self.persona.len());
        for piece in pieces {
            match piece {
                Piece::Text(t) => out.push_str(t),
                Piece::Var("persona") => out.push_str(&self.persona),
                Piece::Var("goals") => {
                    let lines: Vec<String> = self.goals.iter().map(|g| format!("- {g}")).collect();
                    out.push_str(&lines.join("\n"));
                }
                Piece::Var(var) => {
                    let field = var.strip_prefix("caller.").unwrap_or(var);
                    out.push_str(caller.get(field).map_or("unknown", String::as_str));
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prompt() -> PromptSettings {
        PromptSettings {
            persona: "प्रिया, a polite agent".into(),
            goals: vec!["learn the plan".into(), "book a callback".into()],
            caller_fields: vec!["name".into(), "city".into()],
        }
    }

    #[test]
    fn variables_are_filled_and_braces_escaped() {
        let caller = BTreeMap::from([("name".to_owned(), "Asha".to_owned())]);
        let out = prompt().render(
            "You are {persona}. Goals:\n{goals}\nThe caller is {caller.name} from {caller.city}. JSON looks like {{\"a\": 1}}.",
            &caller,
        );
        assert_eq!(
            out,
            "You are प्रिया, a polite agent. Goals:\n- learn the plan\n- book a callback\nThe caller is Asha from unknown. JSON looks like {\"a\": 1}."
        );
    }

    #[test]
    fn unknown_variables_and_unclosed_braces_are_errors() {
        let mut check = Checks::default();
        prompt().validate("Hi {persona} {caller.email} {mood}", &mut check);
        let reasons: Vec<_> = check.0.iter().map(|e| e.reason.as_str()).collect();
        assert_eq!(reasons.len(), 2, "{reasons:?}");
        assert!(reasons[0].contains("{caller.email}"), "{reasons:?}");
        assert!(reasons[1].contains("{mood}"), "{reasons:?}");
        let mut check = Checks::default();
        prompt().validate("नमस्ते {persona", &mut check);
        assert!(check.0[0].reason.contains("never closed"), "{:?}", check.0);
        let mut check = Checks::default();
        prompt().validate("Plain text, no variables; a } alone is text.", &mut check);
        assert!(check.0.is_empty(), "{:?}", check.0);
    }
}
