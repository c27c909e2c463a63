//! A call taken over from a lost node (the cluster's `<Connect action>`):
//! its turns and outcome slots so far, read back from the shared records,
//! become the new tree's history and slots.

use std::time::Duration;

use hark_actors::history::{PastTurn, Resumed, Speaker};
use tracing::Span;

use crate::state::AppState;

/// Longest the stream's start waits for the records.
const READ_WAIT: Duration = Duration::from_secs(2);

/// The call so far: its turns and slots. What cannot be read in time is
/// left out (the call goes on without it, logged).
pub(super) async fn resumed(app: &AppState, call_sid: &str, span: &Span) -> Resumed {
    let slots = match tokio::time::timeout(READ_WAIT, app.lookups.slots(call_sid, &app.pii)).await {
        Ok(Ok(slots)) => slots,
        _ => {
            tracing::warn!(parent: span, "cannot read the call's outcome slots: it goes on without them");
            Default::default()
        }
    };
    Resumed {
        taken_over: true,
        turns: past_turns(app, call_sid, span).await,
        slots,
    }
}

/// What the caller heard so far: each turn's text, or of a bot turn cut
/// by barge-in the part they heard. Nothing when the records cannot be
/// read in time (the call goes on without them, logged).
async fn past_turns(app: &AppState, call_sid: &str, span: &Span) -> Vec<PastTurn> {
    let read = tokio::time::timeout(READ_WAIT, app.lookups.transcript(call_sid, &app.pii));
    let turns = match read.await {
        Ok(Ok(turns)) => turns,
        Ok(Err(e)) => {
            tracing::warn!(parent: span, error = %e, "cannot read the call's turns: it goes on without its history");
            return Vec::new();
        }
        Err(_) => {
            tracing::warn!(parent: span, "the call's turns did not come in time: it goes on without its history");
            return Vec::new();
        }
    };
    tracing::info!(parent: span, turns = turns.len(), "call taken over from a lost node");
    turns
        .into_iter()
        .filter_map(|t| {
            let speaker = match t.speaker.as_str() {
                "caller" => Speaker::Caller,
                "bot" => Speaker::Bot,
                _ => return None,
            };
            let text = match (t.interrupted, t.heard) {
                (true, Some(heard)) => heard,
                _ => t.text,
            };
            (!text.trim().is_empty()).then_some(PastTurn { speaker, text })
        })
        .collect()
}
