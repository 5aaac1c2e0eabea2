//! The publisher's SQLite file (`publisher.sqlite`): users with roles (argon2id
//! password hashes), registered players (hashes of their tokens), and the web UI's
//! state: sessions, failed sign-ins, settings, the media library, the draft and
//! publish requests. The only module that speaks SQL: the others call typed
//! methods of [`Db`], one submodule per table family. Every query is parameterised.
//!
//! Concurrency: the file is in WAL mode. A [`Db`] holds one writer connection
//! behind a mutex and a few idle read-only connections; each method checks one out
//! for its statements and gives it back before returning, so no caller holds the
//! database while it does anything else (writing git, signing, waiting for
//! `store.lock`). Readers never wait for the writer, and writers of this process
//! queue on the mutex rather than on SQLite's busy timeout, which is left for
//! other processes (the CLI).

mod alerts;
mod drafts;
mod enrolments;
mod fleet;
mod library;
mod mirrors;
mod players;
mod requests;
mod sessions;
mod settings;
mod users;
mod webhooks;

use std::cell::RefCell;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::{Connection, OpenFlags};

use crate::passwords::PasswordError;

pub use alerts::{
    AlertOpening, AlertPlayerFacts, AlertRow, AlertTransition, IntegrityEvent, NewAlert, PlayFact,
};
pub use drafts::SavedDraft;
pub use enrolments::{Enrolment, EnrolmentState, NewEnrolment, Redemption};
pub use fleet::{
    Applied, CommandView, FleetRow, LogEvent, PlayRecord, PlayerStatus, Purged, ReportedEntry, RowFilter,
    StatusUpdate,
};
pub use library::LibraryMedia;
pub use mirrors::{MirrorRow, NewMirror};
pub use players::{Actor, Player, PlayerAction, PlayerEvent, RegisteredPlayer, Via};
pub use requests::PublishRequest;
pub use sessions::{LoginAttempts, RecentAttempts};
pub use users::{check_username, Role, User};
#[cfg(test)]
pub(crate) use webhooks::test_alert;
pub use webhooks::{Webhook, WebhookSecret, WebhookTarget};

/// How long a statement waits for another process's write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Read-only connections kept open between requests; more are opened when
/// needed and closed afterwards.
const MAX_IDLE_READERS: usize = 4;

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
    // Sign-in attempts by account and address: a row is written before the
    // password is checked and removed when it was right, so each row is a failure
    // (or a check in progress). `forgiven`: the account later signed in from that
    // address, so the failure no longer counts for the account, only for the
    // address. Replaces `login_failures` (one row per key).
    "
DROP TABLE login_failures;
CREATE TABLE login_attempts (
    id INTEGER PRIMARY KEY,
    account TEXT NOT NULL,
    address TEXT NOT NULL,
    at TEXT NOT NULL,
    forgiven INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX login_attempts_by_account ON login_attempts (account, address, at);
CREATE INDEX login_attempts_by_address ON login_attempts (address, at);
",
    // Who disabled, enabled, re-keyed or removed a player, how and when (kept after
    // the player is removed). `player_generation` counts every change of `players`
    // (by trigger, whoever writes), so `serve` notices what another process (the
    // CLI) changed with one cheap read per tick.
    "
CREATE TABLE player_events (
    id INTEGER PRIMARY KEY,
    player_id TEXT NOT NULL,
    action TEXT NOT NULL CHECK (action IN ('disabled', 'enabled', 'token_rotated', 'removed')),
    by_name TEXT NOT NULL,
    via TEXT NOT NULL CHECK (via IN ('cli', 'web')),
    at TEXT NOT NULL
);
CREATE INDEX player_events_by_player ON player_events (player_id, id);
CREATE TABLE player_generation (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    n INTEGER NOT NULL
);
INSERT INTO player_generation (id, n) VALUES (1, 0);
CREATE TRIGGER players_inserted AFTER INSERT ON players
BEGIN UPDATE player_generation SET n = n + 1; END;
CREATE TRIGGER players_updated AFTER UPDATE ON players
BEGIN UPDATE player_generation SET n = n + 1; END;
CREATE TRIGGER players_deleted AFTER DELETE ON players
BEGIN UPDATE player_generation SET n = n + 1; END;
",
    // Supervision (issue 11): reports, plays, events, commands, alerts.
    fleet::MIGRATION,
    // Webhooks and their delivery cursors.
    webhooks::MIGRATION,
    // Alerts and their transitions (the webhook outbox reads those).
    alerts::MIGRATION,
    // Mirrors to object storage and their queue of versions to copy.
    mirrors::MIGRATION,
    // The audio clock of players on a sound device (issue 14).
    fleet::AUDIO_CLOCK_MIGRATION,
    // One-time enrolment codes (issue 13): hashed, one use, short validity.
    enrolments::MIGRATION,
    // The dashboard lists players by shop then id: read in that order from an
    // index that holds what it needs, instead of sorting every row each time.
    "CREATE INDEX players_by_shop ON players (shop, id, disabled);",
];

/// What the database refused, or a failure of the file itself (which names it).
/// The refusals word their message for the people who caused them; the
/// publisher's error keeps each one's meaning (`error.rs`).
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database `{path}`: {source}")]
    Sqlite { path: PathBuf, source: rusqlite::Error },
    /// A write through the shared handle from inside one of its own transactions,
    /// which would wait for itself forever: a bug, refused instead.
    #[error("database `{path}`: {what}")]
    Misuse { path: PathBuf, what: &'static str },
    #[error("role `{0}` does not exist: use admin, marketing, commercial or auditor")]
    NoSuchRole(String),
    #[error("user name `{0}` is not allowed: use 1-64 letters, digits, `.`, `-`, `_` or `@`")]
    UsernameRefused(String),
    #[error("user `{0}` already exists: choose another name")]
    UserExists(String),
    #[error("not found: user {0}")]
    NoSuchUser(i64),
    /// Demoting, disabling or removing this admin would leave none enabled.
    #[error("`{username}` is the last enabled admin: make another user admin first")]
    LastAdmin { username: String },
    #[error(transparent)]
    Password(#[from] PasswordError),
    #[error("player `{0}` already exists: choose another id")]
    PlayerExists(String),
    #[error("not found: player `{0}`: `skycast-publisher player list` shows the registered players")]
    NoSuchPlayer(String),
    #[error("not found: publish request {0}")]
    NoSuchRequest(i64),
    #[error("not found: enrolment {0}")]
    NoSuchEnrolment(i64),
    #[error(
        "player `{player}` already has a pending enrolment, valid until {expires_at}: wait for its code to be used or to expire, or cancel it (`skycast-publisher player cancel-enrollment --id {player}` or the admin page)"
    )]
    EnrolmentPending { player: String, expires_at: String },
    #[error("player `{0}` has no pending enrolment: `skycast-publisher player list` shows the pending ones")]
    NoPendingEnrolment(String),
    #[error(
        "this enrolment code is unknown: check it with your admin (codes look like ABCD-EFGH-JKMN-PQRS)"
    )]
    EnrolmentCodeUnknown,
    #[error(
        "this enrolment code was already used (player `{player}`, at {at}): a code works once; ask your admin for a new one"
    )]
    EnrolmentCodeUsed { player: String, at: String },
    #[error(
        "this enrolment code expired at {at} (player `{player}`): ask your admin for a new one (`skycast-publisher player enroll`)"
    )]
    EnrolmentCodeExpired { player: String, at: String },
    #[error("this enrolment code was cancelled by {by} (player `{player}`): ask your admin for a new one")]
    EnrolmentCodeCancelled { player: String, by: String },
}

impl DbError {
    /// A UNIQUE, CHECK or foreign key constraint refused the statement.
    fn is_constraint_violation(&self) -> bool {
        matches!(
            self,
            DbError::Sqlite {
                source: rusqlite::Error::SqliteFailure(e, _),
                ..
            } if e.code == rusqlite::ErrorCode::ConstraintViolation
        )
    }
}

/// The handle on `publisher.sqlite`. Shared by reference between threads (no
/// outer mutex): every method takes `&self` and holds a connection only while its
/// own statements run.
pub struct Db {
    path: PathBuf,
    conns: Conns,
}

enum Conns {
    /// A handle from [`Db::open`].
    Shared {
        /// `None` only while lent to a transaction, which holds the mutex meanwhile.
        writer: Mutex<Option<Connection>>,
        readers: Mutex<Vec<Connection>>,
    },
    /// The handle [`Db::transaction`] lends its closure: every statement, read or
    /// write, runs on the writer inside the open transaction.
    InTransaction(Mutex<Connection>),
}

thread_local! {
    /// The writers (by address) this thread is using: asking for one again from
    /// inside would wait for itself.
    static WRITERS_HELD: RefCell<Vec<usize>> = const { RefCell::new(Vec::new()) };
}

/// Creates the database file with mode 0600 (it holds password and token hashes), or
/// tightens an existing one; SQLite gives its `-wal` and `-shm` files the same mode.
/// A failure here is logged: opening the file then reports the real problem.
///
/// An existing file is never opened here, only `chmod`ed by path: closing any
/// descriptor of the database file drops every POSIX lock this process holds on
/// it, so another process (the CLI) would then checkpoint and delete the WAL under
/// this process's open connections, which go on reading (and writing) a stale one.
fn owner_only(path: &Path) {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let created = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path);
    let result = match created {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        }
        Err(e) => Err(e),
    };
    if let Err(e) = result {
        tracing::warn!(path = %path.display(), error = %e, "cannot make the database owner-only (0600)");
    }
}

/// Marks a writer as used by this thread until dropped.
struct Held(usize);

impl Held {
    fn enter(db: &Db, writer: &Mutex<Option<Connection>>) -> Result<Held, DbError> {
        let key = writer as *const Mutex<Option<Connection>> as usize;
        WRITERS_HELD.with(|held| {
            let mut held = held.borrow_mut();
            if held.contains(&key) {
                return Err(DbError::Misuse {
                    path: db.path.clone(),
                    what: "a write through the shared handle from inside one of its transactions: \
                           use the handle `Db::transaction` gives its closure",
                });
            }
            held.push(key);
            Ok(Held(key))
        })
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        WRITERS_HELD.with(|held| held.borrow_mut().retain(|k| *k != self.0));
    }
}

/// A poisoned lock only means another thread panicked mid-statement; SQLite
/// rolled that statement back, so the connection is still usable.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Timestamps in the tables: RFC 3339 UTC, whole seconds, so text order is time order.
fn timestamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Player and session tokens are 24+ random bytes, so a fast hash is enough:
/// nobody can brute-force the preimage, unlike a human password.
pub fn token_hash(token: &str) -> String {
    blake3::hash(token.as_bytes()).to_hex().to_string()
}

impl Db {
    /// Opens (creating if needed) the file, switches it to WAL mode and brings its
    /// tables to the current version.
    pub fn open(path: &Path) -> Result<Db, DbError> {
        let sqlite = |source| DbError::Sqlite {
            path: path.to_path_buf(),
            source,
        };
        owner_only(path);
        let writer = Connection::open(path).map_err(sqlite)?;
        writer
            .execute_batch("PRAGMA journal_mode = WAL; PRAGMA foreign_keys = ON;")
            .map_err(sqlite)?;
        writer.busy_timeout(BUSY_TIMEOUT).map_err(sqlite)?;
        migrate(&writer).map_err(sqlite)?;
        Ok(Db {
            path: path.to_path_buf(),
            conns: Conns::Shared {
                writer: Mutex::new(Some(writer)),
                readers: Mutex::new(Vec::new()),
            },
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn sqlite(&self) -> impl FnOnce(rusqlite::Error) -> DbError + '_ {
        move |source| DbError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    /// Runs `f` with every call on the `&Db` it is given in one write transaction
    /// (`BEGIN IMMEDIATE`): committed if `f` returns `Ok`, rolled back if it returns
    /// `Err` or panics. Inside a transaction already, `f` joins it. `f` holds the
    /// writer throughout: it must not write git, sign, wait for `store.lock` or hash
    /// a password, and must write only through the handle it is given.
    pub fn transaction<T, E: From<DbError>>(&self, f: impl FnOnce(&Db) -> Result<T, E>) -> Result<T, E> {
        let writer = match &self.conns {
            Conns::InTransaction(_) => return f(self),
            Conns::Shared { writer, .. } => writer,
        };
        let _held = Held::enter(self, writer)?;
        let mut slot = lock(writer);
        let conn = slot.take().ok_or_else(|| self.writer_lost())?;
        let tx = Db {
            path: self.path.clone(),
            conns: Conns::InTransaction(Mutex::new(conn)),
        };
        let outcome = catch_unwind(AssertUnwindSafe(|| -> Result<T, E> {
            tx.write(|c| c.execute_batch("BEGIN IMMEDIATE"))?;
            let value = f(&tx)?;
            tx.write(|c| c.execute_batch("COMMIT"))?;
            Ok(value)
        }));
        if let Conns::InTransaction(conn) = tx.conns {
            let conn = conn.into_inner().unwrap_or_else(PoisonError::into_inner);
            if !conn.is_autocommit() {
                if let Err(e) = conn.execute_batch("ROLLBACK") {
                    tracing::error!(path = %self.path.display(), error = %e, "cannot roll back a transaction");
                }
            }
            *slot = Some(conn);
        }
        match outcome {
            Ok(result) => result,
            Err(panic) => resume_unwind(panic),
        }
    }

    /// Runs statements that only read: on a read-only connection of the pool, or
    /// inside the open transaction.
    fn read<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T, DbError> {
        match &self.conns {
            Conns::InTransaction(conn) => f(&lock(conn)).map_err(self.sqlite()),
            Conns::Shared { readers, .. } => {
                let idle = lock(readers).pop();
                let conn = match idle {
                    Some(conn) => conn,
                    None => self.open_reader()?,
                };
                let result = f(&conn).map_err(self.sqlite());
                let mut idle = lock(readers);
                if idle.len() < MAX_IDLE_READERS {
                    idle.push(conn);
                }
                result
            }
        }
    }

    /// Whether this is the handle [`Db::transaction`] lends its closure.
    fn in_transaction(&self) -> bool {
        matches!(self.conns, Conns::InTransaction(_))
    }

    /// Runs statements that write, on the writer (or inside the open transaction).
    /// Several statements that must commit together go in [`Db::transaction`].
    fn write<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T, DbError> {
        match &self.conns {
            Conns::InTransaction(conn) => f(&lock(conn)).map_err(self.sqlite()),
            Conns::Shared { writer, .. } => {
                let _held = Held::enter(self, writer)?;
                let slot = lock(writer);
                let conn = slot.as_ref().ok_or_else(|| self.writer_lost())?;
                f(conn).map_err(self.sqlite())
            }
        }
    }

    fn writer_lost(&self) -> DbError {
        DbError::Misuse {
            path: self.path.clone(),
            what: "the writer connection was lost by an earlier failure: restart the publisher",
        }
    }

    fn open_reader(&self) -> Result<Connection, DbError> {
        let flags =
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI;
        let conn = Connection::open_with_flags(&self.path, flags).map_err(self.sqlite())?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(self.sqlite())?;
        Ok(conn)
    }
}

/// Brings the tables to the last of [`MIGRATIONS`]; `PRAGMA user_version` counts
/// those already applied.
fn migrate(conn: &Connection) -> rusqlite::Result<()> {
    let version: usize = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version) {
        let batch = format!("BEGIN; {sql} PRAGMA user_version = {}; COMMIT;", i + 1);
        conn.execute_batch(&batch)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use super::*;
    use crate::error::PublisherError;

    pub(super) fn open() -> (tempfile::TempDir, Db) {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("p.sqlite")).unwrap();
        (dir, db)
    }

    #[test]
    fn reopening_keeps_data_and_does_not_rerun_migrations() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.sqlite");
        Db::open(&path).unwrap().add_player("a", "main", "t").unwrap();
        assert!(Db::open(&path).unwrap().player_by_token("t").unwrap().is_some());
    }

    #[test]
    fn a_transaction_commits_on_ok_and_rolls_back_on_err_or_panic() {
        let (_dir, db) = open();
        db.transaction(|tx| -> Result<(), PublisherError> {
            tx.set_review_required(true)?;
            assert!(tx.review_required()?, "the transaction reads its own write");
            Ok(())
        })
        .unwrap();
        assert!(db.review_required().unwrap());

        let err = db
            .transaction(|tx| -> Result<(), PublisherError> {
                tx.set_review_required(false)?;
                Err(PublisherError::BadRequest("changed my mind".into()))
            })
            .unwrap_err();
        assert!(err.to_string().contains("changed my mind"));
        assert!(db.review_required().unwrap(), "an error rolls back");

        let panicked = catch_unwind(AssertUnwindSafe(|| {
            let _ = db.transaction(|tx| -> Result<(), PublisherError> {
                tx.set_review_required(false)?;
                panic!("boom");
            });
        }));
        assert!(panicked.is_err());
        assert!(db.review_required().unwrap(), "a panic rolls back");
        db.set_review_required(false).unwrap();
        assert!(
            !db.review_required().unwrap(),
            "the writer is usable after a panic"
        );
    }

    #[test]
    fn a_nested_transaction_joins_the_outer_one() {
        let (_dir, db) = open();
        let err = db
            .transaction(|tx| -> Result<(), PublisherError> {
                tx.transaction(|inner| inner.set_review_required(true))?;
                Err(PublisherError::Conflict("undo all".into()))
            })
            .unwrap_err();
        assert!(matches!(err, PublisherError::Conflict(_)));
        assert!(
            !db.review_required().unwrap(),
            "the inner write rolled back with the outer"
        );
    }

    #[test]
    fn writing_through_the_shared_handle_inside_a_transaction_is_refused_not_deadlocked() {
        let (_dir, db) = open();
        let err = db.transaction(|_tx| db.set_review_required(true)).unwrap_err();
        assert!(matches!(&err, DbError::Misuse { .. }), "{err}");
        assert!(!db.review_required().unwrap());
        db.set_review_required(true).unwrap();
        assert!(db.review_required().unwrap());
    }

    #[test]
    fn reads_do_not_wait_for_an_open_transaction() {
        let (_dir, db) = open();
        db.set_review_required(true).unwrap();
        let (inside_tx, inside_rx) = mpsc::channel::<()>();
        let (go_on_tx, go_on_rx) = mpsc::channel::<()>();
        let shared = &db;
        std::thread::scope(|s| {
            let writer = s.spawn(move || {
                shared
                    .transaction(|tx| -> Result<(), PublisherError> {
                        tx.set_review_required(false)?;
                        inside_tx.send(()).unwrap();
                        go_on_rx.recv().unwrap();
                        Ok(())
                    })
                    .unwrap();
            });
            inside_rx.recv().unwrap();
            // The writer is held by the open transaction; a read still answers,
            // with the last committed value.
            assert!(shared.review_required().unwrap());
            go_on_tx.send(()).unwrap();
            writer.join().unwrap();
        });
        assert!(!db.review_required().unwrap());
    }

    #[test]
    fn refusals_keep_their_message_and_status_in_the_publisher_error() {
        use axum::http::StatusCode;

        use crate::passwords::PasswordError;

        let (_dir, db) = open();
        let root = db.create_user("root", "long enough", Role::Admin).unwrap();
        db.add_player("main-1", "main", "t").unwrap();
        let refusals = [
            (Role::parse("boss").unwrap_err(), StatusCode::BAD_REQUEST),
            (check_username("no spaces").unwrap_err(), StatusCode::BAD_REQUEST),
            (
                db.create_user("ann", "short", Role::Auditor).unwrap_err(),
                StatusCode::BAD_REQUEST,
            ),
            (
                db.create_user("root", "long enough", Role::Auditor).unwrap_err(),
                StatusCode::CONFLICT,
            ),
            (db.delete_user(root).unwrap_err(), StatusCode::CONFLICT),
            (
                db.add_player("main-1", "main", "u").unwrap_err(),
                StatusCode::CONFLICT,
            ),
            (db.user(99).unwrap_err(), StatusCode::NOT_FOUND),
            (db.request(99).unwrap_err(), StatusCode::NOT_FOUND),
            (db.player("ghost").unwrap_err(), StatusCode::NOT_FOUND),
        ];
        for (refusal, status) in refusals {
            let message = refusal.to_string();
            let composed = PublisherError::from(refusal);
            assert_eq!(composed.to_string(), message);
            assert_eq!(composed.status(), status, "{message}");
        }
        let unreadable = DbError::Password(PasswordError::UnreadableHash { reason: "bad".into() });
        assert!(matches!(
            PublisherError::from(unreadable),
            PublisherError::Internal(m) if m == "a stored password hash cannot be read: bad"
        ));
        let misuse = db.transaction(|_tx| db.set_review_required(true)).unwrap_err();
        assert!(matches!(
            PublisherError::from(misuse),
            PublisherError::Db(DbError::Misuse { .. })
        ));
    }

    #[test]
    fn a_database_error_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let err = Db::open(&dir.path().join("missing/p.sqlite")).err().unwrap();
        assert!(err.to_string().contains("missing/p.sqlite"), "{err}");
    }
}
