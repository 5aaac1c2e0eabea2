//! Small calendar value types used by manifests: weekdays, day ranges, time windows,
//! date ranges and RFC 3339 instants, each parsed strictly from its text form.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Datelike, NaiveDate, NaiveTime, SecondsFormat, Timelike, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Weekday {
    Mon,
    Tue,
    Wed,
    Thu,
    Fri,
    Sat,
    Sun,
}

impl Weekday {
    pub const ALL: [Weekday; 7] = [
        Weekday::Mon,
        Weekday::Tue,
        Weekday::Wed,
        Weekday::Thu,
        Weekday::Fri,
        Weekday::Sat,
        Weekday::Sun,
    ];

    fn index(self) -> usize {
        self as usize
    }

    pub fn from_chrono(day: chrono::Weekday) -> Weekday {
        Weekday::ALL[day.num_days_from_monday() as usize]
    }

    /// The weekday of a date.
    pub fn of(date: NaiveDate) -> Weekday {
        Weekday::from_chrono(date.weekday())
    }

    /// How manifests, plannings and web forms write it: `mon` … `sun`.
    pub fn key(self) -> &'static str {
        ["mon", "tue", "wed", "thu", "fri", "sat", "sun"][self.index()]
    }

    /// Its English abbreviation, for texts: `Mon` … `Sun`.
    pub fn short_name(self) -> &'static str {
        ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"][self.index()]
    }

    /// Its English name, for texts: `Monday` … `Sunday`.
    pub fn long_name(self) -> &'static str {
        [
            "Monday",
            "Tuesday",
            "Wednesday",
            "Thursday",
            "Friday",
            "Saturday",
            "Sunday",
        ][self.index()]
    }
}

impl FromStr for Weekday {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Weekday::ALL
            .into_iter()
            .find(|d| d.key() == s)
            .ok_or_else(|| format!("`{s}` is not a weekday: use mon, tue, wed, thu, fri, sat or sun"))
    }
}

impl fmt::Display for Weekday {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key())
    }
}

/// `mon-fri`, `sat`, or `fri-mon` (wrapping over the week end).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DayRange {
    pub first: Weekday,
    pub last: Weekday,
}

impl DayRange {
    pub fn contains(&self, day: Weekday) -> bool {
        let (a, b, d) = (self.first.index(), self.last.index(), day.index());
        if a <= b {
            a <= d && d <= b
        } else {
            d >= a || d <= b
        }
    }
}

impl FromStr for DayRange {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once('-') {
            Some((a, b)) => Ok(DayRange {
                first: a.parse()?,
                last: b.parse()?,
            }),
            None => {
                let day = s.parse()?;
                Ok(DayRange {
                    first: day,
                    last: day,
                })
            }
        }
    }
}

impl fmt::Display for DayRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.first == self.last {
            write!(f, "{}", self.first)
        } else {
            write!(f, "{}-{}", self.first, self.last)
        }
    }
}
serde_via_text!(DayRange);

fn parse_hhmm(s: &str) -> Result<NaiveTime, String> {
    let ok_shape = s.len() == 5 && s.as_bytes()[2] == b':';
    ok_shape
        .then(|| NaiveTime::parse_from_str(s, "%H:%M").ok())
        .flatten()
        .ok_or_else(|| format!("`{s}` is not a time of day: write it as HH:MM, for example 09:30"))
}

/// A time of day, `HH:MM`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct TimeOfDay(pub NaiveTime);

impl FromStr for TimeOfDay {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_hhmm(s).map(TimeOfDay)
    }
}

impl fmt::Display for TimeOfDay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.format("%H:%M"))
    }
}
serde_via_text!(TimeOfDay);

/// `HH:MM-HH:MM`; an end earlier than the start runs across midnight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeWindow {
    pub start: TimeOfDay,
    pub end: TimeOfDay,
}

impl TimeWindow {
    pub fn crosses_midnight(&self) -> bool {
        self.end < self.start
    }
}

impl FromStr for TimeWindow {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (a, b) = s
            .split_once('-')
            .ok_or_else(|| format!("`{s}` is not a time window: write it as HH:MM-HH:MM"))?;
        let window = TimeWindow {
            start: a.parse()?,
            end: b.parse()?,
        };
        if window.start == window.end {
            return Err(format!("time window `{s}` is empty: start and end must differ"));
        }
        Ok(window)
    }
}

impl fmt::Display for TimeWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.start, self.end)
    }
}
serde_via_text!(TimeWindow);

/// A day's opening hours: `closed` or a time window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DailyHours {
    Closed,
    Open(TimeWindow),
}

impl FromStr for DailyHours {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "closed" {
            Ok(DailyHours::Closed)
        } else {
            s.parse()
                .map(DailyHours::Open)
                .map_err(|e| format!("{e}, or `closed`"))
        }
    }
}

impl fmt::Display for DailyHours {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DailyHours::Closed => f.write_str("closed"),
            DailyHours::Open(w) => write!(f, "{w}"),
        }
    }
}
serde_via_text!(DailyHours);

/// `2026-12-01..2026-12-24`, both days included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateRange {
    pub first: NaiveDate,
    pub last: NaiveDate,
}

impl DateRange {
    pub fn contains(&self, day: NaiveDate) -> bool {
        self.first <= day && day <= self.last
    }
}

impl FromStr for DateRange {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let shape = || format!("`{s}` is not a date range: write it as YYYY-MM-DD..YYYY-MM-DD");
        let (a, b) = s.split_once("..").ok_or_else(shape)?;
        let date = |t: &str| NaiveDate::parse_from_str(t, "%Y-%m-%d").map_err(|_| shape());
        let range = DateRange {
            first: date(a)?,
            last: date(b)?,
        };
        if range.last < range.first {
            return Err(format!("date range `{s}` ends before it starts"));
        }
        Ok(range)
    }
}

impl fmt::Display for DateRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}..{}", self.first, self.last)
    }
}
serde_via_text!(DateRange);

/// An instant written in RFC 3339 (`2026-11-22T09:14:03Z`), nothing looser.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Instant(pub DateTime<Utc>);

impl FromStr for Instant {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // Kept to what `Display` writes back unchanged: a fraction of a second is
        // dropped here (manifests carry whole seconds; plannings written from a
        // clock may hold one), and in UTC the year has four digits
        // (`-0001-12-31T23:00:00Z` would not parse).
        DateTime::parse_from_rfc3339(s)
            .ok()
            .map(|t| t.with_timezone(&Utc))
            .and_then(|t| {
                let whole = t.timestamp_subsec_nanos() / 1_000_000_000 * 1_000_000_000;
                t.with_nanosecond(whole)
            })
            .filter(|t| (0..=9999).contains(&t.year()))
            .map(Instant)
            .ok_or_else(|| {
                format!("`{s}` is not an RFC 3339 time between the years 0000 and 9999: write it like 2026-11-22T09:14:03Z")
            })
    }
}

impl fmt::Display for Instant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.to_rfc3339_opts(SecondsFormat::Secs, true))
    }
}
serde_via_text!(Instant);

impl From<DateTime<Utc>> for Instant {
    fn from(t: DateTime<Utc>) -> Self {
        Instant(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn day_ranges_include_their_ends_and_wrap_over_the_week_end() {
        use Weekday::*;
        let table = [
            ("mon-fri", Mon, true),
            ("mon-fri", Fri, true),
            ("mon-fri", Sat, false),
            ("sun", Sun, true),
            ("sun", Mon, false),
            ("fri-mon", Sun, true),
            ("fri-mon", Tue, false),
        ];
        for (range, day, expected) in table {
            let range: DayRange = range.parse().unwrap();
            assert_eq!(range.contains(day), expected, "{range} contains {day}");
        }
    }

    #[test]
    fn weekdays_round_trip_through_their_keys_and_match_serde() {
        let keys = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
        for (day, key) in Weekday::ALL.into_iter().zip(keys) {
            assert_eq!(day.key(), key);
            assert_eq!(key.parse::<Weekday>(), Ok(day));
            assert_eq!(day.to_string(), key);
            assert_eq!(serde_norway::to_string(&day).unwrap().trim(), key);
            assert!(day.long_name().starts_with(day.short_name()), "{day}");
        }
        assert!("Mon".parse::<Weekday>().unwrap_err().contains("mon, tue"));
        let friday = NaiveDate::from_ymd_opt(2026, 12, 4).unwrap();
        assert_eq!(Weekday::of(friday), Weekday::Fri);
    }

    #[test]
    fn malformed_calendar_text_is_refused_with_the_expected_shape() {
        assert!("9:00".parse::<TimeOfDay>().unwrap_err().contains("HH:MM"));
        assert!("25:00".parse::<TimeOfDay>().is_err());
        assert!("09:00".parse::<TimeWindow>().unwrap_err().contains("HH:MM-HH:MM"));
        assert!("09:00-09:00".parse::<TimeWindow>().unwrap_err().contains("empty"));
        assert!("2026-12-24..2026-12-01"
            .parse::<DateRange>()
            .unwrap_err()
            .contains("ends before"));
        assert!("monday".parse::<DayRange>().is_err());
        assert!("2026-11-22 09:14:03"
            .parse::<Instant>()
            .unwrap_err()
            .contains("RFC 3339"));
        assert!("open".parse::<DailyHours>().unwrap_err().contains("closed"));
    }

    #[test]
    fn windows_know_when_they_cross_midnight() {
        assert!("22:00-02:00".parse::<TimeWindow>().unwrap().crosses_midnight());
        assert!(!"09:00-20:00".parse::<TimeWindow>().unwrap().crosses_midnight());
    }

    #[test]
    fn instants_accept_only_text_that_reads_back_as_the_same_instant() {
        for text in [
            "2026-11-22T09:14:03Z",
            "2026-11-22 09:14:03+05:45",
            "2026-12-31T23:59:60Z",
            "0000-01-01T00:00:00Z",
            "9999-12-31T23:59:59Z",
        ] {
            let t: Instant = text.parse().unwrap();
            assert_eq!(t.to_string().parse::<Instant>(), Ok(t), "{text} wrote {t}");
        }
        // A fraction of a second is dropped, as whole-second manifests always had it.
        for (text, whole) in [
            ("0000-01-01 00:00:00.1Z", "0000-01-01T00:00:00Z"),
            ("2026-11-22T09:14:03.500Z", "2026-11-22T09:14:03Z"),
            ("2026-12-01T15:21:53.889320427+00:00", "2026-12-01T15:21:53Z"),
        ] {
            let t: Instant = text.parse().unwrap();
            assert_eq!(t.to_string(), whole, "{text}");
            assert_eq!(t.to_string().parse::<Instant>(), Ok(t), "{text} wrote {t}");
        }
        // A year outside 0000..=9999 once in UTC would be written with a sign
        // that does not parse.
        for text in ["0000-01-01T00:30:00+01:00", "9999-12-31T23:30:00-01:00"] {
            let err = text.parse::<Instant>().unwrap_err();
            assert!(err.contains("between the years 0000 and 9999"), "{text}: {err}");
        }
    }

    #[test]
    fn instants_keep_offsets_as_utc() {
        let t: Instant = "2026-11-22T10:14:03+01:00".parse().unwrap();
        assert_eq!(t.to_string(), "2026-11-22T09:14:03Z");
    }
}
