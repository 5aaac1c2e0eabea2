//! The `sessions` table (web sign-ins, stored by the blake3 hash of their cookie
//! token, with their CSRF token and one-time flash message) and `login_failures`
//! (failed sign-ins by throttling key). How long sessions last and when sign-in
//! locks is `web::auth`'s policy; this module only keeps the rows.

use chrono::{DateTime, Utc};
use rusqlite::{params, OptionalExtension};

use super::users::{user_from_row, User};
use super::{timestamp, token_hash, Db, DbError};

/// Failed sign-ins of one key within a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecentFailures {
    pub count: i64,
    /// The earliest of the counted failures.
    pub oldest: Option<DateTime<Utc>>,
}

impl Db {
    /// Removes ended sessions, then starts one for `user_id` until `expires_at`,
    /// stored by the hash of `token`.
    pub fn start_session(
        &self,
        token: &str,
        user_id: i64,
        csrf: &str,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<(), DbError> {
        self.transaction(|tx| {
            tx.write(|c| {
                c.execute(
                    "DELETE FROM sessions WHERE expires_at <= ?1",
                    params![timestamp(now)],
                )?;
                c.execute(
                    "INSERT INTO sessions (token_hash, user_id, csrf, created_at, expires_at)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![
                        token_hash(token),
                        user_id,
                        csrf,
                        timestamp(now),
                        timestamp(expires_at)
                    ],
                )
            })?;
            Ok(())
        })
    }

    /// The user and CSRF token of the session of `token`, if it is live at `now`
    /// and its user is enabled.
    pub fn live_session(&self, token: &str, now: DateTime<Utc>) -> Result<Option<(User, String)>, DbError> {
        let found = self.read(|c| {
            c.query_row(
                "SELECT u.id, u.username, u.role, u.disabled, u.created_at, s.csrf
                 FROM sessions s JOIN users u ON u.id = s.user_id
                 WHERE s.token_hash = ?1 AND s.expires_at > ?2 AND u.disabled = 0",
                params![token_hash(token), timestamp(now)],
                |r| Ok((user_from_row(r, 0)?, r.get(5)?)),
            )
            .optional()
        })?;
        Ok(found)
    }

    pub fn end_session(&self, token: &str) -> Result<(), DbError> {
        self.write(|c| {
            c.execute(
                "DELETE FROM sessions WHERE token_hash = ?1",
                params![token_hash(token)],
            )
        })?;
        Ok(())
    }

    /// Leaves `text` for the next page of the session whose token hashes to `token_hash`.
    pub fn set_flash(&self, token_hash: &str, text: &str) -> Result<(), DbError> {
        self.write(|c| {
            c.execute(
                "UPDATE sessions SET flash = ?2 WHERE token_hash = ?1",
                params![token_hash, text],
            )
        })?;
        Ok(())
    }

    /// The session's flash text, removed as it is read: it shows once.
    pub fn take_flash(&self, token_hash: &str) -> Result<Option<String>, DbError> {
        self.transaction(|tx| {
            let text: Option<String> = tx
                .read(|c| {
                    c.query_row(
                        "SELECT flash FROM sessions WHERE token_hash = ?1",
                        params![token_hash],
                        |r| r.get(0),
                    )
                    .optional()
                })?
                .flatten();
            if text.is_some() {
                tx.write(|c| {
                    c.execute(
                        "UPDATE sessions SET flash = NULL WHERE token_hash = ?1",
                        params![token_hash],
                    )
                })?;
            }
            Ok(text)
        })
    }

    /// The newest `max` failures of `key` after `since`: how many, and the oldest of them.
    pub fn recent_login_failures(
        &self,
        key: &str,
        since: DateTime<Utc>,
        max: i64,
    ) -> Result<RecentFailures, DbError> {
        let (count, oldest): (i64, Option<String>) = self.read(|c| {
            c.query_row(
                "SELECT COUNT(*), MIN(at) FROM (SELECT at FROM login_failures
                 WHERE key = ?1 AND at > ?2 ORDER BY at DESC LIMIT ?3)",
                params![key, timestamp(since), max],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
        })?;
        Ok(RecentFailures {
            count,
            oldest: oldest
                .and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
                .map(|t| t.with_timezone(&Utc)),
        })
    }

    /// Records one failed sign-in at `at` for each of `keys`, and forgets failures
    /// at or before `forget_until`.
    pub fn record_login_failure<'k>(
        &self,
        keys: impl IntoIterator<Item = &'k str>,
        at: DateTime<Utc>,
        forget_until: DateTime<Utc>,
    ) -> Result<(), DbError> {
        self.transaction(|tx| {
            tx.write(|c| {
                for key in keys {
                    c.execute(
                        "INSERT INTO login_failures (key, at) VALUES (?1, ?2)",
                        params![key, timestamp(at)],
                    )?;
                }
                c.execute(
                    "DELETE FROM login_failures WHERE at <= ?1",
                    params![timestamp(forget_until)],
                )
            })?;
            Ok(())
        })
    }

    pub fn clear_login_failures(&self, key: &str) -> Result<(), DbError> {
        self.write(|c| c.execute("DELETE FROM login_failures WHERE key = ?1", params![key]))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use super::super::tests::open;
    use super::*;
    use crate::db::Role;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn starting_a_session_sweeps_ended_ones() {
        let (_dir, db) = open();
        let id = db.create_user("mia", "long enough", Role::Marketing).unwrap();
        let t0 = at("2026-11-22T10:00:00Z");
        db.start_session("old", id, "c1", t0, t0 + Duration::hours(1))
            .unwrap();
        let later = t0 + Duration::hours(2);
        db.start_session("new", id, "c2", later, later + Duration::hours(1))
            .unwrap();
        let rows: i64 = db
            .read(|c| c.query_row("SELECT COUNT(*) FROM sessions", [], |r| r.get(0)))
            .unwrap();
        assert_eq!(rows, 1);
        let (user, csrf) = db.live_session("new", later).unwrap().unwrap();
        assert_eq!((user.username.as_str(), csrf.as_str()), ("mia", "c2"));
        db.end_session("new").unwrap();
        assert!(db.live_session("new", later).unwrap().is_none());
    }

    #[test]
    fn failures_are_counted_per_key_within_the_window() {
        let (_dir, db) = open();
        let t0 = at("2026-11-22T10:00:00Z");
        for i in 0..3 {
            db.record_login_failure(
                ["user:mia", "ip:::1"],
                t0 + Duration::seconds(i),
                t0 - Duration::hours(1),
            )
            .unwrap();
        }
        let recent = db
            .recent_login_failures("user:mia", t0 - Duration::seconds(1), 2)
            .unwrap();
        assert_eq!(recent.count, 2, "at most `max` are counted");
        assert_eq!(
            recent.oldest,
            Some(t0 + Duration::seconds(1)),
            "the oldest of the newest two"
        );
        assert_eq!(db.recent_login_failures("user:bob", t0, 5).unwrap().count, 0);
        db.record_login_failure(["user:bob"], t0 + Duration::hours(2), t0 + Duration::seconds(1))
            .unwrap();
        assert_eq!(
            db.recent_login_failures("ip:::1", t0 - Duration::seconds(1), 5)
                .unwrap()
                .count,
            1,
            "failures up to `forget_until` are forgotten"
        );
        db.clear_login_failures("ip:::1").unwrap();
        assert_eq!(
            db.recent_login_failures("ip:::1", t0 - Duration::seconds(1), 5)
                .unwrap()
                .count,
            0
        );
    }
}
