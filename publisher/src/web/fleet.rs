//! Supervision pages for admins (and read-only for auditors): the dashboard
//! (`/fleet`, one row per player, filters that work without script, live
//! updates by `static/fleet.js` polling `/api/fleet`), a player's page with its
//! recent plays, events and commands, the alerts with their history, exports of
//! plays and events, and the admin's "Sync now" and "Acknowledge". Which role
//! may do what is `auth::POLICY`'s: the write routes are admin-only there.

use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::header;
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
use crate::fleet::{FleetView, PlayerView};

/// The admin's command route (`auth::POLICY` lets only admins post it).
pub const SYNC_PATH: &str = "/fleet/sync";
/// The admin's acknowledgement route (admin-only in `auth::POLICY`).
pub const ACKNOWLEDGE_PATH: &str = "/fleet/alerts/acknowledge";
/// Commands shown on the dashboard (each player's latest among them).
const DASHBOARD_COMMANDS: u32 = 500;
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
    fn parse(query: Option<&str>) -> Result<Filters> {
        let fields = Fields::parse(query.unwrap_or("").as_bytes());
        Ok(Filters {
            ko: flag(&fields, "ko")?,
            out_of_sync: flag(&fields, "out_of_sync")?,
            shop: fields.get("shop"),
        })
    }

    /// Whether `p` passes every filter set.
    pub fn keeps(&self, p: &PlayerView) -> bool {
        (!self.ko || (!p.up && !p.disabled))
            && (!self.out_of_sync || (!p.in_sync && !p.disabled))
            && (self.shop.is_empty() || p.shop == self.shop)
    }
}

/// One dashboard row in the page's language. `static/fleet.js` writes the same
/// cells from `/api/fleet` with the texts the page hands it.
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
    hidden: bool,
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

fn row(lang: Lang, p: &PlayerView, filters: &Filters, command: Option<&CommandView>) -> Row {
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
        hidden: !filters.keeps(p),
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

fn shops_of(view: &FleetView) -> Vec<String> {
    let mut shops: Vec<String> = view.players.iter().map(|p| p.shop.clone()).collect();
    shops.sort();
    shops.dedup();
    shops
}

/// Each player's latest command, from the newest-first list.
fn latest_command<'a>(commands: &'a [CommandView], player: &str) -> Option<&'a CommandView> {
    commands.iter().find(|c| c.player_id == player)
}

async fn dashboard(State(state): State<Arc<WebState>>, ctx: Ctx, RawQuery(query): RawQuery) -> Response {
    let found = async {
        let filters = Filters::parse(query.as_deref())?;
        let now = state.now();
        let view = state.fleet.view(now).await?;
        let commands = state.fleet.commands(None, DASHBOARD_COMMANDS, now).await?;
        Ok::<_, PublisherError>((filters, view, commands))
    }
    .await;
    let (filters, view, commands) = match found {
        Ok(found) => found,
        Err(e) => return state.error_page(&ctx, &e),
    };
    let rows: Vec<Row> = view
        .players
        .iter()
        .map(|p| row(ctx.lang, p, &filters, latest_command(&commands, &p.id)))
        .collect();
    let shown_rows = rows.iter().filter(|r| !r.hidden).count();
    let today = state.now().format("%Y-%m-%d").to_string();
    state.page(
        &ctx,
        "fleet_dashboard.html",
        context! {
            rows,
            shown_rows,
            shops => shops_of(&view),
            filters,
            head_version => view.head_version,
            offline_after_secs => view.offline_after_secs,
            can_command => may(&ctx, SYNC_PATH),
            texts => script_texts(ctx.lang).to_string(),
            today,
        },
    )
}

async fn player_page(State(state): State<Arc<WebState>>, ctx: Ctx, Path(id): Path<String>) -> Response {
    let now = state.now();
    let detail = match state.fleet.player_detail(&id, now).await {
        Ok(detail) => detail,
        Err(e) => return state.error_page(&ctx, &e),
    };
    let lang = ctx.lang;
    let player = row(lang, &detail.player, &Filters::default(), detail.commands.first());
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

/// Where a form sends the user back: only the pages named here.
fn back_to(fields: &Fields, player: Option<&str>) -> String {
    match (fields.get("back").as_str(), player) {
        ("player", Some(id)) => format!(
            "/fleet/players/{}",
            url::form_urlencoded::byte_serialize(id.as_bytes()).collect::<String>()
        ),
        _ => "/fleet".to_string(),
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

async fn api_fleet(State(state): State<Arc<WebState>>) -> Response {
    match state.fleet.view(state.now()).await {
        Ok(view) => Json(view).into_response(),
        Err(e) => api_error(&e),
    }
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
        let en = row(Lang::En, &p, &Filters::default(), None);
        assert_eq!(en.state, "up");
        assert_eq!(en.sync_text, "2 version(s) behind since 10:02 UTC");
        assert_eq!(en.now_playing, "Morning <tune>");
        assert_eq!(en.last_seen, "1 min ago");
        assert_eq!((en.clock.as_str(), en.disk.as_str()), ("-1.5 s", "12.3 GB"));
        assert_eq!(en.alerts, ["unreachable"]);
        let fr = row(Lang::Fr, &p, &Filters::default(), None);
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
