//! Mirrors on a real 3-node Garage cluster (issue 12, done-when 2 and 5): the
//! real `skycast-publisher` copies every version to Garage's S3 API, players
//! read it back through Garage's public web endpoint byte for byte; a dead
//! cluster leaves the mirror behind with its error and the `mirror_failing`
//! alert, a restart of `serve` resumes the queue, and the alert resolves once
//! the mirror caught up; one node down, mirroring and reads go on (quorum 2 of
//! 3); and a puller listing the Garage nodes first takes every media byte from
//! them and none from the origin, and still gets a new version with the origin
//! stopped.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;
use skycast_publisher::DataDir;
use skycast_schema::protocol::{
    media_path, mirror_key, version_file_path, HEAD_PATH, MANIFEST_FILE, SIGNATURE_FILE,
};
use skycast_schema::Head;
use skycast_tests::garage::{GarageCluster, BUCKET, REGION};
use skycast_tests::proxy::Proxy;
use skycast_tests::serve_process::{publisher_cli, ServeProcess};
use skycast_tests::web::WebClient;
use skycast_tests::{edit_config, example_music, file_id, write_planning, PublisherFixture};

/// How long mirroring or a recovery may take on a loaded 2-core machine.
const MIRROR_TIMEOUT: Duration = Duration::from_secs(90);
const POLL: Duration = Duration::from_millis(200);

/// Blocking (it polls the nodes until they are healthy): fine on a worker of
/// the multi-threaded runtime every test here runs on.
fn start_garage() -> GarageCluster {
    tokio::task::block_in_place(GarageCluster::start)
}

/// Polls `check` until it gives a value, failing the test with `what` and the
/// last state after the deadline.
async fn wait_for<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        match check() {
            Ok(v) => return v,
            Err(state) => {
                assert!(Instant::now() < deadline, "{what} did not happen: {state}");
            }
        }
        tokio::time::sleep(POLL).await;
    }
}

fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn init_publisher(dir: &Path) -> PathBuf {
    let data = dir.join("publisher");
    publisher_cli(
        &["init", "--data", path_str(&data)],
        &[("SKYCAST_ADMIN_PASSWORD", "admin-password")],
    );
    data
}

/// `mirror add` through node `node`'s S3 API with a 0600 credentials file.
fn add_mirror(data: &Path, garage: &GarageCluster, node: usize, name: &str) {
    let credentials = data.parent().unwrap().join(format!("{name}-s3.toml"));
    garage.write_credentials(&credentials);
    let out = publisher_cli(
        &[
            "mirror",
            "add",
            "--data",
            path_str(data),
            "--s3-endpoint",
            &garage.s3_endpoint(node),
            "--bucket",
            BUCKET,
            "--region",
            REGION,
            "--name",
            name,
            "--credentials",
            path_str(&credentials),
        ],
        &[],
    );
    assert!(out.contains(&format!("mirror `{name}` added")), "{out}");
}

/// Publishes `tracks` (paths under content-example/) with the real CLI; returns the version.
fn publish(data: &Path, work: &Path, tracks: &[&str]) -> u64 {
    let planning = write_planning(work, tracks);
    let out = publisher_cli(
        &[
            "publish",
            "--data",
            path_str(data),
            "--planning",
            path_str(&planning),
        ],
        &[],
    );
    out.split_whitespace()
        .nth(2)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("publish printed no version: {out}"))
}

fn mirror_status(data: &Path) -> Value {
    let out = publisher_cli(&["mirror", "status", "--data", path_str(data), "--json"], &[]);
    serde_json::from_str(&out).unwrap()
}

fn the_mirror(status: &Value) -> Value {
    status["mirrors"][0].clone()
}

/// Waits until the only mirror names `version` and has nothing left to copy.
async fn wait_mirrored(data: &Path, version: u64) -> Value {
    wait_for(&format!("version {version} mirrored"), MIRROR_TIMEOUT, || {
        let m = the_mirror(&mirror_status(data));
        let done = m["mirrored_version"] == version && m["versions_behind"] == 0 && m["queue_len"] == 0;
        if done {
            Ok(m)
        } else {
            Err(m.to_string())
        }
    })
    .await
}

fn alerts(data: &Path, all: bool) -> Vec<Value> {
    let mut args = vec!["alerts", "--data", path_str(data), "--json"];
    if all {
        args.push("--all");
    }
    serde_json::from_str::<Vec<Value>>(&publisher_cli(&args, &[])).unwrap()
}

fn mirror_failing_alerts(data: &Path, all: bool) -> Vec<Value> {
    alerts(data, all)
        .into_iter()
        .filter(|a| a["kind"] == "mirror_failing")
        .collect()
}

/// Every object of `version` on the mirror, read through node `node`'s web
/// endpoint, is byte for byte what the origin serves.
async fn assert_version_readable(garage: &GarageCluster, node: usize, data: &Path, version: u64) {
    let store = DataDir::new(data).store().unwrap();
    for file in [MANIFEST_FILE, SIGNATURE_FILE] {
        let key = version_file_path(version, file);
        let (status, body) = garage.web_get_eventually(node, mirror_key(&key)).await;
        assert_eq!(
            status,
            200,
            "{key} through node {node}: {}\n{}",
            String::from_utf8_lossy(&body[..body.len().min(300)]),
            garage
                .log(node)
                .lines()
                .rev()
                .take(20)
                .collect::<Vec<_>>()
                .join("\n")
        );
        assert_eq!(
            body,
            store.version_file(version, file).unwrap(),
            "{key} through node {node}"
        );
    }
    let manifest = skycast_schema::verify(
        &store.version_file(version, MANIFEST_FILE).unwrap(),
        &store.version_file(version, SIGNATURE_FILE).unwrap(),
        &skycast_schema::TrustedKeys::new([DataDir::new(data).public_key().unwrap()]),
        &skycast_schema::Limits::default(),
    )
    .unwrap();
    let cache = data.join("media-cache");
    for media in &manifest.media {
        let path = media_path(&media.id);
        let (status, body) = garage.web_get_eventually(node, mirror_key(&path)).await;
        assert_eq!(status, 200, "{path} through node {node}");
        let expected = std::fs::read(cache.join(media.id.file_name())).unwrap();
        assert_eq!(body.len(), expected.len(), "{path} through node {node}");
        assert!(body == expected, "{path} through node {node}: other bytes");
    }
}

/// `GET /metrics` of a serve started with `--metrics-listen 127.0.0.1:0`
/// (its address read from its log).
async fn scrape_metrics(serve: &ServeProcess) -> String {
    let log = serve.plain_log();
    let addr = log
        .lines()
        .filter(|l| l.contains("serving metrics"))
        .flat_map(str::split_whitespace)
        .find_map(|w| w.strip_prefix("addr="))
        .unwrap_or_else(|| panic!("no metrics address in the log: {log}"))
        .to_string();
    reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

async fn mirror_head(garage: &GarageCluster, node: usize) -> Head {
    let (status, body) = garage.web_get_eventually(node, mirror_key(HEAD_PATH)).await;
    assert_eq!(status, 200, "v1/head through node {node}");
    serde_json::from_slice(&body).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_version_reaches_garage_byte_for_byte_before_its_head_pointer() {
    let garage = start_garage();
    let work = tempfile::tempdir().unwrap();
    let data = init_publisher(work.path());
    let music = example_music();
    let v1 = publish(&data, &work.path().join("p1"), &[&music[0], &music[1]]);
    add_mirror(&data, &garage, 0, "garage");
    let before = the_mirror(&mirror_status(&data));
    assert_eq!(
        (
            before["mirrored_version"].as_u64(),
            before["versions_behind"].as_u64()
        ),
        (Some(0), Some(v1))
    );

    let serve = ServeProcess::start(&data, &["--metrics-listen", "127.0.0.1:0"]).await;
    wait_mirrored(&data, v1).await;
    for node in 0..garage.len() {
        assert_version_readable(&garage, node, &data, v1).await;
    }

    // A second version while serve runs: its new media and pointer follow.
    let v2 = publish(&data, &work.path().join("p2"), &[&music[1], &music[2]]);
    let status = wait_mirrored(&data, v2).await;
    assert_eq!(status["lag_secs"], 0);
    assert!(status["last_success_at"].is_string(), "{status}");
    for node in 0..garage.len() {
        assert_version_readable(&garage, node, &data, v2).await;
        let head = mirror_head(&garage, node).await;
        assert_eq!(head.version, v2);
        assert_eq!(
            head.manifest.as_deref(),
            Some(version_file_path(v2, MANIFEST_FILE).as_str())
        );
        assert!(!head.commands_pending);
    }
    // The older version stays readable: players on it resume from the mirror.
    assert_version_readable(&garage, 1, &data, v1).await;
    let metrics = scrape_metrics(&serve).await;
    for line in [
        "skycast_mirror_versions_behind{mirror=\"garage\"} 0",
        "skycast_mirror_lag_seconds{mirror=\"garage\"} 0",
        "skycast_mirror_failing{mirror=\"garage\"} 0",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in:\n{metrics}");
    }
    skycast_tests::promtool_accepts(&metrics);
    let log = serve.plain_log();
    assert!(!log.contains(garage.secret()), "the secret key is never logged");
    let stored = std::fs::read(data.join("publisher.sqlite")).unwrap();
    let secret = garage.secret().as_bytes();
    assert!(
        !stored.windows(secret.len()).any(|w| w == secret),
        "the database never holds the secret"
    );
    drop(serve);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dead_mirror_falls_behind_opens_an_alert_resumes_after_a_restart_and_resolves_it() {
    let mut garage = start_garage();
    let work = tempfile::tempdir().unwrap();
    let data = init_publisher(work.path());
    let music = example_music();
    add_mirror(&data, &garage, 0, "garage");
    let mut serve = ServeProcess::start(&data, &[]).await;
    let v1 = publish(&data, &work.path().join("p1"), &[&music[0]]);
    wait_mirrored(&data, v1).await;

    // The whole cluster down: the next version stays queued, with its error.
    garage.stop_all();
    let v2 = publish(&data, &work.path().join("p2"), &[&music[0], &music[3]]);
    let behind = wait_for("the mirror failing", MIRROR_TIMEOUT, || {
        let m = the_mirror(&mirror_status(&data));
        if m["failing"] == true {
            Ok(m)
        } else {
            Err(m.to_string())
        }
    })
    .await;
    assert_eq!(behind["mirrored_version"], v1);
    assert_eq!(behind["versions_behind"], 1);
    assert_eq!(behind["queue_len"], 1);
    assert!(behind["lag_secs"].as_u64().is_some(), "{behind}");
    assert!(
        behind["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("mirror `garage`")),
        "the error names the mirror: {behind}"
    );
    let opened = wait_for("mirror_failing opened", MIRROR_TIMEOUT, || {
        let open = mirror_failing_alerts(&data, false);
        if open.len() == 1 {
            Ok(open[0].clone())
        } else {
            Err(format!("{open:?}"))
        }
    })
    .await;
    assert!(
        opened["text_en"].as_str().unwrap().contains("«garage»"),
        "{opened}"
    );
    assert!(opened["text_fr"].as_str().unwrap().contains("miroir"), "{opened}");
    let text = publisher_cli(&["mirror", "status", "--data", path_str(&data)], &[]);
    assert!(text.contains("FAILING") && text.contains("1 behind"), "{text}");
    let mut web = WebClient::new(&serve.url(), &serve.ca_path());
    web.login("admin", "admin-password").await;
    let dashboard = web.get("/fleet").await;
    assert!(
        dashboard.body.contains("data-mirror=\"garage\"")
            && dashboard.body.contains("1 version(s) behind")
            && dashboard.body.contains("Failing"),
        "the dashboard shows the mirror's lag: {}",
        dashboard.body
    );

    // serve restarts with the version still queued; Garage comes back.
    serve.stop().await;
    let failures_before = the_mirror(&mirror_status(&data))["failures_since_caught_up"]
        .as_u64()
        .unwrap();
    assert!(
        failures_before >= 3,
        "the failures survive the restart: {failures_before}"
    );
    // Blocking (it polls each node's health): fine on a worker of this runtime.
    tokio::task::block_in_place(|| garage.start_all());
    let serve = ServeProcess::start(&data, &[]).await;
    let caught_up = wait_mirrored(&data, v2).await;
    assert_eq!(
        (caught_up["lag_secs"].as_u64(), caught_up["failing"].as_bool()),
        (Some(0), Some(false))
    );
    assert_version_readable(&garage, 2, &data, v2).await;
    assert_eq!(mirror_head(&garage, 1).await.version, v2);
    let resolved = wait_for("mirror_failing resolved", MIRROR_TIMEOUT, || {
        let all = mirror_failing_alerts(&data, true);
        match all.as_slice() {
            [one] if one["resolved_at"].is_string() => Ok(one.clone()),
            _ => Err(format!("{all:?}")),
        }
    })
    .await;
    assert_eq!(resolved["id"], opened["id"], "one incident, one alert");
    assert!(mirror_failing_alerts(&data, false).is_empty());
    drop(serve);
}

#[tokio::test(flavor = "multi_thread")]
async fn with_one_garage_node_killed_mirroring_succeeds_and_the_others_serve_it() {
    let mut garage = start_garage();
    let work = tempfile::tempdir().unwrap();
    let data = init_publisher(work.path());
    let music = example_music();
    add_mirror(&data, &garage, 0, "garage");
    let serve = ServeProcess::start(&data, &[]).await;
    garage.kill(2);
    let v1 = publish(&data, &work.path().join("p1"), &[&music[0], &music[4]]);
    wait_mirrored(&data, v1).await;
    for node in [0, 1] {
        assert_version_readable(&garage, node, &data, v1).await;
        assert_eq!(mirror_head(&garage, node).await.version, v1);
    }
    drop(serve);
}

/// The sum of `served_by.media[].bytes` for `url` in the puller's last sync.
fn media_bytes_from(status: &Value, url: &str) -> u64 {
    status["last_sync"]["served_by"]["media"]
        .as_array()
        .map(|all| {
            all.iter()
                .filter(|m| m["url"] == url)
                .map(|m| m["bytes"].as_u64().unwrap_or(0))
                .sum()
        })
        .unwrap_or(0)
}

fn media_size(tracks: &[&str]) -> u64 {
    let mut seen = std::collections::BTreeSet::new();
    tracks
        .iter()
        .map(|t| file_id(&skycast_tests::example(t)))
        .filter(|(id, _)| seen.insert(*id))
        .map(|(_, size)| size)
        .sum()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_puller_listing_garage_first_takes_every_media_byte_from_it_even_with_the_origin_or_a_node_down() {
    let mut garage = start_garage();
    let mut origin = PublisherFixture::start().await;
    let data = origin.data.root().to_path_buf();
    // The publisher writes through node 2 (dc2); the players read nodes 0 then 1.
    add_mirror(&data, &garage, 2, "garage");
    let proxy = Proxy::start(&origin).await;
    let puller = origin.add_player("main-1", "main", &proxy.url());
    let (first, second) = (garage.web_url(0), garage.web_url(1));
    edit_config(&puller, |t| {
        t.insert(
            "mirrors".into(),
            toml::Value::Array(vec![first.clone().into(), second.clone().into()]),
        );
        t.insert("allow_http_mirrors".into(), true.into());
    });
    let music = example_music();
    let work = origin.dir.path().join("plannings");

    // 1. Everything up: every media byte comes from the first Garage node.
    let t1 = [music[0].as_str(), music[1].as_str()];
    let v1 = origin.publish(&write_planning(&work.join("p1"), &t1)).version;
    wait_mirrored(&data, v1).await;
    puller.sync_ok().await;
    let status = puller.status().await;
    assert_eq!(puller.current_version(), Some(v1));
    assert_eq!(media_bytes_from(&status, &first), media_size(&t1), "{status}");
    assert_eq!(media_bytes_from(&status, &proxy.url()), 0, "{status}");
    assert_eq!(proxy.media_bytes_sent(), 0, "the origin served no media byte");
    assert!(
        proxy.log().iter().all(|l| !l.path.starts_with("/v1/media/")),
        "{:?}",
        proxy.log()
    );

    // 2. The first node killed: the publisher still mirrors (quorum 2 of 3) and
    //    the puller takes the new media from the second node.
    garage.kill(0);
    let t2 = [music[1].as_str(), music[2].as_str()];
    let v2 = origin.publish(&write_planning(&work.join("p2"), &t2)).version;
    wait_mirrored(&data, v2).await;
    puller.sync_ok().await;
    let status = puller.status().await;
    assert_eq!(puller.current_version(), Some(v2));
    assert_eq!(
        media_bytes_from(&status, &second),
        media_size(&[t2[1]]),
        "{status}"
    );
    assert_eq!(proxy.media_bytes_sent(), 0, "the origin served no media byte");

    // 3. The origin stopped: a version already mirrored still reaches the puller.
    let t3 = [music[3].as_str()];
    let v3 = origin.publish(&write_planning(&work.join("p3"), &t3)).version;
    wait_mirrored(&data, v3).await;
    origin.stop_serving().await;
    let dead_origin = origin.url();
    edit_config(&puller, |t| {
        t.insert("server".into(), dead_origin.clone().into());
    });
    puller.sync_ok().await;
    let status = puller.status().await;
    assert_eq!(puller.current_version(), Some(v3), "{status}");
    assert_eq!(
        status["last_sync"]["served_by"]["manifest"],
        second.as_str(),
        "{status}"
    );
    assert_eq!(media_bytes_from(&status, &second), media_size(&t3), "{status}");
    assert_eq!(media_bytes_from(&status, &dead_origin), 0, "{status}");
    puller.check_consistent(&origin.trusted()).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_large_media_goes_up_in_parts_once_and_the_head_pointer_never_moves_back() {
    use skycast_publisher::db::MirrorRow;
    use skycast_publisher::mirror::upload::{Bucket, MediaFile, VersionContent, SINGLE_PUT_MAX_BYTES};

    let garage = start_garage();
    let work = tempfile::tempdir().unwrap();
    let credentials = work.path().join("s3.toml");
    garage.write_credentials(&credentials);
    // Over the single-request limit: a multipart upload streamed from the file.
    let size = usize::try_from(SINGLE_PUT_MAX_BYTES).unwrap() + 3 * 1024 * 1024 + 17;
    let mut bytes = vec![0u8; size];
    blake3::Hasher::new()
        .update(b"large media")
        .finalize_xof()
        .fill(&mut bytes);
    let path = work.path().join("large.mp3");
    std::fs::write(&path, &bytes).unwrap();
    let (id, size_bytes) = file_id(&path);
    let row = MirrorRow {
        name: "garage".into(),
        endpoint: garage.s3_endpoint(1),
        bucket: BUCKET.into(),
        region: REGION.into(),
        credentials_file: Some(path_str(&credentials).into()),
        added_by: "tester".into(),
        added_at: "2026-12-01T10:00:00Z".into(),
        mirrored_version: 0,
        last_success_at: None,
        last_error: None,
        last_error_at: None,
        attempt_failures: 0,
        failures_since_caught_up: 0,
        next_attempt_at: None,
        queue_len: 0,
        oldest_queued_version: None,
        oldest_queued_published_at: None,
    };
    let bucket = Bucket::connect(&row, None).unwrap();
    let version = |n: u64| VersionContent {
        version: n,
        head: Head {
            version: n,
            published_at: Some("2026-12-01T10:00:00Z".into()),
            manifest: Some(version_file_path(n, MANIFEST_FILE)),
            commands_pending: false,
            root_version: None,
        },
        manifest: format!("version: {n}\n").into_bytes(),
        signature: b"sig\n".to_vec(),
        media: vec![MediaFile {
            id,
            path: path.clone(),
            size_bytes,
        }],
    };
    let first = bucket.mirror_version(&version(2)).await.unwrap();
    assert_eq!(
        (first.media_uploaded, first.media_present, first.head_moved),
        (1, 0, true)
    );
    let (status, body) = garage.web_get(0, mirror_key(&media_path(&id))).await;
    assert_eq!(status, 200);
    assert!(body == bytes, "the parts read back as the whole file");

    // An older version put later: its objects go up, the pointer stays at 2,
    // and the media already there is not sent again.
    let older = bucket.mirror_version(&version(1)).await.unwrap();
    assert_eq!(
        (older.media_uploaded, older.media_present, older.head_moved),
        (0, 1, false)
    );
    assert_eq!(mirror_head(&garage, 2).await.version, 2);
    let (status, body) = garage.web_get(2, &format!("v1/versions/1/{MANIFEST_FILE}")).await;
    assert_eq!((status, body), (200, b"version: 1\n".to_vec()));
}
