//! Chaos soak (issue 14): an hour of shop time at `--clock-rate 10` (six minutes)
//! with the real release binaries — `serve`, and `skycast-puller run --output
//! speaker` on a real ALSA device (the `file` plugin over `null`, through a pipe
//! this process reads, see `skycast_tests::alsa`) — while faults are injected: a
//! publish every five shop minutes, network cuts (a relay between the shop and its
//! server drops everything), publisher restarts, a device that hangs, and two
//! `kill -9` of the player, each restarted at once as systemd's `Restart=always`
//! would, with the shop's clock carried on.
//!
//! It fails unless the shop's sound, stream by stream, has no silence more than
//! 300 ms longer than what the files hold themselves, every publish reached the
//! shop, and no fixed-time ad played twice. It prints the longest silence and the
//! count of each fault.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use skycast_puller::play_log::PlayRow;
use skycast_tests::alsa::AlsaPipeDevice;
use skycast_tests::cut_relay::CutRelay;
use skycast_tests::fleet::{until, Fleet, REPORT_INTERVAL_SECS};
use skycast_tests::play::{output_secs, own_silences, started, write_planning_yaml, OwnSilence, PlayerRun};
use skycast_tests::recording::{Gap, Recording};
use skycast_tests::{edit_config, register_player};

const RATE: f64 = 10.0;
const SHOP_MINUTES: f64 = 60.0;
/// Below this level a 10 ms window counts as silence.
const SILENCE_DBFS: f64 = -50.0;
/// What the pipe records: 16-bit mono at this rate (an hour is 57.6 MB).
const RECORD_RATE: u32 = 8_000;

const FILES: [&str; 7] = [
    "music/tone-a.mp3",
    "music/chords-b.mp3",
    "music/arpeggio-c.mp3",
    "music/bells-d.mp3",
    "music/extra-e.mp3",
    "ads/coffee.mp3",
    "ads/bread.mp3",
];

/// The planning, with `extra-e` in the playlist or not: each publish toggles it.
fn planning(with_extra: bool) -> String {
    let extra = if with_extra { ", music/extra-e.mp3" } else { "" };
    format!(
        "timezone: Europe/Paris
media:
  ads/coffee.mp3: {{title: Coffee, kind: ad}}
  ads/bread.mp3: {{title: Bread, kind: ad}}
playlists:
  day: {{order: sequential, items: [music/tone-a.mp3, music/chords-b.mp3, music/arpeggio-c.mp3, music/bells-d.mp3{extra}]}}
shops:
  main: {{}}
schedule:
  - {{playlist: day, shops: [all]}}
ads:
  - {{media: ads/coffee.mp3, every_tracks: 3, shops: [all]}}
  - {{media: ads/bread.mp3, at: [\"10:07\", \"10:22\", \"10:37\", \"10:52\"], shops: [all]}}
"
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Fault {
    Publish,
    NetworkCut,
    PublisherRestart,
    DeviceHang,
    Kill9,
}

/// The faults, at shop minutes, none overlapping another.
fn timeline() -> Vec<(f64, Fault)> {
    let mut t: Vec<(f64, Fault)> = (1..12).map(|k| (5.0 * k as f64, Fault::Publish)).collect();
    t.extend([8.0, 31.0, 44.0].map(|m| (m, Fault::NetworkCut)));
    t.extend([14.0, 38.0, 52.0].map(|m| (m, Fault::PublisherRestart)));
    t.push((24.0, Fault::DeviceHang));
    t.extend([19.0, 47.0].map(|m| (m, Fault::Kill9)));
    t.sort_by(|a, b| a.0.total_cmp(&b.0));
    t
}

/// Like `skycast_tests::play::added_silence`, but a play's place in the recording is
/// only trusted to half a second (the device's stream and the player's output
/// count may drift apart a little over a long stream: a frame of silence each time
/// the device waited for a late block). A silence with a play starting within half
/// a second of it is a boundary: the end of the previous file and the start of
/// that one may explain it; otherwise only the playing file's own longest
/// silence does.
fn silence_beyond_own(
    rec: &Recording,
    rows: &[PlayRow],
    own: &BTreeMap<String, OwnSilence>,
    from_s: f64,
    to_s: f64,
) -> (Gap, f64) {
    let silence_of = |row: &PlayRow| own.get(&row.media).copied();
    let mut worst = (
        Gap {
            start_s: from_s,
            len_s: 0.0,
        },
        0.0,
    );
    for gap in rec.gaps(SILENCE_DBFS, 0.05) {
        let (start, end) = (gap.start_s.max(from_s), gap.end_s().min(to_s));
        if end <= start {
            continue;
        }
        let mid = (start + end) / 2.0;
        let starting = rows
            .iter()
            .enumerate()
            .filter(|(_, r)| (output_secs(r) - mid).abs() <= 0.5 + (end - start) / 2.0)
            .min_by(|a, b| {
                (output_secs(a.1) - mid)
                    .abs()
                    .total_cmp(&(output_secs(b.1) - mid).abs())
            });
        let explained = match starting {
            Some((i, next)) => {
                let next = silence_of(next);
                let prev = i.checked_sub(1).and_then(|p| silence_of(&rows[p]));
                let boundary = prev.map_or(0.0, |p| p.trail_s) + next.map_or(0.0, |n| n.lead_s);
                boundary
                    .max(prev.map_or(0.0, |p| p.longest_s))
                    .max(next.map_or(0.0, |n| n.longest_s))
            }
            None => rows
                .iter()
                .rev()
                .find(|r| output_secs(r) <= start)
                .and_then(silence_of)
                .map_or(0.0, |p| p.longest_s),
        };
        let excess = (end - start) - explained;
        if excess > worst.1 {
            worst = (
                Gap {
                    start_s: start,
                    len_s: end - start,
                },
                excess,
            );
        }
    }
    worst
}

fn wall(shop_minutes: f64) -> Duration {
    Duration::from_secs_f64(shop_minutes * 60.0 / RATE)
}

fn main() {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(soak());
}

async fn soak() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, with_extra: bool| {
        write_planning_yaml(&dir.path().join(name), &planning(with_extra), &FILES)
    };
    let mut fleet = Fleet::publish_first(&write("v1", false));
    fleet.serve(30, &[]).await;
    let relay = CutRelay::start(fleet.server().addr()).await;
    let puller = register_player(
        &fleet.data,
        &dir.path().join("main-1"),
        "main-1",
        "main",
        &relay.url(),
    );
    edit_config(&puller, |t| {
        t.insert(
            "report_interval_secs".into(),
            toml::Value::Integer(REPORT_INTERVAL_SECS as i64),
        );
        t.insert("poll_interval_secs".into(), toml::Value::Integer(1));
    });
    puller.sync_ok().await;
    let device = AlsaPipeDevice::downmixed(dir.path(), RECORD_RATE);

    // 10:00 in Paris tomorrow, so the fixed-time ads fall inside the hour.
    let tomorrow = (Utc::now() + chrono::Duration::days(1)).date_naive();
    let shop_start: DateTime<Utc> = tomorrow.and_hms_opt(9, 0, 0).unwrap().and_utc();
    let t0 = Instant::now();
    let clock_now =
        || shop_start + chrono::Duration::milliseconds((t0.elapsed().as_secs_f64() * RATE * 1000.0) as i64);
    let mut runs = 0;
    let mut start_run = |at: DateTime<Utc>| {
        runs += 1;
        let logs = dir.path().join(format!("run-{runs}"));
        // The player logs at info, kept with the recording of a failed run.
        let mut env = device.env().to_vec();
        env.push(("RUST_LOG", Path::new("info")));
        PlayerRun::start_with_env(&puller, "speaker", &logs, Some(&at.to_rfc3339()), RATE, &env)
    };
    let mut run = start_run(shop_start);

    let mut injected: BTreeMap<Fault, u32> = BTreeMap::new();
    let mut published = 1u64;
    for (minute, fault) in timeline() {
        tokio::time::sleep_until((t0 + wall(minute)).into()).await;
        match fault {
            Fault::Publish => {
                published += 1;
                fleet.publish(&write(&format!("v{published}"), published.is_multiple_of(2)));
            }
            Fault::NetworkCut => {
                relay.cut();
                tokio::time::sleep(wall(1.5)).await;
                relay.mend();
            }
            Fault::PublisherRestart => {
                fleet.stop_serving().await;
                tokio::time::sleep(Duration::from_secs(3)).await;
                fleet.serve_again().await;
            }
            Fault::DeviceHang => {
                device.hang();
                tokio::time::sleep(Duration::from_secs(5)).await;
                device.unhang();
            }
            Fault::Kill9 => {
                run.kill9().await;
                run = start_run(clock_now());
            }
        }
        *injected.entry(fault).or_default() += 1;
        println!(
            "{:>5.1} shop min: {fault:?}",
            t0.elapsed().as_secs_f64() * RATE / 60.0
        );
    }
    tokio::time::sleep_until((t0 + wall(SHOP_MINUTES)).into()).await;
    // The last publish reaches the shop (the network is back, so within seconds).
    let status = until(
        "the last publish to reach the shop",
        Duration::from_secs(30),
        || {
            let status = puller.status_blocking();
            match status["active_version"].as_u64() {
                Some(v) if v == published => Ok(status),
                other => Err(format!("active version {other:?}, published {published}")),
            }
        },
    )
    .await;
    let rows = run.plays();
    let transcript = run.stop().await;
    let took = t0.elapsed();
    let mut failures = Vec::new();

    // The sound, stream by stream (a kill, a hung device start a new one): between
    // its first and last sound, no silence beyond what the files playing there hold
    // themselves. A stream's plays are those its player started in its stretch of
    // shop time; the first starts its recording, so each play's place in it is its
    // output position less that one's.
    let own = own_silences(&FILES, SILENCE_DBFS);
    let segments = device.segments();
    let shop_time = |at: Instant| {
        shop_start
            + chrono::Duration::milliseconds((at.duration_since(t0).as_secs_f64() * RATE * 1000.0) as i64)
    };
    let margin = chrono::Duration::seconds(3);
    let mut worst = (0.0f64, 0usize, 0.0f64, String::new());
    let mut longest = 0.0f64;
    let mut sound_s = 0.0;
    for (k, (arrived, rec)) in segments.iter().enumerate() {
        let (Some(first), Some(last)) = (
            rec.first_sound_after(0.0, SILENCE_DBFS),
            rec.last_sound_before(rec.duration_secs(), SILENCE_DBFS),
        ) else {
            continue;
        };
        sound_s += last - first;
        longest = longest.max(rec.longest_gap(SILENCE_DBFS, first, last).len_s);
        let from = shop_time(*arrived) - margin;
        let to = segments.get(k + 1).map(|(next, _)| shop_time(*next) - margin);
        let mut in_stream: Vec<PlayRow> = rows
            .iter()
            .filter(|r| started(r) >= from && to.is_none_or(|to| started(r) < to))
            .cloned()
            .collect();
        // A kill's stream belongs to the new run only (output positions are per run).
        let run_id = in_stream
            .iter()
            .max_by_key(|r| started(r))
            .map(|r| r.run_id.clone());
        in_stream.retain(|r| Some(&r.run_id) == run_id.as_ref());
        in_stream.sort_by_key(|r| r.output_ms);
        let Some(opening) = in_stream.first().cloned() else {
            failures.push(format!("stream {k} has no plays of its own"));
            continue;
        };
        // A stream opens with the mixer's silence, which a device that does not pace
        // takes at once (seconds of it, before the first block): the first play
        // starts where its file's own lead before the first sound says.
        let lead = if opening.position_ms == 0 {
            own.get(&opening.media).map_or(0.0, |o| o.lead_s)
        } else {
            0.0
        };
        let starts_at_ms = ((first - lead).max(0.0) * 1000.0) as u64;
        for row in &mut in_stream {
            row.output_ms = row.output_ms - opening.output_ms + starts_at_ms;
        }
        let (gap, added) = silence_beyond_own(rec, &in_stream, &own, first, last);
        if added > worst.0 {
            // The plays around it, to say what the silence came between.
            let around: Vec<String> = in_stream
                .iter()
                .filter(|r| (output_secs(r) - gap.start_s).abs() < 30.0)
                .map(|r| format!("{:.2} s {} {} ({})", output_secs(r), r.kind, r.title, r.outcome))
                .collect();
            worst = (
                added,
                k,
                gap.start_s,
                format!("{:.3} s long; plays around: {}", gap.len_s, around.join(", ")),
            );
        }
    }
    let (excess, segment, at, around) = worst;
    println!(
        "chaos soak: {SHOP_MINUTES} shop minutes at --clock-rate {RATE} in {:.0} s; faults injected: {} publishes, \
         {} network cuts, {} publisher restarts, {} device hang, {} kill -9",
        took.as_secs_f64(),
        injected.get(&Fault::Publish).unwrap_or(&0),
        injected.get(&Fault::NetworkCut).unwrap_or(&0),
        injected.get(&Fault::PublisherRestart).unwrap_or(&0),
        injected.get(&Fault::DeviceHang).unwrap_or(&0),
        injected.get(&Fault::Kill9).unwrap_or(&0),
    );
    println!(
        "sound: {} streams, {:.0} s of shop time between their first and last sound, {} plays; longest silence \
         {longest:.3} s; most silence beyond the files' own {excess:.3} s (stream {segment} at {at:.1} s)",
        segments.len(),
        sound_s,
        rows.len(),
    );
    println!("that silence: {around}");
    println!(
        "active version {} (published {published})",
        status["active_version"]
    );

    if excess > 0.3 {
        failures.push(format!("{excess:.3} s of silence beyond the files' own"));
    }
    if segments.len() < 4 {
        failures.push(format!(
            "{} streams: the hang and the kills should each start one",
            segments.len()
        ));
    }
    let mut fixed: Vec<&str> = rows
        .iter()
        .filter(|r| r.source.starts_with("ad-at:"))
        .map(|r| r.source.as_str())
        .collect();
    let before = fixed.len();
    fixed.sort_unstable();
    fixed.dedup();
    if fixed.len() != before || fixed.len() < 3 {
        failures.push(format!("fixed-time ads: {before} plays of {} keys", fixed.len()));
    }
    if !failures.is_empty() {
        // What to look at: the worst stream and every run's log.
        let keep =
            std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/test-output/chaos-soak");
        std::fs::create_dir_all(&keep).unwrap();
        if let Some((_, rec)) = segments.get(segment) {
            let spec = hound::WavSpec {
                channels: 1,
                sample_rate: rec.sample_rate,
                bits_per_sample: 16,
                sample_format: hound::SampleFormat::Int,
            };
            let mut wav = hound::WavWriter::create(keep.join(format!("stream-{segment}.wav")), spec).unwrap();
            for frame in &rec.frames {
                wav.write_sample((frame[0].clamp(-1.0, 1.0) * 32_767.0) as i16)
                    .unwrap();
            }
            wav.finalize().unwrap();
        }
        let runs_started = 1 + injected.get(&Fault::Kill9).copied().unwrap_or(0);
        for k in 1..=runs_started {
            let log = dir.path().join(format!("run-{k}.err.txt"));
            let _ = std::fs::copy(&log, keep.join(format!("run-{k}.err.txt")));
        }
        panic!(
            "chaos soak failed: {} (the stream and the logs are in {})\n{transcript}",
            failures.join("; "),
            keep.display()
        );
    }
    println!("chaos soak: PASS");
}
