//! `CallSupervisor`: owns one call. Spawns and links the children, restarts a
//! failed child within a restart budget, and carries out what the pure
//! [`TurnController`] decides (start a bot turn, cancel it everywhere, close),
//! putting each turn on record as it goes.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use ractor::{Actor, ActorCell, ActorId, ActorProcessingErr, ActorRef, SpawnErr, SupervisionEvent};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::child::Child;
use crate::context::{CallArgs, CallContext};
use crate::llm::Llm;
use crate::media_in::MediaIn;
use crate::media_out::MediaOut;
use crate::metrics as m;
use crate::protocol::{
    ChildKind, Command as ToCarrier, EndReason, Generation, LlmMsg, MediaOutMsg, SupervisorMsg,
    TtsMsg,
};
use crate::records::now_ms;
use crate::rules::Rules;
use crate::stt::Stt;
use crate::tts::Tts;
use crate::turns::{Command, Event as TurnEvent, Lines, TurnController, TurnKind};
use crate::util::{AbortOnDrop, LiveActor};
use crate::vad::Vad;

/// A running call, as the runtime holds it.
pub struct CallHandle {
    pub ctx: Arc<CallContext>,
    pub supervisor: ActorRef<SupervisorMsg>,
    /// Completes when the supervisor (and with it the whole tree) has stopped.
    pub done: JoinHandle<()>,
}

/// Starts a call's actor tree; the greeting starts playing right away.
pub async fn start_call(args: CallArgs) -> Result<CallHandle, SpawnErr> {
    let ctx = CallContext::new(args);
    let (supervisor, done) = CallSupervisor::spawn(None, CallSupervisor, Arc::clone(&ctx)).await?;
    Ok(CallHandle {
        ctx,
        supervisor,
        done,
    })
}

pub struct CallSupervisor;

pub struct SupervisorState {
    ctx: Arc<CallContext>,
    children: HashMap<ActorId, ChildKind>,
    restarts: VecDeque<Instant>,
    /// Who speaks next: the pure state machine this actor carries out.
    turns: TurnController,
    /// What the policy enforces on the caller's words, asked first.
    rules: Rules,
    end_timer: Option<AbortOnDrop>,
    /// Ends the call at `call.max_duration_secs`.
    _max_duration: Option<AbortOnDrop>,
    end_reason: Option<EndReason>,
    started: Instant,
    /// Wall-clock start of the caller's current speech, for its turn record.
    speech_started_ms: Option<i64>,
    /// Wall-clock start of each bot turn not yet on record.
    turn_starts: Vec<(Generation, i64)>,
    _live: LiveActor,
}

async fn spawn_child(
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
    })
}

/// Children needed to speak a line: a failure among them stops a goodbye.
fn speaks(kind: ChildKind) -> bool {
    matches!(kind, ChildKind::Llm | ChildKind::Tts | ChildKind::MediaOut)
}

impl SupervisorState {
    /// Feeds the turn controller and carries out what it decides.
    fn apply(&mut self, myself: &ActorRef<SupervisorMsg>, event: TurnEvent) {
        for command in self.turns.on(event) {
            self.execute(myself, command);
        }
    }

    fn execute(&mut self, myself: &ActorRef<SupervisorMsg>, command: Command) {
        let routes = &self.ctx.routes;
        match command {
            Command::StartTurn {
                generation,
                kind,
                caller_text,
                speech_end,
            } => {
                self.ctx.set_generation(generation);
                // Earlier bot turns are over (played, cut or dropped): on record now,
                // and no longer needed in memory past the policy's window.
                self.record_bot_turns(Some(generation));
                self.ctx
                    .history()
                    .trim_to(self.ctx.policy.history.max_turns);
                self.turn_starts.push((generation, now_ms()));
                let routes = &self.ctx.routes;
                routes.media_out.send(MediaOutMsg::TurnStarted {
                    generation,
                    speech_end,
                });
                match kind {
                    TurnKind::Reply => routes.llm.send(LlmMsg::Respond {
                        generation,
                        caller_text,
                    }),
                    TurnKind::Say(text) => routes.llm.send(LlmMsg::Say { generation, text }),
                };
            }
            Command::Cancel { generation, clear } => {
                // The LLM and TTS streams are aborted and, if the turn's audio
                // reached the carrier, it is told to `clear`.
                self.ctx.set_generation(generation);
                routes.llm.send(LlmMsg::Cancel { generation });
                routes.tts.send(TtsMsg::Cancel { generation });
                routes
                    .media_out
                    .send(MediaOutMsg::Cancel { generation, clear });
            }
            Command::BargedIn { generation } => {
                metrics::counter!(m::BARGE_INS).increment(1);
                self.ctx
                    .recorder
                    .event("barge_in", format!("turn {generation}"));
                tracing::info!(parent: &self.ctx.span, generation, "barge-in: bot turn cancelled");
            }
            Command::Dropped { generation } => {
                tracing::debug!(parent: &self.ctx.span, generation, "caller spoke before the reply played; dropped it");
            }
            Command::TurnFailed { generation } => {
                self.ctx
                    .recorder
                    .event("turn_failed", format!("turn {generation}"));
            }
            Command::HangUpAfter { generation } => {
                self.ctx
                    .recorder
                    .event("bot_ends_call", format!("turn {generation}"));
            }
            Command::ArmEndTimer => {
                let me = myself.clone();
                let timeout = self.ctx.settings.goodbye_timeout();
                self.end_timer = Some(AbortOnDrop::spawn(async move {
                    tokio::time::sleep(timeout).await;
                    let _ = me.send_message(SupervisorMsg::EndTimeout);
                }));
            }
            Command::Close(reason) => {
                // Closes the stream and stops the tree now.
                if self.end_reason.is_some() {
                    return;
                }
                self.end_reason = Some(reason);
                let _ = self.ctx.outbound.try_send(ToCarrier::Close {
                    reason: reason.as_str(),
                });
                myself.stop(Some(reason.as_str().to_owned()));
            }
        }
    }

    /// Puts bot turns older than `before` (all, if `None`) on record: the
    /// text said and, when the caller cut in, the part they heard.
    fn record_bot_turns(&mut self, before: Option<Generation>) {
        let due: Vec<(Generation, i64)> = self
            .turn_starts
            .iter()
            .copied()
            .filter(|(g, _)| before.is_none_or(|b| *g < b))
            .collect();
        if due.is_empty() {
            return;
        }
        self.turn_starts
            .retain(|(g, _)| before.is_some_and(|b| *g >= b));
        let history = self.ctx.history();
        for (generation, started_ms) in due {
            let turns: Vec<&crate::history::Turn> = history
                .turns()
                .iter()
                .filter(|t| t.speaker == crate::history::Speaker::Bot && t.generation == generation)
                .collect();
            let heard: Vec<String> = turns
                .iter()
                .map(|t| t.text())
                .filter(|t| !t.is_empty())
                .collect();
            let said: Vec<String> = turns
                .iter()
                .map(|t| t.said.clone().unwrap_or_else(|| t.text()))
                .filter(|t| !t.is_empty())
                .collect();
            let interrupted = turns.iter().any(|t| t.interrupted);
            let heard = heard.join(" ");
            self.ctx.recorder.bot_turn(
                &said.join(" "),
                interrupted.then_some(heard.as_str()),
                started_ms,
            );
        }
    }

    async fn child_failed(
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

impl Actor for CallSupervisor {
    type Msg = SupervisorMsg;
    type State = SupervisorState;
    type Arguments = Arc<CallContext>;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        ctx: Arc<CallContext>,
    ) -> Result<Self::State, ActorProcessingErr> {
        ctx.routes.supervisor.set(myself);
        let turns = TurnController::new(
            Lines {
                greeting: ctx.policy.greeting.clone(),
                fallback: ctx.policy.fallback_line.clone(),
                goodbye: ctx.policy.goodbye.clone(),
                apology: ctx.policy.apology.clone(),
            },
            ctx.policy.barge_in.enabled,
        );
        Ok(SupervisorState {
            rules: Rules::from_policy(&ctx.policy),
            ctx,
            children: HashMap::new(),
            restarts: VecDeque::new(),
            turns,
            end_timer: None,
            _max_duration: None,
            end_reason: None,
            speech_started_ms: None,
            turn_starts: Vec::new(),
            started: Instant::now(),
            _live: LiveActor::new(),
        })
    }

    async fn post_start(
        &self,
        myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        // Downstream first, so that no child sends to a route not yet set.
        for kind in [
            ChildKind::MediaOut,
            ChildKind::Tts,
            ChildKind::Llm,
            ChildKind::Stt,
            ChildKind::Vad,
            ChildKind::MediaIn,
        ] {
            let cell = spawn_child(&myself, &state.ctx, kind).await?;
            state.children.insert(cell.get_id(), kind);
        }
        tracing::info!(parent: &state.ctx.span, policy = %state.ctx.policy.name, "call started");
        let me = myself.clone();
        let limit = state.ctx.settings.max_duration();
        state._max_duration = Some(AbortOnDrop::spawn(async move {
            tokio::time::sleep(limit).await;
            let _ = me.send_message(SupervisorMsg::EndCall {
                reason: EndReason::MaxDuration,
            });
        }));
        state.apply(&myself, TurnEvent::CallStarted);
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let reason = state.end_reason.unwrap_or(EndReason::SocketClosed);
        metrics::counter!(m::CALLS_ENDED, "reason" => reason.as_str()).increment(1);
        state.record_bot_turns(None);
        state.ctx.finish_outcome(reason);
        state.ctx.recorder.ended(reason.as_str());
        tracing::info!(
            parent: &state.ctx.span,
            reason = reason.as_str(),
            duration_secs = state.started.elapsed().as_secs_f64(),
            "call ended"
        );
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            SupervisorMsg::SpeechStarted { at } => {
                if state.speech_started_ms.is_none() {
                    state.speech_started_ms = Some(now_ms() - at.elapsed().as_millis() as i64);
                }
            }
            SupervisorMsg::BargeIn { .. } => state.apply(&myself, TurnEvent::BargeIn),
            SupervisorMsg::SpeechEnded { last_voice, .. } => {
                state.apply(&myself, TurnEvent::SpeechEnded { last_voice });
            }
            SupervisorMsg::Utterance { text } => {
                let started = state.speech_started_ms.take().unwrap_or_else(now_ms);
                // Bot turns that are over come first on record.
                let active = state.turns.active();
                state.record_bot_turns(active);
                state.ctx.recorder.caller_turn(&text, started);
                let event = state.rules.turn_event(text, &state.ctx);
                state.apply(&myself, event);
            }
            SupervisorMsg::Unheard => {
                state.ctx.recorder.event("caller_unheard", "");
                state.speech_started_ms = None;
                state.apply(&myself, TurnEvent::Unheard);
            }
            SupervisorMsg::TurnFailed { generation } => {
                state.apply(&myself, TurnEvent::TurnFailed { generation });
            }
            SupervisorMsg::Dtmf { digit } => {
                metrics::counter!(m::DTMF).increment(1);
                if state.ctx.policy.records.dtmf_digits {
                    state.ctx.recorder.private_event("dtmf", digit.to_string());
                } else {
                    state.ctx.recorder.event("dtmf", "pressed");
                }
                tracing::debug!(parent: &state.ctx.span, %digit, "dtmf");
                state.apply(&myself, TurnEvent::Dtmf { digit });
            }
            SupervisorMsg::PlaybackStarted { generation } => {
                state.apply(&myself, TurnEvent::PlaybackStarted { generation });
            }
            SupervisorMsg::PlaybackFinished { generation } => {
                // The turn has played out: on record now, with its real end.
                state.record_bot_turns(Some(generation + 1));
                state.apply(&myself, TurnEvent::PlaybackFinished { generation });
            }
            SupervisorMsg::OutboundStalled => {
                tracing::warn!(parent: &state.ctx.span, "socket is not draining outbound audio");
                let reason = EndReason::OutboundStalled;
                state.apply(&myself, TurnEvent::Hangup { reason });
            }
            SupervisorMsg::BotEndsCall { generation } => {
                state.apply(&myself, TurnEvent::BotEndsCall { generation });
            }
            SupervisorMsg::Hangup { reason } => state.apply(&myself, TurnEvent::Hangup { reason }),
            SupervisorMsg::EndCall { reason } => {
                if reason == EndReason::MaxDuration {
                    tracing::info!(parent: &state.ctx.span, max_secs = state.ctx.settings.max_duration_secs, "call reached its maximum duration; saying goodbye");
                }
                state.apply(&myself, TurnEvent::EndCall { reason });
            }
            SupervisorMsg::EndTimeout => {
                if state.turns.ending().is_some() {
                    tracing::warn!(parent: &state.ctx.span, "closing before the last line finished playing");
                }
                state.apply(&myself, TurnEvent::EndTimeout);
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match event {
            SupervisionEvent::ActorFailed(cell, err) => {
                if let Some(kind) = state.children.remove(&cell.get_id()) {
                    state.child_failed(&myself, kind, err.to_string()).await;
                }
            }
            SupervisionEvent::ActorTerminated(cell, _, reason) => {
                if let Some(kind) = state.children.remove(&cell.get_id()) {
                    let reason = format!("stopped unexpectedly ({})", reason.unwrap_or_default());
                    state.child_failed(&myself, kind, reason).await;
                }
            }
            _ => {}
        }
        Ok(())
    }
}
