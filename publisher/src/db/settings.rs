//! The `settings` table: the web UI's key-value settings, each read and written
//! through its own typed method (the keys stay in this module).

use rusqlite::{params, OptionalExtension};

use super::{Db, DbError};

/// Whether publishing from the draft needs an admin's approval: `true` or `false`.
const REVIEW_REQUIRED: &str = "review_required";
/// The commit of `main` whose media the library last imported.
const LIBRARY_IMPORTED_HEAD: &str = "library_imported_head";
/// `serve --offline-after` of the last `serve` started, in seconds: `fleet` on
/// the command line judges UP/KO as the server does.
const SERVE_OFFLINE_AFTER: &str = "serve_offline_after_secs";

impl Db {
    /// Whether publishing from the draft needs an admin's approval (off until set).
    pub fn review_required(&self) -> Result<bool, DbError> {
        Ok(self.setting(REVIEW_REQUIRED)?.as_deref() == Some("true"))
    }

    pub fn set_review_required(&self, on: bool) -> Result<(), DbError> {
        self.set_setting(REVIEW_REQUIRED, if on { "true" } else { "false" })
    }

    /// The commit (hex) of `main` whose media the library last imported.
    pub fn library_imported_head(&self) -> Result<Option<String>, DbError> {
        self.setting(LIBRARY_IMPORTED_HEAD)
    }

    pub fn set_library_imported_head(&self, commit: &str) -> Result<(), DbError> {
        self.set_setting(LIBRARY_IMPORTED_HEAD, commit)
    }

    /// The `--offline-after` of the last `serve` started, if any.
    pub fn serve_offline_after_secs(&self) -> Result<Option<u64>, DbError> {
        Ok(self.setting(SERVE_OFFLINE_AFTER)?.and_then(|v| v.parse().ok()))
    }

    pub fn set_serve_offline_after_secs(&self, secs: u64) -> Result<(), DbError> {
        self.set_setting(SERVE_OFFLINE_AFTER, &secs.to_string())
    }

    fn setting(&self, key: &str) -> Result<Option<String>, DbError> {
        let value = self.read(|c| {
            c.query_row("SELECT value FROM settings WHERE key = ?1", params![key], |r| {
                r.get(0)
            })
            .optional()
        })?;
        Ok(value)
    }

    fn set_setting(&self, key: &str, value: &str) -> Result<(), DbError> {
        self.write(|c| {
            c.execute(
                "INSERT INTO settings (key, value) VALUES (?1, ?2)
                 ON CONFLICT (key) DO UPDATE SET value = ?2",
                params![key, value],
            )
        })?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::open;

    #[test]
    fn settings_start_unset_and_keep_the_last_value() {
        let (_dir, db) = open();
        assert!(!db.review_required().unwrap());
        assert_eq!(db.library_imported_head().unwrap(), None);
        db.set_review_required(true).unwrap();
        db.set_library_imported_head("abc").unwrap();
        db.set_library_imported_head("def").unwrap();
        assert!(db.review_required().unwrap());
        assert_eq!(db.library_imported_head().unwrap().as_deref(), Some("def"));
        db.set_review_required(false).unwrap();
        assert!(!db.review_required().unwrap());
        assert_eq!(db.serve_offline_after_secs().unwrap(), None);
        db.set_serve_offline_after_secs(6).unwrap();
        assert_eq!(db.serve_offline_after_secs().unwrap(), Some(6));
    }
}
