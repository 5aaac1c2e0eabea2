//! The admin's and the auditor's web pages over real HTTPS: user management,
//! history, diffs in words, rollback, review of publish requests, the audit page
//! and the store bundle; every result is checked in the database or the store, and
//! where a version is published, a real puller picks it up.

use std::path::Path;

use reqwest::StatusCode;
use skycast_publisher::audit::manifest_of;
use skycast_publisher::db::Role;
use skycast_publisher::workspace::Workspace;
use skycast_tests::web::{Page, WebClient, TEST_PASSWORD};
use skycast_tests::{example_music, write_planning, PublisherFixture};

async fn signed_in(fx: &PublisherFixture, user: &str) -> WebClient {
    let password = if user == "admin" {
        "admin-password"
    } else {
        TEST_PASSWORD
    };
    let mut web = fx.web_client();
    let page = web.login(user, password).await;
    assert_eq!(page.status, StatusCode::OK, "{user} signs in: {}", page.body);
    web
}

/// What a template shows for `text`: minijinja escapes these characters.
fn html(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#x27;")
        .replace('/', "&#x2f;")
}

fn flash(page: &Page) -> String {
    page.flash()
        .unwrap_or_else(|| panic!("{} {} shows no message: {}", page.status, page.path, page.body))
}

fn user_id(fx: &PublisherFixture, name: &str) -> Option<i64> {
    let db = fx.data.db().unwrap();
    db.users()
        .unwrap()
        .into_iter()
        .find(|u| u.username == name)
        .map(|u| u.id)
}

fn head(fx: &PublisherFixture) -> Option<u64> {
    fx.data.store().unwrap().head_version().unwrap().map(|(v, _)| v)
}

/// The git author of version `n`'s commit.
fn git_author(fx: &PublisherFixture, n: u64) -> String {
    let repo = git2::Repository::open(fx.data.store_path()).unwrap();
    let commit = repo
        .revparse_single(&format!("refs/tags/v{n}"))
        .unwrap()
        .peel_to_commit()
        .unwrap();
    let name = commit.author().name().unwrap().to_string();
    name
}

/// Two versions: v1 plays one track, v2 adds a second. Returns the added track's title.
fn publish_two_versions(fx: &PublisherFixture) -> String {
    let music = example_music();
    fx.publish(&write_planning(&fx.dir.path().join("p1"), &[&music[0]]));
    fx.publish(&write_planning(
        &fx.dir.path().join("p2"),
        &[&music[0], &music[1]],
    ));
    let store = fx.data.store().unwrap();
    let (v1, v2) = (manifest_of(&store, 1).unwrap(), manifest_of(&store, 2).unwrap());
    let added = v2.media.iter().find(|e| v1.media_entry(&e.id).is_none()).unwrap();
    added.title.clone()
}

#[tokio::test]
async fn admin_creates_edits_disables_and_deletes_a_user() {
    let fx = PublisherFixture::start().await;
    let mut admin = signed_in(&fx, "admin").await;

    let page = admin.get("/admin/users").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("id=\"create-user-form\""));

    let page = admin
        .post(
            "/admin/users",
            &[
                ("username", "mia"),
                ("password", "mia-password-1"),
                ("role", "marketing"),
            ],
        )
        .await;
    assert_eq!(page.path, "/admin/users");
    assert!(flash(&page).contains("mia"), "{}", flash(&page));
    assert!(page.body.contains("data-username=\"mia\""));
    let id = user_id(&fx, "mia").expect("mia is in the database");

    let mut mia = fx.web_client();
    let landed = mia.login("mia", "mia-password-1").await;
    assert_eq!(
        (landed.status, landed.path.as_str()),
        (StatusCode::OK, "/marketing")
    );

    // Role change: mia now lands on the sales page.
    let page = admin.get(&format!("/admin/users/{id}")).await;
    assert!(page.body.contains("id=\"edit-user-form\""));
    let page = admin
        .post(&format!("/admin/users/{id}"), &[("role", "commercial")])
        .await;
    assert!(flash(&page).contains("saved"), "{}", flash(&page));
    assert_eq!(fx.data.db().unwrap().user(id).unwrap().role, Role::Commercial);
    let mut mia = fx.web_client();
    assert_eq!(mia.login("mia", "mia-password-1").await.path, "/commercial");

    // A new password replaces the old one.
    admin
        .post(
            &format!("/admin/users/{id}"),
            &[("role", "commercial"), ("password", "new-password-2")],
        )
        .await;
    let mut mia = fx.web_client();
    assert_eq!(
        mia.login("mia", "mia-password-1").await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(mia.login("mia", "new-password-2").await.path, "/commercial");

    // Disabled: the open session ends and signing in fails.
    let page = admin
        .post(
            &format!("/admin/users/{id}"),
            &[("role", "commercial"), ("disabled", "on")],
        )
        .await;
    assert!(flash(&page).contains("saved"), "{}", flash(&page));
    assert!(fx.data.db().unwrap().user(id).unwrap().disabled);
    assert_eq!(mia.get("/commercial").await.path, "/login");
    let refused = fx.web_client().login("mia", "new-password-2").await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);

    let page = admin.post(&format!("/admin/users/{id}/delete"), &[]).await;
    assert_eq!(page.path, "/admin/users");
    assert!(flash(&page).contains("deleted"), "{}", flash(&page));
    assert_eq!(user_id(&fx, "mia"), None);
    assert!(!page.body.contains("data-username=\"mia\""));
}

#[tokio::test]
async fn bad_user_inputs_are_refused_with_clear_messages() {
    let fx = PublisherFixture::start().await;
    fx.add_role_users();
    let mut admin = signed_in(&fx, "admin").await;
    let users_before = fx.data.db().unwrap().users().unwrap();

    let cases: &[(&str, &str, &str)] = &[
        ("marketing", "long-enough-1", "already exists"),
        ("newbie", "short", "too short"),
        ("'; DROP TABLE users; --", "long-enough-1", "is not allowed"),
        ("<script>alert(1)</script>", "long-enough-1", "is not allowed"),
        ("", "long-enough-1", "is not allowed"),
    ];
    for (name, password, expected) in cases {
        let page = admin
            .post(
                "/admin/users",
                &[("username", name), ("password", password), ("role", "marketing")],
            )
            .await;
        assert_eq!(page.status, StatusCode::OK, "{name}");
        let message = flash(&page);
        assert!(page.body.contains("class=\"flash error\""), "{name}: {message}");
        assert!(message.contains(expected), "{name}: {message}");
        assert!(
            !page.body.contains("<script>alert(1)"),
            "{name}: markup must be escaped"
        );
    }
    let page = admin
        .post(
            "/admin/users",
            &[
                ("username", "eve"),
                ("password", "long-enough-1"),
                ("role", "root"),
            ],
        )
        .await;
    assert!(
        flash(&page).contains("role `root` does not exist"),
        "{}",
        flash(&page)
    );
    assert_eq!(
        fx.data.db().unwrap().users().unwrap(),
        users_before,
        "nothing changed"
    );

    // The admin cannot lock themselves out.
    let me = user_id(&fx, "admin").unwrap();
    let page = admin.post(&format!("/admin/users/{me}/delete"), &[]).await;
    assert!(flash(&page).contains("last enabled admin"), "{}", flash(&page));
    let page = admin
        .post(&format!("/admin/users/{me}"), &[("role", "marketing")])
        .await;
    assert!(flash(&page).contains("last enabled admin"), "{}", flash(&page));
    admin
        .post(
            "/admin/users",
            &[
                ("username", "boss"),
                ("password", "long-enough-1"),
                ("role", "admin"),
            ],
        )
        .await;
    let page = admin.post(&format!("/admin/users/{me}/delete"), &[]).await;
    assert!(
        flash(&page).contains("cannot delete your own account"),
        "{}",
        flash(&page)
    );
    let page = admin
        .post(
            &format!("/admin/users/{me}"),
            &[("role", "admin"), ("disabled", "on")],
        )
        .await;
    assert!(
        flash(&page).contains("cannot disable your own account"),
        "{}",
        flash(&page)
    );
    let user = fx.data.db().unwrap().user(me).unwrap();
    assert_eq!((user.role, user.disabled), (Role::Admin, false));
    assert_eq!(admin.get("/admin").await.status, StatusCode::OK);

    // Unknown or malformed ids get a page that says so.
    assert_eq!(admin.get("/admin/users/9999").await.status, StatusCode::NOT_FOUND);
    assert_eq!(admin.get("/admin/users/x'1").await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn admin_reads_history_diffs_and_rolls_back() {
    let fx = PublisherFixture::start().await;
    let added = publish_two_versions(&fx);
    let mut admin = signed_in(&fx, "admin").await;
    let puller = fx.add_player("p1", "main", &fx.url());
    puller.sync_ok().await;
    assert_eq!(puller.current_version(), Some(2));

    let home = admin.get("/admin").await;
    assert!(
        home.body.contains("data-player=\"p1\""),
        "the landing page lists players"
    );
    assert!(home.body.contains("id=\"settings-form\""));

    let page = admin.get("/history").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("id=\"diff-form\""));
    let v2 = page.body.find("data-version=\"2\"").unwrap();
    let v1 = page.body.find("data-version=\"1\"").unwrap();
    assert!(v2 < v1, "newest first");
    assert!(page.body.contains("tester"), "author shown");

    let page = admin.get("/history/2").await;
    assert!(
        page.body.contains("id=\"signature-status\" data-ok=\"true\""),
        "{}",
        page.body
    );
    assert!(
        page.body.contains(&html(&added)),
        "the version in words names its tracks"
    );
    assert!(
        !page.body.contains("id=\"rollback-button\""),
        "no rollback to the current version"
    );
    let page = admin.get("/history/1").await;
    assert!(page.body.contains("id=\"rollback-button\""));

    let page = admin.get("/history/diff?from=1&to=2").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.body.contains(&html(&added)),
        "the diff names the added track"
    );
    assert!(page.body.contains("data-change=\"added\""));

    for (query, status, says) in [
        (
            "from=one&to=2",
            StatusCode::BAD_REQUEST,
            "is not a version number",
        ),
        ("to=2", StatusCode::BAD_REQUEST, "is missing"),
        ("", StatusCode::BAD_REQUEST, "is missing"),
        ("from=1&to=99", StatusCode::NOT_FOUND, "version 99 does not exist"),
    ] {
        let page = admin.get(&format!("/history/diff?{query}")).await;
        assert_eq!(page.status, status, "{query}");
        assert!(page.body.contains(says), "{query}: {}", page.body);
    }
    assert_eq!(admin.get("/history/99").await.status, StatusCode::NOT_FOUND);

    let page = admin.post("/admin/rollback/1", &[]).await;
    assert_eq!(page.path, "/history/3");
    assert_eq!(flash(&page), "Version 3 published with the content of version 1");
    let store = fx.data.store().unwrap();
    let (old, new) = (manifest_of(&store, 1).unwrap(), manifest_of(&store, 3).unwrap());
    assert_eq!(new.program, old.program);
    assert_eq!(new.media, old.media);
    assert_eq!(new.published_by, "admin");
    assert_eq!(git_author(&fx, 3), "admin");
    puller.sync_ok().await;
    assert_eq!(puller.current_version(), Some(3));

    let page = admin.post("/admin/rollback/42", &[]).await;
    assert!(
        flash(&page).contains("version 42 does not exist"),
        "{}",
        flash(&page)
    );
    assert_eq!(head(&fx), Some(3));
}

/// Marketing changes the shared draft (dropping one track) and asks to publish it.
async fn marketing_requests(fx: &PublisherFixture, web: &mut WebClient, message: &str) {
    {
        let db = fx.data.db().unwrap();
        let ws = Workspace::new(&fx.data, &db);
        let mut draft = ws.draft().unwrap();
        let playlist = draft.program.playlists.get_mut("allday").unwrap();
        playlist.items.truncate(1);
        ws.save_draft(&draft, "marketing", chrono::Utc::now()).unwrap();
    }
    web.get("/publish").await;
    let page = web.post("/publish", &[("message", message)]).await;
    assert!(!page.body.contains("class=\"flash error\""), "{}", page.body);
}

#[tokio::test]
async fn review_required_publishes_wait_for_an_admin() {
    let fx = PublisherFixture::start().await;
    fx.add_role_users();
    let dropped = publish_two_versions(&fx);
    let mut admin = signed_in(&fx, "admin").await;
    let mut marketing = signed_in(&fx, "marketing").await;

    let page = admin.post("/admin/settings", &[("review_required", "on")]).await;
    assert_eq!(page.path, "/admin");
    assert!(flash(&page).contains("Review required"), "{}", flash(&page));
    assert!(page.body.contains("id=\"review-required\" checked"));

    marketing_requests(&fx, &mut marketing, "Shorter playlist").await;
    assert_eq!(head(&fx), Some(2), "the request waits");

    let page = admin.get("/admin").await;
    assert!(
        page.body.contains("data-count=\"1\""),
        "one pending request on the landing page"
    );
    let page = admin.get("/admin/reviews").await;
    assert!(page.body.contains("data-test=\"pending-request\""));
    assert!(page.body.contains("Shorter playlist"));
    assert!(
        page.body.contains(&html(&dropped)),
        "the summary names the dropped track"
    );
    let at = page.body.find("data-request-id=\"").unwrap() + "data-request-id=\"".len();
    let id: i64 = page.body[at..].split('"').next().unwrap().parse().unwrap();

    let page = admin.post(&format!("/admin/reviews/{id}/approve"), &[]).await;
    assert_eq!(flash(&page), "Version 3 published");
    assert_eq!(head(&fx), Some(3));
    assert_eq!(git_author(&fx, 3), "marketing");
    let v3 = manifest_of(&fx.data.store().unwrap(), 3).unwrap();
    assert_eq!(v3.program.playlists["allday"].items.len(), 1);
    let puller = fx.add_player("p1", "main", &fx.url());
    puller.sync_ok().await;
    assert_eq!(puller.current_version(), Some(3));

    // Approving twice does nothing more.
    let page = admin.post(&format!("/admin/reviews/{id}/approve"), &[]).await;
    assert!(flash(&page).contains("already approved"), "{}", flash(&page));
    assert_eq!(head(&fx), Some(3));

    // A rejected request publishes nothing.
    {
        let db = fx.data.db().unwrap();
        let ws = Workspace::new(&fx.data, &db);
        let mut draft = ws.draft().unwrap();
        draft.program.playlists.get_mut("allday").unwrap().order = skycast_schema::PlayOrder::Shuffle;
        ws.save_draft(&draft, "marketing", chrono::Utc::now()).unwrap();
    }
    marketing.get("/publish").await;
    marketing.post("/publish", &[("message", "Shuffle it")]).await;
    let page = admin.get("/admin/reviews").await;
    let at = page
        .body
        .find("data-test=\"pending-request\" data-request-id=\"")
        .unwrap()
        + "data-test=\"pending-request\" data-request-id=\"".len();
    let id: i64 = page.body[at..].split('"').next().unwrap().parse().unwrap();
    let page = admin.post(&format!("/admin/reviews/{id}/reject"), &[]).await;
    assert!(flash(&page).contains("rejected"), "{}", flash(&page));
    assert_eq!(head(&fx), Some(3));
    assert!(page.body.contains("data-status=\"rejected\""));

    // A request overtaken by another publish cannot be approved: it would undo it.
    {
        let db = fx.data.db().unwrap();
        let ws = Workspace::new(&fx.data, &db);
        let mut draft = ws.draft().unwrap();
        draft.program.playlists.get_mut("allday").unwrap().order = skycast_schema::PlayOrder::Shuffle;
        ws.save_draft(&draft, "marketing", chrono::Utc::now()).unwrap();
    }
    marketing.get("/publish").await;
    marketing
        .post("/publish", &[("message", "Shuffle it, again")])
        .await;
    let music = example_music();
    fx.publish(&write_planning(&fx.dir.path().join("p4"), &[&music[2]]));
    let page = admin.get("/admin/reviews").await;
    assert!(page.body.contains("data-test=\"stale-request\""), "{}", page.body);
    let at = page
        .body
        .find("data-test=\"pending-request\" data-request-id=\"")
        .unwrap()
        + "data-test=\"pending-request\" data-request-id=\"".len();
    let id: i64 = page.body[at..].split('"').next().unwrap().parse().unwrap();
    assert!(!page.body.contains(&format!("id=\"approve-{id}\"")));
    let page = admin.post(&format!("/admin/reviews/{id}/approve"), &[]).await;
    assert!(
        flash(&page).contains("would undo that version"),
        "{}",
        flash(&page)
    );
    assert_eq!(head(&fx), Some(4));

    let page = admin.post("/admin/settings", &[]).await;
    assert!(flash(&page).contains("no longer required"), "{}", flash(&page));
    assert!(!page.body.contains("id=\"review-required\" checked"));
}

fn git(args: &[&str], dir: &Path) -> std::process::Output {
    let out = std::process::Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[tokio::test]
async fn auditor_reads_everything_downloads_the_store_and_changes_nothing() {
    let fx = PublisherFixture::start().await;
    fx.add_role_users();
    let added = publish_two_versions(&fx);
    let mut auditor = signed_in(&fx, "auditor").await;

    let page = auditor.get("/audit").await;
    assert_eq!((page.status, page.path.as_str()), (StatusCode::OK, "/audit"));
    assert!(
        page.body.contains("id=\"audit-report\" data-ok=\"true\""),
        "{}",
        page.body
    );
    assert!(page.body.contains("data-username=\"marketing\""));
    assert!(!page.body.contains("$argon2"), "never a password hash");
    assert!(page.body.contains("href=\"/history/2\""));
    assert_eq!(auditor.get("/history").await.status, StatusCode::OK);
    let page = auditor.get("/history/diff?from=1&to=2").await;
    assert!(page.body.contains(&html(&added)));
    let page = auditor.get("/history/1").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(!page.body.contains("rollback-button"), "no rollback for auditors");

    let resp = auditor
        .client()
        .get(format!("{}/audit/bundle", auditor.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "application/octet-stream");
    assert!(resp.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .contains("skycast-store-2.bundle"));
    let bytes = resp.bytes().await.unwrap();
    let work = tempfile::tempdir().unwrap();
    let bundle = work.path().join("store.bundle");
    std::fs::write(&bundle, &bytes).unwrap();
    // `git bundle verify` runs inside a repository: an empty one has every
    // prerequisite a complete bundle needs (none).
    git(&["init", "--quiet", "--bare", "empty.git"], work.path());
    let verified = git(
        &["bundle", "verify", "../store.bundle"],
        &work.path().join("empty.git"),
    );
    assert!(String::from_utf8_lossy(&verified.stderr).contains("is okay"));
    git(&["clone", "--quiet", "store.bundle", "clone"], work.path());
    let out = git(
        &["rev-parse", "refs/remotes/origin/main"],
        &work.path().join("clone"),
    );
    let head_oid = fx.data.store().unwrap().head().unwrap().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), head_oid.to_string());
    let tags = git(&["tag"], &work.path().join("clone"));
    assert_eq!(
        String::from_utf8_lossy(&tags.stdout).split_whitespace().count(),
        2
    );

    // Every write is refused and changes nothing.
    let users_before = fx.data.db().unwrap().users().unwrap();
    let marketing = user_id(&fx, "marketing").unwrap();
    for (path, fields) in [
        ("/admin/rollback/1".to_string(), vec![]),
        (
            "/admin/users".to_string(),
            vec![
                ("username", "sneaky"),
                ("password", "long-enough-1"),
                ("role", "admin"),
            ],
        ),
        (format!("/admin/users/{marketing}"), vec![("role", "admin")]),
        (format!("/admin/users/{marketing}/delete"), vec![]),
        ("/admin/settings".to_string(), vec![("review_required", "on")]),
        ("/admin/reviews/1/approve".to_string(), vec![]),
    ] {
        let page = auditor.post(&path, &fields).await;
        assert_eq!(page.status, StatusCode::FORBIDDEN, "{path}");
    }
    assert_eq!(auditor.get("/admin").await.status, StatusCode::FORBIDDEN);
    assert_eq!(head(&fx), Some(2));
    assert_eq!(fx.data.db().unwrap().users().unwrap(), users_before);
    let db = fx.data.db().unwrap();
    assert!(!Workspace::new(&fx.data, &db).review_required().unwrap());
}

#[tokio::test]
async fn pages_work_before_anything_is_published() {
    let fx = PublisherFixture::start().await;
    fx.add_role_users();
    let mut admin = signed_in(&fx, "admin").await;
    let page = admin.get("/admin").await;
    assert!(page.body.contains("id=\"no-versions\""), "{}", page.body);
    assert!(admin
        .get("/admin/reviews")
        .await
        .body
        .contains("id=\"no-pending\""));
    let page = admin.post("/admin/rollback/1", &[]).await;
    assert!(
        flash(&page).contains("version 1 does not exist"),
        "{}",
        flash(&page)
    );

    let mut auditor = signed_in(&fx, "auditor").await;
    let page = auditor.get("/audit").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("id=\"audit-empty\""), "{}", page.body);
    assert!(auditor
        .get("/history")
        .await
        .body
        .contains("id=\"history-empty\""));
    let (status, _) = auditor.get_bytes("/audit/bundle").await;
    assert_eq!(status, StatusCode::CONFLICT);
}
