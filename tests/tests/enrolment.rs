//! Enrolment over real HTTPS with the real binaries: `skycast-publisher player
//! enroll` (another process, as on a server) or the admin's "Register a player"
//! page makes a one-time code; `skycast-puller enroll` on the "box" checks the
//! CA's fingerprint, trades the code for its configuration (written 0600), and
//! then syncs. A code works once; an expired, unknown or cancelled code and a
//! wrong fingerprint are each refused, and nothing is written or registered.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;

use reqwest::StatusCode;
use skycast_tests::web::WebClient;
use skycast_tests::{bin, example_music, write_planning, PublisherFixture, Puller};

/// What `player enroll` (or the page) shows the admin.
#[derive(Debug, Clone)]
struct Issued {
    code: String,
    fingerprint: String,
    /// The command to run on the box, word by word.
    command: Vec<String>,
}

/// `skycast-publisher player enroll` for player `id` of shop `main`, pointing at
/// the fixture, its data in `data` beside the config.
async fn player_enroll(fx: &PublisherFixture, id: &str, extra: &[&str]) -> Output {
    tokio::process::Command::new(bin("skycast-publisher"))
        .args(["player", "enroll", "--data"])
        .arg(fx.data.root())
        .args([
            "--id",
            id,
            "--shop",
            "main",
            "--server-url",
            &fx.url(),
            "--player-data",
            "data",
        ])
        .args(extra)
        .env("RUST_LOG", "warn")
        .output()
        .await
        .unwrap()
}

/// [`player_enroll`], failing the test unless it worked; what it shows.
async fn enroll_on_publisher(fx: &PublisherFixture, id: &str, extra: &[&str]) -> Issued {
    let out = player_enroll(fx, id, extra).await;
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "player enroll: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let field = |name: &str| {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap_or_else(|| panic!("no `{name}` in {stdout}"))
            .trim()
            .to_string()
    };
    let command = stdout
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("skycast-puller enroll "))
        .unwrap_or_else(|| panic!("no command in {stdout}"));
    Issued {
        code: field("code:"),
        fingerprint: field("fingerprint:"),
        command: command.split_whitespace().map(str::to_string).collect(),
    }
}

/// A shop box's files: the config `enroll` writes and the data it names.
fn box_dir(fx: &PublisherFixture, name: &str) -> Puller {
    let dir = fx.dir.path().join("boxes").join(name);
    std::fs::create_dir_all(&dir).unwrap();
    Puller {
        config: dir.join("puller.toml"),
        data: dir.join("data"),
    }
}

/// `skycast-puller enroll` with these flags and `--config`.
async fn puller_enroll(fx: &PublisherFixture, code: &str, fingerprint: &str, config: &Path) -> Output {
    run_enroll(
        &[
            "enroll",
            "--server",
            &fx.url(),
            "--code",
            code,
            "--fingerprint",
            fingerprint,
        ],
        config,
    )
    .await
}

/// The real puller binary with `args` (the first word `skycast-puller` left out) and `--config`.
async fn run_enroll(args: &[&str], config: &Path) -> Output {
    tokio::process::Command::new(bin("skycast-puller"))
        .args(args)
        .arg("--config")
        .arg(config)
        .env("RUST_LOG", "warn")
        .output()
        .await
        .unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

fn assert_enrolled(out: &Output, config: &Path) {
    assert!(out.status.success(), "enroll failed: {}", stderr(out));
    let mode = std::fs::metadata(config).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the config holds the token: owner only");
}

fn assert_refused(out: &Output, config: &Path, says: &str) {
    assert!(!out.status.success(), "enroll should have been refused");
    let text = stderr(out);
    assert!(text.contains(says), "the refusal says `{says}`: {text}");
    assert!(!config.exists(), "nothing written at {}", config.display());
}

fn published(fx: &PublisherFixture) {
    fx.publish(&write_planning(&fx.dir.path().join("v1"), &[&example_music()[0]]));
}

fn registered(fx: &PublisherFixture) -> Vec<String> {
    let players = fx.data.db().unwrap().players().unwrap();
    players.into_iter().map(|p| p.id).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_code_from_player_enroll_enrols_a_puller_that_then_syncs_the_published_version() {
    let fx = PublisherFixture::start().await;
    published(&fx);
    let issued = enroll_on_publisher(&fx, "main-1", &[]).await;
    assert!(issued.fingerprint.starts_with("sha256:"), "{issued:?}");
    let listed = String::from_utf8_lossy(
        &std::process::Command::new(bin("skycast-publisher"))
            .args(["player", "list", "--data"])
            .arg(fx.data.root())
            .output()
            .unwrap()
            .stdout,
    )
    .to_string();
    assert!(
        listed.lines().any(|l| l.starts_with("main-1\tmain\tpending\t")),
        "player list shows the pending enrolment: {listed}"
    );
    assert!(
        registered(&fx).is_empty(),
        "nobody is registered before the code is used"
    );

    // The command exactly as printed, with the box's config path.
    let shop = box_dir(&fx, "main-1");
    let words: Vec<&str> = issued.command[1..].iter().map(String::as_str).collect();
    let out = run_enroll(&words, &shop.config).await;
    assert_enrolled(&out, &shop.config);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("player `main-1`"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(registered(&fx), ["main-1"]);
    let config = std::fs::read_to_string(&shop.config).unwrap();
    assert!(
        !config.contains(&issued.code),
        "the config does not carry the code"
    );

    shop.sync_ok().await;
    assert_eq!(shop.current_version(), Some(1));

    // A registered id gets no second code: the refusal says what to do instead.
    let again = player_enroll(&fx, "main-1", &[]).await;
    assert!(!again.status.success());
    assert!(
        stderr(&again).contains("player rotate-token --id main-1"),
        "{}",
        stderr(&again)
    );
    fx.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_code_a_second_time_is_refused_and_writes_nothing() {
    let fx = PublisherFixture::start().await;
    let issued = enroll_on_publisher(&fx, "main-1", &[]).await;
    let first = box_dir(&fx, "first");
    assert_enrolled(
        &puller_enroll(&fx, &issued.code, &issued.fingerprint, &first.config).await,
        &first.config,
    );
    let token_before = std::fs::read_to_string(&first.config).unwrap();

    let second = box_dir(&fx, "second");
    let out = puller_enroll(&fx, &issued.code, &issued.fingerprint, &second.config).await;
    assert_refused(&out, &second.config, "already used");
    assert!(stderr(&out).contains("410"), "{}", stderr(&out));
    assert_eq!(registered(&fx), ["main-1"]);
    // The first box's token still works: the reuse changed nothing.
    assert_eq!(std::fs::read_to_string(&first.config).unwrap(), token_before);
    first.sync_ok().await;

    // Typed in lower case without dashes, it is the same code, and still used.
    let loose = issued.code.to_lowercase().replace('-', "");
    let out = puller_enroll(&fx, &loose, &issued.fingerprint, &second.config).await;
    assert_refused(&out, &second.config, "already used");
    fx.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_or_unknown_code_is_refused_and_registers_nothing() {
    let fx = PublisherFixture::start().await;
    // A validity of 0 s: expired as soon as it is made (no sleep).
    let issued = enroll_on_publisher(&fx, "main-1", &["--valid-seconds", "0"]).await;
    let shop = box_dir(&fx, "main-1");
    let out = puller_enroll(&fx, &issued.code, &issued.fingerprint, &shop.config).await;
    assert_refused(&out, &shop.config, "expired");
    assert!(registered(&fx).is_empty());

    let out = puller_enroll(&fx, "AAAA-BBBB-CCCC-DDDD", &issued.fingerprint, &shop.config).await;
    assert_refused(&out, &shop.config, "unknown");
    assert!(stderr(&out).contains("403"), "{}", stderr(&out));

    // The expired one no longer blocks the id: a new code works.
    let again = enroll_on_publisher(&fx, "main-1", &[]).await;
    let out = puller_enroll(&fx, &again.code, &again.fingerprint, &shop.config).await;
    assert_enrolled(&out, &shop.config);
    fx.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_fingerprint_is_refused_before_the_code_is_sent() {
    let fx = PublisherFixture::start().await;
    let issued = enroll_on_publisher(&fx, "main-1", &[]).await;
    let shop = box_dir(&fx, "main-1");
    // A pending id gets no second code either.
    let again = player_enroll(&fx, "main-1", &[]).await;
    assert!(!again.status.success());
    assert!(
        stderr(&again).contains("pending enrolment") && stderr(&again).contains("cancel-enrollment"),
        "{}",
        stderr(&again)
    );
    let wrong = format!("sha256:{}", "ab".repeat(32));
    let out = puller_enroll(&fx, &issued.code, &wrong, &shop.config).await;
    assert_refused(&out, &shop.config, "possible attack");
    let text = stderr(&out);
    assert!(
        text.contains(&issued.fingerprint) && text.contains(&wrong),
        "both fingerprints are named: {text}"
    );
    // The server never saw the code: it is still pending and works now.
    assert!(registered(&fx).is_empty());
    let colons = issued
        .fingerprint
        .trim_start_matches("sha256:")
        .as_bytes()
        .chunks(2)
        .map(|p| String::from_utf8_lossy(p).to_uppercase())
        .collect::<Vec<_>>()
        .join(":");
    let out = puller_enroll(&fx, &issued.code, &colons, &shop.config).await;
    assert_enrolled(&out, &shop.config);
    fx.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_codes_from_one_address_get_429_after_five() {
    let fx = PublisherFixture::start().await;
    let issued = enroll_on_publisher(&fx, "main-1", &[]).await;
    let ca = reqwest::Certificate::from_pem(&std::fs::read(fx.data.ca_cert_path()).unwrap()).unwrap();
    let client = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(ca)
        .build()
        .unwrap();
    let post = |code: String| {
        let client = client.clone();
        let url = format!("{}/v1/enroll", fx.url());
        async move {
            let resp = client
                .post(url)
                .json(&serde_json::json!({ "code": code }))
                .send()
                .await
                .unwrap();
            let status = resp.status();
            let retry = resp.headers().get("retry-after").is_some();
            let body: serde_json::Value = resp.json().await.unwrap();
            (
                status,
                retry,
                body["error"].as_str().unwrap_or_default().to_string(),
            )
        }
    };
    for i in 0..5 {
        let (status, _, _) = post(format!("WRNG-CODE-0000-000{i}")).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "wrong code {i}");
    }
    let (status, retry, error) = post("WRNG-CODE-0000-0009".into()).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{error}");
    assert!(
        retry && error.contains("too many wrong enrolment codes"),
        "{error}"
    );
    // Even the right code waits, from this address.
    let (status, _, _) = post(issued.code.clone()).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert!(registered(&fx).is_empty());

    let (status, body) = {
        let resp = client
            .get(format!("{}/v1/ca.pem", fx.url()))
            .send()
            .await
            .unwrap();
        (resp.status(), resp.text().await.unwrap())
    };
    assert_eq!(status, StatusCode::OK, "the CA is public");
    assert_eq!(body, std::fs::read_to_string(fx.data.ca_cert_path()).unwrap());
    fx.stop().await;
}

/// The text of the element with `id="<id>"`, unescaped.
fn element(body: &str, id: &str) -> String {
    let start = body
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no #{id} in {body}"));
    let rest = &body[start..];
    let open = rest.find('>').unwrap() + 1;
    let close = rest[open..].find('<').unwrap() + open;
    rest[open..close]
        .replace("&#x2f;", "/")
        .replace("&quot;", "\"")
        .replace("&#x27;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

async fn signed_in_admin(fx: &PublisherFixture) -> WebClient {
    let mut web = fx.web_client();
    let page = web.login("admin", "admin-password").await;
    assert_eq!(page.status, StatusCode::OK, "admin signs in: {}", page.body);
    web
}

/// Points the publisher's public URL (what codes and configs name) at the fixture.
fn public_url_is_the_fixture(fx: &PublisherFixture) {
    let path: PathBuf = fx.data.settings_path();
    let mut settings: toml::Table = std::fs::read_to_string(&path).unwrap().parse().unwrap();
    settings.insert("public_url".into(), fx.url().into());
    std::fs::write(&path, toml::to_string(&settings).unwrap()).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_page_shows_the_pending_enrolment_then_the_enrolled_player_and_its_code_works() {
    let fx = PublisherFixture::start().await;
    public_url_is_the_fixture(&fx);
    published(&fx);
    let mut web = signed_in_admin(&fx).await;
    let form = web.get("/admin/enrolments").await;
    assert_eq!(form.status, StatusCode::OK);
    assert!(form.body.contains("id=\"enrol-form\""), "{}", form.body);

    let shown = web
        .post(
            "/admin/enrolments",
            &[("id", "web-1"), ("shop", "main"), ("valid_minutes", "30")],
        )
        .await;
    assert_eq!(shown.status, StatusCode::OK, "{}", shown.body);
    let code = element(&shown.body, "enrol-code");
    let fingerprint = element(&shown.body, "enrol-fingerprint");
    let command = element(&shown.body, "enrol-command");
    assert_eq!(code.len(), 19, "{code}");
    assert_eq!(
        command,
        format!(
            "skycast-puller enroll --server {} --code {code} --fingerprint {fingerprint}",
            fx.url()
        )
    );
    assert!(!element(&shown.body, "enrol-expires").is_empty());

    let listing = web.get("/admin/enrolments").await;
    assert!(
        listing
            .body
            .contains("data-test=\"pending-row\" data-player=\"web-1\""),
        "{}",
        listing.body
    );
    assert!(!listing.body.contains(&code), "the code is shown only once");
    let home = web.get("/admin").await;
    assert!(
        home.body.contains("id=\"pending-enrolments\" data-count=\"1\""),
        "{}",
        home.body
    );

    // The same id again: refused with a message saying what to do.
    let again = web
        .post("/admin/enrolments", &[("id", "web-1"), ("shop", "main")])
        .await;
    assert!(
        again.flash().unwrap_or_default().contains("pending enrolment"),
        "{:?}",
        again.flash()
    );

    let shop = box_dir(&fx, "web-1");
    let words: Vec<&str> = command.split_whitespace().skip(1).collect();
    assert_enrolled(&run_enroll(&words, &shop.config).await, &shop.config);
    // The page's config names the data directory relative to itself (skycast-web-1).
    let enrolled = Puller {
        config: shop.config.clone(),
        data: shop.config.parent().unwrap().join("skycast-web-1"),
    };
    enrolled.sync_ok().await;
    assert_eq!(enrolled.current_version(), Some(1));

    let listing = web.get("/admin/enrolments").await;
    assert!(
        !listing.body.contains("data-test=\"pending-row\""),
        "{}",
        listing.body
    );
    assert!(
        listing
            .body
            .contains("data-test=\"enrolled-row\" data-player=\"web-1\""),
        "{}",
        listing.body
    );
    let home = web.get("/admin").await;
    assert!(
        home.body
            .contains("data-test=\"player-row\" data-player=\"web-1\""),
        "the enrolled player is listed with the others: {}",
        home.body
    );
    assert!(
        home.body
            .contains("data-player=\"web-1\" data-action=\"enrolled\""),
        "the enrolment is in the recent player changes: {}",
        home.body
    );

    // A code cancelled on the page is refused.
    let shown = web
        .post("/admin/enrolments", &[("id", "web-2"), ("shop", "main")])
        .await;
    let code = element(&shown.body, "enrol-code");
    let cancelled = web.post("/admin/enrolments/web-2/cancel", &[]).await;
    assert!(
        cancelled.flash().unwrap_or_default().contains("cancelled"),
        "{:?}",
        cancelled.flash()
    );
    let other = box_dir(&fx, "web-2");
    let out = puller_enroll(&fx, &code, &fingerprint, &other.config).await;
    assert_refused(&out, &other.config, "cancelled");
    assert_eq!(registered(&fx), ["web-1"]);
    fx.stop().await;
}
