//! `Transfer`: hands the caller to a person, as `[transfer]` says.
//!
//! - **cold**: the escalation line has played; the call is redirected to
//!   the target's number or SIP address and the bot leaves.
//! - **warm**: an agent is reserved (skill, language, least recently
//!   used); the caller is moved into the call's conference and hears hold
//!   audio; the agent is dialed and, alone, hears a summary of the call (the
//!   model's, or a template when it does not answer within `summary_ms`),
//!   then accepts with a key. Accepted: the bot leaves. No answer, declined,
//!   or not accepted in time: the reservation is released and the caller
//!   comes back to the bot on a new stream of the same call. Nobody free:
//!   the caller holds up to `hold_secs` while Hark looks again every few
//!   seconds, then hears the fallback line (a callback is noted).
//!
//! The carrier and the agent directory are behind [`TransferDesk`] (the
//! runtime's); the agent's leg reports back through [`TransferMsg::Agent`].

//!
//! # Layout
//! - [`desk`] — `TransferDesk`, the call control and agent directory the
//!   actor drives, and what it passes them (the agent, the handoff).
//! - [`handoff`] — the summary, transcript and slots the agent gets.

pub mod desk;
mod handoff;

use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::time::Instant;

pub use desk::{AgentDial, AgentLeg, DeskError, Handoff, HandoffLine, TransferDesk};
pub use handoff::template_summary;

use crate::context::CallContext;
use crate::metrics as m;
use crate::policy::TransferMode;
use crate::protocol::{AgentEvent, ChildKind, SupervisorMsg, TransferMsg, TransferOutcome};
use crate::util::AbortOnDrop;

/// While the caller holds, how often Hark looks for a free agent again.
const RETRY_EVERY: Duration = Duration::from_secs(2);

enum Stage {
    Idle,
    /// Nobody free: the caller holds while Hark looks again.
    Holding {
        skill: String,
    },
    /// The agent's leg is ringing or hearing the summary.
    Ringing {
        leg: String,
    },
    /// Over (handed on); nothing more to do.
    Done,
}

pub struct Transfer;

impl crate::child::CallChild for Transfer {
    const KIND: ChildKind = ChildKind::Transfer;
}

pub struct TransferState {
    ctx: Arc<CallContext>,
    stage: Stage,
    /// Each attempt's timers carry its number; stale ones are ignored.
    attempt: u32,
    target: String,
    asked: Instant,
    timer: Option<AbortOnDrop>,
    retry: Option<AbortOnDrop>,
}

impl TransferState {
    fn desk(&self) -> Option<Arc<dyn TransferDesk>> {
        self.ctx.transfer.clone()
    }

    fn kind(&self) -> &'static str {
        self.ctx.policy.transfer.mode.as_str()
    }

    fn counted(&self, result: &'static str) {
        metrics::counter!(m::TRANSFERS, "kind" => self.kind(), "result" => result).increment(1);
        self.ctx
            .recorder
            .event("transfer", format!("{} {result}", self.kind()));
        tracing::info!(parent: &self.ctx.span, kind = self.kind(), result, "transfer");
    }

    fn connected(&mut self) {
        self.counted("connected");
        metrics::histogram!(m::TRANSFER_CONNECT, "kind" => self.kind())
            .record(self.asked.elapsed().as_secs_f64());
        self.stage = Stage::Done;
        self.timer = None;
        self.retry = None;
        self.ctx
            .routes
            .supervisor
            .send(SupervisorMsg::TransferOver(TransferOutcome::HandedOn));
    }

    /// The caller stays with, or comes back to, the bot, who says `line`.
    async fn back(&mut self, result: &'static str, line: String) {
        self.counted(result);
        self.stage = Stage::Idle;
        self.timer = None;
        self.retry = None;
        if self.ctx.is_away()
            && let Some(desk) = self.desk()
            && let Err(e) = desk.back_to_bot(&self.ctx.ids).await
        {
            // The caller stays in the conference until they hang up; the
            // carrier's `completed` then ends the call.
            tracing::error!(parent: &self.ctx.span, error = %e, "could not bring the caller back from hold");
            self.ctx.recorder.event("transfer", "back failed");
        }
        self.ctx
            .routes
            .supervisor
            .send(SupervisorMsg::TransferOver(TransferOutcome::Back { line }));
    }

    fn arm(&mut self, myself: &ActorRef<TransferMsg>, after: Duration) {
        let me = myself.clone();
        let attempt = self.attempt;
        self.timer = Some(AbortOnDrop::spawn(async move {
            tokio::time::sleep(after).await;
            let _ = me.send_message(TransferMsg::Timeout { attempt });
        }));
    }

    fn arm_retry(&mut self, myself: &ActorRef<TransferMsg>) {
        let me = myself.clone();
        let attempt = self.attempt;
        self.retry = Some(AbortOnDrop::spawn(async move {
            tokio::time::sleep(RETRY_EVERY).await;
            let _ = me.send_message(TransferMsg::Retry { attempt });
        }));
    }

    async fn start(&mut self, myself: &ActorRef<TransferMsg>, target: String) {
        if !matches!(self.stage, Stage::Idle) {
            return;
        }
        self.attempt += 1;
        self.asked = Instant::now();
        self.target = target;
        let settings = &self.ctx.policy.transfer;
        let back_line = settings.back_line.clone();
        let Some(desk) = self.desk() else {
            tracing::warn!(parent: &self.ctx.span, "transfer asked but this carrier has no call control configured");
            return self.back("unsupported", back_line).await;
        };
        match settings.mode {
            TransferMode::Off => {}
            TransferMode::Cold => {
                let Some(to) = settings.address_for(&self.target).map(str::to_owned) else {
                    tracing::warn!(parent: &self.ctx.span, target = %self.target, "no [transfer.to] address for this target");
                    return self.back("failed", back_line).await;
                };
                // The stream's `stop` follows the redirect: not an end.
                self.ctx.set_away(true);
                match desk.cold(&self.ctx.ids, &to).await {
                    Ok(()) => self.connected(),
                    Err(e) => {
                        self.ctx.set_away(false);
                        tracing::warn!(parent: &self.ctx.span, error = %e, "cold transfer failed");
                        self.back("failed", back_line).await;
                    }
                }
            }
            TransferMode::Warm => {
                let skill = if settings.skill.is_empty() {
                    self.target.clone()
                } else {
                    settings.skill.clone()
                };
                self.find_agent(myself, skill).await;
            }
        }
    }

    /// Reserves an agent and dials them, or holds the caller while nobody is free.
    async fn find_agent(&mut self, myself: &ActorRef<TransferMsg>, skill: String) {
        let Some(desk) = self.desk() else { return };
        let settings = self.ctx.policy.transfer.clone();
        let language = self.ctx.spoken().code.clone();
        let agent = match desk.reserve(&self.ctx.ids, &skill, &language).await {
            Ok(agent) => agent,
            Err(e) => {
                tracing::warn!(parent: &self.ctx.span, error = %e, "agent directory unavailable");
                return self.back("failed", settings.back_line).await;
            }
        };
        let holding = matches!(self.stage, Stage::Holding { .. });
        let Some(agent) = agent else {
            if holding {
                self.arm_retry(myself);
                return;
            }
            if settings.hold_secs == 0 {
                self.note_callback();
                return self.back("no_agent", settings.fallback_line).await;
            }
            if let Err(e) = self.hold(&settings.hold_music_url).await {
                tracing::warn!(parent: &self.ctx.span, error = %e, "could not put the caller on hold");
                return self.back("failed", settings.back_line).await;
            }
            self.ctx
                .recorder
                .event("transfer", "holding: no agent free");
            self.stage = Stage::Holding { skill };
            self.arm(myself, Duration::from_secs(u64::from(settings.hold_secs)));
            self.arm_retry(myself);
            return;
        };
        self.retry = None;
        self.ctx
            .recorder
            .event("transfer", format!("agent {} reserved", agent.name));
        if !self.ctx.is_away()
            && let Err(e) = self.hold(&settings.hold_music_url).await
        {
            desk.release(&self.ctx.ids).await;
            tracing::warn!(parent: &self.ctx.span, error = %e, "could not put the caller on hold");
            return self.back("failed", settings.back_line).await;
        }
        let handoff = handoff::build(&self.ctx, &self.target).await;
        let dial = AgentDial {
            agent,
            ring: Duration::from_secs(u64::from(settings.ring_secs)),
            accept: Duration::from_secs(u64::from(settings.accept_secs)),
            accept_key: settings.accept_key.chars().next().unwrap_or('1'),
            wrap_up: Duration::from_secs(u64::from(settings.wrap_up_secs)),
        };
        match desk.dial_agent(&self.ctx.ids, &dial, handoff).await {
            Ok(leg) => {
                self.ctx
                    .recorder
                    .event("agent_leg", format!("{leg} dialed"));
                self.stage = Stage::Ringing { leg };
                self.arm(myself, dial.ring + dial.accept);
            }
            Err(e) => {
                desk.release(&self.ctx.ids).await;
                tracing::warn!(parent: &self.ctx.span, error = %e, "could not dial the agent");
                self.back("failed", settings.back_line).await;
            }
        }
    }

    async fn hold(&mut self, music_url: &str) -> Result<(), DeskError> {
        let Some(desk) = self.desk() else {
            return Err(DeskError("no call control".into()));
        };
        self.ctx.set_away(true);
        let record = self.ctx.consent.recording_allowed();
        let held = desk.hold(&self.ctx.ids, music_url, record).await;
        if held.is_err() {
            self.ctx.set_away(false);
        } else {
            self.ctx.recorder.event("transfer", "caller on hold");
        }
        held
    }

    fn note_callback(&self) {
        let mut slots = serde_json::Map::new();
        slots.insert("callback_requested".into(), serde_json::Value::Bool(true));
        self.ctx.record_outcome(slots, None);
    }

    /// The agent's leg ended without joining the caller: release and bring
    /// the caller back.
    async fn agent_gone(&mut self, result: &'static str, leg: Option<String>) {
        let Some(desk) = self.desk() else { return };
        if let Some(leg) = leg {
            desk.hang_up(&leg).await;
        }
        desk.release(&self.ctx.ids).await;
        let line = self.ctx.policy.transfer.back_line.clone();
        self.back(result, line).await;
    }

    async fn on_agent(&mut self, leg: String, event: AgentEvent) {
        let Stage::Ringing { leg: ours } = &self.stage else {
            return;
        };
        if *ours != leg {
            return;
        }
        self.ctx
            .recorder
            .event("agent_leg", format!("{leg} {}", event.as_str()));
        match event {
            AgentEvent::Answered => {}
            AgentEvent::Accepted => self.connected(),
            AgentEvent::Declined => self.agent_gone("declined", Some(leg)).await,
            AgentEvent::NoAnswer | AgentEvent::Left => self.agent_gone("no_answer", None).await,
        }
    }
}

/// The tree stops (children are killed, without `post_stop`) or this actor
/// fails mid-transfer: an agent still ringing is hung up and released.
impl Drop for TransferState {
    fn drop(&mut self) {
        let leg = match std::mem::replace(&mut self.stage, Stage::Done) {
            Stage::Ringing { leg } => Some(leg),
            Stage::Holding { .. } => None,
            Stage::Idle | Stage::Done => return,
        };
        self.counted("abandoned");
        let (Some(desk), Some(leg), Ok(rt)) =
            (self.desk(), leg, tokio::runtime::Handle::try_current())
        else {
            return;
        };
        let ids = self.ctx.ids.clone();
        rt.spawn(async move {
            desk.hang_up(&leg).await;
            desk.release(&ids).await;
        });
    }
}

impl Actor for Transfer {
    type Msg = TransferMsg;
    type State = TransferState;
    type Arguments = Arc<CallContext>;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        ctx: Arc<CallContext>,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(TransferState {
            ctx,
            stage: Stage::Idle,
            attempt: 0,
            target: String::new(),
            asked: Instant::now(),
            timer: None,
            retry: None,
        })
    }

    async fn post_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        // An earlier incarnation failed with the caller away: bring them back.
        if state.ctx.is_away() && state.ctx.end_reason().is_none() {
            tracing::warn!(parent: &state.ctx.span, "transfer restarted mid-transfer; bringing the caller back");
            let line = state.ctx.policy.transfer.back_line.clone();
            state.back("failed", line).await;
        }
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            TransferMsg::Start { target } => state.start(&myself, target).await,
            TransferMsg::Agent { leg, event } => state.on_agent(leg, event).await,
            TransferMsg::Retry { attempt } if attempt == state.attempt => {
                if let Stage::Holding { skill } = &state.stage {
                    let skill = skill.clone();
                    state.find_agent(&myself, skill).await;
                }
            }
            TransferMsg::Timeout { attempt } if attempt == state.attempt => {
                match std::mem::replace(&mut state.stage, Stage::Idle) {
                    Stage::Holding { .. } => {
                        state.note_callback();
                        let line = state.ctx.policy.transfer.fallback_line.clone();
                        state.back("no_agent", line).await;
                    }
                    Stage::Ringing { leg } => {
                        state.stage = Stage::Ringing { leg: leg.clone() };
                        state.agent_gone("no_answer", Some(leg)).await;
                    }
                    other => state.stage = other,
                }
            }
            TransferMsg::Retry { .. } | TransferMsg::Timeout { .. } => {}
        }
        Ok(())
    }
}
