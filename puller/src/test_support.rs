//! Test helpers: an in-process pull-protocol server over plain HTTP on 127.0.0.1:0,
//! with switchable faults, an in-memory [`Transport`] for tests that need no server,
//! and manifests signed by a fixed test key.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path as UrlPath, Query, State as AxState};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;
use futures_util::StreamExt;
use skycast_schema::protocol::{
    media_path, version_file_path, HEAD_PATH, MANIFEST_FILE, MEDIA_PREFIX, SIGNATURE_FILE, VERSIONS_PREFIX,
};
use skycast_schema::{MediaId, SecretKey};
use tokio::sync::Notify;

use crate::client::Client;
use crate::config::{Config, Overrides};
use crate::transport::{FetchRequest, FetchResponse, PostRequest, Transport, TransportError};

pub const TOKEN: &str = "test-token";

pub fn key() -> SecretKey {
    SecretKey::from_seed([7; 32])
}

/// A valid manifest naming `media` (all in one playlist), expiring at `expires_at`.
pub fn manifest_yaml(version: u64, media: &[&[u8]], expires_at: &str) -> String {
    let mut out = format!(
        "schema: skycast/v1\nversion: {version}\npublished_at: 2020-01-01T00:00:00Z\n\
         expires_at: {expires_at}\npublished_by: tester\ntimezone: Europe/Paris\n"
    );
    if media.is_empty() {
        out.push_str("media: []\n");
        return out;
    }
    out.push_str("media:\n");
    for (i, m) in media.iter().enumerate() {
        out.push_str(&format!(
            "  - {{id: {}, size: {}, duration_ms: 1000, title: Track {i}, kind: music}}\n",
            MediaId::of(m),
            m.len()
        ));
    }
    let items: Vec<String> = media.iter().map(|m| MediaId::of(m).to_string()).collect();
    out.push_str(&format!("playlists:\n  all: {{items: [{}]}}\n", items.join(", ")));
    out
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    None,
    /// Stream media without a Content-Length header.
    NoContentLength,
    /// Serve media with one byte changed.
    FlipByte(usize),
    /// Cut the connection after this many bytes of a media body.
    CutAfter(usize),
    /// Answer 200 with the whole file even when a Range was asked for.
    IgnoreRange,
    /// Answer 416 to any Range request.
    RangeNotSatisfiable,
}

struct Inner {
    head: u64,
    versions: BTreeMap<u64, (Vec<u8>, Vec<u8>)>,
    media: HashMap<MediaId, Vec<u8>>,
    fault: Fault,
    ranges: Vec<String>,
    media_requests: usize,
    /// Long-polls of head being held right now.
    long_polls_waiting: usize,
    /// Report bodies received, in order.
    reports: Vec<serde_json::Value>,
    /// Highest entry seq kept, per outbox.
    acked: HashMap<String, u64>,
    /// Commands every report answer carries (re-sent: the player must not run one twice).
    commands: Vec<serde_json::Value>,
}

#[derive(Clone)]
struct Shared {
    inner: Arc<Mutex<Inner>>,
    moved: Arc<Notify>,
}

pub struct TestServer {
    shared: Shared,
    pub url: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TestServer {
    pub async fn start() -> TestServer {
        let shared = Shared {
            inner: Arc::new(Mutex::new(Inner {
                head: 0,
                versions: BTreeMap::new(),
                media: HashMap::new(),
                fault: Fault::None,
                ranges: Vec::new(),
                media_requests: 0,
                long_polls_waiting: 0,
                reports: Vec::new(),
                acked: HashMap::new(),
                commands: Vec::new(),
            })),
            moved: Arc::new(Notify::new()),
        };
        let app = Router::new()
            .route(HEAD_PATH, get(serve_head))
            .route(
                &format!("{VERSIONS_PREFIX}/{{n}}/{{file}}"),
                get(serve_version_file),
            )
            .route(&format!("{MEDIA_PREFIX}/{{id}}"), get(serve_media))
            .route("/v1/players/{id}/report", axum::routing::post(serve_report))
            .with_state(shared.clone());
        // Bound before the task starts, so requests never race the server's start.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        TestServer { shared, url, task }
    }

    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        f(&mut self.shared.inner.lock().unwrap())
    }

    pub fn put_media(&self, bytes: Vec<u8>) {
        self.with(|i| i.media.insert(MediaId::of(&bytes), bytes));
    }

    /// Stores a version signed by the test key, with its media, and moves head to it.
    pub fn publish(&self, version: u64, media: &[&[u8]], expires_at: &str) -> Vec<u8> {
        let yaml = manifest_yaml(version, media, expires_at).into_bytes();
        let sig = key().sign(&yaml).into_bytes();
        self.publish_raw(version, yaml.clone(), sig);
        for m in media {
            self.put_media(m.to_vec());
        }
        yaml
    }

    pub fn publish_raw(&self, version: u64, manifest: Vec<u8>, sig: Vec<u8>) {
        self.with(|i| {
            i.versions.insert(version, (manifest, sig));
            i.head = version;
        });
        self.shared.moved.notify_waiters();
    }

    pub fn set_head(&self, version: u64) {
        self.with(|i| i.head = version);
        self.shared.moved.notify_waiters();
    }

    pub fn set_fault(&self, fault: Fault) {
        self.with(|i| i.fault = fault);
    }

    pub fn ranges_seen(&self) -> Vec<String> {
        self.with(|i| i.ranges.clone())
    }

    pub fn media_requests(&self) -> usize {
        self.with(|i| i.media_requests)
    }

    /// Report bodies received so far.
    pub fn reports(&self) -> Vec<serde_json::Value> {
        self.with(|i| i.reports.clone())
    }

    /// Commands (raw JSON) every report answer carries from now on; head says
    /// `commands_pending` while there are any, and a waiting long-poll returns.
    pub fn set_commands(&self, commands: Vec<serde_json::Value>) {
        self.with(|i| i.commands = commands);
        self.shared.moved.notify_waiters();
    }

    pub fn long_polls_waiting(&self) -> usize {
        self.with(|i| i.long_polls_waiting)
    }

    pub fn config(&self, data: &Path) -> Config {
        test_config(&self.url, data)
    }
}

/// The test config for a server at `url` (plain HTTP allowed, short polls).
pub fn test_config(url: &str, data: &Path) -> Config {
    let text = format!(
        "player_id = \"test-1\"\nserver = \"{}\"\ntoken = \"{TOKEN}\"\ndata = \"{}\"\n\
         trusted_keys = [\"{}\"]\nallow_insecure_http = true\npoll_interval_secs = 1\n\
         long_poll_secs = 5\nparallel_downloads = 2\n",
        url,
        data.display(),
        key().public()
    );
    Config::from_toml(
        &text,
        Path::new("test.toml"),
        Path::new("."),
        &Overrides::default(),
    )
    .unwrap()
}

/// Expiry far ahead and long past, for manifests.
pub const FUTURE: &str = "2099-01-01T00:00:00Z";
pub const PAST: &str = "2021-01-01T00:00:00Z";

/// `len` bytes of test media, different for each `tag`.
pub fn media(tag: u8, len: usize) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31) ^ tag).collect()
}

/// A started test server, a temporary directory and a config using `<dir>/data`.
pub async fn server_and_config() -> (TestServer, tempfile::TempDir, Config) {
    let server = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = server.config(&dir.path().join("data"));
    (server, dir, config)
}

/// Base URL of [`MemoryTransport`]'s publisher: a valid `server` for a config, and
/// under the reserved `.invalid` domain, so nothing could ever answer it over a network.
pub const MEMORY_SERVER: &str = "https://publisher.invalid";

/// A [`Transport`] answering from memory, like a pull-protocol server that holds
/// files by path: `Range` resumes honoured, 404 for anything else, bodies in 8 KiB
/// chunks. Only URLs under its base ([`MEMORY_SERVER`] unless made with
/// [`MemoryTransport::at`]) exist. It can also be down, or answer one status to all.
pub struct MemoryTransport {
    base: String,
    down: Mutex<bool>,
    status: Mutex<Option<StatusCode>>,
    files: Mutex<HashMap<String, Vec<u8>>>,
    requests: Mutex<Vec<FetchRequest>>,
    server_date: Mutex<Option<DateTime<Utc>>>,
    trickle: Mutex<Option<Trickle>>,
    post_handler: Mutex<Option<PostHandler>>,
    posts: Mutex<Vec<(String, Vec<u8>)>>,
}

/// Answers a `POST` (path, body) with a status and a body.
pub type PostHandler = Box<dyn Fn(&str, &[u8]) -> (StatusCode, Vec<u8>) + Send + Sync>;

/// A media server gone slow: each media body sends its first `fast_bytes` at once,
/// then `bytes` every `every`.
#[derive(Debug, Clone, Copy)]
pub struct Trickle {
    pub fast_bytes: usize,
    pub bytes: usize,
    pub every: Duration,
}

impl Default for MemoryTransport {
    fn default() -> MemoryTransport {
        MemoryTransport::at(MEMORY_SERVER)
    }
}

impl MemoryTransport {
    /// A server or mirror at base URL `base` (under `.invalid`, so nothing real).
    pub fn at(base: &str) -> MemoryTransport {
        MemoryTransport {
            base: base.to_string(),
            down: Mutex::new(false),
            status: Mutex::new(None),
            files: Mutex::default(),
            requests: Mutex::default(),
            server_date: Mutex::default(),
            trickle: Mutex::default(),
            post_handler: Mutex::default(),
            posts: Mutex::default(),
        }
    }

    /// A client whose every request goes to `transport`, at its base URL.
    pub fn client(transport: &Arc<MemoryTransport>) -> Client {
        Client::with_transport(&transport.base, transport.clone())
    }

    /// From now on no request gets an answer (`true`), as when the host is down.
    pub fn set_down(&self, down: bool) {
        *self.down.lock().unwrap() = down;
    }

    /// From now on every request is answered `status` (`None`: normally).
    pub fn set_status(&self, status: Option<StatusCode>) {
        *self.status.lock().unwrap() = status;
    }

    /// Copies every file `other` serves (head, versions, media) into this one.
    pub fn copy_from(&self, other: &MemoryTransport) {
        let files = other.files.lock().unwrap().clone();
        self.files.lock().unwrap().extend(files);
    }

    /// Media requests it received.
    pub fn media_requests(&self) -> usize {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.url.contains(&format!("{MEDIA_PREFIX}/")))
            .count()
    }

    /// Serves `bytes` at `path` (a protocol path, query string ignored).
    pub fn put(&self, path: &str, bytes: Vec<u8>) {
        self.files.lock().unwrap().insert(path.to_string(), bytes);
    }

    /// Serves `bytes` as the media they hash to.
    pub fn put_media(&self, bytes: Vec<u8>) {
        self.put(&media_path(&MediaId::of(&bytes)), bytes);
    }

    /// Serves a version signed by the test key with its media, and moves head to it.
    pub fn publish(&self, version: u64, media: &[&[u8]], expires_at: &str) {
        let yaml = manifest_yaml(version, media, expires_at).into_bytes();
        let sig = key().sign(&yaml).into_bytes();
        self.put(&version_file_path(version, MANIFEST_FILE), yaml);
        self.put(&version_file_path(version, SIGNATURE_FILE), sig);
        for m in media {
            self.put_media(m.to_vec());
        }
        self.put(HEAD_PATH, head_json(version).to_string().into_bytes());
    }

    /// Every request so far, in order.
    pub fn requests(&self) -> Vec<FetchRequest> {
        self.requests.lock().unwrap().clone()
    }

    /// The `Date` every answer carries from now on (`None`: no `Date`).
    pub fn set_server_date(&self, date: Option<DateTime<Utc>>) {
        *self.server_date.lock().unwrap() = date;
    }

    /// Answers every `POST` with `handler` from now on (without one: 404).
    pub fn set_post_handler(
        &self,
        handler: impl Fn(&str, &[u8]) -> (StatusCode, Vec<u8>) + Send + Sync + 'static,
    ) {
        *self.post_handler.lock().unwrap() = Some(Box::new(handler));
    }

    /// Every `POST` so far: path and body.
    pub fn posts(&self) -> Vec<(String, Vec<u8>)> {
        self.posts.lock().unwrap().clone()
    }

    /// Media bodies trickle from now on (`None`: at full speed again).
    pub fn set_trickle(&self, trickle: Option<Trickle>) {
        *self.trickle.lock().unwrap() = trickle;
    }
}

impl Transport for MemoryTransport {
    fn fetch(&self, request: FetchRequest) -> BoxFuture<'_, Result<FetchResponse, TransportError>> {
        self.requests.lock().unwrap().push(request.clone());
        if *self.down.lock().unwrap() {
            let url = request.url.clone();
            return Box::pin(async move {
                Err(TransportError::Request {
                    url,
                    detail: "connection refused (test: host down)".into(),
                })
            });
        }
        if let Some(status) = *self.status.lock().unwrap() {
            let server_date = *self.server_date.lock().unwrap();
            return Box::pin(
                async move { Ok(answer(status, server_date, br#"{"error": "test"}"#.to_vec())) },
            );
        }
        let found = request
            .url
            .strip_prefix(self.base.as_str())
            .map(|p| p.split('?').next().unwrap_or(p))
            .and_then(|p| self.files.lock().unwrap().get(p).cloned());
        let answer = match found {
            None => (StatusCode::NOT_FOUND, None, br#"{"error": "not found"}"#.to_vec()),
            Some(data) if request.from_byte == 0 => (StatusCode::OK, None, data),
            Some(data) => match data.get(request.from_byte as usize..) {
                Some(rest) if !rest.is_empty() => (
                    StatusCode::PARTIAL_CONTENT,
                    Some(request.from_byte),
                    rest.to_vec(),
                ),
                _ => (StatusCode::RANGE_NOT_SATISFIABLE, None, Vec::new()),
            },
        };
        let (status, range_start, body) = answer;
        let server_date = *self.server_date.lock().unwrap();
        let trickle = *self.trickle.lock().unwrap();
        let is_media = request.url.starts_with(&format!("{}{MEDIA_PREFIX}/", self.base));
        let content_length = Some(body.len() as u64);
        let body = match trickle {
            Some(t) if is_media => {
                let split = t.fast_bytes.min(body.len());
                let fast: Vec<Result<Bytes, TransportError>> = body[..split]
                    .chunks(8192)
                    .map(|c| Ok(Bytes::copy_from_slice(c)))
                    .collect();
                let slow: Vec<Bytes> = body[split..]
                    .chunks(t.bytes.max(1))
                    .map(Bytes::copy_from_slice)
                    .collect();
                let slow = futures_util::stream::iter(slow).then(move |c| async move {
                    tokio::time::sleep(t.every).await;
                    Ok(c)
                });
                futures_util::stream::iter(fast).chain(slow).boxed()
            }
            _ => {
                let chunks: Vec<Result<Bytes, TransportError>> =
                    body.chunks(8192).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
                futures_util::stream::iter(chunks).boxed()
            }
        };
        Box::pin(async move {
            Ok(FetchResponse {
                status,
                content_length,
                range_start,
                server_date,
                body,
            })
        })
    }

    fn post(&self, request: PostRequest) -> BoxFuture<'_, Result<FetchResponse, TransportError>> {
        if *self.down.lock().unwrap() {
            let url = request.url.clone();
            return Box::pin(async move {
                Err(TransportError::Request {
                    url,
                    detail: "connection refused (test: host down)".into(),
                })
            });
        }
        let path = request
            .url
            .strip_prefix(self.base.as_str())
            .unwrap_or(&request.url)
            .to_string();
        self.posts
            .lock()
            .unwrap()
            .push((path.clone(), request.body.to_vec()));
        let (status, body) = match &*self.post_handler.lock().unwrap() {
            Some(handler) => handler(&path, &request.body),
            None => (StatusCode::NOT_FOUND, br#"{"error": "not found"}"#.to_vec()),
        };
        let server_date = *self.server_date.lock().unwrap();
        Box::pin(async move { Ok(answer(status, server_date, body)) })
    }
}

fn answer(status: StatusCode, server_date: Option<DateTime<Utc>>, body: Vec<u8>) -> FetchResponse {
    let chunks: Vec<Result<Bytes, TransportError>> =
        body.chunks(8192).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
    FetchResponse {
        status,
        content_length: Some(body.len() as u64),
        range_start: None,
        server_date,
        body: futures_util::stream::iter(chunks).boxed(),
    }
}

fn head_json(version: u64) -> serde_json::Value {
    serde_json::json!({
        "version": version,
        "published_at": "2020-01-01T00:00:00Z",
        "manifest": version_file_path(version, MANIFEST_FILE),
    })
}

pub fn client_for(server: &TestServer) -> Client {
    Client::new(&server.config(Path::new("unused"))).unwrap()
}

fn authorized(headers: &HeaderMap) -> bool {
    headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) == Some(&format!("Bearer {TOKEN}"))
}

fn json_error(status: StatusCode, msg: &str) -> Response {
    (status, axum::Json(serde_json::json!({ "error": msg }))).into_response()
}

async fn serve_head(
    AxState(s): AxState<Shared>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, u64>>,
) -> Response {
    if !authorized(&headers) {
        return json_error(StatusCode::UNAUTHORIZED, "bad token");
    }
    if let (Some(&after), Some(&wait)) = (q.get("after"), q.get("wait")) {
        let _waiting = LongPollCount::enter(&s);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(wait.min(60));
        loop {
            let notified = s.moved.notified();
            let ready = {
                let inner = s.inner.lock().unwrap();
                inner.head > after || !inner.commands.is_empty()
            };
            if ready {
                break;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                break;
            }
        }
    }
    let (v, pending) = {
        let inner = s.inner.lock().unwrap();
        (inner.head, !inner.commands.is_empty())
    };
    let mut head = head_json(v);
    head["commands_pending"] = pending.into();
    axum::Json(head).into_response()
}

/// Keeps the report and acknowledges its highest entry, with the pending commands.
async fn serve_report(AxState(s): AxState<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    if !authorized(&headers) {
        return json_error(StatusCode::UNAUTHORIZED, "bad token");
    }
    let Ok(report) = serde_json::from_slice::<serde_json::Value>(&body) else {
        return json_error(StatusCode::BAD_REQUEST, "not JSON");
    };
    let mut inner = s.inner.lock().unwrap();
    let outbox = report["outbox"].as_str().unwrap_or_default().to_string();
    let top = report["entries"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["seq"].as_u64())
        .max()
        .unwrap_or(0);
    let acked = inner.acked.entry(outbox).or_default();
    *acked = (*acked).max(top);
    let answer = serde_json::json!({ "acked": *acked, "commands": inner.commands });
    inner.reports.push(report);
    axum::Json(answer).into_response()
}

/// Counts a held long-poll until dropped, also when the client goes away mid-wait
/// (axum then drops the handler's future).
struct LongPollCount(Shared);

impl LongPollCount {
    fn enter(s: &Shared) -> LongPollCount {
        s.inner.lock().unwrap().long_polls_waiting += 1;
        LongPollCount(s.clone())
    }
}

impl Drop for LongPollCount {
    fn drop(&mut self) {
        self.0.inner.lock().unwrap().long_polls_waiting -= 1;
    }
}

async fn serve_version_file(
    AxState(s): AxState<Shared>,
    headers: HeaderMap,
    UrlPath((n, file)): UrlPath<(u64, String)>,
) -> Response {
    if !authorized(&headers) {
        return json_error(StatusCode::UNAUTHORIZED, "bad token");
    }
    let inner = s.inner.lock().unwrap();
    match (inner.versions.get(&n), file.as_str()) {
        (Some((m, _)), MANIFEST_FILE) => m.clone().into_response(),
        (Some((_, sig)), SIGNATURE_FILE) => sig.clone().into_response(),
        _ => json_error(StatusCode::NOT_FOUND, "no such version"),
    }
}

async fn serve_media(
    AxState(s): AxState<Shared>,
    headers: HeaderMap,
    UrlPath(id): UrlPath<String>,
) -> Response {
    if !authorized(&headers) {
        return json_error(StatusCode::UNAUTHORIZED, "bad token");
    }
    let Ok(id) = id.parse::<MediaId>() else {
        return json_error(StatusCode::BAD_REQUEST, "bad id");
    };
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let (data, fault) = {
        let mut inner = s.inner.lock().unwrap();
        inner.media_requests += 1;
        if let Some(r) = &range {
            inner.ranges.push(r.clone());
        }
        match inner.media.get(&id) {
            Some(d) => (d.clone(), inner.fault),
            None => return json_error(StatusCode::NOT_FOUND, "unknown media"),
        }
    };
    let mut data = data;
    if let Fault::FlipByte(i) = fault {
        data[i] ^= 0xff;
    }
    let total = data.len();
    let start = range
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.trim_end_matches('-').parse::<usize>().ok());
    let (status, body_bytes, content_range) = match (start, fault) {
        (Some(_), Fault::RangeNotSatisfiable) => {
            return (StatusCode::RANGE_NOT_SATISFIABLE, "").into_response();
        }
        (Some(a), f) if f != Fault::IgnoreRange => {
            if a >= total {
                return (StatusCode::RANGE_NOT_SATISFIABLE, "").into_response();
            }
            (
                StatusCode::PARTIAL_CONTENT,
                data[a..].to_vec(),
                Some(format!("bytes {a}-{}/{total}", total - 1)),
            )
        }
        _ => (StatusCode::OK, data, None),
    };
    let len = body_bytes.len();
    let mut builder = Response::builder().status(status);
    if let Some(cr) = content_range {
        builder = builder.header(header::CONTENT_RANGE, cr);
    }
    let body = match fault {
        Fault::CutAfter(n) => {
            builder = builder.header(header::CONTENT_LENGTH, len);
            let head: Vec<Bytes> = body_bytes[..n.min(len)]
                .chunks(8192)
                .map(Bytes::copy_from_slice)
                .collect();
            // The error comes after a pause, so the bytes before it reach the client
            // (hyper would otherwise abort before sending the head of the response).
            let cut = futures_util::stream::once(async {
                tokio::time::sleep(Duration::from_millis(100)).await;
                Err::<Bytes, std::io::Error>(std::io::Error::other("cut"))
            });
            let stream =
                futures_util::stream::iter(head.into_iter().map(Ok::<Bytes, std::io::Error>)).chain(cut);
            Body::from_stream(stream)
        }
        Fault::NoContentLength => {
            let chunks: Vec<Bytes> = body_bytes.chunks(8192).map(Bytes::copy_from_slice).collect();
            Body::from_stream(futures_util::stream::iter(
                chunks.into_iter().map(Ok::<Bytes, std::io::Error>),
            ))
        }
        _ => Body::from(body_bytes),
    };
    builder.body(body).unwrap()
}
