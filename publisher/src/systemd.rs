//! systemd service notifications (`sd_notify`): `serve` says `READY=1` once it
//! listens and its state is open, and `STOPPING=1` when it drains.
//!
//! The protocol is one datagram of `KEY=value` lines to the unix socket named by
//! `$NOTIFY_SOCKET` (a path, or an abstract name when it starts with `@`). Outside
//! systemd the variable is unset and every call is a no-op. Written here rather than
//! taken from a crate: it is a dozen lines of std. (Webhooks are `crate::notify`.)

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixDatagram;
use std::path::Path;

/// The variable systemd sets for `Type=notify` services.
pub const NOTIFY_SOCKET_VAR: &str = "NOTIFY_SOCKET";

#[derive(Debug, thiserror::Error)]
pub enum SystemdNotifyError {
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

    /// Sends `state` (e.g. `READY=1`); false when there is no service manager to tell.
    pub fn send(&self, state: &str) -> Result<bool, SystemdNotifyError> {
        let Some(socket) = &self.socket else {
            return Ok(false);
        };
        send_datagram(socket, state.as_bytes()).map_err(|source| SystemdNotifyError::Send {
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

/// Tells systemd (if it started us) that `serve` accepts connections.
pub fn notify_ready() {
    Notifier::from_env().send_or_warn("READY=1\nSTATUS=serving");
}

/// Tells systemd (if it started us) that `serve` is draining its connections.
pub fn notify_stopping() {
    Notifier::from_env().send_or_warn("STOPPING=1");
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn received(socket: &UnixDatagram) -> String {
        let mut buf = [0u8; 512];
        let n = socket.recv(&mut buf).unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[test]
    fn ready_reaches_a_socket_named_by_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let socket = UnixDatagram::bind(&path).unwrap();
        socket.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        assert!(Notifier::to_socket(&path).send("READY=1").unwrap());
        assert_eq!(received(&socket), "READY=1");
    }

    #[test]
    fn ready_reaches_an_abstract_socket_named_with_an_at_sign() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("skycast-publisher-test-{}", std::process::id());
        let address = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let socket = UnixDatagram::bind_addr(&address).unwrap();
        socket.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        assert!(Notifier::to_socket(format!("@{name}")).send("READY=1").unwrap());
        assert_eq!(received(&socket), "READY=1");
    }

    #[test]
    fn without_a_socket_notifying_does_nothing() {
        assert!(!Notifier { socket: None }.send("READY=1").unwrap());
    }

    #[test]
    fn a_missing_socket_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let err = Notifier::to_socket(dir.path().join("gone.sock"))
            .send("READY=1")
            .unwrap_err();
        assert!(err.to_string().contains("gone.sock"), "{err}");
    }
}
