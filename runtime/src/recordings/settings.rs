//! The `[recordings]` section of the runtime config.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum StorageKind {
    /// Files under `data_dir/recordings/objects` (the embedded default).
    #[default]
    Local,
    /// An S3-compatible bucket; credentials from the environment
    /// (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`).
    S3,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RecordingSettings {
    /// `local` or `s3`.
    pub storage: StorageKind,
    /// The S3 bucket (required with `s3`).
    pub bucket: String,
    /// Prepended to every object key (`recordings/` → `recordings/CA….ogg.sealed`).
    pub prefix: String,
    /// The S3 region.
    pub region: String,
    /// An S3-compatible endpoint (MinIO, Ceph, a test server); empty: AWS.
    pub endpoint: String,
    /// Allow `http://` endpoints (tests, a private network).
    pub allow_http: bool,
    /// Threads encoding recordings to Opus, at the lowest CPU priority.
    pub encode_workers: usize,
    /// While more calls than this are being recorded, encoding waits (the
    /// audio is safe on disk) so it never competes with live calls; 0:
    /// always encode.
    pub defer_encoding_above: usize,
    /// The longest a recording's encoding is deferred, then it is encoded
    /// whatever the load.
    pub max_defer_secs: u64,
    /// libopus's effort, 0–10: 10 costs twice 5's CPU for no audible gain
    /// on narrowband voice.
    pub opus_complexity: u8,
    /// Multipart upload part size in bytes (S3's minimum is 5 MiB).
    pub upload_part_bytes: usize,
    /// 500 ms blocks of call audio waiting for the disk thread, across
    /// calls; past it blocks are dropped and counted (the disk is failing).
    pub disk_queue: usize,
    /// The longest wait between upload attempts while storage is down.
    pub max_retry_secs: u64,
}

impl Default for RecordingSettings {
    fn default() -> Self {
        Self {
            storage: StorageKind::Local,
            bucket: String::new(),
            prefix: "recordings/".into(),
            region: "us-east-1".into(),
            endpoint: String::new(),
            allow_http: false,
            encode_workers: 1,
            defer_encoding_above: 0,
            max_defer_secs: 3600,
            opus_complexity: super::opus::DEFAULT_COMPLEXITY,
            upload_part_bytes: 5 * 1024 * 1024,
            disk_queue: 8192,
            max_retry_secs: 30,
        }
    }
}

impl RecordingSettings {
    /// Problems with these settings, as `(field, reason)`.
    pub fn validate(&self) -> Vec<(&'static str, String)> {
        let mut errors = Vec::new();
        if self.storage == StorageKind::S3 && self.bucket.trim().is_empty() {
            errors.push(("recordings.bucket", "required with storage = \"s3\"".into()));
        }
        if !(1..=64).contains(&self.encode_workers) {
            errors.push((
                "recordings.encode_workers",
                format!("{} is not 1-64", self.encode_workers),
            ));
        }
        if self.opus_complexity > 10 {
            errors.push((
                "recordings.opus_complexity",
                format!("{} is not 0-10", self.opus_complexity),
            ));
        }
        if self.upload_part_bytes < 5 * 1024 * 1024 {
            errors.push((
                "recordings.upload_part_bytes",
                "S3 parts are at least 5 MiB (5242880)".into(),
            ));
        }
        if self.disk_queue == 0 {
            errors.push(("recordings.disk_queue", "must be at least 1".into()));
        }
        if self.max_retry_secs == 0 {
            errors.push(("recordings.max_retry_secs", "must be at least 1".into()));
        }
        if self.prefix.starts_with('/') || self.prefix.contains("..") {
            errors.push((
                "recordings.prefix",
                "a relative key prefix, without ..".into(),
            ));
        }
        errors
    }
}
