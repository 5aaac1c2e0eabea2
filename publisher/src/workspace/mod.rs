//! The web UI's workspace: the media library, the upload folder, the one shared
//! draft, review requests, immediate interrupts and rollback, one file each.
//! Synchronous: web handlers call it from `spawn_blocking`.

mod draft;
mod interrupts;
mod library;
mod review;
#[cfg(test)]
mod tests;
mod uploads;

use std::fs::File;
use std::io::Read;
use std::path::Path;

use chrono::{DateTime, SecondsFormat, Utc};
use skycast_schema::Manifest;

use crate::data_dir::DataDir;
use crate::db::Db;
use crate::error::{PublisherError, Result};
use crate::store::{CommitId, Store};

pub use crate::db::{LibraryMedia, PublishRequest};
pub use draft::Draft;
pub use review::{Submission, Submitted};
pub use uploads::{decode_upload, sanitize_file_name, DecodedUpload};

/// Time zone and validity of a draft made when nothing is published yet.
pub const DEFAULT_TIMEZONE: &str = "Europe/Paris";
pub use skycast_schema::planning::DEFAULT_VALID_DAYS;

/// Titles, artists and file names are labels: at most this many characters.
pub const MAX_LABEL_CHARS: usize = 200;

/// A publish message (the commit message) is at most this many characters.
pub const MAX_MESSAGE_CHARS: usize = 500;

/// The workspace of one data directory and its database; cheap to make per request.
pub struct Workspace<'a> {
    data: &'a DataDir,
    db: &'a Db,
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn check_message(message: &str) -> Result<&str> {
    let message = message.trim();
    if message.is_empty() {
        return Err(PublisherError::BadRequest(
            "a publish needs a message: say what changes and why".into(),
        ));
    }
    if message.chars().count() > MAX_MESSAGE_CHARS {
        return Err(PublisherError::BadRequest(format!(
            "the message is longer than {MAX_MESSAGE_CHARS} characters: shorten it"
        )));
    }
    if message
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
    {
        return Err(PublisherError::BadRequest(
            "the message holds control characters: remove them".into(),
        ));
    }
    Ok(message)
}

fn version_text(v: Option<u64>) -> String {
    v.map_or_else(|| "nothing published".to_string(), |v| format!("version {v}"))
}

/// The head's manifest as the publisher trusts it: its signature checked with the
/// data directory's key.
fn verified_manifest(data: &DataDir, store: &Store, commit: CommitId) -> Result<Manifest> {
    let trusted = crate::trust::trusted_keys(data)?;
    Ok((*store.verified_manifest(commit, &trusted)?).clone())
}

impl<'a> Workspace<'a> {
    pub fn new(data: &'a DataDir, db: &'a Db) -> Self {
        Workspace { data, db }
    }
}

/// Control characters removed, trimmed, at most `max` characters.
pub(super) fn clean_label(text: &str, max: usize) -> String {
    let kept: String = text.chars().filter(|c| !c.is_control()).collect();
    kept.trim()
        .chars()
        .take(max)
        .collect::<String>()
        .trim()
        .to_string()
}

/// Reads at most `max` bytes of `path`; `None` when it does not exist.
pub(super) fn read_bounded(path: &Path, max: u64) -> Result<Option<Vec<u8>>> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(PublisherError::io("open", path)(e)),
    };
    let mut bytes = Vec::new();
    (&file)
        .take(max)
        .read_to_end(&mut bytes)
        .map_err(PublisherError::io("read", path))?;
    Ok(Some(bytes))
}
