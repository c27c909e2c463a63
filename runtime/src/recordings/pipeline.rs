//! From a call's blocks to a stored object: the per-call writer (on the
//! call path: one `try_send` per 500 ms), the disk thread, the encoder pool
//! (threads at the lowest priority, so encoding yields to live calls) and
//! the uploader (one task, oldest first, waiting out storage outages).

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use hark_actors::protocol::CallIds;
use hark_actors::recording::{RecordingSink, RecordingWriter};
use hark_actors::records::{Record, now_ms};
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, mpsc, oneshot};

use super::{
    DROPPED_BYTES, Dirs, ENCODE_SECONDS, FAILED, PENDING, RecordingSettings, Recordings, STARTED,
    STORED, UPLOAD_FAILURES, opus, sealed,
};

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
    disk: mpsc::Sender<DiskMsg>,
    /// Calls being recorded now (the encoders defer above a threshold).
    live: AtomicUsize,
    encode: Mutex<std_mpsc::Sender<String>>,
    wake: Arc<Notify>,
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

/// What a file on disk says about its recording.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Meta {
    call_sid: String,
    started_at_ms: i64,
    #[serde(default)]
    duration_ms: u64,
    #[serde(default)]
    bytes: u64,
    #[serde(default)]
    key_id: String,
}

fn read_meta(path: &Path) -> Option<Meta> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

fn write_meta(path: &Path, meta: &Meta) -> std::io::Result<()> {
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec(meta).unwrap_or_default())?;
    std::fs::rename(tmp, path)
}

/// File names carry call ids: only ids of this shape are recorded.
fn safe_id(call: &str) -> bool {
    !call.is_empty()
        && call.len() <= 64
        && call
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn raw_file(dirs: &Dirs, call: &str) -> PathBuf {
    dirs.raw.join(format!("{call}.ulaw"))
}

fn raw_meta(dirs: &Dirs, call: &str) -> PathBuf {
    dirs.raw.join(format!("{call}.json"))
}

/// The pending file of a call, if it has one.
pub(super) fn pending_file(dirs: &Dirs, call: &str) -> Option<PathBuf> {
    let suffix = format!("-{call}.sealed");
    std::fs::read_dir(&dirs.pending)
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.ends_with(&suffix))
        })
}

/// Pending recordings, oldest first.
fn pending_files(dirs: &Dirs) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dirs.pending)
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "sealed"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// Removes a call's files on this node (raw, scratch, pending); how many recordings.
pub(super) fn remove_local(dirs: &Dirs, call: &str) -> std::io::Result<u64> {
    let mut removed = 0;
    let mut gone = |p: PathBuf, counts: bool| -> std::io::Result<()> {
        match std::fs::remove_file(&p) {
            Ok(()) => {
                if counts {
                    removed += 1;
                }
                Ok(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    };
    gone(raw_file(dirs, call), true)?;
    gone(raw_meta(dirs, call), false)?;
    gone(dirs.work.join(format!("{call}.ogg")), false)?;
    while let Some(p) = pending_file(dirs, call) {
        gone(p.with_extension("json"), false)?;
        gone(p, true)?;
    }
    Ok(removed.min(1))
}

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

fn state(call: &str, state: &str, started_at_ms: i64) -> Record {
    Record::Recording {
        call_sid: call.to_owned(),
        state: state.to_owned(),
        object_key: String::new(),
        duration_ms: 0,
        bytes: 0,
        key_id: String::new(),
        started_at_ms,
        at_ms: now_ms(),
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
            .spawn(move || encoder_thread(&me, &jobs));
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
    tokio::spawn(async move { uploader(me).await });
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

fn encoder_thread(recs: &Arc<Recordings>, jobs: &Mutex<std_mpsc::Receiver<String>>) {
    // Encoding can wait; live calls cannot. SCHED_IDLE: the kernel runs
    // this thread only on a core nothing else wants, and a waking call
    // worker preempts it at once (nice 19 alone still took the CPU from
    // calls in slices: measured, README *Recordings*).
    {
        use thread_priority::{
            NormalThreadSchedulePolicy, ThreadPriority, ThreadSchedulePolicy,
            set_thread_priority_and_policy, thread_native_id,
        };
        let idle = set_thread_priority_and_policy(
            thread_native_id(),
            ThreadPriority::Min,
            ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle),
        );
        if let Err(e) =
            idle.or_else(|_| thread_priority::set_current_thread_priority(ThreadPriority::Min))
        {
            tracing::debug!(error = ?e, "encoder thread keeps its priority");
        }
    }
    loop {
        let job = jobs.lock().unwrap_or_else(PoisonError::into_inner).recv();
        let Ok(call) = job else {
            return;
        };
        // At peak the audio waits on disk (safe there) and is encoded when
        // the node is quieter, so encoding never competes with live calls.
        let above = recs.settings.defer_encoding_above;
        if above > 0 {
            let waited = Instant::now();
            while recs.pipeline.live.load(Ordering::Acquire) > above
                && waited.elapsed() < Duration::from_secs(recs.settings.max_defer_secs)
            {
                std::thread::sleep(Duration::from_secs(1));
            }
        }
        let start = Instant::now();
        match encode_one(recs, &call) {
            Ok(true) => {
                metrics::histogram!(ENCODE_SECONDS).record(start.elapsed().as_secs_f64());
                recs.pipeline.wake.notify_one();
            }
            Ok(false) => {}
            Err(e) => {
                metrics::counter!(FAILED, "stage" => "encode").increment(1);
                tracing::error!(error = %e, "cannot encode a recording; its audio stays on disk for the next start");
            }
        }
    }
}

/// Raw → Ogg Opus → sealed, pending upload. False when there was nothing to do.
fn encode_one(recs: &Recordings, call: &str) -> Result<bool, super::RecordingError> {
    let dirs = &recs.dirs;
    if recs.is_erased(call) {
        remove_local(dirs, call)?;
        return Ok(false);
    }
    let raw = raw_file(dirs, call);
    if !raw.exists() {
        return Ok(false);
    }
    let meta = read_meta(&raw_meta(dirs, call)).unwrap_or_else(|| Meta {
        call_sid: call.to_owned(),
        ..Meta::default()
    });
    recs.records
        .send(state(call, "encoding", meta.started_at_ms));
    let work = dirs.work.join(format!("{call}.ogg"));
    let encoded = {
        let input = BufReader::with_capacity(64 * 1024, File::open(&raw)?);
        let mut output = BufWriter::new(File::create(&work)?);
        let e = opus::encode(input, &mut output, recs.settings.opus_complexity)
            .map_err(|e| super::RecordingError::Storage(e.to_string()))?;
        output.flush()?;
        e
    };
    let name = format!("{:016}-{call}", now_ms());
    let sealed_path = dirs.pending.join(format!("{name}.sealed"));
    let tmp = dirs.pending.join(format!("{name}.sealed.tmp"));
    let info = {
        let input = BufReader::with_capacity(64 * 1024, File::open(&work)?);
        let mut output = BufWriter::new(File::create(&tmp)?);
        let info = sealed::seal(&recs.pii, input, &mut output)?;
        output.flush()?;
        output.get_ref().sync_data()?;
        info
    };
    let duration_ms = encoded.samples * 1000 / 8000;
    let pending = Meta {
        call_sid: call.to_owned(),
        started_at_ms: meta.started_at_ms,
        duration_ms,
        bytes: info.plain,
        key_id: info.key_id.clone(),
    };
    write_meta(&sealed_path.with_extension("json"), &pending)?;
    std::fs::rename(&tmp, &sealed_path)?;
    let _ = std::fs::remove_file(&work);
    let _ = std::fs::remove_file(&raw);
    let _ = std::fs::remove_file(raw_meta(dirs, call));
    if recs.is_erased(call) {
        remove_local(dirs, call)?;
        return Ok(false);
    }
    recs.records.send(Record::Recording {
        call_sid: call.to_owned(),
        state: "pending_upload".into(),
        object_key: String::new(),
        duration_ms,
        bytes: info.plain,
        key_id: info.key_id,
        started_at_ms: meta.started_at_ms,
        at_ms: now_ms(),
    });
    tracing::info!(duration_ms, bytes = info.plain, "recording encoded");
    Ok(true)
}

/// Uploads pending recordings oldest first; while storage fails, waits
/// (doubling, up to `max_retry_secs`) and tries the same one again.
async fn uploader(recs: Arc<Recordings>) {
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
                    let _ = recs.store.delete(&key).await;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_ids_become_file_names() {
        assert!(safe_id("CA0123456789abcdef0123456789abcdef"));
        assert!(safe_id("call_1-x"));
        for bad in ["", "../etc", "a/b", "CA 1", "é", &"x".repeat(65)] {
            assert!(!safe_id(bad), "{bad}");
        }
    }
}
