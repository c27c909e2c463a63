//! Escalation to a person: the caller asks for one ("human", "agent",
//! "मैनेजर"…), is not understood N turns in a row, sounds upset over the
//! last few turns (the [`Sentiment`] scorer), presses the policy's key, or
//! the model calls `transfer_call`. The first trigger raises the call's one
//! transfer request, with its reason and target; later ones are ignored.

use std::collections::VecDeque;

use super::phrases::Phrases;
use super::sentiment::Sentiment;
use crate::policy::{EscalationSettings, EscalationTrigger};

const KEYWORDS: &[&str] = &[
    // English.
    "human",
    "a human",
    "real person",
    "a person",
    "agent",
    "live agent",
    "manager",
    "supervisor",
    "representative",
    "operator",
    "speak to someone",
    "talk to someone",
    "customer care",
    "customer service",
    // Hindi.
    "इंसान",
    "असली इंसान",
    "एजेंट",
    "मैनेजर",
    "अधिकारी",
    "कस्टमर केयर",
    "किसी से बात",
    // Hinglish.
    "insaan",
    "insan",
    "asli insaan",
    "adhikari",
    "kisi se baat",
];

/// Why a transfer was asked for: the `reason` label of
/// `hark_transfer_requests_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    Keyword,
    NotUnderstood,
    Sentiment,
    Tool,
    Dtmf,
    /// Someone asked through the API.
    Api,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Keyword => "keyword",
            Reason::NotUnderstood => "not_understood",
            Reason::Sentiment => "sentiment",
            Reason::Tool => "tool",
            Reason::Dtmf => "dtmf",
            Reason::Api => "api",
        }
    }
}

/// A transfer request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub reason: Reason,
    pub target: String,
}

#[derive(Debug)]
pub struct Escalation {
    keywords: Option<Phrases<()>>,
    /// Turns in a row not understood that raise a request; 0: off.
    not_understood: u32,
    misses: u32,
    sentiment: Option<(Sentiment, i32, usize)>,
    scores: VecDeque<i32>,
    tool: bool,
    key: Option<char>,
    target: String,
    raised: bool,
}

impl Escalation {
    pub fn new(s: &EscalationSettings) -> Self {
        let on = |t| s.triggers.contains(&t);
        Self {
            keywords: on(EscalationTrigger::Keywords).then(|| {
                let words = KEYWORDS
                    .iter()
                    .copied()
                    .chain(s.keywords.iter().map(String::as_str));
                Phrases::new(words.map(|w| (w, ())))
            }),
            not_understood: if on(EscalationTrigger::NotUnderstood) {
                s.not_understood_turns
            } else {
                0
            },
            misses: 0,
            sentiment: on(EscalationTrigger::Sentiment).then(|| {
                (
                    Sentiment::default(),
                    s.sentiment_threshold,
                    s.sentiment_window as usize,
                )
            }),
            scores: VecDeque::new(),
            tool: on(EscalationTrigger::Tool),
            key: on(EscalationTrigger::Dtmf)
                .then(|| s.dtmf_key.chars().next())
                .flatten(),
            target: s.target.clone(),
            raised: false,
        }
    }

    fn raise(&mut self, reason: Reason, target: Option<String>) -> Option<Request> {
        if self.raised {
            return None;
        }
        self.raised = true;
        Some(Request {
            reason,
            target: target.unwrap_or_else(|| self.target.clone()),
        })
    }

    /// The caller's words (understood): a keyword, or a mood that stays low.
    pub fn on_words(&mut self, text: &str) -> Option<Request> {
        self.misses = 0;
        if self
            .keywords
            .as_ref()
            .is_some_and(|k| !k.find(text).is_empty())
        {
            return self.raise(Reason::Keyword, None);
        }
        let (scorer, threshold, window) = self.sentiment.as_ref()?;
        let (threshold, window) = (*threshold, *window);
        let score = scorer.score(text);
        self.scores.push_back(score);
        while self.scores.len() > window {
            self.scores.pop_front();
        }
        if self.scores.iter().sum::<i32>() > threshold {
            return None;
        }
        self.raise(Reason::Sentiment, None)
    }

    /// A turn the bot could not make sense of (no words, or no reply).
    pub fn on_not_understood(&mut self) -> Option<Request> {
        if self.not_understood == 0 {
            return None;
        }
        self.misses += 1;
        if self.misses < self.not_understood {
            return None;
        }
        self.raise(Reason::NotUnderstood, None)
    }

    /// The escalation key raises the request (once; later it is any key).
    pub fn on_dtmf(&mut self, digit: char) -> Option<Request> {
        if self.key != Some(digit) {
            return None;
        }
        self.raise(Reason::Dtmf, None)
    }

    /// A menu key asks for `target` (whatever the triggers).
    pub fn on_menu(&mut self, target: String) -> Option<Request> {
        self.raise(Reason::Dtmf, Some(target))
    }

    /// An agent or admin asked through the API (whatever the triggers).
    pub fn on_api(&mut self, target: String) -> Option<Request> {
        self.raise(Reason::Api, Some(target))
    }

    /// A transfer came back (nobody took the caller): a new request may be raised.
    pub fn rearm(&mut self) {
        self.raised = false;
        self.misses = 0;
        self.scores.clear();
    }

    /// The model called `transfer_call` with `target`.
    pub fn on_tool(&mut self, target: String) -> Option<Request> {
        if !self.tool {
            return None;
        }
        self.raise(Reason::Tool, Some(target))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(triggers: &[EscalationTrigger]) -> EscalationSettings {
        EscalationSettings {
            triggers: triggers.to_vec(),
            target: "care".into(),
            ..EscalationSettings::default()
        }
    }

    #[test]
    fn keywords_in_english_and_hindi_raise_one_request() {
        let mut e = Escalation::new(&settings(&[EscalationTrigger::Keywords]));
        assert_eq!(e.on_words("what are your hours"), None);
        assert_eq!(
            e.on_words("I want the management"),
            None,
            "whole words only"
        );
        let r = e.on_words("मुझे मैनेजर से बात करनी है").unwrap();
        assert_eq!((r.reason, r.target.as_str()), (Reason::Keyword, "care"));
        assert_eq!(e.on_words("a human please"), None, "one request per call");
    }

    #[test]
    fn not_understood_counts_turns_in_a_row() {
        let mut e = Escalation::new(&settings(&[EscalationTrigger::NotUnderstood]));
        assert_eq!(e.on_not_understood(), None);
        assert_eq!(e.on_not_understood(), None);
        e.on_words("sorry, my plan?");
        assert_eq!(e.on_not_understood(), None);
        assert_eq!(e.on_not_understood(), None);
        assert_eq!(
            e.on_not_understood().map(|r| r.reason),
            Some(Reason::NotUnderstood)
        );
    }

    #[test]
    fn a_mood_low_over_the_window_raises_and_one_bad_word_does_not() {
        let mut e = Escalation::new(&settings(&[EscalationTrigger::Sentiment]));
        assert_eq!(e.on_words("this is bad"), None);
        assert_eq!(e.on_words("great, thanks"), None);
        assert_eq!(e.on_words("useless and frustrating"), None);
        assert_eq!(
            e.on_words("यह बकवास है, बेकार").map(|r| r.reason),
            Some(Reason::Sentiment)
        );
    }

    #[test]
    fn key_and_tool_only_when_on() {
        let mut off = Escalation::new(&settings(&[]));
        assert_eq!(off.on_dtmf('0'), None);
        assert_eq!(off.on_tool("sales".into()), None);
        assert_eq!(off.on_words("agent"), None);
        let mut on = Escalation::new(&settings(&[
            EscalationTrigger::Dtmf,
            EscalationTrigger::Tool,
        ]));
        assert_eq!(on.on_dtmf('5'), None);
        assert_eq!(
            on.on_tool("sales".into()),
            Some(Request {
                reason: Reason::Tool,
                target: "sales".into()
            })
        );
        assert_eq!(on.on_dtmf('0'), None, "one request per call");
    }
}
