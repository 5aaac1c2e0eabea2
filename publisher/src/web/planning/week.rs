//! The week view of the draft, per shop or for all shops, with its conflicts.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, NaiveDate, NaiveTime, TimeDelta, Utc};
use minijinja::context;
use serde::{Deserialize, Serialize};
use skycast_schema::schedule::{local_datetime, MusicChoice, MusicSpan};
use skycast_schema::shop_target::ALL_SHOPS;
use skycast_schema::{Manifest, ScheduleRule, ShopSchedule, Weekday};

use crate::error::Result;
use crate::web::ads::shop_tags;
use crate::web::form::shown;
use crate::web::{Ctx, WebState};
use crate::workspace::Draft;

use super::*;

#[derive(Deserialize, Default)]
pub(super) struct PlanningQuery {
    #[serde(default)]
    pub(super) shop: Option<String>,
    #[serde(default)]
    pub(super) week: Option<String>,
}

/// One playlist (or a closed stretch) in a cell of the week view.
#[derive(Serialize, Clone)]
pub(super) struct Slot {
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
pub(super) struct Cell {
    date: String,
    /// `open`, `closed`, `conflict`, or `none` (an hour skipped by a DST change).
    state: &'static str,
    slots: Vec<Slot>,
}

#[derive(Serialize)]
pub(super) struct Row {
    hour: String,
    cells: Vec<Cell>,
}

#[derive(Serialize)]
pub(super) struct DayHead {
    date: String,
    key: &'static str,
    label: String,
}

#[derive(Serialize)]
pub(super) struct ShopWeek {
    shop: String,
    days: Vec<Cell>,
}

#[derive(Serialize)]
pub(super) struct ConflictView {
    shop: String,
    day: &'static str,
    date: String,
    from: String,
    to: String,
    priority: i32,
    rules: Vec<RuleRef>,
}

#[derive(Serialize)]
pub(super) struct RuleRef {
    pub(super) index: usize,
    pub(super) number: usize,
    pub(super) playlist: String,
}

#[derive(Serialize)]
pub(super) struct RuleView {
    pub(super) index: usize,
    pub(super) number: usize,
    pub(super) playlist: String,
    pub(super) shops: Vec<Target>,
    /// Day ranges as weekday keys (`first`, `last`); empty = every day.
    pub(super) days: Vec<(String, String)>,
    pub(super) time: Option<String>,
    pub(super) dates: Option<(String, String)>,
    pub(super) priority: i32,
    /// Identifies the rule's content, so a delete never removes a rule that
    /// another editor put at the same position meanwhile.
    pub(super) fp: String,
}

/// What the add-rule form holds (the draft's defaults, or what was submitted);
/// also the calendar's editor, as JSON.
#[derive(Debug, Serialize, Deserialize, Default, Clone, PartialEq)]
#[serde(default)]
pub(super) struct RuleForm {
    pub(super) playlist: String,
    pub(super) shops: Vec<String>,
    pub(super) days: Vec<String>,
    pub(super) from_time: String,
    pub(super) to_time: String,
    pub(super) date_from: String,
    pub(super) date_to: String,
    pub(super) priority: String,
}

pub(super) fn rule_fingerprint(rule: &ScheduleRule) -> String {
    fingerprint(rule)
}

pub(super) fn rule_view(index: usize, rule: &ScheduleRule) -> RuleView {
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

pub(super) fn slot_of(choice: &Option<MusicChoice>, manifest: &Manifest, part: Option<String>) -> Slot {
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
pub(super) fn cell_of(
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
pub(super) fn shop_grid(s: &ShopSchedule<'_>, manifest: &Manifest, monday: NaiveDate) -> Vec<Row> {
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
pub(super) fn shop_days(s: &ShopSchedule<'_>, manifest: &Manifest, monday: NaiveDate) -> Vec<Cell> {
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

pub(super) fn conflicts_of(
    s: &ShopSchedule<'_>,
    manifest: &Manifest,
    monday: NaiveDate,
) -> Vec<ConflictView> {
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

pub(super) struct PlanningData {
    pub(super) draft: Draft,
    pub(super) manifest: Manifest,
}

pub(super) async fn load_draft(state: &Arc<WebState>, ctx: &Ctx) -> Result<PlanningData> {
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

pub(super) async fn planning_page(
    State(state): State<Arc<WebState>>,
    ctx: Ctx,
    Query(q): Query<PlanningQuery>,
) -> Response {
    render_planning(&state, &ctx, q, RuleForm::default(), None, StatusCode::OK).await
}

pub(super) async fn render_planning(
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
    let (today, week_date, mut notice) = today_and_chosen(&m.timezone, now, q.week.as_deref());
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
