//! What the runtime does when a rule has ended a call: the call core knows
//! no phone numbers, so the blocklist is the session's to write.

use std::sync::Arc;

use crate::state::AppState;

/// A caller whose call the profanity rule ended goes on the blocklist for
/// `days` (audited; the next call from the number gets `<Reject/>`). A
/// withheld or invalid number is never blocked: it is nobody in particular.
pub(super) fn block_for_profanity(app: &Arc<AppState>, from: &str, days: u32) {
    let Some(number) = crate::carriers::twilio::webhook::caller_identity(from) else {
        tracing::info!("profanity: the caller's number is withheld or invalid; not blocked");
        return;
    };
    if days == 0 {
        return;
    }
    let app = Arc::clone(app);
    tokio::spawn(async move {
        let until = hark_actors::records::now_ms() + i64::from(days) * 86_400_000;
        match app
            .store
            .block(
                &number,
                "profanity",
                "rule:profanity",
                Some(until),
                &app.pii,
            )
            .await
        {
            Ok(_) => tracing::info!(
                number = %crate::pii::mask(&number),
                days,
                "profanity: the caller's number is blocked"
            ),
            Err(e) => tracing::warn!(error = %e, "profanity: could not block the caller's number"),
        }
    });
}
