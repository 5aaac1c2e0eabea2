//! The `sessions` table (web sign-ins, stored by the blake3 hash of their cookie
//! token, with their CSRF token and one-time flash message) and `login_attempts`
//! (sign-in attempts by account and address, recorded before the password is
//! checked). How long sessions last and how long sign-in waits is `web::auth`'s
//! policy; this module only keeps the rows, atomically.

use chrono::{DateTime, Utc};
use rusqlite::{params, OptionalExtension};

use super::users::{user_from_row, User};
use super::{timestamp, token_hash, Db, DbError};

/// Recorded sign-in attempts of one scope (failures, and checks in progress).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecentAttempts {
    pub count: i64,
    /// The latest of them.
    pub newest: Option<DateTime<Utc>>,
}

/// What the throttle knows of one sign-in attempt before it is checked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoginAttempts {
    /// This account from this address.
    pub pair: RecentAttempts,
    /// This address, for any account.
    pub address: RecentAttempts,
    /// This account, from every address.
    pub account: RecentAttempts,
    /// How many addresses the account's attempts came from.
    pub account_addresses: i64,
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

    /// The sign-in throttle's one atomic step: in one transaction, forgets
    /// attempts at or before `forget_until`, counts the recorded attempts of
    /// `account` and `address` since then, asks `decide` how long they must wait,
    /// and only if it says nothing records this attempt at `now`. Answers the new
    /// row's id, or `Err(wait)`: a burst of parallel attempts cannot all pass.
    pub fn begin_login_attempt(
        &self,
        account: &str,
        address: &str,
        now: DateTime<Utc>,
        forget_until: DateTime<Utc>,
        decide: impl FnOnce(&LoginAttempts) -> Option<u64>,
    ) -> Result<Result<i64, u64>, DbError> {
        self.transaction(|tx| {
            tx.write(|c| {
                c.execute(
                    "DELETE FROM login_attempts WHERE at <= ?1",
                    params![timestamp(forget_until)],
                )
            })?;
            let attempts = tx.read(|c| {
                let recent = |sql: &str, args: &[&dyn rusqlite::ToSql]| {
                    c.query_row(sql, args, |r| {
                        Ok((r.get::<_, i64>(0)?, r.get::<_, Option<String>>(1)?))
                    })
                    .map(|(count, newest)| RecentAttempts {
                        count,
                        newest: newest.as_deref().and_then(parse_timestamp),
                    })
                };
                let pair = recent(
                    "SELECT COUNT(*), MAX(at) FROM login_attempts
                     WHERE account = ?1 AND address = ?2 AND forgiven = 0",
                    &[&account, &address],
                )?;
                let by_address = recent(
                    "SELECT COUNT(*), MAX(at) FROM login_attempts WHERE address = ?1",
                    &[&address],
                )?;
                let by_account = recent(
                    "SELECT COUNT(*), MAX(at) FROM login_attempts WHERE account = ?1 AND forgiven = 0",
                    &[&account],
                )?;
                let account_addresses: i64 = c.query_row(
                    "SELECT COUNT(DISTINCT address) FROM login_attempts WHERE account = ?1 AND forgiven = 0",
                    params![account],
                    |r| r.get(0),
                )?;
                Ok(LoginAttempts {
                    pair,
                    address: by_address,
                    account: by_account,
                    account_addresses,
                })
            })?;
            if let Some(wait) = decide(&attempts) {
                return Ok(Err(wait));
            }
            let id = tx.write(|c| {
                c.execute(
                    "INSERT INTO login_attempts (account, address, at) VALUES (?1, ?2, ?3)",
                    params![account, address, timestamp(now)],
                )?;
                Ok(c.last_insert_rowid())
            })?;
            Ok(Ok(id))
        })
    }

    /// The right password for attempt `id`: removes it, and forgives the
    /// account's failures from `address` (they still count for the address, so a
    /// sign-in does not wipe an address's guesses). Other addresses keep theirs.
    pub fn login_succeeded(&self, id: i64, account: &str, address: &str) -> Result<(), DbError> {
        self.transaction(|tx| {
            tx.write(|c| {
                c.execute("DELETE FROM login_attempts WHERE id = ?1", params![id])?;
                c.execute(
                    "UPDATE login_attempts SET forgiven = 1 WHERE account = ?1 AND address = ?2",
                    params![account, address],
                )
            })?;
            Ok(())
        })
    }

    /// Failed sign-ins of `account`, from every address, after `since`.
    pub fn account_login_failures(
        &self,
        account: &str,
        since: DateTime<Utc>,
    ) -> Result<RecentAttempts, DbError> {
        let (count, newest): (i64, Option<String>) = self.read(|c| {
            c.query_row(
                "SELECT COUNT(*), MAX(at) FROM login_attempts WHERE account = ?1 AND forgiven = 0 AND at > ?2",
                params![account, timestamp(since)],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
        })?;
        Ok(RecentAttempts {
            count,
            newest: newest.as_deref().and_then(parse_timestamp),
        })
    }

    /// Unlocks `account`: forgets its failed sign-ins from every address (for the
    /// addresses too). Answers how many were still counted against the account.
    pub fn forget_login_failures(&self, account: &str) -> Result<usize, DbError> {
        self.transaction(|tx| {
            let counted = tx.read(|c| {
                c.query_row(
                    "SELECT COUNT(*) FROM login_attempts WHERE account = ?1 AND forgiven = 0",
                    params![account],
                    |r| r.get::<_, i64>(0),
                )
            })?;
            tx.write(|c| c.execute("DELETE FROM login_attempts WHERE account = ?1", params![account]))?;
            Ok(usize::try_from(counted).unwrap_or(0))
        })
    }
}

fn parse_timestamp(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&Utc))
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
    fn an_attempt_is_recorded_only_when_the_throttle_lets_it_through() {
        let (_dir, db) = open();
        let t0 = at("2026-11-22T10:00:00Z");
        let forget = t0 - Duration::hours(1);
        let through_below = |limit: i64| move |a: &LoginAttempts| (a.pair.count >= limit).then_some(7);
        for i in 0..3 {
            let id = db
                .begin_login_attempt(
                    "mia",
                    "10.0.0.1",
                    t0 + Duration::seconds(i),
                    forget,
                    through_below(3),
                )
                .unwrap();
            assert!(id.is_ok(), "attempt {i}");
        }
        assert_eq!(
            db.begin_login_attempt("mia", "10.0.0.1", t0, forget, through_below(3))
                .unwrap(),
            Err(7)
        );
        let mut seen = LoginAttempts::default();
        let id = db
            .begin_login_attempt("mia", "10.0.0.2", t0 + Duration::seconds(9), forget, |a| {
                seen = *a;
                None
            })
            .unwrap()
            .unwrap();
        assert_eq!(seen.pair.count, 0, "another address starts afresh");
        assert_eq!(seen.address.count, 0);
        assert_eq!(
            (seen.account.count, seen.account.newest),
            (3, Some(t0 + Duration::seconds(2)))
        );
        assert_eq!(seen.account_addresses, 1);
        db.login_succeeded(id, "mia", "10.0.0.2").unwrap();
        assert_eq!(db.account_login_failures("mia", forget).unwrap().count, 3);
        assert_eq!(db.forget_login_failures("mia").unwrap(), 3, "unlocked");
        assert_eq!(db.account_login_failures("mia", forget).unwrap().count, 0);
        db.begin_login_attempt("bob", "10.0.0.1", t0, forget, |_| None)
            .unwrap()
            .unwrap();
        db.begin_login_attempt("bob", "10.0.0.1", t0 + Duration::hours(2), t0, |a| {
            assert_eq!(a.pair.count, 0, "attempts up to `forget_until` are forgotten");
            None
        })
        .unwrap()
        .unwrap();
    }
}
