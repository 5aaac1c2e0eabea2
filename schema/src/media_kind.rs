//! What a media file is for (music, ad, announcement, urgent message): a leaf
//! module, so the manifest and the playback section both use it without importing
//! each other.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MediaKind {
    Music,
    Ad,
    Announcement,
    Urgent,
}

impl MediaKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MediaKind::Music => "music",
            MediaKind::Ad => "ad",
            MediaKind::Announcement => "announcement",
            MediaKind::Urgent => "urgent",
        }
    }
}
