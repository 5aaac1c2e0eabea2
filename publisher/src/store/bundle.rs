//! The whole store as one git bundle file, for auditors to download and clone.

use std::fs::File;

use super::{Result, Store, StoreError};

/// A bundle of every ref and tag, open and already unlinked: it vanishes when
/// the last handle is dropped.
pub struct Bundle {
    pub file: File,
    pub size_bytes: Option<u64>,
}

impl Store {
    /// Writes the store as a git bundle with the system `git` (libgit2 has no
    /// bundle writer) into a temporary file.
    pub fn bundle(&self) -> Result<Bundle> {
        let store_path = self.path();
        let name = format!(
            "skycast-bundle-{}.bundle",
            hex::encode(crate::random_bytes::<16>())
        );
        let tmp = std::env::temp_dir().join(name);
        // Nothing from a request reaches this command: the store path is the
        // data directory's, the output a random name.
        // `safe.directory`: the store may belong to another account than the server's
        // (git refuses such repositories otherwise); it is this server's own store.
        let mut safe = std::ffi::OsString::from("safe.directory=");
        safe.push(store_path);
        let out = std::process::Command::new("git")
            .arg("-c")
            .arg(safe)
            .arg("-C")
            .arg(store_path)
            .args(["bundle", "create"])
            .arg(&tmp)
            .arg("--all")
            .env("GIT_TERMINAL_PROMPT", "0")
            .output();
        let result = match out {
            Ok(o) if o.status.success() => File::open(&tmp).map_err(StoreError::io("open", &tmp)),
            Ok(o) => Err(StoreError::Command(format!(
                "`git bundle create` failed ({}): {}",
                o.status,
                String::from_utf8_lossy(&o.stderr).trim()
            ))),
            Err(e) => Err(StoreError::Command(format!(
                "cannot run `git` to make the bundle (install git: scripts/install-deps.sh): {e}"
            ))),
        };
        // Unlinking an open file keeps it readable through the handle on Unix.
        let _ = std::fs::remove_file(&tmp);
        let file = result?;
        let size_bytes = file.metadata().map(|m| m.len()).ok();
        Ok(Bundle { file, size_bytes })
    }
}
