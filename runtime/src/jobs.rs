//! Background jobs of a node: the hourly retention purges (transcripts,
//! then recordings).

use std::sync::Arc;
use std::time::Duration;

use crate::state::AppState;

/// Deletes recordings older than `recording_retention_days` (or
/// `retention_days`), hourly, and audits it.
pub fn spawn_recording_purge(app: Arc<AppState>) {
    let days = app.config.recording_days();
    if days == 0 {
        return;
    }
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(3600));
        loop {
            tick.tick().await;
            let cutoff = hark_actors::records::now_ms() - days as i64 * 86_400_000;
            match purge_recordings(&app, cutoff).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(recordings = n, "deleted recordings past retention"),
                Err(e) => {
                    tracing::warn!(error = %e, "recording retention purge failed; will retry in an hour")
                }
            }
        }
    });
}

/// Deletes the recordings started before `cutoff_ms` (objects first, then
/// their rows), audited; how many.
pub async fn purge_recordings(app: &AppState, cutoff_ms: i64) -> Result<usize, String> {
    let mut total = 0;
    loop {
        let expired = app
            .store
            .expired_recordings(cutoff_ms)
            .await
            .map_err(|e| e.to_string())?;
        if expired.is_empty() {
            break;
        }
        let (calls, keys): (Vec<String>, Vec<String>) = expired.into_iter().unzip();
        // Local copies (a recording still waiting for storage) go too.
        app.recordings
            .erase(&calls, &keys, false)
            .await
            .map_err(|e| e.to_string())?;
        app.store
            .recordings_deleted(&calls, hark_actors::records::now_ms())
            .await
            .map_err(|e| e.to_string())?;
        total += calls.len();
    }
    if total > 0 {
        let _ = app
            .store
            .audit(
                "hark",
                "purge_recordings",
                "recordings",
                &format!(
                    "older than {} days: {total} recordings deleted",
                    app.config.recording_days()
                ),
            )
            .await;
    }
    Ok(total)
}

/// Deletes transcripts older than `retention_days`, hourly, and audits it.
pub fn spawn_purge(app: Arc<AppState>) {
    spawn_recording_purge(Arc::clone(&app));
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
