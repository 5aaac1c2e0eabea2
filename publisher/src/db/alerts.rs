//! Alerts (issue 11): `alerts`, each incident with its words in English and
//! French, and `alert_transitions`, one row when an alert opens and one when it
//! resolves (the webhook outbox reads them after its cursor). At most one alert
//! is open per (kind, player, subject), by a partial unique index. Also the reads
//! the alert engine needs from the supervision tables (`players`,
//! `player_status`, `plays`, `player_log`), as typed facts.

use chrono::{DateTime, Utc};
use rusqlite::{params, params_from_iter, OptionalExtension, Row};
use serde::Serialize;

use super::{timestamp, Db, DbError};

/// The tables of alerts, one migration.
pub(super) const MIGRATION: &str = "
CREATE TABLE alerts (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    player_id TEXT NOT NULL,
    subject TEXT NOT NULL DEFAULT '',
    shop TEXT NOT NULL,
    opened_at TEXT NOT NULL,
    resolved_at TEXT,
    clear_since TEXT,
    acknowledged_by TEXT,
    acknowledged_at TEXT,
    text_en TEXT NOT NULL,
    text_fr TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT ''
);
CREATE UNIQUE INDEX alerts_one_open ON alerts (kind, player_id, subject) WHERE resolved_at IS NULL;
CREATE INDEX alerts_by_key ON alerts (kind, player_id, subject);
CREATE INDEX alerts_by_player ON alerts (player_id, id);
CREATE TABLE alert_transitions (
    id INTEGER PRIMARY KEY,
    alert_id INTEGER NOT NULL REFERENCES alerts(id),
    transition TEXT NOT NULL CHECK (transition IN ('opened', 'resolved')),
    at TEXT NOT NULL
);
";

/// One alert as stored; `kind` is the text of `fleet::AlertKind` (the engine
/// names the kinds, the database keeps their text).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AlertRow {
    pub id: i64,
    pub kind: String,
    pub player_id: String,
    /// What distinguishes two open alerts of one kind on one player (a missed
    /// ad's slot and media); `''` when nothing does.
    pub subject: String,
    pub shop: String,
    /// RFC 3339 UTC.
    pub opened_at: String,
    pub resolved_at: Option<String>,
    /// Since when the condition has been gone (the hold-down before resolving).
    pub clear_since: Option<String>,
    pub acknowledged_by: Option<String>,
    pub acknowledged_at: Option<String>,
    pub text_en: String,
    pub text_fr: String,
    /// Machine-readable facts of the condition when it opened (JSON text).
    pub detail: String,
}

/// One opening or resolution, in order: the webhook outbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AlertTransition {
    pub id: i64,
    /// `opened` or `resolved`.
    pub transition: String,
    /// RFC 3339 UTC.
    pub at: String,
    /// The alert as it is now (a transition `opened` may show it resolved since).
    pub alert: AlertRow,
}

/// An alert to open.
#[derive(Debug, Clone, Copy)]
pub struct NewAlert<'a> {
    pub kind: &'a str,
    pub player_id: &'a str,
    pub subject: &'a str,
    pub shop: &'a str,
    pub text_en: &'a str,
    pub text_fr: &'a str,
    pub detail: &'a str,
    /// A past incident (a missed ad): opened once ever for its key, never again
    /// after it resolved.
    pub once: bool,
}

/// What [`Db::open_alert`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertOpening {
    /// A new alert with this id, and its `opened` transition.
    Opened(i64),
    /// One was open already (its hold-down, if any, is cancelled).
    AlreadyOpen(i64),
    /// A `once` alert that was opened and resolved before.
    Settled,
}

/// A registered player with its last report, as the alert engine reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertPlayerFacts {
    pub player_id: String,
    pub shop: String,
    pub disabled: bool,
    pub registered_at: Option<DateTime<Utc>>,
    /// Server time of the last report; `None`: never reported.
    pub last_report_at: Option<DateTime<Utc>>,
    pub active_version: Option<u64>,
    /// Since when its reports have shown it behind the head (`None`: in sync).
    pub behind_since: Option<DateTime<Utc>>,
    /// `playing`, `idle_closed`, `no_device`, `error`, `not_started`.
    pub output: Option<String>,
    pub clock_offset_ms: Option<i64>,
    pub free_disk_bytes: Option<u64>,
}

/// One play of the proof-of-play log, as the missed-ad check reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlayFact {
    pub player_id: String,
    pub media: String,
    /// The playlist, or the message key.
    pub source: String,
    /// The player's corrected clock.
    pub started_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    /// `playing`, `complete`, `interrupted`, `resumed` or `skipped`.
    pub outcome: String,
}

/// A `verify_failed` or `media_damaged` event of a player.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntegrityEvent {
    pub player_id: String,
    /// `verify_failed` or `media_damaged`.
    pub kind: String,
    pub detail: String,
    pub media: Option<String>,
    /// Server time it arrived.
    pub received_at: DateTime<Utc>,
}

const ALERT_COLUMNS: &str = "a.id, a.kind, a.player_id, a.subject, a.shop, a.opened_at, a.resolved_at, \
                             a.clear_since, a.acknowledged_by, a.acknowledged_at, a.text_en, a.text_fr, a.detail";

fn alert_at(r: &Row<'_>, first: usize) -> rusqlite::Result<AlertRow> {
    Ok(AlertRow {
        id: r.get(first)?,
        kind: r.get(first + 1)?,
        player_id: r.get(first + 2)?,
        subject: r.get(first + 3)?,
        shop: r.get(first + 4)?,
        opened_at: r.get(first + 5)?,
        resolved_at: r.get(first + 6)?,
        clear_since: r.get(first + 7)?,
        acknowledged_by: r.get(first + 8)?,
        acknowledged_at: r.get(first + 9)?,
        text_en: r.get(first + 10)?,
        text_fr: r.get(first + 11)?,
        detail: r.get(first + 12)?,
    })
}

fn alert_row(r: &Row<'_>) -> rusqlite::Result<AlertRow> {
    alert_at(r, 0)
}

/// A stored RFC 3339 instant; `None` for NULL or anything unreadable.
fn instant_of(text: Option<String>) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text.as_deref()?)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// SQLite integers are signed; a negative count or size reads as unknown.
fn unsigned(n: Option<i64>) -> Option<u64> {
    n.and_then(|n| u64::try_from(n).ok())
}

fn record_transition(
    c: &rusqlite::Connection,
    alert_id: i64,
    transition: &str,
    at: &str,
) -> rusqlite::Result<usize> {
    c.execute(
        "INSERT INTO alert_transitions (alert_id, transition, at) VALUES (?1, ?2, ?3)",
        params![alert_id, transition, at],
    )
}

impl Db {
    /// Opens the alert unless one is open for its (kind, player, subject), which is
    /// then re-armed (its hold-down cancelled) and left as is: never a duplicate.
    pub fn open_alert(&self, new: &NewAlert<'_>, at: DateTime<Utc>) -> Result<AlertOpening, DbError> {
        let at = timestamp(at);
        self.transaction(|tx| {
            let open = tx.write(|c| {
                c.query_row(
                    "UPDATE alerts SET clear_since = NULL
                     WHERE kind = ?1 AND player_id = ?2 AND subject = ?3 AND resolved_at IS NULL
                     RETURNING id",
                    params![new.kind, new.player_id, new.subject],
                    |r| r.get::<_, i64>(0),
                )
                .optional()
            })?;
            if let Some(id) = open {
                return Ok(AlertOpening::AlreadyOpen(id));
            }
            if new.once {
                let before = tx.read(|c| {
                    c.query_row(
                        "SELECT 1 FROM alerts WHERE kind = ?1 AND player_id = ?2 AND subject = ?3",
                        params![new.kind, new.player_id, new.subject],
                        |_| Ok(()),
                    )
                    .optional()
                })?;
                if before.is_some() {
                    return Ok(AlertOpening::Settled);
                }
            }
            let id = tx.write(|c| {
                c.execute(
                    "INSERT INTO alerts (kind, player_id, subject, shop, opened_at, text_en, text_fr, detail)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                    params![
                        new.kind,
                        new.player_id,
                        new.subject,
                        new.shop,
                        at,
                        new.text_en,
                        new.text_fr,
                        new.detail
                    ],
                )?;
                let id = c.last_insert_rowid();
                record_transition(c, id, "opened", &at)?;
                Ok(id)
            })?;
            Ok(AlertOpening::Opened(id))
        })
    }

    /// Starts the hold-down of an open alert whose condition is gone: it resolves
    /// once [`Db::resolve_alert`] is called after the hold-down. Does nothing to
    /// one already clearing (its first `clear_since` stays) or resolved.
    pub fn mark_alert_clear(&self, id: i64, since: DateTime<Utc>) -> Result<(), DbError> {
        self.write(|c| {
            c.execute(
                "UPDATE alerts SET clear_since = ?2
                 WHERE id = ?1 AND resolved_at IS NULL AND clear_since IS NULL",
                params![id, timestamp(since)],
            )
        })?;
        Ok(())
    }

    /// The condition is back during the hold-down: the alert stays open as it
    /// was, with no new transition (no flapping).
    pub fn rearm_alert(&self, id: i64) -> Result<(), DbError> {
        self.write(|c| {
            c.execute(
                "UPDATE alerts SET clear_since = NULL WHERE id = ?1 AND resolved_at IS NULL",
                params![id],
            )
        })?;
        Ok(())
    }

    /// Resolves an open alert and records its `resolved` transition; `false` when
    /// it was not open (resolved already, or no such alert).
    pub fn resolve_alert(&self, id: i64, at: DateTime<Utc>) -> Result<bool, DbError> {
        let at = timestamp(at);
        self.transaction(|tx| {
            tx.write(|c| {
                let changed = c.execute(
                    "UPDATE alerts SET resolved_at = ?2, clear_since = NULL
                     WHERE id = ?1 AND resolved_at IS NULL",
                    params![id, at],
                )?;
                if changed == 0 {
                    return Ok(false);
                }
                record_transition(c, id, "resolved", &at)?;
                Ok(true)
            })
        })
    }

    /// Records who acknowledged an alert (open or resolved); the first
    /// acknowledgement stays. `None` when there is no alert `id`.
    pub fn acknowledge_alert(
        &self,
        id: i64,
        by: &str,
        at: DateTime<Utc>,
    ) -> Result<Option<AlertRow>, DbError> {
        self.write(|c| {
            c.execute(
                "UPDATE alerts SET acknowledged_by = ?2, acknowledged_at = ?3
                 WHERE id = ?1 AND acknowledged_by IS NULL",
                params![id, by, timestamp(at)],
            )
        })?;
        self.alert(id)
    }

    pub fn alert(&self, id: i64) -> Result<Option<AlertRow>, DbError> {
        self.read(|c| {
            c.query_row(
                &format!("SELECT {ALERT_COLUMNS} FROM alerts a WHERE a.id = ?1"),
                params![id],
                alert_row,
            )
            .optional()
        })
    }

    /// Open alerts, of every player or of one, oldest first.
    pub fn open_alerts(&self, player_id: Option<&str>) -> Result<Vec<AlertRow>, DbError> {
        self.read(|c| {
            c.prepare(&format!(
                "SELECT {ALERT_COLUMNS} FROM alerts a
                 WHERE a.resolved_at IS NULL AND (?1 IS NULL OR a.player_id = ?1)
                 ORDER BY a.id"
            ))?
            .query_map(params![player_id], alert_row)?
            .collect()
        })
    }

    /// The last `limit` alerts, open and resolved, newest first.
    pub fn alert_history(&self, limit: usize) -> Result<Vec<AlertRow>, DbError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(|c| {
            c.prepare(&format!(
                "SELECT {ALERT_COLUMNS} FROM alerts a ORDER BY a.id DESC LIMIT ?1"
            ))?
            .query_map(params![limit], alert_row)?
            .collect()
        })
    }

    /// Up to `limit` transitions with an id above `after_id`, oldest first, each
    /// with its alert.
    pub fn alert_transitions_after(
        &self,
        after_id: i64,
        limit: usize,
    ) -> Result<Vec<AlertTransition>, DbError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(|c| {
            c.prepare(&format!(
                "SELECT t.id, t.transition, t.at, {ALERT_COLUMNS}
                 FROM alert_transitions t JOIN alerts a ON a.id = t.alert_id
                 WHERE t.id > ?1 ORDER BY t.id LIMIT ?2"
            ))?
            .query_map(params![after_id, limit], |r| {
                Ok(AlertTransition {
                    id: r.get(0)?,
                    transition: r.get(1)?,
                    at: r.get(2)?,
                    alert: alert_at(r, 3)?,
                })
            })?
            .collect()
        })
    }

    /// Every registered player with what its last report said (nothing when it
    /// never reported).
    pub fn alert_player_facts(&self) -> Result<Vec<AlertPlayerFacts>, DbError> {
        self.read(|c| {
            c.prepare(
                "SELECT p.id, p.shop, p.disabled, p.created_at, s.received_at, s.active_version,
                        s.output, s.clock_offset_ms, s.free_disk_bytes, s.behind_since
                 FROM players p LEFT JOIN player_status s ON s.player_id = p.id
                 ORDER BY p.shop, p.id",
            )?
            .query_map([], |r| {
                Ok(AlertPlayerFacts {
                    player_id: r.get(0)?,
                    shop: r.get(1)?,
                    disabled: r.get(2)?,
                    registered_at: instant_of(r.get(3)?),
                    last_report_at: instant_of(r.get(4)?),
                    active_version: unsigned(r.get(5)?),
                    output: r.get(6)?,
                    clock_offset_ms: r.get(7)?,
                    free_disk_bytes: unsigned(r.get(8)?),
                    behind_since: instant_of(r.get(9)?),
                })
            })?
            .collect()
        })
    }

    /// Plays in `shops` that started at or after `since` (the player's corrected clock).
    pub fn plays_started_since(
        &self,
        since: DateTime<Utc>,
        shops: &[&str],
    ) -> Result<Vec<PlayFact>, DbError> {
        if shops.is_empty() {
            return Ok(Vec::new());
        }
        let marks = vec!["?"; shops.len()].join(", ");
        let since = timestamp(since);
        let values = std::iter::once(since.as_str()).chain(shops.iter().copied());
        self.rows_with_times(
            &format!(
                "SELECT player_id, media, source, started_at, ended_at, outcome
                 FROM plays WHERE started_at >= ? AND shop IN ({marks}) ORDER BY started_at"
            ),
            params_from_iter(values),
            play_fact,
        )
    }

    /// `verify_failed` and `media_damaged` events received at or after `since`.
    pub fn integrity_events_since(&self, since: DateTime<Utc>) -> Result<Vec<IntegrityEvent>, DbError> {
        self.rows_with_times(
            "SELECT player_id, kind, detail, media, received_at FROM player_log
             WHERE kind IN ('verify_failed', 'media_damaged') AND received_at >= ?1
             ORDER BY received_at",
            params![timestamp(since)],
            integrity_event,
        )
    }

    /// The rows of `sql` that `row` reads; `None` from it leaves a row out (a
    /// time that does not read as RFC 3339, which ingest never writes).
    fn rows_with_times<T>(
        &self,
        sql: &str,
        values: impl rusqlite::Params,
        row: fn(&Row<'_>) -> rusqlite::Result<Option<T>>,
    ) -> Result<Vec<T>, DbError> {
        let rows: Vec<Option<T>> = self.read(|c| c.prepare(sql)?.query_map(values, row)?.collect())?;
        Ok(rows.into_iter().flatten().collect())
    }
}

fn play_fact(r: &Row<'_>) -> rusqlite::Result<Option<PlayFact>> {
    let Some(started_at) = instant_of(r.get(3)?) else {
        return Ok(None);
    };
    Ok(Some(PlayFact {
        player_id: r.get(0)?,
        media: r.get(1)?,
        source: r.get(2)?,
        started_at,
        ended_at: instant_of(r.get(4)?),
        outcome: r.get(5)?,
    }))
}

fn integrity_event(r: &Row<'_>) -> rusqlite::Result<Option<IntegrityEvent>> {
    let Some(received_at) = instant_of(r.get(4)?) else {
        return Ok(None);
    };
    Ok(Some(IntegrityEvent {
        player_id: r.get(0)?,
        kind: r.get(1)?,
        detail: r.get(2)?,
        media: r.get(3)?,
        received_at,
    }))
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;

    use super::super::tests::open;
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
    }

    fn alert<'a>(kind: &'a str, subject: &'a str, once: bool) -> NewAlert<'a> {
        NewAlert {
            kind,
            player_id: "main-1",
            subject,
            shop: "main",
            text_en: "english",
            text_fr: "français",
            detail: "{}",
            once,
        }
    }

    /// (alert id, transition) in order, each checked to carry its alert's own instant.
    fn transitions(db: &Db) -> Vec<(i64, String)> {
        let all = db.alert_transitions_after(0, 100).unwrap();
        for t in &all {
            let own = match t.transition.as_str() {
                "opened" => Some(&t.alert.opened_at),
                _ => t.alert.resolved_at.as_ref(),
            };
            assert_eq!(own, Some(&t.at), "{t:?}");
        }
        all.into_iter().map(|t| (t.alert.id, t.transition)).collect()
    }

    #[test]
    fn an_alert_opens_once_and_resolves_once() {
        let (_dir, db) = open();
        let t0 = at("2026-12-01T10:00:00Z");
        let first = db.open_alert(&alert("unreachable", "", false), t0).unwrap();
        let AlertOpening::Opened(id) = first else {
            panic!("{first:?}");
        };
        for later in 1..3 {
            let again = db
                .open_alert(&alert("unreachable", "", false), t0 + TimeDelta::seconds(later))
                .unwrap();
            assert_eq!(again, AlertOpening::AlreadyOpen(id));
        }
        // Another subject or kind is another alert.
        assert!(matches!(
            db.open_alert(&alert("missed_ad", "a", true), t0).unwrap(),
            AlertOpening::Opened(_)
        ));
        assert!(matches!(
            db.open_alert(&alert("missed_ad", "b", true), t0).unwrap(),
            AlertOpening::Opened(_)
        ));
        assert_eq!(db.open_alerts(None).unwrap().len(), 3);
        assert_eq!(db.open_alerts(Some("main-1")).unwrap().len(), 3);
        assert!(db.open_alerts(Some("other")).unwrap().is_empty());

        assert!(db.resolve_alert(id, t0 + TimeDelta::seconds(30)).unwrap());
        assert!(
            !db.resolve_alert(id, t0 + TimeDelta::seconds(31)).unwrap(),
            "resolved once"
        );
        let row = db.alert(id).unwrap().unwrap();
        assert_eq!(row.resolved_at.as_deref(), Some("2026-12-01T10:00:30Z"));
        assert_eq!(
            transitions(&db),
            [
                (id, "opened".to_string()),
                (id + 1, "opened".to_string()),
                (id + 2, "opened".to_string()),
                (id, "resolved".to_string())
            ]
        );
        // A new incident of the same kind is a new alert.
        let next = db
            .open_alert(&alert("unreachable", "", false), t0 + TimeDelta::minutes(5))
            .unwrap();
        assert!(matches!(next, AlertOpening::Opened(n) if n != id));
        // A past incident, once resolved, never opens again.
        let AlertOpening::AlreadyOpen(missed) = db.open_alert(&alert("missed_ad", "a", true), t0).unwrap()
        else {
            panic!("open");
        };
        db.resolve_alert(missed, t0).unwrap();
        assert_eq!(
            db.open_alert(&alert("missed_ad", "a", true), t0).unwrap(),
            AlertOpening::Settled
        );
    }

    #[test]
    fn hold_down_keeps_its_first_instant_and_rearming_cancels_it() {
        let (_dir, db) = open();
        let t0 = at("2026-12-01T10:00:00Z");
        let AlertOpening::Opened(id) = db.open_alert(&alert("disk_low", "", false), t0).unwrap() else {
            panic!("opens");
        };
        db.mark_alert_clear(id, t0 + TimeDelta::seconds(1)).unwrap();
        db.mark_alert_clear(id, t0 + TimeDelta::seconds(2)).unwrap();
        let clear = db.alert(id).unwrap().unwrap().clear_since;
        assert_eq!(clear.as_deref(), Some("2026-12-01T10:00:01Z"));
        db.rearm_alert(id).unwrap();
        assert_eq!(db.alert(id).unwrap().unwrap().clear_since, None);
        db.mark_alert_clear(id, t0 + TimeDelta::seconds(3)).unwrap();
        // Opening again while clearing re-arms too.
        assert_eq!(
            db.open_alert(&alert("disk_low", "", false), t0 + TimeDelta::seconds(4))
                .unwrap(),
            AlertOpening::AlreadyOpen(id)
        );
        assert_eq!(db.alert(id).unwrap().unwrap().clear_since, None);
        assert_eq!(transitions(&db), [(id, "opened".to_string())]);
    }

    #[test]
    fn acknowledging_keeps_the_first_name_and_history_lists_newest_first() {
        let (_dir, db) = open();
        let t0 = at("2026-12-01T10:00:00Z");
        for kind in ["unreachable", "clock_skew", "disk_low"] {
            db.open_alert(&alert(kind, "", false), t0).unwrap();
        }
        let row = db.acknowledge_alert(2, "ann", t0).unwrap().unwrap();
        assert_eq!(row.acknowledged_by.as_deref(), Some("ann"));
        let row = db.acknowledge_alert(2, "bob", t0).unwrap().unwrap();
        assert_eq!(row.acknowledged_by.as_deref(), Some("ann"));
        assert_eq!(db.acknowledge_alert(99, "ann", t0).unwrap(), None);
        db.resolve_alert(1, t0).unwrap();
        let kinds: Vec<String> = db.alert_history(2).unwrap().into_iter().map(|a| a.kind).collect();
        assert_eq!(kinds, ["disk_low", "clock_skew"]);
        assert_eq!(db.open_alerts(None).unwrap().len(), 2);
        let after: Vec<i64> = db
            .alert_transitions_after(2, 10)
            .unwrap()
            .into_iter()
            .map(|t| t.id)
            .collect();
        assert_eq!(after, [3, 4]);
        assert_eq!(db.alert_transitions_after(0, 1).unwrap().len(), 1);
    }
}
