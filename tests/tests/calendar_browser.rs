//! Marketing's planning calendar in headless Chromium against a real publisher:
//! MP3 files dropped from the desktop onto a Saturday afternoon become a
//! playlist that a real player plays there once published; blocks are moved
//! and resized with real pointer drags and the draft says the same in words;
//! an overlap names the rule that wins; a December campaign shows in the month
//! and the week and stops on the 25th; the keyboard alone and a phone's taps
//! create, move and delete rules; a refused save leaves the calendar as it was.
//! Screenshots (desktop and phone, English and French) of the week, all-shops
//! and month views land in `target/test-output/screenshots`.

use std::path::Path;
use std::time::{Duration, Instant};

use chrono::{Datelike, NaiveDate, TimeDelta, Utc};
use fantoccini::actions::{
    InputSource, KeyAction, KeyActions, MouseActions, PointerAction, TouchActions, MOUSE_BUTTON_LEFT,
};
use fantoccini::key::Key;
use serde_json::{json, Value};
use skycast_publisher::workspace::{Draft, Workspace};
use skycast_schema::{ScheduleRule, Weekday};
use skycast_tests::play::PlayerRun;
use skycast_tests::ui::Ui;
use skycast_tests::web::TEST_PASSWORD;
use skycast_tests::{example, file_id, PublisherFixture};

/// How long a change may take to show in the calendar (a debug build, with
/// other tests running).
const CHANGE_TIMEOUT: Duration = Duration::from_secs(20);

const FILES: [&str; 7] = [
    "music/tone-a.mp3",
    "music/chords-b.mp3",
    "music/christmas-bells.mp3",
    "music/arpeggio-c.mp3",
    "ads/bread.mp3",
    "ads/coffee.mp3",
    "announcements/closing.mp3",
];

/// A planning for the calendar: shops main (09:00–20:00, closed on Sunday,
/// shorter hours on Christmas Eve, a fixed-time ad at 11:30, a coffee ad every 4
/// tracks) and lille (a closing announcement), `daytime` as the fallback, and
/// `extra` (its rules after).
fn write_calendar_planning(dir: &Path, extra: &str) -> std::path::PathBuf {
    for f in FILES {
        let to = dir.join(f);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(example(f), &to).unwrap();
    }
    let week = r#"{mon: "09:00-20:00", tue: "09:00-20:00", wed: "09:00-20:00", thu: "09:00-20:00", fri: "09:00-20:00", sat: "09:00-20:00", sun: closed}"#;
    let schedule = if extra.is_empty() {
        "schedule: []\n".to_string()
    } else {
        format!("schedule:\n{extra}")
    };
    let text = format!(
        "timezone: Europe/Paris
media:
  music/tone-a.mp3: {{title: Morning Tone, kind: music}}
  music/chords-b.mp3: {{title: Four Chords, kind: music}}
  music/christmas-bells.mp3: {{title: Jingle Bells, kind: music}}
  music/arpeggio-c.mp3: {{title: Arpeggio, kind: music}}
  ads/bread.mp3: {{title: Fresh bread, kind: ad}}
  ads/coffee.mp3: {{title: Coffee corner, kind: ad}}
  announcements/closing.mp3: {{title: Closing soon, kind: announcement}}
playlists:
  daytime: {{items: [music/tone-a.mp3]}}
  christmas: {{items: [music/christmas-bells.mp3]}}
  promo: {{items: [music/chords-b.mp3]}}
  jazz: {{items: [music/arpeggio-c.mp3]}}
shops:
  main:
    hours: {week}
    exceptions: {{2026-12-24: \"09:00-17:00\"}}
  lille:
    hours: {week}
    closing_announcement: {{media: announcements/closing.mp3, minutes_before: 30}}
playback: {{fallback_playlist: daytime}}
ads:
  - {{media: ads/bread.mp3, shops: [main], at: [\"11:30\"]}}
  - {{media: ads/coffee.mp3, shops: [main], every_tracks: 4}}
{schedule}"
    );
    let path = dir.join("planning.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

/// A publisher with the calendar planning published as version 1 (schedule
/// rules `extra`) and marketing signed in, in `lang`.
async fn start(extra: &str, lang: &str) -> (PublisherFixture, Ui) {
    let fx = PublisherFixture::start().await;
    fx.add_role_users();
    fx.publish(&write_calendar_planning(&fx.dir.path().join("planning"), extra));
    let mut ui = Ui::start(&fx, lang, "marketing").await;
    assert_eq!(ui.login("marketing", TEST_PASSWORD).await, "/marketing");
    (fx, ui)
}

fn draft(fx: &PublisherFixture) -> Draft {
    let db = fx.data.db().unwrap();
    Workspace::new(&fx.data, &db).draft().unwrap()
}

fn rules(fx: &PublisherFixture) -> Vec<ScheduleRule> {
    draft(fx).program.schedule
}

/// `rule`'s weekdays, or every day.
fn days_of(rule: &ScheduleRule) -> Vec<Weekday> {
    Weekday::ALL
        .into_iter()
        .filter(|d| {
            rule.days
                .as_ref()
                .is_none_or(|r| r.iter().any(|r| r.contains(*d)))
        })
        .collect()
}

fn time_of(rule: &ScheduleRule) -> Option<String> {
    rule.time.map(|w| w.to_string())
}

/// The next Saturday after today (Paris), so a player's clock there is never
/// past the version's expiry.
fn next_saturday() -> NaiveDate {
    let today = skycast_schema::schedule::local_datetime("Europe/Paris", Utc::now())
        .unwrap()
        .date();
    let ahead = (5 + 7 - i64::from(today.weekday().num_days_from_monday())) % 7;
    today + TimeDelta::days(if ahead == 0 { 7 } else { ahead })
}

async fn js(ui: &Ui, script: &str, args: Vec<Value>) -> Value {
    ui.b.client()
        .execute(script, args)
        .await
        .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
}

/// Scrolls the page so that `minute` of the week's (shown) columns is in the middle of
/// the viewport; points taken after it share that scroll.
async fn scroll_to_minute(ui: &Ui, minute: u32) {
    js(
        ui,
        "const col = Array.from(document.querySelectorAll('.cal-col[data-date]'))
           .find((c) => c.getBoundingClientRect().height > 0);
         const cal = document.getElementById('calendar');
         const first = Number(cal.dataset.first), last = Number(cal.dataset.last);
         const box = col.getBoundingClientRect();
         const y = box.top + (arguments[0] - first) / (last - first) * box.height;
         window.scrollTo(0, window.scrollY + y - window.innerHeight / 2);
         return null;",
        vec![json!(minute)],
    )
    .await;
}

/// The viewport point of `minute` in the week view's column of `date` (the
/// middle of its width).
async fn point_of(ui: &Ui, date: NaiveDate, minute: u32) -> (f64, f64) {
    let v = js(
        ui,
        "const col = document.querySelector(`.cal-col[data-date='${arguments[0]}']`);
         const cal = document.getElementById('calendar');
         const first = Number(cal.dataset.first), last = Number(cal.dataset.last);
         const box = col.getBoundingClientRect();
         return [box.left + box.width / 2, box.top + (arguments[1] - first) / (last - first) * box.height];",
        vec![json!(date.to_string()), json!(minute)],
    )
    .await;
    (v[0].as_f64().unwrap(), v[1].as_f64().unwrap())
}

/// The box of the element `css` in the viewport: left, top, width, height.
async fn rect(ui: &Ui, css: &str) -> [f64; 4] {
    let v = js(
        ui,
        "const el = document.querySelector(arguments[0]);
         if (!el) return null;
         const b = el.getBoundingClientRect();
         return [b.left, b.top, b.width, b.height];",
        vec![json!(css)],
    )
    .await;
    assert!(!v.is_null(), "no `{css}` on the page: {}", ui.main_text().await);
    [0, 1, 2, 3].map(|i| v[i].as_f64().unwrap())
}

/// A real pointer drag: press at `from`, move in steps, release at `to`.
async fn drag(ui: &Ui, from: (f64, f64), to: (f64, f64)) {
    let mut mouse = MouseActions::new("mouse".to_string()).then(PointerAction::MoveTo {
        duration: None,
        x: from.0.round(),
        y: from.1.round(),
    });
    mouse = mouse.then(PointerAction::Down {
        button: MOUSE_BUTTON_LEFT,
    });
    for step in 1..=5 {
        let f = f64::from(step) / 5.0;
        mouse = mouse.then(PointerAction::MoveTo {
            duration: Some(Duration::from_millis(40)),
            x: (from.0 + (to.0 - from.0) * f).round(),
            y: (from.1 + (to.1 - from.1) * f).round(),
        });
    }
    mouse = mouse.then(PointerAction::Up {
        button: MOUSE_BUTTON_LEFT,
    });
    ui.b.client()
        .perform_actions(mouse)
        .await
        .unwrap_or_else(|e| panic!("drag {from:?} → {to:?}: {e}"));
    ui.b.client()
        .release_actions()
        .await
        .expect("release the pointer");
}

/// A finger's tap at a viewport point.
async fn tap(ui: &Ui, at: (f64, f64)) {
    let finger = TouchActions::new("finger".to_string())
        .then(PointerAction::MoveTo {
            duration: None,
            x: at.0.round(),
            y: at.1.round(),
        })
        .then(PointerAction::Down {
            button: MOUSE_BUTTON_LEFT,
        })
        .then(PointerAction::Up {
            button: MOUSE_BUTTON_LEFT,
        });
    ui.b.client()
        .perform_actions(finger)
        .await
        .unwrap_or_else(|e| panic!("tap at {at:?}: {e}"));
    ui.b.client().release_actions().await.expect("release the finger");
}

/// The middle of the element `css` in the viewport, scrolled into view.
async fn middle(ui: &Ui, css: &str) -> (f64, f64) {
    ui.scroll_to(css).await;
    let [x, y, w, h] = rect(ui, css).await;
    (x + w / 2.0, y + h / 2.0)
}

/// Waits until the calendar's status says the last change landed (`ok`) or was
/// refused (`error`); returns its kind and the change's words.
async fn wait_status(ui: &Ui, what: &str) -> (String, String) {
    let started = Instant::now();
    loop {
        let v = js(
            ui,
            "const s = document.getElementById('cal-status');
             const kind = s.classList.contains('ok') ? 'ok' : s.classList.contains('error') ? 'error' : '';
             return [kind, s.textContent + ' ' + document.getElementById('cal-said').textContent,
                     document.querySelector('#calendar .cal-block') !== null];",
            vec![],
        )
        .await;
        let kind = v[0].as_str().unwrap_or_default().to_string();
        if !kind.is_empty() {
            // Reset, so the next change is waited for afresh.
            js(
                ui,
                "document.getElementById('cal-status').className = ''; return null;",
                vec![],
            )
            .await;
            return (kind, v[1].as_str().unwrap_or_default().to_string());
        }
        assert!(
            started.elapsed() < CHANGE_TIMEOUT,
            "the calendar said nothing within {CHANGE_TIMEOUT:?} after {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits for the calendar's answer and asserts the change landed; returns its words.
async fn saved(ui: &Ui, what: &str) -> String {
    let (kind, words) = wait_status(ui, what).await;
    assert_eq!(kind, "ok", "{what} was refused: {words}");
    words
}

/// Waits until `css` matches something (the calendar redraws after a change).
async fn wait_css(ui: &Ui, css: &str) {
    let started = Instant::now();
    while !ui.b.exists(css).await {
        assert!(
            started.elapsed() < CHANGE_TIMEOUT,
            "no `{css}` within {CHANGE_TIMEOUT:?}: {}",
            ui.main_text().await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The page must fit a 390 px phone: nothing wider than the screen.
async fn assert_fits_phone(ui: &Ui, what: &str) {
    let width = js(ui, "return document.documentElement.scrollWidth;", vec![]).await;
    assert!(
        width.as_u64().unwrap_or(u64::MAX) <= 390,
        "{what} is {width} px wide on a 390 px phone"
    );
}

/// Files chosen from disk through the page's file input, then dropped from the
/// "desktop" onto the calendar at a point, as a drag from the file manager
/// delivers them (a `DataTransfer` holding the files, `dragover` then `drop`).
async fn drop_files(ui: &Ui, files: &[&Path], at: (f64, f64)) {
    ui.b.set_files("#cal-drop-files", files).await;
    js(
        ui,
        "const input = document.getElementById('cal-drop-files');
         const dt = new DataTransfer();
         for (const f of input.files) dt.items.add(f);
         input.value = '';
         const [x, y] = [arguments[0], arguments[1]];
         const target = document.elementFromPoint(x, y);
         for (const type of ['dragenter', 'dragover', 'drop']) {
           target.dispatchEvent(new DragEvent(type, {bubbles: true, cancelable: true, clientX: x, clientY: y, dataTransfer: dt}));
         }
         return null;",
        vec![json!(at.0), json!(at.1)],
    )
    .await;
}

fn canonical(rel: &str) -> std::path::PathBuf {
    std::fs::canonicalize(example(rel)).unwrap()
}

#[tokio::test]
async fn a_december_campaign_shows_in_the_month_and_the_week_and_stops_on_the_25th() {
    let extra = "  - {playlist: christmas, shops: [all], dates: 2026-12-01..2026-12-24, time: \"10:00-19:00\", priority: 10}
  - {playlist: promo, shops: [main], days: [sat], time: \"14:00-16:00\"}
  - {playlist: jazz, shops: [main], days: [sat], time: \"15:00-17:00\"}
";
    for lang in ["en-US", "fr-FR"] {
        let (fx, mut ui) = start(extra, lang).await;
        let code = &lang[..2];

        // The month: 1–24 December play the campaign, the 25th does not; Sundays
        // are closed, Christmas Eve has its own hours.
        ui.open("/marketing/calendar?view=month&shop=main&week=2026-12-10")
            .await;
        let with_campaign = ui
            .attrs(
                "td[data-test=month-day]:has(.cal-chip[data-playlist=christmas])",
                "data-date",
            )
            .await;
        let expected: Vec<String> = (1..=24)
            .map(|d| NaiveDate::from_ymd_opt(2026, 12, d).unwrap())
            .filter(|d| d.weekday() != chrono::Weekday::Sun)
            .map(|d| d.to_string())
            .collect();
        assert_eq!(with_campaign, expected, "days of the month playing the campaign");
        let closed = ui.attrs("td[data-test=month-day].closed", "data-date").await;
        assert!(
            closed.contains(&"2026-12-06".to_string()) && closed.contains(&"2026-12-27".to_string()),
            "{closed:?}"
        );
        assert!(!closed.contains(&"2026-12-25".to_string()), "{closed:?}");
        let christmas = ui.b.text("td[data-date='2026-12-25']").await;
        assert!(
            christmas.contains("daytime") && !christmas.contains("christmas"),
            "{christmas}"
        );
        assert_eq!(
            ui.attrs("td[data-test=month-day].exception", "data-date").await,
            ["2026-12-24"]
        );
        assert!(ui.b.exists("#cal-campaigns li[data-playlist=christmas]").await);
        ui.shot(&format!("calendar-month-{code}")).await;
        ui.b.set_window_size(390, 844).await;
        ui.open("/marketing/calendar?view=month&shop=main&week=2026-12-10")
            .await;
        assert_fits_phone(&ui, "the month").await;
        ui.shot(&format!("calendar-month-{code}-phone")).await;
        ui.b.set_window_size(1280, 900).await;

        // The week of Christmas: the campaign Monday to Thursday, not on Friday the
        // 25th; Sunday shaded; the 24th's hours; the 11:30 ad pinned; a conflict on
        // Saturday naming the winner.
        ui.open("/marketing/calendar?shop=main&week=2026-12-21").await;
        let campaign_days = ui.attrs(".cal-block[data-playlist=christmas]", "data-date").await;
        assert_eq!(
            campaign_days,
            ["2026-12-21", "2026-12-22", "2026-12-23", "2026-12-24"]
        );
        assert_eq!(
            ui.attrs(
                ".cal-block[data-playlist=christmas][data-date='2026-12-24']",
                "data-to"
            )
            .await,
            ["17:00"],
            "Christmas Eve closes at 17:00"
        );
        assert!(ui.b.exists(".cal-day.closed[data-date='2026-12-27']").await);
        assert!(
            ui.b.exists(".cal-day.exception[data-date='2026-12-24'] [data-test=exception]")
                .await
        );
        assert_eq!(
            ui.attrs(".cal-day[data-date='2026-12-22'] .cal-pin.ad", "data-minute")
                .await,
            ["690"]
        );
        let every =
            ui.b.text(".cal-day[data-date='2026-12-22'] [data-test=every]")
                .await;
        assert!(every.contains("Coffee corner") && every.contains('4'), "{every}");
        let conflict =
            ui.b.text(".cal-day[data-date='2026-12-26'] .cal-block.conflict [data-test=conflict]")
                .await;
        assert!(
            conflict.contains("2 (promo)") && conflict.contains("3 (jazz)"),
            "{conflict}"
        );
        assert_eq!(
            ui.attrs(".cal-block.conflict [data-test=conflict]", "data-winner")
                .await,
            ["2"]
        );
        ui.scroll_to(".cal-day[data-date='2026-12-26'] .cal-block.conflict")
            .await;
        ui.shot(&format!("calendar-week-{code}")).await;
        ui.b.set_window_size(390, 844).await;
        ui.open("/marketing/calendar?shop=main&week=2026-12-21").await;
        ui.b.click(".cal-tab[data-date='2026-12-26']").await;
        assert_fits_phone(&ui, "the week").await;
        ui.scroll_to(".cal-day[data-date='2026-12-26'] .cal-block.conflict")
            .await;
        ui.shot(&format!("calendar-week-{code}-phone")).await;
        ui.b.set_window_size(1280, 900).await;

        // All shops: a lane each, the campaign in both.
        ui.open("/marketing/calendar?view=shops&week=2026-12-21").await;
        assert_eq!(ui.attrs("[data-test=lane]", "data-shop").await, ["lille", "main"]);
        for shop in ["lille", "main"] {
            let days = ui
                .attrs(
                    &format!("[data-test=lane][data-shop={shop}] .cal-block[data-playlist=christmas]"),
                    "data-date",
                )
                .await;
            assert_eq!(days.len(), 4, "{shop}: {days:?}");
        }
        assert!(
            ui.b.exists("[data-test=lane][data-shop=lille] .cal-pin.closing")
                .await
        );
        ui.shot(&format!("calendar-shops-{code}")).await;
        ui.b.set_window_size(390, 844).await;
        ui.open("/marketing/calendar?view=shops&week=2026-12-21").await;
        assert_fits_phone(&ui, "all shops").await;
        ui.shot(&format!("calendar-shops-{code}-phone")).await;
        ui.close().await;
        drop(fx);
    }
}

/// `date` at `hhmm` in Paris, as the player's `--clock-start` takes it.
fn paris(date: NaiveDate, hhmm: &str) -> String {
    let local = date.and_time(hhmm.parse().unwrap());
    let offset = ["+01:00", "+02:00"]
        .into_iter()
        .find(|o| {
            let at = chrono::DateTime::parse_from_rfc3339(&format!("{}T{hhmm}:00{o}", date)).unwrap();
            skycast_schema::schedule::local_datetime("Europe/Paris", at.with_timezone(&Utc)).unwrap() == local
        })
        .unwrap();
    format!("{date}T{hhmm}:00{offset}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mp3_files_dropped_on_saturday_afternoon_become_a_playlist_a_player_plays_there() {
    let (fx, mut ui) = start("", "en-US").await;
    let sat = next_saturday();
    ui.open(&format!("/marketing/calendar?shop=main&week={sat}"))
        .await;
    let bells = canonical("music/bells-d.mp3");
    let chords = canonical("music/chords-b.mp3");
    scroll_to_minute(&ui, 15 * 60).await;
    let at = point_of(&ui, sat, 14 * 60 + 5).await;
    drop_files(&ui, &[bells.as_path(), chords.as_path()], at).await;
    let words = saved(&ui, "the drop").await;
    assert!(words.contains("main-sat-1400"), "the change in words: {words}");
    wait_css(
        &ui,
        &format!(".cal-block[data-playlist='main-sat-1400'][data-date='{sat}'][data-from='14:00'][data-to='16:00']"),
    )
    .await;
    ui.shot("calendar-dropped-en").await;

    // In the draft: a playlist of the two files, in the order dropped, and a rule.
    let d = draft(&fx);
    assert_eq!(
        d.program.playlists["main-sat-1400"].items,
        [file_id(&bells).0, file_id(&chords).0]
    );
    let rule = d
        .program
        .schedule
        .iter()
        .find(|r| r.playlist == "main-sat-1400")
        .expect("the rule");
    assert_eq!(days_of(rule), [Weekday::Sat]);
    assert_eq!(time_of(rule).as_deref(), Some("14:00-16:00"));
    assert_eq!(rule.shops, ["main"]);

    // Renamed on its page, from the block's editor: the rule follows.
    ui.b.click(&format!(
        ".cal-block[data-playlist='main-sat-1400'][data-date='{sat}']"
    ))
    .await;
    wait_css(&ui, "dialog#cal-editor[open]").await;
    ui.mark_page().await;
    ui.b.click("#ed-open-playlist").await;
    ui.wait_new_page().await;
    assert_eq!(ui.b.current_path().await, "/marketing/playlists/main-sat-1400");
    ui.b.fill("#playlist-new-name", "saturday-treats").await;
    ui.submit("#playlist-rename").await;
    assert_eq!(ui.b.current_path().await, "/marketing/playlists/saturday-treats");
    ui.ok_flash().await;
    let rule = &rules(&fx)[0];
    assert_eq!(
        (rule.playlist.as_str(), time_of(rule).as_deref()),
        ("saturday-treats", Some("14:00-16:00"))
    );

    // The preview at 15:00 that Saturday plays them.
    ui.open(&format!("/marketing/preview?shop=main&date={sat}&time=15:00"))
        .await;
    assert_eq!(
        ui.attr("#preview-result", "data-playlist").await.as_deref(),
        Some("saturday-treats")
    );
    let tracks = ui.texts("#preview-tracks li").await;
    // chords-b was in the library already, as "Four Chords": the same content.
    assert!(
        tracks.iter().any(|t| t.contains("bells-d")) && tracks.iter().any(|t| t.contains("Four Chords")),
        "{tracks:?}"
    );

    // Published, a player whose clock reads that Saturday 15:00 plays them.
    ui.open("/publish").await;
    ui.b.fill("#publish-message", "Dropped on Saturday afternoon")
        .await;
    ui.submit("#publish-button").await;
    ui.ok_flash().await;
    ui.close().await;
    let puller = fx.add_player("main-1", "main", &fx.url());
    puller.sync_ok().await;
    assert_eq!(puller.current_version(), Some(2));
    let wav = fx.dir.path().join("saturday.wav");
    let mut run = PlayerRun::start(&puller, &wav, Some(&paris(sat, "15:00")), 4.0);
    run.wait_for("two tracks played", Duration::from_secs(90), |rows| {
        rows.iter().filter(|r| r.ended_at.is_some()).count() >= 2
    })
    .await;
    let rows = run.plays();
    run.stop().await;
    let dropped = [file_id(&bells).0.to_string(), file_id(&chords).0.to_string()];
    let played: Vec<&str> = rows.iter().map(|r| r.media.as_str()).collect();
    assert!(
        played.iter().all(|m| dropped.iter().any(|d| d == m)),
        "Saturday 15:00 plays the dropped files only: {rows:#?}"
    );
    assert!(dropped.iter().all(|d| played.contains(&d.as_str())), "{rows:#?}");
    let recording = skycast_tests::recording::Recording::open(&wav);
    assert!(
        recording.duration_secs() > 20.0,
        "{} s recorded",
        recording.duration_secs()
    );
    assert!(
        !recording.is_silent(1.0, 20.0, -50.0),
        "the recording holds the music"
    );
}

/// The week of 14 December 2026 (any week does: these rules repeat weekly).
fn day(d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 12, d).unwrap()
}

#[tokio::test]
async fn moving_and_resizing_a_block_changes_its_rule_as_shown_and_an_overlap_names_the_winner() {
    let (fx, mut ui) = start(
        "  - {playlist: promo, shops: [main], days: [sat], time: \"10:00-12:00\"}\n",
        "en-US",
    )
    .await;
    let (fri, sat) = (day(18), day(19));
    ui.open("/marketing/calendar?shop=main&week=2026-12-14").await;

    // Saturday 10:00 → Friday 14:00: the rule's day and hours follow.
    scroll_to_minute(&ui, 13 * 60).await;
    let block = format!(".cal-block[data-playlist=promo][data-date='{sat}']");
    let [x, y, w, _] = rect(&ui, &block).await;
    let grab = (x + w / 2.0, y + 20.0);
    let (fx_, fy) = point_of(&ui, fri, 14 * 60).await;
    drag(&ui, grab, (fx_, fy + 20.0)).await;
    let words = saved(&ui, "the move").await;
    assert!(
        words.contains("Fri, 14:00–16:00 (was Sat, 10:00–12:00)"),
        "{words}"
    );
    let moved =
        format!(".cal-block[data-playlist=promo][data-date='{fri}'][data-from='14:00'][data-to='16:00']");
    wait_css(&ui, &moved).await;
    assert!(!ui.b.exists(&block).await, "nothing left on Saturday");
    let r = &rules(&fx)[0];
    assert_eq!(
        (days_of(r), time_of(r).as_deref()),
        (vec![Weekday::Fri], Some("14:00-16:00"))
    );

    // Its bottom edge to 17:00, its top edge to 14:30.
    let [x, y, w, h] = rect(&ui, &moved).await;
    let (_, to) = point_of(&ui, fri, 17 * 60).await;
    drag(&ui, (x + w / 2.0, y + h - 3.0), (x + w / 2.0, to - 3.0)).await;
    assert!(saved(&ui, "the bottom resize").await.contains("17:00"));
    let resized =
        format!(".cal-block[data-playlist=promo][data-date='{fri}'][data-from='14:00'][data-to='17:00']");
    wait_css(&ui, &resized).await;
    let [x, y, w, _] = rect(&ui, &resized).await;
    let (_, to) = point_of(&ui, fri, 14 * 60 + 30).await;
    drag(&ui, (x + w / 2.0, y + 2.0), (x + w / 2.0, to + 2.0)).await;
    assert!(saved(&ui, "the top resize").await.contains("14:30"));
    wait_css(
        &ui,
        &format!(".cal-block[data-playlist=promo][data-date='{fri}'][data-from='14:30'][data-to='17:00']"),
    )
    .await;
    assert_eq!(time_of(&rules(&fx)[0]).as_deref(), Some("14:30-17:00"));

    // jazz dragged from the list onto Friday 15:00: a new rule of the same
    // priority; the overlap names rule 1 as the winner, listed first.
    let [cx, cy, cw, ch] = rect(&ui, "#cal-palette [data-playlist=jazz]").await;
    js(&ui, "window.scrollTo(0, 0); return null;", vec![]).await;
    let [cx, cy] = {
        let [x2, y2, _, _] = rect(&ui, "#cal-palette [data-playlist=jazz]").await;
        let _ = (cx, cy);
        [x2 + cw / 2.0, y2 + ch / 2.0]
    };
    let (tx, ty) = point_of(&ui, fri, 15 * 60 + 5).await;
    drag(&ui, (cx, cy), (tx, ty)).await;
    let words = saved(&ui, "the palette drop").await;
    assert!(words.contains("jazz") && words.contains("15:00"), "{words}");
    wait_css(&ui, ".cal-block.conflict [data-test=conflict]").await;
    assert_eq!(
        ui.attrs(".cal-block.conflict [data-test=conflict]", "data-winner")
            .await,
        ["1"]
    );
    let why = ui.b.text(".cal-block.conflict [data-test=conflict]").await;
    assert!(
        why.contains("rule 1 (promo)") && why.contains("rule 2 (jazz)") && why.contains("priority 0"),
        "{why}"
    );
    let all = rules(&fx);
    assert_eq!(all.len(), 2);
    assert_eq!(
        (all[1].playlist.as_str(), time_of(&all[1]).as_deref()),
        ("jazz", Some("15:00-17:00"))
    );
    assert_eq!(days_of(&all[1]), [Weekday::Fri]);
    scroll_to_minute(&ui, 15 * 60).await;
    ui.shot("calendar-conflict-en").await;

    // Undo twice: the new rule goes, then the top edge comes back.
    ui.b.click("#cal-undo").await;
    assert!(saved(&ui, "the first undo").await.contains("jazz"));
    assert_eq!(rules(&fx).len(), 1);
    ui.b.click("#cal-undo").await;
    saved(&ui, "the second undo").await;
    assert_eq!(time_of(&rules(&fx)[0]).as_deref(), Some("14:00-17:00"));
    wait_css(&ui, &resized).await;
    assert!(!ui.b.exists(".cal-block.conflict").await);
    ui.close().await;
}

/// The current value of a form field.
async fn value(ui: &Ui, css: &str) -> String {
    js(
        ui,
        "return document.querySelector(arguments[0]).value;",
        vec![json!(css)],
    )
    .await
    .as_str()
    .unwrap_or_default()
    .to_string()
}

/// Presses `keys` together (a modifier first) on the keyboard: they go to
/// whatever has the focus.
async fn press(ui: &Ui, keys: &[Key]) {
    let mut actions = KeyActions::new("keyboard".to_string());
    for k in keys {
        actions = actions.then(KeyAction::Down {
            value: char::from(*k),
        });
    }
    for k in keys.iter().rev() {
        actions = actions.then(KeyAction::Up {
            value: char::from(*k),
        });
    }
    ui.b.client()
        .perform_actions(actions)
        .await
        .unwrap_or_else(|e| panic!("keys {keys:?}: {e}"));
    ui.b.client().release_actions().await.expect("release the keys");
}

async fn focused(ui: &Ui) -> Value {
    js(
        ui,
        "const e = document.activeElement;
         return {playlist: e.dataset.playlist || null, date: e.dataset.date || null, id: e.id || null,
                 at: e.dataset.at || null};",
        vec![],
    )
    .await
}

#[tokio::test]
async fn the_keyboard_alone_creates_moves_and_deletes_a_rule_and_a_phone_taps_one_in() {
    let (fx, mut ui) = start("", "en-US").await;
    ui.open("/marketing/calendar?shop=main&week=2026-12-14").await;

    // Tab to "promo" in the list of playlists, Enter: the editor opens for a new rule.
    let mut tabs = 0;
    while focused(&ui).await["playlist"] != json!("promo") {
        press(&ui, &[Key::Tab]).await;
        tabs += 1;
        assert!(tabs < 80, "Tab never reached the playlist promo");
    }
    press(&ui, &[Key::Enter]).await;
    wait_css(&ui, "dialog#cal-editor[open]").await;
    let day_ticked = ui.attrs("#ed-days input:checked", "value").await;
    assert_eq!(day_ticked.len(), 1, "{day_ticked:?}");
    let first_day: Weekday = day_ticked[0].parse().unwrap();
    // Tab through the editor to Save, Enter.
    let mut tabs = 0;
    while focused(&ui).await["id"] != json!("ed-save") {
        press(&ui, &[Key::Tab]).await;
        tabs += 1;
        assert!(tabs < 80, "Tab never reached Save");
    }
    press(&ui, &[Key::Enter]).await;
    let words = saved(&ui, "Save").await;
    assert!(words.contains("promo"), "{words}");
    let created = rules(&fx);
    assert_eq!(created.len(), 1);
    assert_eq!(days_of(&created[0]), [first_day]);
    let window = time_of(&created[0]).expect("a time window");
    assert_eq!(
        focused(&ui).await["playlist"],
        json!("promo"),
        "the new block has the focus"
    );

    // Right arrow: a day later; down arrow: 15 minutes later; Shift+Down: 15
    // minutes longer; Delete: gone.
    press(&ui, &[Key::Right]).await;
    saved(&ui, "Right").await;
    let next_day = Weekday::ALL[(Weekday::ALL.iter().position(|d| *d == first_day).unwrap() + 1) % 7];
    assert_eq!(days_of(&rules(&fx)[0]), [next_day]);
    press(&ui, &[Key::Down]).await;
    saved(&ui, "Down").await;
    let shift = |hhmm: &str, by: i64| {
        let t: chrono::NaiveTime = hhmm.parse().unwrap();
        (t + TimeDelta::minutes(by)).format("%H:%M").to_string()
    };
    let (a, b) = window.split_once('-').unwrap();
    assert_eq!(
        time_of(&rules(&fx)[0]),
        Some(format!("{}-{}", shift(a, 15), shift(b, 15)))
    );
    press(&ui, &[Key::Shift, Key::Down]).await;
    saved(&ui, "Shift+Down").await;
    assert_eq!(
        time_of(&rules(&fx)[0]),
        Some(format!("{}-{}", shift(a, 15), shift(b, 30)))
    );
    assert_eq!(
        focused(&ui).await["playlist"],
        json!("promo"),
        "the focus stays on the block"
    );
    press(&ui, &[Key::Delete]).await;
    saved(&ui, "Delete").await;
    assert!(rules(&fx).is_empty());

    // A phone: the calendar fits, a tap on Saturday's tab then on 15:00 opens
    // the editor there; Save.
    ui.b.set_window_size(390, 844).await;
    ui.open("/marketing/calendar?shop=main&week=2026-12-14").await;
    assert_fits_phone(&ui, "the week").await;
    tap(&ui, middle(&ui, ".cal-tab[data-date='2026-12-19']").await).await;
    assert!(ui.b.exists(".cal-day.shown[data-date='2026-12-19']").await);
    scroll_to_minute(&ui, 15 * 60).await;
    tap(&ui, point_of(&ui, day(19), 15 * 60 + 20).await).await;
    wait_css(&ui, "dialog#cal-editor[open]").await;
    assert_eq!(ui.attrs("#ed-days input:checked", "value").await, ["sat"]);
    assert_eq!(value(&ui, "#ed-from").await, "15:00");
    ui.b.select("#ed-playlist", "jazz").await;
    ui.shot("calendar-editor-en-phone").await;
    tap(&ui, middle(&ui, "#ed-save").await).await;
    saved(&ui, "the tapped Save").await;
    wait_css(
        &ui,
        ".cal-block[data-playlist=jazz][data-date='2026-12-19'][data-from='15:00'][data-to='17:00']",
    )
    .await;
    let r = &rules(&fx)[0];
    assert_eq!(
        (r.playlist.as_str(), days_of(r), time_of(r).as_deref()),
        ("jazz", vec![Weekday::Sat], Some("15:00-17:00"))
    );
    ui.close().await;
}

#[tokio::test]
async fn a_refused_save_says_why_and_leaves_the_calendar_as_it_was() {
    let (fx, mut ui) = start(
        "  - {playlist: promo, shops: [main], days: [sat], time: \"10:00-12:00\"}\n",
        "en-US",
    )
    .await;
    let sat = day(19);
    ui.open("/marketing/calendar?shop=main&week=2026-12-14").await;
    let before = draft(&fx);

    // A file that is not an MP3, dropped on Saturday 14:00: refused, named.
    let broken = fx.dir.path().join("broken.mp3");
    std::fs::write(
        &broken,
        b"ID3\x03\x00\x00\x00\x00\x00\x00 this is not audio at all",
    )
    .unwrap();
    scroll_to_minute(&ui, 12 * 60).await;
    let at = point_of(&ui, sat, 14 * 60 + 5).await;
    drop_files(&ui, &[broken.as_path()], at).await;
    let (kind, words) = wait_status(&ui, "the broken drop").await;
    assert_eq!(kind, "error", "{words}");
    assert!(
        words.contains("broken.mp3") && words.contains("not a playable MP3"),
        "{words}"
    );
    assert_eq!(draft(&fx), before, "nothing changed in the draft");
    assert_eq!(
        ui.attrs(".cal-block[data-rule]", "data-playlist").await,
        ["promo"]
    );

    // A field the server refuses: the editor stays open with the reason and
    // what was typed.
    ui.b.click(&format!(".cal-block[data-playlist=promo][data-date='{sat}']"))
        .await;
    wait_css(&ui, "dialog#cal-editor[open]").await;
    ui.set_value("#ed-to", "10:00").await;
    ui.b.click("#ed-save").await;
    let (kind, words) = wait_status(&ui, "the bad field").await;
    assert_eq!(kind, "error", "{words}");
    assert!(
        ui.b.exists("dialog#cal-editor[open]").await,
        "the editor stays open"
    );
    let reason = ui.b.text("#cal-editor-error").await;
    assert!(reason.contains("to_time"), "{reason}");
    assert_eq!(value(&ui, "#ed-to").await, "10:00");
    ui.b.click("#ed-cancel").await;
    assert_eq!(draft(&fx), before);

    // Someone else replaces the rule meanwhile; a drag of the stale block is
    // refused and the block goes back where it was.
    let mut other = fx.web_client();
    other.login("marketing", TEST_PASSWORD).await;
    other.post("/marketing/planning/rules/0/delete", &[]).await;
    other
        .post(
            "/marketing/planning/rules",
            &[
                ("playlist", "jazz"),
                ("shops", "main"),
                ("days", "sat"),
                ("from_time", "10:00"),
                ("to_time", "12:00"),
            ],
        )
        .await;
    let changed = draft(&fx);
    assert_eq!(changed.program.schedule[0].playlist, "jazz");
    let block = format!(".cal-block[data-playlist=promo][data-date='{sat}']");
    scroll_to_minute(&ui, 12 * 60).await;
    let home = rect(&ui, &block).await;
    let (tx, ty) = point_of(&ui, day(18), 14 * 60).await;
    drag(&ui, (home[0] + home[2] / 2.0, home[1] + 20.0), (tx, ty + 20.0)).await;
    let (kind, words) = wait_status(&ui, "the stale drag").await;
    assert_eq!(kind, "error", "{words}");
    assert!(words.contains("changed since the calendar was loaded"), "{words}");
    let back = rect(&ui, &block).await;
    assert_eq!(
        back.map(f64::round),
        home.map(f64::round),
        "the block is back where it was"
    );
    assert_eq!(draft(&fx), changed, "the other edit stands");
    ui.close().await;
}

#[tokio::test]
async fn sales_drop_an_ad_on_a_minute_and_remove_it_from_its_pin() {
    let fx = PublisherFixture::start().await;
    fx.add_role_users();
    fx.publish(&write_calendar_planning(&fx.dir.path().join("planning"), ""));
    let mut ui = Ui::start(&fx, "en-US", "commercial").await;
    assert_eq!(ui.login("commercial", TEST_PASSWORD).await, "/commercial");
    ui.open_expecting("/marketing/calendar", 403).await;
    ui.open("/commercial/calendar?shop=main&week=2026-12-14").await;
    let before = draft(&fx);
    let bread = file_id(&canonical("ads/bread.mp3")).0.to_string();

    // "Fresh bread" dragged onto Tuesday 10:35: played there on that date.
    let chip = format!("#cal-palette [data-media='{bread}']");
    scroll_to_minute(&ui, 11 * 60).await;
    let [cx, cy, cw, ch] = rect(&ui, &chip).await;
    let to = point_of(&ui, day(15), 10 * 60 + 35).await;
    drag(&ui, (cx + cw / 2.0, cy + ch / 2.0), to).await;
    let words = saved(&ui, "the ad drop").await;
    assert!(
        words.contains("Fresh bread") && words.contains("10:35"),
        "{words}"
    );
    let d = draft(&fx);
    assert_eq!(d.program.ads.len(), before.program.ads.len() + 1);
    let ad = d.program.ads.last().unwrap();
    assert_eq!(ad.media.to_string(), bread);
    assert_eq!(ad.shops, ["main"]);
    assert_eq!(
        ad.at
            .as_ref()
            .unwrap()
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        ["10:35"]
    );
    let dates = ad.dates.unwrap();
    assert_eq!((dates.first, dates.last), (day(15), day(15)));
    let pin = ".cal-day[data-date='2026-12-15'] .cal-pin[data-at='10:35']";
    wait_css(&ui, pin).await;
    assert!(
        !ui.b
            .exists(".cal-day[data-date='2026-12-16'] .cal-pin[data-at='10:35']")
            .await,
        "that date only"
    );
    assert_eq!(
        focused(&ui).await["at"],
        json!("10:35"),
        "the new pin has the focus"
    );
    ui.shot("calendar-ads-en").await;

    // Delete on the focused pin removes it; Undo puts it back.
    press(&ui, &[Key::Delete]).await;
    assert!(saved(&ui, "Delete on the pin").await.contains("Fresh bread"));
    assert_eq!(draft(&fx), before);
    ui.b.click("#cal-undo").await;
    saved(&ui, "the undo").await;
    assert_eq!(draft(&fx).program.ads.len(), before.program.ads.len() + 1);
    wait_css(&ui, pin).await;

    // A minute typed in the keyboard's dialog, and a time that is not one.
    js(
        &ui,
        "document.querySelector(arguments[0]).focus(); return null;",
        vec![json!(chip)],
    )
    .await;
    press(&ui, &[Key::Enter]).await;
    wait_css(&ui, "dialog#cal-ad-editor[open]").await;
    ui.b.select("#ad-date", "2026-12-18").await;
    ui.set_value("#ad-at", "16:05").await;
    ui.b.click("#ad-save").await;
    saved(&ui, "the dialog's ad").await;
    wait_css(&ui, ".cal-day[data-date='2026-12-18'] .cal-pin[data-at='16:05']").await;
    let (kind, words) = {
        let answer = js(
            &ui,
            "return fetch('/commercial/calendar/ads', {method: 'POST',
               headers: {'content-type': 'application/json', 'x-csrf-token': document.getElementById('cal-csrf').value},
               body: JSON.stringify({op: 'create', media: arguments[0], shop: 'main', date: '2026-12-18', at: '25:00'})})
             .then(async (r) => [r.status, (await r.json()).error]);",
            vec![json!(bread)],
        )
        .await;
        (
            answer[0].as_u64().unwrap(),
            answer[1].as_str().unwrap_or_default().to_string(),
        )
    };
    assert_eq!(kind, 400, "{words}");
    assert!(words.contains("field `at`"), "{words}");
    ui.close().await;
}
