//! Simulated LLM: canned replies from the policy, streamed word by word at a
//! configurable time-to-first-token and rate.

use serde::{Deserialize, Serialize};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;

use super::{LlmDelta, LlmProvider, LlmRequest, LlmStream};
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

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SimReply {
    pub when: String,
    pub say: String,
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
            if reply.when.trim().is_empty() || reply.say.trim().is_empty() {
                errors.push((
                    "replies",
                    format!("entry {:?} needs a non-empty `when` and `say`", reply.when),
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
        let said = request.last_caller_text().unwrap_or_default();
        let lower = said.to_lowercase();
        self.settings
            .replies
            .iter()
            .find(|r| lower.contains(&r.when.to_lowercase()))
            .map(|r| r.say.clone())
            .unwrap_or_else(|| {
                let said = said.trim().trim_end_matches(['.', '!', '?']);
                self.settings.template.replace("{user}", said)
            })
    }
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
        let reply = self.reply(&request);
        let first = Duration::from_millis(self.settings.first_token_ms);
        let tps = self.settings.tokens_per_second;
        if tps <= 0.0 {
            return Ok(futures::stream::once(async move {
                tokio::time::sleep(first).await;
                Ok(LlmDelta::Text(reply))
            })
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
            }],
            ..SimLlmSettings::default()
        });
        assert_eq!(
            llm.reply(&request("what are your hours")),
            "We are open nine to five."
        );
    }
}
