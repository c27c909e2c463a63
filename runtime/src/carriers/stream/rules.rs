//! The rules' business with phone numbers, which the call core never sees:
//! whether the consent rule asks this caller (by the number's prefix), the
//! blocklist entry when the profanity rule has ended a call, and the
//! do-not-call entry when the caller asked not to be called again.

use std::sync::Arc;

use hark_actors::PolicyFile;

use crate::state::AppState;
use crate::stream_token::StreamClaims;

/// Whether the policy's consent rule asks the other party: the caller, or
/// the callee of an outbound call.
pub(super) fn asks_consent(policy: &PolicyFile, claims: &StreamClaims) -> bool {
    let party = if claims.direction.starts_with("outbound") {
        &claims.to
    } else {
        &claims.from
    };
    let number = crate::carriers::twilio::webhook::caller_identity(party);
    policy.rules.consent.asks(number.as_deref())
}

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

/// The party who asked not to be called again goes on the do-not-call list
/// (every campaign, every outbound call; audited, source
/// `rule:do_not_call`). A withheld or invalid number is nobody to list.
pub(super) fn do_not_call(app: &Arc<AppState>, party: &str) {
    let Some(number) = crate::carriers::twilio::webhook::caller_identity(party) else {
        tracing::info!("do_not_call: the number is withheld or invalid; not listed");
        return;
    };
    let app = Arc::clone(app);
    tokio::spawn(async move {
        // Through a database outage: tried again, doubling from 1 s (about
        // 17 minutes in all). A campaign's lead is listed again when its
        // attempt settles, whatever happens here.
        let mut wait = std::time::Duration::from_secs(1);
        for _ in 0..10 {
            match app.store.dnc_asked(&number, &app.pii).await {
                Ok(()) => {
                    tracing::info!(
                        number = %crate::pii::mask(&number),
                        "do_not_call: the number is on the do-not-call list"
                    );
                    return;
                }
                Err(e) if e.is_unavailable() => {
                    tracing::warn!(error = %e, "do_not_call: the database is away; trying again");
                    tokio::time::sleep(wait).await;
                    wait *= 2;
                }
                Err(e) => {
                    tracing::error!(error = %e, "do_not_call: could not list the number");
                    return;
                }
            }
        }
    });
}
