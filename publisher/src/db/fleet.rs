//! Supervision's tables: each player's last report (`player_status`), proof of
//! play (`plays`), player events (`player_log`) and the commands waiting for
//! players (`commands`, with the `commands_generation` counter its trigger bumps
//! so `serve` notices commands another process queued).
//!
//! A report is applied in one transaction ([`Db::apply_report`]): entries at or
//! below the outbox's acknowledged sequence number are dropped, so a re-sent
//! batch counts once; a new outbox id (a player whose data was wiped) starts
//! the cursor again.

use chrono::{DateTime, Utc};
use rusqlite::{params, OptionalExtension, Row};
use serde::Serialize;
use skycast_schema::report::{AudioClock, CommandKind, Fetching, NowPlaying, OutputState, PlayEntry};

use super::{timestamp, Db, DbError};

/// The tables of supervision, one migration. Times are RFC 3339 UTC in whole
/// seconds (text order is time order). A play is keyed by its player's outbox
/// too: a wiped player's play log numbers its rows from 1 again.
pub(super) const MIGRATION: &str = "
CREATE TABLE player_status (
    player_id TEXT PRIMARY KEY,
    received_at TEXT NOT NULL,
    active_version INTEGER,
    fetching_version INTEGER,
    fetching_done INTEGER,
    fetching_total INTEGER,
    now_media TEXT,
    now_title TEXT,
    now_kind TEXT,
    now_started_at TEXT,
    output TEXT NOT NULL,
    last_error TEXT,
    clock_offset_ms INTEGER,
    free_disk_bytes INTEGER,
    agent_version TEXT NOT NULL,
    uptime_secs INTEGER NOT NULL,
    outbox TEXT NOT NULL,
    acked_seq INTEGER NOT NULL,
    behind_since TEXT
);
CREATE TABLE plays (
    player_id TEXT NOT NULL,
    outbox TEXT NOT NULL,
    play_id TEXT NOT NULL,
    shop TEXT NOT NULL,
    media TEXT NOT NULL,
    title TEXT NOT NULL,
    kind TEXT NOT NULL,
    source TEXT NOT NULL,
    version INTEGER NOT NULL,
    started_at TEXT NOT NULL,
    ended_at TEXT,
    outcome TEXT NOT NULL,
    received_at TEXT NOT NULL,
    PRIMARY KEY (player_id, outbox, play_id)
);
CREATE INDEX plays_by_time ON plays (started_at);
CREATE INDEX plays_by_shop ON plays (shop, started_at);
CREATE INDEX plays_by_media ON plays (media, started_at);
CREATE INDEX plays_by_kind ON plays (kind, started_at);
CREATE INDEX plays_by_player ON plays (player_id, started_at);
CREATE TABLE player_log (
    id INTEGER PRIMARY KEY,
    player_id TEXT NOT NULL,
    shop TEXT NOT NULL,
    outbox TEXT NOT NULL,
    seq INTEGER NOT NULL,
    kind TEXT NOT NULL,
    detail TEXT NOT NULL,
    version INTEGER,
    media TEXT,
    command_id TEXT,
    at TEXT NOT NULL,
    received_at TEXT NOT NULL
);
CREATE INDEX player_log_by_time ON player_log (at);
CREATE INDEX player_log_by_player ON player_log (player_id, at);
CREATE INDEX player_log_by_kind ON player_log (kind, at);
CREATE INDEX player_log_by_shop ON player_log (shop, at);
CREATE TABLE commands (
    id TEXT PRIMARY KEY,
    player_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    requested_by TEXT NOT NULL,
    requested_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'sent', 'done', 'expired')),
    sent_at TEXT,
    done_at TEXT,
    detail TEXT
);
CREATE INDEX commands_by_player ON commands (player_id, state);
CREATE INDEX commands_by_time ON commands (requested_at);
CREATE TABLE commands_generation (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    n INTEGER NOT NULL
);
INSERT INTO commands_generation (id, n) VALUES (1, 0);
CREATE TRIGGER commands_inserted AFTER INSERT ON commands
BEGIN UPDATE commands_generation SET n = n + 1; END;
";

/// Seconds after which a command handed out but not confirmed done is handed out again.
pub const COMMAND_RESEND_SECS: i64 = 30;

/// A player's latest report, as the server keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlayerStatus {
    pub player_id: String,
    /// Server time the report arrived, RFC 3339 UTC.
    pub received_at: String,
    #[serde(flatten)]
    pub report: StatusUpdate,
    pub outbox: String,
    pub acked_seq: u64,
    /// When it first reported a version behind the head (cleared once in sync).
    pub behind_since: Option<String>,
}

/// A registered player beside its latest report, as the dashboard lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetRow {
    pub id: String,
    pub shop: String,
    pub disabled: bool,
    /// `None` until it first reports.
    pub status: Option<PlayerStatus>,
}

/// What a report says about the player itself (its entries go to [`PlayRecord`]
/// and [`LogEvent`]). Text fields are already cut to their bounds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatusUpdate {
    pub active_version: Option<u64>,
    pub fetching: Option<Fetching>,
    pub now_playing: Option<NowPlaying>,
    pub output: OutputState,
    pub last_error: Option<String>,
    pub clock_offset_ms: Option<i64>,
    pub free_disk_bytes: Option<u64>,
    pub audio_clock: Option<AudioClock>,
    pub agent_version: String,
    pub uptime_secs: u64,
}

/// One row of proof of play: the play as its player reported it (times in
/// RFC 3339 UTC, the player's corrected clock), whose player and shop, and
/// when the server heard of it last.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlayRecord {
    pub player_id: String,
    pub shop: String,
    #[serde(flatten)]
    pub play: PlayEntry,
    /// Server time the latest news of this play arrived.
    pub received_at: String,
}

/// One player event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LogEvent {
    pub player_id: String,
    pub shop: String,
    pub seq: u64,
    /// `EventKind::as_str`.
    pub kind: String,
    pub detail: String,
    pub version: Option<u64>,
    pub media: Option<String>,
    pub command_id: Option<String>,
    /// The player's corrected time, RFC 3339 UTC.
    pub at: String,
    pub received_at: String,
}

/// One entry of a report, ready to store (its times normalised to RFC 3339 UTC).
#[derive(Debug, Clone)]
pub enum ReportedEntry {
    Play(PlayRecord),
    Event(LogEvent),
}

/// A command as the dashboard shows it: requested → done (or expired).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CommandView {
    pub id: String,
    pub player_id: String,
    pub kind: CommandKind,
    pub requested_by: String,
    pub requested_at: String,
    pub expires_at: String,
    /// `pending`, `sent`, `done` or `expired`.
    pub state: String,
    pub done_at: Option<String>,
}

/// Which rows an export or a page wants: times are `[from, to)` on the player's
/// corrected time (`started_at` of a play, `at` of an event).
#[derive(Debug, Clone, Default)]
pub struct RowFilter {
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    pub shop: Option<String>,
    pub player: Option<String>,
    pub media: Option<String>,
    /// A play's kind (`music`, `ad`...) or an event's kind (`swapped`...).
    pub kind: Option<String>,
}

/// What one applied report changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Applied {
    /// The highest sequence number kept for the report's outbox.
    pub acked: u64,
    /// Play entries kept (a play is sent when it starts and again when it ends).
    pub plays: u64,
    /// Of those, plays that ended (any outcome but `playing`): each play counts once here.
    pub plays_ended: u64,
    pub events: u64,
    /// Entries dropped as already kept.
    pub duplicates: u64,
}

/// Rows removed by a purge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Purged {
    pub plays: u64,
    pub events: u64,
    pub commands: u64,
}

fn u64_of(v: Option<i64>) -> Option<u64> {
    v.map(i64::unsigned_abs)
}

/// The audio clock a player reports on a sound device (issue 14), as its JSON.
pub(super) const AUDIO_CLOCK_MIGRATION: &str = "ALTER TABLE player_status ADD COLUMN audio_clock TEXT;";

fn i64_of(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

const STATUS_COLUMNS: &str = "player_id, received_at, active_version, fetching_version, fetching_done,
    fetching_total, now_media, now_title, now_kind, now_started_at, output, last_error,
    clock_offset_ms, free_disk_bytes, agent_version, uptime_secs, outbox, acked_seq, behind_since,
    audio_clock";

fn output_of(text: &str) -> OutputState {
    [
        OutputState::Playing,
        OutputState::IdleClosed,
        OutputState::NoDevice,
        OutputState::Error,
        OutputState::NotStarted,
    ]
    .into_iter()
    .find(|o| o.as_str() == text)
    .unwrap_or_default()
}

fn status_row(r: &Row<'_>) -> rusqlite::Result<PlayerStatus> {
    status_at(r, 0)
}

/// The [`STATUS_COLUMNS`] that start at column `first` of `r`.
fn status_at(r: &Row<'_>, first: usize) -> rusqlite::Result<PlayerStatus> {
    let at = |i: usize| first + i;
    let fetching = match (
        r.get::<_, Option<i64>>(at(3))?,
        r.get::<_, Option<i64>>(at(4))?,
        r.get::<_, Option<i64>>(at(5))?,
    ) {
        (Some(v), Some(d), Some(t)) => Some(Fetching {
            version: v.unsigned_abs(),
            bytes_done: d.unsigned_abs(),
            bytes_total: t.unsigned_abs(),
        }),
        _ => None,
    };
    let now_playing = match (
        r.get::<_, Option<String>>(at(6))?,
        r.get::<_, Option<String>>(at(7))?,
        r.get::<_, Option<String>>(at(8))?,
        r.get::<_, Option<String>>(at(9))?,
    ) {
        (Some(media), Some(title), Some(kind), Some(started_at)) => Some(NowPlaying {
            media,
            title,
            kind,
            started_at,
        }),
        _ => None,
    };
    Ok(PlayerStatus {
        player_id: r.get(at(0))?,
        received_at: r.get(at(1))?,
        report: StatusUpdate {
            active_version: u64_of(r.get(at(2))?),
            fetching,
            now_playing,
            output: output_of(&r.get::<_, String>(at(10))?),
            last_error: r.get(at(11))?,
            clock_offset_ms: r.get(at(12))?,
            free_disk_bytes: u64_of(r.get(at(13))?),
            // Written by this module from the type, so a value that does not parse is
            // only a row from a future version: shown as unknown.
            audio_clock: r
                .get::<_, Option<String>>(at(19))?
                .and_then(|json| serde_json::from_str(&json).ok()),
            agent_version: r.get(at(14))?,
            uptime_secs: r.get::<_, i64>(at(15))?.unsigned_abs(),
        },
        outbox: r.get(at(16))?,
        acked_seq: r.get::<_, i64>(at(17))?.unsigned_abs(),
        behind_since: r.get(at(18))?,
    })
}

const PLAY_COLUMNS: &str = "player_id, shop, play_id, media, title, kind, source, version, started_at,
    ended_at, outcome, received_at";

fn play_row(r: &Row<'_>) -> rusqlite::Result<PlayRecord> {
    Ok(PlayRecord {
        player_id: r.get(0)?,
        shop: r.get(1)?,
        play: PlayEntry {
            play_id: r.get(2)?,
            media: r.get(3)?,
            title: r.get(4)?,
            kind: r.get(5)?,
            source: r.get(6)?,
            version: r.get::<_, i64>(7)?.unsigned_abs(),
            started_at: r.get(8)?,
            ended_at: r.get(9)?,
            outcome: r.get(10)?,
        },
        received_at: r.get(11)?,
    })
}

const EVENT_COLUMNS: &str = "player_id, shop, seq, kind, detail, version, media, command_id, at, received_at";

fn event_row(r: &Row<'_>) -> rusqlite::Result<LogEvent> {
    Ok(LogEvent {
        player_id: r.get(0)?,
        shop: r.get(1)?,
        seq: r.get::<_, i64>(2)?.unsigned_abs(),
        kind: r.get(3)?,
        detail: r.get(4)?,
        version: u64_of(r.get(5)?),
        media: r.get(6)?,
        command_id: r.get(7)?,
        at: r.get(8)?,
        received_at: r.get(9)?,
    })
}

const COMMAND_COLUMNS: &str = "id, player_id, kind, requested_by, requested_at, expires_at, state, done_at";

/// A row whose kind is outside the allow-list (written by a newer version) is skipped.
fn command_row(r: &Row<'_>) -> rusqlite::Result<Option<CommandView>> {
    let kind: String = r.get(2)?;
    let Some(kind) = CommandKind::parse(&kind) else {
        return Ok(None);
    };
    Ok(Some(CommandView {
        id: r.get(0)?,
        player_id: r.get(1)?,
        kind,
        requested_by: r.get(3)?,
        requested_at: r.get(4)?,
        expires_at: r.get(5)?,
        state: r.get(6)?,
        done_at: r.get(7)?,
    }))
}

/// `WHERE` conditions of a [`RowFilter`] on a table whose time column is `time`,
/// with its parameters numbered from 1 (`?1` .. `?6`); a missing one matches all.
fn filter_sql(time: &str, kind_and_media: bool) -> String {
    let mut sql = format!(
        "(?1 IS NULL OR {time} >= ?1) AND (?2 IS NULL OR {time} < ?2)
         AND (?3 IS NULL OR shop = ?3) AND (?4 IS NULL OR player_id = ?4)
         AND (?5 IS NULL OR kind = ?5)"
    );
    if kind_and_media {
        sql.push_str(" AND (?6 IS NULL OR media = ?6)");
    } else {
        sql.push_str(" AND (?6 IS NULL OR media = ?6 OR media IS NULL)");
    }
    sql
}

fn filter_params(f: &RowFilter) -> [Option<String>; 6] {
    [
        f.from.map(timestamp),
        f.to.map(timestamp),
        f.shop.clone(),
        f.player.clone(),
        f.kind.clone(),
        f.media.clone(),
    ]
}

/// Every row a `for_each_*` method hands out, in a vector.
fn collected<T>(
    for_each: impl FnOnce(&mut dyn FnMut(T) -> bool) -> Result<(), DbError>,
) -> Result<Vec<T>, DbError> {
    let mut rows = Vec::new();
    for_each(&mut |row| {
        rows.push(row);
        true
    })?;
    Ok(rows)
}

impl Db {
    /// Applies one report of `player_id` (of `shop`) in one transaction: its
    /// entries above the outbox's acknowledged sequence number (in order, each
    /// once), a `command_done` event marking that player's command done, and the
    /// player's status (behind since now when its version is below
    /// `head_version`, the head announced as it arrives). Returns what it kept.
    pub fn apply_report(
        &self,
        player_id: &str,
        outbox: &str,
        status: &StatusUpdate,
        head_version: u64,
        entries: &[(u64, ReportedEntry)],
        now: DateTime<Utc>,
    ) -> Result<Applied, DbError> {
        let received = timestamp(now);
        self.transaction(|tx| {
            let previous = tx.player_status(player_id)?;
            let mut applied = Applied {
                acked: previous
                    .as_ref()
                    .filter(|p| p.outbox == outbox)
                    .map_or(0, |p| p.acked_seq),
                ..Applied::default()
            };
            for (seq, entry) in entries {
                if *seq <= applied.acked {
                    applied.duplicates += 1;
                    continue;
                }
                tx.write(|c| match entry {
                    ReportedEntry::Play(p) => c.execute(
                        "INSERT INTO plays (player_id, outbox, play_id, shop, media, title, kind, source,
                             version, started_at, ended_at, outcome, received_at)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)
                         ON CONFLICT (player_id, outbox, play_id) DO UPDATE SET
                             media = excluded.media, title = excluded.title, kind = excluded.kind,
                             source = excluded.source, version = excluded.version,
                             started_at = excluded.started_at,
                             ended_at = COALESCE(excluded.ended_at, plays.ended_at),
                             outcome = excluded.outcome, received_at = excluded.received_at",
                        params![
                            player_id,
                            outbox,
                            p.play.play_id,
                            p.shop,
                            p.play.media,
                            p.play.title,
                            p.play.kind,
                            p.play.source,
                            i64_of(p.play.version),
                            p.play.started_at,
                            p.play.ended_at,
                            p.play.outcome,
                            received,
                        ],
                    ),
                    ReportedEntry::Event(e) => {
                        if let (Some(id), "command_done") = (&e.command_id, e.kind.as_str()) {
                            c.execute(
                                "UPDATE commands SET state = 'done', done_at = ?3, detail = ?4
                                 WHERE id = ?1 AND player_id = ?2 AND state != 'done'",
                                params![id, player_id, e.at, e.detail],
                            )?;
                        }
                        c.execute(
                            "INSERT INTO player_log (player_id, shop, outbox, seq, kind, detail, version,
                                 media, command_id, at, received_at)
                             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                            params![
                                player_id,
                                e.shop,
                                outbox,
                                i64_of(*seq),
                                e.kind,
                                e.detail,
                                e.version.map(i64_of),
                                e.media,
                                e.command_id,
                                e.at,
                                received,
                            ],
                        )
                    }
                })?;
                match entry {
                    ReportedEntry::Play(p) => {
                        applied.plays += 1;
                        if p.play.outcome != "playing" {
                            applied.plays_ended += 1;
                        }
                    }
                    ReportedEntry::Event(_) => applied.events += 1,
                }
                applied.acked = *seq;
            }
            let behind = status.active_version.is_none_or(|v| v < head_version) && head_version > 0;
            let behind_since = match (behind, previous.and_then(|p| p.behind_since)) {
                (false, _) => None,
                (true, Some(since)) => Some(since),
                (true, None) => Some(received.clone()),
            };
            let fetching = status.fetching.as_ref();
            let now_playing = status.now_playing.as_ref();
            tx.write(|c| {
                c.execute(
                    &format!(
                        "INSERT OR REPLACE INTO player_status ({STATUS_COLUMNS})
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16,
                                 ?17, ?18, ?19, ?20)"
                    ),
                    params![
                        player_id,
                        received,
                        status.active_version.map(i64_of),
                        fetching.map(|f| i64_of(f.version)),
                        fetching.map(|f| i64_of(f.bytes_done)),
                        fetching.map(|f| i64_of(f.bytes_total)),
                        now_playing.map(|n| &n.media),
                        now_playing.map(|n| &n.title),
                        now_playing.map(|n| &n.kind),
                        now_playing.map(|n| &n.started_at),
                        status.output.as_str(),
                        status.last_error,
                        status.clock_offset_ms,
                        status.free_disk_bytes.map(i64_of),
                        status.agent_version,
                        i64_of(status.uptime_secs),
                        outbox,
                        i64_of(applied.acked),
                        behind_since,
                        status
                            .audio_clock
                            .as_ref()
                            .and_then(|a| serde_json::to_string(a).ok()),
                    ],
                )
            })?;
            Ok(applied)
        })
    }

    /// The latest report of player `id`, if it ever reported.
    pub fn player_status(&self, id: &str) -> Result<Option<PlayerStatus>, DbError> {
        self.read(|c| {
            c.query_row(
                &format!("SELECT {STATUS_COLUMNS} FROM player_status WHERE player_id = ?1"),
                params![id],
                status_row,
            )
            .optional()
        })
    }

    /// Every registered player, by shop then id, beside its latest report if it
    /// ever reported: the dashboard's rows in one query (no lookup per player).
    pub fn fleet_rows(&self) -> Result<Vec<FleetRow>, DbError> {
        // No column of `players` shares a name with [`STATUS_COLUMNS`], so they
        // need no table prefix.
        let sql = format!(
            "SELECT p.id, p.shop, p.disabled, {STATUS_COLUMNS} FROM players p
             LEFT JOIN player_status s ON s.player_id = p.id
             ORDER BY p.shop, p.id"
        );
        self.read(|c| {
            c.prepare(&sql)?
                .query_map([], |r| {
                    let reported = r.get_ref(3)?.data_type() != rusqlite::types::Type::Null;
                    Ok(FleetRow {
                        id: r.get(0)?,
                        shop: r.get(1)?,
                        disabled: r.get(2)?,
                        status: if reported { Some(status_at(r, 3)?) } else { None },
                    })
                })?
                .collect()
        })
    }

    /// Plays matching `filter`, oldest first (by the player's start time), at most `limit`.
    pub fn plays(&self, filter: &RowFilter, limit: u32) -> Result<Vec<PlayRecord>, DbError> {
        collected(|each| self.for_each_play(filter, Some(limit), each))
    }

    /// The latest `limit` plays of player `id`, newest first.
    pub fn recent_plays(&self, id: &str, limit: u32) -> Result<Vec<PlayRecord>, DbError> {
        let sql = format!(
            "SELECT {PLAY_COLUMNS} FROM plays WHERE player_id = ?1 ORDER BY started_at DESC LIMIT ?2"
        );
        self.rows_of_player(&sql, id, limit, play_row)
    }

    /// Runs `sql` (a query with the player id `?1` and the limit `?2`), each row read by `row`.
    fn rows_of_player<T>(
        &self,
        sql: &str,
        id: &str,
        limit: u32,
        row: fn(&Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<Vec<T>, DbError> {
        self.read(|c| c.prepare(sql)?.query_map(params![id, limit], row)?.collect())
    }

    /// Calls `each` with every play matching `filter`, oldest first, until it
    /// returns `false` (or `limit` rows): an export streams without holding
    /// every row in memory.
    pub fn for_each_play(
        &self,
        filter: &RowFilter,
        limit: Option<u32>,
        each: impl FnMut(PlayRecord) -> bool,
    ) -> Result<(), DbError> {
        let sql = format!(
            "SELECT {PLAY_COLUMNS} FROM plays WHERE {} ORDER BY started_at, player_id, play_id LIMIT ?7",
            filter_sql("started_at", true)
        );
        self.for_each_row(&sql, filter, limit, play_row, each)
    }

    /// Runs `sql` (a query with the [`RowFilter`] parameters `?1`..`?6` and the
    /// limit `?7`) and hands each row read by `row` to `each` until it returns `false`.
    fn for_each_row<T>(
        &self,
        sql: &str,
        filter: &RowFilter,
        limit: Option<u32>,
        row: fn(&Row<'_>) -> rusqlite::Result<T>,
        mut each: impl FnMut(T) -> bool,
    ) -> Result<(), DbError> {
        let [a, b, c3, d, e, f] = filter_params(filter);
        let limit = limit.map_or(-1, i64::from);
        self.read(|c| {
            let mut stmt = c.prepare(sql)?;
            let mut rows = stmt.query(params![a, b, c3, d, e, f, limit])?;
            while let Some(r) = rows.next()? {
                if !each(row(r)?) {
                    break;
                }
            }
            Ok(())
        })
    }

    /// Events matching `filter` (`media` matches events naming it or none),
    /// oldest first, at most `limit`.
    pub fn log_events(&self, filter: &RowFilter, limit: u32) -> Result<Vec<LogEvent>, DbError> {
        collected(|each| self.for_each_event(filter, Some(limit), each))
    }

    /// The latest `limit` events of player `id`, newest first.
    pub fn recent_events(&self, id: &str, limit: u32) -> Result<Vec<LogEvent>, DbError> {
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM player_log WHERE player_id = ?1 ORDER BY at DESC, id DESC LIMIT ?2"
        );
        self.rows_of_player(&sql, id, limit, event_row)
    }

    /// The latest event of each of `kinds` per player since `since` (player's
    /// time), newest first: what the alerts ask ("a verify failure since ...").
    pub fn latest_events_of_kinds(
        &self,
        kinds: &[&str],
        since: DateTime<Utc>,
    ) -> Result<Vec<LogEvent>, DbError> {
        let since = timestamp(since);
        let mut out = Vec::new();
        for kind in kinds {
            let rows: Vec<LogEvent> = self.read(|c| {
                c.prepare(&format!(
                    "SELECT {EVENT_COLUMNS} FROM player_log l
                     WHERE kind = ?1 AND at >= ?2
                       AND id = (SELECT MAX(id) FROM player_log m
                                 WHERE m.player_id = l.player_id AND m.kind = ?1 AND m.at >= ?2)"
                ))?
                .query_map(params![kind, since], event_row)?
                .collect()
            })?;
            out.extend(rows);
        }
        out.sort_by(|a, b| b.at.cmp(&a.at));
        Ok(out)
    }

    /// Calls `each` with every event matching `filter`, oldest first, until it
    /// returns `false` (or `limit` rows).
    pub fn for_each_event(
        &self,
        filter: &RowFilter,
        limit: Option<u32>,
        each: impl FnMut(LogEvent) -> bool,
    ) -> Result<(), DbError> {
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM player_log WHERE {} ORDER BY at, player_id, id LIMIT ?7",
            filter_sql("at", false)
        );
        self.for_each_row(&sql, filter, limit, event_row, each)
    }

    /// Queues `kind` for each of `players` (ids already made), expiring at
    /// `expires_at`, in one transaction.
    pub fn queue_commands(
        &self,
        commands: &[(String, String)],
        kind: CommandKind,
        by: &str,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<(), DbError> {
        self.transaction(|tx| {
            for (id, player) in commands {
                tx.write(|c| {
                    c.execute(
                        "INSERT INTO commands (id, player_id, kind, requested_by, requested_at, expires_at, state)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'pending')",
                        params![id, player, kind.as_str(), by, timestamp(now), timestamp(expires_at)],
                    )
                })?;
            }
            Ok(())
        })
    }

    /// The pending commands of player `id` not expired at `now`, oldest first,
    /// now marked `sent` (each is handed out once); pending ones past their
    /// expiry become `expired`.
    pub fn take_commands(&self, id: &str, now: DateTime<Utc>) -> Result<Vec<CommandView>, DbError> {
        // A command handed out but not confirmed within this goes out again: the
        // answer carrying it may have been lost, and the player runs an id once.
        let resend_before = timestamp(now - chrono::Duration::seconds(COMMAND_RESEND_SECS));
        let now = timestamp(now);
        self.transaction(|tx| {
            tx.write(|c| {
                c.execute(
                    "UPDATE commands SET state = 'expired'
                     WHERE player_id = ?1 AND state IN ('pending', 'sent') AND expires_at <= ?2",
                    params![id, now],
                )
            })?;
            const DUE: &str = "player_id = ?1 AND (state = 'pending' OR (state = 'sent' AND sent_at <= ?2))";
            let taken: Vec<Option<CommandView>> = tx.read(|c| {
                c.prepare(&format!(
                    "SELECT {COMMAND_COLUMNS} FROM commands WHERE {DUE} ORDER BY requested_at, id"
                ))?
                .query_map(params![id, resend_before], command_row)?
                .collect()
            })?;
            tx.write(|c| {
                c.execute(
                    &format!("UPDATE commands SET state = 'sent', sent_at = ?3 WHERE {DUE}"),
                    params![id, resend_before, now],
                )
            })?;
            Ok(taken
                .into_iter()
                .flatten()
                .map(|mut c| {
                    c.state = "sent".into();
                    c
                })
                .collect())
        })
    }

    /// Whether commands wait for player `id` at `now` (pending, not expired): the
    /// database's truth that `Fleet`'s in-memory set follows, checked by tests.
    #[cfg(test)]
    pub fn has_pending_commands(&self, id: &str, now: DateTime<Utc>) -> Result<bool, DbError> {
        self.read(|c| {
            c.query_row(
                "SELECT EXISTS (SELECT 1 FROM commands
                 WHERE player_id = ?1 AND state = 'pending' AND expires_at > ?2)",
                params![id, timestamp(now)],
                |r| r.get(0),
            )
        })
    }

    /// The players for whom commands wait at `now`.
    pub fn players_with_pending_commands(&self, now: DateTime<Utc>) -> Result<Vec<String>, DbError> {
        self.read(|c| {
            c.prepare("SELECT DISTINCT player_id FROM commands WHERE state = 'pending' AND expires_at > ?1")?
                .query_map(params![timestamp(now)], |r| r.get(0))?
                .collect()
        })
    }

    /// The latest `limit` commands (of player `id`, or of all), newest first.
    /// A pending one past its expiry shows as `expired`.
    pub fn commands(
        &self,
        id: Option<&str>,
        limit: u32,
        now: DateTime<Utc>,
    ) -> Result<Vec<CommandView>, DbError> {
        let now = timestamp(now);
        let rows: Vec<Option<CommandView>> = self.read(|c| {
            c.prepare(&format!(
                "SELECT {COMMAND_COLUMNS} FROM commands WHERE (?1 IS NULL OR player_id = ?1)
                 ORDER BY requested_at DESC, id DESC LIMIT ?2"
            ))?
            .query_map(params![id, limit], command_row)?
            .collect()
        })?;
        Ok(rows
            .into_iter()
            .flatten()
            .map(|mut c| {
                if c.state == "pending" && c.expires_at <= now {
                    c.state = "expired".into();
                }
                c
            })
            .collect())
    }

    /// Command `id`, if it exists.
    pub fn command(&self, id: &str) -> Result<Option<CommandView>, DbError> {
        let row = self.read(|c| {
            c.query_row(
                &format!("SELECT {COMMAND_COLUMNS} FROM commands WHERE id = ?1"),
                params![id],
                command_row,
            )
            .optional()
        })?;
        Ok(row.flatten())
    }

    /// A number that changes whenever any process queues a command: one indexed
    /// read, cheap enough to poll.
    pub fn commands_generation(&self) -> Result<u64, DbError> {
        let n: i64 =
            self.read(|c| c.query_row("SELECT n FROM commands_generation WHERE id = 1", [], |r| r.get(0)))?;
        Ok(n.unsigned_abs())
    }

    /// Removes plays (by start), events and finished commands (by request) older
    /// than `before`, in one transaction.
    pub fn purge_supervision(&self, before: DateTime<Utc>) -> Result<Purged, DbError> {
        let before = timestamp(before);
        self.transaction(|tx| {
            tx.write(|c| {
                Ok(Purged {
                    plays: c.execute("DELETE FROM plays WHERE started_at < ?1", params![before])? as u64,
                    events: c.execute("DELETE FROM player_log WHERE at < ?1", params![before])? as u64,
                    commands: c.execute(
                        "DELETE FROM commands WHERE requested_at < ?1 AND state != 'pending'",
                        params![before],
                    )? as u64,
                })
            })
        })
    }
}
