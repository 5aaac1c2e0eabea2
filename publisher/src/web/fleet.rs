//! Supervision pages for admins (and read-only for auditors): the dashboard
//! (`/fleet`: counts over the whole fleet, then one page of at most
//! [`PAGE_ROWS`] rows, problems first, with filters and page links that work
//! without script; live updates by `static/fleet.js` polling the same page as
//! JSON at `/api/fleet/page`), a player's page with its recent plays, events and
//! commands, the alerts with their history, exports of plays and events, and
//! the admin's "Sync now" and "Acknowledge". `/api/fleet` is the whole fleet
//! (`fleet --json`'s JSON). Which role may do what is `auth::POLICY`'s: the
//! write routes are admin-only there.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use chrono::{DateTime, Utc};
use minijinja::context;
use serde::Serialize;
use skycast_web::Lang;

use super::auth::{self, Access};
use super::form::{bad, shown, Fields};
use super::{Ctx, WebState};
use crate::db::{AlertRow, CommandView, RowFilter};
use crate::error::{PublisherError, Result};
use crate::fleet::export::{self, ExportFormat};
use crate::fleet::{Activity, FleetView, PlayerView};

/// The admin's command route (`auth::POLICY` lets only admins post it).
pub const SYNC_PATH: &str = "/fleet/sync";
/// The admin's acknowledgement route (admin-only in `auth::POLICY`).
pub const ACKNOWLEDGE_PATH: &str = "/fleet/alerts/acknowledge";
/// Commands `/api/fleet/commands` lists (the latest ones).
const DASHBOARD_COMMANDS: u32 = 500;
/// Rows on one page of the dashboard (and of `/api/fleet/page`).
pub const PAGE_ROWS: usize = 100;
/// Bytes of JSON per player in `/api/fleet`, to size its buffer once.
const JSON_BYTES_PER_PLAYER: usize = 640;
/// Rows of alert history shown.
const ALERT_HISTORY: usize = 200;

pub(super) fn routes() -> Router<Arc<WebState>> {
    Router::new()
        .route("/fleet", get(dashboard))
        .route("/fleet/players/{id}", get(player_page))
        .route("/fleet/alerts", get(alerts_page))
        .route("/fleet/export", get(export_download))
        .route(SYNC_PATH, post(sync))
        .route(ACKNOWLEDGE_PATH, post(acknowledge))
        .route("/api/fleet", get(api_fleet))
        .route("/api/fleet/page", get(api_fleet_page))
        .route("/api/fleet/commands", get(api_commands))
        .route("/api/fleet/players/{id}", get(api_player))
}

/// Whether the signed-in user may open `path`, by the policy (so a page shows
/// only the buttons its reader may use).
fn may(ctx: &Ctx, path: &str) -> bool {
    let role = ctx.user.as_ref().map(|u| u.role);
    match auth::access(path) {
        Access::Public | Access::AnyUser => role.is_some(),
        Access::Roles(roles) => role.is_some_and(|r| roles.contains(&r)),
    }
}

/// The dashboard's filters, from the query string (`?ko=1&out_of_sync=1&shop=main`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Filters {
    pub ko: bool,
    pub out_of_sync: bool,
    pub shop: String,
}

fn flag(fields: &Fields, name: &str) -> Result<bool> {
    match fields.get(name).as_str() {
        "" | "0" => Ok(false),
        "1" | "on" | "true" => Ok(true),
        other => Err(bad(format!(
            "filter `{name}` takes 1 (on) or nothing, not `{}`",
            shown(other)
        ))),
    }
}

impl Filters {
    #[cfg(test)]
    fn parse(query: Option<&str>) -> Result<Filters> {
        Filters::of(&Fields::parse(query.unwrap_or("").as_bytes()))
    }

    fn of(fields: &Fields) -> Result<Filters> {
        Ok(Filters {
            ko: flag(fields, "ko")?,
            out_of_sync: flag(fields, "out_of_sync")?,
            shop: fields.get("shop"),
        })
    }

    /// The query string of page `page` with these filters: `ko=1&shop=main&page=2`.
    pub fn query(&self, page: usize) -> String {
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        if self.ko {
            q.append_pair("ko", "1");
        }
        if self.out_of_sync {
            q.append_pair("out_of_sync", "1");
        }
        if !self.shop.is_empty() {
            q.append_pair("shop", &self.shop);
        }
        q.append_pair("page", &page.to_string());
        q.finish()
    }

    /// Whether `p` passes every filter set.
    pub fn keeps(&self, p: &PlayerView) -> bool {
        (!self.ko || (!p.up && !p.disabled))
            && (!self.out_of_sync || (!p.in_sync && !p.disabled))
            && (self.shop.is_empty() || p.shop == self.shop)
    }
}

/// Which page of the dashboard a query asks for: filters and page number (from 1).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Wanted {
    filters: Filters,
    page: usize,
}

impl Wanted {
    fn parse(query: Option<&str>) -> Result<Wanted> {
        let fields = Fields::parse(query.unwrap_or("").as_bytes());
        let page = match fields.get("page").as_str() {
            "" => 1,
            text => text.parse::<usize>().ok().filter(|n| *n >= 1).ok_or_else(|| {
                bad(format!(
                    "`page` takes a page number (1, 2, ...), not `{}`",
                    shown(text)
                ))
            })?,
        };
        Ok(Wanted {
            filters: Filters::of(&fields)?,
            page,
        })
    }
}

/// Counts over the whole fleet, whatever the filters: the dashboard's summary.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub players: usize,
    /// Enabled and reporting.
    pub up: usize,
    /// Enabled and silent past `offline_after`.
    pub ko: usize,
    /// Enabled and not on the head version.
    pub out_of_sync: usize,
    /// Enabled, reporting, the shop open, and no sound going out.
    pub not_playing: usize,
    pub disabled: usize,
    /// Open alerts (not players with alerts).
    pub open_alerts: usize,
}

impl Summary {
    pub fn of(players: &[PlayerView]) -> Summary {
        let mut s = Summary {
            players: players.len(),
            ..Summary::default()
        };
        for p in players {
            s.open_alerts += p.open_alerts.len();
            if p.disabled {
                s.disabled += 1;
                continue;
            }
            if p.up {
                s.up += 1;
            } else {
                s.ko += 1;
            }
            s.out_of_sync += usize::from(!p.in_sync);
            s.not_playing += usize::from(p.activity == Activity::NotPlaying);
        }
        s
    }
}

/// Problems first: KO, then open alerts, then out of sync, then not playing
/// (while open), then the rest.
fn rank(p: &PlayerView) -> u8 {
    if !p.disabled && !p.up {
        0
    } else if !p.open_alerts.is_empty() {
        1
    } else if !p.disabled && !p.in_sync {
        2
    } else if !p.disabled && p.activity == Activity::NotPlaying {
        3
    } else {
        4
    }
}

/// One page of the dashboard: the counts over the fleet, and the players that
/// pass the filters, problems first, by shop and id within each rank.
#[derive(Debug)]
struct Selection<'a> {
    summary: Summary,
    /// Players that pass the filters, on every page.
    matching: usize,
    /// The page shown: the one asked for, or the last one when it asked past it.
    page: usize,
    /// At least 1.
    pages: usize,
    players: Vec<&'a PlayerView>,
}

fn select<'a>(view: &'a FleetView, filters: &Filters, page: usize) -> Selection<'a> {
    let mut kept: Vec<(u8, &PlayerView)> = view
        .players
        .iter()
        .filter(|p| filters.keeps(p))
        .map(|p| (rank(p), p))
        .collect();
    let matching = kept.len();
    let pages = matching.div_ceil(PAGE_ROWS).max(1);
    let page = page.clamp(1, pages);
    kept.sort_unstable_by(|(ra, a), (rb, b)| (ra, &a.shop, &a.id).cmp(&(rb, &b.shop, &b.id)));
    let players = kept
        .into_iter()
        .skip((page - 1) * PAGE_ROWS)
        .take(PAGE_ROWS)
        .map(|(_, p)| p)
        .collect();
    Selection {
        summary: Summary::of(&view.players),
        matching,
        page,
        pages,
        players,
    }
}

/// The page links of the dashboard, each the query string of `/fleet?...`
/// keeping the filters (the template writes the path: its escaping would
/// spell a `/` in a value as `&#x2f;`).
#[derive(Debug, Serialize)]
struct Pager {
    page: usize,
    pages: usize,
    matching: usize,
    /// Row numbers shown, from 1 (0 and 0 when none matches).
    first_row: usize,
    last_row: usize,
    first: Option<String>,
    prev: Option<String>,
    next: Option<String>,
    last: Option<String>,
}

fn pager(filters: &Filters, s: &Selection<'_>) -> Pager {
    let href = |page: usize| filters.query(page);
    let first_row = if s.players.is_empty() {
        0
    } else {
        (s.page - 1) * PAGE_ROWS + 1
    };
    Pager {
        page: s.page,
        pages: s.pages,
        matching: s.matching,
        first_row,
        last_row: (first_row + s.players.len()).saturating_sub(1),
        first: (s.page > 1).then(|| href(1)),
        prev: (s.page > 1).then(|| href(s.page - 1)),
        next: (s.page < s.pages).then(|| href(s.page + 1)),
        last: (s.page < s.pages).then(|| href(s.pages)),
    }
}

/// One dashboard row in the page's language. `static/fleet.js` writes the same
/// cells from `/api/fleet/page` with the texts the page hands it.
#[derive(Debug, Serialize)]
struct Row {
    id: String,
    shop: String,
    /// `up`, `ko` or `disabled`: also the badge's class.
    state: &'static str,
    in_sync: bool,
    sync_text: String,
    now_playing: String,
    activity: String,
    output: String,
    last_seen: String,
    last_report_at: Option<String>,
    clock: String,
    disk: String,
    alerts: Vec<String>,
    command: String,
}

fn state_of(p: &PlayerView) -> &'static str {
    match (p.disabled, p.up) {
        (true, _) => "disabled",
        (false, true) => "up",
        (false, false) => "ko",
    }
}

/// `10:02 UTC` of an RFC 3339 instant.
fn clock_time(text: &str) -> String {
    DateTime::parse_from_rfc3339(text).map_or_else(
        |_| text.to_string(),
        |t| t.with_timezone(&Utc).format("%H:%M UTC").to_string(),
    )
}

/// `12 s`, `3 min`, `2 h`, `4 d`.
pub fn age(secs: u64) -> String {
    match secs {
        0..=59 => format!("{secs} s"),
        60..=3599 => format!("{} min", secs / 60),
        3600..=86_399 => format!("{} h", secs / 3600),
        _ => format!("{} d", secs / 86_400),
    }
}

/// `+120 ms`, `-3.4 s`.
pub fn offset(ms: i64) -> String {
    if ms.abs() < 1000 {
        format!("{ms:+} ms")
    } else {
        format!("{:+.1} s", ms as f64 / 1000.0)
    }
}

/// `12.3 GB`, `450 MB`, `12 kB` (powers of 1000).
pub fn bytes(n: u64) -> String {
    match n {
        0..=999_999 => format!("{} kB", n / 1000),
        1_000_000..=999_999_999 => format!("{} MB", n / 1_000_000),
        _ => format!("{:.1} GB", n as f64 / 1e9),
    }
}

fn text(lang: Lang, key: &str) -> String {
    skycast_web::text(lang, key)
}

fn alert_text(lang: Lang, en: &str, fr: &str) -> String {
    match lang {
        Lang::En => en.to_string(),
        Lang::Fr => fr.to_string(),
    }
}

fn command_text(lang: Lang, c: &CommandView) -> String {
    let kind = text(lang, &format!("fleet.command.{}", c.kind.as_str()));
    let state = text(lang, &format!("fleet.command_state.{}", c.state));
    let when = c.done_at.as_deref().unwrap_or(&c.requested_at);
    format!("{kind}: {state} {}", clock_time(when))
}

fn row(lang: Lang, p: &PlayerView, command: Option<&CommandView>) -> Row {
    let sync_text = if p.disabled || p.active_version.is_none() {
        text(lang, "fleet.sync.unknown")
    } else if p.in_sync {
        text(lang, "fleet.sync.in_sync")
    } else {
        text(lang, "fleet.sync.behind")
            .replace("{n}", &p.behind_by.to_string())
            .replace(
                "{since}",
                &p.behind_since.as_deref().map(clock_time).unwrap_or_default(),
            )
    };
    let activity = serde_json::to_value(p.activity)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    Row {
        id: p.id.clone(),
        shop: p.shop.clone(),
        state: state_of(p),
        in_sync: p.in_sync,
        sync_text,
        now_playing: p
            .now_playing
            .as_ref()
            .map_or_else(|| "—".to_string(), |n| n.title.clone()),
        activity: text(lang, &format!("fleet.activity.{activity}")),
        output: text(lang, &format!("fleet.output.{}", p.output.as_str())),
        last_seen: p.last_report_age_secs.map_or_else(
            || text(lang, "fleet.never"),
            |s| text(lang, "fleet.ago").replace("{age}", &age(s)),
        ),
        last_report_at: p.last_report_at.clone(),
        clock: p.clock_offset_ms.map_or_else(|| "—".to_string(), offset),
        disk: p.free_disk_bytes.map_or_else(|| "—".to_string(), bytes),
        alerts: p
            .open_alerts
            .iter()
            .map(|a| alert_text(lang, &a.text_en, &a.text_fr))
            .collect(),
        command: command.map(|c| command_text(lang, c)).unwrap_or_default(),
    }
}

/// The texts `fleet.js` writes cells with, in the page's language.
fn script_texts(lang: Lang) -> serde_json::Value {
    let mut map = serde_json::Map::new();
    for key in [
        "fleet.state.up",
        "fleet.state.ko",
        "fleet.state.disabled",
        "fleet.sync.in_sync",
        "fleet.sync.behind",
        "fleet.sync.unknown",
        "fleet.never",
        "fleet.ago",
        "fleet.updated",
        "fleet.activity.playing",
        "fleet.activity.not_playing",
        "fleet.activity.closed",
        "fleet.activity.unknown",
        "fleet.output.playing",
        "fleet.output.idle_closed",
        "fleet.output.no_device",
        "fleet.output.error",
        "fleet.output.not_started",
        "fleet.command.sync_now",
        "fleet.command.verify_media",
        "fleet.command.restart_playback",
        "fleet.command.send_status",
        "fleet.command_state.pending",
        "fleet.command_state.sent",
        "fleet.command_state.done",
        "fleet.command_state.expired",
    ] {
        map.insert(key.to_string(), text(lang, key).into());
    }
    serde_json::Value::Object(map)
}

fn shops_of(view: &FleetView) -> Vec<&str> {
    let shops: BTreeSet<&str> = view.players.iter().map(|p| p.shop.as_str()).collect();
    shops.into_iter().collect()
}

/// The latest command of each player on a page (at most [`PAGE_ROWS`] indexed
/// look-ups), by player id.
async fn latest_commands(
    state: &Arc<WebState>,
    players: &[&PlayerView],
    now: DateTime<Utc>,
) -> Result<HashMap<String, CommandView>> {
    let ids: Vec<String> = players.iter().map(|p| p.id.clone()).collect();
    state
        .with_db(move |db| {
            let mut latest = HashMap::with_capacity(ids.len());
            for id in ids {
                if let Some(c) = db.commands(Some(&id), 1, now)?.into_iter().next() {
                    latest.insert(id, c);
                }
            }
            Ok(latest)
        })
        .await
}

/// One dashboard page, loaded for a handler to answer with.
struct Shown<'a> {
    wanted: &'a Wanted,
    view: &'a FleetView,
    selection: Selection<'a>,
    /// The latest command of each player on the page.
    commands: HashMap<String, CommandView>,
}

/// Loads the dashboard page that `query` asks for at `now` and hands it to `answer`.
async fn on_page<R>(
    state: &Arc<WebState>,
    query: Option<&str>,
    now: DateTime<Utc>,
    answer: impl FnOnce(Shown<'_>) -> R,
) -> Result<R> {
    let wanted = Wanted::parse(query)?;
    let view = state.fleet.view(now).await?;
    let selection = select(&view, &wanted.filters, wanted.page);
    let commands = latest_commands(state, &selection.players, now).await?;
    Ok(answer(Shown {
        wanted: &wanted,
        view: &view,
        selection,
        commands,
    }))
}

/// One object-storage mirror on the dashboard: how far behind the head it is.
#[derive(Debug, Serialize)]
struct MirrorLine {
    name: String,
    place: String,
    mirrored_version: u64,
    failing: bool,
    in_sync: bool,
    /// `in sync`, or how many versions behind and for how long.
    lag: String,
    queue_len: u64,
    last_error: Option<String>,
    last_success: String,
}

fn mirror_line(lang: Lang, m: crate::mirror::MirrorStatus) -> MirrorLine {
    let lag = if m.versions_behind == 0 {
        text(lang, "fleet.mirrors.in_sync")
    } else {
        text(lang, "fleet.mirrors.behind")
            .replace("{n}", &m.versions_behind.to_string())
            .replace("{age}", &age(m.lag_secs))
    };
    MirrorLine {
        place: format!("{}/{}", m.endpoint, m.bucket),
        mirrored_version: m.mirrored_version,
        failing: m.failing,
        in_sync: m.versions_behind == 0,
        lag,
        queue_len: m.queue_len,
        last_error: m.last_error,
        last_success: m
            .last_success_at
            .as_deref()
            .map_or_else(|| text(lang, "fleet.never"), clock_time),
        name: m.name,
    }
}

async fn dashboard(State(state): State<Arc<WebState>>, ctx: Ctx, RawQuery(query): RawQuery) -> Response {
    let now = state.now();
    let mirror_rows = match state.with_db(|db| Ok(db.mirrors()?)).await {
        Ok(rows) => rows,
        Err(e) => return state.error_page(&ctx, &e),
    };
    let shown = on_page(&state, query.as_deref(), now, |s| {
        let mirrors: Vec<MirrorLine> = mirror_rows
            .into_iter()
            .map(|row| crate::mirror::MirrorStatus::of(row, s.view.head_version, None, now))
            .map(|m| mirror_line(ctx.lang, m))
            .collect();
        let (wanted, view, selection) = (s.wanted, s.view, s.selection);
        let rows: Vec<Row> = selection
            .players
            .iter()
            .map(|p| row(ctx.lang, p, s.commands.get(&p.id)))
            .collect();
        state.page(
            &ctx,
            "fleet_dashboard.html",
            context! {
                rows,
                summary => selection.summary,
                pager => pager(&wanted.filters, &selection),
                query => wanted.filters.query(selection.page),
                shops => shops_of(view),
                filters => wanted.filters,
                head_version => view.head_version,
                offline_after_secs => view.offline_after_secs,
                can_command => may(&ctx, SYNC_PATH),
                texts => script_texts(ctx.lang).to_string(),
                today => now.format("%Y-%m-%d").to_string(),
                mirrors,
            },
        )
    })
    .await;
    shown.unwrap_or_else(|e| state.error_page(&ctx, &e))
}

async fn player_page(State(state): State<Arc<WebState>>, ctx: Ctx, Path(id): Path<String>) -> Response {
    let now = state.now();
    let detail = match state.fleet.player_detail(&id, now).await {
        Ok(detail) => detail,
        Err(e) => return state.error_page(&ctx, &e),
    };
    let lang = ctx.lang;
    let player = row(lang, &detail.player, detail.commands.first());
    let commands: Vec<_> = detail
        .commands
        .iter()
        .map(|c| {
            context! {
                id => c.id,
                kind => text(lang, &format!("fleet.command.{}", c.kind.as_str())),
                state => c.state,
                state_text => text(lang, &format!("fleet.command_state.{}", c.state)),
                requested_by => c.requested_by,
                requested_at => c.requested_at,
                done_at => c.done_at,
            }
        })
        .collect();
    state.page(
        &ctx,
        "fleet_player.html",
        context! {
            player,
            plays => detail.plays,
            events => detail.events,
            commands,
            can_command => may(&ctx, SYNC_PATH),
            texts => script_texts(lang).to_string(),
        },
    )
}

#[derive(Serialize)]
struct AlertLine {
    id: i64,
    kind: String,
    player_id: String,
    shop: String,
    opened_at: String,
    resolved_at: Option<String>,
    acknowledged_by: Option<String>,
    text: String,
}

fn alert_line(lang: Lang, a: AlertRow) -> AlertLine {
    AlertLine {
        text: alert_text(lang, &a.text_en, &a.text_fr),
        id: a.id,
        kind: a.kind,
        player_id: a.player_id,
        shop: a.shop,
        opened_at: a.opened_at,
        resolved_at: a.resolved_at,
        acknowledged_by: a.acknowledged_by,
    }
}

async fn alerts_page(State(state): State<Arc<WebState>>, ctx: Ctx) -> Response {
    let found = state
        .with_db(|db| Ok((db.open_alerts(None)?, db.alert_history(ALERT_HISTORY)?)))
        .await;
    match found {
        Ok((open, history)) => {
            let lang = ctx.lang;
            let open: Vec<_> = open.into_iter().map(|a| alert_line(lang, a)).collect();
            let history: Vec<_> = history
                .into_iter()
                .filter(|a| a.resolved_at.is_some())
                .map(|a| alert_line(lang, a))
                .collect();
            state.page(
                &ctx,
                "fleet_alerts.html",
                context! { open, history, can_acknowledge => may(&ctx, ACKNOWLEDGE_PATH) },
            )
        }
        Err(e) => state.error_page(&ctx, &e),
    }
}

/// Where a form sends the user back: only the pages named here; the dashboard
/// at the page and filters of its `view` field (re-read, then written anew).
fn back_to(fields: &Fields, player: Option<&str>) -> String {
    match (fields.get("back").as_str(), player) {
        ("player", Some(id)) => format!(
            "/fleet/players/{}",
            url::form_urlencoded::byte_serialize(id.as_bytes()).collect::<String>()
        ),
        _ => match fields.get("view") {
            view if view.is_empty() => "/fleet".to_string(),
            view => Wanted::parse(Some(&view)).map_or_else(
                |_| "/fleet".to_string(),
                |w| format!("/fleet?{}", w.filters.query(w.page)),
            ),
        },
    }
}

async fn sync(
    State(state): State<Arc<WebState>>,
    ctx: Ctx,
    Form(pairs): Form<Vec<(String, String)>>,
) -> Response {
    let fields = Fields::new(pairs);
    let player = fields.get("player");
    let all = fields.get("all");
    let target = (!player.is_empty()).then_some(player.as_str());
    let to = back_to(&fields, target);
    let lang = ctx.lang;
    let by = ctx.username().to_string();
    let result = async {
        let kind = crate::fleet::parse_command_kind(&fields.get_or("command", "sync_now"))?;
        match (target, all.as_str()) {
            (Some(_), "") | (None, "1") => {}
            (Some(_), _) => return Err(bad("send either `player` or `all=1`, not both")),
            (None, "") => return Err(bad("say which player to sync (`player`), or `all=1` for every player")),
            (None, other) => return Err(bad(format!("`all` takes 1, not `{}`", shown(other)))),
        }
        let ids = state.fleet.request_command(target, kind, &by, state.now()).await?;
        tracing::info!(user = %by, player = target.unwrap_or("all"), command = kind.as_str(), commands = ids.len(), "command requested");
        let key = if target.is_some() {
            "fleet.sync_requested_one"
        } else {
            "fleet.sync_requested_all"
        };
        Ok(text(lang, key)
            .replace("{player}", target.unwrap_or(""))
            .replace("{n}", &ids.len().to_string()))
    }
    .await;
    state.done(&ctx, result, &to).await
}

async fn acknowledge(
    State(state): State<Arc<WebState>>,
    ctx: Ctx,
    Form(pairs): Form<Vec<(String, String)>>,
) -> Response {
    let fields = Fields::new(pairs);
    let lang = ctx.lang;
    let by = ctx.username().to_string();
    let now = state.now();
    let raw = fields.get("alert");
    let result = match raw.parse::<i64>() {
        Err(_) => Err(bad(format!(
            "`alert` must be the number of an alert, not `{}`",
            shown(&raw)
        ))),
        Ok(id) => {
            state
                .with_db(move |db| {
                    let found = db.acknowledge_alert(id, &by, now)?;
                    let row = found.ok_or_else(|| PublisherError::NotFound(format!("alert {id}")))?;
                    tracing::info!(user = %by, alert = id, "alert acknowledged");
                    Ok(text(lang, "fleet.alerts.acknowledged").replace("{id}", &row.id.to_string()))
                })
                .await
        }
    };
    state.done(&ctx, result, "/fleet/alerts").await
}

/// `GET /fleet/export?what=plays|events&from=DATE&to=DATE&shop=S&format=csv|txt`.
async fn export_download(
    State(state): State<Arc<WebState>>,
    ctx: Ctx,
    RawQuery(query): RawQuery,
) -> Response {
    let fields = Fields::parse(query.unwrap_or_default().as_bytes());
    let what = fields.get_or("what", "plays");
    let format_text = fields.get_or("format", "csv");
    let made = async {
        let format: ExportFormat = format_text.parse().map_err(bad)?;
        let mut filter: RowFilter = export::range_filter(&fields.get("from"), &fields.get("to"))?;
        let shop = fields.get("shop");
        filter.shop = (!shop.is_empty()).then_some(shop);
        let plays = match what.as_str() {
            "plays" => true,
            "events" => false,
            other => return Err(bad(format!("`what` is plays or events, not `{}`", shown(other)))),
        };
        state
            .with_db(move |db| {
                let mut out = Vec::new();
                if plays {
                    export::export_plays(db, &filter, format, &mut out)?;
                } else {
                    export::export_events(db, &filter, format, &mut out)?;
                }
                Ok(out)
            })
            .await
            .map(|out| (format, out))
    }
    .await;
    match made {
        Ok((format, out)) => {
            let name = format!(
                "attachment; filename=\"skycast-{what}-{}-{}.{format_text}\"",
                safe_name(&fields.get("from")),
                safe_name(&fields.get("to"))
            );
            (
                [
                    (header::CONTENT_TYPE, format.content_type().to_string()),
                    (header::CONTENT_DISPOSITION, name),
                ],
                out,
            )
                .into_response()
        }
        Err(e) => state.error_page(&ctx, &e),
    }
}

/// Dates as a file name: digits and `-` only.
fn safe_name(text: &str) -> String {
    text.chars()
        .filter(|c| c.is_ascii_digit() || *c == '-')
        .take(10)
        .collect()
}

/// A JSON answer's error; server errors are logged (clients see a generic message).
fn api_error(e: &PublisherError) -> Response {
    if e.status().is_server_error() {
        tracing::error!(error = %e, "fleet API request failed");
    }
    e.to_json()
}

/// `value` as JSON, written once into a buffer of `capacity` bytes to start with.
fn json_bytes<T: Serialize>(value: &T, capacity: usize) -> Response {
    let mut out = Vec::with_capacity(capacity);
    match serde_json::to_writer(&mut out, value) {
        Ok(()) => (
            [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))],
            out,
        )
            .into_response(),
        Err(e) => api_error(&PublisherError::Internal(format!("fleet JSON: {e}"))),
    }
}

/// The whole fleet, as `fleet --json` prints it.
async fn api_fleet(State(state): State<Arc<WebState>>) -> Response {
    let view = match state.fleet.view(state.now()).await {
        Ok(view) => view,
        Err(e) => return api_error(&e),
    };
    // Megabytes of JSON at fleet scale: written (and the view dropped) off the
    // async workers, which go on serving reports meanwhile.
    let capacity = 256 + view.players.len() * JSON_BYTES_PER_PLAYER;
    tokio::task::spawn_blocking(move || json_bytes(&view, capacity))
        .await
        .unwrap_or_else(|e| api_error(&PublisherError::Internal(format!("fleet JSON: {e}"))))
}

/// `GET /api/fleet/page?page=N&ko=1&out_of_sync=1&shop=S`: what the dashboard
/// page of the same query shows, for `static/fleet.js`.
#[derive(Debug, Serialize)]
struct FleetPage<'a> {
    generated_at: &'a str,
    head_version: u64,
    offline_after_secs: u64,
    summary: Summary,
    filters: &'a Filters,
    page: usize,
    pages: usize,
    per_page: usize,
    matching: usize,
    /// At most [`PAGE_ROWS`], problems first, as in `/api/fleet`.
    players: Vec<&'a PlayerView>,
    /// The latest command of each player on the page, if any.
    commands: Vec<&'a CommandView>,
}

async fn api_fleet_page(State(state): State<Arc<WebState>>, RawQuery(query): RawQuery) -> Response {
    let shown = on_page(&state, query.as_deref(), state.now(), |s| {
        let (wanted, view, selection) = (s.wanted, s.view, s.selection);
        let page = FleetPage {
            generated_at: &view.generated_at,
            head_version: view.head_version,
            offline_after_secs: view.offline_after_secs,
            summary: selection.summary,
            filters: &wanted.filters,
            page: selection.page,
            pages: selection.pages,
            per_page: PAGE_ROWS,
            matching: selection.matching,
            commands: selection
                .players
                .iter()
                .filter_map(|p| s.commands.get(&p.id))
                .collect(),
            players: selection.players,
        };
        json_bytes(&page, 1024 + PAGE_ROWS * JSON_BYTES_PER_PLAYER)
    })
    .await;
    shown.unwrap_or_else(|e| api_error(&e))
}

async fn api_commands(State(state): State<Arc<WebState>>) -> Response {
    match state.fleet.commands(None, DASHBOARD_COMMANDS, state.now()).await {
        Ok(commands) => Json(commands).into_response(),
        Err(e) => api_error(&e),
    }
}

async fn api_player(State(state): State<Arc<WebState>>, Path(id): Path<String>) -> Response {
    match state.fleet.player_detail(&id, state.now()).await {
        Ok(detail) => Json(detail).into_response(),
        Err(e) => api_error(&e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::{Activity, AlertKind, AlertView};
    use skycast_schema::report::{NowPlaying, OutputState};

    fn player(id: &str, shop: &str, up: bool, in_sync: bool) -> PlayerView {
        PlayerView {
            id: id.into(),
            shop: shop.into(),
            disabled: false,
            up,
            last_report_at: Some("2026-12-01T10:00:00Z".into()),
            last_report_age_secs: Some(75),
            active_version: Some(3),
            in_sync,
            behind_by: if in_sync { 0 } else { 2 },
            behind_since: (!in_sync).then(|| "2026-12-01T10:02:00Z".into()),
            activity: Activity::Playing,
            now_playing: Some(NowPlaying {
                media: "m".into(),
                title: "Morning <tune>".into(),
                kind: "music".into(),
                started_at: "2026-12-01T10:00:00Z".into(),
            }),
            output: OutputState::Playing,
            fetching: None,
            last_error: None,
            clock_offset_ms: Some(-1500),
            free_disk_bytes: Some(12_345_000_000),
            audio_clock: None,
            agent_version: None,
            uptime_secs: None,
            open_alerts: vec![AlertView {
                id: 1,
                kind: AlertKind::Unreachable,
                player_id: id.into(),
                shop: shop.into(),
                opened_at: "2026-12-01T10:00:00Z".into(),
                resolved_at: None,
                acknowledged_by: None,
                text_en: "unreachable".into(),
                text_fr: "injoignable".into(),
            }],
        }
    }

    #[test]
    fn a_row_says_each_cell_in_the_page_language() {
        let p = player("main-1", "main", true, false);
        let en = row(Lang::En, &p, None);
        assert_eq!(en.state, "up");
        assert_eq!(en.sync_text, "2 version(s) behind since 10:02 UTC");
        assert_eq!(en.now_playing, "Morning <tune>");
        assert_eq!(en.last_seen, "1 min ago");
        assert_eq!((en.clock.as_str(), en.disk.as_str()), ("-1.5 s", "12.3 GB"));
        assert_eq!(en.alerts, ["unreachable"]);
        let fr = row(Lang::Fr, &p, None);
        assert_eq!(fr.alerts, ["injoignable"]);
        assert_ne!(fr.sync_text, en.sync_text);
    }

    #[test]
    fn filters_keep_ko_out_of_sync_or_one_shop() {
        let up = player("a", "main", true, true);
        let ko = player("b", "north", false, true);
        let behind = player("c", "main", true, false);
        let parse = |q: &str| Filters::parse(Some(q)).unwrap();
        let kept = |f: &Filters| -> Vec<String> {
            [&up, &ko, &behind]
                .iter()
                .filter(|p| f.keeps(p))
                .map(|p| p.id.clone())
                .collect()
        };
        assert_eq!(kept(&parse("")), ["a", "b", "c"]);
        assert_eq!(kept(&parse("ko=1")), ["b"]);
        assert_eq!(kept(&parse("out_of_sync=on")), ["c"]);
        assert_eq!(kept(&parse("shop=main")), ["a", "c"]);
        assert_eq!(kept(&parse("shop=main&out_of_sync=1")), ["c"]);
        let err = Filters::parse(Some("ko=maybe")).unwrap_err().to_string();
        assert!(err.contains("filter `ko` takes 1"), "{err}");
    }

    fn fleet(players: Vec<PlayerView>) -> FleetView {
        FleetView {
            generated_at: "2026-12-01T10:05:00Z".into(),
            head_version: 3,
            offline_after_secs: 30,
            players,
        }
    }

    /// `n` players of each kind: KO, with an alert, behind, silent, fine,
    /// disabled; over shops `a` and `b`.
    fn mixed(n: usize) -> Vec<PlayerView> {
        let mut out = Vec::new();
        for i in 0..n {
            let shop = if i % 2 == 0 { "b" } else { "a" };
            let mut ko = player(&format!("ko-{i:03}"), shop, false, true);
            ko.open_alerts.clear();
            let alert = player(&format!("alert-{i:03}"), shop, true, true);
            let mut behind = player(&format!("behind-{i:03}"), shop, true, false);
            behind.open_alerts.clear();
            let mut silent = player(&format!("silent-{i:03}"), shop, true, true);
            silent.open_alerts.clear();
            silent.activity = Activity::NotPlaying;
            let mut fine = player(&format!("fine-{i:03}"), shop, true, true);
            fine.open_alerts.clear();
            let mut off = player(&format!("off-{i:03}"), shop, false, false);
            off.open_alerts.clear();
            off.disabled = true;
            out.extend([fine, off, silent, behind, alert, ko]);
        }
        out
    }

    #[test]
    fn a_page_shows_problems_first_by_shop_and_id_and_counts_the_whole_fleet() {
        let view = fleet(mixed(40));
        let all = select(&view, &Filters::default(), 1);
        assert_eq!(
            all.summary,
            Summary {
                players: 240,
                up: 160,
                ko: 40,
                out_of_sync: 40,
                not_playing: 40,
                disabled: 40,
                open_alerts: 40,
            }
        );
        assert_eq!((all.matching, all.page, all.pages), (240, 1, 3));
        assert_eq!(all.players.len(), PAGE_ROWS);
        let ids: Vec<&str> = all.players.iter().map(|p| p.id.as_str()).collect();
        // KO first, shop a (odd numbers) before shop b, then alerts, then behind.
        assert_eq!(&ids[..3], ["ko-001", "ko-003", "ko-005"]);
        assert_eq!(ids[20], "ko-000");
        assert_eq!(&ids[40..42], ["alert-001", "alert-003"]);
        assert_eq!(&ids[80..82], ["behind-001", "behind-003"]);
        let ranks: Vec<u8> = all.players.iter().map(|p| rank(p)).collect();
        assert!(ranks.windows(2).all(|w| w[0] <= w[1]), "{ranks:?}");
        let second = select(&view, &Filters::default(), 2);
        assert_eq!(
            second.players[0].id, "behind-000",
            "page 2 goes on where page 1 stopped"
        );
        let last = select(&view, &Filters::default(), 3);
        assert_eq!(last.players.len(), 40);
        assert_eq!(last.players[0].id, "fine-000");
        assert!(last.players.iter().all(|p| rank(p) == 4));
        // Past the last page: the last page.
        assert_eq!(select(&view, &Filters::default(), 99).page, 3);

        let ko_a = Filters::parse(Some("ko=1&shop=a")).unwrap();
        let s = select(&view, &ko_a, 1);
        assert_eq!((s.matching, s.pages, s.players.len()), (20, 1, 20));
        assert!(s.players.iter().all(|p| p.shop == "a" && !p.up));
        assert_eq!(s.summary, all.summary, "the counts stay the whole fleet's");
        let none = select(&view, &Filters::parse(Some("shop=nowhere")).unwrap(), 1);
        assert_eq!((none.matching, none.page, none.pages), (0, 1, 1));

        let links = pager(&ko_a, &select(&view, &Filters::parse(Some("shop=a")).unwrap(), 2));
        assert_eq!((links.first_row, links.last_row, links.matching), (101, 120, 120));
        assert_eq!(links.prev.as_deref(), Some("ko=1&shop=a&page=1"));
        assert_eq!(links.next, None);
    }

    #[test]
    fn the_page_number_and_the_way_back_keep_the_filters() {
        let w = Wanted::parse(Some("page=3&out_of_sync=1&shop=Le+Mans")).unwrap();
        assert_eq!(w.page, 3);
        assert_eq!(w.filters.query(w.page), "out_of_sync=1&shop=Le+Mans&page=3");
        assert_eq!(Wanted::parse(None).unwrap().page, 1);
        for bad in ["page=0", "page=-1", "page=two"] {
            let err = Wanted::parse(Some(bad)).unwrap_err().to_string();
            assert!(err.contains("`page` takes a page number"), "{bad}: {err}");
        }
        let back = |pairs: &[(&str, &str)]| {
            let fields = Fields::new(
                pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            );
            back_to(&fields, Some("main-1"))
        };
        assert_eq!(back(&[("view", "ko=1&page=2")]), "/fleet?ko=1&page=2");
        assert_eq!(back(&[("view", "page=nope")]), "/fleet");
        assert_eq!(back(&[("view", "https://evil.example/")]), "/fleet?page=1");
        assert_eq!(back(&[]), "/fleet");
        assert_eq!(back(&[("back", "player")]), "/fleet/players/main-1");
    }

    #[test]
    fn sizes_ages_and_offsets_read_shortly() {
        assert_eq!(
            [age(5), age(125), age(7300), age(200_000)],
            ["5 s", "2 min", "2 h", "2 d"]
        );
        assert_eq!(
            [offset(120), offset(-80), offset(2500)],
            ["+120 ms", "-80 ms", "+2.5 s"]
        );
        assert_eq!([bytes(12_000), bytes(450_000_000)], ["12 kB", "450 MB"]);
    }
}
