//! Webhooks against the real binaries (issue 11, "done when" 2): `webhook add`
//! prints a secret once; a registered player that never reports becomes
//! unreachable under `serve --offline-after 2` and a tiny receiver on
//! 127.0.0.1 gets exactly one `alert.opened`, then, once the player reports,
//! exactly one `alert.resolved`, each body's HMAC-SHA256 checked here with the
//! printed secret; a restart of serve between the two re-sends nothing; a
//! receiver answering 500 gets the same delivery again (backoff) and no
//! duplicate once it answered 2xx.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use skycast_schema::report::{report_path, OutputState, Report};
use skycast_tests::fleet::{
    add_webhook, assert_opened_then_resolved, delivery_of, event_of, hmac_hex, json_of, kind_of,
    start_receiver, Received, Receiver,
};
use skycast_tests::serve_process::{publisher_cli, ServeProcess};

/// How long an alert and its webhook may take: offline-after (2 s), the alert
/// sweep, the hold-down before a resolve, the deliverer's tick.
const DEADLINE: Duration = Duration::from_secs(90);

/// The messages about `main-1` being unreachable (other alerts may open too).
fn unreachable(got: &[Received]) -> Vec<Received> {
    got.iter()
        .filter(|r| kind_of(r) == "unreachable")
        .cloned()
        .collect()
}

fn data_arg(data: &Path) -> &str {
    data.to_str().unwrap()
}

/// A data directory with player `main-1` (shop main) registered; its token.
fn setup(dir: &Path) -> (PathBuf, String) {
    let data = dir.join("publisher");
    publisher_cli(
        &["init", "--data", data_arg(&data)],
        &[("SKYCAST_ADMIN_PASSWORD", "admin-password")],
    );
    let config = publisher_cli(
        &[
            "player",
            "add",
            "--data",
            data_arg(&data),
            "--id",
            "main-1",
            "--shop",
            "main",
        ],
        &[],
    );
    let table: toml::Table = config.parse().unwrap();
    (data, table["token"].as_str().unwrap().to_string())
}

/// [`setup`] with a receiver answering 500 to its first `fail_first` requests
/// and a webhook to it.
struct Hooked {
    _dir: tempfile::TempDir,
    data: PathBuf,
    token: String,
    rx: Arc<Receiver>,
    url: String,
    hook: i64,
    secret: String,
}

impl Hooked {
    async fn start(fail_first: usize) -> Hooked {
        let dir = tempfile::tempdir().unwrap();
        let (data, token) = setup(dir.path());
        let (rx, addr) = start_receiver(fail_first).await;
        let url = format!("http://{addr}/hook");
        let (hook, secret) = add_webhook(&data, &url);
        Hooked {
            _dir: dir,
            data,
            token,
            rx,
            url,
            hook,
            secret,
        }
    }
}

async fn report(serve: &ServeProcess, client: &reqwest::Client, token: &str) {
    let body = Report {
        outbox: "box".into(),
        output: OutputState::NotStarted,
        agent_version: "webhooks test".into(),
        uptime_secs: 1,
        ..Report::default()
    };
    let resp = client
        .post(format!("{}{}", serve.url(), report_path("main-1")))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
}

/// Reports as `main-1` every half second until the receiver holds a
/// 2xx-answered `alert.resolved` about it.
async fn report_until_resolved(serve: &ServeProcess, token: &str, rx: &Receiver) -> Vec<Received> {
    let client = serve.client_builder().build().unwrap();
    let resolved = |got: &[Received]| {
        unreachable(got)
            .iter()
            .any(|r| r.answered < 300 && event_of(r) == "alert.resolved")
    };
    rx.wait_while("alert.resolved", DEADLINE, resolved, || async {
        report(serve, &client, token).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_incident_sends_one_signed_opened_and_one_resolved_even_across_a_restart() {
    // `_dir` bound by name: the data directory lives to the end of the test.
    let Hooked {
        _dir,
        data,
        token,
        rx,
        url,
        hook,
        secret,
    } = Hooked::start(0).await;
    assert!(secret.starts_with("skw_"), "{secret}");

    let started = Instant::now();
    let mut serve = ServeProcess::start(&data, &["--offline-after", "2"]).await;
    let got = rx
        .wait_for("alert.opened", DEADLINE, |g| {
            unreachable(g).iter().any(|r| event_of(r) == "alert.opened")
        })
        .await;
    let got = unreachable(&got);
    eprintln!(
        "unreachable alert reached the webhook {:.1} s after serve started (offline-after 2 s)",
        started.elapsed().as_secs_f64()
    );
    let opened = &got[0];
    assert_eq!(opened.signature, hmac_hex(&secret, &opened.body), "valid HMAC");
    let body: serde_json::Value = serde_json::from_slice(&opened.body).unwrap();
    assert_eq!(body["alert"]["kind"], "unreachable", "{body}");
    assert_eq!(body["alert"]["player_id"], "main-1");
    assert_eq!(body["alert"]["shop"], "main");
    assert!(body["alert"]["text_en"].as_str().is_some_and(|t| !t.is_empty()));
    assert!(body["alert"]["text_fr"].as_str().is_some_and(|t| !t.is_empty()));
    assert!(delivery_of(opened).starts_with(&format!("{hook}-")));

    // A restart: what was delivered is not sent again.
    serve.terminate();
    serve.wait().await;
    let serve = ServeProcess::start(&data, &["--offline-after", "2"]).await;
    let got = report_until_resolved(&serve, &token, &rx).await;
    // A little longer, the player still reporting: nothing else may come.
    let client = serve.client_builder().build().unwrap();
    for _ in 0..6 {
        report(&serve, &client, &token).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let (got, got_after) = (unreachable(&got), unreachable(&rx.got()));
    assert_eq!(
        got_after.len(),
        got.len(),
        "nothing after the resolve: {:#?}",
        json_of(&got_after)
    );
    assert_opened_then_resolved(&got_after, &secret);
    let resolved: serde_json::Value = serde_json::from_slice(&got_after[1].body).unwrap();
    assert_eq!(resolved["alert"]["id"], body["alert"]["id"], "the same incident");
    assert!(resolved["alert"]["resolved_at"].is_string());

    let list = publisher_cli(&["webhook", "list", "--data", data_arg(&data)], &[]);
    assert!(list.contains(&url), "{list}");
    assert!(!list.contains(&secret), "the list never shows the secret: {list}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_answering_500_gets_the_same_delivery_again_and_no_duplicate_after_2xx() {
    let Hooked {
        _dir,
        data,
        rx,
        secret,
        ..
    } = Hooked::start(2).await;
    let _serve = ServeProcess::start(&data, &["--offline-after", "2"]).await;
    let got = rx
        .wait_for("a delivery answered 2xx", DEADLINE, |g| {
            g.iter().any(|r| r.answered < 300)
        })
        .await;
    let statuses: Vec<u16> = got.iter().map(|r| r.answered).collect();
    assert_eq!(statuses, [500, 500, 204], "{:#?}", json_of(&got));
    let deliveries: Vec<String> = got.iter().map(delivery_of).collect();
    assert!(
        deliveries.iter().all(|d| *d == deliveries[0]),
        "the same delivery each time: {deliveries:?}"
    );
    for r in &got {
        assert_eq!(r.signature, hmac_hex(&secret, &r.body));
    }
    // Retries wait 1 s then 2 s: after the success, the same delivery never comes again.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let later = rx.got();
    let again = later
        .iter()
        .skip(got.len())
        .filter(|r| delivery_of(r) == deliveries[0])
        .count();
    assert_eq!(again, 0, "{:#?}", json_of(&later));
}

#[test]
fn webhook_cli_adds_lists_and_removes_and_refuses_plain_http_beyond_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let (data, _) = setup(dir.path());
    let (id, secret) = add_webhook(&data, "https://hooks.example.com/skycast");
    let list = publisher_cli(&["webhook", "list", "--data", data_arg(&data)], &[]);
    assert!(
        list.starts_with(&format!("{id}\thttps://hooks.example.com/skycast")),
        "{list}"
    );
    assert!(!list.contains(&secret));

    let refused = std::process::Command::new(skycast_tests::bin("skycast-publisher"))
        .args([
            "webhook",
            "add",
            "--data",
            data_arg(&data),
            "--url",
            "http://hooks.example.com/x",
        ])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        err.contains("plain http is allowed only to a loopback address"),
        "{err}"
    );

    let removed = publisher_cli(
        &[
            "webhook",
            "remove",
            "--data",
            data_arg(&data),
            "--id",
            &id.to_string(),
        ],
        &[],
    );
    assert!(removed.contains("removed"), "{removed}");
    let list = publisher_cli(&["webhook", "list", "--data", data_arg(&data)], &[]);
    assert!(list.trim().is_empty(), "{list}");
    let again = std::process::Command::new(skycast_tests::bin("skycast-publisher"))
        .args([
            "webhook",
            "remove",
            "--data",
            data_arg(&data),
            "--id",
            &id.to_string(),
        ])
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains(&format!("no webhook {id}")));
}
