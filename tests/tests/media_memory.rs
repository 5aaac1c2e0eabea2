//! Media serving under hostile load, against the real `skycast-publisher serve`
//! binary (a child process, so its memory is its own): 50 parallel one-byte
//! `Range` requests on a 100 MB media file, through the pull protocol and the web
//! UI's `/media/<id>.mp3`, keep the server's peak memory within 20 MB of where it
//! was while a page still answers within 200 ms; a full download streams the
//! same file in bounded memory; and a second store bundle while one is being
//! downloaded is refused with 503 and `Retry-After`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use futures_util::StreamExt;
use reqwest::{Client, StatusCode};
use skycast_tests::serve_process::{https_client, publisher_cli, ServeProcess};
use skycast_tests::web::{WebClient, TEST_PASSWORD};
use skycast_tests::{example, file_id};

/// The size of the media file the tests publish. `Limits::max_media_bytes`
/// allows 200 MiB, so 100 MiB is accepted as is.
const MEDIA_MIB: u64 = 100;
/// How many one-byte requests are sent at once.
const PARALLEL: usize = 50;
/// The most the server's peak memory may grow during one burst.
const MAX_GROWTH_KIB: u64 = 20 * 1024;
/// The longest a page may take while a burst is served.
const MAX_PAGE_MS: u128 = 200;

/// A valid MP3 stream of about `mib` MiB: the frames of an example file (64 kbit/s,
/// no tags) repeated, as MP3 frames concatenate into one playable stream.
fn big_mp3(path: &Path, mib: u64) {
    let frames = std::fs::read(example("music/sweep-60s.mp3")).unwrap();
    let copies = (mib << 20) / frames.len() as u64;
    let mut out = Vec::with_capacity((copies as usize) * frames.len());
    for _ in 0..copies {
        out.extend_from_slice(&frames);
    }
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, out).unwrap();
}

/// What the setup made: the data directory, the media, users and a player token.
struct Published {
    data: PathBuf,
    media_id: String,
    media_size: u64,
    first_byte: u8,
    token: String,
}

/// `init`, a marketing and an auditor user, a player, and one version holding a
/// `mib` MiB media file, all with the real CLI.
fn publish_big_media(dir: &Path, mib: u64) -> Published {
    let data = dir.join("publisher");
    let path = data.to_str().unwrap();
    publisher_cli(
        &["init", "--data", path],
        &[("SKYCAST_ADMIN_PASSWORD", "admin-password")],
    );
    for role in ["marketing", "auditor"] {
        publisher_cli(
            &["user", "add", "--data", path, "--name", role, "--role", role],
            &[("SKYCAST_USER_PASSWORD", TEST_PASSWORD)],
        );
    }
    let config = publisher_cli(
        &[
            "player",
            "add",
            "--data",
            path,
            "--id",
            "shop-1",
            "--shop",
            "main",
            "--server-url",
            "https://127.0.0.1:1",
            "--player-data",
            "data",
        ],
        &[],
    );
    let config: toml::Table = config.parse().unwrap();
    let token = config["token"].as_str().unwrap().to_string();

    let planning_dir = dir.join("planning");
    let media = planning_dir.join("music/big.mp3");
    big_mp3(&media, mib);
    std::fs::write(
        planning_dir.join("planning.yaml"),
        "timezone: Europe/Paris\n\
         playlists:\n  allday: {items: [music/big.mp3]}\n\
         shops:\n  main: {tags: [pilot]}\n\
         schedule:\n  - {playlist: allday, shops: [all]}\n",
    )
    .unwrap();
    let planning = planning_dir.join("planning.yaml");
    let started = Instant::now();
    let out = publisher_cli(
        &[
            "publish",
            "--data",
            path,
            "--planning",
            planning.to_str().unwrap(),
            "--message",
            "a long file",
        ],
        &[],
    );
    assert!(out.contains("published version 1"), "{out}");
    eprintln!(
        "published a {} byte MP3 in {:.1} s",
        std::fs::metadata(&media).unwrap().len(),
        started.elapsed().as_secs_f64()
    );
    let (id, size) = file_id(&media);
    let first_byte = std::fs::read(&media).unwrap()[0];
    Published {
        data,
        media_id: id.to_string(),
        media_size: size,
        first_byte,
        token,
    }
}

/// A client trusting the data directory's CA; HTTP/1.1 only, so parallel
/// requests are parallel connections, as from many clients.
fn protocol_client(data: &Path) -> Client {
    https_client(&data.join("tls/ca.pem"))
        .http1_only()
        .pool_max_idle_per_host(PARALLEL)
        .build()
        .unwrap()
}

/// What one burst of one-byte requests cost the server.
struct Burst {
    growth_kib: u64,
    peak_kib: u64,
    rss_kib: u64,
    page_ms: u128,
    /// The same page with nothing else going on, for comparison.
    quiet_page_ms: u128,
    burst_ms: u128,
    reset: bool,
}

/// Sends `requests` all at once, and a page request meanwhile: each must answer
/// 206 with the file's first byte.
async fn one_byte_burst(
    serve: &ServeProcess,
    requests: Vec<reqwest::RequestBuilder>,
    page: impl Fn() -> reqwest::RequestBuilder,
    expect: (u8, u64),
) -> Burst {
    let t = Instant::now();
    let quiet = page().send().await.unwrap();
    assert_eq!(quiet.status(), StatusCode::OK);
    let _ = quiet.bytes().await.unwrap();
    let quiet_page_ms = t.elapsed().as_millis();
    let reset = serve.reset_peak();
    let (peak_before, _) = serve.memory_kib();
    let started = Instant::now();
    let burst = futures_util::future::join_all(requests.into_iter().map(|r| async move {
        let resp = r.header("range", "bytes=0-0").send().await.unwrap();
        let status = resp.status();
        let range = resp
            .headers()
            .get("content-range")
            .map(|v| v.to_str().unwrap().to_string());
        let body = resp.bytes().await.unwrap();
        (status, range, body)
    }));
    let page_request = async {
        let t = Instant::now();
        let resp = page().send().await.unwrap();
        let status = resp.status();
        let _ = resp.bytes().await.unwrap();
        (status, t.elapsed().as_millis())
    };
    let (answers, (page_status, page_ms)) = tokio::join!(burst, page_request);
    let burst_ms = started.elapsed().as_millis();
    let (peak_after, rss_kib) = serve.memory_kib();
    assert_eq!(page_status, StatusCode::OK, "the page answers during the burst");
    for (status, range, body) in answers {
        assert_eq!(status, StatusCode::PARTIAL_CONTENT);
        assert_eq!(range, Some(format!("bytes 0-0/{}", expect.1)));
        assert_eq!(body.as_ref(), [expect.0]);
    }
    Burst {
        growth_kib: peak_after.saturating_sub(peak_before),
        peak_kib: peak_after,
        rss_kib,
        page_ms,
        quiet_page_ms,
        burst_ms,
        reset,
    }
}

fn report(what: &str, b: &Burst) {
    eprintln!(
        "{what}: {PARALLEL} parallel `Range: bytes=0-0` on a {MEDIA_MIB} MiB media: server peak memory grew by \
         {} KiB (peak {} KiB, RSS after {} KiB, peak reset {}); a page answered in {} ms meanwhile ({} ms alone); \
         burst took {} ms",
        b.growth_kib, b.peak_kib, b.rss_kib, b.reset, b.page_ms, b.quiet_page_ms, b.burst_ms
    );
    assert!(
        b.growth_kib < MAX_GROWTH_KIB,
        "{what}: peak memory grew by {} KiB (limit {MAX_GROWTH_KIB} KiB)",
        b.growth_kib
    );
    assert!(
        b.page_ms < MAX_PAGE_MS,
        "{what}: the page took {} ms (limit {MAX_PAGE_MS} ms)",
        b.page_ms
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_byte_ranges_on_a_100_mib_media_keep_memory_bounded_and_pages_fast() {
    let dir = tempfile::tempdir().unwrap();
    let published = publish_big_media(dir.path(), MEDIA_MIB);
    let mut serve = ServeProcess::start(&published.data, &[]).await;
    let media_url = format!(
        "{}{}",
        serve.url(),
        skycast_schema::protocol::media_path(&published.media_id)
    );
    let client = protocol_client(&published.data);
    let bearer = format!("Bearer {}", published.token);
    let mut web = WebClient::new(&serve.url(), &published.data.join("tls/ca.pem"));
    let home = web.login("marketing", TEST_PASSWORD).await;
    assert_eq!(home.status, StatusCode::OK, "{}", home.body);
    let expect = (published.first_byte, published.media_size);

    // One of each first: the burst measures the requests, not first-use setup.
    let warm = client
        .get(&media_url)
        .header("authorization", &bearer)
        .header("range", "bytes=0-0")
        .send()
        .await
        .unwrap();
    assert_eq!(warm.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        warm.headers()["cache-control"],
        "private, max-age=31536000, immutable",
        "a token-protected answer is for that player only"
    );
    let web_media = format!("/media/{}.mp3", published.media_id);
    assert_eq!(web.get("/marketing/media").await.status, StatusCode::OK);
    let (status, _) = web.get_bytes(&web_media).await;
    assert_eq!(status, StatusCode::OK);

    let requests = (0..PARALLEL)
        .map(|_| client.get(&media_url).header("authorization", &bearer))
        .collect();
    let page = || web.client().get(format!("{}/marketing/media", serve.url()));
    let protocol = one_byte_burst(&serve, requests, page, expect).await;
    report("pull protocol /v1/media", &protocol);

    let requests = (0..PARALLEL)
        .map(|_| web.client().get(format!("{}{web_media}", serve.url())))
        .collect();
    let page = || web.client().get(format!("{}/marketing/media", serve.url()));
    let listening = one_byte_burst(&serve, requests, page, expect).await;
    report("web UI /media/<id>.mp3", &listening);

    // A whole download streams too: hashed on arrival, it is the published file.
    let reset = serve.reset_peak();
    let (peak_before, _) = serve.memory_kib();
    let started = Instant::now();
    let resp = client
        .get(&media_url)
        .header("authorization", &bearer)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.content_length(), Some(published.media_size));
    let mut hasher = blake3::Hasher::new();
    let mut body = resp.bytes_stream();
    while let Some(chunk) = body.next().await {
        hasher.update(&chunk.unwrap());
    }
    let (peak_after, _) = serve.memory_kib();
    let growth_kib = peak_after.saturating_sub(peak_before);
    eprintln!(
        "full download of {} bytes in {:.1} s: server peak memory grew by {growth_kib} KiB (peak reset {reset})",
        published.media_size,
        started.elapsed().as_secs_f64()
    );
    assert_eq!(hasher.finalize().to_hex().as_str(), published.media_id);
    assert!(growth_kib < MAX_GROWTH_KIB, "full download: +{growth_kib} KiB");

    let log = serve.plain_log();
    assert!(!log.contains("ERROR"), "{log}");
    serve.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_bundle_download_while_one_runs_gets_503_with_retry_after() {
    // Large enough that the first bundle cannot fit in the sockets' buffers: it
    // stays in progress while its body is not read.
    const BUNDLE_MEDIA_MIB: u64 = 40;
    let dir = tempfile::tempdir().unwrap();
    let published = publish_big_media(dir.path(), BUNDLE_MEDIA_MIB);
    let mut serve = ServeProcess::start(&published.data, &[]).await;
    let ca = published.data.join("tls/ca.pem");
    let mut first = WebClient::new(&serve.url(), &ca);
    let mut second = WebClient::new(&serve.url(), &ca);
    for web in [&mut first, &mut second] {
        let home = web.login("auditor", TEST_PASSWORD).await;
        assert_eq!(home.status, StatusCode::OK, "{}", home.body);
    }

    let running = first
        .client()
        .get(format!("{}/audit/bundle", serve.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(running.status(), StatusCode::OK, "the first bundle is made");
    // Its body is not read yet: the download is in progress.
    let refused = second
        .client()
        .get(format!("{}/audit/bundle", serve.url()))
        .header("accept-language", "en")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    let retry_after: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry_after > 0, "Retry-After says when to come back");
    let page = refused.text().await.unwrap();
    assert!(page.contains("bundle is busy"), "the page says why: {page}");

    // The first download completes intact.
    let bytes = running.bytes().await.unwrap();
    assert!(bytes.starts_with(b"# v2 git bundle") || bytes.starts_with(b"# v3 git bundle"));
    assert!(
        bytes.len() as u64 > published.media_size / 2,
        "{} bytes",
        bytes.len()
    );
    let log = serve.plain_log();
    assert!(log.contains("store bundle refused"), "{log}");
    serve.stop().await;
}

/// The player token `player add` printed into a puller's configuration.
fn token_of(puller: &skycast_tests::Puller) -> String {
    let config: toml::Table = std::fs::read_to_string(&puller.config).unwrap().parse().unwrap();
    config["token"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_are_served_from_the_index_without_tags_and_unknown_ones_answer_404() {
    let fx = skycast_tests::PublisherFixture::start().await;
    let music = skycast_tests::example_music();
    let planning = skycast_tests::write_planning(&fx.dir.path().join("planning"), &[&music[0]]);
    fx.publish(&planning);
    let token = token_of(&fx.add_player("shop-1", "main", &fx.url()));
    let client = protocol_client(fx.data.root());
    let get = |version: u64| {
        let url = format!(
            "{}{}",
            fx.url(),
            skycast_schema::protocol::version_file_path(version, "manifest.yaml")
        );
        client.get(url).bearer_auth(&token).send()
    };

    // Tags are a convenience: the index needs none.
    let repo = git2::Repository::open(fx.data.store_path()).unwrap();
    repo.tag_delete("v1").unwrap();
    let resp = get(1).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        resp.headers()["cache-control"],
        "private, max-age=31536000, immutable"
    );
    assert!(resp.text().await.unwrap().contains("version: 1"));

    // A version published since the last look is found at once (one refresh),
    // before any player asked for the head.
    fx.publish(&planning);
    repo.tag_delete("v2").unwrap();
    let resp = get(2).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.text().await.unwrap().contains("version: 2"));

    for missing in [0, 3, 999_999] {
        let resp = get(missing).await.unwrap();
        assert_eq!(resp.status(), StatusCode::NOT_FOUND, "version {missing}");
        let body: serde_json::Value = resp.json().await.unwrap();
        assert!(
            body["error"]
                .as_str()
                .unwrap()
                .contains(&format!("version {missing} does not exist")),
            "{body}"
        );
    }
    fx.stop().await;
}
