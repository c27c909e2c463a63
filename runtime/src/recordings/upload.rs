//! Recordings to object storage: one task uploads pending recordings oldest
//! first and waits out outages (doubling, up to `max_retry_secs`); object
//! deletions storage refused wait on disk and go first when it is back.

use std::fs::OpenOptions;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use hark_actors::records::{Record, now_ms};

use super::files::{pending_files, read_meta, remove_local};
use super::{Dirs, PENDING, Recordings, STORED, UPLOAD_FAILURES};

/// Object deletions storage refused: kept (fsynced) until the uploader
/// can do them, so an erasure is never lost to an outage.
pub(super) fn defer_deletions(dirs: &Dirs, keys: &[String]) -> std::io::Result<()> {
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&dirs.deletions)?;
    for k in keys {
        writeln!(f, "{k}")?;
    }
    f.sync_data()
}

/// Does the deletions left waiting; false while storage still refuses.
async fn do_deletions(recs: &Recordings) -> bool {
    let Ok(text) = std::fs::read_to_string(&recs.dirs.deletions) else {
        return true;
    };
    let mut left = Vec::new();
    for key in text.lines().filter(|l| !l.is_empty()) {
        if !left.is_empty() || recs.store.delete(key).await.is_err() {
            left.push(key.to_owned());
        }
    }
    let rewritten = if left.is_empty() {
        std::fs::remove_file(&recs.dirs.deletions)
    } else {
        let tmp = recs.dirs.deletions.with_extension("tmp");
        std::fs::write(&tmp, left.join("\n") + "\n")
            .and_then(|()| std::fs::rename(&tmp, &recs.dirs.deletions))
    };
    if let Err(e) = rewritten {
        tracing::error!(error = %e, "cannot rewrite the waiting deletions");
    }
    left.is_empty()
}

/// Uploads pending recordings oldest first; while storage fails, waits
/// (doubling, up to `max_retry_secs`) and tries the same one again.
pub(super) async fn uploader(recs: Arc<Recordings>) {
    let first = Duration::from_millis(500);
    let max = Duration::from_secs(recs.settings.max_retry_secs.max(1));
    let mut retry = first;
    let mut down = false;
    loop {
        // Deletions first: an erasure must not wait behind uploads.
        if !do_deletions(&recs).await {
            metrics::counter!(UPLOAD_FAILURES).increment(1);
            tokio::time::sleep(retry).await;
            retry = (retry * 2).min(max);
            continue;
        }
        let dirs = recs.dirs.clone();
        let files = tokio::task::spawn_blocking(move || pending_files(&dirs))
            .await
            .unwrap_or_default();
        metrics::gauge!(PENDING).set(files.len() as f64);
        let Some(file) = files.into_iter().next() else {
            let _ =
                tokio::time::timeout(Duration::from_secs(30), recs.pipeline.wake.notified()).await;
            continue;
        };
        let Some(meta) = read_meta(&file.with_extension("json")) else {
            tracing::error!(file = %file.display(), "pending recording without its description; moved aside");
            let _ = std::fs::rename(&file, file.with_extension("orphan"));
            continue;
        };
        let call = meta.call_sid.clone();
        if recs.is_erased(&call) {
            let _ = remove_local(&recs.dirs, &call);
            continue;
        }
        let key = recs.store.key_for(&call);
        match recs.store.upload(&key, &file, &meta.key_id).await {
            Ok(_) => {
                if down {
                    tracing::info!("object storage is back: uploading waiting recordings");
                    down = false;
                }
                retry = first;
                if recs.is_erased(&call) {
                    // Erased while it was uploading: it goes again at once.
                    if recs.store.delete(&key).await.is_err()
                        && let Err(e) = defer_deletions(&recs.dirs, std::slice::from_ref(&key))
                    {
                        tracing::error!(error = %e, "cannot keep an erased recording's deletion");
                    }
                } else {
                    recs.records.send(Record::Recording {
                        call_sid: call.clone(),
                        state: "stored".into(),
                        object_key: key,
                        duration_ms: meta.duration_ms,
                        bytes: meta.bytes,
                        key_id: meta.key_id.clone(),
                        started_at_ms: meta.started_at_ms,
                        at_ms: now_ms(),
                    });
                    metrics::counter!(STORED).increment(1);
                }
                let _ = std::fs::remove_file(&file);
                let _ = std::fs::remove_file(file.with_extension("json"));
            }
            Err(e) => {
                metrics::counter!(UPLOAD_FAILURES).increment(1);
                if !down {
                    tracing::warn!(error = %e, "object storage unreachable: recordings wait on disk and are uploaded when it is back");
                    down = true;
                }
                tokio::time::sleep(retry).await;
                retry = (retry * 2).min(max);
            }
        }
    }
}
