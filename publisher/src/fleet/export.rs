//! Proof of play and player events for people: CSV (a header row, RFC 4180
//! quoting) or a plain text log, one line per row, streamed from the database.
//! Used by `plays export` / `events export` and by the web UI's downloads.
//!
//! CSV goes through the `csv` crate (BurntSushi's, the de facto standard,
//! actively kept): titles and details hold commas, quotes and newlines, and
//! hand-made quoting gets them wrong.

use std::io::Write;
use std::str::FromStr;

use chrono::{DateTime, NaiveDate, Utc};

use super::{parse_instant, FleetError};
use crate::db::{Db, LogEvent, PlayRecord, RowFilter};
use crate::error::{PublisherError, Result};

/// How an export is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    Csv,
    Txt,
}

impl FromStr for ExportFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "csv" => Ok(ExportFormat::Csv),
            "txt" => Ok(ExportFormat::Txt),
            other => Err(format!("format `{other}` is not known: use csv or txt")),
        }
    }
}

impl ExportFormat {
    /// The file name extension and MIME type of a download.
    pub fn content_type(self) -> &'static str {
        match self {
            ExportFormat::Csv => "text/csv; charset=utf-8",
            ExportFormat::Txt => "text/plain; charset=utf-8",
        }
    }
}

/// The start of a range: `YYYY-MM-DD` is that UTC day's start, or an RFC 3339 instant.
pub fn parse_from(text: &str) -> Result<DateTime<Utc>, FleetError> {
    parse_bound(text, false)
}

/// The (exclusive) end of a range: `YYYY-MM-DD` includes that whole UTC day, an
/// RFC 3339 instant is the end itself.
pub fn parse_to(text: &str) -> Result<DateTime<Utc>, FleetError> {
    parse_bound(text, true)
}

fn parse_bound(text: &str, end: bool) -> Result<DateTime<Utc>, FleetError> {
    let text = text.trim();
    if let Ok(day) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        let day = if end { day.succ_opt() } else { Some(day) };
        return day
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map(|t| t.and_utc())
            .ok_or_else(|| FleetError::BadDate(text.to_string()));
    }
    parse_instant(text).ok_or_else(|| FleetError::BadDate(text.chars().take(64).collect()))
}

/// The filter of `--from FROM --to TO` (see [`parse_from`], [`parse_to`]).
pub fn range_filter(from: &str, to: &str) -> Result<RowFilter, FleetError> {
    let (from, to) = (parse_from(from)?, parse_to(to)?);
    if to < from {
        return Err(FleetError::EmptyRange {
            from: super::rfc3339(from),
            to: super::rfc3339(to),
        });
    }
    Ok(RowFilter {
        from: Some(from),
        to: Some(to),
        ..RowFilter::default()
    })
}

/// `2026-12-01T10:00:03Z` as `2026-12-01 10:00:03` (UTC).
fn plain_time(rfc3339: &str) -> String {
    parse_instant(rfc3339).map_or_else(
        || rfc3339.to_string(),
        |t| t.format("%Y-%m-%d %H:%M:%S").to_string(),
    )
}

/// One line of text: control characters (newlines) become spaces.
fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// `2026-12-01 10:00:03 main shop-main-1 played «Title» (music, playlist day) complete`.
pub fn play_line(r: &PlayRecord) -> String {
    let p = &r.play;
    let source = if p.kind == "music" {
        format!("playlist {}", p.source)
    } else {
        p.source.clone()
    };
    one_line(&format!(
        "{} {} {} played «{}» ({}, {}) {}",
        plain_time(&p.started_at),
        r.shop,
        r.player_id,
        p.title,
        p.kind,
        source,
        p.outcome
    ))
}

/// `2026-12-01 10:00:03 main shop-main-1 swapped: swapped to version 3`.
pub fn event_line(e: &LogEvent) -> String {
    let what = e.kind.replace('_', " ");
    let line = if e.detail.is_empty() {
        format!("{} {} {} {what}", plain_time(&e.at), e.shop, e.player_id)
    } else {
        format!(
            "{} {} {} {what}: {}",
            plain_time(&e.at),
            e.shop,
            e.player_id,
            e.detail
        )
    };
    one_line(&line)
}

const PLAY_HEADER: [&str; 12] = [
    "started_at",
    "ended_at",
    "received_at",
    "shop",
    "player",
    "play_id",
    "media",
    "title",
    "kind",
    "source",
    "version",
    "outcome",
];

fn play_record(r: &PlayRecord) -> [String; 12] {
    let p = &r.play;
    [
        p.started_at.clone(),
        p.ended_at.clone().unwrap_or_default(),
        r.received_at.clone(),
        r.shop.clone(),
        r.player_id.clone(),
        p.play_id.clone(),
        p.media.clone(),
        p.title.clone(),
        p.kind.clone(),
        p.source.clone(),
        p.version.to_string(),
        p.outcome.clone(),
    ]
}

const EVENT_HEADER: [&str; 10] = [
    "at",
    "received_at",
    "shop",
    "player",
    "seq",
    "kind",
    "detail",
    "version",
    "media",
    "command_id",
];

fn event_record(e: &LogEvent) -> [String; 10] {
    [
        e.at.clone(),
        e.received_at.clone(),
        e.shop.clone(),
        e.player_id.clone(),
        e.seq.to_string(),
        e.kind.clone(),
        e.detail.clone(),
        e.version.map(|v| v.to_string()).unwrap_or_default(),
        e.media.clone().unwrap_or_default(),
        e.command_id.clone().unwrap_or_default(),
    ]
}

fn write_failed(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> PublisherError {
    PublisherError::Io {
        action: "write",
        path: "the export".into(),
        source: std::io::Error::other(e),
    }
}

/// Writes rows one at a time in `format`, remembering the first failure (the
/// database streams them through a callback).
struct Sink<'w> {
    csv: Option<csv::Writer<&'w mut dyn Write>>,
    txt: Option<&'w mut dyn Write>,
    rows: u64,
    failed: Option<PublisherError>,
}

impl<'w> Sink<'w> {
    fn new(out: &'w mut dyn Write, format: ExportFormat, header: &[&str]) -> Result<Sink<'w>> {
        let mut sink = match format {
            ExportFormat::Csv => Sink {
                csv: Some(csv::Writer::from_writer(out)),
                txt: None,
                rows: 0,
                failed: None,
            },
            ExportFormat::Txt => Sink {
                csv: None,
                txt: Some(out),
                rows: 0,
                failed: None,
            },
        };
        if let Some(w) = sink.csv.as_mut() {
            w.write_record(header).map_err(write_failed)?;
        }
        Ok(sink)
    }

    /// `false` once writing failed (the caller stops reading rows).
    fn row(&mut self, record: &[String], line: impl FnOnce() -> String) -> bool {
        let written = match (&mut self.csv, &mut self.txt) {
            (Some(w), _) => w.write_record(record).map_err(write_failed),
            (None, Some(w)) => writeln!(w, "{}", line()).map_err(write_failed),
            (None, None) => Ok(()),
        };
        match written {
            Ok(()) => {
                self.rows += 1;
                true
            }
            Err(e) => {
                self.failed = Some(e);
                false
            }
        }
    }

    fn finish(mut self) -> Result<u64> {
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        if let Some(w) = self.csv.as_mut() {
            w.flush().map_err(write_failed)?;
        }
        if let Some(w) = self.txt.as_mut() {
            w.flush().map_err(write_failed)?;
        }
        Ok(self.rows)
    }
}

/// Writes the plays matching `filter` (by the player's start time, oldest
/// first) to `out`; returns how many.
pub fn export_plays(db: &Db, filter: &RowFilter, format: ExportFormat, out: &mut dyn Write) -> Result<u64> {
    let mut sink = Sink::new(out, format, &PLAY_HEADER)?;
    db.for_each_play(filter, None, |p| sink.row(&play_record(&p), || play_line(&p)))?;
    sink.finish()
}

/// Writes the player events matching `filter` (by the player's time, oldest
/// first) to `out`; returns how many.
pub fn export_events(db: &Db, filter: &RowFilter, format: ExportFormat, out: &mut dyn Write) -> Result<u64> {
    let mut sink = Sink::new(out, format, &EVENT_HEADER)?;
    db.for_each_event(filter, None, |e| sink.row(&event_record(&e), || event_line(&e)))?;
    sink.finish()
}
