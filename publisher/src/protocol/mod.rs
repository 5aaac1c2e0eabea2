//! The pull protocol (DESIGN §5) players speak: head with long-poll, immutable
//! manifests and signatures, ranged media, all behind per-player bearer tokens;
//! and enrolment (`enroll.rs`), the only requests without one. Its errors
//! answer as JSON `{"error": "..."}`.

mod enroll;
mod head;
mod players;
mod range;
mod report;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Extension, Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use skycast_schema::protocol::{
    root_file_path, version_file_path, HEAD_PATH, MEDIA_PREFIX, ROOTS_PREFIX, ROOT_FILE, ROOT_SIGNATURE_FILE,
    VERSIONS_PREFIX,
};
use skycast_schema::report::report_path;
use skycast_schema::MediaId;
use tokio::sync::watch;

use crate::data_dir::DataDir;
use crate::error::{PublisherError, Result};
use crate::store::{MANIFEST_FILE, SIGNATURE_FILE};
pub(crate) use head::HeadTracker;

/// Longest long-poll a player may ask for.
const MAX_WAIT_SECS: u64 = 60;
/// Immutable, but only for the player that asked: every response needs a token,
/// so no shared cache may keep it (a mirror path may be public later).
const IMMUTABLE: &str = "private, max-age=31536000, immutable";

/// What the protocol's handlers share.
pub(crate) struct ProtocolState {
    data: DataDir,
    head: Arc<HeadTracker>,
    /// Reloads of the token set; no lock around it: `Db` checks out a connection per call.
    db: crate::db::Db,
    /// Enabled players by token hash, reloaded on change (`players.rs`): a
    /// request is admitted by a map lookup behind a read lock held for a clone.
    tokens: std::sync::RwLock<Arc<players::TokenSet>>,
    /// The players' signal file as it was before the last reload.
    tokens_seen: std::sync::Mutex<Option<crate::stamp::FileStamp>>,
    /// One reload at a time; requests arriving meanwhile wait for its result.
    reloading: tokio::sync::Mutex<()>,
    shutdown: watch::Receiver<bool>,
    /// The database's player generation as last polled (`players.rs`): waiting
    /// long-polls re-check their token when it moves.
    players: watch::Sender<u64>,
    /// Reports in, commands out (`report.rs`).
    fleet: Arc<crate::fleet::Fleet>,
    /// Wrong enrolment codes by address (`enroll.rs`).
    codes: enroll::CodeThrottle,
}

impl ProtocolState {
    /// `shutdown` turning true ends every long-poll at once.
    pub(crate) fn new(
        data: DataDir,
        head: Arc<HeadTracker>,
        fleet: Arc<crate::fleet::Fleet>,
        shutdown: watch::Receiver<bool>,
    ) -> Result<Self> {
        let db = data.db()?;
        let signal = crate::stamp::FileStamp::of(&db.players_signal_path());
        let tokens = players::TokenSet::load(&db)?;
        tokens.share_with_followers(&data);
        let players = watch::Sender::new(tokens.generation);
        Ok(ProtocolState {
            db,
            tokens: std::sync::RwLock::new(Arc::new(tokens)),
            tokens_seen: std::sync::Mutex::new(signal),
            reloading: tokio::sync::Mutex::new(()),
            data,
            head,
            shutdown,
            players,
            fleet,
            codes: enroll::CodeThrottle::default(),
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
        .route(&format!("{ROOTS_PREFIX}/{{version}}/{{file}}"), get(root_file))
        .route(&format!("{MEDIA_PREFIX}/{{id}}"), get(media))
        .route(&report_path("{id}"), post(report::report))
        .layer(middleware::from_fn_with_state(state.clone(), require_player))
        // Enrolment comes without a token: added after the token check's layer.
        .merge(enroll::routes())
        .with_state(state)
}

/// Runs `work` every `every` (a late tick waits, it does not burst) until
/// `stop` turns true or its sender is gone: the followers of `serve`.
pub(crate) async fn every_tick<F: std::future::Future<Output = ()>>(
    every: Duration,
    mut stop: watch::Receiver<bool>,
    mut work: impl FnMut() -> F,
) {
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            changed = stop.changed() => if changed.is_err() || *stop.borrow() { return },
        }
        work().await;
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| PublisherError::Internal(e.to_string()))?
}

/// Lets a request through only with the bearer token of an enabled player,
/// looked up in memory after a `stat` of the players' signal file (so a change
/// by the CLI counts at once), and hands the handler what it was admitted with
/// ([`players::Admitted`]).
async fn require_player(State(state): State<Arc<ProtocolState>>, mut req: Request, next: Next) -> Response {
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string);
    let Some(token) = token else {
        return players::refused();
    };
    match state.admit(&token).await {
        Ok(Some((player, generation))) => {
            let admitted = players::Admitted::new(token, generation, player);
            req.extensions_mut().insert(admitted);
            next.run(req).await
        }
        Ok(None) => players::refused(),
        Err(e) => e.into_response(),
    }
}

#[derive(Deserialize)]
struct HeadQuery {
    after: Option<u64>,
    wait: Option<u64>,
}

async fn head(
    State(state): State<Arc<ProtocolState>>,
    Extension(admitted): Extension<players::Admitted>,
    Query(q): Query<HeadQuery>,
) -> Result<Response> {
    // A plain poll is never behind a publish from another process (a `stat`).
    state.head.refresh_if_moved().await?;
    let mut rx = state.head.subscribe();
    let player = admitted.player().id.clone();
    // Subscribed before the check: a command queued in between still wakes it.
    let mut commands = state.fleet.command_signal(&player);
    let mut pending = state.fleet.has_pending_commands(&player);
    if let (Some(after), Some(wait), false) = (q.after, q.wait, pending) {
        let wait = Duration::from_secs(wait.min(MAX_WAIT_SECS));
        let mut stop = state.shutdown.clone();
        // A token cut off while this waits is answered 401 at once, not at the end;
        // a command queued for this player answers at once.
        tokio::select! {
            _ = tokio::time::timeout(wait, rx.wait_for(|h| h.version > after)) => {}
            _ = stop.wait_for(|s| *s) => {}
            _ = commands.changed() => {}
            cut_off = state.revoked(&admitted) => {
                cut_off?;
                return Ok(players::refused());
            }
        }
        if state.revoked_since(&admitted).await? {
            return Ok(players::refused());
        }
        pending = state.fleet.has_pending_commands(&player);
    }
    let mut current = rx.borrow().clone();
    current.commands_pending = pending;
    Ok(Json(current).into_response())
}

async fn version_file(
    State(state): State<Arc<ProtocolState>>,
    Path((version, file)): Path<(u64, String)>,
    headers: HeaderMap,
) -> Result<Response> {
    let name = match file.as_str() {
        MANIFEST_FILE => MANIFEST_FILE,
        SIGNATURE_FILE => SIGNATURE_FILE,
        _ => return Err(PublisherError::NotFound(version_file_path(version, &file))),
    };
    // An index lookup, never a walk of history; a version published by another
    // process since the last refresh is found after one more.
    let commit = match state.head.commit_of(version) {
        Some(c) => c,
        None => {
            state.head.refresh_if_moved().await?;
            state
                .head
                .commit_of(version)
                .ok_or(PublisherError::NoSuchVersion(version))?
        }
    };
    let served = state.head.version_file(version, commit, name).await?;
    let content_type = if name == MANIFEST_FILE {
        "application/yaml"
    } else {
        "text/plain; charset=utf-8"
    };
    Ok(immutable_response(
        &headers,
        &served.etag,
        content_type,
        served.bytes,
    ))
}

/// `GET /v1/roots/<N>/root.yaml` (or `.sig`): a trust root the head carries.
/// Immutable like a version's files: root N never changes once made.
async fn root_file(
    State(state): State<Arc<ProtocolState>>,
    Path((version, file)): Path<(u64, String)>,
    headers: HeaderMap,
) -> Result<Response> {
    let signatures = match file.as_str() {
        ROOT_FILE => false,
        ROOT_SIGNATURE_FILE => true,
        _ => return Err(PublisherError::NotFound(root_file_path(version, &file))),
    };
    let bytes = state
        .head
        .root_file(version, signatures)
        .ok_or_else(|| PublisherError::NotFound(root_file_path(version, &file)))?;
    let etag = format!("\"{}\"", &blake3::hash(&bytes).to_hex()[..32]);
    let content_type = if signatures {
        "text/plain; charset=utf-8"
    } else {
        "application/yaml"
    };
    Ok(immutable_response(&headers, &etag, content_type, bytes.into()))
}

fn immutable_response(
    req: &HeaderMap,
    etag: &str,
    content_type: &'static str,
    body: bytes::Bytes,
) -> Response {
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

/// A media file, whole or one `Range`, streamed from the store's media cache:
/// memory per request stays at one chunk whatever the file's size.
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
    let (path, len) = blocking(move || {
        // The tracker filled the cache before announcing the version; a file
        // there is complete (renamed into place once verified).
        let cached = crate::store::media_cache_dir_of(&data.store_path()).join(id.file_name());
        let path = if cached.is_file() {
            cached
        } else {
            data.store()?.media_file(&id, blob)?
        };
        let len = std::fs::metadata(&path)
            .map_err(PublisherError::io("read the size of", &path))?
            .len();
        Ok((path, len))
    })
    .await?;
    let etag = format!("\"{id}\"");
    let Some(range) = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
    else {
        let not_modified = headers
            .get(header::IF_NONE_MATCH)
            .is_some_and(|v| v.as_bytes() == etag.as_bytes());
        let mut resp = if not_modified {
            StatusCode::NOT_MODIFIED.into_response()
        } else {
            let mut resp = crate::http::file_body(&path, 0..len).await?.into_response();
            resp.headers_mut().insert(header::CONTENT_LENGTH, len.into());
            resp
        };
        media_headers(&mut resp, &etag);
        return Ok(resp);
    };
    match range::parse_range(&range, len) {
        Some(r) => {
            let content_range = format!("bytes {}-{}/{len}", r.start, r.end - 1);
            let body_len = r.end - r.start;
            let mut resp = crate::http::file_body(&path, r).await?.into_response();
            *resp.status_mut() = StatusCode::PARTIAL_CONTENT;
            media_headers(&mut resp, &etag);
            let h = resp.headers_mut();
            h.insert(header::CONTENT_LENGTH, body_len.into());
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

fn media_headers(resp: &mut Response, etag: &str) {
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("audio/mpeg"));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(IMMUTABLE));
    if let Ok(v) = HeaderValue::from_str(etag) {
        h.insert(header::ETAG, v);
    }
}
