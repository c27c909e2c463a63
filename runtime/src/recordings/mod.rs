//! Call recordings, from the call's tap to object storage.
//!
//! ```text
//!  call (hark-actors::recording)  ──500 ms blocks──▶ disk thread: raw/CALL.ulaw (stereo μ-law)
//!                                                        │ call ended
//!                                                        ▼
//!  encoder pool (N threads, lowest priority): Ogg Opus → sealed (64 KiB AEAD chunks)
//!                                                        │ pending/SEQ-CALL.hrec
//!                                                        ▼
//!  uploader (one task, oldest first, multipart): object store ── stored
//! ```
//!
//! Every step leaves its input on disk until its output is safe, so a
//! recording survives a storage outage and a restart: at start-up, raw
//! files are encoded (a call cut by a crash keeps what it had) and pending
//! files uploaded, in order. The `recordings` table follows each one's
//! state through the record writer, so a database outage loses none of it.
//!
//! # Layout
//! - [`settings`] — the `[recordings]` section; [`storage`] — the object
//!   store (local files or S3) and reading a stored or pending recording.
//! - [`pipeline`] — the per-call writer and the disk thread; [`encode`] —
//!   the encoder pool; [`upload`] — the uploader and deletions waiting for
//!   storage; [`files`] — the files on this node.
//! - [`opus`] — μ-law stereo → Ogg Opus, and back; [`sealed`] — chunked
//!   AEAD at rest.

pub mod encode;
pub mod files;
pub mod opus;
pub mod pipeline;
pub mod sealed;
pub mod settings;
pub mod storage;
pub mod upload;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use hark_actors::records::RecordSink;

use crate::pii::Pii;
pub use settings::{RecordingSettings, StorageKind};
pub use storage::Location;

/// Metric names.
pub const STARTED: &str = "hark_recordings_started_total";
pub const STORED: &str = "hark_recordings_stored_total";
pub const UPLOAD_FAILURES: &str = "hark_recording_upload_failures_total";
pub const ENCODE_SECONDS: &str = "hark_recording_encode_seconds";
pub const PENDING: &str = "hark_recordings_pending";
pub const DROPPED_BYTES: &str = "hark_recording_bytes_dropped_total";
pub const FAILED: &str = "hark_recording_failures_total";
/// Erasures of personal data on request (`api/personal_data.rs`).
pub const ERASURES: &str = "hark_erasures_total";

pub fn describe_metrics() {
    metrics::describe_counter!(
        STARTED,
        "Recordings started (the caller agreed, or the policy records always)."
    );
    metrics::describe_counter!(STORED, "Recordings uploaded to object storage.");
    metrics::describe_counter!(
        UPLOAD_FAILURES,
        "Upload attempts that failed (the recording waits on disk and is tried again)."
    );
    metrics::describe_histogram!(
        ENCODE_SECONDS,
        metrics::Unit::Seconds,
        "Time to encode and seal one recording."
    );
    metrics::describe_gauge!(
        PENDING,
        "Recordings on local disk waiting for object storage."
    );
    metrics::describe_counter!(
        DROPPED_BYTES,
        metrics::Unit::Bytes,
        "Recording audio dropped because the disk writer fell behind."
    );
    metrics::describe_counter!(
        FAILED,
        "Recordings that could not be written or encoded (by stage)."
    );
    metrics::describe_counter!(
        ERASURES,
        "Erasures of personal data on request (scope: person or call)."
    );
}

/// The node's recordings: where they are made, encoded, kept and read.
pub struct Recordings {
    pub settings: RecordingSettings,
    dirs: Dirs,
    pii: Arc<Pii>,
    records: Arc<dyn RecordSink>,
    store: storage::Storage,
    pipeline: pipeline::Handles,
    /// Calls erased while their recording was on its way: never stored.
    erased: Mutex<HashSet<String>>,
}

/// The local folders (under `data_dir/recordings`).
#[derive(Debug, Clone)]
pub struct Dirs {
    /// Stereo μ-law of calls in progress (and of calls a crash cut).
    pub raw: PathBuf,
    /// Encoding scratch.
    pub work: PathBuf,
    /// Object deletions (erasure, retention) waiting for storage: one key a line.
    pub deletions: PathBuf,
    /// Sealed recordings waiting for storage, named to upload in order.
    pub pending: PathBuf,
    /// The object store, when it is local.
    pub objects: PathBuf,
}

impl Dirs {
    pub fn under(data_dir: &Path) -> Self {
        let root = data_dir.join("recordings");
        Self {
            raw: root.join("raw"),
            work: root.join("work"),
            deletions: root.join("deletions.txt"),
            pending: root.join("pending"),
            objects: root.join("objects"),
        }
    }

    fn create(&self) -> std::io::Result<()> {
        for d in [&self.raw, &self.work, &self.pending, &self.objects] {
            std::fs::create_dir_all(d)?;
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RecordingError {
    #[error("recordings folder: {0}")]
    Io(#[from] std::io::Error),
    #[error("object storage: {0}")]
    Storage(String),
    #[error("{0}")]
    Seal(#[from] sealed::SealError),
    #[error("no recording")]
    NotFound,
}

impl Recordings {
    /// Opens the folders and the store and starts the disk thread, the
    /// encoder pool and the uploader; picks up what a previous run left.
    pub fn start(
        settings: RecordingSettings,
        data_dir: &Path,
        pii: Arc<Pii>,
        records: Arc<dyn RecordSink>,
    ) -> Result<Arc<Self>, RecordingError> {
        describe_metrics();
        let dirs = Dirs::under(data_dir);
        dirs.create()?;
        let store = storage::Storage::open(&settings, &dirs)?;
        let (pipeline, queues) = pipeline::Handles::new(&settings);
        let me = Arc::new(Self {
            settings,
            dirs,
            pii,
            records,
            store,
            pipeline,
            erased: Mutex::new(HashSet::new()),
        });
        pipeline::spawn(&me, queues);
        Ok(me)
    }

    pub fn dirs(&self) -> &Dirs {
        &self.dirs
    }

    pub fn storage(&self) -> &storage::Storage {
        &self.store
    }

    pub fn pii(&self) -> &Pii {
        &self.pii
    }

    /// The call sink the call tree records into.
    pub fn sink(self: &Arc<Self>) -> Arc<dyn hark_actors::recording::RecordingSink> {
        Arc::new(pipeline::Sink(Arc::clone(self)))
    }

    fn is_erased(&self, call_sid: &str) -> bool {
        self.erased
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(call_sid)
    }

    /// Removes every trace of these calls' recordings on this node (raw,
    /// scratch, pending files) and in storage; with `hold_off`, a recording
    /// still on its way is dropped when it gets there (erasure; the set
    /// grows with erasure requests only). How many local recordings were removed.
    pub async fn erase(
        &self,
        calls: &[String],
        keys: &[String],
        hold_off: bool,
    ) -> Result<u64, RecordingError> {
        if hold_off {
            let mut erased = self.erased.lock().unwrap_or_else(PoisonError::into_inner);
            erased.extend(calls.iter().cloned());
        }
        let mut removed = 0u64;
        for call in calls {
            removed += files::remove_local(&self.dirs, call)?;
        }
        let mut later = Vec::new();
        for key in keys.iter().filter(|k| !k.is_empty()) {
            if let Err(e) = self.store.delete(key).await {
                tracing::warn!(error = %e, "object storage unreachable: the deletion waits on disk and is done when it is back");
                later.push(key.clone());
            }
        }
        if !later.is_empty() {
            upload::defer_deletions(&self.dirs, &later)?;
            self.pipeline.wake();
        }
        Ok(removed)
    }

    /// Where a call's recording can be read now: in storage, or still on
    /// this node waiting to be uploaded.
    pub fn locate(&self, call_sid: &str, state: &str, object_key: &str) -> Option<Location> {
        match state {
            "stored" if !object_key.is_empty() => Some(Location::Stored(object_key.to_owned())),
            "pending_upload" => files::pending_file(&self.dirs, call_sid).map(Location::Local),
            _ => None,
        }
    }
}
