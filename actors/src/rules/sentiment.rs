//! A lexicon sentiment scorer, embedded so it works without any key: each
//! word or phrase has a valence (-4 … +3), an utterance scores the sum of
//! what it holds (phrases first, so "not good" is -2 and "not bad" +1).
//! English, Hindi (Devanagari) and Hinglish.

use super::phrases::Phrases;

const LEXICON: &[(&str, i8)] = &[
    // English.
    ("terrible", -3),
    ("awful", -3),
    ("horrible", -3),
    ("useless", -3),
    ("worst", -3),
    ("hate", -3),
    ("angry", -3),
    ("furious", -4),
    ("frustrated", -2),
    ("frustrating", -2),
    ("annoyed", -2),
    ("annoying", -2),
    ("ridiculous", -2),
    ("stupid", -2),
    ("bad", -2),
    ("disappointed", -2),
    ("unacceptable", -3),
    ("waste", -2),
    ("wasting", -2),
    ("fed up", -3),
    ("sick of", -3),
    ("not happy", -2),
    ("not good", -2),
    ("not working", -2),
    ("rubbish", -2),
    ("scam", -3),
    ("cheated", -3),
    ("complaint", -2),
    ("upset", -2),
    ("good", 2),
    ("great", 3),
    ("thanks", 2),
    ("thank you", 2),
    ("happy", 2),
    ("excellent", 3),
    ("perfect", 3),
    ("helpful", 2),
    ("not bad", 1),
    // Hindi.
    ("बकवास", -3),
    ("बेकार", -3),
    ("घटिया", -3),
    ("परेशान", -2),
    ("गुस्सा", -3),
    ("नाराज़", -2),
    ("नाराज", -2),
    ("धोखा", -3),
    ("शिकायत", -2),
    ("बुरा", -2),
    ("खराब", -2),
    ("ख़राब", -2),
    ("तंग", -2),
    ("अच्छा", 2),
    ("धन्यवाद", 2),
    ("शुक्रिया", 2),
    ("बढ़िया", 3),
    // Hinglish.
    ("bakwas", -3),
    ("bakwaas", -3),
    ("bekaar", -3),
    ("bekar", -3),
    ("ghatiya", -3),
    ("pareshan", -2),
    ("gussa", -3),
    ("naraz", -2),
    ("dhokha", -3),
    ("shikayat", -2),
    ("bura", -2),
    ("kharab", -2),
    ("tang", -2),
    ("accha", 2),
    ("achha", 2),
    ("dhanyavaad", 2),
    ("shukriya", 2),
    ("badhiya", 3),
];

#[derive(Debug, Clone)]
pub struct Sentiment(Phrases<i8>);

impl Default for Sentiment {
    fn default() -> Self {
        Self(Phrases::new(LEXICON.iter().copied()))
    }
}

impl Sentiment {
    /// The sum of the valences in `text`; 0 when it holds none.
    pub fn score(&self, text: &str) -> i32 {
        self.0.find(text).into_iter().map(i32::from).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_in_three_languages() {
        let s = Sentiment::default();
        assert_eq!(s.score("This is terrible, I'm fed up!"), -6);
        assert_eq!(s.score("not good, not bad"), -1);
        assert_eq!(s.score("Great, thank you"), 5);
        assert_eq!(s.score("यह सर्विस बकवास है, मैं बहुत परेशान हूँ।"), -5);
        assert_eq!(s.score("bilkul bekar service, main pareshan hoon"), -5);
        assert_eq!(s.score("What time do you open?"), 0);
    }
}
