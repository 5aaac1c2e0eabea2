//! `skycast-puller status`: a JSON picture of the local state, read without taking
//! the data directory's lock or creating anything.

use chrono::{DateTime, Utc};
use serde::Serialize;
use skycast_schema::report::AudioClock;

use crate::config::Config;
use crate::local_store::{Layout, StoreError};
use crate::play_log::PlayRow;
use crate::state::{LastSync, State, StateError};

#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    State(#[from] StateError),
}

/// What `status` prints. Field names are part of the CLI contract.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Status {
    pub player_id: String,
    pub data_dir: String,
    pub active_version: Option<u64>,
    /// When the active manifest stops being valid (RFC 3339).
    pub active_expires_at: Option<String>,
    pub highest_accepted: u64,
    pub last_error: Option<String>,
    pub last_error_at: Option<DateTime<Utc>>,
    pub last_success_at: Option<DateTime<Utc>>,
    /// True when the active manifest has expired, or the server offered an expired one.
    pub stale: bool,
    pub stale_reason: Option<String>,
    /// Media of the active version, and the sum of their sizes.
    pub media_count: u64,
    pub media_bytes: u64,
    /// Server clock minus local clock at the last answer, in milliseconds.
    pub clock_offset_ms: Option<i64>,
    /// Set when the local clock is off by more than the tolerance (the player then
    /// plays on the server's time), or earlier than the newest accepted publication
    /// (a board that booted in 1970): a clock problem. Expiry is judged on the
    /// corrected clock either way.
    pub clock_warning: Option<String>,
    /// Set when the config file (it holds the token) is readable by group or others.
    pub config_warning: Option<String>,
    /// Base URL of the server that answered the last sync's head; `None` when none
    /// did (then the head came from a mirror, or the sync failed).
    pub server_in_use: Option<String>,
    /// The last successful sync, with `served_by`: which source served the head, the
    /// manifest and how many media bytes, and which sources were refused.
    pub last_sync: Option<LastSync>,
    /// What the player is playing now (from the play log).
    pub now_playing: Option<PlayRow>,
    /// On a sound device: how the schedule follows the wall clock (offset in ms,
    /// the device's rate in ppm, whether the player had to pace it).
    pub audio_clock: Option<AudioClock>,
    /// Supervision entries (plays, events) waiting for the server's acknowledgement.
    pub outbox_waiting: u64,
    /// When the last report went through (RFC 3339), and why the last one failed
    /// when it did.
    pub last_report_at: Option<String>,
    pub last_report_error: Option<String>,
}

/// Local state, read without locking or creating anything.
pub fn status(config: &Config) -> Result<Status, StatusError> {
    status_at(config, Utc::now())
}

/// Local state at `local` (the local clock; expiry is judged on it corrected, see
/// [`crate::clock::judge_clock`]).
pub fn status_at(config: &Config, local: DateTime<Utc>) -> Result<Status, StatusError> {
    let layout = Layout::new(&config.data);
    let snap = State::read_only_snapshot(&layout.state_db())?;
    // Like the play log, the outbox is reported but never fails `status`.
    let outbox = crate::outbox::summary(&layout.state_db()).unwrap_or_default();
    let active = layout.current_version()?;
    let manifest = match active {
        Some(v) => Some(layout.load_manifest(v)?),
        None => None,
    };
    let newest_published = snap
        .newest_published_at
        .max(manifest.as_ref().map(|m| m.published_at.0));
    let clock = crate::clock::judge_clock(local, snap.clock_offset_ms, newest_published);
    let now = clock.now;
    let active_expired = manifest.as_ref().filter(|m| m.expires_at.0 <= now).map(|m| {
        format!(
            "active version {} expired at {}: the publisher must publish again",
            m.version(),
            m.expires_at
        )
    });
    let stale_reason = active_expired.or(snap.stale_reason);
    Ok(Status {
        player_id: config.player_id.clone(),
        data_dir: config.data.display().to_string(),
        active_version: active,
        active_expires_at: manifest.as_ref().map(|m| m.expires_at.to_string()),
        highest_accepted: snap.highest_accepted.max(active.unwrap_or(0)),
        last_error: snap.last_error,
        last_error_at: snap.last_error_at,
        last_success_at: snap.last_success_at,
        stale: stale_reason.is_some(),
        stale_reason,
        media_count: manifest.as_ref().map_or(0, |m| m.media.len() as u64),
        media_bytes: manifest.as_ref().map_or(0, |m| m.total_media_bytes()),
        clock_offset_ms: snap.clock_offset_ms,
        clock_warning: clock.problem,
        config_warning: config.config_warning.clone(),
        server_in_use: snap.server_in_use,
        last_sync: snap.last_sync,
        // The play log is the player's; status reports it but never fails on it.
        now_playing: crate::play_log::now_playing(&layout.state_db()).unwrap_or_default(),
        audio_clock: crate::play_log::audio_clock(&layout.state_db()).unwrap_or_default(),
        outbox_waiting: outbox.waiting,
        last_report_at: outbox.last_report_at,
        last_report_error: outbox.last_report_error,
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::Overrides;
    use crate::test_support::key;

    #[test]
    fn status_json_has_the_documented_fields() {
        let dir = tempfile::tempdir().unwrap();
        let text = format!(
            "player_id = \"p\"\nserver = \"https://h\"\ntoken = \"t\"\ndata = \"d\"\ntrusted_keys = [\"{}\"]\n",
            key().public()
        );
        let config =
            Config::from_toml(&text, Path::new("p.toml"), dir.path(), &Overrides::default()).unwrap();
        let json = serde_json::to_value(status(&config).unwrap()).unwrap();
        for field in [
            "active_version",
            "highest_accepted",
            "last_error",
            "last_success_at",
            "stale",
            "stale_reason",
            "media_count",
            "media_bytes",
            "last_sync",
            "server_in_use",
            "clock_offset_ms",
            "clock_warning",
            "config_warning",
            "outbox_waiting",
            "audio_clock",
            "last_report_at",
            "last_report_error",
        ] {
            assert!(json.get(field).is_some(), "missing {field}: {json}");
        }
        assert!(json["active_version"].is_null());
        assert!(
            !dir.path().join("d").exists(),
            "status must not create the data directory"
        );
    }
}
