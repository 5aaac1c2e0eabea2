//! Who is signed in and what they may open: sessions (a random cookie token, stored
//! hashed), throttled argon2id sign-in (attempts counted before the password is
//! checked, growing delays per account and address, a bounded pool of checks), CSRF tokens, and [`access`], the one table
//! that says which role may open which page.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use std::net::IpAddr;

use crate::db::{token_hash, Db, LoginAttempts, RecentAttempts, Role, User};
use crate::error::Result;

pub const SESSION_COOKIE: &str = "skycast_session";
/// Double-submit token for the sign-in form, which has no session yet.
pub const LOGIN_CSRF_COOKIE: &str = "skycast_login_csrf";
const SESSION_HOURS: i64 = 12;

/// A growing delay: `free` failures pass at once; after them the next attempt
/// waits `first_delay_secs` after the latest, doubled for each further failure,
/// up to `max_delay_secs`. Refused attempts are not counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Throttle {
    pub free: i64,
    pub first_delay_secs: i64,
    pub max_delay_secs: i64,
}

impl Throttle {
    /// Seconds still to wait at `now` after `recent`, if any.
    pub fn wait(&self, recent: RecentAttempts, now: DateTime<Utc>) -> Option<u64> {
        if recent.count < self.free {
            return None;
        }
        let doublings = (recent.count - self.free).min(30) as u32;
        let delay = self
            .first_delay_secs
            .saturating_mul(1i64 << doublings)
            .min(self.max_delay_secs);
        let left = (recent.newest.unwrap_or(now) + Duration::seconds(delay) - now).num_seconds();
        u64::try_from(left).ok().filter(|&secs| secs > 0)
    }
}

/// One account from one address: 5 failures, then 1 min, 2, 4, 8, 15 min.
pub const PER_ACCOUNT_AND_ADDRESS: Throttle = Throttle {
    free: 5,
    first_delay_secs: 60,
    max_delay_secs: 15 * 60,
};
/// A whole shop may sit behind one address: allow more before delaying it.
pub const PER_ADDRESS: Throttle = Throttle {
    free: 20,
    first_delay_secs: 60,
    max_delay_secs: 15 * 60,
};
/// One account guessed from two or more addresses; it only delays addresses
/// that have failed themselves, so an address that has not failed always gets in.
pub const PER_ACCOUNT: Throttle = Throttle {
    free: 10,
    first_delay_secs: 60,
    max_delay_secs: 15 * 60,
};
/// Failed sign-ins older than this are forgotten.
pub const FAILURE_WINDOW_SECS: i64 = 60 * 60;

/// Who may open a path. Everything not listed needs a signed-in user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Public,
    AnyUser,
    Roles(&'static [Role]),
}

use Role::{Admin, Auditor, Commercial, Marketing};

/// The web UI's whole access policy, by path prefix: the first match wins.
/// Handlers never check roles themselves.
pub const POLICY: &[(&str, Access)] = &[
    ("/static", Access::Public),
    ("/login", Access::Public),
    ("/logout", Access::AnyUser),
    ("/marketing", Access::Roles(&[Marketing])),
    ("/commercial", Access::Roles(&[Commercial])),
    ("/admin", Access::Roles(&[Admin])),
    ("/audit", Access::Roles(&[Auditor])),
    ("/shops", Access::Roles(&[Marketing, Admin])),
    ("/publish", Access::Roles(&[Marketing, Commercial, Admin])),
    ("/history", Access::Roles(&[Admin, Auditor])),
    // Supervision: admins and auditors read; only admins send commands or
    // acknowledge (these write routes come first: the first match wins).
    ("/fleet/sync", Access::Roles(&[Admin])),
    ("/fleet/alerts/acknowledge", Access::Roles(&[Admin])),
    ("/fleet", Access::Roles(&[Admin, Auditor])),
    ("/api/fleet", Access::Roles(&[Admin, Auditor])),
    ("/media", Access::Roles(&[Marketing, Commercial, Admin, Auditor])),
];

pub fn access(path: &str) -> Access {
    POLICY
        .iter()
        .find(|(prefix, _)| {
            path == *prefix
                || path
                    .strip_prefix(prefix)
                    .is_some_and(|rest| rest.starts_with('/'))
        })
        .map_or(Access::AnyUser, |(_, access)| *access)
}

/// Where each role lands after signing in.
pub fn home(role: Role) -> &'static str {
    match role {
        Admin => "/admin",
        Marketing => "/marketing",
        Commercial => "/commercial",
        Auditor => "/audit",
    }
}

/// A message shown once, on the next page the user opens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flash {
    /// `ok`, `warn` or `error`: also the CSS class.
    pub kind: String,
    pub text: String,
}

impl Flash {
    pub fn ok(text: impl Into<String>) -> Flash {
        Flash {
            kind: "ok".into(),
            text: text.into(),
        }
    }

    pub fn error(text: impl Into<String>) -> Flash {
        Flash {
            kind: "error".into(),
            text: text.into(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Session {
    pub user: User,
    pub csrf: String,
    pub token_hash: String,
}

/// Starts a session; returns the cookie token (only its hash is stored).
pub fn create_session(db: &Db, user_id: i64, now: DateTime<Utc>) -> Result<String> {
    let token = crate::random_token();
    let csrf = crate::random_token();
    // Signing in is rare enough to sweep ended sessions here.
    db.start_session(&token, user_id, &csrf, now, now + Duration::hours(SESSION_HOURS))?;
    Ok(token)
}

/// The live session of an enabled user for this cookie token.
pub fn find_session(db: &Db, token: &str, now: DateTime<Utc>) -> Result<Option<Session>> {
    Ok(db.live_session(token, now)?.map(|(user, csrf)| Session {
        user,
        csrf,
        token_hash: token_hash(token),
    }))
}

pub fn end_session(db: &Db, token: &str) -> Result<()> {
    Ok(db.end_session(token)?)
}

pub fn set_flash(db: &Db, session: &Session, flash: &Flash) -> Result<()> {
    let text = serde_json::to_string(flash)
        .map_err(|e| crate::PublisherError::Internal(format!("cannot write a flash message as JSON: {e}")))?;
    Ok(db.set_flash(&session.token_hash, &text)?)
}

pub fn take_flash(db: &Db, session: &Session) -> Result<Option<Flash>> {
    let text = db.take_flash(&session.token_hash)?;
    Ok(text.and_then(|t| serde_json::from_str(&t).ok()))
}

/// The throttle's decision for an attempt, before its password is checked:
/// the longest wait of the account from this address, of the address, and of the
/// account from everywhere (only once it failed from two or more addresses, and
/// only for an address that has failed itself). So an address's failures never
/// hold back an account elsewhere, and an address that has not failed is never
/// held back.
pub fn wait_before_attempt(attempts: &LoginAttempts, now: DateTime<Utc>) -> Option<u64> {
    let everywhere = (attempts.address.count > 0 && attempts.account_addresses >= 2)
        .then(|| PER_ACCOUNT.wait(attempts.account, now))
        .flatten();
    [
        PER_ACCOUNT_AND_ADDRESS.wait(attempts.pair, now),
        PER_ADDRESS.wait(attempts.address, now),
        everywhere,
    ]
    .into_iter()
    .flatten()
    .max()
}

/// The throttle's name of the account a sign-in names (case-insensitive).
pub fn account_key(username: &str) -> String {
    username.to_lowercase()
}

/// The throttle's name of the client's address; all unknown ones share one.
pub fn address_key(address: Option<IpAddr>) -> String {
    address.map_or_else(|| "unknown".to_string(), |ip| ip.to_string())
}

/// Counts a sign-in attempt before its password is checked, in one atomic step
/// with the throttle's decision: `Err(wait)` when it must wait (nothing is
/// recorded), else the attempt's id: it counts as a failure until
/// [`attempt_succeeded`].
pub fn begin_attempt(
    db: &Db,
    account: &str,
    address: &str,
    now: DateTime<Utc>,
) -> Result<std::result::Result<i64, u64>> {
    let forget_until = now - Duration::seconds(FAILURE_WINDOW_SECS);
    Ok(db.begin_login_attempt(account, address, now, forget_until, |a| {
        wait_before_attempt(a, now)
    })?)
}

/// The right password for attempt `id`: it is no failure, and the account's
/// failures from this address no longer count for the account (they still do
/// for the address).
pub fn attempt_succeeded(db: &Db, id: i64, account: &str, address: &str) -> Result<()> {
    Ok(db.login_succeeded(id, account, address)?)
}

/// Unlocks a user: forgets their failed sign-ins from every address. Answers how many.
pub fn unlock(db: &Db, username: &str) -> Result<usize> {
    Ok(db.forget_login_failures(&account_key(username))?)
}

/// The user's failed sign-ins within the window, from every address.
pub fn recent_failures(db: &Db, username: &str, now: DateTime<Utc>) -> Result<i64> {
    let since = now - Duration::seconds(FAILURE_WINDOW_SECS);
    Ok(db.account_login_failures(&account_key(username), since)?.count)
}

/// Compares secrets without stopping at the first differing byte.
pub fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_gives_each_area_to_its_roles() {
        let cases: &[(&str, Access)] = &[
            ("/login", Access::Public),
            ("/static/style.css", Access::Public),
            ("/", Access::AnyUser),
            ("/marketing", Access::Roles(&[Marketing])),
            ("/marketing/playlists/x.m3u", Access::Roles(&[Marketing])),
            ("/marketingx", Access::AnyUser),
            ("/admin/users/3/delete", Access::Roles(&[Admin])),
            ("/audit/bundle", Access::Roles(&[Auditor])),
            ("/history/diff", Access::Roles(&[Admin, Auditor])),
            ("/commercial/play-now", Access::Roles(&[Commercial])),
            ("/fleet", Access::Roles(&[Admin, Auditor])),
            ("/fleet/players/main-1", Access::Roles(&[Admin, Auditor])),
            ("/fleet/sync", Access::Roles(&[Admin])),
            ("/fleet/alerts", Access::Roles(&[Admin, Auditor])),
            ("/fleet/alerts/acknowledge", Access::Roles(&[Admin])),
            ("/api/fleet", Access::Roles(&[Admin, Auditor])),
            ("/api/fleet/players/main-1", Access::Roles(&[Admin, Auditor])),
            ("/fleetx", Access::AnyUser),
        ];
        for (path, want) in cases {
            assert_eq!(access(path), *want, "{path}");
        }
    }

    fn db() -> (tempfile::TempDir, Db) {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("p.sqlite")).unwrap();
        (dir, db)
    }

    #[test]
    fn sessions_expire_and_end_with_the_user() {
        let (_dir, db) = db();
        let id = db.create_user("mia", "long enough", Role::Marketing).unwrap();
        let now = Utc::now();
        let token = create_session(&db, id, now).unwrap();
        let s = find_session(&db, &token, now).unwrap().unwrap();
        assert_eq!(s.user.username, "mia");
        assert!(find_session(&db, "forged", now).unwrap().is_none());
        assert!(find_session(&db, &token, now + Duration::hours(13))
            .unwrap()
            .is_none());
        db.update_user(id, Role::Marketing, true).unwrap();
        assert!(find_session(&db, &token, now).unwrap().is_none());
    }

    #[test]
    fn flash_is_shown_once() {
        let (_dir, db) = db();
        let id = db.create_user("mia", "long enough", Role::Marketing).unwrap();
        let now = Utc::now();
        let token = create_session(&db, id, now).unwrap();
        let s = find_session(&db, &token, now).unwrap().unwrap();
        assert_eq!(take_flash(&db, &s).unwrap(), None);
        set_flash(&db, &s, &Flash::ok("saved")).unwrap();
        assert_eq!(take_flash(&db, &s).unwrap(), Some(Flash::ok("saved")));
        assert_eq!(take_flash(&db, &s).unwrap(), None);
    }

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
    }

    fn attempt(db: &Db, name: &str, address: &str, now: DateTime<Utc>) -> std::result::Result<(), u64> {
        begin_attempt(db, &account_key(name), address, now)
            .unwrap()
            .map(|_| ())
    }

    #[test]
    fn the_delay_grows_after_five_failures_of_one_account_from_one_address() {
        let (_dir, db) = db();
        let t0 = at("2026-11-22T10:00:00Z");
        for i in 0..5 {
            assert_eq!(
                attempt(&db, "Mia", "10.0.0.1", t0 + Duration::seconds(i)),
                Ok(()),
                "attempt {i}"
            );
        }
        let last = t0 + Duration::seconds(4);
        assert_eq!(
            attempt(&db, "mia", "10.0.0.1", last + Duration::seconds(10)),
            Err(50)
        );
        assert_eq!(
            attempt(&db, "mia", "10.0.0.1", last + Duration::seconds(60)),
            Ok(())
        );
        let last = last + Duration::seconds(60);
        assert_eq!(
            attempt(&db, "mia", "10.0.0.1", last + Duration::seconds(60)),
            Err(60),
            "the sixth failure doubles the delay"
        );
        let id = begin_attempt(&db, "mia", "10.0.0.2", last).unwrap();
        assert!(id.is_ok(), "another address is not held back");
        attempt_succeeded(&db, id.unwrap(), "mia", "10.0.0.2").unwrap();
        assert_eq!(recent_failures(&db, "MIA", last).unwrap(), 6);
        assert_eq!(unlock(&db, "Mia").unwrap(), 6);
        assert_eq!(attempt(&db, "mia", "10.0.0.1", last), Ok(()), "unlocked");
    }

    #[test]
    fn delays_stop_at_fifteen_minutes_and_failures_are_forgotten_after_an_hour() {
        let recent = |count, newest| RecentAttempts {
            count,
            newest: Some(newest),
        };
        let t0 = at("2026-11-22T10:00:00Z");
        assert_eq!(PER_ACCOUNT_AND_ADDRESS.wait(recent(4, t0), t0), None);
        assert_eq!(PER_ACCOUNT_AND_ADDRESS.wait(recent(40, t0), t0), Some(15 * 60));
        assert_eq!(PER_ADDRESS.wait(recent(19, t0), t0), None);
        assert_eq!(PER_ADDRESS.wait(recent(20, t0), t0), Some(60));
        let (_dir, db) = db();
        for i in 0..5 {
            attempt(&db, "mia", "10.0.0.1", t0 + Duration::seconds(i)).unwrap();
        }
        let later = t0 + Duration::seconds(FAILURE_WINDOW_SECS + 5);
        assert_eq!(attempt(&db, "mia", "10.0.0.1", later), Ok(()));
    }

    #[test]
    fn an_address_with_many_failures_is_delayed_but_others_are_not() {
        let (_dir, db) = db();
        let t0 = at("2026-11-22T10:00:00Z");
        for i in 0..20 {
            assert_eq!(
                attempt(&db, &format!("guess{i}"), "10.0.0.1", t0),
                Ok(()),
                "guess {i}"
            );
        }
        assert!(
            attempt(&db, "admin", "10.0.0.1", t0).is_err(),
            "the address waits"
        );
        let (_dir, db) = self::db();
        for i in 0..19 {
            let name = if i < 5 {
                "mia".to_string()
            } else {
                format!("guess{i}")
            };
            assert_eq!(attempt(&db, &name, "10.0.0.1", t0), Ok(()), "{name}");
        }
        let later = t0 + Duration::seconds(61);
        let id = begin_attempt(&db, "mia", "10.0.0.1", later).unwrap();
        attempt_succeeded(&db, id.expect("mia after her delay"), "mia", "10.0.0.1").unwrap();
        assert_eq!(
            recent_failures(&db, "mia", later).unwrap(),
            0,
            "mia's failures are forgiven"
        );
        assert_eq!(attempt(&db, "bob", "10.0.0.1", later), Ok(()), "the 20th failure");
        assert!(
            attempt(&db, "carol", "10.0.0.1", later).is_err(),
            "mia's forgiven failures still count for the address"
        );
        assert_eq!(
            attempt(&db, "admin", "10.0.0.2", t0),
            Ok(()),
            "the admin elsewhere does not"
        );
    }

    #[test]
    fn an_account_guessed_from_several_addresses_delays_failed_addresses_only() {
        let (_dir, db) = db();
        let t0 = at("2026-11-22T10:00:00Z");
        for i in 0..10 {
            let from = format!("10.0.1.{i}");
            assert_eq!(attempt(&db, "admin", &from, t0), Ok(()), "{from}");
        }
        attempt(&db, "other", "10.0.2.1", t0).unwrap();
        assert!(
            attempt(&db, "admin", "10.0.2.1", t0).is_err(),
            "an address that failed elsewhere waits"
        );
        assert!(
            attempt(&db, "admin", "10.0.1.0", t0).is_err(),
            "so do the guessers"
        );
        assert_eq!(
            attempt(&db, "admin", "10.0.3.1", t0),
            Ok(()),
            "an address that has not failed gets in"
        );
        let (_dir, db) = self::db();
        for _ in 0..12 {
            attempt(&db, "admin", "10.0.1.1", t0).ok();
        }
        attempt(&db, "other", "10.0.2.1", t0).unwrap();
        assert_eq!(
            attempt(&db, "admin", "10.0.2.1", t0),
            Ok(()),
            "one address's failures never hold the account back elsewhere"
        );
    }

    #[test]
    fn secrets_compare_by_content() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("abc", "ab"));
    }
}
