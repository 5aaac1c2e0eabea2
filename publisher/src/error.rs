//! The publisher's one error type: typed variants for every failure, rendered as
//! JSON for the protocol and API, or as HTML for people in a browser.

use std::path::PathBuf;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

#[derive(Debug, thiserror::Error)]
pub enum PublisherError {
    #[error("cannot {action} `{path}`: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("store `{path}`: {source}")]
    Git { path: PathBuf, source: git2::Error },
    #[error("database `{path}`: {source}")]
    Db { path: PathBuf, source: rusqlite::Error },
    #[error("{0}")]
    Manifest(#[from] skycast_schema::ManifestError),
    #[error("{0}")]
    Verify(#[from] skycast_schema::VerifyError),
    #[error("{0}")]
    Key(#[from] skycast_schema::KeyError),
    #[error("media `{path}` is not a playable MP3: {reason}")]
    NotMp3 { path: String, reason: String },
    #[error("media `{path}` is {size_bytes} bytes, over the {max_bytes}-byte limit")]
    MediaTooLarge {
        path: String,
        size_bytes: u64,
        max_bytes: u64,
    },
    #[error("planning `{path}`: {reason}")]
    Planning { path: PathBuf, reason: String },
    #[error("`{path}` is not a Skycast data directory: run `skycast-publisher init --data {path}` first")]
    NotInitialised { path: PathBuf },
    #[error(
        "`{path}` already holds a Skycast data directory: pick another directory or keep using this one"
    )]
    AlreadyInitialised { path: PathBuf },
    #[error("TLS: {0}")]
    Tls(String),
    #[error("version {0} does not exist: `skycast-publisher history` lists the versions")]
    NoSuchVersion(u64),
    #[error("the store has no published version yet: publish a planning first")]
    NothingPublished,
    #[error("another publish moved head to a new version while this one was prepared: run it again")]
    ConcurrentPublish,
    #[error("player `{0}` already exists: choose another id")]
    PlayerExists(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Conflict(String),
    #[error("you are signed in as {role}: this page belongs to another role")]
    Forbidden { role: &'static str },
    #[error("the form is out of date or came from another site: reload the page and try again")]
    CsrfRejected,
    #[error("too many failed sign-ins for this account or address: try again in {retry_after_secs} seconds")]
    TooManyLogins { retry_after_secs: u64 },
    #[error("`{name}` is larger than the {max_bytes}-byte upload limit: nothing was stored")]
    UploadTooLarge { name: String, max_bytes: u64 },
    #[error(
        "missing or invalid player token: send `Authorization: Bearer <token>` as printed by `player add`"
    )]
    Unauthorized,
    #[error("not found: {0}")]
    NotFound(String),
    #[error("internal error: {0}")]
    Internal(String),
}

pub type Result<T, E = PublisherError> = std::result::Result<T, E>;

impl PublisherError {
    pub fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> PublisherError {
        let path = path.into();
        move |source| PublisherError::Io { action, path, source }
    }

    pub fn git(path: impl Into<PathBuf>) -> impl FnOnce(git2::Error) -> PublisherError {
        let path = path.into();
        move |source| PublisherError::Git { path, source }
    }

    pub fn db(path: impl Into<PathBuf>) -> impl FnOnce(rusqlite::Error) -> PublisherError {
        let path = path.into();
        move |source| PublisherError::Db { path, source }
    }

    pub fn status(&self) -> StatusCode {
        use PublisherError::*;
        match self {
            Unauthorized => StatusCode::UNAUTHORIZED,
            NotFound(_) | NoSuchVersion(_) => StatusCode::NOT_FOUND,
            BadRequest(_) | NotMp3 { .. } | MediaTooLarge { .. } | Planning { .. } | Manifest(_) => {
                StatusCode::BAD_REQUEST
            }
            ConcurrentPublish | PlayerExists(_) | AlreadyInitialised { .. } | Conflict(_) => {
                StatusCode::CONFLICT
            }
            Forbidden { .. } | CsrfRejected => StatusCode::FORBIDDEN,
            TooManyLogins { .. } => StatusCode::TOO_MANY_REQUESTS,
            UploadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// What a client may see. Server-side details (paths, SQL) stay in the log.
    pub fn public_message(&self) -> String {
        if self.status().is_server_error() {
            "internal error: the publisher logged the details".to_string()
        } else {
            self.to_string()
        }
    }

    pub fn to_json(&self) -> Response {
        let body = serde_json::json!({ "error": self.public_message() });
        (self.status(), axum::Json(body)).into_response()
    }

    pub fn to_html(&self) -> Response {
        let msg = html_escape(&self.public_message());
        let code = self.status();
        let body = format!(
            "<!doctype html><meta charset=utf-8><title>Skycast: {code}</title>\
             <main class=error><h1>{code}</h1><p>{msg}</p><p><a href=\"/\">Back</a></p></main>"
        );
        (code, axum::response::Html(body)).into_response()
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
    fn html_rendering_escapes_the_message() {
        let e = PublisherError::BadRequest("<script>".into());
        let resp = e.to_html();
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    }
}
