//! The S3 side of a mirror: one bucket through `object_store` (path-style
//! requests to the configured endpoint, SigV4), and the upload of one version in
//! the order that keeps the mirror consistent for players: media first (each
//! once: content addressed), then the manifest and its signature, and only then
//! the `v1/head` pointer, which never moves back.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as ObjectPath;
use object_store::{
    Attribute, Attributes, BackoffConfig, ClientOptions, ObjectStore, ObjectStoreExt, PutMultipartOptions,
    PutOptions, PutPayload, RetryConfig, WriteMultipart,
};
use skycast_schema::protocol::{media_path, mirror_key, version_file_path, HEAD_PATH};
use skycast_schema::{Head, MediaId};
use tokio::io::AsyncReadExt;

use super::{check_endpoint, CredentialSource, Credentials, MirrorError};
use crate::db::MirrorRow;
use crate::store::{MANIFEST_FILE, SIGNATURE_FILE};

/// Media up to this size go up in one request (read into memory: bounded);
/// larger ones as a multipart upload of [`PART_BYTES`] parts, streamed from the
/// media cache.
pub const SINGLE_PUT_MAX_BYTES: u64 = 16 * 1024 * 1024;
/// Part size of a multipart upload (S3 wants at least 5 MiB but for the last).
pub const PART_BYTES: usize = 8 * 1024 * 1024;
/// Parts in flight at once during a multipart upload (memory: this × [`PART_BYTES`]).
const PARTS_IN_FLIGHT: usize = 2;
/// One request may take this long (a large part on a slow link included).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Immutable objects may be cached for a year; the head pointer must be revalidated.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";
const REVALIDATE: &str = "no-cache";

/// What one version puts on a mirror, read from the store.
#[derive(Debug, Clone)]
pub struct VersionContent {
    pub version: u64,
    /// The pointer to write last.
    pub head: Head,
    /// The exact bytes the origin serves at `/v1/versions/<n>/manifest.yaml` and `.sig`.
    pub manifest: Vec<u8>,
    pub signature: Vec<u8>,
    /// Every media file of the version, in the store's media cache.
    pub media: Vec<MediaFile>,
}

#[derive(Debug, Clone)]
pub struct MediaFile {
    pub id: MediaId,
    pub path: PathBuf,
    pub size_bytes: u64,
}

/// What an upload of a version did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Uploaded {
    pub media_uploaded: usize,
    pub media_present: usize,
    pub bytes_uploaded: u64,
    /// The head pointer now names this version (false: the mirror's head was already at or past it).
    pub head_moved: bool,
}

/// One mirror's bucket.
#[derive(Debug, Clone)]
pub struct Bucket {
    mirror: String,
    store: Arc<dyn ObjectStore>,
}

fn attributes(content_type: &'static str, cache_control: &'static str) -> Attributes {
    let mut a = Attributes::new();
    a.insert(Attribute::ContentType, content_type.into());
    a.insert(Attribute::CacheControl, cache_control.into());
    a
}

impl Bucket {
    /// A client for the mirror `row`: its credentials from its file, or from
    /// `from_env` (the environment `serve` started with).
    pub fn connect(row: &MirrorRow, from_env: Option<&Credentials>) -> Result<Bucket, MirrorError> {
        let credentials = match CredentialSource::of(row) {
            CredentialSource::File(path) => Credentials::from_file(&path)?,
            CredentialSource::Environment => from_env
                .cloned()
                .ok_or_else(|| MirrorError::NoCredentials(row.name.clone()))?,
        };
        let endpoint = check_endpoint(&row.endpoint)?;
        let client = ClientOptions::new()
            .with_allow_http(endpoint.scheme() == "http")
            .with_timeout(REQUEST_TIMEOUT)
            .with_connect_timeout(CONNECT_TIMEOUT);
        // Few retries inside one attempt: the queue retries with its own,
        // persistent backoff, and the status must tell a dead mirror soon.
        let retry = RetryConfig {
            backoff: BackoffConfig {
                init_backoff: Duration::from_millis(100),
                max_backoff: Duration::from_secs(1),
                base: 2.0,
            },
            max_retries: 2,
            retry_timeout: Duration::from_secs(10),
        };
        let store = AmazonS3Builder::new()
            .with_endpoint(row.endpoint.trim_end_matches('/'))
            .with_bucket_name(&row.bucket)
            .with_region(&row.region)
            .with_access_key_id(&credentials.access_key_id)
            .with_secret_access_key(credentials.secret_access_key.expose())
            .with_virtual_hosted_style_request(false)
            .with_client_options(client)
            .with_retry(retry)
            .build()
            .map_err(|source| MirrorError::Client {
                mirror: row.name.clone(),
                source,
            })?;
        Ok(Bucket {
            mirror: row.name.clone(),
            store: Arc::new(store),
        })
    }

    fn failed(&self, key: &str) -> impl FnOnce(object_store::Error) -> MirrorError + '_ {
        let key = key.to_string();
        move |source| MirrorError::Object {
            mirror: self.mirror.clone(),
            key,
            source,
        }
    }

    /// The version the mirror's `v1/head` names; 0 when it has none (or one
    /// this build cannot read, which the next pointer replaces).
    pub async fn head_version(&self) -> Result<u64, MirrorError> {
        let key = mirror_key(HEAD_PATH);
        match self.store.get(&ObjectPath::from(key)).await {
            Ok(found) => {
                let bytes = found.bytes().await.map_err(self.failed(key))?;
                Ok(serde_json::from_slice::<Head>(&bytes).map_or(0, |h| h.version))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(0),
            Err(e) => Err(self.failed(key)(e)),
        }
    }

    /// Whether `key` holds an object of `size_bytes` bytes already.
    async fn has(&self, key: &str, size_bytes: u64) -> Result<bool, MirrorError> {
        match self.store.head(&ObjectPath::from(key)).await {
            Ok(meta) => Ok(meta.size == size_bytes),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(self.failed(key)(e)),
        }
    }

    async fn put_bytes(&self, key: &str, bytes: Vec<u8>, attributes: Attributes) -> Result<(), MirrorError> {
        let options = PutOptions {
            attributes,
            ..PutOptions::default()
        };
        self.store
            .put_opts(
                &ObjectPath::from(key),
                PutPayload::from(Bytes::from(bytes)),
                options,
            )
            .await
            .map_err(self.failed(key))?;
        Ok(())
    }

    /// Uploads a media file from the media cache: in one request when small,
    /// else streamed as a multipart upload (aborted on failure).
    async fn put_media(&self, key: &str, media: &MediaFile) -> Result<(), MirrorError> {
        let read_failed = |source| MirrorError::ReadMedia {
            mirror: self.mirror.clone(),
            path: media.path.clone(),
            source,
        };
        let attrs = attributes("audio/mpeg", IMMUTABLE);
        if media.size_bytes <= SINGLE_PUT_MAX_BYTES {
            let bytes = tokio::fs::read(&media.path).await.map_err(read_failed)?;
            return self.put_bytes(key, bytes, attrs).await;
        }
        let options = PutMultipartOptions {
            attributes: attrs,
            ..PutMultipartOptions::default()
        };
        let upload = self
            .store
            .put_multipart_opts(&ObjectPath::from(key), options)
            .await
            .map_err(self.failed(key))?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_BYTES);
        let mut file = tokio::fs::File::open(&media.path).await.map_err(read_failed)?;
        let mut buf = vec![0u8; 1024 * 1024];
        let streamed: Result<(), MirrorError> = async {
            loop {
                let n = file.read(&mut buf).await.map_err(read_failed)?;
                if n == 0 {
                    return Ok(());
                }
                writer
                    .wait_for_capacity(PARTS_IN_FLIGHT)
                    .await
                    .map_err(self.failed(key))?;
                writer.write(&buf[..n]);
            }
        }
        .await;
        match streamed {
            Ok(()) => {
                writer.finish().await.map_err(self.failed(key))?;
                Ok(())
            }
            Err(e) => {
                if let Err(abort) = writer.abort().await {
                    tracing::warn!(mirror = %self.mirror, key, error = %abort, "cannot abort a multipart upload: the bucket may keep its parts until its lifecycle rule removes them");
                }
                Err(e)
            }
        }
    }

    /// Puts version `content` on the mirror: missing media, manifest and
    /// signature, then the head pointer if the mirror's is below this version.
    pub async fn mirror_version(&self, content: &VersionContent) -> Result<Uploaded, MirrorError> {
        let mut done = Uploaded::default();
        for media in &content.media {
            let path = media_path(&media.id);
            let key = mirror_key(&path);
            if self.has(key, media.size_bytes).await? {
                done.media_present += 1;
                continue;
            }
            let started = Instant::now();
            self.put_media(key, media).await?;
            tracing::debug!(
                mirror = %self.mirror,
                key,
                size_bytes = media.size_bytes,
                duration_ms = started.elapsed().as_millis() as u64,
                "media mirrored"
            );
            done.media_uploaded += 1;
            done.bytes_uploaded += media.size_bytes;
        }
        for (file, bytes, content_type) in [
            (MANIFEST_FILE, &content.manifest, "application/yaml"),
            (SIGNATURE_FILE, &content.signature, "text/plain; charset=utf-8"),
        ] {
            let path = version_file_path(content.version, file);
            self.put_bytes(
                mirror_key(&path),
                bytes.clone(),
                attributes(content_type, IMMUTABLE),
            )
            .await?;
            done.bytes_uploaded += bytes.len() as u64;
        }
        // Only now may players learn of this version from the mirror; a mirror
        // already past it (a later version got there first) keeps its head.
        if self.head_version().await? < content.version {
            let body = serde_json::to_vec(&content.head).map_err(|e| MirrorError::Store {
                mirror: self.mirror.clone(),
                version: content.version,
                reason: format!("head pointer: {e}"),
            })?;
            self.put_bytes(
                mirror_key(HEAD_PATH),
                body,
                attributes("application/json", REVALIDATE),
            )
            .await?;
            done.head_moved = true;
        }
        Ok(done)
    }
}
