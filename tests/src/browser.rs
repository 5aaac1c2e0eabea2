//! Browser tests: Debian's headless Chromium driven through chromedriver
//! (WebDriver) with `fantoccini`.
//!
//! Each [`Browser`] owns its chromedriver process, one session in a fresh
//! Chromium profile (a temporary `--user-data-dir`), and cleans up after itself:
//! dropping it (a test that panics included) kills chromedriver and every
//! Chromium process under it. Killing chromedriver alone is not enough: a
//! chromedriver that dies (SIGTERM or SIGKILL) leaves its Chromium running.
//!
//! The helpers panic with a message naming the selector: they are for tests.

use std::collections::BTreeSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::elements::Element;
use fantoccini::error::NewSessionError;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::json;

/// Debian package `chromium`.
pub const CHROMIUM: &str = "/usr/bin/chromium";
/// Debian package `chromium-driver`.
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// How long [`Browser::start`] waits for chromedriver to accept connections.
const DRIVER_START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long [`Browser::wait_for`] waits for an element.
const WAIT_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Browser {
    client: Client,
    /// chromedriver; Chromium runs as its child.
    driver: Child,
    /// Holds the profile (`profile/`), chromedriver's log and Chromium's XDG
    /// config and cache directories. Removed after the processes are killed.
    _dir: tempfile::TempDir,
    screenshots: PathBuf,
}

impl Browser {
    /// Starts chromedriver on a free loopback port and a fresh headless Chromium
    /// session with a new empty `--user-data-dir`, a 1280x900 window, insecure
    /// certificates accepted (the publisher serves HTTPS with its own CA), and
    /// `lang` as the `Accept-Language` header (`--lang` and the
    /// `intl.accept_languages` preference).
    pub async fn start(lang: &str) -> Browser {
        for (path, package) in [(CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")] {
            assert!(
                Path::new(path).exists(),
                "{path} is missing (Debian package `{package}`): run scripts/install-deps.sh"
            );
        }
        let screenshots = screenshot_dir();
        let dir = tempfile::tempdir().expect("temporary directory for the browser");
        let profile = dir.path().join("profile");
        std::fs::create_dir(&profile).unwrap();
        let log_path = dir.path().join("chromedriver.log");
        let log = File::create(&log_path).unwrap();

        // A free port: bind :0, read it, release it for chromedriver.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free loopback port")
            .port();
        // Stays in the test's process group so that nextest's timeout and Ctrl-C
        // handling, which signal the whole group, reach chromedriver and Chromium.
        let mut driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            // Chromium inherits these: its crash database and any stray config or
            // cache land in the temporary directory, not in ~/.config/chromium.
            .env("XDG_CONFIG_HOME", dir.path().join("xdg-config"))
            .env("XDG_CACHE_HOME", dir.path().join("xdg-cache"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("start {CHROMEDRIVER}: {e}"));

        let capabilities = json!({
            "browserName": "chrome",
            "acceptInsecureCerts": true,
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-quic",
                    "--no-first-run",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--disable-dev-shm-usage",
                    "--window-size=1280,900",
                    format!("--lang={lang}"),
                    format!("--user-data-dir={}", profile.display()),
                ],
                // What sets Accept-Language: with `--lang` alone it stays en-US on Linux.
                "prefs": { "intl": { "accept_languages": lang } },
            },
        });
        let serde_json::Value::Object(capabilities) = capabilities else {
            unreachable!()
        };
        // chromedriver is plain HTTP on loopback: no TLS connector (and no rustls
        // crypto provider to choose).
        let mut builder = ClientBuilder::new(HttpConnector::new());
        builder.capabilities(capabilities);
        let url = format!("http://127.0.0.1:{port}");

        let client = match connect(&builder, &url, &mut driver).await {
            Ok(client) => client,
            Err(why) => {
                kill_tree(&mut driver);
                panic!("{why}\nchromedriver log:\n{}", log_tail(&log_path));
            }
        };
        Browser {
            client,
            driver,
            _dir: dir,
            screenshots,
        }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub async fn goto(&self, url: &str) {
        self.client
            .goto(url)
            .await
            .unwrap_or_else(|e| panic!("goto {url}: {e}"));
    }

    /// The first element matching `css`, which must exist now.
    async fn find(&self, css: &str) -> Element {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("find `{css}`: {e}"))
    }

    /// Clears the field, then types `value`.
    pub async fn fill(&self, css: &str, value: &str) {
        let field = self.find(css).await;
        field
            .clear()
            .await
            .unwrap_or_else(|e| panic!("clear `{css}`: {e}"));
        field
            .send_keys(value)
            .await
            .unwrap_or_else(|e| panic!("type into `{css}`: {e}"));
    }

    /// Selects the `<option>` whose value is `value` in the `<select>` `css`.
    pub async fn select(&self, css: &str, value: &str) {
        self.find(css)
            .await
            .select_by_value(value)
            .await
            .unwrap_or_else(|e| panic!("select value {value:?} in `{css}`: {e}"));
    }

    pub async fn click(&self, css: &str) {
        self.find(css)
            .await
            .click()
            .await
            .unwrap_or_else(|e| panic!("click `{css}`: {e}"));
    }

    /// Clicks the submit button of the form `form_css`, as a person would
    /// (so the browser's own validation and `submit` handlers run).
    pub async fn submit_form(&self, form_css: &str) {
        let button = "button[type=submit], input[type=submit], button:not([type])";
        self.find(form_css)
            .await
            .find(Locator::Css(button))
            .await
            .unwrap_or_else(|e| panic!("submit button of `{form_css}`: {e}"))
            .click()
            .await
            .unwrap_or_else(|e| panic!("click the submit button of `{form_css}`: {e}"));
    }

    /// The rendered text of the first element matching `css`.
    pub async fn text(&self, css: &str) -> String {
        self.find(css)
            .await
            .text()
            .await
            .unwrap_or_else(|e| panic!("text of `{css}`: {e}"))
    }

    pub async fn exists(&self, css: &str) -> bool {
        !self
            .client
            .find_all(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("find `{css}`: {e}"))
            .is_empty()
    }

    /// Waits up to 10 s for an element matching `css` to appear.
    pub async fn wait_for(&self, css: &str) -> Element {
        self.client
            .wait()
            .at_most(WAIT_TIMEOUT)
            .every(Duration::from_millis(50))
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("wait {WAIT_TIMEOUT:?} for `{css}`: {e}"))
    }

    /// Chooses `paths` in the file input `input_css` (which needs `multiple` for
    /// more than one file). Paths must be absolute.
    pub async fn set_files(&self, input_css: &str, paths: &[&Path]) {
        let joined = paths
            .iter()
            .map(|p| {
                assert!(p.is_absolute(), "set_files needs absolute paths: {}", p.display());
                p.to_str().unwrap_or_else(|| panic!("not UTF-8: {}", p.display()))
            })
            .collect::<Vec<_>>()
            .join("\n");
        self.find(input_css)
            .await
            .send_keys(&joined)
            .await
            .unwrap_or_else(|e| panic!("set files of `{input_css}`: {e}"));
    }

    /// The path of the current URL, e.g. `/echo`.
    pub async fn current_path(&self) -> String {
        self.client
            .current_url()
            .await
            .expect("current URL")
            .path()
            .to_string()
    }

    pub async fn page_source(&self) -> String {
        self.client.source().await.expect("page source")
    }

    pub async fn set_window_size(&self, w: u32, h: u32) {
        self.client
            .set_window_size(w, h)
            .await
            .unwrap_or_else(|e| panic!("set window size {w}x{h}: {e}"));
    }

    /// Saves a PNG of the viewport under `screenshot_dir()/<name>.png` and
    /// returns its path.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        assert!(
            !name.is_empty() && !name.contains(['/', '\\']) && name != "." && name != "..",
            "screenshot name must be a plain file name: {name:?}"
        );
        let png = self.client.screenshot().await.expect("screenshot");
        let path = self.screenshots.join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        path
    }

    /// Ends the session (chromedriver quits Chromium), then stops chromedriver.
    pub async fn close(self) {
        self.client
            .clone()
            .close()
            .await
            .expect("close the WebDriver session");
        // Drop kills chromedriver.
    }
}

/// Opens the WebDriver session. chromedriver has no readiness signal other than
/// accepting connections, so this retries while the connection is refused, with
/// short sleeps, for up to [`DRIVER_START_TIMEOUT`] or until chromedriver exits.
async fn connect(
    builder: &ClientBuilder<HttpConnector>,
    url: &str,
    driver: &mut Child,
) -> Result<Client, String> {
    let started = Instant::now();
    loop {
        let e = match builder.connect(url).await {
            Ok(client) => return Ok(client),
            Err(
                e @ (NewSessionError::Failed(_) | NewSessionError::FailedC(_) | NewSessionError::Lost(_)),
            ) => e,
            Err(e) => return Err(format!("chromedriver could not start a Chromium session: {e}")),
        };
        if let Ok(Some(status)) = driver.try_wait() {
            return Err(format!(
                "chromedriver exited ({status}) before accepting connections on {url}: {e}"
            ));
        }
        if started.elapsed() > DRIVER_START_TIMEOUT {
            return Err(format!(
                "chromedriver not reachable on {url} after {DRIVER_START_TIMEOUT:?}: {e}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        kill_tree(&mut self.driver);
    }
}

/// Kills `child` and all its descendants, and reaps `child`.
///
/// Stops them first (SIGSTOP), until no new descendant shows up, so that none
/// can fork or be reparented away while they are killed.
fn kill_tree(child: &mut Child) {
    let root = child.id() as i32;
    let mut stopped = BTreeSet::new();
    loop {
        let new: Vec<i32> = descendants(root)
            .into_iter()
            .filter(|p| !stopped.contains(p))
            .collect();
        if new.is_empty() {
            break;
        }
        for pid in new {
            let _ = kill(Pid::from_raw(pid), Signal::SIGSTOP);
            stopped.insert(pid);
        }
    }
    for &pid in &stopped {
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// `root` and its descendants, from the parent links in /proc.
fn descendants(root: i32) -> Vec<i32> {
    let mut parents = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
                continue;
            };
            // /proc/<pid>/stat: `pid (comm) state ppid ...`; comm may hold spaces
            // and parentheses, so parse after the last ')'.
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|s| s.parse::<i32>().ok());
            if let Some(ppid) = ppid {
                parents.push((pid, ppid));
            }
        }
    }
    let mut out = vec![root];
    let mut i = 0;
    while i < out.len() {
        let p = out[i];
        out.extend(parents.iter().filter(|&&(_, pp)| pp == p).map(|&(c, _)| c));
        i += 1;
    }
    out
}

fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// `<workspace>/target/test-output/screenshots` (created), where reviewers find
/// the screenshots; under `$CARGO_TARGET_DIR` instead when that is set (a
/// relative one is taken from the workspace root).
pub fn screenshot_dir() -> PathBuf {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root");
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => workspace.join(dir),
        _ => workspace.join("target"),
    };
    let dir = target.join("test-output").join("screenshots");
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    dir
}
