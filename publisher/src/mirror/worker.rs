//! The mirroring task of `serve`: on every tick and every new head, queues each
//! version not yet on each mirror (persistently: a restart resumes the queue),
//! then copies the queued versions oldest first. A failure is recorded on the
//! mirror with the time of its next attempt ([`super::retry_after`]), so the
//! backoff, the error and the failure count (which the `mirror_failing` alert
//! reads) survive a restart too.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use serde::Deserialize;
use skycast_schema::protocol::version_file_path;
use skycast_schema::Head;
use tokio::sync::watch;

use super::upload::{Bucket, MediaFile, VersionContent};
use super::{retry_after, Credentials, MirrorError};
use crate::data_dir::DataDir;
use crate::db::{Db, MirrorRow};
use crate::error::{PublisherError, Result};
use crate::store::{CommitId, Store, MANIFEST_FILE, SIGNATURE_FILE};

/// How often the mirrors and their queues are looked at when no head changes
/// (a mirror added by the CLI, a retry that is due).
pub const TICK: Duration = Duration::from_millis(500);

/// When the version of `commit` was published, as its manifest says.
pub(crate) fn published_at(store: &Store, commit: CommitId) -> Option<String> {
    #[derive(Deserialize)]
    struct PublishedAt {
        published_at: String,
    }
    let bytes = store.file_at(commit, MANIFEST_FILE).ok()??;
    serde_norway::from_slice::<PublishedAt>(&bytes)
        .ok()
        .map(|m| m.published_at)
}

/// Versions `from..=to` with their publish times, read from the store.
fn versions_between(data: &DataDir, from: u64, to: u64) -> Result<Vec<(u64, Option<String>)>> {
    let store = data.store()?;
    let mut out = Vec::new();
    for version in from..=to {
        // A number with no version (none is skipped by `publish`) is left out.
        if let Some(commit) = store.commit_of_version(version)? {
            out.push((version, published_at(&store, commit)));
        }
    }
    Ok(out)
}

/// What version `version` puts on a mirror: its files, and its media copied
/// into the media cache (which uploads stream from).
fn version_content(data: &DataDir, version: u64) -> Result<VersionContent> {
    let store = data.store()?;
    let commit = store
        .commit_of_version(version)?
        .ok_or(PublisherError::NoSuchVersion(version))?;
    let read = |file: &str| -> Result<Vec<u8>> {
        store
            .file_at(commit, file)?
            .ok_or_else(|| PublisherError::Internal(format!("version {version} has no {file}")))
    };
    let (manifest, signature) = (read(MANIFEST_FILE)?, read(SIGNATURE_FILE)?);
    let mut media = Vec::new();
    for (id, blob) in store.media_ids_in(commit)? {
        let path = store.media_file(&id, blob)?;
        let size_bytes = std::fs::metadata(&path)
            .map_err(PublisherError::io("read the size of", &path))?
            .len();
        media.push(MediaFile { id, path, size_bytes });
    }
    Ok(VersionContent {
        version,
        head: Head {
            version,
            published_at: published_at(&store, commit),
            manifest: Some(version_file_path(version, MANIFEST_FILE)),
            commands_pending: false,
            root_version: None,
        },
        manifest,
        signature,
        media,
    })
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| PublisherError::Internal(e.to_string()))?
}

/// What a client was made from: a change (the mirror removed and added again
/// elsewhere) makes a new one.
type Fingerprint = (String, String, String, Option<String>);

fn fingerprint(row: &MirrorRow) -> Fingerprint {
    (
        row.endpoint.clone(),
        row.bucket.clone(),
        row.region.clone(),
        row.credentials_file.clone(),
    )
}

/// The task: `serve` runs [`MirrorTask::run`] until it stops.
pub struct MirrorTask {
    data: DataDir,
    db: Arc<Db>,
    head: watch::Receiver<Head>,
    /// Read once, when `serve` started.
    from_env: Option<Credentials>,
    buckets: HashMap<String, (Fingerprint, Bucket)>,
}

impl MirrorTask {
    /// `head` follows the announced head (`HeadTracker::subscribe`); the
    /// credentials of the environment are read now.
    pub fn new(data: DataDir, head: watch::Receiver<Head>) -> Result<MirrorTask> {
        let db = Arc::new(data.db()?);
        Ok(MirrorTask {
            data,
            db,
            head,
            from_env: Credentials::from_env(),
            buckets: HashMap::new(),
        })
    }

    /// Mirrors until `stop` turns true (or its sender is gone); an upload in
    /// progress is dropped then, and its version stays queued.
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let mut ticker = tokio::time::interval(TICK);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut head = self.head.clone();
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                changed = head.changed() => if changed.is_err() {
                    // The tracker is gone: serve is stopping; the ticker and stop decide.
                    head = self.head.clone();
                    ticker.tick().await;
                },
                changed = stop.changed() => if changed.is_err() || *stop.borrow() { return },
            }
            if *stop.borrow() {
                return;
            }
            tokio::select! {
                () = self.pass() => {}
                changed = stop.changed() => if changed.is_err() || *stop.borrow() { return },
            }
        }
    }

    /// One look at every mirror: queue what is new, copy what is due.
    pub async fn pass(&mut self) {
        let head_version = self.head.borrow().version;
        let db = self.db.clone();
        let rows = match blocking(move || Ok(db.mirrors()?)).await {
            Ok(rows) => rows,
            Err(e) => {
                tracing::warn!(error = %e, "mirrors: cannot read the mirrors; trying again at the next tick");
                return;
            }
        };
        self.buckets
            .retain(|name, _| rows.iter().any(|r| &r.name == name));
        for row in rows {
            if let Err(e) = self.enqueue(&row, head_version).await {
                tracing::warn!(mirror = %row.name, error = %e, "mirrors: cannot queue the new versions");
            }
            self.drain(&row.name).await;
        }
    }

    /// Queues every version above the highest mirrored or queued one, up to the head.
    async fn enqueue(&self, row: &MirrorRow, head_version: u64) -> Result<()> {
        let (db, data, name) = (self.db.clone(), self.data.clone(), row.name.clone());
        blocking(move || {
            let known = db.mirror_known_version(&name)?;
            if head_version <= known {
                return Ok(());
            }
            let versions = versions_between(&data, known + 1, head_version)?;
            let added = db.enqueue_mirror_versions(&name, &versions, Utc::now())?;
            if added > 0 {
                tracing::info!(mirror = %name, versions = added, head_version, "mirrors: versions queued");
            }
            Ok(())
        })
        .await
    }

    /// Copies the queued versions of one mirror, oldest first, until its queue
    /// is empty or an attempt fails (which sets its backoff).
    async fn drain(&mut self, name: &str) {
        // Bounded: each turn removes a version or records a failure and stops.
        for _ in 0..10_000 {
            let (db, owned) = (self.db.clone(), name.to_string());
            let row = match blocking(move || Ok(db.mirror(&owned)?)).await {
                Ok(Some(row)) => row,
                Ok(None) => return,
                Err(e) => {
                    tracing::warn!(mirror = name, error = %e, "mirrors: cannot read the queue");
                    return;
                }
            };
            let Some(version) = row.oldest_queued_version else {
                return;
            };
            let now = Utc::now();
            let due = row
                .next_attempt_at
                .as_deref()
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                .is_none_or(|t| t.with_timezone(&Utc) <= now);
            if !due {
                return;
            }
            let started = Instant::now();
            match self.copy(&row, version).await {
                Ok(done) => {
                    tracing::info!(
                        mirror = name,
                        version,
                        media_uploaded = done.media_uploaded,
                        media_present = done.media_present,
                        size_bytes = done.bytes_uploaded,
                        head_moved = done.head_moved,
                        duration_ms = started.elapsed().as_millis() as u64,
                        "mirrors: version mirrored"
                    );
                    let (db, owned) = (self.db.clone(), name.to_string());
                    let recorded =
                        blocking(move || Ok(db.mirror_succeeded(&owned, version, Utc::now())?)).await;
                    if let Err(e) = recorded {
                        tracing::warn!(mirror = name, version, error = %e, "mirrors: cannot record a mirrored version; it will be copied again");
                        return;
                    }
                }
                Err(e) => {
                    // A client made with stale credentials is made again next time.
                    self.buckets.remove(name);
                    let failures = row.attempt_failures.saturating_add(1);
                    let wait = retry_after(failures);
                    let retry_at = now + TimeDelta::from_std(wait).unwrap_or(TimeDelta::MAX);
                    tracing::warn!(
                        mirror = name,
                        version,
                        failures,
                        retry_in_ms = wait.as_millis() as u64,
                        error = %e,
                        "mirrors: copy failed; retrying later"
                    );
                    let (db, owned, text) = (self.db.clone(), name.to_string(), e.to_string());
                    let recorded =
                        blocking(move || Ok(db.mirror_failed(&owned, &text, now, retry_at)?)).await;
                    if let Err(e) = recorded {
                        tracing::warn!(mirror = name, error = %e, "mirrors: cannot record a failure");
                    }
                    return;
                }
            }
        }
    }

    async fn copy(
        &mut self,
        row: &MirrorRow,
        version: u64,
    ) -> std::result::Result<super::upload::Uploaded, MirrorError> {
        let bucket = self.bucket(row)?;
        let data = self.data.clone();
        let content = blocking(move || version_content(&data, version))
            .await
            .map_err(|e| MirrorError::Store {
                mirror: row.name.clone(),
                version,
                reason: e.to_string(),
            })?;
        bucket.mirror_version(&content).await
    }

    fn bucket(&mut self, row: &MirrorRow) -> std::result::Result<Bucket, MirrorError> {
        let wanted = fingerprint(row);
        if let Some((made_from, bucket)) = self.buckets.get(&row.name) {
            if *made_from == wanted {
                return Ok(bucket.clone());
            }
        }
        let bucket = Bucket::connect(row, self.from_env.as_ref())?;
        self.buckets.insert(row.name.clone(), (wanted, bucket.clone()));
        Ok(bucket)
    }
}
