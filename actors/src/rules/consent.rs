//! Consent to record, asked before the greeting: a yes or a no in words
//! (English, Hindi, Hinglish; phrases matched on normalised words, the
//! longest first, so "no problem" is a yes and "theek nahi" a no) or keys
//! (1 = yes, 2 = no). An answer that is neither, both, or silence is asked
//! again once; unclear twice is a no. Pure: the supervisor carries out the
//! lines and puts each decision on record.

use super::phrases::Phrases;
use crate::policy::ConsentSettings;

/// English yes; the Hindi and Hinglish lists follow.
const YES_EN: &[&str] = &[
    "yes",
    "yeah",
    "yep",
    "yup",
    "sure",
    "ok",
    "okay",
    "fine",
    "agree",
    "i agree",
    "of course",
    "go ahead",
    "that's fine",
    "that's okay",
    "that's ok",
    "no problem",
    "not a problem",
    "alright",
    "all right",
    "certainly",
    "absolutely",
    "sounds good",
    "please do",
    "i don't mind",
    "don't mind",
    "do not mind",
];
const NO_EN: &[&str] = &[
    "no",
    "nope",
    "nah",
    "don't",
    "do not",
    "not okay",
    "not ok",
    "not fine",
    "disagree",
    "no thanks",
    "no thank you",
    "rather not",
    "never",
    "not really",
    "absolutely not",
    "certainly not",
    "of course not",
];
const YES_HI: &[&str] = &[
    "हाँ",
    "हां",
    "जी",
    "जी हाँ",
    "जी हां",
    "हाँ जी",
    "हां जी",
    "ठीक है",
    "ठीक",
    "बिल्कुल",
    "बिलकुल",
    "सही है",
    "चलेगा",
    "कोई बात नहीं",
    "haan",
    "han",
    "haa",
    "haan ji",
    "ji",
    "ji haan",
    "theek hai",
    "thik hai",
    "theek",
    "thik",
    "bilkul",
    "sahi hai",
    "chalega",
    "koi baat nahi",
    "koi baat nahin",
];
const NO_HI: &[&str] = &[
    "नहीं",
    "नही",
    "ना",
    "मत",
    "जी नहीं",
    "नहीं जी",
    "बिल्कुल नहीं",
    "बिलकुल नहीं",
    "ठीक नहीं",
    "nahi",
    "nahin",
    "nai",
    "na",
    "mat",
    "ji nahi",
    "ji nahin",
    "nahi ji",
    "nahin ji",
    "bilkul nahi",
    "bilkul nahin",
    "theek nahi",
    "thik nahi",
    "theek nahin",
];

/// Yes (`true`) and no (`false`) phrases: the built-in lists and a policy's.
#[derive(Debug, Clone, Default)]
pub struct YesNo(Phrases<bool>);

impl YesNo {
    pub fn new<'a>(yes: impl Iterator<Item = &'a str>, no: impl Iterator<Item = &'a str>) -> Self {
        let yes = YES_EN
            .iter()
            .chain(YES_HI)
            .copied()
            .chain(yes)
            .map(|p| (p, true));
        let no = NO_EN
            .iter()
            .chain(NO_HI)
            .copied()
            .chain(no)
            .map(|p| (p, false));
        Self(Phrases::new(yes.chain(no)))
    }

    /// `Some(true)` for a yes, `Some(false)` for a no, `None` when the words
    /// hold neither, or both.
    pub fn classify(&self, text: &str) -> Option<bool> {
        let found = self.0.find(text);
        match (found.contains(&true), found.contains(&false)) {
            (true, false) => Some(true),
            (false, true) => Some(false),
            _ => None,
        }
    }
}

/// The caller's answer, as stored (`consent_records.answer`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Accepted,
    Declined,
    /// No clear answer after the question was asked twice: taken as a no.
    Unclear,
    /// Not asked: the caller's number needs no consent under the policy.
    NotRequired,
}

impl Answer {
    pub fn as_str(self) -> &'static str {
        match self {
            Answer::Accepted => "accepted",
            Answer::Declined => "declined",
            Answer::Unclear => "unclear",
            Answer::NotRequired => "not_required",
        }
    }

    /// Whether the call may be recorded after this answer.
    pub fn allows(self) -> bool {
        matches!(self, Answer::Accepted | Answer::NotRequired)
    }
}

/// How the answer came (`consent_records.how`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum How {
    Speech,
    Dtmf,
    Silence,
    NotAsked,
    /// Not asked: the policy records every call after a notice.
    Notice,
}

impl How {
    pub fn as_str(self) -> &'static str {
        match self {
            How::Speech => "speech",
            How::Dtmf => "dtmf",
            How::Silence => "silence",
            How::NotAsked => "not_asked",
            How::Notice => "notice",
        }
    }
}

/// What the rule makes of the caller's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Not clear: ask again with this line.
    AskAgain(String),
    /// Settled: say `line` (then the greeting).
    Decided {
        answer: Answer,
        how: How,
        line: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Off, or not this caller.
    NotAsking,
    Asking {
        reasked: bool,
    },
    Decided,
}

/// One call's consent question.
#[derive(Debug)]
pub struct Consent {
    phrases: YesNo,
    state: State,
    prompt: String,
    reask: String,
    accepted: String,
    declined: String,
    unclear: String,
}

impl Consent {
    /// `ask`: whether this caller is asked (see `ConsentSettings::asks`).
    pub fn new(settings: &ConsentSettings, ask: bool) -> Self {
        if !ask {
            // Nothing to say and nothing to hear: no lines kept.
            return Self {
                phrases: YesNo::default(),
                state: State::NotAsking,
                prompt: String::new(),
                reask: String::new(),
                accepted: String::new(),
                declined: String::new(),
                unclear: String::new(),
            };
        }
        Self {
            phrases: YesNo::new(
                settings.yes.iter().map(String::as_str),
                settings.no.iter().map(String::as_str),
            ),
            state: State::Asking { reasked: false },
            prompt: settings.prompt.clone(),
            reask: settings.reask.clone(),
            accepted: settings.accepted.clone(),
            declined: settings.declined.clone(),
            unclear: settings.unclear.clone(),
        }
    }

    /// The lines in the language the call switched to.
    pub fn set_lines(&mut self, s: &ConsentSettings) {
        if self.state == State::NotAsking {
            return;
        }
        self.prompt.clone_from(&s.prompt);
        self.reask.clone_from(&s.reask);
        self.accepted.clone_from(&s.accepted);
        self.declined.clone_from(&s.declined);
        self.unclear.clone_from(&s.unclear);
    }

    /// The question, if this caller is asked.
    pub fn prompt(&self) -> Option<&str> {
        matches!(self.state, State::Asking { .. }).then_some(self.prompt.as_str())
    }

    /// Whether an answer is awaited: the caller's words and keys are the
    /// rule's until then.
    pub fn pending(&self) -> bool {
        matches!(self.state, State::Asking { .. })
    }

    pub fn on_words(&mut self, text: &str) -> Option<Step> {
        if !self.pending() {
            return None;
        }
        match self.phrases.classify(text) {
            Some(yes) => Some(self.decide(yes, How::Speech)),
            None => Some(self.unclear(How::Speech)),
        }
    }

    pub fn on_dtmf(&mut self, digit: char) -> Option<Step> {
        if !self.pending() {
            return None;
        }
        Some(match digit {
            '1' => self.decide(true, How::Dtmf),
            '2' => self.decide(false, How::Dtmf),
            _ => self.unclear(How::Dtmf),
        })
    }

    /// The caller said nothing after the question.
    pub fn on_silence(&mut self) -> Option<Step> {
        if !self.pending() {
            return None;
        }
        Some(self.unclear(How::Silence))
    }

    fn decide(&mut self, yes: bool, how: How) -> Step {
        self.state = State::Decided;
        let (answer, line) = if yes {
            (Answer::Accepted, self.accepted.clone())
        } else {
            (Answer::Declined, self.declined.clone())
        };
        Step::Decided { answer, how, line }
    }

    fn unclear(&mut self, how: How) -> Step {
        match self.state {
            State::Asking { reasked: false } => {
                self.state = State::Asking { reasked: true };
                Step::AskAgain(self.reask.clone())
            }
            _ => {
                self.state = State::Decided;
                Step::Decided {
                    answer: Answer::Unclear,
                    how,
                    line: self.unclear.clone(),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{ConsentMode, ConsentSettings};

    fn phrases() -> YesNo {
        YesNo::new(["go for it"].into_iter(), ["stop recording"].into_iter())
    }

    #[test]
    fn yes_and_no_in_english_hindi_and_hinglish() {
        let p = phrases();
        for yes in [
            "Yes, that's fine.",
            "Sure!",
            "No problem at all",
            "I don't mind",
            "हाँ जी",
            "जी हां, ठीक है।",
            "haan ji theek hai",
            "koi baat nahi",
            "Go for it",
            "OKAY",
        ] {
            assert_eq!(p.classify(yes), Some(true), "{yes}");
        }
        for no in [
            "No.",
            "No thank you",
            "I'd rather not",
            "That's not okay",
            "Please don't",
            "नहीं",
            "जी नहीं।",
            "nahi ji",
            "theek nahi hai",
            "bilkul nahin",
            "stop recording",
        ] {
            assert_eq!(p.classify(no), Some(false), "{no}");
        }
        for unclear in [
            "",
            "What is this about?",
            "yes, no, maybe",
            "haan... nahi",
            "Scunthorpe",
            "knowledge",
        ] {
            assert_eq!(p.classify(unclear), None, "{unclear:?}");
        }
    }

    fn asking() -> Consent {
        Consent::new(
            &ConsentSettings {
                mode: ConsentMode::Required,
                ..ConsentSettings::default()
            },
            true,
        )
    }

    #[test]
    fn asked_again_once_then_unclear_is_a_no() {
        let mut c = asking();
        assert!(c.prompt().is_some());
        assert!(matches!(c.on_words("what?"), Some(Step::AskAgain(_))));
        assert!(c.pending());
        let Some(Step::Decided { answer, how, .. }) = c.on_silence() else {
            panic!("decided");
        };
        assert_eq!((answer, how), (Answer::Unclear, How::Silence));
        assert!(!answer.allows());
        assert!(!c.pending());
        assert_eq!(c.on_words("yes"), None, "settled: words go to the bot");
    }

    #[test]
    fn keys_answer_and_other_keys_are_unclear() {
        let mut c = asking();
        assert!(matches!(c.on_dtmf('5'), Some(Step::AskAgain(_))));
        let Some(Step::Decided { answer, how, .. }) = c.on_dtmf('1') else {
            panic!("decided");
        };
        assert_eq!((answer, how), (Answer::Accepted, How::Dtmf));
        let mut c = asking();
        assert!(matches!(
            c.on_dtmf('2'),
            Some(Step::Decided {
                answer: Answer::Declined,
                ..
            })
        ));
    }

    #[test]
    fn not_asked_means_nothing_pending() {
        let mut c = Consent::new(&ConsentSettings::default(), false);
        assert_eq!(c.prompt(), None);
        assert_eq!(c.on_words("no"), None);
        assert_eq!(c.on_dtmf('2'), None);
    }

    #[test]
    fn who_is_asked() {
        let mut s = ConsentSettings {
            mode: ConsentMode::Optional,
            required_for: vec!["+49".into(), "+1415".into()],
            ..ConsentSettings::default()
        };
        assert!(s.asks(Some("+4930123456")));
        assert!(s.asks(Some("+14155550100")));
        assert!(!s.asks(Some("+14255550100")));
        assert!(s.asks(None), "a withheld number's jurisdiction is unknown");
        s.mode = ConsentMode::Required;
        assert!(s.asks(Some("+14255550100")));
        s.mode = ConsentMode::Off;
        assert!(!s.asks(Some("+4930123456")));
    }
}
