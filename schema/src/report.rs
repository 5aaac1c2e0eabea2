//! The supervision exchange (DESIGN §5, §7): what a player reports with
//! `POST /v1/players/<id>/report`, what the publisher answers (the last entry
//! kept, and allow-listed commands), and the bounds both sides enforce.
//!
//! Entries carry the player's own sequence number: the outbox on the player keeps
//! an entry until an answer acknowledges it, and the server keeps each
//! `(player, outbox, seq)` once, so a re-sent batch is neither lost nor counted twice.

use serde::{Deserialize, Serialize};

/// Largest report body the server reads; a bigger one is refused with 413.
pub const MAX_REPORT_BYTES: usize = 256 * 1024;
/// Most entries a player puts in one report; the rest go in the next one.
pub const MAX_ENTRIES_PER_REPORT: usize = 200;
/// Longest text field (title, error) kept from a report; longer ones are cut.
pub const MAX_TEXT_CHARS: usize = 500;

/// `/v1/players/<id>/report`.
pub fn report_path(player_id: &str) -> String {
    format!("/v1/players/{player_id}/report")
}

/// What the sound output is doing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputState {
    /// Sound is going out.
    Playing,
    /// Released on purpose: the shop is closed (power saving).
    IdleClosed,
    /// The sound device could not be opened.
    NoDevice,
    /// The output failed while playing.
    Error,
    /// Nothing to play yet (no version, or no player configured).
    #[default]
    NotStarted,
}

impl OutputState {
    pub fn as_str(self) -> &'static str {
        match self {
            OutputState::Playing => "playing",
            OutputState::IdleClosed => "idle_closed",
            OutputState::NoDevice => "no_device",
            OutputState::Error => "error",
            OutputState::NotStarted => "not_started",
        }
    }
}

/// The version a player is downloading, and how far it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fetching {
    pub version: u64,
    pub bytes_done: u64,
    pub bytes_total: u64,
}

/// How a player's schedule follows the wall clock on an output paced by a sound
/// device (a crystal off by some ppm, or a device that does not pace at all).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AudioClock {
    /// The schedule ahead (+) or behind (−) of the wall clock, in milliseconds.
    pub schedule_offset_ms: i64,
    /// The device's rate off real time, in parts per million (+ = fast); absent
    /// until measured over ten seconds of sound.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_rate_ppm: Option<i64>,
    /// The device took samples faster than real time, so the player paced it.
    #[serde(default)]
    pub throttled: bool,
}

/// What a player is playing now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NowPlaying {
    pub media: String,
    pub title: String,
    /// `music`, `ad`, `closing`, `play_now` or `urgent`.
    pub kind: String,
    /// RFC 3339, the player's corrected clock.
    pub started_at: String,
}

/// One thing that happened on a player, kept in its outbox until acknowledged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The player's sequence number, increasing within one outbox.
    pub seq: u64,
    /// RFC 3339, the player's clock corrected by its measured offset.
    pub at: String,
    #[serde(flatten)]
    pub body: EntryBody,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EntryBody {
    /// A stretch of playback, sent when it starts and again when it ends (same `play_id`).
    Play(PlayEntry),
    /// Something the player did or suffered.
    Event(EventEntry),
}

/// Proof of play: one row of the player's play log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlayEntry {
    /// The play log's row id: the server keeps one row per `(player, play_id)`.
    pub play_id: String,
    pub media: String,
    pub title: String,
    pub kind: String,
    /// The playlist, or the message key.
    pub source: String,
    pub version: u64,
    pub started_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<String>,
    /// `playing`, `complete`, `interrupted`, `resumed` or `skipped`.
    pub outcome: String,
}

/// What kind of thing happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    Started,
    /// Restarted after an unclean end (a crash, kill -9, power cut).
    RestartedAfterCrash,
    Swapped,
    NetworkLost,
    NetworkBack,
    OutputLost,
    OutputBack,
    VerifyFailed,
    MediaDamaged,
    CommandDone,
}

impl EventKind {
    pub const ALL: [EventKind; 10] = [
        EventKind::Started,
        EventKind::RestartedAfterCrash,
        EventKind::Swapped,
        EventKind::NetworkLost,
        EventKind::NetworkBack,
        EventKind::OutputLost,
        EventKind::OutputBack,
        EventKind::VerifyFailed,
        EventKind::MediaDamaged,
        EventKind::CommandDone,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Started => "started",
            EventKind::RestartedAfterCrash => "restarted_after_crash",
            EventKind::Swapped => "swapped",
            EventKind::NetworkLost => "network_lost",
            EventKind::NetworkBack => "network_back",
            EventKind::OutputLost => "output_lost",
            EventKind::OutputBack => "output_back",
            EventKind::VerifyFailed => "verify_failed",
            EventKind::MediaDamaged => "media_damaged",
            EventKind::CommandDone => "command_done",
        }
    }

    pub fn parse(text: &str) -> Option<EventKind> {
        EventKind::ALL.into_iter().find(|k| k.as_str() == text)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventEntry {
    pub kind: EventKind,
    /// In words, for the operator (e.g. "swapped to version 7").
    pub detail: String,
    /// The version swapped to, for `swapped`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    /// The media concerned, for `media_damaged`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media: Option<String>,
    /// The command done, for `command_done`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_id: Option<String>,
}

/// The body of `POST /v1/players/<id>/report`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// Random id of the player's outbox, made with it: a player whose data was
    /// wiped starts a new outbox at seq 1 and the server does not take it for a replay.
    pub outbox: String,
    pub active_version: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fetching: Option<Fetching>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub now_playing: Option<NowPlaying>,
    #[serde(default)]
    pub output: OutputState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Server clock minus local clock, from the last answer's `Date`, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock_offset_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub free_disk_bytes: Option<u64>,
    /// Present when the output is a sound device (see [`AudioClock`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audio_clock: Option<AudioClock>,
    pub agent_version: String,
    pub uptime_secs: u64,
    /// Outbox entries not yet acknowledged, oldest first, at most [`MAX_ENTRIES_PER_REPORT`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub entries: Vec<Entry>,
}

/// The allow-list: a player does nothing else on a server's word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CommandKind {
    /// Check head and sync at once.
    SyncNow,
    /// Rehash every local media file and report the damaged ones.
    VerifyMedia,
    /// Restart the playback thread (the output reopens).
    RestartPlayback,
    /// Report at once.
    SendStatus,
}

impl CommandKind {
    pub const ALL: [CommandKind; 4] = [
        CommandKind::SyncNow,
        CommandKind::VerifyMedia,
        CommandKind::RestartPlayback,
        CommandKind::SendStatus,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CommandKind::SyncNow => "sync_now",
            CommandKind::VerifyMedia => "verify_media",
            CommandKind::RestartPlayback => "restart_playback",
            CommandKind::SendStatus => "send_status",
        }
    }

    /// `None` for anything outside the allow-list.
    pub fn parse(text: &str) -> Option<CommandKind> {
        CommandKind::ALL.into_iter().find(|k| k.as_str() == text)
    }
}

/// A command waiting for a player.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Command {
    /// Unique; the player echoes it back in a `command_done` event and never runs it twice.
    pub id: String,
    pub kind: CommandKind,
    pub requested_by: String,
    /// RFC 3339; a player that gets it later ignores it.
    pub expires_at: String,
}

/// The answer to a report.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportAnswer {
    /// The highest `seq` the server has kept for this outbox: the player may drop
    /// every entry up to it.
    pub acked: u64,
    #[serde(default)]
    pub commands: Vec<Command>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_path_is_the_documented_one() {
        assert_eq!(report_path("shop-main-1"), "/v1/players/shop-main-1/report");
    }

    #[test]
    fn a_command_outside_the_allow_list_does_not_parse() {
        assert_eq!(CommandKind::parse("sync_now"), Some(CommandKind::SyncNow));
        assert_eq!(CommandKind::parse("rm -rf /"), None);
        let json = r#"{"id":"c1","kind":"shell","requested_by":"x","expires_at":"2026-01-01T00:00:00Z"}"#;
        assert!(serde_json::from_str::<Command>(json).is_err());
    }

    #[test]
    fn entries_read_back_as_written() {
        let entry = Entry {
            seq: 7,
            at: "2026-12-01T10:00:00Z".into(),
            body: EntryBody::Event(EventEntry {
                kind: EventKind::Swapped,
                detail: "swapped to version 3".into(),
                version: Some(3),
                media: None,
                command_id: None,
            }),
        };
        let json = serde_json::to_string(&entry).unwrap();
        assert!(json.contains(r#""type":"event""#), "{json}");
        assert_eq!(serde_json::from_str::<Entry>(&json).unwrap(), entry);
        for kind in EventKind::ALL {
            assert_eq!(EventKind::parse(kind.as_str()), Some(kind));
        }
    }
}
