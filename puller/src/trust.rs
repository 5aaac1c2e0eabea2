//! The trust root a player follows: the one it was enrolled with (its config),
//! then each next root a server offers, verified by `VerifiedRoot::next` and
//! kept in `roots/` so a restart follows the same chain again. The keys a
//! manifest may be signed with come from the newest root.

use std::fs;
use std::path::{Path, PathBuf};

use skycast_schema::{TrustedKeys, VerifiedRoot};

use crate::config::Config;
use crate::local_store::{fsync_dir, write_atomic, Layout, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    #[error("kept trust root {path} is refused: {reason}; remove it and sync again")]
    Kept { path: PathBuf, reason: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn roots_dir(layout: &Layout) -> PathBuf {
    layout.root().join("roots")
}

fn files(dir: &Path, version: u64) -> (PathBuf, PathBuf) {
    (
        dir.join(format!("{version}.yaml")),
        dir.join(format!("{version}.sig")),
    )
}

/// The newest root this player trusts: its enrolment root, followed through
/// the roots it kept; `None` when it pins keys instead.
pub fn current(config: &Config, layout: &Layout) -> Result<Option<VerifiedRoot>, TrustError> {
    let Some(mut root) = config.enrolled_root.clone() else {
        return Ok(None);
    };
    let dir = roots_dir(layout);
    loop {
        let (yaml_path, sig_path) = files(&dir, root.version() + 1);
        let Ok(yaml) = fs::read(&yaml_path) else {
            return Ok(Some(root));
        };
        let sig = fs::read(&sig_path).map_err(|source| TrustError::Io {
            action: "read",
            path: sig_path.clone(),
            source,
        })?;
        root = root.next(&yaml, &sig).map_err(|e| TrustError::Kept {
            path: yaml_path,
            reason: e.to_string(),
        })?;
    }
}

/// The keys a manifest may be signed with: the newest root's, or the pinned ones.
pub fn trusted_keys(config: &Config, layout: &Layout) -> Result<TrustedKeys, TrustError> {
    Ok(match current(config, layout)? {
        Some(root) => root.trusted_keys(),
        None => config.pinned_keys(),
    })
}

/// `config` with the CAs of its newest root added to the ones it pins
/// (`ca_cert`): a CA change the publisher makes through the root (`tls
/// rotate-ca`) reaches the box without touching its config. Read when the
/// clients are built (each `sync`, and when `run` starts).
pub fn with_root_cas(mut config: Config) -> Result<Config, TrustError> {
    let layout = Layout::new(&config.data);
    let Some(root) = current(&config, &layout)? else {
        return Ok(config);
    };
    let mut bundle = config.ca_cert.take().unwrap_or_default();
    for ca in &root.root().tls_ca {
        if !bundle.contains(ca.trim()) {
            if !bundle.is_empty() && !bundle.ends_with('\n') {
                bundle.push('\n');
            }
            bundle.push_str(ca.trim());
            bundle.push('\n');
        }
    }
    config.ca_cert = (!bundle.is_empty()).then_some(bundle);
    Ok(config)
}

/// Keeps `root` (already verified as the next one) in `roots/`: the signature
/// first, then the root, each written in full and renamed into place, so the
/// chain on disk is never half a root.
pub fn keep(layout: &Layout, root: &VerifiedRoot) -> Result<(), TrustError> {
    let dir = roots_dir(layout);
    fs::create_dir_all(&dir).map_err(|source| TrustError::Io {
        action: "create",
        path: dir.clone(),
        source,
    })?;
    let (yaml_path, sig_path) = files(&dir, root.version());
    write_atomic(&sig_path, root.signature_bytes())?;
    write_atomic(&yaml_path, root.bytes())?;
    Ok(fsync_dir(&dir)?)
}
