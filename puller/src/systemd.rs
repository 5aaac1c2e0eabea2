//! systemd service notifications (`sd_notify`): `READY=1` once the daemon runs,
//! `WATCHDOG=1` only while the player thread makes progress, `STOPPING=1` at the end.
//!
//! The protocol is one datagram of `KEY=value` lines to the unix socket named by
//! `$NOTIFY_SOCKET` (a path, or an abstract name when it starts with `@`). Outside
//! systemd the variable is unset and every call is a no-op. Written here rather than
//! taken from a crate: it is a dozen lines of std.
//!
//! Why the watchdog follows a heartbeat: a ping from a timer of its own would keep
//! coming while the player thread is stuck (a device write that never returns, a
//! deadlock), and the shop would stay silent with systemd content. The player thread
//! beats once per turn of its loop (every block, at most 250 ms apart while idle or
//! closed); the watchdog task pings only when the last beat is recent, so a stuck
//! player stops the pings and systemd restarts the service (`WatchdogSec=`). The task
//! runs on the async runtime, so a stuck runtime stops them too.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The variable systemd sets for `Type=notify` services.
pub const NOTIFY_SOCKET_VAR: &str = "NOTIFY_SOCKET";

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("cannot send `{state}` to the service manager's socket {socket:?}: {source}; check NotifyAccess= in the unit")]
    Send {
        socket: OsString,
        state: String,
        source: std::io::Error,
    },
}

/// Where notifications go: the service manager's socket, or nowhere.
#[derive(Debug, Clone)]
pub struct Notifier {
    socket: Option<OsString>,
}

impl Notifier {
    /// The socket systemd named in `$NOTIFY_SOCKET`; a no-op notifier when unset.
    pub fn from_env() -> Notifier {
        Notifier {
            socket: std::env::var_os(NOTIFY_SOCKET_VAR).filter(|s| !s.is_empty()),
        }
    }

    /// Notifications to `socket` (a path, or `@name` for an abstract socket).
    pub fn to_socket(socket: impl Into<OsString>) -> Notifier {
        Notifier {
            socket: Some(socket.into()),
        }
    }

    pub fn is_enabled(&self) -> bool {
        self.socket.is_some()
    }

    /// Sends `state` (e.g. `READY=1`); false when there is no service manager to tell.
    pub fn send(&self, state: &str) -> Result<bool, NotifyError> {
        let Some(socket) = &self.socket else {
            return Ok(false);
        };
        send_datagram(socket, state.as_bytes()).map_err(|source| NotifyError::Send {
            socket: socket.clone(),
            state: state.to_string(),
            source,
        })?;
        Ok(true)
    }

    /// Sends `state`, logging a failure: a notification lost is not worth stopping for.
    pub fn send_or_warn(&self, state: &str) {
        if let Err(e) = self.send(state) {
            tracing::warn!(error = %e, "cannot notify the service manager");
        }
    }
}

fn send_datagram(socket: &OsStr, payload: &[u8]) -> std::io::Result<()> {
    let sender = UnixDatagram::unbound()?;
    match socket.as_bytes().strip_prefix(b"@") {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            let address = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
            sender.send_to_addr(payload, &address)?;
        }
        None => {
            sender.send_to(payload, Path::new(socket))?;
        }
    }
    Ok(())
}

/// The watchdog period systemd asks for (`$WATCHDOG_USEC`), when it is meant for this
/// process (`$WATCHDOG_PID` unset or ours).
pub fn watchdog_period_from_env() -> Option<Duration> {
    let usec = std::env::var("WATCHDOG_USEC").ok();
    let pid = std::env::var("WATCHDOG_PID").ok();
    watchdog_period(usec.as_deref(), pid.as_deref(), std::process::id())
}

/// Parses `WATCHDOG_USEC` and `WATCHDOG_PID` as `sd_watchdog_enabled(3)` does.
pub fn watchdog_period(usec: Option<&str>, pid: Option<&str>, own_pid: u32) -> Option<Duration> {
    if let Some(pid) = pid {
        if pid.trim().parse::<u32>().ok()? != own_pid {
            return None;
        }
    }
    match usec?.trim().parse::<u64>().ok()? {
        0 => None,
        usec => Some(Duration::from_micros(usec)),
    }
}

/// When the player thread last went round its loop; shared with the watchdog task.
#[derive(Debug)]
pub struct Heartbeat {
    origin: Instant,
    last_beat_ms: AtomicU64,
}

impl Default for Heartbeat {
    /// Beaten now: a player that is starting gets the same grace as a running one.
    fn default() -> Heartbeat {
        Heartbeat {
            origin: Instant::now(),
            last_beat_ms: AtomicU64::new(0),
        }
    }
}

impl Heartbeat {
    /// A heartbeat whose last beat was `ago` (tests of the stuck case).
    pub fn beaten_ago(ago: Duration) -> Heartbeat {
        let now = Instant::now();
        Heartbeat {
            origin: now.checked_sub(ago).unwrap_or(now),
            last_beat_ms: AtomicU64::new(0),
        }
    }

    pub fn beat(&self) {
        let ms = self.origin.elapsed().as_millis() as u64;
        self.last_beat_ms.store(ms, Ordering::Relaxed);
    }

    /// Time since the last beat.
    pub fn age(&self) -> Duration {
        let last = Duration::from_millis(self.last_beat_ms.load(Ordering::Relaxed));
        self.origin.elapsed().saturating_sub(last)
    }
}

/// Pings systemd's watchdog while the daemon (and its player, when it has one) makes progress.
#[derive(Debug)]
pub struct Watchdog {
    pub notifier: Notifier,
    /// `WatchdogSec=`: systemd restarts the service when no ping came for this long.
    pub period: Duration,
    /// The player's heartbeat; `None` for a puller that only syncs (the runtime's
    /// liveness is then all there is to show).
    pub heartbeat: Option<Arc<Heartbeat>>,
}

impl Watchdog {
    /// Pings go out at a quarter of the period, so one late tick never trips it.
    pub fn tick_every(&self) -> Duration {
        (self.period / 4).max(Duration::from_millis(10))
    }

    /// A heartbeat older than half the period counts as stuck: systemd then restarts
    /// the service at most 1.75 periods after the player's last sign of life.
    pub fn player_is_alive(&self) -> bool {
        self.heartbeat.as_ref().is_none_or(|h| h.age() <= self.period / 2)
    }

    /// One tick: pings when the player is alive; returns whether it pinged.
    pub fn tick(&self) -> Result<bool, NotifyError> {
        if !self.player_is_alive() {
            return Ok(false);
        }
        self.notifier.send("WATCHDOG=1")
    }

    /// Ticks forever; a stuck player is logged once per stall.
    pub async fn run(self) {
        let mut ticks = tokio::time::interval(self.tick_every());
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut stalled = false;
        loop {
            ticks.tick().await;
            match self.tick() {
                Ok(true) => stalled = false,
                Ok(false) if !stalled => {
                    stalled = true;
                    let age_ms = self.heartbeat.as_ref().map_or(0, |h| h.age().as_millis() as u64);
                    tracing::error!(
                        heartbeat_age_ms = age_ms,
                        "the player thread makes no progress: watchdog pings withheld, systemd will restart the service"
                    );
                }
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "cannot ping the service manager's watchdog"),
            }
        }
    }
}

/// The daemon's side of the service contract: `READY=1` when made, the watchdog task
/// while it lives, `STOPPING=1` when dropped (however the daemon ends).
pub struct ServiceNotifications {
    notifier: Notifier,
    watchdog: Option<tokio::task::JoinHandle<()>>,
}

impl ServiceNotifications {
    /// Tells systemd the daemon runs, and starts the watchdog pings if it asked for
    /// them. Call inside the tokio runtime.
    pub fn ready(heartbeat: Option<Arc<Heartbeat>>) -> ServiceNotifications {
        let notifier = Notifier::from_env();
        if !notifier.is_enabled() {
            return ServiceNotifications {
                notifier,
                watchdog: None,
            };
        }
        notifier.send_or_warn("READY=1\nSTATUS=playing and following the server");
        let watchdog = watchdog_period_from_env().map(|period| {
            tracing::info!(
                watchdog_ms = period.as_millis() as u64,
                "systemd watchdog on: pings follow the player's progress"
            );
            tokio::spawn(
                Watchdog {
                    notifier: notifier.clone(),
                    period,
                    heartbeat,
                }
                .run(),
            )
        });
        ServiceNotifications { notifier, watchdog }
    }
}

impl Drop for ServiceNotifications {
    fn drop(&mut self) {
        if let Some(task) = self.watchdog.take() {
            task.abort();
        }
        if self.notifier.is_enabled() {
            self.notifier.send_or_warn("STOPPING=1");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bound_socket() -> (tempfile::TempDir, std::path::PathBuf, UnixDatagram) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let socket = UnixDatagram::bind(&path).unwrap();
        socket.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        (dir, path, socket)
    }

    fn received(socket: &UnixDatagram) -> String {
        let mut buf = [0u8; 512];
        let n = socket.recv(&mut buf).unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[test]
    fn ready_reaches_a_socket_named_by_path() {
        let (_dir, path, socket) = bound_socket();
        assert!(Notifier::to_socket(&path).send("READY=1").unwrap());
        assert_eq!(received(&socket), "READY=1");
    }

    #[test]
    fn ready_reaches_an_abstract_socket_named_with_an_at_sign() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("skycast-puller-test-{}", std::process::id());
        let address = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let socket = UnixDatagram::bind_addr(&address).unwrap();
        socket.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        assert!(Notifier::to_socket(format!("@{name}")).send("READY=1").unwrap());
        assert_eq!(received(&socket), "READY=1");
    }

    #[test]
    fn without_a_socket_notifying_does_nothing() {
        let none = Notifier { socket: None };
        assert!(!none.send("READY=1").unwrap());
    }

    #[test]
    fn a_missing_socket_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gone.sock");
        let err = Notifier::to_socket(&path).send("READY=1").unwrap_err();
        assert!(err.to_string().contains("gone.sock"), "{err}");
    }

    #[test]
    fn watchdog_period_is_read_as_sd_watchdog_enabled_reads_it() {
        let cases: &[(Option<&str>, Option<&str>, Option<Duration>)] = &[
            (Some("10000000"), None, Some(Duration::from_secs(10))),
            (Some("10000000"), Some("42"), Some(Duration::from_secs(10))),
            (Some("10000000"), Some("41"), None),
            (Some("0"), None, None),
            (Some("ten"), None, None),
            (None, Some("42"), None),
            (None, None, None),
        ];
        for (usec, pid, want) in cases {
            assert_eq!(
                watchdog_period(*usec, *pid, 42),
                *want,
                "usec {usec:?} pid {pid:?}"
            );
        }
    }

    #[test]
    fn the_watchdog_pings_while_the_player_beats() {
        let (_dir, path, socket) = bound_socket();
        let heartbeat = Arc::new(Heartbeat::default());
        heartbeat.beat();
        let watchdog = Watchdog {
            notifier: Notifier::to_socket(&path),
            period: Duration::from_secs(10),
            heartbeat: Some(heartbeat),
        };
        assert!(watchdog.tick().unwrap());
        assert_eq!(received(&socket), "WATCHDOG=1");
    }

    #[test]
    fn the_watchdog_withholds_pings_from_a_stuck_player() {
        let (_dir, path, socket) = bound_socket();
        let watchdog = Watchdog {
            notifier: Notifier::to_socket(&path),
            period: Duration::from_secs(10),
            heartbeat: Some(Arc::new(Heartbeat::beaten_ago(Duration::from_secs(6)))),
        };
        assert!(!watchdog.tick().unwrap());
        socket.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 64];
        let nothing = socket.recv(&mut buf).unwrap_err();
        assert_eq!(nothing.kind(), std::io::ErrorKind::WouldBlock);
    }

    #[test]
    fn a_puller_without_a_player_pings_on_the_runtime_alone() {
        let (_dir, path, socket) = bound_socket();
        let watchdog = Watchdog {
            notifier: Notifier::to_socket(&path),
            period: Duration::from_secs(10),
            heartbeat: None,
        };
        assert!(watchdog.tick().unwrap());
        assert_eq!(received(&socket), "WATCHDOG=1");
    }

    #[test]
    fn a_beat_makes_the_heartbeat_young_again() {
        let heartbeat = Heartbeat::beaten_ago(Duration::from_secs(60));
        assert!(heartbeat.age() >= Duration::from_secs(59));
        heartbeat.beat();
        assert!(heartbeat.age() < Duration::from_secs(1));
    }
}
