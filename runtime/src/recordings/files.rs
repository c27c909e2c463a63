//! The pipeline's files on this node: raw audio and its description,
//! pending (sealed) recordings, and removing a call's files.

use std::path::{Path, PathBuf};

use hark_actors::records::{Record, now_ms};
use serde::{Deserialize, Serialize};

use super::Dirs;

/// What a file on disk says about its recording.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(super) struct Meta {
    pub(super) call_sid: String,
    pub(super) started_at_ms: i64,
    #[serde(default)]
    pub(super) duration_ms: u64,
    #[serde(default)]
    pub(super) bytes: u64,
    #[serde(default)]
    pub(super) key_id: String,
}

pub(super) fn read_meta(path: &Path) -> Option<Meta> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

pub(super) fn write_meta(path: &Path, meta: &Meta) -> std::io::Result<()> {
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec(meta).unwrap_or_default())?;
    std::fs::rename(tmp, path)
}

/// File names carry call ids: only ids of this shape are recorded.
pub(super) fn safe_id(call: &str) -> bool {
    !call.is_empty()
        && call.len() <= 64
        && call
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

pub(super) fn raw_file(dirs: &Dirs, call: &str) -> PathBuf {
    dirs.raw.join(format!("{call}.ulaw"))
}

pub(super) fn raw_meta(dirs: &Dirs, call: &str) -> PathBuf {
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
pub(super) fn pending_files(dirs: &Dirs) -> Vec<PathBuf> {
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

/// A recording's state for the `recordings` table.
pub(super) fn state(call: &str, state: &str, started_at_ms: i64) -> Record {
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
