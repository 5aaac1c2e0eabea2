//! The preview: what shop X hears on date D at time T, from the draft's resolver.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, NaiveDate, Utc};
use minijinja::context;
use serde::{Deserialize, Serialize};
use skycast_schema::schedule::{local_datetime, FALLBACK_ALL_MUSIC};
use skycast_schema::{History, Manifest, MessageSource, Next, ShopSchedule, TimeOfDay};

use crate::error::Result;
use crate::web::form::{bad, shown};
use crate::web::{Ctx, WebState};

use super::week::{load_draft, rule_view, RuleRef, RuleView};
use super::*;
use crate::describe::media_title;

#[derive(Deserialize, Default)]
pub(super) struct PreviewQuery {
    #[serde(default)]
    shop: Option<String>,
    #[serde(default)]
    date: Option<String>,
    #[serde(default)]
    time: Option<String>,
}

#[derive(Serialize)]
pub(super) struct MessageView {
    title: String,
    /// `ad_at`, `closing`, `interrupt`, `ad_every`.
    source: &'static str,
    /// The planned time (fixed-time ad), the closing time, or the interrupt id.
    detail: String,
    cuts: bool,
}

#[derive(Serialize)]
pub(super) struct PreviewResult {
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
pub(super) struct TrackView {
    title: String,
    artist: Option<String>,
    duration_ms: u64,
}

pub(super) fn preview(m: &Manifest, shop: &str, date: NaiveDate, time: TimeOfDay) -> Result<PreviewResult> {
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
                title: media_title(m, &msg.media),
                source,
                detail,
                cuts: msg.cuts(),
            }
        })
        .collect();
    let first = match s.next_at_boundary(at, &history) {
        Next::Message(msg) => Some(media_title(m, &msg.media)),
        Next::Music(pick) => Some(media_title(m, &pick.media)),
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
                title: media_title(m, &ad.media),
                source: "ad_every",
                detail: n.to_string(),
                cuts: false,
            });
        }
        for t in ad.at.iter().flatten() {
            fixed_times.push(MessageView {
                title: media_title(m, &ad.media),
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
                    title: media_title(m, id),
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

pub(super) async fn preview_page(
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
