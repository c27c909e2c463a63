//! `Tts`: synthesizes a turn's sentences in order and streams the audio to
//! `MediaOut`, every chunk tagged with its turn generation.
//!
//! Backpressure: before sending a chunk the synthesis task takes permits
//! from the call's audio budget (20 ms frames); the permit travels with the
//! chunk and is released when `MediaOut` plays or drops it. A long reply
//! therefore waits in the provider's stream, not in Hark's memory.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use ractor::{Actor, ActorProcessingErr, ActorRef};

use crate::call::{CallContext, ChildKind, Generation, frames_in};
use crate::media_out::MediaOutMsg;
use crate::util::{AbortOnDrop, Incarnation};

/// Largest chunk handed to `MediaOut`: also the granularity of marks, hence
/// of how precisely Hark knows what the caller heard.
pub const MAX_CHUNK_BYTES: usize = 800;

#[derive(Debug)]
pub enum TtsMsg {
    Speak {
        generation: Generation,
        index: u32,
        text: String,
    },
    /// No more sentences will come for this turn.
    EndOfTurn { generation: Generation },
    /// Every turn older than `generation` is cancelled.
    Cancel { generation: Generation },
    /// From the synthesis task: the sentence is fully sent (or failed).
    SentenceDone { generation: Generation },
}

pub struct Tts;

struct Sentence {
    generation: Generation,
    index: u32,
    text: String,
}

pub struct TtsState {
    ctx: Arc<CallContext>,
    /// Turns older than this are cancelled.
    floor: Generation,
    queue: VecDeque<Sentence>,
    busy: Option<(Generation, AbortOnDrop)>,
    end_pending: Option<Generation>,
    life: Incarnation,
}

impl TtsState {
    fn start_next(&mut self, myself: &ActorRef<TtsMsg>) {
        if self.busy.is_some() {
            return;
        }
        let Some(sentence) = self.queue.pop_front() else {
            if let Some(generation) = self.end_pending.take() {
                self.ctx
                    .routes
                    .media_out
                    .send(MediaOutMsg::EndOfTurn { generation });
            }
            return;
        };
        let generation = sentence.generation;
        let task = synthesize(Arc::clone(&self.ctx), myself.clone(), sentence);
        self.busy = Some((generation, AbortOnDrop::spawn(task)));
    }

    fn cancel_older_than(&mut self, generation: Generation) {
        self.floor = self.floor.max(generation);
        if self.busy.as_ref().is_some_and(|(g, _)| *g < generation) {
            self.busy = None;
        }
        self.queue.retain(|s| s.generation >= generation);
        if self.end_pending.is_some_and(|g| g < generation) {
            self.end_pending = None;
        }
    }
}

async fn synthesize(ctx: Arc<CallContext>, myself: ActorRef<TtsMsg>, sentence: Sentence) {
    let Sentence {
        generation,
        index,
        text,
    } = sentence;
    let tts = Arc::clone(&ctx.providers.tts);
    match tts.synthesize(&text).await {
        Ok(mut audio) => {
            while let Some(chunk) = audio.next().await {
                let chunk: Bytes = match chunk {
                    Ok(c) => c,
                    Err(e) => {
                        provider_error(&ctx, &e);
                        break;
                    }
                };
                let mut offset = 0;
                while offset < chunk.len() {
                    let end = (offset + MAX_CHUNK_BYTES).min(chunk.len());
                    let piece = chunk.slice(offset..end);
                    offset = end;
                    let frames = frames_in(piece.len()) as u32;
                    let Ok(permit) = Arc::clone(&ctx.audio_budget)
                        .acquire_many_owned(frames)
                        .await
                    else {
                        return;
                    };
                    if ctx.generation() != generation {
                        return;
                    }
                    ctx.routes.media_out.send(MediaOutMsg::Audio {
                        generation,
                        index,
                        chunk: piece,
                        permit,
                    });
                }
            }
        }
        Err(e) => provider_error(&ctx, &e),
    }
    let _ = myself.send_message(TtsMsg::SentenceDone { generation });
}

fn provider_error(ctx: &CallContext, e: &crate::providers::ProviderError) {
    let provider = ctx.providers.tts.name();
    tracing::warn!(parent: &ctx.span, provider, error = %e, "tts failed");
    metrics::counter!(crate::metrics::PROVIDER_ERRORS, "provider" => provider, "kind" => e.kind())
        .increment(1);
}

impl Actor for Tts {
    type Msg = TtsMsg;
    type State = TtsState;
    type Arguments = Arc<CallContext>;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        ctx: Arc<CallContext>,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(TtsState {
            floor: ctx.generation(),
            ctx,
            queue: VecDeque::new(),
            busy: None,
            end_pending: None,
            life: Incarnation::default(),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        state.life.on_message(&state.ctx.fault, ChildKind::Tts);
        match msg {
            TtsMsg::Speak {
                generation,
                index,
                text,
            } => {
                if generation < state.floor {
                    return Ok(());
                }
                // A newer turn supersedes whatever is still queued.
                state.cancel_older_than(generation);
                state.queue.push_back(Sentence {
                    generation,
                    index,
                    text,
                });
                state.start_next(&myself);
            }
            TtsMsg::EndOfTurn { generation } => {
                if generation >= state.floor {
                    state.end_pending = Some(generation);
                    state.start_next(&myself);
                }
            }
            TtsMsg::Cancel { generation } => state.cancel_older_than(generation),
            TtsMsg::SentenceDone { generation } => {
                if state.busy.as_ref().is_some_and(|(g, _)| *g == generation) {
                    state.busy = None;
                }
                state.start_next(&myself);
            }
        }
        Ok(())
    }
}
