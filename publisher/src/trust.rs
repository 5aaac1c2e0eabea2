//! The publisher's side of the signed trust root: the chain of roots a primary
//! keeps in `roots/` (and commits into every version's tree), the keys its
//! manifests verify with, and the changes an admin makes with the offline root
//! keys: `key rotate`, `key revoke`, `root rotate`. Each change is a new root
//! signed by a threshold of the old root keys and of the new ones; the caller
//! re-signs the head (`publish::resign`) so players learn it at their next sync.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Timelike, Utc};
use skycast_schema::{
    sign_root, KeyId, PublicKey, Retirement, Root, SecretKey, SigningKeyEntry, TrustedKeys, VerifiedRoot,
};

use crate::data_dir::DataDir;
use crate::error::{PublisherError, Result};
use crate::store::{CommitId, RootFile, Store};

/// What a root chain found in a store must agree with.
#[derive(Debug, Clone)]
pub enum Anchor {
    /// Roots held apart, by version (the primary's own `roots/`, a root an
    /// auditor was given): the store's root of the same version must be
    /// byte-identical. A chain that verifies and meets one held root is the real
    /// one from there on: no one could sign a different one without the root keys.
    Roots(BTreeMap<u64, Vec<u8>>),
    /// A pinned signing key (a follower, `verify --key` on a clone): root 1 must
    /// list it. Weaker than a root: whoever controls the copy could make a root 1
    /// listing the public key; players never rely on this.
    Key(PublicKey),
}

impl Anchor {
    pub fn of_roots(roots: &[RootFile]) -> Anchor {
        Anchor::Roots(roots.iter().map(|r| (r.version, r.yaml.clone())).collect())
    }
}

fn trust_error(reason: impl Into<String>) -> PublisherError {
    PublisherError::BadRequest(reason.into())
}

/// The roots in `roots/`, 1, 2, … up to the first missing one.
pub fn local_roots(data: &DataDir) -> Result<Vec<RootFile>> {
    let dir = data.roots_dir();
    let mut roots = Vec::new();
    for version in 1.. {
        let (yaml_path, sig_path) = (
            dir.join(RootFile::yaml_name(version)),
            dir.join(RootFile::sig_name(version)),
        );
        if !yaml_path.exists() {
            break;
        }
        let yaml = fs::read(&yaml_path).map_err(PublisherError::io("read", &yaml_path))?;
        let sig = fs::read(&sig_path).map_err(PublisherError::io("read", &sig_path))?;
        roots.push(RootFile { version, yaml, sig });
    }
    Ok(roots)
}

/// `roots` verified as a chain: root 1 by its own threshold, each next by both.
pub fn follow_chain(roots: &[RootFile]) -> Result<Option<VerifiedRoot>> {
    let Some(first) = roots.first() else {
        return Ok(None);
    };
    let start = VerifiedRoot::trust_initial(&first.yaml, &first.sig)?;
    let last = start.follow(roots[1..].iter().map(|r| (&r.yaml[..], &r.sig[..])))?;
    Ok(Some(last))
}

/// This primary's newest root, its chain verified; `None` for a directory made
/// before roots (its manifests verify with the pinned key alone).
pub fn local_chain(data: &DataDir) -> Result<Option<VerifiedRoot>> {
    follow_chain(&local_roots(data)?)
}

/// The chain `commit` carries, checked against `anchor`; `None` when the
/// commit has no roots (a store made before them).
pub fn chain_at(store: &Store, commit: CommitId, anchor: &Anchor) -> Result<Option<VerifiedRoot>> {
    let roots = store.roots_at(commit)?;
    let Some(first) = roots.first() else {
        return Ok(None);
    };
    match anchor {
        Anchor::Roots(held) => {
            for r in &roots {
                if held.get(&r.version).is_some_and(|bytes| *bytes != r.yaml) {
                    return Err(trust_error(format!(
                        "commit {commit} carries a root {} that differs from the trusted one: \
                         the root history was rewritten, possible attack",
                        r.version
                    )));
                }
            }
        }
        Anchor::Key(key) => {
            let root = Root::parse(&first.yaml)?;
            let listed = root.signing_keys.iter().any(|e| e.key == *key) || root.root_keys.contains(key);
            if !listed {
                return Err(trust_error(format!(
                    "root 1 of commit {commit} does not list key {}: this store is not the one the key belongs to",
                    key.id()
                )));
            }
        }
    }
    follow_chain(&roots)
}

/// The keys manifests verify with here: the newest root's (the primary's own
/// chain, or on a follower the chain its store carries, anchored on the pinned
/// key), else the pinned key alone.
pub fn trusted_keys(data: &DataDir) -> Result<TrustedKeys> {
    if let Some(root) = local_chain(data)? {
        return Ok(root.trusted_keys());
    }
    // A follower (or a directory made before roots): the chain its store carries.
    let pinned = data.public_key()?;
    let store = data.store()?;
    if let Some(head) = store.head()? {
        if let Some(root) = chain_at(&store, head, &Anchor::Key(pinned))? {
            return Ok(root.trusted_keys());
        }
    }
    Ok(TrustedKeys::new([pinned]))
}

/// How a store's history is trusted: the anchor for the roots its commits
/// carry, and the pinned keys for commits made before roots.
#[derive(Debug, Clone)]
pub struct HistoryTrust {
    pub anchor: Anchor,
    pub pinned: TrustedKeys,
}

impl HistoryTrust {
    /// A data directory's: its own roots when it has them (a primary), else its
    /// pinned key (a follower, or a directory made before roots).
    pub fn of_data_dir(data: &DataDir) -> Result<HistoryTrust> {
        let pinned = data.public_key()?;
        let roots = local_roots(data)?;
        let anchor = if roots.is_empty() {
            Anchor::Key(pinned)
        } else {
            Anchor::of_roots(&roots)
        };
        Ok(HistoryTrust {
            anchor,
            pinned: TrustedKeys::new([pinned]),
        })
    }

    /// The keys the manifest of `commit` verifies with: those of the newest
    /// root it carries (the root in force when it was published).
    pub fn keys_at(&self, store: &Store, commit: CommitId) -> Result<TrustedKeys> {
        Ok(match chain_at(store, commit, &self.anchor)? {
            Some(root) => root.trusted_keys(),
            None => self.pinned.clone(),
        })
    }
}

/// Checks, before a version is signed, that `signing` is the key the newest root
/// has in service (a rotation half done is finished by running it again).
pub fn check_signing_key(data: &DataDir, signing: &PublicKey) -> Result<Vec<RootFile>> {
    let roots = local_roots(data)?;
    if let Some(root) = follow_chain(&roots)? {
        if root.root().online_key() != Some(signing) {
            return Err(trust_error(format!(
                "the signing key {} is not the one root {} has in service: a key rotation was cut short; \
                 run `skycast-publisher key rotate` again",
                signing.id(),
                root.version()
            )));
        }
    }
    Ok(roots)
}

fn whole_second(t: DateTime<Utc>) -> DateTime<Utc> {
    t.with_nanosecond(0).unwrap_or(t)
}

use crate::data_dir::{write_atomically, write_root_files};

/// Reads secret key files (root keys the admin brings from offline storage).
pub fn read_secret_keys(paths: &[PathBuf]) -> Result<Vec<SecretKey>> {
    paths
        .iter()
        .map(|p| {
            let text = fs::read_to_string(p).map_err(PublisherError::io("read the key file", p))?;
            Ok(SecretKey::from_file_text(&text)?)
        })
        .collect()
}

/// Writes a new secret key file (0600, never over an existing file) and returns the key.
pub fn generate_key_file(path: &Path) -> Result<SecretKey> {
    let key = SecretKey::from_seed(crate::random_bytes::<32>());
    crate::data_dir::write_private(path, key.to_file_text().as_bytes())?;
    Ok(key)
}

/// Makes root N+1 from the newest root with `edit`, signed by `signers`; it must
/// meet the old root's threshold and its own (checked here as players will).
/// Writes it; the next version commits it (the caller re-signs the head with
/// `publish::resign` so players learn it at once).
fn change_root(
    data: &DataDir,
    signers: &[&SecretKey],
    new_online: Option<SecretKey>,
    now: DateTime<Utc>,
    edit: impl FnOnce(&mut Root, &Store) -> Result<()>,
) -> Result<VerifiedRoot> {
    data.refuse_if_follower()?;
    let current = local_chain(data)?.ok_or_else(|| {
        trust_error("this data directory has no trust root (it was made before roots): nothing to rotate")
    })?;
    let store = data.store()?;
    // Held while the head is read and the key swapped: no version is signed
    // with the old key after the limit this root sets.
    let _lock = data.lock_store()?;
    let mut next = current.root().clone();
    next.version += 1;
    next.published_at = whole_second(now).into();
    edit(&mut next, &store)?;
    let bytes = next.to_yaml().into_bytes();
    let sig = sign_root(&bytes, signers).into_bytes();
    // Checked as players will, before anything changes on disk.
    let verified = current.next(&bytes, &sig)?;
    if let Some(key) = &new_online {
        swap_signing_key(data, key)?;
    }
    write_root_files(data, &verified)?;
    Ok(verified)
}

/// Puts `key` in place as the online signing key (and its public half).
fn swap_signing_key(data: &DataDir, key: &SecretKey) -> Result<()> {
    write_atomically(&data.secret_key_path(), key.to_file_text().as_bytes(), 0o600)?;
    write_atomically(
        &data.public_key_path(),
        format!("{}\n", key.public()).as_bytes(),
        0o644,
    )
}

/// Retires `entry` at `at` after `last_version`, or revokes it when `revoked`
/// gives the reason. A limit only ever narrows: a key already retired keeps
/// the earlier instant and the lower version, so revoking a key rotated out
/// long ago never lets it sign again in between.
fn retire(entry: &mut SigningKeyEntry, at: DateTime<Utc>, last_version: u64, revoked: Option<String>) {
    let (at, last_version) = match &entry.retired {
        Some(r) => (r.at.0.min(at), r.last_version.min(last_version)),
        None => (at, last_version),
    };
    let revoked = revoked.or_else(|| entry.retired.as_ref().and_then(|r| r.revoked.clone()));
    entry.retired = Some(Retirement {
        at: at.into(),
        last_version,
        revoked,
    });
}

fn head_version(store: &Store) -> Result<u64> {
    Ok(store.head_version()?.map_or(0, |(v, _)| v))
}

/// `key rotate`: a new online key; the old one keeps what it signed up to now.
pub fn key_rotate(data: &DataDir, root_keys: &[SecretKey], now: DateTime<Utc>) -> Result<VerifiedRoot> {
    let new_key = SecretKey::from_seed(crate::random_bytes::<32>());
    let new_public = new_key.public();
    let signers: Vec<&SecretKey> = root_keys.iter().collect();
    let now = whole_second(now);
    change_root(data, &signers, Some(new_key), now, |next, store| {
        let last_version = head_version(store)?;
        for entry in next.signing_keys.iter_mut().filter(|e| e.retired.is_none()) {
            retire(entry, now, last_version, None);
        }
        next.signing_keys.push(SigningKeyEntry {
            key: new_public,
            retired: None,
        });
        Ok(())
    })
}

/// `key revoke`: key `key` counts only for versions published up to `after`
/// (the last of them by number too); when it is the online key, a new one
/// replaces it.
pub fn key_revoke(
    data: &DataDir,
    root_keys: &[SecretKey],
    key: KeyId,
    after: DateTime<Utc>,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<VerifiedRoot> {
    let current = local_chain(data)?
        .ok_or_else(|| trust_error("this data directory has no trust root: nothing to revoke"))?;
    let entry = current
        .root()
        .signing_keys
        .iter()
        .find(|e| e.key.id() == key)
        .ok_or_else(|| {
            trust_error(format!(
                "key {key} is not a signing key of root {}: `skycast-publisher root show` lists them",
                current.version()
            ))
        })?;
    let is_online = current.root().online_key() == Some(&entry.key);
    let new_key = is_online.then(|| SecretKey::from_seed(crate::random_bytes::<32>()));
    let new_public = new_key.as_ref().map(SecretKey::public);
    let signers: Vec<&SecretKey> = root_keys.iter().collect();
    let reason = if reason.trim().is_empty() {
        "revoked".to_string()
    } else {
        reason.trim().to_string()
    };
    let after = whole_second(after);
    change_root(data, &signers, new_key, now, |next, store| {
        let last_version = store
            .history()?
            .iter()
            .filter(|v| v.time <= after)
            .map(|v| v.version)
            .max()
            .unwrap_or(0);
        for e in next.signing_keys.iter_mut().filter(|e| e.key.id() == key) {
            retire(e, after, last_version, Some(reason.clone()));
        }
        if let Some(key) = new_public {
            next.signing_keys.push(SigningKeyEntry { key, retired: None });
        }
        Ok(())
    })
}

/// `root rotate`: `new_keys` with `threshold` replace the root keys; signed by
/// the old keys given and by the new ones.
pub fn root_rotate(
    data: &DataDir,
    old_keys: &[SecretKey],
    new_keys: &[SecretKey],
    threshold: usize,
    now: DateTime<Utc>,
) -> Result<VerifiedRoot> {
    let signers: Vec<&SecretKey> = old_keys.iter().chain(new_keys).collect();
    change_root(data, &signers, None, now, |next, _| {
        next.root_keys = new_keys.iter().map(SecretKey::public).collect();
        next.root_threshold = threshold;
        Ok(())
    })
}

/// `tls rotate-ca`: the next root also lists `ca_pem`, so players trust
/// certificates from the new CA before the server uses one. The CAs listed
/// before stay (players keep reaching a server whose certificate is older).
pub fn add_tls_ca(
    data: &DataDir,
    root_keys: &[SecretKey],
    ca_pem: &str,
    now: DateTime<Utc>,
) -> Result<VerifiedRoot> {
    let signers: Vec<&SecretKey> = root_keys.iter().collect();
    change_root(data, &signers, None, now, |next, _| {
        next.tls_ca.push(ca_pem.to_string());
        Ok(())
    })
}

/// `root show`: the newest root's text.
pub fn describe(root: &VerifiedRoot) -> String {
    use std::fmt::Write as _;
    let r = root.root();
    let mut out = format!(
        "root {} (published {}): {} of {} root key(s) sign the next root\n",
        r.version,
        r.published_at,
        r.root_threshold,
        r.root_keys.len()
    );
    for k in &r.root_keys {
        let _ = writeln!(out, "  root key    {} {k}", k.id());
    }
    for e in &r.signing_keys {
        let state = match &e.retired {
            None => "in service".to_string(),
            Some(Retirement {
                at,
                last_version,
                revoked: None,
            }) => format!("retired at {at}, after version {last_version}"),
            Some(Retirement {
                at,
                last_version,
                revoked: Some(why),
            }) => format!("REVOKED at {at} ({why}), after version {last_version}"),
        };
        let _ = writeln!(out, "  signing key {} {state}", e.key.id());
    }
    let _ = writeln!(out, "  {} TLS CA certificate(s)", r.tls_ca.len());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(retired: Option<(&str, u64)>) -> SigningKeyEntry {
        SigningKeyEntry {
            key: SecretKey::from_seed([3; 32]).public(),
            retired: retired.map(|(at, last_version)| Retirement {
                at: at.parse().unwrap(),
                last_version,
                revoked: None,
            }),
        }
    }

    fn at(s: &str) -> DateTime<Utc> {
        s.parse::<skycast_schema::Instant>().unwrap().0
    }

    #[test]
    fn a_limit_only_narrows_when_a_key_is_retired_or_revoked() {
        // (already retired at, then retired or revoked at, expected instant and last version)
        let cases = [
            (None, ("2026-12-02T10:00:00Z", 9), ("2026-12-02T10:00:00Z", 9)),
            (
                Some(("2026-12-01T10:00:00Z", 5)),
                ("2026-12-02T10:00:00Z", 9),
                ("2026-12-01T10:00:00Z", 5),
            ),
            (
                Some(("2026-12-03T10:00:00Z", 12)),
                ("2026-12-02T10:00:00Z", 9),
                ("2026-12-02T10:00:00Z", 9),
            ),
        ];
        for (before, (when, last), (want_at, want_last)) in cases {
            for revoked in [None, Some("stolen".to_string())] {
                let mut e = entry(before);
                retire(&mut e, at(when), last, revoked.clone());
                let r = e.retired.unwrap();
                assert_eq!(
                    (r.at.0, r.last_version),
                    (at(want_at), want_last),
                    "{before:?} then {when}"
                );
                assert_eq!(r.revoked, revoked);
            }
        }
    }
}
