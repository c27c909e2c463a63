//! Streaming chat completion for the bot's turn.

use async_trait::async_trait;
use futures::stream::BoxStream;

use super::ProviderError;
use crate::history::Turn;

pub mod sim;

/// Everything the model is given for one reply.
#[derive(Debug, Clone)]
pub struct LlmRequest {
    pub system_prompt: String,
    pub turns: Vec<Turn>,
}

impl LlmRequest {
    /// The caller's most recent words, if the last turn is theirs.
    pub fn last_caller_text(&self) -> Option<String> {
        self.turns
            .last()
            .filter(|t| t.speaker == crate::history::Speaker::Caller)
            .map(|t| t.text())
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum LlmDelta {
    /// The next piece of reply text.
    Text(String),
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
}
