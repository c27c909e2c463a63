//! Background jobs of a node: today, the hourly retention purge.

use std::sync::Arc;
use std::time::Duration;

use crate::state::AppState;

/// Deletes transcripts older than `retention_days`, hourly, and audits it.
pub fn spawn_purge(app: Arc<AppState>) {
    if app.config.retention_days == 0 {
        return;
    }
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(3600));
        loop {
            tick.tick().await;
            let cutoff =
                hark_actors::records::now_ms() - app.config.retention_days as i64 * 86_400_000;
            match app.store.purge_personal(cutoff).await {
                Ok(n) => {
                    let _ = app
                        .store
                        .audit(
                            "hark",
                            "purge_personal_data",
                            "calls",
                            &format!(
                                "older than {} days: {} turns, {} events, {} outcomes erased",
                                app.config.retention_days, n.turns, n.events, n.outcomes
                            ),
                        )
                        .await;
                    if n != crate::store::queries::Purged::default() {
                        tracing::info!(
                            turns = n.turns,
                            events = n.events,
                            outcomes = n.outcomes,
                            "erased personal data past retention"
                        );
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "retention purge failed; will retry in an hour")
                }
            }
        }
    });
}
