//! `Policy`: takes the bot's turn. For a reply it streams the LLM's answer
//! (system prompt + history) and hands it to `Tts` sentence by sentence as the
//! sentences complete; for fixed lines (greeting, goodbye, apology) it speaks
//! the policy's text. A cancelled turn's LLM stream is aborted, not awaited.

use std::sync::Arc;

use futures::StreamExt;
use ractor::{Actor, ActorProcessingErr, ActorRef};

use crate::call::{CallContext, ChildKind, Generation};
use crate::providers::{LlmDelta, LlmRequest};
use crate::sentences::SentenceSplitter;
use crate::tts::TtsMsg;
use crate::util::{AbortOnDrop, Incarnation};

#[derive(Debug)]
pub enum PolicyMsg {
    /// Reply to the caller. `caller_text` is added to the history first; it is
    /// `None` when a turn is retried after a restart (the words are already there).
    Respond {
        generation: Generation,
        caller_text: Option<String>,
    },
    /// Speak a fixed line (greeting, goodbye, apology).
    Say {
        generation: Generation,
        text: String,
    },
    /// Every turn older than `generation` is cancelled.
    Cancel { generation: Generation },
}

pub struct Policy;

pub struct PolicyState {
    ctx: Arc<CallContext>,
    /// The turn being generated; dropping it aborts the LLM stream.
    inflight: Option<(Generation, AbortOnDrop)>,
    life: Incarnation,
}

/// Hands sentences of one turn to `Tts`, recording each in the history.
struct Speaker {
    ctx: Arc<CallContext>,
    generation: Generation,
    next: u32,
}

impl Speaker {
    /// False once the turn is stale: stop producing.
    fn say(&mut self, sentence: String) -> bool {
        if !self.ctx.record_bot_sentence(self.generation, &sentence) {
            return false;
        }
        self.ctx.routes.tts.send(TtsMsg::Speak {
            generation: self.generation,
            index: self.next,
            text: sentence,
        });
        self.next += 1;
        true
    }

    fn end(self) {
        self.ctx.routes.tts.send(TtsMsg::EndOfTurn {
            generation: self.generation,
        });
    }
}

async fn reply(ctx: Arc<CallContext>, generation: Generation) {
    let request = LlmRequest {
        system_prompt: ctx.policy.system_prompt.clone(),
        turns: ctx.history().turns().to_vec(),
    };
    let llm = Arc::clone(&ctx.providers.llm);
    let mut speaker = Speaker {
        ctx: Arc::clone(&ctx),
        generation,
        next: 0,
    };
    let mut splitter = SentenceSplitter::default();
    match llm.stream(request).await {
        Ok(mut stream) => {
            'stream: while let Some(delta) = stream.next().await {
                match delta {
                    Ok(LlmDelta::Text(text)) => {
                        for sentence in splitter.push(&text) {
                            if !speaker.say(sentence) {
                                return;
                            }
                        }
                    }
                    Err(e) => {
                        provider_error(&ctx, &e);
                        break 'stream;
                    }
                }
            }
            if let Some(rest) = splitter.finish()
                && !speaker.say(rest)
            {
                return;
            }
        }
        Err(e) => provider_error(&ctx, &e),
    }
    if speaker.next == 0 {
        // Never leave the caller in silence without a reason.
        speaker.say(ctx.policy.fallback_line.clone());
    }
    speaker.end();
}

fn provider_error(ctx: &CallContext, e: &crate::providers::ProviderError) {
    let provider = ctx.providers.llm.name();
    tracing::warn!(parent: &ctx.span, provider, error = %e, "llm failed");
    metrics::counter!(crate::metrics::PROVIDER_ERRORS, "provider" => provider, "kind" => e.kind())
        .increment(1);
}

fn say(ctx: Arc<CallContext>, generation: Generation, text: &str) {
    let mut speaker = Speaker {
        ctx,
        generation,
        next: 0,
    };
    let mut splitter = SentenceSplitter::default();
    for sentence in splitter.push(text).into_iter().chain(splitter.finish()) {
        if !speaker.say(sentence) {
            return;
        }
    }
    speaker.end();
}

impl Actor for Policy {
    type Msg = PolicyMsg;
    type State = PolicyState;
    type Arguments = Arc<CallContext>;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        ctx: Arc<CallContext>,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(PolicyState {
            ctx,
            inflight: None,
            life: Incarnation::default(),
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        state.life.on_message(&state.ctx.fault, ChildKind::Policy);
        match msg {
            PolicyMsg::Respond {
                generation,
                caller_text,
            } => {
                if let Some(text) = caller_text {
                    state.ctx.history().push_caller(&text);
                }
                let ctx = Arc::clone(&state.ctx);
                state.inflight = Some((generation, AbortOnDrop::spawn(reply(ctx, generation))));
            }
            PolicyMsg::Say { generation, text } => {
                state.inflight = None;
                say(Arc::clone(&state.ctx), generation, &text);
            }
            PolicyMsg::Cancel { generation } => {
                if state
                    .inflight
                    .as_ref()
                    .is_some_and(|(g, _)| *g < generation)
                {
                    state.inflight = None;
                }
            }
        }
        Ok(())
    }
}
