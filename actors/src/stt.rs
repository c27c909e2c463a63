//! `Stt`: the call's one streaming transcription session. Audio from `MediaIn`
//! goes in; final transcripts come out and, once the provider says the
//! utterance is complete, go to the supervisor as the caller's words.

use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use ractor::{Actor, ActorProcessingErr, ActorRef};

use crate::backlog::Slot;
use crate::call::{CallContext, ChildKind};
use crate::call_supervisor::SupervisorMsg;
use crate::providers::{SpeechInfo, SttEvent, SttInput};
use crate::util::{AbortOnDrop, Incarnation};

#[derive(Debug)]
pub enum SttMsg {
    /// Caller audio, μ-law, in batches of `media_in::STT_BATCH_FRAMES` frames.
    Audio { ulaw: Bytes, slot: Slot },
    /// From `Vad`: the caller stopped talking.
    EndOfSpeech(SpeechInfo),
    /// From the session's event pump.
    Provider(SttEvent),
}

pub struct Stt;

pub struct SttState {
    ctx: Arc<CallContext>,
    input: Box<dyn SttInput>,
    /// Final text of the utterance in progress.
    finals: Vec<String>,
    _pump: AbortOnDrop,
    life: Incarnation,
}

impl Actor for Stt {
    type Msg = SttMsg;
    type State = SttState;
    type Arguments = Arc<CallContext>;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        ctx: Arc<CallContext>,
    ) -> Result<Self::State, ActorProcessingErr> {
        let session = ctx.providers.stt.connect(&ctx.ids).await?;
        let mut events = session.events;
        let pump = AbortOnDrop::spawn(async move {
            while let Some(event) = events.next().await {
                if myself.send_message(SttMsg::Provider(event)).is_err() {
                    break;
                }
            }
        });
        Ok(SttState {
            ctx,
            input: session.input,
            finals: Vec::new(),
            _pump: pump,
            life: Incarnation::default(),
        })
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        state.input.close();
        Ok(())
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        state.life.on_message(&state.ctx.fault, ChildKind::Stt);
        match msg {
            SttMsg::Audio { ulaw, slot } => {
                state.input.audio(&ulaw);
                drop(slot);
            }
            SttMsg::EndOfSpeech(info) => state.input.end_of_speech(info),
            SttMsg::Provider(SttEvent::Interim { text }) => {
                tracing::trace!(parent: &state.ctx.span, %text, "interim transcript");
            }
            SttMsg::Provider(SttEvent::Final {
                text,
                utterance_end,
            }) => {
                if !text.trim().is_empty() {
                    state.finals.push(text);
                }
                if utterance_end && !state.finals.is_empty() {
                    let text = state.finals.join(" ");
                    state.finals.clear();
                    tracing::debug!(parent: &state.ctx.span, %text, "caller utterance");
                    state
                        .ctx
                        .routes
                        .supervisor
                        .send(SupervisorMsg::Utterance { text });
                }
            }
            SttMsg::Provider(SttEvent::Error(e)) => {
                tracing::warn!(parent: &state.ctx.span, provider = state.ctx.providers.stt.name(), error = %e, "stt session failed");
                metrics::counter!(crate::metrics::PROVIDER_ERRORS, "provider" => state.ctx.providers.stt.name(), "kind" => e.kind())
                    .increment(1);
                return Err(Box::new(e));
            }
        }
        Ok(())
    }
}
