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
