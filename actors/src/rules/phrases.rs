//! Words and phrases matched in what the caller said: whole normalised
//! words (see [`normalise`]), never substrings, the longest phrase first at
//! each word — so "no problem" is one phrase, not "no" — each word used by
//! one phrase at most.

use std::collections::HashMap;

pub use super::profanity::normalise;

/// The longest phrase, in words.
pub const MAX_WORDS: usize = 4;

/// `text`'s words as they are compared (curly apostrophes straightened).
pub fn words(text: &str) -> Vec<String> {
    text.split_whitespace()
        .map(|w| normalise(&w.replace('’', "'")))
        .filter(|w| !w.is_empty())
        .collect()
}

/// Phrases, each with a value (yes/no, a valence…).
#[derive(Debug, Clone)]
pub struct Phrases<V>(HashMap<Vec<String>, V>);

impl<V> Default for Phrases<V> {
    fn default() -> Self {
        Self(HashMap::new())
    }
}

impl<V: Copy> Phrases<V> {
    /// Later phrases replace earlier ones with the same words; empty ones
    /// and those over [`MAX_WORDS`] are left out.
    pub fn new<'a>(phrases: impl IntoIterator<Item = (&'a str, V)>) -> Self {
        let mut map = HashMap::new();
        for (phrase, value) in phrases {
            let w = words(phrase);
            if !w.is_empty() && w.len() <= MAX_WORDS {
                map.insert(w, value);
            }
        }
        Self(map)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether every word of `text` (at least one) belongs to a phrase.
    pub fn covers(&self, text: &str) -> bool {
        let (found, all) = self.scan(text);
        all && !found.is_empty()
    }

    /// The values of the phrases found in `text`, in order.
    pub fn find(&self, text: &str) -> Vec<V> {
        self.scan(text).0
    }

    /// The phrases in `text`, the longest first at each word, and whether
    /// every word belonged to one.
    fn scan(&self, text: &str) -> (Vec<V>, bool) {
        let w = words(text);
        let (mut found, mut all) = (Vec::new(), true);
        let mut i = 0;
        while i < w.len() {
            let longest = (1..=MAX_WORDS.min(w.len() - i))
                .rev()
                .find_map(|n| w.get(i..i + n).and_then(|p| self.0.get(p)).map(|v| (n, *v)));
            match longest {
                Some((n, v)) => {
                    found.push(v);
                    i += n;
                }
                None => {
                    all = false;
                    i += 1;
                }
            }
        }
        (found, all)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_first_whole_words_only() {
        let p = Phrases::new([
            ("no", 1),
            ("no problem", 2),
            ("agent", 3),
            ("real person", 4),
        ]);
        assert_eq!(p.find("No problem, no."), [2, 1]);
        assert_eq!(p.find("Agents? A REAL person please"), [4]);
        assert_eq!(p.find("reagent"), Vec::<i32>::new());
        assert_eq!(p.find(""), Vec::<i32>::new());
    }
}
