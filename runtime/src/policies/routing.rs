//! `[routing]`: which policy answers a called number.
//!
//! Keys are E.164 numbers or prefixes (`+` and 1 to 15 digits); the longest
//! matching prefix wins, so `+9180` beats `+91`. A number nothing matches
//! goes to `default`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Routing {
    /// The policy for numbers no route matches. Unset: the policy named
    /// `default` in the folder, else the one built into the binary.
    pub default: Option<String>,
    /// Called number or prefix → policy name.
    pub numbers: BTreeMap<String, String>,
}

impl Routing {
    /// Every problem with the table, as `routing.numbers."KEY": reason`.
    pub fn validate(&self) -> Vec<String> {
        let mut errors = Vec::new();
        for (key, policy) in &self.numbers {
            if !is_prefix(key) {
                errors.push(format!(
                    "routing.numbers.{key:?}: must be an E.164 number or prefix: '+' and 1 to 15 digits"
                ));
            }
            if policy.trim().is_empty() {
                errors.push(format!("routing.numbers.{key:?}: the policy name is empty"));
            }
        }
        if self.default.as_deref().is_some_and(|d| d.trim().is_empty()) {
            errors.push("routing.default: the policy name is empty".into());
        }
        errors
    }

    /// The policy routed to `called` (any format Twilio sends: E.164, or a
    /// SIP URI that matches nothing), if a route matches.
    pub fn route(&self, called: &str) -> Option<&str> {
        if self.numbers.is_empty() {
            return None;
        }
        let number = normalise(called)?;
        // Longest prefix first: walk the number's prefixes from the whole
        // number down (at most 16 map lookups, no allocation per step).
        (2..=number.len())
            .rev()
            .filter_map(|n| number.get(..n))
            .find_map(|prefix| self.numbers.get(prefix))
            .map(String::as_str)
    }
}

/// `+` and 1 to 15 ASCII digits.
fn is_prefix(key: &str) -> bool {
    key.strip_prefix('+')
        .is_some_and(|d| (1..=15).contains(&d.len()) && d.bytes().all(|b| b.is_ascii_digit()))
}

/// The called number in E.164 (`+14155550100`), whatever its spacing and
/// punctuation; `None` for what is not a phone number (a SIP URI, a
/// client). Twilio sends E.164 already; this keeps a hand-typed route
/// working. (Not `phonenumber`: its first parse loads its whole metadata
/// database, seconds in a debug build, on the webhook's path.)
fn normalise(called: &str) -> Option<String> {
    let called = called.trim();
    let rest = called.strip_prefix('+')?;
    let mut e164 = String::with_capacity(16);
    e164.push('+');
    for c in rest.chars() {
        match c {
            '0'..='9' => e164.push(c),
            ' ' | '-' | '(' | ')' | '.' => {}
            _ => return None,
        }
    }
    is_prefix(&e164).then_some(e164)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routing(pairs: &[(&str, &str)]) -> Routing {
        Routing {
            default: None,
            numbers: pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        }
    }

    #[test]
    fn the_longest_matching_prefix_wins() {
        let r = routing(&[
            ("+91", "india"),
            ("+9180", "bangalore"),
            ("+14155550100", "support"),
        ]);
        assert_eq!(r.route("+918012345678"), Some("bangalore"));
        assert_eq!(r.route("+912212345678"), Some("india"));
        assert_eq!(r.route("+14155550100"), Some("support"));
        assert_eq!(r.route("+14155550101"), None);
    }

    #[test]
    fn numbers_are_matched_whatever_their_punctuation() {
        let r = routing(&[("+1415555", "support")]);
        assert_eq!(r.route("+1 (415) 555-0100"), Some("support"));
        assert_eq!(r.route(" +14155550100 "), Some("support"));
    }

    #[test]
    fn what_is_not_a_number_matches_no_route() {
        let r = routing(&[("+1", "us")]);
        for called in [
            "",
            "sip:agent@example.com",
            "client:alice",
            "+",
            "१२३",
            "+1४१५",
        ] {
            assert_eq!(r.route(called), None, "{called:?}");
        }
    }

    #[test]
    fn bad_keys_and_empty_names_are_errors() {
        let r = Routing {
            default: Some(" ".into()),
            numbers: [
                ("91".to_owned(), "india".to_owned()),
                ("+1234567890123456".to_owned(), "long".to_owned()),
                ("+1".to_owned(), "".to_owned()),
                ("+44".to_owned(), "uk".to_owned()),
            ]
            .into(),
        };
        let errors = r.validate();
        assert_eq!(errors.len(), 4, "{errors:?}");
        assert!(errors.iter().any(|e| e.contains("\"91\"")), "{errors:?}");
        assert!(errors.iter().any(|e| e.starts_with("routing.default")));
    }
}
