//! Switching language on the caller's words: after `after_words` words in
//! a row that the STT reports in another of the policy's languages (words
//! in the call's language break the run). A reported tag counts for the
//! policy language it names, or else the one with the same primary
//! subtag (`hi` → `hi-Latn`, `en` → `en-IN`).

#[derive(Debug)]
pub struct LanguageSwitch {
    after: u32,
    /// The policy's languages.
    known: Vec<String>,
    run: Option<(String, u32)>,
}

fn primary(tag: &str) -> &str {
    tag.split('-').next().unwrap_or(tag)
}

impl LanguageSwitch {
    /// `after_words` 0: off.
    pub fn new(after_words: u32, known: impl IntoIterator<Item = String>) -> Self {
        Self {
            after: after_words,
            known: known.into_iter().collect(),
            run: None,
        }
    }

    /// The policy language a reported tag stands for, if any.
    fn known<'a>(&'a self, tag: &str, current: &'a str) -> Option<&'a str> {
        if let Some(k) = self.known.iter().find(|k| k.as_str() == tag) {
            return Some(k);
        }
        // The call's own language first: `en` while in `en-IN` is no switch.
        if primary(current) == primary(tag) {
            return Some(current);
        }
        self.known
            .iter()
            .find(|k| primary(k) == primary(tag))
            .map(String::as_str)
    }

    /// The language to switch to after these words (one tag each), if the
    /// run of another language is now long enough.
    pub fn on_words(&mut self, current: &str, languages: &[String]) -> Option<String> {
        if self.after == 0 {
            return None;
        }
        for tag in languages {
            match self.known(tag, current).map(str::to_owned) {
                Some(lang) if lang != current => {
                    let run = match self.run.take() {
                        Some((l, n)) if l == lang => (l, n + 1),
                        _ => (lang, 1),
                    };
                    self.run = Some(run);
                }
                _ => self.run = None,
            }
        }
        match &self.run {
            Some((lang, n)) if *n >= self.after => {
                let lang = lang.clone();
                self.run = None;
                Some(lang)
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(t: &str) -> Vec<String> {
        t.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn a_run_of_words_in_another_language_switches() {
        let mut s = LanguageSwitch::new(4, ["hi".to_owned(), "en-IN".to_owned()]);
        assert_eq!(s.on_words("hi", &tags("hi hi en en en")), None);
        assert_eq!(
            s.on_words("hi", &tags("en")),
            Some("en-IN".into()),
            "runs span utterances"
        );
        assert_eq!(
            s.on_words("en-IN", &tags("en en en en en")),
            None,
            "its own language"
        );
        assert_eq!(
            s.on_words("en-IN", &tags("hi hi hi fr hi")),
            None,
            "broken by a word"
        );
        assert_eq!(s.on_words("en-IN", &tags("hi hi hi hi")), Some("hi".into()));
        assert_eq!(
            LanguageSwitch::new(0, ["hi".to_owned()]).on_words("en", &tags("hi hi hi hi hi")),
            None
        );
    }
}
