//! The `publish_requests` table: snapshots of the draft (JSON) waiting for an
//! admin's approval, and how each was decided.

use chrono::{DateTime, Utc};
use rusqlite::types::Type;
use rusqlite::{params, OptionalExtension, Row};

use super::{timestamp, Db, DbError};

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

const REQUEST_COLUMNS: &str = "id, author, message, created_at, status, decided_by, decided_at, version";

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
            .map_err(|e| rusqlite::Error::FromSqlConversionFailure(7, Type::Integer, Box::new(e)))?,
    })
}

impl Db {
    /// Records a pending request for the draft `body` (JSON); returns its id.
    pub fn add_request(
        &self,
        author: &str,
        message: &str,
        body: &str,
        now: DateTime<Utc>,
    ) -> Result<i64, DbError> {
        let id = self.write(|c| {
            c.execute(
                "INSERT INTO publish_requests (author, message, body, created_at, status)
                 VALUES (?1, ?2, ?3, ?4, 'pending')",
                params![author, message, body, timestamp(now)],
            )?;
            Ok(c.last_insert_rowid())
        })?;
        Ok(id)
    }

    /// Every request, newest first.
    pub fn requests(&self) -> Result<Vec<PublishRequest>, DbError> {
        let requests = self.read(|c| {
            c.prepare(&format!(
                "SELECT {REQUEST_COLUMNS} FROM publish_requests ORDER BY id DESC"
            ))?
            .query_map([], request_from_row)?
            .collect()
        })?;
        Ok(requests)
    }

    /// One request; `NoSuchRequest` when there is none.
    pub fn request(&self, id: i64) -> Result<PublishRequest, DbError> {
        self.read(|c| {
            c.query_row(
                &format!("SELECT {REQUEST_COLUMNS} FROM publish_requests WHERE id = ?1"),
                params![id],
                request_from_row,
            )
            .optional()
        })?
        .ok_or(DbError::NoSuchRequest(id))
    }

    /// The draft (JSON) a request would publish; `NoSuchRequest` when there is none.
    pub fn request_body(&self, id: i64) -> Result<String, DbError> {
        self.read(|c| {
            c.query_row(
                "SELECT body FROM publish_requests WHERE id = ?1",
                params![id],
                |r| r.get(0),
            )
            .optional()
        })?
        .ok_or(DbError::NoSuchRequest(id))
    }

    /// Marks a request approved by `admin`, which published `version`, whatever
    /// its status was: the version is out either way.
    pub fn mark_request_approved(
        &self,
        id: i64,
        admin: &str,
        now: DateTime<Utc>,
        version: u64,
    ) -> Result<(), DbError> {
        self.write(|c| {
            c.execute(
                "UPDATE publish_requests SET status = 'approved', decided_by = ?2, decided_at = ?3, version = ?4
                 WHERE id = ?1",
                params![
                    id,
                    admin,
                    timestamp(now),
                    i64::try_from(version).unwrap_or(i64::MAX)
                ],
            )
        })?;
        Ok(())
    }

    /// Marks a pending request rejected by `admin`; false when it was not pending
    /// (or does not exist).
    pub fn mark_request_rejected(&self, id: i64, admin: &str, now: DateTime<Utc>) -> Result<bool, DbError> {
        let changed = self.write(|c| {
            c.execute(
                "UPDATE publish_requests SET status = 'rejected', decided_by = ?2, decided_at = ?3
                 WHERE id = ?1 AND status = 'pending'",
                params![id, admin, timestamp(now)],
            )
        })?;
        Ok(changed > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::open;
    use super::*;

    #[test]
    fn a_request_is_decided_once() {
        let (_dir, db) = open();
        let now = DateTime::parse_from_rfc3339("2026-12-05T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let first = db.add_request("bob", "First", "{\"a\":1}", now).unwrap();
        let second = db.add_request("bob", "Second", "{}", now).unwrap();
        let ids: Vec<i64> = db.requests().unwrap().iter().map(|r| r.id).collect();
        assert_eq!(ids, [second, first], "newest first");
        assert_eq!(db.request_body(first).unwrap(), "{\"a\":1}");
        assert!(db.mark_request_rejected(first, "admin", now).unwrap());
        assert!(
            !db.mark_request_rejected(first, "admin", now).unwrap(),
            "not pending any more"
        );
        let rejected = db.request(first).unwrap();
        assert_eq!(
            (
                rejected.status.as_str(),
                rejected.decided_by.as_deref(),
                rejected.version
            ),
            ("rejected", Some("admin"), None)
        );
        db.mark_request_approved(second, "admin", now, 4).unwrap();
        let approved = db.request(second).unwrap();
        assert_eq!(
            (approved.status.as_str(), approved.version),
            ("approved", Some(4))
        );
        assert_eq!(approved.decided_at.as_deref(), Some("2026-12-05T10:00:00Z"));
        assert!(matches!(db.request(99), Err(DbError::NoSuchRequest(99))));
        assert!(matches!(db.request_body(99), Err(DbError::NoSuchRequest(99))));
    }
}
