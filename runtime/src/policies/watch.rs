//! Rescans the policy folder when a file in it changes.
//!
//! notify's debouncer coalesces the burst of events one save makes (an
//! editor's temp file and rename, a `git checkout` of several files) into
//! one; a rescan then reads every file and applies only those whose text
//! changed. The watcher's threads are per node, never per call.

use std::sync::Arc;
use std::time::Duration;

use notify_debouncer_mini::notify::RecursiveMode;
use notify_debouncer_mini::{DebounceEventResult, new_debouncer};
use tokio::sync::mpsc;

use super::{Live, Policies};

/// Starts watching; the returned task owns the watcher and stops with the
/// runtime. `None` when there is no folder to watch (the built-in policy)
/// or the watcher cannot start (inotify limits: the reload API remains).
pub fn spawn(
    policies: Arc<Policies>,
    debounce: Duration,
    on_default_change: impl Fn(&Live) + Send + 'static,
) -> Option<tokio::task::JoinHandle<()>> {
    match watch(policies, debounce, on_default_change) {
        Ok(task) => task,
        Err(error) => {
            tracing::warn!(%error, "cannot watch the policy folder; reload through the API");
            None
        }
    }
}

fn watch(
    policies: Arc<Policies>,
    debounce: Duration,
    on_default_change: impl Fn(&Live) + Send + 'static,
) -> Result<Option<tokio::task::JoinHandle<()>>, notify_debouncer_mini::notify::Error> {
    let Some(folder) = policies.source().folder().map(std::path::Path::to_path_buf) else {
        return Ok(None);
    };
    // One pending rescan is enough: a rescan reads everything.
    let (tx, mut rx) = mpsc::channel::<()>(1);
    let mut debouncer = new_debouncer(debounce, move |result: DebounceEventResult| match result {
        Ok(events) if events.iter().any(|e| is_policy_file(&e.path)) => {
            let _ = tx.try_send(());
        }
        Ok(_) => {}
        Err(error) => tracing::warn!(%error, "policy folder watch error"),
    })?;
    debouncer
        .watcher()
        .watch(&folder, RecursiveMode::NonRecursive)?;
    tracing::info!(folder = %folder.display(), debounce_ms = debounce.as_millis() as u64, "watching the policy folder");
    Ok(Some(tokio::spawn(async move {
        let _debouncer = debouncer;
        while rx.recv().await.is_some() {
            let before = policies.default_live();
            let scan = Arc::clone(&policies);
            // File reads and provider set-up are blocking work.
            match tokio::task::spawn_blocking(move || scan.rescan()).await {
                Ok(changes) if !changes.is_empty() => {
                    tracing::debug!(?changes, "policy folder rescanned");
                }
                Ok(_) => {}
                Err(error) => tracing::error!(%error, "policy rescan failed"),
            }
            let after = policies.default_live();
            if !Arc::ptr_eq(&before, &after) {
                on_default_change(&after);
            }
        }
    })))
}

fn is_policy_file(path: &std::path::Path) -> bool {
    path.extension().is_some_and(|x| x == "toml")
}
