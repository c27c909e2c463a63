//! Simulated LLM: canned replies from the policy, streamed word by word at a
//! configurable time-to-first-token and rate. A reply may also call a tool
//! with scripted arguments (and say `then` once the tool has answered), so
//! tools and the rules built on them run without an API key.

use serde::{Deserialize, Serialize};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;

use super::{LlmDelta, LlmProvider, LlmRequest, LlmStream, Speaker, ToolCall};
use crate::providers::ProviderError;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SimLlmSettings {
    /// Time to first token.
    pub first_token_ms: u64,
    /// Streaming rate after the first token; 0 streams the whole reply at once.
    pub tokens_per_second: f64,
    /// Reply when no `replies` entry matches; `{user}` is replaced by the caller's words.
    pub template: String,
    /// Canned replies: the first whose `when` occurs in the caller's words (case-insensitive).
    pub replies: Vec<SimReply>,
}

impl Default for SimLlmSettings {
    fn default() -> Self {
        Self {
            first_token_ms: 250,
            tokens_per_second: 40.0,
            template: "I heard you say: {user}. What else can I do for you?".into(),
            replies: Vec::new(),
        }
    }
}

/// A canned reply: when the caller's words contain `when`, say `say` and,
/// if `tool` is set, call it with `arguments`; once the tool has answered,
/// say `then`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SimReply {
    pub when: String,
    #[serde(default)]
    pub say: String,
    /// A tool to call (`record_outcome`, `end_call`, `transfer_call`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool: Option<String>,
    /// The tool's arguments, as a table (`{ plan = "pro" }`).
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub arguments: serde_json::Map<String, serde_json::Value>,
    /// Said after the tool's result comes back; empty: nothing more.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub then: String,
    /// Said instead of `say` (without the tool) when the reply is asked for
    /// again after a rule blocked a sentence: the model's continuation.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub revised: String,
}

impl SimLlmSettings {
    /// Problems with these settings: `(field, reason)`, the field relative
    /// to the section the policy holds them in.
    pub fn validate(&self) -> Vec<(&'static str, String)> {
        let mut errors = Vec::new();
        if self.first_token_ms > 30_000 {
            errors.push((
                "first_token_ms",
                format!("{} is over 30000", self.first_token_ms),
            ));
        }
        if !(self.tokens_per_second.is_finite() && self.tokens_per_second >= 0.0) {
            errors.push((
                "tokens_per_second",
                format!("{} must be a number >= 0", self.tokens_per_second),
            ));
        }
        if self.template.trim().is_empty() {
            errors.push(("template", "must not be empty".to_owned()));
        }
        for reply in &self.replies {
            let tool = reply.tool.as_deref().map(str::trim);
            if reply.when.trim().is_empty()
                || (reply.say.trim().is_empty() && tool.is_none_or(str::is_empty))
            {
                errors.push((
                    "replies",
                    format!(
                        "entry {:?} needs a non-empty `when`, and `say` or a `tool`",
                        reply.when
                    ),
                ));
            }
            if tool.is_none() && (!reply.arguments.is_empty() || !reply.then.is_empty()) {
                errors.push((
                    "replies",
                    format!(
                        "entry {:?}: `arguments` and `then` need a `tool`",
                        reply.when
                    ),
                ));
            }
        }
        errors
    }
}

pub struct SimLlm {
    settings: SimLlmSettings,
}

impl SimLlm {
    pub fn new(settings: SimLlmSettings) -> Self {
        Self { settings }
    }

    /// The full reply for a request: the first matching canned reply, else the template.
    pub fn reply(&self, request: &LlmRequest) -> String {
        self.answer(request).0
    }

    /// What to say and which tool to call: after a tool's result, the
    /// `then` of the reply that called it; otherwise the first reply whose
    /// `when` the caller's last words contain (case-insensitive), else the
    /// template.
    pub fn answer(&self, request: &LlmRequest) -> (String, Option<ToolCall>) {
        if let Some(last) = request.turns.last()
            && last.speaker == Speaker::Tool
        {
            let called = request
                .turns
                .iter()
                .rev()
                .find(|t| t.speaker == Speaker::Bot && !t.tool_calls.is_empty())
                .and_then(|t| t.tool_calls.first());
            let said = last_caller_words(request).to_lowercase();
            let then = called.and_then(|call| {
                self.settings.replies.iter().find(|r| {
                    r.tool.as_deref() == Some(call.name.as_str())
                        && said.contains(&r.when.to_lowercase())
                })
            });
            return (then.map(|r| r.then.clone()).unwrap_or_default(), None);
        }
        // A continuation follows the bot's own partial reply: it answers
        // the caller's last words all the same.
        let said = match &request.instruction {
            Some(_) => last_caller_words(request),
            None => request.last_caller_text().unwrap_or_default(),
        };
        let lower = said.to_lowercase();
        match self
            .settings
            .replies
            .iter()
            .find(|r| lower.contains(&r.when.to_lowercase()))
        {
            Some(r) if request.instruction.is_some() && !r.revised.is_empty() => {
                (r.revised.clone(), None)
            }
            Some(r) => {
                let call = r.tool.as_ref().map(|name| ToolCall {
                    id: format!("sim_call_{}", request.turns.len()),
                    name: name.clone(),
                    arguments: serde_json::Value::Object(r.arguments.clone()).to_string(),
                });
                (r.say.clone(), call)
            }
            None => {
                let said = said.trim().trim_end_matches(['.', '!', '?']);
                (self.settings.template.replace("{user}", said), None)
            }
        }
    }
}

/// The caller's most recent words anywhere in the conversation.
fn last_caller_words(request: &LlmRequest) -> String {
    request
        .turns
        .iter()
        .rev()
        .find(|t| t.speaker == Speaker::Caller)
        .map(|t| t.text())
        .unwrap_or_default()
}

#[async_trait]
impl LlmProvider for SimLlm {
    fn name(&self) -> &'static str {
        "sim"
    }

    fn is_simulated(&self) -> bool {
        true
    }

    async fn stream(&self, request: LlmRequest) -> Result<LlmStream, ProviderError> {
        let (reply, call) = self.answer(&request);
        let first = Duration::from_millis(self.settings.first_token_ms);
        let tps = self.settings.tokens_per_second;
        // A tool call comes after the text, complete, as a provider sends it.
        let tool = futures::stream::iter(call.map(|c| Ok(LlmDelta::ToolCall(c))));
        if tps <= 0.0 || reply.is_empty() {
            let text = (!reply.is_empty()).then_some(Ok(LlmDelta::Text(reply)));
            return Ok(futures::stream::once(async move {
                tokio::time::sleep(first).await;
            })
            .filter_map(move |()| {
                let text = text.clone();
                async move { text }
            })
            .chain(tool)
            .boxed());
        }
        let gap = Duration::from_secs_f64(1.0 / tps);
        // Words keep their trailing space so the concatenation is the reply.
        let tokens: Vec<String> = reply.split_inclusive(' ').map(str::to_owned).collect();
        Ok(futures::stream::iter(tokens.into_iter().enumerate())
            .then(move |(i, token)| async move {
                tokio::time::sleep(if i == 0 { first } else { gap }).await;
                Ok(LlmDelta::Text(token))
            })
            .chain(tool)
            .boxed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::History;

    fn request(said: &str) -> LlmRequest {
        let mut h = History::default();
        h.push_caller(said);
        LlmRequest {
            instruction: None,
            system_prompt: "sys".into(),
            turns: h.turns().to_vec(),
            tools: vec![],
        }
    }

    #[tokio::test(start_paused = true)]
    async fn streams_the_template_word_by_word() {
        let llm = SimLlm::new(SimLlmSettings {
            first_token_ms: 300,
            tokens_per_second: 10.0,
            template: "You said {user}.".into(),
            replies: vec![],
        });
        let start = tokio::time::Instant::now();
        let mut s = llm.stream(request("hello there.")).await.unwrap();
        let mut text = String::new();
        let mut first = None;
        while let Some(Ok(LlmDelta::Text(t))) = s.next().await {
            first.get_or_insert(start.elapsed());
            text.push_str(&t);
        }
        assert_eq!(text, "You said hello there.");
        assert_eq!(first, Some(Duration::from_millis(300)));
        assert_eq!(start.elapsed(), Duration::from_millis(300 + 3 * 100));
    }

    #[test]
    fn canned_reply_wins_case_insensitively() {
        let llm = SimLlm::new(SimLlmSettings {
            replies: vec![SimReply {
                when: "HOURS".into(),
                say: "We are open nine to five.".into(),
                ..SimReply::default()
            }],
            ..SimLlmSettings::default()
        });
        assert_eq!(
            llm.reply(&request("what are your hours")),
            "We are open nine to five."
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_scripted_reply_calls_its_tool_then_says_what_follows_the_result() {
        let mut args = serde_json::Map::new();
        args.insert("plan".into(), "pro".into());
        let llm = SimLlm::new(SimLlmSettings {
            tokens_per_second: 0.0,
            replies: vec![SimReply {
                when: "pro plan".into(),
                say: "Let me note that.".into(),
                tool: Some("record_outcome".into()),
                arguments: args,
                then: "Noted: the pro plan.".into(),
                revised: String::new(),
            }],
            ..SimLlmSettings::default()
        });
        let mut h = History::default();
        h.push_caller("I want the Pro plan");
        let req = |h: &History| LlmRequest {
            instruction: None,
            system_prompt: "sys".into(),
            turns: h.turns().to_vec(),
            tools: vec![],
        };
        let collect = |h: &History| {
            let request = req(h);
            let llm = &llm;
            async move {
                llm.stream(request)
                    .await
                    .unwrap()
                    .map(Result::unwrap)
                    .collect::<Vec<_>>()
                    .await
            }
        };
        let deltas = collect(&h).await;
        let LlmDelta::ToolCall(call) = &deltas[1] else {
            panic!("{deltas:?}")
        };
        assert_eq!(deltas[0], LlmDelta::Text("Let me note that.".into()));
        assert_eq!(call.name, "record_outcome");
        assert_eq!(call.arguments, r#"{"plan":"pro"}"#);
        h.push_bot_sentence(1, "Let me note that.");
        h.push_tool_round(1, vec![(call.clone(), "recorded".into())]);
        let after = collect(&h).await;
        assert_eq!(after, [LlmDelta::Text("Noted: the pro plan.".into())]);
    }

    #[test]
    fn a_reply_needs_words_or_a_tool_and_arguments_need_a_tool() {
        let bad = SimLlmSettings {
            replies: vec![
                SimReply {
                    when: "a".into(),
                    ..SimReply::default()
                },
                SimReply {
                    when: "b".into(),
                    say: "x".into(),
                    then: "y".into(),
                    ..SimReply::default()
                },
            ],
            ..SimLlmSettings::default()
        };
        assert_eq!(bad.validate().len(), 2, "{:?}", bad.validate());
    }
}
