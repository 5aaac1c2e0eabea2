//! Supervision (DESIGN §7, issue 11): what the players report, what the server
//! derives from it (UP/KO, in sync, playing, alerts), the commands waiting for
//! them, and proof of play. Shared by the protocol (reports in), the web UI and
//! the CLI (views out) through one [`Fleet`].
//!
//! SKELETON: the types below are the contract between the rooms; the
//! functions are filled in by the supervision work.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use skycast_schema::report::{CommandKind, Fetching, NowPlaying, OutputState};

use skycast_schema::Head;
use tokio::sync::watch;

use crate::data_dir::DataDir;
use crate::db::Db;
use crate::error::Result;

/// Default of `serve --offline-after`: a player silent this long is KO.
pub const DEFAULT_OFFLINE_AFTER: Duration = Duration::from_secs(30);

/// What a player is doing, as the dashboard says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Activity {
    Playing,
    /// Open, but no sound goes out.
    NotPlaying,
    /// The shop is closed (from its hours in the head manifest).
    Closed,
    /// Never reported, or KO.
    Unknown,
}

/// The kinds of alert, each opened once and resolved once per incident.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    Unreachable,
    OutOfSync,
    StaleVersion,
    SilentWhileOpen,
    MissedAd,
    IntegrityFailure,
    ClockSkew,
    DiskLow,
}

/// One alert, open or resolved, with its words in both languages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AlertView {
    pub id: i64,
    pub kind: AlertKind,
    pub player_id: String,
    pub shop: String,
    /// RFC 3339 UTC.
    pub opened_at: String,
    pub resolved_at: Option<String>,
    pub acknowledged_by: Option<String>,
    pub text_en: String,
    pub text_fr: String,
}

/// One row of the dashboard.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlayerView {
    pub id: String,
    pub shop: String,
    pub disabled: bool,
    /// UP: a report within `offline_after`.
    pub up: bool,
    pub last_report_at: Option<String>,
    pub last_report_age_secs: Option<u64>,
    pub active_version: Option<u64>,
    pub in_sync: bool,
    /// Versions behind head (0 when in sync).
    pub behind_by: u64,
    /// Since when it has been behind, RFC 3339.
    pub behind_since: Option<String>,
    pub activity: Activity,
    pub now_playing: Option<NowPlaying>,
    pub output: OutputState,
    pub fetching: Option<Fetching>,
    pub last_error: Option<String>,
    pub clock_offset_ms: Option<i64>,
    pub free_disk_bytes: Option<u64>,
    pub agent_version: Option<String>,
    pub open_alerts: Vec<AlertView>,
}

/// The whole dashboard, as `GET /api/fleet` and `fleet --json` print it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FleetView {
    pub generated_at: String,
    pub head_version: u64,
    pub offline_after_secs: u64,
    pub players: Vec<PlayerView>,
}

/// A command as the dashboard shows it: requested → done (or expired).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CommandView {
    pub id: String,
    pub player_id: String,
    pub kind: CommandKind,
    pub requested_by: String,
    pub requested_at: String,
    pub expires_at: String,
    /// `pending`, `sent`, `done` or `expired`.
    pub state: String,
    pub done_at: Option<String>,
}

/// The server's side of supervision, one per `serve`, shared by the protocol and the web UI.
/// It does not import `protocol` (that imports it): it follows the head through
/// the tracker's channel and reads the head manifest from the store.
pub struct Fleet {
    data: DataDir,
    db: Db,
    head: watch::Receiver<Head>,
    pub offline_after: Duration,
}

impl Fleet {
    /// `head` is `HeadTracker::subscribe()`.
    pub fn new(data: DataDir, head: watch::Receiver<Head>, offline_after: Duration) -> Result<Arc<Fleet>> {
        let db = data.db()?;
        Ok(Arc::new(Fleet {
            data,
            db,
            head,
            offline_after,
        }))
    }

    /// The dashboard at `now`.
    pub async fn view(&self, _now: DateTime<Utc>) -> Result<FleetView> {
        todo!("supervision: fleet view")
    }

    /// Queues `kind` for one player, or for every enabled player with `None`;
    /// wakes their long-polls. Returns the command ids.
    pub async fn request_command(
        &self,
        _player: Option<&str>,
        _kind: CommandKind,
        _by: &str,
        _now: DateTime<Utc>,
    ) -> Result<Vec<String>> {
        todo!("supervision: commands")
    }
}
