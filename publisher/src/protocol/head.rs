//! Following `main`: the head players are told about, which commit holds each
//! version, and where each media file of every version lives (its blob, copied
//! once into the store's media cache), refreshed when another process publishes.

use std::collections::HashMap;
use std::sync::{Mutex, RwLock};
use std::time::Duration;

use serde::Deserialize;
use skycast_schema::protocol::version_file_path;
use skycast_schema::{Head, MediaId};
use tokio::sync::watch;

use crate::data_dir::DataDir;
use crate::error::{PublisherError, Result};
use crate::store::{BlobId, CommitId, Store, MANIFEST_FILE};

/// The head as last read from the store, shared by every request.
pub(crate) struct HeadTracker {
    data: DataDir,
    head: watch::Sender<Head>,
    commit: Mutex<Option<CommitId>>,
    media: RwLock<HashMap<MediaId, BlobId>>,
    /// Version number → commit, so a request for any version (present or not)
    /// is one lookup, never a walk of history.
    versions: RwLock<HashMap<u64, CommitId>>,
}

/// What `main` gained since the last refresh.
struct Change {
    commit: Option<CommitId>,
    head: Head,
    versions: Vec<(u64, CommitId)>,
    media: HashMap<MediaId, BlobId>,
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| PublisherError::Internal(e.to_string()))?
}

fn read_head(store: &Store, commit: Option<CommitId>) -> Result<Head> {
    let Some(commit) = commit else {
        return Ok(Head::default());
    };
    let bytes = store.file_at(commit, MANIFEST_FILE)?.unwrap_or_default();
    #[derive(Deserialize)]
    struct HeadFields {
        version: u64,
        published_at: String,
    }
    let fields: HeadFields = serde_norway::from_slice(&bytes)
        .map_err(|e| PublisherError::Internal(format!("head manifest: {e}")))?;
    Ok(Head {
        version: fields.version,
        published_at: Some(fields.published_at),
        manifest: Some(version_file_path(fields.version, MANIFEST_FILE)),
        commands_pending: false,
    })
}

impl HeadTracker {
    /// Indexes the versions and media of every version (filling the media cache),
    /// then reads the head.
    pub(crate) async fn open(data: DataDir) -> Result<HeadTracker> {
        let tracker = HeadTracker {
            data,
            head: watch::Sender::new(Head::default()),
            commit: Mutex::new(None),
            media: RwLock::new(HashMap::new()),
            versions: RwLock::new(HashMap::new()),
        };
        tracker.refresh().await?;
        tracing::info!(
            media_count = tracker.media.read().unwrap_or_else(|p| p.into_inner()).len(),
            "store opened"
        );
        Ok(tracker)
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<Head> {
        self.head.subscribe()
    }

    /// The blob of a media file of any version this server announced.
    pub(crate) fn blob_of(&self, id: &MediaId) -> Option<BlobId> {
        self.media
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .copied()
    }

    /// The commit of version `n`, among the versions this server has indexed.
    pub(crate) fn commit_of(&self, n: u64) -> Option<CommitId> {
        self.versions
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&n)
            .copied()
    }

    /// Re-reads `main`; on a change, indexes the new version's media before
    /// announcing it, so a player never learns of a version whose media this
    /// server cannot serve yet.
    pub(crate) async fn refresh(&self) -> Result<()> {
        let data = self.data.clone();
        let seen = *self.commit.lock().unwrap_or_else(|p| p.into_inner());
        let changed = blocking(move || {
            let store = data.store()?;
            let commit = store.head()?;
            if commit == seen {
                return Ok(None);
            }
            let versions = match commit {
                Some(c) => store.commits_since(c, seen)?,
                None => Vec::new(),
            };
            let mut media = HashMap::new();
            for (_, c) in &versions {
                media.extend(store.media_ids_in(*c)?);
            }
            // Streamed to files before the version is announced: serving reads
            // those, never a whole blob.
            for (id, blob) in &media {
                store.media_file(id, *blob)?;
            }
            let head = read_head(&store, commit)?;
            Ok(Some(Change {
                commit,
                head,
                versions,
                media,
            }))
        })
        .await?;
        let Some(Change {
            commit,
            head,
            versions,
            media,
        }) = changed
        else {
            return Ok(());
        };
        self.media
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .extend(media);
        self.versions
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .extend(versions);
        *self.commit.lock().unwrap_or_else(|p| p.into_inner()) = commit;
        self.head.send_if_modified(|current| {
            if *current == head {
                return false;
            }
            tracing::info!(version = head.version, "new head");
            *current = head;
            true
        });
        Ok(())
    }

    /// Follows `main`, which other processes (`publish`, `rollback`) move, on a
    /// timer for long-polls, until `stop` turns true or its sender is gone.
    pub(crate) async fn follow(&self, every: Duration, stop: watch::Receiver<bool>) {
        super::every_tick(every, stop, || async {
            if let Err(e) = self.refresh().await {
                tracing::warn!(error = %e, "cannot read head of the store");
            }
        })
        .await
    }
}
