//! Bodies of the pull protocol (DESIGN §5) that publisher and puller share.

use serde::{Deserialize, Serialize};

/// The answer to `GET /v1/head`: the newest version, 0 before the first publish.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Head {
    pub version: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub published_at: Option<String>,
    /// Path of the version's manifest, e.g. `/v1/versions/17/manifest.yaml`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest: Option<String>,
}
