//! Cheap change detection across processes: a file's identity as `stat` sees it,
//! compared on every request instead of re-reading what the file stands for.
//!
//! Writers replace the file by rename (git moves refs that way; [`touch`] does
//! too), so every change gives it a new inode even within one mtime tick.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Device, inode, size and modification time of a file; `None` stands for "absent".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime_ns: i128,
}

impl FileStamp {
    /// The stamp of `path` now, `None` when it does not exist (or cannot be read:
    /// the caller's fallback timer covers that case).
    pub fn of(path: &Path) -> Option<FileStamp> {
        let meta = std::fs::metadata(path).ok()?;
        Some(FileStamp {
            dev: meta.dev(),
            ino: meta.ino(),
            len: meta.len(),
            mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
        })
    }
}

/// Replaces `path` with a new file holding `note`, by rename: its stamp differs
/// from the one just before even when both fall in the same clock tick (the new
/// file exists before the old one is freed, so it cannot take its inode). A
/// reader that missed several changes may, very rarely, see an old stamp again:
/// readers keep a slow timer as a fallback.
pub fn touch(path: &Path, note: &str) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    std::fs::write(&tmp, note)?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_touch_changes_the_stamp_even_within_one_tick() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("signal");
        assert_eq!(FileStamp::of(&path), None);
        let mut last = None;
        for i in 0..5 {
            touch(&path, "1").unwrap();
            let stamp = FileStamp::of(&path);
            assert!(stamp.is_some());
            assert_ne!(stamp, last, "touch {i} left the stamp as it was");
            last = stamp;
        }
        assert_eq!(FileStamp::of(&path), last, "no change, same stamp");
    }
}
