//! The planning: what a person writes. Shaped like a manifest but naming media by
//! file path (relative to the planning file) and without version or signature.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::manifest::{AdRule, Interrupt, ManifestError, Playlist, Program, ScheduleRule, Shop};
use crate::media_kind::MediaKind;
use crate::playback::Playback;
use crate::strict_yaml::check_no_duplicate_keys;

fn default_valid_days() -> u32 {
    30
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
    /// The published manifest expires this many days after publication.
    pub valid_days: u32,
    pub media: BTreeMap<String, MediaMeta>,
    pub program: Program<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PlanningWire {
    timezone: String,
    #[serde(default = "default_valid_days")]
    valid_days: u32,
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
        let planning = Planning {
            timezone: w.timezone,
            valid_days: w.valid_days,
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
        if !(1..=3660).contains(&planning.valid_days) {
            return Err(ManifestError::Invalid {
                field: "valid_days".into(),
                reason: format!("{} is outside 1..=3660 days", planning.valid_days),
            });
        }
        crate::manifest::check_timezone(&planning.timezone)?;
        planning.program.validate_structure()?;
        Ok(planning)
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
        assert_eq!(p.valid_days, 30);
        assert_eq!(p.media_paths(), ["ads/x.mp3", "music/a.mp3", "music/b.mp3"]);
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
            (PLANNING.replace("Europe/Paris", "Mars/Olympus"), "Mars/Olympus"),
        ];
        for (text, words) in cases {
            let err = Planning::parse(&text).unwrap_err().to_string();
            assert!(err.contains(words), "expected `{words}` in {err}");
        }
    }
}
