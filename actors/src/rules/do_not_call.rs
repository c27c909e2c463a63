//! "Don't call me again": whole phrases (see [`super::phrases`]) in
//! English, Hindi (Devanagari) and Hinglish, plus a policy's own. A match
//! ends the call with the rule's goodbye; the runtime puts the number on
//! the do-not-call list.

use super::phrases::Phrases;

/// English.
const ENGLISH: &[&str] = &[
    "don't call me",
    "do not call me",
    "dont call me",
    "stop calling me",
    "stop calling",
    "never call me",
    "don't call again",
    "do not call again",
    "take me off",
    "remove my number",
    "remove me",
    "unsubscribe",
];

/// Hindi, in Devanagari.
const HINDI: &[&str] = &[
    "कॉल मत करो",
    "कॉल मत करना",
    "कॉल मत कीजिए",
    "फ़ोन मत करो",
    "फोन मत करो",
    "फ़ोन मत करना",
    "फोन मत करना",
    "दोबारा कॉल मत",
    "दोबारा फोन मत",
];

/// Hinglish: Hindi in Latin letters.
const HINGLISH: &[&str] = &[
    "call mat karo",
    "call mat karna",
    "call mat kijiye",
    "phone mat karo",
    "phone mat karna",
    "dobara call mat",
    "dubara call mat",
    "phir se call mat",
];

/// The built-in phrases, built once: every call has the rule, and a table
/// per call would cost each one a few kilobytes.
static BUILT_IN: std::sync::LazyLock<Phrases<()>> = std::sync::LazyLock::new(|| {
    Phrases::new(
        ENGLISH
            .iter()
            .chain(HINDI)
            .chain(HINGLISH)
            .map(|p| (*p, ())),
    )
});

/// One call's rule: the built-in phrases and the policy's own (usually
/// none: an empty table allocates nothing).
#[derive(Debug, Clone)]
pub struct DoNotCall {
    extra: Phrases<()>,
}

impl DoNotCall {
    pub fn new<'a>(extra: impl IntoIterator<Item = &'a str>) -> Self {
        Self {
            extra: Phrases::new(extra.into_iter().map(|p| (p, ()))),
        }
    }

    /// Whether `text` says the caller does not want to be called again.
    pub fn asked(&self, text: &str) -> bool {
        !BUILT_IN.find(text).is_empty()
            || (!self.extra.is_empty() && !self.extra.find(text).is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_is_heard_in_english_hindi_and_hinglish() {
        let r = DoNotCall::new(["quit bugging me"]);
        for yes in [
            "Please don't call me again.",
            "DO NOT CALL ME, ok?",
            "Just stop calling.",
            "Can you remove my number from your list",
            "मुझे दोबारा कॉल मत करना",
            "please mujhe call mat karo",
            "Quit bugging me!",
        ] {
            assert!(r.asked(yes), "{yes}");
        }
        for no in [
            "Call me tomorrow at ten.",
            "Do call me back please",
            "I don't know, call my wife",
            "remembering the offer",
            "",
        ] {
            assert!(!r.asked(no), "{no}");
        }
    }
}
