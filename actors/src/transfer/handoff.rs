//! The handoff an agent gets: a summary (the model's within `summary_ms`,
//! else a template from the transcript and slots), the transcript, the
//! slots.

use std::time::Duration;

use futures::StreamExt;

use crate::context::CallContext;
use crate::history::{Speaker, Turn};
use crate::providers::{LlmDelta, LlmRequest};

use super::desk::{Handoff, HandoffLine};

const SUMMARY_PROMPT: &str = "You hand a phone call over to a human colleague. Summarize the \
    call for them in at most two short sentences: who is calling, what they want, and what has \
    been done. No greeting.";
const SUMMARY_INSTRUCTION: &str = "Write the summary for the colleague now.";

/// The summary when the model does not answer in time: the target, the
/// caller's last words and the slots recorded.
pub fn template_summary(
    target: &str,
    transcript: &[HandoffLine],
    slots: &serde_json::Map<String, serde_json::Value>,
) -> String {
    let mut out = format!("Transfer for {target}.");
    if let Some(last) = transcript.iter().rev().find(|l| l.speaker == "caller") {
        out.push_str(" The caller said: ");
        out.push_str(&last.text);
        if !out.ends_with(['.', '?', '!', '।']) {
            out.push('.');
        }
    }
    if !slots.is_empty() {
        out.push_str(" Noted:");
        for (i, (k, v)) in slots.iter().enumerate() {
            let v = match v {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            out.push_str(if i == 0 { " " } else { ", " });
            out.push_str(&format!("{k} {v}"));
        }
        out.push('.');
    }
    out
}

/// The summary the agent hears: the model's, within `summary_ms`, or a
/// template from the transcript and slots.
pub(super) async fn build(ctx: &CallContext, target: &str) -> Handoff {
    let turns = ctx.history().turns().to_vec();
    let sensitive = ctx.policy.outcome.sensitive();
    let slots: serde_json::Map<String, serde_json::Value> = ctx
        .outcome()
        .map(|o| o.slots)
        .unwrap_or_default()
        .into_iter()
        .filter(|(k, _)| !sensitive.contains(k))
        .collect();
    // A caller who declined keeping the transcript: their words are not
    // kept for the handoff either (the summary is the template's, from the
    // slots; the agent hears them from the caller).
    let words_allowed = ctx.consent.transcript_allowed();
    let transcript: Vec<HandoffLine> = turns
        .iter()
        .filter(|_| words_allowed)
        .filter(|t| t.speaker != Speaker::Tool && !t.text().is_empty())
        .map(|t| HandoffLine {
            speaker: if t.speaker == Speaker::Caller {
                "caller"
            } else {
                "bot"
            },
            text: t.text(),
        })
        .collect();
    let limit = Duration::from_millis(u64::from(ctx.policy.transfer.summary_ms));
    let model = match words_allowed {
        true => tokio::time::timeout(limit, model_summary(ctx, &turns)).await,
        false => Ok(None),
    };
    let (summary, summary_source) = match model {
        Ok(Some(s)) => (s, "model"),
        _ => (template_summary(target, &transcript, &slots), "template"),
    };
    Handoff {
        summary,
        summary_source,
        target: target.to_owned(),
        language: ctx.spoken().code.clone(),
        transcript,
        slots,
    }
}

async fn model_summary(ctx: &CallContext, turns: &[Turn]) -> Option<String> {
    let llm = ctx.spoken().providers.llm.first()?.clone();
    if llm.is_simulated() {
        return None;
    }
    let request = LlmRequest {
        system_prompt: SUMMARY_PROMPT.into(),
        turns: turns.to_vec(),
        tools: Vec::new(),
        instruction: Some(SUMMARY_INSTRUCTION.into()),
    };
    let mut stream = llm.stream(request).await.ok()?;
    let mut text = String::new();
    while let Some(delta) = stream.next().await {
        match delta.ok()? {
            LlmDelta::Text(t) => text.push_str(&t),
            LlmDelta::ToolCall(_) => {}
        }
    }
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_template_names_the_target_the_last_words_and_the_slots() {
        let transcript = vec![
            HandoffLine {
                speaker: "caller",
                text: "मेरा बिल गलत है".into(),
            },
            HandoffLine {
                speaker: "bot",
                text: "Let me connect you.".into(),
            },
        ];
        let mut slots = serde_json::Map::new();
        slots.insert("order".into(), serde_json::json!("A-17"));
        let s = template_summary("billing", &transcript, &slots);
        assert_eq!(
            s,
            "Transfer for billing. The caller said: मेरा बिल गलत है. Noted: order A-17."
        );
        assert_eq!(
            template_summary("care", &[], &serde_json::Map::new()),
            "Transfer for care."
        );
    }
}
