//! The media library (marketing): upload MP3s (several at once), search, edit
//! titles, artists and kinds, and listen in the browser through `/media/<id>.mp3`,
//! which every role may open (auditors listen to what was published).

use std::sync::Arc;

use axum::extract::{Multipart, Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Form, Router};
use minijinja::context;
use serde::{Deserialize, Serialize};
use skycast_schema::{MediaId, MediaKind};

use super::upload::{receive_uploads, upload_route};
use super::{Ctx, WebState};
use crate::error::{PublisherError, Result};
use crate::workspace::LibraryMedia;

pub(super) fn routes() -> Router<Arc<WebState>> {
    Router::new()
        .route("/marketing/media", get(library))
        .route("/marketing/media/upload", upload_route(upload))
        .route("/marketing/media/{id}", get(edit_page).post(edit))
        .route("/media/{file}", get(serve_media))
}

/// Kinds marketing picks from; `urgent` media belong to the admin's urgent page.
const KINDS: [&str; 3] = ["music", "ad", "announcement"];

pub(super) fn parse_media_id(text: &str) -> Result<MediaId> {
    text.trim().parse().map_err(|e: skycast_schema::MediaIdError| {
        PublisherError::BadRequest(format!(
            "`{}` is not a media id: {e}",
            text.chars().take(80).collect::<String>()
        ))
    })
}

pub(super) fn parse_kind(text: &str) -> Result<MediaKind> {
    match text.trim() {
        "music" => Ok(MediaKind::Music),
        "ad" => Ok(MediaKind::Ad),
        "announcement" => Ok(MediaKind::Announcement),
        "urgent" => Ok(MediaKind::Urgent),
        other => Err(PublisherError::BadRequest(format!(
            "kind `{other}` is not one of music, ad or announcement: pick one in the list"
        ))),
    }
}

/// One library row as pages show it.
#[derive(Debug, Clone, Serialize)]
pub(super) struct MediaRow {
    pub id: String,
    pub title: String,
    pub artist: Option<String>,
    pub kind: &'static str,
    pub duration_ms: u64,
    /// `-14.2 LUFS`, or empty when the file is silent.
    pub loudness: String,
    pub file_name: String,
    pub added_by: String,
    /// The date part of `added_at`.
    pub added_on: String,
}

impl From<&LibraryMedia> for MediaRow {
    fn from(m: &LibraryMedia) -> MediaRow {
        MediaRow {
            id: m.id.to_string(),
            title: m.title.clone(),
            artist: m.artist.clone(),
            kind: m.kind.as_str(),
            duration_ms: m.duration_ms,
            loudness: m
                .loudness_lufs
                .map(|l| format!("{l:.1} LUFS"))
                .unwrap_or_default(),
            file_name: m.file_name.clone(),
            added_by: m.added_by.clone(),
            added_on: m.added_at.get(..10).unwrap_or(&m.added_at).to_string(),
        }
    }
}

/// One library media as a picker (play now, urgent message) offers it.
#[derive(Debug, Clone, Serialize)]
pub(super) struct MediaChoice {
    id: String,
    title: String,
    kind: &'static str,
    duration_ms: u64,
}

impl From<&LibraryMedia> for MediaChoice {
    fn from(m: &LibraryMedia) -> MediaChoice {
        MediaChoice {
            id: m.id.to_string(),
            title: m.title.clone(),
            kind: m.kind.as_str(),
            duration_ms: m.duration_ms,
        }
    }
}

#[derive(Deserialize)]
struct SearchQuery {
    #[serde(default)]
    q: Option<String>,
}

async fn library(State(state): State<Arc<WebState>>, ctx: Ctx, Query(query): Query<SearchQuery>) -> Response {
    let q = query.q.map(|q| q.trim().to_string()).filter(|q| !q.is_empty());
    let search = q.clone();
    let items = match state
        .with_workspace(move |ws| ws.library(search.as_deref()))
        .await
    {
        Ok(items) => items,
        Err(e) => return state.error_page(&ctx, &e),
    };
    let rows: Vec<MediaRow> = items.iter().map(MediaRow::from).collect();
    state.page(
        &ctx,
        "media_library.html",
        context! {
            rows => rows,
            q => q.unwrap_or_default(),
            kinds => KINDS,
            max_upload_mb => state.max_upload_bytes.div_ceil(1024 * 1024),
        },
    )
}

async fn upload(State(state): State<Arc<WebState>>, ctx: Ctx, multipart: Multipart) -> Response {
    let result = receive_uploads(&state, &ctx, multipart, MediaKind::Music).await;
    match result {
        // Too large: the body was not read to its end; answer with the status (413)
        // and the reason at once.
        Err(e @ PublisherError::UploadTooLarge { .. }) => state.error_page(&ctx, &e),
        result => {
            state
                .done(&ctx, result.and_then(|o| o.summary(ctx.lang)), "/marketing/media")
                .await
        }
    }
}

async fn edit_page(State(state): State<Arc<WebState>>, ctx: Ctx, Path(id): Path<String>) -> Response {
    let found = async {
        let id = parse_media_id(&id)?;
        state
            .with_workspace(move |ws| {
                let media = ws.media(&id)?;
                // Playlists of the draft that play it, so an edit's reach is visible.
                let draft = ws.draft()?;
                let used_in: Vec<String> = draft
                    .program
                    .playlists
                    .iter()
                    .filter(|(_, p)| p.items.contains(&id))
                    .map(|(name, _)| name.clone())
                    .collect();
                Ok((media, used_in))
            })
            .await
    }
    .await;
    match found {
        Ok((media, used_in)) => {
            let mut kinds: Vec<&str> = KINDS.to_vec();
            if !kinds.contains(&media.kind.as_str()) {
                kinds.push(media.kind.as_str());
            }
            state.page(
                &ctx,
                "media_edit.html",
                context! { m => MediaRow::from(&media), kinds => kinds, used_in => used_in },
            )
        }
        Err(e) => state.error_page(&ctx, &e),
    }
}

#[derive(Deserialize)]
struct EditForm {
    #[serde(default)]
    title: String,
    #[serde(default)]
    artist: String,
    #[serde(default)]
    kind: String,
}

async fn edit(
    State(state): State<Arc<WebState>>,
    ctx: Ctx,
    Path(id): Path<String>,
    Form(form): Form<EditForm>,
) -> Response {
    let result = async {
        let id = parse_media_id(&id)?;
        let kind = parse_kind(&form.kind)?;
        let title = form.title.trim().to_string();
        let artist = form.artist.trim().to_string();
        let saved = title.clone();
        state
            .with_workspace(move |ws| {
                ws.update_media(
                    &id,
                    &title,
                    Some(&artist).filter(|a| !a.is_empty()).map(|a| a.as_str()),
                    kind,
                )
            })
            .await?;
        tracing::info!(user = %ctx.username(), media = %id, "media labels changed");
        Ok(format!("{}: {saved}", skycast_web::text(ctx.lang, "media.saved")))
    }
    .await;
    state.done(&ctx, result, "/marketing/media").await
}

/// A file name safe inside a quoted `Content-Disposition` value: ASCII letters,
/// digits, `-`, `_`, `.` and spaces; anything else becomes `_`.
pub(super) fn safe_download_name(label: &str, fallback: &str) -> String {
    let mut name: String = label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ' ') {
                c
            } else {
                '_'
            }
        })
        .take(120)
        .collect();
    name = name.trim_matches(|c| c == '.' || c == ' ').to_string();
    if name.is_empty() {
        return fallback.to_string();
    }
    name
}

/// `bytes=A-B`, `bytes=A-` or `bytes=-N` against a body of `len` bytes. `Err` when
/// the range cannot be satisfied; `Ok(None)` when the header is not one range we
/// understand (the whole body is sent then, as HTTP allows).
fn parse_range(value: &str, len: u64) -> std::result::Result<Option<std::ops::Range<u64>>, ()> {
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let Some((a, b)) = spec.split_once('-') else {
        return Ok(None);
    };
    let (a, b) = (a.trim(), b.trim());
    let range = if a.is_empty() {
        let Ok(suffix) = b.parse::<u64>() else {
            return Ok(None);
        };
        if suffix == 0 || len == 0 {
            return Err(());
        }
        len.saturating_sub(suffix)..len
    } else {
        let Ok(start) = a.parse::<u64>() else {
            return Ok(None);
        };
        let end = if b.is_empty() {
            len
        } else {
            let Ok(last) = b.parse::<u64>() else {
                return Ok(None);
            };
            if last < start {
                return Ok(None);
            }
            last.saturating_add(1).min(len)
        };
        if start >= len {
            return Err(());
        }
        start..end
    };
    Ok(Some(range))
}

/// `GET /media/<id>.mp3`: the bytes of a library (or published) media, for the
/// `<audio>` players. Seeking sends `Range` requests.
async fn serve_media(
    State(state): State<Arc<WebState>>,
    ctx: Ctx,
    Path(file): Path<String>,
    headers: HeaderMap,
) -> Response {
    match media_response(&state, &file, &headers).await {
        Ok(resp) => resp,
        Err(e) => state.error_page(&ctx, &e),
    }
}

async fn media_response(state: &Arc<WebState>, file: &str, headers: &HeaderMap) -> Result<Response> {
    let id = file.strip_suffix(".mp3").ok_or_else(|| {
        PublisherError::BadRequest("media addresses are /media/<64 hex characters>.mp3".into())
    })?;
    let id = parse_media_id(id)?;
    // The database and the store are asked where the file is; its bytes are
    // streamed after, holding neither.
    let (label, path, len) = state
        .with_workspace(move |ws| {
            let label = ws.media_file_name(&id)?;
            let path = ws.media_path(&id)?;
            let len = std::fs::metadata(&path)
                .map_err(PublisherError::io("read the size of", &path))?
                .len();
            Ok((label, path, len))
        })
        .await?;
    let fallback = id.file_name();
    let mut name = safe_download_name(label.as_deref().unwrap_or(&fallback), &fallback);
    if !name.to_ascii_lowercase().ends_with(".mp3") {
        name.push_str(".mp3");
    }
    let range = match headers.get(header::RANGE).and_then(|v| v.to_str().ok()) {
        Some(value) => parse_range(value, len),
        None => Ok(None),
    };
    let (status, body, body_len, content_range) = match range {
        Ok(None) => (
            StatusCode::OK,
            crate::http::file_body(&path, 0..len).await?,
            len,
            None,
        ),
        Ok(Some(r)) => {
            let content_range = format!("bytes {}-{}/{len}", r.start, r.end - 1);
            let body_len = r.end - r.start;
            (
                StatusCode::PARTIAL_CONTENT,
                crate::http::file_body(&path, r).await?,
                body_len,
                Some(content_range),
            )
        }
        Err(()) => (
            StatusCode::RANGE_NOT_SATISFIABLE,
            axum::body::Body::empty(),
            0,
            Some(format!("bytes */{len}")),
        ),
    };
    let mut resp = (status, body).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_LENGTH, body_len.into());
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("audio/mpeg"));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    // Content-addressed: the bytes of an id never change.
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=86400, immutable"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("\"{id}\"")) {
        h.insert(header::ETAG, v);
    }
    if let Ok(v) = HeaderValue::from_str(&format!("inline; filename=\"{name}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    if let Some(v) = content_range.and_then(|c| HeaderValue::from_str(&c).ok()) {
        h.insert(header::CONTENT_RANGE, v);
    }
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_parsed_and_clamped() {
        assert_eq!(parse_range("bytes=0-", 10), Ok(Some(0..10)));
        assert_eq!(parse_range("bytes=2-4", 10), Ok(Some(2..5)));
        assert_eq!(parse_range("bytes=5-99", 10), Ok(Some(5..10)));
        assert_eq!(parse_range("bytes=-3", 10), Ok(Some(7..10)));
        assert_eq!(parse_range("bytes=-30", 10), Ok(Some(0..10)));
        assert_eq!(parse_range("bytes=10-", 10), Err(()));
        assert_eq!(parse_range("bytes=0-1,3-4", 10), Ok(None));
        assert_eq!(parse_range("items=0-1", 10), Ok(None));
        assert_eq!(parse_range("bytes=4-2", 10), Ok(None));
    }

    #[test]
    fn download_names_keep_only_safe_characters() {
        assert_eq!(
            safe_download_name("../../etc/passwd.mp3", "x.mp3"),
            "_.._etc_passwd.mp3"
        );
        assert_eq!(safe_download_name("a\"b\r\n.mp3", "x.mp3"), "a_b__.mp3");
        assert_eq!(safe_download_name("Été à Paris.mp3", "x.mp3"), "_t_ _ Paris.mp3");
        assert_eq!(safe_download_name("...", "x.mp3"), "x.mp3");
    }
}
