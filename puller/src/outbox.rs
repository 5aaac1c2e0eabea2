//! The supervision outbox in `state.sqlite`: entries (plays, events) waiting for the
//! publisher to acknowledge them, the outbox's random id, the clean-stop marker, the
//! commands already run, and when the last report went out.
//!
//! Play entries are appended by the play log in the same transaction as the row change
//! they describe ([`append_in`]), so a `kill -9` can neither lose a play nor send it
//! twice: an entry is deleted only once an answer's `acked` covers its `seq`.

use std::path::{Path, PathBuf};

use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use serde::Serialize;
use skycast_schema::report::{Entry, EntryBody, EventEntry, EventKind};

#[derive(Debug, thiserror::Error)]
#[error("outbox in {path}: {source}: check the disk and permissions of the data directory")]
pub struct OutboxError {
    path: PathBuf,
    #[source]
    source: rusqlite::Error,
}

/// RFC 3339 with milliseconds, as every entry time is written.
pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Creates the outbox's tables; the play log calls it too, since it writes entries.
pub(crate) fn create_tables(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS outbox (
             seq INTEGER PRIMARY KEY AUTOINCREMENT,
             at TEXT NOT NULL,
             entry TEXT NOT NULL
         );
         CREATE TABLE IF NOT EXISTS outbox_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
         CREATE TABLE IF NOT EXISTS commands_done (
             id TEXT PRIMARY KEY,
             kind TEXT NOT NULL,
             claimed_at TEXT NOT NULL,
             done_at TEXT,
             detail TEXT
         );",
    )
}

/// Appends one entry inside the caller's transaction; returns its `seq`.
pub(crate) fn append_in(conn: &Connection, at: DateTime<Utc>, body: &EntryBody) -> rusqlite::Result<u64> {
    let json =
        serde_json::to_string(body).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
    conn.execute(
        "INSERT INTO outbox (at, entry) VALUES (?1, ?2)",
        params![rfc3339(at), json],
    )?;
    Ok(conn.last_insert_rowid() as u64)
}

/// Runs `work` in one `BEGIN IMMEDIATE` transaction: the write lock is taken (or
/// waited for) at the start, so a read followed by a write never fails with
/// "database is locked" when another connection wrote in between.
pub(crate) fn immediate<T>(
    conn: &mut Connection,
    work: impl FnOnce(&rusqlite::Transaction<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let value = work(&tx)?;
    tx.commit()?;
    Ok(value)
}

/// An event entry with only its words (and no version, media or command).
pub fn event(kind: EventKind, detail: impl Into<String>) -> EventEntry {
    EventEntry {
        kind,
        detail: detail.into(),
        version: None,
        media: None,
        command_id: None,
    }
}

/// What `status` shows of the outbox.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct OutboxSummary {
    /// Entries waiting for an acknowledgement.
    pub waiting: u64,
    pub last_report_at: Option<String>,
    pub last_report_error: Option<String>,
}

/// Whether a command id was seen before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// First time: run it, then [`Outbox::finish_command`].
    New,
    /// Run (or started) before: never again.
    Done,
    /// Claimed by a run that died before confirming it: not run again, but to be
    /// confirmed now so the server hears of it.
    Unconfirmed,
}

pub struct Outbox {
    conn: Connection,
    path: PathBuf,
}

impl Outbox {
    /// Opens (creating if needed) the outbox tables in `state.sqlite`. The daemon has
    /// switched the file to WAL before (see `PlayLog::prepare`).
    pub fn open(path: &Path) -> Result<Outbox, OutboxError> {
        let err = |source| OutboxError {
            path: path.to_path_buf(),
            source,
        };
        let conn = Connection::open(path).map_err(err)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(err)?;
        conn.execute_batch("PRAGMA synchronous=FULL;").map_err(err)?;
        create_tables(&conn).map_err(err)?;
        Ok(Outbox {
            conn,
            path: path.to_path_buf(),
        })
    }

    fn err(&self) -> impl Fn(rusqlite::Error) -> OutboxError + '_ {
        |source| OutboxError {
            path: self.path.clone(),
            source,
        }
    }

    fn meta(&self, key: &str) -> Result<Option<String>, OutboxError> {
        meta(&self.conn, key).map_err(self.err())
    }

    fn set_meta(&self, key: &str, value: Option<&str>) -> Result<(), OutboxError> {
        match value {
            Some(v) => self.conn.execute(
                "INSERT INTO outbox_meta (key, value) VALUES (?1, ?2)
                 ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                params![key, v],
            ),
            None => self.conn.execute("DELETE FROM outbox_meta WHERE key = ?1", [key]),
        }
        .map(drop)
        .map_err(self.err())
    }

    /// The outbox's random id, made the first time and kept with it.
    pub fn id(&self) -> Result<String, OutboxError> {
        let fresh = hex::encode(crate::random_bytes::<16>());
        self.conn
            .execute(
                "INSERT OR IGNORE INTO outbox_meta (key, value) VALUES ('outbox_id', ?1)",
                [fresh],
            )
            .map_err(self.err())?;
        Ok(self.meta("outbox_id")?.unwrap_or_default())
    }

    pub fn append(&self, at: DateTime<Utc>, body: &EntryBody) -> Result<u64, OutboxError> {
        append_in(&self.conn, at, body).map_err(self.err())
    }

    pub fn append_event(&self, at: DateTime<Utc>, event: EventEntry) -> Result<u64, OutboxError> {
        self.append(at, &EntryBody::Event(event))
    }

    /// At most `limit` entries, oldest first. An entry that no longer parses (written
    /// by another version) is left out: the next acknowledgement covers it anyway.
    pub fn pending(&self, limit: usize) -> Result<Vec<Entry>, OutboxError> {
        let mut stmt = self
            .conn
            .prepare("SELECT seq, at, entry FROM outbox ORDER BY seq LIMIT ?1")
            .map_err(self.err())?;
        let rows = stmt
            .query_map([limit as i64], |r| {
                Ok((
                    r.get::<_, i64>(0)? as u64,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                ))
            })
            .map_err(self.err())?;
        let mut out = Vec::new();
        for row in rows {
            let (seq, at, json) = row.map_err(self.err())?;
            match serde_json::from_str(&json) {
                Ok(body) => out.push(Entry { seq, at, body }),
                Err(e) => tracing::warn!(seq, error = %e, "outbox entry does not read back; left out"),
            }
        }
        Ok(out)
    }

    /// Deletes the entries up to `seq` (an answer's `acked`); returns how many.
    pub fn ack(&self, seq: u64) -> Result<usize, OutboxError> {
        self.conn
            .execute("DELETE FROM outbox WHERE seq <= ?1", [seq as i64])
            .map_err(self.err())
    }

    pub fn len(&self) -> Result<u64, OutboxError> {
        count(&self.conn).map_err(self.err())
    }

    pub fn is_empty(&self) -> Result<bool, OutboxError> {
        Ok(self.len()? == 0)
    }

    /// Marks this run as started and appends `started`, or `restarted_after_crash`
    /// when the previous run left its marker (it did not stop cleanly) or
    /// `left_playing` says its play log still had a row playing. One transaction.
    pub fn begin_run(&mut self, at: DateTime<Utc>, left_playing: bool) -> Result<EventKind, OutboxError> {
        let path = self.path.clone();
        immediate(&mut self.conn, |tx| {
            let unclean = meta(tx, "running")?.is_some() || left_playing;
            let (kind, detail) = if unclean {
                (
                    EventKind::RestartedAfterCrash,
                    "restarted after an unclean stop (crash, kill or power cut)",
                )
            } else {
                (EventKind::Started, "started")
            };
            let detail = format!("{detail}; agent {}", env!("CARGO_PKG_VERSION"));
            tx.execute(
                "INSERT INTO outbox_meta (key, value) VALUES ('running', ?1)
                 ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                [rfc3339(at)],
            )?;
            append_in(tx, at, &EntryBody::Event(event(kind, detail)))?;
            Ok(kind)
        })
        .map_err(|source| OutboxError { path, source })
    }

    /// Removes the marker [`Outbox::begin_run`] set: this run stopped cleanly.
    pub fn end_run(&self) -> Result<(), OutboxError> {
        self.set_meta("running", None)
    }

    /// Records a command id (and its kind, as sent) before it runs, so it never runs twice.
    pub fn claim_command(&self, id: &str, kind: &str, at: DateTime<Utc>) -> Result<Claim, OutboxError> {
        let inserted = self
            .conn
            .execute(
                "INSERT OR IGNORE INTO commands_done (id, kind, claimed_at) VALUES (?1, ?2, ?3)",
                params![id, kind, rfc3339(at)],
            )
            .map_err(self.err())?;
        if inserted == 1 {
            return Ok(Claim::New);
        }
        let done: Option<String> = self
            .conn
            .query_row("SELECT done_at FROM commands_done WHERE id = ?1", [id], |r| {
                r.get(0)
            })
            .map_err(self.err())?;
        Ok(if done.is_some() {
            Claim::Done
        } else {
            Claim::Unconfirmed
        })
    }

    /// Marks a claimed command done and appends its `command_done` event, in one transaction.
    pub fn finish_command(&mut self, id: &str, at: DateTime<Utc>, detail: &str) -> Result<u64, OutboxError> {
        let path = self.path.clone();
        immediate(&mut self.conn, |tx| {
            tx.execute(
                "UPDATE commands_done SET done_at = ?2, detail = ?3 WHERE id = ?1",
                params![id, rfc3339(at), detail],
            )?;
            let mut done = event(EventKind::CommandDone, detail);
            done.command_id = Some(id.to_string());
            append_in(tx, at, &EntryBody::Event(done))
        })
        .map_err(|source| OutboxError { path, source })
    }

    /// Records the outcome of a report: its time when it went through, or its error.
    pub fn record_report(&self, at: DateTime<Utc>, error: Option<&str>) -> Result<(), OutboxError> {
        match error {
            None => {
                self.set_meta("last_report_at", Some(&rfc3339(at)))?;
                self.set_meta("last_report_error", None)
            }
            Some(e) => self.set_meta("last_report_error", Some(e)),
        }
    }
}

fn meta(conn: &Connection, key: &str) -> rusqlite::Result<Option<String>> {
    conn.query_row("SELECT value FROM outbox_meta WHERE key = ?1", [key], |r| {
        r.get(0)
    })
    .optional()
}

fn count(conn: &Connection) -> rusqlite::Result<u64> {
    conn.query_row("SELECT count(*) FROM outbox", [], |r| r.get::<_, i64>(0))
        .map(|n| n as u64)
}

/// The outbox as `status` shows it, read without creating or writing anything.
pub fn summary(path: &Path) -> Result<OutboxSummary, OutboxError> {
    let err = |source| OutboxError {
        path: path.to_path_buf(),
        source,
    };
    if !path.exists() {
        return Ok(OutboxSummary::default());
    }
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(err)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(err)?;
    let has_table: i64 = conn
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'outbox_meta'",
            [],
            |r| r.get(0),
        )
        .map_err(err)?;
    if has_table == 0 {
        return Ok(OutboxSummary::default());
    }
    Ok(OutboxSummary {
        waiting: count(&conn).map_err(err)?,
        last_report_at: meta(&conn, "last_report_at").map_err(err)?,
        last_report_error: meta(&conn, "last_report_error").map_err(err)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn entries_survive_reopening_and_an_ack_deletes_only_up_to_its_seq() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("state.sqlite");
        let t = at("2026-12-01T10:00:00Z");
        let id = {
            let outbox = Outbox::open(&db).unwrap();
            for i in 0..5 {
                outbox
                    .append_event(t, event(EventKind::NetworkLost, format!("n{i}")))
                    .unwrap();
            }
            outbox.id().unwrap()
        };
        // A crash here: nothing was acknowledged, everything is still there.
        let outbox = Outbox::open(&db).unwrap();
        assert_eq!(outbox.id().unwrap(), id, "the outbox id is made once");
        let pending = outbox.pending(10).unwrap();
        let seqs: Vec<u64> = pending.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, [1, 2, 3, 4, 5]);
        assert_eq!(pending[0].at, "2026-12-01T10:00:00.000Z");
        assert_eq!(outbox.pending(2).unwrap().len(), 2, "oldest first, bounded");
        assert_eq!(outbox.ack(3).unwrap(), 3);
        assert_eq!(outbox.ack(3).unwrap(), 0, "a re-sent answer deletes nothing more");
        let left: Vec<u64> = outbox.pending(10).unwrap().iter().map(|e| e.seq).collect();
        assert_eq!(left, [4, 5]);
        // Seqs keep growing after deletes (AUTOINCREMENT): the server never sees one twice.
        let next = outbox.append_event(t, event(EventKind::NetworkBack, "")).unwrap();
        assert_eq!(next, 6);
        assert_eq!(summary(&db).unwrap().waiting, 3);
    }

    #[test]
    fn a_run_without_a_clean_stop_is_reported_as_restarted_after_a_crash() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("state.sqlite");
        let t = at("2026-12-01T10:00:00Z");
        let mut outbox = Outbox::open(&db).unwrap();
        assert_eq!(outbox.begin_run(t, false).unwrap(), EventKind::Started);
        outbox.end_run().unwrap();
        assert_eq!(outbox.begin_run(t, false).unwrap(), EventKind::Started);
        // No end_run: killed.
        let mut outbox = Outbox::open(&db).unwrap();
        assert_eq!(
            outbox.begin_run(t, false).unwrap(),
            EventKind::RestartedAfterCrash
        );
        outbox.end_run().unwrap();
        assert_eq!(
            outbox.begin_run(t, true).unwrap(),
            EventKind::RestartedAfterCrash,
            "a row left playing means a crash too"
        );
    }

    #[test]
    fn a_command_id_is_claimed_once_even_after_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("state.sqlite");
        let t = at("2026-12-01T10:00:00Z");
        {
            let mut outbox = Outbox::open(&db).unwrap();
            assert_eq!(outbox.claim_command("c1", "sync_now", t).unwrap(), Claim::New);
            outbox.finish_command("c1", t, "sync_now done").unwrap();
            assert_eq!(outbox.claim_command("c2", "sync_now", t).unwrap(), Claim::New);
            // Killed before c2 was confirmed.
        }
        let outbox = Outbox::open(&db).unwrap();
        assert_eq!(outbox.claim_command("c1", "sync_now", t).unwrap(), Claim::Done);
        assert_eq!(
            outbox.claim_command("c2", "sync_now", t).unwrap(),
            Claim::Unconfirmed
        );
    }
}
