//! Writing the store: a version's tree, commit and compare-and-swap of `main`,
//! its tag, and the repairs a killed writer makes necessary (ref lock files,
//! missing tags).

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use git2::{Commit, ObjectType, Signature};
use skycast_schema::MediaId;

use super::roots::{RootFile, ROOT_DIR};
use super::{
    tag_name, BlobId, CommitId, Result, Store, StoreError, StoreLock, MAIN_REF, MANIFEST_FILE, MEDIA_DIR,
    SIGNATURE_FILE,
};

/// Everything a new version is made of; blobs are already in the object database.
pub struct NewVersion<'a> {
    pub version: u64,
    pub manifest: &'a [u8],
    pub signature: &'a [u8],
    pub media: &'a [(MediaId, BlobId)],
    /// Every trust root from 1 to the one in force (empty for a store without roots).
    pub roots: &'a [RootFile],
    pub author: &'a str,
    pub message: &'a str,
    pub time: DateTime<Utc>,
    /// The head this version was prepared against; the ref only moves if it is unchanged.
    pub parent: Option<CommitId>,
}

impl Store {
    /// Writes the tree and commit, then moves `main` only if it still names
    /// `parent`; the tag comes after. A crash before the ref moves leaves the old
    /// head; a crash after leaves the new one, and `repair_tags` adds its tag.
    pub fn commit_version(&self, new: NewVersion<'_>) -> Result<CommitId> {
        let mut media_tree = self.repo.treebuilder(None).map_err(self.err())?;
        for (id, blob) in new.media {
            media_tree
                .insert(id.file_name(), blob.0, 0o100644)
                .map_err(self.err())?;
        }
        let media_tree = media_tree.write().map_err(self.err())?;
        let mut root = self.repo.treebuilder(None).map_err(self.err())?;
        root.insert(MANIFEST_FILE, self.write_blob(new.manifest)?.0, 0o100644)
            .map_err(self.err())?;
        root.insert(SIGNATURE_FILE, self.write_blob(new.signature)?.0, 0o100644)
            .map_err(self.err())?;
        root.insert(MEDIA_DIR, media_tree, 0o040000).map_err(self.err())?;
        if !new.roots.is_empty() {
            let mut roots_tree = self.repo.treebuilder(None).map_err(self.err())?;
            for file in new.roots {
                for (name, bytes) in [
                    (RootFile::yaml_name(file.version), &file.yaml),
                    (RootFile::sig_name(file.version), &file.sig),
                ] {
                    roots_tree
                        .insert(name, self.write_blob(bytes)?.0, 0o100644)
                        .map_err(self.err())?;
                }
            }
            let roots_tree = roots_tree.write().map_err(self.err())?;
            root.insert(ROOT_DIR, roots_tree, 0o040000).map_err(self.err())?;
        }
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
            Some(p) => vec![self.commit(p)?],
            None => Vec::new(),
        };
        let parent_refs: Vec<&Commit<'_>> = parents.iter().collect();
        let oid = self
            .repo
            .commit(None, &author, &committer, new.message, &tree, &parent_refs)
            .map_err(self.err())?;

        let log = format!("publish {}", tag_name(new.version));
        let moved = match new.parent {
            Some(p) => self.repo.reference_matching(MAIN_REF, oid, true, p.0, &log),
            None => self.repo.reference(MAIN_REF, oid, false, &log),
        };
        match moved {
            Ok(_) => {}
            Err(e) if matches!(e.code(), git2::ErrorCode::Modified | git2::ErrorCode::Exists) => {
                return Err(StoreError::ConcurrentPublish)
            }
            Err(e) => return Err(self.err()(e)),
        }
        self.tag(new.version, CommitId(oid), new.author, new.message, when)?;
        // The version is published: its media go to the cache now, while their
        // blobs are fresh. Serving fills the cache too, so a failure here is only
        // reported.
        for (id, blob) in new.media {
            if let Err(e) = self.media_file(id, *blob) {
                tracing::warn!(media = %id, error = %e, "media not copied to the cache: serving will retry");
            }
        }
        Ok(CommitId(oid))
    }

    fn tag(&self, version: u64, commit: CommitId, who: &str, message: &str, when: git2::Time) -> Result<()> {
        let tagger = Signature::new(who, &format!("{who}@skycast.invalid"), &when).map_err(self.err())?;
        let obj = self
            .repo
            .find_object(commit.0, Some(ObjectType::Commit))
            .map_err(self.err())?;
        self.repo
            .tag(&tag_name(version), &obj, &tagger, message, true)
            .map_err(self.err())?;
        Ok(())
    }

    /// Removes the `*.lock` files a killed git writer leaves in `refs/` (and
    /// `packed-refs.lock`). Only callable holding the [`StoreLock`]: then no
    /// live writer can own them. Returns what was removed.
    pub fn clear_stale_locks(&self, _held: &StoreLock) -> Result<Vec<PathBuf>> {
        let git_dir = self.repo.path().to_path_buf();
        let mut removed = Vec::new();
        let mut dirs = vec![git_dir.join("refs")];
        let packed = git_dir.join("packed-refs.lock");
        if packed.exists() {
            std::fs::remove_file(&packed).map_err(StoreError::io("remove", &packed))?;
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
                    std::fs::remove_file(&path).map_err(StoreError::io("remove", &path))?;
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
}
