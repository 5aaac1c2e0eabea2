//! Marketing's planning pages: the marketing home (draft status, counts, what each
//! shop plays now), the week view of the draft (per shop or for all shops) with
//! conflicts, schedule rules (add, delete, fallback playlist) and the preview
//! answering "what does shop X hear on date D at time T". Every answer comes from
//! the schema's resolver (`ShopSchedule`) run on the draft's unsigned manifest, so
//! the page shows exactly what players would do once it is published.

mod calendar;
mod calendar_ads;
mod calendar_edit;
mod home;
mod preview;
mod rules;
mod week;

use std::sync::Arc;

use axum::routing::{get, post};
use axum::Router;
use chrono::{DateTime, Datelike, NaiveDate, NaiveTime, TimeDelta, Utc};
use serde::Serialize;
use skycast_schema::schedule::local_datetime;
use skycast_schema::{ShopSchedule, ShopTarget, TimeOfDay, Weekday};

use super::form::{bad, shown};
use super::WebState;
use crate::error::Result;

use calendar::{ads_calendar_page, calendar_page};
use calendar_ads::edit_ad;
use calendar_edit::{drop_files, edit_rule};
use home::home;
use preview::preview_page;
use rules::{add_rule, delete_rule, set_fallback};
use week::planning_page;
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
        .route("/marketing/calendar", get(calendar_page))
        .route("/marketing/calendar/rules", post(edit_rule))
        .route("/commercial/calendar", get(ads_calendar_page))
        .route("/commercial/calendar/ads", post(edit_ad))
        .route(
            "/marketing/calendar/drop",
            super::upload::upload_route(drop_files),
        )
}

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
pub(super) fn hhmm(s: &ShopSchedule<'_>, at: DateTime<Utc>, day: NaiveDate) -> String {
    let local = s.local_datetime(at);
    if local.date() > day && local.time() == NaiveTime::MIN {
        "24:00".to_string()
    } else {
        local.format("%H:%M").to_string()
    }
}

/// Today in the draft's time zone, and the date a page's `week` field names
/// (today when empty), with a notice when the field is not a date.
pub(super) fn today_and_chosen(
    timezone: &str,
    now: DateTime<Utc>,
    week: Option<&str>,
) -> (NaiveDate, NaiveDate, Option<String>) {
    let today = local_datetime(timezone, now).map_or(now.date_naive(), |l| l.date());
    match week.filter(|w| !w.is_empty()) {
        None => (today, today, None),
        Some(w) => match parse_date("week", w) {
            Ok(date) => (today, date, None),
            Err(e) => (today, today, Some(e.public_message())),
        },
    }
}

/// Identifies a rule's content (schedule or ad rule), so a change named by
/// position never lands on a rule another editor changed meanwhile.
pub(super) fn fingerprint<T: Serialize>(rule: &T) -> String {
    let text = serde_json::to_string(rule).unwrap_or_default();
    blake3::hash(text.as_bytes()).to_hex()[..16].to_string()
}

pub(super) fn weekday_key(date: NaiveDate) -> &'static str {
    Weekday::of(date).key()
}

pub(super) fn monday_of(date: NaiveDate) -> NaiveDate {
    date - TimeDelta::days(i64::from(date.weekday().num_days_from_monday()))
}

pub(super) fn rule_shops_text(shops: &[ShopTarget]) -> Vec<Target> {
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
pub(super) struct Target {
    /// `all`, `tag` or `shop`.
    kind: &'static str,
    name: String,
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::rules::day_ranges;
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
