//! `Llm`: takes the bot's turn. For a reply it streams the LLM's answer
//! (system prompt + history + tools) and hands it to `Tts` sentence by
//! sentence as the sentences complete, runs the tools the model calls and
//! lets it follow up; for fixed lines (greeting, goodbye, apology) it speaks
//! the policy's text. A cancelled turn's LLM stream is aborted, not awaited.
//!
//! Resilience: the first LLM gets a retry, then the policy's fallbacks get a
//! try, all within the turn budget; a reply that never starts ends in the
//! policy's spoken fallback line, so the caller is never left in silence. A
//! reply task that fails outright (a panic: a bug, not a provider fault) is
//! caught and reported to the supervisor, which ends the turn with the
//! fallback line too: a call must never go deaf.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures::{FutureExt, StreamExt};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::time::Instant;

use crate::context::CallContext;
use crate::metrics as m;
use crate::protocol::{ChildKind, Generation, LlmMsg, SupervisorMsg, TtsMsg};
use crate::providers::{LlmDelta, LlmProvider, LlmRequest, LlmStream, ProviderError, ToolCall};
use crate::sentences::SentenceSplitter;
use crate::tools::Effect;
use crate::util::AbortOnDrop;

pub struct Llm;

impl crate::child::CallChild for Llm {
    const KIND: ChildKind = ChildKind::Llm;
}

pub struct PolicyState {
    ctx: Arc<CallContext>,
    /// The turn being generated; dropping it aborts the LLM stream.
    inflight: Option<(Generation, AbortOnDrop)>,
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

/// Rounds of tool calls (and the model's follow-up) in one bot turn.
const MAX_TOOL_ROUNDS: usize = 3;

/// How one LLM round ended.
enum Round {
    /// The model answered; these are the tools it called.
    Answered(Vec<ToolCall>),
    /// Every attempt failed within the budget.
    Failed,
    /// The turn was cancelled while it streamed.
    Stale,
    /// A sentence made a forbidden claim (this one): it and the rest of
    /// the stream were dropped.
    Blocked(String),
}

/// Opens a stream and waits for its first delta (the first-token timeout
/// covers both).
async fn open(
    llm: &dyn LlmProvider,
    request: LlmRequest,
) -> Result<(LlmDelta, LlmStream), ProviderError> {
    let mut stream = llm.stream(request).await?;
    let first = stream.next().await.ok_or(ProviderError::Closed)??;
    Ok((first, stream))
}

/// One model response: the first provider, once more if it fails, then each
/// fallback, all within the turn's budget. Sentences go to `Tts` as they
/// complete. An attempt that fails before any sentence was spoken is retried
/// or passed on; one that fails after is cut short (re-asking would repeat).
async fn one_round(
    ctx: &CallContext,
    request: &LlmRequest,
    speaker: &mut Speaker,
    deadline: Instant,
) -> Round {
    let providers = &ctx.providers.llm;
    let Some(first) = providers.first() else {
        return Round::Failed;
    };
    let attempts = std::iter::once(first).chain(providers.iter());
    let per_token = ctx.policy.timeouts.llm_first_token();
    for llm in attempts {
        let now = Instant::now();
        if now >= deadline {
            tracing::warn!(parent: &ctx.span, "turn budget spent; no reply from the LLM");
            break;
        }
        let name = llm.name();
        let wait = per_token.min(deadline - now);
        let (first_delta, mut stream) =
            match tokio::time::timeout(wait, open(llm.as_ref(), request.clone())).await {
                Ok(Ok(opened)) => opened,
                Ok(Err(e)) => {
                    provider_error(ctx, name, &e);
                    continue;
                }
                Err(_) => {
                    provider_error(ctx, name, &ProviderError::Timeout(wait));
                    continue;
                }
            };
        metrics::histogram!(m::LLM_FIRST_TOKEN, "provider" => name)
            .record(now.elapsed().as_secs_f64());
        let spoken_before = speaker.next;
        let mut splitter = SentenceSplitter::default();
        let mut tools = Vec::new();
        let mut delta = Some(Ok(first_delta));
        let mut broke = false;
        while let Some(d) = delta.take() {
            match d {
                Ok(LlmDelta::Text(text)) => {
                    for sentence in splitter.push(&text) {
                        if let Some(claim) = ctx.claims.check(&sentence) {
                            return Round::Blocked(claim);
                        }
                        if !speaker.say(sentence) {
                            return Round::Stale;
                        }
                    }
                }
                Ok(LlmDelta::ToolCall(call)) => tools.push(call),
                Err(e) => {
                    provider_error(ctx, name, &e);
                    broke = true;
                    break;
                }
            }
            delta = match tokio::time::timeout(per_token, stream.next()).await {
                Ok(next) => next,
                Err(_) => Some(Err(ProviderError::Timeout(per_token))),
            };
        }
        if broke && speaker.next == spoken_before && tools.is_empty() {
            continue; // nothing of this attempt was said: try again
        }
        if let Some(rest) = splitter.finish().filter(|_| !broke) {
            if let Some(claim) = ctx.claims.check(&rest) {
                return Round::Blocked(claim);
            }
            if !speaker.say(rest) {
                return Round::Stale;
            }
        }
        return Round::Answered(tools);
    }
    Round::Failed
}

/// Runs [`reply`] and turns a panic into [`SupervisorMsg::TurnFailed`].
async fn guarded_reply(ctx: Arc<CallContext>, generation: Generation) {
    let run = AssertUnwindSafe(reply(Arc::clone(&ctx), generation)).catch_unwind();
    if let Err(panic) = run.await {
        let why = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        tracing::error!(parent: &ctx.span, generation, error = %why, "the reply task failed; ending the turn with the fallback line");
        ctx.routes
            .supervisor
            .send(SupervisorMsg::TurnFailed { generation });
    }
}

async fn reply(ctx: Arc<CallContext>, generation: Generation) {
    if let Some(plan) = &ctx.fault {
        plan.on_reply();
    }
    let deadline = Instant::now() + ctx.policy.timeouts.turn_budget();
    let mut speaker = Speaker {
        ctx: Arc::clone(&ctx),
        generation,
        next: 0,
    };
    let mut ends_call = false;
    // Set once a sentence was blocked: the continuation is asked for once.
    let mut instruction: Option<String> = None;
    let mut rounds = 0;
    while rounds < MAX_TOOL_ROUNDS {
        rounds += 1;
        let request = LlmRequest {
            system_prompt: system_prompt(&ctx),
            turns: ctx.history().turns().to_vec(),
            tools: ctx.tools.specs(),
            instruction: instruction.clone(),
        };
        let calls = match one_round(&ctx, &request, &mut speaker, deadline).await {
            Round::Stale => return,
            Round::Failed => break,
            Round::Blocked(claim) if instruction.is_none() => {
                claim_blocked(&ctx, &claim, "regenerated");
                let template = &ctx.spoken().policy.rules.claims.instruction;
                instruction = Some(template.replace("{claim}", &claim));
                rounds -= 1;
                continue;
            }
            Round::Blocked(claim) => {
                claim_blocked(&ctx, &claim, "safe_line");
                speaker.say(ctx.spoken().policy.rules.claims.safe_line.clone());
                break;
            }
            Round::Answered(calls) if calls.is_empty() => break,
            Round::Answered(calls) => calls,
        };
        let mut answered = Vec::with_capacity(calls.len());
        for call in calls {
            let outcome = ctx.tools.run(&call);
            metrics::counter!(m::TOOL_CALLS, "tool" => tool_label(&call.name), "outcome" => outcome.label)
                .increment(1);
            tracing::info!(parent: &ctx.span, tool = tool_label(&call.name), outcome = outcome.label, "tool call");
            ctx.recorder.event(
                "tool_call",
                format!("{}: {}", tool_label(&call.name), outcome.label),
            );
            match outcome.effect {
                Effect::EndCall { reason } => {
                    // The model's words about the caller stay out of info logs.
                    tracing::info!(parent: &ctx.span, "the bot ends the call");
                    tracing::debug!(parent: &ctx.span, reason = reason.as_deref().unwrap_or(""), "end_call reason");
                    ends_call = true;
                }
                Effect::Sensitive { slot } => {
                    tracing::info!(parent: &ctx.span, slot = %slot, "sensitive input: recording silent");
                    ctx.recording.sensitive(true);
                }
                Effect::Outcome { slots, disposition } => {
                    let sensitive = ctx.policy.outcome.sensitive();
                    if slots.keys().any(|k| sensitive.contains(k)) {
                        ctx.recording.sensitive(false);
                    }
                    ctx.record_outcome(slots, disposition);
                }
                Effect::Transfer { target } => {
                    ctx.routes
                        .supervisor
                        .send(SupervisorMsg::TransferRequested { generation, target });
                }
                Effect::None => {}
            }
            answered.push((call, outcome.result));
        }
        if !ctx.record_tool_round(generation, answered) {
            return;
        }
        if ends_call {
            ctx.routes
                .supervisor
                .send(SupervisorMsg::BotEndsCall { generation });
            break;
        }
    }
    if speaker.next == 0 && !ends_call {
        // Never leave the caller in silence without a reason.
        speaker.say(ctx.spoken().policy.fallback_line.clone());
    }
    speaker.end();
}

/// The system prompt, with the language the call switched to, if it did.
fn system_prompt(ctx: &CallContext) -> String {
    let spoken = ctx.spoken();
    if spoken.code == ctx.policy.language {
        return ctx.system_prompt.clone();
    }
    format!(
        "{}\n\nThe call is now in {}: reply in it.",
        ctx.system_prompt,
        language_name(&spoken.code)
    )
}

/// A language tag as the model reads it best.
fn language_name(code: &str) -> String {
    match code {
        "en" | "en-US" | "en-GB" | "en-IN" => format!("English ({code})"),
        "hi" | "hi-IN" => "Hindi, in Devanagari".into(),
        "hi-Latn" => "Hindi written in Latin letters (Hinglish)".into(),
        other => format!("the language {other}"),
    }
}

/// A sentence the bot must not say was dropped with the rest of its
/// stream; `then`: `regenerated` (the continuation is asked for again) or
/// `safe_line`. The claim is the policy's own phrase or pattern.
fn claim_blocked(ctx: &CallContext, claim: &str, then: &'static str) {
    metrics::counter!(m::RULE_DECISIONS, "rule" => "claims", "action" => then).increment(1);
    ctx.recorder.event("rule", format!("claims: {then}"));
    ctx.recorder.event("claim_blocked", claim.to_owned());
    tracing::info!(parent: &ctx.span, then, "a forbidden claim was kept from the caller");
}

/// A bounded label for `hark_tool_calls_total`.
fn tool_label(name: &str) -> &'static str {
    match name {
        "end_call" => "end_call",
        "transfer_call" => "transfer_call",
        "record_outcome" => "record_outcome",
        "sensitive_input" => "sensitive_input",
        _ => "unknown",
    }
}

fn provider_error(ctx: &CallContext, provider: &'static str, e: &ProviderError) {
    tracing::warn!(parent: &ctx.span, provider, error = %e, "llm attempt failed");
    ctx.provider_fault(provider, e);
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

impl Actor for Llm {
    type Msg = LlmMsg;
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
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            LlmMsg::Respond {
                generation,
                caller_text,
            } => {
                if let Some(text) = caller_text {
                    state.ctx.history().push_caller(&text);
                }
                let ctx = Arc::clone(&state.ctx);
                state.inflight = Some((
                    generation,
                    AbortOnDrop::spawn(guarded_reply(ctx, generation)),
                ));
            }
            LlmMsg::Say { generation, text } => {
                state.inflight = None;
                say(Arc::clone(&state.ctx), generation, &text);
            }
            LlmMsg::Cancel { generation } => {
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
