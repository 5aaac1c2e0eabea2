//! The schedule resolver: given a verified manifest, a shop, an instant and what
//! has played so far, decides what plays next. Pure and clock-free: the caller
//! passes the instant, so every rule is table-tested without waiting.
//!
//! All calendar rules are read in the manifest's time zone (DST-correct): a
//! `time` window or opening hours that cross midnight belong to the day they
//! start on; a local time that does not exist (spring forward) means the first
//! instant after the gap; an ambiguous one (fall back) means the first of the two.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, Offset, TimeDelta, TimeZone, Utc};
use serde::{Deserialize, Serialize};

use crate::content_id::MediaId;
use crate::manifest::{AdRule, InterruptLevel, Manifest, PlayOrder, ScheduleRule, Shop};
use crate::media_kind::MediaKind;
use crate::message_key::MessageKey;
use crate::playback::{MessageMode, MessageModes, StartMode};
use crate::shop_target::ShopTarget;
use crate::time_spec::{DailyHours, DateRange, DayRange, TimeWindow, Weekday};

/// How long after its planned instant a fixed-time ad may still start (for
/// `boundary` mode or a player started late); after that the slot is missed.
pub const FIXED_TIME_GRACE_SECS: i64 = 600;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("shop `{shop}` is not in manifest version {version}: check `shop` in the player config")]
    UnknownShop { shop: String, version: u64 },
    #[error("time zone `{0}` is not an IANA time zone")]
    BadTimeZone(String),
}

/// Priority of what plays, highest last so `Ord` compares them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    Music,
    ScheduledAd,
    /// The closing announcement and sales "play now" interrupts.
    Announcement,
    Urgent,
}

/// Where a message comes from; its `key` makes it play once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "source", rename_all = "snake_case")]
pub enum MessageSource {
    /// `ads[rule]` with `every_tracks`.
    EveryTracks { rule: usize },
    /// `ads[rule]` with `at`, for the slot at `planned`.
    FixedTime { rule: usize, planned: DateTime<Utc> },
    /// The shop's closing announcement before the closing at `closes`.
    Closing { closes: DateTime<Utc> },
    /// `interrupts[]` with this id.
    Interrupt { id: String },
}

/// A message that is due: an ad, an announcement or an urgent message.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// The text of its [`MessageKey`] (`interrupt:ID`, `ad-at:MEDIA:LOCAL-DATETIME`,
    /// `closing:LOCAL-DATE`, `ad-every:MEDIA:N`), as the history stores it.
    pub key: String,
    pub media: MediaId,
    pub priority: Priority,
    pub source: MessageSource,
    /// The kind's `playback.messages` mode with the rule's own `start`/`after` applied.
    pub mode: MessageMode,
    /// The instant it became due (the planned instant for fixed-time ads).
    pub due: DateTime<Utc>,
}

impl Message {
    pub fn cuts(&self) -> bool {
        self.mode.start == StartMode::Cut
    }
}

/// The next music track.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MusicPick {
    pub media: MediaId,
    /// Playlist name; [`FALLBACK_ALL_MUSIC`] when no playlist applies and
    /// `playback.fallback_playlist` is unset.
    pub playlist: String,
    /// The schedule rule that chose the playlist; `None` for the fallback.
    pub rule: Option<usize>,
}

/// Which playlist music comes from at an instant, and why: for planning views and
/// previews, which must show the choice without playing anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MusicChoice {
    /// Playlist name; [`FALLBACK_ALL_MUSIC`] when no playlist applies and
    /// `playback.fallback_playlist` is unset.
    pub playlist: String,
    /// Index in `schedule` of the rule that chose it; `None` for the fallback.
    pub rule: Option<usize>,
    /// Other matching rules with the same (top) priority naming another playlist:
    /// a conflict the first-listed rule wins only by its position. Rules naming the
    /// same playlist are not listed (they change nothing).
    pub tied_rules: Vec<usize>,
}

/// A stretch of time with one music choice (`None`: the shop is closed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MusicSpan {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub choice: Option<MusicChoice>,
}

/// A stretch of time where rules of the same top priority name different playlists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub priority: i32,
    /// The rule that wins (listed first), then the rules it ties with.
    pub rules: Vec<usize>,
}

/// Playlist name used for "all music of the manifest, in order".
pub const FALLBACK_ALL_MUSIC: &str = "(all music)";

/// What to start at a track boundary.
#[derive(Debug, Clone, PartialEq)]
pub enum Next {
    /// The shop is closed (and no urgent message is due): stay silent until `reopens`
    /// (`None` when it never reopens within a year).
    Closed {
        reopens: Option<DateTime<Utc>>,
    },
    Message(Message),
    Music(MusicPick),
}

/// An open period of a shop, as instants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenPeriod {
    pub opens: DateTime<Utc>,
    pub closes: DateTime<Utc>,
}

/// What has played, as the resolver needs it. The player persists it (it is serde)
/// and calls the `record_*` methods as things start.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct History {
    /// Music tracks started so far.
    pub music_started: u64,
    /// For each `ad-every:` key, `music_started` when that ad last played.
    pub every_tracks_last: BTreeMap<String, u64>,
    /// For each playlist, how many tracks were picked from it (its cursor).
    pub playlist_cursor: BTreeMap<String, u64>,
    /// Keys of messages that have played (or started and were cut).
    pub played: BTreeSet<String>,
    /// Seed of the shuffle order; each player picks its own.
    pub shuffle_seed: u64,
}

impl History {
    pub fn new(shuffle_seed: u64) -> History {
        History {
            shuffle_seed,
            ..History::default()
        }
    }

    /// Call when a music track starts.
    pub fn record_music(&mut self, pick: &MusicPick) {
        self.music_started += 1;
        *self.playlist_cursor.entry(pick.playlist.clone()).or_insert(0) += 1;
    }

    /// Call when a message starts.
    pub fn record_message(&mut self, message: &Message) {
        match message.source {
            // An every-N ad comes back forever: what counts is when it last played.
            MessageSource::EveryTracks { .. } => {
                self.every_tracks_last
                    .insert(message.key.clone(), self.music_started);
            }
            _ => {
                self.played.insert(message.key.clone());
            }
        }
    }

    /// Drops keys of dated messages planned before `before` so the set stays small;
    /// interrupt keys are kept (an interrupt plays once per player, ever).
    pub fn forget_before(&mut self, before: DateTime<Utc>) {
        // A day of margin: keys hold local dates, which may run a day behind UTC.
        let Some(cutoff) = before.date_naive().pred_opt() else {
            return;
        };
        self.played
            .retain(|key| dated_key_date(key).is_none_or(|date| date >= cutoff));
    }
}

/// One shop's view of a manifest.
#[derive(Debug, Clone)]
pub struct ShopSchedule<'m> {
    manifest: &'m Manifest,
    shop_name: String,
    shop: &'m Shop<MediaId>,
    tz: chrono_tz::Tz,
}

/// The local date in an `ad-at:` or `closing:` key; `None` for keys kept forever
/// (interrupts) and for anything unreadable, which is kept rather than replayed.
fn dated_key_date(key: &str) -> Option<NaiveDate> {
    key.parse::<MessageKey>().ok()?.local_date()
}

/// How far ahead openings and events are searched.
const SEARCH_DAYS: i64 = 366;

fn prev_day(date: NaiveDate) -> Option<NaiveDate> {
    date.pred_opt()
}

fn next_day(date: NaiveDate) -> Option<NaiveDate> {
    date.succ_opt()
}

/// Absent `dates`/`days` match every day; `days` matches when any range does.
fn day_matches(dates: Option<&DateRange>, days: Option<&[DayRange]>, date: NaiveDate) -> bool {
    let weekday = Weekday::of(date);
    dates.is_none_or(|range| range.contains(date))
        && days.is_none_or(|ranges| ranges.iter().any(|r| r.contains(weekday)))
}

fn rule_day_matches(rule: &ScheduleRule, date: NaiveDate) -> bool {
    day_matches(rule.dates.as_ref(), rule.days.as_deref(), date)
}

/// The playlist that applies at an instant, with what chose it.
struct Resolved<'m> {
    name: String,
    items: Cow<'m, [MediaId]>,
    order: PlayOrder,
    rule: Option<usize>,
}

impl<'m> ShopSchedule<'m> {
    pub fn new(manifest: &'m Manifest, shop: &str) -> Result<ShopSchedule<'m>, ScheduleError> {
        let shop_ref = manifest
            .program
            .shops
            .get(shop)
            .ok_or_else(|| ScheduleError::UnknownShop {
                shop: shop.to_string(),
                version: manifest.version(),
            })?;
        let tz = manifest
            .timezone
            .parse::<chrono_tz::Tz>()
            .map_err(|_| ScheduleError::BadTimeZone(manifest.timezone.clone()))?;
        Ok(ShopSchedule {
            manifest,
            shop_name: shop.to_string(),
            shop: shop_ref,
            tz,
        })
    }

    pub fn shop_name(&self) -> &str {
        &self.shop_name
    }

    /// The open period that contains `at`, or `None` when the shop is closed.
    /// A shop without any `hours` is always open (the period is then the local day).
    pub fn open_period(&self, at: DateTime<Utc>) -> Option<OpenPeriod> {
        let today = self.local_date(at);
        if self.always_open() {
            return self.day_period(today);
        }
        let (mut first, mut period) =
            [prev_day(today), Some(today)]
                .into_iter()
                .flatten()
                .find_map(|date| {
                    let p = self.raw_period(date)?;
                    (p.opens <= at && at < p.closes).then_some((date, p))
                })?;
        // Periods that touch or overlap (fri 18:00-00:00 then sat 00:00-03:00) are one
        // opening: the shop does not close in between, so neither is its closing.
        // Only the neighbouring date can touch, as a period ends the day after it starts.
        let mut last = first;
        for _ in 0..SEARCH_DAYS {
            match prev_day(first).and_then(|d| Some((d, self.raw_period(d)?))) {
                Some((date, p)) if p.closes >= period.opens => {
                    period.opens = period.opens.min(p.opens);
                    first = date;
                }
                _ => break,
            }
        }
        for _ in 0..SEARCH_DAYS {
            match next_day(last).and_then(|d| Some((d, self.raw_period(d)?))) {
                Some((date, p)) if p.opens <= period.closes => {
                    period.closes = period.closes.max(p.closes);
                    last = date;
                }
                _ => break,
            }
        }
        Some(period)
    }

    /// The first opening strictly after `at`, searching a year ahead.
    pub fn next_opening(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let today = self.local_date(at);
        if self.always_open() {
            return next_day(today).map(|d| self.day_start(d));
        }
        let mut date = prev_day(today)?;
        let mut previous = prev_day(date).and_then(|d| self.raw_period(d));
        for _ in 0..=SEARCH_DAYS + 1 {
            let current = self.raw_period(date);
            if let Some(p) = current {
                // Not an opening when the day before's period runs into it.
                let continues = previous.is_some_and(|q| q.closes >= p.opens);
                if p.opens > at && !continues {
                    return Some(p.opens);
                }
            }
            previous = current;
            date = next_day(date)?;
        }
        None
    }

    /// The playlist music comes from at `at`: the matching schedule rule with the
    /// highest priority (the first one listed on a tie), else the fallback.
    /// `None` when the shop is closed at `at`.
    pub fn playlist_at(&self, at: DateTime<Utc>) -> Option<(String, Vec<MediaId>)> {
        self.resolve(at).map(|r| (r.name, r.items.into_owned()))
    }

    /// Messages due at `at` that have not played: interrupts within their window,
    /// fixed-time ad slots within [`FIXED_TIME_GRACE_SECS`], the closing announcement
    /// from `minutes_before` until closing. Only urgent interrupts are due while the
    /// shop is closed. Ordered by priority (highest first), then by `due`.
    /// Every-N-tracks ads are not here: they only come from [`Self::next_at_boundary`].
    pub fn due_messages(&self, at: DateTime<Utc>, history: &History) -> Vec<Message> {
        let period = self.open_period(at);
        let mut out = Vec::new();
        if period.is_some() {
            self.fixed_time_ads(at, history, &mut out);
        }
        if let Some(p) = period {
            self.closing_announcement(at, p, history, &mut out);
        }
        self.interrupts(at, period.is_some(), history, &mut out);
        out.sort_by(|a, b| {
            b.priority
                .cmp(&a.priority)
                .then(a.due.cmp(&b.due))
                .then_with(|| a.key.cmp(&b.key))
        });
        // Two ad rules may plan the same media at the same slot: it plays once.
        out.dedup_by(|a, b| a.key == b.key);
        out
    }

    /// What to start when nothing is playing: the first due message, else an
    /// every-N-tracks ad whose count is reached, else the next music track of
    /// [`Self::playlist_at`] (sequential: cursor order; shuffle: a permutation per
    /// pass from `shuffle_seed`), else `Closed`.
    pub fn next_at_boundary(&self, at: DateTime<Utc>, history: &History) -> Next {
        if let Some(message) = self.due_messages(at, history).into_iter().next() {
            return Next::Message(message);
        }
        if self.open_period(at).is_some() {
            if let Some(message) = self.every_tracks_ad(at, history) {
                return Next::Message(message);
            }
            if let Some(pick) = self.music_pick(at, history) {
                return Next::Music(pick);
            }
        }
        Next::Closed {
            reopens: self.next_opening(at),
        }
    }

    /// The earliest instant after `at` at which something time-based happens:
    /// opening, closing, the closing announcement, a fixed-time ad slot, an
    /// interrupt's `not_before`, a schedule rule's window edge. Players sleep until then.
    pub fn next_event_after(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let program = &self.manifest.program;
        let today = self.local_date(at);
        let around: Vec<NaiveDate> = [prev_day(today), Some(today), next_day(today)]
            .into_iter()
            .flatten()
            .collect();
        // Instants that change nothing unless the shop is open then.
        let mut while_open = Vec::new();
        let mut always = Vec::new();
        always.extend(self.next_opening(at));
        if let Some(p) = self.open_period(at) {
            always.push(p.closes);
            if let (Some(c), false) = (&self.shop.closing_announcement, self.always_open()) {
                always.push(p.closes - TimeDelta::minutes(i64::from(c.minutes_before)));
            }
        }
        for ad in &program.ads {
            let Some(times) = &ad.at else { continue };
            if !self.targets(&ad.shops) {
                continue;
            }
            for &date in &around {
                if day_matches(ad.dates.as_ref(), None, date) {
                    while_open.extend(times.iter().map(|t| self.local_instant(date, t.0)));
                }
            }
        }
        for int in &program.interrupts {
            if let (Some(t), true) = (int.not_before, self.targets(&int.shops)) {
                match int.level {
                    InterruptLevel::Urgent => always.push(t.0),
                    InterruptLevel::Ad | InterruptLevel::Announcement => while_open.push(t.0),
                }
            }
        }
        for rule in &program.schedule {
            if !self.targets(&rule.shops) {
                continue;
            }
            match rule.time {
                Some(window) => {
                    for &date in around.iter().filter(|d| rule_day_matches(rule, **d)) {
                        let (start, end) = self.window_on(date, window);
                        while_open.extend([start, end]);
                    }
                }
                // Dated rules switch at local midnight.
                None if rule.dates.is_some() || rule.days.is_some() => {
                    while_open.extend(next_day(today).map(|d| self.day_start(d)));
                }
                None => {}
            }
        }
        let limit = at + TimeDelta::days(SEARCH_DAYS);
        let after = |t: &DateTime<Utc>| *t > at && *t <= limit;
        let open_events = while_open
            .into_iter()
            .filter(after)
            .filter(|t| self.open_period(*t).is_some());
        always.into_iter().filter(after).chain(open_events).min()
    }

    /// The playlist music comes from at `at`, the rule that chose it and the rules
    /// it tied with ([`Self::playlist_at`] with its reasons). `None` when closed.
    pub fn music_at(&self, at: DateTime<Utc>) -> Option<MusicChoice> {
        let resolved = self.resolve(at)?;
        let program = &self.manifest.program;
        let tied_rules = match resolved.rule.and_then(|i| Some((i, program.schedule.get(i)?))) {
            Some((winner, chosen)) => self
                .matching_rules(at)
                .filter(|(i, rule)| {
                    *i != winner && rule.priority == chosen.priority && rule.playlist != chosen.playlist
                })
                .map(|(i, _)| i)
                .collect(),
            None => Vec::new(),
        };
        Some(MusicChoice {
            playlist: resolved.name,
            rule: resolved.rule,
            tied_rules,
        })
    }

    /// The music choices from `from` until `to`, as consecutive spans (equal
    /// neighbours merged) covering the whole range. Exact: it evaluates
    /// [`Self::music_at`] at every instant where an opening edge, a rule's window
    /// edge or a local midnight can change the answer. Work grows with days × rules.
    pub fn music_timeline(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<MusicSpan> {
        if to <= from {
            return Vec::new();
        }
        let mut edges = vec![from];
        let last = self.local_date(to);
        // The day before `from` too: its periods and windows may run past midnight.
        let mut date = prev_day(self.local_date(from));
        while let Some(d) = date.filter(|d| *d <= last) {
            edges.push(self.day_start(d));
            if let Some(p) = self.raw_period(d) {
                edges.extend([p.opens, p.closes]);
            }
            for rule in &self.manifest.program.schedule {
                if let (Some(window), true) = (rule.time, self.targets(&rule.shops)) {
                    let (start, end) = self.window_on(d, window);
                    edges.extend([start, end]);
                }
            }
            date = next_day(d);
        }
        edges.retain(|t| from <= *t && *t < to);
        edges.sort_unstable();
        edges.dedup();
        let mut spans: Vec<MusicSpan> = Vec::new();
        for (i, &start) in edges.iter().enumerate() {
            let end = edges.get(i + 1).copied().unwrap_or(to);
            let choice = self.music_at(start);
            match spans.last_mut() {
                Some(prev) if prev.choice == choice => prev.end = end,
                _ => spans.push(MusicSpan { start, end, choice }),
            }
        }
        spans
    }

    /// Where rules of the same top priority name different playlists between
    /// `from` and `to` (see [`MusicChoice::tied_rules`]).
    pub fn conflicts(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<Conflict> {
        let schedule = &self.manifest.program.schedule;
        self.music_timeline(from, to)
            .into_iter()
            .filter_map(|span| {
                let choice = span.choice?;
                let winner = choice.rule?;
                if choice.tied_rules.is_empty() {
                    return None;
                }
                let mut rules = vec![winner];
                rules.extend(choice.tied_rules);
                Some(Conflict {
                    start: span.start,
                    end: span.end,
                    priority: schedule.get(winner).map_or(0, |r| r.priority),
                    rules,
                })
            })
            .collect()
    }

    /// Whether a rule's `shops` list (`all`, `tag:NAME`, shop names) names this shop.
    pub fn targets_shop(&self, shops: &[ShopTarget]) -> bool {
        self.targets(shops)
    }

    /// The local date of `at` in the manifest's time zone.
    pub fn local_date(&self, at: DateTime<Utc>) -> NaiveDate {
        at.with_timezone(&self.tz).date_naive()
    }

    /// The local date and time of `at` in the manifest's time zone.
    pub fn local_datetime(&self, at: DateTime<Utc>) -> NaiveDateTime {
        at.with_timezone(&self.tz).naive_local()
    }

    /// The instant of a local date and time, read as the schedule reads rules:
    /// the end of a spring-forward gap, the first of a fall-back fold.
    pub fn instant_of(&self, date: NaiveDate, time: NaiveTime) -> DateTime<Utc> {
        self.local_instant(date, time)
    }

    /// The instant of a local date and time: the first of two in a fall-back fold,
    /// the end of the gap for a time skipped by spring forward.
    fn local_instant(&self, date: NaiveDate, time: NaiveTime) -> DateTime<Utc> {
        let local = date.and_time(time);
        // Gaps last at most a day (Samoa skipped 2011-12-30 whole), so two days of
        // minutes always reach the end of one; zones move at whole minutes nowadays.
        for minutes in 0..=2 * 24 * 60 {
            match self
                .tz
                .from_local_datetime(&(local + TimeDelta::minutes(minutes)))
            {
                LocalResult::Single(t) => return t.with_timezone(&Utc),
                LocalResult::Ambiguous(a, b) => return a.with_timezone(&Utc).min(b.with_timezone(&Utc)),
                LocalResult::None => {}
            }
        }
        // Unreachable with the tz database; reading the time at the UTC offset of that
        // moment keeps the answer close rather than failing.
        let offset = self.tz.offset_from_utc_datetime(&local).fix();
        (local - offset).and_utc()
    }

    fn day_start(&self, date: NaiveDate) -> DateTime<Utc> {
        self.local_instant(date, NaiveTime::MIN)
    }

    fn day_period(&self, date: NaiveDate) -> Option<OpenPeriod> {
        Some(OpenPeriod {
            opens: self.day_start(date),
            closes: self.day_start(next_day(date)?),
        })
    }

    fn always_open(&self) -> bool {
        self.shop.hours.is_empty() && self.shop.exceptions.is_empty()
    }

    /// The instants of a time window started on `date` (ending the next day when
    /// it crosses midnight); empty when DST swallows it.
    fn window_on(&self, date: NaiveDate, window: TimeWindow) -> (DateTime<Utc>, DateTime<Utc>) {
        let start = self.local_instant(date, window.start.0);
        let end_date = if window.crosses_midnight() {
            next_day(date)
        } else {
            Some(date)
        };
        let end = end_date.map_or(start, |d| self.local_instant(d, window.end.0));
        (start, end.max(start))
    }

    /// The opening hours of one date as instants, before merging with neighbours.
    fn raw_period(&self, date: NaiveDate) -> Option<OpenPeriod> {
        let hours = self
            .shop
            .exceptions
            .get(&date)
            .or_else(|| self.shop.hours.get(&Weekday::of(date)))?;
        let DailyHours::Open(window) = *hours else {
            return None;
        };
        let (opens, closes) = self.window_on(date, window);
        (opens < closes).then_some(OpenPeriod { opens, closes })
    }

    fn targets(&self, shops: &[ShopTarget]) -> bool {
        ShopTarget::any_matches(shops, &self.shop_name, &self.shop.tags)
    }

    fn rule_matches(&self, rule: &ScheduleRule, at: DateTime<Utc>) -> bool {
        let today = self.local_date(at);
        let Some(window) = rule.time else {
            return rule_day_matches(rule, today);
        };
        // A window crossing midnight belongs to the day it starts on.
        let yesterday = if window.crosses_midnight() {
            prev_day(today)
        } else {
            None
        };
        [yesterday, Some(today)].into_iter().flatten().any(|date| {
            let (start, end) = self.window_on(date, window);
            rule_day_matches(rule, date) && start <= at && at < end
        })
    }

    /// The schedule rules (with their index) that apply to this shop at `at` and
    /// name a playlist with items, in listed order.
    fn matching_rules(&self, at: DateTime<Utc>) -> impl Iterator<Item = (usize, &'m ScheduleRule)> + '_ {
        let program = &self.manifest.program;
        program.schedule.iter().enumerate().filter(move |(_, rule)| {
            let usable = program
                .playlists
                .get(&rule.playlist)
                .is_some_and(|list| !list.items.is_empty());
            usable && self.targets(&rule.shops) && self.rule_matches(rule, at)
        })
    }

    fn resolve(&self, at: DateTime<Utc>) -> Option<Resolved<'m>> {
        self.open_period(at)?;
        let program = &self.manifest.program;
        let mut best: Option<(usize, &'m ScheduleRule)> = None;
        for (i, rule) in self.matching_rules(at) {
            // Strictly greater: on a tie the rule listed first stays.
            if best.is_none_or(|(_, b)| rule.priority > b.priority) {
                best = Some((i, rule));
            }
        }
        let named = |name: &str, rule: Option<usize>| {
            let list = program.playlists.get(name).filter(|l| !l.items.is_empty())?;
            Some(Resolved {
                name: name.to_string(),
                items: Cow::Borrowed(&list.items[..]),
                order: list.order,
                rule,
            })
        };
        if let Some(found) = best.and_then(|(i, rule)| named(&rule.playlist, Some(i))) {
            return Some(found);
        }
        if let Some(found) = program
            .playback
            .fallback_playlist
            .as_deref()
            .and_then(|name| named(name, None))
        {
            return Some(found);
        }
        // Never silent while open: all music, else anything there is.
        let media = &self.manifest.media;
        let mut items: Vec<MediaId> = media
            .iter()
            .filter(|m| m.kind == MediaKind::Music)
            .map(|m| m.id)
            .collect();
        if items.is_empty() {
            items = media.iter().map(|m| m.id).collect();
        }
        (!items.is_empty()).then(|| Resolved {
            name: FALLBACK_ALL_MUSIC.to_string(),
            items: Cow::Owned(items),
            order: PlayOrder::Sequential,
            rule: None,
        })
    }

    fn music_pick(&self, at: DateTime<Utc>, history: &History) -> Option<MusicPick> {
        let resolved = self.resolve(at)?;
        let items = &resolved.items;
        let cursor = history.playlist_cursor.get(&resolved.name).copied().unwrap_or(0);
        let index = match resolved.order {
            PlayOrder::Sequential => (cursor % items.len() as u64) as usize,
            PlayOrder::Shuffle => shuffled_index(items, history.shuffle_seed, &resolved.name, cursor),
        };
        Some(MusicPick {
            media: items[index],
            playlist: resolved.name,
            rule: resolved.rule,
        })
    }

    fn modes(&self) -> &MessageModes {
        &self.manifest.program.playback.messages
    }

    fn ad_mode(&self, ad: &AdRule<MediaId>) -> MessageMode {
        self.modes().ad.with_overrides(ad.start, ad.after)
    }

    /// The first every-N-tracks ad (in rule order) whose count is reached.
    fn every_tracks_ad(&self, at: DateTime<Utc>, history: &History) -> Option<Message> {
        let today = self.local_date(at);
        self.manifest
            .program
            .ads
            .iter()
            .enumerate()
            .find_map(|(rule, ad)| {
                // Zero is refused by validation; skipping it avoids an ad after every ad.
                let n = ad.every_tracks.filter(|n| *n > 0)?;
                if !self.targets(&ad.shops) || !day_matches(ad.dates.as_ref(), None, today) {
                    return None;
                }
                let key = MessageKey::EveryTracks {
                    media: ad.media,
                    every: n,
                }
                .to_string();
                let last = history.every_tracks_last.get(&key).copied().unwrap_or(0);
                (history.music_started.saturating_sub(last) >= u64::from(n)).then(|| Message {
                    key,
                    media: ad.media,
                    priority: Priority::ScheduledAd,
                    source: MessageSource::EveryTracks { rule },
                    mode: self.ad_mode(ad),
                    due: at,
                })
            })
    }

    fn fixed_time_ads(&self, at: DateTime<Utc>, history: &History, out: &mut Vec<Message>) {
        let today = self.local_date(at);
        let grace = TimeDelta::seconds(FIXED_TIME_GRACE_SECS);
        for (rule, ad) in self.manifest.program.ads.iter().enumerate() {
            let Some(times) = &ad.at else { continue };
            if !self.targets(&ad.shops) {
                continue;
            }
            // Yesterday's slots reach past midnight (23:55 + grace).
            for date in [prev_day(today), Some(today)].into_iter().flatten() {
                if !day_matches(ad.dates.as_ref(), None, date) {
                    continue;
                }
                for time in times {
                    let planned = self.local_instant(date, time.0);
                    let key = MessageKey::FixedTime {
                        media: ad.media,
                        date,
                        time: *time,
                    }
                    .to_string();
                    if planned <= at && at < planned + grace && !history.played.contains(&key) {
                        out.push(Message {
                            key,
                            media: ad.media,
                            priority: Priority::ScheduledAd,
                            source: MessageSource::FixedTime { rule, planned },
                            mode: self.ad_mode(ad),
                            due: planned,
                        });
                    }
                }
            }
        }
    }

    fn closing_announcement(
        &self,
        at: DateTime<Utc>,
        period: OpenPeriod,
        history: &History,
        out: &mut Vec<Message>,
    ) {
        // A shop that is always open never closes: its day ends are not closings.
        let Some(c) = self
            .shop
            .closing_announcement
            .as_ref()
            .filter(|_| !self.always_open())
        else {
            return;
        };
        let due = period.closes - TimeDelta::minutes(i64::from(c.minutes_before));
        let key = MessageKey::Closing {
            date: self.local_date(period.opens),
        }
        .to_string();
        if due <= at && at < period.closes && !history.played.contains(&key) {
            out.push(Message {
                key,
                media: c.media,
                priority: Priority::Announcement,
                source: MessageSource::Closing {
                    closes: period.closes,
                },
                mode: self.modes().closing,
                due,
            });
        }
    }

    fn interrupts(&self, at: DateTime<Utc>, open: bool, history: &History, out: &mut Vec<Message>) {
        for int in &self.manifest.program.interrupts {
            let key = MessageKey::Interrupt { id: int.id.clone() }.to_string();
            let in_window =
                int.not_before.is_none_or(|t| t.0 <= at) && int.not_after.is_none_or(|t| at <= t.0);
            if !self.targets(&int.shops) || !in_window || history.played.contains(&key) {
                continue;
            }
            let (priority, mode) = match int.level {
                InterruptLevel::Urgent => (Priority::Urgent, self.modes().urgent),
                InterruptLevel::Ad | InterruptLevel::Announcement if open => {
                    (Priority::Announcement, self.modes().play_now)
                }
                InterruptLevel::Ad | InterruptLevel::Announcement => continue,
            };
            out.push(Message {
                key,
                media: int.media,
                priority,
                source: MessageSource::Interrupt { id: int.id.clone() },
                mode: mode.with_overrides(int.start, int.after),
                due: int.not_before.unwrap_or(self.manifest.published_at).0,
            });
        }
    }
}

/// The local date and time of `at` in `timezone` (an IANA name, as in manifests).
pub fn local_datetime(timezone: &str, at: DateTime<Utc>) -> Result<NaiveDateTime, ScheduleError> {
    let tz = timezone
        .parse::<chrono_tz::Tz>()
        .map_err(|_| ScheduleError::BadTimeZone(timezone.to_string()))?;
    Ok(at.with_timezone(&tz).naive_local())
}

/// Index into `items` of the pick at `cursor` of a shuffled playlist: pass
/// `cursor / len` is its own permutation, so the order is reproducible from the
/// seed and the cursor alone, across restarts.
fn shuffled_index(items: &[MediaId], seed: u64, playlist: &str, cursor: u64) -> usize {
    let len = items.len();
    let position = (cursor % len as u64) as usize;
    // With two items, not repeating across passes forces strict alternation, so
    // every pass is the first one again.
    let pass = if len == 2 { 0 } else { cursor / len as u64 };
    let mut perm = permutation(len, seed, playlist, pass);
    if pass > 0 && len > 2 {
        // The swap below only moves positions 0 and 1, so the previous pass ended
        // on the last item of its own unswapped permutation.
        let before = permutation(len, seed, playlist, pass - 1);
        if items[perm[0]] == items[before[len - 1]] {
            perm.swap(0, 1);
        }
    }
    perm[position]
}

/// Fisher–Yates over `0..len`, driven by splitmix64 seeded from the player's seed,
/// the playlist name and the pass.
fn permutation(len: usize, seed: u64, playlist: &str, pass: u64) -> Vec<usize> {
    let playlist_key = SplitMix64(seed).next_u64() ^ stable_hash(playlist);
    let mut rng = SplitMix64(SplitMix64(playlist_key).next_u64() ^ pass);
    let mut perm: Vec<usize> = (0..len).collect();
    for i in (1..len).rev() {
        perm.swap(i, rng.below(i + 1));
    }
    perm
}

/// FNV-1a: std's hasher is keyed randomly per process, and the order must stay the
/// same after a restart and on every platform.
fn stable_hash(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` by multiply-shift, without the bias of `%`.
    fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }
}

#[cfg(test)]
mod tests {
    use chrono::NaiveDateTime;

    use super::*;
    use crate::manifest::tests::id;
    use crate::playback::AfterMode;

    /// Media every test manifest may hold, written `@name` in the YAML.
    const MEDIA: [(&str, u8, &str); 12] = [
        ("m1", 1, "music"),
        ("m2", 2, "music"),
        ("m3", 3, "music"),
        ("m4", 4, "music"),
        ("m5", 5, "music"),
        ("m6", 6, "music"),
        ("m7", 7, "music"),
        ("m8", 8, "music"),
        ("ad1", 21, "ad"),
        ("ad2", 22, "ad"),
        ("ann", 23, "announcement"),
        ("urg", 24, "urgent"),
    ];

    const ALL_MEDIA: [&str; 12] = [
        "m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "ad1", "ad2", "ann", "urg",
    ];

    fn media(name: &str) -> MediaId {
        let (_, n, _) = MEDIA.iter().find(|m| m.0 == name).expect("a test media name");
        id(*n)
    }

    fn media_name(id: MediaId) -> &'static str {
        MEDIA
            .iter()
            .find(|m| media(m.0) == id)
            .map(|m| m.0)
            .expect("a test media id")
    }

    /// A Europe/Paris manifest holding `names` as media, then the `program` YAML.
    fn manifest_with(names: &[&str], program: &str) -> Manifest {
        let mut text = String::from(
            "schema: skycast/v1\nversion: 3\npublished_at: 2026-01-01T00:00:00Z\n\
             expires_at: 2027-06-01T00:00:00Z\npublished_by: test\ntimezone: Europe/Paris\n",
        );
        if names.is_empty() {
            text.push_str("media: []\n");
        } else {
            text.push_str("media:\n");
            for name in names {
                let (_, _, kind) = MEDIA.iter().find(|m| m.0 == *name).expect("a test media name");
                text.push_str(&format!(
                    "  - {{id: {}, size: 1000, duration_ms: 180000, title: {name}, kind: {kind}}}\n",
                    media(name)
                ));
            }
        }
        text.push_str(program);
        for (name, ..) in MEDIA {
            text = text.replace(&format!("@{name}"), &media(name).to_string());
        }
        Manifest::parse(text.as_bytes()).unwrap_or_else(|e| panic!("{e}\n{text}"))
    }

    fn manifest(program: &str) -> Manifest {
        manifest_with(&ALL_MEDIA, program)
    }

    fn schedule<'m>(m: &'m Manifest, shop: &str) -> ShopSchedule<'m> {
        ShopSchedule::new(m, shop).unwrap()
    }

    /// A UTC instant written `2026-12-01T08:00Z` (seconds optional).
    fn t(text: &str) -> DateTime<Utc> {
        NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%SZ")
            .or_else(|_| NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%MZ"))
            .unwrap_or_else(|e| panic!("{text}: {e}"))
            .and_utc()
    }

    fn period(opens: &str, closes: &str) -> Option<OpenPeriod> {
        Some(OpenPeriod {
            opens: t(opens),
            closes: t(closes),
        })
    }

    fn playlist_name(s: &ShopSchedule<'_>, at: &str) -> Option<String> {
        s.playlist_at(t(at)).map(|(name, _)| name)
    }

    /// Plays `steps` things from `at` as a player would, naming what started.
    fn run(
        s: &ShopSchedule<'_>,
        at: DateTime<Utc>,
        history: &mut History,
        steps: usize,
    ) -> Vec<&'static str> {
        (0..steps)
            .map(|_| match s.next_at_boundary(at, history) {
                Next::Music(pick) => {
                    history.record_music(&pick);
                    media_name(pick.media)
                }
                Next::Message(message) => {
                    history.record_message(&message);
                    media_name(message.media)
                }
                Next::Closed { .. } => "closed",
            })
            .collect()
    }

    fn music_picks(s: &ShopSchedule<'_>, seed: u64, count: usize) -> Vec<MediaId> {
        let mut history = History::new(seed);
        (0..count)
            .map(|_| match s.next_at_boundary(t("2026-12-01T12:00Z"), &history) {
                Next::Music(pick) => {
                    history.record_music(&pick);
                    pick.media
                }
                other => panic!("expected music, got {other:?}"),
            })
            .collect()
    }

    const WEEK_SHOP: &str = r#"
playlists:
  day: {items: [@m1, @m2]}
shops:
  lyon:
    tags: [main]
    hours:
      mon: "09:00-20:00"
      tue: "09:00-20:00"
      wed: "09:00-20:00"
      thu: "09:00-20:00"
      fri: "09:00-20:00"
      sat: "09:00-20:00"
    closing_announcement: {media: @ann, minutes_before: 30}
schedule:
  - {playlist: day, shops: [all]}
"#;

    #[test]
    fn unknown_shop_and_bad_time_zone_are_refused() {
        let good = manifest("shops: {lyon: {}}\n");
        let mut bad_zone = good.clone();
        bad_zone.timezone = "Mars/Olympus".to_string();
        let cases = [
            (&good, "lyon", None),
            (
                &good,
                "lille",
                Some(ScheduleError::UnknownShop {
                    shop: "lille".to_string(),
                    version: 3,
                }),
            ),
            (
                &bad_zone,
                "lyon",
                Some(ScheduleError::BadTimeZone("Mars/Olympus".to_string())),
            ),
        ];
        for (m, shop, expected) in cases {
            let got = ShopSchedule::new(m, shop).err();
            assert_eq!(got, expected, "{shop} in {}", m.timezone);
        }
    }

    #[test]
    fn opening_hours_follow_weekdays_and_exception_dates() {
        let m = manifest(
            r#"
shops:
  lyon:
    hours:
      mon: "09:00-19:00"
      tue: "09:00-19:00"
      wed: "09:00-19:00"
      thu: "09:00-19:00"
      fri: "09:00-19:00"
      sat: "10:00-18:00"
      sun: closed
    exceptions: {2026-12-24: "09:00-16:00", 2026-12-25: closed, 2026-12-27: "14:00-18:00"}
"#,
        );
        let s = schedule(&m, "lyon");
        // Paris is UTC+1 in December.
        let cases = [
            ("2026-12-01T07:59Z", None),
            (
                "2026-12-01T08:00Z",
                period("2026-12-01T08:00Z", "2026-12-01T18:00Z"),
            ),
            (
                "2026-12-01T17:59Z",
                period("2026-12-01T08:00Z", "2026-12-01T18:00Z"),
            ),
            ("2026-12-01T18:00Z", None),
            ("2026-12-05T08:30Z", None),
            (
                "2026-12-05T09:00Z",
                period("2026-12-05T09:00Z", "2026-12-05T17:00Z"),
            ),
            ("2026-12-06T12:00Z", None),
            // Christmas Eve closes early, Christmas is closed, a Sunday opens.
            (
                "2026-12-24T14:59Z",
                period("2026-12-24T08:00Z", "2026-12-24T15:00Z"),
            ),
            ("2026-12-24T15:00Z", None),
            ("2026-12-25T10:00Z", None),
            (
                "2026-12-27T13:00Z",
                period("2026-12-27T13:00Z", "2026-12-27T17:00Z"),
            ),
        ];
        for (at, expected) in cases {
            assert_eq!(s.open_period(t(at)), expected, "{at}");
        }
        let openings = [
            ("2026-12-01T07:00Z", "2026-12-01T08:00Z"),
            ("2026-12-01T08:00Z", "2026-12-02T08:00Z"),
            ("2026-12-24T15:00Z", "2026-12-26T09:00Z"),
            ("2026-12-26T17:00Z", "2026-12-27T13:00Z"),
            ("2026-12-27T17:00Z", "2026-12-28T08:00Z"),
        ];
        for (at, expected) in openings {
            assert_eq!(s.next_opening(t(at)), Some(t(expected)), "after {at}");
        }
    }

    #[test]
    fn overnight_opening_belongs_to_the_day_it_starts() {
        let m = manifest(
            r#"
shops:
  bar: {hours: {fri: "22:00-02:00", sat: "20:00-23:00"}}
"#,
        );
        let s = schedule(&m, "bar");
        let friday_night = period("2026-12-04T21:00Z", "2026-12-05T01:00Z");
        let cases = [
            // 00:30 on Friday: Thursday has no hours.
            ("2026-12-03T23:30Z", None),
            ("2026-12-04T20:59Z", None),
            ("2026-12-04T21:00Z", friday_night),
            // 01:00 on Saturday is still Friday's night.
            ("2026-12-05T00:00Z", friday_night),
            ("2026-12-05T01:00Z", None),
            (
                "2026-12-05T19:00Z",
                period("2026-12-05T19:00Z", "2026-12-05T22:00Z"),
            ),
            // Saturday's window does not cross midnight.
            ("2026-12-06T00:00Z", None),
        ];
        for (at, expected) in cases {
            assert_eq!(s.open_period(t(at)), expected, "{at}");
        }
        let openings = [
            ("2026-12-04T12:00Z", "2026-12-04T21:00Z"),
            ("2026-12-05T01:00Z", "2026-12-05T19:00Z"),
            ("2026-12-05T22:00Z", "2026-12-11T21:00Z"),
        ];
        for (at, expected) in openings {
            assert_eq!(s.next_opening(t(at)), Some(t(expected)), "after {at}");
        }
    }

    #[test]
    fn touching_periods_are_one_opening_with_one_closing_announcement() {
        let m = manifest(
            r#"
shops:
  late:
    hours: {fri: "18:00-00:00", sat: "00:00-03:00"}
    closing_announcement: {media: @ann, minutes_before: 30}
"#,
        );
        let s = schedule(&m, "late");
        let night = period("2026-12-04T17:00Z", "2026-12-05T02:00Z");
        for at in [
            "2026-12-04T17:00Z",
            "2026-12-04T22:59Z",
            "2026-12-04T23:00Z",
            "2026-12-05T01:59Z",
        ] {
            assert_eq!(s.open_period(t(at)), night, "{at}");
        }
        let openings = [
            ("2026-12-04T16:00Z", "2026-12-04T17:00Z"),
            ("2026-12-04T20:00Z", "2026-12-11T17:00Z"),
        ];
        for (at, expected) in openings {
            assert_eq!(s.next_opening(t(at)), Some(t(expected)), "after {at}");
        }
        let history = History::new(1);
        let cases = [
            ("2026-12-04T22:45Z", vec![]),
            ("2026-12-05T01:30Z", vec!["closing:2026-12-04".to_string()]),
        ];
        for (at, expected) in cases {
            let keys: Vec<String> = s
                .due_messages(t(at), &history)
                .into_iter()
                .map(|m| m.key)
                .collect();
            assert_eq!(keys, expected, "{at}");
        }
    }

    #[test]
    fn shop_without_hours_is_open_for_the_whole_local_day() {
        let m = manifest(
            r#"
shops:
  kiosk: {closing_announcement: {media: @ann, minutes_before: 30}}
"#,
        );
        let s = schedule(&m, "kiosk");
        let cases = [
            (
                "2026-12-01T12:00Z",
                period("2026-11-30T23:00Z", "2026-12-01T23:00Z"),
            ),
            // The spring-forward day lasts 23 hours, the fall-back day 25.
            (
                "2026-03-29T12:00Z",
                period("2026-03-28T23:00Z", "2026-03-29T22:00Z"),
            ),
            (
                "2026-10-25T12:00Z",
                period("2026-10-24T22:00Z", "2026-10-25T23:00Z"),
            ),
        ];
        for (at, expected) in cases {
            assert_eq!(s.open_period(t(at)), expected, "{at}");
        }
        assert_eq!(
            s.next_opening(t("2026-12-01T12:00Z")),
            Some(t("2026-12-01T23:00Z"))
        );
        // It never closes, so it never announces a closing.
        assert_eq!(s.due_messages(t("2026-12-01T22:45Z"), &History::new(1)), vec![]);
    }

    #[test]
    fn opening_hours_follow_dst_changes() {
        let m = manifest(
            r#"
shops:
  daily:
    hours:
      mon: "09:00-20:00"
      tue: "09:00-20:00"
      wed: "09:00-20:00"
      thu: "09:00-20:00"
      fri: "09:00-20:00"
      sat: "09:00-20:00"
      sun: "09:00-20:00"
  night:
    exceptions: {2026-03-29: "02:30-05:00", 2026-10-25: "02:30-04:00"}
"#,
        );
        let cases = [
            (
                "daily",
                "2026-03-27T12:00Z",
                period("2026-03-27T08:00Z", "2026-03-27T19:00Z"),
            ),
            (
                "daily",
                "2026-03-29T12:00Z",
                period("2026-03-29T07:00Z", "2026-03-29T18:00Z"),
            ),
            (
                "daily",
                "2026-03-30T12:00Z",
                period("2026-03-30T07:00Z", "2026-03-30T18:00Z"),
            ),
            (
                "daily",
                "2026-10-24T12:00Z",
                period("2026-10-24T07:00Z", "2026-10-24T18:00Z"),
            ),
            (
                "daily",
                "2026-10-25T12:00Z",
                period("2026-10-25T08:00Z", "2026-10-25T19:00Z"),
            ),
            // 02:30 does not exist on 29 March: the shop opens at 03:00 local.
            ("night", "2026-03-29T00:59Z", None),
            (
                "night",
                "2026-03-29T01:00Z",
                period("2026-03-29T01:00Z", "2026-03-29T03:00Z"),
            ),
            // 02:30 happens twice on 25 October: the shop opens at the first one.
            ("night", "2026-10-25T00:29Z", None),
            (
                "night",
                "2026-10-25T00:30Z",
                period("2026-10-25T00:30Z", "2026-10-25T03:00Z"),
            ),
            (
                "night",
                "2026-10-25T01:45Z",
                period("2026-10-25T00:30Z", "2026-10-25T03:00Z"),
            ),
            // Only its exception dates open.
            ("night", "2026-10-24T01:00Z", None),
        ];
        for (shop, at, expected) in cases {
            assert_eq!(schedule(&m, shop).open_period(t(at)), expected, "{shop} {at}");
        }
        let openings = [
            ("daily", "2026-03-28T19:00Z", "2026-03-29T07:00Z"),
            ("daily", "2026-10-24T18:00Z", "2026-10-25T08:00Z"),
            ("night", "2026-03-01T00:00Z", "2026-03-29T01:00Z"),
        ];
        for (shop, at, expected) in openings {
            assert_eq!(
                schedule(&m, shop).next_opening(t(at)),
                Some(t(expected)),
                "{shop} after {at}"
            );
        }
    }

    #[test]
    fn highest_priority_rule_wins_and_ties_go_to_the_first_listed() {
        let m = manifest(
            r#"
playlists:
  a: {items: [@m1]}
  b: {items: [@m2]}
  c: {items: [@m3]}
  d: {items: [@m4]}
  e: {items: [@m5]}
  f: {items: [@m6]}
shops:
  lyon: {tags: [main]}
  paris: {tags: [north]}
  nice: {}
schedule:
  - {playlist: a, shops: [all], priority: 1}
  - {playlist: b, shops: [tag:main], priority: 5}
  - {playlist: c, shops: [lyon], priority: 5}
  - {playlist: d, shops: [paris], priority: 9}
  - {playlist: e, shops: [lyon], days: [sat], priority: 7}
  - {playlist: f, shops: [all], days: [sat], priority: 7}
"#,
        );
        let tuesday = "2026-12-01T12:00Z";
        let saturday = "2026-12-05T12:00Z";
        let cases = [
            ("lyon", tuesday, "m2", "b", 1),
            ("lyon", saturday, "m5", "e", 4),
            ("paris", tuesday, "m4", "d", 3),
            ("paris", saturday, "m4", "d", 3),
            ("nice", tuesday, "m1", "a", 0),
            ("nice", saturday, "m6", "f", 5),
        ];
        for (shop, at, item, list, rule) in cases {
            let expected = Next::Music(MusicPick {
                media: media(item),
                playlist: list.to_string(),
                rule: Some(rule),
            });
            let s = schedule(&m, shop);
            assert_eq!(
                s.next_at_boundary(t(at), &History::new(1)),
                expected,
                "{shop} {at}"
            );
        }
    }

    #[test]
    fn christmas_playlist_runs_from_local_midnight_to_the_end_of_its_last_day() {
        let m = manifest(
            r#"
playlists:
  everyday: {items: [@m1, @m2]}
  christmas: {order: shuffle, items: [@m3, @m4]}
shops:
  lyon: {}
schedule:
  - {playlist: everyday, shops: [all]}
  - {playlist: christmas, shops: [lyon], dates: 2026-12-01..2026-12-24, priority: 10}
"#,
        );
        let s = schedule(&m, "lyon");
        let cases = [
            ("2026-11-30T22:59Z", "everyday"),
            ("2026-11-30T23:00Z", "christmas"),
            ("2026-12-12T12:00Z", "christmas"),
            ("2026-12-24T22:59Z", "christmas"),
            ("2026-12-24T23:00Z", "everyday"),
            ("2025-12-12T12:00Z", "everyday"),
        ];
        for (at, expected) in cases {
            assert_eq!(playlist_name(&s, at).as_deref(), Some(expected), "{at}");
        }
        assert_eq!(
            s.playlist_at(t("2026-12-12T12:00Z")),
            Some(("christmas".to_string(), vec![media("m3"), media("m4")]))
        );
        // A sleeping player wakes for the switch.
        let events = [
            ("2026-11-30T20:00Z", "2026-11-30T23:00Z"),
            ("2026-12-24T20:00Z", "2026-12-24T23:00Z"),
        ];
        for (at, expected) in events {
            assert_eq!(s.next_event_after(t(at)), Some(t(expected)), "after {at}");
        }
    }

    #[test]
    fn weekday_rules_match_the_local_weekday() {
        let m = manifest(
            r#"
playlists:
  week: {items: [@m1]}
  weekend: {items: [@m2]}
  twice: {items: [@m3]}
shops:
  lyon: {}
schedule:
  - {playlist: week, shops: [all], days: [mon-fri]}
  - {playlist: weekend, shops: [all], days: [sat-sun]}
  - {playlist: twice, shops: [all], days: [mon, thu], priority: 1}
"#,
        );
        let s = schedule(&m, "lyon");
        let cases = [
            ("2026-12-01T12:00Z", "week"),
            ("2026-12-03T12:00Z", "twice"),
            ("2026-12-04T22:59Z", "week"),
            // Still Friday in UTC, already Saturday in Paris.
            ("2026-12-04T23:00Z", "weekend"),
            ("2026-12-06T22:59Z", "weekend"),
            ("2026-12-06T23:00Z", "twice"),
        ];
        for (at, expected) in cases {
            assert_eq!(playlist_name(&s, at).as_deref(), Some(expected), "{at}");
        }
    }

    #[test]
    fn window_across_midnight_matches_after_midnight_of_its_start_day() {
        let m = manifest(
            r#"
playlists:
  day: {items: [@m1]}
  late: {items: [@m2]}
shops:
  bar: {}
schedule:
  - {playlist: day, shops: [all]}
  - {playlist: late, shops: [bar], days: [fri], time: "22:00-02:00", priority: 5}
"#,
        );
        let s = schedule(&m, "bar");
        let cases = [
            // Friday 00:30: Thursday's window does not apply.
            ("2026-12-03T23:30Z", "day"),
            ("2026-12-04T20:59Z", "day"),
            ("2026-12-04T21:00Z", "late"),
            // Saturday 01:00 belongs to Friday's window.
            ("2026-12-05T00:00Z", "late"),
            ("2026-12-05T00:59Z", "late"),
            ("2026-12-05T01:00Z", "day"),
            ("2026-12-05T21:00Z", "day"),
            // Sunday 01:00 would belong to Saturday's window.
            ("2026-12-06T00:00Z", "day"),
        ];
        for (at, expected) in cases {
            assert_eq!(playlist_name(&s, at).as_deref(), Some(expected), "{at}");
        }
    }

    #[test]
    fn window_edges_in_dst_changes_map_to_the_gap_end_and_the_first_occurrence() {
        let m = manifest(
            r#"
playlists:
  day: {items: [@m1]}
  early: {items: [@m2]}
shops:
  lyon: {}
schedule:
  - {playlist: day, shops: [all]}
  - {playlist: early, shops: [all], time: "02:30-04:00", priority: 5}
"#,
        );
        let s = schedule(&m, "lyon");
        let cases = [
            ("2026-03-28T01:29Z", "day"),
            ("2026-03-28T01:30Z", "early"),
            ("2026-03-28T02:59Z", "early"),
            ("2026-03-28T03:00Z", "day"),
            // Spring forward: 02:00 becomes 03:00, the window starts at 03:00 CEST.
            ("2026-03-29T00:59Z", "day"),
            ("2026-03-29T01:00Z", "early"),
            ("2026-03-29T01:59Z", "early"),
            ("2026-03-29T02:00Z", "day"),
            // Fall back: 03:00 becomes 02:00, the window starts at the first 02:30.
            ("2026-10-25T00:29Z", "day"),
            ("2026-10-25T00:30Z", "early"),
            ("2026-10-25T01:15Z", "early"),
            ("2026-10-25T02:59Z", "early"),
            ("2026-10-25T03:00Z", "day"),
        ];
        for (at, expected) in cases {
            assert_eq!(playlist_name(&s, at).as_deref(), Some(expected), "{at}");
        }
    }

    #[test]
    fn fallback_plays_when_open_and_no_rule_matches() {
        let program = |playback: &str| {
            format!(
                r#"
playlists:
  xmas: {{items: [@m1]}}
  calm: {{items: [@m3, @m2]}}
shops:
  lyon: {{hours: {{mon: "09:00-20:00", tue: "09:00-20:00"}}}}
schedule:
  - {{playlist: xmas, shops: [all], dates: 2026-12-20..2026-12-24}}
{playback}"#
            )
        };
        let with_fallback = manifest(&program("playback: {fallback_playlist: calm}\n"));
        let without = manifest(&program(""));
        let shop_only = "shops:\n  lyon: {hours: {tue: \"09:00-20:00\"}}\n";
        let no_music = manifest_with(&["ad1", "ann"], shop_only);
        let no_media = manifest_with(&[], shop_only);
        let all_music = ["m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8"];
        let tuesday = "2026-12-01T12:00Z";
        // (case, manifest, instant, expected playlist name and items)
        type Case<'a> = (&'a str, &'a Manifest, &'a str, Option<(&'a str, &'a [&'a str])>);
        let cases: [Case<'_>; 7] = [
            (
                "a rule matches",
                &with_fallback,
                "2026-12-22T12:00Z",
                Some(("xmas", &["m1"])),
            ),
            (
                "fallback playlist",
                &with_fallback,
                tuesday,
                Some(("calm", &["m3", "m2"])),
            ),
            (
                "all music",
                &without,
                tuesday,
                Some((FALLBACK_ALL_MUSIC, &all_music)),
            ),
            (
                "all media",
                &no_music,
                tuesday,
                Some((FALLBACK_ALL_MUSIC, &["ad1", "ann"])),
            ),
            ("no media", &no_media, tuesday, None),
            ("closed wednesday", &with_fallback, "2026-12-02T12:00Z", None),
            ("closed at night", &without, "2026-12-01T20:00Z", None),
        ];
        for (case, m, at, expected) in cases {
            let expected =
                expected.map(|(name, items)| (name.to_string(), items.iter().map(|i| media(i)).collect()));
            assert_eq!(schedule(m, "lyon").playlist_at(t(at)), expected, "{case}");
        }
    }

    #[test]
    fn closed_shop_gets_closed_with_its_reopening() {
        let m = manifest(
            r#"
shops:
  lyon: {hours: {mon: "09:00-20:00", tue: "09:00-20:00"}}
  never: {hours: {sun: closed}}
"#,
        );
        let no_media = manifest_with(&[], "shops:\n  lyon: {hours: {tue: \"09:00-20:00\"}}\n");
        let cases = [
            (
                "wednesday",
                &m,
                "lyon",
                "2026-12-02T12:00Z",
                Some("2026-12-07T08:00Z"),
            ),
            (
                "before opening",
                &m,
                "lyon",
                "2026-12-01T07:00Z",
                Some("2026-12-01T08:00Z"),
            ),
            ("never opens", &m, "never", "2026-12-01T12:00Z", None),
            (
                "open with nothing to play",
                &no_media,
                "lyon",
                "2026-12-01T12:00Z",
                Some("2026-12-08T08:00Z"),
            ),
        ];
        for (case, m, shop, at, reopens) in cases {
            let expected = Next::Closed {
                reopens: reopens.map(t),
            };
            assert_eq!(
                schedule(m, shop).next_at_boundary(t(at), &History::new(1)),
                expected,
                "{case}"
            );
        }
    }

    #[test]
    fn every_three_tracks_an_ad_plays() {
        let m = manifest(
            r#"
playlists:
  day: {items: [@m1, @m2]}
shops:
  lyon: {tags: [main], hours: {tue: "09:00-20:00"}}
schedule:
  - {playlist: day, shops: [all]}
ads:
  - {media: @ad2, every_tracks: 2, shops: [lyon], dates: 2027-01-01..2027-01-31}
  - {media: @ad1, every_tracks: 3, shops: [tag:main], start: cut}
"#,
        );
        let s = schedule(&m, "lyon");
        let at = t("2026-12-01T12:00Z");
        let mut history = History::new(1);
        let expected = ["m1", "m2", "m1", "ad1", "m2", "m1", "m2", "ad1", "m1", "m2"];
        for (step, want) in expected.into_iter().enumerate() {
            assert_eq!(
                s.due_messages(at, &history),
                vec![],
                "every-N ads are not due messages"
            );
            assert_eq!(run(&s, at, &mut history, 1), vec![want], "step {step}");
        }
        assert!(
            history.played.is_empty(),
            "every-N ads repeat: {:?}",
            history.played
        );
        let key = format!("ad-every:{}:3", media("ad1"));
        assert_eq!(history.every_tracks_last.get(&key), Some(&6));

        // The count is reached again, so the ad is what comes next, with its rule's mode.
        let mut history = History::new(1);
        history.music_started = 3;
        let expected = Next::Message(Message {
            key,
            media: media("ad1"),
            priority: Priority::ScheduledAd,
            source: MessageSource::EveryTracks { rule: 1 },
            mode: MessageMode {
                start: StartMode::Cut,
                ..m.program.playback.messages.ad
            },
            due: at,
        });
        assert_eq!(s.next_at_boundary(at, &history), expected);
        // Closed: no ad, however many tracks played.
        let wednesday = t("2026-12-02T12:00Z");
        assert!(matches!(
            s.next_at_boundary(wednesday, &history),
            Next::Closed { .. }
        ));
    }

    #[test]
    fn fixed_time_ads_are_due_within_grace_once() {
        let m = manifest(
            r#"
playlists:
  day: {items: [@m1]}
shops:
  lyon: {hours: {tue: "09:00-20:00", wed: "09:00-20:00"}}
schedule:
  - {playlist: day, shops: [all]}
ads:
  - {media: @ad1, at: ["12:00", "08:55"], shops: [lyon]}
  - {media: @ad2, at: ["12:01"], shops: [lyon], dates: 2026-12-02..2026-12-02, start: cut}
"#,
        );
        let s = schedule(&m, "lyon");
        let history = History::new(1);
        let cases: [(&str, &[(&str, &str)]); 10] = [
            // 08:55 local is before opening; the slot is still in grace at 09:00.
            ("2026-12-01T07:55Z", &[]),
            ("2026-12-01T08:00Z", &[("ad1", "2026-12-01T07:55Z")]),
            ("2026-12-01T08:05Z", &[]),
            ("2026-12-01T10:59Z", &[]),
            ("2026-12-01T11:00Z", &[("ad1", "2026-12-01T11:00Z")]),
            ("2026-12-01T11:09:59Z", &[("ad1", "2026-12-01T11:00Z")]),
            ("2026-12-01T11:10Z", &[]),
            // ad2's campaign is only Wednesday.
            ("2026-12-01T11:05Z", &[("ad1", "2026-12-01T11:00Z")]),
            (
                "2026-12-02T11:05Z",
                &[("ad1", "2026-12-02T11:00Z"), ("ad2", "2026-12-02T11:01Z")],
            ),
            ("2026-12-03T11:05Z", &[]),
        ];
        for (at, expected) in cases {
            let got: Vec<(&str, DateTime<Utc>)> = s
                .due_messages(t(at), &history)
                .into_iter()
                .map(|m| (media_name(m.media), m.due))
                .collect();
            let expected: Vec<(&str, DateTime<Utc>)> = expected.iter().map(|(n, due)| (*n, t(due))).collect();
            assert_eq!(got, expected, "{at}");
        }

        let at = t("2026-12-02T11:05Z");
        let Next::Message(first) = s.next_at_boundary(at, &history) else {
            panic!("the ad comes before music");
        };
        let planned = t("2026-12-02T11:00Z");
        assert_eq!(first.key, format!("ad-at:{}:2026-12-02T12:00", media("ad1")));
        assert_eq!(first.source, MessageSource::FixedTime { rule: 0, planned });
        assert_eq!(
            (first.priority, first.mode.start),
            (Priority::ScheduledAd, StartMode::Boundary)
        );
        let mut history = History::new(1);
        let played = run(&s, at, &mut history, 3);
        assert_eq!(played, ["ad1", "ad2", "m1"]);
        let second = t("2026-12-02T11:07Z");
        assert_eq!(s.due_messages(second, &history), vec![], "each slot plays once");
    }

    #[test]
    fn fixed_time_ads_in_dst_changes_map_to_the_gap_end_and_the_first_occurrence() {
        let m = manifest(
            r#"
shops:
  lyon: {}
ads:
  - {media: @ad1, at: ["02:30"], shops: [all]}
"#,
        );
        let s = schedule(&m, "lyon");
        let cases = [
            ("2026-03-28T01:30Z", Some(("2026-03-28T01:30Z", "2026-03-28"))),
            // 02:30 is skipped on 29 March: the slot is 03:00 CEST.
            ("2026-03-29T00:30Z", None),
            ("2026-03-29T00:59Z", None),
            ("2026-03-29T01:00Z", Some(("2026-03-29T01:00Z", "2026-03-29"))),
            ("2026-03-29T01:09Z", Some(("2026-03-29T01:00Z", "2026-03-29"))),
            ("2026-03-29T01:10Z", None),
            // 02:30 happens twice on 25 October: only the first is a slot.
            ("2026-10-25T00:30Z", Some(("2026-10-25T00:30Z", "2026-10-25"))),
            ("2026-10-25T01:30Z", None),
        ];
        for (at, expected) in cases {
            let got: Vec<(DateTime<Utc>, String)> = s
                .due_messages(t(at), &History::new(1))
                .into_iter()
                .map(|m| (m.due, m.key))
                .collect();
            let expected: Vec<(DateTime<Utc>, String)> = expected
                .into_iter()
                .map(|(due, date)| (t(due), format!("ad-at:{}:{date}T02:30", media("ad1"))))
                .collect();
            assert_eq!(got, expected, "{at}");
        }
        let mut history = History::new(1);
        assert_eq!(run(&s, t("2026-10-25T00:30Z"), &mut history, 2), ["ad1", "m1"]);
        assert_eq!(s.due_messages(t("2026-10-25T00:35Z"), &history), vec![]);
    }

    #[test]
    fn closing_announcement_is_due_from_minutes_before_until_closing_once() {
        let m = manifest(
            r#"
shops:
  lyon: {hours: {tue: "09:00-20:00"}, closing_announcement: {media: @ann, minutes_before: 30}}
  bar: {hours: {fri: "22:00-02:00"}, closing_announcement: {media: @ann, minutes_before: 30}}
playback: {messages: {closing: {start: cut, duck_db: -12}}}
"#,
        );
        let cases = [
            ("lyon", "2026-12-01T18:29Z", None),
            (
                "lyon",
                "2026-12-01T18:30Z",
                Some(("2026-12-01T18:30Z", "2026-12-01T19:00Z", "2026-12-01")),
            ),
            (
                "lyon",
                "2026-12-01T18:59Z",
                Some(("2026-12-01T18:30Z", "2026-12-01T19:00Z", "2026-12-01")),
            ),
            ("lyon", "2026-12-01T19:00Z", None),
            ("bar", "2026-12-05T00:29Z", None),
            // Saturday 01:30: the closing of Friday's night.
            (
                "bar",
                "2026-12-05T00:30Z",
                Some(("2026-12-05T00:30Z", "2026-12-05T01:00Z", "2026-12-04")),
            ),
        ];
        let mode = MessageMode {
            start: StartMode::Cut,
            after: AfterMode::Resume,
            duck_db: Some(-12.0),
        };
        for (shop, at, expected) in cases {
            let expected: Vec<Message> = expected
                .into_iter()
                .map(|(due, closes, date)| Message {
                    key: format!("closing:{date}"),
                    media: media("ann"),
                    priority: Priority::Announcement,
                    source: MessageSource::Closing { closes: t(closes) },
                    mode,
                    due: t(due),
                })
                .collect();
            let got = schedule(&m, shop).due_messages(t(at), &History::new(1));
            assert_eq!(got, expected, "{shop} {at}");
        }
        let s = schedule(&m, "lyon");
        let mut history = History::new(1);
        assert_eq!(run(&s, t("2026-12-01T18:31Z"), &mut history, 2), ["ann", "m1"]);
        assert_eq!(s.due_messages(t("2026-12-01T18:45Z"), &history), vec![]);
    }

    const INTERRUPTS: &str = r#"
playlists: {day: {items: [@m1]}}
shops:
  lyon: {tags: [main], hours: {tue: "09:00-20:00"}}
  paris: {}
schedule:
  - {playlist: day, shops: [all]}
ads:
  - {media: @ad1, at: ["11:00"], shops: [lyon]}
interrupts:
  - {id: flash, media: @ad2, level: ad, shops: [lyon],
     not_before: 2026-12-01T10:00:00Z, not_after: 2026-12-01T12:00:00Z}
  - {id: news, media: @ann, level: announcement, shops: [tag:main],
     not_before: 2026-12-01T09:30:00Z, start: boundary, after: next}
  - {id: alarm, media: @urg, level: urgent, shops: [all], not_before: 2026-12-01T10:00:00Z}
  - {id: elsewhere, media: @urg, level: urgent, shops: [paris]}
"#;

    #[test]
    fn interrupts_order_by_priority_within_their_windows() {
        let m = manifest(INTERRUPTS);
        let ad_key = format!("ad-at:{}:2026-12-01T11:00", media("ad1"));
        let cases = [
            ("lyon", "2026-12-01T09:00Z", vec![]),
            ("lyon", "2026-12-01T09:30Z", vec!["interrupt:news"]),
            (
                "lyon",
                "2026-12-01T10:05Z",
                vec![
                    "interrupt:alarm",
                    "interrupt:news",
                    "interrupt:flash",
                    ad_key.as_str(),
                ],
            ),
            (
                "lyon",
                "2026-12-01T12:00Z",
                vec!["interrupt:alarm", "interrupt:news", "interrupt:flash"],
            ),
            (
                "lyon",
                "2026-12-01T12:01Z",
                vec!["interrupt:alarm", "interrupt:news"],
            ),
            // Closed on Wednesday: the urgent one still plays, the play-now one waits.
            ("lyon", "2026-12-02T12:00Z", vec!["interrupt:alarm"]),
            // Without not_before an interrupt is due from publication.
            (
                "paris",
                "2026-12-01T12:00Z",
                vec!["interrupt:elsewhere", "interrupt:alarm"],
            ),
        ];
        for (shop, at, expected) in cases {
            let got: Vec<String> = schedule(&m, shop)
                .due_messages(t(at), &History::new(1))
                .into_iter()
                .map(|m| m.key)
                .collect();
            assert_eq!(got, expected, "{shop} {at}");
        }

        let due = schedule(&m, "lyon").due_messages(t("2026-12-01T10:05Z"), &History::new(1));
        let got: Vec<(Priority, StartMode, AfterMode, DateTime<Utc>)> = due
            .iter()
            .map(|m| (m.priority, m.mode.start, m.mode.after, m.due))
            .collect();
        let expected = [
            (
                Priority::Urgent,
                StartMode::Cut,
                AfterMode::Resume,
                t("2026-12-01T10:00Z"),
            ),
            (
                Priority::Announcement,
                StartMode::Boundary,
                AfterMode::Next,
                t("2026-12-01T09:30Z"),
            ),
            (
                Priority::Announcement,
                StartMode::Cut,
                AfterMode::Resume,
                t("2026-12-01T10:00Z"),
            ),
            (
                Priority::ScheduledAd,
                StartMode::Boundary,
                AfterMode::Resume,
                t("2026-12-01T10:00Z"),
            ),
        ];
        assert_eq!(got, expected);
        assert_eq!(
            due[0].source,
            MessageSource::Interrupt {
                id: "alarm".to_string()
            }
        );
        assert!(due[0].cuts() && !due[1].cuts());
    }

    #[test]
    fn interrupts_play_once_per_player() {
        let m = manifest(INTERRUPTS);
        let s = schedule(&m, "lyon");
        let mut history = History::new(1);
        let played = run(&s, t("2026-12-01T10:05Z"), &mut history, 6);
        assert_eq!(played, ["urg", "ann", "ad2", "ad1", "m1", "m1"]);
        let later = ["2026-12-01T11:00Z", "2026-12-08T11:00Z"];
        for at in later {
            assert_eq!(s.due_messages(t(at), &history), vec![], "{at}");
        }
        assert!(history.played.contains("interrupt:alarm"));
    }

    #[test]
    fn urgent_interrupts_play_while_closed_but_play_now_ones_wait() {
        let m = manifest(INTERRUPTS);
        let s = schedule(&m, "lyon");
        let wednesday = t("2026-12-02T12:00Z");
        let mut history = History::new(1);
        let cases = [("urg", "urgent"), ("closed", "then silence")];
        for (expected, case) in cases {
            assert_eq!(run(&s, wednesday, &mut history, 1), [expected], "{case}");
        }
        assert_eq!(
            s.next_at_boundary(wednesday, &history),
            Next::Closed {
                reopens: Some(t("2026-12-08T08:00Z"))
            }
        );
        // At the next opening the play-now interrupt comes first.
        assert_eq!(run(&s, t("2026-12-08T08:00Z"), &mut history, 2), ["ann", "m1"]);
    }

    const SHUFFLES: &str = r#"
playlists:
  two: {order: shuffle, items: [@m1, @m2]}
  three: {order: shuffle, items: [@m1, @m2, @m3]}
  eight: {order: shuffle, items: [@m1, @m2, @m3, @m4, @m5, @m6, @m7, @m8]}
  seq: {items: [@m3, @m1, @m2]}
shops: {two: {}, three: {}, eight: {}, seq: {}}
schedule:
  - {playlist: two, shops: [two]}
  - {playlist: three, shops: [three]}
  - {playlist: eight, shops: [eight]}
  - {playlist: seq, shops: [seq]}
"#;

    #[test]
    fn shuffle_plays_every_item_once_per_pass_and_never_twice_in_a_row() {
        let m = manifest(SHUFFLES);
        let cases = [("two", 2), ("three", 3), ("eight", 8)];
        for (shop, len) in cases {
            let s = schedule(&m, shop);
            let mut items = m.program.playlists[shop].items.clone();
            items.sort();
            for seed in 0..20 {
                let picks = music_picks(&s, seed, 30 * len);
                for (pass, chunk) in picks.chunks(len).enumerate() {
                    let mut chunk = chunk.to_vec();
                    chunk.sort();
                    assert_eq!(chunk, items, "{shop} seed {seed} pass {pass}");
                }
                let repeat = picks.windows(2).position(|w| w[0] == w[1]);
                assert_eq!(repeat, None, "{shop} seed {seed}");
            }
        }
    }

    #[test]
    fn shuffle_order_comes_from_the_seed_alone() {
        let m = manifest(SHUFFLES);
        let s = schedule(&m, "eight");
        let a = music_picks(&s, 7, 40);
        assert_eq!(a, music_picks(&s, 7, 40), "same seed, same order");
        assert_ne!(a, music_picks(&s, 8, 40), "another seed, another order");
        let passes: BTreeSet<&[MediaId]> = a.chunks(8).collect();
        assert!(passes.len() > 1, "each pass is shuffled anew");
        let firsts: BTreeSet<MediaId> = (0..20).map(|seed| music_picks(&s, seed, 1)[0]).collect();
        assert!(firsts.len() > 3, "players start in different places: {firsts:?}");
    }

    #[test]
    fn sequential_playlist_plays_in_listed_order_and_loops() {
        let m = manifest(SHUFFLES);
        let s = schedule(&m, "seq");
        let mut history = History::new(1);
        let played = run(&s, t("2026-12-01T12:00Z"), &mut history, 7);
        assert_eq!(played, ["m3", "m1", "m2", "m3", "m1", "m2", "m3"]);
        assert_eq!(history.playlist_cursor.get("seq"), Some(&7));
        assert_eq!(history.music_started, 7);
    }

    #[test]
    fn forget_before_drops_old_dated_keys_and_keeps_interrupts() {
        let ad = media("ad1");
        let cases = [
            ("interrupt:flash".to_string(), true),
            (format!("ad-at:{ad}:2026-11-28T12:00"), false),
            (format!("ad-at:{ad}:2026-11-29T23:55"), false),
            (format!("ad-at:{ad}:2026-11-30T00:05"), true),
            ("closing:2026-11-29".to_string(), false),
            ("closing:2026-11-30".to_string(), true),
            ("closing:2026-12-01".to_string(), true),
            ("something-else".to_string(), true),
        ];
        let mut history = History::new(1);
        history.played = cases.iter().map(|(key, _)| key.clone()).collect();
        history.forget_before(t("2026-12-01T10:00Z"));
        for (key, kept) in cases {
            assert_eq!(history.played.contains(&key), kept, "{key}");
        }
    }

    #[test]
    fn history_survives_a_serde_round_trip() {
        let m = manifest(WEEK_SHOP);
        let s = schedule(&m, "lyon");
        let mut history = History::new(42);
        run(&s, t("2026-12-01T18:40Z"), &mut history, 3);
        let text = serde_norway::to_string(&history).unwrap();
        let again: History = serde_norway::from_str(&text).unwrap();
        assert_eq!(again, history);
        assert!(again.played.contains("closing:2026-12-01"));
    }

    #[test]
    fn next_event_after_walks_the_day_in_order() {
        let m = manifest(
            r#"
playlists: {day: {items: [@m1]}, lunch: {items: [@m2]}}
shops:
  lyon:
    hours: {mon: "09:00-20:00", tue: "09:00-20:00"}
    closing_announcement: {media: @ann, minutes_before: 30}
  plain:
    hours: {mon: "09:00-20:00", tue: "09:00-20:00"}
    closing_announcement: {media: @ann, minutes_before: 30}
  never: {hours: {sun: closed}}
schedule:
  - {playlist: day, shops: [lyon]}
  - {playlist: lunch, shops: [lyon], days: [tue], time: "14:00-15:00"}
ads:
  - {media: @ad1, at: ["12:00"], shops: [lyon]}
interrupts:
  - {id: flash, media: @ad2, level: ad, shops: [lyon], not_before: 2026-12-01T16:30:00Z}
"#,
        );
        let cases: [(&str, &[&str]); 2] = [
            (
                "lyon",
                &[
                    "2026-12-01T08:00Z", // opens
                    "2026-12-01T11:00Z", // fixed-time ad
                    "2026-12-01T13:00Z", // lunch starts
                    "2026-12-01T14:00Z", // lunch ends
                    "2026-12-01T16:30Z", // interrupt
                    "2026-12-01T18:30Z", // closing announcement
                    "2026-12-01T19:00Z", // closes
                    // Wednesday's ad slot is skipped: closed.
                    "2026-12-07T08:00Z",
                ],
            ),
            (
                "plain",
                &[
                    "2026-12-01T08:00Z",
                    "2026-12-01T18:30Z",
                    "2026-12-01T19:00Z",
                    "2026-12-07T08:00Z",
                ],
            ),
        ];
        for (shop, expected) in cases {
            let s = schedule(&m, shop);
            let mut at = t("2026-12-01T06:00Z");
            for want in expected {
                let next = s.next_event_after(at);
                assert_eq!(next, Some(t(want)), "{shop} after {at}");
                at = t(want);
            }
        }
        let never = schedule(&m, "never");
        assert_eq!(never.next_event_after(t("2026-12-01T06:00Z")), None);
    }
    #[test]
    fn music_at_names_the_rule_and_the_rules_it_ties_with() {
        let m = manifest(
            r#"
playlists:
  day: {items: [@m1]}
  xmas: {items: [@m2]}
  promo: {items: [@m3]}
  calm: {items: [@m4]}
shops:
  lyon: {tags: [main], hours: {mon: "09:00-20:00", tue: "09:00-20:00", sat: "09:00-20:00"}}
  nice: {}
schedule:
  - {playlist: day, shops: [all]}
  - {playlist: xmas, shops: [all], dates: 2026-12-01..2026-12-24, priority: 10}
  - {playlist: promo, shops: [tag:main], days: [tue], time: "14:00-16:00", priority: 10}
  - {playlist: xmas, shops: [lyon], days: [tue], priority: 10}
  - {playlist: calm, shops: [nice], days: [sat], priority: 0}
"#,
        );
        let choice = |playlist: &str, rule: Option<usize>, tied: &[usize]| {
            Some(MusicChoice {
                playlist: playlist.to_string(),
                rule,
                tied_rules: tied.to_vec(),
            })
        };
        // (shop, instant, expected)
        let cases = [
            ("lyon", "2026-11-23T12:00Z", choice("day", Some(0), &[])),
            // Rule 3 names the same playlist as rule 1: no conflict.
            ("lyon", "2026-12-01T12:00Z", choice("xmas", Some(1), &[])),
            ("lyon", "2026-12-01T13:30Z", choice("xmas", Some(1), &[2])),
            ("lyon", "2026-12-01T14:59Z", choice("xmas", Some(1), &[2])),
            ("lyon", "2026-12-01T15:00Z", choice("xmas", Some(1), &[])),
            ("lyon", "2026-12-01T19:30Z", None),
            ("nice", "2026-12-01T13:30Z", choice("xmas", Some(1), &[])),
            ("nice", "2026-11-28T12:00Z", choice("day", Some(0), &[4])),
        ];
        for (shop, at, expected) in cases {
            assert_eq!(schedule(&m, shop).music_at(t(at)), expected, "{shop} {at}");
        }
    }

    #[test]
    fn music_timeline_covers_the_range_with_merged_spans() {
        let m = manifest(
            r#"
playlists:
  day: {items: [@m1]}
  lunch: {items: [@m2]}
  late: {items: [@m3]}
shops:
  lyon: {hours: {mon: "09:00-20:00", tue: "22:00-02:00"}}
  always: {}
schedule:
  - {playlist: day, shops: [all]}
  - {playlist: lunch, shops: [all], days: [mon], time: "12:00-14:00", priority: 1}
  - {playlist: late, shops: [all], time: "23:30-00:30", priority: 1}
"#,
        );
        let span = |start: &str, end: &str, playlist: Option<(&str, usize)>| MusicSpan {
            start: t(start),
            end: t(end),
            choice: playlist.map(|(p, rule)| MusicChoice {
                playlist: p.to_string(),
                rule: Some(rule),
                tied_rules: Vec::new(),
            }),
        };
        // Monday 2026-11-30 and Tuesday; Paris is UTC+1.
        let cases: [(&str, &str, &str, Vec<MusicSpan>); 4] = [
            (
                "lyon",
                "2026-11-29T23:00Z",
                "2026-12-01T23:00Z",
                vec![
                    span("2026-11-29T23:00Z", "2026-11-30T08:00Z", None),
                    span("2026-11-30T08:00Z", "2026-11-30T11:00Z", Some(("day", 0))),
                    span("2026-11-30T11:00Z", "2026-11-30T13:00Z", Some(("lunch", 1))),
                    span("2026-11-30T13:00Z", "2026-11-30T19:00Z", Some(("day", 0))),
                    span("2026-11-30T19:00Z", "2026-12-01T21:00Z", None),
                    span("2026-12-01T21:00Z", "2026-12-01T22:30Z", Some(("day", 0))),
                    span("2026-12-01T22:30Z", "2026-12-01T23:00Z", Some(("late", 2))),
                ],
            ),
            // The overnight opening and the late window run past the range's start.
            (
                "lyon",
                "2026-12-01T23:00Z",
                "2026-12-02T03:00Z",
                vec![
                    span("2026-12-01T23:00Z", "2026-12-01T23:30Z", Some(("late", 2))),
                    span("2026-12-01T23:30Z", "2026-12-02T01:00Z", Some(("day", 0))),
                    span("2026-12-02T01:00Z", "2026-12-02T03:00Z", None),
                ],
            ),
            (
                "always",
                "2026-11-30T10:00Z",
                "2026-11-30T12:00Z",
                vec![
                    span("2026-11-30T10:00Z", "2026-11-30T11:00Z", Some(("day", 0))),
                    span("2026-11-30T11:00Z", "2026-11-30T12:00Z", Some(("lunch", 1))),
                ],
            ),
            ("always", "2026-11-30T12:00Z", "2026-11-30T12:00Z", vec![]),
        ];
        for (shop, from, to, expected) in cases {
            let got = schedule(&m, shop).music_timeline(t(from), t(to));
            assert_eq!(got, expected, "{shop} {from}..{to}");
        }
    }

    #[test]
    fn conflicts_are_the_spans_where_top_rules_tie() {
        let m = manifest(
            r#"
playlists:
  day: {items: [@m1]}
  xmas: {items: [@m2]}
  promo: {items: [@m3]}
shops:
  lyon: {hours: {mon: "09:00-20:00", tue: "09:00-20:00"}}
  nice: {hours: {mon: "09:00-20:00", tue: "09:00-20:00"}}
schedule:
  - {playlist: day, shops: [all]}
  - {playlist: xmas, shops: [all], dates: 2026-12-01..2026-12-24, priority: 5}
  - {playlist: promo, shops: [lyon], time: "10:00-12:00", priority: 5}
  - {playlist: promo, shops: [nice], time: "10:00-12:00", priority: 6}
"#,
        );
        let week = (t("2026-11-29T23:00Z"), t("2026-12-06T23:00Z"));
        let cases = [
            (
                "lyon",
                vec![Conflict {
                    start: t("2026-12-01T09:00Z"),
                    end: t("2026-12-01T11:00Z"),
                    priority: 5,
                    rules: vec![1, 2],
                }],
            ),
            // Higher priority: no tie.
            ("nice", vec![]),
        ];
        for (shop, expected) in cases {
            assert_eq!(schedule(&m, shop).conflicts(week.0, week.1), expected, "{shop}");
        }
    }

    #[test]
    fn local_times_follow_the_manifest_zone_and_its_dst() {
        let m = manifest("shops: {lyon: {}}\n");
        let s = schedule(&m, "lyon");
        let date = |d: &str| NaiveDate::parse_from_str(d, "%Y-%m-%d").unwrap();
        let time = |h: u32, min: u32| NaiveTime::from_hms_opt(h, min, 0).unwrap();
        // (local date, local time, instant): winter, summer, the spring gap, the autumn fold
        let cases = [
            ("2026-12-01", time(9, 0), "2026-12-01T08:00Z"),
            ("2026-07-01", time(9, 0), "2026-07-01T07:00Z"),
            ("2026-03-29", time(2, 30), "2026-03-29T01:00Z"),
            ("2026-10-25", time(2, 30), "2026-10-25T00:30Z"),
        ];
        for (d, tm, instant) in cases {
            assert_eq!(s.instant_of(date(d), tm), t(instant), "{d} {tm}");
        }
        assert_eq!(s.local_date(t("2026-12-01T23:30Z")), date("2026-12-02"));
        assert_eq!(
            local_datetime("Europe/Paris", t("2026-07-01T07:00Z")).unwrap(),
            date("2026-07-01").and_time(time(9, 0))
        );
        assert_eq!(
            local_datetime("Mars/Olympus", t("2026-07-01T07:00Z")),
            Err(ScheduleError::BadTimeZone("Mars/Olympus".to_string()))
        );
        assert!(s.targets_shop(&[ShopTarget::All]));
        assert!(!s.targets_shop(&["tag:main".parse().unwrap()]));
    }
}
