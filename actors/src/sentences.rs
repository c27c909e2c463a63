//! Cuts streamed LLM text into speakable sentences as it arrives, so TTS can
//! start on the first sentence instead of waiting for the whole reply.

/// Common abbreviations whose period does not end a sentence.
const ABBREVIATIONS: [&str; 12] = [
    "mr.", "mrs.", "ms.", "dr.", "st.", "vs.", "etc.", "e.g.", "i.e.", "no.", "approx.", "jr.",
];

/// Text longer than this is cut at the last comma/space even without a full stop,
/// so a run-on reply still starts speaking early.
const MAX_SENTENCE_CHARS: usize = 220;

#[derive(Debug, Default)]
pub struct SentenceSplitter {
    buf: String,
}

impl SentenceSplitter {
    /// Adds streamed text; returns the sentences it completed.
    pub fn push(&mut self, text: &str) -> Vec<String> {
        self.buf.push_str(text);
        let mut out = Vec::new();
        while let Some(end) = self.sentence_end() {
            let rest = self.buf.split_off(end);
            let sentence = std::mem::replace(&mut self.buf, rest);
            push_trimmed(&mut out, &sentence);
        }
        out
    }

    /// The remaining text at the end of the stream.
    pub fn finish(&mut self) -> Option<String> {
        let mut out = Vec::new();
        push_trimmed(&mut out, &std::mem::take(&mut self.buf));
        out.pop()
    }

    /// Byte index just past the first complete sentence in the buffer.
    fn sentence_end(&self) -> Option<usize> {
        let bytes = self.buf.as_bytes();
        for (i, &b) in bytes.iter().enumerate() {
            let terminal = matches!(b, b'.' | b'!' | b'?' | b'\n');
            // A terminator only ends a sentence once we see the whitespace after
            // it: "3.5" and "e.g." must not be cut mid-stream.
            if terminal && bytes.get(i + 1).is_some_and(|n| n.is_ascii_whitespace()) {
                if b == b'.' && self.is_abbreviation(i) {
                    continue;
                }
                if self.buf[..i].trim().is_empty() {
                    continue;
                }
                return Some(i + 1);
            }
        }
        if self.buf.len() > MAX_SENTENCE_CHARS {
            let cut = self.buf[..MAX_SENTENCE_CHARS]
                .rfind([',', ';', ' '])
                .filter(|&c| c > 0)?;
            return Some(cut + 1);
        }
        None
    }

    fn is_abbreviation(&self, dot: usize) -> bool {
        let word_start = self.buf[..dot]
            .rfind(|c: char| c.is_whitespace())
            .map_or(0, |p| p + 1);
        let word = self.buf[word_start..=dot].to_lowercase();
        ABBREVIATIONS.contains(&word.as_str())
    }
}

fn push_trimmed(out: &mut Vec<String>, s: &str) {
    let t = s.trim();
    if t.chars().any(char::is_alphanumeric) {
        out.push(t.to_owned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split_streamed(pieces: &[&str]) -> Vec<String> {
        let mut s = SentenceSplitter::default();
        let mut out: Vec<String> = pieces.iter().flat_map(|p| s.push(p)).collect();
        out.extend(s.finish());
        out
    }

    #[test]
    fn splits_on_terminators_across_tokens() {
        assert_eq!(
            split_streamed(&["Hello the", "re! How are", " you? I'm ", "fine."]),
            ["Hello there!", "How are you?", "I'm fine."]
        );
    }

    #[test]
    fn keeps_decimals_and_abbreviations() {
        assert_eq!(
            split_streamed(&["It costs 3.", "5 dollars, says Dr. Smith. Bye"]),
            ["It costs 3.5 dollars, says Dr. Smith.", "Bye"]
        );
    }

    #[test]
    fn cuts_run_ons() {
        let long = "word ".repeat(100);
        let out = split_streamed(&[&long]);
        assert!(out.len() >= 2);
        assert!(out.iter().all(|s| s.len() <= MAX_SENTENCE_CHARS));
    }

    #[test]
    fn drops_punctuation_only_fragments() {
        assert_eq!(split_streamed(&["... ", "Ok. ", " . "]), ["Ok."]);
    }
}
