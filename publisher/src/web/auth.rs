//! Who is signed in and what they may open: sessions (a random cookie token, stored
//! hashed), throttled argon2id sign-in, CSRF tokens, and [`access`], the one table
//! that says which role may open which page.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::db::{token_hash, Db, Role, User};
use crate::error::Result;

pub const SESSION_COOKIE: &str = "skycast_session";
/// Double-submit token for the sign-in form, which has no session yet.
pub const LOGIN_CSRF_COOKIE: &str = "skycast_login_csrf";
const SESSION_HOURS: i64 = 12;

/// Failed sign-ins that lock an account for [`FAILURE_WINDOW_SECS`].
pub const MAX_FAILURES_PER_USER: i64 = 5;
/// A whole shop may sit behind one address: allow more before locking it.
pub const MAX_FAILURES_PER_ADDRESS: i64 = 20;
pub const FAILURE_WINDOW_SECS: i64 = 15 * 60;

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

/// How long `keys` (`user:<name>`, `ip:<address>`) must still wait before another
/// sign-in attempt, if any of them had too many failures in the window.
pub fn locked_for(db: &Db, keys: &[(String, i64)], now: DateTime<Utc>) -> Result<Option<u64>> {
    let since = now - Duration::seconds(FAILURE_WINDOW_SECS);
    let mut wait = None;
    for (key, max) in keys {
        let recent = db.recent_login_failures(key, since, *max)?;
        if recent.count >= *max {
            let oldest = recent.oldest.unwrap_or(now);
            let free_at = oldest + Duration::seconds(FAILURE_WINDOW_SECS);
            let secs = (free_at - now).num_seconds().max(1) as u64;
            wait = Some(wait.map_or(secs, |w: u64| w.max(secs)));
        }
    }
    Ok(wait)
}

pub fn record_failure(db: &Db, keys: &[(String, i64)], now: DateTime<Utc>) -> Result<()> {
    let cutoff = now - Duration::seconds(FAILURE_WINDOW_SECS);
    Ok(db.record_login_failure(keys.iter().map(|(key, _)| key.as_str()), now, cutoff)?)
}

pub fn clear_failures(db: &Db, key: &str) -> Result<()> {
    Ok(db.clear_login_failures(key)?)
}

/// The throttling keys of one sign-in attempt.
pub fn throttle_keys(username: &str, address: Option<std::net::IpAddr>) -> Vec<(String, i64)> {
    let mut keys = vec![(format!("user:{}", username.to_lowercase()), MAX_FAILURES_PER_USER)];
    if let Some(ip) = address {
        keys.push((format!("ip:{ip}"), MAX_FAILURES_PER_ADDRESS));
    }
    keys
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

    #[test]
    fn fifth_failure_locks_the_account_for_the_window() {
        let (_dir, db) = db();
        let t0 = DateTime::parse_from_rfc3339("2026-11-22T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let keys = throttle_keys("Mia", None);
        for i in 0..5 {
            assert_eq!(locked_for(&db, &keys, t0).unwrap(), None, "attempt {i}");
            record_failure(&db, &keys, t0 + Duration::seconds(i)).unwrap();
        }
        let wait = locked_for(&db, &throttle_keys("mia", None), t0 + Duration::seconds(10)).unwrap();
        assert_eq!(wait, Some(15 * 60 - 10));
        assert_eq!(
            locked_for(&db, &keys, t0 + Duration::seconds(15 * 60 + 1)).unwrap(),
            None
        );
        clear_failures(&db, "user:mia").unwrap();
        assert_eq!(locked_for(&db, &keys, t0 + Duration::seconds(10)).unwrap(), None);
    }

    #[test]
    fn secrets_compare_by_content() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("abc", "ab"));
    }
}
