//! The scheduled purge of proof of play and player events past the retention
//! (`serve --retention-days`, 62 by default: the specification asks for at least
//! two months), run by tokio-cron-scheduler every hour and once at start.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::watch;

use crate::db::Db;

/// Default of `serve --retention-days`: 62 days.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(62 * 24 * 3600);
/// Every hour, at minute 17 (seconds first, as the scheduler's cron text has them).
const SCHEDULE: &str = "0 17 * * * *";

/// One purge at the current time, on a blocking thread, logged.
async fn purge_now(db: Arc<Db>, retention: Duration) {
    let done = tokio::task::spawn_blocking(move || super::purge(&db, Utc::now(), retention)).await;
    match done {
        Ok(Ok(purged)) => tracing::info!(
            plays = purged.plays,
            events = purged.events,
            commands = purged.commands,
            retention_days = retention.as_secs() / 86_400,
            "purged supervision rows past the retention"
        ),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "cannot purge old plays and events: retrying at the next hour")
        }
        Err(e) => tracing::warn!(error = %e, "the purge of old plays and events failed"),
    }
}

/// Purges once, then every hour until `stop` turns true or its sender is gone.
pub(super) async fn purge_on_schedule(db: Arc<Db>, retention: Duration, stop: watch::Receiver<bool>) {
    purge_now(db.clone(), retention).await;
    crate::cron::run_on_schedule(
        "the hourly purge of old plays and events",
        "they are purged at the next start",
        SCHEDULE,
        move || purge_now(db.clone(), retention),
        stop,
    )
    .await;
}
