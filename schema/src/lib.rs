//! Skycast's contract between publisher and players: manifest types and strict YAML,
//! detached ed25519 signatures, blake3 content ids. Pure: no I/O, no async.

/// Implements serde for a type through its `FromStr` and `Display`, so the YAML
/// holds the same readable text a person writes.
macro_rules! serde_via_text {
    ($ty:ty) => {
        impl serde::Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = <String as serde::Deserialize>::deserialize(d)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

pub mod content_id;
pub mod manifest;
pub mod media_kind;
pub mod message_key;
pub mod names;
pub mod planned;
pub mod planning;
pub mod playback;
pub mod protocol;
pub mod report;
pub mod root;
pub mod schedule;
pub mod shop_target;
pub mod signature;
mod strict_yaml;
pub mod time_spec;

pub use content_id::{ContentHasher, MediaId, MediaIdError};
pub use manifest::{
    AdRule, ClosingAnnouncement, Interrupt, InterruptLevel, Limits, Manifest, ManifestError, MediaEntry,
    MediaKind, PlayOrder, Playlist, Program, ScheduleRule, Shop, SCHEMA_V1,
};
pub use message_key::{MessageKey, MessageKeyError};
pub use names::{is_plain_name, PLAIN_NAME_RULE};
pub use planning::{MediaMeta, Planning};
pub use playback::{gain_db, AfterMode, MessageMode, MessageModes, Playback, StartMode, TargetLoudness};
pub use protocol::Head;
pub use root::{sign_root, Retirement, Root, RootError, SigningKeyEntry, VerifiedRoot};
pub use schedule::{
    History, Message, MessageSource, MusicPick, Next, OpenPeriod, Priority, ScheduleError, ShopSchedule,
};
pub use shop_target::{is_shop_name, ShopTarget, ShopTargetError};
pub use signature::{
    check_installable, verify, KeyError, KeyId, KeyLimit, PublicKey, Refusal, SecretKey, TrustedKeys,
    Verified, VerifyError,
};
pub use strict_yaml::check_no_duplicate_keys;
pub use time_spec::{DailyHours, DateRange, DayRange, Instant, TimeOfDay, TimeWindow, Weekday};
