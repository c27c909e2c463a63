//! A silent caller: after `after_secs` of silence once the bot has
//! finished, a re-prompt; after `reprompts` of them, a goodbye and the end.
//! Anything the caller says or presses starts the count again.

use std::time::Duration;

use crate::policy::IdleSettings;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Reprompt(String),
    End(String),
}

#[derive(Debug)]
pub struct Idle {
    after: Option<Duration>,
    reprompts: u32,
    left: u32,
    reprompt: String,
    goodbye: String,
}

impl Idle {
    pub fn new(s: &IdleSettings) -> Self {
        Self {
            after: (s.after_secs > 0).then(|| Duration::from_secs(u64::from(s.after_secs))),
            reprompts: s.reprompts,
            left: s.reprompts,
            reprompt: s.reprompt.clone(),
            goodbye: s.goodbye.clone(),
        }
    }

    /// The lines in the language the call switched to.
    pub fn set_lines(&mut self, s: &IdleSettings) {
        self.reprompt.clone_from(&s.reprompt);
        self.goodbye.clone_from(&s.goodbye);
    }

    /// How long a silence may last; `None`: the rule is off.
    pub fn after(&self) -> Option<Duration> {
        self.after
    }

    /// The caller said or pressed something.
    pub fn caller_active(&mut self) {
        self.left = self.reprompts;
    }

    pub fn on_silence(&mut self) -> Option<Step> {
        self.after?;
        if self.left == 0 {
            return Some(Step::End(self.goodbye.clone()));
        }
        self.left -= 1;
        Some(Step::Reprompt(self.reprompt.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reprompts_then_ends_and_the_caller_resets_the_count() {
        let mut idle = Idle::new(&IdleSettings {
            after_secs: 8,
            reprompts: 2,
            ..IdleSettings::default()
        });
        assert!(matches!(idle.on_silence(), Some(Step::Reprompt(_))));
        idle.caller_active();
        assert!(matches!(idle.on_silence(), Some(Step::Reprompt(_))));
        assert!(matches!(idle.on_silence(), Some(Step::Reprompt(_))));
        assert!(matches!(idle.on_silence(), Some(Step::End(_))));
    }

    #[test]
    fn off_says_nothing() {
        let mut idle = Idle::new(&IdleSettings::default());
        assert_eq!(idle.after(), None);
        assert_eq!(idle.on_silence(), None);
    }
}
