//! The web UI's security at the HTTP level, over real HTTPS on loopback: every
//! role against every other role's routes, CSRF, sign-in throttling and session
//! cookies, XSS and SQL metacharacters in every text field, path tricks in
//! uploaded file names, and an oversize upload against the real binary's memory.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use reqwest::redirect::Policy;
use reqwest::{Client, StatusCode};
use skycast_tests::serve_process::{https_client, init_with_marketing, ServeProcess};
use skycast_tests::web::{Page, WebClient, TEST_PASSWORD};
use skycast_tests::{example_music, write_planning, PublisherFixture};

const ROLES: [&str; 4] = ["admin", "marketing", "commercial", "auditor"];

fn password(user: &str) -> &'static str {
    if user == "admin" {
        "admin-password"
    } else {
        TEST_PASSWORD
    }
}

/// A publisher with one user per role and one published version.
async fn publisher() -> PublisherFixture {
    let fx = PublisherFixture::start().await;
    fx.add_role_users();
    let music = example_music();
    fx.publish(&write_planning(&fx.dir.path().join("planning"), &[&music[0]]));
    // The library imports the published media on first look: do it now, so that
    // later snapshots only see what requests change.
    let db = fx.data.db().unwrap();
    skycast_publisher::workspace::Workspace::new(&fx.data, &db)
        .library(None)
        .unwrap();
    fx
}

async fn signed_in(fx: &PublisherFixture, user: &str) -> WebClient {
    let mut web = fx.web_client();
    let page = web.login(user, password(user)).await;
    assert_eq!(page.status, StatusCode::OK, "{user} signs in: {}", page.body);
    assert!(web.csrf.is_some(), "{user}'s landing page carries a CSRF token");
    web
}

/// A client that shows redirects and Set-Cookie headers instead of following them.
fn raw_client(fx: &PublisherFixture) -> Client {
    https_client(&fx.data.ca_cert_path())
        .redirect(Policy::none())
        .build()
        .unwrap()
}

fn head_version(fx: &PublisherFixture) -> Option<u64> {
    fx.data.store().unwrap().head_version().unwrap().map(|(v, _)| v)
}

/// Everything a refused request must leave alone: the published head, the
/// database tables people edit (not sessions or failed sign-ins, which requests
/// legitimately touch) and every file of the data directory outside the store.
#[derive(Debug, PartialEq, Eq)]
struct Snapshot {
    head: Option<u64>,
    tables: String,
    files: BTreeSet<String>,
}

fn snapshot(fx: &PublisherFixture) -> Snapshot {
    Snapshot {
        head: head_version(fx),
        tables: dump_tables(&fx.data.db_path()),
        files: tree(fx.data.root())
            .into_iter()
            .filter(|f| {
                !f.starts_with("store.git/") && !f.starts_with("publisher.sqlite") && f != "store.lock"
            })
            .collect(),
    }
}

const EDITABLE_TABLES: &str = "users players settings library draft publish_requests";

/// Rows of `query`, columns joined by `|` like the `sqlite3` shell prints them,
/// read through a read-only connection.
fn sql_lines(db: &Path, query: &str) -> Vec<String> {
    use rusqlite::types::ValueRef;
    let conn = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .unwrap_or_else(|e| panic!("open {}: {e}", db.display()));
    let mut stmt = conn.prepare(query).unwrap_or_else(|e| panic!("{query}: {e}"));
    let columns = stmt.column_count();
    let rows = stmt
        .query_map([], |row| {
            let cells: Vec<String> = (0..columns)
                .map(|i| match row.get_ref(i) {
                    Ok(ValueRef::Null) | Err(_) => String::new(),
                    Ok(ValueRef::Integer(n)) => n.to_string(),
                    Ok(ValueRef::Real(x)) => x.to_string(),
                    Ok(ValueRef::Text(t)) => String::from_utf8_lossy(t).into_owned(),
                    Ok(ValueRef::Blob(b)) => format!("{b:?}"),
                })
                .collect();
            Ok(cells.join("|"))
        })
        .unwrap_or_else(|e| panic!("{query}: {e}"));
    rows.map(|r| r.unwrap()).collect()
}

/// Every row of the editable tables, to compare before and after a request.
fn dump_tables(db: &Path) -> String {
    let mut out = String::new();
    for table in EDITABLE_TABLES.split_whitespace() {
        out.push_str(&format!("-- {table}\n"));
        for line in sql_lines(db, &format!("SELECT * FROM {table} ORDER BY rowid")) {
            out.push_str(&line);
            out.push('\n');
        }
    }
    out
}

/// Every file and directory under `root`, relative, directories ending in `/`.
fn tree(root: &Path) -> BTreeSet<String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeSet<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let path = e.path();
            let rel = path.strip_prefix(root).unwrap().to_string_lossy().to_string();
            if path.is_dir() {
                out.insert(format!("{rel}/"));
                walk(root, &path, out);
            } else {
                out.insert(rel);
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(root, root, &mut out);
    out
}

/// Who may open each area: the policy the issue asks for, written out here
/// independently of `auth::POLICY` so that a change there is caught.
const AREAS: &[(&str, &[&str])] = &[
    ("/marketing", &["marketing"]),
    ("/commercial", &["commercial"]),
    ("/admin", &["admin"]),
    ("/audit", &["auditor"]),
    ("/shops", &["marketing", "admin"]),
    ("/publish", &["marketing", "commercial", "admin"]),
    ("/history", &["admin", "auditor"]),
    ("/media", &["marketing", "commercial", "admin", "auditor"]),
    // Supervision: the write routes first (the first match wins), admin only.
    ("/fleet/sync", &["admin"]),
    ("/fleet/alerts/acknowledge", &["admin"]),
    ("/fleet", &["admin", "auditor"]),
    ("/api/fleet", &["admin", "auditor"]),
];

fn allowed(path: &str) -> &'static [&'static str] {
    let path = path.split('?').next().unwrap();
    AREAS
        .iter()
        .filter(|(prefix, _)| path == *prefix || path.starts_with(&format!("{prefix}/")))
        .map(|(_, roles)| *roles)
        .next()
        .unwrap_or_else(|| panic!("{path} is in no area"))
}

/// At least one GET and one POST under each prefix of the policy.
const ROUTES: &[&str] = &[
    "/marketing",
    "/marketing/media",
    "/marketing/media/upload",
    "/marketing/playlists",
    "/marketing/playlists/1",
    "/marketing/planning",
    "/marketing/calendar",
    "/marketing/calendar/rules",
    "/commercial",
    "/commercial/play-now",
    "/commercial/calendar",
    "/commercial/calendar/ads",
    "/admin",
    "/admin/users",
    "/admin/users/1",
    "/admin/urgent",
    "/admin/reviews",
    "/admin/settings",
    "/admin/rollback/1",
    "/audit",
    "/audit/bundle",
    "/shops",
    "/shops/main",
    "/publish",
    "/history",
    "/history/diff?from=1&to=1",
    "/history/1",
    "/fleet",
    "/fleet/sync",
    "/admin/webhooks",
    "/api/fleet",
];

/// The routes the page modules declare (`.route("/path", ...)` in
/// publisher/src/web/, its folders included), path parameters replaced by `1`,
/// and whether the route has a POST handler; so that routes added later are
/// checked too.
fn declared_routes() -> Vec<(String, bool)> {
    let mut files = Vec::new();
    let mut dirs = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("../publisher/src/web")];
    while let Some(dir) = dirs.pop() {
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            match e.path() {
                p if p.is_dir() => dirs.push(p),
                p => files.push(p),
            }
        }
    }
    let mut out = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let pieces: Vec<&str> = text.split(".route(").skip(1).collect();
        for piece in pieces {
            let Some(rest) = piece.trim_start().strip_prefix('"') else {
                continue;
            };
            let Some(end) = rest.find('"') else { continue };
            let path = rest[..end]
                .split('/')
                .map(|seg| if seg.starts_with('{') { "1" } else { seg })
                .collect::<Vec<_>>()
                .join("/");
            // The handler list runs up to the route's closing parenthesis: crude,
            // but `post(` right there is how axum routes name a POST handler.
            let handlers = &rest[end..rest.len().min(end + 200)];
            let handlers = handlers.split(".route(").next().unwrap_or("");
            out.push((path, handlers.contains("post(")));
        }
    }
    out.sort();
    out.dedup();
    out
}

const PUBLIC_ROUTES: &[&str] = &["/", "/login", "/logout", "/static/1"];

#[tokio::test]
async fn every_declared_route_sits_in_a_role_area() {
    let routes = declared_routes();
    assert!(
        routes.iter().any(|(p, _)| p == "/login"),
        "routes parsed: {routes:?}"
    );
    for (path, _) in &routes {
        if PUBLIC_ROUTES.contains(&path.as_str()) {
            continue;
        }
        // Panics when the path is outside every area: it would be open to any signed-in user.
        let roles = allowed(path);
        let access = skycast_publisher::web::auth::access(path);
        let want = skycast_publisher::web::auth::Access::Roles(&[]);
        assert!(
            std::mem::discriminant(&access) == std::mem::discriminant(&want),
            "{path} must be limited to roles {roles:?}, the policy says {access:?}"
        );
    }
}

/// Every role against every route of the other roles' areas: 403, GET or POST
/// (with a valid CSRF token, so the refusal is the role's), and nothing changes.
#[tokio::test]
async fn role_matrix_every_role_is_refused_other_roles_routes_and_lands_on_its_own_page() {
    let fx = publisher().await;
    let before = snapshot(&fx);
    let mut routes: Vec<(String, bool)> = ROUTES.iter().map(|p| (p.to_string(), true)).collect();
    for (path, has_post) in declared_routes() {
        if !PUBLIC_ROUTES.contains(&path.as_str()) && !routes.iter().any(|(p, _)| *p == path) {
            routes.push((path, has_post));
        }
    }
    let mut refused = 0;
    for user in ROLES {
        let mut web = signed_in(&fx, user).await;
        let home = match user {
            "auditor" => "/audit".to_string(),
            other => format!("/{other}"),
        };
        let landing = web.get("/").await;
        assert_eq!(
            (landing.status, landing.path.as_str()),
            (StatusCode::OK, home.as_str()),
            "{user}: /"
        );
        let raw = raw_client(&fx);
        // The raw client has no session: `/` sends it to sign in.
        let resp = raw.get(format!("{}/", fx.url())).send().await.unwrap();
        assert!(resp.status().is_redirection());
        assert_eq!(resp.headers()["location"], "/login");

        for (path, _) in &routes {
            if allowed(path).contains(&user) {
                continue;
            }
            let get = web.get(path).await;
            assert_eq!(
                get.status,
                StatusCode::FORBIDDEN,
                "{user} GET {path}: {}",
                get.path
            );
            assert_eq!(
                get.path,
                path.split('?').next().unwrap(),
                "{user} GET {path} is not redirected"
            );
            let post = web.post(path, &[("name", "x"), ("confirm", "yes")]).await;
            assert_eq!(post.status, StatusCode::FORBIDDEN, "{user} POST {path}");
            assert!(
                post.body.contains("belongs to another role"),
                "{user} POST {path} is refused for the role, not the token: {}",
                post.body
            );
            refused += 2;
        }
        // Opening its own pages changes nothing either (GET is safe: a link
        // another site shows cannot edit anything).
        let mut server_errors = Vec::new();
        for (path, _) in &routes {
            if allowed(path).contains(&user) {
                let page = web.get(path).await;
                if page.status.is_server_error() {
                    server_errors.push(path.clone());
                }
            }
        }
        if !server_errors.is_empty() {
            eprintln!("{user}: GET answered 5xx (a page bug, not a security one): {server_errors:?}");
        }
        assert_eq!(snapshot(&fx), before, "{user}'s GETs changed nothing");
        // Path spellings that must not slip past the prefix table.
        if user != "admin" {
            for trick in [
                "/admin/",
                "//admin",
                "/admin//users",
                "/%61dmin",
                "/ADMIN",
                "/admin%2fusers",
            ] {
                let page = web.get(trick).await;
                assert!(
                    !page.status.is_success() || page.path == "/login",
                    "{user} GET {trick}: {} {}",
                    page.status,
                    page.path
                );
            }
        }
    }
    // The auditor reads the shared areas (/history, /media) but writes nowhere,
    // whatever the method.
    let auditor = signed_in(&fx, "auditor").await;
    let token = auditor.csrf.clone().unwrap();
    for (path, _) in &routes {
        for method in [
            reqwest::Method::POST,
            reqwest::Method::PUT,
            reqwest::Method::DELETE,
            reqwest::Method::PATCH,
        ] {
            let resp = auditor
                .client()
                .request(method.clone(), format!("{}{path}", fx.url()))
                .header("x-csrf-token", &token)
                .form(&[("name", "x"), ("confirm", "yes")])
                .send()
                .await
                .unwrap();
            let status = resp.status();
            assert!(
                (403..=405).contains(&status.as_u16()),
                "auditor {method} {path} answers {status}"
            );
            refused += 1;
        }
    }
    eprintln!("{refused} requests refused across {} routes", routes.len());
    assert_eq!(snapshot(&fx), before, "refused requests changed nothing");

    // Not signed in: pages send to the sign-in form, writes are refused.
    let mut anonymous = fx.web_client();
    for (path, _) in &routes {
        let page = anonymous.get(path).await;
        assert_eq!(
            (page.status, page.path.as_str()),
            (StatusCode::OK, "/login"),
            "anonymous GET {path}"
        );
        let post = anonymous.post_raw(path, &[("name", "x")]).await;
        assert_eq!(post.status, StatusCode::FORBIDDEN, "anonymous POST {path}");
    }
    assert_eq!(snapshot(&fx), before, "anonymous requests changed nothing");
}

/// A session driven by hand: no redirects followed, cookies sent explicitly, so
/// status codes and Set-Cookie headers are seen as the server sends them.
struct RawSession {
    client: Client,
    base: String,
    cookie: String,
    csrf: String,
}

fn set_cookies(resp: &reqwest::Response) -> Vec<String> {
    resp.headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect()
}

/// The value a Set-Cookie list gives `name`, if any (empty when it is cleared).
fn cookie_value(cookies: &[String], name: &str) -> Option<String> {
    cookies.iter().find_map(|c| {
        let first = c.split(';').next()?;
        let (k, v) = first.split_once('=')?;
        (k.trim() == name).then(|| v.to_string())
    })
}

/// The sign-in form as a browser gets it: its double-submit cookie and field.
async fn login_form(fx: &PublisherFixture, client: &Client) -> String {
    let resp = client.get(format!("{}/login", fx.url())).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let cookies = set_cookies(&resp);
    let token = cookie_value(&cookies, "skycast_login_csrf").expect("the sign-in form sets its CSRF cookie");
    let body = resp.text().await.unwrap();
    assert_eq!(
        skycast_tests::web::csrf_in(&body).as_deref(),
        Some(token.as_str())
    );
    token
}

async fn raw_login_attempt(
    fx: &PublisherFixture,
    client: &Client,
    user: &str,
    pass: &str,
) -> reqwest::Response {
    let token = login_form(fx, client).await;
    client
        .post(format!("{}/login", fx.url()))
        .header("cookie", format!("skycast_login_csrf={token}"))
        .header("accept-language", "en")
        .form(&[("username", user), ("password", pass), ("csrf", &token)])
        .send()
        .await
        .unwrap()
}

impl RawSession {
    async fn login(fx: &PublisherFixture, user: &str) -> RawSession {
        let client = raw_client(fx);
        let resp = raw_login_attempt(fx, &client, user, password(user)).await;
        assert_eq!(resp.status(), StatusCode::SEE_OTHER, "{user} signs in");
        let token = cookie_value(&set_cookies(&resp), "skycast_session").expect("session cookie");
        let mut raw = RawSession {
            client,
            base: fx.url(),
            cookie: format!("skycast_session={token}"),
            csrf: String::new(),
        };
        let location = resp.headers()["location"].to_str().unwrap().to_string();
        let home = raw.get(&location).await;
        assert_eq!(home.status(), StatusCode::OK, "{user}'s home {location}");
        raw.csrf = skycast_tests::web::csrf_in(&home.text().await.unwrap()).expect("csrf on the home page");
        raw
    }

    async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.base))
            .header("cookie", &self.cookie)
            .header("accept-language", "en")
            .send()
            .await
            .unwrap()
    }

    fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.client
            .post(format!("{}{path}", self.base))
            .header("cookie", &self.cookie)
            .header("accept-language", "en")
    }
}

fn media_id_of(rel: &str) -> String {
    skycast_tests::file_id(&skycast_tests::example(rel)).0.to_string()
}

/// CSRF: a form without the session's token, with a wrong one, with another
/// session's, or from a foreign origin is refused and changes nothing; the
/// right token works. Sign-out and sign-in need their tokens too.
#[tokio::test]
async fn csrf_forms_without_the_sessions_token_or_from_another_origin_are_refused() {
    let fx = publisher().await;
    let music = example_music();
    let track = media_id_of(&music[0]);
    let mia = RawSession::login(&fx, "marketing").await;
    let other = RawSession::login(&fx, "marketing").await;
    assert_ne!(mia.csrf, other.csrf, "each session has its own token");
    let before = snapshot(&fx);
    let form = |token: Option<&str>| {
        let mut f = vec![("name", "x".to_string()), ("items", track.clone())];
        if let Some(t) = token {
            f.push(("csrf", t.to_string()));
        }
        f
    };
    let wrong = "A".repeat(mia.csrf.len());
    let cases: Vec<(&str, reqwest::RequestBuilder)> = vec![
        ("no token", mia.post("/marketing/playlists").form(&form(None))),
        (
            "wrong token",
            mia.post("/marketing/playlists").form(&form(Some(&wrong))),
        ),
        (
            "empty token",
            mia.post("/marketing/playlists").form(&form(Some(""))),
        ),
        (
            "another session's token",
            mia.post("/marketing/playlists").form(&form(Some(&other.csrf))),
        ),
        (
            "another session's token in the header",
            mia.post("/marketing/playlists")
                .header("x-csrf-token", &other.csrf)
                .form(&form(None)),
        ),
        (
            "foreign Origin with the right token",
            mia.post("/marketing/playlists")
                .header("origin", "https://evil.example")
                .form(&form(Some(&mia.csrf))),
        ),
        (
            "Origin null with the right token",
            mia.post("/marketing/playlists")
                .header("origin", "null")
                .form(&form(Some(&mia.csrf))),
        ),
        (
            "the right token, but as JSON instead of a form",
            mia.post("/marketing/playlists")
                .header("content-type", "application/json")
                .body(format!("{{\"csrf\":\"{}\",\"name\":\"x\"}}", mia.csrf)),
        ),
    ];
    for (case, request) in cases {
        let resp = request.send().await.unwrap();
        let status = resp.status();
        let body = resp.text().await.unwrap();
        assert_eq!(status, StatusCode::FORBIDDEN, "{case}: {body}");
        assert!(body.contains("reload the page"), "{case} says why: {body}");
    }
    assert_eq!(snapshot(&fx), before, "refused forms changed nothing");

    let ok = mia
        .post("/marketing/playlists")
        .form(&form(Some(&mia.csrf)))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::SEE_OTHER, "the right token");
    assert_eq!(ok.headers()["location"], "/marketing/playlists/x");
    let same_origin = mia
        .post("/marketing/playlists")
        .header("origin", fx.url())
        .form(&[
            ("name", "y".to_string()),
            ("items", track.clone()),
            ("csrf", mia.csrf.clone()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(
        same_origin.status(),
        StatusCode::SEE_OTHER,
        "the page's own origin"
    );
    let db = fx.data.db().unwrap();
    let draft = skycast_publisher::workspace::Workspace::new(&fx.data, &db)
        .draft()
        .unwrap();
    let names: Vec<&String> = draft.program.playlists.keys().collect();
    assert_eq!(
        names,
        ["allday", "x", "y"],
        "the two accepted forms made their playlists"
    );

    // Sign-out needs the token too: a link on another site cannot end the session.
    let resp = mia.post("/logout").form(&[("a", "b")]).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN, "logout without token");
    assert_eq!(
        mia.get("/marketing").await.status(),
        StatusCode::OK,
        "still signed in"
    );
    let resp = mia
        .post("/logout")
        .form(&[("csrf", &mia.csrf)])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SEE_OTHER, "logout with token");
    let after = mia.get("/marketing").await;
    assert_eq!(
        after.status(),
        StatusCode::SEE_OTHER,
        "the old cookie no longer works after logout"
    );
    assert_eq!(after.headers()["location"], "/login");
    assert_eq!(
        other.get("/marketing").await.status(),
        StatusCode::OK,
        "the other session lives on"
    );

    // Sign-in: the form's cookie and field must both be there and agree.
    let client = raw_client(&fx);
    let token = login_form(&fx, &client).await;
    let attempts: Vec<(&str, Option<String>, Option<String>)> = vec![
        ("neither cookie nor field", None, None),
        ("field without cookie", None, Some(token.clone())),
        ("cookie without field", Some(token.clone()), None),
        (
            "cookie and a different field",
            Some(token.clone()),
            Some("B".repeat(token.len())),
        ),
    ];
    for (case, cookie, field) in attempts {
        let mut fields = vec![
            ("username", "marketing".to_string()),
            ("password", TEST_PASSWORD.to_string()),
        ];
        if let Some(f) = field {
            fields.push(("csrf", f));
        }
        let mut req = client.post(format!("{}/login", fx.url())).form(&fields);
        if let Some(c) = cookie {
            req = req.header("cookie", format!("skycast_login_csrf={c}"));
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let cookies = set_cookies(&resp);
        assert_eq!(status, StatusCode::FORBIDDEN, "sign-in with {case}");
        assert!(
            cookie_value(&cookies, "skycast_session").is_none(),
            "sign-in with {case} sets no session: {cookies:?}"
        );
    }
}

/// Five wrong passwords lock the account: the sixth attempt, right password or
/// not, gets 429 with Retry-After and no session; other accounts are unaffected.
/// The session cookie is HttpOnly, SameSite=Strict and Secure; disabling a user
/// ends their session at once.
#[tokio::test]
async fn login_throttling_locks_an_account_after_five_failures_and_sessions_are_safe() {
    let fx = publisher().await;
    let client = raw_client(&fx);
    // A wrong password and an unknown name read the same: names cannot be probed.
    let mut answers = Vec::new();
    for user in ["admin", "nobody"] {
        let resp = raw_login_attempt(&fx, &client, user, "wrong-password").await;
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{user}");
        let body = resp.text().await.unwrap();
        let at = body.find(r#"id="login-error""#).expect("the form says why");
        answers.push(body[at..].split("</p>").next().unwrap().to_string());
    }
    assert_eq!(
        answers[0], answers[1],
        "wrong password and unknown user answer alike"
    );
    for i in 1..=5 {
        let resp = raw_login_attempt(&fx, &client, "marketing", "wrong-password").await;
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "wrong password {i}");
        assert!(cookie_value(&set_cookies(&resp), "skycast_session").is_none());
    }
    let started = Instant::now();
    let resp = raw_login_attempt(&fx, &client, "marketing", TEST_PASSWORD).await;
    assert_eq!(
        resp.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "the right password after five failures"
    );
    let retry: u64 = resp.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=15 * 60).contains(&retry), "Retry-After {retry} s");
    let cookies = set_cookies(&resp);
    assert!(
        cookie_value(&cookies, "skycast_session").is_none(),
        "no session while locked: {cookies:?}"
    );
    let body = resp.text().await.unwrap();
    assert!(
        body.contains(&format!("({retry} s)")),
        "the page says how long to wait: {body}"
    );
    eprintln!(
        "locked sign-in answered in {:?}, Retry-After {retry} s",
        started.elapsed()
    );
    // Same account, other spelling: still locked (the key is case-insensitive).
    let resp = raw_login_attempt(&fx, &client, "MARKETING", TEST_PASSWORD).await;
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS, "MARKETING");

    // Another account from the same address signs in, and its cookie is locked down.
    let resp = raw_login_attempt(&fx, &client, "commercial", TEST_PASSWORD).await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER, "another user signs in");
    assert_eq!(resp.headers()["location"], "/commercial");
    let session = set_cookies(&resp)
        .into_iter()
        .find(|c| c.starts_with("skycast_session="))
        .expect("session cookie");
    let attributes: BTreeSet<String> = session.split(';').skip(1).map(|a| a.trim().to_string()).collect();
    for wanted in ["HttpOnly", "SameSite=Strict", "Secure", "Path=/"] {
        assert!(
            attributes.contains(wanted),
            "session cookie has {wanted}: {session}"
        );
    }
    let token = cookie_value(std::slice::from_ref(&session), "skycast_session").unwrap();
    assert!(token.len() >= 40, "session token is long and random: {token}");
    let login_cookie = set_cookies(&client.get(format!("{}/login", fx.url())).send().await.unwrap())
        .into_iter()
        .find(|c| c.starts_with("skycast_login_csrf="))
        .unwrap();
    for wanted in ["HttpOnly", "SameSite=Strict", "Secure"] {
        assert!(
            login_cookie.contains(wanted),
            "login CSRF cookie has {wanted}: {login_cookie}"
        );
    }
    // The session token is stored hashed, never as sent.
    let stored = sql_lines(&fx.data.db_path(), "SELECT token_hash FROM sessions");
    assert!(
        !stored.iter().any(|h| h == &token),
        "the database does not hold the cookie token"
    );

    // A forged or unknown cookie is no session.
    let forged = client
        .get(format!("{}/commercial", fx.url()))
        .header("cookie", format!("skycast_session={}", "A".repeat(token.len())))
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::SEE_OTHER);
    assert_eq!(forged.headers()["location"], "/login");

    // Disabling a user ends the session they already have.
    let mut sales = signed_in(&fx, "commercial").await;
    assert_eq!(sales.get("/commercial").await.path, "/commercial");
    let mut admin = signed_in(&fx, "admin").await;
    let id = fx
        .data
        .db()
        .unwrap()
        .users()
        .unwrap()
        .into_iter()
        .find(|u| u.username == "commercial")
        .unwrap()
        .id;
    let page = admin
        .post(
            &format!("/admin/users/{id}"),
            &[("role", "commercial"), ("disabled", "on")],
        )
        .await;
    assert_eq!(
        page.status,
        StatusCode::OK,
        "admin disables commercial: {}",
        page.body
    );
    assert!(
        fx.data.db().unwrap().user(id).unwrap().disabled,
        "commercial is disabled in the database"
    );
    let page = sales.get("/commercial").await;
    assert_eq!(page.path, "/login", "the disabled user's open session is gone");
    let post = sales.post("/commercial/play-now", &[("media", "x")]).await;
    assert_eq!(post.status, StatusCode::FORBIDDEN, "and cannot post");
    let resp = raw_login_attempt(&fx, &raw_client(&fx), "commercial", TEST_PASSWORD).await;
    assert_eq!(
        resp.status(),
        StatusCode::UNAUTHORIZED,
        "a disabled user cannot sign in again"
    );

    // One address guessing many accounts is stopped too (a whole shop may share
    // it, so the limit is higher): 8 failures so far (5 for marketing, 1 for the
    // disabled user) plus 2 above, 12 more on made-up names.
    for i in 0..12 {
        let resp = raw_login_attempt(&fx, &client, &format!("guess{i}"), "wrong-password").await;
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "guess {i}");
    }
    let resp = raw_login_attempt(&fx, &client, "auditor", TEST_PASSWORD).await;
    assert_eq!(
        resp.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "the address is locked after 20 failures"
    );
    assert!(resp.headers().contains_key("retry-after"));
}

/// An upload far over the limit, streamed to the real binary (chunked, then with
/// its length announced), is refused with 413 while it streams: the server's
/// peak memory grows by far less than what it read, and nothing is kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_upload_is_refused_while_streaming_without_filling_memory() {
    const LIMIT_MIB: u64 = 64;
    /// What the client offers.
    const UPLOAD_MIB: u64 = 260;
    /// The client sends this much past the limit, then waits for the answer
    /// before sending more: a server that waits for the whole body never answers
    /// (the test fails), and a client still writing when the server hangs up
    /// would see a broken pipe instead of the 413.
    const PAST_LIMIT_MIB: u64 = 4;
    let dir = tempfile::tempdir().unwrap();
    let data = init_with_marketing(dir.path());
    let mut serve = ServeProcess::start(&data, &["--max-upload-mb", &LIMIT_MIB.to_string()]).await;

    let mut web = WebClient::new(&serve.url(), &data.join("tls/ca.pem"));
    let home = web.login("marketing", TEST_PASSWORD).await;
    assert_eq!(home.path, "/marketing", "{}", home.body);
    let token = web.csrf.clone().unwrap();
    let files_before = tree(&data);

    static ZEROS: [u8; 1 << 20] = [0; 1 << 20];
    for announced in [false, true] {
        // Reset the peak to the current size, so the peak read after is the upload's.
        let reset = serve.reset_peak();
        let (peak_before, rss_before) = serve.memory_kib();
        let sent = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counter = sent.clone();
        let chunks = futures_util::stream::unfold(0u64, move |mib| {
            let counter = counter.clone();
            async move {
                if mib == UPLOAD_MIB {
                    return None;
                }
                if mib == LIMIT_MIB + PAST_LIMIT_MIB {
                    tokio::time::sleep(Duration::from_secs(20)).await;
                    let e =
                        std::io::Error::other("the server read past the limit and did not answer in 20 s");
                    return Some((Err(e), UPLOAD_MIB));
                }
                counter.fetch_add(ZEROS.len() as u64, std::sync::atomic::Ordering::Relaxed);
                Some((Ok(bytes::Bytes::from_static(&ZEROS)), mib + 1))
            }
        });
        let body = reqwest::Body::wrap_stream(chunks);
        let part = if announced {
            reqwest::multipart::Part::stream_with_length(body, UPLOAD_MIB << 20)
        } else {
            reqwest::multipart::Part::stream(body)
        }
        .file_name("huge.mp3")
        .mime_str("audio/mpeg")
        .unwrap();
        let form = reqwest::multipart::Form::new()
            .text("kind", "music")
            .part("files", part);
        let started = Instant::now();
        let resp = web
            .client()
            .post(format!("{}/marketing/media/upload?csrf={token}", serve.url()))
            .header("accept-language", "en")
            .multipart(form)
            .send()
            .await;
        let seconds = started.elapsed().as_secs_f64();
        let (status, body) = match resp {
            Ok(r) => (Some(r.status()), r.text().await.unwrap_or_default()),
            Err(e) => (None, format!("{e:?}")),
        };
        let (peak_after, rss_after) = serve.memory_kib();
        let sent_mib = sent.load(std::sync::atomic::Ordering::Relaxed) >> 20;
        let growth_kib = peak_after.saturating_sub(peak_before);
        eprintln!(
            "oversize upload ({}): limit {LIMIT_MIB} MiB, {UPLOAD_MIB} MiB offered, {sent_mib} MiB sent before the \
             answer; server VmHWM {peak_before} KiB -> {peak_after} KiB (+{growth_kib} KiB, peak reset {reset}), \
             VmRSS {rss_before} -> {rss_after} KiB; answered {status:?} in {seconds:.2} s",
            if announced { "length announced" } else { "chunked" },
        );
        assert_eq!(
            status,
            Some(StatusCode::PAYLOAD_TOO_LARGE),
            "status; body: {body}"
        );
        assert!(
            body.contains("upload limit") && body.contains("nothing was stored") && body.contains("huge.mp3"),
            "the page says what and why: {body}"
        );
        assert!(
            growth_kib < 16 * 1024,
            "peak memory grew by {growth_kib} KiB while the server read over {LIMIT_MIB} MiB"
        );
    }

    let files_after = tree(&data);
    let new: Vec<&String> = files_after
        .difference(&files_before)
        .filter(|f| !f.starts_with("publisher.sqlite"))
        .filter(|f| !matches!(f.as_str(), "uploads/" | "uploads/tmp/"))
        .collect();
    assert!(new.is_empty(), "nothing stored: {new:?}");
    let library = sql_lines(&data.join("publisher.sqlite"), "SELECT COUNT(*) FROM library");
    assert_eq!(library, ["0"], "the library is empty");
    // The server is still fine.
    assert_eq!(web.get("/marketing/media").await.status, StatusCode::OK);
    let log = serve.log_text();
    assert!(log.contains("upload refused: over the size limit"), "{log}");
    serve.stop().await;
}

const XSS: [&str; 2] = ["<script>alert(1)</script>", "\"><img src=x onerror=alert(1)>"];
/// How the first payload reads once escaped (minijinja also escapes `/`).
const XSS_ESCAPED: &str = "&lt;script&gt;alert(1)&lt;";

/// A page fetched with its headers, for checks beyond the body.
struct Fetched {
    status: StatusCode,
    /// `X-Frame-Options` and `X-Content-Type-Options`.
    framing: (String, String),
    csp: String,
    content_type: String,
    body: String,
}

async fn fetch(web: &WebClient, path: &str) -> Fetched {
    let resp = web
        .client()
        .get(format!("{}{path}", web.base))
        .header("accept-language", "en")
        .send()
        .await
        .unwrap();
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default()
    };
    let (csp, content_type) = (header("content-security-policy"), header("content-type"));
    let framing = (header("x-frame-options"), header("x-content-type-options"));
    let status = resp.status();
    let body = resp.text().await.unwrap();
    Fetched {
        status,
        framing,
        csp,
        content_type,
        body,
    }
}

/// No payload is in `body` as markup, and the page runs no inline script.
fn assert_inert(what: &str, body: &str) {
    for payload in XSS {
        assert!(!body.contains(payload), "{what} holds the raw payload {payload}");
    }
    let lower = body.to_lowercase();
    assert!(!lower.contains("<img src=x"), "{what} holds a raw <img> payload");
    let scripts = lower.matches("<script").count();
    let external = lower.matches("<script src=\"/static/").count();
    assert_eq!(scripts, external, "{what} has an inline <script>");
}

/// Payload pages as each role sees them: 200, inert, and a CSP without inline scripts.
async fn assert_pages_inert(web: &WebClient, who: &str, paths: &[String]) -> usize {
    let mut escaped = 0;
    for path in paths {
        let page = fetch(web, path).await;
        let what = format!("{who} GET {path}");
        assert_eq!(page.status, StatusCode::OK, "{what}: {}", page.body);
        assert!(page.csp.contains("script-src 'self'"), "{what}: CSP {}", page.csp);
        assert!(!page.csp.contains("unsafe-inline"), "{what}: CSP {}", page.csp);
        assert!(
            page.csp.contains("frame-ancestors 'none'"),
            "{what}: CSP {}",
            page.csp
        );
        assert_eq!(page.framing, ("DENY".into(), "nosniff".into()), "{what}");
        assert!(
            page.content_type.starts_with("text/html"),
            "{what}: {}",
            page.content_type
        );
        assert_inert(&what, &page.body);
        if page.body.contains(XSS_ESCAPED) {
            escaped += 1;
        }
    }
    escaped
}

/// Status of the page a form lands on, inert, with its flash or error text.
fn assert_refused_inert(what: &str, page: &Page) -> String {
    assert!(
        !page.status.is_server_error(),
        "{what}: {} {}",
        page.status,
        page.body
    );
    assert_inert(what, &page.body);
    let message = page
        .flash()
        .or_else(|| {
            let at = page.body.find("class=\"flash error")?;
            Some(page.body[at..].chars().take(400).collect())
        })
        .unwrap_or_default();
    assert!(!message.is_empty(), "{what} says why: {}", page.body);
    message
}

/// XSS payloads in every text field a person can fill are shown escaped on
/// every page that shows them, and the CSP forbids inline scripts anyway.
#[tokio::test]
async fn xss_payloads_in_titles_names_messages_and_rules_are_rendered_inert() {
    let fx = publisher().await;
    let music = example_music();
    let track = media_id_of(&music[0]);
    let mut mia = signed_in(&fx, "marketing").await;

    // Media title and artist: accepted as text, shown escaped.
    let page = mia
        .post(
            &format!("/marketing/media/{track}"),
            &[("title", XSS[0]), ("artist", XSS[1]), ("kind", "music")],
        )
        .await;
    assert_eq!(page.status, StatusCode::OK, "title edit: {}", page.body);
    assert_inert("after the title edit", &page.body);
    let title = sql_lines(
        &fx.data.db_path(),
        &format!("SELECT title FROM library WHERE id = '{track}'"),
    );
    assert_eq!(title, [XSS[0]], "the title is stored as typed");

    // Playlist names are plain names: refused, and the refusal echoes them escaped.
    for payload in XSS {
        let page = mia
            .post("/marketing/playlists", &[("name", payload), ("items", &track)])
            .await;
        let message = assert_refused_inert("playlist name", &page);
        assert!(message.contains("playlist name"), "{message}");
    }
    let page = mia
        .post("/marketing/playlists", &[("name", "xss"), ("items", &track)])
        .await;
    assert_eq!(page.path, "/marketing/playlists/xss", "{:?}", page.flash());

    // Publish message: a signed version whose message is the payload.
    let page = mia.post("/publish", &[("message", XSS[0])]).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert_eq!(head_version(&fx), Some(2), "published: {:?}", page.flash());
    let search = format!(
        "/marketing/media?q={}",
        url::form_urlencoded::byte_serialize(XSS[0].as_bytes()).collect::<String>()
    );
    let marketing_pages: Vec<String> = [
        "/marketing",
        "/marketing/media",
        &search,
        &format!("/marketing/media/{track}"),
        "/marketing/playlists",
        "/marketing/playlists/xss",
        "/publish",
    ]
    .iter()
    .map(|p| p.to_string())
    .collect();
    let escaped = assert_pages_inert(&mia, "marketing", &marketing_pages).await;
    assert!(
        escaped >= 4,
        "the title shows escaped on the library, search, edit and playlist pages ({escaped})"
    );
    let m3u = fetch(&mia, "/marketing/playlists/xss.m3u").await;
    assert_eq!(m3u.status, StatusCode::OK);
    assert!(
        !m3u.content_type.starts_with("text/html"),
        "the .m3u is not HTML: {}",
        m3u.content_type
    );

    // Sales: an ad played now with the payload as its note (published at once).
    let mut sales = signed_in(&fx, "commercial").await;
    let ad = std::fs::read(skycast_tests::example("ads/bread.mp3")).unwrap();
    let page = sales
        .upload("/commercial/ads/upload", "files", &[("bread.mp3", ad)], &[])
        .await;
    assert!(!page.status.is_server_error(), "{}", page.body);
    let ad_id = media_id_of("ads/bread.mp3");
    let page = sales
        .post(
            "/commercial/play-now",
            &[
                ("media", &ad_id),
                ("shops", "all"),
                ("start", "cut"),
                ("after", "resume"),
                ("message", XSS[1]),
            ],
        )
        .await;
    assert_eq!(
        head_version(&fx),
        Some(3),
        "play-now published: {:?} {}",
        page.flash(),
        page.status
    );
    let page = sales
        .post(
            "/commercial/ads",
            &[
                ("media", XSS[0]),
                ("shops", XSS[1]),
                ("every_tracks", XSS[0]),
                ("at", XSS[1]),
                ("date_from", XSS[0]),
            ],
        )
        .await;
    assert_refused_inert("ad rule", &page);
    assert_pages_inert(&sales, "commercial", &["/commercial".into(), "/publish".into()]).await;

    // Admin: user names are refused (escaped in the message); urgent form re-shown escaped.
    let mut admin = signed_in(&fx, "admin").await;
    for payload in XSS {
        let page = admin
            .post(
                "/admin/users",
                &[
                    ("username", payload),
                    ("password", "long-enough-1"),
                    ("role", "marketing"),
                ],
            )
            .await;
        let message = assert_refused_inert("user name", &page);
        assert!(message.contains("user name"), "{message}");
    }
    assert_eq!(
        fx.data.db().unwrap().users().unwrap().len(),
        4,
        "no user was added"
    );
    let page = admin
        .post(
            "/admin/urgent",
            &[("media", XSS[0]), ("shops", XSS[1]), ("message", XSS[0])],
        )
        .await;
    assert_refused_inert("urgent message", &page);
    let history_pages: Vec<String> = [
        "/history",
        "/history/2",
        "/history/3",
        "/history/diff?from=1&to=3",
    ]
    .iter()
    .map(|p| p.to_string())
    .collect();
    let mut admin_pages = history_pages.clone();
    admin_pages.extend(
        [
            "/admin",
            "/admin/users",
            "/admin/urgent",
            "/admin/reviews",
            "/publish",
        ]
        .map(String::from),
    );
    let escaped = assert_pages_inert(&admin, "admin", &admin_pages).await;
    assert!(
        escaped >= 2,
        "the publish message and title show escaped in the history ({escaped})"
    );

    let auditor = signed_in(&fx, "auditor").await;
    let mut auditor_pages = history_pages;
    auditor_pages.push("/audit".into());
    assert_pages_inert(&auditor, "auditor", &auditor_pages).await;

    // Shop tags, hours, exceptions and names: refused, the form comes back escaped.
    let shop_form: Vec<(&str, &str)> = vec![
        ("tags", XSS[0]),
        ("hours_mon", XSS[1]),
        ("exception_date", XSS[0]),
        ("exception_hours", XSS[1]),
        ("closing_media", XSS[0]),
        ("closing_minutes", XSS[1]),
    ];
    let page = mia.post("/shops/main", &shop_form).await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST, "{}", page.body);
    let message = assert_refused_inert("shop tags", &page);
    assert!(message.contains("tags"), "{message}");
    let page = mia.post("/shops/main", &[("tags", XSS[1])]).await;
    assert_refused_inert("shop tags", &page);
    for payload in XSS {
        let page = mia.post("/shops", &[("name", payload)]).await;
        assert_refused_inert("shop name", &page);
    }
    let shop_pages: Vec<String> = ["/shops", "/shops/main"].map(String::from).to_vec();
    assert_pages_inert(&mia, "marketing", &shop_pages).await;
    assert_pages_inert(&admin, "admin", &shop_pages).await;

    // Rule fields: refused, the form comes back with the values escaped.
    let rule: Vec<(&str, &str)> = vec![
        ("playlist", XSS[0]),
        ("shops", XSS[1]),
        ("days", XSS[0]),
        ("from_time", XSS[1]),
        ("to_time", XSS[0]),
        ("date_from", XSS[1]),
        ("date_to", XSS[0]),
        ("priority", XSS[1]),
        ("view_shop", XSS[0]),
        ("view_week", XSS[1]),
    ];
    let page = mia.post("/marketing/planning/rules", &rule).await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST, "{}", page.body);
    assert_refused_inert("planning rule", &page);
    let preview = format!(
        "/marketing/preview?shop={}&date={}&time={}",
        url::form_urlencoded::byte_serialize(XSS[0].as_bytes()).collect::<String>(),
        url::form_urlencoded::byte_serialize(XSS[1].as_bytes()).collect::<String>(),
        url::form_urlencoded::byte_serialize(XSS[0].as_bytes()).collect::<String>(),
    );
    let page = mia.get(&preview).await;
    assert!(!page.status.is_server_error(), "preview: {}", page.body);
    assert_inert("preview with payload parameters", &page.body);

    let planning_pages: Vec<String> = ["/marketing/planning", "/marketing/preview"]
        .map(String::from)
        .to_vec();
    assert_pages_inert(&mia, "marketing", &planning_pages).await;

    // A user name typed at sign-in comes back in the form, escaped.
    let mut stranger = fx.web_client();
    for payload in XSS {
        let page = stranger.login(payload, "whatever-password").await;
        assert_eq!(page.status, StatusCode::UNAUTHORIZED);
        assert_inert("sign-in form", &page.body);
    }
}

const SQL: [&str; 5] = ["'; DROP TABLE users; --", "\" OR \"1\"=\"1", "%", "_", "\\"];

/// Media ids linked from a library page.
fn listed_media(body: &str) -> BTreeSet<String> {
    body.split("/marketing/media/")
        .skip(1)
        .filter_map(|rest| rest.get(..64))
        .filter(|id| id.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(str::to_string)
        .collect()
}

/// SQL metacharacters in every text field are plain text: the app answers (never
/// 500), searches match them literally, and the tables hold what they should.
#[tokio::test]
async fn sql_metacharacters_in_every_text_field_are_plain_text() {
    let fx = publisher().await;
    let music = example_music();
    let (a, b) = (media_id_of(&music[0]), media_id_of(&music[1]));
    let mut mia = signed_in(&fx, "marketing").await;
    let bytes = std::fs::read(skycast_tests::example(&music[1])).unwrap();
    let page = mia
        .upload(
            "/marketing/media/upload",
            "files",
            &[("%_b.mp3", bytes)],
            &[("kind", "music")],
        )
        .await;
    assert!(!page.status.is_server_error(), "{}", page.body);
    let page = mia
        .post(
            &format!("/marketing/media/{a}"),
            &[("title", SQL[0]), ("artist", SQL[1]), ("kind", "music")],
        )
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let page = mia
        .post(
            &format!("/marketing/media/{b}"),
            &[("title", "100%_sure\\ it's"), ("artist", ""), ("kind", "music")],
        )
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let expect: &[(&str, &[&str])] = &[
        (SQL[0], &[&a]),
        (SQL[1], &[&a]),
        ("DROP TABLE", &[&a]),
        ("%", &[&b]),
        ("_", &[&b]),
        ("\\", &[&b]),
        ("'", &[&a, &b]),
        ("%_", &[&b]),
        ("x%y", &[]),
        ("_ure", &[]),
    ];
    for (q, want) in expect {
        let path = format!(
            "/marketing/media?q={}",
            url::form_urlencoded::byte_serialize(q.as_bytes()).collect::<String>()
        );
        let page = mia.get(&path).await;
        assert_eq!(page.status, StatusCode::OK, "search {q}: {}", page.body);
        let want: BTreeSet<String> = want.iter().map(|s| s.to_string()).collect();
        assert_eq!(listed_media(&page.body), want, "search {q:?} matches literally");
    }
    for s in SQL {
        let page = mia
            .post(
                "/shops/main",
                &[("tags", s), ("hours_mon", s), ("closing_minutes", s)],
            )
            .await;
        assert_eq!(
            page.status,
            StatusCode::BAD_REQUEST,
            "shop tags {s}: {}",
            page.body
        );
        let page = mia.post("/shops", &[("name", s)]).await;
        assert!(!page.status.is_server_error(), "shop name {s}: {}", page.body);
        let page = mia
            .get(&format!(
                "/shops/{}",
                url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>()
            ))
            .await;
        assert!(!page.status.is_server_error(), "shop page {s}: {}", page.body);
        let page = mia
            .post("/marketing/playlists", &[("name", s), ("items", &a)])
            .await;
        assert!(!page.status.is_server_error(), "playlist {s}: {}", page.body);
        assert!(
            page.flash().is_some_and(|f| f.contains("playlist name")),
            "playlist {s}: {:?}",
            page.flash()
        );
        let page = mia
            .get(&format!(
                "/marketing/playlists/{}",
                url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>()
            ))
            .await;
        assert!(!page.status.is_server_error(), "playlist page {s}: {}", page.body);
    }
    let page = mia
        .post(
            "/marketing/playlists",
            &[("name", "sql"), ("items", &a), ("items", &b)],
        )
        .await;
    assert_eq!(page.path, "/marketing/playlists/sql");
    let page = mia.post("/publish", &[("message", SQL[0])]).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert_eq!(head_version(&fx), Some(2), "{:?}", page.flash());
    let store = fx.data.store().unwrap();
    let commit = store.head().unwrap().unwrap();
    assert!(
        store.version_info(commit).unwrap().message.contains(SQL[0]),
        "the commit message is the text typed"
    );

    let mut admin = signed_in(&fx, "admin").await;
    for s in SQL {
        let page = admin
            .post(
                "/admin/users",
                &[
                    ("username", s),
                    ("password", "long-enough-1"),
                    ("role", "auditor"),
                ],
            )
            .await;
        assert!(!page.status.is_server_error(), "user {s}: {}", page.body);
        let page = fx.web_client().login(s, s).await;
        assert!(!page.status.is_server_error(), "sign-in as {s}: {}", page.body);
    }
    // Passwords are any text: one full of metacharacters works.
    let tricky = format!("{}{}{}", SQL[0], SQL[1], SQL[4]);
    let page = admin
        .post(
            "/admin/users",
            &[
                ("username", "sql.user"),
                ("password", &tricky),
                ("role", "auditor"),
            ],
        )
        .await;
    assert!(
        page.flash().is_some_and(|f| !f.contains("not allowed")),
        "{:?}",
        page.flash()
    );
    let page = fx.web_client().login("sql.user", &tricky).await;
    assert_eq!(
        (page.status, page.path.as_str()),
        (StatusCode::OK, "/audit"),
        "sign-in with the tricky password"
    );
    let page = fx.web_client().login("sql.user", SQL[1]).await;
    assert_eq!(
        page.status,
        StatusCode::UNAUTHORIZED,
        "another password does not pass"
    );

    for s in SQL {
        let rule = [
            ("playlist", s),
            ("shops", s),
            ("days", s),
            ("from_time", s),
            ("to_time", s),
            ("priority", s),
        ];
        let page = mia.post("/marketing/planning/rules", &rule).await;
        assert!(!page.status.is_server_error(), "rule {s}: {}", page.body);
        assert_eq!(page.status, StatusCode::BAD_REQUEST, "rule {s}");
    }
    let tables = sql_lines(
        &fx.data.db_path(),
        "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name",
    );
    for t in EDITABLE_TABLES.split(' ') {
        assert!(tables.iter().any(|x| x == t), "table {t} exists: {tables:?}");
    }
    let users = sql_lines(&fx.data.db_path(), "SELECT username FROM users ORDER BY id");
    // `_` is a valid user name (letters, digits, `.-_@`); the others are refused.
    assert_eq!(
        users,
        ["admin", "marketing", "commercial", "auditor", "_", "sql.user"]
    );
    let library = sql_lines(&fx.data.db_path(), "SELECT title FROM library ORDER BY title");
    assert_eq!(library, [SQL[0], "100%_sure\\ it's"]);
}

/// A multipart body written byte by byte, so a file name reaches the server
/// exactly as given (NUL, newline, backslashes...), as a hostile client sends it.
fn raw_multipart(boundary: &str, file_name: &[u8], bytes: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(
        format!("--{boundary}\r\nContent-Disposition: form-data; name=\"kind\"\r\n\r\nmusic\r\n").as_bytes(),
    );
    body.extend_from_slice(
        format!("--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"").as_bytes(),
    );
    body.extend_from_slice(file_name);
    body.extend_from_slice(b"\"\r\nContent-Type: audio/mpeg\r\n\r\n");
    body.extend_from_slice(bytes);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    body
}

/// Path tricks in uploaded file names: every upload lands as
/// `uploads/<64 hex>.mp3` or nowhere, and the name shown is the last path
/// component, escaped.
#[tokio::test]
async fn path_tricks_in_uploaded_file_names_write_nothing_outside_the_uploads_folder() {
    let fx = PublisherFixture::start().await;
    fx.add_role_users();
    let mia = signed_in(&fx, "marketing").await;
    let long = format!("{}.mp3", "a".repeat(296));
    let names: Vec<(&str, Vec<u8>)> = vec![
        ("unix traversal", b"../../../../tmp/evil.mp3".to_vec()),
        ("windows traversal", b"..\\..\\evil.mp3".to_vec()),
        ("absolute path", b"/etc/passwd".to_vec()),
        ("percent-encoded traversal", b"%2e%2e%2fevil.mp3".to_vec()),
        ("300 characters", long.as_bytes().to_vec()),
        ("NUL", b"evil\0.mp3".to_vec()),
        ("newline", b"evil\n../../x.mp3".to_vec()),
        ("markup", b"<script>alert(1)</script>.mp3".to_vec()),
        (
            "quotes and semicolons",
            b"a\\\"; filename=\\\"evil.exe;.mp3".to_vec(),
        ),
    ];
    let mut files: Vec<PathBuf> = std::fs::read_dir(skycast_tests::example("music"))
        .unwrap()
        .chain(std::fs::read_dir(skycast_tests::example("ads")).unwrap())
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "mp3"))
        .collect();
    files.sort();
    assert!(files.len() >= names.len(), "one distinct MP3 per name");
    let outside = [Path::new("/tmp/evil.mp3"), Path::new("/tmp/x.mp3")];
    let existed: Vec<bool> = outside.iter().map(|p| p.exists()).collect();
    let root = fx.dir.path();
    let before = tree(root);
    let token = mia.csrf.clone().unwrap();
    let boundary = "skycast-security-boundary-7d1f";
    let mut stored = 0;
    for ((case, name), file) in names.iter().zip(&files) {
        let bytes = std::fs::read(file).unwrap();
        let resp = mia
            .client()
            .post(format!("{}/marketing/media/upload?csrf={token}", mia.base))
            .header(
                "content-type",
                format!("multipart/form-data; boundary={boundary}"),
            )
            .header("accept-language", "en")
            .body(raw_multipart(boundary, name, &bytes))
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let path = resp.url().path().to_string();
        let body = resp.text().await.unwrap();
        assert!(!status.is_server_error(), "{case}: {status} {body}");
        assert_inert(case, &body);
        let flash = Page {
            status,
            path,
            body: body.clone(),
        }
        .flash()
        .unwrap_or_default();
        if flash.contains("stored") || flash.contains("Stored") {
            stored += 1;
        }
        for shown in ["../", "..\\", "/etc/", "/tmp/"] {
            assert!(
                !flash.contains(shown),
                "{case}: the message shows {shown}: {flash}"
            );
        }
        eprintln!("{case}: {status}: {flash}");
    }
    let after = tree(root);
    let new: Vec<&String> = after.difference(&before).collect();
    let uploads = "publisher/uploads/";
    for f in &new {
        let ok = f.starts_with("publisher/publisher.sqlite")
            || f.as_str() == uploads
            || f.as_str() == "publisher/uploads/tmp/"
            || f.strip_prefix(uploads)
                .and_then(|n| n.strip_suffix(".mp3"))
                .is_some_and(|hex| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()));
        assert!(ok, "an upload wrote {f}: {new:?}");
    }
    let kept = new.iter().filter(|f| f.ends_with(".mp3")).count();
    assert!(
        std::fs::read_dir(root.join("publisher/uploads/tmp")).map_or(0, |d| d.count()) == 0,
        "no temporary file is left"
    );
    for (p, was) in outside.iter().zip(existed) {
        assert!(was || !p.exists(), "{} was written", p.display());
    }
    eprintln!("{stored} uploads stored, {kept} files kept under uploads/");
    assert!(
        kept >= 4,
        "the plain traversal names are stored under a hash name ({kept})"
    );

    // The library shows each name as its last component, escaped.
    let library = fetch(&mia, "/marketing/media").await;
    assert_eq!(library.status, StatusCode::OK);
    assert_inert("library", &library.body);
    for shown in ["../", "..\\", "/etc/passwd", "/tmp/evil"] {
        assert!(!library.body.contains(shown), "the library shows {shown}");
    }
    // Listening goes by content id only: names and traversals find nothing.
    for trick in [
        "/media/..%2f..%2fpublisher.toml",
        "/media/%2e%2e%2f%2e%2e%2ftls%2fca.key",
        "/media/..%5c..%5cpublisher.sqlite",
        "/media/passwd",
        "/media/evil.mp3",
        "/static/..%2f..%2fCargo.toml",
        "/static/%2e%2e%2fsrc%2flib.rs",
    ] {
        let page = fetch(&mia, trick).await;
        assert!(
            matches!(page.status.as_u16(), 400 | 404),
            "{trick}: {} {}",
            page.status,
            page.body.chars().take(200).collect::<String>()
        );
        assert!(
            !page.body.contains("PRIVATE KEY") && !page.body.contains("[package]"),
            "{trick}"
        );
    }
    // Downloads name the file in one clean Content-Disposition value.
    for id in sql_lines(&fx.data.db_path(), "SELECT id FROM library") {
        let resp = mia
            .client()
            .get(format!("{}/media/{id}.mp3", mia.base))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "/media/{id}.mp3");
        assert_eq!(resp.headers()["content-type"], "audio/mpeg");
        if let Some(cd) = resp.headers().get("content-disposition") {
            let cd = cd
                .to_str()
                .unwrap_or_else(|_| panic!("{id}: non-ASCII Content-Disposition"));
            let quoted = cd
                .split("filename=\"")
                .nth(1)
                .map_or("", |r| r.trim_end_matches('"'));
            assert!(
                !quoted.contains(['"', '/', '\\', ';']),
                "{id}: Content-Disposition {cd}"
            );
        }
    }
    let names = sql_lines(
        &fx.data.db_path(),
        "SELECT file_name FROM library ORDER BY file_name",
    );
    eprintln!("stored names: {names:?}");
    for n in &names {
        assert!(
            !n.contains('/') && !n.contains('\\') && !n.contains('\0'),
            "stored name {n:?}"
        );
        assert!(
            n.chars().count() <= 200,
            "stored name is at most 200 characters: {}",
            n.len()
        );
    }
}

/// A failed sign-in logs the name that was typed. Names come from anyone on the
/// network, so they must not be able to write lines of their own into the log
/// (forged "signed in" lines) or terminal escapes.
#[tokio::test]
async fn failed_sign_in_names_cannot_forge_log_lines() {
    let dir = tempfile::tempdir().unwrap();
    let data = init_with_marketing(dir.path());
    let mut serve = ServeProcess::start(&data, &["--max-upload-mb", "200"]).await;
    let forged = "2026-01-01T00:00:00.000000Z  INFO skycast_publisher::web: signed in user=admin";
    let mut web = WebClient::new(&serve.url(), &data.join("tls/ca.pem"));
    // Five failures, then the locked answer: both log lines carry the name.
    for _ in 0..6 {
        let page = web.login(&format!("nobody\n{forged}"), "wrong-password").await;
        assert!(page.status.is_client_error(), "{}", page.status);
    }
    let page = web.login("esc\u{1b}[2J\u{1b}[31mred", "wrong-password").await;
    assert_eq!(page.status, StatusCode::UNAUTHORIZED);
    // The log is written as the requests end: give it a moment.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let log = serve.log_text();
    serve.stop().await;
    assert!(
        log.contains("sign-in failed") && log.contains("sign-in refused"),
        "{log}"
    );
    assert!(
        !log.lines().any(|l| l.starts_with(forged)),
        "a typed newline forged a log line: {log}"
    );
    assert!(
        !log.contains("esc\u{1b}[2J"),
        "terminal escapes reached the log raw: {log}"
    );
}

/// One request over HTTP/2 (as browsers talk to the publisher), with the host in
/// the `:authority` pseudo-header instead of `Host`.
async fn h2_request(
    fx: &PublisherFixture,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: String,
) -> (StatusCode, String) {
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(fx.data.ca_cert_path()).unwrap();
    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = tokio::net::TcpStream::connect(fx.addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect(name, tcp)
        .await
        .unwrap();
    assert_eq!(
        tls.get_ref().1.alpn_protocol(),
        Some(&b"h2"[..]),
        "the publisher speaks HTTP/2"
    );
    let (mut send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tls),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let mut req = axum::http::Request::builder()
        .method(method)
        .uri(format!("{}{path}", fx.url()))
        .version(axum::http::Version::HTTP_2);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = send
        .send_request(req.body(axum::body::Body::from(body)).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let location = resp
        .headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, location)
}

/// Browsers post forms over HTTP/2, where the host is in `:authority`: the
/// Origin check compares with it, refusing other sites and passing the page's own.
#[tokio::test]
async fn csrf_origin_check_holds_over_http2() {
    let fx = publisher().await;
    let track = media_id_of(&example_music()[0]);
    let mia = RawSession::login(&fx, "marketing").await;
    let before = snapshot(&fx);
    let own = fx.url();
    let form = |name: &str, token: &str| format!("name={name}&items={track}&csrf={token}");
    let wrong = "A".repeat(mia.csrf.len());
    let cookie = mia.cookie.as_str();
    let content = ("content-type", "application/x-www-form-urlencoded");
    let refused = [
        (
            "foreign Origin",
            vec![content, ("cookie", cookie), ("origin", "https://evil.example")],
            form("a", &mia.csrf),
        ),
        (
            "Origin null",
            vec![content, ("cookie", cookie), ("origin", "null")],
            form("a", &mia.csrf),
        ),
        (
            "wrong token",
            vec![content, ("cookie", cookie), ("origin", &own)],
            form("a", &wrong),
        ),
        (
            "no session",
            vec![content, ("origin", &own)],
            form("a", &mia.csrf),
        ),
    ];
    for (case, headers, body) in refused {
        let (status, _) = h2_request(&fx, "POST", "/marketing/playlists", &headers, body).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "h2 {case}");
    }
    assert_eq!(snapshot(&fx), before, "refused h2 forms changed nothing");
    let (status, location) = h2_request(
        &fx,
        "POST",
        "/marketing/playlists",
        &[content, ("cookie", cookie), ("origin", &own)],
        form("h2", &mia.csrf),
    )
    .await;
    assert_eq!(
        (status, location.as_str()),
        (StatusCode::SEE_OTHER, "/marketing/playlists/h2"),
        "h2, own origin"
    );
    let (status, _) = h2_request(
        &fx,
        "POST",
        "/admin/users",
        &[content, ("cookie", cookie), ("origin", &own)],
        form("x", &mia.csrf),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "h2: marketing posting to /admin");
    let (status, location) = h2_request(&fx, "GET", "/admin", &[("cookie", cookie)], String::new()).await;
    assert_eq!(
        (status, location.as_str()),
        (StatusCode::FORBIDDEN, ""),
        "h2: marketing opening /admin"
    );
}
