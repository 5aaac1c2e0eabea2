//! The signed trust root: which keys may sign manifests (and until which version
//! a retired or revoked one still counts), which root keys and how many of them
//! may change that list, and which CA serves the pull protocol. Roots form a
//! chain: root N+1 counts only when a threshold of root N's keys and a threshold
//! of its own keys signed its exact bytes, and only [`VerifiedRoot::next`] (or
//! [`VerifiedRoot::trust_initial`], for the root a player was enrolled with) can
//! build a [`VerifiedRoot`].

use std::collections::BTreeSet;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::signature::{KeyId, KeyLimit, PublicKey, SecretKey, TrustedKeys};
use crate::strict_yaml::check_no_duplicate_keys;
use crate::time_spec::Instant;

/// The `skycast_root` schema this code reads and writes.
pub const ROOT_SCHEMA_V1: u32 = 1;
/// A root or its signature file larger than this is refused before parsing.
pub const MAX_ROOT_BYTES: usize = 256 * 1024;

/// A trust root, as `root/<N>.yaml` holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Root {
    pub skycast_root: u32,
    pub version: u64,
    pub published_at: Instant,
    /// How many of `root_keys` must sign the next root (and this one).
    pub root_threshold: usize,
    pub root_keys: Vec<PublicKey>,
    /// The keys manifests may be signed with; retired and revoked ones stay
    /// listed with their limit, so versions they signed before still verify.
    pub signing_keys: Vec<SigningKeyEntry>,
    /// PEM certificates of the CAs the pull protocol's TLS certificate may chain to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tls_ca: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SigningKeyEntry {
    pub key: PublicKey,
    /// Set when the key was rotated out or revoked: what it signed after stops counting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retired: Option<Retirement>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Retirement {
    /// Manifests published after this instant are refused.
    pub at: Instant,
    /// Manifests of a later version are refused, even when back-dated.
    pub last_version: u64,
    /// Why the key was revoked (a stolen key), absent for a routine rotation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RootError {
    #[error("root is larger than {MAX_ROOT_BYTES} bytes: refused before parsing")]
    TooLarge,
    #[error("root is not valid: {0}")]
    Malformed(String),
    #[error("root signature file is malformed ({0}): fetch it again or sign the root again")]
    MalformedSignatures(String),
    #[error(
        "root {version} carries {valid} valid signature(s) of the {threshold} that {whose} root keys \
         require (signed by: {signed_by}): refusing it, possible attack; sign it with more root keys"
    )]
    BelowThreshold {
        version: u64,
        whose: &'static str,
        valid: usize,
        threshold: usize,
        signed_by: String,
    },
    #[error(
        "root {offered} does not follow root {trusted}: only root {expected} may come next \
         (a gap or a rollback of the trust root, possible attack)"
    )]
    NotNext {
        trusted: u64,
        offered: u64,
        expected: u64,
    },
}

fn malformed(reason: impl Into<String>) -> RootError {
    RootError::Malformed(reason.into())
}

impl Root {
    /// Parses `root.yaml` strictly and checks it is coherent (not who signed it).
    pub fn parse(bytes: &[u8]) -> Result<Root, RootError> {
        if bytes.len() > MAX_ROOT_BYTES {
            return Err(RootError::TooLarge);
        }
        let text = std::str::from_utf8(bytes).map_err(|_| malformed("not UTF-8"))?;
        check_no_duplicate_keys(text).map_err(|e| malformed(e.to_string()))?;
        let root: Root = serde_norway::from_str(text).map_err(|e| malformed(e.to_string()))?;
        root.validate()?;
        Ok(root)
    }

    fn validate(&self) -> Result<(), RootError> {
        if self.skycast_root != ROOT_SCHEMA_V1 {
            return Err(malformed(format!(
                "skycast_root {} is not supported (this player reads {ROOT_SCHEMA_V1}): update the player",
                self.skycast_root
            )));
        }
        if self.version == 0 {
            return Err(malformed("version must be 1 or more"));
        }
        if self.root_threshold == 0 || self.root_threshold > self.root_keys.len() {
            return Err(malformed(format!(
                "root_threshold {} must be between 1 and the {} root key(s)",
                self.root_threshold,
                self.root_keys.len()
            )));
        }
        let distinct: BTreeSet<KeyId> = self.root_keys.iter().map(PublicKey::id).collect();
        if distinct.len() != self.root_keys.len() {
            return Err(malformed("a root key is listed twice"));
        }
        let signing: BTreeSet<KeyId> = self.signing_keys.iter().map(|e| e.key.id()).collect();
        if signing.len() != self.signing_keys.len() {
            return Err(malformed("a signing key is listed twice"));
        }
        if !self.signing_keys.iter().any(|e| e.retired.is_none()) {
            return Err(malformed("no signing key is in service: list the online key"));
        }
        if self.root_keys.iter().any(|k| signing.contains(&k.id())) {
            return Err(malformed(
                "a root key is also a signing key: the root key stays offline, the signing key online",
            ));
        }
        Ok(())
    }

    pub fn to_yaml(&self) -> String {
        // Cannot fail: strings, numbers and lists of them.
        let body = serde_norway::to_string(self).expect("root serialises");
        format!(
            "# Skycast trust root {}: who may sign manifests and the next root\n{body}",
            self.version
        )
    }

    /// The signing key in service (the newest one not retired).
    pub fn online_key(&self) -> Option<&PublicKey> {
        self.signing_keys
            .iter()
            .rev()
            .find(|e| e.retired.is_none())
            .map(|e| &e.key)
    }

    /// The keys a manifest may be signed with under this root, with their limits.
    pub fn trusted_keys(&self) -> TrustedKeys {
        TrustedKeys::with_limits(self.signing_keys.iter().map(|e| {
            let limit = e.retired.as_ref().map(|r| KeyLimit {
                at: r.at,
                last_version: r.last_version,
                revoked: r.revoked.clone(),
            });
            (e.key, limit)
        }))
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RootSignatures {
    signatures: Vec<RootSignature>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RootSignature {
    key_id: String,
    signature: String,
}

/// The text of `root/<N>.sig`: one signature per key over the exact root bytes.
pub fn sign_root(bytes: &[u8], keys: &[&SecretKey]) -> String {
    let file = RootSignatures {
        signatures: keys
            .iter()
            .map(|k| RootSignature {
                key_id: k.public().id().to_string(),
                signature: B64.encode(k.sign_raw(bytes)),
            })
            .collect(),
    };
    let body = serde_norway::to_string(&file).expect("strings serialise");
    format!("# skycast root signatures over the exact bytes of the root file\n{body}")
}

/// The keys among `keys` whose valid signature over `bytes` is in `signatures`.
fn valid_signers(bytes: &[u8], signatures: &[u8], keys: &[PublicKey]) -> Result<BTreeSet<KeyId>, RootError> {
    if signatures.len() > MAX_ROOT_BYTES {
        return Err(RootError::MalformedSignatures("too large".into()));
    }
    let text =
        std::str::from_utf8(signatures).map_err(|_| RootError::MalformedSignatures("not UTF-8".into()))?;
    let file: RootSignatures =
        serde_norway::from_str(text).map_err(|e| RootError::MalformedSignatures(e.to_string()))?;
    let mut signers = BTreeSet::new();
    for sig in &file.signatures {
        let Ok(id) = sig.key_id.parse::<KeyId>() else {
            continue;
        };
        let Some(key) = keys.iter().find(|k| k.id() == id) else {
            continue;
        };
        let raw: Option<[u8; 64]> = B64
            .decode(sig.signature.trim())
            .ok()
            .and_then(|v| v.try_into().ok());
        if raw.is_some_and(|raw| key.verify_raw(bytes, &raw)) {
            signers.insert(id);
        }
    }
    Ok(signers)
}

fn check_threshold(
    root: &Root,
    bytes: &[u8],
    signatures: &[u8],
    keys: &[PublicKey],
    threshold: usize,
    whose: &'static str,
) -> Result<(), RootError> {
    let signers = valid_signers(bytes, signatures, keys)?;
    if signers.len() >= threshold {
        return Ok(());
    }
    let signed_by = if signers.is_empty() {
        "none of them".to_string()
    } else {
        signers
            .iter()
            .map(KeyId::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    Err(RootError::BelowThreshold {
        version: root.version,
        whose,
        valid: signers.len(),
        threshold,
        signed_by,
    })
}

/// A root whose signatures were checked: the first one a player was enrolled
/// with, or one that follows a verified root. Fields are private.
#[derive(Debug, Clone)]
pub struct VerifiedRoot {
    root: Root,
    bytes: Vec<u8>,
    signatures: Vec<u8>,
}

impl VerifiedRoot {
    /// The root a player starts from (its enrolment): signed by a threshold of its
    /// own root keys. Whoever hands it over vouches for it, as for a pinned key.
    pub fn trust_initial(bytes: &[u8], signatures: &[u8]) -> Result<VerifiedRoot, RootError> {
        VerifiedRoot::signed_by_itself(Root::parse(bytes)?, bytes, signatures)
    }

    /// `root` (parsed from `bytes`) once a threshold of its own keys signed it.
    fn signed_by_itself(root: Root, bytes: &[u8], signatures: &[u8]) -> Result<VerifiedRoot, RootError> {
        check_threshold(
            &root,
            bytes,
            signatures,
            &root.root_keys,
            root.root_threshold,
            "its own",
        )?;
        Ok(VerifiedRoot {
            root,
            bytes: bytes.to_vec(),
            signatures: signatures.to_vec(),
        })
    }

    /// The root after this one: exactly the next version, signed by a threshold
    /// of this root's keys and by a threshold of its own.
    pub fn next(&self, bytes: &[u8], signatures: &[u8]) -> Result<VerifiedRoot, RootError> {
        let root = Root::parse(bytes)?;
        let expected = self.root.version + 1;
        if root.version != expected {
            return Err(RootError::NotNext {
                trusted: self.root.version,
                offered: root.version,
                expected,
            });
        }
        check_threshold(
            &root,
            bytes,
            signatures,
            &self.root.root_keys,
            self.root.root_threshold,
            "the previous root's",
        )?;
        VerifiedRoot::signed_by_itself(root, bytes, signatures)
    }

    /// Follows `chain` (roots N+1, N+2, … in order) from this root.
    pub fn follow<'a>(
        &self,
        chain: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
    ) -> Result<VerifiedRoot, RootError> {
        let mut current = self.clone();
        for (bytes, signatures) in chain {
            current = current.next(bytes, signatures)?;
        }
        Ok(current)
    }

    pub fn root(&self) -> &Root {
        &self.root
    }

    pub fn version(&self) -> u64 {
        self.root.version
    }

    /// The exact bytes verified: write these, never a re-serialisation.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub fn signature_bytes(&self) -> &[u8] {
        &self.signatures
    }

    pub fn trusted_keys(&self) -> TrustedKeys {
        self.root.trusted_keys()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> SecretKey {
        SecretKey::from_seed([n; 32])
    }

    fn at(s: &str) -> Instant {
        s.parse().unwrap()
    }

    /// Root `version` with root keys `roots` (threshold `threshold`) and online key `online`.
    fn root(version: u64, roots: &[u8], threshold: usize, online: u8) -> Root {
        Root {
            skycast_root: ROOT_SCHEMA_V1,
            version,
            published_at: at("2026-12-01T10:00:00Z"),
            root_threshold: threshold,
            root_keys: roots.iter().map(|&n| key(n).public()).collect(),
            signing_keys: vec![SigningKeyEntry {
                key: key(online).public(),
                retired: None,
            }],
            tls_ca: vec![],
        }
    }

    fn signed(root: &Root, signers: &[u8]) -> (Vec<u8>, Vec<u8>) {
        let bytes = root.to_yaml().into_bytes();
        let keys: Vec<SecretKey> = signers.iter().map(|&n| key(n)).collect();
        let refs: Vec<&SecretKey> = keys.iter().collect();
        let sig = sign_root(&bytes, &refs).into_bytes();
        (bytes, sig)
    }

    fn first() -> VerifiedRoot {
        let (bytes, sig) = signed(&root(1, &[1, 2, 3], 2, 10), &[1, 2]);
        VerifiedRoot::trust_initial(&bytes, &sig).unwrap()
    }

    #[test]
    fn root_round_trips_through_its_yaml() {
        let r = root(1, &[1, 2, 3], 2, 10);
        assert_eq!(Root::parse(r.to_yaml().as_bytes()).unwrap(), r);
    }

    /// (case, signers, new root keys, new threshold, more signers, accepted)
    type RotationCase<'a> = (&'a str, &'a [u8], &'a [u8], usize, &'a [u8], bool);

    #[test]
    fn rotations_are_accepted_or_refused_by_who_signed_them() {
        let cases: &[RotationCase] = &[
            ("two old keys only", &[1, 2], &[4, 5, 6], 2, &[], false),
            ("two old, two new", &[1, 2, 4, 5], &[4, 5, 6], 2, &[], true),
            ("one old key only", &[1, 4, 5], &[4, 5, 6], 2, &[], false),
            ("only the new keys", &[4, 5, 6], &[4, 5, 6], 2, &[], false),
            ("same keys, threshold of both", &[2, 3], &[1, 2, 3], 2, &[], true),
            (
                "an old key twice counts once",
                &[1, 1, 4, 5],
                &[4, 5, 6],
                2,
                &[],
                false,
            ),
        ];
        for (case, signers, new_keys, threshold, extra, accepted) in cases {
            let mut all: Vec<u8> = signers.to_vec();
            all.extend_from_slice(extra);
            let (bytes, sig) = signed(&root(2, new_keys, *threshold, 11), &all);
            let got = first().next(&bytes, &sig);
            assert_eq!(got.is_ok(), *accepted, "{case}: {got:?}");
        }
    }

    #[test]
    fn a_root_below_the_old_threshold_names_who_signed_it() {
        let (bytes, sig) = signed(&root(2, &[4, 5, 6], 2, 11), &[1, 4, 5]);
        let err = first().next(&bytes, &sig).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("1 valid signature(s) of the 2"), "{text}");
        assert!(text.contains(&key(1).public().id().to_string()), "{text}");
    }

    #[test]
    fn a_skipped_or_repeated_root_version_is_refused() {
        for version in [1, 3] {
            let (bytes, sig) = signed(&root(version, &[1, 2, 3], 2, 11), &[1, 2]);
            let err = first().next(&bytes, &sig).unwrap_err();
            assert!(
                matches!(err, RootError::NotNext { offered, .. } if offered == version),
                "{err}"
            );
        }
    }

    #[test]
    fn a_chain_of_two_rotations_is_followed_in_order() {
        let second = signed(&root(2, &[4, 5, 6], 2, 11), &[1, 2, 4, 5]);
        let third = signed(&root(3, &[7], 1, 12), &[5, 6, 7]);
        let last = first()
            .follow([(&second.0[..], &second.1[..]), (&third.0[..], &third.1[..])])
            .unwrap();
        assert_eq!(last.version(), 3);
        assert_eq!(last.root().online_key(), Some(&key(12).public()));
    }

    #[test]
    fn an_altered_root_loses_its_signatures() {
        let (bytes, sig) = signed(&root(2, &[1, 2, 3], 2, 11), &[1, 2]);
        let altered = String::from_utf8(bytes)
            .unwrap()
            .replace("version: 2", "version: 2\n")
            .into_bytes();
        assert!(first().next(&altered, &sig).is_err());
    }

    #[test]
    fn incoherent_roots_are_refused_with_the_reason() {
        let mut zero = root(1, &[1], 1, 10);
        zero.root_threshold = 0;
        let mut over = root(1, &[1], 1, 10);
        over.root_threshold = 2;
        let mut shared = root(1, &[1], 1, 10);
        shared.signing_keys[0].key = key(1).public();
        let mut none_online = root(1, &[1], 1, 10);
        none_online.signing_keys[0].retired = Some(Retirement {
            at: at("2026-12-01T10:00:00Z"),
            last_version: 3,
            revoked: None,
        });
        for (r, words) in [
            (zero, "root_threshold 0"),
            (over, "root_threshold 2"),
            (shared, "also a signing key"),
            (none_online, "no signing key is in service"),
        ] {
            let err = Root::parse(r.to_yaml().as_bytes()).unwrap_err();
            assert!(err.to_string().contains(words), "{err}");
        }
    }
}
