//! The play log in `state.sqlite`: one row per stretch of playback, written before
//! the sound starts, together with the resolver's history, so a `kill -9` can
//! neither lose a play nor make a message play twice. Every change of a row appends
//! its supervision entry to the outbox in the same transaction (see [`crate::outbox`]).

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;
use skycast_schema::report::{AudioClock, EntryBody, EventEntry, PlayEntry};
use skycast_schema::{History, MediaId};

use crate::outbox::{self, rfc3339};

#[derive(Debug, thiserror::Error)]
#[error("play log {path}: {source}: check the disk and permissions of the data directory")]
pub struct PlayLogError {
    path: PathBuf,
    #[source]
    source: rusqlite::Error,
}

/// How a stretch of playback ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Still playing (or the player died while it played, until the next start).
    Playing,
    /// Played to its end.
    Complete,
    /// Cut by a message, closing time, a stop or a crash, and not continued.
    Interrupted,
    /// Cut by a message and continued later in another row (`resumed_from` there).
    Resumed,
    /// Chosen but could not be played (the file did not decode).
    Skipped,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Playing => "playing",
            Outcome::Complete => "complete",
            Outcome::Interrupted => "interrupted",
            Outcome::Resumed => "resumed",
            Outcome::Skipped => "skipped",
        }
    }
}

/// What a row records about the start of a play.
#[derive(Debug, Clone)]
pub struct PlayStart<'a> {
    pub media: MediaId,
    pub title: &'a str,
    /// `music`, `ad`, `closing`, `play_now` or `urgent`.
    pub kind: &'a str,
    /// The playlist, or the message key.
    pub source: &'a str,
    pub version: u64,
    pub started_at: DateTime<Utc>,
    /// Where in the file this stretch starts.
    pub position_ms: u64,
    /// Where in the output (the recording) it starts: milliseconds since the player started.
    pub output_ms: u64,
    pub resumed_from: Option<&'a str>,
}

/// One row, as `status` and tests read it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlayRow {
    pub id: String,
    pub run_id: String,
    pub media: String,
    pub title: String,
    pub kind: String,
    pub source: String,
    pub version: u64,
    pub started_at: String,
    pub ended_at: Option<String>,
    pub position_ms: u64,
    pub end_position_ms: Option<u64>,
    pub output_ms: u64,
    pub outcome: String,
    pub resumed_from: Option<String>,
}

pub struct PlayLog {
    conn: Connection,
    path: PathBuf,
    run_id: String,
    cut_short: Option<CutShort>,
}

/// The music a previous run was playing when it died, as its last saved progress
/// says: the player goes on with it where the schedule is now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CutShort {
    pub row: String,
    pub media: MediaId,
    pub playlist: String,
    /// Position in the file at `at`.
    pub position_ms: u64,
    pub at: DateTime<Utc>,
}

impl PlayLog {
    /// Opens the log and closes the rows a previous run left `playing` (it died):
    /// they become `interrupted` at their last recorded progress, `at` the entries'
    /// time.
    pub fn open(path: &Path, run_id: &str, at: DateTime<Utc>) -> Result<PlayLog, PlayLogError> {
        let mut log = PlayLog {
            conn: PlayLog::prepared(path)?,
            path: path.to_path_buf(),
            run_id: run_id.to_string(),
            cut_short: None,
        };
        let mut cut_short = None;
        log.change(at, |tx| {
            cut_short = tx
                .query_row(
                    "SELECT id, media, source, COALESCE(end_position_ms, position_ms),
                            COALESCE(ended_at, started_at)
                     FROM plays WHERE outcome = 'playing' AND kind = 'music'
                     ORDER BY started_at DESC, rowid DESC LIMIT 1",
                    [],
                    |r| {
                        Ok((
                            r.get::<_, String>(0)?,
                            r.get::<_, String>(1)?,
                            r.get::<_, String>(2)?,
                            r.get::<_, i64>(3)?,
                            r.get::<_, String>(4)?,
                        ))
                    },
                )
                .optional()?;
            let mut stmt = tx.prepare("SELECT id FROM plays WHERE outcome = 'playing'")?;
            let ids = stmt
                .query_map([], |r| r.get::<_, String>(0))?
                .collect::<Result<Vec<_>, _>>()?;
            tx.execute(
                "UPDATE plays SET outcome = 'interrupted' WHERE outcome = 'playing'",
                [],
            )?;
            Ok(ids)
        })?;
        // A row this log wrote itself: a media id or time that does not parse is a
        // damaged file, and then there is simply nothing to go on with.
        log.cut_short = cut_short.and_then(|(row, media, playlist, position_ms, at)| {
            Some(CutShort {
                row,
                media: media.parse().ok()?,
                playlist,
                position_ms: position_ms.unsigned_abs(),
                at: DateTime::parse_from_rfc3339(&at).ok()?.with_timezone(&Utc),
            })
        });
        Ok(log)
    }

    /// The music the previous run died playing, once (see [`CutShort`]).
    pub fn take_cut_short(&mut self) -> Option<CutShort> {
        self.cut_short.take()
    }

    /// Keeps the latest audio clock reading for `status` (one row, overwritten).
    pub fn record_audio_clock(&self, at: DateTime<Utc>, clock: &AudioClock) -> Result<(), PlayLogError> {
        let json = serde_json::to_string(clock).unwrap_or_default();
        self.conn
            .execute(
                "INSERT INTO audio_clock (id, reading, at) VALUES (1, ?1, ?2)
                 ON CONFLICT(id) DO UPDATE SET reading = excluded.reading, at = excluded.at",
                params![json, rfc3339(at)],
            )
            .map(drop)
            .map_err(self.err())
    }

    /// Switches `state.sqlite` to WAL and creates the play log's tables. The daemon
    /// calls it before the first sync and the player thread start: the switch to
    /// WAL needs the file to itself, and racing it against the sync's connection
    /// could make either side wait out the busy timeout.
    pub fn prepare(path: &Path) -> Result<(), PlayLogError> {
        PlayLog::prepared(path).map(drop)
    }

    fn prepared(path: &Path) -> Result<Connection, PlayLogError> {
        let err = |source| PlayLogError {
            path: path.to_path_buf(),
            source,
        };
        let conn = Connection::open(path).map_err(err)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(err)?;
        conn.execute_batch(
            "PRAGMA journal_mode=WAL;
             PRAGMA synchronous=FULL;
             CREATE TABLE IF NOT EXISTS plays (
                 id TEXT PRIMARY KEY,
                 run_id TEXT NOT NULL,
                 media TEXT NOT NULL,
                 title TEXT NOT NULL,
                 kind TEXT NOT NULL,
                 source TEXT NOT NULL,
                 version INTEGER NOT NULL,
                 started_at TEXT NOT NULL,
                 ended_at TEXT,
                 position_ms INTEGER NOT NULL,
                 end_position_ms INTEGER,
                 output_ms INTEGER NOT NULL,
                 outcome TEXT NOT NULL,
                 resumed_from TEXT REFERENCES plays(id)
             );
             CREATE INDEX IF NOT EXISTS plays_started ON plays(started_at);
             CREATE TABLE IF NOT EXISTS player_history (
                 shop TEXT PRIMARY KEY,
                 history TEXT NOT NULL
             );
             CREATE TABLE IF NOT EXISTS audio_clock (
                 id INTEGER PRIMARY KEY CHECK (id = 1),
                 reading TEXT NOT NULL,
                 at TEXT NOT NULL
             );",
        )
        .map_err(err)?;
        outbox::create_tables(&conn).map_err(err)?;
        Ok(conn)
    }

    fn err(&self) -> impl Fn(rusqlite::Error) -> PlayLogError + '_ {
        |source| PlayLogError {
            path: self.path.clone(),
            source,
        }
    }

    /// The resolver's history for `shop`, or `None` on a first start.
    pub fn history(&self, shop: &str) -> Result<Option<History>, PlayLogError> {
        let text: Option<String> = self
            .conn
            .query_row(
                "SELECT history FROM player_history WHERE shop = ?1",
                [shop],
                |r| r.get(0),
            )
            .optional()
            .map_err(self.err())?;
        // A history that no longer parses (older format) is started afresh: it only
        // steers ad counts and playlist positions, never what may be trusted.
        Ok(text.and_then(|t| serde_json::from_str(&t).ok()))
    }

    /// Runs `change` in one transaction, then appends the outbox entry of every row
    /// id it returns (as the row reads after the change) in that same transaction.
    fn change(
        &mut self,
        at: DateTime<Utc>,
        change: impl FnOnce(&rusqlite::Transaction<'_>) -> rusqlite::Result<Vec<String>>,
    ) -> Result<(), PlayLogError> {
        outbox::immediate(&mut self.conn, |tx| {
            for id in change(tx)? {
                let row = tx
                    .query_row(
                        &format!("SELECT {ROW_COLUMNS} FROM plays WHERE id = ?1"),
                        [&id],
                        play_row,
                    )
                    .optional()?;
                if let Some(row) = row {
                    outbox::append_in(tx, at, &EntryBody::Play(row.into()))?;
                }
            }
            Ok(())
        })
        .map_err(self.err())
    }

    /// Records a start and the history that includes it, in one transaction.
    /// Returns the new row's id.
    pub fn start(
        &mut self,
        play: &PlayStart<'_>,
        shop: &str,
        history: &History,
    ) -> Result<String, PlayLogError> {
        let id = hex::encode(crate::random_bytes::<16>());
        let history_json = serde_json::to_string(history).unwrap_or_default();
        let run_id = self.run_id.clone();
        self.change(play.started_at, |tx| {
            tx.execute(
                "INSERT INTO plays (id, run_id, media, title, kind, source, version, started_at, position_ms,
                                    output_ms, outcome, resumed_from)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, 'playing', ?11)",
                params![
                    id,
                    run_id,
                    play.media.to_string(),
                    play.title,
                    play.kind,
                    play.source,
                    play.version as i64,
                    rfc3339(play.started_at),
                    play.position_ms as i64,
                    play.output_ms as i64,
                    play.resumed_from,
                ],
            )?;
            tx.execute(
                "INSERT INTO player_history (shop, history) VALUES (?1, ?2)
                 ON CONFLICT(shop) DO UPDATE SET history = excluded.history",
                params![shop, history_json],
            )?;
            Ok(vec![id.clone()])
        })?;
        Ok(id)
    }

    /// Saves progress of a row that is still playing, so a crash loses little.
    pub fn progress(&self, id: &str, at: DateTime<Utc>, position_ms: u64) -> Result<(), PlayLogError> {
        self.conn
            .execute(
                "UPDATE plays SET ended_at = ?2, end_position_ms = ?3 WHERE id = ?1 AND outcome = 'playing'",
                params![id, rfc3339(at), position_ms as i64],
            )
            .map(|_| ())
            .map_err(self.err())
    }

    pub fn finish(
        &mut self,
        id: &str,
        at: DateTime<Utc>,
        position_ms: u64,
        outcome: Outcome,
    ) -> Result<(), PlayLogError> {
        self.change(at, |tx| {
            tx.execute(
                "UPDATE plays SET ended_at = ?2, end_position_ms = ?3, outcome = ?4 WHERE id = ?1",
                params![id, rfc3339(at), position_ms as i64, outcome.as_str()],
            )?;
            Ok(vec![id.to_string()])
        })
    }

    /// Marks a row `resumed` once its continuation has started.
    pub fn mark_resumed(&mut self, id: &str, at: DateTime<Utc>) -> Result<(), PlayLogError> {
        self.change(at, |tx| {
            tx.execute("UPDATE plays SET outcome = 'resumed' WHERE id = ?1", [id])?;
            Ok(vec![id.to_string()])
        })
    }

    /// Appends a player event (output lost or back, a damaged file) to the outbox.
    pub fn event(&self, at: DateTime<Utc>, event: EventEntry) -> Result<(), PlayLogError> {
        outbox::append_in(&self.conn, at, &EntryBody::Event(event))
            .map(drop)
            .map_err(self.err())
    }
}

/// True when a row is still `playing`: a run died while it played (read-only).
pub fn left_playing(path: &Path) -> Result<bool, PlayLogError> {
    Ok(now_playing(path)?.is_some())
}

/// Every row, oldest first, read without writing anything.
pub fn read_all(path: &Path) -> Result<Vec<PlayRow>, PlayLogError> {
    query(path, "ORDER BY started_at, rowid")
}

/// The row playing now, if any (the latest one still `playing`).
pub fn now_playing(path: &Path) -> Result<Option<PlayRow>, PlayLogError> {
    Ok(query(
        path,
        "WHERE outcome = 'playing' ORDER BY started_at DESC, rowid DESC LIMIT 1",
    )?
    .pop())
}

/// The audio clock the player last recorded (read-only; `None` before any, or for
/// outputs paced in software).
pub fn audio_clock(path: &Path) -> Result<Option<AudioClock>, PlayLogError> {
    let err = |source| PlayLogError {
        path: path.to_path_buf(),
        source,
    };
    if !path.exists() {
        return Ok(None);
    }
    let conn = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(err)?;
    let reading: Option<String> =
        match conn.query_row("SELECT reading FROM audio_clock WHERE id = 1", [], |r| r.get(0)) {
            Ok(json) => Some(json),
            Err(rusqlite::Error::QueryReturnedNoRows) => None,
            // A state file from before this table.
            Err(rusqlite::Error::SqliteFailure(_, Some(m))) if m.contains("no such table") => None,
            Err(e) => return Err(err(e)),
        };
    Ok(reading.and_then(|json| serde_json::from_str(&json).ok()))
}

fn query(path: &Path, tail: &str) -> Result<Vec<PlayRow>, PlayLogError> {
    let err = |source| PlayLogError {
        path: path.to_path_buf(),
        source,
    };
    if !path.exists() {
        return Ok(Vec::new());
    }
    let conn = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(err)?;
    let has_table: bool = conn
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'plays'",
            [],
            |r| r.get::<_, i64>(0),
        )
        .map_err(err)?
        > 0;
    if !has_table {
        return Ok(Vec::new());
    }
    let mut stmt = conn
        .prepare(&format!("SELECT {ROW_COLUMNS} FROM plays {tail}"))
        .map_err(err)?;
    let rows = stmt.query_map([], play_row).map_err(err)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(err)
}

/// The columns [`play_row`] reads, in its order.
const ROW_COLUMNS: &str = "id, run_id, media, title, kind, source, version, started_at, ended_at, \
                           position_ms, end_position_ms, output_ms, outcome, resumed_from";

fn play_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<PlayRow> {
    Ok(PlayRow {
        id: r.get(0)?,
        run_id: r.get(1)?,
        media: r.get(2)?,
        title: r.get(3)?,
        kind: r.get(4)?,
        source: r.get(5)?,
        version: r.get::<_, i64>(6)? as u64,
        started_at: r.get(7)?,
        ended_at: r.get(8)?,
        position_ms: r.get::<_, i64>(9)? as u64,
        end_position_ms: r.get::<_, Option<i64>>(10)?.map(|v| v as u64),
        output_ms: r.get::<_, i64>(11)? as u64,
        outcome: r.get(12)?,
        resumed_from: r.get(13)?,
    })
}

impl From<PlayRow> for PlayEntry {
    /// A row as proof of play: what the server keeps of it.
    fn from(row: PlayRow) -> PlayEntry {
        PlayEntry {
            play_id: row.id,
            media: row.media,
            title: row.title,
            kind: row.kind,
            source: row.source,
            version: row.version,
            started_at: row.started_at,
            ended_at: row.ended_at,
            outcome: row.outcome,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn start<'a>(media: MediaId, at: DateTime<Utc>, resumed_from: Option<&'a str>) -> PlayStart<'a> {
        PlayStart {
            media,
            title: "Four Chords",
            kind: "music",
            source: "daytime",
            version: 3,
            started_at: at,
            position_ms: 0,
            output_ms: 0,
            resumed_from,
        }
    }

    #[test]
    fn rows_left_playing_by_a_dead_run_become_interrupted_at_their_last_progress() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("state.sqlite");
        let t0: DateTime<Utc> = "2026-11-22T09:00:00Z".parse().unwrap();
        let mut history = History::new(7);
        history.music_started = 1;
        let id = {
            let mut log = PlayLog::open(&db, "run-1", t0).unwrap();
            let id = log
                .start(&start(MediaId::of(b"a"), t0, None), "main", &history)
                .unwrap();
            log.progress(&id, t0 + chrono::Duration::seconds(5), 5000)
                .unwrap();
            id
        };
        let mut log = PlayLog::open(&db, "run-2", t0).unwrap();
        assert_eq!(
            log.take_cut_short(),
            Some(CutShort {
                row: id.clone(),
                media: MediaId::of(b"a"),
                playlist: "daytime".into(),
                position_ms: 5000,
                at: t0 + chrono::Duration::seconds(5),
            }),
            "the music the dead run played, to go on with"
        );
        assert_eq!(log.take_cut_short(), None, "once");
        assert_eq!(PlayLog::open(&db, "run-3", t0).unwrap().take_cut_short(), None);
        assert_eq!(log.history("main").unwrap(), Some(history));
        assert_eq!(log.history("lille").unwrap(), None);
        let rows = read_all(&db).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].id, id);
        assert_eq!(rows[0].outcome, "interrupted");
        assert_eq!(rows[0].end_position_ms, Some(5000));
        assert_eq!(rows[0].ended_at.as_deref(), Some("2026-11-22T09:00:05.000Z"));
    }

    #[test]
    fn the_audio_clock_reading_is_kept_once_and_read_without_writing() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("state.sqlite");
        assert_eq!(audio_clock(&db).unwrap(), None, "no file yet");
        let t0: DateTime<Utc> = "2026-11-22T09:00:00Z".parse().unwrap();
        let log = PlayLog::open(&db, "run-1", t0).unwrap();
        assert_eq!(audio_clock(&db).unwrap(), None);
        for offset in [120, -40] {
            let reading = AudioClock {
                schedule_offset_ms: offset,
                device_rate_ppm: Some(-1000),
                throttled: false,
            };
            log.record_audio_clock(t0, &reading).unwrap();
            assert_eq!(audio_clock(&db).unwrap(), Some(reading));
        }
    }

    #[test]
    fn a_resumed_play_links_its_two_stretches() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("state.sqlite");
        let t0: DateTime<Utc> = "2026-11-22T09:00:00Z".parse().unwrap();
        let mut log = PlayLog::open(&db, "run-1", t0).unwrap();
        let history = History::new(1);
        let first = log
            .start(&start(MediaId::of(b"a"), t0, None), "main", &history)
            .unwrap();
        log.finish(&first, t0, 10_000, Outcome::Interrupted).unwrap();
        let second = log
            .start(&start(MediaId::of(b"a"), t0, Some(&first)), "main", &history)
            .unwrap();
        log.mark_resumed(&first, t0).unwrap();
        log.finish(&second, t0, 30_000, Outcome::Complete).unwrap();
        let rows = read_all(&db).unwrap();
        let outcomes: Vec<_> = rows.iter().map(|r| r.outcome.as_str()).collect();
        assert_eq!(outcomes, ["resumed", "complete"]);
        assert_eq!(rows[1].resumed_from.as_deref(), Some(first.as_str()));
        assert_ne!(first, second);
    }

    #[test]
    fn every_row_change_is_in_the_outbox_and_a_crash_adds_exactly_one_interrupted_entry() {
        use crate::outbox::Outbox;
        use skycast_schema::report::EntryBody;
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("state.sqlite");
        let t0: DateTime<Utc> = "2026-11-22T09:00:00Z".parse().unwrap();
        let history = History::new(1);
        let (done, killed) = {
            let mut log = PlayLog::open(&db, "run-1", t0).unwrap();
            let done = log
                .start(&start(MediaId::of(b"a"), t0, None), "main", &history)
                .unwrap();
            log.finish(&done, t0, 1000, Outcome::Complete).unwrap();
            let killed = log
                .start(&start(MediaId::of(b"b"), t0, None), "main", &history)
                .unwrap();
            (done, killed)
            // Dropped without finishing `killed`: kill -9.
        };
        let plays = |db: &Path| -> Vec<(String, String)> {
            Outbox::open(db)
                .unwrap()
                .pending(100)
                .unwrap()
                .into_iter()
                .filter_map(|e| match e.body {
                    EntryBody::Play(p) => Some((p.play_id, p.outcome)),
                    EntryBody::Event(_) => None,
                })
                .collect()
        };
        let before = vec![
            (done.clone(), "playing".to_string()),
            (done.clone(), "complete".to_string()),
            (killed.clone(), "playing".to_string()),
        ];
        assert_eq!(plays(&db), before);
        drop(PlayLog::open(&db, "run-2", t0).unwrap());
        drop(PlayLog::open(&db, "run-3", t0).unwrap());
        let mut after = before;
        after.push((killed, "interrupted".to_string()));
        assert_eq!(
            plays(&db),
            after,
            "the crash's row is closed once, in the outbox too"
        );
    }
}
