//! Automatic renewal of the server's TLS certificate (issue 13): `serve`
//! checks at start and then hourly (`--tls-renew-schedule`) whether less than a
//! third of the certificate's validity is left, and if so issues a new one from
//! the local CA (`DataDir::renew_server_cert`, what `tls renew` does by hand).
//! The listener's `tls::ReloadingCert` picks the new pair up at the next
//! handshake. A directory without its own CA (a second site, or `init
//! --tls-cert`) skips the job: its certificates come from elsewhere.

use chrono::Utc;
use tokio::sync::watch;

use crate::data_dir::DataDir;

/// Every hour, on the hour (seconds first, as the scheduler's cron text has them).
pub const DEFAULT_SCHEDULE: &str = "0 0 * * * *";

async fn check_now(data: DataDir) {
    let done = tokio::task::spawn_blocking(move || -> crate::Result<Option<chrono::DateTime<Utc>>> {
        let now = Utc::now();
        if !crate::tls::renewal_due(data.server_cert_expiry()?, now) {
            return Ok(None);
        }
        data.renew_server_cert(now).map(Some)
    })
    .await;
    match done {
        Ok(Ok(Some(until))) => tracing::info!(valid_until = %until, "server certificate renewed"),
        Ok(Ok(None)) => {}
        Ok(Err(e)) => tracing::error!(
            error = %e,
            "cannot renew the server certificate: retrying at the next check; run `skycast-publisher tls renew --data DIR` to see why"
        ),
        Err(e) => tracing::error!(error = %e, "the certificate renewal check failed"),
    }
}

/// Checks once, then on `schedule` until `stop` turns true or its sender is gone.
pub(crate) async fn renew_on_schedule(data: DataDir, schedule: String, stop: watch::Receiver<bool>) {
    if data.refuse_if_follower().is_err() || !data.ca_key_path().exists() {
        return;
    }
    check_now(data.clone()).await;
    crate::cron::run_on_schedule(
        "certificate renewal",
        "run `skycast-publisher tls renew` by hand or fix --tls-renew-schedule",
        &schedule,
        move || check_now(data.clone()),
        stop,
    )
    .await;
}
