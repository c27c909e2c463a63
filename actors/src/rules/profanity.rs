//! Profanity from the caller: whole words after normalisation (Unicode NFC,
//! lower case, punctuation trimmed), never substrings — "Scunthorpe" and
//! "assessment" are fine, and so is Hindi "साला" (a brother-in-law).
//!
//! Built-in lists for English, Hindi (Devanagari) and Hinglish (Hindi in
//! Latin letters); a policy adds its own words.

use std::collections::HashSet;

use unicode_normalization::UnicodeNormalization;

/// English.
const ENGLISH: &[&str] = &[
    "fuck",
    "fucking",
    "fucked",
    "fucker",
    "fuckers",
    "motherfucker",
    "motherfuckers",
    "fuckoff",
    "shit",
    "shitty",
    "bullshit",
    "bitch",
    "bitches",
    "bastard",
    "bastards",
    "asshole",
    "assholes",
    "arsehole",
    "dickhead",
    "cunt",
    "prick",
    "wanker",
    "twat",
];

/// Hindi, in Devanagari (NFC).
const HINDI: &[&str] = &[
    "चूतिया",
    "चुतिया",
    "चूतिये",
    "भोसड़ी",
    "भोसड़ीके",
    "भोसडीके",
    "मादरचोद",
    "बहनचोद",
    "बहनचोद",
    "बेहनचोद",
    "भेनचोद",
    "हरामी",
    "हरामज़ादा",
    "हरामजादा",
    "गांडू",
    "गाँडू",
    "कमीना",
    "कमीने",
    "रंडी",
    "लौड़ा",
    "लंड",
    "भड़वा",
    "भडवा",
];

/// Hinglish: Hindi in Latin letters, as people type and STTs write it.
const HINGLISH: &[&str] = &[
    "chutiya",
    "chutiye",
    "chootiya",
    "bhosdike",
    "bhosadike",
    "bhosdi",
    "madarchod",
    "maderchod",
    "madarchot",
    "behenchod",
    "bhenchod",
    "benchod",
    "bahenchod",
    "harami",
    "haramzada",
    "haramkhor",
    "gandu",
    "kamina",
    "kameena",
    "kamine",
    "randi",
    "lauda",
    "lavda",
    "lund",
    "bhadwa",
    "bhadwe",
];

/// One word as it is compared: NFC, lower case, surrounding punctuation
/// (ASCII, danda, quotes, dashes) trimmed.
pub fn normalise(word: &str) -> String {
    let trimmed = word.trim_matches(|c: char| {
        c.is_ascii_punctuation()
            || matches!(
                c,
                '।' | '॥' | '“' | '”' | '‘' | '’' | '…' | '–' | '—' | '¿' | '¡'
            )
    });
    trimmed.nfc().flat_map(char::to_lowercase).collect()
}

/// The words of a policy's profanity list.
#[derive(Debug, Clone, Default)]
pub struct Profanity {
    words: HashSet<String>,
}

impl Profanity {
    /// The built-in lists and `extra` (a policy's own words).
    pub fn new<'a>(extra: impl IntoIterator<Item = &'a str>) -> Self {
        let words = ENGLISH
            .iter()
            .chain(HINDI)
            .chain(HINGLISH)
            .copied()
            .chain(extra)
            .map(normalise)
            .filter(|w| !w.is_empty())
            .collect();
        Self { words }
    }

    /// The first listed word in `text`, if any.
    pub fn find<'t>(&self, text: &'t str) -> Option<&'t str> {
        text.split_whitespace()
            .find(|w| self.words.contains(&normalise(w)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_words_in_every_script_match_and_substrings_do_not() {
        let p = Profanity::new(["dammit"]);
        for text in [
            "this is bullshit",
            "You BASTARD!",
            "tu chutiya hai kya",
            "अरे हरामी, सुन",
            "भोसड़ीके।",
            "well dammit",
        ] {
            assert!(p.find(text).is_some(), "{text:?}");
        }
        for text in [
            "I live in Scunthorpe",
            "the assessment was fine",
            "मेरा साला कल आएगा",
            "shitake mushrooms",
            "",
            "   ",
            "हाँ, बोलिए",
        ] {
            assert_eq!(p.find(text), None, "{text:?}");
        }
    }

    #[test]
    fn nukta_letters_match_in_either_encoding() {
        let p = Profanity::new([]);
        // ड़ as one code point (U+095C) and as ड + nukta (U+0921 U+093C).
        assert!(p.find("भोस\u{095C}ीके").is_some());
        assert!(p.find("भोस\u{0921}\u{093C}ीके").is_some());
    }
}
