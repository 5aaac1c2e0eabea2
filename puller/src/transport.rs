//! Where the puller's bytes come from: a [`Transport`] fetches one URL and answers
//! with a status, the few headers the pull protocol reads, and a stream of body chunks.
//!
//! Shaped like awslabs/tough's `Transport`: the protocol ([`crate::client`]) and the
//! downloads ([`crate::download`]) see only this trait, so media can later come from
//! mirrors and unit tests need no HTTP server. [`HttpsTransport`] is the real one:
//! rustls with only the pinned CA as root, no redirects, the bearer token on every
//! request, `Range` for resumes and the server's `Date` for the clock offset; for a
//! mirror ([`HttpsTransport::for_mirror`]) no token, and the web roots beside the CA.

use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;
use futures_util::stream::{BoxStream, StreamExt};
use reqwest::header::{HeaderMap, AUTHORIZATION, CONTENT_RANGE, CONTENT_TYPE, DATE, RANGE};
use reqwest::StatusCode;

use crate::config::{Config, MirrorTransport, Token, TransportPolicy};

/// The body of an answer, chunk by chunk; dropping it stops reading (a download
/// over its declared size is cut off without consuming the rest).
pub type BodyStream = BoxStream<'static, Result<Bytes, TransportError>>;

/// One `GET`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchRequest {
    pub url: String,
    /// Ask for the body from this byte on (`Range: bytes=N-`); 0 asks for all of it.
    pub from_byte: u64,
    /// Time allowed for the whole answer, body included; `None` leaves only the
    /// transport's own limits (a media download may take long, but not stall).
    pub timeout: Option<Duration>,
}

impl FetchRequest {
    /// The whole body of `url`, within `timeout`.
    pub fn whole(url: &str, timeout: Duration) -> FetchRequest {
        FetchRequest {
            url: url.to_string(),
            from_byte: 0,
            timeout: Some(timeout),
        }
    }
}

/// One `POST` of a JSON body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostRequest {
    pub url: String,
    pub body: Bytes,
    /// Time allowed for the whole answer, body included.
    pub timeout: Duration,
}

/// An answer whose body is still to be read.
pub struct FetchResponse {
    pub status: StatusCode,
    /// Bytes the body announces (`Content-Length`), when it does.
    pub content_length: Option<u64>,
    /// First byte of a partial answer (`Content-Range: bytes A-B/T`).
    pub range_start: Option<u64>,
    /// The server's clock (`Date`, one-second resolution).
    pub server_date: Option<DateTime<Utc>>,
    pub body: BodyStream,
}

impl FetchResponse {
    /// The next chunk of the body; `None` at its end.
    pub async fn chunk(&mut self) -> Result<Option<Bytes>, TransportError> {
        self.body.next().await.transpose()
    }
}

impl std::fmt::Debug for FetchResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FetchResponse")
            .field("status", &self.status)
            .field("content_length", &self.content_length)
            .field("range_start", &self.range_start)
            .field("server_date", &self.server_date)
            .finish_non_exhaustive()
    }
}

/// Fetches URLs. Boxed futures keep it object-safe, so a [`crate::Client`] can hold
/// any transport (HTTPS today, mirrors or memory tomorrow) behind one type.
pub trait Transport: Send + Sync {
    fn fetch(&self, request: FetchRequest) -> BoxFuture<'_, Result<FetchResponse, TransportError>>;
    /// Sends `request.body` as `application/json` and answers like [`Transport::fetch`].
    fn post(&self, request: PostRequest) -> BoxFuture<'_, Result<FetchResponse, TransportError>>;
}

/// Any error a transport's body stream breaks off with.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// No answer: connection, TLS, timeout, or a URL the transport cannot serve.
    #[error("request to {url} failed: {detail}")]
    Request { url: String, detail: String },
    /// The answer started, then its body broke off.
    #[error("reading the answer from {url} failed: {}", describe_any(.source.as_ref()))]
    Body {
        url: String,
        #[source]
        source: BoxError,
    },
}

impl TransportError {
    pub fn url(&self) -> &str {
        match self {
            TransportError::Request { url, .. } | TransportError::Body { url, .. } => url,
        }
    }

    /// What went wrong, without the URL (callers name it themselves).
    pub fn detail(&self) -> String {
        match self {
            TransportError::Request { detail, .. } => detail.clone(),
            TransportError::Body { source, .. } => describe_any(source.as_ref()),
        }
    }
}

/// [`describe`] for a reqwest error, every cause on one line for any other.
fn describe_any(e: &(dyn std::error::Error + Send + Sync + 'static)) -> String {
    match e.downcast_ref::<reqwest::Error>() {
        Some(e) => describe(e),
        None => one_line(e),
    }
}

#[derive(Debug, thiserror::Error)]
#[error("cannot build the HTTP client: {reason}")]
pub struct BuildError {
    pub reason: String,
}

/// The publisher over HTTPS (plain HTTP only when the config explicitly allows it),
/// or a mirror (see [`HttpsTransport::for_mirror`]).
#[derive(Clone)]
pub struct HttpsTransport {
    http: reqwest::Client,
    /// `None` for a mirror: a CDN or object store never sees the player's token.
    token: Option<Token>,
}

/// Which roots a transport trusts.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Roots {
    /// The pinned CA alone when there is one (a server of this chain).
    PinnedOnly,
    /// The pinned CA and the usual web roots (a CDN or object store has a public
    /// certificate; every object is verified above the transport anyway).
    PinnedAndWeb,
}

impl HttpsTransport {
    pub fn new(config: &Config) -> Result<HttpsTransport, BuildError> {
        let https_only = config.transport == TransportPolicy::HttpsOnly;
        let http = Self::client(config, https_only, Roots::PinnedOnly)?;
        Ok(HttpsTransport {
            http,
            token: Some(config.token.clone()),
        })
    }

    /// A mirror's transport: no bearer token, the pinned CA plus the web roots, plain
    /// HTTP only with [`MirrorTransport::AllowHttp`].
    pub fn for_mirror(config: &Config) -> Result<HttpsTransport, BuildError> {
        let https_only = config.mirror_transport == MirrorTransport::HttpsOnly;
        let http = Self::client(config, https_only, Roots::PinnedAndWeb)?;
        Ok(HttpsTransport { http, token: None })
    }

    /// Enrolment's first request only (`GET /v1/ca.pem`): HTTPS without a token
    /// and **without any certificate check**. Whatever answers is trusted for
    /// nothing: `enroll` compares the CA it sends with the fingerprint the admin
    /// gave before anything else goes out.
    pub fn accepting_any_certificate() -> Result<HttpsTransport, BuildError> {
        let http = base_builder(true, Duration::from_secs(30))
            .danger_accept_invalid_certs(true)
            .build()
            .map_err(|e| BuildError { reason: one_line(&e) })?;
        Ok(HttpsTransport { http, token: None })
    }

    /// Enrolment's second request (`POST /v1/enroll`): HTTPS without a token,
    /// trusting only the CA in `ca_pem` (normal verification, host name included).
    pub fn pinned_to(ca_pem: &str) -> Result<HttpsTransport, BuildError> {
        let builder = with_pinned_ca(
            base_builder(true, Duration::from_secs(30)),
            ca_pem,
            Roots::PinnedOnly,
        )?;
        let http = builder.build().map_err(|e| BuildError { reason: one_line(&e) })?;
        Ok(HttpsTransport { http, token: None })
    }

    fn client(config: &Config, https_only: bool, roots: Roots) -> Result<reqwest::Client, BuildError> {
        // Between two reads of a body; long-polls get their own total timeout.
        let mut builder = base_builder(https_only, Duration::from_secs(30) + config.long_poll);
        if let Some(pem) = &config.ca_cert {
            builder = with_pinned_ca(builder, pem, roots)?;
        }
        builder.build().map_err(|e| BuildError { reason: one_line(&e) })
    }

    async fn get(&self, request: FetchRequest) -> Result<FetchResponse, TransportError> {
        let mut req = self.http.get(&request.url);
        if request.from_byte > 0 {
            req = req.header(RANGE, format!("bytes={}-", request.from_byte));
        }
        if let Some(t) = request.timeout {
            req = req.timeout(t);
        }
        self.send(req, request.url).await
    }

    async fn post_json(&self, request: PostRequest) -> Result<FetchResponse, TransportError> {
        let req = self
            .http
            .post(&request.url)
            .header(CONTENT_TYPE, "application/json")
            .timeout(request.timeout)
            .body(request.body);
        self.send(req, request.url).await
    }

    /// Sends (with the bearer token, to a server) and wraps the answer.
    async fn send(&self, req: reqwest::RequestBuilder, url: String) -> Result<FetchResponse, TransportError> {
        let req = match &self.token {
            Some(token) => req.header(AUTHORIZATION, format!("Bearer {}", token.expose())),
            None => req,
        };
        let resp = req.send().await.map_err(|e| TransportError::Request {
            url: url.clone(),
            detail: describe(&e),
        })?;
        Ok(FetchResponse {
            status: resp.status(),
            content_length: resp.content_length(),
            range_start: range_start(resp.headers()),
            server_date: server_date(resp.headers()),
            body: resp
                .bytes_stream()
                .map(move |chunk| {
                    chunk.map_err(|e| TransportError::Body {
                        url: url.clone(),
                        source: Box::new(e),
                    })
                })
                .boxed(),
        })
    }
}

impl Transport for HttpsTransport {
    fn fetch(&self, request: FetchRequest) -> BoxFuture<'_, Result<FetchResponse, TransportError>> {
        Box::pin(self.get(request))
    }

    fn post(&self, request: PostRequest) -> BoxFuture<'_, Result<FetchResponse, TransportError>> {
        Box::pin(self.post_json(request))
    }
}

/// Every client's settings: rustls, no redirects, bounded connect and read times.
fn base_builder(https_only: bool, read_timeout: Duration) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .use_rustls_tls()
        .https_only(https_only)
        // A redirect could lead to plain HTTP or another host: never follow one.
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(10))
        .read_timeout(read_timeout)
        .user_agent(concat!("skycast-puller/", env!("CARGO_PKG_VERSION")))
}

/// Adds the CA certificates of `pem` as roots; with [`Roots::PinnedOnly`] they are the only ones.
fn with_pinned_ca(
    mut builder: reqwest::ClientBuilder,
    pem: &str,
    roots: Roots,
) -> Result<reqwest::ClientBuilder, BuildError> {
    let certs = reqwest::Certificate::from_pem_bundle(pem.as_bytes()).map_err(|e| BuildError {
        reason: format!("ca_cert is not a usable PEM: {}", one_line(&e)),
    })?;
    if roots == Roots::PinnedOnly {
        builder = builder.tls_built_in_root_certs(false);
    }
    for cert in certs {
        builder = builder.add_root_certificate(cert);
    }
    Ok(builder)
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

/// The server's clock from the `Date` header (one-second resolution).
pub fn server_date(headers: &HeaderMap) -> Option<DateTime<Utc>> {
    let text = headers.get(DATE)?.to_str().ok()?;
    Some(DateTime::parse_from_rfc2822(text).ok()?.with_timezone(&Utc))
}

/// First byte of a `Content-Range: bytes A-B/T` answer.
fn range_start(headers: &HeaderMap) -> Option<u64> {
    let v = headers.get(CONTENT_RANGE)?.to_str().ok()?;
    v.strip_prefix("bytes ")?.split('-').next()?.trim().parse().ok()
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
