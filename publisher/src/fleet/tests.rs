//! Unit tests of supervision on a real SQLite file: deduplication by outbox and
//! sequence number, commands handed out once and marked done only by their own
//! player, the purge with the clock as a parameter, and the exports' words.

use chrono::{DateTime, Duration as Days, Utc};
use skycast_schema::report::{
    CommandKind, Entry, EntryBody, EventEntry, EventKind, OutputState, PlayEntry, Report,
};

use super::export::{self, ExportFormat};
use super::*;
use crate::db::RowFilter;

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
}

fn open() -> (tempfile::TempDir, Db) {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(&dir.path().join("p.sqlite")).unwrap();
    db.add_player("main-1", "main", "tok-main").unwrap();
    db.add_player("lille-1", "lille", "tok-lille").unwrap();
    (dir, db)
}

fn player(id: &str, shop: &str) -> Player {
    Player {
        id: id.into(),
        shop: shop.into(),
    }
}

fn play(seq: u64, play_id: &str, started: &str, outcome: &str) -> Entry {
    Entry {
        seq,
        at: started.into(),
        body: EntryBody::Play(PlayEntry {
            play_id: play_id.into(),
            media: "a".repeat(64),
            title: format!("Song, \"{play_id}\""),
            kind: "music".into(),
            source: "day".into(),
            version: 1,
            started_at: started.into(),
            ended_at: (outcome != "playing").then(|| started.to_string()),
            outcome: outcome.into(),
        }),
    }
}

fn event(seq: u64, when: &str, kind: EventKind, command: Option<&str>) -> Entry {
    Entry {
        seq,
        at: when.into(),
        body: EntryBody::Event(EventEntry {
            kind,
            detail: format!("{} happened", kind.as_str()),
            version: None,
            media: None,
            command_id: command.map(str::to_string),
        }),
    }
}

fn report(outbox: &str, entries: Vec<Entry>) -> Report {
    Report {
        outbox: outbox.into(),
        active_version: Some(1),
        output: OutputState::Playing,
        agent_version: "test".into(),
        uptime_secs: 5,
        entries,
        ..Report::default()
    }
}

fn all_plays(db: &Db) -> Vec<PlayRecord> {
    db.plays(&RowFilter::default(), 1000).unwrap()
}

#[test]
fn re_sent_and_overlapping_entries_are_kept_once() {
    let (_dir, db) = open();
    let p = player("main-1", "main");
    let now = at("2026-12-01T10:00:10Z");
    let first = vec![
        play(1, "1", "2026-12-01T10:00:00Z", "playing"),
        play(2, "1", "2026-12-01T10:00:00Z", "complete"),
        event(3, "2026-12-01T10:00:01Z", EventKind::Swapped, None),
    ];
    let (answer, applied) = ingest(&db, &p, 1, report("box-a", first.clone()), now).unwrap();
    assert_eq!(answer.acked, 3);
    assert_eq!((applied.plays, applied.plays_ended, applied.events), (2, 1, 1));
    // The same batch again, then one overlapping it, with a seq twice.
    assert_eq!(
        ingest(&db, &p, 1, report("box-a", first), now).unwrap().0.acked,
        3
    );
    let overlapping = vec![
        event(3, "2026-12-01T10:00:01Z", EventKind::Swapped, None),
        play(4, "2", "2026-12-01T10:03:00Z", "complete"),
        play(4, "2", "2026-12-01T10:03:00Z", "complete"),
    ];
    assert_eq!(
        ingest(&db, &p, 1, report("box-a", overlapping), now)
            .unwrap()
            .0
            .acked,
        4
    );
    let plays = all_plays(&db);
    assert_eq!(plays.len(), 2, "{plays:?}");
    assert_eq!(
        plays[0].play.outcome, "complete",
        "the end updated the start's row"
    );
    assert_eq!(db.log_events(&RowFilter::default(), 100).unwrap().len(), 1);
    assert_eq!(db.player_status("main-1").unwrap().unwrap().acked_seq, 4);
}

#[test]
fn fleet_rows_list_every_player_by_shop_with_its_latest_report_beside_it() {
    let (_dir, db) = open();
    db.add_player("lille-0", "lille", "tok-lille-0").unwrap();
    let now = at("2026-12-01T10:00:10Z");
    ingest(&db, &player("main-1", "main"), 1, report("box-a", vec![]), now).unwrap();
    let mut later = report("box-b", vec![]);
    later.active_version = Some(2);
    later.last_error = Some("disk full".into());
    ingest(&db, &player("lille-1", "lille"), 2, later, now).unwrap();
    let admin = crate::db::Actor {
        name: "admin",
        via: crate::db::Via::Cli,
        at: now,
    };
    db.set_player_disabled("lille-1", true, admin).unwrap();

    let rows = db.fleet_rows().unwrap();
    let listed: Vec<(&str, &str, bool)> = rows
        .iter()
        .map(|r| (r.shop.as_str(), r.id.as_str(), r.disabled))
        .collect();
    assert_eq!(
        listed,
        [
            ("lille", "lille-0", false),
            ("lille", "lille-1", true),
            ("main", "main-1", false)
        ]
    );
    assert_eq!(rows[0].status, None, "lille-0 never reported");
    for row in &rows[1..] {
        assert_eq!(row.status, db.player_status(&row.id).unwrap(), "{}", row.id);
    }
    let lille = rows[1].status.as_ref().unwrap();
    assert_eq!(lille.report.active_version, Some(2));
    assert_eq!(lille.report.last_error.as_deref(), Some("disk full"));
}

#[test]
fn a_new_outbox_starts_its_cursor_again_without_overwriting_old_plays() {
    let (_dir, db) = open();
    let p = player("main-1", "main");
    let now = at("2026-12-01T10:00:10Z");
    let old = (1..=5)
        .map(|i| play(i, &i.to_string(), "2026-12-01T09:00:00Z", "complete"))
        .collect();
    assert_eq!(ingest(&db, &p, 1, report("box-a", old), now).unwrap().0.acked, 5);
    // The player's data was wiped: a new outbox from seq 1, play ids from 1.
    let wiped = vec![play(1, "1", "2026-12-01T10:00:00Z", "complete")];
    assert_eq!(
        ingest(&db, &p, 1, report("box-b", wiped), now).unwrap().0.acked,
        1
    );
    assert_eq!(all_plays(&db).len(), 6);
}

#[test]
fn a_command_not_confirmed_within_30_s_goes_out_again_until_done_or_expired() {
    let (_dir, db) = open();
    let now = at("2026-12-01T10:00:00Z");
    let id = queue_command(&db, Some("main-1"), CommandKind::VerifyMedia, "ann", now).unwrap()[0]
        .0
        .clone();
    let main = player("main-1", "main");
    let handed = |t: &str| -> Vec<String> {
        let (answer, _) = ingest(&db, &main, 1, report("m", vec![]), at(t)).unwrap();
        answer.commands.into_iter().map(|c| c.id).collect()
    };
    assert_eq!(handed("2026-12-01T10:00:00Z"), vec![id.clone()]);
    // Within 30 s: not again. The answer was lost: after 30 s, the same id again.
    assert!(handed("2026-12-01T10:00:29Z").is_empty());
    assert_eq!(handed("2026-12-01T10:00:31Z"), vec![id.clone()]);
    // Past its expiry it is never handed out, and no longer shows as sent.
    assert!(handed("2026-12-01T10:11:00Z").is_empty());
    assert_eq!(db.command(&id).unwrap().unwrap().state, "expired");
}

#[test]
fn commands_are_handed_out_once_and_only_their_player_marks_them_done() {
    let (_dir, db) = open();
    let now = at("2026-12-01T10:00:00Z");
    let queued = queue_command(&db, Some("main-1"), CommandKind::SyncNow, "ann", now).unwrap();
    let id = queued[0].0.clone();
    assert!(db.has_pending_commands("main-1", now).unwrap());
    assert!(!db.has_pending_commands("lille-1", now).unwrap());
    let (main, lille) = (player("main-1", "main"), player("lille-1", "lille"));
    let (answer, _) = ingest(&db, &main, 1, report("m", vec![]), now).unwrap();
    assert_eq!(answer.commands.len(), 1);
    assert_eq!(answer.commands[0].id, id);
    assert_eq!(answer.commands[0].requested_by, "ann");
    assert!(ingest(&db, &main, 1, report("m", vec![]), now)
        .unwrap()
        .0
        .commands
        .is_empty());
    // Another player echoing the id does not mark it done.
    let stolen = vec![event(
        1,
        "2026-12-01T10:00:01Z",
        EventKind::CommandDone,
        Some(&id),
    )];
    ingest(&db, &lille, 1, report("l", stolen), now).unwrap();
    assert_eq!(db.command(&id).unwrap().unwrap().state, "sent");
    let done = vec![event(
        1,
        "2026-12-01T10:00:02Z",
        EventKind::CommandDone,
        Some(&id),
    )];
    ingest(&db, &main, 1, report("m", done), now).unwrap();
    let command = db.command(&id).unwrap().unwrap();
    assert_eq!(
        (command.state.as_str(), command.done_at.as_deref()),
        ("done", Some("2026-12-01T10:00:02Z"))
    );
}

#[test]
fn an_expired_command_is_never_handed_out() {
    let (_dir, db) = open();
    let now = at("2026-12-01T10:00:00Z");
    queue_command(&db, None, CommandKind::VerifyMedia, "ann", now).unwrap();
    let later = now + Days::minutes(11);
    assert!(!db.has_pending_commands("main-1", later).unwrap());
    let (answer, _) = ingest(&db, &player("main-1", "main"), 1, report("m", vec![]), later).unwrap();
    assert!(answer.commands.is_empty());
    assert_eq!(
        db.commands(Some("main-1"), 10, later).unwrap()[0].state,
        "expired"
    );
    assert_eq!(
        db.commands(Some("lille-1"), 10, later).unwrap()[0].state,
        "expired"
    );
}

#[test]
fn a_command_outside_the_allow_list_or_for_a_disabled_player_is_refused() {
    let (_dir, db) = open();
    assert!(matches!(parse_command_kind("reboot"), Err(FleetError::NotAllowed(w)) if w == "reboot"));
    let who = crate::db::Actor {
        name: "ann",
        via: crate::db::Via::Cli,
        at: Utc::now(),
    };
    db.set_player_disabled("lille-1", true, who).unwrap();
    let err = queue_command(&db, Some("lille-1"), CommandKind::SyncNow, "ann", Utc::now()).unwrap_err();
    assert!(err.to_string().contains("lille-1"), "{err}");
    let all = queue_command(&db, None, CommandKind::SyncNow, "ann", Utc::now()).unwrap();
    assert_eq!(
        all.iter().map(|(_, p)| p.as_str()).collect::<Vec<_>>(),
        ["main-1"]
    );
}

#[test]
fn the_purge_removes_rows_older_than_the_retention_and_keeps_newer_ones() {
    let (_dir, db) = open();
    let p = player("main-1", "main");
    let now = at("2026-12-01T12:00:00Z");
    let entries = vec![
        play(1, "old", "2026-09-01T10:00:00Z", "complete"),
        event(2, "2026-09-01T10:00:00Z", EventKind::Started, None),
        play(3, "edge", "2026-09-30T13:00:00Z", "complete"),
        play(4, "new", "2026-11-30T10:00:00Z", "complete"),
        event(5, "2026-11-30T10:00:00Z", EventKind::Swapped, None),
    ];
    ingest(&db, &p, 1, report("m", entries), now).unwrap();
    let purged = purge(&db, now, DEFAULT_RETENTION).unwrap();
    assert_eq!((purged.plays, purged.events), (1, 1));
    let kept: Vec<String> = all_plays(&db).into_iter().map(|p| p.play.play_id).collect();
    assert_eq!(
        kept,
        ["edge", "new"],
        "62 days before noon on 1 December is noon on 30 September"
    );
    assert_eq!(db.log_events(&RowFilter::default(), 10).unwrap().len(), 1);
}

#[test]
fn exports_quote_csv_and_say_each_play_in_one_line() {
    let (_dir, db) = open();
    let entries = vec![
        play(1, "1", "2026-12-01T10:00:03Z", "complete"),
        event(2, "2026-12-01T10:00:04Z", EventKind::Swapped, None),
    ];
    ingest(
        &db,
        &player("main-1", "main"),
        1,
        report("m", entries),
        Utc::now(),
    )
    .unwrap();
    let filter = export::range_filter("2026-12-01", "2026-12-01").unwrap();
    let mut csv = Vec::new();
    assert_eq!(
        export::export_plays(&db, &filter, ExportFormat::Csv, &mut csv).unwrap(),
        1
    );
    let csv = String::from_utf8(csv).unwrap();
    assert!(
        csv.starts_with("started_at,ended_at,received_at,shop,player,"),
        "{csv}"
    );
    assert!(csv.contains(r#","Song, ""1""","#), "{csv}");
    let mut txt = Vec::new();
    export::export_plays(&db, &filter, ExportFormat::Txt, &mut txt).unwrap();
    assert_eq!(
        String::from_utf8(txt).unwrap(),
        "2026-12-01 10:00:03 main main-1 played «Song, \"1\"» (music, playlist day) complete\n"
    );
    let mut events = Vec::new();
    export::export_events(&db, &filter, ExportFormat::Txt, &mut events).unwrap();
    assert_eq!(
        String::from_utf8(events).unwrap(),
        "2026-12-01 10:00:04 main main-1 swapped: swapped happened\n"
    );
    let next_day = export::range_filter("2026-12-02", "2026-12-03").unwrap();
    let mut none = Vec::new();
    assert_eq!(
        export::export_plays(&db, &next_day, ExportFormat::Txt, &mut none).unwrap(),
        0
    );
    assert!(matches!(export::parse_from("1 Dec"), Err(FleetError::BadDate(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_view_judges_closed_shops_by_the_head_manifests_hours_and_ko_players_as_unknown() {
    let dir = tempfile::tempdir().unwrap();
    let data = DataDir::new(dir.path().join("publisher"));
    data.init(
        crate::data_dir::InitOptions {
            root: Default::default(),
            public_url: "https://127.0.0.1:1".into(),
            admin_user: "admin".into(),
            admin_password: Some("admin-password".into()),
            tls_cert_and_key: None,
            extra_names: Vec::new(),
        },
        [7; 32],
    )
    .unwrap();
    let planning = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../content-example/planning.yaml");
    crate::publish::publish_planning(&data, &planning, "dave", None, at("2026-12-05T08:00:00Z")).unwrap();
    let db = data.db().unwrap();
    for (id, shop) in [("main-1", "main"), ("nantes-1", "nantes"), ("lille-1", "lille")] {
        db.add_player(id, shop, &format!("tok-{id}")).unwrap();
    }
    // Sunday 11:00 in Paris: main is closed, nantes open until 13:00.
    let now = at("2026-12-06T10:00:00Z");
    let mut closed = report("m", vec![]);
    closed.output = OutputState::IdleClosed;
    ingest(&db, &player("main-1", "main"), 1, closed, now).unwrap();
    let mut silent = report("n", vec![]);
    silent.output = OutputState::NoDevice;
    silent.active_version = None;
    ingest(&db, &player("nantes-1", "nantes"), 1, silent, now).unwrap();
    ingest(
        &db,
        &player("lille-1", "lille"),
        1,
        report("l", vec![]),
        now - Days::minutes(5),
    )
    .unwrap();

    let head = Head {
        version: 1,
        ..Head::default()
    };
    let (_tx, rx) = watch::channel(head);
    let fleet = Fleet::new(data.clone(), rx, DEFAULT_OFFLINE_AFTER).unwrap();
    let view = fleet.view(now + Days::seconds(5)).await.unwrap();
    assert_eq!(
        view,
        view_at(&data, now + Days::seconds(5), DEFAULT_OFFLINE_AFTER).unwrap()
    );
    let by_id = |id: &str| view.players.iter().find(|p| p.id == id).unwrap().clone();
    let main = by_id("main-1");
    assert_eq!(
        (main.up, main.in_sync, main.activity),
        (true, true, Activity::Closed)
    );
    assert_eq!(main.last_report_age_secs, Some(5));
    let nantes = by_id("nantes-1");
    assert_eq!(
        (nantes.activity, nantes.in_sync, nantes.behind_by),
        (Activity::NotPlaying, false, 1)
    );
    assert_eq!(nantes.behind_since.as_deref(), Some("2026-12-06T10:00:00Z"));
    let lille = by_id("lille-1");
    assert_eq!((lille.up, lille.activity), (false, Activity::Unknown));

    let detail = fleet.player_detail("nantes-1", now).await.unwrap();
    assert_eq!(detail.player.id, "nantes-1");
    assert!(fleet.player_detail("ghost", now).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_wakes_its_players_signal_whether_queued_here_or_by_another_process() {
    let dir = tempfile::tempdir().unwrap();
    let data = DataDir::new(dir.path().join("publisher"));
    data.init(
        crate::data_dir::InitOptions {
            root: Default::default(),
            public_url: "https://127.0.0.1:1".into(),
            admin_user: "admin".into(),
            admin_password: Some("admin-password".into()),
            tls_cert_and_key: None,
            extra_names: Vec::new(),
        },
        [9; 32],
    )
    .unwrap();
    let db = data.db().unwrap();
    db.add_player("main-1", "main", "tok-main").unwrap();
    db.add_player("lille-1", "lille", "tok-lille").unwrap();
    let (_tx, rx) = watch::channel(Head::default());
    let fleet = Fleet::new(data.clone(), rx, DEFAULT_OFFLINE_AFTER).unwrap();
    let (mut main, lille) = (fleet.command_signal("main-1"), fleet.command_signal("lille-1"));

    // The web UI's "Sync now": in this process.
    let ids = fleet
        .request_command(Some("main-1"), CommandKind::SyncNow, "ann", Utc::now())
        .await
        .unwrap();
    assert_eq!(ids.len(), 1);
    assert!(main.has_changed().unwrap());
    assert!(!lille.has_changed().unwrap());
    main.borrow_and_update();

    // The CLI: another handle on the file; seen at the next poll.
    queue_command(
        &data.db().unwrap(),
        Some("lille-1"),
        CommandKind::SendStatus,
        "bob",
        Utc::now(),
    )
    .unwrap();
    assert!(!lille.has_changed().unwrap());
    fleet.poll_commands().await;
    assert!(lille.has_changed().unwrap());
    assert!(
        main.has_changed().unwrap(),
        "main's command still waits, so it is woken again"
    );
    assert!(fleet.has_pending_commands("lille-1"));
}
