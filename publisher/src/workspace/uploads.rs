//! The uploads folder: files received into `uploads/tmp/` under random names,
//! decoded completely as MP3, then renamed to `uploads/<blake3>.mp3` and recorded.

use std::fs::{self, File};
use std::io::Read;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use skycast_schema::{Limits, MediaId, MediaKind};

use super::{clean_label, rfc3339, Workspace, MAX_LABEL_CHARS};
use crate::db::LibraryMedia;
use crate::error::{PublisherError, Result};
use crate::media::{inspect_mp3, Mp3Info};

/// The title a file gets without an ID3 title: its name without the extension.
fn title_from_file_name(label: &str) -> String {
    match label.rsplit_once('.') {
        Some((stem, _)) if !stem.trim().is_empty() => stem.trim().to_string(),
        _ => label.to_string(),
    }
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

impl Workspace<'_> {
    /// Where accepted uploads live, as `<blake3>.mp3`.
    pub fn uploads_dir(&self) -> PathBuf {
        self.data.root().join("uploads")
    }

    /// Where uploads are written before `ingest` checks them. Created on demand; if
    /// that fails, writing the upload there fails with the reason.
    pub fn uploads_tmp_dir(&self) -> PathBuf {
        let dir = self.uploads_dir().join("tmp");
        if !dir.is_dir() {
            if let Err(e) = crate::data_dir::create_private_dir(&dir) {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot create the uploads folder");
            }
        }
        dir
    }

    /// A new, empty, uniquely named file in `uploads_tmp_dir()` to stream an upload
    /// into before calling `ingest`.
    pub fn new_upload_file(&self) -> Result<(PathBuf, File)> {
        let dir = self.uploads_tmp_dir();
        crate::data_dir::create_private_dir(&dir)?;
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

    pub(super) fn record_checked(
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
        let media = LibraryMedia {
            id: *id,
            title,
            artist,
            kind,
            duration_ms: info.duration_ms,
            size: *size,
            loudness_lufs: info.loudness_lufs,
            file_name: label.clone(),
            added_by: clean_label(by, MAX_LABEL_CHARS),
            added_at: rfc3339(now),
        };
        if let Err(e) = self.db.add_media(std::slice::from_ref(&media)) {
            // Nothing names the file: remove it so a failure stores nothing.
            if self.find_media(id).ok().flatten().is_none() {
                let _ = fs::remove_file(&dest);
            }
            return Err(e.into());
        }
        self.find_media(id)?
            .ok_or_else(|| PublisherError::Internal(format!("media {id} vanished after its upload")))
    }
}
