//! The publisher's SQLite file: users with roles (argon2id password hashes) and
//! registered players (hashes of their tokens). Every query is parameterised.

use std::path::{Path, PathBuf};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use rusqlite::{params, Connection, OptionalExtension};

use crate::error::{PublisherError, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

const MIGRATIONS: &[&str] = &["
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
"];

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

    pub fn create_user(&self, username: &str, password: &str, role: Role) -> Result<()> {
        if password.chars().count() < 8 {
            return Err(PublisherError::BadRequest(format!(
                "password for `{username}` is too short: use at least 8 characters"
            )));
        }
        let salt = SaltString::encode_b64(&crate::random_bytes::<16>())
            .map_err(|e| PublisherError::Internal(e.to_string()))?;
        let hash = Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map_err(|e| PublisherError::Internal(e.to_string()))?
            .to_string();
        self.conn
            .execute(
                "INSERT INTO users (username, password_hash, role) VALUES (?1, ?2, ?3)",
                params![username, hash, role.as_str()],
            )
            .map_err(PublisherError::db(&self.path))?;
        Ok(())
    }

    /// True when the user exists, is enabled and the password matches.
    pub fn check_password(&self, username: &str, password: &str) -> Result<bool> {
        let stored: Option<String> = self
            .conn
            .query_row(
                "SELECT password_hash FROM users WHERE username = ?1 AND disabled = 0",
                params![username],
                |r| r.get(0),
            )
            .optional()
            .map_err(PublisherError::db(&self.path))?;
        let Some(stored) = stored else { return Ok(false) };
        let parsed = PasswordHash::new(&stored).map_err(|e| PublisherError::Internal(e.to_string()))?;
        Ok(Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok())
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
