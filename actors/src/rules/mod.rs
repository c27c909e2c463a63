//! Rules Hark enforces on a live call, pure and per call: the supervisor
//! asks them about the call's start, the caller's words, keys and silences
//! before the turn controller hears of them, and carries out their verdict.
//! Each decision is put on the call's record.
//!
//! # Layout
//! - [`claims`] — what the bot must never say, checked per sentence
//!   before TTS (by the `Llm` actor).
//! - [`consent`] — the recording question, yes/no in words or keys.
//! - [`escalation`] — when the caller should get a person; [`sentiment`] —
//!   the lexicon scorer it uses.
//! - [`profanity`] — whole-word lists (English, Hindi, Hinglish), normalised.
//! - [`idle`] — re-prompts for a silent caller, then the end.
//! - [`phrases`] — whole-word phrase matching, longest first.

use std::time::Duration;

use crate::context::CallContext;
use crate::metrics as m;
use crate::policy::rules::ProfanityAction;
use crate::policy::{ConsentCovers, ConsentMode, PolicyFile};
use crate::protocol::EndReason;
use crate::records::now_ms;
use crate::turns::Event as TurnEvent;

pub mod claims;
pub mod consent;
pub mod escalation;
pub mod idle;
pub mod phrases;
pub mod profanity;
pub mod sentiment;

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
    consent: consent::Consent,
    /// When the consent question was first put (ms since the epoch).
    consent_asked_at: i64,
    consent_wait: Duration,
    idle: idle::Idle,
    escalation: escalation::Escalation,
}

impl Rules {
    /// `ask_consent`: whether this caller is asked (the runtime knows the
    /// number; see `ConsentSettings::asks`).
    pub fn from_policy(policy: &PolicyFile, ask_consent: bool) -> Self {
        let p = &policy.rules.profanity;
        Self {
            consent: consent::Consent::new(&policy.rules.consent, ask_consent),
            consent_asked_at: 0,
            consent_wait: Duration::from_secs(u64::from(policy.rules.consent.wait_secs)),
            idle: idle::Idle::new(&policy.rules.idle),
            escalation: escalation::Escalation::new(&policy.rules.escalation),
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

    /// How the call starts: the consent question before the greeting, or
    /// the greeting. A caller the policy need not ask may be recorded, and
    /// that decision is on record too.
    pub fn call_started(&mut self, ctx: &CallContext) -> TurnEvent {
        if let Some(prompt) = self.consent.prompt() {
            self.consent_asked_at = now_ms();
            decided(ctx, "consent", "asked");
            return TurnEvent::Answer {
                line: prompt.to_owned(),
            };
        }
        if ctx.policy.rules.consent.mode == ConsentMode::Optional {
            let now = now_ms();
            self.consent_decided(
                ctx,
                consent::Answer::NotRequired,
                consent::How::NotAsked,
                now,
            );
        }
        TurnEvent::CallStarted
    }

    /// How long the caller may stay silent once the bot has finished before
    /// [`Rules::silence_event`]; `None`: as long as they like.
    pub fn silence_after(&self) -> Option<Duration> {
        if self.consent.pending() {
            Some(self.consent_wait)
        } else {
            self.idle.after()
        }
    }

    /// The caller stayed silent for [`Rules::silence_after`].
    pub fn silence_event(&mut self, ctx: &CallContext) -> Option<TurnEvent> {
        if let Some(step) = self.consent.on_silence() {
            return Some(self.consent_step(step, ctx));
        }
        Some(match self.idle.on_silence()? {
            idle::Step::Reprompt(line) => {
                decided(ctx, "idle", "reprompted");
                TurnEvent::Answer { line }
            }
            idle::Step::End(line) => {
                decided(ctx, "idle", "ended");
                TurnEvent::EndWith {
                    reason: EndReason::Idle,
                    line,
                }
            }
        })
    }

    /// A key the caller pressed, if a rule takes it (the consent question);
    /// `None`: the turn controller's.
    pub fn dtmf_event(&mut self, digit: char, ctx: &CallContext) -> Option<TurnEvent> {
        self.idle.caller_active();
        if let Some(step) = self.consent.on_dtmf(digit) {
            return Some(self.consent_step(step, ctx));
        }
        let request = self.escalation.on_dtmf(digit)?;
        Some(escalate(request, ctx))
    }

    /// The caller spoke but no words came, or the bot could not reply.
    pub fn not_understood(&mut self, ctx: &CallContext) -> Option<TurnEvent> {
        let request = self.escalation.on_not_understood()?;
        Some(escalate(request, ctx))
    }

    /// The model called `transfer_call` with a valid `target`.
    pub fn transfer_requested(&mut self, target: String, ctx: &CallContext) -> Option<TurnEvent> {
        let request = self.escalation.on_tool(target)?;
        Some(escalate(request, ctx))
    }

    fn consent_step(&mut self, step: consent::Step, ctx: &CallContext) -> TurnEvent {
        match step {
            consent::Step::AskAgain(line) => {
                decided(ctx, "consent", "asked_again");
                TurnEvent::Answer { line }
            }
            consent::Step::Decided { answer, how, line } => {
                self.consent_decided(ctx, answer, how, self.consent_asked_at);
                let greeting = ctx.policy.greeting.trim();
                let line = match (line.trim().is_empty(), greeting.is_empty()) {
                    (_, true) => line,
                    (true, false) => greeting.to_owned(),
                    (false, false) => format!("{} {greeting}", line.trim()),
                };
                TurnEvent::Answer { line }
            }
        }
    }

    /// Sets the call's flags and records the decision.
    fn consent_decided(
        &self,
        ctx: &CallContext,
        answer: consent::Answer,
        how: consent::How,
        asked_at: i64,
    ) {
        let allows = answer.allows();
        let covers_text = ctx.policy.rules.consent.covers(ConsentCovers::Transcript);
        ctx.consent.set(allows, allows || !covers_text);
        if !allows && covers_text {
            ctx.recorder.withhold_text();
        }
        metrics::counter!(m::CONSENT, "result" => answer.as_str()).increment(1);
        ctx.recorder
            .consent(answer.as_str(), how.as_str(), asked_at);
        ctx.recorder.event(
            "consent",
            format!("{} by {}", answer.as_str(), how.as_str()),
        );
        tracing::info!(parent: &ctx.span, answer = answer.as_str(), how = how.as_str(), "consent decided");
    }

    /// What the turn controller gets for the caller's words: the words, or
    /// a rule's line. A decision is counted, on record and in the log
    /// (without the words).
    pub fn turn_event(&mut self, text: String, ctx: &CallContext) -> TurnEvent {
        if !text.trim().is_empty() {
            self.idle.caller_active();
        }
        let (rule, action, event) = match self.on_caller_words(&text) {
            Verdict::Pass => {
                if let Some(step) = self.consent.on_words(&text) {
                    return self.consent_step(step, ctx);
                }
                if let Some(request) = self.escalation.on_words(&text) {
                    return escalate(request, ctx);
                }
                return TurnEvent::Utterance { text };
            }
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
        decided(ctx, rule, action);
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

/// A transfer request: counted, on record with its reason and target, and
/// the policy's line said (the call goes on with the bot until transfers
/// exist).
fn escalate(request: escalation::Request, ctx: &CallContext) -> TurnEvent {
    let reason = request.reason.as_str();
    decided(ctx, "escalation", reason);
    metrics::counter!(m::TRANSFER_REQUESTS, "reason" => reason).increment(1);
    ctx.recorder.event(
        "transfer_requested",
        format!("{reason} to {}", request.target),
    );
    tracing::info!(parent: &ctx.span, reason, target = %request.target, "transfer requested");
    let disposition = &ctx.policy.rules.escalation.disposition;
    if !disposition.is_empty() {
        ctx.record_outcome(serde_json::Map::new(), Some(disposition.clone()));
    }
    TurnEvent::Answer {
        line: ctx.policy.rules.escalation.line.clone(),
    }
}

/// Counts a rule's decision, puts it on record and in the log.
fn decided(ctx: &CallContext, rule: &'static str, action: &'static str) {
    metrics::counter!(m::RULE_DECISIONS, "rule" => rule, "action" => action).increment(1);
    ctx.recorder.event("rule", format!("{rule}: {action}"));
    tracing::info!(parent: &ctx.span, rule, action, "rule enforced");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(action: ProfanityAction) -> Rules {
        let mut p = PolicyFile::default();
        p.rules.profanity.action = action;
        p.rules.profanity.words = vec!["jerkface".into()];
        Rules::from_policy(&p, false)
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
