//! The supervisor's side of a transfer: a request raised by a rule waits
//! for the escalation line to play, then goes to `Transfer`; while the
//! caller is away (on hold, or with an agent) the stream's end does not end
//! the call and the caller's silence is not timed; a caller handed on ends
//! the tree (`transferred`), one who comes back hears the line `Transfer`
//! chose on the new stream.

use ractor::ActorRef;

use super::SupervisorState;
use crate::policy::TransferMode;
use crate::protocol::{EndReason, Generation, SupervisorMsg, TransferMsg, TransferOutcome};
use crate::turns::Event as TurnEvent;

impl SupervisorState {
    /// A rule raised a transfer request: it starts once the line has played.
    pub(super) fn transfer_raised(&mut self, target: String) {
        if self.ctx.policy.transfer.mode == TransferMode::Off {
            return;
        }
        match self.turns.active() {
            Some(line) => self.transfer_after = Some((line, target)),
            None => {
                self.ctx.routes.transfer.send(TransferMsg::Start { target });
            }
        }
    }

    /// Turn `generation` played: a transfer waiting for it starts (a line
    /// whose turn failed waits for the next turn that plays).
    pub(super) fn line_done(&mut self, generation: Generation) {
        if self
            .transfer_after
            .as_ref()
            .is_some_and(|(line, _)| generation >= *line)
            && let Some((_, target)) = self.transfer_after.take()
        {
            self.ctx.routes.transfer.send(TransferMsg::Start { target });
        }
    }

    pub(super) fn transfer_over(
        &mut self,
        myself: &ActorRef<SupervisorMsg>,
        outcome: TransferOutcome,
    ) {
        match outcome {
            TransferOutcome::HandedOn => {
                let reason = EndReason::Transferred;
                self.apply(myself, TurnEvent::Hangup { reason });
            }
            TransferOutcome::Back { line } => {
                self.rules.transfer_returned();
                if self.ctx.is_away() {
                    self.back_line = Some(line);
                } else {
                    self.apply(myself, TurnEvent::Answer { line });
                }
            }
        }
    }

    /// A new stream of the call started: the caller is back.
    pub(super) fn stream_attached(&mut self, myself: &ActorRef<SupervisorMsg>, stream_id: &str) {
        self.ctx.set_away(false);
        self.ctx.recording.resume();
        self.ctx.recorder.event(
            "stream_started",
            crate::util::Escaped(stream_id).to_string(),
        );
        tracing::info!(parent: &self.ctx.span, stream_id = %crate::util::Escaped(stream_id), "the caller is back on a new stream");
        if let Some(line) = self.back_line.take() {
            self.apply(myself, TurnEvent::Answer { line });
        }
    }

    /// The stream ended while the caller is away: the call goes on without
    /// one until the caller comes back or the carrier says it is over.
    pub(super) fn stream_ended_away(&mut self, reason: EndReason) -> bool {
        if !self.ctx.is_away() || reason == EndReason::Completed {
            return false;
        }
        self.ctx
            .recorder
            .event("stream_ended", format!("{} while away", reason.as_str()));
        true
    }
}
