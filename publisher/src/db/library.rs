//! The `library` table: every media file the web UI knows (uploaded, or imported
//! from a published version), keyed by content id, with its labels.

use rusqlite::types::Type;
use rusqlite::{params, OptionalExtension, Row};
use skycast_schema::{MediaEntry, MediaId, MediaKind};

use super::{Db, DbError};

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

const MEDIA_COLUMNS: &str =
    "id, title, artist, kind, duration_ms, size, loudness_lufs, file_name, added_by, added_at";

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

impl Db {
    /// The library sorted by title. `search` matches title, artist or file name
    /// anywhere, case-insensitively (ASCII) and literally (`%`, `_` and `\` are
    /// plain characters).
    pub fn library_media(&self, search: Option<&str>) -> Result<Vec<LibraryMedia>, DbError> {
        let pattern = search.map(like_pattern);
        let sql = format!(
            "SELECT {MEDIA_COLUMNS} FROM library
             WHERE ?1 IS NULL OR title LIKE ?1 ESCAPE '\\' OR artist LIKE ?1 ESCAPE '\\'
                OR file_name LIKE ?1 ESCAPE '\\'
             ORDER BY title COLLATE NOCASE, id"
        );
        let media = self.read(|c| {
            c.prepare(&sql)?
                .query_map(params![pattern], media_from_row)?
                .collect()
        })?;
        Ok(media)
    }

    /// The library's entry for `id`, if it has one.
    pub fn find_media(&self, id: &MediaId) -> Result<Option<LibraryMedia>, DbError> {
        let media = self.read(|c| {
            c.query_row(
                &format!("SELECT {MEDIA_COLUMNS} FROM library WHERE id = ?1"),
                params![id.to_string()],
                media_from_row,
            )
            .optional()
        })?;
        Ok(media)
    }

    /// Adds each media whose id the library lacks, in one transaction; media it
    /// already has keep their labels.
    pub fn add_media(&self, media: &[LibraryMedia]) -> Result<(), DbError> {
        if media.is_empty() {
            return Ok(());
        }
        self.transaction(|tx| {
            tx.write(|c| {
                let mut insert = c.prepare(
                    "INSERT OR IGNORE INTO library
                     (id, title, artist, kind, duration_ms, size, loudness_lufs, file_name, added_by, added_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                )?;
                for m in media {
                    insert.execute(params![
                        m.id.to_string(),
                        m.title,
                        m.artist,
                        m.kind.as_str(),
                        i64::try_from(m.duration_ms).unwrap_or(i64::MAX),
                        i64::try_from(m.size).unwrap_or(i64::MAX),
                        m.loudness_lufs,
                        m.file_name,
                        m.added_by,
                        m.added_at,
                    ])?;
                }
                Ok(())
            })?;
            Ok(())
        })
    }

    /// Relabels a media; false when the library has no such id.
    pub fn update_media(
        &self,
        id: &MediaId,
        title: &str,
        artist: Option<&str>,
        kind: MediaKind,
    ) -> Result<bool, DbError> {
        let changed = self.write(|c| {
            c.execute(
                "UPDATE library SET title = ?2, artist = ?3, kind = ?4 WHERE id = ?1",
                params![id.to_string(), title, artist, kind.as_str()],
            )
        })?;
        Ok(changed > 0)
    }

    /// How many media the library holds.
    pub fn library_len(&self) -> Result<u64, DbError> {
        let count: i64 = self.read(|c| c.query_row("SELECT COUNT(*) FROM library", [], |r| r.get(0)))?;
        Ok(u64::try_from(count).unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::open;
    use super::*;

    fn media(bytes: &[u8], title: &str, kind: MediaKind) -> LibraryMedia {
        LibraryMedia {
            id: MediaId::of(bytes),
            title: title.into(),
            artist: None,
            kind,
            duration_ms: 1000,
            size: bytes.len() as u64,
            loudness_lufs: Some(-14.0),
            file_name: format!("{title}.mp3"),
            added_by: "alice".into(),
            added_at: "2026-12-01T09:00:00Z".into(),
        }
    }

    #[test]
    fn adding_known_media_keeps_their_labels() {
        let (_dir, db) = open();
        let a = media(b"a", "Alpha", MediaKind::Music);
        db.add_media(std::slice::from_ref(&a)).unwrap();
        assert!(db
            .update_media(&a.id, "Renamed", Some("Studio"), MediaKind::Ad)
            .unwrap());
        let b = media(b"b", "beta", MediaKind::Urgent);
        db.add_media(&[a.clone(), b.clone()]).unwrap();
        assert_eq!(db.library_len().unwrap(), 2);
        let found = db.find_media(&a.id).unwrap().unwrap();
        assert_eq!((found.title.as_str(), found.kind), ("Renamed", MediaKind::Ad));
        assert_eq!(db.find_media(&b.id).unwrap().unwrap(), b);
        assert!(db.find_media(&MediaId::of(b"c")).unwrap().is_none());
        assert!(!db
            .update_media(&MediaId::of(b"c"), "x", None, MediaKind::Music)
            .unwrap());
    }

    #[test]
    fn search_is_literal_and_sorted_by_title() {
        let (_dir, db) = open();
        db.add_media(&[
            media(b"1", "100% Pure", MediaKind::Music),
            media(b"2", "Snake_case", MediaKind::Music),
            media(b"3", "back\\slash", MediaKind::Music),
        ])
        .unwrap();
        let titles = |search: Option<&str>| -> Vec<String> {
            db.library_media(search)
                .unwrap()
                .into_iter()
                .map(|m| m.title)
                .collect()
        };
        assert_eq!(titles(None), ["100% Pure", "back\\slash", "Snake_case"]);
        assert_eq!(titles(Some("%")), ["100% Pure"]);
        assert_eq!(titles(Some("e_c")), ["Snake_case"]);
        assert_eq!(titles(Some("\\")), ["back\\slash"]);
        assert_eq!(titles(Some("SNAKE")), ["Snake_case"]);
    }
}
