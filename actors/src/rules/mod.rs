//! Rules Hark enforces on a live call, pure and per call: the supervisor
//! asks them about the call's start, the caller's words, keys and silences
//! before the turn controller hears of them, and carries out their verdict.
//! Each decision is put on the call's record.
//!
//! # Layout
//! - [`backchannel`] — "ok", "haan"…: listening, not taking the turn.
//! - [`claims`] — what the bot must never say, checked per sentence
//!   before TTS (by the `Llm` actor).
//! - [`consent`] — the recording question, yes/no in words or keys.
//! - [`escalation`] — when the caller should get a person; [`sentiment`] —
//!   the lexicon scorer it uses.
//! - [`profanity`] — whole-word lists (English, Hindi, Hinglish), normalised.
//! - [`do_not_call`] — "don't call me again" in the same three: the call
//!   ends and the number goes on the do-not-call list.
//! - [`idle`] — re-prompts for a silent caller, then the end.
//! - [`menu`] — the keypad menu after the greeting; [`language`] —
//!   switching language on the words the STT reports in another.
//! - [`phrases`] — whole-word phrase matching, longest first.

use std::time::Duration;

use crate::context::CallContext;
use crate::metrics as m;
use crate::policy::rules::ProfanityAction;
use crate::policy::{ConsentCovers, ConsentMode, MenuChoice, PolicyFile, RecordingMode};
use crate::protocol::EndReason;
use crate::records::now_ms;
use crate::turns::Event as TurnEvent;

pub mod backchannel;
pub mod claims;
pub mod consent;
pub mod do_not_call;
pub mod escalation;
pub mod idle;
pub mod language;
pub mod menu;
pub mod phrases;
pub mod profanity;
pub mod sentiment;

/// What the rules made of a key the caller pressed.
#[derive(Debug, Clone, PartialEq)]
pub enum KeyTaken {
    /// Not a rule's: the turn controller's.
    No,
    /// A rule's, with what it says (if anything).
    Yes(Option<TurnEvent>),
}

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
    do_not_call: Option<do_not_call::DoNotCall>,
    do_not_call_goodbye: String,
    consent: consent::Consent,
    /// When the consent question was first put (ms since the epoch).
    consent_asked_at: i64,
    consent_wait: Duration,
    idle: idle::Idle,
    escalation: escalation::Escalation,
    menu: menu::Menu,
    language: language::LanguageSwitch,
    /// A language a rule chose, for the supervisor to carry out.
    switch: Option<String>,
    /// A transfer request's target, for the supervisor to carry out.
    transfer: Option<String>,
    backchannels: backchannel::Backchannels,
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
            menu: menu::Menu::new(&policy.rules.menu),
            language: language::LanguageSwitch::new(
                policy.rules.language_switch.after_words,
                policy.languages.keys().cloned(),
            ),
            switch: None,
            transfer: None,
            backchannels: backchannel::Backchannels::new(
                policy.barge_in.backchannels.iter().map(String::as_str),
            ),
            profanity: (p.action != ProfanityAction::Off).then(|| {
                (
                    profanity::Profanity::new(p.words.iter().map(String::as_str)),
                    p.action,
                )
            }),
            warning: p.warning.clone(),
            goodbye: p.goodbye.clone(),
            warned: false,
            do_not_call: policy.rules.do_not_call.enabled.then(|| {
                do_not_call::DoNotCall::new(
                    policy.rules.do_not_call.phrases.iter().map(String::as_str),
                )
            }),
            do_not_call_goodbye: policy.rules.do_not_call.goodbye.clone(),
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
        if ctx.policy.recording == RecordingMode::Always {
            // Recorded from here: the notice is the first thing said.
            let now = now_ms();
            self.consent_decided(ctx, consent::Answer::NotRequired, consent::How::Notice, now);
            let notice = ctx.spoken().policy.recording_notice.clone();
            return TurnEvent::Answer {
                line: self.greeting(ctx, &notice),
            };
        }
        if ctx.policy.rules.menu.is_on() {
            return TurnEvent::Answer {
                line: self.greeting(ctx, ""),
            };
        }
        TurnEvent::CallStarted
    }

    /// `before`, the greeting and the menu's prompt (the menu opens).
    fn greeting(&mut self, ctx: &CallContext, before: &str) -> String {
        let spoken = ctx.spoken();
        let prompt = self.menu.offer().unwrap_or_default();
        if !prompt.is_empty() {
            decided(ctx, "menu", "offered");
        }
        [before, spoken.policy.greeting.as_str(), prompt]
            .iter()
            .map(|l| l.trim())
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Whether the caller's next words may turn the transcript off (their
    /// consent answer, when a no covers it): then they are recorded after
    /// the rules have decided.
    pub fn may_withhold_text(&self, ctx: &CallContext) -> bool {
        self.consent.pending() && ctx.policy.rules.consent.covers(ConsentCovers::Transcript)
    }

    /// Whether the caller's words only said they are listening.
    pub fn is_backchannel(&self, text: &str) -> bool {
        self.backchannels.is(text)
    }

    /// The language a rule chose since the last look, to switch to now.
    pub fn take_switch(&mut self) -> Option<String> {
        self.switch.take()
    }

    /// The language the STT reports these words in, if a run of them says
    /// the caller went on in another of the policy's languages.
    pub fn language_of(&mut self, languages: &[String], ctx: &CallContext) -> Option<String> {
        if languages.is_empty() {
            return None;
        }
        self.language.on_words(&ctx.spoken().code, languages)
    }

    /// The lines of the language the call switched to.
    pub fn set_language(&mut self, policy: &PolicyFile) {
        self.warning.clone_from(&policy.rules.profanity.warning);
        self.goodbye.clone_from(&policy.rules.profanity.goodbye);
        self.do_not_call_goodbye
            .clone_from(&policy.rules.do_not_call.goodbye);
        self.consent.set_lines(&policy.rules.consent);
        self.idle.set_lines(&policy.rules.idle);
        self.menu.set_prompt(&policy.rules.menu.prompt);
    }

    /// A menu key's action.
    fn menu_choice(
        &mut self,
        choice: MenuChoice,
        how: &'static str,
        ctx: &CallContext,
    ) -> Option<TurnEvent> {
        decided(ctx, "menu", how);
        match choice {
            MenuChoice::Say { line } => Some(TurnEvent::Answer { line }),
            MenuChoice::End { line } => Some(TurnEvent::EndWith {
                reason: EndReason::Menu,
                line,
            }),
            MenuChoice::Transfer { target } => {
                let request = self.escalation.on_menu(target)?;
                Some(self.escalate(request, ctx))
            }
            MenuChoice::Language { code } => {
                let greeting = ctx.language(&code)?.policy.greeting.clone();
                self.switch = Some(code);
                Some(TurnEvent::Answer { line: greeting })
            }
            MenuChoice::Slot { slot, value, line } => {
                ctx.record_outcome(serde_json::Map::from_iter([(slot, value)]), None);
                (!line.trim().is_empty()).then_some(TurnEvent::Answer { line })
            }
        }
    }

    /// How long the caller may stay silent once the bot has finished before
    /// [`Rules::silence_event`]; `None`: as long as they like.
    pub fn silence_after(&self) -> Option<Duration> {
        if self.consent.pending() {
            Some(self.consent_wait)
        } else if self.menu.is_open() {
            Some(self.menu.timeout())
        } else {
            self.idle.after()
        }
    }

    /// The caller stayed silent for [`Rules::silence_after`].
    pub fn silence_event(&mut self, ctx: &CallContext) -> Option<TurnEvent> {
        if let Some(step) = self.consent.on_silence() {
            return Some(self.consent_step(step, ctx));
        }
        if self.menu.is_open() {
            let choice = self.menu.on_timeout()?;
            return self.menu_choice(choice, "default", ctx);
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

    /// A key the caller pressed: the consent question's, the menu's, the
    /// escalation key, or else the turn controller's.
    pub fn dtmf_event(&mut self, digit: char, ctx: &CallContext) -> KeyTaken {
        self.idle.caller_active();
        if let Some(step) = self.consent.on_dtmf(digit) {
            return KeyTaken::Yes(Some(self.consent_step(step, ctx)));
        }
        if let Some(choice) = self.menu.on_dtmf(digit) {
            return KeyTaken::Yes(self.menu_choice(choice, "chosen", ctx));
        }
        match self.escalation.on_dtmf(digit) {
            Some(request) => KeyTaken::Yes(Some(self.escalate(request, ctx))),
            None => KeyTaken::No,
        }
    }

    /// The caller spoke but no words came, or the bot could not reply.
    pub fn not_understood(&mut self, ctx: &CallContext) -> Option<TurnEvent> {
        let request = self.escalation.on_not_understood()?;
        Some(self.escalate(request, ctx))
    }

    /// Someone asked through the API for the caller to go to `target`.
    pub fn api_transfer(&mut self, target: String, ctx: &CallContext) -> Option<TurnEvent> {
        let request = self.escalation.on_api(target)?;
        Some(self.escalate(request, ctx))
    }

    /// A transfer request raised since the last look, if any.
    pub fn take_transfer(&mut self) -> Option<String> {
        self.transfer.take()
    }

    /// The caller is back with the bot: a later request may transfer again.
    pub fn transfer_returned(&mut self) {
        self.escalation.rearm();
    }

    fn escalate(&mut self, request: escalation::Request, ctx: &CallContext) -> TurnEvent {
        self.transfer = Some(request.target.clone());
        escalate(request, ctx)
    }

    /// The model called `transfer_call` with a valid `target`.
    pub fn transfer_requested(&mut self, target: String, ctx: &CallContext) -> Option<TurnEvent> {
        let request = self.escalation.on_tool(target)?;
        Some(self.escalate(request, ctx))
    }

    fn consent_step(&mut self, step: consent::Step, ctx: &CallContext) -> TurnEvent {
        match step {
            consent::Step::AskAgain(line) => {
                decided(ctx, "consent", "asked_again");
                TurnEvent::Answer { line }
            }
            consent::Step::Decided { answer, how, line } => {
                self.consent_decided(ctx, answer, how, self.consent_asked_at);
                TurnEvent::Answer {
                    line: self.greeting(ctx, &line),
                }
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
        // What the caller allowed, within what the policy records at all.
        let allows = answer.allows() && ctx.policy.recording != RecordingMode::Never;
        let covers_text = ctx.policy.rules.consent.covers(ConsentCovers::Transcript);
        let text_kept = answer.allows() || !covers_text;
        ctx.consent.set(allows, text_kept);
        // Recording starts at the caller's yes (or the notice): nothing
        // from before it is kept, and a no never starts it.
        if allows && ctx.recording.start(&ctx.ids) {
            tracing::info!(parent: &ctx.span, "recording started");
        }
        if !text_kept {
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
        // Before anything else: a request not to be called is honoured
        // whatever else the words say.
        if self.do_not_call.as_ref().is_some_and(|r| r.asked(&text)) {
            decided(ctx, "do_not_call", "ended");
            return TurnEvent::EndWith {
                reason: EndReason::DoNotCall,
                line: self.do_not_call_goodbye.clone(),
            };
        }
        let (rule, action, event) = match self.on_caller_words(&text) {
            Verdict::Pass => {
                if let Some(step) = self.consent.on_words(&text) {
                    return self.consent_step(step, ctx);
                }
                self.menu.close();
                if let Some(request) = self.escalation.on_words(&text) {
                    return self.escalate(request, ctx);
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
/// the policy's line said; `[transfer]` decides what happens next.
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
        line: ctx.spoken().policy.rules.escalation.line.clone(),
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
