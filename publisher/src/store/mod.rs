//! The versioned store: a git repository where each version is one commit on
//! `main` holding `manifest.yaml`, its signature and `media/<blake3>.mp3`, tagged
//! `v<N>`. Moving `main` is the single commit point of a publish.
//!
//! This module is the only one that knows git: the rest of the publisher names
//! commits and blobs by [`CommitId`] and [`BlobId`].

mod bundle;
mod cache;
mod follow;
mod lock;
mod roots;
mod write;

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use chrono::{DateTime, TimeZone, Utc};
use git2::{Commit, Oid, Repository, RepositoryInitOptions};
use skycast_schema::{verify, Limits, Manifest, MediaId, TrustedKeys, Verified, VerifyError};

pub use bundle::Bundle;
pub use cache::{media_cache_dir_of, MEDIA_CACHE_DIR};
pub use follow::{INCOMING_REF, PLAYERS_REF};
pub use lock::StoreLock;
pub use roots::{RootFile, ROOT_DIR};
pub use skycast_schema::protocol::{MANIFEST_FILE, SIGNATURE_FILE};
pub use write::NewVersion;

pub const MAIN_REF: &str = "refs/heads/main";
pub const MEDIA_DIR: &str = "media";

/// The files of a bare store that change whenever any process moves `main`
/// (`publish`, `rollback`, a follower's fetch): compared on every request, a
/// `stat` each instead of opening the repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefStamp([Option<crate::stamp::FileStamp>; 3]);

impl RefStamp {
    /// The stamp of `store_path`'s refs now. Git replaces a ref file by rename and
    /// rewrites `packed-refs` the same way, so every move of `main` changes it.
    pub fn of(store_path: &Path) -> RefStamp {
        let file = |rel: &str| crate::stamp::FileStamp::of(&store_path.join(rel));
        RefStamp([
            file(MAIN_REF),
            file("refs/remotes/origin/main"),
            file("packed-refs"),
        ])
    }
}

/// What can go wrong reading or writing the store; each names what failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store `{path}`: {source}")]
    Git { path: PathBuf, source: git2::Error },
    #[error("cannot {action} `{path}`: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("version {0} does not exist: `skycast-publisher history` lists the versions")]
    NoSuchVersion(u64),
    #[error("another publish moved head to a new version while this one was prepared: run it again")]
    ConcurrentPublish,
    #[error("commit {commit} of the store has no {file}")]
    MissingFile { commit: CommitId, file: &'static str },
    #[error("commit {commit} of the store: {reason}")]
    Corrupt { commit: CommitId, reason: String },
    #[error("{source}")]
    Unverified {
        commit: CommitId,
        #[source]
        source: VerifyError,
    },
    #[error("blob {blob} of the store hashes to {found}, not to media {id}: run `skycast-publisher verify`")]
    MediaMismatch {
        blob: BlobId,
        id: MediaId,
        found: MediaId,
    },
    #[error("{0}")]
    Command(String),
}

impl StoreError {
    fn io(action: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> StoreError {
        let path = path.into();
        move |source| StoreError::Io { action, path, source }
    }
}

type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A commit of the store, by id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CommitId(Oid);

/// A blob (one media file's bytes) of the store, by id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlobId(Oid);

impl fmt::Display for CommitId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Display for BlobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

pub struct Store {
    repo: Repository,
    path: PathBuf,
}

/// One version as history shows it.
#[derive(Debug, Clone)]
pub struct VersionInfo {
    pub version: u64,
    pub commit: CommitId,
    pub author: String,
    pub time: DateTime<Utc>,
    pub message: String,
}

/// Just enough of a manifest to learn its version without trusting the rest.
#[derive(serde::Deserialize)]
struct VersionOnly {
    version: u64,
}

pub fn tag_name(version: u64) -> String {
    format!("v{version}")
}

impl Store {
    pub fn init(path: &Path) -> Result<()> {
        let mut opts = RepositoryInitOptions::new();
        opts.bare(true).initial_head("main").mkdir(true);
        let git = |source| StoreError::Git {
            path: path.to_path_buf(),
            source,
        };
        let repo = Repository::init_opts(path, &opts).map_err(git)?;
        let mut config = repo.config().map_err(git)?;
        // libgit2 writes objects through temp files and renames; fsync makes that survive power loss too.
        config.set_bool("core.fsyncObjectFiles", true).map_err(git)?;
        Ok(())
    }

    /// Opens the store, bare or a plain `git clone` of it.
    pub fn open(path: &Path) -> Result<Store> {
        let repo = Repository::open(path).map_err(|source| StoreError::Git {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(Store {
            repo,
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self) -> impl FnOnce(git2::Error) -> StoreError {
        let path = self.path.clone();
        move |source| StoreError::Git { path, source }
    }

    fn commit(&self, id: CommitId) -> Result<Commit<'_>> {
        self.repo.find_commit(id.0).map_err(self.err())
    }

    /// The commit `main` names. A clone may only have `origin/main` or `HEAD`.
    pub fn head(&self) -> Result<Option<CommitId>> {
        for name in [MAIN_REF, "refs/remotes/origin/main", "HEAD"] {
            match self.repo.revparse_single(name) {
                Ok(obj) => {
                    return obj
                        .peel_to_commit()
                        .map(|c| Some(CommitId(c.id())))
                        .map_err(self.err())
                }
                Err(e) if e.code() == git2::ErrorCode::NotFound => continue,
                Err(e) => return Err(self.err()(e)),
            }
        }
        Ok(None)
    }

    /// A file of `commit` by its path in the tree, or None when it has none.
    pub fn file_at(&self, commit: CommitId, path: &str) -> Result<Option<Vec<u8>>> {
        let tree = self.commit(commit)?.tree().map_err(self.err())?;
        let entry = match tree.get_path(Path::new(path)) {
            Ok(e) => e,
            Err(e) if e.code() == git2::ErrorCode::NotFound => return Ok(None),
            Err(e) => return Err(self.err()(e)),
        };
        let blob = self.repo.find_blob(entry.id()).map_err(self.err())?;
        Ok(Some(blob.content().to_vec()))
    }

    /// The version number a commit's manifest declares (not verified: for lookup only).
    pub fn version_of(&self, commit: CommitId) -> Result<u64> {
        let bytes = self
            .file_at(commit, MANIFEST_FILE)?
            .ok_or(StoreError::MissingFile {
                commit,
                file: MANIFEST_FILE,
            })?;
        let v: VersionOnly = serde_norway::from_slice(&bytes).map_err(|e| StoreError::Corrupt {
            commit,
            reason: e.to_string(),
        })?;
        Ok(v.version)
    }

    pub fn head_version(&self) -> Result<Option<(u64, CommitId)>> {
        match self.head()? {
            Some(c) => Ok(Some((self.version_of(c)?, c))),
            None => Ok(None),
        }
    }

    /// The commit of version `n`: its tag, or failing that a walk of history back
    /// to it. Version numbers only grow, so one above the head's, or one the walk
    /// has passed, ends the search at once. (`serve` keeps its own index.)
    pub fn commit_of_version(&self, n: u64) -> Result<Option<CommitId>> {
        if let Some(commit) = self.tagged_commit(n) {
            if self.version_of(commit)? == n {
                return Ok(Some(commit));
            }
        }
        let mut next = match self.head()? {
            Some(id) => Some(self.commit(id)?),
            None => None,
        };
        while let Some(commit) = next {
            let id = CommitId(commit.id());
            let version = self.version_of(id)?;
            if version == n {
                return Ok(Some(id));
            }
            if version < n {
                return Ok(None);
            }
            next = commit.parents().next();
        }
        Ok(None)
    }

    /// `manifest.yaml` or `manifest.yaml.sig` of version `n`, exactly as stored.
    pub fn version_file(&self, n: u64, name: &str) -> Result<Vec<u8>> {
        let commit = self.commit_of_version(n)?.ok_or(StoreError::NoSuchVersion(n))?;
        self.file_at(commit, name)?.ok_or(StoreError::NoSuchVersion(n))
    }

    /// The manifest of `commit`, its signature checked against `trusted` before
    /// its bytes are parsed. This is the one way the publisher reads a manifest it
    /// relies on (rollback, the draft's base, the web pages' signature status).
    pub fn verified_manifest(&self, commit: CommitId, trusted: &TrustedKeys) -> Result<Verified<Manifest>> {
        let read = |file: &'static str| {
            self.file_at(commit, file)?
                .ok_or(StoreError::MissingFile { commit, file })
        };
        let (manifest, signature) = (read(MANIFEST_FILE)?, read(SIGNATURE_FILE)?);
        verify(&manifest, &signature, trusted, &Limits::default())
            .map_err(|source| StoreError::Unverified { commit, source })
    }

    fn info(&self, commit: &Commit<'_>) -> Result<VersionInfo> {
        let author = commit.author();
        let time = Utc
            .timestamp_opt(author.when().seconds(), 0)
            .single()
            .unwrap_or_default();
        Ok(VersionInfo {
            version: self.version_of(CommitId(commit.id()))?,
            commit: CommitId(commit.id()),
            author: author.name().unwrap_or("?").to_string(),
            time,
            message: commit.message().unwrap_or("").trim().to_string(),
        })
    }

    /// The newest `limit` versions on `main` (all when None), newest first. Walks
    /// only as far back as asked.
    pub fn recent(&self, limit: Option<usize>) -> Result<Vec<VersionInfo>> {
        let mut out = Vec::new();
        let mut next = match self.head()? {
            Some(id) => Some(self.commit(id)?),
            None => None,
        };
        while let Some(commit) = next {
            if limit.is_some_and(|l| out.len() >= l) {
                break;
            }
            out.push(self.info(&commit)?);
            next = commit.parents().next();
        }
        Ok(out)
    }

    /// Every version on `main`, oldest first.
    pub fn history(&self) -> Result<Vec<VersionInfo>> {
        let mut out = self.recent(None)?;
        out.reverse();
        Ok(out)
    }

    /// The commits from `from` back along first parents, stopping before `stop`
    /// (or at the root), newest first: what `main` gained since `stop`. Reads
    /// only the manifests' version numbers, for an index of versions.
    pub fn commits_since(&self, from: CommitId, stop: Option<CommitId>) -> Result<Vec<(u64, CommitId)>> {
        let mut out = Vec::new();
        let mut next = Some(self.commit(from)?);
        while let Some(commit) = next {
            let id = CommitId(commit.id());
            if Some(id) == stop {
                break;
            }
            out.push((self.version_of(id)?, id));
            next = commit.parents().next();
        }
        Ok(out)
    }

    /// One version's history entry.
    pub fn version_info(&self, commit: CommitId) -> Result<VersionInfo> {
        self.info(&self.commit(commit)?)
    }

    /// File names → blob ids for every media file in `commit`.
    pub fn media_in(&self, commit: CommitId) -> Result<Vec<(String, BlobId)>> {
        let tree = self.commit(commit)?.tree().map_err(self.err())?;
        let Some(entry) = tree.get_name(MEDIA_DIR) else {
            return Ok(Vec::new());
        };
        let media = self.repo.find_tree(entry.id()).map_err(self.err())?;
        Ok(media
            .iter()
            .map(|e| (e.name().unwrap_or("").to_string(), BlobId(e.id())))
            .collect())
    }

    /// The well-named media files of `commit` (`<blake3>.mp3`) and their blobs; an
    /// audit, not this, reports files with other names.
    pub fn media_ids_in(&self, commit: CommitId) -> Result<Vec<(MediaId, BlobId)>> {
        Ok(self
            .media_in(commit)?
            .into_iter()
            .filter_map(|(name, blob)| Some((name.strip_suffix(".mp3")?.parse().ok()?, blob)))
            .collect())
    }

    /// Where each media file of every version lives, for serving.
    pub fn media_index(&self) -> Result<HashMap<MediaId, BlobId>> {
        let mut index = HashMap::new();
        for info in self.history()? {
            index.extend(self.media_ids_in(info.commit)?);
        }
        Ok(index)
    }

    pub fn write_blob(&self, bytes: &[u8]) -> Result<BlobId> {
        self.repo.blob(bytes).map(BlobId).map_err(self.err())
    }

    pub fn read_blob(&self, blob: BlobId) -> Result<Vec<u8>> {
        Ok(self
            .repo
            .find_blob(blob.0)
            .map_err(self.err())?
            .content()
            .to_vec())
    }

    /// The commit a tag `v<n>` names, if the tag exists.
    pub fn tagged_commit(&self, n: u64) -> Option<CommitId> {
        self.repo
            .revparse_single(&format!("refs/tags/{}", tag_name(n)))
            .ok()
            .and_then(|o| o.peel_to_commit().ok())
            .map(|c| CommitId(c.id()))
    }

    /// Names of every tag that looks like a version tag.
    pub fn version_tags(&self) -> Result<Vec<String>> {
        let names = self.repo.tag_names(Some("v*")).map_err(self.err())?;
        Ok(names.iter().flatten().map(str::to_string).collect())
    }

    /// The entries of a commit's root tree, for audits.
    pub fn root_entries(&self, commit: CommitId) -> Result<Vec<String>> {
        let tree = self.commit(commit)?.tree().map_err(self.err())?;
        Ok(tree.iter().map(|e| e.name().unwrap_or("").to_string()).collect())
    }
}
