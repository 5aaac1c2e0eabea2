//! The planning and shops pages over HTTP: rules with date ranges and priorities
//! in the week view, conflicts, the preview, shops' hours, exceptions and closing
//! announcement, each checked in the draft (and, once published, in the store and
//! on a player).

use std::path::Path;

use chrono::Utc;
use skycast_publisher::workspace::{Draft, Workspace};
use skycast_schema::{DailyHours, MediaKind};
use skycast_tests::web::{Page, WebClient, TEST_PASSWORD};
use skycast_tests::{example, PublisherFixture};

/// A planning with three playlists and two shops (main: Mon–Sat 09:00–20:00,
/// closed on Sunday; lille with a closing announcement), `daytime` everywhere.
fn write_test_planning(dir: &Path) -> std::path::PathBuf {
    let files = [
        "music/tone-a.mp3",
        "music/chords-b.mp3",
        "music/christmas-bells.mp3",
        "announcements/closing.mp3",
    ];
    for f in files {
        let to = dir.join(f);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(example(f), &to).unwrap();
    }
    let week = r#"{mon: "09:00-20:00", tue: "09:00-20:00", wed: "09:00-20:00", thu: "09:00-20:00", fri: "09:00-20:00", sat: "09:00-20:00", sun: closed}"#;
    let text = format!(
        "timezone: Europe/Paris
media:
  music/tone-a.mp3: {{title: Morning Tone, kind: music}}
  music/chords-b.mp3: {{title: Four Chords, kind: music}}
  music/christmas-bells.mp3: {{title: Jingle Bells (chorus), kind: music}}
  announcements/closing.mp3: {{title: Closing in 30 minutes, kind: announcement}}
playlists:
  daytime: {{items: [music/tone-a.mp3, music/chords-b.mp3]}}
  christmas: {{items: [music/christmas-bells.mp3]}}
  promo: {{items: [music/chords-b.mp3]}}
shops:
  main: {{tags: [pilot], hours: {week}}}
  lille:
    tags: [pilot]
    hours: {week}
    closing_announcement: {{media: announcements/closing.mp3, minutes_before: 30}}
schedule:
  - {{playlist: daytime, shops: [all]}}
"
    );
    let path = dir.join("planning.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

/// A publisher with the test planning published as version 1 and a signed-in client.
async fn start(user: &str) -> (PublisherFixture, WebClient) {
    let fx = PublisherFixture::start().await;
    fx.add_role_users();
    let planning = write_test_planning(&fx.dir.path().join("planning"));
    fx.publish(&planning);
    let mut web = fx.web_client();
    let password = if user == "admin" {
        "admin-password"
    } else {
        TEST_PASSWORD
    };
    let page = web.login(user, password).await;
    assert_ne!(page.path, "/login", "{user} could not sign in");
    (fx, web)
}

fn draft(fx: &PublisherFixture) -> Draft {
    let db = fx.data.db().unwrap();
    Workspace::new(&fx.data, &db).draft().unwrap()
}

/// The inside of the element carrying `attr` (up to the end of its cell or item).
fn element<'a>(page: &'a Page, attr: &str) -> &'a str {
    let start = page
        .body
        .find(attr)
        .unwrap_or_else(|| panic!("no `{attr}` in the page:\n{}", page.body));
    let rest = &page.body[start..];
    let end = ["</td>", "</li>", "</section>"]
        .iter()
        .filter_map(|close| rest.find(close))
        .min()
        .unwrap_or(rest.len());
    &rest[..end]
}

/// The page from `attr` to the first `close` after it.
fn within<'a>(page: &'a Page, attr: &str, close: &str) -> &'a str {
    let start = page
        .body
        .find(attr)
        .unwrap_or_else(|| panic!("no `{attr}` in the page"));
    let rest = &page.body[start..];
    &rest[..rest.find(close).unwrap_or(rest.len())]
}

/// The whole `<section>` whose opening tag carries `attr`.
fn section<'a>(page: &'a Page, attr: &str) -> &'a str {
    within(page, attr, "</section>")
}

const CHRISTMAS: &[(&str, &str)] = &[
    ("playlist", "christmas"),
    ("shops", "all"),
    ("date_from", "2026-12-01"),
    ("date_to", "2026-12-24"),
    ("priority", "10"),
    ("view_shop", "main"),
    ("view_week", "2026-11-30"),
];

#[tokio::test]
async fn christmas_rule_fills_the_week_view_and_the_preview() {
    let (fx, mut web) = start("marketing").await;
    let page = web.post("/marketing/planning/rules", CHRISTMAS).await;
    assert!(page.status.is_success(), "{}", page.status);
    assert_eq!(page.path, "/marketing/planning");
    assert!(
        page.flash().unwrap().contains("Rule 2 added"),
        "{:?}",
        page.flash()
    );

    let rule = &draft(&fx).program.schedule[1];
    assert_eq!(rule.playlist, "christmas");
    assert_eq!(rule.shops, ["all"]);
    assert_eq!(rule.dates.unwrap().to_string(), "2026-12-01..2026-12-24");
    assert_eq!((rule.days.clone(), rule.time, rule.priority), (None, None, 10));

    // Monday 30 November is before the campaign; Tuesday 1 December is in it.
    let week = web.get("/marketing/planning?shop=main&week=2026-12-02").await;
    assert_eq!(week.status, 200);
    assert!(
        week.body.contains("data-week=\"2026-11-30\""),
        "the week starts on Monday"
    );
    let cases = [
        ("2026-11-30T10", "open", Some("daytime")),
        ("2026-12-01T10", "open", Some("christmas")),
        ("2026-12-05T19", "open", Some("christmas")),
        // Before opening, after closing, and all Sunday: closed.
        ("2026-12-01T08", "closed", None),
        ("2026-12-01T20", "closed", None),
        ("2026-12-06T12", "closed", None),
    ];
    for (cell, state, playlist) in cases {
        let html = element(&week, &format!("data-cell=\"{cell}\""));
        assert!(
            html.contains(&format!("data-state=\"{state}\"")),
            "{cell}: {html}"
        );
        match playlist {
            Some(p) => assert!(html.contains(p), "{cell} should play {p}: {html}"),
            None => assert!(html.contains("closed"), "{cell}: {html}"),
        }
    }
    // The all-shops view has one row per shop.
    let all = web.get("/marketing/planning?shop=all&week=2026-12-01").await;
    let lille_tuesday = element(&all, "data-cell=\"lille:2026-12-01\"");
    assert!(
        lille_tuesday.contains("09:00–20:00") && lille_tuesday.contains("christmas"),
        "{lille_tuesday}"
    );
    assert!(element(&all, "data-cell=\"lille:2026-12-06\"").contains("closed"));

    // The preview answers inside and outside the campaign, and when closed.
    let cases = [
        ("2026-12-10", "15:00", "yes", "christmas", "Jingle Bells (chorus)"),
        ("2026-12-26", "15:00", "yes", "daytime", "Morning Tone"),
        ("2026-11-30", "09:00", "yes", "daytime", "Four Chords"),
        ("2026-12-10", "21:00", "no", "", "Reopens 2026-12-11 09:00"),
    ];
    for (date, time, open, playlist, text) in cases {
        let p = web
            .get(&format!("/marketing/preview?shop=main&date={date}&time={time}"))
            .await;
        assert_eq!(p.status, 200, "{date} {time}");
        let result = element(&p, "id=\"preview-result\"");
        assert!(
            result.contains(&format!("data-open=\"{open}\"")),
            "{date} {time}: {result}"
        );
        assert!(
            result.contains(&format!("data-playlist=\"{playlist}\"")),
            "{date} {time}: {result}"
        );
        assert!(p.body.contains(text), "{date} {time}: `{text}` missing");
    }
    let campaign = web
        .get("/marketing/preview?shop=main&date=2026-12-10&time=15:00")
        .await;
    assert!(element(&campaign, "id=\"preview-rule\"").contains("data-rule=\"1\""));
    fx.stop().await;
}

#[tokio::test]
async fn rules_of_the_same_top_priority_show_as_a_conflict() {
    let (fx, mut web) = start("marketing").await;
    web.post("/marketing/planning/rules", CHRISTMAS).await;
    let promo = [
        ("playlist", "promo"),
        ("shops", "main"),
        ("days", "tue"),
        ("days", "wed"),
        ("from_time", "14:00"),
        ("to_time", "16:00"),
        ("priority", "10"),
    ];
    let page = web.post("/marketing/planning/rules", &promo).await;
    assert!(
        page.flash().unwrap().contains("Rule 3 added"),
        "{:?}",
        page.flash()
    );
    let rule = &draft(&fx).program.schedule[2];
    assert_eq!(
        rule.days
            .as_ref()
            .map(|d| d.iter().map(ToString::to_string).collect::<Vec<_>>()),
        Some(vec!["tue-wed".to_string()])
    );
    assert_eq!(rule.time.unwrap().to_string(), "14:00-16:00");

    let week = web.get("/marketing/planning?shop=main&week=2026-11-30").await;
    for cell in ["2026-12-01T14", "2026-12-02T15"] {
        let html = element(&week, &format!("data-cell=\"{cell}\""));
        assert!(html.contains("data-state=\"conflict\""), "{cell}: {html}");
        assert!(html.contains("class=\"slot conflict"), "{cell}: {html}");
        assert!(
            html.contains("christmas") && html.contains("promo"),
            "{cell}: {html}"
        );
    }
    // Outside the window, and on Thursday, the campaign wins alone.
    for cell in ["2026-12-01T16", "2026-12-03T14"] {
        let html = element(&week, &format!("data-cell=\"{cell}\""));
        assert!(
            html.contains("data-state=\"open\"") && html.contains("christmas"),
            "{cell}: {html}"
        );
    }
    let conflicts = section(&week, "id=\"conflicts\"");
    assert_eq!(
        conflicts.matches("data-test=\"conflict\"").count(),
        2,
        "{conflicts}"
    );
    assert!(conflicts.contains("14:00–16:00"), "{conflicts}");

    // In November the campaign is not on: promo plays without a conflict.
    let november = web.get("/marketing/planning?shop=main&week=2026-11-23").await;
    let html = element(&november, "data-cell=\"2026-11-24T14\"");
    assert!(
        html.contains("data-state=\"open\"") && html.contains("promo"),
        "{html}"
    );

    let preview = web
        .get("/marketing/preview?shop=main&date=2026-12-01&time=14:30")
        .await;
    assert!(element(&preview, "id=\"preview-conflict\"").contains("promo"));

    // A higher priority resolves it.
    let raised: Vec<(&str, &str)> = promo
        .iter()
        .map(|&(k, v)| if k == "priority" { (k, "11") } else { (k, v) })
        .collect();
    web.post("/marketing/planning/rules/2/delete", &[]).await;
    web.post("/marketing/planning/rules", &raised).await;
    let week = web.get("/marketing/planning?shop=main&week=2026-11-30").await;
    assert!(element(&week, "data-cell=\"2026-12-01T14\"").contains("data-state=\"open\""));
    assert!(week.body.contains("id=\"no-conflicts\""));
    fx.stop().await;
}

#[tokio::test]
async fn bad_rule_fields_are_refused_naming_the_field_and_the_draft_is_unchanged() {
    let (fx, mut web) = start("marketing").await;
    let before = draft(&fx);
    let with = |changes: &[(&'static str, &'static str)]| -> Vec<(&'static str, &'static str)> {
        let mut fields: Vec<(&str, &str)> = CHRISTMAS
            .iter()
            .filter(|(k, _)| !changes.iter().any(|(c, _)| c == k))
            .copied()
            .collect();
        fields.extend(changes.iter().copied().filter(|(_, v)| !v.is_empty()));
        fields
    };
    // (changed fields, the field the message must name)
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (with(&[("from_time", "25:00"), ("to_time", "26:00")]), "from_time"),
        (with(&[("from_time", "09:00"), ("to_time", "9h")]), "to_time"),
        (with(&[("from_time", "09:00")]), "to_time"),
        (
            with(&[("date_from", "2026-12-24"), ("date_to", "2026-12-01")]),
            "date_to",
        ),
        (with(&[("date_from", "24/12/2026")]), "date_from"),
        (with(&[("date_to", "")]), "date_to"),
        (with(&[("playlist", "easter")]), "playlist"),
        (with(&[("playlist", "x'; DROP TABLE draft; --")]), "playlist"),
        (with(&[("playlist", "")]), "playlist"),
        (with(&[("priority", "5000")]), "priority"),
        (with(&[("priority", "-1001")]), "priority"),
        (with(&[("priority", "1; DROP TABLE users")]), "priority"),
        (with(&[("shops", "tag:nowhere")]), "shops"),
        (with(&[("shops", "\" OR 1=1 --")]), "shops"),
        (with(&[("shops", "")]), "shops"),
        (with(&[("days", "funday")]), "days"),
    ];
    for (fields, field) in cases {
        let page = web.post("/marketing/planning/rules", &fields).await;
        assert_eq!(page.status, 400, "{field}: {fields:?}");
        let message = element(&page, "id=\"rule-error\"");
        assert!(
            message.contains(&format!("field `{field}`")),
            "{fields:?}: {message}"
        );
        assert_eq!(draft(&fx), before, "{fields:?} changed the draft");
    }
    // The form keeps what was typed.
    let page = web
        .post("/marketing/planning/rules", &with(&[("priority", "5000")]))
        .await;
    assert!(page.body.contains("value=\"5000\"") && page.body.contains("value=\"2026-12-24\""));
    // The database is intact: signing in still works and the draft still reads.
    let mut again = fx.web_client();
    assert_eq!(again.login("marketing", TEST_PASSWORD).await.path, "/marketing");
    assert_eq!(draft(&fx), before);
    fx.stop().await;
}

#[tokio::test]
async fn rules_are_deleted_by_position_only_while_unchanged_and_fallback_is_set() {
    let (fx, mut web) = start("marketing").await;
    web.post("/marketing/planning/rules", CHRISTMAS).await;
    let page = web.get("/marketing/planning").await;
    let row = element(&page, "id=\"delete-rule-1\"");
    let fp_at = row.find("name=\"fp\" value=\"").unwrap() + "name=\"fp\" value=\"".len();
    let fp = &row[fp_at..fp_at + 16];

    let stale = web
        .post(
            "/marketing/planning/rules/1/delete",
            &[("fp", "0000000000000000")],
        )
        .await;
    assert!(
        stale
            .flash()
            .unwrap()
            .contains("changed since the page was loaded"),
        "{:?}",
        stale.flash()
    );
    let missing = web.post("/marketing/planning/rules/9/delete", &[]).await;
    assert!(
        missing.flash().unwrap().contains("rule 10 is not in the draft"),
        "{:?}",
        missing.flash()
    );
    assert_eq!(draft(&fx).program.schedule.len(), 2);
    let done = web
        .post("/marketing/planning/rules/1/delete", &[("fp", fp)])
        .await;
    assert!(
        done.flash().unwrap().contains("Rule 2 (christmas) removed"),
        "{:?}",
        done.flash()
    );
    assert_eq!(draft(&fx).program.schedule.len(), 1);

    let set = web
        .post("/marketing/planning/fallback", &[("fallback_playlist", "promo")])
        .await;
    assert!(set.flash().unwrap().contains("promo"));
    assert_eq!(
        draft(&fx).program.playback.fallback_playlist.as_deref(),
        Some("promo")
    );
    let refused = web
        .post(
            "/marketing/planning/fallback",
            &[("fallback_playlist", "<b>nope</b>")],
        )
        .await;
    assert!(refused.flash().unwrap().contains("field `fallback_playlist`"));
    assert!(!refused.body.contains("<b>nope</b>"));
    assert_eq!(
        draft(&fx).program.playback.fallback_playlist.as_deref(),
        Some("promo")
    );
    // With no rule left for main, the preview says the fallback chose.
    web.post("/marketing/planning/rules/0/delete", &[]).await;
    let p = web
        .get("/marketing/preview?shop=main&date=2026-12-01&time=12:00")
        .await;
    assert!(element(&p, "id=\"preview-result\"").contains("data-playlist=\"promo\""));
    assert!(element(&p, "id=\"preview-rule\"").contains("data-rule=\"fallback\""));
    fx.stop().await;
}

#[tokio::test]
async fn shop_hours_exceptions_and_closing_announcement_go_into_the_draft_and_the_preview() {
    let (fx, mut web) = start("admin").await;
    let list = web.get("/shops").await;
    assert_eq!(list.status, 200);
    let lille = within(&list, "id=\"shop-lille\"", "</tr>");
    assert!(lille.contains("Closing in 30 minutes (30 min before)"), "{lille}");
    let closing_id = draft(&fx).program.shops["lille"]
        .closing_announcement
        .as_ref()
        .unwrap()
        .media
        .to_string();
    let edit = web.get("/shops/main").await;
    assert!(edit.body.contains(&closing_id), "the announcement is offered");

    let form = [
        ("tags", "pilot, city"),
        ("hours_mon", "09:00-20:00"),
        ("hours_tue", "09:00-20:00"),
        ("hours_wed", "09:00-20:00"),
        ("hours_thu", "09:00-20:00"),
        ("hours_fri", "09:00-21:00"),
        ("hours_sat", "10:00-18:00"),
        ("hours_sun", ""),
        ("exception_date", "2026-12-26"),
        ("exception_hours", ""),
        ("exception_date", "2026-12-31"),
        ("exception_hours", "09:00-16:00"),
        ("closing_media", &closing_id),
        ("closing_minutes", "15"),
    ];
    let saved = web.post("/shops/main", &form).await;
    assert_eq!(saved.path, "/shops/main");
    assert!(
        saved.flash().unwrap().contains("saved into the draft"),
        "{:?}",
        saved.flash()
    );
    let main = draft(&fx).program.shops["main"].clone();
    assert_eq!(main.tags, ["pilot", "city"]);
    assert_eq!(
        main.hours[&skycast_schema::Weekday::Fri].to_string(),
        "09:00-21:00"
    );
    assert_eq!(main.hours[&skycast_schema::Weekday::Sun], DailyHours::Closed);
    let exceptions: Vec<String> = main.exceptions.iter().map(|(d, h)| format!("{d} {h}")).collect();
    assert_eq!(exceptions, ["2026-12-26 closed", "2026-12-31 09:00-16:00"]);
    assert_eq!(main.closing_announcement.as_ref().unwrap().minutes_before, 15);

    // The preview follows: closed on the exception date, the short day closes at
    // 16:00, and the closing announcement is due 15 minutes before each closing.
    // 2026-12-25 is a Friday (open until 21:00), 2026-12-31 a Thursday.
    let p = web
        .get("/marketing/preview?shop=main&date=2026-12-26&time=12:00")
        .await;
    assert_eq!(p.status, 403, "the preview is marketing's page");
    let mut marketing = fx.web_client();
    marketing.login("marketing", TEST_PASSWORD).await;
    let cases = [
        ("2026-12-26", "12:00", "no", false),
        ("2026-12-31", "15:50", "yes", true),
        ("2026-12-31", "16:10", "no", false),
        ("2026-12-25", "20:50", "yes", true),
        ("2026-12-25", "20:30", "yes", false),
    ];
    for (date, time, open, closing) in cases {
        let p = marketing
            .get(&format!("/marketing/preview?shop=main&date={date}&time={time}"))
            .await;
        let result = element(&p, "id=\"preview-result\"");
        assert!(
            result.contains(&format!("data-open=\"{open}\"")),
            "{date} {time}: {result}"
        );
        let due = p.body.contains("data-source=\"closing\"") && p.body.contains("Closing in 30 minutes");
        assert_eq!(due, closing, "{date} {time}: closing announcement due");
    }

    // Removing an exception and the announcement.
    let removed = [
        ("tags", "pilot"),
        ("hours_mon", "09:00-20:00"),
        ("exception_date", "2026-12-26"),
        ("exception_hours", ""),
        ("exception_remove", "2026-12-26"),
        ("exception_date", "2026-12-31"),
        ("exception_hours", "09:00-16:00"),
        ("closing_media", ""),
    ];
    web.post("/shops/main", &removed).await;
    let main = draft(&fx).program.shops["main"].clone();
    assert_eq!(main.exceptions.len(), 1);
    assert_eq!(main.hours.len(), 2, "mon open, sun kept closed: {:?}", main.hours);
    assert!(main.closing_announcement.is_none());
    fx.stop().await;
}

/// The shop form as the page sends it for main, with `changes` replacing the
/// fields they name.
fn shop_form<'a>(changes: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let base = [
        ("tags", "pilot"),
        ("hours_mon", "09:00-20:00"),
        ("hours_tue", "09:00-20:00"),
        ("hours_wed", "09:00-20:00"),
        ("hours_thu", "09:00-20:00"),
        ("hours_fri", "09:00-20:00"),
        ("hours_sat", "09:00-20:00"),
        ("hours_sun", ""),
        ("closing_media", ""),
        ("closing_minutes", ""),
    ];
    let mut fields: Vec<(&str, &str)> = base
        .into_iter()
        .filter(|(k, _)| !changes.iter().any(|(c, _)| c == k))
        .collect();
    fields.extend(changes.iter().copied());
    fields
}

#[tokio::test]
async fn bad_shop_fields_are_refused_naming_the_field_and_rendered_inert() {
    let (fx, mut web) = start("marketing").await;
    let before = draft(&fx);
    let closing_id = before.program.shops["lille"]
        .closing_announcement
        .as_ref()
        .unwrap()
        .media
        .to_string();
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (vec![("tags", "<script>alert(1)</script>")], "tags"),
        (vec![("tags", "pilot, Centre Ville")], "tags"),
        (vec![("tags", "x'; DROP TABLE draft; --")], "tags"),
        (vec![("hours_mon", "9h-20h")], "hours_mon"),
        (
            vec![("hours_sun", "\"><img src=x onerror=alert(1)>")],
            "hours_sun",
        ),
        (vec![("hours_tue", "09:00-09:00")], "hours_tue"),
        (
            vec![("exception_date", "2026-02-30"), ("exception_hours", "")],
            "exception_date",
        ),
        (
            vec![("exception_date", ""), ("exception_hours", "10:00-12:00")],
            "exception_date",
        ),
        (
            vec![
                ("exception_date", "2026-12-26"),
                ("exception_hours", ""),
                ("exception_date", "2026-12-26"),
                ("exception_hours", "10:00-12:00"),
            ],
            "exception_date",
        ),
        (
            vec![("exception_date", "2026-12-26"), ("exception_hours", "late")],
            "exception_hours",
        ),
        (vec![("closing_media", "abc")], "closing_media"),
        (
            vec![("closing_media", &closing_id), ("closing_minutes", "0")],
            "closing_minutes",
        ),
        (
            vec![("closing_media", &closing_id), ("closing_minutes", "241")],
            "closing_minutes",
        ),
        (
            vec![
                ("closing_media", &closing_id),
                ("closing_minutes", "1; DROP TABLE users"),
            ],
            "closing_minutes",
        ),
        (
            vec![("always_open", "yes"), ("exception_date", "2026-12-26")],
            "always_open",
        ),
    ];
    for (changes, field) in cases {
        let fields = shop_form(&changes);
        let page = web.post("/shops/main", &fields).await;
        assert_eq!(page.status, 400, "{changes:?}");
        let message = element(&page, "id=\"shop-error\"");
        assert!(
            message.contains(&format!("field `{field}`")),
            "{changes:?}: {message}"
        );
        assert!(
            !page.body.contains("<script>alert(1)") && !page.body.contains("<img src=x"),
            "{changes:?} is echoed unescaped"
        );
        assert_eq!(draft(&fx), before, "{changes:?} changed the draft");
    }
    // The refused form keeps what was typed, escaped.
    let page = web
        .post("/shops/main", &shop_form(&[("hours_sun", "<b>late</b>")]))
        .await;
    assert!(
        page.body.contains("&lt;b&gt;late&lt;"),
        "typed value kept, escaped"
    );

    // A tag a rule relies on cannot go: `tag:city` targets main alone.
    let ok = web
        .post("/shops/main", &shop_form(&[("tags", "pilot, city")]))
        .await;
    assert!(
        ok.status.is_success() && ok.flash().unwrap().contains("saved"),
        "{:?}",
        ok.flash()
    );
    let rule = [("playlist", "promo"), ("shops", "tag:city")];
    assert!(web
        .post("/marketing/planning/rules", &rule)
        .await
        .status
        .is_success());
    let page = web.post("/shops/main", &shop_form(&[("tags", "pilot")])).await;
    assert_eq!(page.status, 400);
    let message = element(&page, "id=\"shop-error\"");
    assert!(
        message.contains("schedule rule 2 (promo) names `tag:city`"),
        "{message}"
    );
    assert_eq!(draft(&fx).program.shops["main"].tags, ["pilot", "city"]);
    fx.stop().await;
}

#[tokio::test]
async fn shops_are_created_and_deleted_unless_players_or_rules_need_them() {
    let (fx, mut web) = start("marketing").await;
    let created = web.post("/shops", &[("name", "paris")]).await;
    assert_eq!(created.path, "/shops/paris");
    assert!(created.flash().unwrap().contains("paris"));
    assert!(draft(&fx).program.shops.contains_key("paris"));
    for (name, words) in [
        ("paris", "already named"),
        ("all", "reserved"),
        ("Paris", "field `name`"),
        ("x'; DROP TABLE players; --", "field `name`"),
        ("<script>alert(1)</script>", "field `name`"),
    ] {
        let page = web.post("/shops", &[("name", name)]).await;
        assert!(page.status.is_client_error(), "{name}");
        assert!(element(&page, "id=\"shop-error\"").contains(words), "{name}");
        assert!(!page.body.contains("<script>alert(1)"));
    }
    assert_eq!(draft(&fx).program.shops.len(), 3);

    // A rule naming lille keeps it; a registered player keeps main.
    web.post(
        "/marketing/planning/rules",
        &[("playlist", "promo"), ("shops", "lille")],
    )
    .await;
    let refused = web.post("/shops/lille/delete", &[]).await;
    assert!(
        refused
            .flash()
            .unwrap()
            .contains("schedule rule 2 (promo) names `lille`"),
        "{:?}",
        refused.flash()
    );
    let _player = fx.add_player("p1", "main", &fx.url());
    let refused = web.post("/shops/main/delete", &[]).await;
    assert!(
        refused.flash().unwrap().contains("players p1 are registered"),
        "{:?}",
        refused.flash()
    );
    let deleted = web.post("/shops/paris/delete", &[]).await;
    assert_eq!(deleted.path, "/shops");
    assert!(deleted.flash().unwrap().contains("paris"));
    let shops: Vec<String> = draft(&fx).program.shops.keys().cloned().collect();
    assert_eq!(shops, ["lille", "main"]);
    assert_eq!(web.get("/shops/nowhere").await.status, 404);
    assert_eq!(web.post("/shops/nowhere", &[("tags", "x")]).await.status, 404);
    fx.stop().await;
}

#[tokio::test]
async fn marketing_home_shows_the_draft_state_and_what_plays_now() {
    let (fx, mut web) = start("marketing").await;
    let home = web.get("/marketing").await;
    assert_eq!(home.status, 200);
    assert!(home.body.contains("data-differs=\"no\""));
    assert!(element(&home, "id=\"head-info\"").contains("data-version=\"1\""));
    assert!(home.body.contains("tester"));
    assert!(element(&home, "data-test=\"count-playlists\"").contains("<strong>3</strong>"));
    assert!(element(&home, "data-test=\"count-rules\"").contains("<strong>1</strong>"));
    assert!(element(&home, "data-test=\"count-media\"").contains("<strong>4</strong>"));
    // Each shop is either playing daytime or closed right now.
    for shop in ["main", "lille"] {
        let row = element(&home, &format!("data-shop=\"{shop}\""));
        assert!(
            row.contains("data-playlist=\"daytime\"") || row.contains("data-playlist=\"\""),
            "{row}"
        );
    }
    web.post("/marketing/planning/rules", CHRISTMAS).await;
    let home = web.get("/marketing").await;
    assert!(home.body.contains("data-differs=\"yes\""));
    assert!(element(&home, "data-test=\"count-rules\"").contains("<strong>2</strong>"));

    // Other roles never see these pages; admins do see shops.
    let mut sales = fx.web_client();
    sales.login("commercial", TEST_PASSWORD).await;
    for path in [
        "/marketing",
        "/marketing/planning",
        "/marketing/preview",
        "/shops",
        "/shops/main",
    ] {
        assert_eq!(sales.get(path).await.status, 403, "{path}");
    }
    let mut admin = fx.web_client();
    admin.login("admin", "admin-password").await;
    assert_eq!(admin.get("/shops/main").await.status, 200);
    assert_eq!(admin.get("/marketing/planning").await.status, 403);
    fx.stop().await;
}

#[tokio::test]
async fn a_published_draft_carries_rules_and_shop_changes_to_a_player() {
    let (fx, mut web) = start("marketing").await;
    web.post("/marketing/planning/rules", CHRISTMAS).await;
    web.post(
        "/shops/main",
        &[
            ("tags", "pilot"),
            ("hours_mon", "09:00-20:00"),
            ("exception_date", "2026-12-25"),
            ("exception_hours", ""),
        ],
    )
    .await;
    let puller = fx.add_player("p1", "main", &fx.url());
    puller.sync_ok().await;
    assert_eq!(puller.current_version(), Some(1));

    let published = {
        let db = fx.data.db().unwrap();
        let ws = Workspace::new(&fx.data, &db);
        let d = ws.draft().unwrap();
        ws.publish(&d, "marketing", "Christmas campaign", Utc::now())
            .unwrap()
    };
    assert_eq!(published.version, 2);
    let store = fx.data.store().unwrap();
    let m = skycast_publisher::audit::manifest_of(&store, 2).unwrap();
    assert_eq!(m.published_by, "marketing");
    assert_eq!(m.program.schedule.len(), 2);
    assert_eq!(m.program.schedule[1].priority, 10);
    assert_eq!(
        m.program.schedule[1].dates.unwrap().to_string(),
        "2026-12-01..2026-12-24"
    );
    let main = &m.program.shops["main"];
    assert_eq!(
        main.exceptions.values().collect::<Vec<_>>(),
        [&DailyHours::Closed]
    );
    assert!(m.media.iter().any(|e| e.kind == MediaKind::Announcement));
    puller.sync_ok().await;
    assert_eq!(puller.current_version(), Some(2));
    fx.stop().await;
}

/// The calendar's drop form works without its script: the files are planned in
/// their slot and the calendar says so; a broken file plans nothing.
#[tokio::test]
async fn the_calendar_drop_form_works_without_script_and_refuses_a_broken_file() {
    let (fx, mut web) = start("marketing").await;
    let bells = std::fs::read(example("music/bells-d.mp3")).unwrap();
    let slot = [
        ("shop", "main"),
        ("date", "2026-12-19"),
        ("from_time", "14:00"),
        ("to_time", "16:00"),
    ];
    let before = draft(&fx);
    let page = web
        .upload(
            "/marketing/calendar/drop",
            "files",
            &[("broken.mp3", b"not audio".to_vec())],
            &slot,
        )
        .await;
    let flash = page.flash().unwrap_or_default();
    assert!(flash.contains("broken.mp3"), "{flash}");
    assert_eq!(draft(&fx), before, "a broken file plans nothing");

    let page = web
        .upload(
            "/marketing/calendar/drop",
            "files",
            &[("bells-d.mp3", bells)],
            &slot,
        )
        .await;
    assert_eq!(page.path, "/marketing/calendar", "{}", page.body);
    assert!(
        page.flash().is_some_and(|f| f.contains("planned")),
        "{:?}",
        page.flash()
    );
    let d = draft(&fx);
    let rule = d.program.schedule.last().unwrap();
    assert_eq!(rule.playlist, "main-sat-1400");
    assert_eq!(rule.time.map(|t| t.to_string()).as_deref(), Some("14:00-16:00"));
    assert!(
        page.body.contains("data-playlist=\"main-sat-1400\""),
        "the calendar shows it"
    );
}

/// A change the calendar's script would never send is refused with the reason,
/// as JSON, and changes nothing.
#[tokio::test]
async fn malformed_calendar_changes_are_refused_with_the_reason() {
    let (fx, mut web) = start("marketing").await;
    let page = web.get("/marketing/calendar").await;
    let token = skycast_tests::web::csrf_in(&page.body).expect("a CSRF token");
    let before = draft(&fx);
    for (body, status, says) in [
        ("not json", 400, "not the JSON the calendar sends"),
        (r#"{"op": "explode"}"#, 400, "not the JSON the calendar sends"),
        (r#"{"op": "create"}"#, 400, "field `rule`"),
        (
            r#"{"op": "create", "rule": {"playlist": "nope", "shops": ["main"]}}"#,
            400,
            "field `playlist`",
        ),
        (
            r#"{"op": "create", "rule": {"playlist": "daytime", "shops": ["main"], "from_time": "9h"}}"#,
            400,
            "field `to_time`",
        ),
        (
            r#"{"op": "delete", "index": 0, "fp": "0000"}"#,
            409,
            "changed since",
        ),
        (
            r#"{"op": "delete", "index": 99, "fp": "0000"}"#,
            404,
            "not in the draft",
        ),
    ] {
        let resp = web
            .client()
            .post(format!("{}/marketing/calendar/rules", fx.url()))
            .header("x-csrf-token", &token)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), status, "{body}");
        let answer: serde_json::Value = resp.json().await.unwrap();
        let error = answer["error"].as_str().unwrap_or_default();
        assert!(error.contains(says), "{body}: {error}");
        assert_eq!(draft(&fx), before, "{body}");
    }
}
