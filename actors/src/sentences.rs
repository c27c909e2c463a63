//! Cuts streamed LLM text into speakable sentences as it arrives, so TTS can
//! start on the first sentence instead of waiting for the whole reply.
//!
//! Text is UTF-8 and often not ASCII (Hindi, Hinglish, CJK, emoji), so every
//! cut is made on a character boundary: the splitter walks `char_indices`
//! and never slices at a computed byte offset.

/// Common abbreviations whose period does not end a sentence.
const ABBREVIATIONS: [&str; 12] = [
    "mr.", "mrs.", "ms.", "dr.", "st.", "vs.", "etc.", "e.g.", "i.e.", "no.", "approx.", "jr.",
];

/// Text longer than this many characters is cut at the last comma or space
/// even without a full stop (or, with none, at this length), so a run-on
/// reply still starts speaking early.
pub const MAX_SENTENCE_CHARS: usize = 220;

/// Ends a sentence once whitespace follows it: `3.5` and `e.g.` must not be
/// cut mid-stream.
fn ends_before_space(c: char) -> bool {
    matches!(c, '.' | '!' | '?')
}

/// Ends a sentence by itself: Devanagari danda and double danda, CJK full
/// stop and full-width `？` `！`. These scripts do not put a space after them.
fn ends_alone(c: char) -> bool {
    matches!(c, '\n' | '।' | '॥' | '。' | '？' | '！')
}

/// Where an over-long sentence may be cut (after the character).
fn soft_break(c: char) -> bool {
    matches!(c, ',' | ';' | '،' | '、' | '，' | '；') || c.is_whitespace()
}

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

    /// Byte index just past the first complete sentence in the buffer (always
    /// a character boundary).
    fn sentence_end(&self) -> Option<usize> {
        let mut chars = self.buf.char_indices().peekable();
        // Whether anything but whitespace came before: a leading "." ends nothing.
        let mut nonblank = false;
        // The last soft break within the first MAX_SENTENCE_CHARS characters.
        let mut soft: Option<usize> = None;
        let mut count = 0;
        while let Some((i, c)) = chars.next() {
            count += 1;
            if count > MAX_SENTENCE_CHARS {
                // Past the limit with no full stop: cut at the last soft
                // break, or right here if the text has none (CJK, one long
                // word). Checked first: a stop as the 221st character must
                // not make a 221-character sentence.
                return Some(soft.unwrap_or(i));
            }
            let after = i + c.len_utf8();
            if ends_alone(c) && nonblank {
                return Some(after);
            }
            if ends_before_space(c)
                && nonblank
                && chars.peek().is_some_and(|(_, n)| n.is_whitespace())
                && !(c == '.' && self.is_abbreviation(i))
            {
                return Some(after);
            }
            nonblank |= !c.is_whitespace();
            if soft_break(c) {
                soft = Some(after);
            }
        }
        None
    }

    /// Whether the `.` at byte `dot` ends a known abbreviation.
    fn is_abbreviation(&self, dot: usize) -> bool {
        let before = &self.buf[..dot];
        let word_start = before
            .char_indices()
            .rev()
            .find(|(_, c)| c.is_whitespace())
            .map_or(0, |(i, c)| i + c.len_utf8());
        let word = self.buf[word_start..dot].to_lowercase();
        ABBREVIATIONS
            .iter()
            .any(|a| a.strip_suffix('.') == Some(word.as_str()))
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
    use proptest::prelude::*;

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
        assert!(out.iter().all(|s| s.chars().count() <= MAX_SENTENCE_CHARS));
    }

    #[test]
    fn drops_punctuation_only_fragments() {
        assert_eq!(split_streamed(&["... ", "Ok. ", " . "]), ["Ok."]);
    }

    #[test]
    fn ends_hindi_sentences_on_danda_and_double_danda() {
        assert_eq!(
            split_streamed(&["नमस्ते। आप", "का स्वागत है॥ बताइए"]),
            ["नमस्ते।", "आपका स्वागत है॥", "बताइए"]
        );
    }

    #[test]
    fn ends_cjk_sentences_without_a_space() {
        assert_eq!(
            split_streamed(&["你好。请问", "有什么可以帮您？好的！"]),
            ["你好。", "请问有什么可以帮您？", "好的！"]
        );
    }

    /// The greeting that dropped every call: a long Hindi sentence whose
    /// 220th byte falls inside a character.
    #[test]
    fn a_long_hindi_sentence_is_cut_on_character_boundaries() {
        let greeting = "जी, नमस्ते, हमारी ग्राहक सेवा में आपका स्वागत है, मैं आपकी बुकिंग, भुगतान, \
                        रिफंड और खाते से जुड़े हर सवाल में आपकी मदद कर सकती हूँ, कृपया बताइए कि \
                        आज मैं आपके लिए क्या कर सकती हूँ और आपका ऑर्डर नंबर क्या है, \
                        हम आपकी पूरी सहायता करेंगे";
        assert!(greeting.len() > MAX_SENTENCE_CHARS && !greeting.is_char_boundary(220));
        let out = split_streamed(&[greeting]);
        assert!(out.len() >= 2, "{out:?}");
        assert_eq!(out.concat().replace(' ', ""), greeting.replace(' ', ""));
    }

    #[test]
    fn emoji_and_non_breaking_spaces_do_not_break_cuts() {
        let text = format!("{}Dr.\u{a0}Rao. Fine.", "🙂\u{a0}".repeat(150));
        let out = split_streamed(&[&text]);
        assert_eq!(out.last().map(String::as_str), Some("Fine."));
        // No full stop and no space: cut at the limit.
        let cjk = "字".repeat(500);
        let out = split_streamed(&[&cjk]);
        assert_eq!(out.len(), 3);
        assert!(out.iter().all(|s| s.chars().count() <= MAX_SENTENCE_CHARS));
    }

    /// Letters and digits only: what a listener would miss if it were lost.
    fn words(s: &str) -> String {
        s.chars().filter(|c| c.is_alphanumeric()).collect()
    }

    /// Arbitrary text cut into arbitrary pieces (on character boundaries,
    /// as a `&str` must be).
    fn chunked() -> impl Strategy<Value = (String, Vec<usize>)> {
        let text = prop_oneof![
            any::<String>(),
            "[a-z .,!?]{0,400}",
            "[\u{0900}-\u{097F} ।॥,]{0,400}",
            "[\u{4E00}-\u{4E80}。？！，]{0,400}",
            "[\u{1F600}-\u{1F64F}\u{a0} .a-z]{0,400}",
        ];
        (text, proptest::collection::vec(any::<usize>(), 0..20))
    }

    #[test]
    fn a_stop_as_the_character_past_the_limit_does_not_make_a_longer_sentence() {
        // Found by the property test: 220 characters without a break, then `।`.
        let text = format!("{}।", "ऀ".repeat(MAX_SENTENCE_CHARS));
        let out = split_streamed(&[&text]);
        assert!(
            out.iter().all(|s| s.chars().count() <= MAX_SENTENCE_CHARS),
            "{:?}",
            out.iter().map(|s| s.chars().count()).collect::<Vec<_>>()
        );
        let text = format!("{}. Next.", "a".repeat(MAX_SENTENCE_CHARS));
        let out = split_streamed(&[&text]);
        assert!(out.iter().all(|s| s.chars().count() <= MAX_SENTENCE_CHARS));
    }

    proptest! {
        #[test]
        fn no_chunking_of_any_utf8_panics_or_loses_words((text, cuts) in chunked()) {
            let chars: Vec<(usize, char)> = text.char_indices().collect();
            let mut bounds: Vec<usize> = cuts
                .iter()
                .filter_map(|c| chars.get(c % chars.len().max(1)).map(|(i, _)| *i))
                .collect();
            bounds.push(0);
            bounds.push(text.len());
            bounds.sort_unstable();
            bounds.dedup();
            let pieces: Vec<&str> = bounds.windows(2).map(|w| &text[w[0]..w[1]]).collect();
            let out = split_streamed(&pieces);
            prop_assert_eq!(words(&out.concat()), words(&text));
            for s in &out {
                prop_assert!(!s.is_empty() && s.trim() == s);
                prop_assert!(s.chars().count() <= MAX_SENTENCE_CHARS);
            }
        }
    }
}
