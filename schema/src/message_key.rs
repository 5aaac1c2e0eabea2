//! The key that makes a message play once: formatted when the resolver makes a
//! message due, stored in the player's history and play log, parsed back to read
//! a key's date (to forget old ones) or to say it in words. Written and read only
//! here.

use std::fmt;
use std::str::FromStr;

use chrono::NaiveDate;

use crate::content_id::MediaId;
use crate::names::is_plain_name;
use crate::time_spec::TimeOfDay;

const INTERRUPT: &str = "interrupt:";
const FIXED_TIME: &str = "ad-at:";
const CLOSING: &str = "closing:";
const EVERY_TRACKS: &str = "ad-every:";
const DATE_FORMAT: &str = "%Y-%m-%d";

/// Stable across manifest versions and restarts, so a message never plays twice.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum MessageKey {
    /// `interrupt:ID`: an interrupt plays once per player, ever.
    Interrupt { id: String },
    /// `ad-at:MEDIA:YYYY-MM-DDTHH:MM`: one slot of a fixed-time ad, in local time.
    FixedTime {
        media: MediaId,
        date: NaiveDate,
        time: TimeOfDay,
    },
    /// `closing:YYYY-MM-DD`: the closing announcement of the local day the shop opened.
    Closing { date: NaiveDate },
    /// `ad-every:MEDIA:N`: an every-N-tracks ad, which comes back forever.
    EveryTracks { media: MediaId, every: u32 },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{text}` is not a message key: expected `interrupt:ID`, `ad-at:MEDIA:YYYY-MM-DDTHH:MM`, \
     `closing:YYYY-MM-DD` or `ad-every:MEDIA:N`"
)]
pub struct MessageKeyError {
    pub text: String,
}

impl MessageKey {
    /// The local date a dated key (fixed-time ad, closing) is for; `None` for
    /// keys that are kept forever.
    pub fn local_date(&self) -> Option<NaiveDate> {
        match self {
            MessageKey::FixedTime { date, .. } | MessageKey::Closing { date } => Some(*date),
            MessageKey::Interrupt { .. } | MessageKey::EveryTracks { .. } => None,
        }
    }

    fn parse_parts(s: &str) -> Option<MessageKey> {
        let date = |t: &str| NaiveDate::parse_from_str(t, DATE_FORMAT).ok();
        if let Some(id) = s.strip_prefix(INTERRUPT) {
            is_plain_name(id).then(|| MessageKey::Interrupt { id: id.to_string() })
        } else if let Some(rest) = s.strip_prefix(FIXED_TIME) {
            let (media, slot) = rest.split_once(':')?;
            let (day, time) = slot.split_once('T')?;
            Some(MessageKey::FixedTime {
                media: media.parse().ok()?,
                date: date(day)?,
                time: time.parse().ok()?,
            })
        } else if let Some(day) = s.strip_prefix(CLOSING) {
            Some(MessageKey::Closing { date: date(day)? })
        } else if let Some(rest) = s.strip_prefix(EVERY_TRACKS) {
            let (media, n) = rest.split_once(':')?;
            Some(MessageKey::EveryTracks {
                media: media.parse().ok()?,
                every: n.parse().ok()?,
            })
        } else {
            None
        }
    }
}

impl FromStr for MessageKey {
    type Err = MessageKeyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // Only the text `Display` writes is a key (no `+3`, no unpadded dates).
        MessageKey::parse_parts(s)
            .filter(|key| key.to_string() == s)
            .ok_or_else(|| MessageKeyError { text: s.to_string() })
    }
}

impl fmt::Display for MessageKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MessageKey::Interrupt { id } => write!(f, "{INTERRUPT}{id}"),
            MessageKey::FixedTime { media, date, time } => {
                write!(f, "{FIXED_TIME}{media}:{date}T{time}")
            }
            MessageKey::Closing { date } => write!(f, "{CLOSING}{date}"),
            MessageKey::EveryTracks { media, every } => write!(f, "{EVERY_TRACKS}{media}:{every}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(text: &str) -> NaiveDate {
        NaiveDate::parse_from_str(text, DATE_FORMAT).unwrap()
    }

    #[test]
    fn message_keys_round_trip_through_their_text() {
        let media = MediaId::of(b"ad");
        let table = [
            (
                "interrupt:flash-1".to_string(),
                MessageKey::Interrupt { id: "flash-1".into() },
            ),
            (
                format!("ad-at:{media}:2026-12-05T10:30"),
                MessageKey::FixedTime {
                    media,
                    date: day("2026-12-05"),
                    time: "10:30".parse().unwrap(),
                },
            ),
            (
                "closing:2026-12-05".to_string(),
                MessageKey::Closing {
                    date: day("2026-12-05"),
                },
            ),
            (
                format!("ad-every:{media}:3"),
                MessageKey::EveryTracks { media, every: 3 },
            ),
        ];
        for (text, key) in table {
            assert_eq!(text.parse::<MessageKey>(), Ok(key.clone()), "{text}");
            assert_eq!(key.to_string(), text);
        }
    }

    #[test]
    fn dated_keys_know_their_local_date() {
        let media = MediaId::of(b"ad");
        let table = [
            (format!("ad-at:{media}:2026-11-29T23:55"), Some(day("2026-11-29"))),
            ("closing:2026-11-30".to_string(), Some(day("2026-11-30"))),
            ("interrupt:flash".to_string(), None),
            (format!("ad-every:{media}:4"), None),
        ];
        for (text, date) in table {
            assert_eq!(text.parse::<MessageKey>().unwrap().local_date(), date, "{text}");
        }
    }

    #[test]
    fn malformed_message_keys_are_refused_naming_the_text() {
        let media = MediaId::of(b"ad");
        let table = [
            String::new(),
            "christmas".to_string(),
            "interrupt:".to_string(),
            "interrupt:Flash!".to_string(),
            "ad-at:x:2026-12-05T10:30".to_string(),
            format!("ad-at:{media}:2026-12-05"),
            format!("ad-at:{media}:2026-12-05T9:30"),
            format!("ad-at:{media}:2026-13-05T10:30"),
            "closing:2026-12-5".to_string(),
            "closing:tomorrow".to_string(),
            format!("ad-every:{media}:+3"),
            format!("ad-every:{media}:three"),
            format!("ad-every:{media}"),
        ];
        for text in table {
            let err = text.parse::<MessageKey>().unwrap_err().to_string();
            assert!(err.contains(&format!("`{text}` is not a message key")), "{err}");
        }
    }
}
