//! The encoder pool: threads at the lowest priority (SCHED_IDLE) turning
//! finished calls' raw audio into sealed Ogg Opus, pending upload.

use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::sync::atomic::Ordering;
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use hark_actors::records::{Record, now_ms};

use super::files::{Meta, raw_file, raw_meta, read_meta, remove_local, state, write_meta};
use super::{ENCODE_SECONDS, FAILED, Recordings, opus, sealed};

pub(super) fn encoder_thread(recs: &Arc<Recordings>, jobs: &Mutex<std_mpsc::Receiver<String>>) {
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
