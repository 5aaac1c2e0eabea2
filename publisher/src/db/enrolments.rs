//! The `enrolments` table: one-time codes `player enroll` (and the admin's
//! "Register a player" form) hands out, each known only by the blake3 hash of
//! its normalised text, for one player id and shop, valid until `expires_at`.
//! A code is redeemed once: in the same transaction the player is registered
//! with its new token and the code is marked used, so a reused, expired,
//! cancelled or unknown code registers nothing.

use chrono::{DateTime, Utc};
use rusqlite::{params, OptionalExtension, Row};
use serde::Serialize;

use super::players::record;
use super::{timestamp, token_hash, Actor, Db, DbError, PlayerAction, Via};

/// Every column of a row, in the order [`enrolment`] reads them.
const COLUMNS: &str = "id, player_id, shop, server_url, player_data, created_by, via, created_at, \
                       expires_at, used_at, used_from, cancelled_at, cancelled_by";

/// A new enrolment, before it is recorded.
#[derive(Debug, Clone)]
pub struct NewEnrolment<'a> {
    pub player_id: &'a str,
    pub shop: &'a str,
    /// The one-time code as typed on the box (normalised); only its hash is kept.
    pub code: &'a str,
    /// What goes into the player's configuration: the server URL and its data directory.
    pub server_url: &'a str,
    pub player_data: &'a str,
    pub created_by: &'a str,
    pub via: Via,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// A recorded enrolment, as pages and the CLI list it: never its code hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Enrolment {
    pub id: i64,
    pub player_id: String,
    pub shop: String,
    pub server_url: String,
    pub player_data: String,
    pub created_by: String,
    pub via: Via,
    pub created_at: String,
    pub expires_at: String,
    pub used_at: Option<String>,
    /// The address the code was redeemed from.
    pub used_from: Option<String>,
    pub cancelled_at: Option<String>,
    pub cancelled_by: Option<String>,
}

/// Where an enrolment stands at an instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EnrolmentState {
    Pending,
    Used,
    Expired,
    Cancelled,
}

impl EnrolmentState {
    pub fn as_str(self) -> &'static str {
        match self {
            EnrolmentState::Pending => "pending",
            EnrolmentState::Used => "used",
            EnrolmentState::Expired => "expired",
            EnrolmentState::Cancelled => "cancelled",
        }
    }
}

impl Enrolment {
    /// Used, cancelled, expired (at or after `expires_at`) or still pending at `now`.
    pub fn state(&self, now: DateTime<Utc>) -> EnrolmentState {
        if self.used_at.is_some() {
            EnrolmentState::Used
        } else if self.cancelled_at.is_some() {
            EnrolmentState::Cancelled
        } else if parse_timestamp(&self.expires_at).is_none_or(|t| now >= t) {
            EnrolmentState::Expired
        } else {
            EnrolmentState::Pending
        }
    }
}

fn parse_timestamp(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

fn enrolment(r: &Row<'_>) -> rusqlite::Result<Enrolment> {
    let via: String = r.get(6)?;
    Ok(Enrolment {
        id: r.get(0)?,
        player_id: r.get(1)?,
        shop: r.get(2)?,
        server_url: r.get(3)?,
        player_data: r.get(4)?,
        created_by: r.get(5)?,
        via: if via == "web" { Via::Web } else { Via::Cli },
        created_at: r.get(7)?,
        expires_at: r.get(8)?,
        used_at: r.get(9)?,
        used_from: r.get(10)?,
        cancelled_at: r.get(11)?,
        cancelled_by: r.get(12)?,
    })
}

/// Who redeems a code, from where and when, with the token the new player gets.
#[derive(Debug, Clone, Copy)]
pub struct Redemption<'a> {
    pub code: &'a str,
    pub token: &'a str,
    pub from: &'a str,
    pub at: DateTime<Utc>,
}

impl Db {
    /// Records a pending enrolment. Refused when the id is registered already
    /// (`PlayerExists`) or has a pending enrolment (`EnrolmentPending`): both
    /// checked in the same transaction as the insert.
    pub fn add_enrolment(&self, new: &NewEnrolment<'_>) -> Result<Enrolment, DbError> {
        self.transaction(|tx| {
            if tx.player(new.player_id).is_ok() {
                return Err(DbError::PlayerExists(new.player_id.to_string()));
            }
            if let Some(pending) = tx.pending_enrolment_of(new.player_id, new.created_at)? {
                return Err(DbError::EnrolmentPending {
                    player: pending.player_id,
                    expires_at: pending.expires_at,
                });
            }
            let id = tx.write(|c| {
                c.execute(
                    "INSERT INTO enrolments (player_id, shop, code_hash, server_url, player_data,
                                             created_by, via, created_at, expires_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                    params![
                        new.player_id,
                        new.shop,
                        token_hash(new.code),
                        new.server_url,
                        new.player_data,
                        new.created_by,
                        new.via.as_str(),
                        timestamp(new.created_at),
                        timestamp(new.expires_at),
                    ],
                )?;
                Ok(c.last_insert_rowid())
            })?;
            tx.enrolment(id)
        })
    }

    /// Enrolment `id`; `NoSuchEnrolment` if there is none.
    pub fn enrolment(&self, id: i64) -> Result<Enrolment, DbError> {
        self.read(|c| {
            c.query_row(
                &format!("SELECT {COLUMNS} FROM enrolments WHERE id = ?1"),
                params![id],
                enrolment,
            )
            .optional()
        })?
        .ok_or(DbError::NoSuchEnrolment(id))
    }

    /// The enrolment whose code this is (normalised), whatever its state.
    pub fn enrolment_by_code(&self, code: &str) -> Result<Option<Enrolment>, DbError> {
        self.read(|c| {
            c.query_row(
                &format!("SELECT {COLUMNS} FROM enrolments WHERE code_hash = ?1"),
                params![token_hash(code)],
                enrolment,
            )
            .optional()
        })
    }

    /// Player `id`'s enrolment still pending at `now`, if any.
    pub fn pending_enrolment_of(&self, id: &str, now: DateTime<Utc>) -> Result<Option<Enrolment>, DbError> {
        Ok(self
            .enrolments_of(Some(id))?
            .into_iter()
            .find(|e| e.state(now) == EnrolmentState::Pending))
    }

    /// Every enrolment, newest first.
    pub fn enrolments(&self) -> Result<Vec<Enrolment>, DbError> {
        self.enrolments_of(None)
    }

    fn enrolments_of(&self, player: Option<&str>) -> Result<Vec<Enrolment>, DbError> {
        self.read(|c| {
            c.prepare(&format!(
                "SELECT {COLUMNS} FROM enrolments WHERE ?1 IS NULL OR player_id = ?1 ORDER BY id DESC"
            ))?
            .query_map(params![player], enrolment)?
            .collect()
        })
    }

    /// Cancels player `id`'s pending enrolment: its code is refused from then
    /// on. `NoPendingEnrolment` when there is none.
    pub fn cancel_enrolment(&self, id: &str, by: &str, now: DateTime<Utc>) -> Result<Enrolment, DbError> {
        self.transaction(|tx| {
            let pending = tx
                .pending_enrolment_of(id, now)?
                .ok_or_else(|| DbError::NoPendingEnrolment(id.to_string()))?;
            tx.write(|c| {
                c.execute(
                    "UPDATE enrolments SET cancelled_at = ?2, cancelled_by = ?3 WHERE id = ?1",
                    params![pending.id, timestamp(now), by],
                )
            })?;
            tx.enrolment(pending.id)
        })
    }

    /// Redeems a code: in one transaction, checks that it is known, unused, not
    /// cancelled and not expired, registers its player with `token`, and marks
    /// the code used. Each refusal has its own error and registers nothing.
    pub fn redeem_enrolment(&self, r: Redemption<'_>) -> Result<Enrolment, DbError> {
        let redeemed = self.transaction(|tx| {
            let e = tx
                .enrolment_by_code(r.code)?
                .ok_or(DbError::EnrolmentCodeUnknown)?;
            match e.state(r.at) {
                EnrolmentState::Pending => {}
                EnrolmentState::Used => {
                    return Err(DbError::EnrolmentCodeUsed {
                        player: e.player_id,
                        at: e.used_at.unwrap_or_default(),
                    })
                }
                EnrolmentState::Expired => {
                    return Err(DbError::EnrolmentCodeExpired {
                        player: e.player_id,
                        at: e.expires_at,
                    })
                }
                EnrolmentState::Cancelled => {
                    return Err(DbError::EnrolmentCodeCancelled {
                        player: e.player_id,
                        by: e.cancelled_by.unwrap_or_default(),
                    })
                }
            }
            tx.add_player(&e.player_id, &e.shop, r.token)?;
            let maker = Actor {
                name: &e.created_by,
                via: e.via,
                at: r.at,
            };
            tx.write(|c| {
                c.execute(
                    "UPDATE enrolments SET used_at = ?2, used_from = ?3 WHERE id = ?1",
                    params![e.id, timestamp(r.at), r.from],
                )?;
                record(c, &e.player_id, PlayerAction::Enrolled, maker)
            })?;
            tx.enrolment(e.id)
        })?;
        self.signal_players_changed();
        Ok(redeemed)
    }
}

pub(super) const MIGRATION: &str = "
CREATE TABLE enrolments (
    id INTEGER PRIMARY KEY,
    player_id TEXT NOT NULL,
    shop TEXT NOT NULL,
    code_hash TEXT NOT NULL UNIQUE,
    server_url TEXT NOT NULL,
    player_data TEXT NOT NULL,
    created_by TEXT NOT NULL,
    via TEXT NOT NULL CHECK (via IN ('cli', 'web')),
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    used_at TEXT,
    used_from TEXT,
    cancelled_at TEXT,
    cancelled_by TEXT
);
CREATE INDEX enrolments_by_player ON enrolments (player_id, id);
-- `player_events` learns `enrolled` (SQLite cannot change a CHECK in place).
CREATE TABLE player_events_new (
    id INTEGER PRIMARY KEY,
    player_id TEXT NOT NULL,
    action TEXT NOT NULL CHECK (action IN ('disabled', 'enabled', 'token_rotated', 'removed', 'enrolled')),
    by_name TEXT NOT NULL,
    via TEXT NOT NULL CHECK (via IN ('cli', 'web')),
    at TEXT NOT NULL
);
INSERT INTO player_events_new (id, player_id, action, by_name, via, at)
    SELECT id, player_id, action, by_name, via, at FROM player_events;
DROP TABLE player_events;
ALTER TABLE player_events_new RENAME TO player_events;
CREATE INDEX player_events_by_player ON player_events (player_id, id);
";

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use super::super::tests::open;
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
    }

    fn new<'a>(id: &'a str, code: &'a str, t0: DateTime<Utc>) -> NewEnrolment<'a> {
        NewEnrolment {
            player_id: id,
            shop: "main",
            code,
            server_url: "https://pub.example:8443",
            player_data: "data",
            created_by: "ann",
            via: Via::Cli,
            created_at: t0,
            expires_at: t0 + Duration::minutes(60),
        }
    }

    fn redeem<'a>(code: &'a str, token: &'a str, t: DateTime<Utc>) -> Redemption<'a> {
        Redemption {
            code,
            token,
            from: "10.0.0.1",
            at: t,
        }
    }

    #[test]
    fn a_code_registers_its_player_once_and_only_its_hash_is_stored() {
        let (_dir, db) = open();
        let t0 = at("2026-12-01T10:00:00Z");
        db.add_enrolment(&new("main-1", "CODE1", t0)).unwrap();
        let stored: String = db
            .read(|c| c.query_row("SELECT code_hash FROM enrolments", [], |r| r.get(0)))
            .unwrap();
        assert_ne!(stored, "CODE1");
        let e = db
            .redeem_enrolment(redeem("CODE1", "tok", t0 + Duration::minutes(5)))
            .unwrap();
        assert_eq!(e.state(t0), EnrolmentState::Used);
        assert_eq!(db.player_by_token("tok").unwrap().unwrap().id, "main-1");
        let event = db.player("main-1").unwrap().last_change.unwrap();
        assert_eq!(
            (event.action, event.by.as_str(), event.at.as_str()),
            (PlayerAction::Enrolled, "ann", "2026-12-01T10:05:00Z"),
            "recorded with who made the code"
        );
        let again = db.redeem_enrolment(redeem("CODE1", "tok2", t0)).unwrap_err();
        assert!(matches!(again, DbError::EnrolmentCodeUsed { .. }), "{again}");
        assert!(db.player_by_token("tok2").unwrap().is_none());
    }

    #[test]
    fn expired_cancelled_and_unknown_codes_register_nothing() {
        let (_dir, db) = open();
        let t0 = at("2026-12-01T10:00:00Z");
        db.add_enrolment(&new("main-1", "OLD", t0)).unwrap();
        let late = t0 + Duration::minutes(60);
        let err = db.redeem_enrolment(redeem("OLD", "t", late)).unwrap_err();
        assert!(matches!(err, DbError::EnrolmentCodeExpired { .. }), "{err}");
        let err = db.redeem_enrolment(redeem("NOPE", "t", t0)).unwrap_err();
        assert!(matches!(err, DbError::EnrolmentCodeUnknown), "{err}");
        // Expired, so a new one may be made; then cancelled.
        db.add_enrolment(&new("main-1", "NEW", late)).unwrap();
        let err = db.add_enrolment(&new("main-1", "NEWER", late)).unwrap_err();
        assert!(matches!(err, DbError::EnrolmentPending { .. }), "{err}");
        db.cancel_enrolment("main-1", "bob", late).unwrap();
        let err = db.redeem_enrolment(redeem("NEW", "t", late)).unwrap_err();
        assert!(matches!(err, DbError::EnrolmentCodeCancelled { .. }), "{err}");
        assert!(db.players().unwrap().is_empty());
        assert!(matches!(
            db.cancel_enrolment("main-1", "bob", late),
            Err(DbError::NoPendingEnrolment(_))
        ));
    }

    #[test]
    fn a_registered_id_gets_no_enrolment() {
        let (_dir, db) = open();
        db.add_player("main-1", "main", "tok").unwrap();
        let err = db
            .add_enrolment(&new("main-1", "C", at("2026-12-01T10:00:00Z")))
            .unwrap_err();
        assert!(matches!(err, DbError::PlayerExists(_)), "{err}");
    }
}
