//! `CallSupervisor`: owns one call. Spawns and links the children, restarts a
//! failed child within a restart budget, and carries out what the pure
//! [`TurnController`] decides (start a bot turn, cancel it everywhere, close),
//! putting each turn on record as it goes.
//!
//! # Layout
//! - [`restarts`] — spawning a child and restarting a failed one within the
//!   budget.
//! - [`barge_in`] — the caller talking over the bot: confirming an
//!   interruption (`confirm` mode) and resuming after a false one.
//! - [`handing_on`] — a transfer: waiting for the line, the caller away
//!   from the stream, handed on or back.
//! - [`language`] — going on in another of the policy's languages.
//! - [`answering`] — a call Hark placed: quiet until a person is there;
//!   a machine's beep, then the voicemail message.

mod answering;
mod barge_in;
mod handing_on;
mod language;
mod restarts;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, SpawnErr, SupervisionEvent};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::context::{CallArgs, CallContext};
use crate::metrics as m;
use crate::protocol::{
    ChildKind, Command as ToCarrier, EndReason, Generation, LlmMsg, MediaOutMsg, SupervisorMsg,
    TtsMsg,
};
use crate::records::now_ms;
use crate::rules::{KeyTaken, Rules};
use crate::silence::SilenceWatch;
use crate::turns::{Command, Event as TurnEvent, TurnController, TurnKind};
use crate::util::{AbortOnDrop, LiveActor};
use language::lines;
use restarts::spawn_child;

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
    /// Between the caller's speech start and end.
    caller_speaking: bool,
    silence: SilenceWatch,
    /// Resumes an interrupted turn when no words follow (`ResumeCheck`).
    resume_timer: Option<AbortOnDrop>,
    /// Barge-in `confirm`: the turn held while the caller may be interrupting.
    holding: Option<Generation>,
    /// Barge-in `confirm`: the turn the caller spoke over without
    /// interrupting; their words, when they come, may be a backchannel.
    spoken_over: Option<Generation>,
    /// A transfer request waiting for its line (this turn) to play.
    transfer_after: Option<(Generation, String)>,
    /// Said when the caller comes back on a new stream.
    back_line: Option<String>,
    /// An outbound call before anyone is known to be there.
    answering: Option<answering::Answering>,
    _live: LiveActor,
}

impl SupervisorState {
    /// Feeds the turn controller and carries out what it decides.
    fn apply(&mut self, myself: &ActorRef<SupervisorMsg>, event: TurnEvent) {
        for command in self.turns.on(event) {
            self.execute(myself, command);
        }
        if let Some(target) = self.rules.take_transfer() {
            self.transfer_raised(target);
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

    /// Puts bot turns older than `before` (all, if `None`) on record.
    fn record_bot_turns(&mut self, before: Option<Generation>) {
        self.ctx.record_bot_turns(&mut self.turn_starts, before);
    }

    /// Times the caller's silence while nobody speaks (see `SilenceWatch`).
    fn watch_silence(&mut self, myself: &ActorRef<SupervisorMsg>) {
        let quiet = !self.caller_speaking
            && self.turns.active().is_none()
            && self.turns.ending().is_none()
            && !self.is_answering();
        let after = self.rules.silence_after();
        self.silence.update(quiet, after, myself);
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
        let turns = TurnController::new(lines(&ctx.policy), ctx.policy.barge_in.enabled);
        Ok(SupervisorState {
            rules: Rules::from_policy(&ctx.policy, ctx.ask_consent),
            ctx,
            children: HashMap::new(),
            restarts: VecDeque::new(),
            turns,
            end_timer: None,
            _max_duration: None,
            end_reason: None,
            speech_started_ms: None,
            turn_starts: Vec::new(),
            caller_speaking: false,
            silence: SilenceWatch::default(),
            resume_timer: None,
            holding: None,
            spoken_over: None,
            transfer_after: None,
            back_line: None,
            answering: None,
            started: Instant::now(),
            _live: LiveActor::new(),
        })
    }

    async fn post_start(
        &self,
        myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        for kind in restarts::children(&state.ctx) {
            let cell = spawn_child(&myself, &state.ctx, kind).await?;
            state.children.insert(cell.get_id(), kind);
        }
        tracing::info!(parent: &state.ctx.span, policy = %state.ctx.policy.name, "call started");
        let me = myself.clone();
        let mut limit = state.ctx.settings.max_duration();
        let policy_limit = state.ctx.policy.rules.call_length.max_secs;
        if policy_limit > 0 {
            limit = limit.min(std::time::Duration::from_secs(u64::from(policy_limit)));
        }
        state._max_duration = Some(AbortOnDrop::spawn(async move {
            tokio::time::sleep(limit).await;
            let _ = me.send_message(SupervisorMsg::EndCall {
                reason: EndReason::MaxDuration,
            });
        }));
        state.begin(&myself);
        state.watch_silence(&myself);
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
        state.ctx.recording.finish();
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
                state.caller_speaking = true;
                if state.speech_started_ms.is_none() {
                    state.speech_started_ms = Some(now_ms() - at.elapsed().as_millis() as i64);
                }
                state.hold_if_confirming();
            }
            SupervisorMsg::BargeIn { .. } => {
                if state.holding.is_some() {
                    // `confirm`: voiced past `confirm_ms`.
                    state.confirm(&myself, "speech");
                } else {
                    state.apply(&myself, TurnEvent::BargeIn);
                }
            }
            SupervisorMsg::Interim { text } => state.interim(&myself, &text),
            SupervisorMsg::SpeechEnded { last_voice, .. } => {
                state.caller_speaking = false;
                state.release();
                state.check_resume_later(&myself);
                state.apply(&myself, TurnEvent::SpeechEnded { last_voice });
            }
            SupervisorMsg::Utterance { text, languages } => {
                let started = state.speech_started_ms.take().unwrap_or_else(now_ms);
                // Bot turns that are over come first on record.
                let active = state.turns.active();
                state.record_bot_turns(active);
                // A decline covering the transcript keeps the very words of
                // the "no" out of the records: then the rules decide first.
                let withheld_first = state.rules.may_withhold_text(&state.ctx);
                if !withheld_first {
                    state.ctx.recorder.caller_turn(&text, started);
                }
                if state.answering_takes(&myself, &text) {
                    state.watch_silence(&myself);
                    return Ok(());
                }
                let spoken = withheld_first.then(|| text.clone());
                if let Some(code) = state.rules.language_of(&languages, &state.ctx) {
                    state.switch_language(&code, "words");
                }
                let event = state.rules.turn_event(text, &state.ctx);
                let event = state.over_the_bot(&myself, event);
                if let Some(spoken) = spoken {
                    state.ctx.recorder.caller_turn(&spoken, started);
                }
                if let Some(event) = event {
                    state.apply(&myself, event);
                }
            }
            SupervisorMsg::Unheard => {
                state.ctx.recorder.event("caller_unheard", "");
                state.speech_started_ms = None;
                if state.is_answering() {
                    return Ok(());
                }
                let event = if state.resuming() {
                    Some(state.resume("no_words"))
                } else {
                    state.rules.not_understood(&state.ctx)
                };
                state.apply(&myself, event.unwrap_or(TurnEvent::Unheard));
            }
            SupervisorMsg::TurnFailed { generation } => {
                let current = state.turns.active() == Some(generation);
                state.apply(&myself, TurnEvent::TurnFailed { generation });
                if current && let Some(event) = state.rules.not_understood(&state.ctx) {
                    state.apply(&myself, event);
                }
            }
            SupervisorMsg::TransferRequested { generation, target } => {
                if state.turns.active() == Some(generation)
                    && let Some(event) = state.rules.transfer_requested(target, &state.ctx)
                {
                    state.apply(&myself, event);
                }
            }
            SupervisorMsg::Dtmf { digit } => {
                metrics::counter!(m::DTMF).increment(1);
                state.key_pressed(&myself);
                if state.ctx.policy.records.dtmf_digits {
                    state.ctx.recorder.private_event("dtmf", digit.to_string());
                } else {
                    state.ctx.recorder.event("dtmf", "pressed");
                }
                tracing::debug!(parent: &state.ctx.span, %digit, "dtmf");
                match state.rules.dtmf_event(digit, &state.ctx) {
                    KeyTaken::No => state.apply(&myself, TurnEvent::Dtmf { digit }),
                    KeyTaken::Yes(event) => {
                        if let Some(code) = state.rules.take_switch() {
                            state.switch_language(&code, "menu");
                        }
                        if let Some(event) = event {
                            state.apply(&myself, event);
                        }
                    }
                }
            }
            SupervisorMsg::PlaybackStarted { generation } => {
                state.apply(&myself, TurnEvent::PlaybackStarted { generation });
            }
            SupervisorMsg::PlaybackFinished { generation } => {
                // The turn has played out: on record now, with its real end.
                state.record_bot_turns(Some(generation + 1));
                state.apply(&myself, TurnEvent::PlaybackFinished { generation });
                state.line_done(generation);
            }
            SupervisorMsg::OutboundStalled => {
                tracing::warn!(parent: &state.ctx.span, "socket is not draining outbound audio");
                let reason = EndReason::OutboundStalled;
                state.apply(&myself, TurnEvent::Hangup { reason });
            }
            SupervisorMsg::BotEndsCall { generation } => {
                state.apply(&myself, TurnEvent::BotEndsCall { generation });
            }
            SupervisorMsg::Hangup { reason } => {
                if !state.stream_ended_away(reason) {
                    state.apply(&myself, TurnEvent::Hangup { reason });
                }
            }
            SupervisorMsg::TransferOver(outcome) => state.transfer_over(&myself, outcome),
            SupervisorMsg::TransferAsked { target } => {
                if let Some(event) = state.rules.api_transfer(target, &state.ctx) {
                    state.apply(&myself, event);
                }
            }
            SupervisorMsg::Answered(by) => state.answered(&myself, by),
            SupervisorMsg::Beep { hz, ms } => state.beep(&myself, hz, ms),
            SupervisorMsg::AnswerTimeout { machine } => state.answer_timeout(&myself, machine),
            SupervisorMsg::StreamAttached { stream_id } => {
                state.stream_attached(&myself, &stream_id);
            }
            SupervisorMsg::EndCall { reason } => {
                let spoken = state.ctx.spoken();
                let closing = &spoken.policy.rules.call_length.closing;
                if reason == EndReason::MaxDuration {
                    tracing::info!(parent: &state.ctx.span, "call reached its maximum duration; saying goodbye");
                    if !closing.trim().is_empty() {
                        let line = closing.clone();
                        state.apply(&myself, TurnEvent::EndWith { reason, line });
                        return Ok(());
                    }
                }
                state.apply(&myself, TurnEvent::EndCall { reason });
            }
            SupervisorMsg::EndTimeout => {
                if state.turns.ending().is_some() {
                    tracing::warn!(parent: &state.ctx.span, "closing before the last line finished playing");
                }
                state.apply(&myself, TurnEvent::EndTimeout);
            }
            SupervisorMsg::ResumeCheck { generation } => {
                state.resume_timer = None;
                if state.turns.resumable() == Some(generation) && !state.caller_speaking {
                    let event = state.resume("no_words");
                    state.apply(&myself, event);
                }
            }
            SupervisorMsg::Silence { armed } => {
                if state.silence.fired(armed)
                    && !state.ctx.is_away()
                    && let Some(event) = state.rules.silence_event(&state.ctx)
                {
                    state.apply(&myself, event);
                }
            }
        }
        state.watch_silence(&myself);
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
