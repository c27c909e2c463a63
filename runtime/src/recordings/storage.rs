//! The object store recordings are kept in (`object_store`: a local folder
//! or an S3-compatible bucket), and reading a recording back wherever it is.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{
    Attribute, AttributeValue, Attributes, ClientOptions, ObjectStore, ObjectStoreExt,
    PutMultipartOptions, RetryConfig, WriteMultipart,
};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::{Dirs, RecordingError, RecordingSettings, StorageKind};

/// Where a recording is now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// In the object store, under this key.
    Stored(String),
    /// On this node, waiting for the store.
    Local(PathBuf),
}

pub struct Storage {
    store: Arc<dyn ObjectStore>,
    prefix: String,
    /// S3 takes the key id as object metadata; the local store takes none
    /// (the sealed header names the key either way).
    metadata: bool,
    part: usize,
}

fn storage_err(e: impl std::fmt::Display) -> RecordingError {
    RecordingError::Storage(e.to_string())
}

impl Storage {
    pub fn open(settings: &RecordingSettings, dirs: &Dirs) -> Result<Self, RecordingError> {
        let (store, metadata): (Arc<dyn ObjectStore>, bool) = match settings.storage {
            StorageKind::Local => (
                Arc::new(LocalFileSystem::new_with_prefix(&dirs.objects).map_err(storage_err)?),
                false,
            ),
            StorageKind::S3 => {
                let mut b = AmazonS3Builder::from_env()
                    .with_bucket_name(&settings.bucket)
                    .with_region(&settings.region)
                    .with_allow_http(settings.allow_http)
                    // Attempts are short: a failed upload waits on disk and
                    // the uploader tries again, rather than one request
                    // retrying for minutes.
                    .with_retry(RetryConfig {
                        max_retries: 2,
                        retry_timeout: Duration::from_secs(10),
                        ..RetryConfig::default()
                    })
                    .with_client_options(
                        ClientOptions::new()
                            .with_timeout(Duration::from_secs(30))
                            .with_connect_timeout(Duration::from_secs(3))
                            .with_allow_http(settings.allow_http),
                    );
                if !settings.endpoint.is_empty() {
                    b = b.with_endpoint(&settings.endpoint);
                }
                (Arc::new(b.build().map_err(storage_err)?), true)
            }
        };
        Ok(Self {
            store,
            prefix: settings.prefix.clone(),
            metadata,
            part: settings.upload_part_bytes,
        })
    }

    /// The object key of a call's recording.
    pub fn key_for(&self, call_sid: &str) -> String {
        format!("{}{call_sid}.ogg.sealed", self.prefix)
    }

    /// Uploads `file` as `key` in parts (memory: two parts at most).
    pub async fn upload(
        &self,
        key: &str,
        file: &Path,
        key_id: &str,
    ) -> Result<u64, RecordingError> {
        let mut opts = PutMultipartOptions::default();
        if self.metadata {
            opts.attributes = Attributes::from_iter([
                (
                    Attribute::ContentType,
                    AttributeValue::from("application/octet-stream"),
                ),
                (
                    Attribute::Metadata("hark-key-id".into()),
                    AttributeValue::from(key_id.to_owned()),
                ),
                (
                    Attribute::Metadata("hark-format".into()),
                    AttributeValue::from("ogg-opus+hrkseal1"),
                ),
            ]);
        }
        let path = ObjectPath::from(key);
        let upload = self
            .store
            .put_multipart_opts(&path, opts)
            .await
            .map_err(storage_err)?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, self.part);
        let result = async {
            let mut f = tokio::fs::File::open(file).await?;
            let mut buf = vec![0u8; 256 * 1024];
            let mut total = 0u64;
            loop {
                let n = f.read(&mut buf).await?;
                if n == 0 {
                    break;
                }
                total += n as u64;
                writer.wait_for_capacity(2).await.map_err(storage_err)?;
                writer.write(buf.get(..n).unwrap_or_default());
            }
            Ok::<u64, RecordingError>(total)
        }
        .await;
        match result {
            Ok(total) => {
                writer.finish().await.map_err(storage_err)?;
                Ok(total)
            }
            Err(e) => {
                let _ = writer.abort().await;
                Err(e)
            }
        }
    }

    /// Deletes an object; one already gone is not an error.
    pub async fn delete(&self, key: &str) -> Result<(), RecordingError> {
        match self.store.delete(&ObjectPath::from(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(storage_err(e)),
        }
    }

    /// The size in bytes of a recording where it is.
    pub async fn size(&self, at: &Location) -> Result<u64, RecordingError> {
        match at {
            Location::Stored(key) => match self.store.head(&ObjectPath::from(key.as_str())).await {
                Ok(meta) => Ok(meta.size),
                Err(object_store::Error::NotFound { .. }) => Err(RecordingError::NotFound),
                Err(e) => Err(storage_err(e)),
            },
            Location::Local(file) => Ok(tokio::fs::metadata(file).await?.len()),
        }
    }

    /// Bytes `range` of a recording where it is.
    pub async fn read(&self, at: &Location, range: Range<u64>) -> Result<Bytes, RecordingError> {
        match at {
            Location::Stored(key) => self
                .store
                .get_range(&ObjectPath::from(key.as_str()), range)
                .await
                .map_err(storage_err),
            Location::Local(file) => {
                let mut f = tokio::fs::File::open(file).await?;
                f.seek(std::io::SeekFrom::Start(range.start)).await?;
                let mut buf = vec![0u8; (range.end - range.start) as usize];
                f.read_exact(&mut buf).await?;
                Ok(Bytes::from(buf))
            }
        }
    }
}
