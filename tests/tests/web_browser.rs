//! Each role's main job walked in headless Chromium against a real publisher over
//! HTTPS, signing in through the login form: marketing uploads, builds a
//! playlist, plans, previews and publishes; sales plays an ad now; the admin
//! manages users, reads and diffs the history and rolls back; the auditor reads
//! everything and every write is refused. Each publish is checked in the store
//! (a new version signed by the publisher's key, with the right content and git
//! author) and picked up by a real puller. Screenshots of each role's main page
//! (desktop and phone) and of key pages land in `target/test-output/screenshots`
//! for reviewers, and every page's load time is measured in the browser.

use std::path::{Path, PathBuf};

use chrono::{Datelike, NaiveDate, TimeDelta, Utc};
use skycast_publisher::audit::manifest_of;
use skycast_publisher::store::{MANIFEST_FILE, SIGNATURE_FILE};
use skycast_schema::{
    verify, AfterMode, InterruptLevel, Limits, Manifest, MediaId, StartMode, Verified, Weekday,
};
use skycast_tests::ui::Ui;
use skycast_tests::web::TEST_PASSWORD;
use skycast_tests::{example, example_music, file_id, write_planning, PublisherFixture};

// ---- Store checks ----

fn head(fx: &PublisherFixture) -> u64 {
    fx.data
        .store()
        .unwrap()
        .head_version()
        .unwrap()
        .map(|(v, _)| v)
        .expect("a published version")
}

/// Version `n`'s manifest, checked against the publisher's key.
fn verified(fx: &PublisherFixture, n: u64) -> Verified<Manifest> {
    let store = fx.data.store().unwrap();
    let bytes = store.version_file(n, MANIFEST_FILE).unwrap();
    let sig = store.version_file(n, SIGNATURE_FILE).unwrap();
    verify(&bytes, &sig, &fx.trusted(), &Limits::default())
        .unwrap_or_else(|e| panic!("version {n} does not verify: {e}"))
}

/// The git author of version `n`'s commit.
fn git_author(fx: &PublisherFixture, n: u64) -> String {
    let store = fx.data.store().unwrap();
    let commit = store.commit_of_version(n).unwrap().expect("the version's commit");
    store.version_info(commit).unwrap().author
}

/// A file of content-example as chromedriver wants it: absolute and without `..`.
fn media_file(rel: &str) -> PathBuf {
    let path = example(rel);
    std::fs::canonicalize(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn id_of(path: &Path) -> MediaId {
    file_id(path).0
}

/// A publisher with one user per role and version 1 published (shops main,
/// lille and nantes playing `music/tone-a.mp3` all day).
async fn with_first_version() -> PublisherFixture {
    let fx = PublisherFixture::start().await;
    fx.add_role_users();
    let planning = write_planning(&fx.dir.path().join("planning-v1"), &["music/tone-a.mp3"]);
    assert_eq!(fx.publish(&planning).version, 1);
    fx
}

/// Two versions: v1 plays one track, v2 adds a second. Returns the added
/// track's title.
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

/// Today in the plannings' time zone.
fn paris_today() -> NaiveDate {
    skycast_schema::schedule::local_datetime("Europe/Paris", Utc::now())
        .unwrap()
        .date()
}

fn weekday_key(d: NaiveDate) -> &'static str {
    ["mon", "tue", "wed", "thu", "fri", "sat", "sun"][d.weekday().num_days_from_monday() as usize]
}

// ---- The roles ----

#[tokio::test]
async fn marketing_uploads_builds_a_playlist_plans_previews_and_publishes() {
    let fx = with_first_version().await;
    let mut ui = Ui::start(&fx, "en-US", "marketing").await;
    let landed = ui.login("marketing", TEST_PASSWORD).await;
    assert_eq!(landed, "/marketing", "marketing lands on its own page");
    ui.home_shots().await;

    // Two MP3s at once through the library's file input.
    let bells = media_file("music/bells-d.mp3");
    let chords = media_file("music/chords-b.mp3");
    let (bells_id, chords_id) = (id_of(&bells).to_string(), id_of(&chords).to_string());
    ui.open("/marketing/media").await;
    ui.b.set_files(
        "#media-dropzone input[type=file]",
        &[bells.as_path(), chords.as_path()],
    )
    .await;
    ui.b.select("#media-upload-kind", "music").await;
    ui.submit("#media-upload-button").await;
    assert_eq!(ui.b.current_path().await, "/marketing/media");
    let message = ui.ok_flash().await;
    assert!(
        message.contains("bells-d") && message.contains("chords-b"),
        "{message}"
    );
    for (id, title) in [(&bells_id, "bells-d"), (&chords_id, "chords-b")] {
        let row = format!("tr[data-test=media-row][data-media-id='{id}']");
        assert_eq!(ui.b.text(&format!("{row} .media-title")).await, title);
        assert_eq!(ui.b.text(&format!("{row} .media-duration")).await, "0:20");
    }
    ui.shot("marketing-library").await;

    // A playlist with the first track, then the second added in its editor.
    ui.open("/marketing/playlists").await;
    ui.b.fill("#playlist-create-name", "summer-mix").await;
    ui.check(&format!(
        "input[data-test=create-track][data-media-id='{bells_id}']"
    ))
    .await;
    ui.submit("#playlist-create-button").await;
    assert_eq!(ui.b.current_path().await, "/marketing/playlists/summer-mix");
    ui.ok_flash().await;
    ui.check(&format!(
        "input[data-test=add-track][data-media-id='{chords_id}']"
    ))
    .await;
    ui.submit("#playlist-save").await;
    ui.ok_flash().await;
    assert_eq!(
        ui.attrs("li[data-test=playlist-item]", "data-media-id").await,
        [bells_id.clone(), chords_id.clone()]
    );
    assert_eq!(
        ui.texts("li[data-test=playlist-item] .item-title").await,
        ["bells-d", "chords-b"]
    );
    ui.shot("marketing-playlist").await;

    // A rule: main only, two days, 10:00-18:00, two weeks, priority 10; shown
    // in the week that holds the first of the two days.
    let today = paris_today();
    let (day1, day2, last) = (
        today + TimeDelta::days(1),
        today + TimeDelta::days(2),
        today + TimeDelta::days(13),
    );
    ui.open(&format!("/marketing/planning?shop=main&week={day1}"))
        .await;
    ui.b.select("#rule-playlist", "summer-mix").await;
    ui.check("#rule-shops input[value='main']").await;
    ui.check(&format!("#rule-days input[value='{}']", weekday_key(day1)))
        .await;
    ui.check(&format!("#rule-days input[value='{}']", weekday_key(day2)))
        .await;
    ui.set_value("#rule-from-time", "10:00").await;
    ui.set_value("#rule-to-time", "18:00").await;
    ui.set_value("#rule-date-from", &today.to_string()).await;
    ui.set_value("#rule-date-to", &last.to_string()).await;
    ui.b.fill("#rule-priority", "10").await;
    ui.submit("#rule-submit").await;
    assert!(!ui.b.exists("#rule-error").await, "{}", ui.main_text().await);
    ui.ok_flash().await;
    let rule = "tr[data-test=rule][data-playlist='summer-mix']";
    assert_eq!(ui.attr(rule, "data-priority").await.as_deref(), Some("10"));
    let noon = ui.b.text(&format!("#week-grid td[data-cell='{day1}T12']")).await;
    assert!(noon.contains("summer-mix"), "week view at noon on {day1}: {noon}");
    let evening = ui.b.text(&format!("#week-grid td[data-cell='{day1}T20']")).await;
    assert!(
        evening.contains("allday") && !evening.contains("summer-mix"),
        "{evening}"
    );
    ui.scroll_to(&format!("#week-grid td[data-cell='{day1}T10']"))
        .await;
    ui.shot("marketing-planning-week").await;

    // The preview: what main plays at noon on the first day, then at 20:00.
    ui.b.select("#preview-shop", "main").await;
    ui.set_value("#preview-date", &day1.to_string()).await;
    ui.set_value("#preview-time", "12:00").await;
    ui.submit("#preview-button").await;
    assert_eq!(ui.b.current_path().await, "/marketing/preview");
    assert_eq!(
        ui.attr("#preview-result", "data-playlist").await.as_deref(),
        Some("summer-mix")
    );
    assert_eq!(ui.b.text("#preview-playlist").await, "summer-mix");
    let tracks = ui.texts("#preview-tracks li").await;
    assert!(
        tracks.iter().any(|t| t.contains("bells-d")) && tracks.iter().any(|t| t.contains("chords-b")),
        "{tracks:?}"
    );
    ui.shot("marketing-preview").await;
    ui.set_value("#preview-time", "20:00").await;
    ui.submit("#preview-button").await;
    assert_eq!(
        ui.attr("#preview-result", "data-playlist").await.as_deref(),
        Some("allday")
    );

    // The summary names what changes; a message; publish.
    ui.open("/publish").await;
    let summary = ui.b.text("#publish-diff").await;
    for word in ["bells-d", "chords-b", "summer-mix"] {
        assert!(summary.contains(word), "the summary names {word}: {summary}");
    }
    ui.shot("marketing-publish-summary").await;
    ui.b.fill("#publish-message", "Summer mix in main, two afternoons")
        .await;
    ui.submit("#publish-button").await;
    let message = ui.ok_flash().await;
    assert!(message.contains('2'), "{message}");
    ui.shot("marketing-published").await;
    ui.close().await;

    // The store: version 2, by marketing, signed, with the playlist and the rule.
    assert_eq!(head(&fx), 2);
    assert_eq!(git_author(&fx, 2), "marketing");
    let m = verified(&fx, 2);
    assert_eq!(m.published_by, "marketing");
    let playlist = &m.program.playlists["summer-mix"];
    assert_eq!(playlist.items, [id_of(&bells), id_of(&chords)]);
    for id in [id_of(&bells), id_of(&chords)] {
        assert!(m.media_entry(&id).is_some(), "{id} is in the version's media");
    }
    let rule = m
        .program
        .schedule
        .iter()
        .find(|r| r.playlist == "summer-mix")
        .expect("the new rule");
    assert_eq!(rule.shops, ["main"]);
    assert_eq!(rule.priority, 10);
    assert_eq!(rule.time.map(|t| t.to_string()).as_deref(), Some("10:00-18:00"));
    let dates = rule.dates.expect("a date range");
    assert_eq!((dates.first, dates.last), (today, last));
    let days = rule.days.clone().expect("days");
    let ticked = |d: NaiveDate| days.iter().any(|r| r.contains(Weekday::from_chrono(d.weekday())));
    assert!(ticked(day1) && ticked(day2), "{day1} and {day2} in {days:?}");
    for d in 3..7 {
        let other = today + TimeDelta::days(d);
        assert!(!ticked(other), "{other} not in {days:?}");
    }

    let puller = fx.add_player("main-1", "main", &fx.url());
    puller.sync_ok().await;
    assert_eq!(puller.current_version(), Some(2));
    assert_eq!(puller.check_consistent(&fx.trusted()), Ok(Some(2)));
}

#[tokio::test]
async fn commercial_plays_an_ad_now() {
    let fx = with_first_version().await;
    let mut ui = Ui::start(&fx, "en-US", "commercial").await;
    assert_eq!(ui.login("commercial", TEST_PASSWORD).await, "/commercial");
    ui.home_shots().await;

    let bread = media_file("ads/bread.mp3");
    let bread_id = id_of(&bread).to_string();
    ui.b.set_files("#ad-upload-files", &[bread.as_path()]).await;
    ui.submit("#ad-upload-button").await;
    assert_eq!(ui.b.current_path().await, "/commercial");
    let message = ui.ok_flash().await;
    assert!(message.contains("bread"), "{message}");

    ui.b.select("#play-now-media", &bread_id).await;
    ui.check("#play-now-shops input[value='main']").await;
    ui.check("#play-now-start input[value='cut']").await;
    ui.check("#play-now-after input[value='resume']").await;
    ui.b.fill("#play-now-message", "Fresh bread promotion").await;
    ui.shot("commercial-play-now-form").await;
    ui.submit("#play-now-button").await;
    assert_eq!(ui.b.current_path().await, "/commercial");
    let message = ui.ok_flash().await;
    assert!(message.contains('2'), "the message names the version: {message}");
    let recent = ui.texts("#recent-interrupts tbody tr").await;
    assert!(recent.iter().any(|r| r.contains("bread")), "{recent:?}");
    ui.shot("commercial-played").await;
    ui.close().await;

    assert_eq!(head(&fx), 2);
    assert_eq!(git_author(&fx, 2), "commercial");
    let m = verified(&fx, 2);
    assert_eq!(m.published_by, "commercial");
    assert_eq!(m.program.interrupts.len(), 1, "{:?}", m.program.interrupts);
    let i = &m.program.interrupts[0];
    assert_eq!(i.media, id_of(&bread));
    assert_eq!(i.level, InterruptLevel::Ad);
    assert_eq!(i.shops, ["main"]);
    assert_eq!(i.start, Some(StartMode::Cut));
    assert_eq!(i.after, Some(AfterMode::Resume));
    let now = Utc::now();
    let (from, to) = (
        i.not_before.expect("not_before").0,
        i.not_after.expect("not_after").0,
    );
    assert!(from <= now && now < to, "playable now: {from} .. {to}");
    assert!(m.media_entry(&id_of(&bread)).is_some());

    let puller = fx.add_player("main-1", "main", &fx.url());
    puller.sync_ok().await;
    assert_eq!(puller.current_version(), Some(2));
    assert_eq!(puller.check_consistent(&fx.trusted()), Ok(Some(2)));
}

#[tokio::test]
async fn admin_creates_a_user_reads_history_diffs_and_rolls_back() {
    let fx = PublisherFixture::start().await;
    fx.add_role_users();
    let added = publish_two_versions(&fx);
    let puller = fx.add_player("main-1", "main", &fx.url());
    puller.sync_ok().await;
    assert_eq!(puller.current_version(), Some(2));

    let mut ui = Ui::start(&fx, "en-US", "admin").await;
    assert_eq!(ui.login("admin", "admin-password").await, "/admin");
    ui.home_shots().await;

    // A new sales user, who then signs in on their own page.
    ui.open("/admin/users").await;
    ui.b.fill("#new-username", "claire").await;
    ui.b.fill("#new-password", "claire-password-1").await;
    ui.b.select("#new-role", "commercial").await;
    ui.submit("#create-user").await;
    ui.ok_flash().await;
    let row = "tr[data-test=user-row][data-username='claire']";
    assert_eq!(
        ui.attr(&format!("{row} td[data-test=role]"), "data-role")
            .await
            .as_deref(),
        Some("commercial")
    );
    ui.shot("admin-users").await;
    ui.logout().await;
    assert_eq!(ui.login("claire", "claire-password-1").await, "/commercial");
    assert_eq!(
        ui.attr("header .username", "data-role").await.as_deref(),
        Some("commercial")
    );
    ui.open_expecting("/admin/users", 403).await;
    ui.logout().await;
    assert_eq!(ui.login("admin", "admin-password").await, "/admin");

    // The history, and the diff of v1 and v2 in words.
    ui.open("/history").await;
    assert_eq!(
        ui.attrs("tr[data-test=version-row]", "data-version").await,
        ["2", "1"]
    );
    ui.shot("admin-history").await;
    ui.check("#from-1").await;
    ui.check("#to-2").await;
    ui.submit("#diff-submit").await;
    assert_eq!(ui.b.current_path().await, "/history/diff");
    assert_eq!(ui.attr("#diff-title", "data-from").await.as_deref(), Some("1"));
    assert_eq!(ui.attr("#diff-title", "data-to").await.as_deref(), Some("2"));
    let added_lines = ui
        .texts("#diff-result li[data-test=diff-line][data-change=added]")
        .await;
    assert!(
        added_lines.iter().any(|l| l.contains(&added)),
        "the diff names the added track {added}: {added_lines:?}"
    );
    ui.shot("admin-history-diff").await;

    // Version 1, rolled back to with one click (and the confirm dialog).
    ui.b.click("#diff-from h2 a").await;
    ui.wait_new_page().await;
    ui.record(200).await;
    assert_eq!(ui.b.current_path().await, "/history/1");
    assert_eq!(
        ui.attr("#signature-status", "data-ok").await.as_deref(),
        Some("true")
    );
    ui.shot("admin-version").await;
    ui.submit_confirmed("#rollback-button").await;
    assert_eq!(ui.b.current_path().await, "/history/3");
    let message = ui.ok_flash().await;
    assert!(message.contains('3') && message.contains('1'), "{message}");
    assert!(
        !ui.b.exists("#rollback-button").await,
        "no rollback to the current version"
    );
    ui.close().await;

    assert_eq!(head(&fx), 3);
    assert_eq!(git_author(&fx, 3), "admin");
    let (old, new) = (verified(&fx, 1), verified(&fx, 3));
    assert_eq!(new.published_by, "admin");
    assert_eq!(new.program, old.program);
    assert_eq!(new.media, old.media);
    puller.sync_ok().await;
    assert_eq!(puller.current_version(), Some(3));
    assert_eq!(puller.check_consistent(&fx.trusted()), Ok(Some(3)));
}

#[tokio::test]
async fn auditor_reads_everything_and_every_write_is_refused() {
    let fx = PublisherFixture::start().await;
    fx.add_role_users();
    let added = publish_two_versions(&fx);
    let users_before = fx.data.db().unwrap().users().unwrap();
    let mut ui = Ui::start(&fx, "en-US", "auditor").await;
    assert_eq!(ui.login("auditor", TEST_PASSWORD).await, "/audit");
    ui.home_shots().await;

    assert_eq!(ui.attr("#audit-report", "data-ok").await.as_deref(), Some("true"));
    assert_eq!(
        ui.attr("#bundle-link", "href").await.as_deref(),
        Some("/audit/bundle")
    );
    assert_eq!(ui.fetch_status("GET", "/audit/bundle", "undefined").await, 200);
    assert_eq!(
        ui.attrs("#audit-users tr[data-test=user-row]", "data-username")
            .await
            .len(),
        users_before.len()
    );

    ui.open("/history").await;
    assert_eq!(
        ui.attrs("tr[data-test=version-row]", "data-version").await,
        ["2", "1"]
    );
    ui.submit("#diff-submit").await;
    let added_lines = ui
        .texts("#diff-result li[data-test=diff-line][data-change=added]")
        .await;
    assert!(added_lines.iter().any(|l| l.contains(&added)), "{added_lines:?}");
    for n in [1, 2] {
        ui.open(&format!("/history/{n}")).await;
        assert_eq!(
            ui.attr("#signature-status", "data-ok").await.as_deref(),
            Some("true")
        );
        assert!(
            !ui.b.exists("#rollback-button").await,
            "no rollback button for the auditor"
        );
        assert!(!ui.b.exists("#rollback-form").await);
        assert!(!ui.b.exists("form[action^='/admin']").await);
    }
    ui.shot("auditor-version").await;

    // Other roles' pages: the 403 page.
    for path in [
        "/admin",
        "/admin/users",
        "/admin/urgent",
        "/marketing",
        "/marketing/media",
        "/marketing/planning",
        "/commercial",
        "/publish",
        "/shops",
    ] {
        ui.open_expecting(path, 403).await;
        assert_eq!(ui.b.text(".error-page h1").await, "403", "{path}");
    }
    ui.shot("auditor-forbidden").await;

    // Writes from the auditor's own session, with its valid CSRF token.
    ui.open("/audit").await;
    let form = |fields: &str| format!("new URLSearchParams({{csrf: token, {fields}}})");
    let music_id = id_of(&example(&example_music()[0])).to_string();
    let upload = "(() => { const f = new FormData();
        f.append('files', new Blob([new Uint8Array(64)], {type: 'audio/mpeg'}), 'x.mp3');
        return f; })()";
    let writes = [
        ("/admin/rollback/1", form("")),
        (
            "/admin/users",
            form("username: 'sneaky', password: 'long-enough-1', role: 'admin'"),
        ),
        ("/admin/settings", form("review_required: 'on'")),
        (
            "/admin/urgent",
            form(&format!("media: '{music_id}', shops: 'all', confirm: 'yes'")),
        ),
        (
            "/marketing/playlists",
            form(&format!("name: 'sneaky', items: '{music_id}'")),
        ),
        (
            "/marketing/planning/rules",
            form("playlist: 'allday', shops: 'all', priority: '99'"),
        ),
        ("/marketing/media/upload?csrf=TOKEN", upload.to_string()),
        (
            "/commercial/play-now",
            form(&format!("media: '{music_id}', shops: 'all'")),
        ),
        ("/publish", form("message: 'sneaky'")),
        ("/publish/discard", form("")),
    ];
    let mut refused = Vec::new();
    for (path, body) in &writes {
        let token =
            ui.b.client()
                .execute("return document.querySelector('input[name=csrf]').value;", vec![])
                .await
                .unwrap();
        let path = path.replace("TOKEN", token.as_str().unwrap());
        let status = ui.fetch_status("POST", &path, body).await;
        refused.push(format!("{status} POST {path}"));
        assert_eq!(status, 403, "POST {path} from the auditor");
    }
    eprintln!("auditor's writes: {refused:?}");
    ui.close().await;

    assert_eq!(head(&fx), 2, "nothing was published");
    assert_eq!(fx.data.db().unwrap().users().unwrap(), users_before);
}

/// The login page speaks the browser's language: French for the seed's users,
/// English otherwise.
#[tokio::test]
async fn login_page_follows_the_browser_language() {
    let fx = PublisherFixture::start().await;
    for (lang, title, button, html_lang) in [
        ("fr-FR", "Connexion à Skycast", "Se connecter", "fr"),
        ("en-US", "Sign in to Skycast", "Sign in", "en"),
    ] {
        let mut ui = Ui::start(&fx, lang, "guest").await;
        ui.open("/login").await;
        assert_eq!(ui.b.text("main h1").await, title, "{lang}");
        assert_eq!(
            ui.b.text("#login-form button[type=submit]").await,
            button,
            "{lang}"
        );
        assert_eq!(ui.attr("html", "lang").await.as_deref(), Some(html_lang));
        ui.shot(&format!("login-{html_lang}")).await;
        // A wrong password says so in the same language.
        ui.b.fill("#login-form input[name=username]", "admin").await;
        ui.b.fill("#login-form input[name=password]", "not-the-password")
            .await;
        ui.mark_page().await;
        ui.b.click("#login-form button[type=submit]").await;
        ui.wait_new_page().await;
        ui.record(401).await;
        let error = ui.b.text("#login-error").await;
        let expected = if html_lang == "fr" { "incorrect" } else { "Wrong" };
        assert!(error.contains(expected), "{lang}: {error}");
        ui.close().await;
    }
}
