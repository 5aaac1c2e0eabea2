//! `store.lock`: the OS file lock every writer of the store holds.

use std::fs;
use std::path::{Path, PathBuf};

use super::StoreError;

/// Held while the store is written. The kernel drops the lock when the holder
/// dies, so a `kill -9` never leaves it taken.
pub struct StoreLock {
    _file: fs::File,
    path: PathBuf,
}

impl StoreLock {
    /// Waits for, then holds, the lock file at `path` (created when missing).
    pub fn acquire(path: &Path) -> Result<StoreLock, StoreError> {
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(StoreError::io("open", path))?;
        file.lock().map_err(StoreError::io("lock", path))?;
        Ok(StoreLock {
            _file: file,
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}
