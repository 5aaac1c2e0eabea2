//! The pull protocol's paths, file names and JSON bodies (DESIGN §5), shared by
//! the publisher's server, the puller's client and the test servers.

use serde::{Deserialize, Serialize};

/// `GET` the newest version; `?after=N&wait=S` long-polls.
pub const HEAD_PATH: &str = "/v1/head";
/// Prefix of a version's files: `/v1/versions/<N>/<file>`.
pub const VERSIONS_PREFIX: &str = "/v1/versions";
/// Prefix of the trust roots: `/v1/roots/<N>/<file>`.
pub const ROOTS_PREFIX: &str = "/v1/roots";
/// A trust root's file, as served under [`ROOTS_PREFIX`].
pub const ROOT_FILE: &str = "root.yaml";
/// The signatures of [`ROOT_FILE`].
pub const ROOT_SIGNATURE_FILE: &str = "root.yaml.sig";
/// Prefix of media downloads: `/v1/media/<blake3>`.
pub const MEDIA_PREFIX: &str = "/v1/media";
/// The publisher's CA certificate (PEM), without a token: a box being enrolled
/// checks its SHA-256 fingerprint before it trusts it.
pub const CA_CERT_PATH: &str = "/v1/ca.pem";
/// `POST {"code": "..."}` without a token: redeems a one-time enrolment code
/// for the new player's puller configuration (TOML).
pub const ENROLL_PATH: &str = "/v1/enroll";
/// Every protocol path starts with this; everything else is the web UI.
pub const PROTOCOL_PREFIX: &str = "/v1/";

/// The signed manifest of a version, in the store and on a player's disk.
pub const MANIFEST_FILE: &str = "manifest.yaml";
/// The detached signature of [`MANIFEST_FILE`].
pub const SIGNATURE_FILE: &str = "manifest.yaml.sig";

/// The key under which a mirror (an S3 bucket, a CDN, any static file server)
/// holds the object the origin serves at protocol path `path`: the same path
/// without its leading `/` (`v1/head`, `v1/versions/17/manifest.yaml`,
/// `v1/media/<blake3>`). A player fetches `<mirror base URL>/<key>` with no
/// token and verifies it exactly as it verifies the origin's answer.
pub fn mirror_key(path: &str) -> &str {
    path.strip_prefix('/').unwrap_or(path)
}

/// `/v1/head?after=N&wait=S`.
pub fn head_wait_path(after: u64, wait_secs: u64) -> String {
    format!("{HEAD_PATH}?after={after}&wait={wait_secs}")
}

/// `/v1/versions/<version>/<file>`.
pub fn version_file_path(version: u64, file: &str) -> String {
    format!("{VERSIONS_PREFIX}/{version}/{file}")
}

/// `/v1/roots/<version>/<file>`.
pub fn root_file_path(version: u64, file: &str) -> String {
    format!("{ROOTS_PREFIX}/{version}/{file}")
}

/// `/v1/media/<id>`.
pub fn media_path(id: &impl std::fmt::Display) -> String {
    format!("{MEDIA_PREFIX}/{id}")
}

/// The answer to `GET /v1/head`: the newest version, 0 before the first publish.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Head {
    pub version: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub published_at: Option<String>,
    /// Path of the version's manifest, e.g. `/v1/versions/17/manifest.yaml`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest: Option<String>,
    /// True when commands wait for this player: it reports at once to get them
    /// (a long-poll returns early for this too).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub commands_pending: bool,
    /// The newest trust root this version is governed by: a player holding an
    /// older one fetches the roots after it first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_version: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_the_documented_ones() {
        assert_eq!(head_wait_path(3, 30), "/v1/head?after=3&wait=30");
        assert_eq!(
            version_file_path(17, MANIFEST_FILE),
            "/v1/versions/17/manifest.yaml"
        );
        assert_eq!(
            version_file_path(17, SIGNATURE_FILE),
            "/v1/versions/17/manifest.yaml.sig"
        );
        assert_eq!(media_path(&"ab"), "/v1/media/ab");
        assert_eq!(mirror_key(HEAD_PATH), "v1/head");
        assert_eq!(
            mirror_key(&version_file_path(17, MANIFEST_FILE)),
            "v1/versions/17/manifest.yaml"
        );
        assert!(HEAD_PATH.starts_with(PROTOCOL_PREFIX));
    }
}
