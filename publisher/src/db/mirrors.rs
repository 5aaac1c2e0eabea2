//! Mirrors (S3-compatible buckets the publisher copies every version to) and
//! their persistent queue of versions still to copy.
//!
//! `mirrors` keeps each mirror's address (never a secret: at most the path of a
//! credentials file), the version its `v1/head` pointer names, and its retry
//! state (failures, next attempt, last error), so a restart of `serve` goes on
//! with the same backoff. `mirror_queue` holds one row per (mirror, version) not
//! yet copied, with the version's publish time (the lag is counted from it); a
//! row is deleted only once the version and its head pointer are on the mirror.

use chrono::{DateTime, Utc};
use rusqlite::{params, OptionalExtension, Row};
use serde::Serialize;

use super::{timestamp, Db, DbError};

/// The tables of mirrors, one migration.
pub(super) const MIGRATION: &str = "
CREATE TABLE mirrors (
    name TEXT PRIMARY KEY,
    endpoint TEXT NOT NULL,
    bucket TEXT NOT NULL,
    region TEXT NOT NULL,
    credentials_file TEXT,
    added_by TEXT NOT NULL,
    added_at TEXT NOT NULL,
    mirrored_version INTEGER NOT NULL DEFAULT 0,
    last_success_at TEXT,
    last_error TEXT,
    last_error_at TEXT,
    attempt_failures INTEGER NOT NULL DEFAULT 0,
    failures_since_caught_up INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT
);
CREATE TABLE mirror_queue (
    mirror TEXT NOT NULL REFERENCES mirrors(name) ON DELETE CASCADE,
    version INTEGER NOT NULL,
    published_at TEXT,
    enqueued_at TEXT NOT NULL,
    PRIMARY KEY (mirror, version)
);
";

/// A mirror to record.
#[derive(Debug, Clone, Copy)]
pub struct NewMirror<'a> {
    pub name: &'a str,
    pub endpoint: &'a str,
    pub bucket: &'a str,
    pub region: &'a str,
    /// Absolute path of a 0600 credentials file; `None`: the environment of `serve`.
    pub credentials_file: Option<&'a str>,
    pub added_by: &'a str,
}

/// A mirror as stored, with the state of its queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MirrorRow {
    pub name: String,
    pub endpoint: String,
    pub bucket: String,
    pub region: String,
    pub credentials_file: Option<String>,
    pub added_by: String,
    /// RFC 3339 UTC.
    pub added_at: String,
    /// The version the mirror's `v1/head` names (0: none yet).
    pub mirrored_version: u64,
    pub last_success_at: Option<String>,
    pub last_error: Option<String>,
    pub last_error_at: Option<String>,
    /// Failed attempts since the last success (the backoff grows with it).
    pub attempt_failures: u32,
    /// Failed attempts since the queue was last empty (the alert opens on it).
    pub failures_since_caught_up: u32,
    /// No attempt before this instant (backoff); `None`: at once.
    pub next_attempt_at: Option<String>,
    /// Versions waiting in the queue.
    pub queue_len: u64,
    /// The oldest version waiting, and when it was published.
    pub oldest_queued_version: Option<u64>,
    pub oldest_queued_published_at: Option<String>,
}

const MIRROR_COLUMNS: &str =
    "m.name, m.endpoint, m.bucket, m.region, m.credentials_file, m.added_by, m.added_at,
     m.mirrored_version, m.last_success_at, m.last_error, m.last_error_at, m.attempt_failures,
     m.failures_since_caught_up, m.next_attempt_at,
     (SELECT COUNT(*) FROM mirror_queue q WHERE q.mirror = m.name),
     (SELECT MIN(q.version) FROM mirror_queue q WHERE q.mirror = m.name),
     (SELECT q.published_at FROM mirror_queue q WHERE q.mirror = m.name ORDER BY q.version LIMIT 1)";

/// SQLite integers are signed; a negative count reads as 0.
fn unsigned(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

fn mirror_row(r: &Row<'_>) -> rusqlite::Result<MirrorRow> {
    Ok(MirrorRow {
        name: r.get(0)?,
        endpoint: r.get(1)?,
        bucket: r.get(2)?,
        region: r.get(3)?,
        credentials_file: r.get(4)?,
        added_by: r.get(5)?,
        added_at: r.get(6)?,
        mirrored_version: unsigned(r.get(7)?),
        last_success_at: r.get(8)?,
        last_error: r.get(9)?,
        last_error_at: r.get(10)?,
        attempt_failures: u32::try_from(r.get::<_, i64>(11)?).unwrap_or(0),
        failures_since_caught_up: u32::try_from(r.get::<_, i64>(12)?).unwrap_or(0),
        next_attempt_at: r.get(13)?,
        queue_len: unsigned(r.get(14)?),
        oldest_queued_version: r.get::<_, Option<i64>>(15)?.map(unsigned),
        oldest_queued_published_at: r.get(16)?,
    })
}

/// Version numbers fit SQLite's signed integers (they count publishes).
fn signed(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl Db {
    /// Records a mirror; `false` when one of that name exists already (nothing changed).
    pub fn add_mirror(&self, new: &NewMirror<'_>, at: DateTime<Utc>) -> Result<bool, DbError> {
        let added = self.write(|c| {
            c.execute(
                "INSERT INTO mirrors (name, endpoint, bucket, region, credentials_file, added_by, added_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (name) DO NOTHING",
                params![
                    new.name,
                    new.endpoint,
                    new.bucket,
                    new.region,
                    new.credentials_file,
                    new.added_by,
                    timestamp(at)
                ],
            )
        })?;
        Ok(added == 1)
    }

    /// Forgets a mirror and its queue; `false` when there was none of that name.
    pub fn remove_mirror(&self, name: &str) -> Result<bool, DbError> {
        self.transaction(|tx| {
            tx.write(|c| {
                c.execute("DELETE FROM mirror_queue WHERE mirror = ?1", params![name])?;
                c.execute("DELETE FROM mirrors WHERE name = ?1", params![name])
            })
            .map(|n| n == 1)
        })
    }

    /// Every mirror, by name, with the state of its queue.
    pub fn mirrors(&self) -> Result<Vec<MirrorRow>, DbError> {
        self.read(|c| {
            c.prepare(&format!("SELECT {MIRROR_COLUMNS} FROM mirrors m ORDER BY m.name"))?
                .query_map([], mirror_row)?
                .collect()
        })
    }

    pub fn mirror(&self, name: &str) -> Result<Option<MirrorRow>, DbError> {
        self.read(|c| {
            c.query_row(
                &format!("SELECT {MIRROR_COLUMNS} FROM mirrors m WHERE m.name = ?1"),
                params![name],
                mirror_row,
            )
            .optional()
        })
    }

    /// Queues `(version, published_at)` for `mirror`, skipping versions already
    /// mirrored or queued; returns how many were added.
    pub fn enqueue_mirror_versions(
        &self,
        mirror: &str,
        versions: &[(u64, Option<String>)],
        at: DateTime<Utc>,
    ) -> Result<usize, DbError> {
        if versions.is_empty() {
            return Ok(0);
        }
        let at = timestamp(at);
        self.transaction(|tx| {
            tx.write(|c| {
                let mut added = 0;
                let mut insert = c.prepare(
                    "INSERT INTO mirror_queue (mirror, version, published_at, enqueued_at)
                     SELECT ?1, ?2, ?3, ?4 FROM mirrors
                     WHERE name = ?1 AND mirrored_version < ?2
                     ON CONFLICT (mirror, version) DO NOTHING",
                )?;
                for (version, published_at) in versions {
                    added += insert.execute(params![mirror, signed(*version), published_at, at])?;
                }
                Ok(added)
            })
        })
    }

    /// The highest version queued for `mirror`, or its mirrored version when none is.
    pub fn mirror_known_version(&self, mirror: &str) -> Result<u64, DbError> {
        self.read(|c| {
            c.query_row(
                "SELECT MAX(m.mirrored_version, COALESCE((SELECT MAX(version) FROM mirror_queue q WHERE q.mirror = m.name), 0))
                 FROM mirrors m WHERE m.name = ?1",
                params![mirror],
                |r| r.get::<_, i64>(0),
            )
            .optional()
        })
        .map(|v| v.map_or(0, unsigned))
    }

    /// Version `version` and its head pointer are on `mirror`: out of the queue,
    /// the mirrored version moves up (never down), the backoff is reset, and with
    /// nothing left queued the mirror has caught up.
    pub fn mirror_succeeded(&self, mirror: &str, version: u64, at: DateTime<Utc>) -> Result<(), DbError> {
        let at = timestamp(at);
        self.transaction(|tx| {
            tx.write(|c| {
                c.execute(
                    "DELETE FROM mirror_queue WHERE mirror = ?1 AND version <= ?2",
                    params![mirror, signed(version)],
                )?;
                c.execute(
                    "UPDATE mirrors SET mirrored_version = MAX(mirrored_version, ?2), last_success_at = ?3,
                         attempt_failures = 0, next_attempt_at = NULL,
                         failures_since_caught_up = CASE
                             WHEN EXISTS (SELECT 1 FROM mirror_queue q WHERE q.mirror = ?1)
                             THEN failures_since_caught_up ELSE 0 END
                     WHERE name = ?1",
                    params![mirror, signed(version), at],
                )
            })
        })?;
        Ok(())
    }

    /// An attempt on `mirror` failed: counted, with its error, and the next
    /// attempt not before `retry_at`.
    pub fn mirror_failed(
        &self,
        mirror: &str,
        error: &str,
        at: DateTime<Utc>,
        retry_at: DateTime<Utc>,
    ) -> Result<(), DbError> {
        self.write(|c| {
            c.execute(
                "UPDATE mirrors SET last_error = ?2, last_error_at = ?3, next_attempt_at = ?4,
                     attempt_failures = attempt_failures + 1,
                     failures_since_caught_up = failures_since_caught_up + 1
                 WHERE name = ?1",
                params![mirror, error, timestamp(at), timestamp(retry_at)],
            )
        })?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;

    use super::super::tests::open;
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
    }

    fn garage<'a>(name: &'a str) -> NewMirror<'a> {
        NewMirror {
            name,
            endpoint: "http://127.0.0.1:3900",
            bucket: "skycast",
            region: "garage",
            credentials_file: None,
            added_by: "tester",
        }
    }

    #[test]
    fn mirror_queue_skips_what_is_mirrored_and_drains_oldest_first() {
        let (_dir, db) = open();
        let t0 = at("2026-12-01T10:00:00Z");
        assert!(db.add_mirror(&garage("eu"), t0).unwrap());
        assert!(!db.add_mirror(&garage("eu"), t0).unwrap(), "one mirror per name");
        let versions: Vec<(u64, Option<String>)> = (1..=3)
            .map(|v| (v, Some(format!("2026-12-01T09:0{v}:00Z"))))
            .collect();
        assert_eq!(db.enqueue_mirror_versions("eu", &versions, t0).unwrap(), 3);
        assert_eq!(db.enqueue_mirror_versions("eu", &versions, t0).unwrap(), 0);
        assert_eq!(db.enqueue_mirror_versions("nowhere", &versions, t0).unwrap(), 0);
        let row = db.mirror("eu").unwrap().unwrap();
        assert_eq!((row.queue_len, row.oldest_queued_version), (3, Some(1)));
        assert_eq!(
            row.oldest_queued_published_at.as_deref(),
            Some("2026-12-01T09:01:00Z")
        );
        assert_eq!(db.mirror_known_version("eu").unwrap(), 3);

        db.mirror_failed("eu", "connection refused", t0, t0 + TimeDelta::seconds(1))
            .unwrap();
        db.mirror_failed("eu", "connection refused", t0, t0 + TimeDelta::seconds(2))
            .unwrap();
        let row = db.mirror("eu").unwrap().unwrap();
        assert_eq!((row.attempt_failures, row.failures_since_caught_up), (2, 2));
        assert_eq!(row.last_error.as_deref(), Some("connection refused"));

        db.mirror_succeeded("eu", 1, t0).unwrap();
        let row = db.mirror("eu").unwrap().unwrap();
        assert_eq!((row.mirrored_version, row.queue_len), (1, 2));
        assert_eq!(
            (row.attempt_failures, row.failures_since_caught_up),
            (0, 2),
            "still behind: not caught up yet"
        );
        db.mirror_succeeded("eu", 3, t0).unwrap();
        let row = db.mirror("eu").unwrap().unwrap();
        assert_eq!(
            (row.mirrored_version, row.queue_len, row.failures_since_caught_up),
            (3, 0, 0)
        );
        // The mirrored version never moves back, and older versions are not queued again.
        db.mirror_succeeded("eu", 2, t0).unwrap();
        assert_eq!(db.mirror("eu").unwrap().unwrap().mirrored_version, 3);
        assert_eq!(db.enqueue_mirror_versions("eu", &versions, t0).unwrap(), 0);

        assert!(db.remove_mirror("eu").unwrap());
        assert!(!db.remove_mirror("eu").unwrap());
        assert!(db.mirrors().unwrap().is_empty());
    }
}
