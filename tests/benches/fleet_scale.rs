//! Fleet scale (issue 12): how long one publish takes to reach every shop, and
//! what `GET /v1/head` costs next to nginx. The real `skycast-publisher serve`
//! binary (release build, its own process so its CPU and memory are its own)
//! serves HTTPS on loopback; 100, then 1,000, then 10,000 simulated shops in
//! this process each run the real puller code with their own configuration,
//! token, data directory and `Client` (so their own TLS connection): a first
//! `sync_with` (signature and version checks included; media hard-linked from
//! one shared cache, so 10,000 shops fit on the disk), then a long-poll on
//! `head`. Once the server has read every waiting request, a new version is
//! published with the CLI (a schedule change, no new media) and each shop's
//! time from the publish returning to its `sync_with` having swapped is
//! recorded. Printed per fleet: p50/p99/max, the server's CPU for the fan-out,
//! its resident memory per waiting shop; besides, the bytes of a no-op poll,
//! and the request rate of `serve` for `head` next to Debian's nginx serving
//! the same JSON over TLS with the same certificate, with the same load
//! generator. Judged against the issue's targets, p99 < 1 s at 1,000 shops and
//! < 3 s at 10,000, and ≥ 50 % of nginx's rate: publish → swapped is printed
//! with PASS or MISS and by how much (the simulated shops share the server's 2
//! cores, and their own verification and swap alone can exceed the target);
//! the run fails when the server's part misses them (publish → every shop's
//! long-poll answered) or the nginx share is missed.
//!
//! Needs `target/release/skycast-publisher` (`cargo build --release -p
//! skycast-publisher`, as `scripts/test.sh` does first) and nginx
//! (`scripts/install-deps.sh`).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use futures_util::{stream, StreamExt};
use skycast_puller::{sync_with, Client, Config, SyncOutcome};
use skycast_schema::protocol::HEAD_PATH;
use skycast_tests::example;
use skycast_tests::fleet_sim::{
    cpu_secs, link_media, load, load_average, machine_busy_secs, register, second_request_bytes,
    server_sockets, shop_config, CountingRelay, Enrolled, HttpVersion, LoadPlan, LoadRate, Nginx,
};
use skycast_tests::serve_process::{init_with_marketing, publisher_cli, ServeProcess};
use tokio::sync::Semaphore;

/// Fleet sizes, measured one after the other on the same server.
const FLEETS: [usize; 3] = [100, 1_000, 10_000];
/// Other sizes for a quicker look, e.g. `SKYCAST_FLEETS=1000`; the targets of
/// the sizes left out are not judged.
const FLEETS_ENV: &str = "SKYCAST_FLEETS";
/// The issue's targets: the 99th percentile of publish → swapped, in seconds, per fleet size.
const TARGET_P99_SECS: [(usize, f64); 2] = [(1_000, 1.0), (10_000, 3.0)];
/// `serve`'s `head` rate at least this share of nginx's.
const TARGET_NGINX_SHARE: f64 = 0.5;
/// Shops opening their connection and making their first sync at once while a
/// fleet ramps up (10,000 TLS handshakes at once would measure the accept queue).
const RAMP_IN_FLIGHT: usize = 64;
/// `sync_with` calls in flight at once in this process: each holds its lock
/// file and its SQLite state open, and 10,000 at once would exceed the open-file
/// limit. Real shops are separate machines; this many keep the server busy
/// (2 cores) while the shops' own work runs in about the order they were woken.
const SYNCS_IN_FLIGHT: usize = 64;
/// The wait a shop asks for (the server caps it at 60 s); a shop whose wait
/// ends unchanged asks again, as the daemon does.
const LONG_POLL: Duration = Duration::from_secs(50);
const RAMP_TIMEOUT: Duration = Duration::from_secs(180);
const WAITING_TIMEOUT: Duration = Duration::from_secs(60);
const FAN_OUT_TIMEOUT: Duration = Duration::from_secs(60);
/// The whole run, set up included, never takes longer than this (it takes
/// about 1.5 min on an idle 2-core machine).
const WHOLE_RUN: Duration = Duration::from_secs(6 * 60);
/// The peer run: this many keep-alive connections, each sending this many requests in turn.
const PEER_CONNECTIONS: usize = 64;
const PEER_REQUESTS_PER_CONNECTION: usize = 2_000;
/// nginx runs one worker per core (`auto`, 2 here): serve's runtime also uses every core.
const NGINX_WORKERS: &str = "auto";
/// The schedule line of content-example/planning.yaml each new version changes.
const SCHEDULE_LINE: &str = r#"time: "09:00-20:00", priority: 0}"#;

/// Copies content-example (planning and media) into `dir`, where the new
/// versions' plannings are written beside it.
fn copy_content(dir: &Path) -> PathBuf {
    for sub in ["music", "ads", "announcements"] {
        let to = dir.join(sub);
        std::fs::create_dir_all(&to).unwrap();
        for entry in std::fs::read_dir(example(sub)).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
    let planning = dir.join("planning.yaml");
    std::fs::copy(example("planning.yaml"), &planning).unwrap();
    planning
}

/// The example planning with its weekday schedule ending at 19:`10 + n`: a new
/// version that changes the schedule and adds no media.
fn planning_variant(first: &Path, n: usize) -> PathBuf {
    let text = std::fs::read_to_string(first).unwrap();
    assert!(
        text.contains(SCHEDULE_LINE),
        "planning.yaml lacks {SCHEDULE_LINE}"
    );
    let changed = text.replacen(
        SCHEDULE_LINE,
        &format!(r#"time: "09:00-19:{:02}", priority: 0}}"#, 10 + n % 50),
        1,
    );
    let path = first.with_file_name(format!("planning-{n}.yaml"));
    std::fs::write(&path, changed).unwrap();
    path
}

fn publish(data: &Path, planning: &Path) {
    publisher_cli(
        &[
            "publish",
            "--data",
            data.to_str().unwrap(),
            "--planning",
            planning.to_str().unwrap(),
        ],
        &[("RUST_LOG", "warn")],
    );
}

/// Where the shops' data directories go: memory-backed when the machine has
/// /dev/shm, so that 10,000 SQLite files and fsyncs measure the server, not this disk.
fn shops_root() -> (tempfile::TempDir, &'static str) {
    match tempfile::Builder::new()
        .prefix("skycast-fleet-")
        .tempdir_in("/dev/shm")
    {
        Ok(dir) => (dir, "/dev/shm (tmpfs)"),
        Err(_) => (tempfile::tempdir().unwrap(), "the temp dir"),
    }
}

fn shop_dir(root: &Path, i: usize) -> PathBuf {
    root.join(format!("shop-{i:05}"))
}

/// When one shop heard of the new version and when its sync had swapped.
struct Arrival {
    woken: Instant,
    swapped: Instant,
}

/// A shop's task once its first sync is done: waiting, then syncing (it is
/// awaited only after the publish).
struct Waiting(tokio::task::JoinHandle<Result<Arrival, String>>);

/// One waiting shop: long-polls `head` after `version` (again when a wait ends
/// unchanged) until a newer one is announced, then runs the real sync, which
/// fetches the manifest and signature, verifies them and swaps.
async fn wait_then_sync(
    config: Config,
    client: Client,
    version: u64,
    entered: Arc<AtomicUsize>,
    syncs: Arc<Semaphore>,
) -> Result<Arrival, String> {
    let deadline = Instant::now() + RAMP_TIMEOUT + WAITING_TIMEOUT + FAN_OUT_TIMEOUT;
    entered.fetch_add(1, Ordering::SeqCst);
    loop {
        let head = client
            .head(Some(version), Some(LONG_POLL))
            .await
            .map_err(|e| format!("{}: long-poll: {e}", config.player_id))?;
        if head.value.version > version {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!("{}: no new version announced", config.player_id));
        }
    }
    let woken = Instant::now();
    let _permit = syncs.acquire().await.map_err(|e| e.to_string())?;
    let report = sync_with(&config, &client, &Utc::now)
        .await
        .map_err(|e| format!("{}: sync: {e}", config.player_id))?;
    if !matches!(report.outcome, SyncOutcome::Swapped { .. }) || report.version <= version {
        return Err(format!("{}: sync did not swap: {report}", config.player_id));
    }
    Ok(Arrival {
        woken,
        swapped: Instant::now(),
    })
}

/// A fleet's figures.
struct FleetRow {
    shops: usize,
    ramp_secs: f64,
    p50: f64,
    p99: f64,
    max: f64,
    woken_p99: f64,
    server_cpu: f64,
    bench_cpu: f64,
    /// CPU every other process of the machine took meanwhile (the publish CLI included).
    others_cpu: f64,
    load_average: f64,
    rss_kib_per_shop: f64,
    server_fds: usize,
}

fn percentile(sorted: &[f64], p: usize) -> f64 {
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
}

/// Seeds the shared media cache: shop 0 downloads (and hashes) every media file
/// of the first version the normal way; the cache holds hard links to them.
async fn seed_cache(enrolled: &Enrolled, url: &str, root: &Path) -> PathBuf {
    let config = shop_config(enrolled, url, shop_dir(root, 0));
    let client = Client::new(&config).unwrap();
    let report = sync_with(&config, &client, &Utc::now).await.unwrap();
    let cache = root.join("media-cache");
    std::fs::create_dir_all(&cache).unwrap();
    for entry in std::fs::read_dir(config.data.join("media")).unwrap() {
        let entry = entry.unwrap();
        std::fs::hard_link(entry.path(), cache.join(entry.file_name())).unwrap();
    }
    println!(
        "media cache: {} files, {} bytes, downloaded once by shop 0 and hard-linked into every shop",
        report.downloaded_media, report.downloaded_bytes
    );
    cache
}

/// What every fleet runs against.
struct Bench<'a> {
    serve: &'a ServeProcess,
    /// The publisher's data directory.
    data: &'a Path,
    enrolled: Arc<Vec<Enrolled>>,
    /// Where the shops' data directories are.
    root: &'a Path,
    /// The shared media cache the shops' media are hard-linked from.
    cache: &'a Path,
}

/// One fleet: `shops` shops brought to `version` and waiting, then the publish
/// of `planning`, then every shop's arrival.
async fn fan_out(bench: &Bench<'_>, shops: usize, version: u64, planning: &Path) -> FleetRow {
    let Bench {
        serve,
        data,
        enrolled,
        root,
        cache,
    } = bench;
    let url = serve.url();
    let port = serve.addr().port();
    // The baseline: no shop connected (the previous fleet's connections are gone).
    let deadline = Instant::now() + WAITING_TIMEOUT;
    while server_sockets(port).established > 0 {
        assert!(
            Instant::now() < deadline,
            "the previous fleet's connections stay open"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let rss_before = serve.rss_kib();
    let entered = Arc::new(AtomicUsize::new(0));
    let syncs = Arc::new(Semaphore::new(SYNCS_IN_FLIGHT));

    let t_ramp = Instant::now();
    let ramp = stream::iter(0..shops)
        .map(|i| {
            let config = shop_config(&enrolled[i], &url, shop_dir(root, i));
            let (entered, syncs) = (entered.clone(), syncs.clone());
            async move {
                link_media(cache, &config.data);
                let client = Client::new(&config).unwrap();
                let first = {
                    let _permit = syncs.acquire().await.unwrap();
                    sync_with(&config, &client, &Utc::now).await
                };
                let report = first.unwrap_or_else(|e| panic!("{}: first sync: {e}", config.player_id));
                assert_eq!(report.version, version, "{}: {report}", config.player_id);
                Waiting(tokio::spawn(wait_then_sync(
                    config, client, version, entered, syncs,
                )))
            }
        })
        .buffer_unordered(RAMP_IN_FLIGHT)
        .collect::<Vec<_>>();
    let waiters = tokio::time::timeout(RAMP_TIMEOUT, ramp)
        .await
        .unwrap_or_else(|_| panic!("{shops} shops did not finish their first sync within {RAMP_TIMEOUT:?}"));

    // Waiting, as the server sees it: every shop has sent its long-poll and the
    // server has read every request byte, twice in a row.
    let deadline = Instant::now() + WAITING_TIMEOUT;
    let mut steady = 0;
    while steady < 2 {
        let sockets = server_sockets(port);
        let ready =
            entered.load(Ordering::SeqCst) == shops && sockets.established >= shops && sockets.unread == 0;
        steady = if ready { steady + 1 } else { 0 };
        assert!(
            Instant::now() < deadline,
            "{shops} shops not all waiting: {} entered, {sockets:?}",
            entered.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ramp_secs = t_ramp.elapsed().as_secs_f64();
    let rss_waiting = serve.rss_kib();
    let server_fds = serve.open_files();

    let cpu0 = cpu_secs(serve.pid());
    let own0 = cpu_secs(std::process::id());
    let machine0 = machine_busy_secs();
    publish(data, planning);
    let published = Instant::now();
    let all = futures_util::future::join_all(waiters.into_iter().map(|w| w.0));
    let results = tokio::time::timeout(FAN_OUT_TIMEOUT, all)
        .await
        .unwrap_or_else(|_| panic!("{shops} shops did not all swap within {FAN_OUT_TIMEOUT:?}"));
    let server_cpu = cpu_secs(serve.pid()) - cpu0;
    let bench_cpu = cpu_secs(std::process::id()) - own0;
    // The publish CLI's own CPU counts here too (a second or less).
    let others_cpu = (machine_busy_secs() - machine0 - server_cpu - bench_cpu).max(0.0);

    let mut swapped = Vec::with_capacity(shops);
    let mut woken = Vec::with_capacity(shops);
    for result in results {
        let arrival = result.expect("shop task").unwrap_or_else(|e| panic!("{e}"));
        // A shop woken while the CLI was still exiting counts as 0.
        swapped.push(arrival.swapped.saturating_duration_since(published).as_secs_f64());
        woken.push(arrival.woken.saturating_duration_since(published).as_secs_f64());
    }
    swapped.sort_by(f64::total_cmp);
    woken.sort_by(f64::total_cmp);
    FleetRow {
        shops,
        ramp_secs,
        p50: percentile(&swapped, 50),
        p99: percentile(&swapped, 99),
        max: swapped[swapped.len() - 1],
        woken_p99: percentile(&woken, 99),
        server_cpu,
        bench_cpu,
        others_cpu,
        load_average: load_average(),
        rss_kib_per_shop: rss_waiting.saturating_sub(rss_before) as f64 / shops as f64,
        server_fds,
    }
}

/// The bytes a shop and the server put on the wire for a no-op poll: a plain
/// `head` on a warm connection of the puller's `Client`, a long-poll whose
/// one-second wait ends unchanged, and a plain `head` on a warm HTTP/1.1 and
/// HTTP/2 connection of the load generator (which tells what the puller spoke).
async fn no_op_poll_bytes(
    serve: &ServeProcess,
    enrolled: &Enrolled,
    scratch: &Path,
    version: u64,
) -> [(u64, u64); 4] {
    let relay = CountingRelay::start(serve.addr()).await;
    let config = shop_config(enrolled, &relay.url(), scratch.to_path_buf());
    let client = Client::new(&config).unwrap();
    // The first answer carries the TLS handshake and session tickets.
    client.head(None, None).await.unwrap();
    let b0 = relay.bytes();
    client.head(None, None).await.unwrap();
    let b1 = relay.bytes();
    let head = client
        .head(Some(version), Some(Duration::from_secs(1)))
        .await
        .unwrap();
    assert_eq!(head.value.version, version, "the long-poll ended unchanged");
    let b2 = relay.bytes();
    let ca = serve.ca_path();
    let http1 = second_request_bytes(&relay, &ca, HttpVersion::Http1, HEAD_PATH, &enrolled.token).await;
    let http2 = second_request_bytes(&relay, &ca, HttpVersion::Http2, HEAD_PATH, &enrolled.token).await;
    [
        (b1.0 - b0.0, b1.1 - b0.1),
        (b2.0 - b1.0, b2.1 - b1.1),
        http1,
        http2,
    ]
}

/// `serve`'s and nginx's `head` rates over HTTP/1.1 and HTTP/2.
async fn peer(serve: &ServeProcess, token: &str) -> Vec<(HttpVersion, LoadRate, LoadRate)> {
    let client = serve.client_builder().build().unwrap();
    let resp = client
        .get(format!("{}/v1/head", serve.url()))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "head: {}", resp.status());
    let body = resp.bytes().await.unwrap();
    let ca = serve.ca_path();
    let tls = ca.parent().unwrap();
    let nginx = Nginx::start(
        &tls.join("server.pem"),
        &tls.join("server.key"),
        "/v1/head",
        &body,
        NGINX_WORKERS,
    )
    .await;
    leave_pid(nginx.pid());
    println!(
        "peer: nginx {} ({} workers) on {}, the same {}-byte JSON and certificate; \
         {PEER_CONNECTIONS} keep-alive connections × {PEER_REQUESTS_PER_CONNECTION} requests each, same load generator",
        Nginx::binary().unwrap().display(),
        NGINX_WORKERS,
        nginx.addr(),
        body.len()
    );
    let pid = serve.pid();
    let mut rows = Vec::new();
    for http in [HttpVersion::Http1, HttpVersion::Http2] {
        let plan = LoadPlan {
            http,
            path: "/v1/head".into(),
            token: token.to_string(),
            connections: PEER_CONNECTIONS,
            per_connection: PEER_REQUESTS_PER_CONNECTION,
        };
        let ours = load(serve.addr(), &ca, &plan, &|| cpu_secs(pid)).await;
        let theirs = load(nginx.addr(), &ca, &plan, &|| nginx.cpu_secs()).await;
        rows.push((http, ours, theirs));
    }
    let pid = nginx.pid();
    drop(nginx);
    forget_pid(pid);
    rows
}

/// What the watchdog cleans up if it ends the run: the child processes (serve,
/// nginx) and the shops' directories, which may be on /dev/shm.
static LEFTOVERS: Mutex<(Vec<u32>, Vec<PathBuf>)> = Mutex::new((Vec::new(), Vec::new()));

fn leave_pid(pid: u32) {
    LEFTOVERS.lock().unwrap().0.push(pid);
}

/// The process `pid` is gone: the watchdog must not signal whoever reuses its pid.
fn forget_pid(pid: u32) {
    LEFTOVERS.lock().unwrap().0.retain(|p| *p != pid);
}

/// Bounded in time whatever happens: a hung fleet fails the run instead of
/// blocking it, and leaves no process or directory behind.
fn start_watchdog() {
    std::thread::spawn(|| {
        std::thread::sleep(WHOLE_RUN);
        eprintln!("fleet_scale: still running after {WHOLE_RUN:?}: giving up");
        let leftovers = LEFTOVERS.lock().unwrap_or_else(|e| e.into_inner());
        for pid in &leftovers.0 {
            if let Ok(pid) = i32::try_from(*pid) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        for dir in &leftovers.1 {
            let _ = std::fs::remove_dir_all(dir);
        }
        std::process::exit(2);
    });
}

#[tokio::main]
async fn main() {
    start_watchdog();
    let fleets: Vec<usize> = match std::env::var(FLEETS_ENV) {
        Ok(list) => list
            .split(',')
            .map(|n| {
                n.trim()
                    .parse()
                    .unwrap_or_else(|e| panic!("{FLEETS_ENV}={list}: {e}"))
            })
            .collect(),
        Err(_) => FLEETS.to_vec(),
    };
    let max_shops = fleets.iter().copied().max().expect("at least one fleet size");
    let open_files = skycast_publisher::net::raise_fd_limit().expect("raise the open-file limit");
    let needed = max_shops as u64 + 4 * SYNCS_IN_FLIGHT as u64 + 1_000;
    assert!(
        open_files >= needed,
        "open-file limit {open_files} is under the {needed} this benchmark needs: raise it (ulimit -n)"
    );
    let dir = tempfile::tempdir().unwrap();
    LEFTOVERS.lock().unwrap().1.push(dir.path().to_path_buf());
    let data = init_with_marketing(dir.path());
    let content = dir.path().join("content");
    let first_planning = copy_content(&content);
    publish(&data, &first_planning);
    let t = Instant::now();
    let enrolled = Arc::new(register(&data, "shop", max_shops));
    println!(
        "registered {max_shops} players in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    // Caps above the fleet: the default ceiling (4096) would shed shops, and they all come from 127.0.0.1.
    let cap = (max_shops + 2_000).to_string();
    let serve = ServeProcess::start(
        &data,
        &[
            "--max-connections",
            &cap,
            "--max-connections-per-ip",
            &cap,
            "--offline-after",
            "600",
        ],
    )
    .await;
    leave_pid(serve.pid());
    let (root, root_kind) = shops_root();
    LEFTOVERS.lock().unwrap().1.push(root.path().to_path_buf());
    println!(
        "serve pid {} on {}; shops' data directories on {root_kind}",
        serve.pid(),
        serve.addr()
    );

    let mut version = 1;
    let polls = no_op_poll_bytes(&serve, &enrolled[0], &root.path().join("relay-shop"), version).await;
    println!(
        "no-op poll on a warm connection, through a counting TCP relay (TLS records, no TCP/IP headers):"
    );
    let what = [
        "puller Client: GET /v1/head",
        "puller Client: long-poll ending unchanged",
        "load generator: HTTP/1.1 GET /v1/head",
        "load generator: HTTP/2 GET /v1/head",
    ];
    for ((up, down), what) in polls.iter().zip(what) {
        println!("  {what:<42} {:>5} bytes ({up} up, {down} down)", up + down);
    }

    let peers = peer(&serve, &enrolled[0].token).await;

    let cache = seed_cache(&enrolled[0], &serve.url(), root.path()).await;
    let bench = Bench {
        serve: &serve,
        data: &data,
        enrolled: enrolled.clone(),
        root: root.path(),
        cache: &cache,
    };
    let mut rows = Vec::new();
    for (n, shops) in fleets.into_iter().enumerate() {
        let planning = planning_variant(&first_planning, n);
        let row = fan_out(&bench, shops, version, &planning).await;
        version += 1;
        println!(
            "{shops} shops: ramp-up (connect, first sync, long-poll) {:.1} s; {} open files in serve while waiting",
            row.ramp_secs, row.server_fds
        );
        rows.push(row);
    }

    println!();
    println!(
        "{:>7} {:>9} {:>9} {:>9} {:>12} {:>13} {:>12} {:>15} {:>13}",
        "shops",
        "p50 s",
        "p99 s",
        "max s",
        "woken p99 s",
        "server CPU-s",
        "CPU ms/shop",
        "RSS KiB/waiting",
        "bench CPU-s"
    );
    for r in &rows {
        println!(
            "{:>7} {:>9.3} {:>9.3} {:>9.3} {:>12.3} {:>13.2} {:>12.3} {:>15.1} {:>13.2}",
            r.shops,
            r.p50,
            r.p99,
            r.max,
            r.woken_p99,
            r.server_cpu,
            r.server_cpu * 1000.0 / r.shops as f64,
            r.rss_kib_per_shop,
            r.bench_cpu
        );
    }
    println!(
        "(times from `publish` returning to each shop's sync having swapped; woken = its long-poll answered;"
    );
    println!(" server CPU from before the publish to the last swap; bench CPU = the simulated shops in this process)");
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    for r in &rows {
        println!(
            "{} shops: the shops' own sync took {:.2} ms CPU each here, the server {:.2} ms per shop: \
             on {cores} cores the last swap cannot come before {:.2} s; other processes took {:.2} CPU-s \
             meanwhile (load average {:.1})",
            r.shops,
            r.bench_cpu * 1000.0 / r.shops as f64,
            r.server_cpu * 1000.0 / r.shops as f64,
            (r.bench_cpu + r.server_cpu) / cores as f64,
            r.others_cpu,
            r.load_average
        );
    }
    println!();
    println!(
        "{:<10} {:>14} {:>14} {:>8} {:>16} {:>16}",
        "head", "serve req/s", "nginx req/s", "ratio", "serve CPU µs/req", "nginx CPU µs/req"
    );
    for (http, ours, theirs) in &peers {
        println!(
            "{:<10} {:>14.0} {:>14.0} {:>7.0}% {:>16.1} {:>16.1}",
            format!("{http:?}"),
            ours.per_sec,
            theirs.per_sec,
            ours.per_sec / theirs.per_sec * 100.0,
            ours.server_cpu_us,
            theirs.server_cpu_us
        );
    }
    println!();

    // Publish → every shop swapped includes the simulated shops' own work on the
    // same cores (each verifies and swaps), so it is reported against the issue's
    // targets without failing the run; publish → every shop woken is the
    // server's fan-out alone, and fails the run when it misses the same targets.
    let mut missed = Vec::new();
    for (shops, target) in TARGET_P99_SECS {
        let Some(row) = rows.iter().find(|r| r.shops == shops) else {
            continue;
        };
        let line = format!(
            "swapped p99 at {shops} shops {:.3} s, target < {target} s",
            row.p99
        );
        if row.p99 < target {
            println!("PASS {line}");
        } else {
            println!(
                "MISS {line} (over by {:.3} s; the simulated shops' own sync alone fills the {cores} cores for {:.2} s)",
                row.p99 - target,
                row.bench_cpu / cores as f64
            );
        }
        let line = format!(
            "server fan-out (woken) p99 at {shops} shops {:.3} s, target < {target} s",
            row.woken_p99
        );
        if row.woken_p99 < target {
            println!("PASS {line}");
        } else {
            println!("MISS {line} (over by {:.3} s)", row.woken_p99 - target);
            missed.push(line);
        }
    }
    for (http, ours, theirs) in &peers {
        let share = ours.per_sec / theirs.per_sec;
        let line = format!(
            "{http:?} head rate {:.0}% of nginx's, target ≥ {:.0}%",
            share * 100.0,
            TARGET_NGINX_SHARE * 100.0
        );
        if share >= TARGET_NGINX_SHARE {
            println!("PASS {line}");
        } else {
            println!(
                "MISS {line} (short by {:.0} points)",
                (TARGET_NGINX_SHARE - share) * 100.0
            );
            missed.push(line);
        }
    }
    drop(bench);
    drop(serve);
    // `exit` runs no destructors: the directories go first.
    drop(root);
    drop(dir);
    if missed.is_empty() {
        println!("the server's targets met (publish → swapped: see its PASS/MISS lines above)");
    } else {
        eprintln!("targets missed: {missed:?}");
        std::process::exit(1);
    }
}
