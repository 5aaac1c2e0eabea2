//! Supervision end to end (issue 11): a tiny webhook receiver on 127.0.0.1 that
//! keeps each body with its `X-Skycast-Signature` (checked here, independently
//! of the publisher, with the secret `webhook add` printed), and a fleet of real
//! `skycast-puller run` processes reporting every second to the real
//! `skycast-publisher serve`, read back through `fleet --json`, `alerts --json`
//! and the publisher's database.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use skycast_publisher::db::{Db, LogEvent, PlayRecord, RowFilter};
use skycast_publisher::DataDir;
use skycast_puller::play_log::{read_all, PlayRow};

use crate::play::PlayerRun;
use crate::serve_process::{publisher_cli, ServeProcess};
use crate::{edit_config, register_player, Puller};

/// `report_interval_secs` of the players [`Fleet::add_player`] registers.
pub const REPORT_INTERVAL_SECS: u64 = 1;

/// How often the waits below look again.
const POLL: Duration = Duration::from_millis(100);

/// One POST the receiver got, what it answered, and when it came.
#[derive(Debug, Clone)]
pub struct Received {
    pub body: Vec<u8>,
    pub signature: String,
    pub answered: u16,
    pub at: Instant,
}

/// A webhook receiver answering 500 to its first `fail_first` requests, then 204.
#[derive(Default)]
pub struct Receiver {
    got: Mutex<Vec<Received>>,
    fail_first: Mutex<usize>,
}

async fn receive(State(rx): State<Arc<Receiver>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let status = {
        let mut left = rx.fail_first.lock().unwrap();
        if *left > 0 {
            *left -= 1;
            StatusCode::INTERNAL_SERVER_ERROR
        } else {
            StatusCode::NO_CONTENT
        }
    };
    let signature = headers
        .get("x-skycast-signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    rx.got.lock().unwrap().push(Received {
        body: body.to_vec(),
        signature,
        answered: status.as_u16(),
        at: Instant::now(),
    });
    status
}

/// Starts a [`Receiver`] on 127.0.0.1 taking POSTs at `/hook`; its address.
pub async fn start_receiver(fail_first: usize) -> (Arc<Receiver>, SocketAddr) {
    let rx = Arc::new(Receiver::default());
    *rx.fail_first.lock().unwrap() = fail_first;
    let app = Router::new().route("/hook", post(receive)).with_state(rx.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (rx, addr)
}

impl Receiver {
    pub fn got(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }

    /// Waits (at most `timeout`) until `pred` holds for what was received,
    /// running `meanwhile` between two looks.
    pub async fn wait_while<F: std::future::Future<Output = ()>>(
        &self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&[Received]) -> bool,
        mut meanwhile: impl FnMut() -> F,
    ) -> Vec<Received> {
        let deadline = Instant::now() + timeout;
        loop {
            let got = self.got();
            if pred(&got) {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: received only {:#?}",
                json_of(&got)
            );
            meanwhile().await;
        }
    }

    pub async fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&[Received]) -> bool,
    ) -> Vec<Received> {
        self.wait_while(what, timeout, pred, || tokio::time::sleep(POLL))
            .await
    }
}

/// The bodies as JSON (`null` for one that is not), for failure messages.
pub fn json_of(got: &[Received]) -> Vec<serde_json::Value> {
    got.iter()
        .map(|r| serde_json::from_slice(&r.body).unwrap_or(serde_json::Value::Null))
        .collect()
}

fn body_of(r: &Received) -> serde_json::Value {
    serde_json::from_slice(&r.body).unwrap()
}

/// `alert.opened` or `alert.resolved`.
pub fn event_of(r: &Received) -> String {
    body_of(r)["event"].as_str().unwrap().to_string()
}

/// The alert's kind (`unreachable`...), empty when the body has none.
pub fn kind_of(r: &Received) -> String {
    body_of(r)["alert"]["kind"].as_str().unwrap_or("").to_string()
}

/// The delivery id (`<webhook>-<n>`): the same on every retry of one message.
pub fn delivery_of(r: &Received) -> String {
    body_of(r)["delivery"].as_str().unwrap().to_string()
}

/// The `X-Skycast-Signature` value `body` must carry under `secret`.
pub fn hmac_hex(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Fails the test unless `got` (the messages about one incident) is one
/// `alert.opened` then one `alert.resolved`, each body signed with `secret`.
pub fn assert_opened_then_resolved(got: &[Received], secret: &str) {
    let events: Vec<String> = got.iter().map(event_of).collect();
    assert_eq!(events, ["alert.opened", "alert.resolved"], "{:#?}", json_of(got));
    for r in got {
        assert_eq!(r.signature, hmac_hex(secret, &r.body), "valid HMAC");
    }
}

/// `webhook add --data <data> --url <url>`: (id, secret) as printed.
pub fn add_webhook(data: &Path, url: &str) -> (i64, String) {
    let out = publisher_cli(
        &["webhook", "add", "--data", data.to_str().unwrap(), "--url", url],
        &[],
    );
    let id = out
        .lines()
        .find_map(|l| {
            l.strip_prefix("webhook ")?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no id in {out}"));
    let secret = out
        .lines()
        .find_map(|l| l.strip_prefix("secret (shown once, store it now): "))
        .unwrap_or_else(|| panic!("no secret in {out}"))
        .to_string();
    (id, secret)
}

/// Polls `f` every 100 ms until it gives something; fails the test with `what`
/// (and the last `Err` it gave) after `timeout`.
pub async fn until<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        match f() {
            Ok(v) => return v,
            Err(last) => assert!(
                Instant::now() < deadline,
                "timed out after {timeout:?} waiting for {what}: {last}"
            ),
        }
        tokio::time::sleep(POLL).await;
    }
}

/// A publisher data directory made with the real CLI (`init`: user `admin`,
/// password `admin-password`), the real `serve` on it once [`Fleet::serve`]
/// ran, and the players registered on it.
pub struct Fleet {
    pub dir: tempfile::TempDir,
    pub data: PathBuf,
    serve: Option<ServeProcess>,
    serve_args: Vec<String>,
    /// Where serve listened last: [`Fleet::serve_again`] listens there again.
    addr: Option<SocketAddr>,
    /// `serve --offline-after` (and `fleet --offline-after`).
    pub offline_after: u64,
}

impl Fleet {
    /// `init` and a first `publish` of `planning`; nothing served yet.
    pub fn publish_first(planning: &Path) -> Fleet {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("publisher");
        publisher_cli(
            &["init", "--data", data.to_str().unwrap()],
            &[("SKYCAST_ADMIN_PASSWORD", "admin-password")],
        );
        let fleet = Fleet {
            dir,
            data,
            serve: None,
            serve_args: Vec::new(),
            addr: None,
            offline_after: 30,
        };
        fleet.publish(planning);
        fleet
    }

    /// Starts `serve --offline-after <offline_after> <args>` on a port the kernel picks.
    pub async fn serve(&mut self, offline_after: u64, args: &[&str]) {
        self.offline_after = offline_after;
        self.serve_args = ["--offline-after".to_string(), offline_after.to_string()]
            .into_iter()
            .chain(args.iter().map(|a| a.to_string()))
            .collect();
        let args: Vec<&str> = self.serve_args.iter().map(String::as_str).collect();
        let serve = ServeProcess::start(&self.data, &args).await;
        self.addr = Some(serve.addr());
        self.serve = Some(serve);
    }

    pub fn server(&self) -> &ServeProcess {
        self.serve.as_ref().expect("serve is running")
    }

    /// Stops serve gracefully (SIGTERM) and waits for it; its data stays.
    pub async fn stop_serving(&mut self) {
        let mut serve = self.serve.take().expect("serve is running");
        serve.terminate();
        serve.wait().await;
    }

    /// Starts serve again, with the same flags, on the address it had (the
    /// pullers' configs name it).
    pub async fn serve_again(&mut self) {
        let addr = self.addr.expect("serve ran before");
        let args: Vec<&str> = self.serve_args.iter().map(String::as_str).collect();
        self.serve = Some(ServeProcess::start_on(&self.data, addr, &args).await);
    }

    /// `skycast-publisher <args> --data <data>`'s stdout; fails the test unless it exits 0.
    pub fn cli(&self, args: &[&str]) -> String {
        let mut all = args.to_vec();
        all.extend(["--data", self.data.to_str().unwrap()]);
        publisher_cli(&all, &[])
    }

    pub fn publish(&self, planning: &Path) -> String {
        self.cli(&["publish", "--planning", planning.to_str().unwrap()])
    }

    /// `fleet --json` as JSON.
    pub fn fleet_json(&self) -> serde_json::Value {
        let offline_after = self.offline_after.to_string();
        serde_json::from_str(&self.cli(&["fleet", "--json", "--offline-after", &offline_after])).unwrap()
    }

    /// `alerts --json` (`--all`: resolved ones too).
    pub fn alerts_json(&self, all: bool) -> Vec<serde_json::Value> {
        let mut args = vec!["alerts", "--json"];
        if all {
            args.push("--all");
        }
        serde_json::from_str(&self.cli(&args)).unwrap()
    }

    /// The publisher's database, opened beside the running serve.
    pub fn db(&self) -> Db {
        DataDir::open(&self.data).unwrap().db().unwrap()
    }

    /// Every play the server keeps of `player`.
    pub fn plays_of(&self, player: &str) -> Vec<PlayRecord> {
        let filter = RowFilter {
            player: Some(player.into()),
            ..RowFilter::default()
        };
        self.db().plays(&filter, u32::MAX).unwrap()
    }

    /// The events of `player` in the server's player log, of `kind` when given.
    pub fn events_of(&self, player: &str, kind: Option<&str>) -> Vec<LogEvent> {
        let filter = RowFilter {
            player: Some(player.into()),
            kind: kind.map(str::to_string),
            ..RowFilter::default()
        };
        self.db().log_events(&filter, u32::MAX).unwrap()
    }

    /// Registers `id` for `shop` with `player add`, pointing at the running serve,
    /// reporting every [`REPORT_INTERVAL_SECS`].
    pub fn add_player(&self, id: &str, shop: &str) -> Puller {
        let dir = self.dir.path().join("players").join(id);
        let puller = register_player(&self.data, &dir, id, shop, &self.server().url());
        edit_config(&puller, |t| {
            t.insert(
                "report_interval_secs".into(),
                toml::Value::Integer(REPORT_INTERVAL_SECS as i64),
            );
        });
        puller
    }
}

/// Player `id`'s row in the JSON of `fleet --json` or `GET /api/fleet`.
pub fn row<'f>(fleet: &'f serde_json::Value, id: &str) -> &'f serde_json::Value {
    fleet["players"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == id)
        .unwrap_or_else(|| panic!("no player {id} in {fleet}"))
}

/// One shop's player as a real `skycast-puller run`, started again as often as
/// a test wants (each run logs beside the player's data).
pub struct ShopPlayer {
    pub id: String,
    pub puller: Puller,
    /// `--output` (`null`, `wav:...`).
    pub output: String,
    pub rate: f64,
    run: Option<PlayerRun>,
    runs: u32,
}

impl ShopPlayer {
    /// Registers `id` for `shop` on `fleet` and starts it.
    pub fn start(fleet: &Fleet, id: &str, shop: &str, output: &str, rate: f64) -> ShopPlayer {
        let mut player = ShopPlayer {
            id: id.to_string(),
            puller: fleet.add_player(id, shop),
            output: output.to_string(),
            rate,
            run: None,
            runs: 0,
        };
        player.run();
        player
    }

    /// Starts a new run (the last one must be over).
    pub fn run(&mut self) {
        assert!(self.run.is_none(), "{} is running", self.id);
        self.runs += 1;
        let logs = self
            .puller
            .config
            .with_file_name(format!("run-{}.wav", self.runs));
        self.run = Some(PlayerRun::start_output(
            &self.puller,
            &self.output,
            &logs,
            None,
            self.rate,
        ));
    }

    /// SIGKILL: no chance to clean up.
    pub async fn kill9(&mut self) {
        self.run.take().expect("running").kill9().await;
    }

    /// SIGTERM, as a service manager stops it; fails the test unless it exits 0.
    pub async fn stop(&mut self) {
        self.run.take().expect("running").stop().await;
    }

    /// Every row of the player's own play log (all runs).
    pub fn plays(&self) -> Vec<PlayRow> {
        let db = self.puller.data.join("state.sqlite");
        if !db.exists() {
            return Vec::new();
        }
        read_all(&db).unwrap_or_default()
    }

    /// `skycast-puller status` as JSON, so a wait's check can call it.
    pub fn status(&self) -> serde_json::Value {
        self.puller.status_blocking()
    }

    /// What the current run printed and logged.
    pub fn transcript(&self) -> String {
        self.run
            .as_ref()
            .map_or_else(|| "(not running)".into(), PlayerRun::transcript)
    }
}
