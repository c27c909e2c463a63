//! Backchannels: "ok", "yeah", "mm-hmm", "haan", "achha", "ji"… — the
//! caller saying they are listening, not taking the turn. An utterance is
//! one when every word belongs to one (English, Hindi, Hinglish and the
//! policy's own).

use std::sync::{Arc, LazyLock};

use super::phrases::Phrases;

const BUILT_IN: &[&str] = &[
    // English.
    "ok",
    "okay",
    "yeah",
    "yes",
    "yep",
    "right",
    "sure",
    "alright",
    "all right",
    "uh-huh",
    "uh huh",
    "mm-hmm",
    "mm hmm",
    "mhm",
    "mm",
    "hmm",
    "i see",
    "got it",
    "go on",
    // Hindi.
    "हाँ",
    "हां",
    "हम्म",
    "अच्छा",
    "जी",
    "हाँ जी",
    "जी हाँ",
    "ठीक है",
    // Hinglish.
    "haan",
    "han",
    "haan ji",
    "ji",
    "achha",
    "acha",
    "accha",
    "theek hai",
    "thik hai",
];

/// The built-in list, made once for every call that adds nothing to it.
static SHARED: LazyLock<Arc<Phrases<()>>> =
    LazyLock::new(|| Arc::new(Phrases::new(BUILT_IN.iter().map(|p| (*p, ())))));

#[derive(Debug, Clone)]
pub struct Backchannels(Arc<Phrases<()>>);

impl Backchannels {
    pub fn new<'a>(extra: impl Iterator<Item = &'a str>) -> Self {
        let mut extra = extra.peekable();
        if extra.peek().is_none() {
            return Self(Arc::clone(&SHARED));
        }
        let all = BUILT_IN.iter().copied().chain(extra).map(|p| (p, ()));
        Self(Arc::new(Phrases::new(all)))
    }

    /// Whether `text` only says "I'm listening".
    pub fn is(&self, text: &str) -> bool {
        self.0.covers(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_listening_words_are_backchannels() {
        let b = Backchannels::new(["right on"].into_iter());
        for yes in [
            "Okay.",
            "mm-hmm",
            "Yeah, yeah",
            "हाँ जी",
            "achha, ji",
            "right on",
        ] {
            assert!(b.is(yes), "{yes}");
        }
        for no in [
            "",
            "okay but what about fees?",
            "wait",
            "नहीं",
            "haan, kitna?",
        ] {
            assert!(!b.is(no), "{no}");
        }
    }
}
