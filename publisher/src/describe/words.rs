//! A manifest in words, for people: titles instead of content ids, local times,
//! rules and shops spelled out; the view model of the version pages.

use serde::Serialize;
use skycast_schema::{Manifest, MediaId, ShopTarget};

use super::local_time;

/// A media reference in words: its title, or a short id when the manifest lacks it.
pub fn title(m: &Manifest, id: &MediaId) -> String {
    m.media_entry(id).map_or_else(|| id.short(), |e| e.title.clone())
}

/// The text serde gives a unit enum (`cut`, `resume`, `urgent`...).
fn word<T: Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => String::new(),
    }
}

#[derive(Debug, Serialize)]
pub struct MediaWords {
    pub title: String,
    pub artist: Option<String>,
    pub kind: String,
    pub duration_ms: u64,
    pub loudness: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct ShopWords {
    pub name: String,
    pub tags: Vec<String>,
    /// (weekday code, hours); empty means open every day, all day.
    pub hours: Vec<(String, String)>,
    pub exceptions: Vec<(String, String)>,
    pub closing: Option<(String, u32)>,
}

#[derive(Debug, Serialize)]
pub struct PlaylistWords {
    pub name: String,
    pub order: String,
    pub tracks: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct RuleWords {
    pub playlist: String,
    pub shops: Vec<ShopTarget>,
    pub dates: Option<String>,
    pub days: Option<String>,
    pub time: Option<String>,
    pub priority: i32,
}

#[derive(Debug, Serialize)]
pub struct AdWords {
    pub title: String,
    pub shops: Vec<ShopTarget>,
    pub every_tracks: Option<u32>,
    pub at: Option<String>,
    pub dates: Option<String>,
    pub start: Option<String>,
    pub after: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct InterruptWords {
    pub id: String,
    pub title: String,
    pub level: String,
    pub shops: Vec<ShopTarget>,
    pub not_before: Option<String>,
    pub not_after: Option<String>,
    pub start: Option<String>,
}

/// A manifest in words, for people: titles instead of content ids, local times.
#[derive(Debug, Serialize)]
pub struct Words {
    pub version: u64,
    pub timezone: String,
    pub published_at: String,
    pub expires_at: String,
    pub published_by: String,
    pub media: Vec<MediaWords>,
    pub shops: Vec<ShopWords>,
    pub playlists: Vec<PlaylistWords>,
    pub rules: Vec<RuleWords>,
    pub ads: Vec<AdWords>,
    pub interrupts: Vec<InterruptWords>,
}

pub fn words(m: &Manifest) -> Words {
    let tz = m.timezone.as_str();
    let p = &m.program;
    Words {
        version: m.version(),
        timezone: m.timezone.clone(),
        published_at: local_time(m.published_at.0, tz),
        expires_at: local_time(m.expires_at.0, tz),
        published_by: m.published_by.clone(),
        media: m
            .media
            .iter()
            .map(|e| MediaWords {
                title: e.title.clone(),
                artist: e.artist.clone(),
                kind: e.kind.as_str().to_string(),
                duration_ms: e.duration_ms,
                loudness: e.loudness_lufs.map(|l| format!("{l:.1} LUFS")),
            })
            .collect(),
        shops: p
            .shops
            .iter()
            .map(|(name, s)| ShopWords {
                name: name.clone(),
                tags: s.tags.clone(),
                hours: s
                    .hours
                    .iter()
                    .map(|(d, h)| (d.to_string(), h.to_string()))
                    .collect(),
                exceptions: s
                    .exceptions
                    .iter()
                    .map(|(d, h)| (d.to_string(), h.to_string()))
                    .collect(),
                closing: s
                    .closing_announcement
                    .as_ref()
                    .map(|c| (title(m, &c.media), c.minutes_before)),
            })
            .collect(),
        playlists: p
            .playlists
            .iter()
            .map(|(name, pl)| PlaylistWords {
                name: name.clone(),
                order: word(&pl.order),
                tracks: pl.items.iter().map(|i| title(m, i)).collect(),
            })
            .collect(),
        rules: p
            .schedule
            .iter()
            .map(|r| RuleWords {
                playlist: r.playlist.clone(),
                shops: r.shops.clone(),
                dates: r.dates.map(|d| d.to_string()),
                days: r
                    .days
                    .as_ref()
                    .map(|d| d.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")),
                time: r.time.map(|t| t.to_string()),
                priority: r.priority,
            })
            .collect(),
        ads: p
            .ads
            .iter()
            .map(|a| AdWords {
                title: title(m, &a.media),
                shops: a.shops.clone(),
                every_tracks: a.every_tracks,
                at: a
                    .at
                    .as_ref()
                    .map(|at| at.iter().map(|t| t.to_string()).collect::<Vec<_>>().join(", ")),
                dates: a.dates.map(|d| d.to_string()),
                start: a.start.as_ref().map(word),
                after: a.after.as_ref().map(word),
            })
            .collect(),
        interrupts: p
            .interrupts
            .iter()
            .map(|i| InterruptWords {
                id: i.id.clone(),
                title: title(m, &i.media),
                level: word(&i.level),
                shops: i.shops.clone(),
                not_before: i.not_before.map(|t| local_time(t.0, tz)),
                not_after: i.not_after.map(|t| local_time(t.0, tz)),
                start: i.start.as_ref().map(word),
            })
            .collect(),
    }
}
