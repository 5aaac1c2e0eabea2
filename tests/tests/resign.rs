//! Short expiry and automatic re-signing (issue 13) with the real binaries: `serve`
//! signs the head's content again before half of its validity has passed, players
//! swap to it without downloading media, and with the publisher stopped past
//! expiry they keep playing and say they are stale; `resign` does it by hand.

use std::time::Duration;

use serde_json::Value;
use skycast_schema::Manifest;
use skycast_tests::fleet::{until, Fleet};
use skycast_tests::play::{write_planning_yaml, PlayerRun};
use skycast_tests::serve_process::publisher_cli;

const PLANNING: &str = "timezone: Europe/Paris
valid_for: 20s
playlists:
  day: {items: [music/tone-a.mp3, music/chords-b.mp3]}
shops:
  main: {}
schedule:
  - {playlist: day, shops: [all]}
";

/// The manifest of version `v` as the puller installed it.
fn installed(data: &std::path::Path, v: u64) -> Manifest {
    let bytes = std::fs::read(data.join("versions").join(v.to_string()).join("manifest.yaml")).unwrap();
    Manifest::parse(&bytes).unwrap()
}

/// Polls the puller's `status` until `done` holds; that status.
async fn status_when(
    puller: &skycast_tests::Puller,
    what: &str,
    timeout: Duration,
    done: impl Fn(&Value) -> bool,
) -> Value {
    until(what, timeout, || {
        let s = puller.status_blocking();
        if done(&s) {
            Ok(s)
        } else {
            Err(format!(
                "active version {}, stale {}",
                s["active_version"], s["stale"]
            ))
        }
    })
    .await
}

fn media_bytes(status: &Value) -> u64 {
    status["last_sync"]["served_by"]["media"]
        .as_array()
        .map_or(0, |m| m.iter().map(|e| e["bytes"].as_u64().unwrap_or(0)).sum())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_re_signs_before_half_the_validity_players_swap_without_media_and_go_stale_without_it() {
    let dir = tempfile::tempdir().unwrap();
    let files = ["music/tone-a.mp3", "music/chords-b.mp3"];
    let planning = write_planning_yaml(&dir.path().join("v1"), PLANNING, &files);
    let mut fleet = Fleet::publish_first(&planning);
    // Checked every second here; every minute by default.
    fleet.serve(30, &["--resign-schedule", "* * * * * *"]).await;
    let puller = fleet.add_player("main-1", "main");
    let logs = dir.path().join("run");
    let run = PlayerRun::start_output(&puller, "null", &logs, None, 1.0);
    let first = status_when(&puller, "version 1 installed", Duration::from_secs(20), |s| {
        s["active_version"] == 1
    })
    .await;
    assert!(
        media_bytes(&first) > 0,
        "the first sync downloads the media: {first}"
    );

    // Re-signed at half of 20 s: version 2 arrives within ~12 s, with no media bytes.
    let second = status_when(&puller, "the re-signed version 2", Duration::from_secs(20), |s| {
        s["active_version"].as_u64() >= Some(2)
    })
    .await;
    let (v1, v2) = (installed(&puller.data, 1), installed(&puller.data, 2));
    let age = (v2.published_at.0 - v1.published_at.0).num_seconds();
    println!(
        "version 2 re-signed {age} s after version 1 (valid 20 s); media bytes of that sync: {}",
        media_bytes(&second)
    );
    assert!((10..=12).contains(&age), "re-signed {age} s after the publish");
    assert_eq!(v2.published_by, "skycast-serve (re-sign)");
    assert_eq!(
        (v2.media.clone(), v2.program.clone()),
        (v1.media.clone(), v1.program.clone())
    );
    assert_eq!(v2.expires_at.0 - v2.published_at.0, chrono::Duration::seconds(20));
    assert_eq!(
        media_bytes(&second),
        0,
        "a re-signed version downloads nothing: {second}"
    );
    assert_eq!(second["stale"], false);

    // The publisher stops: past the last version's expiry the shop still plays, and
    // says it is stale.
    fleet.stop_serving().await;
    let stale = status_when(&puller, "the puller to say stale", Duration::from_secs(40), |s| {
        s["stale"] == true
    })
    .await;
    println!("stale: {}", stale["stale_reason"]);
    assert!(
        stale["now_playing"].is_object(),
        "still playing while stale: {stale}"
    );

    // By hand: `resign` while serve is down; once serve is back the shop takes it.
    let out = fleet.cli(&["resign", "--author", "ann"]);
    assert!(out.contains("with the content of version"), "{out}");
    fleet.serve_again().await;
    let fresh = status_when(
        &puller,
        "the hand re-signed version",
        Duration::from_secs(30),
        |s| s["stale"] == false,
    )
    .await;
    let v = fresh["active_version"].as_u64().unwrap();
    assert_eq!(installed(&puller.data, v).published_by, "ann", "{out}");
    assert_eq!(media_bytes(&fresh), 0);
    run.stop().await;

    // Nothing to re-sign in an empty store: a clear refusal.
    let empty = dir.path().join("empty");
    publisher_cli(
        &["init", "--data", empty.to_str().unwrap()],
        &[("SKYCAST_ADMIN_PASSWORD", "admin-password")],
    );
    let out = std::process::Command::new(skycast_tests::bin("skycast-publisher"))
        .args(["resign", "--data", empty.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("nothing to re-sign"),
        "{out:?}"
    );
}
