//! Skycast's contract between publisher and players: manifest types and strict YAML,
//! detached ed25519 signatures, blake3 content ids. Pure: no I/O, no async.

pub mod content_id;
pub mod manifest;
pub mod planning;
pub mod playback;
pub mod protocol;
pub mod schedule;
pub mod signature;
mod strict_yaml;
pub mod time_spec;

pub use content_id::{ContentHasher, MediaId, MediaIdError};
pub use manifest::{
    is_plain_name, AdRule, ClosingAnnouncement, Interrupt, InterruptLevel, Limits, Manifest, ManifestError,
    MediaEntry, MediaKind, PlayOrder, Playlist, Program, ScheduleRule, Shop, SCHEMA_V1,
};
pub use planning::{MediaMeta, Planning};
pub use playback::{gain_db, AfterMode, MessageMode, MessageModes, Playback, StartMode, TargetLoudness};
pub use protocol::Head;
pub use schedule::{
    History, Message, MessageSource, MusicPick, Next, OpenPeriod, Priority, ScheduleError, ShopSchedule,
};
pub use signature::{
    check_installable, verify, KeyError, KeyId, PublicKey, Refusal, SecretKey, TrustedKeys, Verified,
    VerifyError,
};
pub use strict_yaml::check_no_duplicate_keys;
pub use time_spec::{DailyHours, DateRange, DayRange, Instant, TimeOfDay, TimeWindow, Weekday};
