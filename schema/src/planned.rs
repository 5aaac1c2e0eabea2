//! What a shop's schedule plans at fixed instants over a stretch of time: the
//! fixed-time ad slots and the closing announcements, as the resolver makes them
//! due. Supervision compares them with what the players say they played (planned
//! vs played). Pure: candidates come from the manifest's rules and every one is
//! confirmed by [`ShopSchedule::due_messages`], so this never disagrees with what
//! a player plays.

use chrono::{DateTime, TimeDelta, Utc};

use crate::content_id::MediaId;
use crate::manifest::Manifest;
use crate::playback::MessageMode;
use crate::schedule::{History, MessageSource, ScheduleError, ShopSchedule, FIXED_TIME_GRACE_SECS};

/// Which rule planned a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlannedKind {
    /// `ads[rule]` with `at`.
    FixedTimeAd { rule: usize },
    /// The shop's closing announcement before the closing at `closes`.
    Closing { closes: DateTime<Utc> },
}

/// A message the schedule plans at an instant.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedMessage {
    /// The text of its message key, as the player's history and play log store it.
    pub key: String,
    pub media: MediaId,
    pub kind: PlannedKind,
    /// The resolver's `due`: the slot of a fixed-time ad, `minutes_before` the
    /// closing for the announcement.
    pub planned: DateTime<Utc>,
    /// The first instant the resolver offers it: `planned`, or the opening when the
    /// shop opens later within the slot's grace (or the period is shorter than
    /// `minutes_before`).
    pub playable_from: DateTime<Utc>,
    /// The instant after which it is no longer due: the end of the slot's grace,
    /// or the closing.
    pub playable_until: DateTime<Utc>,
    /// How it starts (`cut` at once, `boundary` after the current track).
    pub mode: MessageMode,
}

/// Every fixed-time ad slot and closing announcement of `shop` whose
/// `playable_from` lies in `[from, to)`, ordered by `playable_from` then key.
/// Interrupts (played once whenever they come) and every-N-tracks ads (counted in
/// tracks, not time) are not planned at an instant and are not listed.
pub fn planned_messages(
    manifest: &Manifest,
    shop: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<PlannedMessage>, ScheduleError> {
    let range = Range {
        manifest,
        schedule: ShopSchedule::new(manifest, shop)?,
        from,
        to,
    };
    let mut out = Vec::new();
    if to <= from {
        return Ok(out);
    }
    range.fixed_time_ads(&mut out);
    range.closing_announcements(&mut out);
    out.sort_by(|a, b| {
        a.playable_from
            .cmp(&b.playable_from)
            .then_with(|| a.key.cmp(&b.key))
    });
    // Two ad rules may plan the same media at the same slot: it plays once.
    out.dedup_by(|a, b| a.key == b.key);
    Ok(out)
}

/// One shop's schedule over `[from, to)`.
struct Range<'m> {
    manifest: &'m Manifest,
    schedule: ShopSchedule<'m>,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
}

/// What the resolver makes due at `at` for a player that has played nothing.
fn due_at(schedule: &ShopSchedule<'_>, at: DateTime<Utc>) -> Vec<crate::schedule::Message> {
    schedule.due_messages(at, &History::default())
}

/// Whether `source` is the fixed-time slot planned at `planned`.
fn is_slot(source: &MessageSource, planned: DateTime<Utc>) -> bool {
    matches!(source, MessageSource::FixedTime { planned: p, .. } if *p == planned)
}

/// Most open periods looked at: a day's worth of closings per day of a long range
/// is far more than any schedule has; the bound only stops a runaway loop.
const MAX_PERIODS: usize = 1000;

impl Range<'_> {
    fn fixed_time_ads(&self, out: &mut Vec<PlannedMessage>) {
        let (manifest, schedule, from, to) = (self.manifest, &self.schedule, self.from, self.to);
        let grace = TimeDelta::seconds(FIXED_TIME_GRACE_SECS);
        // A slot up to `grace` before `from` may first become playable inside the range
        // (the shop opens after it); local dates run a day either side of UTC ones.
        let (Some(first), Some(last)) = (
            schedule.local_date(from - grace).pred_opt(),
            schedule.local_date(to).succ_opt(),
        ) else {
            return;
        };
        for ad in &manifest.program.ads {
            let Some(times) = &ad.at else { continue };
            if !schedule.targets_shop(&ad.shops) {
                continue;
            }
            for date in first.iter_days().take_while(|d| *d <= last) {
                for time in times {
                    let planned = schedule.instant_of(date, time.0);
                    if planned + grace <= from || planned >= to {
                        continue;
                    }
                    // Due at its slot when the shop is open then, else from the next
                    // opening if that comes within the grace; the resolver decides.
                    let candidates = [Some(planned), schedule.next_opening(planned)];
                    let found = candidates
                        .into_iter()
                        .flatten()
                        .filter(|at| *at < planned + grace)
                        .find_map(|at| {
                            due_at(schedule, at)
                                .into_iter()
                                .find(|m| m.media == ad.media && is_slot(&m.source, planned))
                                .map(|m| (at, m))
                        });
                    let Some((playable_from, message)) = found else {
                        continue;
                    };
                    let MessageSource::FixedTime { rule, .. } = message.source else {
                        continue;
                    };
                    if from <= playable_from && playable_from < to {
                        out.push(PlannedMessage {
                            key: message.key,
                            media: message.media,
                            kind: PlannedKind::FixedTimeAd { rule },
                            planned,
                            playable_from,
                            playable_until: planned + grace,
                            mode: message.mode,
                        });
                    }
                }
            }
        }
    }

    fn closing_announcements(&self, out: &mut Vec<PlannedMessage>) {
        let (manifest, schedule, from, to) = (self.manifest, &self.schedule, self.from, self.to);
        let has_announcement = manifest
            .program
            .shops
            .get(schedule.shop_name())
            .is_some_and(|s| s.closing_announcement.is_some());
        if !has_announcement {
            return;
        }
        // Periods closing after `from`: the one open at `from`, then each next opening.
        let mut period = schedule
            .open_period(from)
            .or_else(|| schedule.next_opening(from).and_then(|t| schedule.open_period(t)));
        for _ in 0..MAX_PERIODS {
            let Some(p) = period else { break };
            if p.opens >= to {
                break;
            }
            // Due until the closing whenever it is, so the last second of the period
            // shows it (with its `due`) if the resolver plans it at all.
            let found = due_at(schedule, p.closes - TimeDelta::seconds(1))
                .into_iter()
                .find(|m| matches!(m.source, MessageSource::Closing { closes } if closes == p.closes));
            if let Some(message) = found {
                let playable_from = message.due.max(p.opens);
                if from <= playable_from && playable_from < to {
                    out.push(PlannedMessage {
                        key: message.key,
                        media: message.media,
                        kind: PlannedKind::Closing { closes: p.closes },
                        planned: message.due,
                        playable_from,
                        playable_until: p.closes,
                        mode: message.mode,
                    });
                }
            }
            period = schedule
                .next_opening(p.closes)
                .and_then(|t| schedule.open_period(t));
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::NaiveDateTime;

    use super::*;
    use crate::manifest::tests::id;
    use crate::playback::StartMode;

    /// A Europe/Paris manifest with music `m1` (id 1), ads `ad1`/`ad2` (21, 22) and
    /// the announcement `ann` (23), then `program`, where `@name` is the media id.
    fn manifest(program: &str) -> Manifest {
        let names = [
            ("m1", 1, "music"),
            ("ad1", 21, "ad"),
            ("ad2", 22, "ad"),
            ("ann", 23, "announcement"),
        ];
        let mut text = String::from(
            "schema: skycast/v1\nversion: 3\npublished_at: 2026-01-01T00:00:00Z\n\
             expires_at: 2027-06-01T00:00:00Z\npublished_by: test\ntimezone: Europe/Paris\nmedia:\n",
        );
        for (name, n, kind) in names {
            text.push_str(&format!(
                "  - {{id: {}, size: 1000, duration_ms: 180000, title: {name}, kind: {kind}}}\n",
                id(n)
            ));
        }
        text.push_str(program);
        for (name, n, _) in names {
            text = text.replace(&format!("@{name}"), &id(n).to_string());
        }
        Manifest::parse(text.as_bytes()).unwrap_or_else(|e| panic!("{e}\n{text}"))
    }

    fn t(text: &str) -> DateTime<Utc> {
        NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%MZ")
            .unwrap_or_else(|e| panic!("{text}: {e}"))
            .and_utc()
    }

    const PROGRAM: &str = r#"
playlists:
  day: {items: [@m1]}
shops:
  lyon:
    hours: {tue: "09:00-20:00", wed: "09:00-20:00"}
    closing_announcement: {media: @ann, minutes_before: 30}
  nice: {hours: {tue: "09:00-20:00"}}
  kiosk: {closing_announcement: {media: @ann, minutes_before: 30}}
schedule:
  - {playlist: day, shops: [all]}
ads:
  - {media: @ad1, at: ["12:00", "08:55", "21:00"], shops: [lyon]}
  - {media: @ad1, at: ["12:00"], shops: [lyon]}
  - {media: @ad2, at: ["12:01"], shops: [lyon, kiosk], dates: 2026-12-02..2026-12-02, start: cut}
"#;

    #[test]
    fn fixed_time_slots_and_closings_are_listed_as_the_resolver_makes_them_due() {
        let m = manifest(PROGRAM);
        let (ad1, ad2, ann) = (id(21), id(22), id(23));
        // (shop, from, to, [(media, planned, playable_from, playable_until, key suffix)])
        type Row = (MediaId, &'static str, &'static str, &'static str, &'static str);
        let cases: [(&str, &str, &str, Vec<Row>); 7] = [
            // Tuesday in Lyon: 08:55 local is before opening, still in grace at 09:00;
            // 12:00 is planned by two rules and listed once; 21:00 is after closing.
            (
                "lyon",
                "2026-12-01T00:00Z",
                "2026-12-02T00:00Z",
                vec![
                    (
                        ad1,
                        "2026-12-01T07:55Z",
                        "2026-12-01T08:00Z",
                        "2026-12-01T08:05Z",
                        "2026-12-01T08:55",
                    ),
                    (
                        ad1,
                        "2026-12-01T11:00Z",
                        "2026-12-01T11:00Z",
                        "2026-12-01T11:10Z",
                        "2026-12-01T12:00",
                    ),
                    (
                        ann,
                        "2026-12-01T18:30Z",
                        "2026-12-01T18:30Z",
                        "2026-12-01T19:00Z",
                        "2026-12-01",
                    ),
                ],
            ),
            // The range is half-open on `playable_from`.
            (
                "lyon",
                "2026-12-01T11:00Z",
                "2026-12-01T18:30Z",
                vec![(
                    ad1,
                    "2026-12-01T11:00Z",
                    "2026-12-01T11:00Z",
                    "2026-12-01T11:10Z",
                    "2026-12-01T12:00",
                )],
            ),
            // Wednesday brings ad2's one-day campaign.
            (
                "lyon",
                "2026-12-02T10:00Z",
                "2026-12-02T12:00Z",
                vec![
                    (
                        ad1,
                        "2026-12-02T11:00Z",
                        "2026-12-02T11:00Z",
                        "2026-12-02T11:10Z",
                        "2026-12-02T12:00",
                    ),
                    (
                        ad2,
                        "2026-12-02T11:01Z",
                        "2026-12-02T11:01Z",
                        "2026-12-02T11:11Z",
                        "2026-12-02T12:01",
                    ),
                ],
            ),
            // Closed on Thursday: nothing.
            ("lyon", "2026-12-03T00:00Z", "2026-12-04T00:00Z", vec![]),
            // Another shop with the same hours but no rule of its own.
            ("nice", "2026-12-01T00:00Z", "2026-12-03T00:00Z", vec![]),
            // Always open: the ad at any hour, never a closing announcement.
            (
                "kiosk",
                "2026-12-01T00:00Z",
                "2026-12-03T00:00Z",
                vec![(
                    ad2,
                    "2026-12-02T11:01Z",
                    "2026-12-02T11:01Z",
                    "2026-12-02T11:11Z",
                    "2026-12-02T12:01",
                )],
            ),
            // An empty range.
            ("lyon", "2026-12-01T12:00Z", "2026-12-01T12:00Z", vec![]),
        ];
        for (shop, from, to, expected) in cases {
            let got: Vec<_> = planned_messages(&m, shop, t(from), t(to))
                .unwrap()
                .into_iter()
                .map(|p| (p.media, p.planned, p.playable_from, p.playable_until, p.key))
                .collect();
            let expected: Vec<_> = expected
                .into_iter()
                .map(|(media, planned, playable, until, key)| {
                    let key = if media == ann {
                        format!("closing:{key}")
                    } else {
                        format!("ad-at:{media}:{key}")
                    };
                    (media, t(planned), t(playable), t(until), key)
                })
                .collect();
            assert_eq!(got, expected, "{shop} {from}..{to}");
        }
    }

    #[test]
    fn kinds_and_modes_come_from_the_rules() {
        let m = manifest(PROGRAM);
        let got = planned_messages(&m, "lyon", t("2026-12-02T11:00Z"), t("2026-12-02T19:00Z")).unwrap();
        let summary: Vec<(PlannedKind, StartMode)> = got.iter().map(|p| (p.kind, p.mode.start)).collect();
        assert_eq!(
            summary,
            [
                (PlannedKind::FixedTimeAd { rule: 0 }, StartMode::Boundary),
                (PlannedKind::FixedTimeAd { rule: 2 }, StartMode::Cut),
                (
                    PlannedKind::Closing {
                        closes: t("2026-12-02T19:00Z")
                    },
                    StartMode::Boundary
                ),
            ]
        );
    }

    #[test]
    fn a_night_opening_announces_its_closing_on_the_next_day_and_an_unknown_shop_is_refused() {
        let m = manifest(
            r#"
shops:
  bar: {hours: {fri: "22:00-02:00"}, closing_announcement: {media: @ann, minutes_before: 30}}
"#,
        );
        let got = planned_messages(&m, "bar", t("2026-12-04T00:00Z"), t("2026-12-06T00:00Z")).unwrap();
        let got: Vec<_> = got.iter().map(|p| (p.key.as_str(), p.playable_from)).collect();
        assert_eq!(got, [("closing:2026-12-04", t("2026-12-05T00:30Z"))]);
        assert!(matches!(
            planned_messages(&m, "ghost", t("2026-12-04T00:00Z"), t("2026-12-05T00:00Z")),
            Err(ScheduleError::UnknownShop { .. })
        ));
    }
}
