//! The shop's data directory: layout, the exclusive lock, crash-safe writes of version
//! files, the atomic `current` swap, and pruning of what no version needs any more.

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use nix::fcntl::{Flock, FlockArg};
use skycast_schema::protocol::{MANIFEST_FILE, SIGNATURE_FILE};
use skycast_schema::{verify, ContentHasher, Limits, Manifest, MediaId, TrustedKeys, Verified};

const CURRENT: &str = "current";
const CURRENT_TMP_PREFIX: &str = "current.tmp-";
const TMP_MARK: &str = ".tmp-";
const LOCK: &str = "puller.lock";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("data directory {path} is in use by another skycast-puller: wait for it to finish or stop it")]
    Busy { path: PathBuf },
    #[error("{path} is not a symlink to versions/<N> (found {found}): move it away and sync again")]
    BadCurrent { path: PathBuf, found: String },
    #[error("cannot read installed manifest {path}: {reason}")]
    BadInstalledManifest { path: PathBuf, reason: String },
    #[error(
        "refusing to write {path}: it is {found}, not a regular file (planted by someone?): \
         nothing was written through it; remove it and sync again"
    )]
    NotRegularFile { path: PathBuf, found: &'static str },
    #[error("refusing to swap to version {version}: media {id} is missing from {path}")]
    MissingMedia {
        version: u64,
        id: MediaId,
        path: PathBuf,
    },
}

pub(crate) fn io_err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> StoreError + 'a {
    move |source| StoreError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// Paths inside one data directory.
#[derive(Debug, Clone)]
pub struct Layout {
    root: PathBuf,
}

/// Holds the data directory's lock; dropping it (or the process dying) releases it.
#[derive(Debug)]
pub struct DirLock {
    _lock: Flock<File>,
}

/// What pruning removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Pruned {
    pub media: usize,
    pub versions: usize,
    pub partials: usize,
}

impl Layout {
    pub fn new(root: impl Into<PathBuf>) -> Layout {
        Layout { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn media_dir(&self) -> PathBuf {
        self.root.join("media")
    }
    pub fn partial_dir(&self) -> PathBuf {
        self.root.join("partial")
    }
    pub fn versions_dir(&self) -> PathBuf {
        self.root.join("versions")
    }
    pub fn version_dir(&self, version: u64) -> PathBuf {
        self.versions_dir().join(version.to_string())
    }
    pub fn current_link(&self) -> PathBuf {
        self.root.join(CURRENT)
    }
    pub fn state_db(&self) -> PathBuf {
        self.root.join("state.sqlite")
    }
    pub fn media_path(&self, id: &MediaId) -> PathBuf {
        self.media_dir().join(id.file_name())
    }
    pub fn partial_path(&self, id: &MediaId) -> PathBuf {
        self.partial_dir().join(format!("{id}.part"))
    }

    /// Creates the directories (0700) and `state.sqlite` (0600), tightening the modes
    /// of existing ones, and refuses a state file that is not a regular file.
    pub fn prepare_private(&self) -> Result<(), StoreError> {
        for dir in [
            self.root.clone(),
            self.media_dir(),
            self.partial_dir(),
            self.versions_dir(),
        ] {
            create_private_dir(&dir)?;
        }
        drop(open_private_file(&self.state_db(), false)?);
        Ok(())
    }

    /// Creates the directories and the state file (see [`Layout::prepare_private`]),
    /// takes the exclusive lock, and removes leftovers of an interrupted run
    /// (`current.tmp-*`, temp files inside `versions/`).
    pub fn open_locked(&self) -> Result<DirLock, StoreError> {
        self.prepare_private()?;
        let lock_path = self.root.join(LOCK);
        let file = open_private_file(&lock_path, false)?;
        let lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(l) => l,
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => {
                return Err(StoreError::Busy {
                    path: self.root.clone(),
                })
            }
            Err((_, errno)) => {
                return Err(StoreError::Io {
                    action: "lock",
                    path: lock_path,
                    source: io::Error::from(errno),
                })
            }
        };
        self.clean_leftovers()?;
        Ok(DirLock { _lock: lock })
    }

    fn clean_leftovers(&self) -> Result<(), StoreError> {
        for entry in read_dir(&self.root)? {
            if entry.starts_with(CURRENT_TMP_PREFIX) {
                remove_file_if_exists(&self.root.join(&entry))?;
            }
        }
        for version in read_dir(&self.versions_dir())? {
            let dir = self.versions_dir().join(&version);
            if !dir.is_dir() {
                continue;
            }
            for file in read_dir(&dir)? {
                if file.contains(TMP_MARK) {
                    remove_file_if_exists(&dir.join(&file))?;
                }
            }
        }
        Ok(())
    }

    /// The version `current` names, if any. It is complete by construction.
    pub fn current_version(&self) -> Result<Option<u64>, StoreError> {
        let link = self.current_link();
        let target = match fs::read_link(&link) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) if e.kind() == io::ErrorKind::InvalidInput => {
                return Err(StoreError::BadCurrent {
                    path: link,
                    found: "not a symlink".into(),
                })
            }
            Err(e) => return Err(io_err("read symlink", &link)(e)),
        };
        let text = target.to_string_lossy();
        text.strip_prefix("versions/")
            .and_then(|n| n.parse::<u64>().ok())
            .filter(|n| *n > 0)
            .map(Some)
            .ok_or_else(|| StoreError::BadCurrent {
                path: link.clone(),
                found: format!("-> {text}"),
            })
    }

    /// The manifest of an installed version, as verified when it was installed.
    pub fn load_manifest(&self, version: u64) -> Result<Manifest, StoreError> {
        let path = self.version_dir(version).join(MANIFEST_FILE);
        let bytes = fs::read(&path).map_err(|e| StoreError::BadInstalledManifest {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        Manifest::parse_with(&bytes, &Limits::default()).map_err(|e| StoreError::BadInstalledManifest {
            path,
            reason: e.to_string(),
        })
    }

    /// The manifest of an installed version, its signature checked again: what the
    /// player may trust after a restart.
    pub fn load_verified(
        &self,
        version: u64,
        trusted: &TrustedKeys,
    ) -> Result<Verified<Manifest>, StoreError> {
        let dir = self.version_dir(version);
        let read = |name: &str| {
            let path = dir.join(name);
            fs::read(&path).map_err(|e| StoreError::BadInstalledManifest {
                path: path.clone(),
                reason: e.to_string(),
            })
        };
        let (bytes, sig) = (read(MANIFEST_FILE)?, read(SIGNATURE_FILE)?);
        verify(&bytes, &sig, trusted, &Limits::default()).map_err(|e| StoreError::BadInstalledManifest {
            path: dir.join(MANIFEST_FILE),
            reason: e.to_string(),
        })
    }

    /// True when `media/<id>.mp3` is there with the declared size (its content was
    /// hashed before it was renamed in).
    pub fn has_media(&self, id: &MediaId, size: u64) -> bool {
        fs::metadata(self.media_path(id)).is_ok_and(|m| m.is_file() && m.len() == size)
    }

    /// Bytes free for this user on the data directory's file system, when known.
    pub fn free_disk_bytes(&self) -> Option<u64> {
        let st = nix::sys::statvfs::statvfs(&self.root).ok()?;
        Some((st.blocks_available() as u64).saturating_mul(st.fragment_size() as u64))
    }

    /// Rehashes `media/<id>.mp3`; when it does not match its name (or is absent) it
    /// is removed, so the next sync downloads it again, and the damage is returned.
    pub fn check_media(&self, id: &MediaId) -> Result<Option<DamagedMedia>, StoreError> {
        let path = self.media_path(id);
        let (got, size_bytes) = hash_file(&path)?.finalize();
        if got == *id {
            return Ok(None);
        }
        let missing = size_bytes == 0 && !path.exists();
        let reason = if missing {
            format!("media file {} is missing", path.display())
        } else {
            remove_file_if_exists(&path)?;
            format!(
                "media file {} is damaged ({size_bytes} bytes hashing to {}): removed, the next sync downloads it again",
                path.display(),
                got.short()
            )
        };
        Ok(Some(DamagedMedia {
            id: *id,
            reason,
            missing,
        }))
    }

    /// [`Layout::check_media`] on every file of `media/` and every id of `named`
    /// (the active version's media, so a missing one is said too).
    pub fn verify_all_media(&self, named: &[MediaId]) -> Result<Vec<DamagedMedia>, StoreError> {
        let dir = self.media_dir();
        let mut ids: BTreeSet<MediaId> = named.iter().copied().collect();
        match fs::read_dir(&dir) {
            Ok(entries) => {
                for entry in entries {
                    let entry = entry.map_err(io_err("list", &dir))?;
                    let name = entry.file_name();
                    let id: Option<MediaId> = name
                        .to_str()
                        .and_then(|n| n.strip_suffix(".mp3"))
                        .and_then(|n| n.parse().ok());
                    ids.extend(id);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err("list", &dir)(e)),
        }
        let mut damaged = Vec::new();
        for id in ids {
            damaged.extend(self.check_media(&id)?);
        }
        Ok(damaged)
    }

    /// Writes `versions/<N>/`, checks every media file is present, then swaps
    /// `current` to it. Only a verified manifest can get here.
    pub fn install(&self, manifest: &Verified<Manifest>) -> Result<(), StoreError> {
        let version = manifest.version();
        for entry in &manifest.media {
            if !self.has_media(&entry.id, entry.size) {
                return Err(StoreError::MissingMedia {
                    version,
                    id: entry.id,
                    path: self.media_path(&entry.id),
                });
            }
        }
        let dir = self.version_dir(version);
        create_private_dir(&dir)?;
        write_atomic(&dir.join(MANIFEST_FILE), manifest.bytes())?;
        write_atomic(&dir.join(SIGNATURE_FILE), manifest.signature_bytes())?;
        fsync_dir(&dir)?;
        fsync_dir(&self.versions_dir())?;
        self.swap_current(manifest)
    }

    /// Points `current` at `versions/<N>` atomically: a new symlink renamed over the
    /// old one, then an fsync of the data directory. Takes the verified manifest so
    /// nothing unverified can be swapped in.
    pub fn swap_current(&self, manifest: &Verified<Manifest>) -> Result<(), StoreError> {
        let version = manifest.version();
        let tmp = self.root.join(format!("{CURRENT_TMP_PREFIX}{}", unique_suffix()));
        let target = format!("versions/{version}");
        std::os::unix::fs::symlink(&target, &tmp).map_err(io_err("create symlink", &tmp))?;
        let link = self.current_link();
        if let Err(e) = fs::rename(&tmp, &link) {
            let _ = fs::remove_file(&tmp);
            return Err(io_err("rename symlink over", &link)(e));
        }
        fsync_dir(&self.root)
    }

    /// Keeps the media of the versions in `keep`, deletes every other media file and
    /// version directory, and every partial download `partials_wanted` does not name.
    pub fn prune(
        &self,
        keep: &[(u64, &Manifest)],
        partials_wanted: &BTreeSet<MediaId>,
    ) -> Result<Pruned, StoreError> {
        let mut pruned = Pruned::default();
        let keep_media: BTreeSet<String> = keep
            .iter()
            .flat_map(|(_, m)| m.media.iter().map(|e| e.id.file_name()))
            .collect();
        let keep_versions: BTreeSet<String> = keep.iter().map(|(n, _)| n.to_string()).collect();
        let media_dir = self.media_dir();
        for name in read_dir(&media_dir)? {
            if !keep_media.contains(&name) {
                remove_file_if_exists(&media_dir.join(&name))?;
                pruned.media += 1;
            }
        }
        let versions_dir = self.versions_dir();
        for name in read_dir(&versions_dir)? {
            if !keep_versions.contains(&name) {
                let path = versions_dir.join(&name);
                let res = if path.is_dir() {
                    fs::remove_dir_all(&path)
                } else {
                    fs::remove_file(&path)
                };
                res.map_err(io_err("remove", &path))?;
                pruned.versions += 1;
            }
        }
        let wanted: BTreeSet<String> = partials_wanted.iter().map(|id| format!("{id}.part")).collect();
        let partial_dir = self.partial_dir();
        for name in read_dir(&partial_dir)? {
            if !wanted.contains(&name) {
                remove_file_if_exists(&partial_dir.join(&name))?;
                pruned.partials += 1;
            }
        }
        fsync_dir(&media_dir)?;
        fsync_dir(&versions_dir)?;
        Ok(pruned)
    }
}

/// Names in a directory (an absent directory has none).
fn read_dir(dir: &Path) -> Result<Vec<String>, StoreError> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err("list", dir)(e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io_err("list", dir))?;
        out.push(entry.file_name().to_string_lossy().into_owned());
    }
    Ok(out)
}

/// Creates `dir` and its missing parents with mode 0700, and sets 0700 on `dir` if it
/// already existed.
pub fn create_private_dir(dir: &Path) -> Result<(), StoreError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io_err("create directory", dir))?;
    let meta = fs::symlink_metadata(dir).map_err(io_err("inspect", dir))?;
    if meta.permissions().mode() & 0o777 != 0o700 {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
            .map_err(io_err("set mode 0700 on", dir))?;
    }
    Ok(())
}

/// What is at `path` when it is not a regular file.
fn not_regular(meta: &fs::Metadata) -> Option<&'static str> {
    let kind = meta.file_type();
    if kind.is_file() {
        None
    } else if kind.is_symlink() {
        Some("a symlink")
    } else if kind.is_dir() {
        Some("a directory")
    } else {
        Some("a special file")
    }
}

/// Opens `path` for writing (created with mode 0600 if absent, 0600 set if not;
/// `truncate` empties it) without following a symlink (`O_NOFOLLOW`), and refuses
/// anything but a regular file, so a link planted under the data directory never
/// makes the puller write to its target.
pub fn open_private_file(path: &Path, truncate: bool) -> Result<File, StoreError> {
    let refused = |found| StoreError::NotRegularFile {
        path: path.to_path_buf(),
        found,
    };
    // A FIFO or device is refused before `open` could block on it or write to it.
    match fs::symlink_metadata(path) {
        Ok(meta) => {
            if let Some(found) = not_regular(&meta) {
                return Err(refused(found));
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err("inspect", path)(e)),
    }
    let file = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(truncate)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            // A symlink swapped in after the check above.
            Some(nix::libc::ELOOP) => refused("a symlink"),
            _ => io_err("open", path)(e),
        })?;
    let meta = file.metadata().map_err(io_err("inspect", path))?;
    if let Some(found) = not_regular(&meta) {
        return Err(refused(found));
    }
    if meta.permissions().mode() & 0o777 != 0o600 {
        file.set_permissions(fs::Permissions::from_mode(0o600))
            .map_err(io_err("set mode 0600 on", path))?;
    }
    Ok(file)
}

/// Opens `path` for reading without following a symlink; `None` when it is absent.
pub fn open_regular_for_read(path: &Path) -> Result<Option<File>, StoreError> {
    let file = match OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error() == Some(nix::libc::ELOOP) => {
            return Err(StoreError::NotRegularFile {
                path: path.to_path_buf(),
                found: "a symlink",
            })
        }
        Err(e) => return Err(io_err("open", path)(e)),
    };
    let meta = file.metadata().map_err(io_err("inspect", path))?;
    match not_regular(&meta) {
        Some(found) => Err(StoreError::NotRegularFile {
            path: path.to_path_buf(),
            found,
        }),
        None => Ok(Some(file)),
    }
}

/// Hashes a file as it is on disk; an absent file hashes as empty.
pub(crate) fn hash_file(path: &Path) -> Result<ContentHasher, StoreError> {
    let mut hasher = ContentHasher::new();
    // A symlink planted here is refused: its target is not read.
    let Some(mut file) = open_regular_for_read(path)? else {
        return Ok(hasher);
    };
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = file.read(&mut buf).map_err(io_err("read", path))?;
        if n == 0 {
            return Ok(hasher);
        }
        hasher.update(&buf[..n]);
    }
}

/// A local media file that no longer matches its name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DamagedMedia {
    pub id: MediaId,
    /// What is wrong, in words.
    pub reason: String,
    /// The file is not there at all (removed earlier, not yet downloaded again).
    pub missing: bool,
}

pub(crate) fn remove_file_if_exists(path: &Path) -> Result<(), StoreError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err("remove", path)(e)),
    }
}

/// A name no other writer in this or another process will pick.
fn unique_suffix() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "{}-{nanos:x}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Writes a file under a temporary name, fsyncs it, then renames it into place.
/// The caller fsyncs the directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!("{name}{TMP_MARK}{}", unique_suffix()));
    let result = (|| {
        // A fresh, unguessable name: `create_new` never follows or reuses anything.
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(&tmp)
            .map_err(io_err("create", &tmp))?;
        f.write_all(bytes).map_err(io_err("write", &tmp))?;
        f.sync_all().map_err(io_err("fsync", &tmp))?;
        fs::rename(&tmp, path).map_err(io_err("rename into", path))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

pub fn fsync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("fsync directory", dir))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use skycast_schema::{verify, SecretKey, TrustedKeys};

    pub fn signed(version: u64, media: &[&[u8]]) -> Verified<Manifest> {
        let yaml = crate::test_support::manifest_yaml(version, media, "2099-01-01T00:00:00Z");
        let key = SecretKey::from_seed([7; 32]);
        let sig = key.sign(yaml.as_bytes());
        verify(
            yaml.as_bytes(),
            sig.as_bytes(),
            &TrustedKeys::new([key.public()]),
            &Limits::default(),
        )
        .unwrap()
    }

    fn put_media(layout: &Layout, bytes: &[u8]) {
        fs::write(layout.media_path(&MediaId::of(bytes)), bytes).unwrap();
    }

    #[test]
    fn swap_replaces_current_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        let _lock = layout.open_locked().unwrap();
        assert_eq!(layout.current_version().unwrap(), None);
        put_media(&layout, b"one");
        layout.install(&signed(1, &[b"one"])).unwrap();
        assert_eq!(layout.current_version().unwrap(), Some(1));
        assert_eq!(
            fs::read_link(layout.current_link()).unwrap(),
            PathBuf::from("versions/1")
        );
        put_media(&layout, b"two");
        let v2 = signed(2, &[b"two"]);
        layout.install(&v2).unwrap();
        assert_eq!(layout.current_version().unwrap(), Some(2));
        let installed = fs::read(layout.current_link().join(MANIFEST_FILE)).unwrap();
        assert_eq!(installed, v2.bytes());
        let sig = fs::read(layout.current_link().join(SIGNATURE_FILE)).unwrap();
        assert_eq!(sig, v2.signature_bytes());
        let leftovers: Vec<_> = read_dir(dir.path())
            .unwrap()
            .into_iter()
            .filter(|n| n.starts_with(CURRENT_TMP_PREFIX))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    #[test]
    fn verify_removes_a_damaged_file_and_names_a_missing_one() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        layout.prepare_private().unwrap();
        let (good, bad, gone) = (b"good".as_slice(), b"bad".as_slice(), b"gone".as_slice());
        put_media(&layout, good);
        put_media(&layout, bad);
        std::fs::write(layout.media_path(&MediaId::of(bad)), b"bax").unwrap();
        let named = [MediaId::of(good), MediaId::of(gone)];
        let mut damaged = layout.verify_all_media(&named).unwrap();
        damaged.sort_by_key(|d| d.missing);
        assert_eq!(damaged.len(), 2, "{damaged:?}");
        assert_eq!((damaged[0].id, damaged[0].missing), (MediaId::of(bad), false));
        assert!(damaged[0].reason.contains("damaged"), "{}", damaged[0].reason);
        assert!(
            !layout.media_path(&MediaId::of(bad)).exists(),
            "removed for a new download"
        );
        assert_eq!((damaged[1].id, damaged[1].missing), (MediaId::of(gone), true));
        assert!(layout.media_path(&MediaId::of(good)).exists());
    }

    #[test]
    fn install_refuses_a_version_whose_media_are_missing() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        let _lock = layout.open_locked().unwrap();
        let err = layout.install(&signed(1, &[b"absent"])).unwrap_err();
        assert!(matches!(err, StoreError::MissingMedia { .. }), "{err}");
        assert_eq!(layout.current_version().unwrap(), None);
    }

    #[test]
    fn leftovers_of_an_interrupted_swap_are_cleaned_and_tolerated() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        {
            let _lock = layout.open_locked().unwrap();
            put_media(&layout, b"one");
            layout.install(&signed(1, &[b"one"])).unwrap();
        }
        std::os::unix::fs::symlink("versions/2", dir.path().join("current.tmp-99-1-0")).unwrap();
        fs::create_dir_all(layout.version_dir(2)).unwrap();
        fs::write(
            layout.version_dir(2).join(format!("{MANIFEST_FILE}.tmp-1-2-3")),
            b"half",
        )
        .unwrap();
        let _lock = layout.open_locked().unwrap();
        assert!(!dir.path().join("current.tmp-99-1-0").exists());
        assert!(!layout
            .version_dir(2)
            .join(format!("{MANIFEST_FILE}.tmp-1-2-3"))
            .exists());
        assert_eq!(layout.current_version().unwrap(), Some(1));
    }

    #[test]
    fn second_locker_of_a_data_dir_is_told_it_is_busy() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        let _lock = layout.open_locked().unwrap();
        assert!(matches!(layout.open_locked(), Err(StoreError::Busy { .. })));
    }

    #[test]
    fn prune_keeps_current_and_previous_media_only() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        let _lock = layout.open_locked().unwrap();
        for (n, bytes) in [(1u64, &b"a"[..]), (2, b"b"), (3, b"c")] {
            put_media(&layout, bytes);
            layout.install(&signed(n, &[bytes])).unwrap();
        }
        fs::write(layout.partial_path(&MediaId::of(b"stale")), b"x").unwrap();
        fs::write(layout.partial_path(&MediaId::of(b"wanted")), b"x").unwrap();
        let m2 = layout.load_manifest(2).unwrap();
        let m3 = layout.load_manifest(3).unwrap();
        let wanted = BTreeSet::from([MediaId::of(b"wanted")]);
        let pruned = layout.prune(&[(3, &m3), (2, &m2)], &wanted).unwrap();
        assert_eq!(
            pruned,
            Pruned {
                media: 1,
                versions: 1,
                partials: 1
            }
        );
        assert!(!layout.media_path(&MediaId::of(b"a")).exists());
        assert!(layout.media_path(&MediaId::of(b"b")).exists());
        assert!(!layout.version_dir(1).exists());
        assert!(layout.partial_path(&MediaId::of(b"wanted")).exists());
    }

    fn mode(path: &Path) -> u32 {
        fs::symlink_metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn data_directories_are_0700_and_state_and_written_files_0600() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("data");
        // An older install left a world-readable directory: it is tightened.
        fs::create_dir_all(root.join("media")).unwrap();
        fs::set_permissions(root.join("media"), fs::Permissions::from_mode(0o755)).unwrap();
        let layout = Layout::new(&root);
        let _lock = layout.open_locked().unwrap();
        put_media(&layout, b"one");
        layout.install(&signed(1, &[b"one"])).unwrap();
        for d in [
            root.clone(),
            layout.media_dir(),
            layout.partial_dir(),
            layout.versions_dir(),
            layout.version_dir(1),
        ] {
            assert_eq!(mode(&d), 0o700, "{}", d.display());
        }
        for f in [
            layout.state_db(),
            root.join(LOCK),
            layout.version_dir(1).join(MANIFEST_FILE),
            layout.version_dir(1).join(SIGNATURE_FILE),
        ] {
            assert_eq!(mode(&f), 0o600, "{}", f.display());
        }
    }

    #[test]
    fn state_file_that_is_a_symlink_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path().join("data"));
        fs::create_dir_all(layout.root()).unwrap();
        let target = dir.path().join("elsewhere.sqlite");
        fs::write(&target, b"").unwrap();
        std::os::unix::fs::symlink(&target, layout.state_db()).unwrap();
        let err = layout.open_locked().unwrap_err();
        assert!(matches!(err, StoreError::NotRegularFile { .. }), "{err}");
        assert!(err.to_string().contains("state.sqlite"), "{err}");
    }

    #[test]
    fn current_that_is_not_a_version_symlink_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        std::os::unix::fs::symlink("/etc", layout.current_link()).unwrap();
        assert!(matches!(
            layout.current_version(),
            Err(StoreError::BadCurrent { .. })
        ));
    }
}
