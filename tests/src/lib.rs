//! End-to-end test harness: a real publisher (in-process, on a listener the test
//! binds to 127.0.0.1:0, over real HTTPS), real `skycast-puller` processes, and a
//! tampering HTTPS proxy for fault injection.

pub mod alsa;
pub mod browser;
pub mod cut_relay;
pub mod fleet;
pub mod fleet_sim;
pub mod garage;
pub mod play;
pub mod proxy;
pub mod recording;
pub mod serve_process;
pub mod static_mirror;
pub mod ui;
pub mod web;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Output;

use chrono::{DateTime, Utc};
use skycast_publisher::publish::Published;
use skycast_publisher::{DataDir, InitOptions, ServeConfig, TransportMode};
use skycast_schema::{ContentHasher, Limits, MediaId, PublicKey, TrustedKeys};
use tokio::sync::oneshot;

/// A binary of this workspace, built by `cargo build --workspace` / `cargo test --workspace`.
pub fn bin(name: &str) -> PathBuf {
    // target/debug/deps/<test-exe> → target/debug/<name>
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe.parent().and_then(Path::parent).expect("target/debug");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace` first",
        path.display()
    );
    path
}

pub fn example(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../content-example")
        .join(rel)
}

/// The music files of content-example, sorted, relative to content-example/.
pub fn example_music() -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(example("music"))
        .expect("content-example/music")
        .filter_map(|e| e.ok())
        .map(|e| format!("music/{}", e.file_name().to_string_lossy()))
        .filter(|n| n.ends_with(".mp3"))
        .collect();
    out.sort();
    out
}

/// Writes a planning in `dir` playing `tracks` (paths under content-example/) all
/// day in every shop, copying the files beside it.
pub fn write_planning(dir: &Path, tracks: &[&str]) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    for t in tracks {
        let to = dir.join(t);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(example(t), &to).unwrap_or_else(|e| panic!("copy {t}: {e}"));
    }
    let items = tracks.join(", ");
    let text = format!(
        "timezone: Europe/Paris\n\
         playlists:\n  allday: {{items: [{items}]}}\n\
         shops:\n  main: {{tags: [pilot]}}\n  lille: {{tags: [pilot]}}\n  nantes: {{tags: [pilot]}}\n\
         schedule:\n  - {{playlist: allday, shops: [all]}}\n"
    );
    let path = dir.join("planning.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

pub fn file_id(path: &Path) -> (MediaId, u64) {
    let mut h = ContentHasher::new();
    h.update(&std::fs::read(path).unwrap());
    h.finalize()
}

/// A publisher data directory with `serve` running in this process.
pub struct PublisherFixture {
    pub dir: tempfile::TempDir,
    pub data: DataDir,
    pub addr: std::net::SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<skycast_publisher::Result<()>>>,
}

impl PublisherFixture {
    /// Initialises a data directory and starts serving HTTPS on 127.0.0.1:0.
    pub async fn start() -> PublisherFixture {
        PublisherFixture::start_with(TransportMode::Https).await
    }

    pub async fn start_with(transport: TransportMode) -> PublisherFixture {
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir::new(dir.path().join("publisher"));
        data.init(
            InitOptions {
                root: Default::default(),
                public_url: "https://127.0.0.1:1".into(),
                admin_user: "admin".into(),
                admin_password: Some("admin-password".into()),
                tls_cert_and_key: None,
                extra_names: Vec::new(),
            },
            skycast_publisher::random_bytes(),
        )
        .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let mut config = ServeConfig::new(data.clone(), transport);
        config.head_check_interval = std::time::Duration::from_millis(50);
        let task = tokio::spawn(skycast_publisher::run(config, listener, async {
            let _ = stopped.await;
        }));
        let fixture = PublisherFixture {
            dir,
            data,
            addr,
            stop: Some(stop),
            task: Some(task),
        };
        fixture.wait_until_serving(transport).await;
        fixture
    }

    /// One request answered: `run` has opened its state (and written what it
    /// writes at start) before it accepts, so a test's "before" snapshot is
    /// taken after that. The bound listener queues the request meanwhile.
    async fn wait_until_serving(&self, transport: TransportMode) {
        let (client, url) = match transport {
            TransportMode::Https => (
                serve_process::https_client(&self.data.root().join("tls/ca.pem"))
                    .build()
                    .unwrap(),
                self.url(),
            ),
            TransportMode::InsecureHttp => (reqwest::Client::new(), self.plain_http_url()),
        };
        let resp = client
            .get(format!("{url}/static/style.css"))
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success(), "serve answered {}", resp.status());
    }

    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.addr.port())
    }

    pub fn plain_http_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.addr.port())
    }

    pub fn publish(&self, planning: &Path) -> Published {
        self.publish_at(planning, Utc::now())
    }

    pub fn publish_at(&self, planning: &Path, now: DateTime<Utc>) -> Published {
        skycast_publisher::publish::publish_planning(&self.data, planning, "tester", None, now)
            .unwrap_or_else(|e| panic!("publish {}: {e}", planning.display()))
    }

    pub fn public_key(&self) -> PublicKey {
        self.data.public_key().unwrap()
    }

    pub fn trusted(&self) -> TrustedKeys {
        TrustedKeys::new([self.public_key()])
    }

    /// Registers a player with the real CLI and returns a puller whose config
    /// points at `server_url` (the publisher, or a proxy in front of it).
    pub fn add_player(&self, id: &str, shop: &str, server_url: &str) -> Puller {
        let player_dir = self.dir.path().join("players").join(id);
        register_player(self.data.root(), &player_dir, id, shop, server_url)
    }

    /// Stops serving (the network is gone for the pullers) but keeps the files.
    pub async fn stop_serving(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.unwrap().unwrap();
        }
    }

    pub async fn stop(mut self) {
        self.stop_serving().await;
    }
}

/// `skycast-publisher player add` on the publisher data directory `publisher`:
/// writes the printed config to `player_dir/puller.toml` (its data in
/// `player_dir/data`) pointing at `server_url`; fails the test unless it worked.
pub fn register_player(
    publisher: &Path,
    player_dir: &Path,
    id: &str,
    shop: &str,
    server_url: &str,
) -> Puller {
    std::fs::create_dir_all(player_dir).unwrap();
    let out = std::process::Command::new(bin("skycast-publisher"))
        .args(["player", "add", "--data"])
        .arg(publisher)
        .args([
            "--id",
            id,
            "--shop",
            shop,
            "--server-url",
            server_url,
            "--player-data",
            "data",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "player add: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let config = player_dir.join("puller.toml");
    std::fs::write(&config, &out.stdout).unwrap();
    Puller {
        config,
        data: player_dir.join("data"),
    }
}

/// One shop's puller: its config file and data directory.
#[derive(Debug, Clone)]
pub struct Puller {
    pub config: PathBuf,
    pub data: PathBuf,
}

/// The JSON `skycast-puller status` printed; fails the test unless it exited 0.
fn status_json(out: Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "status failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

impl Puller {
    pub fn command(&self, sub: &str) -> tokio::process::Command {
        let mut c = tokio::process::Command::new(bin("skycast-puller"));
        c.arg(sub)
            .arg("--config")
            .arg(&self.config)
            .env("RUST_LOG", "warn")
            .kill_on_drop(true);
        c
    }

    pub async fn sync(&self) -> Output {
        self.command("sync").output().await.unwrap()
    }

    /// Runs `sync` and fails the test with its stderr unless it exits 0.
    pub async fn sync_ok(&self) -> String {
        let out = self.sync().await;
        assert!(
            out.status.success(),
            "sync failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    }

    pub async fn status(&self) -> serde_json::Value {
        status_json(self.command("status").output().await.unwrap())
    }

    /// The same without awaiting (`status` takes no lock and is quick), so a
    /// polled check that is a plain closure can call it.
    pub fn status_blocking(&self) -> serde_json::Value {
        status_json(self.command("status").into_std().output().unwrap())
    }

    /// The version `current` names, read straight from the file system.
    pub fn current_version(&self) -> Option<u64> {
        let target = std::fs::read_link(self.data.join("current")).ok()?;
        target.file_name()?.to_str()?.parse().ok()
    }

    /// Checks the puller's invariants on disk: `current` (if any) names a version
    /// whose signature verifies and whose every media file is present and hashes
    /// right; `media/` holds only files matching their names. Returns the version.
    pub fn check_consistent(&self, trusted: &TrustedKeys) -> Result<Option<u64>, String> {
        let media_dir = self.data.join("media");
        if let Ok(entries) = std::fs::read_dir(&media_dir) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().to_string();
                let (id, _) = file_id(&e.path());
                if name != id.file_name() {
                    return Err(format!("media/{name} is not a verified file (hashes to {id})"));
                }
            }
        }
        let Some(version) = self.current_version() else {
            return if self.data.join("current").exists() {
                Err("current is not a version link".into())
            } else {
                Ok(None)
            };
        };
        let dir = self.data.join("current");
        let bytes = std::fs::read(dir.join("manifest.yaml")).map_err(|e| format!("current manifest: {e}"))?;
        let sig =
            std::fs::read(dir.join("manifest.yaml.sig")).map_err(|e| format!("current signature: {e}"))?;
        let m =
            skycast_schema::verify(&bytes, &sig, trusted, &Limits::default()).map_err(|e| e.to_string())?;
        if m.version() != version {
            return Err(format!(
                "current links to {version} but holds manifest {}",
                m.version()
            ));
        }
        for entry in &m.media {
            let path = media_dir.join(entry.id.file_name());
            if !path.exists() {
                return Err(format!("version {version} lacks media {}", entry.id));
            }
        }
        Ok(Some(version))
    }

    /// Media files present in media/.
    pub fn media_files(&self) -> BTreeSet<String> {
        std::fs::read_dir(self.data.join("media"))
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().to_string())
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Rewrites a puller config, e.g. to point it at a proxy or change its keys.
pub fn edit_config(puller: &Puller, f: impl FnOnce(&mut toml::Table)) {
    let text = std::fs::read_to_string(&puller.config).unwrap();
    let mut table: toml::Table = text.parse().unwrap();
    f(&mut table);
    std::fs::write(&puller.config, toml::to_string(&table).unwrap()).unwrap();
}

/// `promtool check metrics` finds nothing to say about `text`.
pub fn promtool_accepts(text: &str) {
    use std::io::Write as _;
    let promtool = std::path::Path::new("/usr/bin/promtool");
    assert!(
        promtool.exists(),
        "promtool is missing: `bash scripts/install-deps.sh` installs Debian's prometheus package"
    );
    let mut check = std::process::Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    check.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = check.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool: {said}\n{text}"
    );
}
