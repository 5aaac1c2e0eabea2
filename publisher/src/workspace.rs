//! The web UI's workspace: the media library (uploads kept only when they decode as
//! whole MP3s), the one shared draft, publishing from it, review requests, immediate
//! interrupts and rollback. Synchronous: web handlers call it from `spawn_blocking`.

use std::collections::{BTreeSet, HashMap};
use std::fs::{self, File};
use std::io::Read;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use git2::Oid;
use rusqlite::types::Type;
use rusqlite::{params, OptionalExtension, Row, Transaction, TransactionBehavior};
use skycast_schema::manifest::check_timezone;
use skycast_schema::{
    verify, Interrupt, Limits, Manifest, ManifestError, MediaEntry, MediaId, MediaKind, Program, TrustedKeys,
};

use crate::data_dir::DataDir;
use crate::db::Db;
use crate::error::{PublisherError, Result};
use crate::media::{inspect_mp3, Mp3Info};
use crate::publish::{check_author, commit_with, unsigned_manifest, Published, Unsigned};
use crate::store::{Store, MANIFEST_FILE, SIGNATURE_FILE};

/// Time zone and validity of a draft made when nothing is published yet.
pub const DEFAULT_TIMEZONE: &str = "Europe/Paris";
pub const DEFAULT_VALID_DAYS: u32 = 30;
/// Titles, artists and file names are labels: at most this many characters.
pub const MAX_LABEL_CHARS: usize = 200;
/// A publish message (the commit message) is at most this many characters.
pub const MAX_MESSAGE_CHARS: usize = 500;
/// The commit of `main` whose media the library last imported.
const IMPORTED_HEAD_KEY: &str = "library_imported_head";
const REVIEW_REQUIRED_KEY: &str = "review_required";

/// One media file of the library: uploaded through the web UI, or imported from
/// the published head.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LibraryMedia {
    /// The blake3 content id; serialised as its 64 hex characters.
    pub id: MediaId,
    pub title: String,
    pub artist: Option<String>,
    pub kind: MediaKind,
    pub duration_ms: u64,
    pub size: u64,
    pub loudness_lufs: Option<f64>,
    /// The uploaded file's name, as a label only (never a path).
    pub file_name: String,
    pub added_by: String,
    /// RFC 3339.
    pub added_at: String,
}

impl LibraryMedia {
    /// The manifest entry this media gets when a version references it.
    pub fn entry(&self) -> MediaEntry {
        MediaEntry {
            id: self.id,
            size: self.size,
            duration_ms: self.duration_ms,
            title: self.title.clone(),
            artist: self.artist.clone(),
            kind: self.kind,
            loudness_lufs: self.loudness_lufs,
        }
    }
}

/// The shared draft: a planning naming media by content id, and the version it
/// was started from.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Draft {
    /// The published version this draft was started from (or last rebased on);
    /// `None` before the first publish. A draft publishes only over that version.
    pub base_version: Option<u64>,
    pub timezone: String,
    pub valid_days: u32,
    pub program: Program<MediaId>,
}

impl Draft {
    /// The draft made when nothing is saved and nothing is published.
    pub fn empty() -> Draft {
        Draft {
            base_version: None,
            timezone: DEFAULT_TIMEZONE.to_string(),
            valid_days: DEFAULT_VALID_DAYS,
            program: Program::default(),
        }
    }

    /// The draft whose publication would reproduce `manifest`.
    pub fn of_manifest(manifest: &Manifest) -> Draft {
        let seconds = (manifest.expires_at.0 - manifest.published_at.0)
            .num_seconds()
            .max(1);
        let days = (seconds + 86_399) / 86_400;
        Draft {
            base_version: Some(manifest.version()),
            timezone: manifest.timezone.clone(),
            valid_days: u32::try_from(days).unwrap_or(u32::MAX).clamp(1, 3660),
            program: manifest.program.clone(),
        }
    }

    /// Same content (ignores `base_version`).
    pub fn same_content(&self, other: &Draft) -> bool {
        self.timezone == other.timezone
            && self.valid_days == other.valid_days
            && self.program == other.program
    }
}

/// A request to publish a snapshot of the draft, waiting for an admin.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PublishRequest {
    pub id: i64,
    pub author: String,
    pub message: String,
    pub created_at: String,
    /// `pending`, `approved` or `rejected`.
    pub status: String,
    pub decided_by: Option<String>,
    pub decided_at: Option<String>,
    /// The version an approval published.
    pub version: Option<u64>,
}

pub struct Workspace<'a> {
    data: &'a DataDir,
    db: &'a Db,
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Control characters removed, trimmed, at most `max` characters.
fn clean_label(text: &str, max: usize) -> String {
    let kept: String = text.chars().filter(|c| !c.is_control()).collect();
    kept.trim()
        .chars()
        .take(max)
        .collect::<String>()
        .trim()
        .to_string()
}

/// An uploaded file's name as a label: its last path component (after `/` or `\`),
/// without control characters, at most 200 characters.
pub fn sanitize_file_name(name: &str) -> String {
    let last = name.rsplit(['/', '\\']).next().unwrap_or(name);
    let clean = clean_label(last, MAX_LABEL_CHARS);
    if clean.is_empty() || clean == "." || clean == ".." {
        "upload".to_string()
    } else {
        clean
    }
}

/// The title a file gets without an ID3 title: its name without the extension.
fn title_from_file_name(label: &str) -> String {
    match label.rsplit_once('.') {
        Some((stem, _)) if !stem.trim().is_empty() => stem.trim().to_string(),
        _ => label.to_string(),
    }
}

fn kind_from_text(text: &str) -> Option<MediaKind> {
    [
        MediaKind::Music,
        MediaKind::Ad,
        MediaKind::Announcement,
        MediaKind::Urgent,
    ]
    .into_iter()
    .find(|k| k.as_str() == text)
}

/// `text` as a LIKE pattern matching it anywhere, with `\` escaping `%`, `_` and itself.
fn like_pattern(text: &str) -> String {
    let mut pattern = String::with_capacity(text.len() + 2);
    pattern.push('%');
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

fn conversion_error(column: usize, e: impl std::error::Error + Send + Sync + 'static) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(column, Type::Text, Box::new(e))
}

fn media_from_row(r: &Row<'_>) -> rusqlite::Result<LibraryMedia> {
    let id: String = r.get(0)?;
    let kind: String = r.get(3)?;
    let duration_ms: i64 = r.get(4)?;
    let size: i64 = r.get(5)?;
    Ok(LibraryMedia {
        id: id.parse().map_err(|e| conversion_error(0, e))?,
        title: r.get(1)?,
        artist: r.get(2)?,
        kind: kind_from_text(&kind).ok_or_else(|| {
            conversion_error(
                3,
                std::io::Error::new(std::io::ErrorKind::InvalidData, format!("unknown kind `{kind}`")),
            )
        })?,
        duration_ms: u64::try_from(duration_ms).map_err(|e| conversion_error(4, e))?,
        size: u64::try_from(size).map_err(|e| conversion_error(5, e))?,
        loudness_lufs: r.get(6)?,
        file_name: r.get(7)?,
        added_by: r.get(8)?,
        added_at: r.get(9)?,
    })
}

const MEDIA_COLUMNS: &str =
    "id, title, artist, kind, duration_ms, size, loudness_lufs, file_name, added_by, added_at";

fn request_from_row(r: &Row<'_>) -> rusqlite::Result<PublishRequest> {
    let version: Option<i64> = r.get(7)?;
    Ok(PublishRequest {
        id: r.get(0)?,
        author: r.get(1)?,
        message: r.get(2)?,
        created_at: r.get(3)?,
        status: r.get(4)?,
        decided_by: r.get(5)?,
        decided_at: r.get(6)?,
        version: version
            .map(u64::try_from)
            .transpose()
            .map_err(|e| conversion_error(7, e))?,
    })
}

const REQUEST_COLUMNS: &str = "id, author, message, created_at, status, decided_by, decided_at, version";

/// A draft's structural error, naming the field like the manifest checks do.
fn draft_error(e: ManifestError) -> PublisherError {
    match e {
        ManifestError::Invalid { field, reason } => {
            PublisherError::BadRequest(format!("draft field `{field}` is invalid: {reason}"))
        }
        other => PublisherError::BadRequest(format!("the draft is invalid: {other}")),
    }
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

/// Why a draft may not publish over `head`.
fn stale_draft(base: Option<u64>, head: Option<u64>) -> PublisherError {
    PublisherError::Conflict(format!(
        "the draft was started from {} but {} is published now: publishing it would undo that \
         version; discard the draft to start again from the published version",
        version_text(base),
        version_text(head)
    ))
}

/// Removes the interrupts that ended before `now`.
fn prune_expired(program: &mut Program<MediaId>, now: DateTime<Utc>) {
    program
        .interrupts
        .retain(|i| i.not_after.is_none_or(|end| end.0 >= now));
}

/// Each media the program references, once, in order of first reference, with
/// the first field naming it.
fn referenced_media(program: &Program<MediaId>) -> Vec<(String, MediaId)> {
    let mut seen = BTreeSet::new();
    program
        .media_refs()
        .into_iter()
        .filter(|(_, id)| seen.insert(**id))
        .map(|(field, id)| (field, *id))
        .collect()
}

/// Reads at most `max` bytes of `path`; `None` when it does not exist.
fn read_bounded(path: &Path, max: u64) -> Result<Option<Vec<u8>>> {
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

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(PublisherError::io("sync", dir))
}

/// The manifest of `commit`, checked against the publisher's own key.
/// An uploaded file that decoded as a whole MP3, not stored yet.
#[derive(Debug)]
pub struct DecodedUpload {
    temp: PathBuf,
    /// The client's file name, sanitised: a label, never a path.
    label: String,
    id: MediaId,
    size: u64,
    info: Mp3Info,
}

/// Reads and fully decodes an upload waiting in `temp`: the slow part of taking
/// an upload in, which needs no database, so callers run it without holding one.
/// Reads at most `Limits::default().max_media_bytes`.
pub fn decode_upload(temp: &Path, file_name: &str) -> Result<DecodedUpload> {
    let label = sanitize_file_name(file_name);
    let max = Limits::default().max_media_bytes;
    let file = File::open(temp).map_err(PublisherError::io("open", temp))?;
    let mut bytes = Vec::new();
    file.take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(PublisherError::io("read", temp))?;
    if bytes.len() as u64 > max {
        return Err(PublisherError::UploadTooLarge {
            name: label,
            max_bytes: max,
        });
    }
    let info = inspect_mp3(&bytes).map_err(|reason| PublisherError::NotMp3 {
        path: label.clone(),
        reason,
    })?;
    Ok(DecodedUpload {
        temp: temp.to_path_buf(),
        label,
        id: MediaId::of(&bytes),
        size: bytes.len() as u64,
        info,
    })
}

/// Removes an upload's temporary file: after a success it was renamed away
/// already, or held content the library had.
fn remove_temp(temp: &Path) {
    match fs::remove_file(temp) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            tracing::warn!(path = %temp.display(), error = %e, "cannot remove an upload's temporary file")
        }
    }
}

fn verified_manifest(data: &DataDir, store: &Store, commit: &git2::Commit<'_>) -> Result<Manifest> {
    let read = |name: &str| {
        store.file_at(commit, name)?.ok_or_else(|| {
            PublisherError::Internal(format!("commit {} of the store has no {name}", commit.id()))
        })
    };
    let trusted = TrustedKeys::new([data.public_key()?]);
    let verified = verify(
        &read(MANIFEST_FILE)?,
        &read(SIGNATURE_FILE)?,
        &trusted,
        &Limits::default(),
    )?;
    Ok((*verified).clone())
}

impl<'a> Workspace<'a> {
    pub fn new(data: &'a DataDir, db: &'a Db) -> Self {
        Workspace { data, db }
    }

    // ---- Library ----

    /// The library sorted by title. `search` matches title, artist or file name,
    /// case-insensitively (ASCII) and literally (`%` and `_` are plain characters).
    /// Media of the published head not yet listed are imported first.
    pub fn library(&self, search: Option<&str>) -> Result<Vec<LibraryMedia>> {
        self.import_head()?;
        let pattern = search
            .map(|s| clean_label(s, MAX_LABEL_CHARS))
            .filter(|s| !s.is_empty())
            .map(|s| like_pattern(&s));
        let sql = format!(
            "SELECT {MEDIA_COLUMNS} FROM library
             WHERE ?1 IS NULL OR title LIKE ?1 ESCAPE '\\' OR artist LIKE ?1 ESCAPE '\\'
                OR file_name LIKE ?1 ESCAPE '\\'
             ORDER BY title COLLATE NOCASE, id"
        );
        let conn = self.db.conn();
        let mut stmt = conn.prepare(&sql).map_err(self.db.err())?;
        let rows = stmt
            .query_map(params![pattern], media_from_row)
            .map_err(self.db.err())?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(self.db.err());
        rows
    }

    /// One media of the library; `NotFound` when it is not there.
    pub fn media(&self, id: &MediaId) -> Result<LibraryMedia> {
        self.import_head()?;
        self.find_media(id)?
            .ok_or_else(|| PublisherError::NotFound(format!("media {id} is not in the library")))
    }

    fn find_media(&self, id: &MediaId) -> Result<Option<LibraryMedia>> {
        self.db
            .conn()
            .query_row(
                &format!("SELECT {MEDIA_COLUMNS} FROM library WHERE id = ?1"),
                params![id.to_string()],
                media_from_row,
            )
            .optional()
            .map_err(self.db.err())
    }

    /// Adds the media of the published head that the library lacks (published by
    /// the CLI, or before the library existed). Their files stay in the store.
    /// Only when `main` has moved since the last import: most pages call this, and
    /// reading, verifying and parsing the head each time would be wasted work.
    fn import_head(&self) -> Result<()> {
        let store = self.data.store()?;
        let Some(commit) = store.head_commit()? else {
            return Ok(());
        };
        let head = commit.id().to_string();
        if self.setting(IMPORTED_HEAD_KEY)?.as_deref() == Some(head.as_str()) {
            return Ok(());
        }
        let manifest = verified_manifest(self.data, &store, &commit)?;
        let conn = self.db.conn();
        let known: BTreeSet<String> = {
            let mut stmt = conn.prepare("SELECT id FROM library").map_err(self.db.err())?;
            let ids = stmt
                .query_map([], |r| r.get(0))
                .map_err(self.db.err())?
                .collect::<rusqlite::Result<_>>()
                .map_err(self.db.err())?;
            ids
        };
        for m in manifest
            .media
            .iter()
            .filter(|m| !known.contains(&m.id.to_string()))
        {
            conn.execute(
                "INSERT OR IGNORE INTO library
                 (id, title, artist, kind, duration_ms, size, loudness_lufs, file_name, added_by, added_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                params![
                    m.id.to_string(),
                    m.title,
                    m.artist,
                    m.kind.as_str(),
                    i64::try_from(m.duration_ms).unwrap_or(i64::MAX),
                    i64::try_from(m.size).unwrap_or(i64::MAX),
                    m.loudness_lufs,
                    m.id.file_name(),
                    manifest.published_by,
                    manifest.published_at.to_string(),
                ],
            )
            .map_err(self.db.err())?;
        }
        self.set_setting(IMPORTED_HEAD_KEY, &head)
    }

    /// Where accepted uploads live, as `<blake3>.mp3`.
    pub fn uploads_dir(&self) -> PathBuf {
        self.data.root().join("uploads")
    }

    /// Where uploads are written before `ingest` checks them. Created on demand; if
    /// that fails, writing the upload there fails with the reason.
    pub fn uploads_tmp_dir(&self) -> PathBuf {
        let dir = self.uploads_dir().join("tmp");
        if !dir.is_dir() {
            if let Err(e) = fs::create_dir_all(&dir) {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot create the uploads folder");
            }
        }
        dir
    }

    /// A new, empty, uniquely named file in `uploads_tmp_dir()` to stream an upload
    /// into before calling `ingest`.
    pub fn new_upload_file(&self) -> Result<(PathBuf, File)> {
        let dir = self.uploads_tmp_dir();
        fs::create_dir_all(&dir).map_err(PublisherError::io("create", &dir))?;
        let path = dir.join(format!("{}.part", crate::random_token()));
        let file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(PublisherError::io("create", &path))?;
        Ok((path, file))
    }

    /// Validates an uploaded file already written to `temp` (a file in
    /// `uploads_tmp_dir()`) by decoding it fully (at most
    /// `Limits::default().max_media_bytes` are read); on success moves it atomically
    /// to `uploads_dir()/<id>.mp3` and records it. On any failure `temp` is removed
    /// and nothing is stored. Re-uploading known content returns the existing entry.
    /// `file_name` is only a label: it is sanitised and never used in a path.
    pub fn ingest(
        &self,
        temp: &Path,
        file_name: &str,
        kind: MediaKind,
        by: &str,
        now: DateTime<Utc>,
    ) -> Result<LibraryMedia> {
        let tmp_dir = self.uploads_tmp_dir();
        if temp.parent() != Some(tmp_dir.as_path()) {
            // Not ours to move or delete.
            return Err(PublisherError::Internal(format!(
                "upload `{}` is not in `{}`: write uploads with `new_upload_file`",
                temp.display(),
                tmp_dir.display()
            )));
        }
        let result =
            decode_upload(temp, file_name).and_then(|decoded| self.record_checked(&decoded, kind, by, now));
        remove_temp(temp);
        result
    }

    /// Stores an upload [`decode_upload`] accepted: moves its file to
    /// `uploads_dir()/<id>.mp3` and records it (known content returns the existing
    /// entry). The temporary file is removed whatever happens.
    pub fn record_upload(
        &self,
        decoded: &DecodedUpload,
        kind: MediaKind,
        by: &str,
        now: DateTime<Utc>,
    ) -> Result<LibraryMedia> {
        let tmp_dir = self.uploads_tmp_dir();
        if decoded.temp.parent() != Some(tmp_dir.as_path()) {
            // Not ours to move or delete.
            return Err(PublisherError::Internal(format!(
                "upload `{}` is not in `{}`: write uploads with `new_upload_file`",
                decoded.temp.display(),
                tmp_dir.display()
            )));
        }
        let result = self.record_checked(decoded, kind, by, now);
        remove_temp(&decoded.temp);
        result
    }

    fn record_checked(
        &self,
        decoded: &DecodedUpload,
        kind: MediaKind,
        by: &str,
        now: DateTime<Utc>,
    ) -> Result<LibraryMedia> {
        let DecodedUpload {
            temp,
            label,
            id,
            size,
            info,
        } = decoded;
        self.import_head()?;
        if let Some(existing) = self.find_media(id)? {
            return Ok(existing);
        }
        let title = info
            .title
            .as_deref()
            .map(|t| clean_label(t, MAX_LABEL_CHARS))
            .filter(|t| !t.is_empty())
            .unwrap_or_else(|| clean_label(&title_from_file_name(label), MAX_LABEL_CHARS));
        let artist = info
            .artist
            .as_deref()
            .map(|a| clean_label(a, MAX_LABEL_CHARS))
            .filter(|a| !a.is_empty());

        let dir = self.uploads_dir();
        let dest = dir.join(id.file_name());
        File::open(temp)
            .and_then(|f| f.sync_all())
            .map_err(PublisherError::io("sync", temp))?;
        fs::rename(temp, &dest).map_err(PublisherError::io("move", temp))?;
        sync_dir(&dir)?;
        let inserted = self.db.conn().execute(
            "INSERT OR IGNORE INTO library
             (id, title, artist, kind, duration_ms, size, loudness_lufs, file_name, added_by, added_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            params![
                id.to_string(),
                title,
                artist,
                kind.as_str(),
                i64::try_from(info.duration_ms).unwrap_or(i64::MAX),
                i64::try_from(*size).unwrap_or(i64::MAX),
                info.loudness_lufs,
                label,
                clean_label(by, MAX_LABEL_CHARS),
                rfc3339(now),
            ],
        );
        if let Err(e) = inserted {
            // Nothing names the file: remove it so a failure stores nothing.
            if self.find_media(id).ok().flatten().is_none() {
                let _ = fs::remove_file(&dest);
            }
            return Err(self.db.err()(e));
        }
        self.find_media(id)?
            .ok_or_else(|| PublisherError::Internal(format!("media {id} vanished after its upload")))
    }

    /// Changes how a media is labelled and which kind it is. Published versions keep
    /// their labels; the next publish uses these.
    pub fn update_media(
        &self,
        id: &MediaId,
        title: &str,
        artist: Option<&str>,
        kind: MediaKind,
    ) -> Result<()> {
        let bad = |t: &str| t.chars().any(char::is_control) || t.trim().chars().count() > MAX_LABEL_CHARS;
        let title_ok = !title.trim().is_empty() && !bad(title);
        if !title_ok {
            return Err(PublisherError::BadRequest(format!(
                "a title needs 1 to {MAX_LABEL_CHARS} characters without control characters"
            )));
        }
        if artist.is_some_and(bad) {
            return Err(PublisherError::BadRequest(format!(
                "an artist needs at most {MAX_LABEL_CHARS} characters without control characters"
            )));
        }
        let artist = artist.map(str::trim).filter(|a| !a.is_empty());
        self.import_head()?;
        let changed = self
            .db
            .conn()
            .execute(
                "UPDATE library SET title = ?2, artist = ?3, kind = ?4 WHERE id = ?1",
                params![id.to_string(), title.trim(), artist, kind.as_str()],
            )
            .map_err(self.db.err())?;
        if changed == 0 {
            return Err(PublisherError::NotFound(format!(
                "media {id} is not in the library"
            )));
        }
        Ok(())
    }

    /// The bytes of a media, from the uploads folder or the store, to listen to it
    /// or build a playlist file.
    pub fn media_bytes(&self, id: &MediaId) -> Result<Vec<u8>> {
        let path = self.uploads_dir().join(id.file_name());
        if let Some(bytes) = read_bounded(&path, Limits::default().max_media_bytes)? {
            return Ok(bytes);
        }
        let store = self.data.store()?;
        if let Some(commit) = store.head_commit()? {
            if let Some((_, oid)) = store.media_ids_in(&commit)?.into_iter().find(|(m, _)| m == id) {
                return store.read_blob(oid);
            }
        }
        match store.media_index()?.get(id) {
            Some(oid) => store.read_blob(*oid),
            None => Err(PublisherError::NotFound(format!(
                "media {id} is neither in the uploads folder nor in the store"
            ))),
        }
    }

    // ---- Draft ----

    /// The saved draft; else one made from the published head (based on it); else
    /// an empty one.
    pub fn draft(&self) -> Result<Draft> {
        match self.saved_draft()? {
            Some(d) => Ok(d),
            None => self.head_draft(),
        }
    }

    fn saved_draft(&self) -> Result<Option<Draft>> {
        let row: Option<(Option<i64>, String)> = self
            .db
            .conn()
            .query_row("SELECT base_version, body FROM draft WHERE id = 1", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()
            .map_err(self.db.err())?;
        let Some((base, body)) = row else {
            return Ok(None);
        };
        let mut draft: Draft = serde_json::from_str(&body).map_err(|e| {
            PublisherError::Conflict(format!(
                "the saved draft cannot be read ({e}): discard it to start again from the published version"
            ))
        })?;
        draft.base_version = base.and_then(|b| u64::try_from(b).ok());
        Ok(Some(draft))
    }

    fn head_draft(&self) -> Result<Draft> {
        Ok(match self.head_manifest()? {
            Some(m) => Draft::of_manifest(&m),
            None => Draft::empty(),
        })
    }

    /// Everything a draft must be before it is saved, requested or published.
    fn validate_draft(&self, draft: &Draft) -> Result<()> {
        check_timezone(&draft.timezone).map_err(draft_error)?;
        if !(1..=3660).contains(&draft.valid_days) {
            return Err(PublisherError::BadRequest(format!(
                "draft field `valid_days` is invalid: {} is outside 1..=3660 days",
                draft.valid_days
            )));
        }
        draft.program.validate_structure().map_err(draft_error)?;
        self.import_head()?;
        for (field, id) in referenced_media(&draft.program) {
            if self.find_media(&id)?.is_none() {
                return Err(PublisherError::BadRequest(format!(
                    "draft field `{field}` names media {id}, which is not in the library: upload it first"
                )));
            }
        }
        Ok(())
    }

    fn write_draft(&self, draft: &Draft, by: &str, now: DateTime<Utc>) -> Result<()> {
        let body = serde_json::to_string(draft).map_err(|e| PublisherError::Internal(e.to_string()))?;
        let max = Limits::default().max_manifest_bytes;
        if body.len() > max {
            return Err(PublisherError::BadRequest(format!(
                "the draft is {} bytes, over the {max}-byte limit: remove playlists or rules",
                body.len()
            )));
        }
        let base = draft.base_version.map(|v| i64::try_from(v).unwrap_or(i64::MAX));
        self.db
            .conn()
            .execute(
                "INSERT INTO draft (id, base_version, body, updated_by, updated_at)
                 VALUES (1, ?1, ?2, ?3, ?4)
                 ON CONFLICT (id) DO UPDATE SET base_version = ?1, body = ?2, updated_by = ?3, updated_at = ?4",
                params![base, body, by, rfc3339(now)],
            )
            .map_err(self.db.err())?;
        Ok(())
    }

    /// Saves the draft after checking its structure and that every media it names
    /// is in the library.
    pub fn save_draft(&self, draft: &Draft, by: &str, now: DateTime<Utc>) -> Result<()> {
        self.validate_draft(draft)?;
        self.write_draft(draft, by, now)
    }

    /// Reads, changes with `f` and saves the draft in one transaction, so two
    /// editors never lose each other's change. Nothing is saved if `f` or the
    /// checks fail.
    pub fn edit_draft(
        &self,
        by: &str,
        now: DateTime<Utc>,
        f: impl FnOnce(&mut Draft) -> Result<()>,
    ) -> Result<Draft> {
        let tx = Transaction::new_unchecked(self.db.conn(), TransactionBehavior::Immediate)
            .map_err(self.db.err())?;
        let mut draft = self.draft()?;
        f(&mut draft)?;
        self.save_draft(&draft, by, now)?;
        tx.commit().map_err(self.db.err())?;
        Ok(draft)
    }

    /// Drops the saved draft: the draft is the published head again.
    pub fn discard_draft(&self) -> Result<()> {
        self.db
            .conn()
            .execute("DELETE FROM draft", [])
            .map_err(self.db.err())?;
        Ok(())
    }

    /// True when a saved draft's content differs from the published head's.
    pub fn draft_differs_from_head(&self) -> Result<bool> {
        match self.saved_draft()? {
            Some(saved) => Ok(!saved.same_content(&self.head_draft()?)),
            None => Ok(false),
        }
    }

    /// The published head's manifest, checked against the publisher's key.
    pub fn head_manifest(&self) -> Result<Option<Manifest>> {
        let store = self.data.store()?;
        let manifest = match store.head_commit()? {
            Some(commit) => Some(verified_manifest(self.data, &store, &commit)?),
            None => None,
        };
        Ok(manifest)
    }

    /// The published head's version, if any.
    pub fn head_version(&self) -> Result<Option<u64>> {
        Ok(self.data.store()?.head_version()?.map(|(v, _)| v))
    }

    /// The manifest entries for every media `program` references, from the library.
    fn entries_for(&self, program: &Program<MediaId>) -> Result<Vec<MediaEntry>> {
        self.import_head()?;
        referenced_media(program)
            .into_iter()
            .map(|(field, id)| match self.find_media(&id)? {
                Some(m) => Ok(m.entry()),
                None => Err(PublisherError::BadRequest(format!(
                    "draft field `{field}` names media {id}, which is not in the library: upload it first"
                ))),
            })
            .collect()
    }

    /// An unsigned manifest of the draft (version = head + 1, published by `by` at
    /// `now`, expired interrupts dropped), for previews and the summary diff.
    pub fn draft_manifest(&self, draft: &Draft, by: &str, now: DateTime<Utc>) -> Result<Manifest> {
        self.validate_draft(draft)?;
        let mut program = draft.program.clone();
        prune_expired(&mut program, now);
        let media = self.entries_for(&program)?;
        let version = self.head_version()?.map_or(1, |v| v + 1);
        let manifest = unsigned_manifest(
            version,
            draft.timezone.clone(),
            Duration::days(draft.valid_days.into()),
            media,
            program,
            by,
            now,
        )?;
        manifest.validate(&Limits::default()).map_err(draft_error)?;
        Ok(manifest)
    }

    /// Each entry with the blob of its file in the store: the store's when it has
    /// one, else the uploaded file's, which must still hash to the entry's id.
    fn blobs_for(&self, store: &Store, entries: Vec<MediaEntry>) -> Result<Vec<(MediaEntry, Oid)>> {
        let index: HashMap<MediaId, Oid> = if entries.is_empty() {
            HashMap::new()
        } else {
            store.media_index()?
        };
        let mut out = Vec::with_capacity(entries.len());
        for entry in entries {
            if let Some(oid) = index.get(&entry.id) {
                out.push((entry, *oid));
                continue;
            }
            let path = self.uploads_dir().join(entry.id.file_name());
            let Some(bytes) = read_bounded(&path, Limits::default().max_media_bytes + 1)? else {
                return Err(PublisherError::Conflict(format!(
                    "the file of `{}` ({}) is neither in the store nor in the uploads folder: upload it \
                     again; nothing was published",
                    entry.title,
                    entry.id.short()
                )));
            };
            if MediaId::of(&bytes) != entry.id {
                tracing::error!(path = %path.display(), "an uploaded file no longer matches its content id");
                return Err(PublisherError::Conflict(format!(
                    "the uploaded file of `{}` ({}) changed on disk after its upload (its blake3 no longer \
                     matches): upload it again; nothing was published",
                    entry.title,
                    entry.id.short()
                )));
            }
            out.push((entry, store.write_blob(&bytes)?));
        }
        Ok(out)
    }

    /// Publishes `draft` as one signed commit authored by `author`. The message is
    /// required (at most 500 characters). Interrupts that ended before `now` are
    /// dropped; only media the program references are listed, labelled from the
    /// library. The draft must be based on the published head (`Conflict`
    /// otherwise). Afterwards the saved draft is rebased on the new version.
    pub fn publish(
        &self,
        draft: &Draft,
        author: &str,
        message: &str,
        now: DateTime<Utc>,
    ) -> Result<Published> {
        let message = check_message(message)?;
        self.publish_draft(draft, author, message, now)
    }

    fn publish_draft(
        &self,
        draft: &Draft,
        author: &str,
        message: &str,
        now: DateTime<Utc>,
    ) -> Result<Published> {
        check_author(author)?;
        self.validate_draft(draft)?;
        let mut program = draft.program.clone();
        prune_expired(&mut program, now);
        let store = self.data.store()?;
        let media = self.blobs_for(&store, self.entries_for(&program)?)?;
        let unsigned = Unsigned {
            timezone: draft.timezone.clone(),
            validity: Duration::days(draft.valid_days.into()),
            media,
            program,
        };
        let base = draft.base_version;
        let published = commit_with(self.data, &store, author, message, now, |head| {
            let head = head.map(|(v, _)| v);
            if head != base {
                return Err(stale_draft(base, head));
            }
            Ok(unsigned)
        })?;
        self.rebase_saved_draft(base, published.version, author, now, |_| {})?;
        Ok(published)
    }

    /// After a publish over `old_head`: the saved draft loses its ended interrupts
    /// and gets `change`; if it was based on `old_head` it is based on `new_version`
    /// from now on. A draft based on another version stays stale.
    fn rebase_saved_draft(
        &self,
        old_head: Option<u64>,
        new_version: u64,
        by: &str,
        now: DateTime<Utc>,
        change: impl FnOnce(&mut Draft),
    ) -> Result<()> {
        let Some(mut draft) = self.saved_draft()? else {
            return Ok(());
        };
        if draft.base_version == old_head {
            draft.base_version = Some(new_version);
        }
        prune_expired(&mut draft.program, now);
        change(&mut draft);
        // Not validated again: the publish happened, and a draft that no longer
        // holds together says why when it is next saved or published.
        self.write_draft(&draft, by, now)
    }

    // ---- Review ----

    /// Whether publishing from the draft needs an admin's approval.
    pub fn review_required(&self) -> Result<bool> {
        Ok(self.setting(REVIEW_REQUIRED_KEY)?.as_deref() == Some("true"))
    }

    pub fn set_review_required(&self, on: bool) -> Result<()> {
        self.set_setting(REVIEW_REQUIRED_KEY, if on { "true" } else { "false" })
    }

    fn setting(&self, key: &str) -> Result<Option<String>> {
        self.db
            .conn()
            .query_row("SELECT value FROM settings WHERE key = ?1", params![key], |r| {
                r.get(0)
            })
            .optional()
            .map_err(self.db.err())
    }

    fn set_setting(&self, key: &str, value: &str) -> Result<()> {
        self.db
            .conn()
            .execute(
                "INSERT INTO settings (key, value) VALUES (?1, ?2)
                 ON CONFLICT (key) DO UPDATE SET value = ?2",
                params![key, value],
            )
            .map_err(self.db.err())?;
        Ok(())
    }

    /// Records a snapshot of `draft` waiting for an admin; returns its id.
    pub fn request_publish(
        &self,
        draft: &Draft,
        author: &str,
        message: &str,
        now: DateTime<Utc>,
    ) -> Result<i64> {
        check_author(author)?;
        let message = check_message(message)?;
        self.validate_draft(draft)?;
        let head = self.head_version()?;
        if draft.base_version != head {
            return Err(stale_draft(draft.base_version, head));
        }
        let body = serde_json::to_string(draft).map_err(|e| PublisherError::Internal(e.to_string()))?;
        self.db
            .conn()
            .execute(
                "INSERT INTO publish_requests (author, message, body, created_at, status)
                 VALUES (?1, ?2, ?3, ?4, 'pending')",
                params![author, message, body, rfc3339(now)],
            )
            .map_err(self.db.err())?;
        Ok(self.db.conn().last_insert_rowid())
    }

    /// Every request, newest first.
    pub fn requests(&self) -> Result<Vec<PublishRequest>> {
        let conn = self.db.conn();
        let mut stmt = conn
            .prepare(&format!(
                "SELECT {REQUEST_COLUMNS} FROM publish_requests ORDER BY id DESC"
            ))
            .map_err(self.db.err())?;
        let rows = stmt
            .query_map([], request_from_row)
            .map_err(self.db.err())?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(self.db.err());
        rows
    }

    pub fn request(&self, id: i64) -> Result<PublishRequest> {
        self.db
            .conn()
            .query_row(
                &format!("SELECT {REQUEST_COLUMNS} FROM publish_requests WHERE id = ?1"),
                params![id],
                request_from_row,
            )
            .optional()
            .map_err(self.db.err())?
            .ok_or_else(|| PublisherError::NotFound(format!("publish request {id}")))
    }

    /// The draft a request would publish.
    pub fn request_draft(&self, id: i64) -> Result<Draft> {
        let body: String = self
            .db
            .conn()
            .query_row(
                "SELECT body FROM publish_requests WHERE id = ?1",
                params![id],
                |r| r.get(0),
            )
            .optional()
            .map_err(self.db.err())?
            .ok_or_else(|| PublisherError::NotFound(format!("publish request {id}")))?;
        serde_json::from_str(&body).map_err(|e| {
            PublisherError::Conflict(format!(
                "publish request {id} cannot be read ({e}): reject it and request again"
            ))
        })
    }

    fn check_pending(&self, request: &PublishRequest) -> Result<()> {
        if request.status == "pending" {
            return Ok(());
        }
        let by = request
            .decided_by
            .as_deref()
            .map(|who| format!(" by {who}"))
            .unwrap_or_default();
        Err(PublisherError::Conflict(format!(
            "publish request {} was already {}{by}: nothing to do",
            request.id, request.status
        )))
    }

    /// Publishes a pending request's snapshot, authored by the requester, with the
    /// message "<message> (approved by <admin>)". `Conflict` when the request is not
    /// pending, or was made against a version that is no longer the head.
    pub fn approve(&self, id: i64, admin: &str, now: DateTime<Utc>) -> Result<Published> {
        check_author(admin)?;
        let request = self.request(id)?;
        self.check_pending(&request)?;
        let draft = self.request_draft(id)?;
        let head = self.head_version()?;
        if draft.base_version != head {
            return Err(PublisherError::Conflict(format!(
                "publish request {id} was made against {} but {} is published now: approving it would \
                 undo that version; reject it and ask {} to request again from the current draft",
                version_text(draft.base_version),
                version_text(head),
                request.author
            )));
        }
        let message = format!("{} (approved by {admin})", request.message);
        let published = self.publish_draft(&draft, &request.author, &message, now)?;
        // The version is out: record it even if another admin rejected meanwhile.
        self.db
            .conn()
            .execute(
                "UPDATE publish_requests SET status = 'approved', decided_by = ?2, decided_at = ?3, version = ?4
                 WHERE id = ?1",
                params![
                    id,
                    admin,
                    rfc3339(now),
                    i64::try_from(published.version).unwrap_or(i64::MAX)
                ],
            )
            .map_err(self.db.err())?;
        Ok(published)
    }

    /// Refuses a pending request; nothing is published.
    pub fn reject(&self, id: i64, admin: &str, now: DateTime<Utc>) -> Result<()> {
        let request = self.request(id)?;
        self.check_pending(&request)?;
        let changed = self
            .db
            .conn()
            .execute(
                "UPDATE publish_requests SET status = 'rejected', decided_by = ?2, decided_at = ?3
                 WHERE id = ?1 AND status = 'pending'",
                params![id, admin, rfc3339(now)],
            )
            .map_err(self.db.err())?;
        if changed == 0 {
            return self.check_pending(&self.request(id)?);
        }
        Ok(())
    }

    // ---- Interrupts and rollback ----

    /// Publishes the head plus `interrupt` at once (never waits for review) and adds
    /// it to the saved draft, so a later draft publish keeps it. Unpublished draft
    /// changes are not published. Refuses media outside the library, no shops, and
    /// shop selectors other than `all`, `tag:X` of a shop, or a shop of the head.
    pub fn publish_interrupt(
        &self,
        interrupt: Interrupt<MediaId>,
        author: &str,
        message: &str,
        now: DateTime<Utc>,
    ) -> Result<Published> {
        check_author(author)?;
        let message = check_message(message)?;
        let media = self.media(&interrupt.media).map_err(|e| match e {
            PublisherError::NotFound(_) => PublisherError::BadRequest(format!(
                "the interrupt's media {} is not in the library: upload it first",
                interrupt.media
            )),
            other => other,
        })?;
        if interrupt.shops.is_empty() {
            return Err(PublisherError::BadRequest(
                "the interrupt names no shop: choose `all`, a `tag:NAME` or a shop".into(),
            ));
        }
        if let Some(end) = interrupt.not_after {
            if end.0 < now {
                return Err(PublisherError::BadRequest(format!(
                    "the interrupt ends at {end}, which is already past: choose a later end"
                )));
            }
        }
        let store = self.data.store()?;
        let new_blob = self.blobs_for(&store, vec![media.entry()])?;
        let mut old_head = None;
        let published = commit_with(self.data, &store, author, message, now, |head| {
            let (version, oid) = head.ok_or(PublisherError::NothingPublished)?;
            old_head = Some(version);
            let commit = store.find_commit(oid)?;
            let manifest = verified_manifest(self.data, &store, &commit)?;
            let mut program = manifest.program.clone();
            prune_expired(&mut program, now);
            for selector in &interrupt.shops {
                let known = selector == "all"
                    || program.shops.contains_key(selector)
                    || selector
                        .strip_prefix("tag:")
                        .is_some_and(|tag| program.shops.values().any(|s| s.tags.iter().any(|t| t == tag)));
                if !known {
                    return Err(PublisherError::BadRequest(format!(
                        "`{selector}` is neither `all`, a `tag:NAME` of a shop, nor a shop of version \
                         {version}: choose among the published shops"
                    )));
                }
            }
            if program.interrupts.iter().any(|i| i.id == interrupt.id) {
                return Err(PublisherError::Conflict(format!(
                    "an interrupt named `{}` is already published: choose another name",
                    interrupt.id
                )));
            }
            program.interrupts.push(interrupt.clone());
            program
                .validate_structure()
                .map_err(|e| PublisherError::BadRequest(format!("the interrupt cannot be added: {e}")))?;
            let blobs: HashMap<MediaId, Oid> = store.media_ids_in(&commit)?.into_iter().collect();
            let mut media = Vec::new();
            for (_, id) in referenced_media(&program) {
                let published = manifest
                    .media_entry(&id)
                    .and_then(|e| Some((e.clone(), *blobs.get(&id)?)));
                match published {
                    Some(pair) => media.push(pair),
                    None => match new_blob.iter().find(|(e, _)| e.id == id) {
                        Some(pair) => media.push(pair.clone()),
                        None => {
                            return Err(PublisherError::Internal(format!(
                                "version {version} references media {id} it does not hold"
                            )))
                        }
                    },
                }
            }
            Ok(Unsigned {
                timezone: manifest.timezone.clone(),
                validity: manifest.expires_at.0 - manifest.published_at.0,
                media,
                program,
            })
        })?;
        self.rebase_saved_draft(old_head, published.version, author, now, |draft| {
            draft.program.interrupts.retain(|i| i.id != interrupt.id);
            draft.program.interrupts.push(interrupt);
        })?;
        Ok(published)
    }

    /// Republishes version `target`'s content as a new version, then replaces the
    /// saved draft by it: unpublished draft changes are dropped.
    pub fn rollback(&self, target: u64, author: &str, now: DateTime<Utc>) -> Result<Published> {
        let published = crate::publish::rollback(self.data, target, author, now)?;
        self.discard_draft()?;
        Ok(published)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data_dir::InitOptions;
    use crate::store::Store;

    struct Fixture {
        _dir: tempfile::TempDir,
        data: DataDir,
        db: Db,
    }

    impl Fixture {
        fn new() -> Fixture {
            let dir = tempfile::tempdir().unwrap();
            let data = DataDir::new(dir.path().join("publisher"));
            data.init(
                InitOptions {
                    public_url: "https://127.0.0.1:1".into(),
                    admin_user: "admin".into(),
                    admin_password: Some("admin-password".into()),
                    tls_cert_and_key: None,
                    extra_names: Vec::new(),
                },
                [7; 32],
            )
            .unwrap();
            let db = data.db().unwrap();
            Fixture { _dir: dir, data, db }
        }

        fn ws(&self) -> Workspace<'_> {
            Workspace::new(&self.data, &self.db)
        }

        fn store(&self) -> Store {
            self.data.store().unwrap()
        }

        /// Writes `bytes` as an upload and ingests it.
        fn ingest_bytes(&self, bytes: &[u8], name: &str, kind: MediaKind) -> (PathBuf, Result<LibraryMedia>) {
            let ws = self.ws();
            let (path, _) = ws.new_upload_file().unwrap();
            fs::write(&path, bytes).unwrap();
            let result = ws.ingest(&path, name, kind, "alice", at("2026-12-01T09:00:00Z"));
            (path, result)
        }

        fn upload(&self, example_path: &str, kind: MediaKind) -> LibraryMedia {
            let name = example_path.rsplit('/').next().unwrap();
            self.ingest_bytes(&example(example_path), name, kind).1.unwrap()
        }

        fn library_rows(&self) -> i64 {
            self.db
                .conn()
                .query_row("SELECT COUNT(*) FROM library", [], |r| r.get(0))
                .unwrap()
        }

        /// Verifies version `n` against the publisher's key.
        fn verified(&self, n: u64) -> Manifest {
            let store = self.store();
            let trusted = TrustedKeys::new([self.data.public_key().unwrap()]);
            let v = verify(
                &store.version_file(n, MANIFEST_FILE).unwrap(),
                &store.version_file(n, SIGNATURE_FILE).unwrap(),
                &trusted,
                &Limits::default(),
            )
            .unwrap();
            (*v).clone()
        }
    }

    fn example(rel: &str) -> Vec<u8> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../content-example")
            .join(rel);
        fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
    }

    fn program(yaml: &str) -> Program<MediaId> {
        serde_norway::from_str(yaml).unwrap()
    }

    /// One shop, one playlist of `tracks` played all day.
    fn day_program(tracks: &[&LibraryMedia]) -> Program<MediaId> {
        let items: Vec<String> = tracks.iter().map(|m| m.id.to_string()).collect();
        program(&format!(
            "playlists:\n  day: {{order: sequential, items: [{}]}}\n\
             shops:\n  main: {{tags: [pilot], hours: {{mon: \"09:00-20:00\", sun: closed}}}}\n\
             schedule:\n  - {{playlist: day, shops: [all], days: [mon-sat], time: \"09:00-20:00\"}}\n",
            items.join(", ")
        ))
    }

    fn interrupt(
        id: &str,
        media: &LibraryMedia,
        shops: &[&str],
        not_after: Option<&str>,
    ) -> Interrupt<MediaId> {
        Interrupt {
            id: id.into(),
            media: media.id,
            level: skycast_schema::InterruptLevel::Urgent,
            shops: shops.iter().map(|s| s.to_string()).collect(),
            not_before: None,
            not_after: not_after.map(|t| at(t).into()),
            start: None,
            after: None,
        }
    }

    fn files_in(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .map(|entries| {
                entries
                    .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    /// A short but well-formed PCM WAV file.
    fn wav_bytes() -> Vec<u8> {
        let samples = 44_100u32;
        let data_len = samples * 2;
        let mut w = Vec::new();
        w.extend(b"RIFF");
        w.extend((36 + data_len).to_le_bytes());
        w.extend(b"WAVEfmt ");
        w.extend(16u32.to_le_bytes());
        w.extend(1u16.to_le_bytes()); // PCM
        w.extend(1u16.to_le_bytes()); // mono
        w.extend(44_100u32.to_le_bytes());
        w.extend((44_100u32 * 2).to_le_bytes());
        w.extend(2u16.to_le_bytes());
        w.extend(16u16.to_le_bytes());
        w.extend(b"data");
        w.extend(data_len.to_le_bytes());
        for i in 0..samples {
            w.extend((((i % 100) as i16 - 50) * 300).to_le_bytes());
        }
        w
    }

    #[test]
    fn broken_uploads_are_refused_with_a_reason_and_leave_nothing_behind() {
        let fx = Fixture::new();
        let good = example("ads/coffee.mp3");
        let cases: Vec<(Vec<u8>, &str, &str)> = vec![
            (wav_bytes(), "jingle.mp3", "WAV"),
            (good[..good.len() / 2].to_vec(), "coffee-cut.mp3", "truncated"),
            (Vec::new(), "empty.mp3", "empty"),
        ];
        for (bytes, name, words) in cases {
            let (temp, result) = fx.ingest_bytes(&bytes, name, MediaKind::Ad);
            let err = result.expect_err(name);
            assert!(matches!(err, PublisherError::NotMp3 { .. }), "{name}: {err:?}");
            let text = err.to_string();
            assert!(text.contains(words) && text.contains(name), "{name}: {text}");
            assert!(!temp.exists(), "{name}: the temporary file stays");
            let ws = fx.ws();
            assert_eq!(files_in(&ws.uploads_dir()), ["tmp"], "{name}");
            assert!(files_in(&ws.uploads_tmp_dir()).is_empty(), "{name}");
            assert_eq!(fx.library_rows(), 0, "{name}");
        }
    }

    #[test]
    fn an_upload_outside_the_uploads_folder_is_neither_read_nor_removed() {
        let fx = Fixture::new();
        let outside = fx.data.root().join("elsewhere.mp3");
        fs::write(&outside, example("ads/coffee.mp3")).unwrap();
        let err = fx
            .ws()
            .ingest(
                &outside,
                "x.mp3",
                MediaKind::Ad,
                "alice",
                at("2026-12-01T09:00:00Z"),
            )
            .unwrap_err();
        assert!(err.to_string().contains("not in"), "{err}");
        assert!(outside.exists());
        assert_eq!(fx.library_rows(), 0);
    }

    #[test]
    fn an_accepted_upload_is_stored_by_content_id_and_labelled_from_its_name() {
        let fx = Fixture::new();
        let bytes = example("music/tone-a.mp3");
        let (temp, result) =
            fx.ingest_bytes(&bytes, "C:\\music\\..\\x/../My \u{7}Song.mp3", MediaKind::Music);
        let media = result.unwrap();
        assert!(!temp.exists());
        assert_eq!(media.id, MediaId::of(&bytes));
        assert_eq!(media.file_name, "My Song.mp3");
        assert_eq!(media.title, "My Song");
        assert_eq!(media.added_by, "alice");
        assert_eq!(media.added_at, "2026-12-01T09:00:00Z");
        assert_eq!(media.size, bytes.len() as u64);
        assert!(
            media.duration_ms > 1000 && media.loudness_lufs.is_some(),
            "{media:?}"
        );
        let ws = fx.ws();
        assert_eq!(
            fs::read(ws.uploads_dir().join(media.id.file_name())).unwrap(),
            bytes
        );
        assert_eq!(ws.media(&media.id).unwrap(), media);
        assert_eq!(ws.media_bytes(&media.id).unwrap(), bytes);
        let json = serde_json::to_value(&media).unwrap();
        assert_eq!(json["id"], media.id.to_string());
        assert_eq!(json["kind"], "music");
    }

    #[test]
    fn an_id3_title_and_artist_label_the_upload() {
        fn frame(id: &[u8; 4], text: &str) -> Vec<u8> {
            let mut f = id.to_vec();
            f.extend(((text.len() + 1) as u32).to_be_bytes());
            f.extend([0, 0, 0]); // flags, then ISO-8859-1 text
            f.extend(text.as_bytes());
            f
        }
        let mut frames = frame(b"TIT2", "Tagged Title");
        frames.extend(frame(b"TPE1", "Tagged Artist"));
        let size = frames.len() as u32;
        let syncsafe = [
            (size >> 21) & 0x7f,
            (size >> 14) & 0x7f,
            (size >> 7) & 0x7f,
            size & 0x7f,
        ];
        let mut bytes = b"ID3\x03\x00\x00".to_vec();
        bytes.extend(syncsafe.map(|b| b as u8));
        bytes.extend(frames);
        bytes.extend(example("music/chords-b.mp3"));
        let fx = Fixture::new();
        let media = fx.ingest_bytes(&bytes, "chords.mp3", MediaKind::Music).1.unwrap();
        assert_eq!(media.title, "Tagged Title");
        assert_eq!(media.artist.as_deref(), Some("Tagged Artist"));
    }

    #[test]
    fn uploading_the_same_content_again_returns_the_existing_entry() {
        let fx = Fixture::new();
        let first = fx.upload("music/tone-a.mp3", MediaKind::Music);
        let (temp, again) = fx.ingest_bytes(&example("music/tone-a.mp3"), "copy.mp3", MediaKind::Ad);
        assert_eq!(again.unwrap(), first);
        assert!(!temp.exists());
        assert_eq!(fx.library_rows(), 1);
        let ws = fx.ws();
        assert_eq!(files_in(&ws.uploads_dir()), [first.id.file_name(), "tmp".into()]);
    }

    #[test]
    fn labels_are_checked_when_media_are_renamed() {
        let fx = Fixture::new();
        let ws = fx.ws();
        let m = fx.upload("music/tone-a.mp3", MediaKind::Music);
        ws.update_media(
            &m.id,
            "  Morning Tone ",
            Some(" Studio "),
            MediaKind::Announcement,
        )
        .unwrap();
        let after = ws.media(&m.id).unwrap();
        assert_eq!(
            (after.title.as_str(), after.artist.as_deref(), after.kind),
            ("Morning Tone", Some("Studio"), MediaKind::Announcement)
        );
        ws.update_media(&m.id, "Morning Tone", Some(" "), MediaKind::Music)
            .unwrap();
        assert_eq!(ws.media(&m.id).unwrap().artist, None);
        for (title, artist) in [
            (" ", None),
            ("a\u{0}b", None),
            (&*"x".repeat(201), None),
            ("ok", Some("\n")),
        ] {
            let err = ws
                .update_media(&m.id, title, artist, MediaKind::Music)
                .unwrap_err();
            assert!(matches!(err, PublisherError::BadRequest(_)), "{title:?}: {err}");
        }
        let unknown = MediaId::of(b"nothing");
        assert!(matches!(
            ws.update_media(&unknown, "t", None, MediaKind::Music),
            Err(PublisherError::NotFound(_))
        ));
        assert!(matches!(ws.media(&unknown), Err(PublisherError::NotFound(_))));
    }

    #[test]
    fn search_takes_like_wildcards_and_sql_as_plain_text() {
        let fx = Fixture::new();
        let ws = fx.ws();
        let a = fx.upload("music/tone-a.mp3", MediaKind::Music);
        let b = fx.upload("music/chords-b.mp3", MediaKind::Music);
        let c = fx.upload("ads/coffee.mp3", MediaKind::Ad);
        ws.update_media(&a.id, "100% Pure", Some("Studio"), MediaKind::Music)
            .unwrap();
        ws.update_media(&b.id, "Snake_case", None, MediaKind::Music)
            .unwrap();
        ws.update_media(&c.id, "1000 Pure Beans", None, MediaKind::Ad)
            .unwrap();
        let titles = |search: Option<&str>| -> Vec<String> {
            ws.library(search).unwrap().into_iter().map(|m| m.title).collect()
        };
        assert_eq!(titles(None), ["100% Pure", "1000 Pure Beans", "Snake_case"]);
        assert_eq!(titles(Some("%")), ["100% Pure"]);
        assert_eq!(titles(Some("0%")), ["100% Pure"]);
        assert_eq!(titles(Some("_")), ["Snake_case"]);
        assert_eq!(titles(Some("e_c")), ["Snake_case"]);
        assert_eq!(titles(Some("\\")), Vec::<String>::new());
        assert_eq!(titles(Some("PURE")), ["100% Pure", "1000 Pure Beans"]);
        assert_eq!(titles(Some("studio")), ["100% Pure"]);
        assert_eq!(titles(Some("coffee.mp3")), ["1000 Pure Beans"]);
        assert_eq!(titles(Some("'; DROP TABLE library; --")), Vec::<String>::new());
        assert_eq!(titles(Some("  ")).len(), 3);
        assert_eq!(fx.library_rows(), 3);
    }

    #[test]
    fn a_published_draft_is_signed_authored_by_the_user_and_labelled_from_the_library() {
        let fx = Fixture::new();
        let ws = fx.ws();
        let tone = fx.upload("music/tone-a.mp3", MediaKind::Music);
        let chords = fx.upload("music/chords-b.mp3", MediaKind::Music);
        let unused = fx.upload("ads/bread.mp3", MediaKind::Ad);
        ws.update_media(&tone.id, "Morning Tone", Some("Skycast Studio"), MediaKind::Music)
            .unwrap();
        let now = at("2026-12-05T10:00:00.750Z");
        let saved = ws
            .edit_draft("alice", now, |d| {
                d.program = day_program(&[&tone, &chords]);
                Ok(())
            })
            .unwrap();
        assert_eq!(
            ws.draft().unwrap(),
            saved,
            "the draft survives a round trip through the database"
        );
        assert!(ws.draft_differs_from_head().unwrap());
        let preview = ws.draft_manifest(&saved, "alice", now).unwrap();
        assert_eq!(preview.version(), 1);

        let published = ws.publish(&saved, "alice", "Winter music", now).unwrap();
        assert_eq!(
            (published.version, published.media_count, published.new_media),
            (1, 2, 2)
        );
        let m = fx.verified(1);
        assert_eq!(m.published_by, "alice");
        assert_eq!(m.published_at.to_string(), "2026-12-05T10:00:00Z");
        assert_eq!(m.expires_at.0 - m.published_at.0, Duration::days(30));
        assert_eq!(m.program, saved.program);
        let labels: Vec<(String, Option<String>)> = m
            .media
            .iter()
            .map(|e| (e.title.clone(), e.artist.clone()))
            .collect();
        assert_eq!(
            labels,
            [
                ("Morning Tone".to_string(), Some("Skycast Studio".to_string())),
                ("chords-b".to_string(), None)
            ]
        );
        assert!(m.media_entry(&unused.id).is_none(), "unreferenced media stay out");
        assert_eq!(preview.media, m.media);
        let history = fx.store().history().unwrap();
        assert_eq!(
            (history[0].author.as_str(), history[0].message.as_str()),
            ("alice", "Winter music")
        );
        let ids: BTreeSet<MediaId> = fx
            .store()
            .media_ids_in(&fx.store().head_commit().unwrap().unwrap())
            .unwrap()
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        assert_eq!(ids, BTreeSet::from([tone.id, chords.id]));

        assert_eq!(ws.draft().unwrap().base_version, Some(1));
        assert!(!ws.draft_differs_from_head().unwrap());
        assert_eq!(ws.head_manifest().unwrap().unwrap(), m);
    }

    #[test]
    fn publish_needs_a_message_and_a_usable_author() {
        let fx = Fixture::new();
        let ws = fx.ws();
        let draft = ws.draft().unwrap();
        let now = at("2026-12-05T10:00:00Z");
        for (author, message) in [
            ("alice", "  "),
            ("alice", &*"m".repeat(501)),
            ("<x>", "ok"),
            ("", "ok"),
        ] {
            let err = ws.publish(&draft, author, message, now).unwrap_err();
            assert!(matches!(err, PublisherError::BadRequest(_)), "{err}");
        }
        assert_eq!(ws.head_version().unwrap(), None);
    }

    #[test]
    fn saving_a_draft_names_what_is_wrong() {
        let fx = Fixture::new();
        let ws = fx.ws();
        let tone = fx.upload("music/tone-a.mp3", MediaKind::Music);
        let now = at("2026-12-05T10:00:00Z");
        let mut draft = ws.draft().unwrap();
        assert_eq!(draft, Draft::empty());
        draft.program = day_program(&[&tone]);
        draft.program.schedule[0].playlist = "night".into();
        let err = ws.save_draft(&draft, "alice", now).unwrap_err().to_string();
        assert!(
            err.contains("schedule[0].playlist") && err.contains("night"),
            "{err}"
        );

        let mut draft = ws.draft().unwrap();
        let stranger = MediaId::of(b"not uploaded");
        draft.program = day_program(&[&tone]);
        draft
            .program
            .playlists
            .get_mut("day")
            .unwrap()
            .items
            .push(stranger);
        let err = ws.save_draft(&draft, "alice", now).unwrap_err().to_string();
        assert!(
            err.contains("playlists.day.items[1]") && err.contains(&stranger.to_string()),
            "{err}"
        );

        draft.program = day_program(&[&tone]);
        draft.timezone = "Mars/Olympus".into();
        let err = ws.save_draft(&draft, "alice", now).unwrap_err().to_string();
        assert!(err.contains("Mars/Olympus"), "{err}");
        draft.timezone = DEFAULT_TIMEZONE.into();
        draft.valid_days = 0;
        assert!(ws
            .save_draft(&draft, "alice", now)
            .unwrap_err()
            .to_string()
            .contains("valid_days"));

        let err = ws
            .edit_draft("alice", now, |d| {
                d.program = day_program(&[&tone]);
                Err(PublisherError::BadRequest("changed my mind".into()))
            })
            .unwrap_err();
        assert!(err.to_string().contains("changed my mind"));
        assert_eq!(ws.draft().unwrap(), Draft::empty(), "a failed edit saves nothing");
        assert!(!ws.draft_differs_from_head().unwrap());
    }

    #[test]
    fn an_approved_request_is_published_with_the_requester_as_author() {
        let fx = Fixture::new();
        let ws = fx.ws();
        assert!(!ws.review_required().unwrap());
        ws.set_review_required(true).unwrap();
        assert!(ws.review_required().unwrap());
        let tone = fx.upload("music/tone-a.mp3", MediaKind::Music);
        let now = at("2026-12-05T10:00:00Z");
        let draft = ws
            .edit_draft("bob", now, |d| {
                d.program = day_program(&[&tone]);
                Ok(())
            })
            .unwrap();
        let id = ws.request_publish(&draft, "bob", "New playlist", now).unwrap();
        assert_eq!(ws.head_version().unwrap(), None, "a request publishes nothing");
        let pending = ws.requests().unwrap();
        assert_eq!((pending[0].id, pending[0].status.as_str()), (id, "pending"));
        assert_eq!(ws.request_draft(id).unwrap(), draft);

        let later = at("2026-12-05T11:00:00Z");
        let published = ws.approve(id, "admin", later).unwrap();
        assert_eq!(published.version, 1);
        assert_eq!(fx.verified(1).published_by, "bob");
        let history = fx.store().history().unwrap();
        assert_eq!(history[0].author, "bob");
        assert_eq!(history[0].message, "New playlist (approved by admin)");
        let decided = &ws.requests().unwrap()[0];
        assert_eq!(decided.status, "approved");
        assert_eq!(decided.decided_by.as_deref(), Some("admin"));
        assert_eq!(decided.decided_at.as_deref(), Some("2026-12-05T11:00:00Z"));
        assert_eq!(decided.version, Some(1));
        assert!(matches!(
            ws.approve(id, "admin", later),
            Err(PublisherError::Conflict(_))
        ));
        assert!(matches!(
            ws.reject(id, "admin", later),
            Err(PublisherError::Conflict(_))
        ));
        assert!(matches!(
            ws.approve(99, "admin", later),
            Err(PublisherError::NotFound(_))
        ));
        assert_eq!(ws.head_version().unwrap(), Some(1));
    }

    #[test]
    fn a_rejected_request_leaves_head_unchanged() {
        let fx = Fixture::new();
        let ws = fx.ws();
        let tone = fx.upload("music/tone-a.mp3", MediaKind::Music);
        let chords = fx.upload("music/chords-b.mp3", MediaKind::Music);
        let now = at("2026-12-05T10:00:00Z");
        let v1 = ws
            .edit_draft("admin", now, |d| {
                d.program = day_program(&[&tone]);
                Ok(())
            })
            .unwrap();
        ws.publish(&v1, "admin", "First", now).unwrap();
        let edited = ws
            .edit_draft("bob", now, |d| {
                d.program = day_program(&[&tone, &chords]);
                Ok(())
            })
            .unwrap();
        let id = ws.request_publish(&edited, "bob", "Add chords", now).unwrap();
        ws.reject(id, "admin", now).unwrap();
        assert_eq!(ws.head_version().unwrap(), Some(1));
        assert_eq!(fx.verified(1).program, v1.program);
        let request = ws.request(id).unwrap();
        assert_eq!((request.status.as_str(), request.version), ("rejected", None));
        let err = ws.approve(id, "admin", now).unwrap_err().to_string();
        assert!(err.contains("already rejected by admin"), "{err}");
        assert_eq!(fx.store().history().unwrap().len(), 1);
    }

    #[test]
    fn an_interrupt_publishes_head_plus_it_and_not_the_unpublished_draft() {
        let fx = Fixture::new();
        let ws = fx.ws();
        let tone = fx.upload("music/tone-a.mp3", MediaKind::Music);
        let chords = fx.upload("music/chords-b.mp3", MediaKind::Music);
        let alarm = fx.upload("urgent/evacuation.mp3", MediaKind::Urgent);
        let now = at("2026-12-05T10:00:00Z");
        let v1 = ws
            .edit_draft("admin", now, |d| {
                d.program = day_program(&[&tone]);
                Ok(())
            })
            .unwrap();
        ws.publish(&v1, "admin", "First", now).unwrap();
        // An unpublished change: a second playlist.
        ws.edit_draft("bob", now, |d| {
            d.program.playlists.insert(
                "evening".into(),
                skycast_schema::Playlist {
                    order: Default::default(),
                    items: vec![chords.id],
                },
            );
            Ok(())
        })
        .unwrap();

        let refused = [
            (interrupt("x", &alarm, &["paris"], None), "paris"),
            (interrupt("x", &alarm, &["tag:nowhere"], None), "tag:nowhere"),
            (interrupt("x", &alarm, &[], None), "no shop"),
            (interrupt("Fire!", &alarm, &["all"], None), "cannot be added"),
            (
                interrupt("x", &alarm, &["all"], Some("2026-12-05T09:00:00Z")),
                "past",
            ),
            (
                Interrupt {
                    media: MediaId::of(b"unknown"),
                    ..interrupt("x", &alarm, &["all"], None)
                },
                "not in the library",
            ),
        ];
        for (int, words) in refused {
            let err = ws
                .publish_interrupt(int, "carol", "Alarm", now)
                .unwrap_err()
                .to_string();
            assert!(err.contains(words), "expected `{words}` in {err}");
        }
        assert_eq!(ws.head_version().unwrap(), Some(1));

        let fire = interrupt("fire", &alarm, &["tag:pilot"], Some("2026-12-05T12:00:00Z"));
        let published = ws
            .publish_interrupt(fire.clone(), "carol", "Evacuate", now)
            .unwrap();
        assert_eq!(published.version, 2);
        let m = fx.verified(2);
        let mut expected = v1.program.clone();
        expected.interrupts.push(fire.clone());
        assert_eq!(
            m.program, expected,
            "head's content plus the interrupt, no draft edits"
        );
        assert_eq!(m.published_by, "carol");
        assert!(m.media_entry(&chords.id).is_none());
        assert_eq!(m.media_entry(&alarm.id).unwrap().kind, MediaKind::Urgent);

        let draft = ws.draft().unwrap();
        assert_eq!(draft.base_version, Some(2));
        assert!(draft.program.playlists.contains_key("evening"));
        assert_eq!(draft.program.interrupts, std::slice::from_ref(&fire));
        let err = ws
            .publish_interrupt(fire.clone(), "carol", "Again", now)
            .unwrap_err();
        assert!(err.to_string().contains("already published"), "{err}");

        ws.publish(&draft, "bob", "Evening music", now).unwrap();
        let m = fx.verified(3);
        assert!(m.program.playlists.contains_key("evening"));
        assert_eq!(
            m.program.interrupts,
            [fire],
            "the draft publish keeps the interrupt"
        );
    }

    #[test]
    fn an_interrupt_needs_a_published_version() {
        let fx = Fixture::new();
        let alarm = fx.upload("urgent/evacuation.mp3", MediaKind::Urgent);
        let err = fx
            .ws()
            .publish_interrupt(
                interrupt("fire", &alarm, &["all"], None),
                "carol",
                "Evacuate",
                at("2026-12-05T10:00:00Z"),
            )
            .unwrap_err();
        assert!(matches!(err, PublisherError::NothingPublished), "{err}");
    }

    #[test]
    fn rollback_replaces_the_draft_with_the_new_head() {
        let fx = Fixture::new();
        let ws = fx.ws();
        let tone = fx.upload("music/tone-a.mp3", MediaKind::Music);
        let chords = fx.upload("music/chords-b.mp3", MediaKind::Music);
        let now = at("2026-12-05T10:00:00Z");
        for tracks in [vec![&tone], vec![&tone, &chords]] {
            let d = ws
                .edit_draft("admin", now, |d| {
                    d.program = day_program(&tracks);
                    Ok(())
                })
                .unwrap();
            ws.publish(&d, "admin", "Next", now).unwrap();
        }
        ws.edit_draft("bob", now, |d| {
            d.valid_days = 7;
            Ok(())
        })
        .unwrap();
        assert!(ws.draft_differs_from_head().unwrap());

        let published = ws.rollback(1, "admin", now).unwrap();
        assert_eq!(published.version, 3);
        assert_eq!(fx.verified(3).program, fx.verified(1).program);
        let draft = ws.draft().unwrap();
        assert_eq!(draft.base_version, Some(3));
        assert_eq!(draft.valid_days, 30);
        assert_eq!(draft.program, fx.verified(1).program);
        assert!(!ws.draft_differs_from_head().unwrap());
    }

    #[test]
    fn ended_interrupts_are_dropped_when_publishing() {
        let fx = Fixture::new();
        let ws = fx.ws();
        let tone = fx.upload("music/tone-a.mp3", MediaKind::Music);
        let alarm = fx.upload("urgent/evacuation.mp3", MediaKind::Urgent);
        let coffee = fx.upload("ads/coffee.mp3", MediaKind::Ad);
        let created = at("2026-12-05T08:00:00Z");
        let draft = ws
            .edit_draft("admin", created, |d| {
                d.program = day_program(&[&tone]);
                d.program.interrupts = vec![
                    interrupt("old", &coffee, &["all"], Some("2026-12-05T09:00:00Z")),
                    interrupt("live", &alarm, &["main"], Some("2026-12-05T12:00:00Z")),
                ];
                Ok(())
            })
            .unwrap();
        let now = at("2026-12-05T10:00:00Z");
        assert_eq!(
            ws.draft_manifest(&draft, "admin", now)
                .unwrap()
                .program
                .interrupts
                .len(),
            1
        );
        ws.publish(&draft, "admin", "Later", now).unwrap();
        let m = fx.verified(1);
        let ids: Vec<&str> = m.program.interrupts.iter().map(|i| i.id.as_str()).collect();
        assert_eq!(ids, ["live"]);
        assert!(
            m.media_entry(&coffee.id).is_none(),
            "only the ended interrupt used it"
        );
        let saved: Vec<String> = ws
            .draft()
            .unwrap()
            .program
            .interrupts
            .into_iter()
            .map(|i| i.id)
            .collect();
        assert_eq!(saved, ["live"]);
        assert!(!ws.draft_differs_from_head().unwrap());
    }

    #[test]
    fn an_upload_changed_on_disk_fails_publish_and_commits_nothing() {
        let fx = Fixture::new();
        let ws = fx.ws();
        let tone = fx.upload("music/tone-a.mp3", MediaKind::Music);
        let now = at("2026-12-05T10:00:00Z");
        let draft = ws
            .edit_draft("alice", now, |d| {
                d.program = day_program(&[&tone]);
                Ok(())
            })
            .unwrap();
        let path = ws.uploads_dir().join(tone.id.file_name());
        let mut bytes = fs::read(&path).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x55;
        fs::write(&path, &bytes).unwrap();
        let err = ws.publish(&draft, "alice", "Tampered", now).unwrap_err();
        assert!(matches!(err, PublisherError::Conflict(_)), "{err:?}");
        assert!(err.to_string().contains("changed on disk"), "{err}");
        assert_eq!(fx.store().head_commit().unwrap().map(|c| c.id()), None);
        assert!(fx.store().history().unwrap().is_empty());

        fs::remove_file(&path).unwrap();
        let err = ws
            .publish(&draft, "alice", "Missing", now)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("neither in the store nor in the uploads folder"),
            "{err}"
        );
    }

    #[test]
    fn a_draft_or_request_older_than_the_head_cannot_undo_it() {
        let fx = Fixture::new();
        let ws = fx.ws();
        let tone = fx.upload("music/tone-a.mp3", MediaKind::Music);
        let alarm = fx.upload("urgent/evacuation.mp3", MediaKind::Urgent);
        let now = at("2026-12-05T10:00:00Z");
        let v1 = ws
            .edit_draft("admin", now, |d| {
                d.program = day_program(&[&tone]);
                Ok(())
            })
            .unwrap();
        ws.publish(&v1, "admin", "First", now).unwrap();
        let snapshot = ws.draft().unwrap();
        let id = ws.request_publish(&snapshot, "bob", "Same again", now).unwrap();
        ws.publish_interrupt(
            interrupt("fire", &alarm, &["all"], None),
            "carol",
            "Evacuate",
            now,
        )
        .unwrap();

        let err = ws.approve(id, "admin", now).unwrap_err();
        assert!(
            matches!(&err, PublisherError::Conflict(m) if m.contains("version 1") && m.contains("version 2")),
            "{err}"
        );
        assert_eq!(ws.request(id).unwrap().status, "pending");
        let err = ws.request_publish(&snapshot, "bob", "Stale", now).unwrap_err();
        assert!(matches!(err, PublisherError::Conflict(_)), "{err}");
        let err = ws.publish(&snapshot, "bob", "Stale", now).unwrap_err();
        assert!(matches!(err, PublisherError::Conflict(_)), "{err}");
        assert_eq!(ws.head_version().unwrap(), Some(2));
        assert_eq!(fx.verified(2).program.interrupts.len(), 1);
    }

    #[test]
    fn media_published_by_the_cli_join_the_library() {
        let fx = Fixture::new();
        let planning = Path::new(env!("CARGO_MANIFEST_DIR")).join("../content-example/planning.yaml");
        let now = at("2026-12-05T10:00:00Z");
        crate::publish::publish_planning(&fx.data, &planning, "dave", Some("Pilot"), now).unwrap();
        let ws = fx.ws();
        let library = ws.library(None).unwrap();
        let head = ws.head_manifest().unwrap().unwrap();
        assert_eq!(library.len(), head.media.len());
        let coffee = library.iter().find(|m| m.title == "Coffee 2-for-1").unwrap();
        assert_eq!((coffee.kind, coffee.added_by.as_str()), (MediaKind::Ad, "dave"));
        assert_eq!(coffee.added_at, "2026-12-05T10:00:00Z");
        assert_eq!(coffee.file_name, coffee.id.file_name());
        assert_eq!(ws.media_bytes(&coffee.id).unwrap(), example("ads/coffee.mp3"));
        assert_eq!(ws.library(None).unwrap(), library, "imported once");

        // The draft starts from the head, and publishing it needs no upload.
        let draft = ws.draft().unwrap();
        assert_eq!((draft.base_version, draft.valid_days), (Some(1), 30));
        assert_eq!(draft.program, head.program);
        let published = ws.publish(&draft, "erin", "Same from the web", now).unwrap();
        assert_eq!((published.version, published.new_media), (2, 0));
        assert_eq!(fx.verified(2).program, head.program);
        assert!(files_in(&ws.uploads_dir()).iter().all(|n| n == "tmp"));
    }
}
