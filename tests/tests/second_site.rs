//! A second site (`skycast-publisher follow`, issue 12): a real `serve` on the
//! primary, its store served by a real `git daemon` on loopback, and a real
//! `follow` on the backup with a certificate from the primary's CA. The backup
//! serves only what verified, takes the players' tokens along, never signs, and
//! a player listing both servers fails over to it and back on its own.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use skycast_tests::serve_process::{https_client, init_with_marketing, publisher_cli, ServeProcess};
use skycast_tests::{edit_config, example_music, register_player, write_planning, Puller};

const DEADLINE: Duration = Duration::from_secs(20);

/// `git daemon` exporting the primary's data directory on a loopback port, so
/// that its store is `git://127.0.0.1:<port>/store.git`. Killed when dropped
/// (started as `git-daemon` itself: the `git` wrapper would leave it orphaned).
struct GitDaemon {
    child: Child,
    port: u16,
}

impl GitDaemon {
    fn start(base: &Path) -> GitDaemon {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let exec_path = Command::new("git")
            .arg("--exec-path")
            .output()
            .expect("git is installed");
        let exec_path = PathBuf::from(String::from_utf8_lossy(&exec_path.stdout).trim());
        let child = Command::new(exec_path.join("git-daemon"))
            .arg("--reuseaddr")
            .arg("--export-all")
            .arg(format!("--base-path={}", base.display()))
            .arg("--listen=127.0.0.1")
            .arg(format!("--port={port}"))
            .arg(base)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("git daemon (Debian's git) starts");
        let daemon = GitDaemon { child, port };
        let deadline = Instant::now() + DEADLINE;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "git daemon does not listen on {port}");
            std::thread::sleep(Duration::from_millis(20));
        }
        daemon
    }

    fn store_url(&self) -> String {
        format!("git://127.0.0.1:{}/store.git", self.port)
    }
}

impl Drop for GitDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn token_of(puller: &Puller) -> String {
    let table: toml::Table = std::fs::read_to_string(&puller.config).unwrap().parse().unwrap();
    table["token"].as_str().unwrap().to_string()
}

/// `GET /v1/head` on `url` with `token`: its status and version.
async fn head(client: &reqwest::Client, url: &str, token: &str) -> (StatusCode, Option<u64>) {
    match client
        .get(format!("{url}/v1/head"))
        .bearer_auth(token)
        .send()
        .await
    {
        Ok(resp) => {
            let status = resp.status();
            let body: serde_json::Value = resp.json().await.unwrap_or_default();
            (status, body["version"].as_u64())
        }
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, None),
    }
}

/// Polls `head` until `want` holds for its answer, failing after [`DEADLINE`].
async fn until_head(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    what: &str,
    want: impl Fn(StatusCode, Option<u64>) -> bool,
) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let (status, version) = head(client, url, token).await;
        if want(status, version) {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: still {status} {version:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn publish(primary: &Path, dir: &Path, tracks: &[&str]) {
    let planning = write_planning(dir, tracks);
    publisher_cli(
        &[
            "publish",
            "--data",
            primary.to_str().unwrap(),
            "--planning",
            planning.to_str().unwrap(),
        ],
        &[],
    );
}

/// A primary with version 1 and player main-1, its store behind `git daemon`,
/// and a second site following it; the TLS material of the second site comes
/// from `tls issue` on the primary.
struct Sites {
    dir: tempfile::TempDir,
    primary_data: PathBuf,
    primary: ServeProcess,
    /// Serves the primary's store as long as the sites live.
    _daemon: GitDaemon,
    backup_data: PathBuf,
    backup: ServeProcess,
    puller: Puller,
    client: reqwest::Client,
}

async fn two_sites() -> Sites {
    let dir = tempfile::tempdir().unwrap();
    let primary_data = init_with_marketing(dir.path());
    let music = example_music();
    publish(&primary_data, &dir.path().join("v1"), &[&music[0]]);
    let primary = ServeProcess::start(&primary_data, &[]).await;
    let puller = register_player(
        &primary_data,
        &dir.path().join("shop"),
        "main-1",
        "main",
        &primary.url(),
    );
    let daemon = GitDaemon::start(&primary_data);

    let tls = dir.path().join("backup-tls");
    let said = publisher_cli(
        &[
            "tls",
            "issue",
            "--data",
            primary_data.to_str().unwrap(),
            "--out",
            tls.to_str().unwrap(),
        ],
        &[],
    );
    assert!(said.contains("server.pem"), "{said}");
    let key = std::fs::read_to_string(primary_data.join("keys/signing.pub")).unwrap();
    let backup_data = dir.path().join("backup");
    let backup = ServeProcess::start_follower(
        &backup_data,
        "127.0.0.1:0",
        &[
            "--from",
            &daemon.store_url(),
            "--key",
            key.trim(),
            "--tls-cert",
            tls.join("server.pem").to_str().unwrap(),
            "--tls-key",
            tls.join("server.key").to_str().unwrap(),
            "--ca-cert",
            tls.join("ca.pem").to_str().unwrap(),
            "--fetch-every-secs",
            "1",
        ],
    )
    .await;
    // The one CA the players pin is the primary's.
    let client = https_client(&primary_data.join("tls/ca.pem"))
        .http1_only()
        .build()
        .unwrap();
    Sites {
        dir,
        primary_data,
        primary,
        _daemon: daemon,
        backup_data,
        backup,
        puller,
        client,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_second_site_serves_the_primarys_verified_versions_and_tokens_and_never_signs() {
    let sites = two_sites().await;
    let token = token_of(&sites.puller);
    let (primary, backup) = (sites.primary.url(), sites.backup.url());

    // Version 1 and the player's token came along; the bytes are the primary's.
    until_head(
        &sites.client,
        &backup,
        &token,
        "the backup serves version 1",
        |s, v| s == StatusCode::OK && v == Some(1),
    )
    .await;
    let manifest = |url: String| {
        let client = sites.client.clone();
        let token = token.clone();
        async move {
            client
                .get(format!("{url}/v1/versions/1/manifest.yaml"))
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap()
        }
    };
    assert_eq!(manifest(primary.clone()).await, manifest(backup.clone()).await);

    // A new version on the primary reaches the backup within a few fetches.
    let music = example_music();
    publish(&sites.primary_data, &sites.dir.path().join("v2"), &[&music[1]]);
    let published = Instant::now();
    until_head(
        &sites.client,
        &backup,
        &token,
        "the backup serves version 2",
        |_, v| v == Some(2),
    )
    .await;
    println!(
        "version 2 on the backup {} ms after the publish",
        published.elapsed().as_millis()
    );

    // The backup never signs, nor registers players.
    let backup_dir = sites.backup_data.to_str().unwrap();
    let planning = write_planning(&sites.dir.path().join("v3"), &[&music[0]]);
    for args in [
        vec![
            "publish",
            "--data",
            backup_dir,
            "--planning",
            planning.to_str().unwrap(),
        ],
        vec!["rollback", "--data", backup_dir, "--to", "1"],
        vec![
            "player",
            "add",
            "--data",
            backup_dir,
            "--id",
            "x-1",
            "--shop",
            "main",
            "--server-url",
            &backup,
        ],
    ] {
        let out = Command::new(skycast_tests::bin("skycast-publisher"))
            .args(&args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} must be refused on the backup");
        assert!(err.contains("read-only copy of the primary"), "{args:?}: {err}");
    }
    assert!(
        !sites.backup_data.join("keys/signing.key").exists(),
        "the backup holds no signing key"
    );

    // A player disabled on the primary is refused by the backup too.
    publisher_cli(
        &[
            "player",
            "disable",
            "--data",
            sites.primary_data.to_str().unwrap(),
            "--id",
            "main-1",
        ],
        &[],
    );
    until_head(
        &sites.client,
        &backup,
        &token,
        "the backup refuses a disabled player",
        |s, _| s == StatusCode::UNAUTHORIZED,
    )
    .await;
}

/// Rewrites the primary's `main` by hand into a commit whose manifest says
/// version 3 under version 2's signature: what a compromised primary store or
/// a hostile network between the sites could offer.
fn forge_version_3(store: &Path) {
    let git = |args: &[&str], env: &[(&str, &Path)]| {
        let out = Command::new("git")
            .arg(format!("--git-dir={}", store.display()))
            .args(args)
            .envs(env.iter().map(|(k, v)| (*k, *v)))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let manifest = git(&["cat-file", "blob", "main:manifest.yaml"], &[]);
    assert!(manifest.contains("\nversion: 2\n"), "{manifest}");
    let forged_path = store.with_file_name("forged-manifest.yaml");
    std::fs::write(
        &forged_path,
        manifest.replace("\nversion: 2\n", "\nversion: 3\n") + "\n",
    )
    .unwrap();
    let blob = git(&["hash-object", "-w", forged_path.to_str().unwrap()], &[]);
    let index = store.with_file_name("forged-index");
    let env = [("GIT_INDEX_FILE", index.as_path())];
    git(&["read-tree", "main"], &env);
    git(
        &[
            "update-index",
            "--cacheinfo",
            &format!("100644,{blob},manifest.yaml"),
        ],
        &env,
    );
    let tree = git(&["write-tree"], &env);
    let commit = Command::new("git")
        .arg(format!("--git-dir={}", store.display()))
        .args(["commit-tree", &tree, "-p", "main", "-m", "forged"])
        .env("GIT_AUTHOR_NAME", "mallory")
        .env("GIT_AUTHOR_EMAIL", "m@example.invalid")
        .env("GIT_COMMITTER_NAME", "mallory")
        .env("GIT_COMMITTER_EMAIL", "m@example.invalid")
        .output()
        .unwrap();
    assert!(commit.status.success());
    let commit = String::from_utf8_lossy(&commit.stdout).trim().to_string();
    git(&["update-ref", "refs/heads/main", &commit], &[]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_version_on_the_primary_is_refused_and_the_backup_keeps_serving_the_last_good_one() {
    let sites = two_sites().await;
    let token = token_of(&sites.puller);
    let backup = sites.backup.url();
    let music = example_music();
    publish(&sites.primary_data, &sites.dir.path().join("v2"), &[&music[1]]);
    until_head(
        &sites.client,
        &backup,
        &token,
        "the backup serves version 2",
        |_, v| v == Some(2),
    )
    .await;

    forge_version_3(&sites.primary_data.join("store.git"));
    let deadline = Instant::now() + DEADLINE;
    while !sites.backup.plain_log().contains("version 3 from the primary") {
        assert!(
            Instant::now() < deadline,
            "no refusal logged: {}",
            sites.backup.plain_log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let log = sites.backup.plain_log();
    assert!(log.contains("is refused"), "{log}");
    assert_eq!(
        head(&sites.client, &backup, &token).await,
        (StatusCode::OK, Some(2)),
        "the backup still serves version 2"
    );
    // Its own store is untouched: `verify` passes on it with the primary's key.
    let said = publisher_cli(&["verify", "--data", sites.backup_data.to_str().unwrap()], &[]);
    assert!(said.contains("verified 2 versions"), "{said}");
}

async fn wait_for_server_in_use(pl: &Puller, url: &str) -> Duration {
    let start = Instant::now();
    loop {
        let status = pl.status().await;
        if status["server_in_use"] == url {
            return start.elapsed();
        }
        assert!(start.elapsed() < DEADLINE, "server_in_use is not {url}: {status}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn wait_for_version(pl: &Puller, version: u64) {
    let start = Instant::now();
    while pl.current_version() != Some(version) {
        assert!(
            start.elapsed() < DEADLINE,
            "the puller did not reach version {version}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_primary_stopped_a_player_fails_over_to_the_second_site_keeps_its_history_and_returns() {
    const POLL_SECS: u64 = 2;
    let mut sites = two_sites().await;
    let (primary_url, backup_url) = (sites.primary.url(), sites.backup.url());
    edit_config(&sites.puller, |t| {
        t.remove("server");
        let servers = vec![primary_url.clone(), backup_url.clone()];
        t.insert("servers".into(), toml::Value::try_from(servers).unwrap());
        t.insert("poll_interval_secs".into(), (POLL_SECS as i64).into());
        t.insert("long_poll_secs".into(), 20.into());
        t.insert("output".into(), "null".into());
    });
    let pl = sites.puller.clone();
    let mut daemon = pl.command("run").spawn().unwrap();
    wait_for_version(&pl, 1).await;
    wait_for_server_in_use(&pl, &primary_url).await;

    // The primary's serve stops in the middle of a long-poll.
    sites.primary.stop().await;
    let took = wait_for_server_in_use(&pl, &backup_url).await;
    println!(
        "failed over to the second site {} ms after the primary stopped",
        took.as_millis()
    );
    assert!(
        took <= Duration::from_secs(2 * POLL_SECS),
        "fail-over took {took:?}, more than 2 poll intervals"
    );
    assert_eq!(
        pl.current_version(),
        Some(1),
        "the same version, from the second site"
    );

    // A version published on the primary meanwhile reaches the player through
    // the second site (its store is still served by git).
    let music = example_music();
    publish(&sites.primary_data, &sites.dir.path().join("v2"), &[&music[1]]);
    let published = Instant::now();
    wait_for_version(&pl, 2).await;
    println!(
        "version 2 through the second site {} ms after the publish",
        published.elapsed().as_millis()
    );
    assert_eq!(pl.status().await["server_in_use"], backup_url.as_str());

    // The primary returns: the player goes back to it, its history intact.
    sites.primary = ServeProcess::start_on(&sites.primary_data, sites.primary.addr(), &[]).await;
    let took = wait_for_server_in_use(&pl, &primary_url).await;
    println!("back on the primary {} ms after it returned", took.as_millis());
    assert!(took <= Duration::from_secs(2 * POLL_SECS + 2), "took {took:?}");
    let status = pl.status().await;
    assert_eq!(status["highest_accepted"], 2, "{status}");
    assert_eq!(pl.current_version(), Some(2));
    daemon.kill().await.unwrap();
}
