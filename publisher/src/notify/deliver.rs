//! The webhook deliverer, a task of `serve`: every [`TICK`] it takes each hook
//! that is due, posts the alert transitions after its cursor in order (one
//! message per open and per resolve), moves the cursor on each 2xx, and on a
//! failure stops that hook until its next attempt, one second after the first
//! failure, doubling up to five minutes ([`retry_delay`]). Cursor, attempt count
//! and next attempt are in the database, so a restart resends nothing delivered
//! and keeps the backoff.
//!
//! Delivery is at least once: a crash between the receiver's 2xx and the cursor
//! write sends that message again, with the same `delivery` id.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use reqwest::header::{HeaderValue, CONTENT_TYPE, LOCATION};
use serde::Serialize;
use tokio::sync::watch;
use url::Url;

use super::sign::{signature, SIGNATURE_HEADER};
use super::{shown_url, NotifyError};
use crate::db::{AlertTransition, Db, DbError, WebhookTarget};

/// How often due hooks are looked for.
pub const TICK: Duration = Duration::from_millis(500);
/// A receiver has this long to answer (connect, send, answer head).
pub const TIMEOUT: Duration = Duration::from_secs(5);
/// The longest wait between two attempts.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(5 * 60);
/// Transitions read per query while a hook catches up.
const BATCH: usize = 50;

/// The wait after the `attempts`-th failure in a row: 1 s, 2 s, 4 s ... 5 min.
pub fn retry_delay(attempts: u32) -> Duration {
    let doublings = attempts.saturating_sub(1).min(16);
    Duration::from_secs(1u64 << doublings).min(MAX_RETRY_DELAY)
}

/// The alert as the message carries it.
#[derive(Debug, Serialize)]
struct AlertBody<'a> {
    id: i64,
    kind: &'a str,
    player_id: &'a str,
    shop: &'a str,
    opened_at: &'a str,
    resolved_at: Option<&'a str>,
    text_en: &'a str,
    text_fr: &'a str,
}

#[derive(Debug, Serialize)]
struct Message<'a> {
    /// `alert.opened` or `alert.resolved`.
    event: String,
    /// `<hook id>-<transition id>`: the same on every retry, so a receiver can drop repeats.
    delivery: String,
    /// One line to forward as it is (a chat message): the alert's words, with
    /// "Resolved:" in front when it is the resolve, so the two never read alike.
    summary_en: String,
    summary_fr: String,
    alert: AlertBody<'a>,
    sent_at: String,
}

/// The JSON body of transition `t` for hook `hook_id`, sent at `sent_at`; the
/// signature covers exactly these bytes.
pub fn message_body(hook_id: i64, t: &AlertTransition, sent_at: DateTime<Utc>) -> Vec<u8> {
    let a = &t.alert;
    let (summary_en, summary_fr) = if t.transition == "resolved" {
        (
            format!("Resolved: {}", a.text_en),
            format!("Résolu : {}", a.text_fr),
        )
    } else {
        (format!("Alert: {}", a.text_en), format!("Alerte : {}", a.text_fr))
    };
    let message = Message {
        event: format!("alert.{}", t.transition),
        delivery: format!("{hook_id}-{}", t.id),
        summary_en,
        summary_fr,
        alert: AlertBody {
            id: a.id,
            kind: a.kind.as_str(),
            player_id: &a.player_id,
            shop: &a.shop,
            opened_at: &a.opened_at,
            resolved_at: a.resolved_at.as_deref(),
            text_en: &a.text_en,
            text_fr: &a.text_fr,
        },
        sent_at: sent_at.to_rfc3339_opts(SecondsFormat::Millis, true),
    };
    // Strings and integers only: serialising cannot fail.
    serde_json::to_vec(&message).expect("a webhook message serialises")
}

/// Posts the alert transitions to every webhook; one per `serve`.
pub struct Deliverer {
    db: Db,
    client: reqwest::Client,
}

impl Deliverer {
    pub fn new(db: Db) -> Result<Arc<Deliverer>, NotifyError> {
        let client = reqwest::Client::builder()
            // A redirect is an answer to fix, not to follow: the receiver is the URL given.
            .redirect(reqwest::redirect::Policy::none())
            .timeout(TIMEOUT)
            .connect_timeout(TIMEOUT)
            .user_agent(concat!("skycast-publisher/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| NotifyError::Client(e.to_string()))?;
        Ok(Arc::new(Deliverer { db, client }))
    }

    /// Delivers until `stop` turns true or its sender is gone. A round in
    /// progress ends after the message being sent (within [`TIMEOUT`]).
    pub async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let mut ticker = tokio::time::interval(TICK);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                changed = stop.changed() => if changed.is_err() || *stop.borrow() { return },
            }
            if let Err(e) = self.round(&stop).await {
                tracing::warn!(error = %e, "webhook delivery round failed; retrying at the next tick");
            }
        }
    }

    /// One pass: every due hook catches up, all at once (one slow receiver
    /// does not hold the others back).
    async fn round(self: &Arc<Self>, stop: &watch::Receiver<bool>) -> Result<(), NotifyError> {
        let now = Utc::now();
        let targets = self.blocking(|db| db.webhook_targets()).await?;
        let due = targets.into_iter().filter(|t| is_due(t, now));
        let hooks = due.map(|t| {
            let me = self.clone();
            let stop = stop.clone();
            async move {
                let id = t.hook.id;
                if let Err(e) = me.catch_up(t, &stop).await {
                    tracing::warn!(webhook = id, error = %e, "webhook delivery stopped");
                }
            }
        });
        futures_util::future::join_all(hooks).await;
        Ok(())
    }

    /// Sends the transitions after the hook's cursor, in order, until one fails.
    async fn catch_up(
        self: &Arc<Self>,
        target: WebhookTarget,
        stop: &watch::Receiver<bool>,
    ) -> Result<(), NotifyError> {
        let id = target.hook.id;
        let mut cursor = target.hook.cursor;
        let mut attempts = target.hook.attempts;
        // Checked when added; a row edited by hand is refused here, with the backoff.
        let url = match super::check_url(&target.hook.url) {
            Ok(url) => url,
            Err(e) => return self.failed(id, cursor, attempts, e).await,
        };
        loop {
            let batch = self
                .blocking(move |db| db.alert_transitions_after(cursor, BATCH))
                .await?;
            if batch.is_empty() {
                return Ok(());
            }
            for t in batch {
                if *stop.borrow() {
                    return Ok(());
                }
                let now = Utc::now();
                let body = message_body(id, &t, now);
                let started = std::time::Instant::now();
                let outcome = self.post(&url, &target, &t, body).await;
                let elapsed_ms = started.elapsed().as_millis() as u64;
                match outcome {
                    Ok(status) => {
                        let delivered = t.id;
                        self.blocking(move |db| db.webhook_delivered(id, delivered, status, now))
                            .await?;
                        tracing::info!(
                            webhook = id,
                            transition = t.id,
                            event = %t.transition,
                            status,
                            elapsed_ms,
                            "webhook delivered"
                        );
                        cursor = t.id;
                        attempts = 0;
                    }
                    Err(e) => {
                        tracing::debug!(webhook = id, transition = t.id, elapsed_ms, "webhook POST failed");
                        return self.failed(id, cursor, attempts, e).await;
                    }
                }
            }
        }
    }

    /// Records the `attempts + 1`-th failure in a row of hook `id` at the
    /// transition after `cursor`, and when to try again.
    async fn failed(
        self: &Arc<Self>,
        id: i64,
        cursor: i64,
        attempts: u32,
        e: NotifyError,
    ) -> Result<(), NotifyError> {
        let attempts = attempts.saturating_add(1);
        let delay = retry_delay(attempts);
        let next = Utc::now() + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::MAX);
        let status = match &e {
            NotifyError::Status { status, .. } | NotifyError::Redirect { status, .. } => Some(*status),
            _ => None,
        };
        let text = e.to_string();
        self.blocking(move |db| db.webhook_failed(id, attempts, next, &text, status))
            .await?;
        tracing::warn!(
            webhook = id,
            after_transition = cursor,
            attempts,
            retry_in_secs = delay.as_secs(),
            error = %e,
            "webhook delivery failed"
        );
        Ok(())
    }

    /// One POST; the answer's status when it is 2xx.
    async fn post(
        &self,
        url: &Url,
        target: &WebhookTarget,
        t: &AlertTransition,
        body: Vec<u8>,
    ) -> Result<u16, NotifyError> {
        let shown = shown_url(url);
        let sig = signature(&target.secret, &body);
        let resp = self
            .client
            .post(url.clone())
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .header(SIGNATURE_HEADER, sig)
            .header("x-skycast-event", format!("alert.{}", t.transition))
            .header("x-skycast-delivery", format!("{}-{}", target.hook.id, t.id))
            .body(body)
            .send()
            .await
            .map_err(|e| NotifyError::Send {
                url: shown.clone(),
                reason: e.without_url().to_string(),
            })?;
        let status = resp.status();
        if status.is_success() {
            return Ok(status.as_u16());
        }
        if status.is_redirection() {
            let location = resp
                .headers()
                .get(LOCATION)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .chars()
                .take(200)
                .collect();
            return Err(NotifyError::Redirect {
                url: shown,
                status: status.as_u16(),
                location,
            });
        }
        Err(NotifyError::Status {
            url: shown,
            status: status.as_u16(),
        })
    }

    async fn blocking<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&Db) -> Result<T, DbError> + Send + 'static,
    ) -> Result<T, NotifyError> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || f(&me.db))
            .await
            .map_err(|e| NotifyError::Client(format!("a database task failed: {e}")))?
            .map_err(NotifyError::from)
    }
}

/// Due when it has never failed, or its next attempt has come.
fn is_due(t: &WebhookTarget, now: DateTime<Utc>) -> bool {
    match &t.hook.next_attempt_at {
        None => true,
        Some(at) => DateTime::parse_from_rfc3339(at).map_or(true, |at| at <= now),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_wait_one_second_doubling_to_five_minutes() {
        let waits: Vec<u64> = (1..=12).map(|n| retry_delay(n).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]);
        assert_eq!(retry_delay(0).as_secs(), 1);
        assert_eq!(retry_delay(u32::MAX), MAX_RETRY_DELAY);
    }

    /// A receiver on 127.0.0.1 answering `status` (with a `Location` to
    /// `/elsewhere`), counting the requests of each path.
    async fn receiver(status: u16) -> (String, Arc<std::sync::Mutex<Vec<String>>>) {
        use axum::http::{header, StatusCode};
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = seen.clone();
        let app = axum::Router::new().fallback(move |uri: axum::http::Uri| {
            let log = log.clone();
            async move {
                log.lock().unwrap().push(uri.path().to_string());
                let code = StatusCode::from_u16(status).unwrap();
                (code, [(header::LOCATION, "/elsewhere")], "")
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (url, seen)
    }

    fn incident(db: &Db, player: &str) {
        db.open_alert(&crate::db::test_alert(player), Utc::now()).unwrap();
    }

    #[tokio::test]
    async fn a_redirect_is_not_followed_but_counted_as_a_failure_with_its_backoff() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("p.sqlite")).unwrap();
        incident(&db, "before");
        let (url, seen) = receiver(302).await;
        let (hook, _secret) = super::super::add_webhook(&db, &url, "test", Utc::now()).unwrap();
        incident(&db, "after");
        let deliverer = Deliverer::new(Db::open(&dir.path().join("p.sqlite")).unwrap()).unwrap();
        let (_stop_tx, stop) = watch::channel(false);
        deliverer.round(&stop).await.unwrap();
        assert_eq!(
            *seen.lock().unwrap(),
            ["/hook"],
            "one POST, the redirect not followed"
        );
        let failed = db.webhook(hook.id).unwrap().unwrap();
        assert_eq!(
            (failed.attempts, failed.last_status, failed.cursor),
            (1, Some(302), hook.cursor)
        );
        let error = failed.last_error.unwrap();
        assert!(
            error.contains("redirecting to `/elsewhere`, which is not followed"),
            "{error}"
        );
        // Not due again before its backoff.
        deliverer.round(&stop).await.unwrap();
        assert_eq!(seen.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_2xx_moves_the_cursor_past_each_transition_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("p.sqlite")).unwrap();
        let (url, seen) = receiver(204).await;
        let (hook, _secret) = super::super::add_webhook(&db, &url, "test", Utc::now()).unwrap();
        incident(&db, "a");
        incident(&db, "b");
        let deliverer = Deliverer::new(Db::open(&dir.path().join("p.sqlite")).unwrap()).unwrap();
        let (_stop_tx, stop) = watch::channel(false);
        deliverer.round(&stop).await.unwrap();
        deliverer.round(&stop).await.unwrap();
        assert_eq!(seen.lock().unwrap().len(), 2, "each transition once");
        let done = db.webhook(hook.id).unwrap().unwrap();
        let last = db.alert_transitions_after(0, 10).unwrap().last().unwrap().id;
        assert_eq!(
            (done.cursor, done.attempts, done.last_status),
            (last, 0, Some(204))
        );
    }

    #[test]
    fn a_message_names_its_event_delivery_and_alert() {
        use crate::db::{AlertRow, AlertTransition};
        use chrono::TimeZone;

        let t = AlertTransition {
            id: 7,
            transition: "resolved".into(),
            at: "2026-12-01T10:05:00Z".into(),
            alert: AlertRow {
                id: 3,
                kind: "unreachable".into(),
                player_id: "main-1".into(),
                subject: String::new(),
                shop: "main".into(),
                opened_at: "2026-12-01T10:00:00Z".into(),
                resolved_at: Some("2026-12-01T10:05:00Z".into()),
                clear_since: None,
                acknowledged_by: None,
                acknowledged_at: None,
                text_en: "The player \"main-1\" is silent".into(),
                text_fr: "Le lecteur se tait".into(),
                detail: "{}".into(),
            },
        };
        let sent = Utc.with_ymd_and_hms(2026, 12, 1, 10, 5, 1).unwrap();
        let body: serde_json::Value = serde_json::from_slice(&message_body(2, &t, sent)).unwrap();
        assert_eq!(
            body,
            serde_json::json!({
                "event": "alert.resolved",
                "delivery": "2-7",
                "summary_en": "Resolved: The player \"main-1\" is silent",
                "summary_fr": "Résolu : Le lecteur se tait",
                "alert": {
                    "id": 3, "kind": "unreachable", "player_id": "main-1", "shop": "main",
                    "opened_at": "2026-12-01T10:00:00Z", "resolved_at": "2026-12-01T10:05:00Z",
                    "text_en": "The player \"main-1\" is silent", "text_fr": "Le lecteur se tait"
                },
                "sent_at": "2026-12-01T10:05:01.000Z"
            })
        );
    }
}
