//! Supervision's server side against the real `skycast-publisher serve` binary
//! over HTTPS (issue 11): reports refused for another player, oversize or not
//! JSON; re-sent entries counted once and a new outbox starting again; a command
//! queued by the CLI waking a waiting long-poll, handed out once and marked done;
//! `fleet --json` going from UP to KO; the CSV and text exports checked against
//! what was reported. A small in-test reporter posts `schema::report::Report`
//! JSON with each player's own token, as the puller does.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::{Datelike, Utc};
use reqwest::StatusCode;
use skycast_publisher::DataDir;
use skycast_schema::report::{
    report_path, CommandKind, Entry, EntryBody, EventEntry, EventKind, NowPlaying, OutputState, PlayEntry,
    Report, ReportAnswer, MAX_REPORT_BYTES,
};
use skycast_tests::serve_process::{publisher_cli, ServeProcess};
use skycast_tests::{example_music, write_planning};

/// How long `serve` may take to notice something (it polls every 200 ms).
const PROMPT: Duration = Duration::from_secs(5);

/// A published data directory with players `main-1` (shop main) and `lille-1`
/// (shop lille), and `serve --offline-after 2` on it.
struct Setup {
    _dir: tempfile::TempDir,
    data: PathBuf,
    serve: ServeProcess,
    client: reqwest::Client,
    tokens: Vec<(String, String)>,
}

fn data_arg(data: &Path) -> &str {
    data.to_str().unwrap()
}

impl Setup {
    async fn start() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("publisher");
        publisher_cli(
            &["init", "--data", data_arg(&data)],
            &[("SKYCAST_ADMIN_PASSWORD", "admin-password")],
        );
        let music = example_music();
        let planning = write_planning(&dir.path().join("planning"), &[music[0].as_str()]);
        // Lille opens only on the day after tomorrow (Paris time): closed now.
        let day = (Utc::now() + chrono::Duration::days(2))
            .with_timezone(&paris())
            .weekday();
        let text = std::fs::read_to_string(&planning).unwrap().replace(
            "lille: {tags: [pilot]}",
            &format!(
                "lille: {{tags: [pilot], hours: {{{}: \"09:00-20:00\"}}}}",
                weekday_key(day)
            ),
        );
        std::fs::write(&planning, text).unwrap();
        publisher_cli(
            &[
                "publish",
                "--data",
                data_arg(&data),
                "--planning",
                planning.to_str().unwrap(),
            ],
            &[],
        );
        let mut tokens = Vec::new();
        for (id, shop) in [("main-1", "main"), ("lille-1", "lille")] {
            let config = publisher_cli(
                &[
                    "player",
                    "add",
                    "--data",
                    data_arg(&data),
                    "--id",
                    id,
                    "--shop",
                    shop,
                ],
                &[],
            );
            let table: toml::Table = config.parse().unwrap();
            tokens.push((id.to_string(), table["token"].as_str().unwrap().to_string()));
        }
        let serve = ServeProcess::start(&data, &["--offline-after", "2"]).await;
        let client = serve.client_builder().build().unwrap();
        Setup {
            _dir: dir,
            data,
            serve,
            client,
            tokens,
        }
    }

    fn token(&self, id: &str) -> &str {
        &self.tokens.iter().find(|(p, _)| p == id).unwrap().1
    }

    /// `POST /v1/players/<path_id>/report` with `as_player`'s token and `body`.
    async fn post(&self, path_id: &str, as_player: &str, body: Vec<u8>) -> reqwest::Response {
        self.client
            .post(format!("{}{}", self.serve.url(), report_path(path_id)))
            .bearer_auth(self.token(as_player))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap()
    }

    /// Reports `report` as `player` for itself; fails the test unless it is accepted.
    async fn report(&self, player: &str, report: &Report) -> ReportAnswer {
        let resp = self
            .post(player, player, serde_json::to_vec(report).unwrap())
            .await;
        assert_eq!(resp.status(), StatusCode::OK, "{}", resp.text().await.unwrap());
        resp.json().await.unwrap()
    }

    /// `skycast-publisher <args> --data <data>`'s stdout.
    fn cli(&self, args: &[&str]) -> String {
        let mut all = args.to_vec();
        all.extend(["--data", data_arg(&self.data)]);
        publisher_cli(&all, &[])
    }

    /// Without `--offline-after`: `fleet` judges with the one `serve` was started with.
    fn fleet_json(&self) -> serde_json::Value {
        serde_json::from_str(&self.cli(&["fleet", "--json"])).unwrap()
    }

    fn db(&self) -> skycast_publisher::db::Db {
        DataDir::open(&self.data).unwrap().db().unwrap()
    }
}

/// Paris is UTC+1 or UTC+2: a fixed UTC+1 names the right day two days away.
fn paris() -> chrono::FixedOffset {
    chrono::FixedOffset::east_opt(3600).unwrap()
}

fn weekday_key(day: chrono::Weekday) -> &'static str {
    skycast_schema::Weekday::from_chrono(day).key()
}

/// Player `id`'s row in the JSON of `fleet --json`.
fn row<'f>(fleet: &'f serde_json::Value, id: &str) -> &'f serde_json::Value {
    fleet["players"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == id)
        .unwrap()
}

fn play(seq: u64, play_id: &str, started_at: &str, title: &str) -> Entry {
    Entry {
        seq,
        at: started_at.into(),
        body: EntryBody::Play(PlayEntry {
            play_id: play_id.into(),
            media: "b".repeat(64),
            title: title.into(),
            kind: "music".into(),
            source: "allday".into(),
            version: 1,
            started_at: started_at.into(),
            ended_at: Some(started_at.into()),
            outcome: "complete".into(),
        }),
    }
}

fn event(seq: u64, at: &str, kind: EventKind, detail: &str, command_id: Option<&str>) -> Entry {
    Entry {
        seq,
        at: at.into(),
        body: EntryBody::Event(EventEntry {
            kind,
            detail: detail.into(),
            version: None,
            media: None,
            command_id: command_id.map(str::to_string),
        }),
    }
}

fn report(outbox: &str, entries: Vec<Entry>) -> Report {
    Report {
        outbox: outbox.into(),
        active_version: Some(1),
        now_playing: Some(NowPlaying {
            media: "b".repeat(64),
            title: "Morning song".into(),
            kind: "music".into(),
            started_at: "2026-12-01T10:00:00Z".into(),
        }),
        output: OutputState::Playing,
        clock_offset_ms: Some(-120),
        free_disk_bytes: Some(5 << 30),
        audio_clock: None,
        agent_version: "skycast-puller test".into(),
        uptime_secs: 60,
        entries,
        ..Report::default()
    }
}

/// The rows of `plays export` (CSV) for all of 2026, without the header.
fn exported_plays(setup: &Setup, extra: &[&str]) -> Vec<String> {
    let mut args = vec![
        "plays",
        "export",
        "--from",
        "2026-01-01",
        "--to",
        "2026-12-31",
        "--format",
        "csv",
    ];
    args.extend(extra);
    let out = setup.cli(&args);
    out.lines().skip(1).map(str::to_string).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_for_another_player_oversize_or_not_json_is_refused_with_403_413_400() {
    let setup = Setup::start().await;
    let good = serde_json::to_vec(&report("box", vec![])).unwrap();

    let resp = setup.post("lille-1", "main-1", good.clone()).await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let body: serde_json::Value = resp.json().await.unwrap();
    let error = body["error"].as_str().unwrap();
    assert!(error.contains("main-1") && error.contains("lille-1"), "{error}");

    let huge = vec![b' '; MAX_REPORT_BYTES + 1];
    let resp = setup.post("main-1", "main-1", huge).await;
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("bytes"), "{body}");

    let resp = setup.post("main-1", "main-1", b"{\"outbox\": 3".to_vec()).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("not a valid report"),
        "{body}"
    );

    let resp = setup
        .client
        .post(format!("{}{}", setup.serve.url(), report_path("main-1")))
        .bearer_auth("skp_not-a-token")
        .body(good.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);

    // None of them was kept; a good one still is.
    assert!(setup.db().player_status("main-1").unwrap().is_none());
    assert!(setup.db().player_status("lille-1").unwrap().is_none());
    assert_eq!(
        setup.post("main-1", "main-1", good).await.status(),
        StatusCode::OK
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn re_sent_and_overlapping_entries_are_counted_once_and_a_new_outbox_starts_again() {
    let setup = Setup::start().await;
    let batch: Vec<Entry> = (1..=3)
        .map(|i| play(i, &i.to_string(), &format!("2026-12-01T10:0{i}:00Z"), "Song"))
        .collect();
    assert_eq!(
        setup
            .report("main-1", &report("box-a", batch.clone()))
            .await
            .acked,
        3
    );
    // The answer was lost: the same batch again, then one overlapping it with a seq twice.
    assert_eq!(setup.report("main-1", &report("box-a", batch)).await.acked, 3);
    let overlapping = vec![
        play(3, "3", "2026-12-01T10:03:00Z", "Song"),
        play(4, "4", "2026-12-01T10:04:00Z", "Song"),
        play(4, "4", "2026-12-01T10:04:00Z", "Song"),
        event(
            5,
            "2026-12-01T10:04:30Z",
            EventKind::NetworkBack,
            "network back",
            None,
        ),
    ];
    assert_eq!(
        setup.report("main-1", &report("box-a", overlapping)).await.acked,
        5
    );
    assert_eq!(exported_plays(&setup, &[]).len(), 4);
    let events = setup.cli(&[
        "events",
        "export",
        "--from",
        "2026-12-01",
        "--to",
        "2026-12-01",
        "--format",
        "txt",
    ]);
    assert_eq!(events.lines().count(), 1, "{events}");

    // The player's data was wiped: its new outbox starts at seq 1 and its play
    // log at row 1 again; those plays are new, the old ones stay.
    let wiped = vec![play(1, "1", "2026-12-01T11:00:00Z", "Song")];
    assert_eq!(setup.report("main-1", &report("box-b", wiped)).await.acked, 1);
    assert_eq!(exported_plays(&setup, &[]).len(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_queued_by_the_cli_wakes_the_waiting_long_poll_and_is_delivered_once_then_done() {
    let setup = Setup::start().await;
    let head = |query: &str| {
        setup
            .client
            .get(format!("{}/v1/head{query}", setup.serve.url()))
            .bearer_auth(setup.token("main-1"))
            .send()
    };
    let first: serde_json::Value = head("").await.unwrap().json().await.unwrap();
    assert_eq!(first["commands_pending"], serde_json::Value::Null, "{first}");
    let version = first["version"].as_u64().unwrap();

    let waiting = head(&format!("?after={version}&wait=30"));
    let mut poll = tokio::spawn(waiting);
    // Not a wait for the server: the assertion that the long-poll is being held.
    let early = tokio::time::timeout(Duration::from_millis(700), &mut poll).await;
    assert!(early.is_err(), "the long-poll answered before any command");

    // Refused words are not queued; the allow-list is printed.
    let refused = std::process::Command::new(skycast_tests::bin("skycast-publisher"))
        .args([
            "command",
            "--player",
            "main-1",
            "rm -rf /",
            "--data",
            data_arg(&setup.data),
        ])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(
        said.contains("sync_now") && said.contains("send_status"),
        "{said}"
    );

    let out = setup.cli(&["command", "--player", "main-1", "sync_now"]);
    let queued = Instant::now();
    let id = out.split('\t').next().unwrap().to_string();
    assert!(id.starts_with("cmd-"), "{out}");
    let resp = tokio::time::timeout(PROMPT, poll)
        .await
        .expect("the waiting long-poll answered")
        .unwrap()
        .unwrap();
    let woke = queued.elapsed();
    println!(
        "waiting long-poll answered {} ms after the command was queued",
        woke.as_millis()
    );
    assert!(woke < Duration::from_millis(1500), "{woke:?}");
    let answered: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(answered["commands_pending"], true, "{answered}");
    assert_eq!(answered["version"].as_u64(), Some(version));

    // Delivered in the next answer, exactly once; the other player gets nothing.
    let answer = setup.report("main-1", &report("box", vec![])).await;
    assert_eq!(answer.commands.len(), 1, "{answer:?}");
    assert_eq!(
        (answer.commands[0].id.as_str(), answer.commands[0].kind),
        (id.as_str(), CommandKind::SyncNow)
    );
    assert!(setup
        .report("main-1", &report("box", vec![]))
        .await
        .commands
        .is_empty());
    assert!(setup
        .report("lille-1", &report("box", vec![]))
        .await
        .commands
        .is_empty());
    let after: serde_json::Value = head("").await.unwrap().json().await.unwrap();
    assert_eq!(after["commands_pending"], serde_json::Value::Null, "{after}");

    // Lille echoing main's id changes nothing; main's own echo marks it done.
    let echo = |seq| {
        vec![event(
            seq,
            "2026-12-01T10:00:05Z",
            EventKind::CommandDone,
            "synced",
            Some(&id),
        )]
    };
    setup.report("lille-1", &report("box", echo(1))).await;
    assert_eq!(setup.db().command(&id).unwrap().unwrap().state, "sent");
    setup.report("main-1", &report("box", echo(1))).await;
    let done = setup.db().command(&id).unwrap().unwrap();
    assert_eq!(done.state, "done");
    assert_eq!(done.done_at.as_deref(), Some("2026-12-01T10:00:05Z"));

    // `--all` queues one command per enabled player, each handed out to its own.
    let all = setup.cli(&["command", "--all", "send_status"]);
    let players: Vec<&str> = all.lines().map(|l| l.split('\t').nth(1).unwrap()).collect();
    assert_eq!(players, ["lille-1", "main-1"], "{all}");
    let lille = setup.report("lille-1", &report("box", vec![])).await;
    assert_eq!(lille.commands.len(), 1);
    assert_eq!(lille.commands[0].kind, CommandKind::SendStatus);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_json_shows_a_reporting_player_up_then_ko_after_offline_after() {
    let setup = Setup::start().await;
    let fleet = setup.fleet_json();
    assert_eq!(
        fleet["offline_after_secs"], 2,
        "the threshold of the running serve"
    );
    assert_eq!(fleet["players"].as_array().unwrap().len(), 2);
    assert!(fleet["players"]
        .as_array()
        .unwrap()
        .iter()
        .all(|p| p["up"] == false));

    setup.report("main-1", &report("box", vec![])).await;
    let fleet = setup.fleet_json();
    let main = row(&fleet, "main-1");
    assert_eq!(main["up"], true, "{main}");
    assert_eq!(main["in_sync"], true, "{main}");
    assert_eq!(main["activity"], "playing", "{main}");
    assert_eq!(main["now_playing"]["title"], "Morning song", "{main}");
    assert_eq!(main["clock_offset_ms"], -120, "{main}");
    assert_eq!(fleet["head_version"], 1);
    let lille = row(&fleet, "lille-1");
    assert_eq!(
        (lille["up"].clone(), lille["activity"].clone()),
        (false.into(), "unknown".into())
    );

    // By the head manifest's hours: Lille is closed now; Main, open with no sound, is not playing.
    let mut closed = report("box", vec![]);
    closed.output = OutputState::IdleClosed;
    closed.now_playing = None;
    setup.report("lille-1", &closed).await;
    let mut silent = report("box", vec![]);
    silent.output = OutputState::NoDevice;
    setup.report("main-1", &silent).await;
    let reported = Instant::now();
    let fleet = setup.fleet_json();
    assert_eq!(row(&fleet, "lille-1")["activity"], "closed", "{fleet}");
    assert_eq!(row(&fleet, "main-1")["activity"], "not_playing", "{fleet}");

    // Silent for longer than --offline-after 2: KO, polled with a deadline.
    let deadline = reported + Duration::from_secs(10);
    loop {
        let fleet = setup.fleet_json();
        let main = row(&fleet, "main-1").clone();
        if main["up"] == false {
            let after = reported.elapsed();
            println!("main-1 KO {} ms after its last report", after.as_millis());
            assert!(after >= Duration::from_secs(2), "{after:?}");
            assert_eq!(main["activity"], "unknown");
            break;
        }
        assert!(Instant::now() < deadline, "still UP after 10 s: {main}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let table = setup.cli(&["fleet", "--offline-after", "2"]);
    assert!(
        table.lines().any(|l| l.starts_with("main-1\tmain\tKO")),
        "{table}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exports_of_plays_and_events_match_what_was_reported_for_a_date_range_and_a_shop() {
    let setup = Setup::start().await;
    let main = vec![
        play(1, "1", "2026-11-30T23:59:59Z", "Late, \"night\""),
        play(2, "2", "2026-12-01T10:00:03Z", "Morning, \"song\""),
        event(
            3,
            "2026-12-01T10:05:00Z",
            EventKind::Swapped,
            "swapped to version 1",
            None,
        ),
        play(4, "3", "2026-12-02T00:00:00Z", "Next day"),
    ];
    setup.report("main-1", &report("box", main)).await;
    let lille = vec![play(1, "1", "2026-12-01T12:00:00Z", "Lille song")];
    setup.report("lille-1", &report("box", lille)).await;

    let day = ["--from", "2026-12-01", "--to", "2026-12-01"];
    let mut args = vec!["plays", "export"];
    args.extend(day);
    args.extend(["--shop", "main", "--format", "csv"]);
    let csv = setup.cli(&args);
    let rows: Vec<&str> = csv.lines().collect();
    assert_eq!(rows.len(), 2, "{csv}");
    assert!(
        rows[0].starts_with("started_at,ended_at,received_at,shop,player,play_id,media,title"),
        "{csv}"
    );
    assert!(
        rows[1].starts_with("2026-12-01T10:00:03Z,2026-12-01T10:00:03Z,"),
        "{csv}"
    );
    assert!(rows[1].contains(r#",main,main-1,2,"#), "{csv}");
    assert!(rows[1].contains(r#","Morning, ""song""","#), "{csv}");

    let txt = setup.cli(&[
        "plays",
        "export",
        "--from",
        "2026-12-01",
        "--to",
        "2026-12-01",
        "--format",
        "txt",
    ]);
    assert_eq!(
        txt,
        "2026-12-01 10:00:03 main main-1 played «Morning, \"song\"» (music, playlist allday) complete\n\
         2026-12-01 12:00:00 lille lille-1 played «Lille song» (music, playlist allday) complete\n"
    );
    let two_days = setup.cli(&[
        "plays",
        "export",
        "--from",
        "2026-11-30",
        "--to",
        "2026-12-02T00:00:00Z",
        "--shop",
        "main",
        "--format",
        "txt",
    ]);
    assert_eq!(
        two_days.lines().count(),
        2,
        "an RFC 3339 end is excluded: {two_days}"
    );

    let events = setup.cli(&[
        "events",
        "export",
        "--from",
        "2026-12-01",
        "--to",
        "2026-12-01",
        "--shop",
        "main",
        "--format",
        "txt",
    ]);
    assert_eq!(
        events,
        "2026-12-01 10:05:00 main main-1 swapped: swapped to version 1\n"
    );
    let events_csv = setup.cli(&[
        "events",
        "export",
        "--from",
        "2026-12-01",
        "--to",
        "2026-12-01",
        "--shop",
        "lille",
        "--format",
        "csv",
    ]);
    assert_eq!(events_csv.lines().count(), 1, "only the header: {events_csv}");

    // What the database holds is what was exported.
    let db = setup.db();
    let held = db
        .plays(
            &skycast_publisher::db::RowFilter {
                shop: Some("main".into()),
                ..Default::default()
            },
            100,
        )
        .unwrap();
    assert_eq!(held.len(), 3);
    assert_eq!(exported_plays(&setup, &["--shop", "main"]).len(), 3);
}

/// Rows of `plays export` or `events export` over every date (CSV, without its header).
fn count_rows(setup: &Setup, what: &str) -> usize {
    let out = setup.cli(&[
        what,
        "export",
        "--from",
        "2000-01-01",
        "--to",
        "2100-01-01",
        "--format",
        "csv",
    ]);
    out.lines().count() - 1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_purges_plays_and_events_older_than_the_retention_and_keeps_newer_ones() {
    let mut setup = Setup::start().await;
    let now = Utc::now();
    let time = |days_ago: i64| {
        (now - chrono::Duration::days(days_ago)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    };
    let entries = vec![
        play(1, "1", &time(100), "Old"),
        event(2, &time(100), EventKind::Started, "started", None),
        play(3, "2", &time(20), "Recent"),
        event(4, &time(20), EventKind::Swapped, "swapped to version 1", None),
    ];
    setup.report("main-1", &report("box", entries)).await;
    assert_eq!(
        (count_rows(&setup, "plays"), count_rows(&setup, "events")),
        (2, 2)
    );

    // Restarted with a 30-day retention: the scheduled job purges at start.
    setup.serve.stop().await;
    setup.serve = ServeProcess::start(&setup.data, &["--retention-days", "30"]).await;
    let deadline = Instant::now() + PROMPT;
    while !setup
        .serve
        .plain_log()
        .contains("purged supervision rows past the retention")
    {
        assert!(
            Instant::now() < deadline,
            "no purge logged: {}",
            setup.serve.plain_log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        (count_rows(&setup, "plays"), count_rows(&setup, "events")),
        (1, 1)
    );
    let left = setup.cli(&[
        "plays",
        "export",
        "--from",
        "2000-01-01",
        "--to",
        "2100-01-01",
        "--format",
        "txt",
    ]);
    assert!(left.contains("«Recent»"), "{left}");
}
