//! Manifests described for people: a version in words and the diff of two
//! versions in words. No HTML and no I/O: the CLI and the web pages render these.

mod diff;
mod words;

use chrono::{DateTime, Utc};

pub use diff::{diff, render_diff, shops_text, Change, DiffLine, DiffSection};
pub use words::{title as media_title, words, Words};

/// `t` shown in the manifest's time zone, `YYYY-MM-DD HH:MM`; in UTC when the
/// zone is unknown (a manifest that does not parse).
pub fn local_time(t: DateTime<Utc>, timezone: &str) -> String {
    match skycast_schema::schedule::local_datetime(timezone, t) {
        Ok(local) => local.format("%Y-%m-%d %H:%M").to_string(),
        Err(_) => t.format("%Y-%m-%d %H:%M UTC").to_string(),
    }
}
