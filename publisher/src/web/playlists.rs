//! Playlists (marketing): create them in the draft, add and remove tracks, reorder
//! them (drag and drop, or up/down buttons without JS), pick shuffle or sequential,
//! delete those no rule uses, and download one as an `.m3u`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use minijinja::context;
use serde::{Deserialize, Serialize};
use skycast_schema::{is_plain_name, MediaId, PlayOrder, Playlist, Program, ShopTarget, PLAIN_NAME_RULE};

use super::form::Fields;
use super::media::{parse_media_id, MediaRow};
use super::{Ctx, WebState};
use crate::error::{PublisherError, Result};
use crate::workspace::{Draft, LibraryMedia};

pub(super) fn routes() -> Router<Arc<WebState>> {
    Router::new()
        .route("/marketing/playlists", get(list).post(create))
        // `{name}.m3u` is the download: a playlist name never holds a dot.
        .route("/marketing/playlists/{name}", get(editor_or_m3u).post(save))
        .route("/marketing/playlists/{name}/delete", post(delete))
        .route("/marketing/playlists/{name}/rename", post(rename))
}

/// A playlist name as the manifest requires it, with a message saying how to fix it.
fn check_playlist_name(name: &str) -> Result<()> {
    if is_plain_name(name) {
        Ok(())
    } else {
        Err(PublisherError::BadRequest(format!(
            "playlist name `{}` must be {PLAIN_NAME_RULE}",
            name.chars().take(80).collect::<String>()
        )))
    }
}

fn parse_order(text: &str) -> Result<PlayOrder> {
    match text.trim() {
        "sequential" => Ok(PlayOrder::Sequential),
        "shuffle" => Ok(PlayOrder::Shuffle),
        other => Err(PublisherError::BadRequest(format!(
            "order `{}` is neither sequential nor shuffle",
            other.chars().take(40).collect::<String>()
        ))),
    }
}

fn order_text(order: PlayOrder) -> &'static str {
    match order {
        PlayOrder::Sequential => "sequential",
        PlayOrder::Shuffle => "shuffle",
    }
}

/// Why a playlist may not be deleted: each schedule rule (and the fallback) using it.
fn users_of(program: &Program<MediaId>, name: &str) -> Vec<String> {
    let mut out: Vec<String> = program
        .schedule
        .iter()
        .enumerate()
        .filter(|(_, rule)| rule.playlist == name)
        .map(|(i, rule)| {
            let mut text = format!("schedule rule {} (shops {}", i + 1, ShopTarget::join(&rule.shops));
            if let Some(days) = &rule.days {
                let days: Vec<String> = days.iter().map(ToString::to_string).collect();
                text.push_str(&format!("; days {}", days.join(", ")));
            }
            if let Some(time) = &rule.time {
                text.push_str(&format!("; {time}"));
            }
            if let Some(dates) = &rule.dates {
                text.push_str(&format!("; dates {dates}"));
            }
            text.push_str(&format!("; priority {})", rule.priority));
            text
        })
        .collect();
    if program.playback.fallback_playlist.as_deref() == Some(name) {
        out.push("the fallback playlist of the playback settings".to_string());
    }
    out
}

#[derive(Debug, Serialize)]
struct PlaylistRow {
    name: String,
    order: &'static str,
    count: usize,
    duration_ms: u64,
    /// Rules (and the fallback) that play it.
    used_by: usize,
}

#[derive(Debug, Serialize)]
struct ItemView {
    /// Position in the list, from 0: what `move_up`, `move_down` and `remove` send.
    pos: usize,
    id: String,
    title: String,
    artist: Option<String>,
    kind: &'static str,
    duration_ms: u64,
}

fn total_ms(items: &[MediaId], by_id: &HashMap<MediaId, &LibraryMedia>) -> u64 {
    items
        .iter()
        .filter_map(|id| by_id.get(id))
        .map(|m| m.duration_ms)
        .sum()
}

#[derive(Deserialize)]
struct SearchQuery {
    #[serde(default)]
    q: Option<String>,
}

async fn list(State(state): State<Arc<WebState>>, ctx: Ctx) -> Response {
    let loaded = state
        .with_workspace(|ws| Ok((ws.draft()?, ws.library(None)?)))
        .await;
    let (draft, library) = match loaded {
        Ok(x) => x,
        Err(e) => return state.error_page(&ctx, &e),
    };
    let by_id: HashMap<MediaId, &LibraryMedia> = library.iter().map(|m| (m.id, m)).collect();
    let rows: Vec<PlaylistRow> = draft
        .program
        .playlists
        .iter()
        .map(|(name, p)| PlaylistRow {
            name: name.clone(),
            order: order_text(p.order),
            count: p.items.len(),
            duration_ms: total_ms(&p.items, &by_id),
            used_by: users_of(&draft.program, name).len(),
        })
        .collect();
    let tracks: Vec<MediaRow> = library.iter().map(MediaRow::from).collect();
    state.page(
        &ctx,
        "playlists_list.html",
        context! { playlists => rows, tracks => tracks },
    )
}

async fn create(State(state): State<Arc<WebState>>, ctx: Ctx, body: Bytes) -> Response {
    let form = Fields::parse(&body);
    let name = form.get("name");
    let result = async {
        check_playlist_name(&name)?;
        let order = parse_order(form.first("order").unwrap_or("sequential"))?;
        let items = form.media_ids("items")?;
        if items.is_empty() {
            return Err(PublisherError::BadRequest(skycast_web::text(ctx.lang, "playlists.need_tracks")));
        }
        let count = items.len();
        let (by, now, key) = (ctx.username().to_string(), state.now(), name.clone());
        state
            .with_workspace(move |ws| {
                ws.edit_draft(&by, now, |d: &mut Draft| {
                    if d.program.playlists.contains_key(&key) {
                        return Err(PublisherError::Conflict(format!(
                            "a playlist named `{key}` already exists: open it from the list or pick another name"
                        )));
                    }
                    d.program.playlists.insert(key.clone(), Playlist { order, items });
                    Ok(())
                })
            })
            .await?;
        tracing::info!(user = %ctx.username(), playlist = %name, items = count, "playlist created in the draft");
        Ok(format!("{} `{name}` ({count})", skycast_web::text(ctx.lang, "playlists.created")))
    }
    .await;
    let to = if result.is_ok() {
        format!("/marketing/playlists/{name}")
    } else {
        "/marketing/playlists".to_string()
    };
    state.done(&ctx, result, &to).await
}

async fn editor_or_m3u(
    State(state): State<Arc<WebState>>,
    ctx: Ctx,
    Path(name): Path<String>,
    Query(query): Query<SearchQuery>,
) -> Response {
    if let Some(name) = name.strip_suffix(".m3u") {
        return match m3u(&state, name).await {
            Ok(resp) => resp,
            Err(e) => state.error_page(&ctx, &e),
        };
    }
    match editor(&state, &ctx, &name, query.q).await {
        Ok(resp) => resp,
        Err(e) => state.error_page(&ctx, &e),
    }
}

fn no_such_playlist(name: &str) -> PublisherError {
    PublisherError::NotFound(format!(
        "playlist `{}` is not in the draft: pick one from the playlists page",
        name.chars().take(80).collect::<String>()
    ))
}

async fn editor(state: &Arc<WebState>, ctx: &Ctx, name: &str, q: Option<String>) -> Result<Response> {
    check_playlist_name(name).map_err(|_| no_such_playlist(name))?;
    let q = q.map(|q| q.trim().to_string()).filter(|q| !q.is_empty());
    let search = q.clone();
    let (draft, library, found) = state
        .with_workspace(move |ws| {
            let library = ws.library(None)?;
            let found = match &search {
                Some(s) => ws.library(Some(s))?,
                None => library.clone(),
            };
            Ok((ws.draft()?, library, found))
        })
        .await?;
    let playlist = draft
        .program
        .playlists
        .get(name)
        .ok_or_else(|| no_such_playlist(name))?;
    let by_id: HashMap<MediaId, &LibraryMedia> = library.iter().map(|m| (m.id, m)).collect();
    let items: Vec<ItemView> = playlist
        .items
        .iter()
        .enumerate()
        .map(|(pos, id)| match by_id.get(id) {
            Some(m) => ItemView {
                pos,
                id: id.to_string(),
                title: m.title.clone(),
                artist: m.artist.clone(),
                kind: m.kind.as_str(),
                duration_ms: m.duration_ms,
            },
            None => ItemView {
                pos,
                id: id.to_string(),
                title: id.short(),
                artist: None,
                kind: "",
                duration_ms: 0,
            },
        })
        .collect();
    let candidates: Vec<MediaRow> = found.iter().map(MediaRow::from).collect();
    Ok(state.page(
        ctx,
        "playlists_edit.html",
        context! {
            name => name,
            order => order_text(playlist.order),
            items => items,
            total_ms => total_ms(&playlist.items, &by_id),
            candidates => candidates,
            q => q.unwrap_or_default(),
            used_by => users_of(&draft.program, name),
        },
    ))
}

/// The list a save produces: `items` as submitted (or the saved list when the form
/// sends none), one `move_up`/`move_down` applied, `remove`d entries dropped (by
/// position or by media id), then `add`ed ids appended. Positions are those the
/// page was rendered with: each submitted item may carry its own in a parallel
/// `slot` field, so a drag before pressing a button still names the right track;
/// without `slot`s, an item's position is its index in what was submitted.
fn apply_edit(saved: &[MediaId], form: &Fields) -> Result<Vec<MediaId>> {
    let submitted = form.media_ids("items")?;
    let position = |key: &str, text: &str| -> Result<usize> {
        text.trim().parse::<usize>().map_err(|_| {
            PublisherError::BadRequest(format!(
                "`{key}` must be a position in the list, not `{}`",
                text.chars().take(40).collect::<String>()
            ))
        })
    };
    let mut list: Vec<(usize, MediaId)> = if submitted.is_empty() {
        saved.iter().copied().enumerate().collect()
    } else {
        let slots = form.values("slot");
        if slots.len() == submitted.len() {
            let slots = slots
                .into_iter()
                .map(|s| position("slot", s))
                .collect::<Result<Vec<usize>>>()?;
            slots.into_iter().zip(submitted).collect()
        } else {
            submitted.into_iter().enumerate().collect()
        }
    };
    let index_of = |list: &[(usize, MediaId)], p: usize| list.iter().position(|(slot, _)| *slot == p);
    if let Some(text) = form.first("move_up") {
        let p = position("move_up", text)?;
        if let Some(i) = index_of(&list, p).filter(|i| *i > 0) {
            list.swap(i - 1, i);
        }
    }
    if let Some(text) = form.first("move_down") {
        let p = position("move_down", text)?;
        if let Some(i) = index_of(&list, p).filter(|i| i + 1 < list.len()) {
            list.swap(i, i + 1);
        }
    }
    let mut removed_positions = Vec::new();
    let mut removed_ids = Vec::new();
    for text in form.values("remove") {
        match text.trim().parse::<usize>() {
            Ok(p) => removed_positions.push(p),
            Err(_) => removed_ids.push(parse_media_id(text)?),
        }
    }
    list.retain(|(slot, id)| !removed_positions.contains(slot) && !removed_ids.contains(id));
    let mut out: Vec<MediaId> = list.into_iter().map(|(_, id)| id).collect();
    out.extend(form.media_ids("add")?);
    Ok(out)
}

async fn save(
    State(state): State<Arc<WebState>>,
    ctx: Ctx,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    let form = Fields::parse(&body);
    let result = async {
        check_playlist_name(&name).map_err(|_| no_such_playlist(&name))?;
        let order = form.first("order").map(parse_order).transpose()?;
        let (by, now, key) = (ctx.username().to_string(), state.now(), name.clone());
        let need_tracks = skycast_web::text(ctx.lang, "playlists.need_tracks_keep");
        let draft = state
            .with_workspace(move |ws| {
                ws.edit_draft(&by, now, |d: &mut Draft| {
                    let playlist = d.program.playlists.get_mut(&key).ok_or_else(|| no_such_playlist(&key))?;
                    let items = apply_edit(&playlist.items, &form)?;
                    if items.is_empty() {
                        return Err(PublisherError::BadRequest(need_tracks));
                    }
                    playlist.items = items;
                    if let Some(order) = order {
                        playlist.order = order;
                    }
                    Ok(())
                })
            })
            .await?;
        let count = draft.program.playlists.get(&name).map_or(0, |p| p.items.len());
        tracing::info!(user = %ctx.username(), playlist = %name, items = count, "playlist saved in the draft");
        Ok(format!("{} `{name}` ({count})", skycast_web::text(ctx.lang, "playlists.saved")))
    }
    .await;
    // Back to the editor, unless there is no such playlist to go back to.
    let to = match &result {
        Err(PublisherError::NotFound(_)) => "/marketing/playlists".to_string(),
        _ => format!("/marketing/playlists/{name}"),
    };
    state.done(&ctx, result, &to).await
}

async fn delete(State(state): State<Arc<WebState>>, ctx: Ctx, Path(name): Path<String>) -> Response {
    let result = async {
        check_playlist_name(&name).map_err(|_| no_such_playlist(&name))?;
        let (by, now, key) = (ctx.username().to_string(), state.now(), name.clone());
        state
            .with_workspace(move |ws| {
                ws.edit_draft(&by, now, |d: &mut Draft| {
                    if !d.program.playlists.contains_key(&key) {
                        return Err(no_such_playlist(&key));
                    }
                    let users = users_of(&d.program, &key);
                    if !users.is_empty() {
                        return Err(PublisherError::Conflict(format!(
                            "playlist `{key}` is still played by {}: change or remove that on the planning page first",
                            users.join(" and ")
                        )));
                    }
                    d.program.playlists.remove(&key);
                    Ok(())
                })
            })
            .await?;
        tracing::info!(user = %ctx.username(), playlist = %name, "playlist deleted from the draft");
        Ok(format!("{} `{name}`", skycast_web::text(ctx.lang, "playlists.deleted")))
    }
    .await;
    state.done(&ctx, result, "/marketing/playlists").await
}

/// Renames playlist `old` to `new` everywhere the draft names it: the schedule's
/// rules and the fallback. Refused when `new` is taken or not a plain name.
fn rename_playlist(program: &mut Program<MediaId>, old: &str, new: &str) -> Result<()> {
    check_playlist_name(new)
        .map_err(|e| PublisherError::BadRequest(format!("field `new_name`: {}", e.public_message())))?;
    if program.playlists.contains_key(new) {
        return Err(PublisherError::Conflict(format!(
            "a playlist named `{new}` already exists: pick another name"
        )));
    }
    let playlist = program
        .playlists
        .remove(old)
        .ok_or_else(|| no_such_playlist(old))?;
    program.playlists.insert(new.to_string(), playlist);
    for rule in program.schedule.iter_mut().filter(|r| r.playlist == old) {
        rule.playlist = new.to_string();
    }
    if program.playback.fallback_playlist.as_deref() == Some(old) {
        program.playback.fallback_playlist = Some(new.to_string());
    }
    Ok(())
}

async fn rename(
    State(state): State<Arc<WebState>>,
    ctx: Ctx,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    let new = Fields::parse(&body).get("new_name").trim().to_string();
    let result = async {
        check_playlist_name(&name).map_err(|_| no_such_playlist(&name))?;
        let (by, now, old, to) = (ctx.username().to_string(), state.now(), name.clone(), new.clone());
        state
            .with_workspace(move |ws| ws.edit_draft(&by, now, |d: &mut Draft| rename_playlist(&mut d.program, &old, &to)))
            .await?;
        tracing::info!(user = %ctx.username(), playlist = %name, renamed_to = %new, "playlist renamed in the draft");
        Ok(format!("{} `{name}` → `{new}`", skycast_web::text(ctx.lang, "playlists.renamed")))
    }
    .await;
    let back = if result.is_ok() {
        format!("/marketing/playlists/{new}")
    } else {
        format!("/marketing/playlists/{name}")
    };
    state.done(&ctx, result, &back).await
}

/// One `#EXTINF` label: no line breaks or control characters, which would end it.
fn m3u_label(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// The playlist as an extended M3U naming `/media/<id>.mp3` (root-relative URLs:
/// a player signed in to this server, or a tool given its base URL, resolves them).
fn m3u_text(playlist: &Playlist<MediaId>, by_id: &BTreeMap<MediaId, LibraryMedia>) -> String {
    let mut out = String::from("#EXTM3U\n");
    for id in &playlist.items {
        let (secs, label) = match by_id.get(id) {
            Some(m) => {
                let label = match &m.artist {
                    Some(a) => format!("{} - {}", m3u_label(a), m3u_label(&m.title)),
                    None => m3u_label(&m.title),
                };
                ((m.duration_ms + 500) / 1000, label)
            }
            None => (0, id.short()),
        };
        out.push_str(&format!("#EXTINF:{secs},{label}\n/media/{id}.mp3\n"));
    }
    out
}

async fn m3u(state: &Arc<WebState>, name: &str) -> Result<Response> {
    check_playlist_name(name).map_err(|_| no_such_playlist(name))?;
    let (draft, library) = state
        .with_workspace(|ws| Ok((ws.draft()?, ws.library(None)?)))
        .await?;
    let playlist = draft
        .program
        .playlists
        .get(name)
        .ok_or_else(|| no_such_playlist(name))?;
    let by_id: BTreeMap<MediaId, LibraryMedia> = library.into_iter().map(|m| (m.id, m)).collect();
    let body = m3u_text(playlist, &by_id);
    let mut resp = (StatusCode::OK, body).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("audio/x-mpegurl; charset=utf-8"),
    );
    // `name` passed check_playlist_name: only a-z, 0-9, `-` and `_`.
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}.m3u\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> MediaId {
        MediaId::of(&[n])
    }

    fn form(pairs: &[(&str, String)]) -> Fields {
        Fields::new(pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect())
    }

    #[test]
    fn a_renamed_playlist_is_renamed_in_its_rules_and_the_fallback_only() {
        let mut program: Program<MediaId> = serde_norway::from_str(
            "{playlists: {main-sat-1400: {items: []}, jazz: {items: []}}, shops: {main: {hours: {}}},
              schedule: [{playlist: main-sat-1400, shops: [main]}, {playlist: jazz, shops: [main]}],
              playback: {fallback_playlist: main-sat-1400}}",
        )
        .unwrap();
        rename_playlist(&mut program, "main-sat-1400", "saturday-treats").unwrap();
        assert_eq!(
            program.playlists.keys().collect::<Vec<_>>(),
            ["jazz", "saturday-treats"]
        );
        assert_eq!(program.schedule[0].playlist, "saturday-treats");
        assert_eq!(program.schedule[1].playlist, "jazz");
        assert_eq!(
            program.playback.fallback_playlist.as_deref(),
            Some("saturday-treats")
        );
        let before = program.clone();
        for (to, status) in [
            ("jazz", StatusCode::CONFLICT),
            ("Bad Name", StatusCode::BAD_REQUEST),
            ("", StatusCode::BAD_REQUEST),
        ] {
            let e = rename_playlist(&mut program, "saturday-treats", to).unwrap_err();
            assert_eq!(e.status(), status, "{to}: {e}");
            assert_eq!(program, before, "{to}");
        }
        assert_eq!(
            rename_playlist(&mut program, "gone", "other")
                .unwrap_err()
                .status(),
            StatusCode::NOT_FOUND
        );
    }

    #[test]
    fn saving_keeps_the_submitted_order_then_moves_removes_and_adds() {
        let saved = [id(1), id(2), id(3)];
        let items = |ids: &[MediaId]| -> Vec<(&str, String)> {
            ids.iter().map(|i| ("items", i.to_string())).collect()
        };
        // Reordered by dragging: the submitted order wins.
        let f = form(&items(&[id(3), id(1), id(2)]));
        assert_eq!(apply_edit(&saved, &f).unwrap(), vec![id(3), id(1), id(2)]);
        // No items sent: the saved list, plus what is added.
        let f = form(&[("add", id(4).to_string())]);
        assert_eq!(apply_edit(&saved, &f).unwrap(), vec![id(1), id(2), id(3), id(4)]);
        // Up and down buttons, with positions out of range ignored.
        let mut p = items(&saved);
        p.push(("move_up", "2".into()));
        assert_eq!(apply_edit(&saved, &form(&p)).unwrap(), vec![id(1), id(3), id(2)]);
        let mut p = items(&saved);
        p.push(("move_down", "2".into()));
        assert_eq!(apply_edit(&saved, &form(&p)).unwrap(), saved.to_vec());
        let mut p = items(&saved);
        p.push(("move_up", "0".into()));
        assert_eq!(apply_edit(&saved, &form(&p)).unwrap(), saved.to_vec());
        // Remove by position (in the submitted list) and by id.
        let mut p = items(&saved);
        p.push(("remove", "0".into()));
        p.push(("remove", id(3).to_string()));
        assert_eq!(apply_edit(&saved, &form(&p)).unwrap(), vec![id(2)]);
        // Dragged, then a button: `slot`s say which track each position named.
        let dragged = [id(3), id(1), id(2)];
        let mut p = items(&dragged);
        for slot in ["2", "0", "1"] {
            p.push(("slot", slot.into()));
        }
        p.push(("move_down", "2".into()));
        p.push(("remove", "1".into()));
        assert_eq!(apply_edit(&saved, &form(&p)).unwrap(), vec![id(1), id(3)]);
        // Garbage is refused, not ignored.
        assert!(apply_edit(&saved, &form(&[("items", "x".into())])).is_err());
        assert!(apply_edit(&saved, &form(&[("move_up", "x".into())])).is_err());
    }

    #[test]
    fn playlist_names_follow_the_manifest_rules() {
        for ok in ["summer", "a", "x-1_b", "9am"] {
            check_playlist_name(ok).unwrap();
        }
        for bad in ["", "Summer", "a b", "-x", "a.m3u", "../x", &"a".repeat(65)] {
            assert!(check_playlist_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn m3u_lines_cannot_be_broken_by_titles() {
        let m = LibraryMedia {
            id: id(1),
            title: "A\nB".into(),
            artist: Some("X".into()),
            kind: skycast_schema::MediaKind::Music,
            duration_ms: 61_600,
            size: 1,
            loudness_lufs: None,
            file_name: "a.mp3".into(),
            added_by: "m".into(),
            added_at: "2026-01-01T00:00:00Z".into(),
        };
        let by_id = BTreeMap::from([(m.id, m)]);
        let p = Playlist {
            order: PlayOrder::Sequential,
            items: vec![id(1)],
        };
        assert_eq!(
            m3u_text(&p, &by_id),
            format!("#EXTM3U\n#EXTINF:62,X - A B\n/media/{}.mp3\n", id(1))
        );
    }
}
