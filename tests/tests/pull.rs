//! Publish → pull → verify → swap over real HTTPS on loopback, and one test per
//! attack a hostile network or mirror can try (DESIGN §8).

use std::time::{Duration, Instant};

use chrono::Utc;
use futures_util::future::join_all;
use skycast_schema::MediaId;
use skycast_tests::proxy::{Fault, Proxy};
use skycast_tests::{edit_config, example, example_music, file_id, write_planning, PublisherFixture, Puller};

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

/// Runs `sync`, expects it to fail with an error holding every one of `words`, and
/// `current` to still name `kept` (verified on disk). Returns the error line.
async fn assert_refused(p: &PublisherFixture, pl: &Puller, words: &[&str], kept: Option<u64>) -> String {
    let out = pl.sync().await;
    let err = stderr(&out);
    assert!(
        !out.status.success(),
        "sync must fail; it said: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    for w in words {
        assert!(err.contains(w), "expected `{w}` in the error: {err}");
    }
    assert_eq!(
        pl.check_consistent(&p.trusted()),
        Ok(kept),
        "current must be unchanged"
    );
    err
}

/// A publisher with `track` published as version 1 and a tampering proxy in front
/// of it, plus the track's content id and size.
async fn one_track_behind_proxy(track: &str) -> (PublisherFixture, Proxy, MediaId, u64) {
    let p = PublisherFixture::start().await;
    let proxy = Proxy::start(&p).await;
    p.publish(&write_planning(&p.dir.path().join("v"), &[track]));
    let (id, size) = file_id(&example(track));
    (p, proxy, id, size)
}

fn manifest_bytes(p: &PublisherFixture, version: u64) -> Vec<u8> {
    p.data
        .store()
        .unwrap()
        .version_file(version, "manifest.yaml")
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_pullers_converge_and_then_download_only_the_added_track() {
    let p = PublisherFixture::start().await;
    let music = example_music();
    let work = p.dir.path().join("plannings");
    p.publish(&write_planning(
        &work.join("v1"),
        &[&music[0], &music[1], &music[2]],
    ));

    let pullers: Vec<Puller> = ["main", "lille", "nantes"]
        .iter()
        .map(|shop| p.add_player(&format!("{shop}-1"), shop, &p.url()))
        .collect();
    join_all(pullers.iter().map(|pl| pl.sync_ok())).await;
    for pl in &pullers {
        assert_eq!(pl.check_consistent(&p.trusted()), Ok(Some(1)));
        assert_eq!(pl.status().await["active_version"], 1);
    }

    p.publish(&write_planning(
        &work.join("v2"),
        &[&music[0], &music[1], &music[2], &music[3]],
    ));
    let (added_id, added_size) = file_id(&example(&music[3]));
    let outputs = join_all(pullers.iter().map(|pl| pl.sync_ok())).await;
    for (pl, out) in pullers.iter().zip(outputs) {
        assert!(out.contains("version 2"), "sync said: {out}");
        let status = pl.status().await;
        assert_eq!(status["active_version"], 2);
        assert_eq!(status["last_sync"]["downloaded_media"], 1, "{status}");
        assert_eq!(status["last_sync"]["downloaded_bytes"], added_size, "{status}");
        assert_eq!(pl.check_consistent(&p.trusted()), Ok(Some(2)));
        assert!(pl.media_files().contains(&added_id.file_name()));
    }
    // Up to date: a further sync downloads nothing and succeeds.
    assert!(pullers[0].sync_ok().await.contains("up to date"));
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_altered_in_transit_is_refused_naming_the_hash() {
    let p = PublisherFixture::start().await;
    let proxy = Proxy::start(&p).await;
    let music = example_music();
    let work = p.dir.path().join("plannings");
    p.publish(&write_planning(&work.join("v1"), &[&music[0]]));
    let pl = p.add_player("main-1", "main", &proxy.url());
    pl.sync_ok().await;

    p.publish(&write_planning(&work.join("v2"), &[&music[0], &music[1]]));
    let (added, _) = file_id(&example(&music[1]));
    proxy.set(Fault::FlipMediaByte);
    assert_refused(&p, &pl, &[&added.to_string()], Some(1)).await;
    assert!(
        !pl.media_files().contains(&added.file_name()),
        "tampered file must not enter media/"
    );
    assert!(pl.status().await["last_error"]
        .as_str()
        .unwrap_or("")
        .contains(&added.to_string()));

    proxy.set(Fault::None);
    pl.sync_ok().await;
    assert_eq!(pl.check_consistent(&p.trusted()), Ok(Some(2)));
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifest_altered_after_signing_is_refused() {
    let (p, proxy, _, _) = one_track_behind_proxy(&example_music()[0]).await;
    let bytes = manifest_bytes(&p, 1);
    let altered = String::from_utf8(bytes.clone())
        .unwrap()
        .replace("published_by: tester", "published_by: mallory");
    assert_ne!(
        altered.as_bytes(),
        &bytes[..],
        "the fixture must really alter the manifest"
    );
    proxy.set(Fault::ReplaceManifest(altered.into_bytes()));
    let pl = p.add_player("main-1", "main", &proxy.url());
    assert_refused(&p, &pl, &["signature does not match"], None).await;
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifest_signed_by_an_untrusted_key_is_refused() {
    let (p, proxy, _, _) = one_track_behind_proxy(&example_music()[0]).await;
    let bytes = manifest_bytes(&p, 1);
    let attacker = skycast_schema::SecretKey::from_seed([7; 32]);
    let altered = String::from_utf8(bytes.clone())
        .unwrap()
        .replace("published_by: tester", "published_by: mallory");
    assert_ne!(
        altered.as_bytes(),
        &bytes[..],
        "the fixture must really alter the manifest"
    );
    let signature = attacker.sign(altered.as_bytes()).into_bytes();
    proxy.set(Fault::ReplaceVersion {
        manifest: altered.into_bytes(),
        signature,
    });
    let pl = p.add_player("main-1", "main", &proxy.url());
    let attacker_key = attacker.public().id().to_string();
    assert_refused(&p, &pl, &["does not trust", &attacker_key], None).await;
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_older_manifest_is_refused_also_after_restart() {
    let p = PublisherFixture::start().await;
    let proxy = Proxy::start(&p).await;
    let planning = write_planning(&p.dir.path().join("v"), &[&example_music()[0]]);
    for _ in 0..5 {
        p.publish(&planning);
    }
    let pl = p.add_player("main-1", "main", &proxy.url());
    pl.sync_ok().await;
    assert_eq!(pl.current_version(), Some(5));

    proxy.set(Fault::HeadSays(3));
    assert_refused(&p, &pl, &["version 3", "replay"], Some(5)).await;

    // The memory of version 5 must not live only in `current`: remove it and retry.
    std::fs::remove_file(pl.data.join("current")).unwrap();
    assert_refused(&p, &pl, &["version 3", "replay"], None).await;
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_manifest_is_not_installed_and_status_says_stale() {
    let p = PublisherFixture::start().await;
    let planning = write_planning(&p.dir.path().join("v"), &[&example_music()[0]]);
    p.publish(&planning);
    let pl = p.add_player("main-1", "main", &p.url());
    pl.sync_ok().await;
    // Published 40 days ago with 30 days of validity: expired 10 days ago.
    p.publish_at(&planning, Utc::now() - chrono::Duration::days(40));
    assert_refused(&p, &pl, &["expired"], Some(1)).await;
    let status = pl.status().await;
    assert_eq!(status["active_version"], 1);
    assert_eq!(status["stale"], true, "{status}");
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_longer_than_declared_is_cut_off_at_the_cap_and_refused() {
    let (p, proxy, id, size) = one_track_behind_proxy(&example_music()[0]).await;
    proxy.set(Fault::AppendToMedia(5_000_000));
    let pl = p.add_player("main-1", "main", &proxy.url());
    assert_refused(&p, &pl, &[&id.to_string(), &size.to_string()], None).await;
    assert!(pl.media_files().is_empty());
    for part in std::fs::read_dir(pl.data.join("partial"))
        .into_iter()
        .flatten()
        .flatten()
    {
        assert!(
            part.metadata().unwrap().len() <= size,
            "never more than the declared size on disk"
        );
    }
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_id_with_path_characters_is_refused_even_when_signed() {
    let (p, proxy, id, _) = one_track_behind_proxy(&example_music()[0]).await;
    let bytes = manifest_bytes(&p, 1);
    let evil_id = format!("../../../../../tmp/{}", &id.to_string()[..40]);
    let evil = String::from_utf8(bytes)
        .unwrap()
        .replace(&id.to_string(), &evil_id)
        .into_bytes();
    // Even the real key signing it (a publisher bug) must not make a path out of it.
    let signature = p.data.secret_key().unwrap().sign(&evil).into_bytes();
    proxy.set(Fault::ReplaceVersion {
        manifest: evil,
        signature,
    });
    let pl = p.add_player("main-1", "main", &proxy.url());
    assert_refused(&p, &pl, &["64 lowercase hex"], None).await;
    assert!(
        proxy.log().iter().all(|l| !l.path.starts_with("/v1/media/")),
        "no download was attempted"
    );
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_download_resumes_with_range_and_media_never_holds_a_partial_file() {
    let (p, proxy, id, size) = one_track_behind_proxy("music/sweep-60s.mp3").await;
    let cut_at = (size / 3) as usize;
    proxy.set(Fault::CutNextMediaAfter(cut_at));
    let pl = p.add_player("main-1", "main", &proxy.url());
    assert_refused(&p, &pl, &[&id.to_string()], None).await;
    assert!(pl.media_files().is_empty(), "no partial file in media/");
    let partial = pl.data.join("partial").join(format!("{id}.part"));
    let kept = std::fs::metadata(&partial).map(|m| m.len()).unwrap_or(0);
    assert!(
        kept > 0 && kept <= cut_at as u64,
        "partial keeps what arrived: {kept} of {cut_at}"
    );

    proxy.clear_log();
    pl.sync_ok().await;
    let media_requests: Vec<_> = proxy
        .log()
        .into_iter()
        .filter(|l| l.path.starts_with("/v1/media/"))
        .collect();
    assert_eq!(media_requests.len(), 1, "{media_requests:?}");
    assert_eq!(
        media_requests[0].range.as_deref(),
        Some(format!("bytes={kept}-").as_str())
    );
    assert_eq!(media_requests[0].status, 206);
    assert_eq!(
        proxy.media_bytes_sent() as u64,
        size - kept,
        "only the missing bytes travel again"
    );
    assert_eq!(pl.check_consistent(&p.trusted()), Ok(Some(1)));
    assert!(!partial.exists());
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_puller_picks_up_a_new_version_without_waiting_for_its_poll_interval() {
    let p = PublisherFixture::start().await;
    let planning = write_planning(&p.dir.path().join("v"), &[&example_music()[0]]);
    p.publish(&planning);
    let pl = p.add_player("main-1", "main", &p.url());
    edit_config(&pl, |t| {
        t.insert("poll_interval_secs".into(), 300.into());
        t.insert("long_poll_secs".into(), 30.into());
    });
    let mut daemon = pl.command("run").spawn().unwrap();
    wait_for_version(&pl, 1, Duration::from_secs(30)).await;

    let published = Instant::now();
    p.publish(&planning);
    wait_for_version(&pl, 2, Duration::from_secs(30)).await;
    let took = published.elapsed();
    println!(
        "new version reached the running puller {} ms after publish (poll interval 300 s)",
        took.as_millis()
    );
    assert!(
        took < Duration::from_secs(10),
        "long-poll must beat the 300 s poll interval: {took:?}"
    );
    daemon.kill().await.unwrap();
    p.stop().await;
}

/// Watches the `current` link (a file-system read, no server involved).
async fn wait_for_version(pl: &Puller, version: u64, limit: Duration) {
    let start = Instant::now();
    while pl.current_version() != Some(version) {
        assert!(
            start.elapsed() < limit,
            "puller did not reach version {version} within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_without_a_valid_token_are_refused_with_401() {
    let p = PublisherFixture::start().await;
    let ca = reqwest::Certificate::from_pem(&std::fs::read(p.data.ca_cert_path()).unwrap()).unwrap();
    let client = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(ca)
        .build()
        .unwrap();
    for path in [
        "/v1/head",
        "/v1/versions/1/manifest.yaml",
        &format!("/v1/media/{}", "a".repeat(64)),
    ] {
        let url = format!("{}{path}", p.url());
        assert_eq!(
            client.get(&url).send().await.unwrap().status(),
            401,
            "{path} without token"
        );
        let wrong = client.get(&url).bearer_auth("skp_wrong").send().await.unwrap();
        assert_eq!(wrong.status(), 401, "{path} with a wrong token");
    }
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_is_used_only_when_both_sides_opt_in_by_name() {
    let p = PublisherFixture::start_with(skycast_publisher::TransportMode::InsecureHttp).await;
    p.publish(&write_planning(&p.dir.path().join("v"), &[&example_music()[0]]));
    let pl = p.add_player("main-1", "main", &p.plain_http_url());
    edit_config(&pl, |t| {
        t.insert("allow_insecure_http".into(), false.into());
    });
    assert_refused(&p, &pl, &["allow-insecure-http"], None).await;

    let out = pl
        .command("sync")
        .arg("--allow-insecure-http")
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        pl.check_consistent(&p.trusted()),
        Ok(Some(1)),
        "signatures still protect a plain-HTTP pull"
    );
    p.stop().await;
}
