//! Schedule rules from forms: add, delete, and the fallback playlist.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use skycast_schema::shop_target::ALL_SHOPS;
use skycast_schema::{is_plain_name, DateRange, DayRange, ScheduleRule, ShopTarget, TimeWindow, Weekday};

use crate::error::{PublisherError, Result};
use crate::web::form::{bad, shown, Fields};
use crate::web::{Ctx, WebState};

use super::week::{render_planning, rule_fingerprint, PlanningQuery, RuleForm};
use super::*;

/// Turns the add-rule form into a rule, naming the field of the first mistake.
pub(super) fn rule_from_form(
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

/// A rule as the calendar's editor holds it: the add-rule form's fields.
pub(super) fn form_of(rule: &ScheduleRule) -> RuleForm {
    let days = match &rule.days {
        None => Vec::new(),
        Some(ranges) => Weekday::ALL
            .iter()
            .filter(|d| ranges.iter().any(|r| r.contains(**d)))
            .map(|d| d.key().to_string())
            .collect(),
    };
    RuleForm {
        playlist: rule.playlist.clone(),
        shops: rule.shops.iter().map(ToString::to_string).collect(),
        days,
        from_time: rule.time.map(|w| w.start.to_string()).unwrap_or_default(),
        to_time: rule.time.map(|w| w.end.to_string()).unwrap_or_default(),
        date_from: rule.dates.map(|d| d.first.to_string()).unwrap_or_default(),
        date_to: rule.dates.map(|d| d.last.to_string()).unwrap_or_default(),
        priority: rule.priority.to_string(),
    }
}

/// Ticked weekdays as the fewest ranges (`mon-fri`, `sun`); `None` when every
/// day (or none) is ticked: the rule then applies every day.
pub(super) fn day_ranges(days: &BTreeSet<Weekday>) -> Option<Vec<DayRange>> {
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
pub(super) fn back_to_planning(fields: &Fields) -> String {
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

pub(super) async fn add_rule(State(state): State<Arc<WebState>>, ctx: Ctx, body: Bytes) -> Response {
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

pub(super) async fn delete_rule(
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

pub(super) async fn set_fallback(State(state): State<Arc<WebState>>, ctx: Ctx, body: Bytes) -> Response {
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
