//! `serve`: the pull protocol over HTTPS (or plain HTTP when explicitly asked):
//! head with long-poll, immutable manifests and signatures, ranged media, all
//! behind per-player bearer tokens.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use git2::Oid;
use serde::Deserialize;
pub use skycast_schema::Head;
use skycast_schema::MediaId;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

use crate::data_dir::DataDir;
use crate::error::{PublisherError, Result};
use crate::store::{Store, MANIFEST_FILE, SIGNATURE_FILE};

/// How `serve` talks to players. HTTPS unless someone asks otherwise by name.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum TransportMode {
    #[default]
    Https,
    InsecureHttp,
}

pub struct ServeConfig {
    pub data: DataDir,
    pub transport: TransportMode,
    /// How often `main` is checked for a new version published by another process.
    pub head_check_interval: Duration,
    /// Largest media file the web UI accepts in an upload.
    pub max_upload_bytes: u64,
}

impl ServeConfig {
    pub fn new(data: DataDir, transport: TransportMode) -> ServeConfig {
        ServeConfig {
            data,
            transport,
            head_check_interval: Duration::from_millis(200),
            max_upload_bytes: skycast_schema::Limits::default().max_media_bytes,
        }
    }
}

const MAX_WAIT_SECS: u64 = 60;
const IMMUTABLE: &str = "public, max-age=31536000, immutable";

struct AppState {
    data: DataDir,
    head: watch::Sender<Head>,
    head_oid: Mutex<Option<Oid>>,
    media: RwLock<HashMap<MediaId, Oid>>,
    db: Mutex<crate::db::Db>,
    shutdown: watch::Receiver<bool>,
}

/// Serves until `shutdown` resolves, then drains open requests (long-polls return at once).
pub async fn run(
    config: ServeConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let data = config.data.clone();
    let media = {
        let data = data.clone();
        blocking(move || data.store()?.media_index()).await?
    };
    tracing::info!(media_count = media.len(), "store opened");
    let (stop_tx, stop_rx) = watch::channel(false);
    let state = Arc::new(AppState {
        data: data.clone(),
        head: watch::Sender::new(Head::default()),
        head_oid: Mutex::new(None),
        media: RwLock::new(media),
        db: Mutex::new(data.db()?),
        shutdown: stop_rx.clone(),
    });
    refresh_head(&state).await?;
    tokio::spawn(watch_head(state.clone(), config.head_check_interval, stop_rx));

    let web = crate::web::WebState::new(
        data.clone(),
        config.transport == TransportMode::Https,
        config.max_upload_bytes,
    )?;
    let app = router(state)
        .merge(crate::web::router(Arc::new(web)))
        .into_make_service_with_connect_info::<PeerAddr>();
    let graceful = async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    };
    let addr = listener
        .local_addr()
        .map_err(PublisherError::io("read address of", "listener"))?;
    match config.transport {
        TransportMode::InsecureHttp => {
            tracing::warn!(%addr, "serving plain HTTP: players must opt in with allow_insecure_http");
            axum::serve(listener, app).with_graceful_shutdown(graceful).await
        }
        TransportMode::Https => {
            let cert = std::fs::read(data.server_cert_path())
                .map_err(PublisherError::io("read", data.server_cert_path()))?;
            let key = std::fs::read(data.server_key_path())
                .map_err(PublisherError::io("read", data.server_key_path()))?;
            let tls = crate::tls::server_config(&cert, &key)?;
            tracing::info!(%addr, "serving HTTPS");
            axum::serve(TlsListener::spawn(listener, tls), app)
                .with_graceful_shutdown(graceful)
                .await
        }
    }
    .map_err(PublisherError::io("serve on", addr.to_string()))
}

fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/v1/head", get(head))
        .route("/v1/versions/{version}/{file}", get(version_file))
        .route("/v1/media/{id}", get(media))
        .layer(middleware::from_fn_with_state(state.clone(), require_player))
        .with_state(state)
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| PublisherError::Internal(e.to_string()))?
}

fn read_head(store: &Store) -> Result<Head> {
    let Some(commit) = store.head_commit()? else {
        return Ok(Head::default());
    };
    let bytes = store.file_at(&commit, MANIFEST_FILE)?.unwrap_or_default();
    #[derive(Deserialize)]
    struct HeadFields {
        version: u64,
        published_at: String,
    }
    let fields: HeadFields = serde_norway::from_slice(&bytes)
        .map_err(|e| PublisherError::Internal(format!("head manifest: {e}")))?;
    Ok(Head {
        version: fields.version,
        published_at: Some(fields.published_at),
        manifest: Some(format!("/v1/versions/{}/{MANIFEST_FILE}", fields.version)),
    })
}

/// Follows `main`, which other processes (`publish`, `rollback`) move: on a timer
/// for long-polls, and on every `head` request so a plain poll is never behind.
async fn watch_head(state: Arc<AppState>, every: Duration, mut stop: watch::Receiver<bool>) {
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.changed() => return,
        }
        if let Err(e) = refresh_head(&state).await {
            tracing::warn!(error = %e, "cannot read head of the store");
        }
    }
}

/// Re-reads `main`; on a change, indexes the new version's media before announcing it,
/// so a player never learns of a version whose media this server cannot serve yet.
async fn refresh_head(state: &Arc<AppState>) -> Result<()> {
    let data = state.data.clone();
    let seen = *state.head_oid.lock().unwrap_or_else(|p| p.into_inner());
    let changed = blocking(move || {
        let store = data.store()?;
        let oid = store.head_oid()?;
        if oid == seen {
            return Ok(None);
        }
        let media = match oid {
            Some(o) => store.media_ids_in(&store.find_commit(o)?)?,
            None => Vec::new(),
        };
        Ok(Some((oid, read_head(&store)?, media)))
    })
    .await?;
    let Some((oid, head, media)) = changed else {
        return Ok(());
    };
    state
        .media
        .write()
        .unwrap_or_else(|p| p.into_inner())
        .extend(media);
    *state.head_oid.lock().unwrap_or_else(|p| p.into_inner()) = oid;
    state.head.send_if_modified(|current| {
        if *current == head {
            return false;
        }
        tracing::info!(version = head.version, "new head");
        *current = head;
        true
    });
    Ok(())
}

/// Lets a request through only with the bearer token of an enabled player.
async fn require_player(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
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
    let found = blocking(move || {
        state2
            .db
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .player_by_token(&token)
    })
    .await;
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

async fn head(State(state): State<Arc<AppState>>, Query(q): Query<HeadQuery>) -> Result<Json<Head>> {
    refresh_head(&state).await?;
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
    State(state): State<Arc<AppState>>,
    Path((version, file)): Path<(u64, String)>,
    headers: HeaderMap,
) -> Result<Response> {
    if file != MANIFEST_FILE && file != SIGNATURE_FILE {
        return Err(PublisherError::NotFound(format!("/v1/versions/{version}/{file}")));
    }
    let data = state.data.clone();
    let name = file.clone();
    let bytes = blocking(move || data.store()?.version_file(version, &name)).await?;
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

/// Parses `bytes=A-` or `bytes=A-B` against a body of `len` bytes.
fn parse_range(value: &str, len: u64) -> Option<std::ops::Range<u64>> {
    let spec = value.strip_prefix("bytes=")?;
    let (a, b) = spec.split_once('-')?;
    let start: u64 = a.trim().parse().ok()?;
    let end_inclusive: u64 = if b.trim().is_empty() {
        len.checked_sub(1)?
    } else {
        b.trim().parse().ok()?
    };
    let end = end_inclusive.min(len.checked_sub(1)?) + 1;
    (start < end).then_some(start..end)
}

async fn media(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response> {
    let id: MediaId = id
        .parse()
        .map_err(|e: skycast_schema::MediaIdError| PublisherError::BadRequest(e.to_string()))?;
    let oid = state
        .media
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .get(&id)
        .copied();
    let oid = oid.ok_or_else(|| PublisherError::NotFound(format!("media {id}")))?;
    let data = state.data.clone();
    let bytes = blocking(move || data.store()?.read_blob(oid)).await?;
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
    match parse_range(&range, len) {
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

/// The client's address, for sign-in throttling, over plain TCP or TLS.
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub SocketAddr);

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, TlsListener>> for PeerAddr {
    fn connect_info(stream: axum::serve::IncomingStream<'_, TlsListener>) -> PeerAddr {
        PeerAddr(*stream.remote_addr())
    }
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, TcpListener>> for PeerAddr {
    fn connect_info(stream: axum::serve::IncomingStream<'_, TcpListener>) -> PeerAddr {
        PeerAddr(*stream.remote_addr())
    }
}

/// Accepts TCP connections and runs each TLS handshake in its own task, so a slow
/// or silent client cannot hold up the others; finished handshakes queue here.
pub struct TlsListener {
    ready: mpsc::Receiver<(tokio_rustls::server::TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl TlsListener {
    pub fn spawn(listener: TcpListener, config: Arc<rustls::ServerConfig>) -> TlsListener {
        let local = listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        let (tx, ready) = mpsc::channel(64);
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        tokio::spawn(async move {
            loop {
                let (tcp, peer) = match listener.accept().await {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let acceptor = acceptor.clone();
                let handshaken = tx.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                        Ok(Ok(tls)) => {
                            let _ = handshaken.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
                if tx.is_closed() {
                    return;
                }
            }
        });
        TlsListener { ready, local }
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(conn) => conn,
            // The accept task only ends when this listener is dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.local)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_parsed_and_clamped() {
        let table = [
            ("bytes=0-", 10, Some(0..10)),
            ("bytes=4-", 10, Some(4..10)),
            ("bytes=2-5", 10, Some(2..6)),
            ("bytes=2-50", 10, Some(2..10)),
            ("bytes=10-", 10, None),
            ("bytes=-5", 10, None),
            ("items=0-1", 10, None),
            ("bytes=0-", 0, None),
        ];
        for (value, len, expected) in table {
            assert_eq!(parse_range(value, len), expected, "{value} of {len}");
        }
    }
}
