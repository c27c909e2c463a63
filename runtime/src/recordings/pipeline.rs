//! From a call's blocks to a stored object: the per-call writer (on the
//! call path: one `try_send` per 500 ms), the disk thread, the encoder pool
//! (threads at the lowest priority, so encoding yields to live calls) and
//! the uploader (one task, oldest first, waiting out storage outages).

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use hark_actors::protocol::CallIds;
use hark_actors::recording::{RecordingSink, RecordingWriter};
use tokio::sync::{Notify, mpsc, oneshot};

use super::files::{Meta, raw_file, raw_meta, safe_id, state, write_meta};

use super::{DROPPED_BYTES, FAILED, RecordingSettings, Recordings, STARTED};

pub(super) enum DiskMsg {
    Begin {
        call: Arc<str>,
        started_at_ms: i64,
    },
    Write {
        call: Arc<str>,
        bytes: Vec<u8>,
    },
    Finish {
        call: Arc<str>,
        duration_ms: u64,
    },
    /// Answered once everything before it is on disk.
    Flush(oneshot::Sender<()>),
}

/// The senders into the pipeline.
pub(super) struct Handles {
    pub(super) disk: mpsc::Sender<DiskMsg>,
    /// Calls being recorded now (the encoders defer above a threshold).
    pub(super) live: AtomicUsize,
    encode: Mutex<std_mpsc::Sender<String>>,
    pub(super) wake: Arc<Notify>,
}

pub(super) struct Queues {
    disk: mpsc::Receiver<DiskMsg>,
    encode: std_mpsc::Receiver<String>,
}

impl Handles {
    pub(super) fn new(settings: &RecordingSettings) -> (Self, Queues) {
        let (disk, disk_rx) = mpsc::channel(settings.disk_queue.max(1));
        let (encode, encode_rx) = std_mpsc::channel();
        (
            Self {
                disk,
                live: AtomicUsize::new(0),
                encode: Mutex::new(encode),
                wake: Arc::new(Notify::new()),
            },
            Queues {
                disk: disk_rx,
                encode: encode_rx,
            },
        )
    }

    pub(super) fn wake(&self) {
        self.wake.notify_one();
    }

    fn encode(&self, call: String) {
        let tx = self.encode.lock().unwrap_or_else(PoisonError::into_inner);
        let _ = tx.send(call);
    }
}

/// The call tree's door into the pipeline.
pub(super) struct Sink(pub(super) Arc<Recordings>);

impl RecordingSink for Sink {
    fn begin(&self, ids: &CallIds, started_at_ms: i64) -> Option<Box<dyn RecordingWriter>> {
        let recs = &self.0;
        if !safe_id(&ids.call_id) {
            metrics::counter!(FAILED, "stage" => "begin").increment(1);
            tracing::warn!("call id not usable as a file name: not recorded");
            return None;
        }
        let call: Arc<str> = Arc::from(ids.call_id.as_str());
        if recs
            .pipeline
            .disk
            .try_send(DiskMsg::Begin {
                call: Arc::clone(&call),
                started_at_ms,
            })
            .is_err()
        {
            metrics::counter!(FAILED, "stage" => "begin").increment(1);
            tracing::error!("recording disk queue full: this call is not recorded");
            return None;
        }
        metrics::counter!(STARTED).increment(1);
        recs.pipeline.live.fetch_add(1, Ordering::AcqRel);
        recs.records.send(state(&call, "recording", started_at_ms));
        Some(Box::new(CallWriter {
            call,
            recs: Arc::clone(recs),
            started_at_ms,
            dropped: false,
        }))
    }
}

struct CallWriter {
    call: Arc<str>,
    recs: Arc<Recordings>,
    started_at_ms: i64,
    dropped: bool,
}

impl RecordingWriter for CallWriter {
    fn write(&mut self, interleaved: Vec<u8>) {
        let len = interleaved.len() as u64;
        let msg = DiskMsg::Write {
            call: Arc::clone(&self.call),
            bytes: interleaved,
        };
        if self.recs.pipeline.disk.try_send(msg).is_err() {
            // Explicit overflow policy: the call never waits on the disk.
            metrics::counter!(DROPPED_BYTES).increment(len);
            if !self.dropped {
                self.dropped = true;
                tracing::error!(
                    "recording disk queue full: audio dropped from this call's recording"
                );
            }
        }
    }

    fn finish(self: Box<Self>, duration_ms: u64) {
        self.recs.pipeline.live.fetch_sub(1, Ordering::AcqRel);
        let msg = DiskMsg::Finish {
            call: Arc::clone(&self.call),
            duration_ms,
        };
        if let Err(mpsc::error::TrySendError::Full(msg)) = self.recs.pipeline.disk.try_send(msg) {
            // The end must arrive: wait for room off the call path.
            let tx = self.recs.pipeline.disk.clone();
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(async move {
                    let _ = tx.send(msg).await;
                });
            }
        }
        let _ = self.started_at_ms;
    }
}

/// Starts the disk thread, the encoder pool and the uploader, and queues
/// what a previous run left behind.
pub(super) fn spawn(recs: &Arc<Recordings>, queues: Queues) {
    let Queues { disk, encode } = queues;
    let me = Arc::clone(recs);
    let spawned = std::thread::Builder::new()
        .name("hark-rec-disk".into())
        .spawn(move || disk_thread(&me, disk));
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the recording disk thread");
    }
    let encode = Arc::new(Mutex::new(encode));
    for i in 0..recs.settings.encode_workers.max(1) {
        let me = Arc::clone(recs);
        let jobs = Arc::clone(&encode);
        let spawned = std::thread::Builder::new()
            .name(format!("hark-rec-enc-{i}"))
            .spawn(move || super::encode::encoder_thread(&me, &jobs));
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start a recording encoder thread");
        }
    }
    // Raw files from before this start: calls a crash or a stop cut short.
    if let Ok(dir) = std::fs::read_dir(&recs.dirs.raw) {
        let mut left: Vec<String> = dir
            .filter_map(Result::ok)
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                name.strip_suffix(".ulaw").map(str::to_owned)
            })
            .collect();
        left.sort();
        for call in left {
            tracing::info!("recording left by an earlier run: encoding it");
            recs.pipeline.encode(call);
        }
    }
    let me = Arc::clone(recs);
    tokio::spawn(async move { super::upload::uploader(me).await });
}

impl Recordings {
    /// Waits (up to `limit`) until every block handed over so far is on disk.
    pub async fn flush(&self, limit: Duration) {
        let (tx, rx) = oneshot::channel();
        if self.pipeline.disk.send(DiskMsg::Flush(tx)).await.is_ok() {
            let _ = tokio::time::timeout(limit, rx).await;
        }
    }
}

fn disk_thread(recs: &Arc<Recordings>, mut rx: mpsc::Receiver<DiskMsg>) {
    let dirs = recs.dirs.clone();
    // Blocks arrive 8 KB at a time: each is one write, with no buffer per call.
    let mut open: HashMap<Arc<str>, (File, i64)> = HashMap::new();
    while let Some(msg) = rx.blocking_recv() {
        match msg {
            DiskMsg::Begin {
                call,
                started_at_ms,
            } => {
                let meta = Meta {
                    call_sid: call.to_string(),
                    started_at_ms,
                    ..Meta::default()
                };
                let opened = write_meta(&raw_meta(&dirs, &call), &meta).and_then(|()| {
                    OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(raw_file(&dirs, &call))
                });
                match opened {
                    Ok(f) => {
                        open.insert(call, (f, started_at_ms));
                    }
                    Err(e) => {
                        metrics::counter!(FAILED, "stage" => "disk").increment(1);
                        tracing::error!(error = %e, "cannot create a recording file");
                    }
                }
            }
            DiskMsg::Write { call, bytes } => {
                if let Some((f, _)) = open.get_mut(&call)
                    && let Err(e) = f.write_all(&bytes)
                {
                    metrics::counter!(FAILED, "stage" => "disk").increment(1);
                    tracing::error!(error = %e, "cannot write a recording file");
                }
            }
            DiskMsg::Finish { call, duration_ms } => {
                let Some((mut f, started_at_ms)) = open.remove(&call) else {
                    continue;
                };
                let done = f.flush().and_then(|()| f.sync_data()).and_then(|()| {
                    write_meta(
                        &raw_meta(&dirs, &call),
                        &Meta {
                            call_sid: call.to_string(),
                            started_at_ms,
                            duration_ms,
                            ..Meta::default()
                        },
                    )
                });
                match done {
                    Ok(()) => recs.pipeline.encode(call.to_string()),
                    Err(e) => {
                        metrics::counter!(FAILED, "stage" => "disk").increment(1);
                        tracing::error!(error = %e, "cannot complete a recording file; it is encoded at the next start");
                    }
                }
            }
            DiskMsg::Flush(done) => {
                for (f, _) in open.values_mut() {
                    let _ = f.flush();
                }
                let _ = done.send(());
            }
        }
    }
    for (mut f, _) in open.into_values() {
        let _ = f.flush();
    }
}
