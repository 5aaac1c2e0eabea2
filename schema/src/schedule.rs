//! The schedule resolver: given a verified manifest, a shop, an instant and what
//! has played so far, decides what plays next. Pure and clock-free: the caller
//! passes the instant, so every rule is table-tested without waiting.
//!
//! All calendar rules are read in the manifest's time zone (DST-correct): a
//! `time` window or opening hours that cross midnight belong to the day they
//! start on; a local time that does not exist (spring forward) means the first
//! instant after the gap; an ambiguous one (fall back) means the first of the two.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::content_id::MediaId;
use crate::manifest::{Manifest, Shop};
use crate::playback::{MessageMode, StartMode};

/// How long after its planned instant a fixed-time ad may still start (for
/// `boundary` mode or a player started late); after that the slot is missed.
pub const FIXED_TIME_GRACE_SECS: i64 = 600;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("shop `{shop}` is not in manifest version {version}: check `shop` in the player config")]
    UnknownShop { shop: String, version: u64 },
    #[error("time zone `{0}` is not an IANA time zone")]
    BadTimeZone(String),
}

/// Priority of what plays, highest last so `Ord` compares them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    Music,
    ScheduledAd,
    /// The closing announcement and sales "play now" interrupts.
    Announcement,
    Urgent,
}

/// Where a message comes from; its `key` makes it play once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "source", rename_all = "snake_case")]
pub enum MessageSource {
    /// `ads[rule]` with `every_tracks`.
    EveryTracks { rule: usize },
    /// `ads[rule]` with `at`, for the slot at `planned`.
    FixedTime { rule: usize, planned: DateTime<Utc> },
    /// The shop's closing announcement before the closing at `closes`.
    Closing { closes: DateTime<Utc> },
    /// `interrupts[]` with this id.
    Interrupt { id: String },
}

/// A message that is due: an ad, an announcement or an urgent message.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// Stable across manifest versions and restarts: `interrupt:ID`,
    /// `ad-at:MEDIA:LOCAL-DATETIME`, `closing:LOCAL-DATE`, `ad-every:MEDIA:N`.
    pub key: String,
    pub media: MediaId,
    pub priority: Priority,
    pub source: MessageSource,
    /// The kind's `playback.messages` mode with the rule's own `start`/`after` applied.
    pub mode: MessageMode,
    /// The instant it became due (the planned instant for fixed-time ads).
    pub due: DateTime<Utc>,
}

impl Message {
    pub fn cuts(&self) -> bool {
        self.mode.start == StartMode::Cut
    }
}

/// The next music track.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MusicPick {
    pub media: MediaId,
    /// Playlist name; [`FALLBACK_ALL_MUSIC`] when no playlist applies and
    /// `playback.fallback_playlist` is unset.
    pub playlist: String,
    /// The schedule rule that chose the playlist; `None` for the fallback.
    pub rule: Option<usize>,
}

/// Playlist name used for "all music of the manifest, in order".
pub const FALLBACK_ALL_MUSIC: &str = "(all music)";

/// What to start at a track boundary.
#[derive(Debug, Clone, PartialEq)]
pub enum Next {
    /// The shop is closed (and no urgent message is due): stay silent until `reopens`
    /// (`None` when it never reopens within a year).
    Closed { reopens: Option<DateTime<Utc>> },
    Message(Message),
    Music(MusicPick),
}

/// An open period of a shop, as instants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenPeriod {
    pub opens: DateTime<Utc>,
    pub closes: DateTime<Utc>,
}

/// What has played, as the resolver needs it. The player persists it (it is serde)
/// and calls the `record_*` methods as things start.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct History {
    /// Music tracks started so far.
    pub music_started: u64,
    /// For each `ad-every:` key, `music_started` when that ad last played.
    pub every_tracks_last: BTreeMap<String, u64>,
    /// For each playlist, how many tracks were picked from it (its cursor).
    pub playlist_cursor: BTreeMap<String, u64>,
    /// Keys of messages that have played (or started and were cut).
    pub played: BTreeSet<String>,
    /// Seed of the shuffle order; each player picks its own.
    pub shuffle_seed: u64,
}

impl History {
    pub fn new(shuffle_seed: u64) -> History {
        History {
            shuffle_seed,
            ..History::default()
        }
    }

    /// Call when a music track starts.
    pub fn record_music(&mut self, pick: &MusicPick) {
        let _ = pick;
        todo!()
    }

    /// Call when a message starts.
    pub fn record_message(&mut self, message: &Message) {
        let _ = message;
        todo!()
    }

    /// Drops keys of dated messages planned before `before` so the set stays small;
    /// interrupt keys are kept (an interrupt plays once per player, ever).
    pub fn forget_before(&mut self, before: DateTime<Utc>) {
        let _ = before;
        todo!()
    }
}

/// One shop's view of a manifest.
#[derive(Debug, Clone)]
pub struct ShopSchedule<'m> {
    manifest: &'m Manifest,
    shop_name: String,
    shop: &'m Shop<MediaId>,
    tz: chrono_tz::Tz,
}

impl<'m> ShopSchedule<'m> {
    pub fn new(manifest: &'m Manifest, shop: &str) -> Result<ShopSchedule<'m>, ScheduleError> {
        let _ = (manifest, shop);
        todo!()
    }

    pub fn shop_name(&self) -> &str {
        &self.shop_name
    }

    /// The open period that contains `at`, or `None` when the shop is closed.
    /// A shop without any `hours` is always open (the period is then the local day).
    pub fn open_period(&self, at: DateTime<Utc>) -> Option<OpenPeriod> {
        let _ = at;
        todo!()
    }

    /// The first opening strictly after `at`, searching a year ahead.
    pub fn next_opening(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let _ = at;
        todo!()
    }

    /// The playlist music comes from at `at`: the matching schedule rule with the
    /// highest priority (the first one listed on a tie), else the fallback.
    /// `None` when the shop is closed at `at`.
    pub fn playlist_at(&self, at: DateTime<Utc>) -> Option<(String, Vec<MediaId>)> {
        let _ = at;
        todo!()
    }

    /// Messages due at `at` that have not played: interrupts within their window,
    /// fixed-time ad slots within [`FIXED_TIME_GRACE_SECS`], the closing announcement
    /// from `minutes_before` until closing. Only urgent interrupts are due while the
    /// shop is closed. Ordered by priority (highest first), then by `due`.
    /// Every-N-tracks ads are not here: they only come from [`Self::next_at_boundary`].
    pub fn due_messages(&self, at: DateTime<Utc>, history: &History) -> Vec<Message> {
        let _ = (at, history);
        todo!()
    }

    /// What to start when nothing is playing: the first due message, else an
    /// every-N-tracks ad whose count is reached, else the next music track of
    /// [`Self::playlist_at`] (sequential: cursor order; shuffle: a permutation per
    /// pass from `shuffle_seed`), else `Closed`.
    pub fn next_at_boundary(&self, at: DateTime<Utc>, history: &History) -> Next {
        let _ = (at, history);
        todo!()
    }

    /// The earliest instant after `at` at which something time-based happens:
    /// opening, closing, the closing announcement, a fixed-time ad slot, an
    /// interrupt's `not_before`, a schedule rule's window edge. Players sleep until then.
    pub fn next_event_after(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let _ = at;
        todo!()
    }
}
