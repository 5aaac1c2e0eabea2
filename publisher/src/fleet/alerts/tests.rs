//! Tests of the alert engine, the clock as a parameter: each condition opens
//! once, hold-down without flapping, silence only while open, planned vs played,
//! disabled players, both languages, and a sweep over a real SQLite file.

use chrono::{DateTime, TimeDelta, Utc};
use skycast_schema::report::{Entry, EntryBody, OutputState, PlayEntry, Report};
use skycast_schema::{Instant, MediaId};

use super::*;
use crate::db::Player;

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
}

fn secs(n: i64) -> TimeDelta {
    TimeDelta::seconds(n)
}

fn media(n: u8) -> MediaId {
    MediaId::of(&[n])
}

/// Music `m1` (1), a cut ad at 12:00 (21) and a boundary ad at 15:00 (22) for
/// `main`, its closing announcement (23) at 19:30; `lyon` has the same hours and
/// no ad; `night` only opens on Wednesdays. 2026-12-01 is a Tuesday; Paris is
/// UTC+1 in December.
const PROGRAM: &str = r#"
playlists:
  day: {items: [@1]}
shops:
  main: {hours: {tue: "09:00-20:00"}, closing_announcement: {media: @23, minutes_before: 30}}
  lyon: {hours: {tue: "09:00-20:00"}}
  night: {hours: {wed: "09:00-20:00"}}
schedule:
  - {playlist: day, shops: [all]}
ads:
  - {media: @21, at: ["12:00"], shops: [main], start: cut}
  - {media: @22, at: ["15:00"], shops: [main]}
"#;

fn manifest() -> Manifest {
    let mut text = String::from(
        "schema: skycast/v1\nversion: 3\npublished_at: 2026-11-30T00:00:00Z\n\
         expires_at: 2027-06-01T00:00:00Z\npublished_by: test\ntimezone: Europe/Paris\nmedia:\n",
    );
    for (n, title, kind) in [
        (1, "Song", "music"),
        (21, "Winter sale", "ad"),
        (22, "Bakery", "ad"),
        (23, "Goodbye", "announcement"),
    ] {
        text.push_str(&format!(
            "  - {{id: {}, size: 1000, duration_ms: 180000, title: {title}, kind: {kind}}}\n",
            media(n)
        ));
    }
    text.push_str(PROGRAM);
    for n in [1, 21, 22, 23] {
        text = text.replace(&format!("@{n}"), &media(n).to_string());
    }
    Manifest::parse(text.as_bytes()).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

/// 12:05 in Paris on a Tuesday: `main` and `lyon` are open.
const NOW: &str = "2026-12-01T11:05:00Z";

/// A player that is fine at `now`.
fn healthy(id: &str, shop: &str, now: DateTime<Utc>) -> AlertPlayerFacts {
    AlertPlayerFacts {
        player_id: id.into(),
        shop: shop.into(),
        disabled: false,
        registered_at: Some(at("2026-11-01T00:00:00Z")),
        last_report_at: Some(now - secs(5)),
        active_version: Some(3),
        behind_since: None,
        output: Some("playing".into()),
        clock_offset_ms: Some(120),
        free_disk_bytes: Some(10_000_000_000),
    }
}

fn play(
    player: &str,
    media_n: u8,
    source: &str,
    started: &str,
    ended: Option<&str>,
    outcome: &str,
) -> PlayFact {
    PlayFact {
        player_id: player.into(),
        media: media(media_n).to_string(),
        source: source.into(),
        started_at: at(started),
        ended_at: ended.map(at),
        outcome: outcome.into(),
    }
}

fn ad_key(n: u8, local: &str) -> String {
    format!("ad-at:{}:{local}", media(n))
}

/// The noon ad played on time on `main-1`.
fn noon_ad_played() -> PlayFact {
    play(
        "main-1",
        21,
        &ad_key(21, "2026-12-01T12:00"),
        "2026-12-01T11:00:00Z",
        Some("2026-12-01T11:00:30Z"),
        "complete",
    )
}

fn facts(manifest: &Manifest, players: Vec<AlertPlayerFacts>, plays: Vec<PlayFact>) -> Facts<'_> {
    Facts {
        head_version: 3,
        head_published_at: Some(manifest.published_at.0),
        manifest: Some(manifest),
        players,
        plays: Some(plays),
        integrity: Vec::new(),
        listening_since: None,
        mirrors: Vec::new(),
    }
}

fn kinds(conditions: &[Condition]) -> Vec<AlertKind> {
    conditions.iter().map(|c| c.kind).collect()
}

fn open_db() -> (tempfile::TempDir, Db) {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(&dir.path().join("p.sqlite")).unwrap();
    (dir, db)
}

fn transitions(db: &Db) -> Vec<(i64, String)> {
    db.alert_transitions_after(0, 1000)
        .unwrap()
        .into_iter()
        .map(|t| (t.alert.id, t.transition))
        .collect()
}

type Change = fn(&mut AlertPlayerFacts, &mut Facts<'_>, DateTime<Utc>);

/// One case per kind: what breaks a healthy `main-1` at [`NOW`].
fn breakages() -> Vec<(&'static str, Change, AlertKind)> {
    vec![
        (
            "silent for 40 s",
            |p, _, now| p.last_report_at = Some(now - secs(40)),
            AlertKind::Unreachable,
        ),
        (
            "never reported, registered 5 min ago",
            |p, _, now| {
                *p = AlertPlayerFacts {
                    last_report_at: None,
                    active_version: None,
                    output: None,
                    clock_offset_ms: None,
                    free_disk_bytes: None,
                    registered_at: Some(now - secs(300)),
                    ..p.clone()
                }
            },
            AlertKind::Unreachable,
        ),
        (
            "on version 2, 3 min after 3 was published",
            |p, f, now| {
                p.active_version = Some(2);
                f.head_published_at = Some(now - secs(180));
            },
            AlertKind::OutOfSync,
        ),
        (
            "no sound device while open",
            |p, _, _| p.output = Some("no_device".into()),
            AlertKind::SilentWhileOpen,
        ),
        (
            "the noon ad did not play",
            |_, f, _| f.plays = Some(Vec::new()),
            AlertKind::MissedAd,
        ),
        (
            "a media damaged a minute ago",
            |_, f, now| {
                f.integrity = vec![IntegrityEvent {
                    player_id: "main-1".into(),
                    kind: "media_damaged".into(),
                    detail: "media abc… does not match its hash".into(),
                    media: Some("abc".into()),
                    received_at: now - secs(60),
                }]
            },
            AlertKind::IntegrityFailure,
        ),
        (
            "clock 7.2 s behind",
            |p, _, _| p.clock_offset_ms = Some(7_200),
            AlertKind::ClockSkew,
        ),
        (
            "312 MB free",
            |p, _, _| p.free_disk_bytes = Some(312_000_000),
            AlertKind::DiskLow,
        ),
    ]
}

#[test]
fn a_healthy_fleet_has_no_condition() {
    let m = manifest();
    let now = at(NOW);
    let players = vec![healthy("main-1", "main", now), healthy("lyon-1", "lyon", now)];
    let got = evaluate(
        &facts(&m, players, vec![noon_ad_played()]),
        now,
        &AlertConfig::default(),
    );
    assert_eq!(got, vec![]);
}

#[test]
fn each_condition_opens_exactly_one_alert_over_many_sweeps() {
    let config = AlertConfig::default();
    let base = manifest();
    let mut expiring = base.clone();
    expiring.expires_at = Instant(at(NOW) + TimeDelta::hours(5));
    // Published an hour ago: short-lived, but not overdue for re-signing.
    expiring.published_at = Instant(at(NOW) - TimeDelta::hours(1));
    let mut cases = breakages();
    cases.push(("head expires in 5 h", |_, _, _| {}, AlertKind::StaleVersion));
    for (name, change, kind) in cases {
        let m = if kind == AlertKind::StaleVersion {
            &expiring
        } else {
            &base
        };
        let (_dir, db) = open_db();
        let mut sweeper = Sweeper::new(at("2026-11-01T00:00:00Z"));
        for step in 0..10 {
            let now = at(NOW) + secs(5 * step);
            let mut p = healthy("main-1", "main", at(NOW));
            let mut f = facts(m, Vec::new(), vec![noon_ad_played()]);
            change(&mut p, &mut f, at(NOW));
            // The reports keep coming (or not) as the case says.
            if p.last_report_at.is_some_and(|t| t == at(NOW) - secs(5)) {
                p.last_report_at = Some(now - secs(5));
            }
            f.players = vec![p];
            let conditions = evaluate(&f, now, &config);
            assert_eq!(kinds(&conditions), [kind], "{name} at step {step}");
            sweeper.apply(&db, conditions, now, &config).unwrap();
        }
        let open = db.open_alerts(None).unwrap();
        assert_eq!(open.len(), 1, "{name}: {open:?}");
        assert_eq!(
            (open[0].kind.as_str(), open[0].player_id.as_str()),
            (kind.as_str(), "main-1"),
            "{name}"
        );
        assert_eq!(transitions(&db), [(open[0].id, "opened".to_string())], "{name}");
    }
}

#[test]
fn texts_exist_in_both_languages_for_every_kind() {
    let config = AlertConfig::default();
    let base = manifest();
    let now = at(NOW);
    let mut seen = HashSet::new();
    let mut check = |c: &Condition| {
        for text in [&c.text_en, &c.text_fr] {
            assert!(text.contains("«main»") && text.contains("main-1"), "{text}");
            assert!(!text.trim().is_empty());
        }
        assert_ne!(c.text_en, c.text_fr);
        assert!(
            c.text_fr.contains("Magasin") || c.text_fr.contains("magasin"),
            "{}",
            c.text_fr
        );
        seen.insert(c.kind);
    };
    for (_, change, _) in breakages() {
        let mut p = healthy("main-1", "main", now);
        let mut f = facts(&base, Vec::new(), vec![noon_ad_played()]);
        change(&mut p, &mut f, now);
        f.players = vec![p];
        evaluate(&f, now, &config).iter().for_each(&mut check);
    }
    // Stale: in sync and expiring, expired, and behind.
    for (expires, version) in [(5, 3), (-30, 3), (5, 2)] {
        let mut m = base.clone();
        m.expires_at = Instant(now + TimeDelta::hours(expires));
        let mut p = healthy("main-1", "main", now);
        p.active_version = Some(version);
        let f = facts(&m, vec![p], vec![noon_ad_played()]);
        let got = evaluate(&f, now, &config);
        let stale: Vec<&Condition> = got.iter().filter(|c| c.kind == AlertKind::StaleVersion).collect();
        assert_eq!(stale.len(), 1, "{expires} h, version {version}: {got:?}");
        check(stale[0]);
    }
    // A failing mirror names the mirror, not a shop.
    let mut f = facts(&base, Vec::new(), vec![noon_ad_played()]);
    f.mirrors = vec![failing_mirror("garage-eu")];
    for c in evaluate(&f, now, &config) {
        for text in [&c.text_en, &c.text_fr] {
            assert!(
                text.contains("«garage-eu»") && text.contains("connection refused"),
                "{text}"
            );
        }
        assert_ne!(c.text_en, c.text_fr);
        assert!(c.text_fr.contains("miroir"), "{}", c.text_fr);
        assert_eq!((c.subject.as_str(), c.player_id.as_str()), ("garage-eu", ""));
        seen.insert(c.kind);
    }
    // A head not re-signed in time names the version, not a shop.
    let mut m = base.clone();
    m.published_at = Instant(now - TimeDelta::hours(20));
    m.expires_at = Instant(now + TimeDelta::hours(4));
    let f = facts(&m, Vec::new(), vec![noon_ad_played()]);
    let overdue: Vec<Condition> = evaluate(&f, now, &config)
        .into_iter()
        .filter(|c| c.kind == AlertKind::ResignOverdue)
        .collect();
    assert_eq!(overdue.len(), 1);
    let c = &overdue[0];
    assert!(
        c.text_en.contains("expires in 4 h") && c.text_en.contains("skycast-publisher resign"),
        "{}",
        c.text_en
    );
    assert!(
        c.text_fr.contains("re-signée") && c.text_fr.contains("expire dans 4 h"),
        "{}",
        c.text_fr
    );
    assert_eq!(c.player_id, "");
    seen.insert(c.kind);
    assert_eq!(seen, AlertKind::ALL.into_iter().collect::<HashSet<_>>());
}

#[test]
fn a_head_past_three_quarters_of_its_validity_is_overdue_for_re_signing() {
    let config = AlertConfig::default();
    let now = at(NOW);
    // Valid 8 h from its publication; re-signing is due at 4 h, overdue at 6 h.
    let cases = [(1, false), (5, false), (6, true), (7, true), (9, true)];
    for (hours_ago, overdue) in cases {
        let mut m = manifest();
        m.published_at = Instant(now - TimeDelta::hours(hours_ago));
        m.expires_at = Instant(now - TimeDelta::hours(hours_ago) + TimeDelta::hours(8));
        let f = facts(&m, Vec::new(), vec![noon_ad_played()]);
        let found = evaluate(&f, now, &config)
            .iter()
            .any(|c| c.kind == AlertKind::ResignOverdue);
        assert_eq!(found, overdue, "published {hours_ago} h ago");
    }
}

fn failing_mirror(name: &str) -> crate::db::MirrorRow {
    crate::db::MirrorRow {
        name: name.into(),
        endpoint: "http://127.0.0.1:3900".into(),
        bucket: "skycast".into(),
        region: "garage".into(),
        credentials_file: None,
        added_by: "tester".into(),
        added_at: "2026-12-01T10:00:00Z".into(),
        mirrored_version: 2,
        last_success_at: None,
        last_error: Some("connection refused".into()),
        last_error_at: None,
        attempt_failures: crate::mirror::FAILING_AFTER_FAILURES,
        failures_since_caught_up: crate::mirror::FAILING_AFTER_FAILURES,
        next_attempt_at: None,
        queue_len: 1,
        oldest_queued_version: Some(3),
        oldest_queued_published_at: None,
    }
}

#[test]
fn mirror_failing_opens_after_the_grace_and_resolves_once_it_caught_up() {
    let config = AlertConfig::default();
    let now = at(NOW);
    let mut mirror = failing_mirror("garage-eu");
    let base = manifest();
    let mut f = facts(&base, Vec::new(), vec![noon_ad_played()]);
    mirror.failures_since_caught_up = crate::mirror::FAILING_AFTER_FAILURES - 1;
    f.mirrors = vec![mirror.clone()];
    assert!(evaluate(&f, now, &config).is_empty(), "within the grace");
    mirror.failures_since_caught_up = crate::mirror::FAILING_AFTER_FAILURES;
    f.mirrors = vec![mirror.clone()];
    assert_eq!(kinds(&evaluate(&f, now, &config)), [AlertKind::MirrorFailing]);

    let (_dir, db) = open_db();
    let mut sweeper = Sweeper::new(now);
    let report = sweeper
        .apply(&db, evaluate(&f, now, &config), now, &config)
        .unwrap();
    assert_eq!(report.opened.len(), 1);
    // Caught up: the queue is empty and the head is mirrored.
    mirror.queue_len = 0;
    mirror.mirrored_version = f.head_version;
    mirror.failures_since_caught_up = 0;
    f.mirrors = vec![mirror];
    assert!(evaluate(&f, now, &config).is_empty());
    sweeper.apply(&db, Vec::new(), now + secs(1), &config).unwrap();
    let hold = delta(config.hold_down).num_seconds() + 1;
    let report = sweeper
        .apply(&db, Vec::new(), now + secs(1 + hold), &config)
        .unwrap();
    assert_eq!((report.resolved.len(), report.open), (1, 0));
}

#[test]
fn a_condition_flapping_inside_the_hold_down_opens_one_alert_and_resolves_after_it() {
    let config = AlertConfig::default();
    let now = at(NOW);
    let mut low = healthy("main-1", "main", now);
    low.free_disk_bytes = Some(1);
    let condition = evaluate(
        &facts(&manifest(), vec![low], vec![noon_ad_played()]),
        now,
        &config,
    );
    assert_eq!(kinds(&condition), [AlertKind::DiskLow]);
    let (_dir, db) = open_db();
    let mut sweeper = Sweeper::new(now);
    // (seconds, condition present, open after the sweep, clearing since)
    let steps: [(i64, bool, usize, Option<&str>); 9] = [
        (0, true, 1, None),
        (3, false, 1, Some("2026-12-01T11:05:03Z")),
        (6, true, 1, None),
        (7, false, 1, Some("2026-12-01T11:05:07Z")),
        (8, true, 1, None),
        (9, false, 1, Some("2026-12-01T11:05:09Z")),
        (15, false, 1, Some("2026-12-01T11:05:09Z")),
        (18, false, 1, Some("2026-12-01T11:05:09Z")),
        (19, false, 0, None),
    ];
    for (offset, present, open, clearing) in steps {
        let conditions = if present { condition.clone() } else { Vec::new() };
        let report = sweeper
            .apply(&db, conditions, now + secs(offset), &config)
            .unwrap();
        let rows = db.open_alerts(None).unwrap();
        assert_eq!((rows.len(), report.open), (open, open), "at +{offset} s");
        if let Some(row) = rows.first() {
            assert_eq!(row.clear_since.as_deref(), clearing, "at +{offset} s");
        }
    }
    let all = db.alert_history(10).unwrap();
    assert_eq!(all.len(), 1, "one incident, one alert");
    assert_eq!(all[0].resolved_at.as_deref(), Some("2026-12-01T11:05:19Z"));
    assert_eq!(
        transitions(&db),
        [
            (all[0].id, "opened".to_string()),
            (all[0].id, "resolved".to_string())
        ]
    );
    // The next incident is a new alert.
    sweeper.apply(&db, condition, now + secs(60), &config).unwrap();
    assert_eq!(db.alert_history(10).unwrap().len(), 2);
}

#[test]
fn the_hold_down_is_configurable() {
    let now = at(NOW);
    for (hold_down, resolved_at) in [(0, 1), (10, 11), (30, 31)] {
        let config = AlertConfig {
            hold_down: Duration::from_secs(hold_down),
            ..AlertConfig::default()
        };
        let mut skewed = healthy("main-1", "main", now);
        skewed.clock_offset_ms = Some(-9_000);
        let condition = evaluate(
            &facts(&manifest(), vec![skewed], vec![noon_ad_played()]),
            now,
            &config,
        );
        let (_dir, db) = open_db();
        let mut sweeper = Sweeper::new(now);
        sweeper.apply(&db, condition, now, &config).unwrap();
        let mut resolved = None;
        for s in 1..40 {
            let report = sweeper.apply(&db, Vec::new(), now + secs(s), &config).unwrap();
            if !report.resolved.is_empty() {
                resolved = Some(s);
                break;
            }
        }
        assert_eq!(resolved, Some(resolved_at as i64), "hold-down {hold_down} s");
    }
}

#[test]
fn silence_opens_only_while_the_shop_is_open_and_after_its_grace() {
    let config = AlertConfig::default();
    let m = manifest();
    // (instant, shop, output, silent)
    let cases = [
        ("2026-12-01T11:05:00Z", "main", "no_device", true),
        ("2026-12-01T11:05:00Z", "main", "error", true),
        ("2026-12-01T11:05:00Z", "main", "idle_closed", true),
        ("2026-12-01T11:05:00Z", "main", "not_started", true),
        ("2026-12-01T11:05:00Z", "main", "playing", false),
        // 08:59 and 20:30 in Paris: closed.
        ("2026-12-01T07:59:00Z", "main", "no_device", false),
        ("2026-12-01T19:30:00Z", "main", "idle_closed", false),
        ("2026-12-01T19:30:00Z", "main", "error", false),
        // Only open on Wednesdays.
        ("2026-12-01T11:05:00Z", "night", "no_device", false),
        ("2026-12-02T11:05:00Z", "night", "no_device", true),
    ];
    for (when, shop, output, silent) in cases {
        let now = at(when);
        let mut p = healthy("p-1", shop, now);
        p.output = Some(output.into());
        let reporting = |t: DateTime<Utc>| Facts {
            plays: None,
            players: vec![AlertPlayerFacts {
                last_report_at: Some(t - secs(5)),
                ..p.clone()
            }],
            ..facts(&m, Vec::new(), Vec::new())
        };
        let got: Vec<AlertKind> = kinds(&evaluate(&reporting(now), now, &config));
        let expected: &[AlertKind] = if silent {
            &[AlertKind::SilentWhileOpen]
        } else {
            &[]
        };
        assert_eq!(got, expected, "{shop} at {when} with {output}");
        // The alert waits for the grace, without a break.
        let (_dir, db) = open_db();
        let mut sweeper = Sweeper::new(now);
        let mut opened_at = None;
        for s in (0..=30).step_by(5) {
            let t = now + secs(s);
            let report = sweeper
                .apply(&db, evaluate(&reporting(t), t, &config), t, &config)
                .unwrap();
            if !report.opened.is_empty() {
                opened_at.get_or_insert(s);
            }
        }
        assert_eq!(opened_at, silent.then_some(20), "{shop} at {when} with {output}");
    }
}

#[test]
fn planned_messages_are_checked_against_the_plays() {
    let config = AlertConfig::default();
    let m = manifest();
    let noon = ad_key(21, "2026-12-01T12:00");
    let music =
        |player: &str, started: &str, ended: Option<&str>| play(player, 1, "day", started, ended, "complete");
    // (case, now, main-1's last report, plays, missed subjects of main-1)
    type Case = (&'static str, &'static str, i64, Vec<PlayFact>, Vec<String>);
    let noon_subject = format!("2026-12-01T11:00:00Z/{}", media(21));
    let bakery_subject = format!("2026-12-01T14:00:00Z/{}", media(22));
    let closing_subject = format!("2026-12-01T18:30:00Z/{}", media(23));
    let cases: Vec<Case> = vec![
        ("played, by its key", NOW, 5, vec![noon_ad_played()], vec![]),
        (
            "played, by media and time",
            NOW,
            5,
            vec![play(
                "main-1",
                21,
                "other",
                "2026-12-01T11:00:40Z",
                None,
                "playing",
            )],
            vec![],
        ),
        ("no play", NOW, 5, vec![], vec![noon_subject.clone()]),
        (
            "another player's play does not count",
            NOW,
            5,
            vec![play(
                "lyon-1",
                21,
                &noon,
                "2026-12-01T11:00:00Z",
                None,
                "complete",
            )],
            vec![noon_subject.clone()],
        ),
        (
            "skipped: its file did not open",
            NOW,
            5,
            vec![play("main-1", 21, &noon, "2026-12-01T11:00:00Z", None, "skipped")],
            vec![noon_subject.clone()],
        ),
        (
            "skipped is known at once",
            "2026-12-01T11:00:30Z",
            5,
            vec![play("main-1", 21, &noon, "2026-12-01T11:00:00Z", None, "skipped")],
            vec![noon_subject.clone()],
        ),
        ("too early to say", "2026-12-01T11:01:50Z", 5, vec![], vec![]),
        ("the player has not reported since", NOW, 200, vec![], vec![]),
        ("out of the look-back", "2026-12-01T11:16:00Z", 5, vec![], vec![]),
        (
            "a boundary ad waits for the track playing at its slot",
            "2026-12-01T14:04:00Z",
            5,
            vec![music(
                "main-1",
                "2026-12-01T13:59:00Z",
                Some("2026-12-01T14:02:30Z"),
            )],
            vec![],
        ),
        (
            "then it is missed",
            "2026-12-01T14:05:00Z",
            5,
            vec![music(
                "main-1",
                "2026-12-01T13:59:00Z",
                Some("2026-12-01T14:02:30Z"),
            )],
            vec![bakery_subject.clone()],
        ),
        (
            "a track still playing ends by its duration",
            "2026-12-01T14:03:10Z",
            5,
            vec![music("main-1", "2026-12-01T13:58:00Z", None)],
            vec![bakery_subject],
        ),
        (
            "the closing announcement",
            "2026-12-01T18:34:00Z",
            5,
            vec![music(
                "main-1",
                "2026-12-01T18:29:00Z",
                Some("2026-12-01T18:31:00Z"),
            )],
            vec![closing_subject],
        ),
    ];
    for (name, now, report_age, plays, expected) in cases {
        let now = at(now);
        let mut main = healthy("main-1", "main", now);
        main.last_report_at = Some(now - secs(report_age));
        let players = vec![
            main,
            healthy("lyon-1", "lyon", now),
            healthy("night-1", "night", now),
        ];
        let mut f = facts(&m, players, plays);
        f.head_published_at = Some(at("2026-11-30T00:00:00Z"));
        let got = evaluate(&f, now, &{
            AlertConfig {
                offline_after: Duration::from_secs(600),
                ..config.clone()
            }
        });
        let missed: Vec<&Condition> = got.iter().filter(|c| c.kind == AlertKind::MissedAd).collect();
        assert!(
            missed.iter().all(|c| c.player_id == "main-1"),
            "{name}: other shops open nothing"
        );
        let subjects: Vec<String> = missed.iter().map(|c| c.subject.clone()).collect();
        assert_eq!(subjects, expected, "{name}");
        assert!(
            missed.iter().all(|c| c.text_en.contains("did not play")),
            "{name}"
        );
    }
    // A version published after the slot is not judged by it.
    let now = at(NOW);
    let mut f = facts(&m, vec![healthy("main-1", "main", now)], vec![]);
    f.head_published_at = Some(at("2026-12-01T11:01:00Z"));
    assert_eq!(kinds(&evaluate(&f, now, &config)), []);
}

#[test]
fn a_missed_ad_opens_once_and_resolves_when_acknowledged_or_after_an_hour() {
    let config = AlertConfig::default();
    let m = manifest();
    for acknowledged in [true, false] {
        let (_dir, db) = open_db();
        let mut sweeper = Sweeper::new(at("2026-12-01T08:00:00Z"));
        let mut opened = Vec::new();
        for minute in 0..70 {
            let now = at(NOW) + TimeDelta::minutes(minute);
            let f = facts(&m, vec![healthy("main-1", "main", now)], vec![]);
            let report = sweeper
                .apply(&db, evaluate(&f, now, &config), now, &config)
                .unwrap();
            opened.extend(report.opened);
            if acknowledged && minute == 2 {
                let view = acknowledge(&db, opened[0], "ann", now).unwrap();
                assert_eq!(view.acknowledged_by.as_deref(), Some("ann"));
                assert!(
                    view.resolved_at.is_some(),
                    "a past incident resolves when acknowledged"
                );
            }
        }
        assert_eq!(opened.len(), 1, "acknowledged: {acknowledged}");
        let row = db.alert(opened[0]).unwrap().unwrap();
        let resolved = if acknowledged {
            "2026-12-01T11:07:00Z"
        } else {
            "2026-12-01T12:05:00Z"
        };
        assert_eq!(row.resolved_at.as_deref(), Some(resolved));
        assert_eq!(transitions(&db).len(), 2);
    }
}

#[test]
fn acknowledging_other_alerts_keeps_them_open_and_names_who() {
    let (_dir, db) = open_db();
    let config = AlertConfig::default();
    let now = at(NOW);
    let mut p = healthy("main-1", "main", now);
    p.free_disk_bytes = Some(5);
    let mut sweeper = Sweeper::new(now);
    let report = sweeper
        .apply(
            &db,
            evaluate(&facts(&manifest(), vec![p], vec![noon_ad_played()]), now, &config),
            now,
            &config,
        )
        .unwrap();
    let view = acknowledge(&db, report.opened[0], " bob ", now).unwrap();
    assert_eq!(
        (view.acknowledged_by.as_deref(), view.resolved_at),
        (Some("bob"), None)
    );
    assert!(matches!(
        acknowledge(&db, 99, "bob", now),
        Err(PublisherError::NotFound(_))
    ));
    assert!(matches!(
        acknowledge(&db, report.opened[0], " ", now),
        Err(PublisherError::BadRequest(_))
    ));
    let listed = list(&db, false, 10).unwrap();
    assert_eq!(listed.len(), 1);
    let text = render(&listed);
    assert!(
        text.contains("disk_low") && text.contains("acknowledged by bob"),
        "{text}"
    );
    assert_eq!(render(&[]), "no alerts\n");
}

#[test]
fn a_disabled_player_never_alerts() {
    let config = AlertConfig::default();
    let m = manifest();
    let now = at(NOW);
    let broken = AlertPlayerFacts {
        disabled: true,
        last_report_at: Some(now - TimeDelta::hours(3)),
        active_version: Some(1),
        output: Some("no_device".into()),
        clock_offset_ms: Some(60_000),
        free_disk_bytes: Some(0),
        ..healthy("main-1", "main", now)
    };
    let never = AlertPlayerFacts {
        disabled: true,
        last_report_at: None,
        ..healthy("main-2", "main", now)
    };
    let mut f = facts(&m, vec![broken, never], vec![]);
    f.integrity = vec![IntegrityEvent {
        player_id: "main-1".into(),
        kind: "verify_failed".into(),
        detail: "bad signature".into(),
        media: None,
        received_at: now,
    }];
    assert_eq!(evaluate(&f, now, &config), vec![]);
}

/// Report times are kept to the second: the alert judges the silence in whole
/// seconds, as the dashboard's UP does, so it never opens while the row shows UP.
#[test]
fn unreachable_opens_in_whole_seconds_like_the_dashboard_goes_ko() {
    let config = AlertConfig {
        offline_after: Duration::from_secs(3),
        ..AlertConfig::default()
    };
    let m = manifest();
    let heard = at(NOW);
    let mut p = healthy("main-1", "main", heard);
    p.last_report_at = Some(heard);
    for (after_ms, unreachable) in [(3_000, false), (3_500, false), (3_999, false), (4_000, true)] {
        let now = heard + TimeDelta::milliseconds(after_ms);
        let f = facts(&m, vec![p.clone()], vec![noon_ad_played()]);
        let got = kinds(&evaluate(&f, now, &config));
        assert_eq!(
            got.contains(&AlertKind::Unreachable),
            unreachable,
            "{after_ms} ms"
        );
    }
}

#[test]
fn after_a_restart_silence_counts_from_when_the_server_listens() {
    let config = AlertConfig::default();
    let m = manifest();
    let started = at(NOW);
    let mut p = healthy("main-1", "main", started);
    p.last_report_at = Some(started - TimeDelta::minutes(2));
    for (after, unreachable) in [(0, false), (30, false), (31, true)] {
        let now = started + secs(after);
        let mut f = facts(&m, vec![p.clone()], vec![noon_ad_played()]);
        f.listening_since = Some(started);
        let got = kinds(&evaluate(&f, now, &config));
        assert_eq!(
            got.contains(&AlertKind::Unreachable),
            unreachable,
            "{after} s after the start"
        );
    }
}

fn report_with(output: OutputState, entries: Vec<Entry>) -> Report {
    Report {
        outbox: "box".into(),
        active_version: Some(3),
        output,
        clock_offset_ms: Some(0),
        free_disk_bytes: Some(10_000_000_000),
        audio_clock: None,
        agent_version: "test".into(),
        uptime_secs: 5,
        entries,
        ..Report::default()
    }
}

fn ad_entry(seq: u64, n: u8, key: &str, started: &str, outcome: &str) -> Entry {
    Entry {
        seq,
        at: started.into(),
        body: EntryBody::Play(PlayEntry {
            play_id: seq.to_string(),
            media: media(n).to_string(),
            title: "ad".into(),
            kind: "ad".into(),
            source: key.into(),
            version: 3,
            started_at: started.into(),
            ended_at: None,
            outcome: outcome.into(),
        }),
    }
}

#[test]
fn a_sweep_reads_reports_plays_and_players_from_the_database() {
    let (_dir, db) = open_db();
    let config = AlertConfig::default();
    let m = manifest();
    let head = Head {
        version: 3,
        published_at: Some("2026-11-30T00:00:00Z".into()),
        ..Head::default()
    };
    let noon = ad_key(21, "2026-12-01T12:00");
    for (id, shop) in [("main-1", "main"), ("main-2", "main"), ("lyon-1", "lyon")] {
        db.add_player(id, shop, &format!("tok-{id}")).unwrap();
    }
    let player = |id: &str, shop: &str| Player {
        id: id.into(),
        shop: shop.into(),
    };
    // main-1 plays the noon ad; main-2's file is damaged; lyon-1 has no ad.
    let t0 = at("2026-12-01T11:00:05Z");
    let plays = [("main-1", "main", "complete"), ("main-2", "main", "skipped")];
    for (id, shop, outcome) in plays {
        let entries = vec![ad_entry(1, 21, &noon, "2026-12-01T11:00:00Z", outcome)];
        crate::fleet::ingest(
            &db,
            &player(id, shop),
            3,
            report_with(OutputState::Playing, entries),
            t0,
        )
        .unwrap();
    }
    crate::fleet::ingest(
        &db,
        &player("lyon-1", "lyon"),
        3,
        report_with(OutputState::Playing, vec![]),
        t0,
    )
    .unwrap();

    let mut sweeper = Sweeper::new(at("2026-12-01T10:00:00Z"));
    let report = sweeper
        .sweep(&db, &head, Some(&m), t0 + secs(5), &config)
        .unwrap();
    let open = db.open_alerts(None).unwrap();
    let got: Vec<(&str, &str)> = open
        .iter()
        .map(|a| (a.kind.as_str(), a.player_id.as_str()))
        .collect();
    assert_eq!(got, [("missed_ad", "main-2")], "{report:?}");
    assert!(open[0].text_en.contains("«Winter sale»") && open[0].text_en.contains("could not be played"));

    // main-1 goes quiet; the others keep reporting; 40 s later main-1 is unreachable.
    let t1 = t0 + secs(40);
    for (id, shop) in [("main-2", "main"), ("lyon-1", "lyon")] {
        crate::fleet::ingest(
            &db,
            &player(id, shop),
            3,
            report_with(OutputState::Playing, vec![]),
            t1,
        )
        .unwrap();
    }
    sweeper.sweep(&db, &head, Some(&m), t1, &config).unwrap();
    let unreachable: Vec<String> = db
        .open_alerts(None)
        .unwrap()
        .into_iter()
        .filter(|a| a.kind == "unreachable")
        .map(|a| a.player_id)
        .collect();
    assert_eq!(unreachable, ["main-1"]);
    // It reports again: resolved after the hold-down, once.
    let t2 = t1 + secs(5);
    for s in [0, 5, 11] {
        for (id, shop) in [("main-1", "main"), ("main-2", "main"), ("lyon-1", "lyon")] {
            crate::fleet::ingest(
                &db,
                &player(id, shop),
                3,
                report_with(OutputState::Playing, vec![]),
                t2 + secs(s),
            )
            .unwrap();
        }
        sweeper
            .sweep(&db, &head, Some(&m), t2 + secs(s), &config)
            .unwrap();
    }
    let kinds: Vec<String> = db
        .open_alerts(None)
        .unwrap()
        .into_iter()
        .map(|a| a.kind)
        .collect();
    assert_eq!(kinds, ["missed_ad"]);
    let resolved: Vec<String> = db
        .alert_transitions_after(0, 100)
        .unwrap()
        .into_iter()
        .filter(|t| t.transition == "resolved")
        .map(|t| t.alert.kind)
        .collect();
    assert_eq!(resolved, ["unreachable"]);
}

#[test]
fn out_of_sync_counts_from_the_publish_or_from_when_the_player_was_first_seen_behind() {
    let config = AlertConfig::default();
    let m = manifest();
    let now = at(NOW);
    // (active version, published ago, first seen behind ago, out of sync)
    let cases: [(Option<u64>, i64, Option<i64>, bool); 7] = [
        (Some(3), 600, None, false),
        (Some(2), 119, Some(110), false),
        (Some(2), 121, Some(121), true),
        (Some(2), 600, Some(600), true),
        // Registered long after the publish: two minutes from its first report.
        (None, 3600, Some(60), false),
        (None, 3600, Some(180), true),
        // Behind since before the publish: the publish counts.
        (Some(1), 60, Some(3600), false),
    ];
    for (active, published, behind, expected) in cases {
        let mut p = healthy("main-1", "main", now);
        p.active_version = active;
        p.behind_since = behind.map(|s| now - secs(s));
        let mut f = facts(&m, vec![p], vec![noon_ad_played()]);
        f.head_published_at = Some(now - secs(published));
        let got = kinds(&evaluate(&f, now, &config)).contains(&AlertKind::OutOfSync);
        assert_eq!(
            got, expected,
            "{active:?}, published {published} s ago, behind {behind:?}"
        );
    }
}
