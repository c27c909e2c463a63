//! The caller talking over the bot. `immediate` (the default): speech
//! cancels the turn at once (the turn controller); if what follows was only
//! a backchannel, or no words came within `resume_after_ms`, the turn goes
//! on from the sentence cut off. `confirm`: speech stops new audio but
//! keeps it queued; an interim transcript with a word that is not a
//! backchannel, or voiced speech past `confirm_ms` (the VAD's barge-in in
//! this mode), confirms the interruption (`clear` and cancel); otherwise
//! the turn carries on where it paused.

use ractor::ActorRef;

use super::SupervisorState;
use crate::metrics as m;
use crate::policy::BargeInMode;
use crate::protocol::{MediaOutMsg, SupervisorMsg};
use crate::turns::Event as TurnEvent;
use crate::util::AbortOnDrop;

impl SupervisorState {
    fn confirming(&self) -> bool {
        let b = &self.ctx.policy.barge_in;
        b.enabled && b.mode == BargeInMode::Confirm
    }

    /// Speech began: in `confirm`, over a turn whose audio is playing, hold
    /// its audio until the caller means it (or stops).
    pub(super) fn hold_if_confirming(&mut self) {
        let Some(generation) = self.turns.playing().filter(|_| self.confirming()) else {
            return;
        };
        if self.holding.is_some() {
            return;
        }
        self.holding = Some(generation);
        self.spoken_over = Some(generation);
        self.ctx.routes.media_out.send(MediaOutMsg::Hold {
            generation,
            held: true,
        });
    }

    /// What the caller is saying so far: a word that is not a backchannel
    /// confirms the interruption.
    pub(super) fn interim(&mut self, myself: &ActorRef<SupervisorMsg>, text: &str) {
        if self.holding.is_some() && !text.trim().is_empty() && !self.rules.is_backchannel(text) {
            self.confirm(myself, "words");
        }
    }

    /// The interruption is real: cancel the turn everywhere, `clear`.
    pub(super) fn confirm(&mut self, myself: &ActorRef<SupervisorMsg>, why: &'static str) {
        self.holding = None;
        self.spoken_over = None;
        metrics::counter!(m::RULE_DECISIONS, "rule" => "barge_in", "action" => why).increment(1);
        self.apply(myself, TurnEvent::BargeIn);
    }

    /// Speech ended unconfirmed: the held turn carries on.
    pub(super) fn release(&mut self) {
        let Some(generation) = self.holding.take() else {
            return;
        };
        self.ctx.routes.media_out.send(MediaOutMsg::Hold {
            generation,
            held: false,
        });
    }

    /// The caller's words (after the rules) when they spoke over the bot:
    /// a backchannel is dropped (`confirm`: the turn carried on) or resumes
    /// the cut turn (`immediate`); other words take the turn.
    pub(super) fn over_the_bot(
        &mut self,
        myself: &ActorRef<SupervisorMsg>,
        event: TurnEvent,
    ) -> Option<TurnEvent> {
        let TurnEvent::Utterance { text } = event else {
            return Some(event);
        };
        if let Some(generation) = self.spoken_over.take() {
            // Said over the bot, so not an answer to anything: even if the
            // turn has finished meanwhile, "ok" gets no reply.
            if self.rules.is_backchannel(&text) {
                metrics::counter!(m::RULE_DECISIONS, "rule" => "barge_in", "action" => "backchannel")
                    .increment(1);
                self.ctx.recorder.event("backchannel", "the bot carried on");
                return None;
            }
            if self.turns.active() == Some(generation) {
                // Words that came only with the final transcript: interrupt now.
                self.confirm(myself, "words");
            }
        }
        if self.resuming() && self.rules.is_backchannel(&text) {
            return Some(self.resume("backchannel"));
        }
        Some(TurnEvent::Utterance { text })
    }

    /// After the caller stopped talking over a turn that may be resumed:
    /// if no words come within `barge_in.resume_after_ms`, it is.
    pub(super) fn check_resume_later(&mut self, myself: &ActorRef<SupervisorMsg>) {
        let after = self.ctx.policy.barge_in.resume_after_ms;
        let Some(generation) = self.turns.resumable().filter(|_| after > 0) else {
            return;
        };
        let me = myself.clone();
        self.resume_timer = Some(AbortOnDrop::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(u64::from(after))).await;
            let _ = me.send_message(SupervisorMsg::ResumeCheck { generation });
        }));
    }

    /// Whether an interrupted turn may still be resumed.
    pub(super) fn resuming(&self) -> bool {
        self.turns.resumable().is_some() && self.ctx.policy.barge_in.resume_after_ms > 0
    }

    /// The interruption was false (`why`: `backchannel`, `no_words`): the
    /// interrupted turn goes on from the sentence cut off.
    pub(super) fn resume(&mut self, why: &'static str) -> TurnEvent {
        let line = match self.turns.resumable() {
            Some(g) if self.resuming() => self.ctx.history().take_unheard(g).join(" "),
            _ => String::new(),
        };
        if !line.is_empty() {
            metrics::counter!(m::RULE_DECISIONS, "rule" => "barge_in", "action" => why)
                .increment(1);
            self.ctx.recorder.event("resumed", why);
        }
        TurnEvent::Resume { line }
    }
}
