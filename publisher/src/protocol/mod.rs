//! The pull protocol (DESIGN §5) players speak: head with long-poll, immutable
//! manifests and signatures, ranged media, all behind per-player bearer tokens.
//! Its errors answer as JSON `{"error": "..."}`.

mod head;
mod range;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use skycast_schema::protocol::{version_file_path, HEAD_PATH, MEDIA_PREFIX, VERSIONS_PREFIX};
use skycast_schema::{Head, MediaId};
use tokio::sync::watch;

use crate::data_dir::DataDir;
use crate::error::{PublisherError, Result};
use crate::store::{MANIFEST_FILE, SIGNATURE_FILE};
pub(crate) use head::HeadTracker;

/// Longest long-poll a player may ask for.
const MAX_WAIT_SECS: u64 = 60;
const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// What the protocol's handlers share.
pub(crate) struct ProtocolState {
    data: DataDir,
    head: Arc<HeadTracker>,
    /// Token lookups; no lock around it: `Db` checks out a connection per call.
    db: crate::db::Db,
    shutdown: watch::Receiver<bool>,
}

impl ProtocolState {
    /// `shutdown` turning true ends every long-poll at once.
    pub(crate) fn new(
        data: DataDir,
        head: Arc<HeadTracker>,
        shutdown: watch::Receiver<bool>,
    ) -> Result<Self> {
        Ok(ProtocolState {
            db: data.db()?,
            data,
            head,
            shutdown,
        })
    }
}

pub(crate) fn router(state: Arc<ProtocolState>) -> Router {
    Router::new()
        .route(HEAD_PATH, get(head))
        .route(
            &format!("{VERSIONS_PREFIX}/{{version}}/{{file}}"),
            get(version_file),
        )
        .route(&format!("{MEDIA_PREFIX}/{{id}}"), get(media))
        .layer(middleware::from_fn_with_state(state.clone(), require_player))
        .with_state(state)
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| PublisherError::Internal(e.to_string()))?
}

/// Lets a request through only with the bearer token of an enabled player.
async fn require_player(State(state): State<Arc<ProtocolState>>, req: Request, next: Next) -> Response {
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string);
    let Some(token) = token else {
        return PublisherError::Unauthorized.into_response();
    };
    let state2 = state.clone();
    let found = blocking(move || Ok(state2.db.player_by_token(&token)?)).await;
    match found {
        Ok(Some(_)) => next.run(req).await,
        Ok(None) => PublisherError::Unauthorized.into_response(),
        Err(e) => e.into_response(),
    }
}

#[derive(Deserialize)]
struct HeadQuery {
    after: Option<u64>,
    wait: Option<u64>,
}

async fn head(State(state): State<Arc<ProtocolState>>, Query(q): Query<HeadQuery>) -> Result<Json<Head>> {
    // A plain poll is never behind a publish from another process.
    state.head.refresh().await?;
    let mut rx = state.head.subscribe();
    if let (Some(after), Some(wait)) = (q.after, q.wait) {
        let wait = Duration::from_secs(wait.min(MAX_WAIT_SECS));
        let mut stop = state.shutdown.clone();
        tokio::select! {
            _ = tokio::time::timeout(wait, rx.wait_for(|h| h.version > after)) => {}
            _ = stop.wait_for(|s| *s) => {}
        }
    }
    let current = rx.borrow().clone();
    Ok(Json(current))
}

async fn version_file(
    State(state): State<Arc<ProtocolState>>,
    Path((version, file)): Path<(u64, String)>,
    headers: HeaderMap,
) -> Result<Response> {
    if file != MANIFEST_FILE && file != SIGNATURE_FILE {
        return Err(PublisherError::NotFound(version_file_path(version, &file)));
    }
    let data = state.data.clone();
    let name = file.clone();
    let bytes = blocking(move || Ok(data.store()?.version_file(version, &name)?)).await?;
    let etag = format!("\"{}\"", &blake3::hash(&bytes).to_hex()[..32]);
    let content_type = if file == MANIFEST_FILE {
        "application/yaml"
    } else {
        "text/plain; charset=utf-8"
    };
    Ok(immutable_response(&headers, &etag, content_type, bytes))
}

fn immutable_response(req: &HeaderMap, etag: &str, content_type: &'static str, body: Vec<u8>) -> Response {
    let mut resp = if req
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| v.as_bytes() == etag.as_bytes())
    {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        body.into_response()
    };
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(v) = HeaderValue::from_str(etag) {
        h.insert(header::ETAG, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(IMMUTABLE));
    resp
}

async fn media(
    State(state): State<Arc<ProtocolState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response> {
    let id: MediaId = id
        .parse()
        .map_err(|e: skycast_schema::MediaIdError| PublisherError::BadRequest(e.to_string()))?;
    let blob = state
        .head
        .blob_of(&id)
        .ok_or_else(|| PublisherError::NotFound(format!("media {id}")))?;
    let data = state.data.clone();
    let bytes = blocking(move || Ok(data.store()?.read_blob(blob)?)).await?;
    let etag = format!("\"{id}\"");
    let len = bytes.len() as u64;
    let Some(range) = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
    else {
        let mut resp = immutable_response(&headers, &etag, "audio/mpeg", bytes);
        resp.headers_mut()
            .insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
        return Ok(resp);
    };
    match range::parse_range(&range, len) {
        Some(r) => {
            let content_range = format!("bytes {}-{}/{len}", r.start, r.end - 1);
            let body = bytes[r.start as usize..r.end as usize].to_vec();
            let mut resp = immutable_response(&HeaderMap::new(), &etag, "audio/mpeg", body);
            *resp.status_mut() = StatusCode::PARTIAL_CONTENT;
            let h = resp.headers_mut();
            h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
            if let Ok(v) = HeaderValue::from_str(&content_range) {
                h.insert(header::CONTENT_RANGE, v);
            }
            Ok(resp)
        }
        None => {
            let mut resp = StatusCode::RANGE_NOT_SATISFIABLE.into_response();
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{len}")) {
                resp.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            Ok(resp)
        }
    }
}
