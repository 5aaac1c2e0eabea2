//! What the running daemon is doing right now, shared by the player thread, the
//! follower and the reporter: output state, now playing, download progress, last
//! error, clock offset, and the wake-ups between them (report now, sync now).
//!
//! Nothing here touches the disk or the network; a lock is held only to copy a field.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use chrono::{DateTime, Utc};
use skycast_schema::report::{AudioClock, Fetching, NowPlaying, OutputState};
use tokio::sync::Notify;

use crate::clock::clock_correction;
use crate::systemd::Heartbeat;

/// The fields a report carries about the moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LiveState {
    pub output: OutputState,
    pub now_playing: Option<NowPlaying>,
    pub last_error: Option<String>,
    /// Server clock minus local clock, from the last answer's `Date`.
    pub clock_offset_ms: Option<i64>,
    /// `None` until the first exchange; then whether the last one reached the server.
    pub network_ok: Option<bool>,
    /// How the schedule follows the wall clock on a sound device (`None` for outputs
    /// paced in software).
    pub audio_clock: Option<AudioClock>,
}

/// A sync's download progress, updated as media files arrive.
#[derive(Debug, Default)]
pub struct FetchProgress {
    /// 0 when no sync is downloading.
    pub version: AtomicU64,
    pub bytes_done: AtomicU64,
    pub bytes_total: AtomicU64,
}

impl FetchProgress {
    pub fn begin(&self, version: u64, bytes_total: u64) {
        self.bytes_done.store(0, Ordering::Relaxed);
        self.bytes_total.store(bytes_total, Ordering::Relaxed);
        self.version.store(version, Ordering::Relaxed);
    }

    pub fn add(&self, bytes: u64) {
        self.bytes_done.fetch_add(bytes, Ordering::Relaxed);
    }

    pub fn end(&self) {
        self.version.store(0, Ordering::Relaxed);
    }

    pub fn get(&self) -> Option<Fetching> {
        match self.version.load(Ordering::Relaxed) {
            0 => None,
            version => Some(Fetching {
                version,
                bytes_done: self.bytes_done.load(Ordering::Relaxed),
                bytes_total: self.bytes_total.load(Ordering::Relaxed),
            }),
        }
    }
}

/// How the daemon's clock runs: `--clock-start` and `--clock-rate`, or the system
/// clock corrected by the measured offset (see [`clock_correction`]).
#[derive(Debug, Clone, Copy)]
pub struct ClockSetting {
    pub start: Option<DateTime<Utc>>,
    pub rate: f64,
}

#[derive(Debug)]
pub struct Live {
    state: Mutex<LiveState>,
    pub fetching: FetchProgress,
    /// Beaten by the player thread each turn of its loop; the systemd watchdog reads it.
    pub player_heartbeat: Arc<Heartbeat>,
    report: Notify,
    sync: Notify,
    started: Instant,
    clock: ClockSetting,
}

impl Live {
    pub fn new(clock: ClockSetting) -> Arc<Live> {
        Arc::new(Live {
            state: Mutex::new(LiveState::default()),
            fetching: FetchProgress::default(),
            player_heartbeat: Arc::new(Heartbeat::default()),
            report: Notify::new(),
            sync: Notify::new(),
            started: Instant::now(),
            clock,
        })
    }

    fn lock(&self) -> MutexGuard<'_, LiveState> {
        // A panic while holding the lock only interrupted a field copy: the state is usable.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn snapshot(&self) -> LiveState {
        self.lock().clone()
    }

    /// Changes the state; returns what `change` returns.
    pub fn update<T>(&self, change: impl FnOnce(&mut LiveState) -> T) -> T {
        change(&mut self.lock())
    }

    /// Records whether an exchange reached the server; returns true when that
    /// changed from the last one (the first failure counts as a change).
    pub fn network(&self, ok: bool) -> bool {
        self.update(|s| {
            let changed = s.network_ok.map_or(!ok, |was| was != ok);
            s.network_ok = Some(ok);
            changed
        })
    }

    /// Asks the reporter to report at once (a permit is kept if it is busy).
    pub fn report_soon(&self) {
        self.report.notify_one();
    }

    pub async fn report_wanted(&self) {
        self.report.notified().await;
    }

    /// Asks the follower to sync at once, interrupting a long-poll or a pause.
    pub fn sync_now(&self) {
        self.sync.notify_one();
    }

    pub async fn sync_wanted(&self) {
        self.sync.notified().await;
    }

    pub fn uptime_secs(&self) -> u64 {
        self.started.elapsed().as_secs()
    }

    /// The daemon's clock: the player's when `--clock-start` set it, else `local`
    /// corrected by the measured offset when that is off by more than the tolerance.
    pub fn now_at(&self, local: DateTime<Utc>, since_start: std::time::Duration) -> DateTime<Utc> {
        match self.clock.start {
            Some(start) => {
                start
                    + chrono::Duration::milliseconds(
                        (since_start.as_secs_f64() * self.clock.rate * 1000.0) as i64,
                    )
            }
            None => self.corrected(local),
        }
    }

    /// [`Live::now_at`] on the system clock.
    pub fn now(&self) -> DateTime<Utc> {
        self.now_at(Utc::now(), self.started.elapsed())
    }

    /// The system clock corrected by the measured offset, whatever `--clock-start`
    /// says: the server's time, which command expiries are written in.
    pub fn server_now(&self) -> DateTime<Utc> {
        self.corrected(Utc::now())
    }

    fn corrected(&self, local: DateTime<Utc>) -> DateTime<Utc> {
        let offset = self.lock().clock_offset_ms;
        local + chrono::Duration::milliseconds(clock_correction(offset, None, local))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn the_clock_is_the_players_or_the_corrected_system_clock() {
        let t: DateTime<Utc> = "2026-12-01T10:00:00Z".parse().unwrap();
        let live = Live::new(ClockSetting {
            start: None,
            rate: 1.0,
        });
        assert_eq!(live.now_at(t, Duration::ZERO), t);
        live.update(|s| s.clock_offset_ms = Some(500));
        assert_eq!(live.now_at(t, Duration::ZERO), t, "within the tolerance");
        live.update(|s| s.clock_offset_ms = Some(60_000));
        assert_eq!(live.now_at(t, Duration::ZERO), t + chrono::Duration::minutes(1));
        let start: DateTime<Utc> = "2026-12-05T10:29:00Z".parse().unwrap();
        let fast = Live::new(ClockSetting {
            start: Some(start),
            rate: 4.0,
        });
        assert_eq!(
            fast.now_at(t, Duration::from_secs(15)),
            start + chrono::Duration::minutes(1)
        );
    }

    #[test]
    fn network_changes_are_reported_once_each() {
        let live = Live::new(ClockSetting {
            start: None,
            rate: 1.0,
        });
        assert!(!live.network(true), "a first success is no change");
        assert!(live.network(false));
        assert!(!live.network(false));
        assert!(live.network(true));
    }
}
