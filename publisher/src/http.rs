//! How the publisher's errors answer over HTTP: the status of each, the message
//! a client may see, and its rendering as JSON (the pull protocol) or HTML (the
//! web UI's fallback page). The only place that maps errors to statuses.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::error::PublisherError;

impl PublisherError {
    pub fn status(&self) -> StatusCode {
        use PublisherError::*;
        match self {
            Unauthorized => StatusCode::UNAUTHORIZED,
            NotFound(_) | NoSuchVersion(_) => StatusCode::NOT_FOUND,
            BadRequest(_) | NotMp3 { .. } | MediaTooLarge { .. } | Planning { .. } | Manifest(_) => {
                StatusCode::BAD_REQUEST
            }
            ConcurrentPublish
            | PlayerExists(_)
            | AlreadyInitialised { .. }
            | Conflict(_)
            | ReadOnlyCopy { .. } => StatusCode::CONFLICT,
            Forbidden { .. } | CsrfRejected => StatusCode::FORBIDDEN,
            TooManyLogins { .. } | TooManyCodes { .. } => StatusCode::TOO_MANY_REQUESTS,
            CodeRefused(_) => StatusCode::FORBIDDEN,
            Gone(_) => StatusCode::GONE,
            UploadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Busy { .. } => StatusCode::SERVICE_UNAVAILABLE,
            WrongPlayer(_) => StatusCode::FORBIDDEN,
            BodyTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// What a client may see. Server-side details (paths, SQL) stay in the log.
    pub fn public_message(&self) -> String {
        if self.status().is_server_error() && !matches!(self, PublisherError::Busy { .. }) {
            "internal error: the publisher logged the details".to_string()
        } else {
            self.to_string()
        }
    }

    /// How many seconds a client should wait before asking again, for refusals
    /// that pass (`Retry-After`).
    pub fn retry_after_secs(&self) -> Option<u64> {
        match self {
            PublisherError::Busy { retry_after_secs, .. }
            | PublisherError::TooManyCodes { retry_after_secs } => Some(*retry_after_secs),
            _ => None,
        }
    }

    /// Adds `Retry-After` to `resp` when this error passes with time.
    pub fn with_retry_after(&self, mut resp: Response) -> Response {
        if let Some(secs) = self.retry_after_secs() {
            resp.headers_mut()
                .insert(axum::http::header::RETRY_AFTER, secs.into());
        }
        resp
    }

    pub fn to_json(&self) -> Response {
        let body = serde_json::json!({ "error": self.public_message() });
        self.with_retry_after((self.status(), axum::Json(body)).into_response())
    }

    pub fn to_html(&self) -> Response {
        let msg = html_escape(&self.public_message());
        let code = self.status();
        let body = format!(
            "<!doctype html><meta charset=utf-8><title>Skycast: {code}</title>\
             <main class=error><h1>{code}</h1><p>{msg}</p><p><a href=\"/\">Back</a></p></main>"
        );
        self.with_retry_after((code, axum::response::Html(body)).into_response())
    }
}

/// The protocol and API answer in JSON.
impl IntoResponse for PublisherError {
    fn into_response(self) -> Response {
        if self.status().is_server_error() {
            tracing::error!(error = %self, "request failed");
        }
        self.to_json()
    }
}

/// Bytes `range` of the file at `path` as a streamed body: 64 KiB at a time, so
/// a response holds at most one chunk in memory whatever the file's size.
pub(crate) async fn file_body(
    path: &std::path::Path,
    range: std::ops::Range<u64>,
) -> crate::error::Result<axum::body::Body> {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    const CHUNK: u64 = 64 * 1024;
    let mut file = tokio::fs::File::open(path)
        .await
        .map_err(PublisherError::io("open", path))?;
    file.seek(std::io::SeekFrom::Start(range.start))
        .await
        .map_err(PublisherError::io("seek in", path))?;
    let left = range.end.saturating_sub(range.start);
    let stream = futures_util::stream::unfold(Some((file, left)), |state| async move {
        let (mut file, left) = state?;
        if left == 0 {
            return None;
        }
        let mut buf = vec![0u8; left.min(CHUNK) as usize];
        match file.read(&mut buf).await {
            Ok(0) => Some((
                Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the media file ended before its declared size",
                )),
                None,
            )),
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(bytes::Bytes::from(buf)), Some((file, left - n as u64))))
            }
            Err(e) => Some((Err(e), None)),
        }
    });
    Ok(axum::body::Body::from_stream(stream))
}

pub fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_errors_hide_their_details_from_clients() {
        let e = PublisherError::Internal("sqlite path /secret".into());
        assert!(!e.public_message().contains("/secret"));
        let e = PublisherError::NoSuchVersion(9);
        assert!(e.public_message().contains("version 9"));
    }

    #[test]
    fn a_busy_resource_answers_503_with_retry_after_and_says_so() {
        let e = PublisherError::Busy {
            what: "the store bundle",
            retry_after_secs: 30,
        };
        for resp in [e.to_json(), e.to_html()] {
            assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(resp.headers()[axum::http::header::RETRY_AFTER], "30");
        }
        assert!(
            e.public_message().contains("store bundle is busy"),
            "{}",
            e.public_message()
        );
    }

    #[test]
    fn html_rendering_escapes_the_message() {
        let e = PublisherError::BadRequest("<script>".into());
        let resp = e.to_html();
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    }
}
