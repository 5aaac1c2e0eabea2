//! The versioned store: a git repository where each version is one commit on
//! `main` holding `manifest.yaml`, its signature and `media/<blake3>.mp3`, tagged
//! `v<N>`. Moving `main` is the single commit point of a publish.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use chrono::{DateTime, TimeZone, Utc};
use git2::{Commit, ObjectType, Oid, Repository, RepositoryInitOptions, Signature};
use skycast_schema::MediaId;

use crate::error::{PublisherError, Result};

pub const MAIN_REF: &str = "refs/heads/main";
pub const MANIFEST_FILE: &str = "manifest.yaml";
pub const SIGNATURE_FILE: &str = "manifest.yaml.sig";
pub const MEDIA_DIR: &str = "media";

pub struct Store {
    repo: Repository,
    path: PathBuf,
}

/// One version as history shows it.
#[derive(Debug, Clone)]
pub struct VersionInfo {
    pub version: u64,
    pub commit: Oid,
    pub author: String,
    pub time: DateTime<Utc>,
    pub message: String,
}

/// Everything a new version is made of; blobs are already in the object database.
pub struct NewVersion<'a> {
    pub version: u64,
    pub manifest: &'a [u8],
    pub signature: &'a [u8],
    pub media: &'a [(MediaId, Oid)],
    pub author: &'a str,
    pub message: &'a str,
    pub time: DateTime<Utc>,
    /// The head this version was prepared against; the ref only moves if it is unchanged.
    pub parent: Option<Oid>,
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
        let repo = Repository::init_opts(path, &opts).map_err(PublisherError::git(path))?;
        let mut config = repo.config().map_err(PublisherError::git(path))?;
        // libgit2 writes objects through temp files and renames; fsync makes that survive power loss too.
        config
            .set_bool("core.fsyncObjectFiles", true)
            .map_err(PublisherError::git(path))?;
        Ok(())
    }

    /// Opens the store, bare or a plain `git clone` of it.
    pub fn open(path: &Path) -> Result<Store> {
        let repo = Repository::open(path).map_err(PublisherError::git(path))?;
        Ok(Store {
            repo,
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self) -> impl FnOnce(git2::Error) -> PublisherError {
        PublisherError::git(self.path.clone())
    }

    /// The commit `main` names. A clone may only have `origin/main` or `HEAD`.
    pub fn head_commit(&self) -> Result<Option<Commit<'_>>> {
        for name in [MAIN_REF, "refs/remotes/origin/main", "HEAD"] {
            match self.repo.revparse_single(name) {
                Ok(obj) => return obj.peel_to_commit().map(Some).map_err(self.err()),
                Err(e) if e.code() == git2::ErrorCode::NotFound => continue,
                Err(e) => return Err(self.err()(e)),
            }
        }
        Ok(None)
    }

    pub fn head_oid(&self) -> Result<Option<Oid>> {
        Ok(self.head_commit()?.map(|c| c.id()))
    }

    pub fn file_at(&self, commit: &Commit<'_>, path: &str) -> Result<Option<Vec<u8>>> {
        let tree = commit.tree().map_err(self.err())?;
        let entry = match tree.get_path(Path::new(path)) {
            Ok(e) => e,
            Err(e) if e.code() == git2::ErrorCode::NotFound => return Ok(None),
            Err(e) => return Err(self.err()(e)),
        };
        let blob = self.repo.find_blob(entry.id()).map_err(self.err())?;
        Ok(Some(blob.content().to_vec()))
    }

    /// The version number a commit's manifest declares (not verified: for lookup only).
    pub fn version_of(&self, commit: &Commit<'_>) -> Result<u64> {
        let bytes = self.file_at(commit, MANIFEST_FILE)?.ok_or_else(|| {
            PublisherError::Internal(format!("commit {} has no {MANIFEST_FILE}", commit.id()))
        })?;
        let v: VersionOnly = serde_norway::from_slice(&bytes)
            .map_err(|e| PublisherError::Internal(format!("commit {}: {e}", commit.id())))?;
        Ok(v.version)
    }

    pub fn head_version(&self) -> Result<Option<(u64, Oid)>> {
        match self.head_commit()? {
            Some(c) => Ok(Some((self.version_of(&c)?, c.id()))),
            None => Ok(None),
        }
    }

    /// The commit of version `n`: its tag, or failing that a walk of history.
    pub fn commit_of_version(&self, n: u64) -> Result<Option<Commit<'_>>> {
        if let Some(oid) = self.tagged_commit(n) {
            let commit = self.find_commit(oid)?;
            if self.version_of(&commit)? == n {
                return Ok(Some(commit));
            }
        }
        for info in self.history()? {
            if info.version == n {
                return Ok(Some(self.repo.find_commit(info.commit).map_err(self.err())?));
            }
        }
        Ok(None)
    }

    /// `manifest.yaml` or `manifest.yaml.sig` of version `n`, exactly as stored.
    pub fn version_file(&self, n: u64, name: &str) -> Result<Vec<u8>> {
        let commit = self
            .commit_of_version(n)?
            .ok_or(PublisherError::NoSuchVersion(n))?;
        self.file_at(&commit, name)?
            .ok_or(PublisherError::NoSuchVersion(n))
    }

    pub fn find_commit(&self, oid: Oid) -> Result<Commit<'_>> {
        self.repo.find_commit(oid).map_err(self.err())
    }

    /// Every version on `main`, oldest first.
    pub fn history(&self) -> Result<Vec<VersionInfo>> {
        let Some(head) = self.head_commit()? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        let mut next = Some(head);
        while let Some(commit) = next {
            let author = commit.author();
            let time = Utc
                .timestamp_opt(author.when().seconds(), 0)
                .single()
                .unwrap_or_default();
            out.push(VersionInfo {
                version: self.version_of(&commit)?,
                commit: commit.id(),
                author: author.name().unwrap_or("?").to_string(),
                time,
                message: commit.message().unwrap_or("").trim().to_string(),
            });
            next = commit.parents().next();
        }
        out.reverse();
        Ok(out)
    }

    /// Media ids → blob ids for every media file in `commit`.
    pub fn media_in(&self, commit: &Commit<'_>) -> Result<Vec<(String, Oid)>> {
        let tree = commit.tree().map_err(self.err())?;
        let Some(entry) = tree.get_name(MEDIA_DIR) else {
            return Ok(Vec::new());
        };
        let media = self.repo.find_tree(entry.id()).map_err(self.err())?;
        Ok(media
            .iter()
            .map(|e| (e.name().unwrap_or("").to_string(), e.id()))
            .collect())
    }

    /// The well-named media files of `commit` (`<blake3>.mp3`) and their blobs; an
    /// audit, not this, reports files with other names.
    pub fn media_ids_in(&self, commit: &Commit<'_>) -> Result<Vec<(MediaId, Oid)>> {
        Ok(self
            .media_in(commit)?
            .into_iter()
            .filter_map(|(name, oid)| Some((name.strip_suffix(".mp3")?.parse().ok()?, oid)))
            .collect())
    }

    /// Where each media file of every version lives, for serving.
    pub fn media_index(&self) -> Result<HashMap<MediaId, Oid>> {
        let mut index = HashMap::new();
        for info in self.history()? {
            index.extend(self.media_ids_in(&self.find_commit(info.commit)?)?);
        }
        Ok(index)
    }

    pub fn write_blob(&self, bytes: &[u8]) -> Result<Oid> {
        self.repo.blob(bytes).map_err(self.err())
    }

    pub fn read_blob(&self, oid: Oid) -> Result<Vec<u8>> {
        Ok(self.repo.find_blob(oid).map_err(self.err())?.content().to_vec())
    }

    /// Writes the tree and commit, then moves `main` only if it still names
    /// `parent`; the tag comes after. A crash before the ref moves leaves the old
    /// head; a crash after leaves the new one, and `repair_tags` adds its tag.
    pub fn commit_version(&self, new: NewVersion<'_>) -> Result<Oid> {
        let mut media_tree = self.repo.treebuilder(None).map_err(self.err())?;
        for (id, oid) in new.media {
            media_tree
                .insert(id.file_name(), *oid, 0o100644)
                .map_err(self.err())?;
        }
        let media_tree = media_tree.write().map_err(self.err())?;
        let mut root = self.repo.treebuilder(None).map_err(self.err())?;
        root.insert(MANIFEST_FILE, self.write_blob(new.manifest)?, 0o100644)
            .map_err(self.err())?;
        root.insert(SIGNATURE_FILE, self.write_blob(new.signature)?, 0o100644)
            .map_err(self.err())?;
        root.insert(MEDIA_DIR, media_tree, 0o040000).map_err(self.err())?;
        let tree = self
            .repo
            .find_tree(root.write().map_err(self.err())?)
            .map_err(self.err())?;

        let when = git2::Time::new(new.time.timestamp(), 0);
        let author = Signature::new(new.author, &format!("{}@skycast.invalid", new.author), &when)
            .map_err(self.err())?;
        let committer =
            Signature::new("skycast-publisher", "publisher@skycast.invalid", &when).map_err(self.err())?;
        let parents: Vec<Commit<'_>> = match new.parent {
            Some(p) => vec![self.find_commit(p)?],
            None => Vec::new(),
        };
        let parent_refs: Vec<&Commit<'_>> = parents.iter().collect();
        let oid = self
            .repo
            .commit(None, &author, &committer, new.message, &tree, &parent_refs)
            .map_err(self.err())?;

        let log = format!("publish {}", tag_name(new.version));
        let moved = match new.parent {
            Some(p) => self.repo.reference_matching(MAIN_REF, oid, true, p, &log),
            None => self.repo.reference(MAIN_REF, oid, false, &log),
        };
        match moved {
            Ok(_) => {}
            Err(e) if matches!(e.code(), git2::ErrorCode::Modified | git2::ErrorCode::Exists) => {
                return Err(PublisherError::ConcurrentPublish)
            }
            Err(e) => return Err(self.err()(e)),
        }
        self.tag(new.version, oid, new.author, new.message, when)?;
        Ok(oid)
    }

    fn tag(&self, version: u64, commit: Oid, who: &str, message: &str, when: git2::Time) -> Result<()> {
        let tagger = Signature::new(who, &format!("{who}@skycast.invalid"), &when).map_err(self.err())?;
        let obj = self
            .repo
            .find_object(commit, Some(ObjectType::Commit))
            .map_err(self.err())?;
        self.repo
            .tag(&tag_name(version), &obj, &tagger, message, true)
            .map_err(self.err())?;
        Ok(())
    }

    /// Removes the `*.lock` files a killed git writer leaves in `refs/` (and
    /// `packed-refs.lock`). Only call it holding `DataDir::lock_store`: then no
    /// live writer can own them. Returns what was removed.
    pub fn clear_stale_locks(&self, _held: &crate::data_dir::StoreLock) -> Result<Vec<PathBuf>> {
        let git_dir = self.repo.path().to_path_buf();
        let mut removed = Vec::new();
        let mut dirs = vec![git_dir.join("refs")];
        let packed = git_dir.join("packed-refs.lock");
        if packed.exists() {
            std::fs::remove_file(&packed).map_err(PublisherError::io("remove", &packed))?;
            removed.push(packed);
        }
        while let Some(dir) = dirs.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                if path.is_dir() {
                    dirs.push(path);
                } else if path.extension().is_some_and(|e| e == "lock") {
                    std::fs::remove_file(&path).map_err(PublisherError::io("remove", &path))?;
                    removed.push(path);
                }
            }
        }
        Ok(removed)
    }

    /// Adds the tag of any version on `main` that lacks one (after a crash between
    /// moving `main` and tagging). Returns the versions repaired.
    pub fn repair_tags(&self) -> Result<Vec<u64>> {
        let mut repaired = Vec::new();
        for info in self.history()? {
            if self.tagged_commit(info.version) != Some(info.commit) {
                let when = git2::Time::new(info.time.timestamp(), 0);
                self.tag(info.version, info.commit, &info.author, &info.message, when)?;
                repaired.push(info.version);
            }
        }
        Ok(repaired)
    }

    /// The commit a tag `v<n>` names, if the tag exists.
    pub fn tagged_commit(&self, n: u64) -> Option<Oid> {
        self.repo
            .revparse_single(&format!("refs/tags/{}", tag_name(n)))
            .ok()
            .and_then(|o| o.peel_to_commit().ok())
            .map(|c| c.id())
    }

    /// Names of every tag that looks like a version tag.
    pub fn version_tags(&self) -> Result<Vec<String>> {
        let names = self.repo.tag_names(Some("v*")).map_err(self.err())?;
        Ok(names.iter().flatten().map(str::to_string).collect())
    }

    /// The entries of a commit's root tree, for audits.
    pub fn root_entries(&self, commit: &Commit<'_>) -> Result<Vec<String>> {
        let tree = commit.tree().map_err(self.err())?;
        Ok(tree.iter().map(|e| e.name().unwrap_or("").to_string()).collect())
    }
}
