//! The publisher's SQLite file: users with roles (argon2id password hashes),
//! registered players (hashes of their tokens), and the web UI's state: sessions,
//! failed logins, settings, the media library, the draft and publish requests.
//! Every query is parameterised.

use std::path::{Path, PathBuf};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use rusqlite::{params, Connection, OptionalExtension};

use crate::error::{PublisherError, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Admin,
    Marketing,
    Commercial,
    Auditor,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Marketing => "marketing",
            Role::Commercial => "commercial",
            Role::Auditor => "auditor",
        }
    }

    pub const ALL: [Role; 4] = [Role::Admin, Role::Marketing, Role::Commercial, Role::Auditor];

    pub fn parse(text: &str) -> Result<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == text).ok_or_else(|| {
            PublisherError::BadRequest(format!(
                "role `{text}` does not exist: use admin, marketing, commercial or auditor"
            ))
        })
    }
}

/// A person who signs in to the web UI.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct User {
    pub id: i64,
    pub username: String,
    pub role: Role,
    pub disabled: bool,
    pub created_at: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Player {
    pub id: String,
    pub shop: String,
}

pub struct Db {
    conn: Connection,
    path: PathBuf,
}

const MIGRATIONS: &[&str] = &[
    "
CREATE TABLE users (
    id INTEGER PRIMARY KEY,
    username TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('admin', 'marketing', 'commercial', 'auditor')),
    disabled INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))
);
CREATE TABLE players (
    id TEXT PRIMARY KEY,
    shop TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    disabled INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))
);
",
    "
CREATE TABLE sessions (
    token_hash TEXT PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    csrf TEXT NOT NULL,
    flash TEXT,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL
);
CREATE TABLE login_failures (
    key TEXT NOT NULL,
    at TEXT NOT NULL
);
CREATE INDEX login_failures_by_key ON login_failures (key, at);
CREATE TABLE settings (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE library (
    id TEXT PRIMARY KEY,
    title TEXT NOT NULL,
    artist TEXT,
    kind TEXT NOT NULL,
    duration_ms INTEGER NOT NULL,
    size INTEGER NOT NULL,
    loudness_lufs REAL,
    file_name TEXT NOT NULL,
    added_by TEXT NOT NULL,
    added_at TEXT NOT NULL
);
CREATE TABLE draft (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    base_version INTEGER,
    body TEXT NOT NULL,
    updated_by TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE publish_requests (
    id INTEGER PRIMARY KEY,
    author TEXT NOT NULL,
    message TEXT NOT NULL,
    body TEXT NOT NULL,
    created_at TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'approved', 'rejected')),
    decided_by TEXT,
    decided_at TEXT,
    version INTEGER
);
",
];

/// An argon2id hash of a random password nobody knows, checked when a user name
/// does not exist.
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c2t5Y2FzdGR1bW15c2FsdA$3YcQeG4eUmDUF6RShEbOx2SLpnhfvZXH3EZpMu/0fUo";

/// User names appear in pages, commit authors and logs: letters, digits and `.-_@`.
pub fn check_username(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.chars().count() <= 64
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '.' | '-' | '_' | '@'));
    if ok {
        Ok(())
    } else {
        Err(PublisherError::BadRequest(format!(
            "user name `{name}` is not allowed: use 1-64 letters, digits, `.`, `-`, `_` or `@`"
        )))
    }
}

/// Checks `password` against an argon2id hash; without a hash (no such user) it
/// checks against a dummy one, so both cases cost the same time.
pub fn password_matches(hash: Option<&str>, password: &str) -> Result<bool> {
    let parsed =
        PasswordHash::new(hash.unwrap_or(DUMMY_HASH)).map_err(|e| PublisherError::Internal(e.to_string()))?;
    let matches = Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok();
    Ok(matches && hash.is_some())
}

fn hash_password(username: &str, password: &str) -> Result<String> {
    let length = password.chars().count();
    if length < 8 {
        return Err(PublisherError::BadRequest(format!(
            "password for `{username}` is too short: use at least 8 characters"
        )));
    }
    if length > 200 {
        return Err(PublisherError::BadRequest(format!(
            "password for `{username}` is too long: use at most 200 characters"
        )));
    }
    let salt = SaltString::encode_b64(&crate::random_bytes::<16>())
        .map_err(|e| PublisherError::Internal(e.to_string()))?;
    Ok(Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| PublisherError::Internal(e.to_string()))?
        .to_string())
}

/// Player tokens are 24+ random bytes, so a fast hash is enough: nobody can
/// brute-force the preimage, unlike a human password.
pub fn token_hash(token: &str) -> String {
    blake3::hash(token.as_bytes()).to_hex().to_string()
}

impl Db {
    pub fn open(path: &Path) -> Result<Db> {
        let err = PublisherError::db(path);
        let conn = Connection::open(path).map_err(err)?;
        let db = Db {
            conn,
            path: path.to_path_buf(),
        };
        db.conn
            .execute_batch("PRAGMA journal_mode = WAL; PRAGMA busy_timeout = 5000; PRAGMA foreign_keys = ON;")
            .map_err(PublisherError::db(path))?;
        db.migrate()?;
        Ok(db)
    }

    fn migrate(&self) -> Result<()> {
        let version: usize = self
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(PublisherError::db(&self.path))?;
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version) {
            let batch = format!("BEGIN; {sql} PRAGMA user_version = {}; COMMIT;", i + 1);
            self.conn
                .execute_batch(&batch)
                .map_err(PublisherError::db(&self.path))?;
        }
        Ok(())
    }

    /// The connection, for the modules that own the web UI's tables.
    pub(crate) fn conn(&self) -> &Connection {
        &self.conn
    }

    pub(crate) fn err(&self) -> impl FnOnce(rusqlite::Error) -> PublisherError {
        PublisherError::db(self.path.clone())
    }

    pub fn create_user(&self, username: &str, password: &str, role: Role) -> Result<i64> {
        check_username(username)?;
        let hash = hash_password(username, password)?;
        let inserted = self.conn.execute(
            "INSERT INTO users (username, password_hash, role) VALUES (?1, ?2, ?3)",
            params![username, hash, role.as_str()],
        );
        match inserted {
            Ok(_) => Ok(self.conn.last_insert_rowid()),
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                Err(PublisherError::Conflict(format!(
                    "user `{username}` already exists: choose another name"
                )))
            }
            Err(e) => Err(self.err()(e)),
        }
    }

    fn user_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<User> {
        let role: String = r.get(2)?;
        Ok(User {
            id: r.get(0)?,
            username: r.get(1)?,
            // The CHECK constraint on `users.role` keeps it one of the four.
            role: Role::parse(&role).unwrap_or(Role::Auditor),
            disabled: r.get(3)?,
            created_at: r.get(4)?,
        })
    }

    pub fn users(&self) -> Result<Vec<User>> {
        let mut stmt = self
            .conn
            .prepare("SELECT id, username, role, disabled, created_at FROM users ORDER BY username")
            .map_err(self.err())?;
        let rows = stmt
            .query_map([], Db::user_from_row)
            .map_err(self.err())?
            .collect::<rusqlite::Result<Vec<User>>>()
            .map_err(self.err());
        rows
    }

    pub fn user(&self, id: i64) -> Result<User> {
        self.conn
            .query_row(
                "SELECT id, username, role, disabled, created_at FROM users WHERE id = ?1",
                params![id],
                Db::user_from_row,
            )
            .optional()
            .map_err(self.err())?
            .ok_or_else(|| PublisherError::NotFound(format!("user {id}")))
    }

    /// Changes a user's role and whether they may sign in. Refuses to leave the
    /// publisher without an enabled admin. Disabling ends the user's sessions.
    pub fn update_user(&self, id: i64, role: Role, disabled: bool) -> Result<()> {
        let user = self.user(id)?;
        if user.role == Role::Admin && !user.disabled && (role != Role::Admin || disabled) {
            self.check_not_last_admin(&user)?;
        }
        self.conn
            .execute(
                "UPDATE users SET role = ?2, disabled = ?3 WHERE id = ?1",
                params![id, role.as_str(), disabled],
            )
            .map_err(self.err())?;
        if disabled {
            self.conn
                .execute("DELETE FROM sessions WHERE user_id = ?1", params![id])
                .map_err(self.err())?;
        }
        Ok(())
    }

    pub fn set_password(&self, id: i64, password: &str) -> Result<()> {
        let user = self.user(id)?;
        let hash = hash_password(&user.username, password)?;
        self.conn
            .execute(
                "UPDATE users SET password_hash = ?2 WHERE id = ?1",
                params![id, hash],
            )
            .map_err(self.err())?;
        self.conn
            .execute("DELETE FROM sessions WHERE user_id = ?1", params![id])
            .map_err(self.err())?;
        Ok(())
    }

    pub fn delete_user(&self, id: i64) -> Result<()> {
        let user = self.user(id)?;
        if user.role == Role::Admin && !user.disabled {
            self.check_not_last_admin(&user)?;
        }
        self.conn
            .execute("DELETE FROM users WHERE id = ?1", params![id])
            .map_err(self.err())?;
        Ok(())
    }

    fn check_not_last_admin(&self, user: &User) -> Result<()> {
        let admins: i64 = self
            .conn
            .query_row(
                "SELECT COUNT(*) FROM users WHERE role = 'admin' AND disabled = 0",
                [],
                |r| r.get(0),
            )
            .map_err(self.err())?;
        if admins <= 1 {
            return Err(PublisherError::Conflict(format!(
                "`{}` is the last enabled admin: make another user admin first",
                user.username
            )));
        }
        Ok(())
    }

    /// True when the user exists, is enabled and the password matches.
    pub fn check_password(&self, username: &str, password: &str) -> Result<bool> {
        Ok(self.authenticate(username, password)?.is_some())
    }

    /// The enabled user with this name and password. An unknown name costs the same
    /// argon2 work as a wrong password, so timing does not tell which names exist.
    pub fn authenticate(&self, username: &str, password: &str) -> Result<Option<User>> {
        let stored = self.password_record(username)?;
        match stored {
            Some((id, hash)) if password_matches(Some(&hash), password)? => Ok(Some(self.user(id)?)),
            Some(_) => Ok(None),
            None => {
                password_matches(None, password)?;
                Ok(None)
            }
        }
    }

    /// The id and password hash of an enabled user, for checking a password
    /// without holding the database (argon2 takes tens of milliseconds).
    pub fn password_record(&self, username: &str) -> Result<Option<(i64, String)>> {
        self.conn
            .query_row(
                "SELECT id, password_hash FROM users WHERE username = ?1 AND disabled = 0",
                params![username],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(self.err())
    }

    pub fn add_player(&self, id: &str, shop: &str, token: &str) -> Result<()> {
        let inserted = self.conn.execute(
            "INSERT INTO players (id, shop, token_hash) VALUES (?1, ?2, ?3)",
            params![id, shop, token_hash(token)],
        );
        match inserted {
            Ok(_) => Ok(()),
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                Err(PublisherError::PlayerExists(id.to_string()))
            }
            Err(e) => Err(PublisherError::db(&self.path)(e)),
        }
    }

    pub fn player_by_token(&self, token: &str) -> Result<Option<Player>> {
        self.conn
            .query_row(
                "SELECT id, shop FROM players WHERE token_hash = ?1 AND disabled = 0",
                params![token_hash(token)],
                |r| {
                    Ok(Player {
                        id: r.get(0)?,
                        shop: r.get(1)?,
                    })
                },
            )
            .optional()
            .map_err(PublisherError::db(&self.path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_checked_against_argon2_hashes() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("p.sqlite")).unwrap();
        db.create_user("alice", "correct horse", Role::Admin).unwrap();
        assert!(db.check_password("alice", "correct horse").unwrap());
        assert!(!db.check_password("alice", "wrong horse").unwrap());
        assert!(!db.check_password("bob", "correct horse").unwrap());
        let stored: String = db
            .conn
            .query_row("SELECT password_hash FROM users", [], |r| r.get(0))
            .unwrap();
        assert!(stored.starts_with("$argon2id$") && !stored.contains("correct"));
    }

    #[test]
    fn player_tokens_are_stored_hashed_and_ids_are_unique() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("p.sqlite")).unwrap();
        db.add_player("main-1", "main", "tok-secret").unwrap();
        assert_eq!(db.player_by_token("tok-secret").unwrap().unwrap().shop, "main");
        assert!(db.player_by_token("other").unwrap().is_none());
        assert!(matches!(
            db.add_player("main-1", "main", "x"),
            Err(PublisherError::PlayerExists(_))
        ));
        let stored: String = db
            .conn
            .query_row("SELECT token_hash FROM players", [], |r| r.get(0))
            .unwrap();
        assert_ne!(stored, "tok-secret");
    }

    #[test]
    fn reopening_keeps_data_and_does_not_rerun_migrations() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.sqlite");
        Db::open(&path).unwrap().add_player("a", "main", "t").unwrap();
        assert!(Db::open(&path).unwrap().player_by_token("t").unwrap().is_some());
    }
}
