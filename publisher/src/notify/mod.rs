//! Notifications of alerts (issue 11): webhooks signed with HMAC-SHA256, one
//! message per alert opened and per alert resolved, delivered in order from the
//! alerts' own transitions table with a cursor per hook, retried with a
//! persisted backoff. `mod.rs` adds, lists and removes hooks (the CLI and the
//! admin page share it); `sign` makes the signature; `deliver` is the task of
//! `serve` that posts.
//!
//! Email over SMTP is not built yet (see the issue).

mod deliver;
mod sign;

use chrono::{DateTime, Utc};
use url::Url;

use crate::db::{Db, DbError, Webhook, WebhookSecret};
use crate::error::PublisherError;

pub use deliver::{message_body, retry_delay, Deliverer, TICK};
pub use sign::{signature, SIGNATURE_HEADER};

/// Longest webhook URL accepted.
pub const MAX_URL_CHARS: usize = 2000;

/// What went wrong with a webhook, naming the URL (without its query, which may
/// hold a token) or the hook.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("webhook URL `{url}` refused: {reason}")]
    UrlRefused { url: String, reason: String },
    #[error("no webhook {0}: `skycast-publisher webhook list` shows the webhooks")]
    NoSuchWebhook(i64),
    #[error("POST {url} failed: {reason}: check that the receiver is up and reachable from the publisher")]
    Send { url: String, reason: String },
    #[error("POST {url} answered {status}: the receiver must answer 2xx once it has kept the message")]
    Status { url: String, status: u16 },
    #[error("POST {url} answered {status} redirecting to `{location}`, which is not followed: set the webhook to the final URL")]
    Redirect {
        url: String,
        status: u16,
        location: String,
    },
    #[error("the webhook HTTP client cannot start: {0}")]
    Client(String),
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<NotifyError> for PublisherError {
    fn from(e: NotifyError) -> Self {
        match e {
            NotifyError::Db(e) => e.into(),
            NotifyError::NoSuchWebhook(_) => PublisherError::NotFound(e.to_string()),
            e @ NotifyError::UrlRefused { .. } => PublisherError::BadRequest(e.to_string()),
            e => PublisherError::Internal(e.to_string()),
        }
    }
}

/// A URL as logs and errors show it: scheme, host, port and path, without
/// credentials or query (receivers such as chat services put tokens there).
pub fn shown_url(url: &Url) -> String {
    let mut out = format!("{}://{}", url.scheme(), url.host_str().unwrap_or(""));
    if let Some(port) = url.port() {
        out.push_str(&format!(":{port}"));
    }
    out.push_str(url.path());
    out
}

/// Checks a webhook URL: `https`, or plain `http` to a loopback address only.
///
/// Plain http anywhere else would send the alerts' words (shop names, what
/// failed) readable on the network, and a signed message can be replayed by
/// whoever sees it; a receiver on the publisher's own machine (a local relay,
/// the tests' receiver on 127.0.0.1) has no network to cross.
pub fn check_url(text: &str) -> Result<Url, NotifyError> {
    let text = text.trim();
    let refused = |reason: &str| NotifyError::UrlRefused {
        url: text.chars().take(80).collect(),
        reason: reason.to_string(),
    };
    if text.chars().count() > MAX_URL_CHARS {
        return Err(refused(&format!("longer than {MAX_URL_CHARS} characters")));
    }
    let url = Url::parse(text).map_err(|e| refused(&format!("{e}: write it as https://host/path")))?;
    if url.host().is_none() {
        return Err(refused("it names no host: write it as https://host/path"));
    }
    match url.scheme() {
        "https" => Ok(url),
        "http" => {
            if crate::net::is_loopback_url(&url) {
                Ok(url)
            } else {
                Err(refused(
                    "plain http is allowed only to a loopback address (127.0.0.1, ::1, localhost): use https",
                ))
            }
        }
        _ => Err(refused("only https (or http to a loopback address) is allowed")),
    }
}

/// A new secret: 32 random bytes as URL-safe base64, with a `skw_` prefix so a
/// leaked one is recognisable. The HMAC key is this text's bytes as printed.
pub fn new_secret() -> WebhookSecret {
    WebhookSecret::new(format!("skw_{}", crate::random_token()))
}

/// Adds a webhook for `url` and returns it with its secret, which is shown once.
/// It receives incidents that open or resolve from now on.
pub fn add_webhook(
    db: &Db,
    url: &str,
    by: &str,
    now: DateTime<Utc>,
) -> Result<(Webhook, WebhookSecret), NotifyError> {
    let url = check_url(url)?;
    let secret = new_secret();
    let hook = db.add_webhook(url.as_str(), &secret, by, now)?;
    tracing::info!(webhook = hook.id, url = %shown_url(&url), by, "webhook added");
    Ok((hook, secret))
}

/// Removes webhook `id`; its pending deliveries are dropped with it.
pub fn remove_webhook(db: &Db, id: i64, by: &str) -> Result<Webhook, NotifyError> {
    let hook = db.remove_webhook(id)?.ok_or(NotifyError::NoSuchWebhook(id))?;
    tracing::info!(webhook = id, by, "webhook removed");
    Ok(hook)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_must_be_https_or_loopback_http() {
        for ok in [
            "https://hooks.example.com/skycast",
            "https://10.0.0.5:8443/x?token=abc",
            "http://127.0.0.1:9000/hook",
            "http://127.0.0.2/hook",
            "http://[::1]:9000/hook",
            "http://localhost:9000/hook",
        ] {
            assert!(check_url(ok).is_ok(), "{ok}");
        }
        for (bad, why) in [
            ("http://hooks.example.com/skycast", "loopback"),
            ("http://10.0.0.5/hook", "loopback"),
            ("ftp://example.com/x", "only https"),
            ("file:///etc/passwd", "no host"),
            ("not a url", "https://host/path"),
            ("", "https://host/path"),
        ] {
            let err = check_url(bad).unwrap_err().to_string();
            assert!(err.contains(why), "{bad}: {err}");
            assert!(!err.ends_with('.'), "{err}");
        }
        let long = format!("https://example.com/{}", "a".repeat(MAX_URL_CHARS));
        assert!(check_url(&long).unwrap_err().to_string().contains("longer than"));
    }

    #[test]
    fn shown_urls_drop_credentials_and_query() {
        let url = Url::parse("https://user:pw@example.com:8443/hooks/1?token=secret").unwrap();
        assert_eq!(shown_url(&url), "https://example.com:8443/hooks/1");
    }

    #[test]
    fn secrets_are_random_prefixed_and_hidden_from_debug() {
        let (a, b) = (new_secret(), new_secret());
        assert_ne!(a, b);
        assert!(a.expose().starts_with("skw_") && a.expose().len() > 40);
        assert!(!format!("{a:?}").contains(a.expose()));
    }
}
