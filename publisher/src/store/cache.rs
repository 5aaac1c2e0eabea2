//! The media cache beside the store: `data/media-cache/<blake3>.mp3`, one plain
//! file per published media, so serving a file (or one byte of it) never reads a
//! whole git blob into memory. A file is written once from its blob, streamed
//! (loose objects) into a temporary file, checked against its blake3 id, fsynced
//! and renamed into place; it derives from git, so it may be deleted at any time.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use skycast_schema::{ContentHasher, MediaId};

use super::{BlobId, Result, Store, StoreError};

/// The cache's folder name, beside `store.git` in the data directory.
pub const MEDIA_CACHE_DIR: &str = "media-cache";
/// Holding it, one process materialises files: concurrent requests for the
/// same media wait for the first instead of each writing a copy.
const LOCK_FILE: &str = "cache.lock";
const CHUNK: usize = 64 * 1024;

/// Where the media cache of the store at `store_path` lives: beside it. A file
/// there is always complete and verified (it is renamed into place after both).
pub fn media_cache_dir_of(store_path: &Path) -> PathBuf {
    let parent = store_path.parent().unwrap_or_else(|| Path::new("."));
    parent.join(MEDIA_CACHE_DIR)
}

impl Store {
    /// Where the media cache of this store lives: beside the repository.
    pub fn media_cache_dir(&self) -> PathBuf {
        media_cache_dir_of(&self.path)
    }

    /// The cached file of media `id`, whose bytes are `blob`; written from the
    /// blob the first time (in bounded memory for loose objects), verified by its
    /// blake3 against `id`. A cached file whose size differs from the blob's is
    /// written again.
    pub fn media_file(&self, id: &MediaId, blob: BlobId) -> Result<PathBuf> {
        let dir = self.media_cache_dir();
        let path = dir.join(id.file_name());
        let size = self.blob_size(blob)?;
        if cached_size(&path)? == Some(size) {
            return Ok(path);
        }
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(StoreError::io("create the media cache folder", &dir))?;
        let lock_path = dir.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&lock_path)
            .map_err(StoreError::io("open", &lock_path))?;
        lock.lock().map_err(StoreError::io("lock", &lock_path))?;
        // Another request may have written it while this one waited.
        if cached_size(&path)? == Some(size) {
            return Ok(path);
        }
        let tmp = dir.join(format!(".{}.tmp", hex::encode(crate::random_bytes::<8>())));
        let written = self.write_cache_file(id, blob, &tmp, &path);
        if written.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        written?;
        Ok(path)
    }

    fn blob_size(&self, blob: BlobId) -> Result<u64> {
        let odb = self.repo.odb().map_err(self.err())?;
        let (size, _) = odb.read_header(blob.0).map_err(self.err())?;
        Ok(size as u64)
    }

    fn write_cache_file(&self, id: &MediaId, blob: BlobId, tmp: &Path, path: &Path) -> Result<()> {
        let mut out = OpenOptions::new()
            .create_new(true)
            .write(true)
            .mode(0o600)
            .open(tmp)
            .map_err(StoreError::io("create", tmp))?;
        let mut hasher = ContentHasher::new();
        let mut copy = |bytes: &[u8]| -> Result<()> {
            hasher.update(bytes);
            out.write_all(bytes).map_err(StoreError::io("write", tmp))
        };
        let odb = self.repo.odb().map_err(self.err())?;
        match odb.reader(blob.0) {
            Ok((mut reader, _, _)) => {
                let mut buf = vec![0u8; CHUNK];
                loop {
                    let n = reader
                        .read(&mut buf)
                        .map_err(StoreError::io("read the blob of", tmp))?;
                    if n == 0 {
                        break;
                    }
                    copy(&buf[..n])?;
                }
            }
            // Packed objects (after `git gc`, or in a clone) cannot be streamed by
            // libgit2: they are read whole, once, to fill the cache.
            Err(_) => copy(self.repo.find_blob(blob.0).map_err(self.err())?.content())?,
        }
        let (found, _) = hasher.finalize();
        if found != *id {
            return Err(StoreError::MediaMismatch { blob, id: *id, found });
        }
        out.sync_all().map_err(StoreError::io("fsync", tmp))?;
        drop(out);
        fs::rename(tmp, path).map_err(StoreError::io("rename into", path))?;
        if let Some(dir) = path.parent() {
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(StoreError::io("fsync", dir))?;
        }
        Ok(())
    }
}

fn cached_size(path: &Path) -> Result<Option<u64>> {
    match fs::metadata(path) {
        Ok(m) if m.is_file() => Ok(Some(m.len())),
        Ok(_) => Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(StoreError::Io {
            action: "read the size of",
            path: path.to_path_buf(),
            source: e,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.git");
        Store::init(&path).unwrap();
        let store = Store::open(&path).unwrap();
        (dir, store)
    }

    #[test]
    fn a_blob_is_copied_once_into_the_cache_beside_the_store() {
        let (dir, store) = store();
        let bytes: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let id = MediaId::of(&bytes);
        let blob = store.write_blob(&bytes).unwrap();
        let path = store.media_file(&id, blob).unwrap();
        assert_eq!(path, dir.path().join(MEDIA_CACHE_DIR).join(id.file_name()));
        assert_eq!(fs::read(&path).unwrap(), bytes);
        let written = fs::metadata(&path).unwrap().modified().unwrap();
        assert_eq!(store.media_file(&id, blob).unwrap(), path);
        assert_eq!(
            fs::metadata(&path).unwrap().modified().unwrap(),
            written,
            "not written again"
        );
        // A truncated cache file is noticed by its size and written again.
        fs::write(&path, b"short").unwrap();
        assert_eq!(fs::read(store.media_file(&id, blob).unwrap()).unwrap(), bytes);
    }

    #[test]
    fn a_blob_whose_hash_is_not_the_id_leaves_nothing_in_the_cache() {
        let (dir, store) = store();
        let blob = store.write_blob(b"some bytes").unwrap();
        let other = MediaId::of(b"other bytes");
        let err = store.media_file(&other, blob).unwrap_err();
        assert!(matches!(err, StoreError::MediaMismatch { .. }), "{err}");
        let left: Vec<_> = fs::read_dir(dir.path().join(MEDIA_CACHE_DIR))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n != LOCK_FILE)
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }
}
