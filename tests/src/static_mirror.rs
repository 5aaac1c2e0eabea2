//! A static mirror for tests: a plain file server (axum, HTTP on 127.0.0.1:0, under
//! a base path) holding the pull protocol's objects as files named by their mirror
//! keys (`v1/head`, `v1/versions/<n>/manifest.yaml`, `v1/media/<blake3>`), with
//! `Range` for resumes, a meter of the media bytes it sent, and a record of any
//! `Authorization` header (a mirror must never see a player's token). Its objects
//! are copied from a real origin with a player's token, then tampered with per test.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Path as UrlPath, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use skycast_schema::protocol::{
    media_path, mirror_key, version_file_path, HEAD_PATH, MANIFEST_FILE, SIGNATURE_FILE,
};
use skycast_schema::{Limits, TrustedKeys};

/// The base path the mirror serves under, so a base URL with a path is exercised.
const BASE_PATH: &str = "skycast";

#[derive(Default)]
struct Meter {
    media_bytes: AtomicU64,
    saw_authorization: AtomicBool,
    requests: Mutex<Vec<String>>,
}

struct Shared {
    root: PathBuf,
    meter: Meter,
}

/// A running static mirror over the files of a directory it owns.
pub struct StaticMirror {
    dir: tempfile::TempDir,
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for StaticMirror {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl StaticMirror {
    /// An empty mirror, serving.
    pub async fn start() -> StaticMirror {
        let dir = tempfile::tempdir().unwrap();
        let shared = Arc::new(Shared {
            root: dir.path().to_path_buf(),
            meter: Meter::default(),
        });
        let app = axum::Router::new()
            .route(
                &format!("/{BASE_PATH}/{{*key}}"),
                axum::routing::get(serve_object),
            )
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        StaticMirror {
            dir,
            addr,
            shared,
            task,
        }
    }

    /// The mirror's base URL (plain HTTP: the puller needs `allow_http_mirrors`).
    pub fn url(&self) -> String {
        format!("http://{}/{BASE_PATH}", self.addr)
    }

    /// The file holding the object at protocol path `path`.
    pub fn object_path(&self, path: &str) -> PathBuf {
        self.dir.path().join(mirror_key(path))
    }

    /// Writes `bytes` as the object at protocol path `path`.
    pub fn put(&self, path: &str, bytes: &[u8]) {
        let file = self.object_path(path);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, bytes).unwrap();
    }

    /// The bytes of the object at protocol path `path`.
    pub fn get(&self, path: &str) -> Vec<u8> {
        std::fs::read(self.object_path(path)).unwrap()
    }

    /// Points `v1/head` at `version` (the JSON the origin's head answers).
    pub fn put_head(&self, version: u64) {
        let head = serde_json::json!({
            "version": version,
            "manifest": version_file_path(version, MANIFEST_FILE),
        });
        self.put(HEAD_PATH, head.to_string().as_bytes());
    }

    /// Bytes of media bodies sent so far.
    pub fn media_bytes_sent(&self) -> u64 {
        self.shared.meter.media_bytes.load(Ordering::SeqCst)
    }

    /// True if any request carried an `Authorization` header.
    pub fn saw_authorization(&self) -> bool {
        self.shared.meter.saw_authorization.load(Ordering::SeqCst)
    }

    /// Object keys asked for so far, in order.
    pub fn requests(&self) -> Vec<String> {
        self.shared.meter.requests.lock().unwrap().clone()
    }
}

/// A player's view of an origin, to copy objects from it the way a mirror
/// uploader would: over HTTPS with the player's token.
pub struct Origin {
    pub url: String,
    pub token: String,
    pub client: reqwest::Client,
}

impl Origin {
    /// The origin at `url`, trusting `ca_pem`, with the token of the puller config
    /// `puller_toml`.
    pub fn new(url: &str, ca_pem: &Path, puller_toml: &Path) -> Origin {
        let table: toml::Table = std::fs::read_to_string(puller_toml).unwrap().parse().unwrap();
        Origin {
            url: url.to_string(),
            token: table["token"].as_str().unwrap().to_string(),
            client: crate::serve_process::https_client(ca_pem).build().unwrap(),
        }
    }

    /// The object at protocol path `path`; fails the test unless it is served.
    pub async fn fetch(&self, path: &str) -> Vec<u8> {
        let resp = self
            .client
            .get(format!("{}{path}", self.url))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success(), "{path}: {}", resp.status());
        resp.bytes().await.unwrap().to_vec()
    }

    /// Copies version `n` (manifest, signature, and every media it names) to
    /// `mirror`, the way a mirror is filled: content first, no head. Returns the
    /// manifest's media as (protocol path, size).
    pub async fn copy_version(
        &self,
        n: u64,
        mirror: &StaticMirror,
        trusted: &TrustedKeys,
    ) -> Vec<(String, u64)> {
        let manifest = self.fetch(&version_file_path(n, MANIFEST_FILE)).await;
        let signature = self.fetch(&version_file_path(n, SIGNATURE_FILE)).await;
        let verified = skycast_schema::verify(&manifest, &signature, trusted, &Limits::default()).unwrap();
        let mut media = Vec::new();
        for entry in &verified.media {
            let path = media_path(&entry.id);
            let bytes = self.fetch(&path).await;
            mirror.put(&path, &bytes);
            media.push((path, entry.size));
        }
        mirror.put(&version_file_path(n, MANIFEST_FILE), &manifest);
        mirror.put(&version_file_path(n, SIGNATURE_FILE), &signature);
        media
    }

    /// [`Origin::copy_version`], then the mirror's head pointed at `n`.
    pub async fn mirror_version(
        &self,
        n: u64,
        mirror: &StaticMirror,
        trusted: &TrustedKeys,
    ) -> Vec<(String, u64)> {
        let media = self.copy_version(n, mirror, trusted).await;
        mirror.put_head(n);
        media
    }
}

/// `GET /<base>/<key>`: the file, whole or from a `Range: bytes=N-` start.
async fn serve_object(
    State(s): State<Arc<Shared>>,
    UrlPath(key): UrlPath<String>,
    headers: HeaderMap,
) -> Response {
    s.meter.requests.lock().unwrap().push(key.clone());
    if headers.contains_key(header::AUTHORIZATION) {
        s.meter.saw_authorization.store(true, Ordering::SeqCst);
    }
    if key.split('/').any(|part| part == ".." || part.is_empty()) {
        return StatusCode::BAD_REQUEST.into_response();
    }
    let Ok(data) = std::fs::read(s.root.join(&key)) else {
        return (StatusCode::NOT_FOUND, "no such object").into_response();
    };
    let start = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.trim_end_matches('-').parse::<usize>().ok());
    let (status, body, range) = match start {
        Some(a) if a >= data.len() => return StatusCode::RANGE_NOT_SATISFIABLE.into_response(),
        Some(a) => (
            StatusCode::PARTIAL_CONTENT,
            data[a..].to_vec(),
            Some(format!("bytes {a}-{}/{}", data.len() - 1, data.len())),
        ),
        None => (StatusCode::OK, data, None),
    };
    if key.starts_with("v1/media/") {
        s.meter.media_bytes.fetch_add(body.len() as u64, Ordering::SeqCst);
    }
    let mut builder = Response::builder().status(status);
    if let Some(range) = range {
        builder = builder.header(header::CONTENT_RANGE, range);
    }
    builder.body(Body::from(body)).unwrap()
}
