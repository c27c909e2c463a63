//! A call Hark placed, before anyone is known to be there: the bot stays
//! quiet until the callee's first words, the carrier's verdict (when the
//! call was placed with machine detection) or `answer_timeout_ms`, so a
//! person is not talked over. A machine gets the policy's voicemail
//! message after its beep — the carrier's `machine_end_*` verdict or the
//! beep `Vad` hears, whichever comes first, or `beep_timeout_secs` — or a
//! hang-up; either way the disposition is `voicemail`.

use std::sync::atomic::Ordering;
use std::time::Duration;

use ractor::ActorRef;

use super::SupervisorState;
use crate::policy::MachineAction;
use crate::protocol::{AnsweredBy, EndReason, SupervisorMsg};
use crate::turns::Event as TurnEvent;
use crate::util::AbortOnDrop;

/// Where an outbound call's answer stands.
pub(super) struct Answering {
    machine: bool,
    /// The call's opening (greeting, consent question), held until a person is there.
    start: Option<TurnEvent>,
    /// Words heard while the verdict was awaited.
    heard: Vec<String>,
    timer: Option<AbortOnDrop>,
}

fn arm(myself: &ActorRef<SupervisorMsg>, after: Duration, machine: bool) -> AbortOnDrop {
    let me = myself.clone();
    AbortOnDrop::spawn(async move {
        tokio::time::sleep(after).await;
        let _ = me.send_message(SupervisorMsg::AnswerTimeout { machine });
    })
}

impl SupervisorState {
    /// The call's start: its opening (below), or for a call taken over from
    /// a lost node, none — the carrier said the line and the caller speaks
    /// next. Consent is not asked again and nothing more is recorded (this
    /// node does not know what they agreed to).
    pub(super) fn begin(&mut self, myself: &ActorRef<SupervisorMsg>) {
        if self.ctx.resumed {
            self.ctx
                .recorder
                .event("resumed", "taken over from a lost node");
            return;
        }
        let start = self.rules.call_started(&self.ctx);
        self.open(myself, start);
    }

    /// At the call's start: the opening `start` now, or held for an
    /// outbound call until a person is there.
    pub(super) fn open(&mut self, myself: &ActorRef<SupervisorMsg>, start: TurnEvent) {
        let Some(early) = self.ctx.placed.as_ref().map(|p| p.verdict) else {
            return self.apply(myself, start);
        };
        let after = Duration::from_millis(u64::from(self.ctx.policy.outbound.answer_timeout_ms));
        self.answering = Some(Answering {
            machine: false,
            start: Some(start),
            heard: Vec::new(),
            timer: Some(arm(myself, after, false)),
        });
        self.ctx
            .recorder
            .event("outbound", "waiting for the callee");
        if let Some(verdict) = early {
            self.answered(myself, verdict);
        }
    }

    /// Whether the caller's words were taken by the answering phase.
    pub(super) fn answering_takes(&mut self, myself: &ActorRef<SupervisorMsg>, text: &str) -> bool {
        let Some(answering) = self.answering.as_mut() else {
            return false;
        };
        if answering.machine {
            // A machine's greeting: nobody to answer.
            return true;
        }
        answering.heard.push(text.to_owned());
        let waits = self
            .ctx
            .placed
            .as_ref()
            .is_some_and(|p| p.machine_detection);
        if !waits {
            self.person(myself, "first_words");
        }
        true
    }

    /// The carrier's verdict.
    pub(super) fn answered(&mut self, myself: &ActorRef<SupervisorMsg>, by: AnsweredBy) {
        self.ctx.recorder.event("answered_by", by.as_str());
        let Some(answering) = self.answering.as_mut() else {
            tracing::debug!(parent: &self.ctx.span, verdict = by.as_str(), "verdict after the call began; noted");
            return;
        };
        match by {
            AnsweredBy::Human | AnsweredBy::Unknown => {
                if !answering.machine {
                    self.person(myself, by.as_str());
                }
            }
            AnsweredBy::Fax => self.machine_done(myself, true),
            AnsweredBy::Machine { ended: true } => self.machine_done(myself, false),
            AnsweredBy::Machine { ended: false } => {
                if self.ctx.policy.outbound.on_machine == MachineAction::HangUp {
                    return self.machine_done(myself, true);
                }
                if !answering.machine {
                    answering.machine = true;
                    answering.heard.clear();
                    let after =
                        Duration::from_secs(u64::from(self.ctx.policy.outbound.beep_timeout_secs));
                    answering.timer = Some(arm(myself, after, true));
                }
            }
        }
    }

    /// `Vad` heard a beep: a machine, ready for the message.
    pub(super) fn beep(&mut self, myself: &ActorRef<SupervisorMsg>, hz: f32, ms: u32) {
        if self.answering.is_none() {
            return;
        }
        self.ctx
            .recorder
            .event("beep", format!("{hz:.0} Hz, {ms} ms"));
        self.machine_done(myself, false);
    }

    pub(super) fn answer_timeout(&mut self, myself: &ActorRef<SupervisorMsg>, machine: bool) {
        match self.answering.as_ref() {
            Some(a) if a.machine == machine && machine => {
                self.ctx.recorder.event("beep", "none in time");
                self.machine_done(myself, false);
            }
            Some(a) if a.machine == machine => self.person(myself, "timeout"),
            _ => {}
        }
    }

    /// A person is there: the opening plays, or their words get a reply.
    fn person(&mut self, myself: &ActorRef<SupervisorMsg>, why: &str) {
        let Some(mut answering) = self.answering.take() else {
            return;
        };
        self.ctx.listen_for_beep.store(false, Ordering::Relaxed);
        self.ctx
            .recorder
            .event("outbound", format!("a person ({why})"));
        tracing::info!(parent: &self.ctx.span, why, "outbound: a person answered");
        let start = answering.start.take().unwrap_or(TurnEvent::CallStarted);
        self.apply(myself, start);
        // No opening line: the callee's words get the first reply.
        if self.turns.active().is_none() && !answering.heard.is_empty() {
            let text = answering.heard.join(" ");
            self.apply(myself, TurnEvent::Utterance { text });
        }
    }

    /// A machine whose greeting is over: the message, or a hang-up.
    fn machine_done(&mut self, myself: &ActorRef<SupervisorMsg>, hang_up: bool) {
        if self.answering.take().is_none() {
            return;
        }
        self.ctx.listen_for_beep.store(false, Ordering::Relaxed);
        let outbound = &self.ctx.policy.outbound;
        if hang_up || outbound.on_machine == MachineAction::HangUp {
            tracing::info!(parent: &self.ctx.span, "outbound: a machine; hanging up");
            return self.apply(
                myself,
                TurnEvent::Hangup {
                    reason: EndReason::Machine,
                },
            );
        }
        tracing::info!(parent: &self.ctx.span, "outbound: a machine; leaving the message");
        let lead = self
            .ctx
            .placed
            .as_ref()
            .map(|p| p.lead.clone())
            .unwrap_or_default();
        let line = self.ctx.policy.voicemail_for(&lead);
        self.apply(
            myself,
            TurnEvent::EndWith {
                reason: EndReason::Voicemail,
                line,
            },
        );
    }

    /// A key pressed: a person (machines do not press keys).
    pub(super) fn key_pressed(&mut self, myself: &ActorRef<SupervisorMsg>) {
        if self.answering.as_ref().is_some_and(|a| !a.machine) {
            self.person(myself, "key");
        }
    }

    /// Whether the call is still waiting to know who answered.
    pub(super) fn is_answering(&self) -> bool {
        self.answering.is_some()
    }
}
