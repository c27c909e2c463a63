//! `[rules.menu]`: a keypad menu offered once, right after the greeting
//! (and after the consent question, if any): each key an action, a timeout
//! and a default. Speaking instead of pressing closes the menu; the
//! conversation goes on.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Checks, PolicyFile};

/// What a key does.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
pub enum MenuChoice {
    /// Say `line`; the conversation goes on.
    Say { line: String },
    /// Raise a transfer request to `target` (the escalation rule's line).
    Transfer { target: String },
    /// Say `line` and end the call.
    End { line: String },
    /// Go on in another of the policy's languages.
    Language { code: String },
    /// Fill an `[outcome]` slot, then say `line` (empty: nothing).
    Slot {
        slot: String,
        value: serde_json::Value,
        #[serde(default)]
        line: String,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MenuSettings {
    /// Said right after the greeting; empty: no menu.
    pub prompt: String,
    /// Seconds after the prompt has played before the default is taken.
    pub timeout_secs: u32,
    /// The key taken when none is pressed in time; empty: none (the menu
    /// closes and the conversation goes on).
    pub default: String,
    /// Key (`0`-`9`, `*`, `#`) → action.
    pub keys: BTreeMap<String, MenuChoice>,
}

impl Default for MenuSettings {
    fn default() -> Self {
        Self {
            prompt: String::new(),
            timeout_secs: 6,
            default: String::new(),
            keys: BTreeMap::new(),
        }
    }
}

impl MenuSettings {
    pub fn is_on(&self) -> bool {
        !self.prompt.trim().is_empty()
    }

    /// The action of `key`, if the menu has one.
    pub fn choice(&self, key: char) -> Option<&MenuChoice> {
        let mut buf = [0u8; 4];
        self.keys.get(&*key.encode_utf8(&mut buf))
    }
}

fn is_key(k: &str) -> bool {
    let mut c = k.chars();
    matches!((c.next(), c.next()), (Some('0'..='9' | '*' | '#'), None))
}

pub(super) fn validate(p: &PolicyFile, check: &mut Checks) {
    let m = &p.rules.menu;
    if !m.is_on() {
        check.that(
            m.keys.is_empty(),
            "rules.menu.prompt",
            "keys need a prompt that says them".into(),
        );
        return;
    }
    check.that(
        !m.keys.is_empty(),
        "rules.menu.keys",
        "a menu needs at least one key".into(),
    );
    check.range("rules.menu.timeout_secs", m.timeout_secs, 2, 60);
    check.that(
        m.default.is_empty() || m.keys.contains_key(&m.default),
        "rules.menu.default",
        format!("{:?} is not one of the menu's keys", m.default),
    );
    for (key, choice) in &m.keys {
        let field = format!("rules.menu.keys.{key}");
        check.that(
            is_key(key),
            &field,
            format!("{key:?} is not a key (0-9, *, #)"),
        );
        match choice {
            MenuChoice::Say { line } | MenuChoice::End { line } => check.that(
                !line.trim().is_empty(),
                &format!("{field}.line"),
                "must not be empty".into(),
            ),
            MenuChoice::Transfer { target } => check.that(
                !target.trim().is_empty(),
                &format!("{field}.target"),
                "must not be empty".into(),
            ),
            MenuChoice::Language { code } => check.that(
                p.languages.contains_key(code),
                &format!("{field}.code"),
                format!(
                    "{code:?} is not one of the [languages] sections: {:?}",
                    p.languages.keys().collect::<Vec<_>>()
                ),
            ),
            MenuChoice::Slot { slot, value, .. } => match p.outcome.slots.get(slot) {
                None => check.that(
                    false,
                    &format!("{field}.slot"),
                    format!("{slot:?} is not an [outcome] slot"),
                ),
                Some(s) => {
                    if let Err(reason) = s.check(value) {
                        check.that(false, &format!("{field}.value"), reason);
                    }
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::policy::{PolicyError, PolicyFile};

    #[test]
    fn a_bad_menu_is_reported_key_by_key() {
        let text = r#"
[rules.menu]
prompt = "Press 1 or 2."
default = "5"
[rules.menu.keys.1]
action = "language"
code = "hi"
[rules.menu.keys.x]
action = "say"
line = "Hi"
[rules.menu.keys.2]
action = "slot"
slot = "plan"
value = "gold"
[outcome.slots.plan]
type = "enum"
values = ["basic", "pro"]
"#;
        let PolicyError::Invalid { errors, .. } = PolicyFile::parse(text, "t", "t").unwrap_err()
        else {
            panic!("expected Invalid");
        };
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "rules.menu.default",
                "rules.menu.keys.1.code",
                "rules.menu.keys.2.value",
                "rules.menu.keys.x"
            ],
            "{errors:?}"
        );
        let unknown = "[rules.menu]\nprompt = \"p\"\n[rules.menu.keys.1]\naction = \"dance\"\n";
        let err = PolicyFile::parse(unknown, "t", "t")
            .unwrap_err()
            .to_string();
        assert!(err.contains("dance"), "{err}");
    }
}
