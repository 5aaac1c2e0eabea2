//! The web UI's ads, urgent message and publish pages over HTTP: play-now and
//! urgent interrupts published at once as signed versions a player picks up,
//! scheduled ads through the draft and the Publish page, review requests, and
//! every refused form leaving the store and the draft as they were.

use std::path::{Path, PathBuf};

use skycast_publisher::workspace::{Draft, Workspace};
use skycast_schema::{AfterMode, InterruptLevel, Manifest, MediaId, StartMode};
use skycast_tests::web::{Page, WebClient, TEST_PASSWORD};
use skycast_tests::{example, file_id, write_planning, PublisherFixture};

/// A publisher with one user per role and version 1 published (shops main,
/// lille, nantes, all tagged `pilot`).
async fn setup() -> PublisherFixture {
    let fx = PublisherFixture::start().await;
    fx.add_role_users();
    let planning = write_planning(&fx.dir.path().join("planning"), &["music/tone-a.mp3"]);
    assert_eq!(fx.publish(&planning).version, 1);
    fx
}

async fn signed_in(fx: &PublisherFixture, user: &str) -> WebClient {
    let mut web = fx.web_client();
    let password = if user == "admin" {
        "admin-password"
    } else {
        TEST_PASSWORD
    };
    let page = web.login(user, password).await;
    // The landing page belongs to another area: only check the sign-in itself.
    assert_ne!(page.path, "/login", "login {user}: {}", page.status);
    web
}

fn ad_file(name: &str) -> PathBuf {
    example(&format!("ads/{name}"))
}

fn id_of(path: &Path) -> MediaId {
    file_id(path).0
}

async fn upload(web: &mut WebClient, to: &str, path: &Path) -> Page {
    let name = path.file_name().unwrap().to_string_lossy().to_string();
    web.get(if to.starts_with("/admin") {
        "/admin/urgent"
    } else {
        "/commercial"
    })
    .await;
    web.upload(to, "files", &[(&name, std::fs::read(path).unwrap())], &[])
        .await
}

fn head(fx: &PublisherFixture) -> (u64, Manifest, String) {
    let store = fx.data.store().unwrap();
    let (version, _) = store.head_version().unwrap().unwrap();
    let manifest = skycast_publisher::audit::manifest_of(&store, version).unwrap();
    let commit = store.head().unwrap().unwrap();
    let author = store.version_info(commit).unwrap().author;
    (version, manifest, author)
}

/// Every version in the store verifies against the publisher's key.
fn assert_store_verifies(fx: &PublisherFixture) {
    let store = fx.data.store().unwrap();
    let trust = skycast_publisher::trust::HistoryTrust::of_data_dir(&fx.data).unwrap();
    let report = skycast_publisher::audit::verify_store(&store, &trust).unwrap();
    assert!(report.ok(), "{}", report.render());
}

fn draft(fx: &PublisherFixture) -> Draft {
    let db = fx.data.db().unwrap();
    Workspace::new(&fx.data, &db).draft().unwrap()
}

fn set_review_required(fx: &PublisherFixture, on: bool) {
    let db = fx.data.db().unwrap();
    Workspace::new(&fx.data, &db).set_review_required(on).unwrap();
}

fn flash(page: &Page) -> String {
    page.flash()
        .unwrap_or_else(|| panic!("no flash on {} ({})", page.path, page.status))
}

#[tokio::test]
async fn commercial_uploads_an_ad_plays_it_now_and_a_player_gets_that_version() {
    let fx = setup().await;
    let mut web = signed_in(&fx, "commercial").await;
    let bread = ad_file("bread.mp3");
    let page = upload(&mut web, "/commercial/ads/upload", &bread).await;
    assert_eq!(page.path, "/commercial");
    assert!(flash(&page).contains("bread"), "{}", flash(&page));
    let id = id_of(&bread).to_string();
    assert!(
        page.body.contains(&format!("value=\"{id}\"")),
        "the new ad is offered to play now"
    );

    let before = chrono::Utc::now();
    let page = web
        .post(
            "/commercial/play-now",
            &[
                ("media", &id),
                ("shops", "main"),
                ("start", "cut"),
                ("after", "resume"),
                ("message", "lunch promo"),
            ],
        )
        .await;
    assert_eq!(page.path, "/commercial");
    assert!(flash(&page).contains("Version 2 published"), "{}", flash(&page));

    let (version, manifest, author) = head(&fx);
    assert_eq!((version, author.as_str()), (2, "commercial"));
    assert_store_verifies(&fx);
    let store = fx.data.store().unwrap();
    let commit = store.head().unwrap().unwrap();
    let message = store.version_info(commit).unwrap().message;
    assert!(
        message.contains("now in main") && message.contains("lunch promo"),
        "{message}"
    );
    let interrupts = &manifest.program.interrupts;
    assert_eq!(interrupts.len(), 1, "{interrupts:?}");
    let int = &interrupts[0];
    assert!(int.id.starts_with("play-now-"), "{}", int.id);
    assert_eq!(int.media.to_string(), id);
    assert_eq!(int.level, InterruptLevel::Ad);
    assert_eq!(int.start, Some(StartMode::Cut));
    assert_eq!(int.after, Some(AfterMode::Resume));
    assert_eq!(int.shops, vec!["main".to_string()]);
    let (from, to) = (int.not_before.unwrap().0, int.not_after.unwrap().0);
    assert!(from >= before - chrono::Duration::seconds(1) && from <= chrono::Utc::now());
    assert_eq!(to - from, chrono::Duration::hours(1));
    assert!(
        manifest.media_entry(&int.media).is_some(),
        "the ad's file is in the version"
    );
    // The rest of the program is version 1's.
    assert_eq!(manifest.program.playlists.len(), 1);

    let puller = fx.add_player("p1", "main", &fx.url());
    puller.sync_ok().await;
    assert_eq!(puller.current_version(), Some(2));
    assert!(puller.media_files().contains(&int.media.file_name()));

    let page = web.get("/commercial").await;
    assert!(
        page.body.contains(&format!("data-test=\"interrupt-{}\"", int.id)),
        "listed as recent"
    );
}

#[tokio::test]
async fn a_scheduled_ad_goes_into_the_draft_and_publishes_from_the_publish_page() {
    let fx = setup().await;
    let mut web = signed_in(&fx, "commercial").await;
    let coffee = ad_file("coffee.mp3");
    upload(&mut web, "/commercial/ads/upload", &coffee).await;
    let id = id_of(&coffee).to_string();

    let page = web
        .post(
            "/commercial/ads",
            &[
                ("media", &id),
                ("shops", "tag:pilot"),
                ("every_tracks", "3"),
                ("at", ""),
                ("date_from", "2026-12-01"),
                ("date_to", "2026-12-24"),
                ("start", "boundary"),
                ("after", "next"),
            ],
        )
        .await;
    assert_eq!(page.path, "/commercial");
    assert!(flash(&page).contains("added to the draft"), "{}", flash(&page));
    assert!(page.body.contains("data-test=\"ad-rule-0\""));
    assert_eq!(head(&fx).0, 1, "scheduling only changes the draft");
    let ads = draft(&fx).program.ads;
    assert_eq!(ads.len(), 1);
    assert_eq!(ads[0].every_tracks, Some(3));
    assert_eq!(ads[0].shops, vec!["tag:pilot".to_string()]);
    assert_eq!(ads[0].after, Some(AfterMode::Next));

    let page = web.get("/publish").await;
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains("id=\"publish-diff\""),
        "a summary of the change"
    );
    assert!(
        page.body.contains("Coffee") || page.body.contains("coffee"),
        "the summary names the ad"
    );
    assert!(page.body.contains("data-section=\"ads\""), "in the ads section");
    assert!(page.body.contains("data-change=\"added\""), "an added line");

    let page = web
        .post("/publish", &[("message", "coffee ad every 3 tracks in December")])
        .await;
    assert_eq!(page.path, "/publish");
    assert!(flash(&page).contains("Version 2 published"), "{}", flash(&page));
    let (version, manifest, author) = head(&fx);
    assert_eq!((version, author.as_str()), (2, "commercial"));
    assert_store_verifies(&fx);
    let rule = &manifest.program.ads[0];
    assert_eq!(rule.media.to_string(), id);
    assert_eq!(rule.every_tracks, Some(3));
    assert_eq!(rule.at, None);
    assert_eq!(rule.dates.unwrap().to_string(), "2026-12-01..2026-12-24");
    assert_eq!(rule.start, Some(StartMode::Boundary));
    let puller = fx.add_player("p1", "main", &fx.url());
    puller.sync_ok().await;
    assert_eq!(puller.current_version(), Some(2));

    // The draft is the published version again: nothing more to publish.
    let page = web.post("/publish", &[("message", "again")]).await;
    assert_eq!(page.status, 400);
    assert!(flash(&page).contains("nothing to publish"), "{}", flash(&page));
    assert_eq!(head(&fx).0, 2);

    // Removing the rule is a draft change too.
    let page = web.post("/commercial/ads/0/delete", &[("media", &id)]).await;
    assert!(flash(&page).contains("removed"), "{}", flash(&page));
    assert!(draft(&fx).program.ads.is_empty());
    assert_eq!(head(&fx).0, 2);
}

#[tokio::test]
async fn fixed_time_ads_are_kept_sorted_and_distinct() {
    let fx = setup().await;
    let mut web = signed_in(&fx, "commercial").await;
    let bread = ad_file("bread.mp3");
    upload(&mut web, "/commercial/ads/upload", &bread).await;
    let id = id_of(&bread).to_string();
    let page = web
        .post(
            "/commercial/ads",
            &[
                ("media", &id),
                ("shops", "main"),
                ("shops", "lille"),
                ("at", "17:45, 09:30,09:30"),
            ],
        )
        .await;
    assert!(flash(&page).contains("added to the draft"), "{}", flash(&page));
    // The seed's users read French: the page and the table are in French.
    let body = web
        .client()
        .get(format!("{}/commercial", web.base))
        .header("accept-language", "fr-FR,fr;q=0.9")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        body.contains("Diffuser maintenant") && body.contains("09:30, 17:45"),
        "{body}"
    );
    let rule = &draft(&fx).program.ads[0];
    let at: Vec<String> = rule.at.as_ref().unwrap().iter().map(|t| t.to_string()).collect();
    assert_eq!(at, ["09:30", "17:45"]);
    assert_eq!(rule.shops, ["main", "lille"]);
    assert_eq!(rule.every_tracks, None);
}

#[tokio::test]
async fn bad_ad_fields_are_refused_naming_the_field_and_change_nothing() {
    let fx = setup().await;
    let mut web = signed_in(&fx, "commercial").await;
    let bread = ad_file("bread.mp3");
    upload(&mut web, "/commercial/ads/upload", &bread).await;
    let ad = id_of(&bread).to_string();
    let music = id_of(&example("music/tone-a.mp3")).to_string();
    let draft_before = draft(&fx);

    let schedule: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (
            vec![("media", &ad), ("shops", "main"), ("every_tracks", "0")],
            "every_tracks: 0 is out of range",
        ),
        (
            vec![("media", &ad), ("shops", "main"), ("every_tracks", "101")],
            "every_tracks: 101 is out of range",
        ),
        (
            vec![("media", &ad), ("shops", "main"), ("every_tracks", "three")],
            "every_tracks: `three` is not",
        ),
        (
            vec![
                ("media", &ad),
                ("shops", "main"),
                ("every_tracks", "3"),
                ("at", "09:00"),
            ],
            "not both",
        ),
        (vec![("media", &ad), ("shops", "main")], "give either"),
        (
            vec![("media", &ad), ("shops", "main"), ("at", "25:00")],
            "at: `25:00` is not a time",
        ),
        (
            vec![("media", &ad), ("shops", "main"), ("at", "9h30")],
            "at: `9h30` is not a time",
        ),
        (
            vec![("media", "nope"), ("shops", "main"), ("every_tracks", "3")],
            "media: `nope` is not in the library",
        ),
        (
            vec![("media", &music), ("shops", "main"), ("every_tracks", "3")],
            "media: `",
        ),
        (
            vec![("media", &ad), ("every_tracks", "3")],
            "shops: no shop chosen",
        ),
        (
            vec![("media", &ad), ("shops", "paris"), ("every_tracks", "3")],
            "shops: `paris`",
        ),
        (
            vec![
                ("media", &ad),
                ("shops", "main"),
                ("every_tracks", "3"),
                ("date_from", "2026-12-01"),
            ],
            "date_to: missing",
        ),
        (
            vec![
                ("media", &ad),
                ("shops", "main"),
                ("every_tracks", "3"),
                ("date_from", "2026-12-24"),
                ("date_to", "2026-12-01"),
            ],
            "date_to: 2026-12-01 is before",
        ),
        (
            vec![
                ("media", &ad),
                ("shops", "main"),
                ("every_tracks", "3"),
                ("start", "later"),
            ],
            "start: `later`",
        ),
        (
            vec![
                ("media", &ad),
                ("shops", "main"),
                ("every_tracks", "3"),
                ("after", "loop"),
            ],
            "after: `loop`",
        ),
    ];
    for (fields, want) in schedule {
        let page = web.post("/commercial/ads", &fields).await;
        assert_eq!(page.status, 400, "{fields:?}");
        let text = flash(&page);
        assert!(text.contains(want), "{fields:?}: {text}");
        assert!(
            page.body.contains("id=\"schedule-ad-form\""),
            "the form is shown again"
        );
    }
    // What was typed stays in the form.
    let page = web
        .post(
            "/commercial/ads",
            &[("media", &ad), ("shops", "main"), ("at", "25:00")],
        )
        .await;
    assert!(page.body.contains("value=\"25:00\""));

    let play_now: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (vec![("media", &ad), ("start", "cut")], "shops: no shop chosen"),
        (
            vec![("media", "nope"), ("shops", "main")],
            "media: `nope` is not in the library",
        ),
        (vec![("media", ""), ("shops", "main")], "media: no media chosen"),
        (vec![("media", &music), ("shops", "main")], "is a music file"),
        (
            vec![("media", &ad), ("shops", "main"), ("start", "sideways")],
            "start: `sideways`",
        ),
        (
            vec![("media", &ad), ("shops", "main"), ("after", "never")],
            "after: `never`",
        ),
        (
            vec![("media", &ad), ("shops", "tag:nowhere")],
            "shops: `tag:nowhere`",
        ),
    ];
    for (fields, want) in play_now {
        let page = web.post("/commercial/play-now", &fields).await;
        assert_eq!(page.status, 400, "{fields:?}");
        let text = flash(&page);
        assert!(text.contains(want), "{fields:?}: {text}");
    }
    let long = "x".repeat(501);
    let page = web
        .post(
            "/commercial/play-now",
            &[("media", &ad), ("shops", "main"), ("message", &long)],
        )
        .await;
    assert!(flash(&page).contains("message:"), "{}", flash(&page));

    assert_eq!(head(&fx).0, 1, "nothing was published");
    assert_eq!(draft(&fx), draft_before, "the draft did not change");
}

#[tokio::test]
async fn play_now_waits_for_an_admin_when_review_is_required() {
    let fx = setup().await;
    set_review_required(&fx, true);
    let mut web = signed_in(&fx, "commercial").await;
    let bread = ad_file("bread.mp3");
    upload(&mut web, "/commercial/ads/upload", &bread).await;
    let id = id_of(&bread).to_string();
    let page = web.get("/commercial").await;
    assert!(page.body.contains("id=\"ads-review-note\""));
    let page = web
        .post(
            "/commercial/play-now",
            &[("media", &id), ("shops", "all"), ("start", "boundary")],
        )
        .await;
    assert!(
        flash(&page).contains("waiting for an administrator"),
        "{}",
        flash(&page)
    );
    assert_eq!(head(&fx).0, 1, "nothing published before approval");
    let db = fx.data.db().unwrap();
    let ws = Workspace::new(&fx.data, &db);
    let requests = ws.requests().unwrap();
    assert_eq!(requests.len(), 1);
    assert_eq!(
        (requests[0].author.as_str(), requests[0].status.as_str()),
        ("commercial", "pending")
    );
    let requested = ws.request_draft(requests[0].id).unwrap();
    assert_eq!(requested.program.interrupts.len(), 1);
    assert_eq!(requested.program.interrupts[0].start, Some(StartMode::Boundary));
    assert_eq!(requested.program.interrupts[0].shops, ["all"]);
}

#[tokio::test]
async fn urgent_needs_the_confirmation_and_then_publishes_at_once_even_under_review() {
    let fx = setup().await;
    set_review_required(&fx, true);
    let mut web = signed_in(&fx, "admin").await;
    let coffee = ad_file("coffee.mp3");
    let id = id_of(&coffee).to_string();
    let page = upload(&mut web, "/admin/urgent/upload", &coffee).await;
    assert_eq!(page.path, "/admin/urgent");
    assert!(flash(&page).contains("coffee"), "{}", flash(&page));
    assert!(
        page.body.contains(&format!("value=\"{id}\" selected")),
        "the uploaded message is preselected"
    );
    assert!(page.body.contains("id=\"urgent-form\""));

    let page = web
        .post(
            "/admin/urgent",
            &[("media", &id), ("shops", "all"), ("message", "fire drill")],
        )
        .await;
    assert_eq!(page.status, 400);
    assert!(flash(&page).contains("confirm"), "{}", flash(&page));
    assert_eq!(head(&fx).0, 1, "nothing published without the confirmation");

    let page = web
        .post(
            "/admin/urgent",
            &[("media", &id), ("shops", "nantes"), ("confirm", "no")],
        )
        .await;
    assert_eq!(page.status, 400);
    assert_eq!(head(&fx).0, 1);

    let page = web
        .post(
            "/admin/urgent",
            &[
                ("media", &id),
                ("shops", "all"),
                ("confirm", "yes"),
                ("message", "fire drill"),
            ],
        )
        .await;
    assert_eq!(page.path, "/admin/urgent");
    assert!(flash(&page).contains("Version 2 published"), "{}", flash(&page));
    let (version, manifest, author) = head(&fx);
    assert_eq!((version, author.as_str()), (2, "admin"));
    assert_store_verifies(&fx);
    let int = &manifest.program.interrupts[0];
    assert!(int.id.starts_with("urgent-"), "{}", int.id);
    assert_eq!(int.level, InterruptLevel::Urgent);
    assert_eq!(int.start, Some(StartMode::Cut));
    assert_eq!(int.after, Some(AfterMode::Resume));
    assert_eq!(int.shops, ["all"]);
    assert_eq!(
        int.not_after.unwrap().0 - int.not_before.unwrap().0,
        chrono::Duration::hours(1)
    );
    let db = fx.data.db().unwrap();
    assert!(
        Workspace::new(&fx.data, &db).requests().unwrap().is_empty(),
        "no review request"
    );

    let puller = fx.add_player("p1", "nantes", &fx.url());
    puller.sync_ok().await;
    assert_eq!(puller.current_version(), Some(2));
    let page = web.get("/admin/urgent").await;
    assert!(page.body.contains(&format!("data-test=\"urgent-{}\"", int.id)));
}

#[tokio::test]
async fn marketing_publish_waits_for_review_and_leaves_head_unchanged() {
    let fx = setup().await;
    set_review_required(&fx, true);
    {
        let db = fx.data.db().unwrap();
        Workspace::new(&fx.data, &db)
            .edit_draft("marketing", chrono::Utc::now(), |d| {
                d.valid_days = 10;
                Ok(())
            })
            .unwrap();
    }
    let mut web = signed_in(&fx, "marketing").await;
    let page = web.get("/publish").await;
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains("data-review=\"yes\""),
        "the page says review is required"
    );
    assert!(
        page.body.contains("id=\"publish-same-program\""),
        "only the validity differs"
    );

    let page = web.post("/publish", &[("message", "")]).await;
    assert_eq!(page.status, 400);
    assert!(flash(&page).contains("message: empty"), "{}", flash(&page));
    let page = web.post("/publish", &[("message", "   ")]).await;
    assert_eq!(page.status, 400);
    let long = "y".repeat(501);
    let page = web.post("/publish", &[("message", &long)]).await;
    assert!(flash(&page).contains("500"), "{}", flash(&page));

    let page = web.post("/publish", &[("message", "shorter validity")]).await;
    assert!(flash(&page).contains("Sent for review"), "{}", flash(&page));
    assert_eq!(head(&fx).0, 1, "head unchanged until an admin approves");
    let db = fx.data.db().unwrap();
    let requests = Workspace::new(&fx.data, &db).requests().unwrap();
    assert_eq!(requests.len(), 1);
    assert_eq!(
        (
            requests[0].author.as_str(),
            requests[0].status.as_str(),
            requests[0].message.as_str()
        ),
        ("marketing", "pending", "shorter validity")
    );
    assert!(page
        .body
        .contains(&format!("data-test=\"request-{}\"", requests[0].id)));

    // The admin is never held by review.
    let mut admin = signed_in(&fx, "admin").await;
    let page = admin.get("/publish").await;
    assert!(page.body.contains("data-review=\"no\""));
    let page = admin.post("/publish", &[("message", "validity 10 days")]).await;
    assert!(flash(&page).contains("Version 2 published"), "{}", flash(&page));
    assert_eq!(head(&fx).2, "admin");
}

#[tokio::test]
async fn publish_refuses_a_draft_edited_since_the_summary_and_discard_restores_head() {
    let fx = setup().await;
    let edit = |days: u32| {
        let db = fx.data.db().unwrap();
        Workspace::new(&fx.data, &db)
            .edit_draft("marketing", chrono::Utc::now(), |d| {
                d.valid_days = days;
                Ok(())
            })
            .unwrap();
    };
    edit(10);
    let mut web = signed_in(&fx, "marketing").await;
    let page = web.get("/publish").await;
    let at = page.body.find("name=\"draft\" value=\"").unwrap() + "name=\"draft\" value=\"".len();
    let shown = page.body[at..at + 64].to_string();
    edit(12);
    let page = web
        .post("/publish", &[("message", "validity"), ("draft", &shown)])
        .await;
    assert_eq!(page.status, 409);
    assert!(flash(&page).contains("draft changed"), "{}", flash(&page));
    assert_eq!(head(&fx).0, 1);

    let page = web.post("/publish/discard", &[]).await;
    assert!(flash(&page).contains("discarded"), "{}", flash(&page));
    assert!(page.body.contains("id=\"publish-no-changes\""));
    assert_eq!(draft(&fx).valid_days, Draft::of_manifest(&head(&fx).1).valid_days);
}
