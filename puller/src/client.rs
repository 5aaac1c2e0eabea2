//! HTTP side of the pull protocol: head (plain and long-poll), manifest and signature
//! with size caps, and media responses with `Range`, all carrying the bearer token.

use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::header::{HeaderMap, AUTHORIZATION, DATE, RANGE};
use reqwest::{Response, StatusCode};
use serde::Deserialize;
use skycast_schema::MediaId;

use crate::config::{Config, Token, TransportPolicy};

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

fn server_message(m: &Option<String>) -> String {
    match m {
        Some(m) => format!(": {m}"),
        None => String::new(),
    }
}

/// Renders an error with its causes on one line (reqwest hides the useful part in
/// `source()`).
pub fn one_line(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut cur = err.source();
    while let Some(e) = cur {
        let s = e.to_string();
        if !out.contains(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        cur = e.source();
    }
    out.replace('\n', " ")
}

/// A reqwest error without its repetition of the URL (callers already name it).
pub fn describe(e: &reqwest::Error) -> String {
    let mut out = String::new();
    if e.is_timeout() {
        out.push_str("timed out");
    }
    match std::error::Error::source(e) {
        Some(src) => {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&one_line(src));
        }
        None if out.is_empty() => out = one_line(e),
        None => {}
    }
    out
}

pub use skycast_schema::Head;

/// A small answer read in full, with the server's `Date` header if it sent one.
#[derive(Debug)]
pub struct Fetched<T> {
    pub value: T,
    pub server_date: Option<DateTime<Utc>>,
}

#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    server: String,
    token: Token,
}

impl Client {
    pub fn new(config: &Config) -> Result<Client, ClientError> {
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .https_only(config.transport == TransportPolicy::HttpsOnly)
            // A redirect could lead to plain HTTP or another host: never follow one.
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(10))
            // Between two reads of a body; long-polls get their own total timeout.
            .read_timeout(Duration::from_secs(30) + config.long_poll)
            .user_agent(concat!("skycast-puller/", env!("CARGO_PKG_VERSION")));
        if let Some(pem) = &config.ca_cert {
            let certs = reqwest::Certificate::from_pem_bundle(pem.as_bytes())
                .map_err(|e| ClientError::Build(format!("ca_cert is not a usable PEM: {}", one_line(&e))))?;
            builder = builder.tls_built_in_root_certs(false);
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder.build().map_err(|e| ClientError::Build(one_line(&e)))?;
        Ok(Client {
            http,
            server: config.server.clone(),
            token: config.token.clone(),
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.server)
    }

    async fn get(
        &self,
        url: &str,
        headers: HeaderMap,
        timeout: Option<Duration>,
    ) -> Result<Response, ClientError> {
        let mut req = self
            .http
            .get(url)
            .header(AUTHORIZATION, format!("Bearer {}", self.token.expose()))
            .headers(headers);
        if let Some(t) = timeout {
            req = req.timeout(t);
        }
        let resp = req.send().await.map_err(|e| ClientError::Request {
            url: url.to_string(),
            detail: describe(&e),
        })?;
        Ok(resp)
    }

    /// Turns 401 and other non-success answers into errors, reading the server's
    /// `{"error": ...}` message when there is one.
    async fn check_status(url: &str, resp: Response) -> Result<Response, ClientError> {
        let status = resp.status();
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
            (Some(a), Some(w)) => self.url(&format!("/v1/head?after={a}&wait={}", w.as_secs())),
            _ => self.url("/v1/head"),
        };
        let timeout = Duration::from_secs(20) + wait.unwrap_or_default();
        let resp = self.get(&url, HeaderMap::new(), Some(timeout)).await?;
        let server_date = server_date(resp.headers());
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
        let url = self.url(&format!("/v1/versions/{version}/{file}"));
        let resp = self
            .get(&url, HeaderMap::new(), Some(Duration::from_secs(120)))
            .await?;
        let resp = Self::check_status(&url, resp).await?;
        read_capped(&url, resp, max_bytes).await
    }

    /// Starts `GET /v1/media/<id>`, from byte `offset` when it is not zero. The caller
    /// reads the body; the status (200, 206, 416) is left for it to judge.
    pub async fn media(&self, id: &MediaId, offset: u64) -> Result<(String, Response), ClientError> {
        let url = self.media_url(id);
        let mut headers = HeaderMap::new();
        if offset > 0 {
            // Cannot fail: the value is ASCII digits and punctuation.
            headers.insert(RANGE, format!("bytes={offset}-").parse().expect("ascii header"));
        }
        let resp = self.get(&url, headers, None).await?;
        let status = resp.status();
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

    pub fn media_url(&self, id: &MediaId) -> String {
        self.url(&format!("/v1/media/{id}"))
    }
}

/// Reads a whole body, stopping as soon as it exceeds `max_bytes`.
async fn read_capped(url: &str, mut resp: Response, max_bytes: usize) -> Result<Vec<u8>, ClientError> {
    if resp.content_length().is_some_and(|n| n > max_bytes as u64) {
        return Err(ClientError::TooLarge {
            url: url.to_string(),
            max_bytes,
        });
    }
    let mut out = Vec::new();
    loop {
        let chunk = resp.chunk().await.map_err(|e| ClientError::Request {
            url: url.to_string(),
            detail: describe(&e),
        })?;
        let Some(chunk) = chunk else { break };
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

/// The server's clock from the `Date` header (one-second resolution).
pub fn server_date(headers: &HeaderMap) -> Option<DateTime<Utc>> {
    let text = headers.get(DATE)?.to_str().ok()?;
    Some(DateTime::parse_from_rfc2822(text).ok()?.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_clock_is_read_from_the_date_header() {
        let mut h = HeaderMap::new();
        h.insert(DATE, "Sun, 22 Nov 2026 09:00:10 GMT".parse().unwrap());
        let expected: DateTime<Utc> = "2026-11-22T09:00:10Z".parse().unwrap();
        assert_eq!(server_date(&h), Some(expected));
        assert_eq!(server_date(&HeaderMap::new()), None);
    }

    #[test]
    fn error_chain_is_rendered_on_one_line() {
        let io = std::io::Error::other("line one\nline two");
        assert_eq!(one_line(&io), "line one line two");
    }
}
