//! Manifest v1: the whole desired state of the fleet, parsed strictly and checked
//! for internal consistency before anything may trust it.

use std::collections::{BTreeMap, BTreeSet};
use std::num::NonZeroU64;

use serde::{Deserialize, Serialize};

use chrono::NaiveDate;

use crate::content_id::MediaId;
pub use crate::media_kind::MediaKind;
pub use crate::names::is_plain_name;
use crate::names::PLAIN_NAME_RULE;
use crate::playback::{AfterMode, Playback, StartMode};
use crate::shop_target::{ShopTarget, ALL_SHOPS};
use crate::strict_yaml::check_no_duplicate_keys;
use crate::time_spec::{DailyHours, DateRange, DayRange, Instant, TimeOfDay, TimeWindow, Weekday};

pub const SCHEMA_V1: &str = "skycast/v1";

/// Bounds applied while parsing, so a hostile manifest cannot make a player
/// download or hold without limit.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_media_bytes: u64,
    pub max_manifest_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_media_bytes: 200 * 1024 * 1024,
            max_manifest_bytes: 8 * 1024 * 1024,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("manifest is {size_bytes} bytes, over the {max_bytes}-byte limit: split the library or raise the limit")]
    TooLarge { size_bytes: usize, max_bytes: usize },
    #[error("manifest is not UTF-8 text")]
    NotUtf8,
    #[error("manifest YAML is invalid: {0}")]
    Yaml(#[from] serde_norway::Error),
    #[error("manifest field `{field}` is invalid: {reason}")]
    Invalid { field: String, reason: String },
}

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> ManifestError {
    ManifestError::Invalid {
        field: field.into(),
        reason: reason.into(),
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MediaEntry {
    pub id: MediaId,
    pub size: u64,
    pub duration_ms: u64,
    pub title: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artist: Option<String>,
    pub kind: MediaKind,
    /// Integrated loudness (EBU R128) measured at publish time; absent for silence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loudness_lufs: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PlayOrder {
    #[default]
    Sequential,
    Shuffle,
}

/// Everything below is generic over `R`, the way media are named: a `MediaId` in a
/// manifest, a file path relative to the planning in a planning.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    deny_unknown_fields,
    bound(deserialize = "R: Deserialize<'de>", serialize = "R: Serialize")
)]
pub struct Playlist<R> {
    #[serde(default)]
    pub order: PlayOrder,
    pub items: Vec<R>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    deny_unknown_fields,
    bound(deserialize = "R: Deserialize<'de>", serialize = "R: Serialize")
)]
pub struct ClosingAnnouncement<R> {
    pub media: R,
    pub minutes_before: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    deny_unknown_fields,
    bound(deserialize = "R: Deserialize<'de>", serialize = "R: Serialize")
)]
pub struct Shop<R> {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub hours: BTreeMap<Weekday, DailyHours>,
    /// Dates whose hours differ from the weekday's (holidays, late openings).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub exceptions: BTreeMap<NaiveDate, DailyHours>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closing_announcement: Option<ClosingAnnouncement<R>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleRule {
    pub playlist: String,
    pub shops: Vec<ShopTarget>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dates: Option<DateRange>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub days: Option<Vec<DayRange>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<TimeWindow>,
    #[serde(default)]
    pub priority: i32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    deny_unknown_fields,
    bound(deserialize = "R: Deserialize<'de>", serialize = "R: Serialize")
)]
pub struct AdRule<R> {
    pub media: R,
    pub shops: Vec<ShopTarget>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every_tracks: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<Vec<TimeOfDay>>,
    /// Days the rule applies (a campaign); always when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dates: Option<DateRange>,
    /// Overrides `playback.messages.ad.start` for this rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<StartMode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<AfterMode>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InterruptLevel {
    Ad,
    Announcement,
    Urgent,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    deny_unknown_fields,
    bound(deserialize = "R: Deserialize<'de>", serialize = "R: Serialize")
)]
pub struct Interrupt<R> {
    pub id: String,
    pub media: R,
    pub level: InterruptLevel,
    pub shops: Vec<ShopTarget>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<Instant>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_after: Option<Instant>,
    /// Overrides the start mode of the interrupt's kind for this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<StartMode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<AfterMode>,
}

/// What plays where and when: the part of a manifest a planning also has.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    deny_unknown_fields,
    bound(deserialize = "R: Deserialize<'de>", serialize = "R: Serialize")
)]
pub struct Program<R> {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub playlists: BTreeMap<String, Playlist<R>>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub shops: BTreeMap<String, Shop<R>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub schedule: Vec<ScheduleRule>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ads: Vec<AdRule<R>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interrupts: Vec<Interrupt<R>>,
    #[serde(default, skip_serializing_if = "Playback::is_default")]
    pub playback: Playback,
}

impl<R> Default for Program<R> {
    fn default() -> Self {
        Program {
            playlists: BTreeMap::new(),
            shops: BTreeMap::new(),
            schedule: Vec::new(),
            ads: Vec::new(),
            interrupts: Vec::new(),
            playback: Playback::default(),
        }
    }
}

impl<R> Program<R> {
    /// Renames every media reference, failing on the first one `f` refuses.
    pub fn try_map_media<S, E>(self, mut f: impl FnMut(&str, R) -> Result<S, E>) -> Result<Program<S>, E> {
        let mut playlists = BTreeMap::new();
        for (name, list) in self.playlists {
            let mut items = Vec::with_capacity(list.items.len());
            for (i, item) in list.items.into_iter().enumerate() {
                items.push(f(&format!("playlists.{name}.items[{i}]"), item)?);
            }
            playlists.insert(
                name,
                Playlist {
                    order: list.order,
                    items,
                },
            );
        }
        let mut shops = BTreeMap::new();
        for (name, shop) in self.shops {
            let closing_announcement = match shop.closing_announcement {
                Some(c) => Some(ClosingAnnouncement {
                    media: f(&format!("shops.{name}.closing_announcement.media"), c.media)?,
                    minutes_before: c.minutes_before,
                }),
                None => None,
            };
            shops.insert(
                name,
                Shop {
                    tags: shop.tags,
                    hours: shop.hours,
                    exceptions: shop.exceptions,
                    closing_announcement,
                },
            );
        }
        let mut ads = Vec::with_capacity(self.ads.len());
        for (i, ad) in self.ads.into_iter().enumerate() {
            ads.push(AdRule {
                media: f(&format!("ads[{i}].media"), ad.media)?,
                shops: ad.shops,
                every_tracks: ad.every_tracks,
                at: ad.at,
                dates: ad.dates,
                start: ad.start,
                after: ad.after,
            });
        }
        let mut interrupts = Vec::with_capacity(self.interrupts.len());
        for (i, int) in self.interrupts.into_iter().enumerate() {
            interrupts.push(Interrupt {
                id: int.id,
                media: f(&format!("interrupts[{i}].media"), int.media)?,
                level: int.level,
                shops: int.shops,
                not_before: int.not_before,
                not_after: int.not_after,
                start: int.start,
                after: int.after,
            });
        }
        Ok(Program {
            playlists,
            shops,
            schedule: self.schedule,
            ads,
            interrupts,
            playback: self.playback,
        })
    }

    /// Every media reference with the field that holds it.
    pub fn media_refs(&self) -> Vec<(String, &R)> {
        let mut out = Vec::new();
        for (name, list) in &self.playlists {
            for (i, item) in list.items.iter().enumerate() {
                out.push((format!("playlists.{name}.items[{i}]"), item));
            }
        }
        for (name, shop) in &self.shops {
            if let Some(c) = &shop.closing_announcement {
                out.push((format!("shops.{name}.closing_announcement.media"), &c.media));
            }
        }
        for (i, ad) in self.ads.iter().enumerate() {
            out.push((format!("ads[{i}].media"), &ad.media));
        }
        for (i, int) in self.interrupts.iter().enumerate() {
            out.push((format!("interrupts[{i}].media"), &int.media));
        }
        out
    }

    /// Whether `target` names something here: `all`, one of the shops, or a tag
    /// some shop carries.
    pub fn knows_target(&self, target: &ShopTarget) -> bool {
        match target {
            ShopTarget::All => true,
            ShopTarget::Shop(name) => self.shops.contains_key(name),
            ShopTarget::Tag(tag) => self.shops.values().any(|s| s.tags.contains(tag)),
        }
    }

    /// Checks everything that does not depend on how media are named.
    pub fn validate_structure(&self) -> Result<(), ManifestError> {
        for name in self.playlists.keys() {
            check_name(&format!("playlists.{name}"), name)?;
        }
        for (name, list) in &self.playlists {
            if list.items.is_empty() {
                return Err(invalid(
                    format!("playlists.{name}.items"),
                    "a playlist needs at least one item",
                ));
            }
        }
        for (name, shop) in &self.shops {
            check_name(&format!("shops.{name}"), name)?;
            if name == ALL_SHOPS {
                return Err(invalid(
                    "shops.all",
                    "`all` is reserved for targeting every shop: rename the shop",
                ));
            }
            for tag in &shop.tags {
                check_name(&format!("shops.{name}.tags"), tag)?;
            }
        }
        let check_targets = |field: &str, targets: &[ShopTarget]| -> Result<(), ManifestError> {
            if targets.is_empty() {
                return Err(invalid(field, "name at least one shop, a `tag:NAME`, or `all`"));
            }
            for t in targets {
                if !self.knows_target(t) {
                    return Err(invalid(
                        field,
                        format!("`{t}` is neither a shop, a `tag:NAME` of a shop, nor `all`"),
                    ));
                }
            }
            Ok(())
        };
        for (i, rule) in self.schedule.iter().enumerate() {
            if !self.playlists.contains_key(&rule.playlist) {
                return Err(invalid(
                    format!("schedule[{i}].playlist"),
                    format!("no playlist is named `{}`", rule.playlist),
                ));
            }
            check_targets(&format!("schedule[{i}].shops"), &rule.shops)?;
        }
        for (i, ad) in self.ads.iter().enumerate() {
            check_targets(&format!("ads[{i}].shops"), &ad.shops)?;
            match (ad.every_tracks, &ad.at) {
                (Some(0), _) => return Err(invalid(format!("ads[{i}].every_tracks"), "must be 1 or more")),
                (Some(_), None) | (None, Some(_)) => {}
                _ => {
                    return Err(invalid(
                        format!("ads[{i}]"),
                        "give exactly one of `every_tracks` or `at`",
                    ))
                }
            }
        }
        if let Some(name) = &self.playback.fallback_playlist {
            if !self.playlists.contains_key(name) {
                return Err(invalid(
                    "playback.fallback_playlist",
                    format!("no playlist is named `{name}`"),
                ));
            }
        }
        if self.playback.fade_ms > 10_000 {
            return Err(invalid("playback.fade_ms", "must be at most 10000 (10 s)"));
        }
        let modes = &self.playback.messages;
        for (kind, mode) in [
            ("ad", modes.ad),
            ("play_now", modes.play_now),
            ("closing", modes.closing),
            ("urgent", modes.urgent),
        ] {
            if mode.duck_db.is_some_and(|db| !(-60.0..=0.0).contains(&db)) {
                return Err(invalid(
                    format!("playback.messages.{kind}.duck_db"),
                    "must be between -60 and 0 (dB the music is lowered by)",
                ));
            }
        }
        for (name, shop) in &self.shops {
            if let Some(c) = &shop.closing_announcement {
                if c.minutes_before == 0 || c.minutes_before > 24 * 60 {
                    return Err(invalid(
                        format!("shops.{name}.closing_announcement.minutes_before"),
                        "must be between 1 and 1440",
                    ));
                }
            }
        }
        let mut interrupt_ids = BTreeSet::new();
        for (i, int) in self.interrupts.iter().enumerate() {
            if !interrupt_ids.insert(int.id.as_str()) {
                return Err(invalid(
                    format!("interrupts[{i}].id"),
                    format!("`{}` is used twice", int.id),
                ));
            }
            check_name(&format!("interrupts[{i}].id"), &int.id)?;
            check_targets(&format!("interrupts[{i}].shops"), &int.shops)?;
            if let (Some(a), Some(b)) = (int.not_before, int.not_after) {
                if b <= a {
                    return Err(invalid(
                        format!("interrupts[{i}].not_after"),
                        "must be later than not_before",
                    ));
                }
            }
        }
        Ok(())
    }
}

/// The schedule is read in the shops' local time, so the zone must be a real IANA name.
pub fn check_timezone(name: &str) -> Result<(), ManifestError> {
    name.parse::<chrono_tz::Tz>().map(|_| ()).map_err(|_| {
        invalid(
            "timezone",
            format!("`{name}` is not an IANA time zone: write it like Europe/Paris"),
        )
    })
}

fn check_name(field: &str, name: &str) -> Result<(), ManifestError> {
    if is_plain_name(name) {
        Ok(())
    } else {
        Err(invalid(field, format!("`{name}` must be {PLAIN_NAME_RULE}")))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "ManifestWire", into = "ManifestWire")]
pub struct Manifest {
    pub schema: String,
    pub version: NonZeroU64,
    pub published_at: Instant,
    pub expires_at: Instant,
    pub published_by: String,
    pub timezone: String,
    pub media: Vec<MediaEntry>,
    pub program: Program<MediaId>,
}

/// The manifest as it is written: one flat mapping. serde's `flatten` would lose
/// both `deny_unknown_fields` and line numbers, hence this twin.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ManifestWire {
    schema: String,
    version: NonZeroU64,
    published_at: Instant,
    expires_at: Instant,
    published_by: String,
    timezone: String,
    media: Vec<MediaEntry>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    playlists: BTreeMap<String, Playlist<MediaId>>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    shops: BTreeMap<String, Shop<MediaId>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    schedule: Vec<ScheduleRule>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    ads: Vec<AdRule<MediaId>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    interrupts: Vec<Interrupt<MediaId>>,
    #[serde(default, skip_serializing_if = "Playback::is_default")]
    playback: Playback,
}

impl From<ManifestWire> for Manifest {
    fn from(w: ManifestWire) -> Self {
        Manifest {
            schema: w.schema,
            version: w.version,
            published_at: w.published_at,
            expires_at: w.expires_at,
            published_by: w.published_by,
            timezone: w.timezone,
            media: w.media,
            program: Program {
                playlists: w.playlists,
                shops: w.shops,
                schedule: w.schedule,
                ads: w.ads,
                interrupts: w.interrupts,
                playback: w.playback,
            },
        }
    }
}

impl From<Manifest> for ManifestWire {
    fn from(m: Manifest) -> Self {
        ManifestWire {
            schema: m.schema,
            version: m.version,
            published_at: m.published_at,
            expires_at: m.expires_at,
            published_by: m.published_by,
            timezone: m.timezone,
            media: m.media,
            playlists: m.program.playlists,
            shops: m.program.shops,
            schedule: m.program.schedule,
            ads: m.program.ads,
            interrupts: m.program.interrupts,
            playback: m.program.playback,
        }
    }
}

impl Manifest {
    /// Parses and checks a manifest with the default limits.
    pub fn parse(bytes: &[u8]) -> Result<Manifest, ManifestError> {
        Manifest::parse_with(bytes, &Limits::default())
    }

    pub fn parse_with(bytes: &[u8], limits: &Limits) -> Result<Manifest, ManifestError> {
        if bytes.len() > limits.max_manifest_bytes {
            return Err(ManifestError::TooLarge {
                size_bytes: bytes.len(),
                max_bytes: limits.max_manifest_bytes,
            });
        }
        let text = std::str::from_utf8(bytes).map_err(|_| ManifestError::NotUtf8)?;
        check_no_duplicate_keys(text)?;
        let manifest: Manifest = serde_norway::from_str(text)?;
        manifest.validate(limits)?;
        Ok(manifest)
    }

    pub fn to_yaml(&self) -> String {
        // Cannot fail: every field is a plain string, number, list or string-keyed map.
        serde_norway::to_string(self).expect("manifest serialises")
    }

    pub fn version(&self) -> u64 {
        self.version.get()
    }

    pub fn media_entry(&self, id: &MediaId) -> Option<&MediaEntry> {
        self.media.iter().find(|m| &m.id == id)
    }

    /// Sum of the declared sizes of every media file.
    pub fn total_media_bytes(&self) -> u64 {
        self.media.iter().map(|m| m.size).sum()
    }

    pub fn validate(&self, limits: &Limits) -> Result<(), ManifestError> {
        if self.schema != SCHEMA_V1 {
            return Err(invalid(
                "schema",
                format!(
                    "`{}` is not supported: this player reads `{SCHEMA_V1}`, upgrade it",
                    self.schema
                ),
            ));
        }
        if self.expires_at <= self.published_at {
            return Err(invalid("expires_at", "must be later than published_at"));
        }
        if self.published_by.trim().is_empty() {
            return Err(invalid("published_by", "must name who published"));
        }
        check_timezone(&self.timezone)?;
        let mut ids = BTreeSet::new();
        for (i, m) in self.media.iter().enumerate() {
            if !ids.insert(m.id) {
                return Err(invalid(
                    format!("media[{i}].id"),
                    format!("{} is listed twice", m.id),
                ));
            }
            if m.size == 0 || m.size > limits.max_media_bytes {
                return Err(invalid(
                    format!("media[{i}].size"),
                    format!("{} bytes is outside 1..={} bytes", m.size, limits.max_media_bytes),
                ));
            }
            if m.title.trim().is_empty() {
                return Err(invalid(format!("media[{i}].title"), "must not be empty"));
            }
        }
        for (field, id) in self.program.media_refs() {
            if !ids.contains(id) {
                return Err(invalid(field, format!("{id} is not listed under `media`")));
            }
        }
        self.program.validate_structure()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn id(n: u8) -> MediaId {
        MediaId::of(&[n])
    }

    pub fn sample_yaml() -> String {
        format!(
            "schema: skycast/v1
version: 17
published_at: 2026-11-22T09:14:03Z
expires_at: 2026-12-22T09:14:03Z
published_by: alice
timezone: Europe/Paris
media:
  - {{id: {a}, size: 4123456, duration_ms: 201000, title: Jingle Bells, artist: Choir, kind: music}}
  - {{id: {b}, size: 1000, duration_ms: 5000, title: Closing soon, kind: announcement}}
playlists:
  christmas: {{order: shuffle, items: [{a}]}}
shops:
  lyon: {{tags: [main], hours: {{mon: \"09:00-20:00\", sun: closed}}, closing_announcement: {{media: {b}, minutes_before: 30}}}}
schedule:
  - {{playlist: christmas, shops: [all], dates: 2026-12-01..2026-12-24, days: [mon-sat], time: \"09:00-20:00\", priority: 10}}
ads:
  - {{media: {b}, every_tracks: 4, shops: [tag:main]}}
interrupts:
  - {{id: flash-1, media: {b}, level: ad, shops: [lyon], not_after: 2026-11-22T10:30:00Z}}
",
            a = id(1),
            b = id(2)
        )
    }

    #[test]
    fn sample_manifest_parses_and_round_trips() {
        let m = Manifest::parse(sample_yaml().as_bytes()).unwrap();
        assert_eq!(m.version(), 17);
        assert_eq!(m.program.playlists["christmas"].order, PlayOrder::Shuffle);
        assert_eq!(m.total_media_bytes(), 4124456);
        let again = Manifest::parse(m.to_yaml().as_bytes()).unwrap();
        assert_eq!(again, m);
    }

    /// Each row: a change to the sample, and words the error must contain.
    #[test]
    fn invalid_manifests_are_refused_naming_the_field() {
        let a = id(1).to_string();
        let table: Vec<(String, &[&str])> = vec![
            (
                sample_yaml().replace("published_by: alice", "published_by: alice\ncolour: red"),
                &["unknown field `colour`", "line 6"],
            ),
            (
                sample_yaml().replace("version: 17", "version: 17\nversion: 18"),
                &["duplicate key `version`", "line 3"],
            ),
            (
                sample_yaml().replace(
                    "title: Jingle Bells, artist: Choir",
                    "title: Jingle Bells, title: X",
                ),
                &["duplicate key `title`", "line 8"],
            ),
            (sample_yaml().replace("version: 17", "version: 0"), &["version"]),
            (sample_yaml().replace("version: 17", "version: -3"), &["version"]),
            (
                sample_yaml().replace(&format!("id: {a}"), &format!("id: {}", a.to_uppercase())),
                &["64 lowercase hex", "line 8"],
            ),
            (
                sample_yaml().replace(&format!("id: {a}"), &format!("id: ../../{}", &a[6..])),
                &["64 lowercase hex"],
            ),
            (
                sample_yaml().replace("size: 4123456", "size: 300000000"),
                &["media[0].size"],
            ),
            (
                sample_yaml().replace("2026-11-22T09:14:03Z\nexpires", "2026-11-22 09:14\nexpires"),
                &["RFC 3339"],
            ),
            (
                sample_yaml().replace("expires_at: 2026-12-22", "expires_at: 2025-12-22"),
                &["expires_at"],
            ),
            (
                sample_yaml().replace("schema: skycast/v1", "schema: skycast/v9"),
                &["skycast/v9"],
            ),
            (
                sample_yaml().replace("Europe/Paris", "Europe/Pari"),
                &["timezone", "Europe/Pari"],
            ),
            (
                sample_yaml().replace("playlist: christmas", "playlist: easter"),
                &["schedule[0].playlist", "easter"],
            ),
            (
                sample_yaml().replace("shops: [tag:main]", "shops: [tag:nope]"),
                &["ads[0].shops", "tag:nope"],
            ),
            (
                sample_yaml().replace("every_tracks: 4", "every_tracks: 0"),
                &["ads[0].every_tracks"],
            ),
            (
                sample_yaml().replace("\"09:00-20:00\", sun", "\"9h-20h\", sun"),
                &["HH:MM"],
            ),
            (
                sample_yaml().replace(&format!("items: [{a}]"), &format!("items: [{}]", id(9))),
                &["playlists.christmas.items[0]", "not listed"],
            ),
        ];
        for (yaml, words) in table {
            let err = Manifest::parse(yaml.as_bytes())
                .expect_err("must be refused")
                .to_string();
            for w in words {
                assert!(err.contains(w), "expected `{w}` in: {err}");
            }
        }
    }

    #[test]
    fn oversized_manifest_is_refused_before_parsing() {
        let limits = Limits {
            max_manifest_bytes: 100,
            ..Limits::default()
        };
        let err = Manifest::parse_with(sample_yaml().as_bytes(), &limits).unwrap_err();
        assert!(matches!(err, ManifestError::TooLarge { .. }));
    }
}
