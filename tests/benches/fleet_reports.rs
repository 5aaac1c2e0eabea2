//! Supervision at fleet scale (issue 11): 10,000 registered players report to
//! the real `skycast-publisher serve` binary (release build, its own process so
//! its CPU is its own) over HTTPS on loopback, each report carrying a few plays.
//! Prints the ingest rate, the server's CPU per report, the latency, the bytes
//! of a typical report, and the dashboard's times at 10,000 players (`/fleet`
//! page 1 and `/fleet?ko=1`, each at most 100 rows with the whole fleet's
//! counts; `/api/fleet/page`, what its script polls; and the whole
//! `/api/fleet`); the peer, measured in the same run over the same connections
//! and tokens, is `GET /v1/head` (token check and a small JSON answer, no write).
//! Fails when a target of the issue is missed: ≥ 2,000 reports/s, and a 95th
//! percentile under 100 ms for the dashboard pages and the paged JSON.
//!
//! Needs `target/release/skycast-publisher`: `scripts/test.sh` builds it first
//! (`cargo build --release -p skycast-publisher`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{stream, StreamExt};
use skycast_schema::report::{report_path, Entry, EntryBody, NowPlaying, OutputState, PlayEntry, Report};
use skycast_tests::example;
use skycast_tests::fleet_sim::{cpu_secs, register};
use skycast_tests::serve_process::{init_with_marketing, publisher_cli, ServeProcess};
use skycast_tests::web::WebClient;

const PLAYERS: usize = 10_000;
/// Players registered besides, that never report: KO, so that the dashboard's
/// first page and `/fleet?ko=1` have problems to show first.
const SILENT_PLAYERS: usize = 100;
/// Reports each player sends in the ingest phase.
const ROUNDS: usize = 2;
const PLAYS_PER_REPORT: usize = 3;
/// Requests in flight at once (a fleet's reports arrive spread out; this many
/// concurrent connections keep the server busy without measuring the handshake).
const IN_FLIGHT: usize = 32;
const PAGE_ROUNDS: usize = 30;
const TARGET_REPORTS_PER_SEC: f64 = 2_000.0;
const TARGET_PAGE_P95_MS: f64 = 100.0;
/// Whether the whole `/api/fleet` (every player) is held to the same target.
const TARGET_WHOLE_FLEET_JSON: bool = true;
/// Report `round` of player `i`: now playing, and `PLAYS_PER_REPORT` plays.
fn report(i: usize, round: usize) -> Report {
    let at = "2026-12-05T10:00:00Z".to_string();
    let entries = (0..PLAYS_PER_REPORT)
        .map(|k| {
            let seq = (round * PLAYS_PER_REPORT + k + 1) as u64;
            Entry {
                seq,
                at: at.clone(),
                body: EntryBody::Play(PlayEntry {
                    play_id: format!("run1-{seq}"),
                    media: "0".repeat(64),
                    title: format!("Track {seq}"),
                    kind: "music".into(),
                    source: "day".into(),
                    version: 1,
                    started_at: at.clone(),
                    ended_at: Some(at.clone()),
                    outcome: "complete".into(),
                }),
            }
        })
        .collect();
    Report {
        outbox: format!("outbox-{i}"),
        active_version: Some(1),
        fetching: None,
        now_playing: Some(NowPlaying {
            media: "0".repeat(64),
            title: "Track".into(),
            kind: "music".into(),
            started_at: at,
        }),
        output: OutputState::Playing,
        last_error: None,
        clock_offset_ms: Some(12),
        free_disk_bytes: Some(8_000_000_000),
        audio_clock: None,
        agent_version: "0.1.0".into(),
        uptime_secs: 3_600,
        entries,
    }
}

struct Phase {
    per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
    cpu_ms_per_request: f64,
}

fn percentile(sorted: &[Duration], p: usize) -> f64 {
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)].as_secs_f64() * 1000.0
}

/// Sends `requests` (player index, request builder) `IN_FLIGHT` at a time.
async fn drive(serve: &ServeProcess, requests: Vec<reqwest::RequestBuilder>) -> Phase {
    let n = requests.len();
    let cpu0 = cpu_secs(serve.pid());
    let t0 = Instant::now();
    let mut times: Vec<Duration> = stream::iter(requests)
        .map(|req| async move {
            let t = Instant::now();
            let resp = req.send().await.expect("request");
            let status = resp.status();
            let body = resp.bytes().await.expect("body");
            assert!(
                status.is_success(),
                "HTTP {status}: {}",
                String::from_utf8_lossy(&body)
            );
            t.elapsed()
        })
        .buffer_unordered(IN_FLIGHT)
        .collect()
        .await;
    let wall = t0.elapsed().as_secs_f64();
    let cpu = cpu_secs(serve.pid()) - cpu0;
    times.sort();
    Phase {
        per_sec: n as f64 / wall,
        p50_ms: percentile(&times, 50),
        p99_ms: percentile(&times, 99),
        cpu_ms_per_request: cpu * 1000.0 / n as f64,
    }
}

/// The p50 and p95 of `path`, its bytes, and its rows (dashboard rows, or
/// players of the JSON).
async fn page_p95(web: &mut WebClient, path: &str) -> (f64, f64, usize, usize) {
    let mut times = Vec::with_capacity(PAGE_ROUNDS);
    let mut body = String::new();
    for _ in 0..PAGE_ROUNDS + 3 {
        let t = Instant::now();
        let page = web.get(path).await;
        times.push(t.elapsed());
        assert!(page.status.is_success(), "{path}: HTTP {}", page.status);
        body = page.body;
    }
    // The first three warm the caches.
    let mut times = times.split_off(3);
    times.sort();
    let rows = if path.starts_with("/api/") {
        let json: serde_json::Value = serde_json::from_str(&body).expect("JSON");
        json["players"].as_array().map_or(0, Vec::len)
    } else {
        body.matches("data-test=\"fleet-row\"").count()
    };
    (percentile(&times, 50), percentile(&times, 95), body.len(), rows)
}

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let data = init_with_marketing(dir.path());
    let data_arg = data.to_str().unwrap();
    publisher_cli(
        &[
            "publish",
            "--data",
            data_arg,
            "--planning",
            example("planning.yaml").to_str().unwrap(),
        ],
        &[],
    );
    let t = Instant::now();
    let players = Arc::new(register(&data, "bench", PLAYERS));
    register(&data, "silent", SILENT_PLAYERS);
    println!(
        "registered {PLAYERS} players (and {SILENT_PLAYERS} that never report) in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let serve = ServeProcess::start(&data, &["--offline-after", "600"]).await;
    // HTTP/1.1: one connection per request in flight, as that many players
    // would have (over HTTP/2 one client would multiplex them all on one).
    let client = serve
        .client_builder()
        .http1_only()
        .pool_max_idle_per_host(IN_FLIGHT)
        .build()
        .unwrap();
    let url = serve.url();

    let typical = serde_json::to_vec(&report(0, 0)).unwrap();
    println!(
        "a typical report ({PLAYS_PER_REPORT} plays, now playing, status): {} bytes of JSON",
        typical.len()
    );

    // Peer: every player polls head once, over the same pool.
    let heads = players
        .iter()
        .map(|p| client.get(format!("{url}/v1/head")).bearer_auth(&p.token))
        .collect();
    let head = drive(&serve, heads).await;

    let reports = (0..ROUNDS)
        .flat_map(|round| players.iter().enumerate().map(move |(i, p)| (round, i, p)))
        .map(|(round, i, p)| {
            client
                .post(format!("{url}{}", report_path(&p.id)))
                .bearer_auth(&p.token)
                .json(&report(i, round))
        })
        .collect();
    let ingest = drive(&serve, reports).await;

    println!(
        "{:<34} {:>10} {:>9} {:>9} {:>14}",
        "phase", "req/s", "p50 ms", "p99 ms", "server CPU ms"
    );
    for (name, p) in [
        ("GET /v1/head (peer)", &head),
        ("POST report (3 plays each)", &ingest),
    ] {
        println!(
            "{:<34} {:>10.0} {:>9.1} {:>9.1} {:>14.3}",
            name, p.per_sec, p.p50_ms, p.p99_ms, p.cpu_ms_per_request
        );
    }
    println!(
        "report ingest: {:.0} reports/s = {:.2} × the head rate; {:.0} plays/s",
        ingest.per_sec,
        ingest.per_sec / head.per_sec,
        ingest.per_sec * PLAYS_PER_REPORT as f64
    );

    // What the fleet costs when nothing arrives: the alert sweep (every second,
    // over every player), the command poll and the head follower.
    const IDLE: Duration = Duration::from_secs(5);
    let cpu0 = cpu_secs(serve.pid());
    tokio::time::sleep(IDLE).await;
    let idle = (cpu_secs(serve.pid()) - cpu0) / IDLE.as_secs_f64();
    println!(
        "serve idle with {} registered players: {:.1} % of one core",
        PLAYERS + SILENT_PLAYERS,
        idle * 100.0
    );

    // HTTP/1.1, like the reports above: the pages' times are the server's.
    let mut web = WebClient::http1(&url, &serve.ca_path());
    let landed = web.login("admin", "admin-password").await;
    assert!(landed.status.is_success(), "admin sign-in: {}", landed.status);
    let mut over = Vec::new();
    if ingest.per_sec < TARGET_REPORTS_PER_SEC {
        over.push(format!(
            "ingest {:.0} reports/s under the {TARGET_REPORTS_PER_SEC} target",
            ingest.per_sec
        ));
    }
    println!(
        "{:<22} {:>9} {:>9} {:>12} {:>7}  target",
        "page", "p50 ms", "p95 ms", "bytes", "rows"
    );
    // The dashboard pages and the JSON its script polls have the target; the
    // whole fleet's JSON (`fleet --json`'s, for scripts) is printed as information.
    for (path, targeted) in [
        ("/fleet", true),
        ("/fleet?ko=1", true),
        ("/api/fleet/page", true),
        ("/api/fleet", TARGET_WHOLE_FLEET_JSON),
    ] {
        let (p50, p95, size, rows) = page_p95(&mut web, path).await;
        let target = if targeted {
            format!("p95 < {TARGET_PAGE_P95_MS} ms")
        } else {
            "information".to_string()
        };
        println!("{path:<22} {p50:>9.1} {p95:>9.1} {size:>12} {rows:>7}  {target}");
        if targeted && p95 > TARGET_PAGE_P95_MS {
            over.push(format!("{path}: p95 {p95:.1} ms over {TARGET_PAGE_P95_MS} ms"));
        }
    }
    let (peak_kib, _) = serve.memory_kib();
    println!("serve peak memory: {} MiB", peak_kib / 1024);
    if over.is_empty() {
        println!("every target met at {PLAYERS} players");
    } else {
        eprintln!("targets missed: {over:?}");
        // `exit` runs no destructors: the server (killed on drop) and the
        // directory go first.
        drop(serve);
        drop(dir);
        std::process::exit(1);
    }
}
