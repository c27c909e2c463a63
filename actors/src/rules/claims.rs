//! Forbidden claims by the bot ("guaranteed returns", medical or legal
//! advice…): every sentence is checked before it reaches TTS. Phrases match
//! whole normalised words (as the caller rules do); patterns are regular
//! expressions over the sentence in lower case. What matched is the
//! policy's own text, so it may be put on record.

use regex::{Regex, RegexBuilder};

use super::phrases::Phrases;
use crate::policy::ClaimSettings;

#[derive(Debug, Default)]
pub struct Claims {
    phrases: Phrases<usize>,
    labels: Vec<String>,
    patterns: Vec<Regex>,
}

/// A pattern as the rule compiles it: case-insensitive, bounded in size.
pub fn compile(pattern: &str) -> Result<Regex, regex::Error> {
    RegexBuilder::new(pattern)
        .case_insensitive(true)
        .size_limit(1 << 20)
        .build()
}

impl Claims {
    /// The policy's claims; patterns that do not compile are left out (the
    /// policy check refuses them, so a live policy has none).
    pub fn new(s: &ClaimSettings) -> Self {
        Self {
            phrases: Phrases::new(s.phrases.iter().enumerate().map(|(i, p)| (p.as_str(), i))),
            labels: s.phrases.clone(),
            patterns: s.patterns.iter().filter_map(|p| compile(p).ok()).collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.phrases.is_empty() && self.patterns.is_empty()
    }

    /// The phrase or pattern `sentence` makes, if any.
    pub fn check(&self, sentence: &str) -> Option<String> {
        if self.is_empty() {
            return None;
        }
        if let Some(i) = self.phrases.find(sentence).first() {
            return self.labels.get(*i).cloned();
        }
        self.patterns
            .iter()
            .find(|p| p.is_match(sentence))
            .map(|p| p.as_str().to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims() -> Claims {
        Claims::new(&ClaimSettings {
            phrases: vec![
                "guaranteed returns".into(),
                "risk-free".into(),
                "गारंटीड रिटर्न".into(),
            ],
            patterns: vec![r"\b\d+\s*% (returns?|profit)".into(), r"cures?\b".into()],
            ..ClaimSettings::default()
        })
    }

    #[test]
    fn phrases_and_patterns_in_english_and_hindi() {
        let c = claims();
        assert_eq!(
            c.check("It gives Guaranteed returns every year.")
                .as_deref(),
            Some("guaranteed returns")
        );
        assert_eq!(c.check("A risk-free plan!").as_deref(), Some("risk-free"));
        assert_eq!(
            c.check("इसमें गारंटीड रिटर्न मिलता है।").as_deref(),
            Some("गारंटीड रिटर्न")
        );
        assert!(c.check("You could see 12 % returns").is_some());
        assert!(c.check("This tea CURES colds.").is_some());
        assert_eq!(c.check("Returns depend on the market."), None);
        assert_eq!(c.check("Our returns are not guaranteed."), None);
        assert!(Claims::new(&ClaimSettings::default()).is_empty());
    }
}
