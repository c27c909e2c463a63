//! Streaming chat completion for the bot's turn, with tool calls.

use async_trait::async_trait;
use futures::stream::BoxStream;

use super::ProviderError;

pub mod openai;
pub mod sim;

/// A tool the model may call; `parameters` is a JSON Schema object.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolSpec {
    pub name: &'static str,
    pub description: String,
    pub parameters: serde_json::Value,
}

/// A complete tool call (the provider assembles streamed fragments).
#[derive(Debug, Clone, PartialEq)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    /// The model's JSON arguments, unvalidated.
    pub arguments: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Speaker {
    Caller,
    Bot,
    /// The result of a tool the bot called.
    Tool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Turn {
    pub speaker: Speaker,
    /// Bot turns keep their sentences apart so an interruption can cut at the heard part.
    pub sentences: Vec<String>,
    /// The bot turn's generation; 0 for caller turns.
    pub generation: u64,
    /// The caller talked over this bot turn; only the heard part is kept.
    pub interrupted: bool,
    /// Tools the bot called in this turn.
    pub tool_calls: Vec<ToolCall>,
    /// For a tool result: the call it answers.
    pub tool_call_id: Option<String>,
    /// Of a bot turn cut to what was heard: everything it said.
    pub said: Option<String>,
}

impl Turn {
    pub fn text(&self) -> String {
        self.sentences.join(" ")
    }
}

/// Everything the model is given for one reply.
#[derive(Debug, Clone)]
pub struct LlmRequest {
    pub system_prompt: String,
    pub turns: Vec<Turn>,
    pub tools: Vec<ToolSpec>,
    /// For this reply only, after the conversation (a system message): how
    /// to go on when a sentence was blocked by a rule.
    pub instruction: Option<String>,
}

impl LlmRequest {
    /// The caller's most recent words, if the last turn is theirs.
    pub fn last_caller_text(&self) -> Option<String> {
        self.turns
            .last()
            .filter(|t| t.speaker == Speaker::Caller)
            .map(|t| t.text())
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum LlmDelta {
    /// The next piece of reply text.
    Text(String),
    /// A tool call, complete, delivered once the model has finished it.
    ToolCall(ToolCall),
}

pub type LlmStream = BoxStream<'static, Result<LlmDelta, ProviderError>>;

#[async_trait]
pub trait LlmProvider: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    fn is_simulated(&self) -> bool {
        false
    }
    /// Starts a reply. Dropping the stream abandons the request.
    async fn stream(&self, request: LlmRequest) -> Result<LlmStream, ProviderError>;
    /// Reachability, credentials, model; a one-line description when healthy.
    async fn check(&self) -> Result<String, ProviderError> {
        Ok("simulated".into())
    }
}
