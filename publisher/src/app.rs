//! `serve`'s composition root: opens the state, starts every background task in
//! one set that is joined on shutdown, and serves the pull protocol and the web
//! UI on one listener (with the caps and timers of `net`).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::data_dir::DataDir;
use crate::error::{PublisherError, Result};
use crate::fleet::Fleet;
use crate::net::ConnLimits;
use crate::protocol::{self, HeadTracker, ProtocolState};

/// How `serve` talks to players. HTTPS unless someone asks otherwise by name.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum TransportMode {
    #[default]
    Https,
    InsecureHttp,
}

/// How often `main`'s ref files are checked for a version published by another
/// process: a `stat` of three files, so a publish reaches waiting long-polls
/// within this.
const HEAD_STAMP_EVERY: Duration = Duration::from_millis(20);

pub struct ServeConfig {
    pub data: DataDir,
    pub transport: TransportMode,
    /// How often the database is checked for players and commands changed by
    /// another process (a token cut off by the CLI also counts at its next request).
    pub head_check_interval: Duration,
    /// Largest media file the web UI accepts in an upload.
    pub max_upload_bytes: u64,
    /// Connection caps and timers of the listener.
    pub limits: ConnLimits,
    /// A player silent this long is KO (`--offline-after`).
    pub offline_after: Duration,
    /// Plays and player events older than this are purged (`--retention-days`).
    pub retention: Duration,
    /// Where `/metrics` is served (plain HTTP, `--metrics-listen`); none by default.
    pub metrics_listener: Option<TcpListener>,
    /// On a second site: fetch the primary's store this often (`follow`).
    pub follow_every: Option<Duration>,
    /// When to check whether the head is due for re-signing (cron with seconds,
    /// `--resign-schedule`).
    pub resign_schedule: String,
    /// When to check whether the server certificate is due for renewal
    /// (`--tls-renew-schedule`).
    pub tls_renew_schedule: String,
}

impl ServeConfig {
    pub fn new(data: DataDir, transport: TransportMode) -> ServeConfig {
        ServeConfig {
            data,
            transport,
            head_check_interval: Duration::from_millis(200),
            max_upload_bytes: skycast_schema::Limits::default().max_media_bytes,
            limits: ConnLimits::for_current_fd_limit(),
            offline_after: crate::fleet::DEFAULT_OFFLINE_AFTER,
            retention: crate::fleet::DEFAULT_RETENTION,
            metrics_listener: None,
            follow_every: None,
            resign_schedule: crate::resign::DEFAULT_SCHEDULE.to_string(),
            tls_renew_schedule: crate::cert_renewal::DEFAULT_SCHEDULE.to_string(),
        }
    }
}

/// Serves until `shutdown` resolves, then drains open requests (long-polls
/// return at once) and waits for every background task to end.
pub async fn run(
    config: ServeConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let data = config.data.clone();
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = JoinSet::new();

    if let Some(every) = config.follow_every {
        // A second site copies the primary's store before and while it serves.
        let from = data.settings()?.follows.ok_or_else(|| {
            PublisherError::Internal("follow_every set on a directory that follows no primary".into())
        })?;
        let (data, stop) = (data.clone(), stop_rx.clone());
        tasks.spawn(async move {
            protocol::every_tick(every, stop, || crate::follow::tick(data.clone(), from.clone())).await
        });
    }
    let head = Arc::new(HeadTracker::open(data.clone()).await?);
    {
        let (head, stop) = (head.clone(), stop_rx.clone());
        tasks.spawn(async move { head.follow(HEAD_STAMP_EVERY, stop).await });
    }
    let fleet = Fleet::new(data.clone(), head.subscribe(), config.offline_after)?;
    {
        // Alerts: opened, held down and resolved from what the players report, every second.
        use crate::fleet::alerts::{AlertConfig, SweepTask};
        let alerts = AlertConfig {
            offline_after: config.offline_after,
            ..AlertConfig::default()
        };
        let (every, stop) = (alerts.sweep_every, stop_rx.clone());
        let sweeps = SweepTask::new(data.clone(), head.subscribe(), alerts, chrono::Utc::now())?;
        tasks.spawn(async move { protocol::every_tick(every, stop, || sweeps.tick()).await });
    }
    let protocol = Arc::new(ProtocolState::new(
        data.clone(),
        head.clone(),
        fleet.clone(),
        stop_rx.clone(),
    )?);
    {
        // Players disabled or re-keyed by the CLI or the web UI: waiting
        // long-polls re-check their token on the same timer as the head.
        let (protocol, stop) = (protocol.clone(), stop_rx.clone());
        let every = config.head_check_interval;
        tasks.spawn(protocol.follow_players(every, stop));
    }
    {
        // Commands queued by the CLI wake the long-poll of their player within a tick.
        let (polled, stop) = (fleet.clone(), stop_rx.clone());
        let every = config.head_check_interval;
        tasks.spawn(async move {
            protocol::every_tick(every, stop, || polled.poll_commands()).await;
        });
        // Proof of play and events past the retention, purged every hour.
        tasks.spawn(fleet.clone().purge_on_schedule(config.retention, stop_rx.clone()));
    }
    // The head signed again before half of its validity has passed.
    tasks.spawn(crate::resign::resign_on_schedule(
        data.clone(),
        config.resign_schedule.clone(),
        stop_rx.clone(),
    ));
    if config.transport == TransportMode::Https {
        // The server certificate renewed from the local CA before it expires.
        tasks.spawn(crate::cert_renewal::renew_on_schedule(
            data.clone(),
            config.tls_renew_schedule.clone(),
            stop_rx.clone(),
        ));
    }
    {
        // Every version copied to the object-storage mirrors, from a persistent queue.
        let mirrors = crate::mirror::worker::MirrorTask::new(data.clone(), head.subscribe())?;
        tasks.spawn(mirrors.run(stop_rx.clone()));
    }
    {
        // Alert transitions to the webhooks, from the database's outbox.
        let deliverer = crate::notify::Deliverer::new(data.db()?)?;
        tasks.spawn(deliverer.run(stop_rx.clone()));
    }
    if let Some(listener) = config.metrics_listener {
        tasks.spawn(crate::metrics::serve(listener, fleet.clone(), stop_rx.clone()));
    }
    let web = crate::web::WebState::new(
        data.clone(),
        config.transport == TransportMode::Https,
        config.max_upload_bytes,
        fleet,
    )?;
    let app = protocol::router(protocol)
        .merge(crate::web::router(Arc::new(web)))
        .layer(axum::middleware::from_fn(crate::metrics::track));
    let addr = listener
        .local_addr()
        .map_err(PublisherError::io("read address of", "listener"))?;
    let tls = match config.transport {
        TransportMode::InsecureHttp => {
            tracing::warn!(%addr, "serving plain HTTP: players must opt in with allow_insecure_http");
            None
        }
        TransportMode::Https => {
            tracing::info!(%addr, "serving HTTPS");
            Some(crate::tls::reloading_server_config(
                &data.server_cert_path(),
                &data.server_key_path(),
            )?)
        }
    };
    let limits = config.limits;
    tracing::info!(
        max_connections = limits.max_connections,
        max_per_ip = limits.max_per_ip,
        header_timeout_secs = limits.header_timeout.as_secs_f64(),
        idle_timeout_secs = limits.idle_timeout.as_secs_f64(),
        "connection limits"
    );
    let signal = async move {
        shutdown.await;
        crate::systemd::notify_stopping();
        let _ = stop_tx.send(true);
    };
    // Bound (by the caller), state open, tasks started: systemd's `Type=notify` may go on.
    crate::systemd::notify_ready();
    // `serve` returns once the stop signal is sent and its connections drained.
    tokio::join!(crate::net::serve(listener, tls, limits, app, stop_rx), signal);
    // Serving is over: the stop signal is sent (the head follower ends).
    while let Some(ended) = tasks.join_next().await {
        if let Err(e) = ended {
            tracing::error!(error = %e, "a background task of serve failed");
        }
    }
    Ok(())
}
