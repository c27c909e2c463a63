//! `Tts`: synthesizes a turn's sentences in order and streams the audio to
//! `MediaOut`, every chunk tagged with its turn generation.
//!
//! Fallback: each sentence goes to the first TTS provider that starts within
//! the policy's first-byte timeout, so one slow or failing provider costs a
//! sentence a short pause, not the call its voice.
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
use tokio::time::Instant;

use crate::context::{CallContext, frames_in};
use crate::metrics as m;
use crate::protocol::{ChildKind, Generation, MediaOutMsg, TtsMsg};
use crate::providers::{AudioStream, ProviderError, TtsProvider};
use crate::util::AbortOnDrop;

/// Largest chunk handed to `MediaOut`: also the granularity of marks, hence
/// of how precisely Hark knows what the caller heard.
pub const MAX_CHUNK_BYTES: usize = 800;

pub struct Tts;

impl crate::child::CallChild for Tts {
    const KIND: ChildKind = ChildKind::Tts;
}

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

/// Opens a synthesis and waits for its first audio (the first-byte timeout
/// covers both).
async fn open(tts: &dyn TtsProvider, text: &str) -> Result<(Bytes, AudioStream), ProviderError> {
    let mut audio = tts.synthesize(text).await?;
    let first = audio.next().await.ok_or(ProviderError::Closed)??;
    Ok((first, audio))
}

/// Sends one provider chunk to `MediaOut` in pieces of at most
/// `MAX_CHUNK_BYTES`, each with its audio-budget permit. False when the turn
/// is stale or the call is over.
async fn forward(ctx: &CallContext, generation: Generation, index: u32, chunk: Bytes) -> bool {
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
            return false;
        };
        if ctx.generation() != generation {
            return false;
        }
        ctx.routes.media_out.send(MediaOutMsg::Audio {
            generation,
            index,
            chunk: piece,
            permit,
        });
    }
    true
}

/// Synthesizes one sentence with the first provider that starts within the
/// first-byte timeout; the others take over if it fails or stalls. Once audio
/// has started, a failure ends the sentence where it broke (starting it again
/// with another voice would repeat what the caller already heard).
async fn synthesize(ctx: Arc<CallContext>, myself: ActorRef<TtsMsg>, sentence: Sentence) {
    let Sentence {
        generation,
        index,
        text,
    } = sentence;
    let limit = ctx.policy.timeouts.tts_first_byte();
    let mut spoken = false;
    // The voices of the language the call is in now.
    let voices = ctx.spoken();
    for tts in &voices.providers.tts {
        let name = tts.name();
        let started = Instant::now();
        let (first, mut audio) = match tokio::time::timeout(limit, open(tts.as_ref(), &text)).await
        {
            Ok(Ok(opened)) => opened,
            Ok(Err(e)) => {
                provider_error(&ctx, name, &e);
                continue;
            }
            Err(_) => {
                provider_error(&ctx, name, &ProviderError::Timeout(limit));
                continue;
            }
        };
        metrics::histogram!(m::TTS_FIRST_BYTE, "provider" => name)
            .record(started.elapsed().as_secs_f64());
        spoken = true;
        let mut chunk = Some(Ok(first));
        while let Some(c) = chunk.take() {
            match c {
                Ok(bytes) => {
                    if !forward(&ctx, generation, index, bytes).await {
                        return;
                    }
                }
                Err(e) => {
                    provider_error(&ctx, name, &e);
                    break;
                }
            }
            chunk = match tokio::time::timeout(limit, audio.next()).await {
                Ok(next) => next,
                Err(_) => Some(Err(ProviderError::Timeout(limit))),
            };
        }
        break;
    }
    if !spoken {
        tracing::warn!(parent: &ctx.span, "no TTS provider could speak a sentence");
    }
    let _ = myself.send_message(TtsMsg::SentenceDone { generation });
}

fn provider_error(ctx: &CallContext, provider: &'static str, e: &ProviderError) {
    tracing::warn!(parent: &ctx.span, provider, error = %e, "tts attempt failed");
    ctx.provider_fault(provider, e);
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
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
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
