//! The daemon: keeps `current` following the publisher's head, boots the player on
//! the local copy and hands it each new version, and exits when the player dies.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;

use crate::client::{Client, ClientError};
use crate::clock::clock_correction;
use crate::config::Config;
use crate::local_store::Layout;
use crate::play_log::PlayLog;
use crate::player::{self, PlayEvent, PlayerError, PlayerHandle, PlayerOptions};
use crate::state::State;
use crate::sync::{sync_with, SyncOutcome, SyncReport};

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error(transparent)]
    Player(#[from] PlayerError),
    #[error("the player stopped: see the log above; restarting the puller restarts it")]
    PlayerStopped,
}

/// The daemon: long-polls `head`, syncs when it moves, retries failures every
/// `poll_interval`, and returns when `shutdown` completes. Interrupting a sync at
/// any point is safe: downloads resume and `current` is only swapped atomically.
///
/// With a `shop` in the config it also plays: the player thread starts on the
/// local `current` version (so a shop plays with the network down) and gets each
/// version the syncs install; `on_event` hears what it plays. If the player
/// thread ends (an error, a panic) `run` returns an error at once, whatever the
/// network is doing, so the service manager restarts the whole daemon.
pub async fn run(
    config: Config,
    on_event: impl FnMut(&PlayEvent) + Send + 'static,
    shutdown: impl Future<Output = ()>,
) -> Result<(), RunError> {
    let client = Client::new(&config)?;
    let layout = Layout::new(&config.data);
    tokio::pin!(shutdown);
    let player = match &config.shop {
        Some(shop) => Some(start_player(&config, &layout, shop, Box::new(on_event))?),
        None => {
            tracing::info!("no `shop` in the config: syncing without playing");
            None
        }
    };
    let player_exit = player.as_ref().map(PlayerHandle::exited);
    // Without a player there is nothing to die: this branch then never completes.
    let player_exited = async {
        match player_exit {
            Some(exited) => exited.await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(player_exited);
    tracing::info!(
        player_id = %config.player_id,
        server = %config.server,
        data_dir = %config.data.display(),
        long_poll_secs = config.long_poll.as_secs(),
        poll_interval_secs = config.poll_interval.as_secs(),
        "puller started"
    );
    let mut follower = Follower {
        config: &config,
        client: &client,
        layout: &layout,
        player: player.as_ref(),
        need_sync: true,
    };
    let stopped_by = loop {
        // One place waits on everything: a dead player is noticed while a sync, a
        // 30 s long-poll or a retry pause is under way, not after it.
        tokio::select! {
            // Shutdown first: a stop asked for is a clean stop (a player that died
            // meanwhile still surfaces, as the error `stop` returns).
            biased;
            () = &mut shutdown => break Stop::Shutdown,
            () = &mut player_exited => break Stop::PlayerExited,
            () = follower.turn() => {}
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
            if let Some(p) = player {
                tokio::task::block_in_place(|| p.stop())?;
            }
            tracing::info!("puller stopped");
            Ok(())
        }
    }
}

/// Why the daemon's loop ended.
enum Stop {
    Shutdown,
    PlayerExited,
}

/// Keeps `current` following the server's head, one turn at a time.
struct Follower<'a> {
    config: &'a Config,
    client: &'a Client,
    layout: &'a Layout,
    player: Option<&'a PlayerHandle>,
    /// Set at the start, when head moved and after a failure: the next turn syncs.
    need_sync: bool,
}

impl Follower<'_> {
    /// One turn: a sync when one is due, else one long-poll of head; each ends with
    /// the pause a failure (or a server that does not hold long-polls) calls for.
    /// Dropping a turn at any await is safe (see [`run`]).
    async fn turn(&mut self) {
        if self.need_sync {
            self.sync().await;
        } else {
            self.long_poll().await;
        }
    }

    async fn sync(&mut self) {
        match sync_with(self.config, self.client, &Utc::now).await {
            Ok(report) => {
                self.need_sync = false;
                self.hand_to_player(&report);
                if let Some(reason) = &report.stale_reason {
                    tracing::warn!(version = report.version, reason = %reason, "active version is stale");
                }
                tracing::info!(
                    version = report.version,
                    duration_ms = report.duration.as_millis() as u64,
                    "{report}"
                );
            }
            Err(e) => {
                tracing::warn!(
                    error = %e,
                    retry_in_ms = self.config.poll_interval.as_millis() as u64,
                    "sync failed; current version kept"
                );
                tokio::time::sleep(self.config.poll_interval).await;
            }
        }
    }

    /// Gives the player the version a sync swapped in, re-read from disk with its
    /// signature checked again (the player only ever plays a verified manifest).
    fn hand_to_player(&self, report: &SyncReport) {
        let (Some(player), SyncOutcome::Swapped { .. }) = (self.player, report.outcome) else {
            return;
        };
        match self.layout.load_verified(report.version, &self.config.trusted()) {
            Ok(m) => player.install(Arc::new(m)),
            Err(e) => tracing::error!(error = %e, "cannot hand the new version to the player"),
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
        let asked_at = Instant::now();
        match self.client.head(Some(active), Some(self.config.long_poll)).await {
            Ok(head) => {
                if let Some(date) = head.server_date {
                    let offset = (date - Utc::now()).num_milliseconds();
                    // Only for `status` and the next player boot; the next answer
                    // records it again, so a failed write is not worth a warning.
                    let _ =
                        State::open(&self.layout.state_db()).and_then(|mut s| s.record_clock_offset(offset));
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
                    tokio::time::sleep(self.config.poll_interval).await;
                }
            }
            Err(e) => {
                tracing::warn!(
                    error = %e,
                    retry_in_ms = self.config.poll_interval.as_millis() as u64,
                    "polling the server failed"
                );
                self.need_sync = true;
                tokio::time::sleep(self.config.poll_interval).await;
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
    on_event: Box<dyn FnMut(&PlayEvent) + Send>,
) -> Result<PlayerHandle, PlayerError> {
    // The first sync has not necessarily run yet: the play log needs the directory
    // (0700) and `state.sqlite` (0600) before SQLite creates it with the umask's mode.
    layout.prepare_private()?;
    // Before the player thread and the first sync both open `state.sqlite`.
    PlayLog::prepare(&layout.state_db())?;
    let manifest = match layout.current_version()? {
        Some(v) => Some(Arc::new(layout.load_verified(v, &config.trusted())?)),
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
    let options = PlayerOptions {
        shop: shop.to_string(),
        output: config.output.clone(),
        clock_start: config.clock_start,
        clock_rate: config.clock_rate,
        clock_correction_ms,
        data: config.data.clone(),
    };
    tracing::info!(shop, output = %options.output, clock_rate = options.clock_rate, "player starting");
    player::spawn(options, manifest, on_event)
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
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let daemon = tokio::spawn(run(config.clone(), |_: &PlayEvent| {}, async {
            let _ = stopped.await;
        }));
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
        stop.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(10), daemon)
            .await
            .expect("daemon stops promptly")
            .unwrap()
            .unwrap();
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
}
