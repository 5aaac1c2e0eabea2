//! The supervision pages over real HTTPS (issue 11): `/fleet`, `/fleet/players/<id>`,
//! `/fleet/alerts`, `/api/fleet` and `/api/fleet/page` per role (admins write,
//! auditors read without buttons, marketing and sales refused), the filters
//! without script, 250 players paged problems first with the summary counting
//! the whole fleet and the paged JSON matching the page,
//! "Sync now" queuing a command shown requested then done, malformed fields
//! refused in words, the webhooks admin page (secret shown once), exports, and
//! `/metrics` of the real binary accepted by `promtool check metrics`.

use std::path::Path;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use skycast_schema::report::{
    report_path, Entry, EntryBody, EventEntry, EventKind, NowPlaying, OutputState, Report, ReportAnswer,
};
use skycast_tests::serve_process::{https_client, publisher_cli, ServeProcess};
use skycast_tests::web::{WebClient, TEST_PASSWORD};
use skycast_tests::PublisherFixture;

fn token_of(config: &Path) -> String {
    let table: toml::Table = std::fs::read_to_string(config).unwrap().parse().unwrap();
    table["token"].as_str().unwrap().to_string()
}

fn status(title: &str, entries: Vec<Entry>) -> Report {
    Report {
        outbox: "box".into(),
        active_version: None,
        now_playing: Some(NowPlaying {
            media: "b".repeat(64),
            title: title.into(),
            kind: "music".into(),
            started_at: "2026-12-01T10:00:00Z".into(),
        }),
        output: OutputState::Playing,
        clock_offset_ms: Some(-120),
        free_disk_bytes: Some(5_000_000_000),
        audio_clock: None,
        agent_version: "fleet_web test".into(),
        uptime_secs: 60,
        entries,
        ..Report::default()
    }
}

/// The fixture with users of every role, players `main-1` (shop main) and
/// `lille-1` (shop lille), and `main-1`'s token.
struct Setup {
    fx: PublisherFixture,
    token: String,
    client: reqwest::Client,
}

impl Setup {
    async fn start() -> Setup {
        let fx = PublisherFixture::start().await;
        fx.add_role_users();
        let url = fx.url();
        let main = fx.add_player("main-1", "main", &url);
        fx.add_player("lille-1", "lille", &url);
        let client = https_client(&fx.data.ca_cert_path()).build().unwrap();
        Setup {
            token: token_of(&main.config),
            fx,
            client,
        }
    }

    async fn report(&self, report: &Report) -> ReportAnswer {
        let resp = self
            .client
            .post(format!("{}{}", self.fx.url(), report_path("main-1")))
            .bearer_auth(&self.token)
            .json(report)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{}", resp.text().await.unwrap());
        resp.json().await.unwrap()
    }

    /// A GET of a JSON route with `web`'s session: the status and the JSON.
    async fn api(&self, web: &WebClient, path: &str) -> (StatusCode, serde_json::Value) {
        let resp = web
            .client()
            .get(format!("{}{path}", self.fx.url()))
            .send()
            .await
            .unwrap();
        let code = resp.status();
        (code, resp.json().await.unwrap_or(serde_json::Value::Null))
    }

    async fn signed_in(&self, user: &str) -> WebClient {
        let mut web = self.fx.web_client();
        let password = if user == "admin" {
            "admin-password"
        } else {
            TEST_PASSWORD
        };
        let page = web.login(user, password).await;
        assert_eq!(page.status, StatusCode::OK, "{user} signs in: {}", page.body);
        web
    }
}

/// The `<tr ...>` opening tag of `player`'s row on a page.
fn row_tag<'a>(body: &'a str, player: &str) -> &'a str {
    let at = body
        .find(&format!("data-test=\"fleet-row\" data-player=\"{player}\""))
        .unwrap_or_else(|| panic!("no row for {player}"));
    let end = body[at..].find('>').unwrap();
    &body[at..at + end]
}

/// The players of a dashboard page's rows, in order.
fn row_ids(body: &str) -> Vec<String> {
    body.split("data-test=\"fleet-row\" data-player=\"")
        .skip(1)
        .map(|rest| rest[..rest.find('"').unwrap()].to_string())
        .collect()
}

/// The ids of the players of `/api/fleet` or `/api/fleet/page`, in order.
fn player_ids(json: &serde_json::Value) -> Vec<&str> {
    json["players"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect()
}

/// The whole row of `player`.
fn row_html<'a>(body: &'a str, player: &str) -> &'a str {
    let at = body
        .find(&format!("data-test=\"fleet-row\" data-player=\"{player}\""))
        .unwrap_or_else(|| panic!("no row for {player}"));
    let end = body[at..].find("</tr>").unwrap();
    &body[at..at + end]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_player_page_and_api_per_role_with_filters_that_work_without_script() {
    let setup = Setup::start().await;
    setup.report(&status("Morning <song>", vec![])).await;

    let mut admin = setup.signed_in("admin").await;
    let page = admin.get("/fleet").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(
        row_tag(&page.body, "main-1").contains("data-state=\"up\""),
        "{}",
        row_tag(&page.body, "main-1")
    );
    assert!(row_tag(&page.body, "lille-1").contains("data-state=\"ko\""));
    let main = row_html(&page.body, "main-1");
    assert!(main.contains("Morning &lt;song&gt;"), "escaped title: {main}");
    assert!(main.contains("-120 ms") && main.contains("5.0 GB"), "{main}");
    assert!(main.contains("data-test=\"sync-now\""), "admins get the button");
    assert!(page.body.contains("data-test=\"sync-all\""));
    assert!(page.body.contains("/static/fleet.js"));

    // Filters are query parameters: the server sends only the rows that pass.
    let ko = admin.get("/fleet?ko=1").await;
    assert_eq!(row_ids(&ko.body), ["lille-1"], "{}", ko.body);
    let lille = admin.get("/fleet?shop=lille").await;
    assert_eq!(row_ids(&lille.body), ["lille-1"]);
    assert_eq!(row_ids(&page.body), ["lille-1", "main-1"], "KO first");
    let bad = admin.get("/fleet?out_of_sync=perhaps").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(
        bad.body.contains("filter `out_of_sync` takes 1 (on) or nothing"),
        "{}",
        bad.body
    );

    let (code, view) = setup.api(&admin, "/api/fleet").await;
    assert_eq!(code, StatusCode::OK);
    let ids = player_ids(&view);
    assert_eq!(ids.len(), 2, "{view}");
    assert!(ids.contains(&"main-1") && ids.contains(&"lille-1"));

    let player = admin.get("/fleet/players/main-1").await;
    assert_eq!(player.status, StatusCode::OK, "{}", player.body);
    assert!(player.body.contains("id=\"player-commands\"") && player.body.contains("id=\"player-plays\""));
    let ghost = admin.get("/fleet/players/ghost").await;
    assert_eq!(ghost.status, StatusCode::NOT_FOUND);
    let alerts = admin.get("/fleet/alerts").await;
    assert_eq!(alerts.status, StatusCode::OK, "{}", alerts.body);

    // The auditor reads everything, without buttons, and cannot post.
    let mut auditor = setup.signed_in("auditor").await;
    let page = auditor.get("/fleet").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(row_tag(&page.body, "main-1").contains("data-state=\"up\""));
    assert!(!page.body.contains("data-test=\"sync-now\"") && !page.body.contains("data-test=\"sync-all\""));
    assert_eq!(auditor.get("/fleet/players/main-1").await.status, StatusCode::OK);
    assert_eq!(auditor.get("/fleet/alerts").await.status, StatusCode::OK);
    assert_eq!(setup.api(&auditor, "/api/fleet").await.0, StatusCode::OK);
    assert_eq!(setup.api(&auditor, "/api/fleet/page").await.0, StatusCode::OK);
    for (path, fields) in [
        ("/fleet/sync", vec![("player", "main-1")]),
        ("/fleet/sync", vec![("all", "1")]),
        ("/fleet/alerts/acknowledge", vec![("alert", "1")]),
    ] {
        let refused = auditor.post(path, &fields).await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "auditor POST {path}");
    }

    for user in ["marketing", "commercial"] {
        let mut web = setup.signed_in(user).await;
        for path in [
            "/fleet",
            "/fleet/players/main-1",
            "/fleet/alerts",
            "/fleet/export",
            "/api/fleet",
            "/api/fleet/page",
        ] {
            assert_eq!(
                web.get(path).await.status,
                StatusCode::FORBIDDEN,
                "{user} GET {path}"
            );
        }
        assert_eq!(
            web.post("/fleet/sync", &[("all", "1")]).await.status,
            StatusCode::FORBIDDEN
        );
    }
    let commands = setup
        .fx
        .data
        .db()
        .unwrap()
        .commands(None, 10, chrono::Utc::now())
        .unwrap();
    assert!(commands.is_empty(), "refused posts queued nothing: {commands:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_now_queues_a_command_shown_requested_then_done_and_bad_fields_are_refused_in_words() {
    let setup = Setup::start().await;
    setup.report(&status("Song", vec![])).await;
    let mut admin = setup.signed_in("admin").await;
    admin.get("/fleet").await;

    let done = admin.post("/fleet/sync", &[("player", "main-1")]).await;
    assert_eq!((done.status, done.path.as_str()), (StatusCode::OK, "/fleet"));
    assert!(
        done.flash().unwrap().contains("Sync requested for main-1"),
        "{:?}",
        done.flash()
    );
    let main = row_html(&done.body, "main-1");
    assert!(main.contains("Sync now: requested"), "{main}");

    // The player gets it with its next report, does it, and says so.
    let answer = setup.report(&status("Song", vec![])).await;
    assert_eq!(answer.commands.len(), 1, "{answer:?}");
    let command = answer.commands[0].id.clone();
    let done_event = Entry {
        seq: 1,
        at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        body: EntryBody::Event(EventEntry {
            kind: EventKind::CommandDone,
            detail: "synced".into(),
            version: None,
            media: None,
            command_id: Some(command.clone()),
        }),
    };
    setup.report(&status("Song", vec![done_event])).await;
    let page = admin.get("/fleet").await;
    assert!(
        row_html(&page.body, "main-1").contains("Sync now: done"),
        "{}",
        row_html(&page.body, "main-1")
    );
    let player = admin.get("/fleet/players/main-1").await;
    assert!(
        player
            .body
            .contains(&format!("data-command=\"{command}\" data-state=\"done\"")),
        "{}",
        player.body
    );
    let (_, commands) = setup.api(&admin, "/api/fleet/commands").await;
    assert_eq!(commands[0]["state"], "done", "{commands}");

    // Sync all queues one per enabled player, and goes back to the dashboard.
    let all = admin.post("/fleet/sync", &[("all", "1")]).await;
    assert!(
        all.flash().unwrap().contains("Sync requested for 2 player(s)"),
        "{:?}",
        all.flash()
    );
    let back = admin
        .post("/fleet/sync", &[("player", "main-1"), ("back", "player")])
        .await;
    assert_eq!(back.path, "/fleet/players/main-1");

    for (fields, words) in [
        (vec![], "say which player to sync"),
        (vec![("player", "main-1"), ("all", "1")], "not both"),
        (vec![("all", "yes")], "`all` takes 1"),
        (
            vec![("player", "main-1"), ("command", "rm -rf /")],
            "is not allowed",
        ),
        (vec![("player", "ghost")], "ghost"),
    ] {
        let refused = admin.post("/fleet/sync", &fields).await;
        let flash = refused.flash().unwrap_or_default();
        assert!(flash.contains(words), "{fields:?}: {flash:?} {}", refused.status);
    }
    let refused = admin.post("/fleet/alerts/acknowledge", &[("alert", "x")]).await;
    assert!(
        refused
            .flash()
            .unwrap_or_default()
            .contains("must be the number of an alert"),
        "{} {}",
        refused.status,
        refused.body
    );
    let refused = admin.post("/fleet/alerts/acknowledge", &[("alert", "999")]).await;
    assert!(
        refused.flash().unwrap_or_default().contains("alert 999"),
        "{:?}",
        refused.flash()
    );

    // Exports: download links by date range and shop.
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    let (code, csv) = admin
        .get_bytes(&format!(
            "/fleet/export?what=events&from={today}&to={today}&shop=main&format=csv"
        ))
        .await;
    assert_eq!(code, StatusCode::OK);
    let csv = String::from_utf8(csv).unwrap();
    assert!(csv.lines().count() >= 2 && csv.contains("command_done"), "{csv}");
    let bad = admin
        .get("/fleet/export?what=plays&from=yesterday&to=2026-01-01")
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.body.contains("is not a date"), "{}", bad.body);
}

const FLEET: usize = 250;

/// Player `i` of the 250: `p-000`..., shops east (even) and west (odd).
fn fleet_player(i: usize) -> (String, &'static str) {
    (format!("p-{i:03}"), ["east", "west"][i % 2])
}

/// What player `i` of the 250 does: every 5th never reports (KO, out of
/// sync); the next reports no sound device (silent while open); 1 in 10 is
/// disabled; the others play.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Ko,
    Silent,
    Disabled,
    Playing,
}

fn kind_of(i: usize) -> Kind {
    match (i % 5, i % 10) {
        (0, _) => Kind::Ko,
        (1, _) => Kind::Silent,
        (_, 2) => Kind::Disabled,
        _ => Kind::Playing,
    }
}

/// The summary `/api/fleet`'s players give, counted here independently.
fn summary_of(players: &[serde_json::Value]) -> serde_json::Value {
    let (mut up, mut ko, mut behind, mut silent, mut disabled, mut alerts) = (0, 0, 0, 0, 0, 0);
    for p in players {
        alerts += p["open_alerts"].as_array().unwrap().len();
        if p["disabled"] == true {
            disabled += 1;
            continue;
        }
        if p["up"] == true {
            up += 1;
        } else {
            ko += 1;
        }
        behind += usize::from(p["in_sync"] == false);
        silent += usize::from(p["activity"] == "not_playing");
    }
    serde_json::json!({
        "players": players.len(), "up": up, "ko": ko, "out_of_sync": behind,
        "not_playing": silent, "disabled": disabled, "open_alerts": alerts,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_fifty_players_are_paged_problems_first_filtered_on_the_server_and_counted_whole() {
    let fx = PublisherFixture::start().await;
    fx.add_role_users();
    let url = fx.url();
    let db = fx.data.db().unwrap();
    let client = https_client(&fx.data.ca_cert_path()).build().unwrap();
    let started = Instant::now();
    let mut tokens = Vec::new();
    for i in 0..FLEET {
        let (id, shop) = fleet_player(i);
        let config =
            skycast_publisher::enrol::add_player(&fx.data, &db, &id, shop, &url, None, None).unwrap();
        let token = config.parse::<toml::Table>().unwrap()["token"]
            .as_str()
            .unwrap()
            .to_string();
        tokens.push(token);
    }
    let by = skycast_publisher::db::Actor {
        name: "test",
        via: skycast_publisher::db::Via::Cli,
        at: chrono::Utc::now(),
    };
    for i in (0..FLEET).filter(|i| kind_of(*i) == Kind::Disabled) {
        db.set_player_disabled(&fleet_player(i).0, true, by).unwrap();
    }
    let reports = (0..FLEET).filter(|i| matches!(kind_of(*i), Kind::Silent | Kind::Playing));
    let sent: Vec<_> = reports
        .map(|i| {
            let (id, _) = fleet_player(i);
            let mut report = status("Song", vec![]);
            if kind_of(i) == Kind::Silent {
                report.output = OutputState::NoDevice;
            }
            client
                .post(format!("{url}{}", report_path(&id)))
                .bearer_auth(&tokens[i])
                .json(&report)
                .send()
        })
        .collect();
    for resp in futures_util::future::join_all(sent).await {
        assert_eq!(resp.unwrap().status(), StatusCode::OK);
    }
    eprintln!("250 players registered, 175 reported, in {:?}", started.elapsed());

    let mut admin = fx.web_client();
    admin.login("admin", "admin-password").await;
    let first = admin.get("/fleet").await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    let ids = row_ids(&first.body);
    assert_eq!(ids.len(), 100, "a page is at most 100 rows");
    // KO first, by shop (east, then west) and id.
    let mut ko: Vec<(&str, String)> = (0..FLEET)
        .filter(|i| kind_of(*i) == Kind::Ko)
        .map(|i| (fleet_player(i).1, fleet_player(i).0))
        .collect();
    ko.sort();
    let ko: Vec<String> = ko.into_iter().map(|(_, id)| id).collect();
    assert_eq!(ids[..50], ko[..], "the 50 KO players first");
    // Then the silent ones (open alerts or not playing, the next ranks).
    let mut silent: Vec<String> = (0..FLEET)
        .filter(|i| kind_of(*i) == Kind::Silent)
        .map(|i| fleet_player(i).0)
        .collect();
    let mut next: Vec<String> = ids[50..].to_vec();
    silent.sort();
    next.sort();
    assert_eq!(next, silent);
    for id in &ids[..50] {
        assert!(
            row_tag(&first.body, id).contains("data-state=\"ko\""),
            "{}",
            row_tag(&first.body, id)
        );
    }
    assert!(
        first.body.contains("data-summary=\"players\">250<"),
        "summary of the whole fleet"
    );
    assert!(first.body.contains("data-summary=\"ko\">50<"));
    assert!(first.body.contains("data-summary=\"disabled\">25<"));
    assert!(first.body.contains("data-summary=\"up\">175<"));
    assert!(first.body.contains("data-summary=\"out_of_sync\">50<"));
    assert!(first.body.contains("data-summary=\"not_playing\">50<"));
    assert!(first.body.contains("Page 1 of 3"), "page links");
    assert!(first.body.contains("href=\"/fleet?page=2\" rel=\"next\""));
    assert!(first.body.contains("href=\"/fleet?page=3\" rel=\"last\""));
    assert!(!first.body.contains("rel=\"prev\""));
    assert!(first.body.contains("data-query=\"page=1\""));

    // Page 3: the last 50, the rest by shop and id.
    let third = admin.get("/fleet?page=3").await;
    let mut rest: Vec<(&str, String)> = (0..FLEET)
        .filter(|i| matches!(kind_of(*i), Kind::Playing | Kind::Disabled))
        .map(|i| (fleet_player(i).1, fleet_player(i).0))
        .collect();
    rest.sort();
    let rest: Vec<String> = rest.into_iter().map(|(_, id)| id).collect();
    assert_eq!(row_ids(&third.body), rest[100..], "page 3 has the last 50 rows");
    assert!(third.body.contains("Players 201 to 250 of 250"), "{}", third.body);
    assert!(third.body.contains("href=\"/fleet?page=2\" rel=\"prev\""));
    assert_eq!(
        row_ids(&admin.get("/fleet?page=99").await.body),
        rest[100..],
        "past the end: the last page"
    );
    let second = admin.get("/fleet?page=2").await;
    let mut all: Vec<String> = [ids, row_ids(&second.body), row_ids(&third.body)].concat();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), FLEET, "the three pages show every player once");

    // Filters select on the server, combine with each other and with pages,
    // and the page links keep them.
    let ko_page = admin.get("/fleet?ko=1").await;
    assert_eq!(row_ids(&ko_page.body), ko);
    assert!(
        !ko_page.body.contains("id=\"fleet-pages\""),
        "one page: no page links"
    );
    assert!(
        ko_page.body.contains("data-summary=\"players\">250<"),
        "the summary stays the whole fleet's"
    );
    let east_ko = admin.get("/fleet?ko=1&shop=east").await;
    assert_eq!(row_ids(&east_ko.body), ko[..25]);
    let behind = admin.get("/fleet?out_of_sync=1&shop=west").await;
    assert_eq!(row_ids(&behind.body), ko[25..]);
    let west1 = admin.get("/fleet?shop=west").await;
    assert_eq!(row_ids(&west1.body).len(), 100);
    assert!(
        west1
            .body
            .contains("href=\"/fleet?shop=west&amp;page=2\" rel=\"next\""),
        "{}",
        west1.body
    );
    let west2 = admin.get("/fleet?shop=west&page=2").await;
    let west2_ids = row_ids(&west2.body);
    assert_eq!(west2_ids.len(), 25, "125 players in the west");
    assert!(west2_ids
        .iter()
        .all(|id| fleet_player(id[2..].parse().unwrap()).1 == "west"));
    assert!(west2
        .body
        .contains("href=\"/fleet?shop=west&amp;page=1\" rel=\"prev\""));
    let nobody = admin.get("/fleet?shop=nowhere").await;
    assert!(row_ids(&nobody.body).is_empty());
    assert!(
        nobody.body.contains("id=\"fleet-empty\">"),
        "the empty notice shows"
    );
    for bad in ["/fleet?page=0", "/fleet?page=two&ko=1"] {
        let refused = admin.get(bad).await;
        assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{bad}");
        assert!(
            refused.body.contains("`page` takes a page number"),
            "{}",
            refused.body
        );
    }

    // The JSON: /api/fleet is still the whole fleet; the paged form is the page.
    let api = admin.client().clone();
    let get = |path: &'static str| {
        let client = api.clone();
        let url = url.clone();
        async move {
            let resp = client.get(format!("{url}{path}")).send().await.unwrap();
            let code = resp.status();
            (code, resp.json::<serde_json::Value>().await.unwrap())
        }
    };
    let (code, whole) = get("/api/fleet").await;
    assert_eq!(code, StatusCode::OK);
    let players = whole["players"].as_array().unwrap();
    assert_eq!(players.len(), FLEET, "/api/fleet has every player");
    assert!(
        whole.get("summary").is_none() && whole["head_version"] == 0,
        "the same shape as before"
    );
    let (code, page) = get("/api/fleet/page?shop=west&page=2").await;
    assert_eq!(code, StatusCode::OK, "{page}");
    assert_eq!(
        (page["page"].as_u64(), page["pages"].as_u64()),
        (Some(2), Some(2))
    );
    assert_eq!(
        (page["matching"].as_u64(), page["per_page"].as_u64()),
        (Some(125), Some(100))
    );
    assert_eq!(page["filters"]["shop"], "west");
    assert_eq!(
        player_ids(&page),
        west2_ids,
        "the paged JSON is the page's rows, in order"
    );
    let first_player = &page["players"][0];
    let same = players.iter().find(|p| p["id"] == first_player["id"]).unwrap();
    assert_eq!(first_player["shop"], same["shop"], "players as in /api/fleet");
    assert_eq!(
        page["players"][0].as_object().unwrap().len(),
        same.as_object().unwrap().len()
    );
    // The counts, against /api/fleet's players (alerts may open meanwhile: retried).
    let mut tries = 0;
    loop {
        let (_, page) = get("/api/fleet/page").await;
        let (_, whole) = get("/api/fleet").await;
        let want = summary_of(whole["players"].as_array().unwrap());
        if page["summary"] == want {
            assert_eq!(page["players"].as_array().unwrap().len(), 100);
            assert_eq!(page["pages"], 3);
            for (k, v) in [
                ("players", 250),
                ("up", 175),
                ("ko", 50),
                ("disabled", 25),
                ("not_playing", 50),
            ] {
                assert_eq!(page["summary"][k], v, "{k}: {}", page["summary"]);
            }
            break;
        }
        tries += 1;
        assert!(tries < 5, "summary {} is not {want}", page["summary"]);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let (code, refused) = get("/api/fleet/page?ko=maybe").await;
    assert_eq!(code, StatusCode::BAD_REQUEST, "{refused}");

    // Sync now from page 2 of the west comes back to that page.
    let back = admin
        .post(
            "/fleet/sync",
            &[
                ("player", west2_ids[0].as_str()),
                ("back", "fleet"),
                ("view", "shop=west&page=2"),
            ],
        )
        .await;
    assert_eq!(back.status, StatusCode::OK);
    assert!(
        back.body.contains("Page 2 of 2") && back.body.contains("data-query=\"shop=west&amp;page=2\""),
        "{}",
        back.body
    );
    assert!(row_html(&back.body, &west2_ids[0]).contains("Sync now: requested"));
    let (_, page) = get("/api/fleet/page?shop=west&page=2").await;
    assert_eq!(page["commands"][0]["player_id"], west2_ids[0].as_str(), "{page}");
    assert_eq!(page["commands"].as_array().unwrap().len(), 1);

    // Auditors read it too; other roles do not.
    let mut auditor = fx.web_client();
    auditor.login("auditor", TEST_PASSWORD).await;
    let resp = auditor
        .client()
        .get(format!("{url}/api/fleet/page?ko=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(row_ids(&auditor.get("/fleet?ko=1").await.body), ko);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_webhooks_page_adds_shows_the_secret_once_and_removes() {
    let setup = Setup::start().await;
    let mut admin = setup.signed_in("admin").await;
    admin.get("/admin/webhooks").await;
    let added = admin
        .post(
            "/admin/webhooks",
            &[("url", "https://hooks.example.com/skycast?token=x")],
        )
        .await;
    let flash = added.flash().unwrap();
    let secret = flash
        .split_whitespace()
        .find(|w| w.starts_with("skw_"))
        .unwrap_or_else(|| panic!("{flash}"));
    assert!(added.body.contains("hooks.example.com"));
    let again = admin.get("/admin/webhooks").await;
    assert!(!again.body.contains(secret), "the secret is shown once");
    let refused = admin
        .post("/admin/webhooks", &[("url", "http://hooks.example.com/x")])
        .await;
    assert!(refused
        .flash()
        .unwrap()
        .contains("plain http is allowed only to a loopback address"));
    let refused = admin.post("/admin/webhooks", &[("url", "")]).await;
    assert!(
        refused
            .flash()
            .unwrap_or_default()
            .contains("give the URL of the receiver"),
        "{} {}",
        refused.status,
        refused.body
    );
    let id = setup.fx.data.db().unwrap().webhooks().unwrap()[0].id;
    let removed = admin.post(&format!("/admin/webhooks/{id}/remove"), &[]).await;
    assert!(
        removed.flash().unwrap().contains("removed"),
        "{:?}",
        removed.flash()
    );
    assert!(setup.fx.data.db().unwrap().webhooks().unwrap().is_empty());
    let mut auditor = setup.signed_in("auditor").await;
    assert_eq!(auditor.get("/admin/webhooks").await.status, StatusCode::FORBIDDEN);
}

/// The address in serve's `serving metrics addr=...` line.
async fn metrics_addr(serve: &ServeProcess) -> std::net::SocketAddr {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let found = serve
            .plain_log()
            .lines()
            .filter(|l| l.contains("serving metrics"))
            .flat_map(str::split_whitespace)
            .find_map(|w| w.strip_prefix("addr=")?.parse().ok());
        if let Some(addr) = found {
            return addr;
        }
        assert!(
            Instant::now() < deadline,
            "no metrics line: {}",
            serve.plain_log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_on_their_own_listener_pass_promtool_and_count_players_and_requests() {
    let dir = tempfile::tempdir().unwrap();
    let data = skycast_tests::serve_process::init_with_marketing(dir.path());
    let data_arg = data.to_str().unwrap();
    let config = publisher_cli(
        &[
            "player", "add", "--data", data_arg, "--id", "main-1", "--shop", "main",
        ],
        &[],
    );
    let token = config.parse::<toml::Table>().unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string();
    publisher_cli(
        &[
            "player", "add", "--data", data_arg, "--id", "lille-1", "--shop", "lille",
        ],
        &[],
    );
    let serve = ServeProcess::start(&data, &["--metrics-listen", "127.0.0.1:0"]).await;
    let client = serve.client_builder().build().unwrap();
    let resp = client
        .post(format!("{}{}", serve.url(), report_path("main-1")))
        .bearer_auth(&token)
        .json(&status("Song", vec![]))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    client.get(format!("{}/login", serve.url())).send().await.unwrap();

    let addr = metrics_addr(&serve).await;
    let resp = reqwest::get(format!("http://{addr}/metrics")).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    let text = resp.text().await.unwrap();
    for line in [
        "skycast_players{state=\"up\"} 1",
        "skycast_players{state=\"ko\"} 1",
        "skycast_players{state=\"disabled\"} 0",
        "skycast_head_version 0",
        "skycast_alerts_open{kind=\"unreachable\"}",
        "skycast_player_in_sync{player=\"main-1\"}",
        "skycast_player_last_report_timestamp_seconds{player=\"main-1\"}",
        "skycast_http_request_duration_seconds_count{group=\"web\"}",
        "skycast_reports_total",
        "skycast_plays_total",
    ] {
        assert!(text.lines().any(|l| l.starts_with(line)), "{line} in:\n{text}");
    }
    skycast_tests::promtool_accepts(&text);
    eprintln!(
        "promtool check metrics accepts {} lines of /metrics",
        text.lines().count()
    );

    // Not on the main listener.
    let main = client
        .get(format!("{}/metrics", serve.url()))
        .send()
        .await
        .unwrap();
    assert!(!main.text().await.unwrap().contains("skycast_players"));
}
