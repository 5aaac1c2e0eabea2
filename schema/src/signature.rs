//! Detached ed25519 signatures over the exact bytes of a manifest, the key formats
//! players pin at enrolment, and `Verified<T>`, which only `verify` can build.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Deref;
use std::str::FromStr;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use chrono::{DateTime, Utc};
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::manifest::{Limits, Manifest, ManifestError};
use crate::time_spec::Instant;

const PUBLIC_PREFIX: &str = "ed25519:";
const SECRET_PREFIX: &str = "skycast-ed25519-secret:";

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("public key `{0}` is malformed: expected `ed25519:` followed by 32 bytes in base64")]
    MalformedPublic(String),
    #[error(
        "secret key file is malformed: expected `skycast-ed25519-secret:` followed by 32 bytes in base64"
    )]
    MalformedSecret,
}

/// Short, stable name of a public key: the first 8 bytes of its blake3 hash in hex.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeyId([u8; 8]);

impl KeyId {
    fn of(key: &VerifyingKey) -> KeyId {
        let hash = blake3::hash(key.as_bytes());
        let mut id = [0u8; 8];
        id.copy_from_slice(&hash.as_bytes()[..8]);
        KeyId(id)
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl FromStr for KeyId {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut id = [0u8; 8];
        hex::decode_to_slice(s, &mut id).map_err(|_| format!("key id `{s}` is not 16 hex characters"))?;
        Ok(KeyId(id))
    }
}

/// A public key a player trusts, written `ed25519:<base64>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublicKey(VerifyingKey);

impl PublicKey {
    pub fn id(&self) -> KeyId {
        KeyId::of(&self.0)
    }

    /// Whether `signature` is this key's (strict) ed25519 signature over `bytes`.
    pub fn verify_raw(&self, bytes: &[u8], signature: &[u8; 64]) -> bool {
        self.0
            .verify_strict(bytes, &ed25519_dalek::Signature::from_bytes(signature))
            .is_ok()
    }
}

serde_via_text!(PublicKey);

impl FromStr for PublicKey {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let malformed = || KeyError::MalformedPublic(s.chars().take(80).collect());
        let b64 = s.trim().strip_prefix(PUBLIC_PREFIX).ok_or_else(malformed)?;
        let bytes: [u8; 32] = B64
            .decode(b64)
            .ok()
            .and_then(|v| v.try_into().ok())
            .ok_or_else(malformed)?;
        VerifyingKey::from_bytes(&bytes)
            .map(PublicKey)
            .map_err(|_| malformed())
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PUBLIC_PREFIX}{}", B64.encode(self.0.as_bytes()))
    }
}

/// The publisher's signing key. Randomness is I/O, so the caller supplies the seed.
pub struct SecretKey(SigningKey);

impl SecretKey {
    pub fn from_seed(seed: [u8; 32]) -> SecretKey {
        SecretKey(SigningKey::from_bytes(&seed))
    }

    pub fn public(&self) -> PublicKey {
        PublicKey(self.0.verifying_key())
    }

    /// The text of a secret key file. Whoever writes it must make it private (0600).
    pub fn to_file_text(&self) -> String {
        format!("{SECRET_PREFIX}{}\n", B64.encode(self.0.to_bytes()))
    }

    pub fn from_file_text(text: &str) -> Result<SecretKey, KeyError> {
        let b64 = text
            .trim()
            .strip_prefix(SECRET_PREFIX)
            .ok_or(KeyError::MalformedSecret)?;
        let seed: [u8; 32] = B64
            .decode(b64)
            .ok()
            .and_then(|v| v.try_into().ok())
            .ok_or(KeyError::MalformedSecret)?;
        Ok(SecretKey::from_seed(seed))
    }

    /// The raw 64-byte signature over `bytes`.
    pub fn sign_raw(&self, bytes: &[u8]) -> [u8; 64] {
        self.0.sign(bytes).to_bytes()
    }

    /// Signs the exact bytes given and returns the text of the detached signature file.
    pub fn sign(&self, bytes: &[u8]) -> String {
        let file = SignatureFile {
            algorithm: "ed25519".to_string(),
            key_id: self.public().id().to_string(),
            signature: B64.encode(self.0.sign(bytes).to_bytes()),
        };
        let body = serde_norway::to_string(&file).expect("three strings serialise");
        format!("# skycast detached signature over the exact bytes of manifest.yaml\n{body}")
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey(public {})", self.public())
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SignatureFile {
    algorithm: String,
    key_id: String,
    signature: String,
}

/// Until where a retired or revoked signing key still counts: manifests published
/// after `at`, or of a version after `last_version`, are refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyLimit {
    pub at: Instant,
    pub last_version: u64,
    /// Why it was revoked; `None` for a routine rotation.
    pub revoked: Option<String>,
}

/// The keys a player accepts signatures from, each with its limit if it has one.
#[derive(Debug, Clone, Default)]
pub struct TrustedKeys(BTreeMap<KeyId, (VerifyingKey, Option<KeyLimit>)>);

impl TrustedKeys {
    /// Keys pinned without limits (a configuration's `trusted_keys`).
    pub fn new(keys: impl IntoIterator<Item = PublicKey>) -> TrustedKeys {
        TrustedKeys::with_limits(keys.into_iter().map(|k| (k, None)))
    }

    /// Keys with their limits, as a trust root lists them.
    pub fn with_limits(keys: impl IntoIterator<Item = (PublicKey, Option<KeyLimit>)>) -> TrustedKeys {
        TrustedKeys(
            keys.into_iter()
                .map(|(k, limit)| (k.id(), (k.0, limit)))
                .collect(),
        )
    }

    /// The ids of the keys, in order.
    pub fn ids(&self) -> Vec<KeyId> {
        self.0.keys().copied().collect()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("signature file is malformed ({0}): re-fetch it or re-sign the version")]
    MalformedSignature(String),
    #[error("manifest is signed by key {key_id}, which this player does not trust: enrol the key or check who signed it")]
    UntrustedKey { key_id: String },
    #[error("manifest signature does not match its bytes under key {key_id}: the manifest or signature was altered, possible attack")]
    BadSignature { key_id: String },
    #[error("manifest is signed but invalid: {0}")]
    Manifest(#[from] ManifestError),
    #[error(
        "version {version} is signed by key {key_id}, retired at {at} after version {last_version}: \
         refusing what it signed later; the publisher signs with the key in service (`skycast-publisher resign`)"
    )]
    RetiredKey {
        key_id: String,
        version: u64,
        at: String,
        last_version: u64,
    },
    #[error(
        "version {version} is signed by key {key_id}, revoked at {at} ({reason}): refusing what it \
         signed after that, possible attack"
    )]
    RevokedKey {
        key_id: String,
        version: u64,
        at: String,
        reason: String,
    },
}

/// A value whose bytes were checked against a trusted signature. Fields are private
/// and `verify` is the only constructor, so holding one is proof of the check.
#[derive(Debug, Clone)]
pub struct Verified<T> {
    value: T,
    bytes: Vec<u8>,
    signature: Vec<u8>,
    key_id: KeyId,
}

impl<T> Verified<T> {
    /// The exact bytes that were verified: write these, never a re-serialisation.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub fn signature_bytes(&self) -> &[u8] {
        &self.signature
    }

    pub fn key_id(&self) -> KeyId {
        self.key_id
    }
}

impl<T> Deref for Verified<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

/// Checks the detached signature over `manifest_bytes`, then parses them strictly.
/// Nothing is parsed before the signature holds, so unsigned input meets no parser
/// beyond the small signature file.
pub fn verify(
    manifest_bytes: &[u8],
    signature_bytes: &[u8],
    trusted: &TrustedKeys,
    limits: &Limits,
) -> Result<Verified<Manifest>, VerifyError> {
    let text = std::str::from_utf8(signature_bytes)
        .map_err(|_| VerifyError::MalformedSignature("not UTF-8".into()))?;
    if text.len() > 4096 {
        return Err(VerifyError::MalformedSignature("larger than 4096 bytes".into()));
    }
    let file: SignatureFile =
        serde_norway::from_str(text).map_err(|e| VerifyError::MalformedSignature(e.to_string()))?;
    if file.algorithm != "ed25519" {
        return Err(VerifyError::MalformedSignature(format!(
            "algorithm `{}` is not ed25519",
            file.algorithm
        )));
    }
    let key_id: KeyId = file.key_id.parse().map_err(VerifyError::MalformedSignature)?;
    let (key, limit) = trusted.0.get(&key_id).ok_or_else(|| VerifyError::UntrustedKey {
        key_id: key_id.to_string(),
    })?;
    let sig_bytes: [u8; 64] = B64
        .decode(file.signature.trim())
        .ok()
        .and_then(|v| v.try_into().ok())
        .ok_or_else(|| VerifyError::MalformedSignature("signature is not 64 bytes of base64".into()))?;
    let sig = ed25519_dalek::Signature::from_bytes(&sig_bytes);
    key.verify_strict(manifest_bytes, &sig)
        .map_err(|_| VerifyError::BadSignature {
            key_id: key_id.to_string(),
        })?;
    let value = Manifest::parse_with(manifest_bytes, limits)?;
    if let Some(limit) = limit {
        check_limit(&value, key_id, limit)?;
    }
    Ok(Verified {
        value,
        bytes: manifest_bytes.to_vec(),
        signature: signature_bytes.to_vec(),
        key_id,
    })
}

/// Refuses a manifest signed by a retired or revoked key past its limit.
fn check_limit(manifest: &Manifest, key_id: KeyId, limit: &KeyLimit) -> Result<(), VerifyError> {
    let version = manifest.version();
    if manifest.published_at <= limit.at && version <= limit.last_version {
        return Ok(());
    }
    let (key_id, at) = (key_id.to_string(), limit.at.to_string());
    Err(match &limit.revoked {
        Some(reason) => VerifyError::RevokedKey {
            key_id,
            version,
            at,
            reason: reason.clone(),
        },
        None => VerifyError::RetiredKey {
            key_id,
            version,
            at,
            last_version: limit.last_version,
        },
    })
}

/// Why a verified manifest may still not be installed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("version {offered} is not newer than version {highest} already accepted: refusing a replayed or rolled-back manifest, possible attack")]
    NotNewer { offered: u64, highest: u64 },
    #[error("version {version} expired at {expires_at}: keeping the current version; the publisher must publish again")]
    Expired { version: u64, expires_at: String },
}

/// The install policy: strictly newer than anything accepted before, and not expired
/// at `now`. The clock is a parameter so callers and tests choose it.
pub fn check_installable(
    manifest: &Verified<Manifest>,
    highest_accepted: u64,
    now: DateTime<Utc>,
) -> Result<(), Refusal> {
    let offered = manifest.version();
    if offered <= highest_accepted {
        return Err(Refusal::NotNewer {
            offered,
            highest: highest_accepted,
        });
    }
    if manifest.expires_at.0 <= now {
        return Err(Refusal::Expired {
            version: offered,
            expires_at: manifest.expires_at.to_string(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::tests::sample_yaml;

    fn key(n: u8) -> SecretKey {
        SecretKey::from_seed([n; 32])
    }

    #[test]
    fn signed_manifest_verifies_and_keeps_its_exact_bytes() {
        let bytes = sample_yaml().into_bytes();
        let sig = key(1).sign(&bytes);
        let trusted = TrustedKeys::new([key(1).public()]);
        let v = verify(&bytes, sig.as_bytes(), &trusted, &Limits::default()).unwrap();
        assert_eq!(v.bytes(), &bytes[..]);
        assert_eq!(v.version(), 17);
        assert_eq!(v.key_id(), key(1).public().id());
    }

    #[test]
    fn one_flipped_bit_in_the_manifest_is_refused() {
        let mut bytes = sample_yaml().into_bytes();
        let sig = key(1).sign(&bytes);
        bytes[40] ^= 1;
        let err = verify(
            &bytes,
            sig.as_bytes(),
            &TrustedKeys::new([key(1).public()]),
            &Limits::default(),
        );
        assert!(matches!(err, Err(VerifyError::BadSignature { .. })));
    }

    #[test]
    fn signature_by_an_untrusted_key_is_refused_naming_the_key() {
        let bytes = sample_yaml().into_bytes();
        let sig = key(2).sign(&bytes);
        let err = verify(
            &bytes,
            sig.as_bytes(),
            &TrustedKeys::new([key(1).public()]),
            &Limits::default(),
        )
        .unwrap_err();
        assert!(
            err.to_string().contains(&key(2).public().id().to_string()),
            "{err}"
        );
    }

    #[test]
    fn signature_file_pointing_at_a_trusted_key_but_made_by_another_is_refused() {
        let bytes = sample_yaml().into_bytes();
        let forged = key(2).sign(&bytes).replace(
            &key(2).public().id().to_string(),
            &key(1).public().id().to_string(),
        );
        let err = verify(
            &bytes,
            forged.as_bytes(),
            &TrustedKeys::new([key(1).public()]),
            &Limits::default(),
        );
        assert!(matches!(err, Err(VerifyError::BadSignature { .. })));
    }

    #[test]
    fn garbage_signature_files_are_refused_as_malformed() {
        let bytes = sample_yaml().into_bytes();
        let trusted = TrustedKeys::new([key(1).public()]);
        for sig in [
            "",
            "nonsense",
            "algorithm: rsa\nkey_id: 00\nsignature: x\n",
            "\u{0}\u{1}",
        ] {
            let err = verify(&bytes, sig.as_bytes(), &trusted, &Limits::default());
            assert!(
                matches!(err, Err(VerifyError::MalformedSignature(_))),
                "{sig:?}: {err:?}"
            );
        }
    }

    #[test]
    fn keys_round_trip_through_their_text_forms() {
        let k = key(7);
        let again = SecretKey::from_file_text(&k.to_file_text()).unwrap();
        assert_eq!(again.public(), k.public());
        assert_eq!(k.public().to_string().parse::<PublicKey>().unwrap(), k.public());
        assert!("ed25519:AAAA".parse::<PublicKey>().is_err());
        assert!(
            format!("{k:?}").contains("public"),
            "debug output must not show the secret"
        );
    }

    #[test]
    fn install_policy_refuses_replays_and_expired_versions() {
        let bytes = sample_yaml().into_bytes();
        let v = verify(
            &bytes,
            key(1).sign(&bytes).as_bytes(),
            &TrustedKeys::new([key(1).public()]),
            &Limits::default(),
        )
        .unwrap();
        let before_expiry = "2026-12-01T00:00:00Z".parse::<crate::Instant>().unwrap().0;
        let after_expiry = "2026-12-23T00:00:00Z".parse::<crate::Instant>().unwrap().0;
        let table = [
            (16, before_expiry, Ok(())),
            (
                17,
                before_expiry,
                Err(Refusal::NotNewer {
                    offered: 17,
                    highest: 17,
                }),
            ),
            (
                20,
                before_expiry,
                Err(Refusal::NotNewer {
                    offered: 17,
                    highest: 20,
                }),
            ),
            (
                16,
                after_expiry,
                Err(Refusal::Expired {
                    version: 17,
                    expires_at: "2026-12-22T09:14:03Z".into(),
                }),
            ),
        ];
        for (highest, now, expected) in table {
            assert_eq!(
                check_installable(&v, highest, now),
                expected,
                "highest {highest} at {now}"
            );
        }
    }
}
