//! A second site's copy of the store: `git fetch` of the primary's `main` (and
//! its tags and players snapshot) into staging refs, and the fast-forward of
//! `main` once the caller verified what came; plus the players snapshot the
//! primary keeps under [`PLAYERS_REF`] for its followers.
//!
//! Nothing here trusts what was fetched: `main` moves only through
//! [`Store::advance_main`], which refuses anything but a fast-forward.

use git2::{FetchOptions, Oid, Signature};

use super::{CommitId, Result, Store, StoreError, MAIN_REF};

/// Where a fetch puts the primary's `main` until it is verified.
pub const INCOMING_REF: &str = "refs/follow/main";
/// The primary's enabled players by token hash (a JSON file in a commit of
/// its own, outside `main`: a plain `git clone` does not fetch it).
pub const PLAYERS_REF: &str = "refs/skycast/players";
/// Where a fetch puts the primary's players snapshot.
pub const INCOMING_PLAYERS_REF: &str = "refs/follow/players";
/// The file in a players snapshot commit.
const PLAYERS_FILE: &str = "players.json";

impl Store {
    /// Fetches the primary's `main` into [`INCOMING_REF`], its version tags
    /// and its players snapshot from `url` (any URL libgit2 reaches: a path,
    /// `file://`, `git://`, `http://`). Returns the commit fetched, `None` when
    /// the primary has published nothing yet.
    pub fn fetch_primary(&self, url: &str) -> Result<Option<CommitId>> {
        let mut remote = self
            .repo
            .remote_anonymous(url)
            .map_err(|source| StoreError::Git {
                path: url.into(),
                source,
            })?;
        let refspecs = [
            format!("+{MAIN_REF}:{INCOMING_REF}"),
            format!("+{PLAYERS_REF}:{INCOMING_PLAYERS_REF}"),
            // Not forced: a tag this copy has is never moved by the primary.
            "refs/tags/v*:refs/tags/v*".to_string(),
        ];
        let mut options = FetchOptions::new();
        options.download_tags(git2::AutotagOption::None);
        remote
            .fetch(&refspecs, Some(&mut options), None)
            .map_err(|source| StoreError::Command(format!("cannot fetch from the primary at {url}: {source}: check that it is reachable and serves its store")))?;
        match self.repo.refname_to_id(INCOMING_REF) {
            Ok(oid) => Ok(Some(CommitId(oid))),
            Err(e) if e.code() == git2::ErrorCode::NotFound => Ok(None),
            Err(e) => Err(self.err()(e)),
        }
    }

    /// Moves `main` to `to` when `to` descends from the current `main` along
    /// first parents (or `main` does not exist yet): the only way a follower's
    /// `main` moves, so a primary whose history was rewritten is refused.
    pub fn advance_main(&self, to: CommitId) -> Result<()> {
        let current = self.head()?;
        if let Some(current) = current {
            if current == to {
                return Ok(());
            }
            let descends = self
                .repo
                .graph_descendant_of(to.0, current.0)
                .map_err(self.err())?;
            if !descends {
                return Err(StoreError::Command(format!(
                    "the primary's main ({to}) does not descend from this copy's ({current}): its history was rewritten; refused"
                )));
            }
        }
        let message = format!("follow: fast-forward to {to}");
        match current {
            Some(old) => self
                .repo
                .reference_matching(MAIN_REF, to.0, true, old.0, &message),
            None => self.repo.reference(MAIN_REF, to.0, false, &message),
        }
        .map_err(self.err())?;
        Ok(())
    }

    /// The players snapshot last fetched from the primary, if any.
    pub fn incoming_players(&self) -> Result<Option<Vec<u8>>> {
        let oid = match self.repo.refname_to_id(INCOMING_PLAYERS_REF) {
            Ok(oid) => oid,
            Err(e) if e.code() == git2::ErrorCode::NotFound => return Ok(None),
            Err(e) => return Err(self.err()(e)),
        };
        self.file_at(CommitId(oid), PLAYERS_FILE)
    }

    /// Records `json` as the players snapshot under [`PLAYERS_REF`] (a new
    /// root commit each time: followers need only the latest), unless it is
    /// already the current one.
    pub fn write_players_snapshot(&self, json: &[u8]) -> Result<()> {
        let current = match self.repo.refname_to_id(PLAYERS_REF) {
            Ok(oid) => Some(oid),
            Err(e) if e.code() == git2::ErrorCode::NotFound => None,
            Err(e) => return Err(self.err()(e)),
        };
        if let Some(oid) = current {
            if self.file_at(CommitId(oid), PLAYERS_FILE)?.as_deref() == Some(json) {
                return Ok(());
            }
        }
        let blob = self.repo.blob(json).map_err(self.err())?;
        let mut tree = self.repo.treebuilder(None).map_err(self.err())?;
        tree.insert(PLAYERS_FILE, blob, 0o100644).map_err(self.err())?;
        let tree: Oid = tree.write().map_err(self.err())?;
        let tree = self.repo.find_tree(tree).map_err(self.err())?;
        let who = Signature::now("skycast serve", "serve@skycast.invalid").map_err(self.err())?;
        let commit = self
            .repo
            .commit(None, &who, &who, "players for followers", &tree, &[])
            .map_err(self.err())?;
        self.repo
            .reference(PLAYERS_REF, commit, true, "players snapshot")
            .map_err(self.err())?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;
    use crate::store::NewVersion;

    fn store(dir: &std::path::Path) -> Store {
        Store::init(dir).unwrap();
        Store::open(dir).unwrap()
    }

    fn version(store: &Store, n: u64, parent: Option<CommitId>) -> CommitId {
        store
            .commit_version(NewVersion {
                version: n,
                manifest: format!("version: {n}\n").as_bytes(),
                signature: b"not checked here",
                media: &[],
                roots: &[],
                author: "ann",
                message: "test",
                time: Utc::now(),
                parent,
            })
            .unwrap()
    }

    #[test]
    fn main_follows_the_primary_forward_only_and_a_rewritten_history_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let primary = store(&dir.path().join("primary.git"));
        let copy = store(&dir.path().join("copy.git"));
        let url = dir.path().join("primary.git").display().to_string();
        assert_eq!(copy.fetch_primary(&url).unwrap(), None, "nothing published yet");

        let v1 = version(&primary, 1, None);
        let v2 = version(&primary, 2, Some(v1));
        let fetched = copy.fetch_primary(&url).unwrap();
        assert_eq!(fetched, Some(v2));
        assert_eq!(copy.head().unwrap(), None, "a fetch alone moves nothing");
        copy.advance_main(v2).unwrap();
        assert_eq!(copy.head().unwrap(), Some(v2));
        assert_eq!(
            copy.commits_since(v2, None).unwrap().len(),
            2,
            "the whole history came"
        );

        // The primary's main rewritten onto v1: the copy refuses and keeps v2.
        let other = primary
            .repo
            .commit(
                None,
                &Signature::now("mallory", "m@skycast.invalid").unwrap(),
                &Signature::now("mallory", "m@skycast.invalid").unwrap(),
                "rewritten",
                &primary.repo.find_commit(v1.0).unwrap().tree().unwrap(),
                &[&primary.repo.find_commit(v1.0).unwrap()],
            )
            .unwrap();
        primary.repo.reference(MAIN_REF, other, true, "rewrite").unwrap();
        let fetched = copy.fetch_primary(&url).unwrap().unwrap();
        let refused = copy.advance_main(fetched).unwrap_err().to_string();
        assert!(refused.contains("history was rewritten"), "{refused}");
        assert_eq!(copy.head().unwrap(), Some(v2));
    }

    #[test]
    fn the_players_snapshot_is_committed_once_per_change_and_fetched_by_the_copy() {
        let dir = tempfile::tempdir().unwrap();
        let primary = store(&dir.path().join("primary.git"));
        let copy = store(&dir.path().join("copy.git"));
        let url = dir.path().join("primary.git").display().to_string();
        primary.write_players_snapshot(b"{\"players\": []}").unwrap();
        let first = primary.repo.refname_to_id(PLAYERS_REF).unwrap();
        primary.write_players_snapshot(b"{\"players\": []}").unwrap();
        assert_eq!(
            primary.repo.refname_to_id(PLAYERS_REF).unwrap(),
            first,
            "no change, no commit"
        );
        primary.write_players_snapshot(b"{\"players\": [1]}").unwrap();
        assert_ne!(primary.repo.refname_to_id(PLAYERS_REF).unwrap(), first);
        copy.fetch_primary(&url).unwrap();
        assert_eq!(
            copy.incoming_players().unwrap().as_deref(),
            Some(&b"{\"players\": [1]}"[..])
        );
    }
}
