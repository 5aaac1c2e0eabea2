//! Supervision (DESIGN §7, issue 11): what the players report, what the server
//! derives from it (UP/KO, in sync, playing, alerts), the commands waiting for
//! them, and proof of play. Shared by the protocol (reports in), the web UI and
//! the CLI (views out) through one [`Fleet`]; the CLI, without `serve`, uses the
//! synchronous functions ([`view_at`], [`queue_command`], [`purge`], `export`).
//!
//! Commands wake the long-poll of the player they are for: one watch channel per
//! player that waits ([`Fleet::command_signal`]), bumped by
//! [`Fleet::request_command`] in this process and by [`Fleet::poll_commands`]
//! (on `serve`'s tick) for commands the CLI queued.

pub mod alerts;
pub mod export;
mod ingest;
mod retention;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use skycast_schema::report::{
    AudioClock, Command, CommandKind, EntryBody, Fetching, NowPlaying, OutputState, PlayEntry, Report,
    ReportAnswer, MAX_ENTRIES_PER_REPORT, MAX_TEXT_CHARS,
};
use skycast_schema::{Head, Manifest, ShopSchedule};
use tokio::sync::watch;

use crate::data_dir::DataDir;
use crate::db::{Applied, Db, FleetRow, LogEvent, PlayRecord, Player, ReportedEntry, StatusUpdate};
use crate::error::{PublisherError, Result};

pub use crate::db::{CommandView, Purged};
pub use retention::DEFAULT_RETENTION;

/// Default of `serve --offline-after`: a player silent this long is KO.
pub const DEFAULT_OFFLINE_AFTER: Duration = Duration::from_secs(30);
/// How long a command waits for its player before it expires.
pub const COMMAND_TTL: Duration = Duration::from_secs(10 * 60);
/// Rows of recent plays, events and commands on a player's page.
const DETAIL_ROWS: u32 = 50;

/// What supervision refuses, naming the player, command or date at fault.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error("the token of player `{own}` may not report for player `{asked}`: a player reports only for its own id")]
    NotYourPlayer { asked: String, own: String },
    #[error("the report of player `{player}` is over {max_bytes} bytes: send fewer entries per report")]
    ReportTooLarge { player: String, max_bytes: usize },
    #[error("the report of player `{player}` is not a valid report: {reason}")]
    BadReport { player: String, reason: String },
    #[error(
        "command `{0}` is not allowed: use one of sync_now, verify_media, restart_playback, send_status"
    )]
    NotAllowed(String),
    #[error(
        "player `{0}` is disabled: `skycast-publisher player enable` lets it in before it can get commands"
    )]
    PlayerDisabled(String),
    #[error("`{0}` is not a date: use YYYY-MM-DD (a whole UTC day) or RFC 3339 (2026-12-01T10:00:00Z)")]
    BadDate(String),
    #[error("the export range ends ({to}) before it starts ({from}): swap --from and --to")]
    EmptyRange { from: String, to: String },
}

/// Each refusal keeps its meaning (and so its HTTP status) in the publisher's error.
impl From<FleetError> for PublisherError {
    fn from(e: FleetError) -> Self {
        match e {
            e @ FleetError::NotYourPlayer { .. } => PublisherError::WrongPlayer(e.to_string()),
            e @ FleetError::ReportTooLarge { .. } => PublisherError::BodyTooLarge(e.to_string()),
            e @ FleetError::PlayerDisabled(_) => PublisherError::Conflict(e.to_string()),
            e @ (FleetError::BadReport { .. }
            | FleetError::NotAllowed(_)
            | FleetError::BadDate(_)
            | FleetError::EmptyRange { .. }) => PublisherError::BadRequest(e.to_string()),
        }
    }
}

/// What a player is doing, as the dashboard says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Activity {
    Playing,
    /// Open, but no sound goes out.
    NotPlaying,
    /// The shop is closed (from its hours in the head manifest).
    Closed,
    /// Never reported, or KO.
    Unknown,
}

/// The kinds of alert, each opened once and resolved once per incident.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    Unreachable,
    OutOfSync,
    StaleVersion,
    SilentWhileOpen,
    MissedAd,
    IntegrityFailure,
    ClockSkew,
    DiskLow,
    /// A mirror (object storage) keeps failing to take new versions; its
    /// subject is the mirror's name, it names no player or shop.
    MirrorFailing,
    /// The head passed three quarters of its validity without being re-signed
    /// (serve re-signs at half); about the publisher, it names no player or shop.
    ResignOverdue,
}

/// One alert, open or resolved, with its words in both languages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AlertView {
    pub id: i64,
    pub kind: AlertKind,
    pub player_id: String,
    pub shop: String,
    /// RFC 3339 UTC.
    pub opened_at: String,
    pub resolved_at: Option<String>,
    pub acknowledged_by: Option<String>,
    pub text_en: String,
    pub text_fr: String,
}

/// One row of the dashboard.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlayerView {
    pub id: String,
    pub shop: String,
    pub disabled: bool,
    /// UP: a report within `offline_after`.
    pub up: bool,
    pub last_report_at: Option<String>,
    pub last_report_age_secs: Option<u64>,
    pub active_version: Option<u64>,
    pub in_sync: bool,
    /// Versions behind head (0 when in sync).
    pub behind_by: u64,
    /// Since when it has been behind, RFC 3339.
    pub behind_since: Option<String>,
    pub activity: Activity,
    pub now_playing: Option<NowPlaying>,
    pub output: OutputState,
    pub fetching: Option<Fetching>,
    pub last_error: Option<String>,
    pub clock_offset_ms: Option<i64>,
    pub free_disk_bytes: Option<u64>,
    /// How its schedule follows the wall clock on a sound device, as last reported.
    pub audio_clock: Option<AudioClock>,
    pub agent_version: Option<String>,
    /// Seconds since the player's agent started, as last reported.
    pub uptime_secs: Option<u64>,
    pub open_alerts: Vec<AlertView>,
}

/// The whole dashboard, as `GET /api/fleet` and `fleet --json` print it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FleetView {
    pub generated_at: String,
    pub head_version: u64,
    pub offline_after_secs: u64,
    pub players: Vec<PlayerView>,
}

/// A player's page: its dashboard row, and its recent plays, events and
/// commands (newest first).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlayerDetail {
    pub player: PlayerView,
    pub plays: Vec<PlayRecord>,
    pub events: Vec<LogEvent>,
    pub commands: Vec<CommandView>,
}

/// The head manifest a view judges opening hours by, loaded once per head version.
type ManifestCache = Mutex<Option<(u64, Option<Arc<Manifest>>)>>;

/// The server's side of supervision, one per `serve`, shared by the protocol and the web UI.
/// It does not import `protocol` (that imports it): it follows the head through
/// the tracker's channel and reads the head manifest from the store.
pub struct Fleet {
    data: DataDir,
    db: Arc<Db>,
    head: watch::Receiver<Head>,
    pub offline_after: Duration,
    manifest: Arc<ManifestCache>,
    /// One channel per player whose long-poll waits; bumped when a command is queued for it.
    wakers: Mutex<HashMap<String, watch::Sender<u64>>>,
    /// The database's command generation as last polled.
    commands_seen: Mutex<u64>,
    /// Players with commands waiting, so `head` answers `commands_pending`
    /// without a query: filled from the database at start and on each move of
    /// the generation, added to when a command is queued here, emptied for a
    /// player by its report. An expired command may leave a player listed until
    /// its next report, which costs one early report.
    pending: Mutex<HashSet<String>>,
    /// Reports applied in batches, one transaction (one fsync) per batch.
    ingest: ingest::IngestQueue,
}

/// A poisoned lock only means another thread panicked while holding it; the
/// maps it guards stay consistent (each update is one insert or bump).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| PublisherError::Internal(e.to_string()))?
}

/// RFC 3339 UTC in whole seconds, as the tables keep times.
fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn parse_instant(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// At most [`MAX_TEXT_CHARS`] characters of `text`.
fn cut(text: &str) -> String {
    text.chars().take(MAX_TEXT_CHARS).collect()
}

impl Fleet {
    /// `head` is `HeadTracker::subscribe()`.
    pub fn new(data: DataDir, head: watch::Receiver<Head>, offline_after: Duration) -> Result<Arc<Fleet>> {
        let db = data.db()?;
        let seen = db.commands_generation()?;
        let pending = db
            .players_with_pending_commands(Utc::now())?
            .into_iter()
            .collect();
        // The CLI's `fleet` then judges UP/KO with the same threshold.
        db.set_serve_offline_after_secs(offline_after.as_secs())?;
        let db = Arc::new(db);
        Ok(Arc::new(Fleet {
            data,
            ingest: ingest::IngestQueue::start(db.clone())?,
            db,
            head,
            offline_after,
            manifest: Arc::default(),
            wakers: Mutex::default(),
            commands_seen: Mutex::new(seen),
            pending: Mutex::new(pending),
        }))
    }

    /// The dashboard at `now`.
    pub async fn view(&self, now: DateTime<Utc>) -> Result<FleetView> {
        let (db, context) = (self.db.clone(), self.context(now).await?);
        blocking(move || build_view(&db, &context)).await
    }

    /// The object-storage mirrors against the announced head (`/metrics`).
    pub async fn mirrors(&self, now: DateTime<Utc>) -> Result<Vec<crate::mirror::MirrorStatus>> {
        let head = self.head.borrow().clone();
        let db = self.db.clone();
        blocking(move || {
            Ok(crate::mirror::status_with_head(
                &db,
                head.version,
                head.published_at.as_deref(),
                now,
            )?)
        })
        .await
    }

    /// A player's page at `now`; not found when `id` is not registered.
    pub async fn player_detail(&self, id: &str, now: DateTime<Utc>) -> Result<PlayerDetail> {
        let (db, context, id) = (self.db.clone(), self.context(now).await?, id.to_string());
        blocking(move || {
            let registered = db.player(&id)?;
            let row = FleetRow {
                status: db.player_status(&id)?,
                id: registered.id,
                shop: registered.shop,
                disabled: registered.disabled,
            };
            let open = alerts::open_alerts(&db, Some(&id))?;
            let mut shops = HashMap::new();
            Ok(PlayerDetail {
                player: player_view(row, open, &context, &mut shops),
                plays: db.recent_plays(&id, DETAIL_ROWS)?,
                events: db.recent_events(&id, DETAIL_ROWS)?,
                commands: db.commands(Some(&id), DETAIL_ROWS, now)?,
            })
        })
        .await
    }

    /// The latest `limit` commands, of one player or of all, newest first.
    pub async fn commands(
        &self,
        player: Option<&str>,
        limit: u32,
        now: DateTime<Utc>,
    ) -> Result<Vec<CommandView>> {
        let (db, player) = (self.db.clone(), player.map(str::to_string));
        blocking(move || Ok(db.commands(player.as_deref(), limit, now)?)).await
    }

    /// Queues `kind` for one player, or for every enabled player with `None`;
    /// wakes their long-polls. Returns the command ids.
    pub async fn request_command(
        &self,
        player: Option<&str>,
        kind: CommandKind,
        by: &str,
        now: DateTime<Utc>,
    ) -> Result<Vec<String>> {
        let (db, player, by) = (self.db.clone(), player.map(str::to_string), by.to_string());
        let queued = blocking(move || queue_command(&db, player.as_deref(), kind, &by, now)).await?;
        for (_, player) in &queued {
            lock(&self.pending).insert(player.clone());
            self.wake(player);
        }
        Ok(queued.into_iter().map(|(id, _)| id).collect())
    }

    /// Applies a report of `player` (admitted by its token, for its own id):
    /// entries kept once, status replaced, `command_done` marking its command;
    /// answers the last entry kept and the commands waiting for it (sent once),
    /// with what was kept.
    pub async fn report(
        &self,
        player: &Player,
        report: Report,
        now: DateTime<Utc>,
    ) -> Result<(ReportAnswer, Applied)> {
        let head_version = self.head.borrow().version;
        let prepared = PreparedReport::new(player, head_version, report, now);
        let answered = self.ingest.apply(prepared).await?;
        // The answer carries every pending command of this player.
        lock(&self.pending).remove(&player.id);
        Ok(answered)
    }

    /// Whether commands wait for player `id` (see [`Fleet`]'s `pending`): no query.
    pub fn has_pending_commands(&self, id: &str) -> bool {
        lock(&self.pending).contains(id)
    }

    /// A channel that moves when a command is queued for player `id`: a waiting
    /// long-poll subscribes *before* it checks for pending commands.
    pub fn command_signal(&self, id: &str) -> watch::Receiver<u64> {
        lock(&self.wakers)
            .entry(id.to_string())
            .or_insert_with(|| watch::Sender::new(0))
            .subscribe()
    }

    fn wake(&self, id: &str) {
        if let Some(signal) = lock(&self.wakers).get(id) {
            signal.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    /// Reads the database's command generation (one cheap query) and, when it
    /// moved (a command queued by the CLI or the web UI), wakes the players for
    /// whom commands wait. `serve` calls it on its tick.
    pub async fn poll_commands(&self) {
        let db = self.db.clone();
        let now = Utc::now();
        let seen = *lock(&self.commands_seen);
        let polled = blocking(move || {
            let generation = db.commands_generation()?;
            if generation == seen {
                return Ok((generation, Vec::new()));
            }
            Ok((generation, db.players_with_pending_commands(now)?))
        })
        .await;
        match polled {
            Ok((generation, players)) => {
                *lock(&self.commands_seen) = generation;
                for player in &players {
                    self.wake(player);
                }
                if generation != seen {
                    *lock(&self.pending) = players.into_iter().collect();
                    // Channels nobody waits on any more.
                    lock(&self.wakers).retain(|_, s| s.receiver_count() > 0);
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot read the commands' generation"),
        }
    }

    /// Purges plays and events older than `retention` now and then every hour
    /// (tokio-cron-scheduler), until `stop` turns true or its sender is gone.
    pub async fn purge_on_schedule(self: Arc<Self>, retention: Duration, stop: watch::Receiver<bool>) {
        retention::purge_on_schedule(self.db.clone(), retention, stop).await
    }

    /// What a view needs besides the database: the head (from the tracker) and
    /// its manifest (loaded once per head version).
    async fn context(&self, now: DateTime<Utc>) -> Result<ViewContext> {
        let head = self.head.borrow().clone();
        let cached = lock(&self.manifest)
            .as_ref()
            .filter(|(v, _)| *v == head.version)
            .map(|(_, m)| m.clone());
        let manifest = match cached {
            Some(m) => m,
            None => {
                let (data, version) = (self.data.clone(), head.version);
                let loaded = blocking(move || Ok(manifest_of_version(&data, version))).await?;
                *lock(&self.manifest) = Some((head.version, loaded.clone()));
                loaded
            }
        };
        Ok(ViewContext {
            head_version: head.version,
            head_published_at: head.published_at,
            manifest,
            now,
            offline_after: self.offline_after,
        })
    }
}

/// The verified manifest of version `version` (`None` before the first
/// publish, or when it cannot be read or verified: logged, and the view then
/// judges activity by the output alone).
fn manifest_of_version(data: &DataDir, version: u64) -> Option<Arc<Manifest>> {
    if version == 0 {
        return None;
    }
    let loaded = (|| -> Result<Option<Manifest>> {
        let store = data.store()?;
        let Some(commit) = store.commit_of_version(version)? else {
            return Ok(None);
        };
        let trusted = crate::trust::trusted_keys(data)?;
        Ok(Some((*store.verified_manifest(commit, &trusted)?).clone()))
    })();
    match loaded {
        Ok(m) => m.map(Arc::new),
        Err(e) => {
            tracing::warn!(version, error = %e, "cannot read the head manifest: shops' hours unknown");
            None
        }
    }
}

/// The head and the clock a view is made against.
struct ViewContext {
    head_version: u64,
    head_published_at: Option<String>,
    manifest: Option<Arc<Manifest>>,
    now: DateTime<Utc>,
    offline_after: Duration,
}

/// The dashboard from `data` alone, without `serve` (the CLI's `fleet`): the
/// head is read from the store.
pub fn view_at(data: &DataDir, now: DateTime<Utc>, offline_after: Duration) -> Result<FleetView> {
    let head = data.store()?.head_version()?;
    let head_version = head.map_or(0, |(v, _)| v);
    let manifest = manifest_of_version(data, head_version);
    let context = ViewContext {
        head_version,
        head_published_at: manifest.as_ref().map(|m| m.published_at.to_string()),
        manifest,
        now,
        offline_after,
    };
    build_view(&data.db()?, &context)
}

fn build_view(db: &Db, context: &ViewContext) -> Result<FleetView> {
    let mut alerts: HashMap<String, Vec<AlertView>> = HashMap::new();
    for alert in alerts::open_alerts(db, None)? {
        alerts.entry(alert.player_id.clone()).or_default().push(alert);
    }
    let mut shops = HashMap::new();
    let players = db
        .fleet_rows()?
        .into_iter()
        .map(|row| {
            let open = alerts.remove(&row.id).unwrap_or_default();
            player_view(row, open, context, &mut shops)
        })
        .collect();
    Ok(FleetView {
        generated_at: rfc3339(context.now),
        head_version: context.head_version,
        offline_after_secs: context.offline_after.as_secs(),
        players,
    })
}

/// Whether `shop` is open at `now` by the head manifest's hours, through the
/// schema's resolver; `None` when there is no manifest or it names no such shop.
fn shop_open(manifest: Option<&Manifest>, shop: &str, now: DateTime<Utc>) -> Option<bool> {
    let schedule = ShopSchedule::new(manifest?, shop).ok()?;
    Some(schedule.open_period(now).is_some())
}

/// A player's dashboard row. Takes its row by value: the view moves the
/// report's texts instead of copying them, 10,000 rows at a time for `/api/fleet`.
fn player_view(
    row: FleetRow,
    open_alerts: Vec<AlertView>,
    context: &ViewContext,
    shops: &mut HashMap<String, Option<bool>>,
) -> PlayerView {
    let FleetRow {
        id,
        shop,
        disabled,
        status,
    } = row;
    let received = status.as_ref().and_then(|s| parse_instant(&s.received_at));
    let age = received.map(|t| (context.now - t).num_seconds().max(0).unsigned_abs());
    let up = age.is_some_and(|a| a <= context.offline_after.as_secs());
    let active = status.as_ref().and_then(|s| s.report.active_version);
    let head = context.head_version;
    let in_sync = active == Some(head) || (head == 0 && status.is_some());
    let behind_by = if in_sync {
        0
    } else {
        head.saturating_sub(active.unwrap_or(0))
    };
    let output = status
        .as_ref()
        .map_or(OutputState::NotStarted, |s| s.report.output);
    let activity = if !up {
        Activity::Unknown
    } else if output == OutputState::Playing {
        Activity::Playing
    } else {
        let open = match shops.get(&shop) {
            Some(open) => *open,
            None => {
                let open = shop_open(context.manifest.as_deref(), &shop, context.now);
                shops.insert(shop.clone(), open);
                open
            }
        };
        if open == Some(false) {
            Activity::Closed
        } else {
            Activity::NotPlaying
        }
    };
    let reported = status.is_some();
    let (last_report_at, behind_since, report) = match status {
        Some(s) => (Some(s.received_at), s.behind_since, Some(s.report)),
        None => (None, None, None),
    };
    let behind_since = if in_sync || !reported {
        None
    } else {
        behind_since.or_else(|| context.head_published_at.clone())
    };
    let (mut now_playing, mut fetching, mut last_error, mut agent_version) = (None, None, None, None);
    let (mut clock_offset_ms, mut free_disk_bytes, mut audio_clock, mut uptime_secs) =
        (None, None, None, None);
    if let Some(r) = report {
        now_playing = r.now_playing;
        fetching = r.fetching;
        last_error = r.last_error;
        clock_offset_ms = r.clock_offset_ms;
        free_disk_bytes = r.free_disk_bytes;
        audio_clock = r.audio_clock;
        agent_version = Some(r.agent_version);
        uptime_secs = Some(r.uptime_secs);
    }
    PlayerView {
        id,
        shop,
        disabled,
        up,
        last_report_at,
        last_report_age_secs: age,
        active_version: active,
        in_sync,
        behind_by,
        behind_since,
        activity,
        now_playing,
        output,
        fetching,
        last_error,
        clock_offset_ms,
        free_disk_bytes,
        audio_clock,
        agent_version,
        uptime_secs,
        open_alerts,
    }
}

/// A command word of the CLI or a form, refused unless on the allow-list.
pub fn parse_command_kind(text: &str) -> Result<CommandKind, FleetError> {
    CommandKind::parse(text).ok_or_else(|| FleetError::NotAllowed(cut(text)))
}

/// A new command id: 128 random bits, URL-safe.
fn command_id() -> String {
    let token = crate::random_token();
    format!("cmd-{}", &token[..22])
}

/// Queues `kind` for player `player` (which must be enabled), or for every
/// enabled player with `None`, expiring after [`COMMAND_TTL`], in one
/// transaction. Returns `(command id, player id)` of each. Without `serve`
/// (the CLI), the server notices it within one tick.
pub fn queue_command(
    db: &Db,
    player: Option<&str>,
    kind: CommandKind,
    by: &str,
    now: DateTime<Utc>,
) -> Result<Vec<(String, String)>> {
    let players: Vec<String> = match player {
        Some(id) => {
            let p = db.player(id)?;
            if p.disabled {
                return Err(FleetError::PlayerDisabled(p.id).into());
            }
            vec![p.id]
        }
        None => db
            .players()?
            .into_iter()
            .filter(|p| !p.disabled)
            .map(|p| p.id)
            .collect(),
    };
    let queued: Vec<(String, String)> = players.into_iter().map(|p| (command_id(), p)).collect();
    let ttl = chrono::Duration::from_std(COMMAND_TTL).unwrap_or(chrono::Duration::minutes(10));
    db.queue_commands(&queued, kind, &cut(by), now, now + ttl)?;
    tracing::info!(
        kind = kind.as_str(),
        player_count = queued.len(),
        by,
        "command queued"
    );
    Ok(queued)
}

/// A reported time as the tables keep it; one that does not read as RFC 3339
/// is replaced by `fallback` (kept rather than refused: a refusal would block
/// the player's outbox for ever).
fn reported_time(text: &str, fallback: DateTime<Utc>) -> String {
    rfc3339(parse_instant(text).unwrap_or(fallback))
}

/// Applies `report` of `player` at `now` against head `head_version` (see
/// [`Fleet::report`]): entries sorted by sequence number, at most
/// [`MAX_ENTRIES_PER_REPORT`] of them (the rest are not acknowledged, so the
/// player sends them again), every text cut to [`MAX_TEXT_CHARS`].
pub fn ingest(
    db: &Db,
    player: &Player,
    head_version: u64,
    report: Report,
    now: DateTime<Utc>,
) -> Result<(ReportAnswer, Applied)> {
    let prepared = PreparedReport::new(player, head_version, report, now);
    Ok(db.transaction(|tx| prepared.apply(tx))?)
}

/// A report turned into rows, ready to be applied inside a transaction (one
/// report alone, or a batch of them: [`ingest::IngestQueue`]).
pub(crate) struct PreparedReport {
    player_id: String,
    head_version: u64,
    outbox: String,
    status: StatusUpdate,
    entries: Vec<(u64, ReportedEntry)>,
    now: DateTime<Utc>,
}

impl PreparedReport {
    fn new(player: &Player, head_version: u64, mut report: Report, now: DateTime<Utc>) -> PreparedReport {
        report.entries.sort_by_key(|e| e.seq);
        report.entries.truncate(MAX_ENTRIES_PER_REPORT);
        let entries: Vec<(u64, ReportedEntry)> = report
            .entries
            .iter()
            .map(|e| {
                let at = parse_instant(&e.at).unwrap_or(now);
                let entry = match &e.body {
                    EntryBody::Play(p) => ReportedEntry::Play(PlayRecord {
                        player_id: player.id.clone(),
                        shop: player.shop.clone(),
                        play: PlayEntry {
                            play_id: cut(&p.play_id),
                            media: cut(&p.media),
                            title: cut(&p.title),
                            kind: cut(&p.kind),
                            source: cut(&p.source),
                            version: p.version,
                            started_at: reported_time(&p.started_at, at),
                            ended_at: p.ended_at.as_deref().map(|t| reported_time(t, at)),
                            outcome: cut(&p.outcome),
                        },
                        received_at: rfc3339(now),
                    }),
                    EntryBody::Event(ev) => ReportedEntry::Event(LogEvent {
                        player_id: player.id.clone(),
                        shop: player.shop.clone(),
                        seq: e.seq,
                        kind: ev.kind.as_str().to_string(),
                        detail: cut(&ev.detail),
                        version: ev.version,
                        media: ev.media.as_deref().map(cut),
                        command_id: ev.command_id.as_deref().map(cut),
                        at: rfc3339(at),
                        received_at: rfc3339(now),
                    }),
                };
                (e.seq, entry)
            })
            .collect();
        let status = StatusUpdate {
            active_version: report.active_version,
            fetching: report.fetching.clone(),
            now_playing: report.now_playing.as_ref().map(|n| NowPlaying {
                media: cut(&n.media),
                title: cut(&n.title),
                kind: cut(&n.kind),
                started_at: reported_time(&n.started_at, now),
            }),
            output: report.output,
            last_error: report.last_error.as_deref().map(cut),
            clock_offset_ms: report.clock_offset_ms,
            free_disk_bytes: report.free_disk_bytes,
            audio_clock: report.audio_clock,
            agent_version: cut(&report.agent_version),
            uptime_secs: report.uptime_secs,
        };
        PreparedReport {
            player_id: player.id.clone(),
            head_version,
            outbox: cut(&report.outbox),
            status,
            entries,
            now,
        }
    }

    /// Writes the report's rows and takes the player's pending commands, on
    /// `tx` (the caller's transaction commits them).
    fn apply(&self, tx: &Db) -> Result<(ReportAnswer, Applied), crate::db::DbError> {
        let (player_id, now) = (&self.player_id, self.now);
        let applied = tx.apply_report(
            player_id,
            &self.outbox,
            &self.status,
            self.head_version,
            &self.entries,
            now,
        )?;
        let taken = tx.take_commands(player_id, now)?;
        let commands = taken
            .into_iter()
            .map(|c| Command {
                id: c.id,
                kind: c.kind,
                requested_by: c.requested_by,
                expires_at: c.expires_at,
            })
            .collect::<Vec<_>>();
        tracing::debug!(
            player = %player_id,
            entry_count = self.entries.len(),
            plays = applied.plays,
            events = applied.events,
            duplicates = applied.duplicates,
            acked = applied.acked,
            command_count = commands.len(),
            "report applied"
        );
        let answer = ReportAnswer {
            acked: applied.acked,
            commands,
        };
        Ok((answer, applied))
    }
}

/// Removes plays and events older than `retention` before `now` (and finished
/// commands as old): the clock is a parameter so a test can show what goes.
pub fn purge(db: &Db, now: DateTime<Utc>, retention: Duration) -> Result<Purged> {
    let retention = chrono::Duration::from_std(retention).unwrap_or(chrono::Duration::MAX);
    let before = now
        .checked_sub_signed(retention)
        .unwrap_or(DateTime::<Utc>::MIN_UTC);
    Ok(db.purge_supervision(before)?)
}

#[cfg(test)]
mod tests;
