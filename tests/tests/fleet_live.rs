//! Supervision with real pullers (issue 11, "done when" 1–6): the real
//! `skycast-publisher serve` and real `skycast-puller run` processes (output
//! `null`, or a failing `wav:` one) over HTTPS on loopback, each reporting every
//! second. The dashboard (`fleet --json`, `GET /api/fleet`) against what each
//! puller's own `status` says; a `kill -9` seen KO with one alert and one signed
//! webhook per open and resolve; a 2-minute publisher outage losing no play and
//! counting none twice; a fixed-time ad that could not play and a silent open
//! shop alerted, their twins (intact file, closed shop) not; "Sync now" from the
//! dashboard acted on within 2 s, once, and nothing outside the allow-list.
//! Waits poll with a deadline; measured times are printed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use reqwest::StatusCode;
use skycast_tests::fleet::{
    add_webhook, assert_opened_then_resolved, event_of, json_of, kind_of, row, start_receiver, until, Fleet,
    Received, ShopPlayer, REPORT_INTERVAL_SECS,
};
use skycast_tests::play::write_planning_yaml;
use skycast_tests::web::WebClient;
use skycast_tests::{bin, example, example_music, file_id, write_planning};

fn tracks(music: &[String], n: usize) -> Vec<&str> {
    music.iter().take(n).map(String::as_str).collect()
}

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
}

/// The admin signed in to the web UI of `fleet`'s serve.
async fn admin(fleet: &Fleet) -> WebClient {
    let serve = fleet.server();
    let mut web = WebClient::new(&serve.url(), &serve.ca_path());
    let page = web.login("admin", "admin-password").await;
    assert_eq!(page.status, StatusCode::OK, "admin signs in: {}", page.body);
    web
}

/// `GET path` as JSON with `web`'s session; fails the test unless it answers 200.
async fn api(web: &WebClient, path: &str) -> serde_json::Value {
    let resp = web
        .client()
        .get(format!("{}{path}", web.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK, "GET {path}");
    resp.json().await.unwrap()
}

/// Why `player`'s row does not show it UP, in sync on `version`, playing what
/// the puller's own `status` (`status`) says it plays; `Ok` when it does.
fn shows_playing(
    view: &serde_json::Value,
    player: &str,
    version: u64,
    status: &serde_json::Value,
) -> Result<(), String> {
    let r = row(view, player);
    let own = &status["now_playing"];
    let ok = r["up"] == true
        && r["in_sync"] == true
        && r["active_version"] == version
        && r["activity"] == "playing"
        && r["output"] == "playing"
        && !own.is_null()
        && r["now_playing"]["media"] == own["media"]
        && r["now_playing"]["title"] == own["title"];
    if ok {
        Ok(())
    } else {
        Err(format!("{player}: row {r}\nits status says it plays {own}"))
    }
}

/// Open alerts of `kind` about `player` in a list of alerts as JSON.
fn alerts_about<'a>(alerts: &'a [serde_json::Value], player: &str, kind: &str) -> Vec<&'a serde_json::Value> {
    alerts
        .iter()
        .filter(|a| a["player_id"] == player && a["kind"] == kind)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_pullers_show_up_in_sync_playing_their_own_track_and_follow_a_publish() {
    let music = example_music();
    let plans = tempfile::tempdir().unwrap();
    let v1 = write_planning(&plans.path().join("v1"), &tracks(&music, 2));
    let mut fleet = Fleet::publish_first(&v1);
    fleet.serve(5, &[]).await;
    let ids = ["main-1", "lille-1", "nantes-1"];
    let players: Vec<ShopPlayer> = ids
        .iter()
        .zip(["main", "lille", "nantes"])
        .map(|(id, shop)| ShopPlayer::start(&fleet, id, shop, "null", 1.0))
        .collect();

    // `fleet --json`: each UP, in sync, playing the track its own status names.
    let started = Instant::now();
    until(
        "fleet --json to show the three playing",
        Duration::from_secs(90),
        || {
            let view = fleet.fleet_json();
            players
                .iter()
                .try_for_each(|p| shows_playing(&view, &p.id, 1, &p.status()))
        },
    )
    .await;
    println!(
        "fleet --json showed 3 pullers UP, in sync, playing their own track {:.1} s after they started",
        started.elapsed().as_secs_f64()
    );

    // The same from the dashboard's JSON and page, signed in as an admin.
    let mut web = admin(&fleet).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let view = api(&web, "/api/fleet").await;
        let shown = players
            .iter()
            .try_for_each(|p| shows_playing(&view, &p.id, 1, &p.status()));
        match shown {
            Ok(()) => break,
            Err(e) => assert!(Instant::now() < deadline, "GET /api/fleet: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let page = web.get("/fleet").await;
    assert_eq!(page.status, StatusCode::OK);
    for id in ids {
        let at = page
            .body
            .find(&format!("data-test=\"fleet-row\" data-player=\"{id}\""))
            .unwrap_or_else(|| panic!("no row for {id} on /fleet"));
        let tag = &page.body[at..at + page.body[at..].find('>').unwrap()];
        assert!(
            tag.contains("data-state=\"up\"") && tag.contains("data-in-sync=\"true\""),
            "{tag}"
        );
    }

    // A publish: out of sync (or fetching) for a moment, then in sync on version 2.
    let v2 = write_planning(
        &plans.path().join("v2"),
        &[&music[0], &music[1], "music/extra-e.mp3"],
    );
    let published = Instant::now();
    fleet.publish(&v2);
    let (mut seen_behind, mut seen_fetching) = (BTreeSet::new(), BTreeSet::new());
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut looks = 0u32;
    let took = loop {
        let view = fleet.fleet_json();
        looks += 1;
        if view["head_version"] == 2 {
            for id in ids {
                let r = row(&view, id);
                if r["in_sync"] == false || r["behind_by"].as_u64().unwrap_or(0) > 0 {
                    seen_behind.insert(id);
                }
                if !r["fetching"].is_null() {
                    seen_fetching.insert(id);
                }
            }
            if ids
                .iter()
                .all(|id| row(&view, id)["active_version"] == 2 && row(&view, id)["in_sync"] == true)
            {
                break published.elapsed();
            }
        }
        assert!(
            Instant::now() < deadline,
            "not all in sync on version 2: {view:#}"
        );
    };
    println!(
        "after the publish of version 2: all 3 in sync again {:.1} s after `publish` started; \
         seen behind: {seen_behind:?}, seen fetching: {seen_fetching:?} \
         (fleet --json polled, one look every {:.0} ms)",
        took.as_secs_f64(),
        took.as_secs_f64() * 1000.0 / f64::from(looks)
    );
    // Whether the moment behind was caught or not, each went from 1 to 2 by a swap it reported.
    for p in &players {
        let swapped = fleet.events_of(&p.id, Some("swapped"));
        assert!(
            swapped.iter().any(|e| e.version == Some(2)),
            "{}: {swapped:#?}",
            p.id
        );
        assert_eq!(p.status()["active_version"], 2, "{}", p.id);
    }
    let view = fleet.fleet_json();
    for p in &players {
        shows_playing(&view, &p.id, 2, &p.status()).unwrap_or_else(|e| {
            // The track may change between the two reads: look once more.
            shows_playing(&fleet.fleet_json(), &p.id, 2, &p.status()).unwrap_or_else(|_| panic!("{e}"))
        });
        assert!(
            row(&view, &p.id)["open_alerts"].as_array().unwrap().is_empty(),
            "{}",
            row(&view, &p.id)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_puller_is_ko_with_one_unreachable_alert_and_one_signed_webhook_then_one_resolved() {
    let offline_after = 3;
    let music = example_music();
    let plans = tempfile::tempdir().unwrap();
    let mut fleet = Fleet::publish_first(&write_planning(plans.path(), &tracks(&music, 2)));
    let (rx, addr) = start_receiver(0).await;
    let (_hook, secret) = add_webhook(&fleet.data, &format!("http://{addr}/hook"));
    fleet.serve(offline_after, &[]).await;
    let mut main = ShopPlayer::start(&fleet, "main-1", "main", "null", 1.0);
    let _lille = ShopPlayer::start(&fleet, "lille-1", "lille", "null", 1.0);

    // Both UP, and nothing open (an alert from before their first report resolves first).
    until("both UP with no open alert", Duration::from_secs(60), || {
        let view = fleet.fleet_json();
        let alerts = fleet.alerts_json(false);
        let up = ["main-1", "lille-1"]
            .iter()
            .all(|id| row(&view, id)["up"] == true);
        if up && alerts.is_empty() {
            Ok(())
        } else {
            Err(format!("{view:#}\nopen alerts: {alerts:#?}"))
        }
    })
    .await;
    let before = rx.got().len();

    main.kill9().await;
    let killed = Instant::now();
    let web = admin(&fleet).await;
    let (mut ko_after, mut alert_after, mut hook_after) = (None, None, None);
    let deadline = killed + Duration::from_secs(30);
    while ko_after.is_none() || alert_after.is_none() || hook_after.is_none() {
        // The alerts first: once one is open, the dashboard read after it says KO too.
        let alert_open = !alerts_about(&fleet.alerts_json(false), "main-1", "unreachable").is_empty();
        let view = api(&web, "/api/fleet").await;
        let main_row = row(&view, "main-1");
        assert!(
            !(alert_open && main_row["up"] == true),
            "unreachable is open while the dashboard shows main-1 UP: {main_row}"
        );
        if ko_after.is_none() && main_row["up"] == false {
            ko_after = Some(killed.elapsed());
        }
        if alert_after.is_none() && alert_open {
            alert_after = Some(killed.elapsed());
        }
        if hook_after.is_none() {
            hook_after = rx.got()[before..]
                .iter()
                .find(|r| kind_of(r) == "unreachable" && event_of(r) == "alert.opened")
                .map(|r| r.at - killed);
        }
        assert!(
            Instant::now() < deadline,
            "30 s after the kill: KO {ko_after:?}, alert {alert_after:?}, webhook {hook_after:?}\n{view:#}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (ko_after, alert_after, hook_after) = (ko_after.unwrap(), alert_after.unwrap(), hook_after.unwrap());
    println!(
        "kill -9 detected (offline-after {offline_after} s, report every {REPORT_INTERVAL_SECS} s): \
         KO on /api/fleet after {:.2} s, `alerts --json` after {:.2} s, webhook alert.opened received after {:.2} s",
        ko_after.as_secs_f64(),
        alert_after.as_secs_f64(),
        hook_after.as_secs_f64()
    );
    // The last report came at most one interval before the kill; report times are
    // kept to the second, so KO comes within offline-after + 1 s of the kill, the
    // alert at the next sweep (every second), its webhook at the deliverer's next
    // tick (every 500 ms): offline-after + 2.5 s at worst.
    let bound = Duration::from_secs(offline_after + 3);
    for (what, took) in [("KO", ko_after), ("alert", alert_after), ("webhook", hook_after)] {
        assert!(took < bound, "{what} after {took:?}, over {bound:?}");
    }

    // Exactly one alert, everywhere, and only about the killed player.
    let open = fleet.alerts_json(false);
    let unreachable = alerts_about(&open, "main-1", "unreachable");
    assert_eq!(unreachable.len(), 1, "{open:#?}");
    let alert_id = unreachable[0]["id"].clone();
    assert!(
        open.iter().all(|a| a["player_id"] == "main-1"),
        "lille-1 has nothing open: {open:#?}"
    );
    let view = api(&web, "/api/fleet").await;
    let shown = row(&view, "main-1")["open_alerts"].as_array().unwrap().clone();
    assert_eq!(shown.len(), 1, "{shown:#?}");
    assert_eq!(
        (&shown[0]["id"], &shown[0]["kind"]),
        (&alert_id, &"unreachable".into())
    );
    assert!(row(&view, "lille-1")["open_alerts"]
        .as_array()
        .unwrap()
        .is_empty());
    assert_eq!(row(&view, "lille-1")["up"], true);

    // Restarted: one resolve, after the hold-down, and nothing else about the incident.
    main.run();
    let restarted = Instant::now();
    let incident = |got: &[Received]| -> Vec<Received> {
        got.iter()
            .filter(|r| {
                serde_json::from_slice::<serde_json::Value>(&r.body).unwrap()["alert"]["id"] == alert_id
            })
            .cloned()
            .collect()
    };
    let got = rx
        .wait_for("alert.resolved", Duration::from_secs(60), |g| {
            incident(g).iter().any(|r| event_of(r) == "alert.resolved")
        })
        .await;
    let resolved_at = incident(&got)
        .iter()
        .find(|r| event_of(r) == "alert.resolved")
        .unwrap()
        .at;
    let resolved_after = resolved_at - restarted;
    println!(
        "restarted: webhook alert.resolved received {:.1} s after the restart (hold-down 10 s)",
        resolved_after.as_secs_f64()
    );
    // The hold-down counts from the first report of the new run, on whole-second times.
    assert!(resolved_after >= Duration::from_secs(9), "{resolved_after:?}");
    // Two more sweeps and deliverer rounds: nothing else may come about it.
    until("main-1 UP again", Duration::from_secs(10), || {
        let view = fleet.fleet_json();
        (row(&view, "main-1")["up"] == true)
            .then_some(())
            .ok_or(view.to_string())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let all = rx.got();
    let about = incident(&all);
    assert_opened_then_resolved(&about, &secret);
    assert!(about.iter().all(|r| r.answered == 204), "{:#?}", json_of(&about));
    let unreachable_opened = all[before..]
        .iter()
        .filter(|r| kind_of(r) == "unreachable" && event_of(r) == "alert.opened")
        .count();
    assert_eq!(unreachable_opened, 1, "{:#?}", json_of(&all[before..]));
    let history = fleet.alerts_json(true);
    let kept = history.iter().find(|a| a["id"] == alert_id).unwrap();
    assert!(kept["resolved_at"].is_string(), "{kept}");
    assert!(
        fleet.alerts_json(false).is_empty(),
        "{:#?}",
        fleet.alerts_json(false)
    );
}

/// Plays (id → outcome) in `player`'s own log.
fn local_plays(p: &ShopPlayer) -> BTreeMap<String, String> {
    p.plays().into_iter().map(|r| (r.id, r.outcome)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plays_during_a_two_minute_publisher_outage_all_reach_it_once_even_across_a_kill_9() {
    let cut = Duration::from_secs(120);
    let music = example_music();
    let plans = tempfile::tempdir().unwrap();
    let mut fleet = Fleet::publish_first(&write_planning(plans.path(), &tracks(&music, 3)));
    fleet.serve(30, &[]).await;
    // 20 s tracks at 10 s of audio per second: a play every 2 s.
    let rate = 10.0;
    let mut players = [
        ShopPlayer::start(&fleet, "main-1", "main", "null", rate),
        ShopPlayer::start(&fleet, "lille-1", "lille", "null", rate),
    ];
    until("plays on the server", Duration::from_secs(60), || {
        players.iter().try_for_each(|p| {
            let n = fleet.plays_of(&p.id).len();
            (n >= 2).then_some(()).ok_or(format!("{}: {n} plays", p.id))
        })
    })
    .await;

    let before: Vec<BTreeSet<String>> = players
        .iter()
        .map(|p| local_plays(p).into_keys().collect())
        .collect();
    fleet.stop_serving().await;
    let cut_at = Instant::now();
    // Half way through the outage, lille-1 dies without a chance to clean up and starts again.
    tokio::time::sleep(cut / 2).await;
    players[1].kill9().await;
    players[1].run();
    tokio::time::sleep(cut.saturating_sub(cut_at.elapsed())).await;
    let during: Vec<BTreeSet<String>> = players
        .iter()
        .zip(&before)
        .map(|(p, b)| local_plays(p).into_keys().filter(|id| !b.contains(id)).collect())
        .collect();
    for (p, d) in players.iter().zip(&during) {
        let waiting = p.status()["outbox_waiting"].as_u64().unwrap();
        println!(
            "{}: {} plays started during the {:.0} s outage; {waiting} outbox entries waiting",
            p.id,
            d.len(),
            cut_at.elapsed().as_secs_f64()
        );
        assert!(d.len() >= 20, "{}: only {} plays in the outage", p.id, d.len());
    }

    fleet.serve_again().await;
    let back = Instant::now();
    // The server's plays of each player are its own log's, outcome for outcome.
    let counted = until(
        "the server's plays to equal each player's own log",
        Duration::from_secs(90),
        || {
            players
                .iter()
                .map(|p| {
                    let mine = local_plays(p);
                    let server = fleet.plays_of(&p.id);
                    let theirs: BTreeMap<String, String> = server
                        .iter()
                        .map(|r| (r.play.play_id.clone(), r.play.outcome.clone()))
                        .collect();
                    if theirs.len() != server.len() {
                        panic!("{}: a play id twice on the server: {server:#?}", p.id);
                    }
                    if mine == theirs && local_plays(p) == mine {
                        Ok((p.id.clone(), mine.len()))
                    } else {
                        let missing = mine.keys().filter(|k| !theirs.contains_key(*k)).count();
                        let extra = theirs.keys().filter(|k| !mine.contains_key(*k)).count();
                        Err(format!(
                            "{}: {} in its log, {} on the server ({missing} missing, {extra} unknown)",
                            p.id,
                            mine.len(),
                            theirs.len()
                        ))
                    }
                })
                .collect::<Result<Vec<_>, String>>()
        },
    )
    .await;
    println!(
        "serve back on the same port: the server's plays equal each player's log {:.1} s later: {counted:?}",
        back.elapsed().as_secs_f64()
    );
    for ((p, d), (_, n)) in players.iter().zip(&during).zip(&counted) {
        let server: BTreeSet<String> = fleet
            .plays_of(&p.id)
            .into_iter()
            .map(|r| r.play.play_id)
            .collect();
        assert!(d.is_subset(&server), "{}: a play of the outage is missing", p.id);
        assert!(*n >= d.len());
    }
    // `plays export` (CSV) of each player has each play of the outage, once.
    let day = |d: i64| {
        (Utc::now() + chrono::Duration::days(d))
            .format("%Y-%m-%d")
            .to_string()
    };
    let (from, to) = (day(-1), day(1));
    for (p, d) in players.iter().zip(&during) {
        let csv = fleet.cli(&[
            "plays", "export", "--from", &from, "--to", &to, "--player", &p.id, "--format", "csv",
        ]);
        let mut lines = csv.lines();
        let header: Vec<&str> = lines.next().unwrap().split(',').collect();
        let column = header.iter().position(|h| *h == "play_id").unwrap();
        // Titles here are file names: no comma to quote.
        let ids: Vec<&str> = lines.map(|l| l.split(',').nth(column).unwrap()).collect();
        let unique: BTreeSet<&str> = ids.iter().copied().collect();
        assert_eq!(unique.len(), ids.len(), "{}: a play id twice in the export", p.id);
        assert!(
            d.iter().all(|id| unique.contains(id.as_str())),
            "{}: a play of the outage is missing from the export:\n{csv}",
            p.id
        );
    }
    // The kill -9 is on the record, and its cut play closed as interrupted, once.
    let crashes = fleet.events_of("lille-1", Some("restarted_after_crash"));
    assert_eq!(crashes.len(), 1, "{crashes:#?}");
    // The restarted player goes on with the music the kill cut (issue 14): that row
    // ends `resumed` and its continuation names it; a cut message stays `interrupted`.
    let plays = players[1].plays();
    let cut = plays
        .iter()
        .filter(|r| r.outcome == "interrupted" || r.outcome == "resumed")
        .count();
    assert!(cut >= 1, "the play cut by the kill is closed: {plays:#?}");
    for row in plays.iter().filter(|r| r.outcome == "resumed") {
        let continued = plays
            .iter()
            .filter(|r| r.resumed_from.as_deref() == Some(row.id.as_str()))
            .count();
        assert_eq!(continued, 1, "{} resumed once: {plays:#?}", row.id);
    }
}

/// `HH:MM` in Paris of `t` (a whole minute).
fn paris_hhmm(t: DateTime<Utc>) -> String {
    skycast_schema::schedule::local_datetime("Europe/Paris", t)
        .unwrap()
        .format("%H:%M")
        .to_string()
}

/// The next whole minute at least `margin` from now.
fn next_minute_after(margin: Duration) -> DateTime<Utc> {
    let t = Utc::now() + chrono::Duration::from_std(margin).unwrap();
    let secs = t.timestamp();
    DateTime::from_timestamp(secs - secs.rem_euclid(60) + 60, 0).unwrap()
}

/// Sleeps until wall-clock `t` (the scenario's own timing, not a wait for a server).
async fn sleep_until(t: DateTime<Utc>) {
    if let Ok(d) = (t - Utc::now()).to_std() {
        tokio::time::sleep(d).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fixed_time_ad_damaged_on_one_player_opens_missed_ad_for_its_shop_only() {
    // Real clock, shops open all day: version 1 without the ad gets the pullers
    // going, then version 2 has the ad at the next whole minute (Paris time).
    let plans = tempfile::tempdir().unwrap();
    let files = ["music/tone-a.mp3", "music/chords-b.mp3", "ads/coffee.mp3"];
    let planning = |ads: &str| {
        format!(
            "timezone: Europe/Paris
media:
  ads/coffee.mp3: {{title: Coffee, kind: ad}}
playlists:
  day: {{items: [music/tone-a.mp3, music/chords-b.mp3]}}
shops:
  main: {{}}
  lille: {{}}
schedule:
  - {{playlist: day, shops: [all]}}
{ads}"
        )
    };
    let v1 = write_planning_yaml(&plans.path().join("v1"), &planning(""), &files);
    let mut fleet = Fleet::publish_first(&v1);
    fleet.serve(30, &[]).await;
    let main = ShopPlayer::start(&fleet, "main-1", "main", "null", 1.0);
    let lille = ShopPlayer::start(&fleet, "lille-1", "lille", "null", 1.0);
    let on_version = |version: u64| {
        let view = fleet.fleet_json();
        ["main-1", "lille-1"]
            .iter()
            .all(|id| row(&view, id)["active_version"] == version && row(&view, id)["up"] == true)
            .then_some(())
            .ok_or(view.to_string())
    };
    until("both on version 1", Duration::from_secs(60), || on_version(1)).await;
    let slot = next_minute_after(Duration::from_secs(20));
    let ads = format!(
        "ads:\n  - {{media: ads/coffee.mp3, at: [\"{}\"], shops: [main, lille], start: cut}}\n",
        paris_hhmm(slot)
    );
    fleet.publish(&write_planning_yaml(
        &plans.path().join("v2"),
        &planning(&ads),
        &files,
    ));
    until("both on version 2", Duration::from_secs(15), || on_version(2)).await;
    let (ad, ad_size) = file_id(&example("ads/coffee.mp3"));
    assert!(
        Utc::now() + chrono::Duration::seconds(6) < slot,
        "version 2 reached the players too late for the slot {slot}"
    );

    // Shortly before the slot, main-1's copy of the ad is damaged (another size).
    sleep_until(slot - chrono::Duration::seconds(5)).await;
    let path = main.puller.data.join("media").join(ad.file_name());
    assert!(path.exists(), "{}", path.display());
    std::fs::write(&path, vec![0x55u8; (ad_size / 2) as usize]).unwrap();

    let opened = until(
        "a missed_ad alert for main-1",
        Duration::from_secs(5 * 60),
        || {
            let alerts = fleet.alerts_json(false);
            let missed = alerts_about(&alerts, "main-1", "missed_ad");
            missed.first().map(|a| (*a).clone()).ok_or(format!("{alerts:#?}"))
        },
    )
    .await;
    let after_slot = Utc::now() - slot;
    println!(
        "missed_ad for main-1 opened {:.1} s after its slot {slot}: {}",
        after_slot.num_milliseconds() as f64 / 1000.0,
        opened["text_en"]
    );
    assert!(after_slot < chrono::Duration::minutes(5));
    let text = opened["text_en"].as_str().unwrap();
    assert!(text.contains("did not play") && text.contains("Coffee"), "{text}");
    assert_eq!(opened["shop"], "main");
    let skipped = main
        .plays()
        .into_iter()
        .filter(|r| r.media == ad.to_string())
        .collect::<Vec<_>>();
    assert!(
        skipped.iter().all(|r| r.outcome == "skipped") && !skipped.is_empty(),
        "main-1 could not play it: {skipped:#?}"
    );

    // lille-1 played it at its slot (the server has the play), and opens nothing,
    // also after one more planned-vs-played check (every 10 s).
    let played = until(
        "lille-1's play of the ad on the server",
        Duration::from_secs(60),
        || {
            let plays = fleet.plays_of("lille-1");
            plays
                .iter()
                .find(|r| r.play.media == ad.to_string() && r.play.outcome != "skipped")
                .cloned()
                .ok_or(format!("{plays:#?}"))
        },
    )
    .await;
    let late = at(&played.play.started_at) - slot;
    println!(
        "lille-1 played the ad {:.1} s after its slot",
        late.num_milliseconds() as f64 / 1000.0
    );
    assert!(late < chrono::Duration::seconds(5), "{played:?}");
    tokio::time::sleep(Duration::from_secs(12)).await;
    let all = fleet.alerts_json(true);
    let lille_alerts: Vec<_> = all.iter().filter(|a| a["player_id"] == "lille-1").collect();
    assert!(lille_alerts.is_empty(), "{lille_alerts:#?}");
    assert_eq!(alerts_about(&all, "main-1", "missed_ad").len(), 1, "{all:#?}");
    drop(lille);
}

/// A planning whose shop `main` is open all day and `lille` only the day after tomorrow.
fn open_and_closed_planning(dir: &Path) -> std::path::PathBuf {
    // Paris is UTC+1 or UTC+2: a fixed UTC+1 names the right day two days away.
    let day = (Utc::now() + chrono::Duration::days(2))
        .with_timezone(&chrono::FixedOffset::east_opt(3600).unwrap())
        .date_naive();
    let weekday = skycast_schema::Weekday::from_chrono(chrono::Datelike::weekday(&day)).key();
    let yaml = format!(
        "timezone: Europe/Paris
playlists:
  day: {{items: [music/tone-a.mp3, music/chords-b.mp3]}}
shops:
  main: {{}}
  lille: {{hours: {{{weekday}: \"09:00-20:00\"}}}}
schedule:
  - {{playlist: day, shops: [all]}}
"
    );
    write_planning_yaml(dir, &yaml, &["music/tone-a.mp3", "music/chords-b.mp3"])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_shop_whose_output_fails_opens_silent_while_open_and_a_closed_one_nothing() {
    let plans = tempfile::tempdir().unwrap();
    let mut fleet = Fleet::publish_first(&open_and_closed_planning(plans.path()));
    fleet.serve(30, &[]).await;
    // /dev/null is a file: no directory can be made under it, even as root.
    let failing = "wav:/dev/null/skycast/x.wav";
    let main = ShopPlayer::start(&fleet, "main-1", "main", failing, 1.0);
    let lille = ShopPlayer::start(&fleet, "lille-1", "lille", failing, 1.0);
    let since = until("main-1 reporting no_device", Duration::from_secs(60), || {
        let view = fleet.fleet_json();
        (row(&view, "main-1")["output"] == "no_device")
            .then(Instant::now)
            .ok_or(format!("{}", row(&view, "main-1")))
    })
    .await;
    let opened = until("silent_while_open for main-1", Duration::from_secs(90), || {
        let alerts = fleet.alerts_json(false);
        alerts_about(&alerts, "main-1", "silent_while_open")
            .first()
            .map(|a| (*a).clone())
            .ok_or(format!("{alerts:#?}\n{}", main.transcript()))
    })
    .await;
    let took = since.elapsed();
    println!(
        "silent_while_open opened {:.1} s after the dashboard first showed no_device (grace 20 s): {}",
        took.as_secs_f64(),
        opened["text_en"]
    );
    assert!(took >= Duration::from_secs(18), "before the grace: {took:?}");
    let view = fleet.fleet_json();
    assert_eq!(row(&view, "main-1")["activity"], "not_playing", "{view:#}");
    // The closed shop's player had as long, and two sweeps more.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let view = fleet.fleet_json();
    let lille_row = row(&view, "lille-1");
    println!(
        "lille-1 (closed): activity {}, output {}",
        lille_row["activity"], lille_row["output"]
    );
    assert_eq!(lille_row["up"], true, "{lille_row}");
    assert_eq!(lille_row["activity"], "closed", "{lille_row}");
    let all = fleet.alerts_json(true);
    assert!(
        all.iter().all(|a| a["player_id"] != "lille-1"),
        "the closed shop opens nothing: {all:#?}"
    );
    drop(lille);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_now_from_the_dashboard_syncs_within_2_s_runs_once_and_the_allow_list_holds() {
    let music = example_music();
    let plans = tempfile::tempdir().unwrap();
    let mut fleet = Fleet::publish_first(&write_planning(plans.path(), &tracks(&music, 2)));
    fleet.serve(30, &[]).await;
    let mut main = ShopPlayer::start(&fleet, "main-1", "main", "null", 1.0);
    let synced_before = until("main-1 synced and reporting", Duration::from_secs(60), || {
        let view = fleet.fleet_json();
        let status = main.status();
        match status["last_sync"]["at"].as_str() {
            Some(t) if row(&view, "main-1")["in_sync"] == true => Ok(at(t)),
            _ => Err(format!("{status:#}\n{view:#}")),
        }
    })
    .await;
    // Nothing is published from here on: only the command makes it sync again.
    // Let its long-poll settle (its first one starts right after the first sync).
    tokio::time::sleep(Duration::from_secs(2)).await;

    let mut web = admin(&fleet).await;
    let page = web.get("/fleet").await;
    assert_eq!(page.status, StatusCode::OK);
    let asked_at = Utc::now();
    let asked = Instant::now();
    let done = web.post("/fleet/sync", &[("player", "main-1")]).await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.body);
    assert!(
        done.flash()
            .unwrap_or_default()
            .contains("Sync requested for main-1"),
        "{:?}",
        done.flash()
    );
    let synced = until("main-1 to sync again", Duration::from_secs(10), || {
        let status = main.status();
        match status["last_sync"]["at"].as_str().map(at) {
            Some(t) if t > synced_before && t >= asked_at - chrono::Duration::milliseconds(5) => Ok(t),
            _ => Err(format!("{status:#}")),
        }
    })
    .await;
    let seen_after = asked.elapsed();
    let latency = synced - asked_at;
    println!(
        "Sync now: the puller's last_sync is {} ms after the POST (seen by polling `status` after {:.2} s)",
        latency.num_milliseconds(),
        seen_after.as_secs_f64()
    );
    assert!(latency < chrono::Duration::seconds(2), "{latency:?}");

    // The dashboard shows it done, with the id the puller echoed.
    let command = {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let commands = api(&web, "/api/fleet/commands").await;
            let first = commands[0].clone();
            if first["state"] == "done" {
                break first;
            }
            assert!(Instant::now() < deadline, "{commands:#}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    println!(
        "Sync now: command {} shown done {:.2} s after the POST",
        command["id"],
        asked.elapsed().as_secs_f64()
    );
    assert_eq!(
        (&command["player_id"], &command["kind"]),
        (&"main-1".into(), &"sync_now".into())
    );
    let id = command["id"].as_str().unwrap().to_string();
    let player_page = web.get("/fleet/players/main-1").await;
    assert!(
        player_page
            .body
            .contains(&format!("data-command=\"{id}\" data-state=\"done\"")),
        "{} {}\n{}",
        player_page.status,
        player_page.body,
        fleet.server().plain_log()
    );
    let done_events = |fleet: &Fleet| {
        fleet
            .events_of("main-1", Some("command_done"))
            .into_iter()
            .filter(|e| e.command_id.as_deref() == Some(id.as_str()))
            .count()
    };
    assert_eq!(done_events(&fleet), 1);

    // A kill -9 and a restart: the id is not run again.
    main.kill9().await;
    main.run();
    until("main-1's restart reported", Duration::from_secs(30), || {
        let crashes = fleet.events_of("main-1", Some("restarted_after_crash"));
        let status = main.status();
        (!crashes.is_empty() && status["outbox_waiting"] == 0)
            .then_some(())
            .ok_or(format!("{crashes:?} {status:#}"))
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2 * REPORT_INTERVAL_SECS)).await;
    assert_eq!(done_events(&fleet), 1, "one command_done for {id}");

    // Outside the allow-list: refused by the dashboard and by the CLI, nothing queued.
    let queued = |fleet: &Fleet| fleet.db().commands(None, 100, Utc::now()).unwrap().len();
    let before = queued(&fleet);
    web.get("/fleet").await;
    let refused = web
        .post("/fleet/sync", &[("player", "main-1"), ("command", "reboot")])
        .await;
    let flash = refused.flash().unwrap_or_default();
    assert!(flash.contains("is not allowed"), "{} {flash:?}", refused.status);
    let out = std::process::Command::new(bin("skycast-publisher"))
        .args([
            "command",
            "--data",
            fleet.data.to_str().unwrap(),
            "--player",
            "main-1",
            "rm",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is not allowed"), "{err}");
    assert_eq!(queued(&fleet), before, "refused commands queue nothing");
}
