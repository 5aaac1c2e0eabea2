//! `state.sqlite`: the small, durable bookkeeping of a puller (highest accepted
//! version, last error, last success, last sync stats, staleness, clock offset, and
//! the newest `published_at` accepted, below which the clock is never trusted).

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use serde::{Deserialize, Serialize};

use crate::sources::ServedBy;

#[derive(Debug, thiserror::Error)]
#[error("state database {path}: {source}: check the disk and permissions of the data directory")]
pub struct StateError {
    path: PathBuf,
    #[source]
    source: rusqlite::Error,
}

/// Numbers of the last successful sync.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastSync {
    pub version: u64,
    /// `swapped` or `up_to_date`.
    pub outcome: String,
    pub downloaded_media: u64,
    pub downloaded_bytes: u64,
    pub at: DateTime<Utc>,
    /// Which source served what (absent from state written before mirrors existed:
    /// read as empty).
    #[serde(default)]
    pub served_by: ServedBy,
}

/// Everything kept in `state.sqlite`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub highest_accepted: u64,
    pub last_error: Option<String>,
    pub last_error_at: Option<DateTime<Utc>>,
    pub last_success_at: Option<DateTime<Utc>>,
    pub last_sync: Option<LastSync>,
    pub stale_reason: Option<String>,
    pub clock_offset_ms: Option<i64>,
    /// The newest `published_at` of a version this puller installed.
    pub newest_published_at: Option<DateTime<Utc>>,
    /// Base URL of the server that answered the last sync's head; `None` when none did.
    pub server_in_use: Option<String>,
}

pub struct State {
    conn: Connection,
    path: PathBuf,
}

// A key-value table: a new key needs no migration, and a state file written before
// it simply lacks the row (read as `None`).
const KEYS: [&str; 9] = [
    "highest_accepted",
    "last_error",
    "last_error_at",
    "last_success_at",
    "last_sync",
    "stale_reason",
    "clock_offset_ms",
    "newest_published_at",
    "server_in_use",
];

impl State {
    /// Opens (creating if needed) the state database.
    pub fn open(path: &Path) -> Result<State, StateError> {
        let err = |source| StateError {
            path: path.to_path_buf(),
            source,
        };
        let conn = Connection::open(path).map_err(err)?;
        conn.busy_timeout(Duration::from_secs(5)).map_err(err)?;
        // Default rollback journal with synchronous=FULL: every commit is durable.
        conn.execute_batch(
            "PRAGMA synchronous = FULL;
             CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value TEXT NOT NULL);",
        )
        .map_err(err)?;
        Ok(State {
            conn,
            path: path.to_path_buf(),
        })
    }

    /// Reads the database without creating it; an absent file is an empty state.
    pub fn read_only_snapshot(path: &Path) -> Result<Snapshot, StateError> {
        if !path.exists() {
            return Ok(Snapshot::default());
        }
        let err = |source| StateError {
            path: path.to_path_buf(),
            source,
        };
        let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(err)?;
        conn.busy_timeout(Duration::from_secs(5)).map_err(err)?;
        let has_table: Option<String> = conn
            .query_row(
                "SELECT name FROM sqlite_master WHERE type='table' AND name='state'",
                [],
                |r| r.get(0),
            )
            .optional()
            .map_err(err)?;
        if has_table.is_none() {
            return Ok(Snapshot::default());
        }
        State {
            conn,
            path: path.to_path_buf(),
        }
        .snapshot()
    }

    fn err(&self, source: rusqlite::Error) -> StateError {
        StateError {
            path: self.path.clone(),
            source,
        }
    }

    fn get(&self, key: &str) -> Result<Option<String>, StateError> {
        self.conn
            .query_row("SELECT value FROM state WHERE key = ?1", [key], |r| r.get(0))
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Sets (`Some`) or deletes (`None`) keys in one transaction.
    fn put(&mut self, pairs: &[(&str, Option<String>)]) -> Result<(), StateError> {
        let tx = self.conn.transaction().map_err(|e| StateError {
            path: self.path.clone(),
            source: e,
        })?;
        for (key, value) in pairs {
            let res = match value {
                Some(v) => tx.execute(
                    "INSERT INTO state (key, value) VALUES (?1, ?2)
                     ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                    params![key, v],
                ),
                None => tx.execute("DELETE FROM state WHERE key = ?1", params![key]),
            };
            res.map_err(|e| StateError {
                path: self.path.clone(),
                source: e,
            })?;
        }
        tx.commit().map_err(|e| StateError {
            path: self.path.clone(),
            source: e,
        })
    }

    pub fn snapshot(&self) -> Result<Snapshot, StateError> {
        let mut values = Vec::new();
        for key in KEYS {
            values.push(self.get(key)?);
        }
        let time = |v: &Option<String>| v.as_deref().and_then(|s| s.parse::<DateTime<Utc>>().ok());
        Ok(Snapshot {
            highest_accepted: values[0].as_deref().and_then(|s| s.parse().ok()).unwrap_or(0),
            last_error: values[1].clone(),
            last_error_at: time(&values[2]),
            last_success_at: time(&values[3]),
            last_sync: values[4].as_deref().and_then(|s| serde_json::from_str(s).ok()),
            stale_reason: values[5].clone(),
            clock_offset_ms: values[6].as_deref().and_then(|s| s.parse().ok()),
            newest_published_at: time(&values[7]),
            server_in_use: values[8].clone(),
        })
    }

    pub fn highest_accepted(&self) -> Result<u64, StateError> {
        Ok(self
            .get("highest_accepted")?
            .and_then(|s| s.parse().ok())
            .unwrap_or(0))
    }

    /// Records a successful sync. The highest accepted version never goes down.
    pub fn record_success(&mut self, sync: &LastSync) -> Result<(), StateError> {
        let highest = self.highest_accepted()?.max(sync.version);
        self.put(&[
            ("highest_accepted", Some(highest.to_string())),
            ("last_success_at", Some(sync.at.to_rfc3339())),
            ("last_sync", serde_json::to_string(sync).ok()),
            ("last_error", None),
            ("last_error_at", None),
            ("stale_reason", None),
        ])
    }

    pub fn record_error(&mut self, message: &str, at: DateTime<Utc>) -> Result<(), StateError> {
        self.put(&[
            ("last_error", Some(message.to_string())),
            ("last_error_at", Some(at.to_rfc3339())),
        ])
    }

    pub fn record_stale(&mut self, reason: &str) -> Result<(), StateError> {
        self.put(&[("stale_reason", Some(reason.to_string()))])
    }

    /// The newest `published_at` accepted so far; it never goes down.
    pub fn newest_published_at(&self) -> Result<Option<DateTime<Utc>>, StateError> {
        Ok(self
            .get("newest_published_at")?
            .and_then(|s| s.parse::<DateTime<Utc>>().ok()))
    }

    /// Records the `published_at` of an installed version, if newer than the newest.
    pub fn record_published_at(&mut self, at: DateTime<Utc>) -> Result<(), StateError> {
        if self.newest_published_at()?.is_some_and(|n| n >= at) {
            return Ok(());
        }
        self.put(&[("newest_published_at", Some(at.to_rfc3339()))])
    }

    /// Records which server answered the last head (`None`: none did).
    pub fn record_server_in_use(&mut self, url: Option<&str>) -> Result<(), StateError> {
        if self.get("server_in_use")?.as_deref() == url {
            return Ok(());
        }
        self.put(&[("server_in_use", url.map(str::to_string))])
    }

    pub fn record_clock_offset(&mut self, offset_ms: i64) -> Result<(), StateError> {
        self.put(&[("clock_offset_ms", Some(offset_ms.to_string()))])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_survives_reopening_and_highest_never_goes_down() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.sqlite");
        assert_eq!(State::read_only_snapshot(&path).unwrap(), Snapshot::default());
        assert!(
            !path.exists(),
            "a read-only snapshot must not create the database"
        );
        let at: DateTime<Utc> = "2026-11-22T09:00:00Z".parse().unwrap();
        {
            let mut s = State::open(&path).unwrap();
            s.record_error("boom", at).unwrap();
            s.record_stale("expired").unwrap();
            s.record_clock_offset(-1500).unwrap();
            let sync = LastSync {
                version: 5,
                outcome: "swapped".into(),
                downloaded_media: 2,
                downloaded_bytes: 10,
                at,
                served_by: ServedBy::default(),
            };
            s.record_success(&sync).unwrap();
            s.record_success(&LastSync { version: 3, ..sync }).unwrap();
            s.record_published_at(at).unwrap();
            s.record_published_at(at - chrono::Duration::days(1)).unwrap();
        }
        let snap = State::read_only_snapshot(&path).unwrap();
        assert_eq!(snap.highest_accepted, 5);
        assert_eq!(snap.last_error, None);
        assert_eq!(snap.stale_reason, None);
        assert_eq!(snap.clock_offset_ms, Some(-1500));
        assert_eq!(snap.last_success_at, Some(at));
        assert_eq!(snap.newest_published_at, Some(at), "never goes down");
        assert_eq!(snap.last_sync.unwrap().downloaded_media, 2);
    }

    #[test]
    fn state_written_before_sources_existed_still_reads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.sqlite");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(
                "CREATE TABLE state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
                 INSERT INTO state VALUES ('last_sync', '{\"version\":4,\"outcome\":\"swapped\",\
                 \"downloaded_media\":1,\"downloaded_bytes\":9,\"at\":\"2026-11-22T09:00:00Z\"}');",
            )
            .unwrap();
        }
        let snap = State::read_only_snapshot(&path).unwrap();
        let last = snap.last_sync.unwrap();
        assert_eq!(last.version, 4);
        assert_eq!(last.served_by, ServedBy::default());
        assert_eq!(snap.server_in_use, None);
        let mut s = State::open(&path).unwrap();
        s.record_server_in_use(Some("https://backup:8443")).unwrap();
        assert_eq!(
            s.snapshot().unwrap().server_in_use.as_deref(),
            Some("https://backup:8443")
        );
        s.record_server_in_use(None).unwrap();
        assert_eq!(s.snapshot().unwrap().server_in_use, None);
    }
}
