//! Rules Hark enforces on a live call, pure and per call: the supervisor
//! asks them about the caller's words before the turn controller does, and
//! carries out their verdict. Each decision is put on the call's record.
//!
//! # Layout
//! - [`profanity`] — whole-word lists (English, Hindi, Hinglish), normalised.

use crate::context::CallContext;
use crate::metrics as m;
use crate::policy::PolicyFile;
use crate::policy::rules::ProfanityAction;
use crate::protocol::EndReason;
use crate::turns::Event as TurnEvent;

pub mod profanity;

/// What the rules make of the caller's words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing to enforce: the turn controller takes the words.
    Pass,
    /// Answer with this line instead of a reply; the call goes on.
    Warn { rule: &'static str, line: String },
    /// Say this line and end the call.
    End { rule: &'static str, line: String },
}

/// One call's rules and what they have seen so far.
#[derive(Debug)]
pub struct Rules {
    profanity: Option<(profanity::Profanity, ProfanityAction)>,
    warning: String,
    goodbye: String,
    warned: bool,
}

impl Rules {
    pub fn from_policy(policy: &PolicyFile) -> Self {
        let p = &policy.rules.profanity;
        Self {
            profanity: (p.action != ProfanityAction::Off).then(|| {
                (
                    profanity::Profanity::new(p.words.iter().map(String::as_str)),
                    p.action,
                )
            }),
            warning: p.warning.clone(),
            goodbye: p.goodbye.clone(),
            warned: false,
        }
    }

    /// What the turn controller gets for the caller's words: the words, or
    /// a rule's line. A decision is counted, on record and in the log
    /// (without the words).
    pub fn turn_event(&mut self, text: String, ctx: &CallContext) -> TurnEvent {
        let (rule, action, event) = match self.on_caller_words(&text) {
            Verdict::Pass => return TurnEvent::Utterance { text },
            Verdict::Warn { rule, line } => (rule, "warned", TurnEvent::Answer { line }),
            Verdict::End { rule, line } => (
                rule,
                "ended",
                TurnEvent::EndWith {
                    reason: EndReason::Profanity,
                    line,
                },
            ),
        };
        metrics::counter!(m::RULE_DECISIONS, "rule" => rule, "action" => action).increment(1);
        ctx.recorder.event("rule", format!("{rule}: {action}"));
        tracing::info!(parent: &ctx.span, rule, action, "rule enforced");
        event
    }

    /// The verdict on what the caller said.
    pub fn on_caller_words(&mut self, text: &str) -> Verdict {
        let Some((words, action)) = &self.profanity else {
            return Verdict::Pass;
        };
        if words.find(text).is_none() {
            return Verdict::Pass;
        }
        match action {
            ProfanityAction::WarnThenEnd if !self.warned => {
                self.warned = true;
                Verdict::Warn {
                    rule: "profanity",
                    line: self.warning.clone(),
                }
            }
            _ => Verdict::End {
                rule: "profanity",
                line: self.goodbye.clone(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(action: ProfanityAction) -> Rules {
        let mut p = PolicyFile::default();
        p.rules.profanity.action = action;
        p.rules.profanity.words = vec!["jerkface".into()];
        Rules::from_policy(&p)
    }

    #[test]
    fn warn_once_then_end() {
        let mut r = rules(ProfanityAction::WarnThenEnd);
        assert_eq!(r.on_caller_words("hello there"), Verdict::Pass);
        assert!(matches!(
            r.on_caller_words("you jerkface"),
            Verdict::Warn { .. }
        ));
        assert_eq!(r.on_caller_words("sorry, my plan?"), Verdict::Pass);
        assert!(matches!(
            r.on_caller_words("tu chutiya hai"),
            Verdict::End { .. }
        ));
    }

    #[test]
    fn end_at_once_and_off_never() {
        assert!(matches!(
            rules(ProfanityAction::End).on_caller_words("bullshit"),
            Verdict::End { .. }
        ));
        assert_eq!(
            rules(ProfanityAction::Off).on_caller_words("bullshit"),
            Verdict::Pass
        );
    }
}
