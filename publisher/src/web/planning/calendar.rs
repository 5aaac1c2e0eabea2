//! The planning as a calendar: a week per shop (playlists as coloured blocks over
//! their hours, closed stretches shaded, fixed-time ads and the closing
//! announcement pinned at their minute, every-N ads marked, conflicts naming the
//! rule that wins), all shops side by side (one lane per shop), and a month to see
//! campaigns start and end. Every block is a span of the schema's resolver
//! (`ShopSchedule::music_timeline`, `planned_messages`) run on the draft, never a
//! second implementation. Editing goes through `calendar_edit`.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::response::Response;
use chrono::{DateTime, Datelike, NaiveDate, NaiveTime, TimeDelta, Timelike, Utc};
use minijinja::context;
use serde::{Deserialize, Serialize};
use skycast_schema::planned::{planned_messages, PlannedKind};
use skycast_schema::schedule::MusicSpan;
use skycast_schema::{Manifest, ShopSchedule, Weekday};

use crate::describe::media_title as title;
use crate::web::form::shown;
use crate::web::media::MediaChoice;
use crate::web::{Ctx, WebState};

use super::rules::form_of;
use super::week::{load_draft, rule_fingerprint, RuleForm};
use super::*;

/// Colours a calendar gives playlists (`.pc0` … in the style sheet).
const PALETTE: u64 = 10;
/// Minutes in a day: a block ending at the next midnight ends here.
const DAY_MINUTES: u32 = 24 * 60;

#[derive(Deserialize, Default)]
pub(super) struct CalendarQuery {
    #[serde(default)]
    shop: Option<String>,
    #[serde(default)]
    week: Option<String>,
    /// `week` (default), `shops` or `month`.
    #[serde(default)]
    view: Option<String>,
}

/// A playlist's colour: the same in every view and every session.
pub(super) fn colour_of(playlist: &str) -> u64 {
    let hash = blake3::hash(playlist.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&hash.as_bytes()[..8]);
    u64::from_le_bytes(first) % PALETTE
}

/// Why the winner of a tie wins: the same priority, listed first.
#[derive(Serialize)]
pub(super) struct ConflictNote {
    winner: usize,
    winner_playlist: String,
    losers: Vec<(usize, String)>,
    priority: i32,
}

/// One span of music on one day, in minutes from the day's local midnight.
#[derive(Serialize)]
pub(super) struct Block {
    start: u32,
    end: u32,
    from: String,
    to: String,
    playlist: String,
    colour: u64,
    /// The rule's position in the schedule; `None` for the fallback.
    rule: Option<usize>,
    number: Option<usize>,
    fp: Option<String>,
    /// The rule as the editor's fields, JSON.
    form: Option<String>,
    conflict: Option<ConflictNote>,
    /// The rule has dates: a campaign.
    campaign: Option<(String, String)>,
}

/// A stretch with no music: closed, or an hour a DST change skips.
#[derive(Serialize)]
pub(super) struct Shade {
    start: u32,
    end: u32,
    from: String,
    to: String,
}

/// A message planned at a minute.
#[derive(Serialize)]
pub(super) struct Pin {
    minute: u32,
    at: String,
    title: String,
    /// `ad` or `closing`.
    kind: &'static str,
    /// The ad rule that plans it, and its fingerprint (sales may remove it).
    ad: Option<usize>,
    fp: Option<String>,
}

#[derive(Serialize)]
pub(super) struct CalDay {
    date: String,
    key: &'static str,
    label: String,
    today: bool,
    /// The shop's hours differ on this date (an exception).
    exception: Option<String>,
    closed: bool,
    blocks: Vec<Block>,
    shades: Vec<Shade>,
    pins: Vec<Pin>,
    /// Every-N-tracks ads of the day, in words' parts (title, N).
    every: Vec<(String, u32)>,
}

#[derive(Serialize)]
pub(super) struct ShopLane {
    shop: String,
    days: Vec<CalDay>,
}

#[derive(Serialize)]
pub(super) struct MonthWeek {
    days: Vec<MonthDay>,
}

#[derive(Serialize)]
pub(super) struct MonthDay {
    date: String,
    day: u32,
    in_month: bool,
    today: bool,
    closed: bool,
    exception: Option<String>,
    /// Each playlist of the day once, with when it first starts and last ends.
    playlists: Vec<MonthChip>,
}

#[derive(Serialize)]
pub(super) struct MonthChip {
    playlist: String,
    colour: u64,
    from: String,
    to: String,
    campaign: bool,
}

#[derive(Serialize)]
pub(super) struct Legend {
    playlist: String,
    colour: u64,
}

#[derive(Serialize)]
pub(super) struct Campaign {
    number: usize,
    playlist: String,
    colour: u64,
    first: String,
    last: String,
}

fn minute_of(s: &ShopSchedule<'_>, at: DateTime<Utc>, day: NaiveDate) -> u32 {
    let local = s.local_datetime(at);
    if local.date() > day {
        DAY_MINUTES
    } else if local.date() < day {
        0
    } else {
        local.time().hour() * 60 + local.time().minute()
    }
}

fn hhmm_of(minute: u32) -> String {
    format!("{:02}:{:02}", minute / 60, minute % 60)
}

/// The blocks and shades of one day from the resolver's spans.
/// What every block of a schedule rule carries, computed once per page: its
/// fingerprint and its editor fields as JSON.
struct RuleFacts {
    fp: String,
    form: String,
}

fn rule_facts(m: &Manifest) -> Vec<RuleFacts> {
    m.program
        .schedule
        .iter()
        .map(|r| RuleFacts {
            fp: rule_fingerprint(r),
            form: serde_json::to_string(&form_of(r)).unwrap_or_default(),
        })
        .collect()
}

fn day_of(
    s: &ShopSchedule<'_>,
    m: &Manifest,
    facts: &[RuleFacts],
    spans: &[MusicSpan],
    day: NaiveDate,
    today: NaiveDate,
) -> CalDay {
    let schedule = &m.program.schedule;
    let from = s.instant_of(day, NaiveTime::MIN);
    let to = s.instant_of(day + TimeDelta::days(1), NaiveTime::MIN);
    let mut blocks = Vec::new();
    let mut shades = Vec::new();
    for span in spans.iter().filter(|sp| sp.start < to && from < sp.end) {
        let start = minute_of(s, span.start.max(from), day);
        let end = minute_of(s, span.end.min(to), day);
        if end <= start {
            continue;
        }
        let Some(choice) = &span.choice else {
            shades.push(Shade {
                start,
                end,
                from: hhmm_of(start),
                to: hhmm_of(end),
            });
            continue;
        };
        let rule = choice.rule.and_then(|i| Some((i, schedule.get(i)?)));
        let conflict = match (rule, choice.tied_rules.is_empty()) {
            (Some((winner, chosen)), false) => Some(ConflictNote {
                winner: winner + 1,
                winner_playlist: chosen.playlist.clone(),
                losers: choice
                    .tied_rules
                    .iter()
                    .filter_map(|i| Some((i + 1, schedule.get(*i)?.playlist.clone())))
                    .collect(),
                priority: chosen.priority,
            }),
            _ => None,
        };
        blocks.push(Block {
            start,
            end,
            from: hhmm_of(start),
            to: hhmm_of(end),
            playlist: choice.playlist.clone(),
            colour: colour_of(&choice.playlist),
            rule: rule.map(|(i, _)| i),
            number: rule.map(|(i, _)| i + 1),
            fp: rule.and_then(|(i, _)| facts.get(i)).map(|f| f.fp.clone()),
            form: rule.and_then(|(i, _)| facts.get(i)).map(|f| f.form.clone()),
            conflict,
            campaign: rule
                .and_then(|(_, r)| r.dates)
                .map(|d| (d.first.to_string(), d.last.to_string())),
        });
    }
    let pins = planned_messages(m, s.shop_name(), from, to)
        .unwrap_or_default()
        .into_iter()
        .map(|p| {
            let minute = minute_of(s, p.playable_from, day).min(DAY_MINUTES - 1);
            let ad = match p.kind {
                PlannedKind::FixedTimeAd { rule } => Some(rule),
                PlannedKind::Closing { .. } => None,
            };
            Pin {
                minute,
                at: hhmm_of(minute),
                title: title(m, &p.media),
                kind: if ad.is_some() { "ad" } else { "closing" },
                fp: ad.and_then(|i| m.program.ads.get(i)).map(fingerprint),
                ad,
            }
        })
        .collect();
    let every = m
        .program
        .ads
        .iter()
        .filter(|ad| s.targets_shop(&ad.shops) && ad.dates.is_none_or(|d| d.contains(day)))
        .filter_map(|ad| Some((title(m, &ad.media), ad.every_tracks?)))
        .collect();
    let exception = m
        .program
        .shops
        .get(s.shop_name())
        .and_then(|shop| shop.exceptions.get(&day))
        .map(ToString::to_string);
    CalDay {
        date: day.to_string(),
        key: weekday_key(day),
        label: day.format("%d/%m").to_string(),
        today: day == today,
        exception,
        closed: blocks.is_empty(),
        blocks,
        shades,
        pins,
        every,
    }
}

fn days_of(
    s: &ShopSchedule<'_>,
    m: &Manifest,
    first: NaiveDate,
    count: i64,
    today: NaiveDate,
) -> Vec<CalDay> {
    let from = s.instant_of(first, NaiveTime::MIN);
    let to = s.instant_of(first + TimeDelta::days(count), NaiveTime::MIN);
    let spans = s.music_timeline(from, to);
    let facts = rule_facts(m);
    (0..count)
        .map(|i| day_of(s, m, &facts, &spans, first + TimeDelta::days(i), today))
        .collect()
}

/// The hours a week shows: an hour either side of the music (whole hours), or
/// 08:00–20:00 when nothing plays.
fn visible_hours(weeks: &[&[CalDay]]) -> (u32, u32) {
    let blocks = || weeks.iter().flat_map(|w| w.iter()).flat_map(|d| d.blocks.iter());
    let first = blocks().map(|b| b.start).min();
    let last = blocks().map(|b| b.end).max();
    match (first, last) {
        (Some(a), Some(b)) => ((a / 60).saturating_sub(1), (b.div_ceil(60) + 1).min(24)),
        _ => (8, 20),
    }
}

fn month_day(day: CalDay, month: u32, today: NaiveDate) -> MonthDay {
    let mut playlists: Vec<MonthChip> = Vec::new();
    for b in &day.blocks {
        match playlists.iter_mut().find(|c| c.playlist == b.playlist) {
            Some(chip) => chip.to.clone_from(&b.to),
            None => playlists.push(MonthChip {
                playlist: b.playlist.clone(),
                colour: b.colour,
                from: b.from.clone(),
                to: b.to.clone(),
                campaign: b.campaign.is_some(),
            }),
        }
    }
    let date = NaiveDate::parse_from_str(&day.date, "%Y-%m-%d").unwrap_or(today);
    MonthDay {
        day: date.day(),
        in_month: date.month() == month,
        today: date == today,
        closed: day.closed,
        exception: day.exception,
        date: day.date,
        playlists,
    }
}

/// Who edits the calendar: marketing plans music, sales plans ads.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Music,
    Ads,
}

impl Mode {
    fn page(self) -> &'static str {
        match self {
            Mode::Music => "/marketing/calendar",
            Mode::Ads => "/commercial/calendar",
        }
    }

    fn edits(self) -> &'static str {
        match self {
            Mode::Music => "/marketing/calendar/rules",
            Mode::Ads => "/commercial/calendar/ads",
        }
    }
}

pub(super) async fn calendar_page(
    state: State<Arc<WebState>>,
    ctx: Ctx,
    q: Query<CalendarQuery>,
) -> Response {
    render(state, ctx, q, Mode::Music).await
}

pub(super) async fn ads_calendar_page(
    state: State<Arc<WebState>>,
    ctx: Ctx,
    q: Query<CalendarQuery>,
) -> Response {
    render(state, ctx, q, Mode::Ads).await
}

async fn render(
    State(state): State<Arc<WebState>>,
    ctx: Ctx,
    Query(q): Query<CalendarQuery>,
    mode: Mode,
) -> Response {
    let data = match load_draft(&state, &ctx).await {
        Ok(d) => d,
        Err(e) => return state.error_page(&ctx, &e),
    };
    let ads = if mode == Mode::Ads {
        match state.with_workspace(|ws| ws.library(None)).await {
            Ok(library) => library
                .into_iter()
                .filter(|m| {
                    matches!(
                        m.kind,
                        skycast_schema::MediaKind::Ad | skycast_schema::MediaKind::Announcement
                    )
                })
                .map(|m| MediaChoice::from(&m))
                .collect::<Vec<_>>(),
            Err(e) => return state.error_page(&ctx, &e),
        }
    } else {
        Vec::new()
    };
    let m = &data.manifest;
    let program = &data.draft.program;
    let now = state.now();
    let (today, date, mut notice) = today_and_chosen(&m.timezone, now, q.week.as_deref());
    let view = match q.view.as_deref() {
        Some("shops") => "shops",
        Some("month") => "month",
        _ => "week",
    };
    let first_shop = program.shops.keys().next().cloned().unwrap_or_default();
    let shop = match q.shop.filter(|s| !s.is_empty()) {
        None => first_shop,
        Some(s) if program.shops.contains_key(&s) => s,
        Some(s) => {
            notice = Some(format!(
                "field `shop`: no shop is named `{}`: showing {first_shop}",
                shown(&s)
            ));
            first_shop
        }
    };
    let monday = monday_of(date);
    let month_first = date.with_day(1).unwrap_or(date);
    let next_month = (month_first + TimeDelta::days(32))
        .with_day(1)
        .unwrap_or(month_first);
    let prev_month = (month_first - TimeDelta::days(1))
        .with_day(1)
        .unwrap_or(month_first);

    let mut week = Vec::new();
    let mut lanes = Vec::new();
    let mut month = Vec::new();
    match view {
        "shops" => {
            for name in m.program.shops.keys() {
                if let Ok(s) = ShopSchedule::new(m, name) {
                    lanes.push(ShopLane {
                        shop: name.clone(),
                        days: days_of(&s, m, monday, 7, today),
                    });
                }
            }
        }
        "month" => {
            if let Ok(s) = ShopSchedule::new(m, &shop) {
                let start = monday_of(month_first);
                let end = monday_of(next_month - TimeDelta::days(1)) + TimeDelta::days(7);
                let days = days_of(&s, m, start, (end - start).num_days(), today);
                let mut days = days.into_iter().map(|d| month_day(d, month_first.month(), today));
                loop {
                    let row: Vec<MonthDay> = days.by_ref().take(7).collect();
                    if row.is_empty() {
                        break;
                    }
                    month.push(MonthWeek { days: row });
                }
            }
        }
        _ => {
            if let Ok(s) = ShopSchedule::new(m, &shop) {
                week = days_of(&s, m, monday, 7, today);
            }
        }
    }
    let (first_hour, last_hour) = if view == "shops" {
        let weeks: Vec<&[CalDay]> = lanes.iter().map(|l| l.days.as_slice()).collect();
        visible_hours(&weeks)
    } else {
        visible_hours(&[week.as_slice()])
    };
    let legend: Vec<Legend> = program
        .playlists
        .keys()
        .map(|p| Legend {
            playlist: p.clone(),
            colour: colour_of(p),
        })
        .collect();
    let campaigns: Vec<Campaign> = m
        .program
        .schedule
        .iter()
        .enumerate()
        .filter_map(|(i, r)| {
            let d = r.dates?;
            Some(Campaign {
                number: i + 1,
                playlist: r.playlist.clone(),
                colour: colour_of(&r.playlist),
                first: d.first.to_string(),
                last: d.last.to_string(),
            })
        })
        .collect();
    let mut new_form = RuleForm {
        shops: vec![shop.clone()],
        priority: "0".to_string(),
        ..RuleForm::default()
    };
    if let Some(p) = program.playlists.keys().next() {
        new_form.playlist.clone_from(p);
    }
    state.page(
        &ctx,
        "planning_calendar.html",
        context! {
            mode => if mode == Mode::Ads { "ads" } else { "music" },
            page => mode.page(),
            edits => mode.edits(),
            ads => ads,
            view => view,
            shop => shop,
            shops => program.shops.keys().collect::<Vec<_>>(),
            tags => super::super::ads::shop_tags(program),
            playlists => program.playlists.keys().collect::<Vec<_>>(),
            week => monday.to_string(),
            date => date.to_string(),
            prev_week => (monday - TimeDelta::days(7)).to_string(),
            next_week => (monday + TimeDelta::days(7)).to_string(),
            this_week => monday_of(today).to_string(),
            month_year => month_first.year(),
            month_key => month_first.month(),
            prev_month => prev_month.to_string(),
            next_month => next_month.to_string(),
            days => week,
            lanes => lanes,
            month => month,
            first_hour => first_hour,
            last_hour => last_hour,
            hours => (first_hour..last_hour).map(|h| format!("{h:02}:00")).collect::<Vec<_>>(),
            legend => legend,
            campaigns => campaigns,
            new_form => serde_json::to_string(&new_form).unwrap_or_default(),
            notice => notice,
            timezone => m.timezone,
            base_version => data.draft.base_version,
            weekdays => Weekday::ALL.map(Weekday::key),
        },
    )
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use skycast_schema::ScheduleRule;

    use super::*;

    #[test]
    fn a_rule_and_its_editor_form_say_the_same() {
        let rule: ScheduleRule = serde_norway::from_str(
            "{playlist: xmas, shops: [main, 'tag:north'], days: [mon-wed, sat], time: '14:00-16:00', \
             dates: '2026-12-01..2026-12-24', priority: 5}",
        )
        .unwrap();
        let form = form_of(&rule);
        assert_eq!(form.days, ["mon", "tue", "wed", "sat"]);
        assert_eq!(form.shops, ["main", "tag:north"]);
        assert_eq!(
            (form.from_time.as_str(), form.to_time.as_str()),
            ("14:00", "16:00")
        );
        assert_eq!(
            (form.date_from.as_str(), form.date_to.as_str()),
            ("2026-12-01", "2026-12-24")
        );
        assert_eq!(form.priority, "5");
        let program: skycast_schema::Program<skycast_schema::MediaId> = serde_norway::from_str(
            "{playlists: {xmas: {items: []}}, shops: {main: {tags: [north], hours: {}}}}",
        )
        .unwrap();
        let back = super::super::rules::rule_from_form(&form, &program).unwrap();
        assert_eq!(back, rule);
    }

    #[test]
    fn a_playlist_keeps_its_colour() {
        assert_eq!(colour_of("christmas"), colour_of("christmas"));
        let colours: BTreeSet<u64> = ["a", "b", "c", "d", "e", "f", "g", "h"]
            .iter()
            .map(|p| colour_of(p))
            .collect();
        assert!(colours.len() > 3, "{colours:?}");
        assert!(colours.iter().all(|c| *c < PALETTE));
    }
}
