//! Following `main`: the head players are told about, which commit holds each
//! version, where each media file of every version lives (its blob, copied once
//! into the store's media cache) and the bytes of recent manifests and
//! signatures, refreshed when any process moves `main`. A request costs a `stat`
//! of the ref files ([`RefStamp`]), never an open of the repository.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::Deserialize;
use skycast_schema::protocol::version_file_path;
use skycast_schema::{Head, MediaId};
use tokio::sync::watch;

use crate::data_dir::DataDir;
use crate::error::{PublisherError, Result};
use crate::store::{BlobId, CommitId, RefStamp, RootFile, Store, MANIFEST_FILE, SIGNATURE_FILE};

/// Manifests and signatures kept in memory: the head's, fetched by the whole
/// fleet after a publish, and the few before it that lagging players still ask for.
const CACHED_VERSION_FILES: usize = 64;
/// A full re-read of `main` at least this often, in case a change slipped past
/// the ref stamp (see [`crate::stamp::touch`] on the one way it can).
const FULL_REFRESH_EVERY: Duration = Duration::from_secs(5);

/// Which file of which version: `(version, MANIFEST_FILE or SIGNATURE_FILE)`.
type FileKey = (u64, &'static str);

/// A manifest or signature as served: its bytes and their entity tag.
#[derive(Clone)]
pub(crate) struct VersionFile {
    pub(crate) bytes: Bytes,
    pub(crate) etag: String,
}

impl VersionFile {
    fn new(bytes: Vec<u8>) -> VersionFile {
        let etag = format!("\"{}\"", &blake3::hash(&bytes).to_hex()[..32]);
        VersionFile {
            bytes: bytes.into(),
            etag,
        }
    }
}

/// The head as last read from the store, shared by every request.
pub(crate) struct HeadTracker {
    data: DataDir,
    head: watch::Sender<Head>,
    commit: Mutex<Option<CommitId>>,
    /// The ref files as they were before the last refresh, and when it ran.
    seen: Mutex<(Option<RefStamp>, Instant)>,
    /// `(version, file name)` → bytes, the newest [`CACHED_VERSION_FILES`].
    files: RwLock<BTreeMap<FileKey, VersionFile>>,
    media: RwLock<HashMap<MediaId, BlobId>>,
    /// The trust roots the head carries (a few small files), served to players
    /// that follow the chain.
    roots: RwLock<Vec<RootFile>>,
    /// Version number → commit, so a request for any version (present or not)
    /// is one lookup, never a walk of history.
    versions: RwLock<HashMap<u64, CommitId>>,
}

/// What `main` gained since the last refresh.
struct Change {
    commit: Option<CommitId>,
    head: Head,
    /// The new head's manifest and signature, read while the store is open.
    head_files: Vec<(FileKey, VersionFile)>,
    versions: Vec<(u64, CommitId)>,
    media: HashMap<MediaId, BlobId>,
    roots: Vec<RootFile>,
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| PublisherError::Internal(e.to_string()))?
}

/// The head of `commit`, and its manifest's and signature's bytes.
fn read_head(store: &Store, commit: Option<CommitId>) -> Result<(Head, Vec<(FileKey, VersionFile)>)> {
    let Some(commit) = commit else {
        return Ok((Head::default(), Vec::new()));
    };
    let bytes = store.file_at(commit, MANIFEST_FILE)?.unwrap_or_default();
    #[derive(Deserialize)]
    struct HeadFields {
        version: u64,
        published_at: String,
    }
    let fields: HeadFields = serde_norway::from_slice(&bytes)
        .map_err(|e| PublisherError::Internal(format!("head manifest: {e}")))?;
    let head = Head {
        version: fields.version,
        published_at: Some(fields.published_at),
        manifest: Some(version_file_path(fields.version, MANIFEST_FILE)),
        commands_pending: false,
        root_version: None,
    };
    let mut files = vec![((head.version, MANIFEST_FILE), VersionFile::new(bytes))];
    if let Some(signature) = store.file_at(commit, SIGNATURE_FILE)? {
        files.push(((head.version, SIGNATURE_FILE), VersionFile::new(signature)));
    }
    Ok((head, files))
}

impl HeadTracker {
    /// Indexes the versions and media of every version (filling the media cache),
    /// then reads the head.
    pub(crate) async fn open(data: DataDir) -> Result<HeadTracker> {
        let tracker = HeadTracker {
            data,
            head: watch::Sender::new(Head::default()),
            commit: Mutex::new(None),
            seen: Mutex::new((None, Instant::now())),
            files: RwLock::new(BTreeMap::new()),
            media: RwLock::new(HashMap::new()),
            roots: RwLock::new(Vec::new()),
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

    /// Root `version`'s bytes (`yaml` or its signatures), as the head carries it.
    pub(crate) fn root_file(&self, version: u64, signatures: bool) -> Option<Vec<u8>> {
        let roots = self.roots.read().unwrap_or_else(|p| p.into_inner());
        let root = roots.iter().find(|r| r.version == version)?;
        Some(if signatures {
            root.sig.clone()
        } else {
            root.yaml.clone()
        })
    }

    /// The commit of version `n`, among the versions this server has indexed.
    pub(crate) fn commit_of(&self, n: u64) -> Option<CommitId> {
        self.versions
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&n)
            .copied()
    }

    /// Manifest or signature `name` of version `version`, which this server has
    /// indexed: from memory, or read from the store once and kept.
    pub(crate) async fn version_file(
        &self,
        version: u64,
        commit: CommitId,
        name: &'static str,
    ) -> Result<VersionFile> {
        if let Some(file) = self
            .files
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(version, name))
        {
            return Ok(file.clone());
        }
        let data = self.data.clone();
        let file = blocking(move || {
            data.store()?
                .file_at(commit, name)?
                .map(VersionFile::new)
                .ok_or(PublisherError::NoSuchVersion(version))
        })
        .await?;
        self.keep_files([((version, name), file.clone())]);
        Ok(file)
    }

    /// Adds to the in-memory files, forgetting the oldest versions past the cap.
    fn keep_files(&self, files: impl IntoIterator<Item = (FileKey, VersionFile)>) {
        let mut cached = self.files.write().unwrap_or_else(|p| p.into_inner());
        cached.extend(files);
        while cached.len() > CACHED_VERSION_FILES {
            cached.pop_first();
        }
    }

    /// [`HeadTracker::refresh`] when the ref files changed since the last one (or
    /// the last full re-read is [`FULL_REFRESH_EVERY`] old): a `stat` per call
    /// otherwise, so every request may call it.
    pub(crate) async fn refresh_if_moved(&self) -> Result<()> {
        let stamp = RefStamp::of(&self.data.store_path());
        {
            let seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
            if seen.0 == Some(stamp) && seen.1.elapsed() < FULL_REFRESH_EVERY {
                return Ok(());
            }
        }
        self.refresh().await?;
        // Taken before the refresh read `main`: a move during it is seen next time.
        *self.seen.lock().unwrap_or_else(|p| p.into_inner()) = (Some(stamp), Instant::now());
        Ok(())
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
            let (mut head, head_files) = read_head(&store, commit)?;
            let roots = match commit {
                Some(c) => store.roots_at(c)?,
                None => Vec::new(),
            };
            head.root_version = roots.last().map(|r| r.version);
            Ok(Some(Change {
                commit,
                head,
                head_files,
                versions,
                media,
                roots,
            }))
        })
        .await?;
        let Some(Change {
            commit,
            head,
            head_files,
            versions,
            media,
            roots,
        }) = changed
        else {
            return Ok(());
        };
        *self.roots.write().unwrap_or_else(|p| p.into_inner()) = roots;
        // In memory before the head moves: the whole fleet asks for them next.
        self.keep_files(head_files);
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
    /// timer for long-polls, until `stop` turns true or its sender is gone. A
    /// tick whose ref files did not move costs a `stat`, so `every` can be short.
    pub(crate) async fn follow(&self, every: Duration, stop: watch::Receiver<bool>) {
        super::every_tick(every, stop, || async {
            if let Err(e) = self.refresh_if_moved().await {
                tracing::warn!(error = %e, "cannot read head of the store");
            }
        })
        .await
    }
}
