//! A man-in-the-middle HTTPS proxy for tests: forwards to the publisher and can
//! tamper with, extend, cut or replace what it forwards, logging every request.

use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use futures_util::StreamExt;

/// What the proxy does to the traffic.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Fault {
    #[default]
    None,
    /// Flip one bit in the middle of every media body.
    FlipMediaByte,
    /// Append this many bytes to every media body.
    AppendToMedia(usize),
    /// Send this many bytes of the next media body, then break the connection; once.
    CutNextMediaAfter(usize),
    /// Send the first `fast` bytes of every media body at once, then one byte per
    /// `every`: a server trickling bytes (announcing the full length).
    TrickleMedia { fast: usize, every: std::time::Duration },
    /// Answer `/v1/head` with this version.
    HeadSays(u64),
    /// Serve these bytes as every manifest.yaml.
    ReplaceManifest(Vec<u8>),
    /// Serve these bytes as every manifest.yaml.sig.
    ReplaceSignature(Vec<u8>),
    /// Serve this manifest and this signature: what a key holder could sign.
    ReplaceVersion { manifest: Vec<u8>, signature: Vec<u8> },
    /// Announce trust root `version` in head and serve these bytes as its
    /// `root.yaml` and `root.yaml.sig`: a root someone made without the keys it needs.
    ServeRoot {
        version: u64,
        root: Vec<u8>,
        signatures: Vec<u8>,
    },
}

#[derive(Debug, Clone)]
pub struct Logged {
    pub path: String,
    pub range: Option<String>,
    pub status: u16,
    pub body_bytes: usize,
}

struct ProxyState {
    upstream: String,
    client: reqwest::Client,
    fault: Mutex<Fault>,
    log: Mutex<Vec<Logged>>,
}

pub struct Proxy {
    pub addr: std::net::SocketAddr,
    state: Arc<ProxyState>,
}

impl Proxy {
    /// Starts on 127.0.0.1:0 with the publisher's own certificate, so pullers that
    /// pin the publisher's CA accept it: the attacker holds a valid certificate.
    pub async fn start(publisher: &crate::PublisherFixture) -> Proxy {
        let data = &publisher.data;
        let cert = std::fs::read(data.server_cert_path()).unwrap();
        let key = std::fs::read(data.server_key_path()).unwrap();
        let ca = reqwest::Certificate::from_pem(&std::fs::read(data.ca_cert_path()).unwrap()).unwrap();
        let client = reqwest::Client::builder()
            .tls_built_in_root_certs(false)
            .add_root_certificate(ca)
            .build()
            .unwrap();
        let state = Arc::new(ProxyState {
            upstream: publisher.url(),
            client,
            fault: Mutex::new(Fault::None),
            log: Mutex::new(Vec::new()),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let tls = skycast_publisher::tls::server_config(&cert, &key).unwrap();
        let app = axum::Router::new().fallback(forward).with_state(state.clone());
        tokio::spawn(async move {
            axum::serve(skycast_publisher::TlsListener::spawn(listener, tls), app)
                .await
                .unwrap();
        });
        Proxy { addr, state }
    }

    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.addr.port())
    }

    pub fn set(&self, fault: Fault) {
        *self.state.fault.lock().unwrap() = fault;
    }

    pub fn log(&self) -> Vec<Logged> {
        self.state.log.lock().unwrap().clone()
    }

    pub fn clear_log(&self) {
        self.state.log.lock().unwrap().clear();
    }

    /// Total media body bytes sent to players so far.
    pub fn media_bytes_sent(&self) -> usize {
        self.log()
            .iter()
            .filter(|l| l.path.starts_with("/v1/media/"))
            .map(|l| l.body_bytes)
            .sum()
    }
}

async fn forward(State(state): State<Arc<ProxyState>>, req: Request) -> Response {
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.to_string())
        .unwrap_or_default();
    let range = req
        .headers()
        .get("range")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let fault = state.fault.lock().unwrap().clone();
    let mut upstream = state.client.get(format!("{}{path}", state.upstream));
    for (name, value) in req.headers() {
        if name != "host" {
            upstream = upstream.header(name, value);
        }
    }
    let resp = match upstream.send().await {
        Ok(r) => r,
        Err(e) => {
            return Response::builder()
                .status(502)
                .body(Body::from(e.to_string()))
                .unwrap()
        }
    };
    let status = resp.status();
    let mut headers = HeaderMap::new();
    for (name, value) in resp.headers() {
        if name != "content-length" && name != "transfer-encoding" {
            headers.insert(name, value.clone());
        }
    }
    let mut status = status;
    let mut body = resp.bytes().await.unwrap_or_default().to_vec();
    let is_media = path.starts_with("/v1/media/") && status.is_success();
    let mut cut_after = None;
    let mut trickle = None;
    match fault {
        Fault::FlipMediaByte if is_media => {
            let mid = body.len() / 2;
            body[mid] ^= 0x01;
        }
        Fault::AppendToMedia(n) if is_media => body.extend(std::iter::repeat_n(0xAAu8, n)),
        Fault::CutNextMediaAfter(n) if is_media => {
            cut_after = Some(n.min(body.len()));
            *state.fault.lock().unwrap() = Fault::None;
        }
        Fault::TrickleMedia { fast, every } if is_media => trickle = Some((fast.min(body.len()), every)),
        Fault::HeadSays(v) if path.starts_with("/v1/head") => {
            body = serde_json::to_vec(&serde_json::json!({
                "version": v,
                "manifest": format!("/v1/versions/{v}/manifest.yaml"),
            }))
            .unwrap();
        }
        Fault::ReplaceManifest(ref bytes) if path.ends_with("/manifest.yaml") => body = bytes.clone(),
        Fault::ReplaceSignature(ref bytes) if path.ends_with("/manifest.yaml.sig") => body = bytes.clone(),
        Fault::ReplaceVersion { ref manifest, .. } if path.ends_with("/manifest.yaml") => {
            body = manifest.clone()
        }
        Fault::ReplaceVersion { ref signature, .. } if path.ends_with("/manifest.yaml.sig") => {
            body = signature.clone()
        }
        Fault::ServeRoot { version, .. } if path.starts_with("/v1/head") && status.is_success() => {
            let mut head: serde_json::Value = serde_json::from_slice(&body).unwrap();
            head["root_version"] = version.into();
            body = serde_json::to_vec(&head).unwrap();
        }
        Fault::ServeRoot {
            version,
            ref root,
            ref signatures,
        } if path.starts_with(&format!("/v1/roots/{version}/")) => {
            status = reqwest::StatusCode::OK;
            headers.remove("content-type");
            body = if path.ends_with(".sig") {
                signatures.clone()
            } else {
                root.clone()
            };
        }
        _ => {}
    }
    let sent = cut_after.or(trickle.map(|(fast, _)| fast)).unwrap_or(body.len());
    state.log.lock().unwrap().push(Logged {
        path: path.clone(),
        range,
        status: status.as_u16(),
        body_bytes: sent,
    });
    let mut builder = Response::builder().status(StatusCode::from_u16(status.as_u16()).unwrap());
    for (name, value) in &headers {
        builder = builder.header(name, value);
    }
    if let Some((fast, every)) = trickle {
        let first = Bytes::copy_from_slice(&body[..fast]);
        let rest: Vec<Bytes> = body[fast..]
            .iter()
            .map(|b| Bytes::copy_from_slice(&[*b]))
            .collect();
        // Dropped with the connection when the player gives up.
        let slow = futures_util::stream::iter(rest).then(move |b| async move {
            tokio::time::sleep(every).await;
            Ok::<Bytes, std::io::Error>(b)
        });
        let stream = futures_util::stream::once(async move { Ok(first) }).chain(slow);
        return builder
            .header("content-length", body.len())
            .body(Body::from_stream(stream))
            .unwrap();
    }
    match cut_after {
        Some(n) => {
            // Announce the full length, send part of it, then fail the stream: a cut connection.
            let first = Bytes::copy_from_slice(&body[..n]);
            // The pause lets the first bytes reach the player before the stream breaks;
            // an immediate error makes hyper drop the unsent data with it.
            let cut = async {
                tokio::time::sleep(std::time::Duration::from_millis(150)).await;
                Err::<Bytes, _>(std::io::Error::new(
                    std::io::ErrorKind::ConnectionReset,
                    "cut by test proxy",
                ))
            };
            let stream =
                futures_util::stream::once(async move { Ok(first) }).chain(futures_util::stream::once(cut));
            builder
                .header("content-length", body.len())
                .body(Body::from_stream(stream))
                .unwrap()
        }
        None => builder.body(Body::from(body)).unwrap(),
    }
}
