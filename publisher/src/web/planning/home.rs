//! The marketing home: the draft's state, counts, and what each shop plays now.

use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;
use chrono::{DateTime, Utc};
use minijinja::context;
use serde::Serialize;
use skycast_schema::schedule::{local_datetime, FALLBACK_ALL_MUSIC};
use skycast_schema::{Manifest, ShopSchedule};

use crate::web::{Ctx, WebState};
use crate::workspace::Draft;

#[derive(Serialize)]
pub(super) struct NowPlaying {
    shop: String,
    playlist: Option<String>,
    /// No rule and no fallback playlist: all the music of the version plays.
    all_music: bool,
    rule: Option<usize>,
    reopens: Option<String>,
}

#[derive(Serialize)]
pub(super) struct HeadInfo {
    version: u64,
    author: String,
    time: String,
}

pub(super) struct HomeData {
    differs: bool,
    draft: Draft,
    media_count: usize,
    head: Option<Manifest>,
}

pub(super) async fn home(State(state): State<Arc<WebState>>, ctx: Ctx) -> Response {
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
