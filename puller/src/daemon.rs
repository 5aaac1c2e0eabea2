//! The daemon: keeps `current` following the publisher's head, boots the player on
//! the local copy and hands it each new version, and exits when the player dies.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use skycast_schema::report::{EventEntry, EventKind};
use skycast_schema::{Manifest, Verified};

use crate::client::ClientError;
use crate::clock::clock_correction;
use crate::commands::{DaemonActions, RestartRequest};
use crate::config::Config;
use crate::live::{ClockSetting, Live};
use crate::local_store::{Layout, StoreError};
use crate::outbox::{self, Outbox};
use crate::play_log::{self, PlayLog, PlayLogError};
use crate::player::{self, PlayEvent, PlayerError, PlayerHandle, PlayerOptions};
use crate::report::Reporter;
use crate::sources::Sources;
use crate::state::State;
use crate::sync::{sync_sources, SyncOutcome, SyncReport};
use crate::systemd::ServiceNotifications;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error(transparent)]
    Player(#[from] PlayerError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    PlayLog(#[from] PlayLogError),
    #[error("the player stopped: see the log above; restarting the puller restarts it")]
    PlayerStopped,
    #[error(transparent)]
    Trust(#[from] crate::trust::TrustError),
}

/// `on_event`, shared by every player thread the daemon starts (a restart makes a new one).
type Events = Arc<Mutex<Box<dyn FnMut(&PlayEvent) + Send>>>;

/// The daemon: long-polls `head`, syncs when it moves, retries failures every
/// `poll_interval`, and returns when `shutdown` completes. Interrupting a sync at
/// any point is safe: downloads resume and `current` is only swapped atomically.
///
/// With a `shop` in the config it also plays: the player thread starts on the
/// local `current` version (so a shop plays with the network down) and gets each
/// version the syncs install; `on_event` hears what it plays. If the player
/// thread ends (an error, a panic) `run` returns an error at once, whatever the
/// network is doing, so the service manager restarts the whole daemon. An output
/// that fails does not end it: the player reports it and retries.
///
/// Beside them the reporter posts a report every `report_interval` and at each
/// change, and runs the commands the answers carry (see [`crate::report`]).
pub async fn run(
    config: Config,
    on_event: impl FnMut(&PlayEvent) + Send + 'static,
    shutdown: impl Future<Output = ()>,
) -> Result<(), RunError> {
    // The CAs of the newest trust root are trusted too (read at start).
    let config = crate::trust::with_root_cas(config)?;
    let sources = Arc::new(Sources::new(&config)?);
    let layout = Layout::new(&config.data);
    tokio::pin!(shutdown);
    let live = Live::new(ClockSetting {
        start: config.clock_start,
        rate: config.clock_rate,
    });
    // The first sync has not necessarily run yet: the play log and the outbox need
    // the directory (0700) and `state.sqlite` (0600) before SQLite creates it with
    // the umask's mode, and in WAL before the player, the reporter and the sync open it.
    layout.prepare_private()?;
    PlayLog::prepare(&layout.state_db())?;
    begin_run(&layout, &live);
    let events: Events = Arc::new(Mutex::new(Box::new(on_event)));
    let mut player = match &config.shop {
        Some(shop) => Some(start_player(&config, &layout, shop, &live, &events)?),
        None => {
            tracing::info!("no `shop` in the config: syncing without playing");
            None
        }
    };
    let (restart_tx, mut restart_rx) = tokio::sync::mpsc::channel::<RestartRequest>(1);
    let reporter = Reporter {
        sources: sources.clone(),
        player_id: config.player_id.clone(),
        live: live.clone(),
        layout: layout.clone(),
        interval: config.report_interval,
        actions: Arc::new(DaemonActions {
            live: live.clone(),
            layout: layout.clone(),
            restart: player.is_some().then_some(restart_tx),
        }),
    };
    // Its own task: a slow or failing report never holds up a sync or the player.
    let _reporter = AbortOnDrop(tokio::spawn(reporter.run()));
    tracing::info!(
        player_id = %config.player_id,
        server = %config.server,
        backup_servers = config.servers.len() - 1,
        mirrors = config.mirrors.len(),
        data_dir = %config.data.display(),
        long_poll_secs = config.long_poll.as_secs(),
        poll_interval_secs = config.poll_interval.as_secs(),
        report_interval_secs = config.report_interval.as_secs(),
        "puller started"
    );
    // systemd (`Type=notify`): ready now; watchdog pings only while the player beats.
    let _service = ServiceNotifications::ready(player.is_some().then(|| live.player_heartbeat.clone()));
    let mut follower = Follower {
        config: &config,
        sources: &sources,
        layout: &layout,
        live: &live,
        need_sync: true,
    };
    let stopped_by = loop {
        let exit = player.as_ref().map(PlayerHandle::exited);
        // Without a player there is nothing to die: this branch then never completes.
        let player_exited = async move {
            match exit {
                Some(exited) => exited.await,
                None => std::future::pending().await,
            }
        };
        // One place waits on everything: a dead player is noticed while a sync, a
        // 30 s long-poll or a retry pause is under way, not after it.
        tokio::select! {
            // Shutdown first: a stop asked for is a clean stop (a player that died
            // meanwhile still surfaces, as the error `stop` returns).
            biased;
            () = &mut shutdown => break Stop::Shutdown,
            () = player_exited => break Stop::PlayerExited,
            Some(reply) = restart_rx.recv() => {
                let (Some(shop), Some(old)) = (&config.shop, player.take()) else { continue };
                let (detail, started) = restart_player(old, || start_player(&config, &layout, shop, &live, &events));
                let _ = reply.send(detail);
                // A player that cannot start again ends the daemon, like one that died.
                player = Some(started?);
            }
            swapped = follower.turn() => {
                if let (Some(p), Some(manifest)) = (&player, swapped) {
                    p.install(manifest);
                }
            }
        }
    };
    match stopped_by {
        // A shop without sound is the failure that matters most: exit so the
        // service manager restarts the whole daemon.
        Stop::PlayerExited => {
            if let Some(p) = player {
                // The thread has ended: joining it does not block, and returns its error.
                p.stop()?;
            }
            Err(RunError::PlayerStopped)
        }
        Stop::Shutdown => {
            let stopped = match player {
                Some(p) => tokio::task::block_in_place(|| p.stop()),
                None => Ok(()),
            };
            // The clean-stop marker: the next start is not taken for a crash.
            if let Err(e) = Outbox::open(&layout.state_db()).and_then(|o| o.end_run()) {
                tracing::warn!(error = %e, "cannot record the clean stop");
            }
            stopped?;
            tracing::info!("puller stopped");
            Ok(())
        }
    }
}

/// Stops `old` (waiting for its thread) and starts a new player with `start`; returns
/// the words of the `command_done` and the new player.
fn restart_player(
    old: PlayerHandle,
    start: impl FnOnce() -> Result<PlayerHandle, PlayerError>,
) -> (String, Result<PlayerHandle, PlayerError>) {
    let stopped = tokio::task::block_in_place(|| old.stop());
    let started = start();
    let detail = match (&stopped, &started) {
        (_, Err(e)) => format!("restart_playback failed: {e}"),
        (Err(e), Ok(_)) => format!("restart_playback: restarted (the old player had stopped on: {e})"),
        (Ok(()), Ok(_)) => "restart_playback: the player restarted".to_string(),
    };
    (detail, started)
}

/// Aborts a task when dropped, however `run` returns.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Appends `started`, or `restarted_after_crash` when the last run did not stop
/// cleanly (see [`Outbox::begin_run`]).
fn begin_run(layout: &Layout, live: &Live) {
    let db = layout.state_db();
    let left_playing = play_log::left_playing(&db).unwrap_or(false);
    match Outbox::open(&db).and_then(|mut o| o.begin_run(live.now(), left_playing)) {
        Ok(EventKind::RestartedAfterCrash) => tracing::warn!("the last run did not stop cleanly"),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "cannot record the start in the outbox"),
    }
}

/// Appends an event to the outbox and asks for a report at once.
fn record_event(layout: &Layout, live: &Live, event: EventEntry) {
    if let Err(e) = Outbox::open(&layout.state_db()).and_then(|o| o.append_event(live.now(), event)) {
        tracing::warn!(error = %e, "cannot record an event in the outbox");
    }
    live.report_soon();
}

/// Why the daemon's loop ended.
enum Stop {
    Shutdown,
    PlayerExited,
}

/// Keeps `current` following the server's head, one turn at a time.
struct Follower<'a> {
    config: &'a Config,
    /// Servers and mirrors; it long-polls the server that answered last.
    sources: &'a Sources,
    layout: &'a Layout,
    live: &'a Live,
    /// Set at the start, when head moved, after a failure and on `sync_now`: the next turn syncs.
    need_sync: bool,
}

impl Follower<'_> {
    /// One turn: a sync when one is due, else one long-poll of head; each ends with
    /// the pause a failure (or a server that does not hold long-polls) calls for.
    /// Returns the version a sync swapped in, for the player. Dropping a turn at any
    /// await is safe (see [`run`]).
    async fn turn(&mut self) -> Option<Arc<Verified<Manifest>>> {
        if self.need_sync {
            self.sync().await
        } else {
            self.long_poll().await;
            None
        }
    }

    /// Waits `poll_interval`, or less when a sync is asked for.
    async fn pause(&mut self) {
        tokio::select! {
            () = tokio::time::sleep(self.config.poll_interval) => {}
            () = self.live.sync_wanted() => self.need_sync = true,
        }
    }

    /// Notes whether the server answered; a change is an event.
    fn network(&self, ok: bool, detail: impl FnOnce() -> String) {
        if self.live.network(ok) {
            let kind = if ok {
                EventKind::NetworkBack
            } else {
                EventKind::NetworkLost
            };
            record_event(self.layout, self.live, outbox::event(kind, detail()));
        }
    }

    async fn sync(&mut self) -> Option<Arc<Verified<Manifest>>> {
        match sync_sources(self.config, self.sources, &Utc::now, &self.live.fetching).await {
            Ok(report) => {
                self.need_sync = false;
                // Served by a mirror while no server answers: the servers are still
                // out of reach (the reporter sees it too; no flapping of events).
                let server_answered = self.sources.in_use_index().is_some();
                self.network(server_answered, || match server_answered {
                    true => "the server answers again".into(),
                    false => "no server answers: following a mirror".into(),
                });
                if self.live.update(|s| s.last_error.take()).is_some() {
                    self.live.report_soon();
                }
                // A source that sent a refused object was passed over, but is reported.
                for refused in report.served_by.possible_attacks() {
                    record_event(
                        self.layout,
                        self.live,
                        outbox::event(
                            EventKind::VerifyFailed,
                            format!("{} refused: {}", refused.url, refused.error),
                        ),
                    );
                }
                if let Some(reason) = &report.stale_reason {
                    tracing::warn!(version = report.version, reason = %reason, "active version is stale");
                }
                tracing::info!(
                    version = report.version,
                    duration_ms = report.duration.as_millis() as u64,
                    "{report}"
                );
                self.swapped(&report)
            }
            Err(e) => {
                tracing::warn!(
                    error = %e,
                    retry_in_ms = self.config.poll_interval.as_millis() as u64,
                    "sync failed; current version kept"
                );
                let text = e.to_string();
                self.network(!e.is_network(), || format!("sync failed: {text}"));
                if e.is_verify_failure() {
                    record_event(
                        self.layout,
                        self.live,
                        outbox::event(EventKind::VerifyFailed, &text),
                    );
                }
                self.live.update(|s| s.last_error = Some(text));
                self.live.report_soon();
                self.pause().await;
                None
            }
        }
    }

    /// The version a sync swapped in, re-read from disk with its signature checked
    /// again (the player only ever plays a verified manifest), after its event.
    fn swapped(&self, report: &SyncReport) -> Option<Arc<Verified<Manifest>>> {
        let SyncOutcome::Swapped { previous } = report.outcome else {
            return None;
        };
        let mut swapped = outbox::event(
            EventKind::Swapped,
            match previous {
                Some(p) => format!("swapped to version {} (from {p})", report.version),
                None => format!("swapped to version {}", report.version),
            },
        );
        swapped.version = Some(report.version);
        record_event(self.layout, self.live, swapped);
        self.config.shop.as_ref()?;
        let loaded = crate::trust::trusted_keys(self.config, self.layout)
            .map_err(|e| e.to_string())
            .and_then(|keys| {
                self.layout
                    .load_verified(report.version, &keys)
                    .map_err(|e| e.to_string())
            });
        match loaded {
            Ok(m) => Some(Arc::new(m)),
            Err(e) => {
                tracing::error!(error = %e, "cannot hand the new version to the player");
                None
            }
        }
    }

    async fn long_poll(&mut self) {
        let active = match self.layout.current_version() {
            Ok(v) => v.unwrap_or(0),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the current version");
                0
            }
        };
        // The server that answered last. On a backup the wait is one poll interval
        // and every turn then syncs, which asks the primary first: the puller goes
        // back to it within about one interval of its return. With no server in
        // use (the last head came from a mirror, or from nowhere) it just polls.
        let Some(index) = self.sources.in_use_index() else {
            self.pause().await;
            self.need_sync = true;
            return;
        };
        let on_backup = index > 0;
        let server = &self.sources.servers()[index];
        let wait = if on_backup {
            self.config.long_poll.min(self.config.poll_interval)
        } else {
            self.config.long_poll
        };
        let asked_at = Instant::now();
        let answer = tokio::select! {
            answer = server.head(Some(active), Some(wait)) => answer,
            () = self.live.sync_wanted() => {
                self.need_sync = true;
                return;
            }
        };
        match answer {
            Ok(head) => {
                self.network(true, || "the server answers again".into());
                if let Some(date) = head.server_date {
                    let offset = (date - Utc::now()).num_milliseconds();
                    self.live.update(|s| s.clock_offset_ms = Some(offset));
                    // Only for `status` and the next player boot; the next answer
                    // records it again, so a failed write is not worth a warning.
                    let _ =
                        State::open(&self.layout.state_db()).and_then(|mut s| s.record_clock_offset(offset));
                }
                if head.value.commands_pending {
                    // The reporter fetches them; the pause below keeps a server that
                    // answers at once while they wait from spinning this loop.
                    self.live.report_soon();
                }
                if head.value.version != active {
                    tracing::info!(
                        version = head.value.version,
                        active_version = active,
                        "server offers another version"
                    );
                    self.need_sync = true;
                } else if asked_at.elapsed() < Duration::from_secs(1) {
                    // The server did not hold the long-poll: fall back to plain polling.
                    self.pause().await;
                    self.need_sync |= on_backup;
                } else if on_backup {
                    self.need_sync = true;
                }
            }
            Err(e) => {
                tracing::warn!(
                    error = %e,
                    retry_in_ms = self.config.poll_interval.as_millis() as u64,
                    "polling the server failed"
                );
                self.network(!e.is_network(), || format!("polling the server failed: {e}"));
                self.need_sync = true;
                self.pause().await;
            }
        }
    }
}

/// Starts the player thread on the local `current` version, on the server's clock
/// when the local one is wrong (see [`clock_correction`]).
fn start_player(
    config: &Config,
    layout: &Layout,
    shop: &str,
    live: &Arc<Live>,
    events: &Events,
) -> Result<PlayerHandle, PlayerError> {
    let manifest = match layout.current_version()? {
        Some(v) => {
            let keys = crate::trust::trusted_keys(config, layout)?;
            Some(Arc::new(layout.load_verified(v, &keys)?))
        }
        None => None,
    };
    let snapshot = State::read_only_snapshot(&layout.state_db()).unwrap_or_default();
    let clock_correction_ms = clock_correction(
        snapshot.clock_offset_ms,
        manifest.as_ref().map(|m| &***m),
        Utc::now(),
    );
    if clock_correction_ms != 0 && config.clock_start.is_none() {
        tracing::warn!(
            offset_ms = clock_correction_ms,
            "the local clock is wrong: playing on the server's time"
        );
    }
    if live.update(|s| s.clock_offset_ms.is_none()) {
        live.update(|s| s.clock_offset_ms = snapshot.clock_offset_ms);
    }
    let options = PlayerOptions {
        shop: shop.to_string(),
        output: config.output.clone(),
        clock_start: config.clock_start,
        clock_rate: config.clock_rate,
        clock_correction_ms,
        data: config.data.clone(),
        live: live.clone(),
    };
    tracing::info!(shop, output = %options.output, clock_rate = options.clock_rate, "player starting");
    let events = events.clone();
    let on_event = move |event: &PlayEvent| {
        // A panic in an earlier player's `on_event` poisons the lock, not the callback.
        let mut on_event = events.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        on_event(event)
    };
    player::spawn(options, manifest, Box::new(on_event))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::audio::OutputSpec;
    use crate::config::Overrides;
    use crate::sync::sync_once;
    use crate::test_support::{key, media, server_and_config, FUTURE};

    #[test]
    fn sync_and_run_futures_can_be_spawned() {
        fn assert_send<T: Send>(_: &T) {}
        let config = Config::from_toml(
            &format!(
                "player_id = \"p\"\nserver = \"https://h\"\ntoken = \"t\"\ndata = \"d\"\ntrusted_keys = [\"{}\"]\n",
                key().public()
            ),
            Path::new("p.toml"),
            Path::new("."),
            &Overrides::default(),
        )
        .unwrap();
        assert_send(&sync_once(&config, Utc::now));
        assert_send(&run(
            config.clone(),
            |_: &PlayEvent| {},
            std::future::pending::<()>(),
        ));
    }

    #[tokio::test]
    async fn daemon_follows_the_head_and_stops_on_shutdown() {
        let (server, _dir, config) = server_and_config().await;
        let (a, b) = (media(1, 1000), media(2, 1000));
        server.publish(1, &[&a], FUTURE);
        let (daemon, stop) = start_daemon(&config);
        let wait_for = |v: u64| {
            let layout = Layout::new(&config.data);
            async move {
                for _ in 0..500 {
                    if layout.current_version().ok().flatten() == Some(v) {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                panic!("daemon did not reach version {v}");
            }
        };
        wait_for(1).await;
        server.publish(2, &[&b], FUTURE);
        wait_for(2).await;
        stop_daemon(daemon, stop).await;
    }

    #[tokio::test]
    async fn run_exits_within_a_second_when_the_player_thread_dies() {
        let (server, _dir, mut config) = server_and_config().await;
        config.shop = Some("main".into());
        config.output = OutputSpec::Null;
        // Long enough that noticing the death only between long-polls would fail.
        config.long_poll = Duration::from_secs(30);
        server.publish(1, &[&media(1, 1000)], FUTURE);

        // `on_event` runs on the player thread: when the player takes version 1 it
        // waits for the word, then panics, and the thread dies of it.
        let (kill, killed) = std::sync::mpsc::channel::<()>();
        let on_event = move |event: &PlayEvent| {
            if matches!(event, PlayEvent::Swapped { .. }) {
                let _ = killed.recv();
                panic!("test: the player thread dies here");
            }
        };
        let daemon = tokio::spawn(run(config, on_event, std::future::pending::<()>()));

        for _ in 0..500 {
            if server.long_polls_waiting() > 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(server.long_polls_waiting(), 1, "the daemon is in a long-poll");
        let died_at = Instant::now();
        kill.send(()).unwrap();
        let result = tokio::time::timeout(Duration::from_secs(5), daemon)
            .await
            .expect("run returns once the player thread is dead")
            .unwrap();
        let noticed_after = died_at.elapsed();
        let err = result.unwrap_err();
        assert!(
            matches!(&err, RunError::Player(PlayerError::Thread(_))),
            "the dead player's error: {err}"
        );
        assert!(err.to_string().contains("panicked"), "{err}");
        assert!(
            noticed_after < Duration::from_secs(1),
            "run noticed the dead player after {noticed_after:?}"
        );
    }

    /// The daemon on its own task, and the sender that stops it.
    fn start_daemon(
        config: &Config,
    ) -> (
        tokio::task::JoinHandle<Result<(), RunError>>,
        tokio::sync::oneshot::Sender<()>,
    ) {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let daemon = tokio::spawn(run(config.clone(), |_: &PlayEvent| {}, async {
            let _ = stopped.await;
        }));
        (daemon, stop)
    }

    /// Stops the daemon and checks it stopped cleanly and promptly.
    async fn stop_daemon(
        daemon: tokio::task::JoinHandle<Result<(), RunError>>,
        stop: tokio::sync::oneshot::Sender<()>,
    ) {
        stop.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(10), daemon)
            .await
            .expect("daemon stops promptly")
            .unwrap()
            .unwrap();
    }

    /// Waits (polling, bounded) until `ready` holds.
    async fn eventually(what: &str, mut ready: impl FnMut() -> bool) {
        for _ in 0..1000 {
            if ready() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("timed out waiting for {what}");
    }

    fn events_of(reports: &[serde_json::Value], kind: &str) -> Vec<serde_json::Value> {
        reports
            .iter()
            .flat_map(|r| r["entries"].as_array().cloned().unwrap_or_default())
            .filter(|e| e["type"] == "event" && e["kind"] == kind)
            .collect()
    }

    #[tokio::test]
    async fn sync_now_interrupts_a_long_poll_within_a_second() {
        let (server, _dir, mut config) = server_and_config().await;
        config.long_poll = Duration::from_secs(30);
        server.publish(1, &[&media(1, 1000)], FUTURE);
        sync_once(&config, Utc::now).await.unwrap();
        let sources = Sources::new(&config).unwrap();
        sources.set_in_use(Some(0));
        let layout = Layout::new(&config.data);
        let live = Live::new(ClockSetting {
            start: None,
            rate: 1.0,
        });
        let mut follower = Follower {
            config: &config,
            sources: &sources,
            layout: &layout,
            live: &live,
            need_sync: false,
        };
        let asked = {
            let turn = follower.turn();
            tokio::pin!(turn);
            // Drive the turn until its long-poll is held by the server.
            tokio::select! {
                _ = &mut turn => panic!("the long-poll returned by itself"),
                () = eventually("the long-poll", || server.long_polls_waiting() == 1) => {}
            }
            let asked = Instant::now();
            live.sync_now();
            let swapped = tokio::time::timeout(Duration::from_secs(1), turn)
                .await
                .expect("sync_now ends the long-poll within a second");
            assert!(swapped.is_none());
            asked
        };
        assert!(follower.need_sync, "the next turn syncs");
        println!("sync_now ended the long-poll after {:?}", asked.elapsed());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failing_output_keeps_the_daemon_alive_and_reports_no_device() {
        let (server, _dir, mut config) = server_and_config().await;
        config.shop = Some("main".into());
        // /dev/null is a file: no directory can be made under it, even as root.
        config.output = "wav:/dev/null/skycast/x.wav".parse().unwrap();
        server.publish(1, &[&media(1, 1000)], FUTURE);
        let (daemon, stop) = start_daemon(&config);
        eventually("a report saying no_device", || {
            server.reports().iter().any(|r| r["output"] == "no_device")
        })
        .await;
        let reports = server.reports();
        let lost = events_of(&reports, "output_lost");
        assert_eq!(lost.len(), 1, "{reports:#?}");
        assert!(
            lost[0]["detail"].as_str().unwrap().contains("/dev/null"),
            "{lost:?}"
        );
        assert_eq!(events_of(&reports, "started").len(), 1, "{reports:#?}");
        assert!(!daemon.is_finished(), "the daemon goes on without sound");
        stop_daemon(daemon, stop).await;
        // Stopped cleanly: the next start is no crash.
        let mut outbox = Outbox::open(&Layout::new(&config.data).state_db()).unwrap();
        assert_eq!(outbox.begin_run(Utc::now(), false).unwrap(), EventKind::Started);
    }

    #[tokio::test]
    async fn a_command_from_the_answer_runs_once_and_is_echoed_back() {
        let (server, _dir, mut config) = server_and_config().await;
        config.report_interval = Duration::from_secs(1);
        server.publish(1, &[&media(1, 1000)], FUTURE);
        let daemon = tokio::spawn(run(
            config.clone(),
            |_: &PlayEvent| {},
            std::future::pending::<()>(),
        ));
        eventually("the first swap", || {
            Layout::new(&config.data).current_version().ok().flatten() == Some(1)
        })
        .await;
        server.set_commands(vec![
            serde_json::json!({"id": "cmd-1", "kind": "send_status", "requested_by": "ana", "expires_at": "2099-01-01T00:00:00Z"}),
            serde_json::json!({"id": "cmd-2", "kind": "reboot", "requested_by": "mallory", "expires_at": "2099-01-01T00:00:00Z"}),
        ]);
        eventually("both commands answered", || {
            events_of(&server.reports(), "command_done").len() >= 2
        })
        .await;
        // The answers keep carrying them: three more reports, and no second run.
        let seen = server.reports().len();
        eventually("more reports", || server.reports().len() >= seen + 3).await;
        let done = events_of(&server.reports(), "command_done");
        let ids: Vec<&str> = done.iter().map(|e| e["command_id"].as_str().unwrap()).collect();
        assert_eq!(ids, ["cmd-1", "cmd-2"], "{done:#?}");
        assert!(
            done[1]["detail"].as_str().unwrap().contains("refused"),
            "{done:#?}"
        );
        daemon.abort();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_damaged_media_file_is_noticed_at_play_time_reported_and_downloaded_again() {
        let (server, _dir, mut config) = server_and_config().await;
        config.shop = Some("main".into());
        config.output = OutputSpec::Null;
        config.clock_rate = 20.0;
        config.report_interval = Duration::from_secs(1);
        let tone = std::fs::read(crate::audio::test_util::example("music/tone-a.mp3")).unwrap();
        let yaml = crate::test_support::manifest_yaml(1, &[&tone], FUTURE)
            + "schedule:\n  - {playlist: all, shops: [all]}\nshops:\n  main: {}\n";
        let sig = key().sign(yaml.as_bytes()).into_bytes();
        server.publish_raw(1, yaml.into_bytes(), sig);
        server.put_media(tone.clone());
        let (daemon, stop) = start_daemon(&config);
        let plays = |server: &crate::test_support::TestServer| {
            server
                .reports()
                .iter()
                .flat_map(|r| r["entries"].as_array().cloned().unwrap_or_default())
                .filter(|e| e["type"] == "play")
                .count()
        };
        eventually("a play reported", || plays(&server) > 0).await;
        let path = Layout::new(&config.data).media_path(&skycast_schema::MediaId::of(&tone));
        // A disk fault on the shop: the file keeps its size, not its content.
        std::fs::write(&path, vec![0x55; tone.len()]).unwrap();
        eventually("media_damaged reported", || {
            !events_of(&server.reports(), "media_damaged").is_empty()
        })
        .await;
        eventually("the file downloaded again", || {
            std::fs::read(&path).ok().as_ref() == Some(&tone)
        })
        .await;
        let damaged = events_of(&server.reports(), "media_damaged");
        assert_eq!(damaged.len(), 1, "{damaged:#?}");
        assert_eq!(
            damaged[0]["media"],
            skycast_schema::MediaId::of(&tone).to_string()
        );
        let log = crate::play_log::read_all(&Layout::new(&config.data).state_db()).unwrap();
        assert!(!daemon.is_finished());
        stop_daemon(daemon, stop).await;
        println!(
            "play log: {:?}",
            log.iter().map(|r| r.outcome.as_str()).collect::<Vec<_>>()
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn restart_playback_restarts_the_player_thread_and_says_so() {
        let (server, _dir, mut config) = server_and_config().await;
        config.shop = Some("main".into());
        config.output = OutputSpec::Null;
        config.report_interval = Duration::from_secs(1);
        server.publish(1, &[&media(1, 1000)], FUTURE);
        let (daemon, stop) = start_daemon(&config);
        server.set_commands(vec![serde_json::json!({
            "id": "r-1", "kind": "restart_playback", "requested_by": "ana", "expires_at": "2099-01-01T00:00:00Z"
        })]);
        eventually("the restart confirmed", || {
            !events_of(&server.reports(), "command_done").is_empty()
        })
        .await;
        let done = events_of(&server.reports(), "command_done");
        assert_eq!(
            done[0]["detail"], "restart_playback: the player restarted",
            "{done:#?}"
        );
        assert!(!daemon.is_finished(), "the daemon goes on with the new player");
        stop_daemon(daemon, stop).await;
    }
}
