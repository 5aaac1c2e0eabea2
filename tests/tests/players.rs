//! Cutting a player off and letting it back in, over real HTTPS with the real
//! `skycast-publisher player ...` CLI (another process, as on a server) and the
//! admin page: a disabled, re-keyed or removed token gets 401 at its next request,
//! a long-poll already waiting included; `enable` restores the old token, the new
//! token works, and who did each change (and how, and when) is shown.

use std::process::Output;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use skycast_tests::web::{Page, WebClient, TEST_PASSWORD};
use skycast_tests::{bin, example_music, write_planning, PublisherFixture, Puller};
use tokio::task::JoinHandle;

/// How long a cut-off long-poll may take to be answered: far below its 60 s wait.
const PROMPT: Duration = Duration::from_secs(5);

/// Runs `skycast-publisher player <args> --data <fixture>` as a separate process.
async fn player_cli(fx: &PublisherFixture, args: &[&str]) -> Output {
    tokio::process::Command::new(bin("skycast-publisher"))
        .arg("player")
        .args(args)
        .arg("--data")
        .arg(fx.data.root())
        .env("RUST_LOG", "warn")
        .output()
        .await
        .unwrap()
}

/// Like [`player_cli`], failing the test unless it exits 0; returns stdout.
async fn player_cli_ok(fx: &PublisherFixture, args: &[&str]) -> String {
    let out = player_cli(fx, args).await;
    assert!(
        out.status.success(),
        "player {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// The token in a puller configuration.
fn token_in(config: &str) -> String {
    let table: toml::Table = config.parse().expect("a puller configuration is TOML");
    table["token"].as_str().expect("token").to_string()
}

fn token_of(puller: &Puller) -> String {
    token_in(&std::fs::read_to_string(&puller.config).unwrap())
}

/// A client that speaks HTTP/1.1, as players do: a cut-off token's connection
/// is closed with `Connection: close`, which HTTP/2 has no header for.
fn https_client(fx: &PublisherFixture) -> reqwest::Client {
    let ca = reqwest::Certificate::from_pem(&std::fs::read(fx.data.ca_cert_path()).unwrap()).unwrap();
    reqwest::Client::builder()
        .http1_only()
        .tls_built_in_root_certs(false)
        .add_root_certificate(ca)
        .build()
        .unwrap()
}

async fn head_status(fx: &PublisherFixture, token: &str) -> StatusCode {
    https_client(fx)
        .get(format!("{}/v1/head", fx.url()))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
}

/// A long-poll of `head` for a version after the current one, waiting up to 60 s,
/// checked to be held by the server (not answered within a moment) before it is
/// handed back.
async fn waiting_long_poll(fx: &PublisherFixture, token: &str) -> JoinHandle<reqwest::Response> {
    let client = https_client(fx);
    // Warm the connection first, so the held request is not still in its handshake.
    let first = client
        .get(format!("{}/v1/head", fx.url()))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(
        first.status(),
        StatusCode::OK,
        "the token works before the change"
    );
    let after: serde_json::Value = first.json().await.unwrap();
    let after = after["version"].as_u64().unwrap();
    let url = format!("{}/v1/head?after={after}&wait=60", fx.url());
    let token = token.to_string();
    let mut poll = tokio::spawn(async move { client.get(url).bearer_auth(token).send().await.unwrap() });
    // Not a wait for the server: the assertion that the long-poll is being held.
    let answered = tokio::time::timeout(Duration::from_millis(500), &mut poll).await;
    assert!(
        answered.is_err(),
        "the long-poll answered at once instead of waiting"
    );
    poll
}

/// Awaits a long-poll that a change should cut off: 401, promptly, connection closed.
async fn assert_cut_off(poll: JoinHandle<reqwest::Response>, changed: Instant, what: &str) {
    let resp = tokio::time::timeout(PROMPT, poll)
        .await
        .unwrap_or_else(|_| panic!("the waiting long-poll was not answered within {PROMPT:?} of {what}"))
        .unwrap();
    let took = changed.elapsed();
    println!("waiting long-poll answered {} ms after {what}", took.as_millis());
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "after {what}");
    assert_eq!(
        resp.headers().get("connection").and_then(|v| v.to_str().ok()),
        Some("close"),
        "the connection of a cut-off token is closed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabled_and_rotated_tokens_are_refused_at_the_next_request_even_mid_long_poll() {
    let fx = PublisherFixture::start().await;
    fx.publish(&write_planning(&fx.dir.path().join("v1"), &[&example_music()[0]]));
    let puller = fx.add_player("main-1", "main", &fx.url());
    let old = token_of(&puller);

    let poll = waiting_long_poll(&fx, &old).await;
    let changed = Instant::now();
    player_cli_ok(&fx, &["disable", "--id", "main-1", "--by", "ann"]).await;
    assert_cut_off(poll, changed, "player disable").await;
    assert_eq!(head_status(&fx, &old).await, StatusCode::UNAUTHORIZED);

    player_cli_ok(&fx, &["enable", "--id", "main-1", "--by", "ann"]).await;
    let poll = waiting_long_poll(&fx, &old).await;
    let changed = Instant::now();
    let config = player_cli_ok(
        &fx,
        &[
            "rotate-token",
            "--id",
            "main-1",
            "--by",
            "ann",
            "--server-url",
            &fx.url(),
            "--player-data",
            "data",
        ],
    )
    .await;
    assert_cut_off(poll, changed, "player rotate-token").await;
    assert_eq!(head_status(&fx, &old).await, StatusCode::UNAUTHORIZED);

    // The printed configuration is a working puller configuration with the new token.
    let new = token_in(&config);
    assert_ne!(new, old);
    assert_eq!(head_status(&fx, &new).await, StatusCode::OK);
    std::fs::write(&puller.config, &config).unwrap();
    puller.sync_ok().await;
    assert_eq!(puller.check_consistent(&fx.trusted()), Ok(Some(1)));
    fx.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enable_lets_a_disabled_player_in_again_with_its_old_token() {
    let fx = PublisherFixture::start().await;
    fx.publish(&write_planning(&fx.dir.path().join("v1"), &[&example_music()[0]]));
    let puller = fx.add_player("main-1", "main", &fx.url());
    let other = fx.add_player("lille-1", "lille", &fx.url());

    let said = player_cli_ok(&fx, &["disable", "--id", "main-1"]).await;
    assert!(said.contains("player `main-1` disabled"), "{said}");
    let refused = puller.sync().await;
    assert!(!refused.status.success(), "a disabled player's sync is refused");
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("401"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    assert_eq!(
        head_status(&fx, &token_of(&other)).await,
        StatusCode::OK,
        "other players are not affected"
    );
    let again = player_cli_ok(&fx, &["disable", "--id", "main-1"]).await;
    assert!(again.contains("already disabled"), "{again}");

    let said = player_cli_ok(&fx, &["enable", "--id", "main-1"]).await;
    assert!(said.contains("player `main-1` enabled"), "{said}");
    puller.sync_ok().await;
    assert_eq!(puller.check_consistent(&fx.trusted()), Ok(Some(1)));
    fx.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_player_is_refused_mid_long_poll_and_its_id_can_be_registered_again() {
    let fx = PublisherFixture::start().await;
    let puller = fx.add_player("main-1", "main", &fx.url());
    let old = token_of(&puller);

    let poll = waiting_long_poll(&fx, &old).await;
    let changed = Instant::now();
    let said = player_cli_ok(&fx, &["remove", "--id", "main-1", "--by", "ann"]).await;
    assert!(said.contains("player `main-1` (shop `main`) removed"), "{said}");
    assert_cut_off(poll, changed, "player remove").await;
    assert_eq!(head_status(&fx, &old).await, StatusCode::UNAUTHORIZED);
    assert_eq!(
        player_cli_ok(&fx, &["list"]).await,
        "",
        "a removed player is not listed"
    );
    let history = player_cli_ok(&fx, &["list", "--history"]).await;
    assert!(
        history.starts_with("main-1\tremoved by ann (cli) at "),
        "{history}"
    );

    let again = fx.add_player("main-1", "main", &fx.url());
    assert_eq!(head_status(&fx, &token_of(&again)).await, StatusCode::OK);
    assert_eq!(head_status(&fx, &old).await, StatusCode::UNAUTHORIZED);
    fx.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn player_list_shows_each_player_state_and_who_changed_it_last() {
    let fx = PublisherFixture::start().await;
    fx.add_player("main-1", "main", &fx.url());
    fx.add_player("lille-1", "lille", &fx.url());
    fx.add_player("lille-2", "lille", &fx.url());
    player_cli_ok(&fx, &["disable", "--id", "lille-2", "--by", "ann"]).await;
    // Without --by, the change is recorded under the account running the command.
    let out = tokio::process::Command::new(bin("skycast-publisher"))
        .args(["player", "rotate-token", "--id", "main-1", "--data"])
        .arg(fx.data.root())
        .env("USER", "bob")
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let listed = player_cli_ok(&fx, &["list"]).await;
    let rows: Vec<Vec<&str>> = listed.lines().map(|l| l.split('\t').collect()).collect();
    let summary: Vec<(&str, &str, &str, &str)> = rows.iter().map(|r| (r[0], r[1], r[2], r[4])).collect();
    assert_eq!(summary.len(), 3, "{listed}");
    assert_eq!(summary[0], ("lille-1", "lille", "enabled", "-"), "never changed");
    assert_eq!(
        (summary[1].0, summary[1].1, summary[1].2),
        ("lille-2", "lille", "disabled")
    );
    assert!(
        summary[1].3.starts_with("disabled by ann (cli) at 20"),
        "{listed}"
    );
    assert_eq!(
        (summary[2].0, summary[2].1, summary[2].2),
        ("main-1", "main", "enabled")
    );
    assert!(
        summary[2].3.starts_with("token rotated by bob (cli) at 20"),
        "{listed}"
    );
    for row in &rows {
        assert!(
            chrono::DateTime::parse_from_rfc3339(row[3]).is_ok(),
            "registered: {}",
            row[3]
        );
    }
    fx.stop().await;
}

/// The text of a page with minijinja's escapes undone.
fn unescaped(page: &Page) -> String {
    page.body
        .replace("&quot;", "\"")
        .replace("&#x27;", "'")
        .replace("&#x2f;", "/")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

async fn admin(fx: &PublisherFixture) -> WebClient {
    let mut web = fx.web_client();
    let page = web.login("admin", "admin-password").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    web
}

/// The row of player `id` on the admin page.
fn player_row<'a>(page: &'a Page, id: &str) -> &'a str {
    let start = page
        .body
        .find(&format!("data-player=\"{id}\""))
        .unwrap_or_else(|| panic!("no row for {id}: {}", page.body));
    let rest = &page.body[start..];
    &rest[..rest.find("</tr>").unwrap_or(rest.len())]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_page_disables_re_keys_and_removes_players_and_shows_who_did_it() {
    let fx = PublisherFixture::start().await;
    fx.add_role_users();
    let main = fx.add_player("main-1", "main", &fx.url());
    let lille = fx.add_player("lille-1", "lille", &fx.url());
    fx.add_player("nantes-1", "nantes", &fx.url());
    player_cli_ok(&fx, &["disable", "--id", "nantes-1", "--by", "ann"]).await;
    let mut web = admin(&fx).await;

    let home = web.get("/admin").await;
    let row = player_row(&home, "nantes-1");
    assert!(row.contains("Disabled · ann (command line)"), "{row}");

    // Disabling from the page cuts off a waiting long-poll too (the page writes
    // through this process, the long-poll learns of it on the players' tick).
    let poll = waiting_long_poll(&fx, &token_of(&main)).await;
    let changed = Instant::now();
    let page = web.post("/admin/players/main-1/disable", &[]).await;
    assert_eq!(page.path, "/admin");
    assert_eq!(
        page.flash().as_deref(),
        Some("Player main-1 disabled: its token is refused from its next request")
    );
    assert_cut_off(poll, changed, "disable on the admin page").await;
    let row = player_row(&page, "main-1");
    assert!(row.contains("Disabled · admin (web)"), "{row}");
    let page = web.post("/admin/players/main-1/enable", &[]).await;
    assert!(
        player_row(&page, "main-1").contains("Enabled · admin (web)"),
        "{}",
        page.body
    );
    assert_eq!(head_status(&fx, &token_of(&main)).await, StatusCode::OK);

    // A new token: the page shows the new configuration once; the old token is refused.
    let page = web.post("/admin/players/lille-1/rotate-token", &[]).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let text = unescaped(&page);
    let config = &text[text.find("<pre id=\"puller-config\">").unwrap() + 24..];
    let config = &config[..config.find("</pre>").unwrap()];
    let new = token_in(config);
    assert_eq!(head_status(&fx, &new).await, StatusCode::OK);
    assert_eq!(
        head_status(&fx, &token_of(&lille)).await,
        StatusCode::UNAUTHORIZED
    );
    assert!(config.contains("player_id = \"lille-1\""), "{config}");

    // Without the form's CSRF token nothing happens; other roles may not.
    let page = web.post_raw("/admin/players/main-1/remove", &[]).await;
    assert_eq!(page.status, StatusCode::FORBIDDEN, "{}", page.body);
    let mut marketing = fx.web_client();
    marketing.login("marketing", TEST_PASSWORD).await;
    let page = marketing.post("/admin/players/main-1/remove", &[]).await;
    assert_eq!(page.status, StatusCode::FORBIDDEN, "{}", page.body);
    assert_eq!(head_status(&fx, &token_of(&main)).await, StatusCode::OK);

    let page = web.post("/admin/players/main-1/remove", &[]).await;
    assert_eq!(
        page.flash().as_deref(),
        Some("Player main-1 (shop main) removed: its token is refused from its next request")
    );
    assert!(
        !page
            .body
            .contains("data-test=\"player-row\" data-player=\"main-1\""),
        "a removed player is not listed"
    );
    assert_eq!(head_status(&fx, &token_of(&main)).await, StatusCode::UNAUTHORIZED);
    let events: Vec<&str> = page
        .body
        .match_indices("data-test=\"player-event\"")
        .map(|(at, _)| {
            let rest = &page.body[at..];
            &rest[..rest.find("</tr>").unwrap()]
        })
        .collect();
    assert!(
        events[0].contains("data-player=\"main-1\" data-action=\"removed\""),
        "{events:?}"
    );
    assert!(events[0].contains("admin (web)"), "{events:?}");
    assert!(
        events[1].contains("data-player=\"lille-1\" data-action=\"token_rotated\""),
        "{events:?}"
    );
    let last = events.last().unwrap();
    assert!(
        last.contains("data-player=\"nantes-1\" data-action=\"disabled\"")
            && last.contains("ann (command line)"),
        "{events:?}"
    );

    // The CLI shows what the page did.
    let listed = player_cli_ok(&fx, &["list"]).await;
    assert!(listed.contains("lille-1\tlille\tenabled\t"), "{listed}");
    assert!(listed.contains("\ttoken rotated by admin (web) at "), "{listed}");
    fx.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_player_id_gets_a_clear_error_and_changes_nothing() {
    let fx = PublisherFixture::start().await;
    let puller = fx.add_player("main-1", "main", &fx.url());
    for action in ["disable", "enable", "rotate-token", "remove"] {
        let out = player_cli(&fx, &[action, "--id", "main-2"]).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{action} of an unknown id succeeded");
        assert!(
            out.stdout.is_empty(),
            "{action} printed {:?}",
            String::from_utf8_lossy(&out.stdout)
        );
        assert!(
            stderr.contains("player `main-2`") && stderr.contains("`skycast-publisher player list`"),
            "{action}: {stderr}"
        );
    }
    assert_eq!(
        player_cli_ok(&fx, &["list", "--history"]).await,
        "",
        "nothing is recorded"
    );
    assert_eq!(head_status(&fx, &token_of(&puller)).await, StatusCode::OK);

    let mut web = admin(&fx).await;
    let page = web.post("/admin/players/main-2/disable", &[]).await;
    assert_eq!(page.path, "/admin");
    let flash = page.flash().unwrap_or_default();
    assert!(
        flash.contains("main-2") && flash.contains("player list"),
        "{flash}"
    );
    fx.stop().await;
}

/// An HTTP/2 connection has no `Connection: close`: the server ends it with
/// GOAWAY once a response asked for the close, so a client holding a cut-off
/// token keeps nothing open whatever protocol it speaks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_off_token_s_http2_connection_is_closed_after_its_401() {
    use skycast_tests::fleet_sim::{tls_client, HttpVersion};

    let fx = PublisherFixture::start().await;
    fx.publish(&write_planning(&fx.dir.path().join("v1"), &[&example_music()[0]]));
    let puller = fx.add_player("main-1", "main", &fx.url());
    let token = token_of(&puller);
    let addr: std::net::SocketAddr = fx.url().trim_start_matches("https://").parse().unwrap();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let tls = tokio_rustls::TlsConnector::from(tls_client(&fx.data.ca_cert_path(), HttpVersion::Http2))
        .connect(name, tcp)
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut send, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tls),
    )
    .await
    .unwrap();
    let mut connection = tokio::spawn(connection);
    let head = |send: &mut hyper::client::conn::http2::SendRequest<axum::body::Body>| {
        let request = axum::http::Request::get(format!("https://{addr}/v1/head"))
            .header("authorization", format!("Bearer {token}"))
            .body(axum::body::Body::empty())
            .unwrap();
        send.send_request(request)
    };
    assert_eq!(head(&mut send).await.unwrap().status(), StatusCode::OK);
    // Still open a moment later: only a close asked for ends it.
    assert!(tokio::time::timeout(Duration::from_millis(300), &mut connection)
        .await
        .is_err());

    player_cli_ok(&fx, &["disable", "--id", "main-1", "--by", "ann"]).await;
    assert_eq!(head(&mut send).await.unwrap().status(), StatusCode::UNAUTHORIZED);
    let closed = tokio::time::timeout(Duration::from_secs(5), &mut connection).await;
    assert!(
        closed.is_ok(),
        "the HTTP/2 connection is still open 5 s after the 401"
    );
    fx.stop().await;
}
