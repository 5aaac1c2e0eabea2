//! The pull protocol as the puller speaks it: head (plain and long-poll), manifest and
//! signature with size caps, and media answers with `Range`, over any [`Transport`].

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::StatusCode;
use serde::Deserialize;
use skycast_schema::protocol::{head_wait_path, media_path, version_file_path, HEAD_PATH};
use skycast_schema::report::{report_path, MAX_REPORT_BYTES};
use skycast_schema::MediaId;

use crate::config::Config;
use crate::transport::{FetchRequest, FetchResponse, HttpsTransport, PostRequest, Transport, TransportError};

pub use crate::transport::{describe, one_line, server_date};

/// Largest manifest the puller will read (the schema's default limit).
pub const MAX_MANIFEST_BYTES: usize = 8 * 1024 * 1024;
/// Largest detached signature file the puller will read.
pub const MAX_SIGNATURE_BYTES: usize = 4 * 1024;
/// Largest JSON answer (head, errors) the puller will read.
const MAX_JSON_BYTES: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot build the HTTP client: {0}")]
    Build(String),
    #[error("request to {url} failed: {detail}")]
    Request { url: String, detail: String },
    #[error(
        "server refused the player token at {url} (401): check `token` in the config or re-enrol the player"
    )]
    Unauthorized { url: String },
    #[error("{url} answered {status}{}", server_message(.message))]
    Status {
        url: String,
        status: StatusCode,
        message: Option<String>,
    },
    #[error("{url} sent more than {max_bytes} bytes: refusing an oversized answer")]
    TooLarge { url: String, max_bytes: usize },
    #[error("{url} sent an invalid answer: {reason}")]
    Invalid { url: String, reason: String },
}

impl From<TransportError> for ClientError {
    /// A failed connection and a body that broke off read the same to the protocol:
    /// the request to that URL failed.
    fn from(e: TransportError) -> ClientError {
        ClientError::Request {
            url: e.url().to_string(),
            detail: e.detail(),
        }
    }
}

impl ClientError {
    /// True when no answer came (connection, TLS, timeout, a body cut off), or the
    /// server answered that it is unavailable: the network or the server is down.
    pub fn is_network(&self) -> bool {
        match self {
            ClientError::Request { .. } => true,
            ClientError::Status { status, .. } => status.is_server_error(),
            _ => false,
        }
    }
}

fn server_message(m: &Option<String>) -> String {
    match m {
        Some(m) => format!(": {m}"),
        None => String::new(),
    }
}

pub use skycast_schema::Head;

/// A small answer read in full, with the server's `Date` header if it sent one.
#[derive(Debug)]
pub struct Fetched<T> {
    pub value: T,
    pub server_date: Option<DateTime<Utc>>,
}

/// The publisher, reached through a [`Transport`] at a base URL.
#[derive(Clone)]
pub struct Client {
    transport: Arc<dyn Transport>,
    server: String,
}

impl Client {
    /// The real client: [`HttpsTransport`] to `config.server`.
    pub fn new(config: &Config) -> Result<Client, ClientError> {
        let transport = HttpsTransport::new(config).map_err(|e| ClientError::Build(e.reason))?;
        Ok(Client::with_transport(&config.server, Arc::new(transport)))
    }

    /// A mirror at base URL `mirror` (no trailing `/`): the same paths as the origin
    /// (`schema::protocol::mirror_key`), fetched without a token.
    pub fn mirror(config: &Config, mirror: &str) -> Result<Client, ClientError> {
        let transport = HttpsTransport::for_mirror(config).map_err(|e| ClientError::Build(e.reason))?;
        Ok(Client::with_transport(mirror, Arc::new(transport)))
    }

    /// A client whose requests to `server` (a base URL, no trailing `/`) go through
    /// `transport`.
    pub fn with_transport(server: &str, transport: Arc<dyn Transport>) -> Client {
        Client {
            transport,
            server: server.to_string(),
        }
    }

    /// The base URL this client speaks to: a server's or a mirror's.
    pub fn base(&self) -> &str {
        &self.server
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.server)
    }

    async fn get(&self, request: FetchRequest) -> Result<FetchResponse, ClientError> {
        Ok(self.transport.fetch(request).await?)
    }

    /// Turns 401 and other non-success answers into errors, reading the server's
    /// `{"error": ...}` message when there is one.
    async fn check_status(url: &str, resp: FetchResponse) -> Result<FetchResponse, ClientError> {
        let status = resp.status;
        if status.is_success() {
            return Ok(resp);
        }
        if status == StatusCode::UNAUTHORIZED {
            return Err(ClientError::Unauthorized { url: url.to_string() });
        }
        let body = read_capped(url, resp, MAX_JSON_BYTES).await.ok();
        let message = body.and_then(|b| {
            #[derive(Deserialize)]
            struct ErrorBody {
                error: String,
            }
            serde_json::from_slice::<ErrorBody>(&b)
                .ok()
                .map(|e| e.error.chars().take(200).collect::<String>().replace('\n', " "))
        });
        Err(ClientError::Status {
            url: url.to_string(),
            status,
            message,
        })
    }

    /// `GET /v1/head`, or a long-poll when `after` and `wait` are given.
    pub async fn head(
        &self,
        after: Option<u64>,
        wait: Option<Duration>,
    ) -> Result<Fetched<Head>, ClientError> {
        let url = match (after, wait) {
            (Some(a), Some(w)) => self.url(&head_wait_path(a, w.as_secs())),
            _ => self.url(HEAD_PATH),
        };
        let timeout = Duration::from_secs(20) + wait.unwrap_or_default();
        let resp = self.get(FetchRequest::whole(&url, timeout)).await?;
        let server_date = resp.server_date;
        let resp = Self::check_status(&url, resp).await?;
        let body = read_capped(&url, resp, MAX_JSON_BYTES).await?;
        let value: Head = serde_json::from_slice(&body).map_err(|e| ClientError::Invalid {
            url: url.clone(),
            reason: e.to_string(),
        })?;
        Ok(Fetched { value, server_date })
    }

    /// Fetches `/v1/versions/<n>/<file>` in full, refusing more than `max_bytes`.
    pub async fn version_file(
        &self,
        version: u64,
        file: &str,
        max_bytes: usize,
    ) -> Result<Vec<u8>, ClientError> {
        let url = self.url(&version_file_path(version, file));
        let resp = self
            .get(FetchRequest::whole(&url, Duration::from_secs(120)))
            .await?;
        let resp = Self::check_status(&url, resp).await?;
        read_capped(&url, resp, max_bytes).await
    }

    /// `GET /v1/roots/<version>/<file>`: a trust root or its signatures.
    pub async fn root_file(
        &self,
        version: u64,
        file: &str,
        max_bytes: usize,
    ) -> Result<Vec<u8>, ClientError> {
        let url = self.url(&skycast_schema::protocol::root_file_path(version, file));
        let resp = self
            .get(FetchRequest::whole(&url, Duration::from_secs(120)))
            .await?;
        let resp = Self::check_status(&url, resp).await?;
        read_capped(&url, resp, max_bytes).await
    }

    /// Starts `GET /v1/media/<id>`, from byte `offset` when it is not zero. The caller
    /// reads the body; the status (200, 206, 416) is left for it to judge.
    pub async fn media(&self, id: &MediaId, offset: u64) -> Result<(String, FetchResponse), ClientError> {
        let url = self.media_url(id);
        let resp = self
            .get(FetchRequest {
                url: url.clone(),
                from_byte: offset,
                timeout: None,
            })
            .await?;
        let status = resp.status;
        if status.is_success() || status == StatusCode::RANGE_NOT_SATISFIABLE {
            return Ok((url, resp));
        }
        Err(Self::check_status(&url, resp)
            .await
            .err()
            .unwrap_or_else(|| ClientError::Invalid {
                url: self.media_url(id),
                reason: format!("unexpected status {status}"),
            }))
    }

    /// `POST /v1/players/<id>/report` with a JSON body; the answer's bytes (read
    /// leniently by the caller: one unknown command must not void the rest) and `Date`.
    pub async fn report(&self, player_id: &str, body: Vec<u8>) -> Result<Fetched<Vec<u8>>, ClientError> {
        let url = self.url(&report_path(player_id));
        let resp = self
            .transport
            .post(PostRequest {
                url: url.clone(),
                body: body.into(),
                timeout: Duration::from_secs(20),
            })
            .await?;
        let server_date = resp.server_date;
        let resp = Self::check_status(&url, resp).await?;
        let value = read_capped(&url, resp, MAX_REPORT_BYTES).await?;
        Ok(Fetched { value, server_date })
    }

    pub fn media_url(&self, id: &MediaId) -> String {
        self.url(&media_path(id))
    }
}

/// Reads a whole body, stopping as soon as it exceeds `max_bytes`.
async fn read_capped(url: &str, mut resp: FetchResponse, max_bytes: usize) -> Result<Vec<u8>, ClientError> {
    if resp.content_length.is_some_and(|n| n > max_bytes as u64) {
        return Err(ClientError::TooLarge {
            url: url.to_string(),
            max_bytes,
        });
    }
    let mut out = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        if out.len() + chunk.len() > max_bytes {
            return Err(ClientError::TooLarge {
                url: url.to_string(),
                max_bytes,
            });
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}
