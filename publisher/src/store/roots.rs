//! The trust roots a version carries in its tree: `root/<N>.yaml` and
//! `root/<N>.sig` for every root from 1 to the one in force, so a plain clone
//! holds the whole chain next to the manifests it governs.

use git2::ObjectType;

use super::{CommitId, Result, Store, StoreError};

pub const ROOT_DIR: &str = "root";

/// One root as stored: its exact bytes and its signature file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootFile {
    pub version: u64,
    pub yaml: Vec<u8>,
    pub sig: Vec<u8>,
}

impl RootFile {
    pub fn yaml_name(version: u64) -> String {
        format!("{version}.yaml")
    }

    pub fn sig_name(version: u64) -> String {
        format!("{version}.sig")
    }
}

impl Store {
    /// The roots in `commit`'s tree, in order (empty for a store made before
    /// roots): 1, 2, … with no gap, each with its signature, else the commit is corrupt.
    pub fn roots_at(&self, commit: CommitId) -> Result<Vec<RootFile>> {
        let tree = self.commit(commit)?.tree().map_err(self.err())?;
        let Some(entry) = tree.get_name(ROOT_DIR) else {
            return Ok(Vec::new());
        };
        let dir = entry
            .to_object(&self.repo)
            .and_then(|o| o.peel_to_tree())
            .map_err(self.err())?;
        let corrupt = |reason: String| StoreError::Corrupt { commit, reason };
        let mut roots = Vec::new();
        for version in 1.. {
            let read = |name: String| -> Result<Option<Vec<u8>>> {
                match dir.get_name(&name) {
                    Some(e) if e.kind() == Some(ObjectType::Blob) => {
                        let blob = self.repo.find_blob(e.id()).map_err(self.err())?;
                        Ok(Some(blob.content().to_vec()))
                    }
                    Some(_) => Err(corrupt(format!("{ROOT_DIR}/{name} is not a file"))),
                    None => Ok(None),
                }
            };
            match (
                read(RootFile::yaml_name(version))?,
                read(RootFile::sig_name(version))?,
            ) {
                (Some(yaml), Some(sig)) => roots.push(RootFile { version, yaml, sig }),
                (None, None) => break,
                _ => return Err(corrupt(format!("root {version} lacks its yaml or its signature"))),
            }
        }
        if roots.len() * 2 != dir.len() {
            return Err(corrupt(format!(
                "{ROOT_DIR}/ holds {} entries, not the {} of roots 1 to {}",
                dir.len(),
                roots.len() * 2,
                roots.len()
            )));
        }
        Ok(roots)
    }

    /// Root `version`'s file `name` (`<N>.yaml` or `<N>.sig`) as `commit` carries it.
    pub fn root_file_at(&self, commit: CommitId, name: &str) -> Result<Option<Vec<u8>>> {
        self.file_at(commit, &format!("{ROOT_DIR}/{name}"))
    }
}
