//! The real `skycast-publisher serve` binary as a child process (so its memory
//! is its own): started with extra flags and optionally under `ulimit -n`, with
//! its address, pid, memory and log, plus the HTTPS clients that talk to it.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use reqwest::redirect::Policy;
use reqwest::{Client, ClientBuilder};

use crate::bin;

/// How long serve may take to say it is listening.
const START_TIMEOUT: Duration = Duration::from_secs(120);

/// `skycast-publisher <args>` with `env` set; fails the test unless it exits 0;
/// returns its stdout.
pub fn publisher_cli(args: &[&str], env: &[(&str, &str)]) -> String {
    let out = std::process::Command::new(bin("skycast-publisher"))
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A data directory `dir/publisher` made with the real CLI: `init` (user `admin`,
/// password `admin-password`), then `user add marketing` ([`crate::web::TEST_PASSWORD`]).
pub fn init_with_marketing(dir: &Path) -> PathBuf {
    let data = dir.join("publisher");
    let path = data.to_str().unwrap();
    publisher_cli(
        &["init", "--data", path],
        &[("SKYCAST_ADMIN_PASSWORD", "admin-password")],
    );
    publisher_cli(
        &[
            "user",
            "add",
            "--data",
            path,
            "--name",
            "marketing",
            "--role",
            "marketing",
        ],
        &[("SKYCAST_USER_PASSWORD", crate::web::TEST_PASSWORD)],
    );
    data
}

/// A client builder trusting only the CA in `ca_pem` (a data directory's `tls/ca.pem`).
pub fn https_client(ca_pem: &Path) -> ClientBuilder {
    let ca = reqwest::Certificate::from_pem(&std::fs::read(ca_pem).unwrap()).unwrap();
    Client::builder()
        .add_root_certificate(ca)
        .tls_built_in_root_certs(false)
}

/// Drops the terminal colour codes tracing may add.
pub fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The real `skycast-publisher serve` on a loopback port the kernel picks; its
/// address is read from its own `serving HTTPS addr=...` log line (the listener
/// is bound by then). Its stderr goes to a file, so the log already holds what
/// the server wrote before it answered a request. Killed when dropped.
pub struct ServeProcess {
    child: tokio::process::Child,
    addr: SocketAddr,
    pid: u32,
    data: PathBuf,
    log: tempfile::NamedTempFile,
}

impl ServeProcess {
    /// `serve --data <data> --listen 127.0.0.1:0 <args>`.
    pub async fn start(data: &Path, args: &[&str]) -> ServeProcess {
        Self::spawn("serve", data, "127.0.0.1:0", args, None).await
    }

    /// `follow --data <data> --listen <listen> <args>`: a second site, which
    /// serves like `serve` once its first copy from the primary is done.
    pub async fn start_follower(data: &Path, listen: &str, args: &[&str]) -> ServeProcess {
        Self::spawn("follow", data, listen, args, None).await
    }

    /// `serve --data <data> --listen <addr> <args>`: a restart on the address a
    /// stopped serve had, which the pullers' configs name. Waits (bounded) until
    /// the address can be bound again.
    pub async fn start_on(data: &Path, addr: SocketAddr, args: &[&str]) -> ServeProcess {
        let deadline = Instant::now() + START_TIMEOUT;
        // The same bind serve does (tokio's, SO_REUSEADDR set on unix).
        while let Err(e) = tokio::net::TcpListener::bind(addr).await {
            assert!(Instant::now() < deadline, "{addr} stays taken: {e}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Self::spawn("serve", data, &addr.to_string(), args, None).await
    }

    /// The same as a child of `sh` under `ulimit -n <open_files>` (`exec`, so the
    /// pid is serve's).
    pub async fn start_with_open_files(data: &Path, args: &[&str], open_files: u64) -> ServeProcess {
        Self::spawn("serve", data, "127.0.0.1:0", args, Some(open_files)).await
    }

    async fn spawn(
        sub: &str,
        data: &Path,
        listen: &str,
        args: &[&str],
        open_files: Option<u64>,
    ) -> ServeProcess {
        let log = tempfile::Builder::new()
            .prefix("serve-")
            .suffix(".log")
            .tempfile()
            .unwrap();
        let mut command = match open_files {
            Some(n) => {
                let mut sh = tokio::process::Command::new("sh");
                sh.arg("-c")
                    .arg(format!(r#"ulimit -n {n} && exec "$0" "$@""#))
                    .arg(bin("skycast-publisher"));
                sh
            }
            None => tokio::process::Command::new(bin("skycast-publisher")),
        };
        let child = command
            .arg(sub)
            .arg("--data")
            .arg(data)
            .args(["--listen", listen])
            .args(args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stderr(log.reopen().unwrap())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let pid = child.id().unwrap();
        let mut serve = ServeProcess {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            pid,
            data: data.to_path_buf(),
            log,
        };
        // A process start has no readiness signal but its log.
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let text = serve.plain_log();
            let addr = text
                .lines()
                .filter(|l| l.contains("serving HTTPS"))
                .flat_map(str::split_whitespace)
                .find_map(|w| w.strip_prefix("addr=")?.parse::<SocketAddr>().ok());
            if let Some(addr) = addr {
                serve.addr = addr;
                return serve;
            }
            if let Ok(Some(exit)) = serve.child.try_wait() {
                panic!("serve exited with {exit}: {text}");
            }
            assert!(Instant::now() < deadline, "serve did not start: {text}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Where it listens (`127.0.0.1:<port>`).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `https://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The data directory's CA certificate, which the server's certificate chains to.
    pub fn ca_path(&self) -> PathBuf {
        self.data.join("tls/ca.pem")
    }

    /// A client builder trusting the server's CA.
    pub fn client_builder(&self) -> ClientBuilder {
        https_client(&self.ca_path())
    }

    /// A client whose connections come from `from`, showing redirects as they are.
    pub fn client_from(&self, from: IpAddr) -> Client {
        self.client_builder()
            .redirect(Policy::none())
            .local_address(from)
            .build()
            .unwrap()
    }

    /// The peak resident memory (`VmHWM`) and current one (`VmRSS`), in KiB, read at once.
    pub fn memory_kib(&self) -> (u64, u64) {
        let pid = self.pid;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let field = |name: &str| -> u64 {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                .unwrap_or_else(|| panic!("{name} in /proc/{pid}/status"))
        };
        (field("VmHWM:"), field("VmRSS:"))
    }

    /// The peak resident memory (`VmHWM`), in KiB.
    pub fn peak_memory_kib(&self) -> u64 {
        self.memory_kib().0
    }

    /// The current resident memory (`VmRSS`), in KiB.
    pub fn rss_kib(&self) -> u64 {
        self.memory_kib().1
    }

    /// Resets the peak to the current size, so the next peak read is what came
    /// after; false where the kernel does not allow it.
    pub fn reset_peak(&self) -> bool {
        std::fs::write(format!("/proc/{}/clear_refs", self.pid), "5").is_ok()
    }

    /// How many file descriptors it has open.
    pub fn open_files(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    /// Its log so far, as written (colour codes included).
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap()
    }

    /// Its log so far, line by line without colour codes (so `field=value` reads as such).
    pub fn plain_log(&self) -> String {
        self.log_text()
            .lines()
            .map(strip_ansi)
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Kills it and waits for it to be gone.
    pub async fn stop(&mut self) {
        self.child.kill().await.unwrap();
    }

    /// Asks it to stop gracefully (SIGTERM); [`ServeProcess::wait`] sees it exit.
    pub fn terminate(&self) {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(i32::try_from(self.pid).unwrap()),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
    }

    /// Waits for it to exit.
    pub async fn wait(&mut self) -> ExitStatus {
        self.child.wait().await.unwrap()
    }
}
