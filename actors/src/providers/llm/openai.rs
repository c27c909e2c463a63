//! Any OpenAI-compatible chat endpoint (OpenAI, Azure, Groq, vLLM, Together…)
//! through async-openai: streaming, with tool calls.
//!
//! Tool calls arrive as fragments (`delta.tool_calls[{index, id, function:
//! {name, arguments}}]`, arguments split across chunks); they are assembled
//! by index and delivered whole when the choice finishes.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use async_openai::Client;
use async_openai::config::OpenAIConfig;
use async_openai::types::chat::{
    ChatCompletionMessageToolCall, ChatCompletionMessageToolCalls,
    ChatCompletionRequestAssistantMessage, ChatCompletionRequestAssistantMessageContent,
    ChatCompletionRequestMessage, ChatCompletionRequestSystemMessage,
    ChatCompletionRequestSystemMessageContent, ChatCompletionRequestToolMessage,
    ChatCompletionRequestToolMessageContent, ChatCompletionRequestUserMessage,
    ChatCompletionRequestUserMessageContent, ChatCompletionTool, ChatCompletionTools,
    CreateChatCompletionRequest, FunctionCall, FunctionObject,
};
use async_trait::async_trait;
use futures::StreamExt;

use super::{LlmDelta, LlmProvider, LlmRequest, LlmStream, ToolCall};
use super::{Speaker, Turn};
use crate::providers::{
    Endpoint, ProviderError, Secret, check_openai_model, intern, no_retries, openai_error,
};

/// Model settings for one LLM provider (`[llm.openai]`, `[llm.groq]`, ...).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LlmSettings {
    pub model: String,
    pub temperature: f32,
    pub max_tokens: u32,
}

impl Default for LlmSettings {
    fn default() -> Self {
        Self {
            model: "gpt-4o-mini".into(),
            temperature: 0.6,
            max_tokens: 300,
        }
    }
}

impl LlmSettings {
    /// Problems with these settings: `(field, reason)`, the field relative
    /// to the section the policy holds them in.
    pub fn validate(&self) -> Vec<(&'static str, String)> {
        let mut errors = Vec::new();
        if self.model.trim().is_empty() {
            errors.push(("model", "needs a model".to_owned()));
        }
        if !(0.0..=2.0).contains(&self.temperature) {
            errors.push((
                "temperature",
                format!("{} is outside 0..=2", self.temperature),
            ));
        }
        if !(1..=4096).contains(&self.max_tokens) {
            errors.push((
                "max_tokens",
                format!("{} is outside 1..=4096", self.max_tokens),
            ));
        }
        errors
    }
}

pub struct OpenAiChat {
    name: &'static str,
    client: Client<OpenAIConfig>,
    http: reqwest::Client,
    base: String,
    key: Secret,
    settings: LlmSettings,
}

impl OpenAiChat {
    pub fn new(name: &str, endpoint: &Endpoint, key: Secret, settings: LlmSettings) -> Self {
        let config = OpenAIConfig::new()
            .with_api_base(endpoint.http_base())
            .with_api_key(key.expose());
        let http = reqwest::Client::new();
        Self {
            name: intern(name),
            client: no_retries(config, &http),
            http,
            base: endpoint.http_base().to_owned(),
            key,
            settings,
        }
    }

    fn messages(request: &LlmRequest) -> Vec<ChatCompletionRequestMessage> {
        let mut out = vec![ChatCompletionRequestMessage::System(
            ChatCompletionRequestSystemMessage {
                content: ChatCompletionRequestSystemMessageContent::Text(
                    request.system_prompt.clone(),
                ),
                name: None,
            },
        )];
        out.extend(request.turns.iter().map(message));
        if let Some(instruction) = &request.instruction {
            out.push(ChatCompletionRequestMessage::System(
                ChatCompletionRequestSystemMessage {
                    content: ChatCompletionRequestSystemMessageContent::Text(instruction.clone()),
                    name: None,
                },
            ));
        }
        out
    }
}

/// One history turn as a chat message.
fn message(turn: &Turn) -> ChatCompletionRequestMessage {
    match turn.speaker {
        Speaker::Caller => ChatCompletionRequestMessage::User(ChatCompletionRequestUserMessage {
            content: ChatCompletionRequestUserMessageContent::Text(turn.text()),
            name: None,
        }),
        Speaker::Tool => ChatCompletionRequestMessage::Tool(ChatCompletionRequestToolMessage {
            content: ChatCompletionRequestToolMessageContent::Text(turn.text()),
            tool_call_id: turn.tool_call_id.clone().unwrap_or_default(),
        }),
        Speaker::Bot => {
            let mut text = turn.text();
            if turn.interrupted {
                // The model must know the caller did not hear the rest.
                text.push_str(" … [interrupted by the caller]");
            }
            let tool_calls = (!turn.tool_calls.is_empty()).then(|| {
                turn.tool_calls
                    .iter()
                    .map(|c| {
                        ChatCompletionMessageToolCalls::Function(ChatCompletionMessageToolCall {
                            id: c.id.clone(),
                            function: FunctionCall {
                                name: c.name.clone(),
                                arguments: c.arguments.clone(),
                            },
                        })
                    })
                    .collect()
            });
            #[allow(deprecated)] // `function_call` is deprecated but still a field
            ChatCompletionRequestMessage::Assistant(ChatCompletionRequestAssistantMessage {
                content: (!text.is_empty())
                    .then_some(ChatCompletionRequestAssistantMessageContent::Text(text)),
                tool_calls,
                ..Default::default()
            })
        }
    }
}

/// Tool-call fragments by index, until the choice finishes.
#[derive(Default)]
struct Fragments(BTreeMap<u32, ToolCall>);

impl Fragments {
    fn take(&mut self) -> Vec<LlmDelta> {
        std::mem::take(&mut self.0)
            .into_values()
            .map(LlmDelta::ToolCall)
            .collect()
    }
}

#[async_trait]
impl LlmProvider for OpenAiChat {
    fn name(&self) -> &'static str {
        self.name
    }

    async fn stream(&self, request: LlmRequest) -> Result<LlmStream, ProviderError> {
        let tools: Vec<ChatCompletionTools> = request
            .tools
            .iter()
            .map(|t| {
                ChatCompletionTools::Function(ChatCompletionTool {
                    function: FunctionObject {
                        name: t.name.to_owned(),
                        description: Some(t.description.clone()),
                        parameters: Some(t.parameters.clone()),
                        strict: None,
                    },
                })
            })
            .collect();
        #[allow(deprecated)] // deprecated fields of the request are left at their defaults
        let body = CreateChatCompletionRequest {
            model: self.settings.model.clone(),
            messages: Self::messages(&request),
            temperature: Some(self.settings.temperature),
            max_completion_tokens: Some(self.settings.max_tokens),
            tools: (!tools.is_empty()).then_some(tools),
            stream: Some(true),
            ..Default::default()
        };
        let chunks = self
            .client
            .chat()
            .create_stream(body)
            .await
            .map_err(openai_error)?;
        let mut fragments = Fragments::default();
        let deltas = chunks.flat_map(move |chunk| {
            let mut out: Vec<Result<LlmDelta, ProviderError>> = Vec::new();
            match chunk {
                Err(e) => out.push(Err(openai_error(e))),
                Ok(chunk) => {
                    for choice in chunk.choices {
                        let d = choice.delta;
                        if let Some(text) = d.content.filter(|t| !t.is_empty()) {
                            out.push(Ok(LlmDelta::Text(text)));
                        }
                        for part in d.tool_calls.unwrap_or_default() {
                            let call = fragments.0.entry(part.index).or_insert_with(|| ToolCall {
                                id: String::new(),
                                name: String::new(),
                                arguments: String::new(),
                            });
                            if let Some(id) = part.id {
                                call.id = id;
                            }
                            if let Some(f) = part.function {
                                if let Some(n) = f.name {
                                    call.name.push_str(&n);
                                }
                                if let Some(a) = f.arguments {
                                    call.arguments.push_str(&a);
                                }
                            }
                        }
                        if choice.finish_reason.is_some() {
                            out.extend(fragments.take().into_iter().map(Ok));
                        }
                    }
                }
            }
            futures::stream::iter(out)
        });
        Ok(deltas.boxed())
    }

    async fn check(&self) -> Result<String, ProviderError> {
        check_openai_model(&self.http, &self.base, &self.key, &self.settings.model).await?;
        Ok(format!("model {} available", self.settings.model))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::History;

    #[test]
    fn history_becomes_chat_messages_with_tool_calls() {
        let mut h = History::default();
        h.push_caller("please hang up");
        h.push_bot_sentence(2, "Goodbye.");
        h.push_tool_round(
            2,
            vec![(
                ToolCall {
                    id: "call_1".into(),
                    name: "end_call".into(),
                    arguments: "{}".into(),
                },
                "ok".into(),
            )],
        );
        let req = LlmRequest {
            instruction: None,
            system_prompt: "sys".into(),
            turns: h.turns().to_vec(),
            tools: vec![],
        };
        let json = serde_json::to_value(OpenAiChat::messages(&req)).unwrap();
        assert_eq!(json[0]["role"], "system");
        assert_eq!(json[1]["role"], "user");
        assert_eq!(json[1]["content"], "please hang up");
        assert_eq!(json[2]["role"], "assistant");
        assert_eq!(json[2]["content"], "Goodbye.");
        assert_eq!(json[2]["tool_calls"][0]["id"], "call_1");
        assert_eq!(json[2]["tool_calls"][0]["type"], "function");
        assert_eq!(json[2]["tool_calls"][0]["function"]["name"], "end_call");
        assert_eq!(json[3]["role"], "tool");
        assert_eq!(json[3]["tool_call_id"], "call_1");
    }
}
