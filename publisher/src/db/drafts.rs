//! The `draft` table: at most one row, the web UI's shared draft as JSON (the
//! workspace owns its shape) with the version it was based on.

use chrono::{DateTime, Utc};
use rusqlite::{params, OptionalExtension};

use super::{timestamp, Db, DbError};

/// The saved draft as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedDraft {
    /// The published version the draft is based on; `None` before the first publish.
    pub base_version: Option<u64>,
    /// The draft as JSON.
    pub body: String,
}

impl Db {
    /// The saved draft, if any.
    pub fn saved_draft(&self) -> Result<Option<SavedDraft>, DbError> {
        let row: Option<(Option<i64>, String)> = self.read(|c| {
            c.query_row("SELECT base_version, body FROM draft WHERE id = 1", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()
        })?;
        Ok(row.map(|(base, body)| SavedDraft {
            base_version: base.and_then(|b| u64::try_from(b).ok()),
            body,
        }))
    }

    /// Saves the draft, replacing the saved one.
    pub fn write_draft(&self, draft: &SavedDraft, by: &str, now: DateTime<Utc>) -> Result<(), DbError> {
        let base = draft.base_version.map(|v| i64::try_from(v).unwrap_or(i64::MAX));
        self.write(|c| {
            c.execute(
                "INSERT INTO draft (id, base_version, body, updated_by, updated_at)
                 VALUES (1, ?1, ?2, ?3, ?4)
                 ON CONFLICT (id) DO UPDATE SET base_version = ?1, body = ?2, updated_by = ?3, updated_at = ?4",
                params![base, draft.body, by, timestamp(now)],
            )
        })?;
        Ok(())
    }

    /// Drops the saved draft.
    pub fn delete_draft(&self) -> Result<(), DbError> {
        self.write(|c| c.execute("DELETE FROM draft", []))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::open;
    use super::*;

    #[test]
    fn the_one_draft_is_replaced_then_dropped() {
        let (_dir, db) = open();
        assert_eq!(db.saved_draft().unwrap(), None);
        let now = Utc::now();
        for (base, body) in [(None, "{}"), (Some(3), "{\"a\":1}")] {
            let draft = SavedDraft {
                base_version: base,
                body: body.into(),
            };
            db.write_draft(&draft, "alice", now).unwrap();
            assert_eq!(db.saved_draft().unwrap(), Some(draft));
        }
        db.delete_draft().unwrap();
        assert_eq!(db.saved_draft().unwrap(), None);
    }
}
