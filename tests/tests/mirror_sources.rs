//! The puller's ordered sources (issue 12, done-when 3 and 4): media from a static
//! mirror first, the head from a mirror only when no server answers, one fixture per
//! attack a mirror can try (each refused as the origin's would be, then the next
//! source serves), and fail-over between two real `serve` processes.

use chrono::Utc;
use serde_json::Value;
use skycast_schema::protocol::{version_file_path, MANIFEST_FILE, SIGNATURE_FILE};
use skycast_tests::proxy::Proxy;
use skycast_tests::static_mirror::{Origin, StaticMirror};
use skycast_tests::{edit_config, example, example_music, file_id, write_planning, PublisherFixture, Puller};

/// A publisher with version 1 (`track`) published, a proxy in front of it that
/// counts the origin's media bytes, and a puller pointed at the proxy.
struct Bench {
    p: PublisherFixture,
    proxy: Proxy,
    pl: Puller,
    origin: Origin,
}

async fn bench(tracks: &[&str]) -> Bench {
    let p = PublisherFixture::start().await;
    let proxy = Proxy::start(&p).await;
    p.publish(&write_planning(&p.dir.path().join("v1"), tracks));
    let pl = p.add_player("shop-1", "main", &proxy.url());
    let origin = Origin::new(&p.url(), &p.data.ca_cert_path(), &pl.config);
    Bench { p, proxy, pl, origin }
}

impl Bench {
    /// Publishes `tracks` as the next version.
    fn publish(&self, name: &str, tracks: &[&str]) {
        self.p
            .publish(&write_planning(&self.p.dir.path().join(name), tracks));
    }
}

/// Lists `mirrors` in the puller's config, in order (plain HTTP, opted in).
fn use_mirrors(pl: &Puller, mirrors: &[&StaticMirror]) {
    edit_config(pl, |t| {
        let urls = mirrors.iter().map(|m| Value::String(m.url())).collect::<Vec<_>>();
        t.insert("mirrors".into(), toml::Value::try_from(urls).unwrap());
        t.insert("allow_http_mirrors".into(), true.into());
    });
}

fn served_by(status: &Value) -> &Value {
    &status["last_sync"]["served_by"]
}

/// Media bytes `url` served in the last sync, per `status --json`.
fn media_bytes_from(status: &Value, url: &str) -> u64 {
    served_by(status)["media"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["url"] == url)
        .map(|m| m["bytes"].as_u64().unwrap())
        .sum()
}

/// The errors recorded against `url` in the last sync.
fn refusals_of(status: &Value, url: &str) -> Vec<String> {
    served_by(status)["refused"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["url"] == url)
        .map(|r| r["error"].as_str().unwrap().to_string())
        .collect()
}

fn size_of(track: &str) -> u64 {
    file_id(&example(track)).1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_good_mirror_serves_every_media_byte_and_the_origin_none() {
    let music = example_music();
    let tracks = [music[0].as_str(), music[1].as_str()];
    let b = bench(&tracks).await;
    let mirror = StaticMirror::start().await;
    b.origin.mirror_version(1, &mirror, &b.p.trusted()).await;
    use_mirrors(&b.pl, &[&mirror]);

    b.pl.sync_ok().await;
    assert_eq!(b.pl.check_consistent(&b.p.trusted()), Ok(Some(1)));
    let total: u64 = tracks.iter().map(|t| size_of(t)).sum();
    let status = b.pl.status().await;
    assert_eq!(media_bytes_from(&status, &mirror.url()), total, "{status}");
    assert_eq!(media_bytes_from(&status, &b.proxy.url()), 0, "{status}");
    assert_eq!(served_by(&status)["head"], b.proxy.url().as_str());
    assert_eq!(served_by(&status)["manifest"], b.proxy.url().as_str());
    assert_eq!(status["server_in_use"], b.proxy.url().as_str());
    assert_eq!(served_by(&status)["refused"], serde_json::json!([]));
    // Counted on both sides of the wire too.
    assert_eq!(mirror.media_bytes_sent(), total);
    assert_eq!(b.proxy.media_bytes_sent(), 0);
    assert!(
        !mirror.saw_authorization(),
        "the player's token never reaches a mirror"
    );
    assert!(
        !mirror.requests().iter().any(|r| r.starts_with("v1/head")),
        "no mirror head while the origin answers"
    );
    b.p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_mirror_media_is_refused_and_the_origin_serves_it() {
    let track = example_music()[0].clone();
    let b = bench(&[&track]).await;
    let mirror = StaticMirror::start().await;
    let media = b.origin.mirror_version(1, &mirror, &b.p.trusted()).await;
    let mut bytes = mirror.get(&media[0].0);
    bytes[1000] ^= 0x01;
    mirror.put(&media[0].0, &bytes);
    use_mirrors(&b.pl, &[&mirror]);

    b.pl.sync_ok().await;
    assert_eq!(b.pl.check_consistent(&b.p.trusted()), Ok(Some(1)));
    let status = b.pl.status().await;
    let refused = refusals_of(&status, &mirror.url());
    assert!(
        refused.len() == 1 && refused[0].contains("does not match the manifest"),
        "{status}"
    );
    assert_eq!(media_bytes_from(&status, &b.proxy.url()), size_of(&track));
    assert_eq!(media_bytes_from(&status, &mirror.url()), 0);
    assert_eq!(
        served_by(&status)["refused"][0]["possible_attack"],
        true,
        "{status}"
    );
    assert_eq!(
        b.proxy.media_bytes_sent() as u64,
        size_of(&track),
        "the whole file again"
    );
    assert!(b.pl.media_files().len() == 1 && no_partial_files(&b.pl));
    b.p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_mirror_media_is_refused_and_the_origin_serves_it_from_byte_zero() {
    let track = example_music()[0].clone();
    let b = bench(&[&track]).await;
    let mirror = StaticMirror::start().await;
    let media = b.origin.mirror_version(1, &mirror, &b.p.trusted()).await;
    let bytes = mirror.get(&media[0].0);
    mirror.put(&media[0].0, &bytes[..bytes.len() / 2]);
    use_mirrors(&b.pl, &[&mirror]);

    b.pl.sync_ok().await;
    assert_eq!(b.pl.check_consistent(&b.p.trusted()), Ok(Some(1)));
    let status = b.pl.status().await;
    let refused = refusals_of(&status, &mirror.url());
    assert!(
        refused.len() == 1 && refused[0].contains(&format!("stopped at {} of", bytes.len() / 2)),
        "{status}"
    );
    assert_eq!(media_bytes_from(&status, &b.proxy.url()), size_of(&track));
    let origin_media: Vec<_> = b
        .proxy
        .log()
        .into_iter()
        .filter(|l| l.path.starts_with("/v1/media/"))
        .collect();
    assert!(
        origin_media.len() == 1 && origin_media[0].range.is_none(),
        "the mirror's half is not resumed from the origin: {origin_media:?}"
    );
    assert!(no_partial_files(&b.pl));
    b.p.stop().await;
}

fn no_partial_files(pl: &Puller) -> bool {
    std::fs::read_dir(pl.data.join("partial"))
        .map(|mut d| d.next().is_none())
        .unwrap_or(true)
}

/// The scene of the manifest attacks: the puller installed versions 1 and 2
/// (track A) from the origin; then version 3 (track A, published 40 days ago with
/// 30 days of validity: expired) and version 4 (track B) were published. `good`
/// holds version 4 with its head; `attacker` is empty, for the test to fill.
struct Scene {
    b: Bench,
    attacker: StaticMirror,
    good: StaticMirror,
    track_b: String,
}

async fn scene() -> Scene {
    let music = example_music();
    let b = bench(&[&music[0]]).await;
    b.pl.sync_ok().await;
    b.publish("v2", &[&music[0]]);
    b.pl.sync_ok().await;
    b.p.publish_at(
        &write_planning(&b.p.dir.path().join("v3"), &[&music[0]]),
        Utc::now() - chrono::Duration::days(40),
    );
    b.publish("v4", &[&music[1]]);
    let good = StaticMirror::start().await;
    b.origin.mirror_version(4, &good, &b.p.trusted()).await;
    Scene {
        b,
        attacker: StaticMirror::start().await,
        good,
        track_b: music[1].clone(),
    }
}

impl Scene {
    /// Stops the origin, lists [attacker, good] as mirrors and syncs: the puller must
    /// refuse what the attacker offers and install version 4 from the good mirror.
    /// Returns the attacker's refusals.
    async fn origin_stops_and_the_puller_syncs(mut self) -> Vec<String> {
        self.b.p.stop_serving().await;
        use_mirrors(&self.b.pl, &[&self.attacker, &self.good]);
        self.b.pl.sync_ok().await;
        let pl = &self.b.pl;
        assert_eq!(pl.check_consistent(&self.b.p.trusted()), Ok(Some(4)));
        let status = pl.status().await;
        assert_eq!(served_by(&status)["head"], self.good.url().as_str(), "{status}");
        assert_eq!(
            served_by(&status)["manifest"],
            self.good.url().as_str(),
            "{status}"
        );
        assert!(status["server_in_use"].is_null(), "{status}");
        assert!(
            !refusals_of(&status, &self.b.proxy.url()).is_empty(),
            "the silent origin is on record: {status}"
        );
        // Media come from the mirrors in order; whoever sent them, every byte was checked.
        let mirrors_bytes =
            media_bytes_from(&status, &self.attacker.url()) + media_bytes_from(&status, &self.good.url());
        assert_eq!(mirrors_bytes, size_of(&self.track_b), "{status}");
        assert!(!self.attacker.saw_authorization() && !self.good.saw_authorization());
        refusals_of(&status, &self.attacker.url())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_mirror_head_and_manifest_are_skipped_as_behind_and_the_next_mirror_serves() {
    let s = scene().await;
    // What the mirror held when version 1 was new: an old head and its manifest.
    s.b.origin.mirror_version(1, &s.attacker, &s.b.p.trusted()).await;
    let refused = s.origin_stops_and_the_puller_syncs().await;
    assert!(
        refused
            .iter()
            .any(|e| e.contains("is behind") && e.contains("version 1")),
        "{refused:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_manifest_offered_as_a_newer_version_by_a_mirror_is_refused() {
    let s = scene().await;
    let old = s.b.origin.fetch(&version_file_path(1, MANIFEST_FILE)).await;
    let old_sig = s.b.origin.fetch(&version_file_path(1, SIGNATURE_FILE)).await;
    s.attacker.put(&version_file_path(5, MANIFEST_FILE), &old);
    s.attacker.put(&version_file_path(5, SIGNATURE_FILE), &old_sig);
    s.attacker.put_head(5);
    let refused = s.origin_stops_and_the_puller_syncs().await;
    assert!(
        refused
            .iter()
            .any(|e| e.contains("possible replay") || e.contains("not 5")),
        "{refused:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_mirror_offering_an_expired_manifest_is_refused_and_the_next_mirror_serves() {
    let s = scene().await;
    // A mirror that stopped being filled after version 3, which has since expired.
    s.b.origin.mirror_version(3, &s.attacker, &s.b.p.trusted()).await;
    let refused = s.origin_stops_and_the_puller_syncs().await;
    assert!(refused.iter().any(|e| e.contains("expired")), "{refused:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_mirror_manifest_is_refused_and_the_next_mirror_serves() {
    let s = scene().await;
    s.b.origin.mirror_version(4, &s.attacker, &s.b.p.trusted()).await;
    let path = version_file_path(4, MANIFEST_FILE);
    let text = String::from_utf8(s.attacker.get(&path)).unwrap();
    let tampered = text.replacen("published_by: tester", "published_by: Tester", 1);
    assert_ne!(tampered, text, "the fixture changes the manifest");
    s.attacker.put(&path, tampered.as_bytes());
    let refused = s.origin_stops_and_the_puller_syncs().await;
    assert!(
        refused.iter().any(|e| e.contains("failed verification")),
        "{refused:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_mirror_signature_is_refused_and_the_next_mirror_serves() {
    let s = scene().await;
    s.b.origin.mirror_version(4, &s.attacker, &s.b.p.trusted()).await;
    let path = version_file_path(4, SIGNATURE_FILE);
    // Another valid-looking signature: the one of version 1.
    let other = s.b.origin.fetch(&version_file_path(1, SIGNATURE_FILE)).await;
    s.attacker.put(&path, &other);
    let refused = s.origin_stops_and_the_puller_syncs().await;
    assert!(
        refused.iter().any(|e| e.contains("failed verification")),
        "{refused:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_origin_stopped_a_newer_version_on_the_mirror_still_reaches_the_puller() {
    let music = example_music();
    let mut b = bench(&[&music[0]]).await;
    b.pl.sync_ok().await;
    b.publish("v2", &[&music[1]]);
    let mirror = StaticMirror::start().await;
    b.origin.mirror_version(2, &mirror, &b.p.trusted()).await;
    use_mirrors(&b.pl, &[&mirror]);
    b.p.stop_serving().await;

    b.pl.sync_ok().await;
    assert_eq!(b.pl.check_consistent(&b.p.trusted()), Ok(Some(2)));
    let status = b.pl.status().await;
    assert_eq!(served_by(&status)["head"], mirror.url().as_str(), "{status}");
    assert_eq!(media_bytes_from(&status, &mirror.url()), size_of(&music[1]));
    assert!(status["server_in_use"].is_null());
    let origin_down = refusals_of(&status, &b.proxy.url());
    assert!(origin_down.iter().any(|e| e.contains("502")), "{origin_down:?}");
}
