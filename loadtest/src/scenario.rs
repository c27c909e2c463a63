//! Scenario files (`loadtest/scenarios/*.toml`): what one simulated caller does.
//!
//! ```toml
//! name = "conversation"
//! greeting = "wait"          # wait for the greeting to finish | "ignore"
//! turns = 3                  # turns before hanging up; the [[turn]] list is cycled
//!
//! [[turn]]
//! say = "order"              # a speech fixture (or `dtmf = "1"`, or `silence_ms = 5000`)
//! reply = "listen"           # wait for the reply to finish | "interrupt" | "ignore"
//!
//! [[turn]]
//! say = "hours"
//! reply = "interrupt"
//! interrupt_after_ms = 800   # talk over the reply this long after it starts
//! interrupt_with = "interrupt"
//! ```

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use tokio::time::Instant;

use crate::caller::{Caller, Condition};
use crate::fixtures;
use crate::stats::{Counters, Recorder};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Greeting {
    #[default]
    Wait,
    Ignore,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Reply {
    #[default]
    Listen,
    Interrupt,
    Ignore,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    pub say: Option<String>,
    pub dtmf: Option<String>,
    pub silence_ms: Option<u64>,
    #[serde(default)]
    pub reply: Reply,
    pub interrupt_after_ms: Option<u64>,
    pub interrupt_with: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub greeting: Greeting,
    /// Turns before hanging up; the `turn` list is cycled.
    pub turns: u32,
    #[serde(rename = "turn")]
    pub steps: Vec<Step>,
    /// A reply that has not started this long after the caller's turn is unanswered.
    #[serde(default = "default_reply_timeout")]
    pub reply_timeout_ms: u64,
    /// The bot counts as done speaking after this long with nothing left to play.
    #[serde(default = "default_quiet")]
    pub quiet_ms: u64,
}

fn default_reply_timeout() -> u64 {
    5000
}

fn default_quiet() -> u64 {
    400
}

/// The scenarios shipped in `loadtest/scenarios/`, embedded.
pub const BUILT_IN: &[(&str, &str)] = &[
    (
        "conversation",
        include_str!("../scenarios/conversation.toml"),
    ),
    ("barge-in", include_str!("../scenarios/barge-in.toml")),
    (
        "silent-caller",
        include_str!("../scenarios/silent-caller.toml"),
    ),
    ("dtmf-menu", include_str!("../scenarios/dtmf-menu.toml")),
];

impl Scenario {
    /// A built-in scenario by name, or a scenario file by path.
    pub fn load(name_or_path: &str) -> Result<Self, String> {
        if let Some((_, text)) = BUILT_IN.iter().find(|(n, _)| *n == name_or_path) {
            return Self::parse(text, name_or_path);
        }
        let path = Path::new(name_or_path);
        let text = std::fs::read_to_string(path).map_err(|e| {
            let names: Vec<_> = BUILT_IN.iter().map(|(n, _)| *n).collect();
            format!(
                "scenario {name_or_path:?}: {e} (built in: {})",
                names.join(", ")
            )
        })?;
        Self::parse(&text, name_or_path)
    }

    pub fn parse(text: &str, origin: &str) -> Result<Self, String> {
        let s: Scenario = toml::from_str(text).map_err(|e| format!("scenario {origin}: {e}"))?;
        let errors = s.validate();
        if errors.is_empty() {
            Ok(s)
        } else {
            Err(format!("scenario {origin}:\n  - {}", errors.join("\n  - ")))
        }
    }

    fn validate(&self) -> Vec<String> {
        let mut errors = Vec::new();
        if self.steps.is_empty() {
            errors.push("needs at least one [[turn]]".into());
        }
        if self.turns == 0 {
            errors.push("turns: must be at least 1".into());
        }
        let known = |f: &str| fixtures::speech(f).is_some();
        for (i, s) in self.steps.iter().enumerate() {
            let at = format!("turn[{i}]");
            let actions =
                s.say.is_some() as u8 + s.dtmf.is_some() as u8 + s.silence_ms.is_some() as u8;
            if actions != 1 {
                errors.push(format!("{at}: needs exactly one of say, dtmf, silence_ms"));
            }
            for f in s.say.iter().chain(&s.interrupt_with) {
                if !known(f) {
                    errors.push(format!(
                        "{at}: unknown speech fixture {f:?} (have {})",
                        fixtures::names().join(", ")
                    ));
                }
            }
            if let Some(d) = &s.dtmf {
                let ok = d.len() == 1
                    && d.chars()
                        .all(|c| c.is_ascii_digit() || "*#ABCD".contains(c));
                if !ok {
                    errors.push(format!("{at}: dtmf {d:?} is not one of 0-9 * # A-D"));
                }
            }
            if s.reply == Reply::Interrupt
                && (s.interrupt_after_ms.is_none() || s.interrupt_with.is_none())
            {
                errors.push(format!(
                    "{at}: reply = \"interrupt\" needs interrupt_after_ms and interrupt_with"
                ));
            }
            if s.silence_ms.is_some() && s.reply != Reply::Ignore && s.reply != Reply::Listen {
                errors.push(format!("{at}: silence cannot be interrupted"));
            }
        }
        errors
    }

    fn reply_timeout(&self) -> Duration {
        Duration::from_millis(self.reply_timeout_ms)
    }

    fn quiet(&self) -> Duration {
        Duration::from_millis(self.quiet_ms)
    }

    /// Plays the scenario on a connected caller and records what it measures.
    pub async fn run(&self, caller: &Caller, rec: &Recorder) -> Result<(), String> {
        const LONG: Duration = Duration::from_secs(60);
        if self.greeting == Greeting::Wait && !caller.wait_idle(self.quiet(), LONG).await {
            return Err("the greeting never ended".into());
        }
        for i in 0..self.turns as usize {
            let step = &self.steps[i % self.steps.len()];
            Counters::add(&rec.counters.turns, 1);
            if let Some(ms) = step.silence_ms {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                continue;
            }
            let (since, speech) = if let Some(f) = &step.say {
                let audio = fixtures::speech(f).ok_or("fixture vanished")?;
                let spoken = caller.say(audio).await.map_err(|e| e.to_string())?;
                (spoken.ended, true)
            } else if let Some(d) = step.dtmf.as_ref().and_then(|d| d.chars().next()) {
                let now = Instant::now();
                caller.dtmf(d);
                (now, false)
            } else {
                continue;
            };
            match step.reply {
                Reply::Ignore => {}
                Reply::Listen => self.listen(caller, rec, since, speech).await?,
                Reply::Interrupt => {
                    let Some(first) = self.reply_starts(caller, rec, since, speech).await else {
                        continue;
                    };
                    let after = Duration::from_millis(step.interrupt_after_ms.unwrap_or(0));
                    tokio::time::sleep_until(first + after).await;
                    let with = step
                        .interrupt_with
                        .as_deref()
                        .and_then(fixtures::speech)
                        .ok_or("fixture vanished")?;
                    let clears = caller.state().clears.len();
                    let spoken = caller.say_later(with);
                    let clear = caller
                        .wait_for(Condition::ClearsAbove(clears), Duration::from_secs(3))
                        .await;
                    let window = spoken.await.map_err(|_| "call ended while interrupting")?;
                    match clear {
                        Some(at) => {
                            Counters::add(&rec.counters.barge_ins, 1);
                            rec.barge_in(at.saturating_duration_since(window.started));
                        }
                        None => {
                            Counters::add(&rec.counters.missed_barge_ins, 1);
                            rec.error("no clear after barge-in".into());
                        }
                    }
                    // The interruption is the caller's next turn: it gets a reply.
                    Counters::add(&rec.counters.turns, 1);
                    self.listen(caller, rec, window.ended, true).await?;
                }
            }
        }
        Ok(())
    }

    /// Waits for the reply to start; records its latency, or an unanswered turn.
    async fn reply_starts(
        &self,
        caller: &Caller,
        rec: &Recorder,
        since: Instant,
        speech: bool,
    ) -> Option<Instant> {
        match caller.wait_media_since(since, self.reply_timeout()).await {
            Some(first) => {
                if speech {
                    rec.response(first.saturating_duration_since(since));
                }
                Some(first)
            }
            None => {
                Counters::add(&rec.counters.unanswered_turns, 1);
                rec.error(format!("no reply within {} ms", self.reply_timeout_ms));
                None
            }
        }
    }

    async fn listen(
        &self,
        caller: &Caller,
        rec: &Recorder,
        since: Instant,
        speech: bool,
    ) -> Result<(), String> {
        if self
            .reply_starts(caller, rec, since, speech)
            .await
            .is_some()
            && !caller
                .wait_idle(self.quiet(), Duration::from_secs(120))
                .await
        {
            return Err("the reply never ended".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_scenarios_are_valid() {
        for (name, _) in BUILT_IN {
            let s = Scenario::load(name).unwrap();
            assert_eq!(s.name, *name);
        }
    }

    #[test]
    fn every_problem_is_reported() {
        let text = r#"
            name = "bad"
            turns = 0
            [[turn]]
            say = "nope"
            dtmf = "x"
            reply = "interrupt"
        "#;
        let err = Scenario::parse(text, "t").unwrap_err();
        for part in [
            "turns",
            "exactly one",
            "nope",
            "dtmf \"x\"",
            "interrupt_after_ms",
        ] {
            assert!(err.contains(part), "{part} missing from {err}");
        }
    }

    #[test]
    fn unknown_keys_are_errors() {
        assert!(
            Scenario::parse("name='x'\nturns=1\nrepeat=2\n[[turn]]\nsay='yes'\n", "t").is_err()
        );
    }
}
