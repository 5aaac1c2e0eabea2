//! The planning: what a person writes. Shaped like a manifest but naming media by
//! file path (relative to the planning file) and without version or signature.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::manifest::{AdRule, Interrupt, ManifestError, Playlist, Program, ScheduleRule, Shop};
use crate::media_kind::MediaKind;
use crate::playback::Playback;
use crate::strict_yaml::check_no_duplicate_keys;

/// Days a manifest stays valid unless the planning says otherwise: short enough that
/// a frozen server is noticed within days; `serve` re-signs the head before half of
/// it has passed, so a fleet left alone does not go stale.
pub const DEFAULT_VALID_DAYS: u32 = 7;

fn default_valid_days() -> u32 {
    DEFAULT_VALID_DAYS
}

/// Shortest and longest validity a planning may ask for.
const MIN_VALID_SECS: u64 = 10;
const MAX_VALID_DAYS: u32 = 3660;

/// `valid_for`: a number and a unit, `s`, `m`, `h` or `d` (`90s`, `12h`, `7d`).
fn parse_valid_for(text: &str) -> Option<u64> {
    let text = text.trim();
    let unit = text.chars().last()?;
    let per = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        _ => return None,
    };
    let n: u64 = text[..text.len() - 1].parse().ok()?;
    n.checked_mul(per)
}

/// Optional metadata for one media file; anything missing comes from the file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MediaMeta {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artist: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<MediaKind>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Planning {
    pub timezone: String,
    /// The published manifest expires this many days after publication...
    pub valid_days: u32,
    /// ...or this many seconds, when the planning says `valid_for` (`12h`, `90s`).
    pub valid_for_secs: Option<u64>,
    pub media: BTreeMap<String, MediaMeta>,
    pub program: Program<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PlanningWire {
    timezone: String,
    #[serde(default)]
    valid_days: Option<u32>,
    #[serde(default)]
    valid_for: Option<String>,
    #[serde(default)]
    media: BTreeMap<String, MediaMeta>,
    #[serde(default)]
    playlists: BTreeMap<String, Playlist<String>>,
    #[serde(default)]
    shops: BTreeMap<String, Shop<String>>,
    #[serde(default)]
    schedule: Vec<ScheduleRule>,
    #[serde(default)]
    ads: Vec<AdRule<String>>,
    #[serde(default)]
    interrupts: Vec<Interrupt<String>>,
    #[serde(default)]
    playback: Playback,
}

impl Planning {
    pub fn parse(text: &str) -> Result<Planning, ManifestError> {
        check_no_duplicate_keys(text)?;
        let w: PlanningWire = serde_norway::from_str(text)?;
        let invalid = |field: &str, reason: String| ManifestError::Invalid {
            field: field.into(),
            reason,
        };
        let valid_for_secs = match (&w.valid_for, w.valid_days) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "valid_for",
                    "give valid_days or valid_for, not both".into(),
                ))
            }
            (Some(text), None) => match parse_valid_for(text) {
                Some(secs) if (MIN_VALID_SECS..=u64::from(MAX_VALID_DAYS) * 86_400).contains(&secs) => {
                    Some(secs)
                }
                Some(_) => {
                    return Err(invalid(
                        "valid_for",
                        format!("`{text}` is outside {MIN_VALID_SECS} s to {MAX_VALID_DAYS} days"),
                    ))
                }
                None => {
                    return Err(invalid(
                        "valid_for",
                        format!("`{text}` is not a number and a unit (s, m, h or d), e.g. `12h` or `7d`"),
                    ))
                }
            },
            (None, _) => None,
        };
        let planning = Planning {
            timezone: w.timezone,
            valid_days: w.valid_days.unwrap_or_else(default_valid_days),
            valid_for_secs,
            media: w.media,
            program: Program {
                playlists: w.playlists,
                shops: w.shops,
                schedule: w.schedule,
                ads: w.ads,
                interrupts: w.interrupts,
                playback: w.playback,
            },
        };
        if !(1..=MAX_VALID_DAYS).contains(&planning.valid_days) {
            return Err(invalid(
                "valid_days",
                format!("{} is outside 1..={MAX_VALID_DAYS} days", planning.valid_days),
            ));
        }
        crate::manifest::check_timezone(&planning.timezone)?;
        planning.program.validate_structure()?;
        Ok(planning)
    }

    /// How long a manifest of this planning stays valid, in seconds.
    pub fn validity_secs(&self) -> u64 {
        self.valid_for_secs.unwrap_or(u64::from(self.valid_days) * 86_400)
    }

    /// Every media file the planning names, each once, in a stable order.
    pub fn media_paths(&self) -> Vec<&str> {
        let mut paths: Vec<&str> = self.media.keys().map(String::as_str).collect();
        paths.extend(self.program.media_refs().into_iter().map(|(_, p)| p.as_str()));
        paths.sort_unstable();
        paths.dedup();
        paths
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLANNING: &str = "timezone: Europe/Paris
media:
  music/a.mp3: {title: Song A, kind: music}
  ads/x.mp3: {kind: ad}
playlists:
  day: {items: [music/a.mp3, music/b.mp3]}
shops:
  main: {tags: [pilot], hours: {mon: \"09:00-20:00\"}}
schedule:
  - {playlist: day, shops: [all]}
ads:
  - {media: ads/x.mp3, every_tracks: 3, shops: [tag:pilot]}
";

    #[test]
    fn planning_lists_each_media_path_once() {
        let p = Planning::parse(PLANNING).unwrap();
        assert_eq!((p.valid_days, p.validity_secs()), (7, 7 * 86_400));
        assert_eq!(p.media_paths(), ["ads/x.mp3", "music/a.mp3", "music/b.mp3"]);
    }

    #[test]
    fn valid_for_takes_seconds_minutes_hours_or_days() {
        for (text, secs) in [("90s", 90), ("15m", 900), ("12h", 43_200), ("7d", 604_800)] {
            let p = Planning::parse(&format!("{PLANNING}valid_for: {text}\n")).unwrap();
            assert_eq!(p.validity_secs(), secs, "{text}");
        }
        let p = Planning::parse(&format!("{PLANNING}valid_days: 30\n")).unwrap();
        assert_eq!(p.validity_secs(), 30 * 86_400);
    }

    #[test]
    fn planning_errors_name_the_field() {
        let cases = [
            (PLANNING.replace("timezone", "tz"), "unknown field `tz`"),
            (
                PLANNING.replace("playlist: day", "playlist: night"),
                "schedule[0].playlist",
            ),
            (
                PLANNING.replace("kind: ad", "kind: jingle"),
                "unknown variant `jingle`",
            ),
            (format!("{PLANNING}valid_days: 0\n"), "valid_days"),
            (format!("{PLANNING}valid_for: 5s\n"), "outside 10 s"),
            (format!("{PLANNING}valid_for: 3 weeks\n"), "a number and a unit"),
            (format!("{PLANNING}valid_for: 1h\nvalid_days: 2\n"), "not both"),
            (PLANNING.replace("Europe/Paris", "Mars/Olympus"), "Mars/Olympus"),
        ];
        for (text, words) in cases {
            let err = Planning::parse(&text).unwrap_err().to_string();
            assert!(err.contains(words), "expected `{words}` in {err}");
        }
    }
}
