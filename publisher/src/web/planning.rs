//! Marketing's planning pages: the marketing home (draft status, counts, what each
//! shop plays now), the week view of the draft (per shop or for all shops) with
//! conflicts, schedule rules (add, delete, fallback playlist) and the preview
//! answering "what does shop X hear on date D at time T". Every answer comes from
//! the schema's resolver (`ShopSchedule`) run on the draft's unsigned manifest, so
//! the page shows exactly what players would do once it is published.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use chrono::{DateTime, Datelike, NaiveDate, NaiveTime, TimeDelta, Utc};
use minijinja::context;
use serde::{Deserialize, Serialize};
use skycast_schema::schedule::{local_datetime, MusicChoice, MusicSpan, FALLBACK_ALL_MUSIC};
use skycast_schema::shop_target::ALL_SHOPS;
use skycast_schema::{
    is_plain_name, DateRange, DayRange, History, Manifest, MessageSource, Next, ScheduleRule, ShopSchedule,
    ShopTarget, TimeOfDay, TimeWindow, Weekday,
};

use super::ads::shop_tags;
use super::form::{bad, shown, Fields};
use super::{Ctx, WebState};
use crate::error::{PublisherError, Result};
use crate::workspace::Draft;

/// Priorities marketing may give a rule: wide enough for any ordering people
/// need, narrow enough to read at a glance.
pub const PRIORITY_RANGE: std::ops::RangeInclusive<i32> = -1000..=1000;

pub(super) fn routes() -> Router<Arc<WebState>> {
    Router::new()
        .route("/marketing", get(home))
        .route("/marketing/planning", get(planning_page))
        .route("/marketing/planning/rules", post(add_rule))
        .route("/marketing/planning/rules/{index}/delete", post(delete_rule))
        .route("/marketing/planning/fallback", post(set_fallback))
        .route("/marketing/preview", get(preview_page))
}

// ---- Shared helpers (also used by the shops pages) ----

pub(super) fn parse_date(field: &str, text: &str) -> Result<NaiveDate> {
    let ok_shape = text.len() == 10 && text.as_bytes()[4] == b'-' && text.as_bytes()[7] == b'-';
    ok_shape
        .then(|| NaiveDate::parse_from_str(text, "%Y-%m-%d").ok())
        .flatten()
        .ok_or_else(|| {
            bad(format!(
                "field `{field}`: `{}` is not a date: write it as YYYY-MM-DD, for example 2026-12-24",
                shown(text)
            ))
        })
}

pub(super) fn parse_time(field: &str, text: &str) -> Result<TimeOfDay> {
    text.parse::<TimeOfDay>().map_err(|_| {
        bad(format!(
            "field `{field}`: `{}` is not a time: write it as HH:MM, for example 09:30",
            shown(text)
        ))
    })
}

/// `HH:MM` of an instant in the schedule's zone; `24:00` for the midnight that
/// ends `day`.
fn hhmm(s: &ShopSchedule<'_>, at: DateTime<Utc>, day: NaiveDate) -> String {
    let local = s.local_datetime(at);
    if local.date() > day && local.time() == NaiveTime::MIN {
        "24:00".to_string()
    } else {
        local.format("%H:%M").to_string()
    }
}

fn weekday_key(date: NaiveDate) -> &'static str {
    Weekday::of(date).key()
}

fn monday_of(date: NaiveDate) -> NaiveDate {
    date - TimeDelta::days(i64::from(date.weekday().num_days_from_monday()))
}

fn rule_shops_text(shops: &[ShopTarget]) -> Vec<Target> {
    shops
        .iter()
        .map(|target| Target {
            kind: target.kind(),
            name: match target {
                ShopTarget::All => String::new(),
                ShopTarget::Tag(name) | ShopTarget::Shop(name) => name.clone(),
            },
        })
        .collect()
}

#[derive(Serialize)]
struct Target {
    /// `all`, `tag` or `shop`.
    kind: &'static str,
    name: String,
}

// ---- Marketing home ----

#[derive(Serialize)]
struct NowPlaying {
    shop: String,
    playlist: Option<String>,
    /// No rule and no fallback playlist: all the music of the version plays.
    all_music: bool,
    rule: Option<usize>,
    reopens: Option<String>,
}

#[derive(Serialize)]
struct HeadInfo {
    version: u64,
    author: String,
    time: String,
}

struct HomeData {
    differs: bool,
    draft: Draft,
    media_count: usize,
    head: Option<Manifest>,
}

async fn home(State(state): State<Arc<WebState>>, ctx: Ctx) -> Response {
    let loaded = state
        .with_workspace(|ws| {
            Ok(HomeData {
                differs: ws.draft_differs_from_head()?,
                draft: ws.draft()?,
                media_count: ws.library(None)?.len(),
                head: ws.head_manifest()?,
            })
        })
        .await;
    let data = match loaded {
        Ok(d) => d,
        Err(e) => return state.error_page(&ctx, &e),
    };
    let now = state.now();
    let tz = data
        .head
        .as_ref()
        .map_or(data.draft.timezone.as_str(), |m| m.timezone.as_str());
    let local = |t: DateTime<Utc>| {
        local_datetime(tz, t).map_or_else(
            |_| t.format("%Y-%m-%d %H:%M UTC").to_string(),
            |l| l.format("%Y-%m-%d %H:%M").to_string(),
        )
    };
    let mut playing = Vec::new();
    if let Some(m) = &data.head {
        for name in m.program.shops.keys() {
            let Ok(s) = ShopSchedule::new(m, name) else {
                continue;
            };
            let choice = s.music_at(now);
            playing.push(NowPlaying {
                shop: name.clone(),
                all_music: choice.as_ref().is_some_and(|c| c.playlist == FALLBACK_ALL_MUSIC),
                rule: choice.as_ref().and_then(|c| c.rule),
                playlist: choice.map(|c| c.playlist),
                reopens: s.next_opening(now).map(&local),
            });
        }
    }
    let head = data.head.as_ref().map(|m| HeadInfo {
        version: m.version(),
        author: m.published_by.clone(),
        time: local(m.published_at.0),
    });
    let p = &data.draft.program;
    state.page(
        &ctx,
        "marketing_home.html",
        context! {
            differs => data.differs,
            base_version => data.draft.base_version,
            head => head,
            counts => context! {
                media => data.media_count,
                playlists => p.playlists.len(),
                rules => p.schedule.len(),
                shops => p.shops.len(),
            },
            playing => playing,
            now_local => local(now),
            timezone => tz,
        },
    )
}

// ---- Planning: week view ----

#[derive(Deserialize, Default)]
struct PlanningQuery {
    #[serde(default)]
    shop: Option<String>,
    #[serde(default)]
    week: Option<String>,
}

/// One playlist (or a closed stretch) in a cell of the week view.
#[derive(Serialize, Clone)]
struct Slot {
    /// `None` while closed.
    playlist: Option<String>,
    /// Index in the schedule of the rule that chose it; `None` for the fallback.
    rule: Option<usize>,
    fallback: bool,
    /// Playlists of the rules that tie with the winner: a conflict.
    conflict_with: Vec<String>,
    /// `HH:MM–HH:MM` when the slot covers only part of the cell.
    part: Option<String>,
}

#[derive(Serialize)]
struct Cell {
    date: String,
    /// `open`, `closed`, `conflict`, or `none` (an hour skipped by a DST change).
    state: &'static str,
    slots: Vec<Slot>,
}

#[derive(Serialize)]
struct Row {
    hour: String,
    cells: Vec<Cell>,
}

#[derive(Serialize)]
struct DayHead {
    date: String,
    key: &'static str,
    label: String,
}

#[derive(Serialize)]
struct ShopWeek {
    shop: String,
    days: Vec<Cell>,
}

#[derive(Serialize)]
struct ConflictView {
    shop: String,
    day: &'static str,
    date: String,
    from: String,
    to: String,
    priority: i32,
    rules: Vec<RuleRef>,
}

#[derive(Serialize)]
struct RuleRef {
    index: usize,
    number: usize,
    playlist: String,
}

#[derive(Serialize)]
struct RuleView {
    index: usize,
    number: usize,
    playlist: String,
    shops: Vec<Target>,
    /// Day ranges as weekday keys (`first`, `last`); empty = every day.
    days: Vec<(String, String)>,
    time: Option<String>,
    dates: Option<(String, String)>,
    priority: i32,
    /// Identifies the rule's content, so a delete never removes a rule that
    /// another editor put at the same position meanwhile.
    fp: String,
}

/// What the add-rule form holds (the draft's defaults, or what was submitted).
#[derive(Serialize, Default, Clone)]
struct RuleForm {
    playlist: String,
    shops: Vec<String>,
    days: Vec<String>,
    from_time: String,
    to_time: String,
    date_from: String,
    date_to: String,
    priority: String,
}

fn rule_fingerprint(rule: &ScheduleRule) -> String {
    let text = serde_json::to_string(rule).unwrap_or_default();
    blake3::hash(text.as_bytes()).to_hex()[..16].to_string()
}

fn rule_view(index: usize, rule: &ScheduleRule) -> RuleView {
    RuleView {
        index,
        number: index + 1,
        playlist: rule.playlist.clone(),
        shops: rule_shops_text(&rule.shops),
        days: rule
            .days
            .iter()
            .flatten()
            .map(|r| (r.first.to_string(), r.last.to_string()))
            .collect(),
        time: rule.time.map(|w| w.to_string().replacen('-', "–", 1)),
        dates: rule.dates.map(|d| (d.first.to_string(), d.last.to_string())),
        priority: rule.priority,
        fp: rule_fingerprint(rule),
    }
}

fn slot_of(choice: &Option<MusicChoice>, manifest: &Manifest, part: Option<String>) -> Slot {
    let schedule = &manifest.program.schedule;
    match choice {
        None => Slot {
            playlist: None,
            rule: None,
            fallback: false,
            conflict_with: Vec::new(),
            part,
        },
        Some(c) => Slot {
            playlist: Some(c.playlist.clone()),
            rule: c.rule,
            fallback: c.rule.is_none(),
            conflict_with: c
                .tied_rules
                .iter()
                .filter_map(|i| schedule.get(*i).map(|r| r.playlist.clone()))
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect(),
            part,
        },
    }
}

/// The slots of `[from, to)`: each span overlapping it, with its times when it
/// covers only part of the range.
fn cell_of(
    s: &ShopSchedule<'_>,
    manifest: &Manifest,
    spans: &[MusicSpan],
    day: NaiveDate,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Cell {
    let mut slots = Vec::new();
    if from < to {
        for span in spans.iter().filter(|sp| sp.start < to && from < sp.end) {
            let (a, b) = (span.start.max(from), span.end.min(to));
            let part = (a > from || b < to).then(|| format!("{}–{}", hhmm(s, a, day), hhmm(s, b, day)));
            slots.push(slot_of(&span.choice, manifest, part));
        }
    }
    let state = if slots.is_empty() {
        "none"
    } else if slots.iter().any(|sl| !sl.conflict_with.is_empty()) {
        "conflict"
    } else if slots.iter().all(|sl| sl.playlist.is_none()) {
        "closed"
    } else {
        "open"
    };
    // A closed stretch inside an open hour is implied by the open part's times.
    if state != "closed" {
        slots.retain(|sl| sl.playlist.is_some());
    }
    Cell {
        date: day.to_string(),
        state,
        slots,
    }
}

/// The hourly grid of one shop's week: rows from an hour before its first
/// opening to an hour after its last closing (all day when it never closes).
fn shop_grid(s: &ShopSchedule<'_>, manifest: &Manifest, monday: NaiveDate) -> Vec<Row> {
    let days: Vec<NaiveDate> = (0..7).map(|i| monday + TimeDelta::days(i)).collect();
    let from = s.instant_of(monday, NaiveTime::MIN);
    let to = s.instant_of(monday + TimeDelta::days(7), NaiveTime::MIN);
    let spans = s.music_timeline(from, to);
    let hour_bounds = |day: NaiveDate, h: u32| {
        let start = s.instant_of(day, NaiveTime::from_hms_opt(h, 0, 0).unwrap_or(NaiveTime::MIN));
        let end = match NaiveTime::from_hms_opt(h + 1, 0, 0) {
            Some(t) => s.instant_of(day, t),
            None => s.instant_of(day + TimeDelta::days(1), NaiveTime::MIN),
        };
        (start, end)
    };
    let cells: Vec<Vec<Cell>> = (0..24u32)
        .map(|h| {
            days.iter()
                .map(|d| {
                    let (a, b) = hour_bounds(*d, h);
                    cell_of(s, manifest, &spans, *d, a, b)
                })
                .collect()
        })
        .collect();
    let open_hours: Vec<usize> = cells
        .iter()
        .enumerate()
        .filter(|(_, row)| row.iter().any(|c| matches!(c.state, "open" | "conflict")))
        .map(|(h, _)| h)
        .collect();
    let (first, last) = match (open_hours.first(), open_hours.last()) {
        (Some(a), Some(b)) => (a.saturating_sub(1), (b + 1).min(23)),
        _ => (8, 19),
    };
    cells
        .into_iter()
        .enumerate()
        .filter(|(h, _)| (first..=last).contains(h))
        .map(|(h, cells)| Row {
            hour: format!("{h:02}:00"),
            cells,
        })
        .collect()
}

/// One cell per day of a shop's week, listing the day's stretches.
fn shop_days(s: &ShopSchedule<'_>, manifest: &Manifest, monday: NaiveDate) -> Vec<Cell> {
    let from = s.instant_of(monday, NaiveTime::MIN);
    let to = s.instant_of(monday + TimeDelta::days(7), NaiveTime::MIN);
    let spans = s.music_timeline(from, to);
    (0..7)
        .map(|i| {
            let day = monday + TimeDelta::days(i);
            let a = s.instant_of(day, NaiveTime::MIN);
            let b = s.instant_of(day + TimeDelta::days(1), NaiveTime::MIN);
            let mut cell = cell_of(s, manifest, &spans, day, a, b);
            // A whole-day stretch has no times: name them anyway, "00:00–24:00".
            for slot in &mut cell.slots {
                if slot.part.is_none() {
                    slot.part = Some(format!("{}–{}", hhmm(s, a, day), hhmm(s, b, day)));
                }
            }
            cell
        })
        .collect()
}

fn conflicts_of(s: &ShopSchedule<'_>, manifest: &Manifest, monday: NaiveDate) -> Vec<ConflictView> {
    let from = s.instant_of(monday, NaiveTime::MIN);
    let to = s.instant_of(monday + TimeDelta::days(7), NaiveTime::MIN);
    let schedule = &manifest.program.schedule;
    s.conflicts(from, to)
        .into_iter()
        .map(|c| {
            let day = s.local_date(c.start);
            ConflictView {
                shop: s.shop_name().to_string(),
                day: weekday_key(day),
                date: day.to_string(),
                from: hhmm(s, c.start, day),
                to: hhmm(s, c.end, day),
                priority: c.priority,
                rules: c
                    .rules
                    .iter()
                    .filter_map(|i| {
                        schedule.get(*i).map(|r| RuleRef {
                            index: *i,
                            number: i + 1,
                            playlist: r.playlist.clone(),
                        })
                    })
                    .collect(),
            }
        })
        .collect()
}

struct PlanningData {
    draft: Draft,
    manifest: Manifest,
}

async fn load_draft(state: &Arc<WebState>, ctx: &Ctx) -> Result<PlanningData> {
    let by = ctx.username().to_string();
    let now = state.now();
    state
        .with_workspace(move |ws| {
            let draft = ws.draft()?;
            let manifest = ws.draft_manifest(&draft, &by, now)?;
            Ok(PlanningData { draft, manifest })
        })
        .await
}

async fn planning_page(
    State(state): State<Arc<WebState>>,
    ctx: Ctx,
    Query(q): Query<PlanningQuery>,
) -> Response {
    render_planning(&state, &ctx, q, RuleForm::default(), None, StatusCode::OK).await
}

async fn render_planning(
    state: &Arc<WebState>,
    ctx: &Ctx,
    q: PlanningQuery,
    form: RuleForm,
    error: Option<String>,
    status: StatusCode,
) -> Response {
    let data = match load_draft(state, ctx).await {
        Ok(d) => d,
        Err(e) => return state.error_page(ctx, &e),
    };
    let m = &data.manifest;
    let now = state.now();
    let today = local_datetime(&m.timezone, now).map_or(now.date_naive(), |l| l.date());
    let mut notice = None;
    let week_date = match q.week.as_deref().filter(|w| !w.is_empty()) {
        None => today,
        Some(w) => parse_date("week", w).unwrap_or_else(|e| {
            notice = Some(e.public_message());
            today
        }),
    };
    let monday = monday_of(week_date);
    let shop = q
        .shop
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| ALL_SHOPS.to_string());
    let shop = if shop == ALL_SHOPS || m.program.shops.contains_key(&shop) {
        shop
    } else {
        notice = Some(format!(
            "field `shop`: no shop is named `{}`: showing all shops",
            shown(&shop)
        ));
        ALL_SHOPS.to_string()
    };

    let days: Vec<DayHead> = (0..7)
        .map(|i| {
            let d = monday + TimeDelta::days(i);
            DayHead {
                date: d.to_string(),
                key: weekday_key(d),
                label: d.format("%d/%m").to_string(),
            }
        })
        .collect();
    let mut grid = Vec::new();
    let mut shop_weeks = Vec::new();
    let mut conflicts = Vec::new();
    for name in m.program.shops.keys() {
        if shop != ALL_SHOPS && *name != shop {
            continue;
        }
        let Ok(s) = ShopSchedule::new(m, name) else {
            continue;
        };
        if shop == ALL_SHOPS {
            shop_weeks.push(ShopWeek {
                shop: name.clone(),
                days: shop_days(&s, m, monday),
            });
        } else {
            grid = shop_grid(&s, m, monday);
        }
        conflicts.extend(conflicts_of(&s, m, monday));
    }

    let program = &data.draft.program;
    let rules: Vec<RuleView> = program
        .schedule
        .iter()
        .enumerate()
        .map(|(i, r)| rule_view(i, r))
        .collect();
    let tags = shop_tags(program);
    let mut form = form;
    if form.priority.is_empty() {
        form.priority = "0".to_string();
    }
    let local_now = local_datetime(&m.timezone, now).ok();
    let preview_date = if (monday..monday + TimeDelta::days(7)).contains(&today) {
        today
    } else {
        monday
    };
    state.page_with_status(
        status,
        ctx,
        "planning_week.html",
        context! {
            shop => shop,
            shops => program.shops.keys().collect::<Vec<_>>(),
            tags => tags,
            playlists => program.playlists.keys().collect::<Vec<_>>(),
            week => monday.to_string(),
            prev_week => (monday - TimeDelta::days(7)).to_string(),
            next_week => (monday + TimeDelta::days(7)).to_string(),
            this_week => monday_of(today).to_string(),
            days => days,
            grid => grid,
            shop_weeks => shop_weeks,
            conflicts => conflicts,
            rules => rules,
            form => form,
            error => error,
            notice => notice,
            fallback => program.playback.fallback_playlist,
            timezone => m.timezone,
            base_version => data.draft.base_version,
            preview_date => preview_date.to_string(),
            preview_time => local_now.map_or_else(|| "12:00".to_string(), |l| l.format("%H:%M").to_string()),
            weekdays => Weekday::ALL.map(Weekday::key),
        },
    )
}

// ---- Planning: rules ----

/// Turns the add-rule form into a rule, naming the field of the first mistake.
fn rule_from_form(
    form: &RuleForm,
    program: &skycast_schema::Program<skycast_schema::MediaId>,
) -> Result<ScheduleRule> {
    if form.playlist.is_empty() {
        return Err(bad("field `playlist`: choose a playlist"));
    }
    if !program.playlists.contains_key(&form.playlist) {
        return Err(bad(format!(
            "field `playlist`: no playlist is named `{}`: create it on the Playlists page first",
            shown(&form.playlist)
        )));
    }
    if form.shops.is_empty() {
        return Err(bad("field `shops`: tick at least one shop, a tag, or all shops"));
    }
    let mut shops: Vec<ShopTarget> = Vec::new();
    for text in &form.shops {
        let target = text
            .parse::<ShopTarget>()
            .ok()
            .filter(|t| program.knows_target(t))
            .ok_or_else(|| {
                bad(format!(
                    "field `shops`: `{}` is neither a shop, a `tag:NAME` of a shop, nor `all`",
                    shown(text)
                ))
            })?;
        if !shops.contains(&target) {
            shops.push(target);
        }
    }
    // "All shops" makes any other target redundant.
    let shops = ShopTarget::normalized(shops);
    let mut days = BTreeSet::new();
    for d in &form.days {
        let day: Weekday = d.parse().map_err(|_| {
            bad(format!(
                "field `days`: `{}` is not a weekday: use mon … sun",
                shown(d)
            ))
        })?;
        days.insert(day);
    }
    let days = day_ranges(&days);
    let time = match (form.from_time.as_str(), form.to_time.as_str()) {
        ("", "") => None,
        (_, "") => {
            return Err(bad(
                "field `to_time`: give both times, or neither for the whole day",
            ))
        }
        ("", _) => {
            return Err(bad(
                "field `from_time`: give both times, or neither for the whole day",
            ))
        }
        (a, b) => {
            let start = parse_time("from_time", a)?;
            let end = parse_time("to_time", b)?;
            if start == end {
                return Err(bad(
                    "field `to_time`: must differ from `from_time` (leave both empty for the whole day)",
                ));
            }
            Some(TimeWindow { start, end })
        }
    };
    let dates = match (form.date_from.as_str(), form.date_to.as_str()) {
        ("", "") => None,
        (_, "") => return Err(bad("field `date_to`: give both dates, or neither for every date")),
        ("", _) => {
            return Err(bad(
                "field `date_from`: give both dates, or neither for every date",
            ))
        }
        (a, b) => {
            let first = parse_date("date_from", a)?;
            let last = parse_date("date_to", b)?;
            if last < first {
                return Err(bad(format!(
                    "field `date_to`: {last} is before `date_from` {first}: a date range ends on or after its start"
                )));
            }
            Some(DateRange { first, last })
        }
    };
    let priority = if form.priority.is_empty() {
        0
    } else {
        form.priority
            .parse::<i32>()
            .ok()
            .filter(|p| PRIORITY_RANGE.contains(p))
            .ok_or_else(|| {
                bad(format!(
                    "field `priority`: `{}` is not a whole number from {} to {}",
                    shown(&form.priority),
                    PRIORITY_RANGE.start(),
                    PRIORITY_RANGE.end()
                ))
            })?
    };
    Ok(ScheduleRule {
        playlist: form.playlist.clone(),
        shops,
        dates,
        days,
        time,
        priority,
    })
}

/// Ticked weekdays as the fewest ranges (`mon-fri`, `sun`); `None` when every
/// day (or none) is ticked: the rule then applies every day.
fn day_ranges(days: &BTreeSet<Weekday>) -> Option<Vec<DayRange>> {
    if days.is_empty() || days.len() == 7 {
        return None;
    }
    let mut out: Vec<DayRange> = Vec::new();
    for day in Weekday::ALL.iter().filter(|d| days.contains(d)) {
        match out.last_mut() {
            Some(r)
                if Weekday::ALL.iter().position(|d| d == &r.last).map(|i| i + 1)
                    == Weekday::ALL.iter().position(|d| d == day) =>
            {
                r.last = *day;
            }
            _ => out.push(DayRange {
                first: *day,
                last: *day,
            }),
        }
    }
    Some(out)
}

/// Where the planning page goes back to after a form: the view it was sent from.
fn back_to_planning(fields: &Fields) -> String {
    let shop = fields.get("view_shop");
    let week = fields.get("view_week");
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    if shop == ALL_SHOPS || is_plain_name(&shop) {
        query.append_pair("shop", &shop);
    }
    if parse_date("view_week", &week).is_ok() {
        query.append_pair("week", &week);
    }
    let query = query.finish();
    if query.is_empty() {
        "/marketing/planning".to_string()
    } else {
        format!("/marketing/planning?{query}")
    }
}

async fn add_rule(State(state): State<Arc<WebState>>, ctx: Ctx, body: Bytes) -> Response {
    let fields = Fields::parse(&body);
    let form = RuleForm {
        playlist: fields.get("playlist"),
        shops: fields.all("shops"),
        days: fields.all("days"),
        from_time: fields.get("from_time"),
        to_time: fields.get("to_time"),
        date_from: fields.get("date_from"),
        date_to: fields.get("date_to"),
        priority: fields.get("priority"),
    };
    let by = ctx.username().to_string();
    let now = state.now();
    let submitted = form.clone();
    let result = state
        .with_workspace(move |ws| {
            let draft = ws.edit_draft(&by, now, |d| {
                let rule = rule_from_form(&submitted, &d.program)?;
                d.program.schedule.push(rule);
                Ok(())
            })?;
            Ok(draft.program.schedule.len())
        })
        .await;
    let back = back_to_planning(&fields);
    match result {
        Ok(n) => {
            let text = skycast_web::text(ctx.lang, "planning.rule_added").replace("{n}", &n.to_string());
            state.done(&ctx, Ok(text), &back).await
        }
        Err(e) if e.status() == StatusCode::BAD_REQUEST => {
            let q = PlanningQuery {
                shop: Some(fields.get("view_shop")),
                week: Some(fields.get("view_week")),
            };
            render_planning(
                &state,
                &ctx,
                q,
                form,
                Some(e.public_message()),
                StatusCode::BAD_REQUEST,
            )
            .await
        }
        Err(e) => state.done(&ctx, Err(e), &back).await,
    }
}

async fn delete_rule(
    State(state): State<Arc<WebState>>,
    ctx: Ctx,
    Path(index): Path<usize>,
    body: Bytes,
) -> Response {
    let fields = Fields::parse(&body);
    let fp = fields.get("fp");
    let by = ctx.username().to_string();
    let now = state.now();
    let result = state.with_workspace(move |ws| {
        let mut removed = None;
        ws.edit_draft(&by, now, |d| {
            let rule = d.program.schedule.get(index).ok_or_else(|| {
                PublisherError::NotFound(format!("rule {} is not in the draft: reload the planning", index + 1))
            })?;
            if !fp.is_empty() && rule_fingerprint(rule) != fp {
                return Err(PublisherError::Conflict(format!(
                    "rule {} changed since the page was loaded (someone else edited the planning): reload and try again",
                    index + 1
                )));
            }
            removed = Some(d.program.schedule.remove(index));
            Ok(())
        })?;
        Ok(removed.map(|r| r.playlist).unwrap_or_default())
    })
    .await;
    let text = result.map(|playlist| {
        skycast_web::text(ctx.lang, "planning.rule_deleted")
            .replace("{n}", &(index + 1).to_string())
            .replace("{playlist}", &playlist)
    });
    state.done(&ctx, text, &back_to_planning(&fields)).await
}

async fn set_fallback(State(state): State<Arc<WebState>>, ctx: Ctx, body: Bytes) -> Response {
    let fields = Fields::parse(&body);
    let name = fields.get("fallback_playlist");
    let by = ctx.username().to_string();
    let now = state.now();
    let chosen = name.clone();
    let result = state
        .with_workspace(move |ws| {
            ws.edit_draft(&by, now, |d| {
                if !chosen.is_empty() && !d.program.playlists.contains_key(&chosen) {
                    return Err(bad(format!(
                        "field `fallback_playlist`: no playlist is named `{}`",
                        shown(&chosen)
                    )));
                }
                d.program.playback.fallback_playlist = (!chosen.is_empty()).then_some(chosen);
                Ok(())
            })
            .map(|_| ())
        })
        .await;
    let text = result.map(|()| {
        if name.is_empty() {
            skycast_web::text(ctx.lang, "planning.fallback_cleared")
        } else {
            skycast_web::text(ctx.lang, "planning.fallback_set").replace("{playlist}", &name)
        }
    });
    state.done(&ctx, text, &back_to_planning(&fields)).await
}

// ---- Preview ----

#[derive(Deserialize, Default)]
struct PreviewQuery {
    #[serde(default)]
    shop: Option<String>,
    #[serde(default)]
    date: Option<String>,
    #[serde(default)]
    time: Option<String>,
}

#[derive(Serialize)]
struct MessageView {
    title: String,
    /// `ad_at`, `closing`, `interrupt`, `ad_every`.
    source: &'static str,
    /// The planned time (fixed-time ad), the closing time, or the interrupt id.
    detail: String,
    cuts: bool,
}

#[derive(Serialize)]
struct PreviewResult {
    shop: String,
    date: String,
    day: &'static str,
    time: String,
    open: bool,
    playlist: Option<String>,
    /// The rule that chose the playlist; `None` for the fallback.
    rule: Option<RuleView>,
    /// `configured` (playback.fallback_playlist) or `all_music` when no rule applies.
    fallback: Option<&'static str>,
    conflict_with: Vec<RuleRef>,
    tracks: Vec<TrackView>,
    messages: Vec<MessageView>,
    /// What a player starting then would play first.
    first: Option<String>,
    every_tracks: Vec<MessageView>,
    fixed_times: Vec<MessageView>,
    closes: Option<String>,
    reopens: Option<String>,
}

#[derive(Serialize)]
struct TrackView {
    title: String,
    artist: Option<String>,
    duration_ms: u64,
}

fn title_of(m: &Manifest, id: &skycast_schema::MediaId) -> String {
    m.media_entry(id).map_or_else(|| id.short(), |e| e.title.clone())
}

fn preview(m: &Manifest, shop: &str, date: NaiveDate, time: TimeOfDay) -> Result<PreviewResult> {
    let s = ShopSchedule::new(m, shop).map_err(|_| {
        bad(format!(
            "field `shop`: no shop is named `{}` in the draft",
            shown(shop)
        ))
    })?;
    let at = s.instant_of(date, time.0);
    let history = History::new(0);
    let local = |t: DateTime<Utc>| s.local_datetime(t).format("%Y-%m-%d %H:%M").to_string();
    let choice = s.music_at(at);
    let items = s.playlist_at(at).map(|(_, items)| items).unwrap_or_default();
    let schedule = &m.program.schedule;
    let messages = s
        .due_messages(at, &history)
        .into_iter()
        .map(|msg| {
            let (source, detail) = match &msg.source {
                MessageSource::FixedTime { planned, .. } => ("ad_at", local(*planned)),
                MessageSource::Closing { closes } => ("closing", local(*closes)),
                MessageSource::Interrupt { id } => ("interrupt", id.clone()),
                MessageSource::EveryTracks { .. } => ("ad_every", String::new()),
            };
            MessageView {
                title: title_of(m, &msg.media),
                source,
                detail,
                cuts: msg.cuts(),
            }
        })
        .collect();
    let first = match s.next_at_boundary(at, &history) {
        Next::Message(msg) => Some(title_of(m, &msg.media)),
        Next::Music(pick) => Some(title_of(m, &pick.media)),
        Next::Closed { .. } => None,
    };
    let open = choice.is_some();
    let mut every_tracks = Vec::new();
    let mut fixed_times = Vec::new();
    for ad in &m.program.ads {
        if !s.targets_shop(&ad.shops) || ad.dates.is_some_and(|d| !d.contains(date)) {
            continue;
        }
        if let Some(n) = ad.every_tracks {
            every_tracks.push(MessageView {
                title: title_of(m, &ad.media),
                source: "ad_every",
                detail: n.to_string(),
                cuts: false,
            });
        }
        for t in ad.at.iter().flatten() {
            fixed_times.push(MessageView {
                title: title_of(m, &ad.media),
                source: "ad_at",
                detail: t.to_string(),
                cuts: false,
            });
        }
    }
    fixed_times.sort_by(|a, b| a.detail.cmp(&b.detail));
    Ok(PreviewResult {
        shop: shop.to_string(),
        date: date.to_string(),
        day: weekday_key(date),
        time: time.to_string(),
        open,
        fallback: choice.as_ref().filter(|c| c.rule.is_none()).map(|c| {
            if c.playlist == FALLBACK_ALL_MUSIC {
                "all_music"
            } else {
                "configured"
            }
        }),
        rule: choice
            .as_ref()
            .and_then(|c| c.rule)
            .and_then(|i| schedule.get(i).map(|r| rule_view(i, r))),
        conflict_with: choice
            .as_ref()
            .map(|c| {
                c.tied_rules
                    .iter()
                    .filter_map(|i| {
                        schedule.get(*i).map(|r| RuleRef {
                            index: *i,
                            number: i + 1,
                            playlist: r.playlist.clone(),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default(),
        playlist: choice.map(|c| c.playlist),
        tracks: items
            .iter()
            .map(|id| {
                let entry = m.media_entry(id);
                TrackView {
                    title: title_of(m, id),
                    artist: entry.and_then(|e| e.artist.clone()),
                    duration_ms: entry.map_or(0, |e| e.duration_ms),
                }
            })
            .collect(),
        messages,
        first,
        every_tracks,
        fixed_times,
        closes: s.open_period(at).map(|p| local(p.closes)),
        reopens: if open { None } else { s.next_opening(at).map(local) },
    })
}

async fn preview_page(
    State(state): State<Arc<WebState>>,
    ctx: Ctx,
    Query(q): Query<PreviewQuery>,
) -> Response {
    let data = match load_draft(&state, &ctx).await {
        Ok(d) => d,
        Err(e) => return state.error_page(&ctx, &e),
    };
    let m = &data.manifest;
    let now = state.now();
    let local_now = local_datetime(&m.timezone, now).unwrap_or_else(|_| now.naive_utc());
    let shop = q
        .shop
        .filter(|s| !s.is_empty())
        .or_else(|| m.program.shops.keys().next().cloned())
        .unwrap_or_default();
    let date = q
        .date
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| local_now.date().to_string());
    let time = q
        .time
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| local_now.format("%H:%M").to_string());
    let outcome = if m.program.shops.is_empty() {
        Err(bad(
            "the draft has no shop yet: create one on the Shops page first",
        ))
    } else {
        parse_date("date", &date)
            .and_then(|d| Ok((d, parse_time("time", &time)?)))
            .and_then(|(d, t)| preview(m, &shop, d, t))
    };
    let (result, error, status) = match outcome {
        Ok(r) => (Some(r), None, StatusCode::OK),
        Err(e) => (None, Some(e.public_message()), e.status()),
    };
    state.page_with_status(
        status,
        &ctx,
        "planning_preview.html",
        context! {
            shops => m.program.shops.keys().collect::<Vec<_>>(),
            shop => shop,
            date => date,
            time => time,
            result => result,
            error => error,
            timezone => m.timezone,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticked_days_become_the_fewest_ranges() {
        use Weekday::*;
        let cases: [(&[Weekday], Option<&str>); 5] = [
            (&[], None),
            (&[Mon, Tue, Wed, Thu, Fri, Sat, Sun], None),
            (&[Mon, Tue, Wed, Thu, Fri], Some("mon-fri")),
            (&[Mon, Wed, Thu, Sun], Some("mon,wed-thu,sun")),
            (&[Sat], Some("sat")),
        ];
        for (days, expected) in cases {
            let set: BTreeSet<Weekday> = days.iter().copied().collect();
            let got =
                day_ranges(&set).map(|r| r.iter().map(ToString::to_string).collect::<Vec<_>>().join(","));
            assert_eq!(got.as_deref(), expected, "{days:?}");
        }
    }

    #[test]
    fn dates_and_times_must_have_their_exact_shape() {
        assert!(parse_date("date_from", "2026-12-01").is_ok());
        for bad in ["2026-2-1", "01/12/2026", "2026-13-01", "", "2026-12-01'; --"] {
            let e = parse_date("date_from", bad).unwrap_err().to_string();
            assert!(e.contains("field `date_from`"), "{bad}: {e}");
        }
        assert!(parse_time("from_time", "09:30").is_ok());
        for bad in ["9:30", "24:00", "09h30"] {
            let e = parse_time("from_time", bad).unwrap_err().to_string();
            assert!(e.contains("field `from_time`"), "{bad}: {e}");
        }
    }
}
