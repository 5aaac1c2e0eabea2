//! The media library: what uploads and published versions brought in, searched,
//! relabelled and read back; the head's media are imported once per move of `main`.

use std::path::PathBuf;

use skycast_schema::{Limits, MediaId, MediaKind};

use super::{clean_label, read_bounded, verified_manifest, Workspace, MAX_LABEL_CHARS};
use crate::db::LibraryMedia;
use crate::error::{PublisherError, Result};

impl Workspace<'_> {
    /// The library sorted by title. `search` matches title, artist or file name,
    /// case-insensitively (ASCII) and literally (`%` and `_` are plain characters).
    /// Media of the published head not yet listed are imported first.
    pub fn library(&self, search: Option<&str>) -> Result<Vec<LibraryMedia>> {
        self.import_head()?;
        let search = search
            .map(|s| clean_label(s, MAX_LABEL_CHARS))
            .filter(|s| !s.is_empty());
        Ok(self.db.library_media(search.as_deref())?)
    }

    /// One media of the library; `NotFound` when it is not there.
    pub fn media(&self, id: &MediaId) -> Result<LibraryMedia> {
        self.import_head()?;
        self.find_media(id)?
            .ok_or_else(|| PublisherError::NotFound(format!("media {id} is not in the library")))
    }

    /// The file name a media is known by in the library, without importing the
    /// head first (for download names: a media not listed yet goes by its id).
    pub fn media_file_name(&self, id: &MediaId) -> Result<Option<String>> {
        Ok(self.find_media(id)?.map(|m| m.file_name))
    }

    pub(super) fn find_media(&self, id: &MediaId) -> Result<Option<LibraryMedia>> {
        Ok(self.db.find_media(id)?)
    }

    /// Adds the media of the published head that the library lacks (published by
    /// the CLI, or before the library existed). Their files stay in the store.
    /// Only when `main` has moved since the last import: most pages call this, and
    /// reading, verifying and parsing the head each time would be wasted work.
    pub(super) fn import_head(&self) -> Result<()> {
        let store = self.data.store()?;
        let Some(commit) = store.head()? else {
            return Ok(());
        };
        let head = commit.to_string();
        if self.db.library_imported_head()?.as_deref() == Some(head.as_str()) {
            return Ok(());
        }
        let manifest = verified_manifest(self.data, &store, commit)?;
        let media: Vec<LibraryMedia> = manifest
            .media
            .iter()
            .map(|m| LibraryMedia {
                id: m.id,
                title: m.title.clone(),
                artist: m.artist.clone(),
                kind: m.kind,
                duration_ms: m.duration_ms,
                size: m.size,
                loudness_lufs: m.loudness_lufs,
                file_name: m.id.file_name(),
                added_by: manifest.published_by.clone(),
                added_at: manifest.published_at.to_string(),
            })
            .collect();
        // Media the library has keep their labels; the import and its mark commit together.
        Ok(self.db.transaction(|tx| {
            tx.add_media(&media)?;
            tx.set_library_imported_head(&head)
        })?)
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
        if !self.db.update_media(id, title.trim(), artist, kind)? {
            return Err(PublisherError::NotFound(format!(
                "media {id} is not in the library"
            )));
        }
        Ok(())
    }

    /// The file holding a media's bytes, to stream it without reading it whole:
    /// `uploads/<id>.mp3` for an upload, else the store's media cache (written
    /// once from the blob of the head, or of any older version).
    pub fn media_path(&self, id: &MediaId) -> Result<PathBuf> {
        let upload = self.uploads_dir().join(id.file_name());
        if upload.is_file() {
            return Ok(upload);
        }
        let cached = crate::store::media_cache_dir_of(&self.data.store_path()).join(id.file_name());
        if cached.is_file() {
            return Ok(cached);
        }
        let store = self.data.store()?;
        if let Some(commit) = store.head()? {
            if let Some((_, blob)) = store.media_ids_in(commit)?.into_iter().find(|(m, _)| m == id) {
                return Ok(store.media_file(id, blob)?);
            }
        }
        match store.media_index()?.get(id) {
            Some(blob) => Ok(store.media_file(id, *blob)?),
            None => Err(PublisherError::NotFound(format!(
                "media {id} is neither in the uploads folder nor in the store"
            ))),
        }
    }

    /// The bytes of a media (at most `Limits::max_media_bytes`), read whole from
    /// [`Workspace::media_path`]: for tests and small files; pages stream the path.
    pub fn media_bytes(&self, id: &MediaId) -> Result<Vec<u8>> {
        let path = self.media_path(id)?;
        read_bounded(&path, Limits::default().max_media_bytes)?
            .ok_or_else(|| PublisherError::NotFound(format!("media {id}: `{}` is gone", path.display())))
    }
}
