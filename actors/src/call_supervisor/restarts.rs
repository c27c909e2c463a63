//! Spawning the call's children and restarting a failed one within the
//! restart budget; past it, the call ends with the apology.

use std::sync::Arc;

use ractor::{Actor, ActorCell, ActorRef, SpawnErr};
use tokio::time::Instant;

use super::SupervisorState;
use crate::child::Child;
use crate::context::CallContext;
use crate::llm::Llm;
use crate::media_in::MediaIn;
use crate::media_out::MediaOut;
use crate::metrics as m;
use crate::protocol::{ChildKind, EndReason, SupervisorMsg};
use crate::stt::Stt;
use crate::transfer::Transfer;
use crate::tts::Tts;
use crate::turns::Event as TurnEvent;
use crate::vad::Vad;

/// The call's children, downstream first so that no child sends to a route
/// not yet set. `Transfer` only where the policy hands calls on: an actor
/// costs a call ~14 KB of heap, and most policies never transfer.
pub(super) fn children(ctx: &CallContext) -> impl Iterator<Item = ChildKind> {
    let transfers = ctx.policy.transfer.mode != crate::policy::TransferMode::Off;
    [
        ChildKind::Transfer,
        ChildKind::MediaOut,
        ChildKind::Tts,
        ChildKind::Llm,
        ChildKind::Stt,
        ChildKind::Vad,
        ChildKind::MediaIn,
    ]
    .into_iter()
    .filter(move |k| transfers || *k != ChildKind::Transfer)
}

pub(super) async fn spawn_child(
    myself: &ActorRef<SupervisorMsg>,
    ctx: &Arc<CallContext>,
    kind: ChildKind,
) -> Result<ActorCell, SpawnErr> {
    let sup = myself.get_cell();
    let c = Arc::clone(ctx);
    let routes = &ctx.routes;
    Ok(match kind {
        ChildKind::MediaIn => {
            let (r, _) = Actor::spawn_linked(None, Child(MediaIn), c, sup).await?;
            routes.media_in.set(r.clone());
            r.get_cell()
        }
        ChildKind::Vad => {
            let (r, _) = Actor::spawn_linked(None, Child(Vad), c, sup).await?;
            routes.vad.set(r.clone());
            r.get_cell()
        }
        ChildKind::Stt => {
            let (r, _) = Actor::spawn_linked(None, Child(Stt), c, sup).await?;
            routes.stt.set(r.clone());
            r.get_cell()
        }
        ChildKind::Llm => {
            let (r, _) = Actor::spawn_linked(None, Child(Llm), c, sup).await?;
            routes.llm.set(r.clone());
            r.get_cell()
        }
        ChildKind::Tts => {
            let (r, _) = Actor::spawn_linked(None, Child(Tts), c, sup).await?;
            routes.tts.set(r.clone());
            r.get_cell()
        }
        ChildKind::MediaOut => {
            let (r, _) = Actor::spawn_linked(None, Child(MediaOut), c, sup).await?;
            routes.media_out.set(r.clone());
            r.get_cell()
        }
        ChildKind::Transfer => {
            let (r, _) = Actor::spawn_linked(None, Child(Transfer), c, sup).await?;
            routes.transfer.set(r.clone());
            r.get_cell()
        }
    })
}

/// Children needed to speak a line: a failure among them stops a goodbye.
fn speaks(kind: ChildKind) -> bool {
    matches!(kind, ChildKind::Llm | ChildKind::Tts | ChildKind::MediaOut)
}

impl SupervisorState {
    pub(super) async fn child_failed(
        &mut self,
        myself: &ActorRef<SupervisorMsg>,
        kind: ChildKind,
        mut reason: String,
    ) {
        let span = self.ctx.span.clone();
        if self.turns.ending().is_some() {
            tracing::warn!(parent: &span, actor = kind.as_str(), %reason, "child failed while the call was ending");
            let speaks = speaks(kind);
            return self.apply(myself, TurnEvent::ChildLostWhileEnding { speaks });
        }
        let budget = self.ctx.settings.restart_budget as usize;
        let window = self.ctx.settings.restart_window();
        loop {
            tracing::warn!(parent: &span, actor = kind.as_str(), %reason, "child actor failed");
            let now = Instant::now();
            while self
                .restarts
                .front()
                .is_some_and(|t| now.duration_since(*t) > window)
            {
                self.restarts.pop_front();
            }
            if self.restarts.len() >= budget {
                tracing::error!(
                    parent: &span,
                    actor = kind.as_str(),
                    restarts = self.restarts.len(),
                    window_secs = window.as_secs(),
                    "restart budget exhausted; ending the call with an apology"
                );
                // The apology needs the speaking children: bring the failed one back once more.
                if speaks(kind) {
                    match spawn_child(myself, &self.ctx, kind).await {
                        Ok(cell) => {
                            self.children.insert(cell.get_id(), kind);
                        }
                        Err(_) => {
                            let reason = EndReason::RestartBudget;
                            return self.apply(myself, TurnEvent::Hangup { reason });
                        }
                    }
                }
                return self.apply(myself, TurnEvent::RestartBudgetExhausted);
            }
            self.restarts.push_back(now);
            metrics::counter!(m::ACTOR_RESTARTS, "actor" => kind.as_str()).increment(1);
            match spawn_child(myself, &self.ctx, kind).await {
                Ok(cell) => {
                    self.children.insert(cell.get_id(), kind);
                    tracing::info!(parent: &span, actor = kind.as_str(), "child actor restarted");
                    self.ctx.recorder.event("child_restart", kind.as_str());
                    break;
                }
                Err(e) => reason = format!("restart failed: {e}"),
            }
        }
        let speaks = speaks(kind);
        self.apply(myself, TurnEvent::ChildRestarted { speaks });
    }
}
