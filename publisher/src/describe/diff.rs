//! A diff of two manifests in words: what changed in media, playlists, schedule,
//! ads, messages, shops, playback and time zone, naming media by title and rules
//! as sentences. Shared by the CLI `diff`, the history pages and the publish page.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;

use chrono::{NaiveDate, Timelike};
use skycast_schema::{
    AdRule, AfterMode, ClosingAnnouncement, DailyHours, DateRange, DayRange, Instant, Interrupt,
    InterruptLevel, Manifest, MediaEntry, MediaId, MessageMode, PlayOrder, Playback, ScheduleRule, Shop,
    ShopTarget, StartMode, TimeWindow, Weekday,
};

/// How a line of a diff differs between the two versions. Serialised in lower case,
/// the names of the web UI's `.diff` style classes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    Added,
    Removed,
    Changed,
}

/// One sentence of a diff; media are named by title, never by hash.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DiffLine {
    pub change: Change,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DiffSection {
    pub title: String,
    pub lines: Vec<DiffLine>,
}

/// What differs between two manifests, in words a marketing person and an auditor
/// both read. Sections in a stable order: media, playlists, schedule, ads, messages
/// (interrupts), shops, playback, timezone. Empty sections are omitted; an empty
/// Vec means same content (version, author and dates aside).
pub fn diff(a: &Manifest, b: &Manifest) -> Vec<DiffSection> {
    let replaced = replaced_audio(a, b);
    let sections = [
        ("media", media_lines(a, b, &replaced)),
        ("playlists", playlist_lines(a, b, &replaced)),
        ("schedule", schedule_lines(a, b)),
        ("ads", ad_lines(a, b, &replaced)),
        ("messages", interrupt_lines(a, b, &replaced)),
        ("shops", shop_lines(a, b, &replaced)),
        (
            "playback",
            playback_lines(&a.program.playback, &b.program.playback),
        ),
        ("timezone", timezone_lines(a, b)),
    ];
    sections
        .into_iter()
        .filter(|(_, lines)| !lines.is_empty())
        .map(|(title, lines)| DiffSection {
            title: title.to_string(),
            lines,
        })
        .collect()
}

/// The diff as text for the CLI: a header naming both versions, then each section
/// with `+` added, `-` removed and `~` changed lines, or `same content`.
pub fn render_diff(a: &Manifest, b: &Manifest) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "version {} ({} by {}) -> version {} ({} by {})",
        a.version(),
        a.published_at,
        a.published_by,
        b.version(),
        b.published_at,
        b.published_by
    );
    let sections = diff(a, b);
    if sections.is_empty() {
        out.push_str("same content\n");
    }
    for section in sections {
        let _ = writeln!(out, "{}:", section.title);
        for line in section.lines {
            let sign = match line.change {
                Change::Added => '+',
                Change::Removed => '-',
                Change::Changed => '~',
            };
            let _ = writeln!(out, "  {sign} {}", line.text);
        }
    }
    out
}

fn added(text: String) -> DiffLine {
    DiffLine {
        change: Change::Added,
        text,
    }
}

fn removed(text: String) -> DiffLine {
    DiffLine {
        change: Change::Removed,
        text,
    }
}

fn changed(text: String) -> DiffLine {
    DiffLine {
        change: Change::Changed,
        text,
    }
}

fn quote(text: &str) -> String {
    format!("\"{text}\"")
}

fn duration_text(ms: u64) -> String {
    format!("{}:{:02}", ms / 60_000, (ms / 1000) % 60)
}

/// Names media for one side of the diff. An id replaced by new audio is only listed
/// in the other manifest (both carry the same title), hence the second lookup.
struct Titles<'m> {
    own: &'m Manifest,
    other: &'m Manifest,
}

impl Titles<'_> {
    fn of(&self, id: &MediaId) -> String {
        self.own
            .media_entry(id)
            .or_else(|| self.other.media_entry(id))
            .map_or_else(|| format!("media {}", id.short()), |e| quote(&e.title))
    }
}

/// Old id to new id of media whose file changed while title, artist and kind stayed:
/// people hear "the same track", so the rest of the diff treats both ids as one and
/// the media section says the audio was replaced.
fn replaced_audio(a: &Manifest, b: &Manifest) -> BTreeMap<MediaId, MediaId> {
    let in_a: BTreeSet<MediaId> = a.media.iter().map(|e| e.id).collect();
    let in_b: BTreeSet<MediaId> = b.media.iter().map(|e| e.id).collect();
    let mut arrived: Vec<&MediaEntry> = b.media.iter().filter(|e| !in_a.contains(&e.id)).collect();
    let mut out = BTreeMap::new();
    for gone in a.media.iter().filter(|e| !in_b.contains(&e.id)) {
        let same = arrived
            .iter()
            .position(|n| n.title == gone.title && n.artist == gone.artist && n.kind == gone.kind);
        if let Some(i) = same {
            out.insert(gone.id, arrived.remove(i).id);
        }
    }
    out
}

/// The id `b` knows a media of `a` by.
fn current_id(replaced: &BTreeMap<MediaId, MediaId>, id: MediaId) -> MediaId {
    replaced.get(&id).copied().unwrap_or(id)
}

fn describe_media(e: &MediaEntry) -> String {
    format!(
        "{}{} ({}, {})",
        quote(&e.title),
        by_artist(e),
        e.kind.as_str(),
        duration_text(e.duration_ms)
    )
}

fn by_artist(e: &MediaEntry) -> String {
    e.artist
        .as_deref()
        .map(|a| format!(" by {a}"))
        .unwrap_or_default()
}

fn media_lines(a: &Manifest, b: &Manifest, replaced: &BTreeMap<MediaId, MediaId>) -> Vec<DiffLine> {
    let in_a: BTreeSet<MediaId> = a.media.iter().map(|e| e.id).collect();
    let in_b: BTreeSet<MediaId> = b.media.iter().map(|e| e.id).collect();
    let replacements: BTreeSet<MediaId> = replaced.values().copied().collect();
    let mut lines = Vec::new();
    for e in b
        .media
        .iter()
        .filter(|e| !in_a.contains(&e.id) && !replacements.contains(&e.id))
    {
        lines.push(added(format!("{} added", describe_media(e))));
    }
    for e in a
        .media
        .iter()
        .filter(|e| !in_b.contains(&e.id) && !replaced.contains_key(&e.id))
    {
        lines.push(removed(format!("{} removed", describe_media(e))));
    }
    for old in &a.media {
        let new = match replaced.get(&old.id) {
            Some(new_id) => b.media_entry(new_id),
            None => b.media_entry(&old.id),
        };
        let Some(new) = new else { continue };
        if new.id != old.id {
            let length = if old.duration_ms == new.duration_ms {
                duration_text(new.duration_ms)
            } else {
                format!(
                    "{} → {}",
                    duration_text(old.duration_ms),
                    duration_text(new.duration_ms)
                )
            };
            lines.push(changed(format!(
                "{}{}: audio file replaced ({length})",
                quote(&new.title),
                by_artist(new)
            )));
        } else if old != new {
            lines.push(changed(media_change(old, new)));
        }
    }
    lines
}

/// The same file described differently: a rename, another artist or kind. Size,
/// length and loudness come from the file, so they only differ in a hand-made
/// manifest; the auditor still sees it.
fn media_change(old: &MediaEntry, new: &MediaEntry) -> String {
    let artist = |e: &MediaEntry| e.artist.as_deref().map_or_else(|| "none".to_string(), quote);
    let loudness = |e: &MediaEntry| {
        e.loudness_lufs
            .map_or_else(|| "not measured".to_string(), |l| format!("{l} LUFS"))
    };
    let mut parts = Vec::new();
    if old.artist != new.artist {
        parts.push(format!("artist {} → {}", artist(old), artist(new)));
    }
    if old.kind != new.kind {
        parts.push(format!("kind {} → {}", old.kind.as_str(), new.kind.as_str()));
    }
    if old.duration_ms != new.duration_ms {
        parts.push(format!(
            "length {} → {}",
            duration_text(old.duration_ms),
            duration_text(new.duration_ms)
        ));
    }
    if old.size != new.size {
        parts.push(format!("size {} → {} bytes", old.size, new.size));
    }
    if old.loudness_lufs != new.loudness_lufs {
        parts.push(format!("loudness {} → {}", loudness(old), loudness(new)));
    }
    if old.title != new.title {
        let subject = format!("{} renamed {}", quote(&old.title), quote(&new.title));
        std::iter::once(subject)
            .chain(parts)
            .collect::<Vec<_>>()
            .join(", ")
    } else {
        format!("{}: {}", quote(&new.title), parts.join(", "))
    }
}

fn tracks(n: usize) -> String {
    if n == 1 {
        "1 track".to_string()
    } else {
        format!("{n} tracks")
    }
}

/// The first few titles of a new playlist: enough to recognise it, short enough for a line.
fn track_list(titles: &Titles, items: &[MediaId]) -> String {
    const SHOWN: usize = 5;
    let list: Vec<String> = items.iter().take(SHOWN).map(|id| titles.of(id)).collect();
    let list = list.join(", ");
    match items.len().checked_sub(SHOWN) {
        Some(more) if more > 0 => format!("{list} and {more} more"),
        _ => list,
    }
}

fn playlist_lines(a: &Manifest, b: &Manifest, replaced: &BTreeMap<MediaId, MediaId>) -> Vec<DiffLine> {
    let old_titles = Titles { own: a, other: b };
    let new_titles = Titles { own: b, other: a };
    let mut names: BTreeSet<&String> = a.program.playlists.keys().collect();
    names.extend(b.program.playlists.keys());
    let mut lines = Vec::new();
    for name in names {
        match (a.program.playlists.get(name), b.program.playlists.get(name)) {
            (None, Some(new)) => {
                let order = match new.order {
                    PlayOrder::Shuffle => "shuffle",
                    PlayOrder::Sequential => "in order",
                };
                lines.push(added(format!(
                    "playlist {} created with {} ({order}): {}",
                    quote(name),
                    tracks(new.items.len()),
                    track_list(&new_titles, &new.items)
                )));
            }
            (Some(_), None) => lines.push(removed(format!("playlist {} deleted", quote(name)))),
            (Some(old), Some(new)) => {
                let prefix = format!("playlist {}", quote(name));
                let old_items: Vec<MediaId> = old.items.iter().map(|id| current_id(replaced, *id)).collect();
                if old_items.len() != new.items.len() {
                    lines.push(changed(format!(
                        "{prefix}: {} → {}",
                        tracks(old_items.len()),
                        tracks(new.items.len())
                    )));
                }
                let items = ItemChanges::between(&old_items, &new.items);
                for i in items.removed {
                    let title = old_titles.of(&old.items[i]);
                    lines.push(removed(format!("{prefix}: {title} removed")));
                }
                for i in items.added {
                    let title = new_titles.of(&new.items[i]);
                    lines.push(added(format!("{prefix}: {title} added at position {}", i + 1)));
                }
                if items.reordered {
                    lines.push(changed(format!("{prefix}: order changed")));
                }
                if old.order != new.order {
                    let now = match new.order {
                        PlayOrder::Shuffle => "now plays in shuffle order",
                        PlayOrder::Sequential => "now plays in order",
                    };
                    lines.push(changed(format!("{prefix}: {now}")));
                }
            }
            (None, None) => {}
        }
    }
    lines
}

/// Items of a list that may repeat a track: which positions left, which arrived, and
/// whether the tracks in both lists play in another order.
#[derive(Debug, PartialEq)]
struct ItemChanges {
    /// Indices into the old list.
    removed: Vec<usize>,
    /// Indices into the new list.
    added: Vec<usize>,
    reordered: bool,
}

impl ItemChanges {
    fn between(old: &[MediaId], new: &[MediaId]) -> ItemChanges {
        fn counts(items: &[MediaId]) -> HashMap<MediaId, usize> {
            let mut counts = HashMap::new();
            for id in items {
                *counts.entry(*id).or_insert(0) += 1;
            }
            counts
        }
        // The first occurrences a track has on both sides are kept; extra ones are
        // the added (or removed) copies.
        let keep = |items: &[MediaId], other: &[MediaId]| {
            let mut left = counts(other);
            let mut kept = Vec::new();
            let mut extra = Vec::new();
            for (i, id) in items.iter().enumerate() {
                match left.get_mut(id) {
                    Some(n) if *n > 0 => {
                        *n -= 1;
                        kept.push(*id);
                    }
                    _ => extra.push(i),
                }
            }
            (kept, extra)
        };
        let (kept_old, removed) = keep(old, new);
        let (kept_new, added) = keep(new, old);
        ItemChanges {
            removed,
            added,
            reordered: kept_old != kept_new,
        }
    }
}

/// A rule in words, as clauses, so an edited rule can name only what it was before.
struct Described {
    clauses: Vec<Clause>,
}

struct Clause {
    before: &'static str,
    text: String,
    after: &'static str,
    /// Defaults (no dates, priority 0) are left out of the sentence but still
    /// named in "was ..." when a rule gains them.
    shown: bool,
}

impl Described {
    fn new(subject: String) -> Described {
        Described {
            clauses: vec![Clause {
                before: "",
                text: subject,
                after: "",
                shown: true,
            }],
        }
    }

    fn then(mut self, before: &'static str, text: String, shown: bool) -> Described {
        self.clauses.push(Clause {
            before,
            text,
            after: "",
            shown,
        });
        self
    }

    fn in_parentheses(mut self, text: String) -> Described {
        self.clauses.push(Clause {
            before: " (",
            text,
            after: ")",
            shown: true,
        });
        self
    }

    fn text(&self) -> String {
        let mut out = String::new();
        for c in self.clauses.iter().filter(|c| c.shown) {
            if !out.is_empty() {
                out.push_str(c.before);
            }
            out.push_str(&c.text);
            out.push_str(c.after);
        }
        out
    }

    /// What `old` said that this one does not.
    fn differences_from<'d>(&self, old: &'d Described) -> Vec<&'d str> {
        old.clauses
            .iter()
            .zip(&self.clauses)
            .filter(|(o, n)| o.text != n.text)
            .map(|(o, _)| o.text.as_str())
            .collect()
    }

    fn as_change_from(&self, old: &Described) -> String {
        let was = self.differences_from(old);
        if was.is_empty() {
            // e.g. an `after` given to an ad that waits for the end of the track.
            format!("{} (written differently, same effect)", self.text())
        } else {
            format!("{} (was {})", self.text(), was.join(", "))
        }
    }
}

/// Diffs two rule lists: equal rules match (in any order); of the rest, a removed and
/// an added rule that `same_rule` accepts (given how many clauses differ) show as one
/// changed rule, the others as removed and added.
fn rule_lines<T: PartialEq>(
    old: &[T],
    new: &[T],
    describe_old: impl Fn(&T) -> Described,
    describe_new: impl Fn(&T) -> Described,
    same_rule: impl Fn(&T, &T, usize) -> bool,
    reorder_text: &str,
) -> Vec<DiffLine> {
    let mut old_used = vec![false; old.len()];
    let mut matched = Vec::new();
    let mut new_left = Vec::new();
    for (j, rule) in new.iter().enumerate() {
        match (0..old.len()).find(|&i| !old_used[i] && old[i] == *rule) {
            Some(i) => {
                old_used[i] = true;
                matched.push(i);
            }
            None => new_left.push(j),
        }
    }
    let old_left: Vec<usize> = (0..old.len()).filter(|&i| !old_used[i]).collect();
    let old_described: Vec<Described> = old_left.iter().map(|&i| describe_old(&old[i])).collect();
    let new_described: Vec<Described> = new_left.iter().map(|&j| describe_new(&new[j])).collect();
    let mut new_paired = vec![false; new_left.len()];
    let mut changes = Vec::new();
    let mut gone = Vec::new();
    for (k, &i) in old_left.iter().enumerate() {
        let best = (0..new_left.len())
            .filter(|&l| !new_paired[l])
            .map(|l| (l, new_described[l].differences_from(&old_described[k]).len()))
            .filter(|&(l, differing)| same_rule(&old[i], &new[new_left[l]], differing))
            .min_by_key(|&(_, differing)| differing);
        match best {
            Some((l, _)) => {
                new_paired[l] = true;
                changes.push(changed(new_described[l].as_change_from(&old_described[k])));
            }
            None => gone.push(removed(old_described[k].text())),
        }
    }
    let mut lines: Vec<DiffLine> = new_described
        .iter()
        .zip(&new_paired)
        .filter(|(_, paired)| !**paired)
        .map(|(d, _)| added(d.text()))
        .collect();
    lines.extend(gone);
    lines.extend(changes);
    // Rules are matched in any order, yet the resolver reads them in order (the
    // first every-N-tracks ad due wins): a pure reordering still changes content.
    if matched.windows(2).any(|w| w[0] > w[1]) {
        lines.push(changed(reorder_text.to_string()));
    }
    lines
}

fn days_text(days: Option<&[DayRange]>) -> String {
    match days {
        None => "every day".to_string(),
        Some([]) => "on no day".to_string(),
        Some(ranges) => ranges
            .iter()
            .map(|r| {
                if r.first == r.last {
                    r.first.short_name().to_string()
                } else {
                    format!("{}–{}", r.first.short_name(), r.last.short_name())
                }
            })
            .collect::<Vec<_>>()
            .join(", "),
    }
}

fn window_text(w: &TimeWindow) -> String {
    format!("{}–{}", w.start, w.end)
}

fn dates_text(dates: Option<&DateRange>) -> String {
    match dates {
        None => "on any date".to_string(),
        Some(r) if r.first == r.last => format!("on {}", r.first),
        Some(r) => format!("from {} to {}", r.first, r.last),
    }
}

/// Shop targets in words: `all_shops` (however the caller says it) when one of
/// them is `all`, else the targets as the planning writes them (`main, tag:pilot`).
/// Diff lines, commit messages and the web pages all say targets this way.
pub fn shops_text(targets: &[ShopTarget], all_shops: &str) -> String {
    if targets.contains(&ShopTarget::All) {
        all_shops.to_string()
    } else {
        ShopTarget::join(targets)
    }
}

/// `in all shops`, `in shop main`, `in shops tag:pilot`, `in shops main, east`.
fn in_shops_text(targets: &[ShopTarget]) -> String {
    match targets {
        _ if targets.contains(&ShopTarget::All) => format!("in {}", shops_text(targets, "all shops")),
        [ShopTarget::Shop(shop)] => format!("in shop {shop}"),
        _ => format!("in shops {}", shops_text(targets, "all shops")),
    }
}

/// Instants in UTC, said so: the publisher does not carry the time zone database.
fn instant_text(at: &Instant) -> String {
    if at.0.second() == 0 {
        at.0.format("%Y-%m-%d %H:%M UTC").to_string()
    } else {
        at.0.format("%Y-%m-%d %H:%M:%S UTC").to_string()
    }
}

fn mode_text(mode: &MessageMode) -> String {
    match (mode.start, mode.duck_db) {
        (StartMode::Boundary, _) => "waits for the end of the track".to_string(),
        (StartMode::Cut, Some(db)) => format!("plays over the music lowered by {} dB", db.abs()),
        (StartMode::Cut, None) => {
            let then = match mode.after {
                AfterMode::Resume => "resumes it",
                AfterMode::Next => "plays the next track",
                AfterMode::Restart => "restarts the track",
            };
            format!("cuts the music, then {then}")
        }
    }
}

fn describe_schedule_rule(rule: &ScheduleRule) -> Described {
    Described::new(format!("playlist {} plays", quote(&rule.playlist)))
        .then(" ", in_shops_text(&rule.shops), true)
        .then(", ", days_text(rule.days.as_deref()), true)
        .then(
            ", ",
            rule.time.as_ref().map_or_else(|| "all day".into(), window_text),
            true,
        )
        .then(", ", dates_text(rule.dates.as_ref()), rule.dates.is_some())
        .then(", ", format!("priority {}", rule.priority), rule.priority != 0)
}

/// How many clauses may differ for an edited rule to still read as the same rule.
const MAX_EDITED_CLAUSES: usize = 2;

fn schedule_lines(a: &Manifest, b: &Manifest) -> Vec<DiffLine> {
    rule_lines(
        &a.program.schedule,
        &b.program.schedule,
        describe_schedule_rule,
        describe_schedule_rule,
        |old, new, differing| old.playlist == new.playlist && differing <= MAX_EDITED_CLAUSES,
        "schedule rules listed in another order",
    )
}

fn describe_ad(ad: &AdRule<MediaId>, titles: &Titles) -> Described {
    let when = match (ad.every_tracks, &ad.at) {
        (Some(1), _) => "after every track".to_string(),
        (Some(n), _) => format!("every {n} tracks"),
        (None, Some(times)) => {
            let times: Vec<String> = times.iter().map(ToString::to_string).collect();
            format!("at {}", times.join(", "))
        }
        (None, None) => "never".to_string(),
    };
    let kind_mode = titles.own.program.playback.messages.ad;
    let mode = kind_mode.with_overrides(ad.start, ad.after);
    Described::new(format!("ad {}", titles.of(&ad.media)))
        .then(" ", when, true)
        .then(" ", in_shops_text(&ad.shops), true)
        .then(", ", dates_text(ad.dates.as_ref()), ad.dates.is_some())
        .then(", ", mode_text(&mode), true)
}

/// `a`'s rules with replaced audio named by the new id, so they compare equal to `b`'s.
fn ads_as_in_b(a: &Manifest, replaced: &BTreeMap<MediaId, MediaId>) -> Vec<AdRule<MediaId>> {
    a.program
        .ads
        .iter()
        .map(|ad| AdRule {
            media: current_id(replaced, ad.media),
            ..ad.clone()
        })
        .collect()
}

fn ad_lines(a: &Manifest, b: &Manifest, replaced: &BTreeMap<MediaId, MediaId>) -> Vec<DiffLine> {
    let (old_titles, new_titles) = (Titles { own: a, other: b }, Titles { own: b, other: a });
    let mut lines = rule_lines(
        &ads_as_in_b(a, replaced),
        &b.program.ads,
        |ad| describe_ad(ad, &old_titles),
        |ad| describe_ad(ad, &new_titles),
        |old, new, differing| old.media == new.media && differing <= MAX_EDITED_CLAUSES,
        "ad rules listed in another order (the first ad due plays first)",
    );
    // The same rule under another playback default plays differently: say so, since
    // the rule itself compares equal.
    let (mode_a, mode_b) = (a.program.playback.messages.ad, b.program.playback.messages.ad);
    if mode_a != mode_b {
        let old = ads_as_in_b(a, replaced);
        for ad in b.program.ads.iter().filter(|ad| old.contains(ad)) {
            let (then, now) = (
                mode_a.with_overrides(ad.start, ad.after),
                mode_b.with_overrides(ad.start, ad.after),
            );
            if mode_text(&then) != mode_text(&now) {
                lines.push(changed(
                    describe_ad(ad, &new_titles).as_change_from(&describe_ad(ad, &old_titles)),
                ));
            }
        }
    }
    lines
}

fn describe_interrupt(int: &Interrupt<MediaId>, titles: &Titles) -> Described {
    let modes = &titles.own.program.playback.messages;
    let title = titles.of(&int.media);
    let (subject, mode) = match int.level {
        InterruptLevel::Urgent => (format!("urgent message {title}"), modes.urgent),
        InterruptLevel::Announcement => (format!("announcement {title} played now"), modes.play_now),
        InterruptLevel::Ad => (format!("ad {title} played now"), modes.play_now),
    };
    let window = match (&int.not_before, &int.not_after) {
        (Some(from), Some(to)) => format!("from {} to {}", instant_text(from), instant_text(to)),
        (Some(from), None) => format!("from {}", instant_text(from)),
        (None, Some(to)) => format!("until {}", instant_text(to)),
        (None, None) => "from publication on".to_string(),
    };
    let timed = int.not_before.is_some() || int.not_after.is_some();
    Described::new(subject)
        .then(" ", in_shops_text(&int.shops), true)
        .then(", ", window, timed)
        .in_parentheses(mode_text(&mode.with_overrides(int.start, int.after)))
}

fn interrupt_lines(a: &Manifest, b: &Manifest, replaced: &BTreeMap<MediaId, MediaId>) -> Vec<DiffLine> {
    let (old_titles, new_titles) = (Titles { own: a, other: b }, Titles { own: b, other: a });
    let old: Vec<Interrupt<MediaId>> = a
        .program
        .interrupts
        .iter()
        .map(|int| Interrupt {
            media: current_id(replaced, int.media),
            ..int.clone()
        })
        .collect();
    let modes_differ = a.program.playback.messages != b.program.playback.messages;
    let mut lines = rule_lines(
        &old,
        &b.program.interrupts,
        |int| describe_interrupt(int, &old_titles),
        |int| describe_interrupt(int, &new_titles),
        |old, new, _| old.id == new.id,
        "messages listed in another order",
    );
    if modes_differ {
        for int in b.program.interrupts.iter().filter(|int| old.contains(int)) {
            let (then, now) = (
                describe_interrupt(int, &old_titles),
                describe_interrupt(int, &new_titles),
            );
            if then.text() != now.text() {
                lines.push(changed(now.as_change_from(&then)));
            }
        }
    }
    lines
}

/// A weekday's hours as the resolver reads them: a shop without any hours or
/// exceptions is always open; otherwise a weekday without hours is closed.
fn weekday_hours(shop: &Shop<MediaId>, day: Weekday) -> String {
    if shop.hours.is_empty() && shop.exceptions.is_empty() {
        return "open all day".to_string();
    }
    shop.hours
        .get(&day)
        .map_or_else(|| "closed".to_string(), hours_text)
}

fn hours_text(hours: &DailyHours) -> String {
    match hours {
        DailyHours::Closed => "closed".to_string(),
        DailyHours::Open(w) => window_text(w),
    }
}

/// The week with neighbouring days of equal hours grouped: `Mon–Fri 09:00–20:00, Sun closed`.
fn week_text(shop: &Shop<MediaId>) -> String {
    let mut groups: Vec<(Weekday, Weekday, String)> = Vec::new();
    for day in Weekday::ALL {
        let hours = weekday_hours(shop, day);
        match groups.last_mut() {
            Some((_, last, h)) if *h == hours => *last = day,
            _ => groups.push((day, day, hours)),
        }
    }
    if let [(_, _, hours)] = groups.as_slice() {
        return format!("every day {hours}");
    }
    groups
        .iter()
        .map(|(first, last, hours)| {
            if first == last {
                format!("{} {hours}", first.short_name())
            } else {
                format!("{}–{} {hours}", first.short_name(), last.short_name())
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn date_text(date: &NaiveDate) -> String {
    date.format("%a %Y-%m-%d").to_string()
}

fn closing_text(c: &ClosingAnnouncement<MediaId>, titles: &Titles) -> String {
    format!("{} {} min before closing", titles.of(&c.media), c.minutes_before)
}

fn shop_lines(a: &Manifest, b: &Manifest, replaced: &BTreeMap<MediaId, MediaId>) -> Vec<DiffLine> {
    let (old_titles, new_titles) = (Titles { own: a, other: b }, Titles { own: b, other: a });
    let mut names: BTreeSet<&String> = a.program.shops.keys().collect();
    names.extend(b.program.shops.keys());
    let mut lines = Vec::new();
    for name in names {
        let shop = format!("shop {}", quote(name));
        match (a.program.shops.get(name), b.program.shops.get(name)) {
            (None, Some(new)) => {
                let mut parts = vec![week_text(new)];
                if !new.tags.is_empty() {
                    parts.push(format!("tagged {}", new.tags.join(", ")));
                }
                for (date, hours) in &new.exceptions {
                    parts.push(format!("exception {}: {}", date_text(date), hours_text(hours)));
                }
                if let Some(c) = &new.closing_announcement {
                    parts.push(format!("closing announcement {}", closing_text(c, &new_titles)));
                }
                lines.push(added(format!("{shop} added ({})", parts.join("; "))));
            }
            (Some(_), None) => lines.push(removed(format!("{shop} removed"))),
            (Some(old), Some(new)) => {
                lines.extend(shop_changes(&shop, old, new, replaced, &old_titles, &new_titles));
            }
            (None, None) => {}
        }
    }
    lines
}

fn shop_changes(
    shop: &str,
    old: &Shop<MediaId>,
    new: &Shop<MediaId>,
    replaced: &BTreeMap<MediaId, MediaId>,
    old_titles: &Titles,
    new_titles: &Titles,
) -> Vec<DiffLine> {
    let mut lines = Vec::new();
    for tag in new.tags.iter().filter(|t| !old.tags.contains(t)) {
        lines.push(added(format!("{shop} now tagged {tag}")));
    }
    for tag in old.tags.iter().filter(|t| !new.tags.contains(t)) {
        lines.push(removed(format!("{shop} no longer tagged {tag}")));
    }
    for day in Weekday::ALL {
        let (then, now) = (weekday_hours(old, day), weekday_hours(new, day));
        if then != now {
            lines.push(changed(format!(
                "{shop}: {} hours {then} → {now}",
                day.long_name()
            )));
        }
    }
    let mut dates: BTreeSet<&NaiveDate> = old.exceptions.keys().collect();
    dates.extend(new.exceptions.keys());
    for date in dates {
        let day = date_text(date);
        match (old.exceptions.get(date), new.exceptions.get(date)) {
            (None, Some(h)) => lines.push(added(format!(
                "{shop}: exception added for {day}: {}",
                hours_text(h)
            ))),
            (Some(h), None) => lines.push(removed(format!(
                "{shop}: exception removed for {day} (was {})",
                hours_text(h)
            ))),
            (Some(then), Some(now)) if then != now => lines.push(changed(format!(
                "{shop}: exception for {day} {} → {}",
                hours_text(then),
                hours_text(now)
            ))),
            _ => {}
        }
    }
    let old_closing = old.closing_announcement.as_ref().map(|c| ClosingAnnouncement {
        media: current_id(replaced, c.media),
        minutes_before: c.minutes_before,
    });
    match (&old_closing, &new.closing_announcement) {
        (None, Some(c)) => lines.push(added(format!(
            "{shop}: closing announcement {} now plays {} min before closing",
            new_titles.of(&c.media),
            c.minutes_before
        ))),
        (Some(c), None) => lines.push(removed(format!(
            "{shop}: closing announcement {} no longer plays",
            old_titles.of(&c.media)
        ))),
        (Some(then), Some(now)) if then != now => lines.push(changed(format!(
            "{shop}: closing announcement {} → {}",
            closing_text(then, old_titles),
            closing_text(now, new_titles)
        ))),
        _ => {}
    }
    // Same effect written differently (an absent weekday made `closed`, tags
    // reordered): nothing plays differently, but "same content" would be untrue.
    let old_as_new = Shop {
        closing_announcement: old_closing,
        ..old.clone()
    };
    if lines.is_empty() && old_as_new != *new {
        lines.push(changed(format!("{shop}: written differently, same effect")));
    }
    lines
}

fn playback_lines(a: &Playback, b: &Playback) -> Vec<DiffLine> {
    let mut lines = Vec::new();
    if a.fade_ms != b.fade_ms {
        lines.push(changed(format!("fade {} ms → {} ms", a.fade_ms, b.fade_ms)));
    }
    let targets = [
        ("music", a.target_lufs.music, b.target_lufs.music),
        ("ads", a.target_lufs.ad, b.target_lufs.ad),
        (
            "announcements",
            a.target_lufs.announcement,
            b.target_lufs.announcement,
        ),
        ("urgent messages", a.target_lufs.urgent, b.target_lufs.urgent),
    ];
    for (kind, then, now) in targets {
        if then != now {
            lines.push(changed(format!("target loudness for {kind} {then} → {now} LUFS")));
        }
    }
    if a.fallback_playlist != b.fallback_playlist {
        let fallback = |p: &Option<String>| {
            p.as_deref()
                .map_or_else(|| "none (all music in order)".to_string(), quote)
        };
        lines.push(changed(format!(
            "fallback playlist {} → {}",
            fallback(&a.fallback_playlist),
            fallback(&b.fallback_playlist)
        )));
    }
    let modes = [
        ("scheduled ads", a.messages.ad, b.messages.ad),
        ("play-now messages", a.messages.play_now, b.messages.play_now),
        ("closing announcements", a.messages.closing, b.messages.closing),
        ("urgent messages", a.messages.urgent, b.messages.urgent),
    ];
    for (kind, then, now) in modes {
        if then == now {
            continue;
        }
        let (then, now) = (mode_text(&then), mode_text(&now));
        if then == now {
            lines.push(changed(format!(
                "{kind}: {now} (written differently, same effect)"
            )));
        } else {
            lines.push(changed(format!("{kind}: {then} → {now}")));
        }
    }
    lines
}

fn timezone_lines(a: &Manifest, b: &Manifest) -> Vec<DiffLine> {
    if a.timezone == b.timezone {
        return Vec::new();
    }
    vec![changed(format!("time zone {} → {}", a.timezone, b.timezone))]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> MediaId {
        MediaId::of(&[n])
    }

    /// `@1` .. `@9` stand for media ids, so fixtures read like plannings.
    fn with_ids(yaml: &str) -> String {
        (1..=9).fold(yaml.to_string(), |text, n| {
            text.replace(&format!("@{n}"), &id(n).to_string())
        })
    }

    const BASE: &str = r#"schema: skycast/v1
version: 1
published_at: 2026-11-22T09:00:00Z
expires_at: 2026-12-22T09:00:00Z
published_by: alice
timezone: Europe/Paris
media:
  - {id: @1, size: 1000, duration_ms: 192000, title: Jingle Bells, artist: Choir, kind: music}
  - {id: @2, size: 1000, duration_ms: 185000, title: Silent Night, kind: music}
  - {id: @3, size: 1000, duration_ms: 200000, title: Let It Snow, artist: Band, kind: music}
  - {id: @4, size: 500, duration_ms: 15000, title: Promo, kind: ad}
  - {id: @5, size: 500, duration_ms: 10000, title: We close soon, kind: announcement}
  - {id: @6, size: 500, duration_ms: 20000, title: Evacuation, kind: urgent}
playlists:
  day: {items: [@1, @2, @3]}
  christmas: {order: shuffle, items: [@1, @3]}
shops:
  main:
    tags: [pilot]
    hours: {mon: "09:00-20:00", tue: "09:00-20:00", wed: "09:00-20:00", thu: "09:00-20:00", fri: "09:00-20:00", sat: "09:00-19:00", sun: closed}
    closing_announcement: {media: @5, minutes_before: 30}
  east: {tags: [pilot]}
schedule:
  - {playlist: day, shops: [all]}
  - {playlist: christmas, shops: [all], dates: 2026-12-01..2026-12-24, days: [mon-sat], time: "09:00-12:00", priority: 10}
ads:
  - {media: @4, every_tracks: 3, shops: ["tag:pilot"]}
"#;

    /// Pairs of `from`, `to` text replaced in `BASE`.
    type Edits<'e> = &'e [(&'e str, &'e str)];

    fn manifest(yaml: &str) -> Manifest {
        Manifest::parse(with_ids(yaml).as_bytes()).unwrap_or_else(|e| panic!("{e}\n{yaml}"))
    }

    fn base() -> Manifest {
        manifest(BASE)
    }

    /// `BASE` edited by replacing `from` with `to` (each must occur).
    fn edited(edits: Edits) -> Manifest {
        let yaml = edits.iter().fold(BASE.to_string(), |yaml, (from, to)| {
            assert!(yaml.contains(from), "`{from}` is not in the fixture");
            yaml.replacen(from, to, 1)
        });
        manifest(&yaml)
    }

    fn lines(a: &Manifest, b: &Manifest, section: &str) -> Vec<(Change, String)> {
        diff(a, b)
            .into_iter()
            .filter(|s| s.title == section)
            .flat_map(|s| s.lines)
            .map(|l| (l.change, l.text))
            .collect()
    }

    fn added(text: &str) -> (Change, String) {
        (Change::Added, text.to_string())
    }
    fn removed(text: &str) -> (Change, String) {
        (Change::Removed, text.to_string())
    }
    fn changed(text: &str) -> (Change, String) {
        (Change::Changed, text.to_string())
    }

    #[test]
    fn same_content_under_another_version_and_author_has_no_section() {
        let a = base();
        let b = edited(&[
            ("version: 1", "version: 2"),
            ("published_by: alice", "published_by: bob"),
        ]);
        assert_eq!(diff(&a, &b), Vec::new());
        let text = render_diff(&a, &b);
        assert_eq!(
            text,
            "version 1 (2026-11-22T09:00:00Z by alice) -> version 2 (2026-11-22T09:00:00Z by bob)\n\
             same content\n"
        );
    }

    #[test]
    fn added_and_removed_tracks_are_named_by_title_artist_kind_and_length() {
        let b = edited(&[
            (
                "  - {id: @2, size: 1000, duration_ms: 185000, title: Silent Night, kind: music}\n",
                "  - {id: @7, size: 900, duration_ms: 61000, title: Feliz Navidad, artist: José, kind: music}\n",
            ),
            ("items: [@1, @2, @3]", "items: [@1, @7, @3]"),
        ]);
        assert_eq!(
            lines(&base(), &b, "media"),
            [
                added("\"Feliz Navidad\" by José (music, 1:01) added"),
                removed("\"Silent Night\" (music, 3:05) removed"),
            ]
        );
        assert_eq!(
            lines(&base(), &b, "playlists"),
            [
                removed("playlist \"day\": \"Silent Night\" removed"),
                added("playlist \"day\": \"Feliz Navidad\" added at position 2"),
            ]
        );
    }

    #[test]
    fn renamed_track_is_described_by_both_titles() {
        let table = [
            (
                (
                    "title: Silent Night, kind: music",
                    "title: Stille Nacht, kind: music",
                ),
                "\"Silent Night\" renamed \"Stille Nacht\"",
            ),
            (
                (
                    "title: Silent Night, kind: music",
                    "title: Stille Nacht, artist: Choir, kind: ad",
                ),
                "\"Silent Night\" renamed \"Stille Nacht\", artist none → \"Choir\", kind music → ad",
            ),
            (
                (
                    "title: Let It Snow, artist: Band",
                    "title: Let It Snow, artist: Big Band",
                ),
                "\"Let It Snow\": artist \"Band\" → \"Big Band\"",
            ),
        ];
        for (edit, want) in table {
            let b = edited(&[edit]);
            assert_eq!(lines(&base(), &b, "media"), [changed(want)], "{edit:?}");
            assert_eq!(
                lines(&base(), &b, "playlists"),
                [],
                "the same file stays in its playlists"
            );
        }
    }

    #[test]
    fn new_audio_under_the_same_title_is_one_change_and_leaves_playlists_alone() {
        let b = edited(&[
            (
                "{id: @2, size: 1000, duration_ms: 185000",
                "{id: @7, size: 1200, duration_ms: 190000",
            ),
            ("items: [@1, @2, @3]", "items: [@1, @7, @3]"),
        ]);
        assert_eq!(
            diff(&base(), &b),
            [DiffSection {
                title: "media".into(),
                lines: vec![DiffLine {
                    change: Change::Changed,
                    text: "\"Silent Night\": audio file replaced (3:05 → 3:10)".into(),
                }],
            }]
        );
    }

    #[test]
    fn playlist_changes_name_tracks_positions_order_and_mode() {
        let table: Vec<(&str, Vec<(Change, String)>)> = vec![
            (
                "day: {items: [@1, @2, @3, @1]}",
                vec![
                    changed("playlist \"day\": 3 tracks → 4 tracks"),
                    added("playlist \"day\": \"Jingle Bells\" added at position 4"),
                ],
            ),
            (
                "day: {items: [@1, @3]}",
                vec![
                    changed("playlist \"day\": 3 tracks → 2 tracks"),
                    removed("playlist \"day\": \"Silent Night\" removed"),
                ],
            ),
            (
                "day: {items: [@3, @2, @1]}",
                vec![changed("playlist \"day\": order changed")],
            ),
            (
                "day: {order: shuffle, items: [@1, @2, @3]}",
                vec![changed("playlist \"day\": now plays in shuffle order")],
            ),
            (
                "day: {items: [@1, @2, @3]}\n  night: {items: [@2, @1, @3, @2, @1, @3, @2]}",
                vec![added(
                    "playlist \"night\" created with 7 tracks (in order): \"Silent Night\", \
                     \"Jingle Bells\", \"Let It Snow\", \"Silent Night\", \"Jingle Bells\" and 2 more",
                )],
            ),
        ];
        for (playlist, want) in table {
            let b = edited(&[("day: {items: [@1, @2, @3]}", playlist)]);
            assert_eq!(lines(&base(), &b, "playlists"), want, "{playlist}");
        }
    }

    /// `BASE` without the christmas playlist and the rule that plays it.
    fn without_christmas() -> Manifest {
        edited(&[
            ("christmas: {order: shuffle, items: [@1, @3]}", ""),
            ("  - {playlist: christmas, shops: [all], dates: 2026-12-01..2026-12-24, days: [mon-sat], time: \"09:00-12:00\", priority: 10}\n", ""),
        ])
    }

    #[test]
    fn created_playlist_names_its_first_tracks_and_deleted_one_is_one_line() {
        assert_eq!(
            lines(&without_christmas(), &base(), "playlists"),
            [added(
                "playlist \"christmas\" created with 2 tracks (shuffle): \"Jingle Bells\", \"Let It Snow\""
            )]
        );
        assert_eq!(
            lines(&base(), &without_christmas(), "playlists"),
            [removed("playlist \"christmas\" deleted")]
        );
    }

    #[test]
    fn schedule_rule_change_names_playlist_days_and_hours() {
        let b = edited(&[("  - {playlist: day, shops: [all]}\n", "")]);
        assert_eq!(
            lines(&base(), &b, "schedule"),
            [removed("playlist \"day\" plays in all shops, every day, all day")]
        );
        let rule = "{playlist: christmas, shops: [all], dates: 2026-12-01..2026-12-24, days: [mon-sat], time: \"09:00-12:00\", priority: 10}";
        let table = [
            (
                "{playlist: christmas, shops: [all], dates: 2026-12-01..2026-12-24, days: [mon-sat], time: \"09:00-13:00\", priority: 10}",
                changed(
                    "playlist \"christmas\" plays in all shops, Mon–Sat, 09:00–13:00, \
                     from 2026-12-01 to 2026-12-24, priority 10 (was 09:00–12:00)",
                ),
            ),
            (
                "{playlist: christmas, shops: [all], dates: 2026-12-01..2026-12-24, days: [mon-sat], time: \"09:00-12:00\"}",
                changed(
                    "playlist \"christmas\" plays in all shops, Mon–Sat, 09:00–12:00, \
                     from 2026-12-01 to 2026-12-24 (was priority 10)",
                ),
            ),
            (
                "{playlist: christmas, shops: [main, \"tag:pilot\"], dates: 2026-12-01..2026-12-24, days: [mon-fri, sun], time: \"09:00-12:00\", priority: 10}",
                changed(
                    "playlist \"christmas\" plays in shops main, tag:pilot, Mon–Fri, Sun, 09:00–12:00, \
                     from 2026-12-01 to 2026-12-24, priority 10 (was in all shops, Mon–Sat)",
                ),
            ),
            (
                "{playlist: day, shops: [east], dates: 2026-12-25..2026-12-25, time: \"22:00-02:00\"}",
                added("playlist \"day\" plays in shop east, every day, 22:00–02:00, on 2026-12-25"),
            ),
        ];
        for (new_rule, want) in table {
            let b = edited(&[(rule, new_rule)]);
            let got = lines(&base(), &b, "schedule");
            assert!(got.contains(&want), "{new_rule}: {got:#?}");
        }
        let other_rule = edited(&[(rule, "{playlist: christmas, shops: [east], days: [sun]}")]);
        assert_eq!(
            lines(&base(), &other_rule, "schedule"),
            [
                added("playlist \"christmas\" plays in shop east, Sun, all day"),
                removed(
                    "playlist \"christmas\" plays in all shops, Mon–Sat, 09:00–12:00, \
                     from 2026-12-01 to 2026-12-24, priority 10"
                ),
            ],
            "a rule changed in more than two ways reads as another rule"
        );
    }

    #[test]
    fn reordered_rules_are_reported_since_order_decides_ties() {
        let b = edited(&[
            ("  - {playlist: day, shops: [all]}\n", ""),
            ("ads:\n", "  - {playlist: day, shops: [all]}\nads:\n"),
        ]);
        assert_eq!(
            lines(&base(), &b, "schedule"),
            [changed("schedule rules listed in another order")]
        );
    }

    #[test]
    fn ad_rules_say_how_often_where_when_and_how_they_interrupt() {
        let rule = "{media: @4, every_tracks: 3, shops: [\"tag:pilot\"]}";
        let table = [
            (
                "{media: @4, every_tracks: 4, shops: [\"tag:pilot\"]}",
                changed(
                    "ad \"Promo\" every 4 tracks in shops tag:pilot, waits for the end of the track \
                     (was every 3 tracks)",
                ),
            ),
            (
                "{media: @4, every_tracks: 3, shops: [\"tag:pilot\"], start: cut, after: next}",
                changed(
                    "ad \"Promo\" every 3 tracks in shops tag:pilot, cuts the music, then plays the next track \
                     (was waits for the end of the track)",
                ),
            ),
            (
                "{media: @4, every_tracks: 3, shops: [\"tag:pilot\"], after: next}",
                changed(
                    "ad \"Promo\" every 3 tracks in shops tag:pilot, waits for the end of the track \
                     (written differently, same effect)",
                ),
            ),
            (
                "{media: @5, at: [\"10:00\", \"15:00\"], shops: [main, east], dates: 2026-12-01..2026-12-24, start: cut}",
                added(
                    "ad \"We close soon\" at 10:00, 15:00 in shops main, east, from 2026-12-01 to 2026-12-24, \
                     cuts the music, then resumes it",
                ),
            ),
        ];
        for (new_rule, want) in table {
            let b = edited(&[(rule, new_rule)]);
            let got = lines(&base(), &b, "ads");
            assert!(got.contains(&want), "{new_rule}: {got:#?}");
        }
        let b = edited(&[(&format!("ads:\n  - {rule}\n"), "")]);
        assert_eq!(
            lines(&base(), &b, "ads"),
            [removed(
                "ad \"Promo\" every 3 tracks in shops tag:pilot, waits for the end of the track"
            )]
        );
    }

    /// `BASE` with three interrupts, the play-now ad going to `flash_shops`.
    fn with_interrupts(flash_shops: &str) -> Manifest {
        let interrupts = format!(
            "interrupts:\n  \
             - {{id: evac, media: @6, level: urgent, shops: [all], not_before: 2026-11-22T10:00:00Z, not_after: 2026-11-22T11:30:00Z}}\n  \
             - {{id: flash, media: @4, level: ad, shops: [{flash_shops}]}}\n  \
             - {{id: info, media: @5, level: announcement, shops: [main], not_after: 2026-11-23T08:00:30Z, start: boundary}}\n\
             ads:\n"
        );
        edited(&[("ads:\n", &interrupts)])
    }

    #[test]
    fn interrupts_say_level_shops_window_and_mode() {
        let b = with_interrupts("main, east");
        assert_eq!(
            lines(&base(), &b, "messages"),
            [
                added(
                    "urgent message \"Evacuation\" in all shops, from 2026-11-22 10:00 UTC \
                     to 2026-11-22 11:30 UTC (cuts the music, then resumes it)"
                ),
                added("ad \"Promo\" played now in shops main, east (cuts the music, then resumes it)"),
                added(
                    "announcement \"We close soon\" played now in shop main, until 2026-11-23 08:00:30 UTC \
                     (waits for the end of the track)"
                ),
            ]
        );
        assert_eq!(
            lines(&b, &base(), "messages").len(),
            3,
            "each withdrawn message is a removed line"
        );
        assert_eq!(
            lines(&b, &with_interrupts("east"), "messages"),
            [changed(
                "ad \"Promo\" played now in shop east (cuts the music, then resumes it) (was in shops main, east)"
            )]
        );
    }

    #[test]
    fn shop_changes_name_weekday_exception_and_closing_announcement() {
        let table: Vec<(Edits, Vec<(Change, String)>)> = vec![
            (
                &[("sat: \"09:00-19:00\"", "sat: \"10:00-19:00\"")],
                vec![changed("shop \"main\": Saturday hours 09:00–19:00 → 10:00–19:00")],
            ),
            (
                &[("sun: closed}", "sun: closed}\n    exceptions: {2026-12-25: closed}")],
                vec![added("shop \"main\": exception added for Fri 2026-12-25: closed")],
            ),
            (
                &[("closing_announcement: {media: @5, minutes_before: 30}", "closing_announcement: {media: @5, minutes_before: 15}")],
                vec![changed(
                    "shop \"main\": closing announcement \"We close soon\" 30 min before closing \
                     → \"We close soon\" 15 min before closing",
                )],
            ),
            (
                &[("\n    closing_announcement: {media: @5, minutes_before: 30}", "")],
                vec![removed("shop \"main\": closing announcement \"We close soon\" no longer plays")],
            ),
            (
                &[("east: {tags: [pilot]}", "east: {tags: [pilot], closing_announcement: {media: @5, minutes_before: 10}}")],
                vec![added("shop \"east\": closing announcement \"We close soon\" now plays 10 min before closing")],
            ),
            (
                &[("east: {tags: [pilot]}", "east: {tags: [city]}")],
                vec![
                    added("shop \"east\" now tagged city"),
                    removed("shop \"east\" no longer tagged pilot"),
                ],
            ),
            (
                &[("east: {tags: [pilot]}", "east: {tags: [pilot]}\n  west: {hours: {sat: \"10:00-18:00\"}, exceptions: {2026-12-24: \"10:00-16:00\"}}")],
                vec![added(
                    "shop \"west\" added (Mon–Fri closed, Sat 10:00–18:00, Sun closed; \
                     exception Thu 2026-12-24: 10:00–16:00)",
                )],
            ),
        ];
        for (edits, want) in table {
            let b = edited(edits);
            assert_eq!(lines(&base(), &b, "shops"), want, "{edits:?}");
        }
        let gone = edited(&[("  east: {tags: [pilot]}\n", "")]);
        assert_eq!(lines(&base(), &gone, "shops"), [removed("shop \"east\" removed")]);
    }

    #[test]
    fn first_exception_closes_an_always_open_shop_on_every_weekday() {
        let b = edited(&[(
            "east: {tags: [pilot]}",
            "east: {tags: [pilot], exceptions: {2026-12-25: closed}}",
        )]);
        let got = lines(&base(), &b, "shops");
        assert!(got.contains(&changed("shop \"east\": Monday hours open all day → closed")));
        assert_eq!(got.len(), 8, "7 weekdays and the exception: {got:#?}");
    }

    #[test]
    fn playback_settings_changes_show_old_and_new_values() {
        let b = edited(&[(
            "ads:\n",
            "playback:\n  \
             fade_ms: 800\n  \
             target_lufs: {music: -14}\n  \
             fallback_playlist: day\n  \
             messages: {closing: {start: cut, duck_db: -12}, urgent: {start: cut, after: restart}}\n\
             ads:\n",
        )]);
        assert_eq!(
            lines(&base(), &b, "playback"),
            [
                changed("fade 500 ms → 800 ms"),
                changed("target loudness for music -16 → -14 LUFS"),
                changed("fallback playlist none (all music in order) → \"day\""),
                changed(
                    "closing announcements: waits for the end of the track → plays over the music lowered by 12 dB"
                ),
                changed("urgent messages: cuts the music, then resumes it → cuts the music, then restarts the track"),
            ]
        );
    }

    #[test]
    fn a_new_default_mode_shows_on_the_ads_it_changes() {
        let b = edited(&[("ads:\n", "playback: {messages: {ad: {start: cut}}}\nads:\n")]);
        assert_eq!(
            lines(&base(), &b, "ads"),
            [changed(
                "ad \"Promo\" every 3 tracks in shops tag:pilot, cuts the music, then resumes it \
                 (was waits for the end of the track)"
            )]
        );
    }

    #[test]
    fn sections_come_in_a_stable_order_and_empty_ones_are_left_out() {
        let b = edited(&[
            ("timezone: Europe/Paris", "timezone: Europe/London"),
            ("sun: closed}", "sun: \"10:00-13:00\"}"),
            ("items: [@1, @2, @3]", "items: [@1, @2]"),
        ]);
        let titles: Vec<String> = diff(&base(), &b).into_iter().map(|s| s.title).collect();
        assert_eq!(titles, ["playlists", "shops", "timezone"]);
        assert_eq!(
            lines(&base(), &b, "timezone"),
            [changed("time zone Europe/Paris → Europe/London")]
        );
    }

    #[test]
    fn unknown_media_fall_back_to_their_short_id() {
        let (a, b) = (base(), base());
        let titles = Titles { own: &a, other: &b };
        assert_eq!(titles.of(&id(1)), "\"Jingle Bells\"");
        assert_eq!(titles.of(&id(9)), format!("media {}", id(9).short()));
    }

    #[test]
    fn rendered_diff_marks_lines_and_keeps_the_words_scripts_read() {
        let b = edited(&[
            ("version: 1", "version: 2"),
            (
                "  - {id: @4,",
                "  - {id: @7, size: 900, duration_ms: 5000, title: extra-e, kind: music}\n  - {id: @4,",
            ),
            ("items: [@1, @2, @3]", "items: [@1, @2, @3, @7]"),
        ]);
        let text = render_diff(&base(), &b);
        assert_eq!(
            text,
            "version 1 (2026-11-22T09:00:00Z by alice) -> version 2 (2026-11-22T09:00:00Z by alice)\n\
             media:\n  \
             + \"extra-e\" (music, 0:05) added\n\
             playlists:\n  \
             ~ playlist \"day\": 3 tracks → 4 tracks\n  \
             + playlist \"day\": \"extra-e\" added at position 4\n"
        );
    }

    #[test]
    fn lines_serialise_with_the_style_class_of_their_change() {
        let line = DiffLine {
            change: Change::Removed,
            text: "x".into(),
        };
        assert_eq!(
            serde_json::to_value(&line).unwrap(),
            serde_json::json!({"change": "removed", "text": "x"})
        );
    }

    #[test]
    fn item_changes_keep_repeated_tracks_apart() {
        let (x, y, z) = (id(1), id(2), id(3));
        let table = [
            (vec![x, y, x], vec![x, y], vec![2], vec![], false),
            (vec![x, y], vec![y, x, z], vec![], vec![2], true),
            (vec![x, x], vec![x, x], vec![], vec![], false),
        ];
        for (old, new, removed, added, reordered) in table {
            assert_eq!(
                ItemChanges::between(&old, &new),
                ItemChanges {
                    removed,
                    added,
                    reordered
                }
            );
        }
    }
}
