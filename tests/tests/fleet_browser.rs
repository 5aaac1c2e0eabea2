//! The dashboard in headless Debian Chromium (issue 11, "done when" 8): a row
//! and the summary change without a reload when the player reports something
//! new (now playing, then its output), in French, written by `static/fleet.js`
//! from `/api/fleet/page`; a player added while the page is open shows the
//! "rows changed" notice; the page is no wider than a phone's screen; and
//! "Sync now" from the page shows the command requested.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;
use skycast_schema::report::{report_path, NowPlaying, OutputState, Report};
use skycast_tests::browser::Browser;
use skycast_tests::serve_process::https_client;
use skycast_tests::PublisherFixture;

/// The page polls every 2 s.
const LIVE_TIMEOUT: Duration = Duration::from_secs(15);

fn status(title: &str, output: OutputState) -> Report {
    Report {
        outbox: "box".into(),
        now_playing: Some(NowPlaying {
            media: "b".repeat(64),
            title: title.into(),
            kind: "music".into(),
            started_at: "2026-12-01T10:00:00Z".into(),
        }),
        output,
        agent_version: "browser test".into(),
        uptime_secs: 5,
        ..Report::default()
    }
}

async fn script(b: &Browser, code: &str) -> Value {
    b.client().execute(code, vec![]).await.expect("run a script")
}

/// Waits until the text of `css` is `want`, reading it from script (no reload).
async fn wait_text(b: &Browser, css: &str, want: &str) {
    let started = Instant::now();
    loop {
        let got = script(
            b,
            &format!("const e = document.querySelector({css:?}); return e ? e.textContent : null;"),
        )
        .await;
        if got.as_str() == Some(want) {
            return;
        }
        assert!(
            started.elapsed() < LIVE_TIMEOUT,
            "`{css}` is {got:?}, not {want:?}, after {LIVE_TIMEOUT:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_row_follows_the_player_live_without_a_reload_in_french() {
    let fx = PublisherFixture::start().await;
    let url = fx.url();
    let puller = fx.add_player("main-1", "main", &url);
    let table: toml::Table = std::fs::read_to_string(&puller.config).unwrap().parse().unwrap();
    let token = table["token"].as_str().unwrap().to_string();
    let client = https_client(&fx.data.ca_cert_path()).build().unwrap();
    let report = |r: Report| {
        let (client, url, token) = (client.clone(), url.clone(), token.clone());
        async move {
            let resp = client
                .post(format!("{url}{}", report_path("main-1")))
                .bearer_auth(token)
                .json(&r)
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), StatusCode::OK);
        }
    };
    report(status("Chanson du matin", OutputState::Playing)).await;

    let b = Browser::start("fr-FR").await;
    b.goto(&format!("{url}/login")).await;
    b.fill("#login-form input[name=username]", "admin").await;
    b.fill("#login-form input[name=password]", "admin-password").await;
    b.submit_form("#login-form").await;
    b.wait_for("header .username").await;
    b.goto(&format!("{url}/fleet")).await;
    b.wait_for("#fleet-table").await;
    let row = "tr[data-player=\"main-1\"]";
    assert_eq!(b.text(&format!("{row} [data-field=state]")).await, "UP");
    assert_eq!(b.text("#fleet-table thead th").await.to_lowercase(), "lecteur");
    assert_eq!(
        b.text(&format!("{row} [data-field=now_playing]")).await,
        "Chanson du matin"
    );
    assert_eq!(b.text("#fleet-summary [data-summary=up]").await, "1");
    assert_eq!(b.text("#fleet-summary [data-summary=not_playing]").await, "0");
    script(&b, "window.__skycastOld = true; return null;").await;

    report(status("Chanson du soir", OutputState::NoDevice)).await;
    wait_text(&b, &format!("{row} [data-field=now_playing]"), "Chanson du soir").await;
    wait_text(
        &b,
        &format!("{row} [data-field=output]"),
        "Pas de périphérique audio",
    )
    .await;
    wait_text(&b, "#fleet-summary [data-summary=not_playing]", "1").await;
    let same_page = script(&b, "return window.__skycastOld === true;").await;
    assert_eq!(same_page, Value::Bool(true), "the row changed without a reload");
    let updates = script(
        &b,
        "return document.getElementById('fleet-table').dataset.updates;",
    )
    .await;
    eprintln!("dashboard rewrote its rows {updates} time(s) without a reload");
    let seen = b.text(&format!("{row} [data-field=last_seen]")).await;
    assert!(seen.starts_with("il y a "), "{seen}");
    b.screenshot("fleet-dashboard-fr").await;

    // A new player (KO, so first on the page): the script says the rows changed.
    assert!(!b.exists("#fleet-new:not([hidden])").await);
    fx.add_player("lille-1", "lille", &url);
    wait_text(&b, "#fleet-summary [data-summary=ko]", "1").await;
    b.wait_for("#fleet-new:not([hidden])").await;
    assert!(
        !b.exists("tr[data-player=\"lille-1\"]").await,
        "the rows stay until a reload"
    );

    // On a phone the page is no wider than the screen (the table scrolls in its box).
    b.set_window_size(390, 844).await;
    let fits = script(
        &b,
        "return [document.documentElement.scrollWidth, window.innerWidth];",
    )
    .await;
    let (page_w, screen_w) = (fits[0].as_u64().unwrap(), fits[1].as_u64().unwrap());
    assert!(
        page_w <= screen_w,
        "the page is {page_w} px wide on a {screen_w} px screen"
    );
    b.screenshot("fleet-dashboard-phone-fr").await;
    b.set_window_size(1280, 900).await;

    // "Sync now" is a plain form: the page comes back with the command requested.
    b.click(&format!("{row} [data-test=sync-now]")).await;
    let started = Instant::now();
    loop {
        let cell = script(
            &b,
            "const e = document.querySelector('tr[data-player=\"main-1\"] [data-field=command]'); \
             return window.__skycastOld === true || !e ? null : e.textContent;",
        )
        .await;
        if cell
            .as_str()
            .is_some_and(|t| t.starts_with("Synchroniser: demandée"))
        {
            break;
        }
        assert!(started.elapsed() < LIVE_TIMEOUT, "command cell: {cell:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let flash = b.text(".flash").await;
    assert!(flash.contains("Synchronisation demandée pour main-1"), "{flash}");
    b.close().await;
}
