//! Webhooks and their delivery cursors over the alert transitions.
//!
//! The outbox is the alerts' own `alert_transitions` table (`db/alerts.rs`):
//! each hook keeps the id of the last transition it delivered (`cursor`), so
//! nothing is copied per hook and a restart goes on where delivery stopped. A
//! failed delivery keeps its attempt count and the instant of the next try here,
//! so the backoff survives a restart too.

use std::fmt;

use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::{params, OptionalExtension, Row};
use serde::Serialize;

use super::{timestamp, Db, DbError};

/// The tables of notifications, one migration.
pub(super) const MIGRATION: &str = "
CREATE TABLE webhooks (
    id INTEGER PRIMARY KEY,
    url TEXT NOT NULL,
    secret TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at TEXT NOT NULL,
    cursor INTEGER NOT NULL,
    next_attempt_at TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    last_status INTEGER,
    last_delivered_at TEXT
);
";

/// A webhook's shared secret. Its `Debug` hides it, so a logged hook never
/// shows it; only signing reads it ([`WebhookSecret::expose`]).
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookSecret(String);

impl WebhookSecret {
    pub fn new(text: String) -> WebhookSecret {
        WebhookSecret(text)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookSecret(..)")
    }
}

/// A webhook as people see it: never its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Webhook {
    pub id: i64,
    pub url: String,
    pub created_by: String,
    pub created_at: String,
    /// The id of the last alert transition delivered.
    pub cursor: i64,
    /// Failed attempts in a row at the transition after `cursor`.
    pub attempts: u32,
    /// RFC 3339; `None`: due now.
    pub next_attempt_at: Option<String>,
    pub last_error: Option<String>,
    pub last_status: Option<u16>,
    pub last_delivered_at: Option<String>,
}

/// A webhook as the deliverer needs it: with its secret.
#[derive(Debug, Clone)]
pub struct WebhookTarget {
    pub hook: Webhook,
    pub secret: WebhookSecret,
}

const COLUMNS: &str = "id, url, created_by, created_at, cursor, attempts, next_attempt_at, \
                       last_error, last_status, last_delivered_at, secret";

fn target_of(r: &Row<'_>) -> rusqlite::Result<WebhookTarget> {
    Ok(WebhookTarget {
        hook: Webhook {
            id: r.get(0)?,
            url: r.get(1)?,
            created_by: r.get(2)?,
            created_at: r.get(3)?,
            cursor: r.get(4)?,
            attempts: r.get(5)?,
            next_attempt_at: r.get(6)?,
            last_error: r.get(7)?,
            last_status: r.get(8)?,
            last_delivered_at: r.get(9)?,
        },
        secret: WebhookSecret(r.get(10)?),
    })
}

/// `next_attempt_at` keeps milliseconds: the first retry comes one second after a failure.
fn instant(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

impl Db {
    /// Adds a webhook whose cursor is the newest alert transition: it gets only
    /// incidents that open or resolve from now on.
    pub fn add_webhook(
        &self,
        url: &str,
        secret: &WebhookSecret,
        created_by: &str,
        now: DateTime<Utc>,
    ) -> Result<Webhook, DbError> {
        let id = self.write(|c| {
            c.execute(
                "INSERT INTO webhooks (url, secret, created_by, created_at, cursor)
                 VALUES (?1, ?2, ?3, ?4, (SELECT COALESCE(MAX(id), 0) FROM alert_transitions))",
                params![url, secret.expose(), created_by, timestamp(now)],
            )?;
            Ok(c.last_insert_rowid())
        })?;
        let found = self.webhook(id)?;
        // Just inserted by the writer, which readers see once it returns.
        found.ok_or_else(|| DbError::Misuse {
            path: self.path.clone(),
            what: "a webhook just added cannot be read back",
        })
    }

    /// Every webhook, oldest first.
    pub fn webhooks(&self) -> Result<Vec<Webhook>, DbError> {
        Ok(self.webhook_targets()?.into_iter().map(|t| t.hook).collect())
    }

    pub fn webhook(&self, id: i64) -> Result<Option<Webhook>, DbError> {
        let found = self.read(|c| {
            c.query_row(
                &format!("SELECT {COLUMNS} FROM webhooks WHERE id = ?1"),
                params![id],
                target_of,
            )
            .optional()
        })?;
        Ok(found.map(|t| t.hook))
    }

    /// Every webhook with its secret, for delivery.
    pub fn webhook_targets(&self) -> Result<Vec<WebhookTarget>, DbError> {
        self.read(|c| {
            let mut stmt = c.prepare(&format!("SELECT {COLUMNS} FROM webhooks ORDER BY id"))?;
            let rows = stmt.query_map([], target_of)?;
            rows.collect()
        })
    }

    /// Removes a webhook; `None` when there was none with this id.
    pub fn remove_webhook(&self, id: i64) -> Result<Option<Webhook>, DbError> {
        let found = self.webhook(id)?;
        if found.is_some() {
            self.write(|c| c.execute("DELETE FROM webhooks WHERE id = ?1", params![id]))?;
        }
        Ok(found)
    }

    /// Transition `delivered` reached the hook with `status`: the cursor moves
    /// on (never back) and the failure count starts again.
    pub fn webhook_delivered(
        &self,
        id: i64,
        delivered: i64,
        status: u16,
        now: DateTime<Utc>,
    ) -> Result<(), DbError> {
        self.write(|c| {
            c.execute(
                "UPDATE webhooks SET cursor = MAX(cursor, ?2), attempts = 0, next_attempt_at = NULL,
                 last_error = NULL, last_status = ?3, last_delivered_at = ?4 WHERE id = ?1",
                params![id, delivered, status, instant(now)],
            )
        })?;
        Ok(())
    }

    /// A delivery failed: the attempt count, the next try and what went wrong.
    pub fn webhook_failed(
        &self,
        id: i64,
        attempts: u32,
        next_attempt_at: DateTime<Utc>,
        error: &str,
        status: Option<u16>,
    ) -> Result<(), DbError> {
        self.write(|c| {
            c.execute(
                "UPDATE webhooks SET attempts = ?2, next_attempt_at = ?3, last_error = ?4,
                 last_status = ?5 WHERE id = ?1",
                params![id, attempts, instant(next_attempt_at), error, status],
            )
        })?;
        Ok(())
    }
}

/// An "unreachable" alert of `player` in shop `main`, for tests of the outbox.
#[cfg(test)]
pub(crate) fn test_alert(player: &str) -> super::NewAlert<'_> {
    super::NewAlert {
        kind: "unreachable",
        player_id: player,
        subject: "",
        shop: "main",
        text_en: "unreachable",
        text_fr: "injoignable",
        detail: "{}",
        once: false,
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::super::tests::open;
    use super::super::AlertOpening;
    use super::*;

    fn incident(db: &Db, player: &str, at: DateTime<Utc>) -> i64 {
        match db.open_alert(&test_alert(player), at).unwrap() {
            AlertOpening::Opened(id) => id,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_new_hook_starts_after_the_last_transition_and_its_cursor_only_moves_on() {
        let (_dir, db) = open();
        let t0 = Utc.with_ymd_and_hms(2026, 12, 1, 10, 0, 0).unwrap();
        let first = incident(&db, "a", t0);
        db.resolve_alert(first, t0).unwrap();
        let secret = WebhookSecret::new("skw_test".into());
        let hook = db
            .add_webhook("https://example.com/h", &secret, "admin", t0)
            .unwrap();
        let before = db.alert_transitions_after(0, 100).unwrap();
        assert_eq!(
            hook.cursor,
            before.last().unwrap().id,
            "old incidents are not sent"
        );
        assert!(db.alert_transitions_after(hook.cursor, 10).unwrap().is_empty());

        incident(&db, "b", t0);
        let pending = db.alert_transitions_after(hook.cursor, 10).unwrap();
        assert_eq!(pending.len(), 1);
        db.webhook_failed(
            hook.id,
            1,
            t0 + chrono::Duration::seconds(1),
            "POST answered 500",
            Some(500),
        )
        .unwrap();
        let failed = db.webhook(hook.id).unwrap().unwrap();
        assert_eq!(
            (
                failed.attempts,
                failed.last_status,
                failed.next_attempt_at.as_deref()
            ),
            (1, Some(500), Some("2026-12-01T10:00:01.000Z"))
        );
        db.webhook_delivered(hook.id, pending[0].id, 204, t0).unwrap();
        db.webhook_delivered(hook.id, hook.cursor, 204, t0).unwrap();
        let done = db.webhook(hook.id).unwrap().unwrap();
        assert_eq!(done.cursor, pending[0].id, "the cursor never goes back");
        assert_eq!(
            (done.attempts, done.next_attempt_at, done.last_error),
            (0, None, None)
        );

        let targets = db.webhook_targets().unwrap();
        assert_eq!(targets[0].secret.expose(), "skw_test");
        assert!(!format!("{:?}", db.webhooks().unwrap()).contains("skw_test"));
        assert_eq!(db.remove_webhook(hook.id).unwrap().map(|h| h.id), Some(hook.id));
        assert_eq!(db.remove_webhook(hook.id).unwrap(), None);
        assert!(db.webhooks().unwrap().is_empty());
    }
}
