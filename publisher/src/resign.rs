//! Automatic re-signing (issue 13): `serve` signs the head's content again as a new
//! version once half of the head's validity has passed, so players never go stale
//! while the publisher runs, and a server that stops doing it is noticed within that
//! window (players report stale; the `resign_overdue` alert opens at three quarters).
//! Checked by tokio-cron-scheduler (every minute by default, `serve
//! --resign-schedule`) and once at start; a failed re-sign is logged and tried
//! again at the next check. A second site never signs: it skips the job.

use chrono::{DateTime, Utc};
use tokio::sync::watch;

use crate::data_dir::DataDir;
use crate::error::Result;
use crate::publish::{self, Resigned};

/// Every minute, at second 0 (seconds first, as the scheduler's cron text has them).
pub const DEFAULT_SCHEDULE: &str = "0 * * * * *";
/// Who the re-signed versions name as their author.
pub const AUTHOR: &str = "skycast-serve (re-sign)";

/// Re-signs the head if it is due at `now`; `None` when it is not (or there is
/// nothing published).
pub fn resign_if_due(data: &DataDir, now: DateTime<Utc>) -> Result<Option<Resigned>> {
    let store = data.store()?;
    let Some((version, commit)) = store.head_version()? else {
        return Ok(None);
    };
    let trusted = crate::trust::trusted_keys(data)?;
    let head = store.verified_manifest(commit, &trusted)?;
    if !publish::resign_due(head.published_at.0, head.expires_at.0, now) {
        return Ok(None);
    }
    tracing::info!(version, expires_at = %head.expires_at.0, "half of the head's validity has passed: re-signing");
    publish::resign(data, AUTHOR, now).map(Some)
}

/// One check at the current time, on a blocking thread, logged.
async fn check_now(data: DataDir) {
    let done = tokio::task::spawn_blocking(move || resign_if_due(&data, Utc::now())).await;
    match done {
        Ok(Ok(Some(r))) => tracing::info!(
            version = r.published.version,
            of_version = r.of_version,
            expires_at = %r.expires_at,
            "re-signed the head"
        ),
        Ok(Ok(None)) => {}
        Ok(Err(e)) => tracing::error!(
            error = %e,
            "cannot re-sign the head: retrying at the next check; run `skycast-publisher resign --data DIR` to see why"
        ),
        Err(e) => tracing::error!(error = %e, "the re-sign check failed"),
    }
}

/// Checks once, then on `schedule` until `stop` turns true or its sender is gone.
pub(crate) async fn resign_on_schedule(data: DataDir, schedule: String, stop: watch::Receiver<bool>) {
    if data.refuse_if_follower().is_err() {
        return;
    }
    check_now(data.clone()).await;
    crate::cron::run_on_schedule(
        "re-signing",
        "run `skycast-publisher resign` by hand or fix --resign-schedule",
        &schedule,
        move || check_now(data.clone()),
        stop,
    )
    .await;
}
