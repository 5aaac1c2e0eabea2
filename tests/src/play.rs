//! A shop's player under test: a real `skycast-puller run` process recording what
//! the shop hears to a wav file, and its play log read from `state.sqlite`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use skycast_puller::play_log::{read_all, PlayRow};

use crate::recording::{Gap, Recording};
use crate::{example, file_id, PublisherFixture, Puller};

/// A publisher with `yaml` published as version 1 and a synced puller `main-1` for
/// shop `main`.
pub async fn published(yaml: &str, files: &[&str]) -> (PublisherFixture, Puller) {
    let p = PublisherFixture::start().await;
    p.publish(&write_planning_yaml(&p.dir.path().join("v1"), yaml, files));
    let puller = p.add_player("main-1", "main", &p.url());
    puller.sync_ok().await;
    (p, puller)
}

/// Writes `planning.yaml` with `yaml` in `dir`, copying the named files of
/// content-example beside it (the planning names them by those relative paths).
pub fn write_planning_yaml(dir: &Path, yaml: &str, files: &[&str]) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    for f in files {
        let to = dir.join(f);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(example(f), &to).unwrap_or_else(|e| panic!("copy {f}: {e}"));
    }
    let path = dir.join("planning.yaml");
    std::fs::write(&path, yaml).unwrap();
    path
}

/// Bytes per second of the player's wav output (16-bit stereo, 44.1 kHz).
const WAV_BYTES_PER_SEC: f64 = 44_100.0 * 4.0;

/// A running `skycast-puller run` with `--output wav:...`.
pub struct PlayerRun {
    child: tokio::process::Child,
    pub wav: PathBuf,
    pub stdout: PathBuf,
    pub state_db: PathBuf,
}

impl PlayerRun {
    /// Starts the daemon recording to `wav`; `clock_start` is RFC 3339 (or the
    /// system clock when `None`), `rate` seconds of audio per wall second.
    pub fn start(puller: &Puller, wav: &Path, clock_start: Option<&str>, rate: f64) -> PlayerRun {
        let output = format!("wav:{}", wav.display());
        PlayerRun::start_output(puller, &output, wav, clock_start, rate)
    }

    /// Starts the daemon with `--output <output>` (`null`, `wav:PATH`...); what it
    /// prints goes beside `logs` (`<logs>.out.txt`, `<logs>.err.txt`), which is
    /// also the recording [`PlayerRun::recorded_secs`] measures.
    pub fn start_output(
        puller: &Puller,
        output: &str,
        logs: &Path,
        clock_start: Option<&str>,
        rate: f64,
    ) -> PlayerRun {
        PlayerRun::start_with_env(puller, output, logs, clock_start, rate, &[])
    }

    /// [`PlayerRun::start_output`] with extra environment variables (`HOME` for an
    /// ALSA configuration, for example).
    pub fn start_with_env(
        puller: &Puller,
        output: &str,
        logs: &Path,
        clock_start: Option<&str>,
        rate: f64,
        env: &[(&str, &Path)],
    ) -> PlayerRun {
        let stdout = logs.with_extension("out.txt");
        let mut cmd = puller.command("run");
        for (key, value) in env {
            cmd.env(key, value);
        }
        cmd.args(["--output", output]);
        if let Some(start) = clock_start {
            cmd.args(["--clock-start", start]);
        }
        cmd.args(["--clock-rate", &rate.to_string()]);
        cmd.stdout(std::fs::File::create(&stdout).unwrap());
        cmd.stderr(std::fs::File::create(logs.with_extension("err.txt")).unwrap());
        let child = cmd.spawn().expect("start skycast-puller run");
        PlayerRun {
            child,
            wav: logs.to_path_buf(),
            stdout,
            state_db: puller.data.join("state.sqlite"),
        }
    }

    /// Every play log row (of every run of this puller).
    pub fn plays(&self) -> Vec<PlayRow> {
        if !self.state_db.exists() {
            return Vec::new();
        }
        read_all(&self.state_db).unwrap_or_default()
    }

    /// Seconds of audio recorded so far.
    pub fn recorded_secs(&self) -> f64 {
        let len = std::fs::metadata(&self.wav).map(|m| m.len()).unwrap_or(0);
        (len.saturating_sub(44)) as f64 / WAV_BYTES_PER_SEC
    }

    /// Polls the play log until `done` holds; fails the test after `timeout` with
    /// the log and the player's output.
    pub async fn wait_for(
        &mut self,
        what: &str,
        timeout: Duration,
        done: impl Fn(&[PlayRow]) -> bool,
    ) -> Vec<PlayRow> {
        let deadline = Instant::now() + timeout;
        loop {
            let rows = self.plays();
            if done(&rows) {
                return rows;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "the player exited ({status}) while waiting for {what}\n{}",
                    self.transcript()
                );
            }
            if Instant::now() > deadline {
                panic!(
                    "timed out after {timeout:?} waiting for {what}\nplays: {rows:#?}\n{}",
                    self.transcript()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until at least `secs` of audio are recorded.
    pub async fn wait_for_audio(&mut self, secs: f64, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.recorded_secs() < secs {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "the player exited ({status}) before {secs} s of audio\n{}",
                    self.transcript()
                );
            }
            assert!(
                Instant::now() < deadline,
                "only {:.1} s of audio after {timeout:?}\n{}",
                self.recorded_secs(),
                self.transcript()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// What the player printed (run lines) and logged.
    pub fn transcript(&self) -> String {
        let out = std::fs::read_to_string(&self.stdout).unwrap_or_default();
        let err = std::fs::read_to_string(self.wav.with_extension("err.txt")).unwrap_or_default();
        format!("--- stdout\n{out}--- stderr\n{err}")
    }

    /// Stops the player with SIGTERM, as a shop's service manager would.
    pub async fn stop(mut self) -> String {
        if let Some(pid) = self.child.id() {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
        }
        let status = tokio::time::timeout(Duration::from_secs(20), self.child.wait())
            .await
            .expect("the player stops within 20 s of SIGTERM")
            .unwrap();
        let transcript = self.transcript();
        assert!(status.success(), "the player failed: {status}\n{transcript}");
        transcript
    }

    /// Kills the player with SIGKILL (no chance to clean up).
    pub async fn kill9(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }

    /// The player process's peak resident memory so far (VmHWM), in KiB.
    pub fn peak_memory_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()?)).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
        line.split_whitespace().nth(1)?.parse().ok()
    }
}

/// `started_at` of a row as an instant.
pub fn started(row: &PlayRow) -> DateTime<Utc> {
    row.started_at.parse().expect("started_at is RFC 3339")
}

/// Where a row starts in its run's recording, in seconds.
pub fn output_secs(row: &PlayRow) -> f64 {
    row.output_ms as f64 / 1000.0
}

/// Silence a file holds itself: before its first sound, after its last, and the
/// longest stretch anywhere in it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OwnSilence {
    pub lead_s: f64,
    pub trail_s: f64,
    pub longest_s: f64,
}

/// `file` (under content-example/) decoded by mpg123, an independent decoder.
pub fn decoded(file: &str) -> Recording {
    let dir = tempfile::tempdir().unwrap();
    let wav = dir.path().join("x.wav");
    let out = std::process::Command::new("mpg123")
        .args(["-q", "-w"])
        .arg(&wav)
        .arg(example(file))
        .output()
        .expect("mpg123 is installed by scripts/install-deps.sh");
    assert!(out.status.success(), "mpg123 {file}: {out:?}");
    Recording::open(&wav)
}

/// The own silence of each of `files`, by media id.
pub fn own_silences(files: &[&str], threshold_dbfs: f64) -> BTreeMap<String, OwnSilence> {
    files
        .iter()
        .map(|f| {
            let r = decoded(f);
            let end = r.duration_secs();
            let first = r.first_sound_after(0.0, threshold_dbfs).unwrap_or(end);
            let last = r.last_sound_before(end, threshold_dbfs).unwrap_or(0.0);
            let silence = OwnSilence {
                lead_s: first,
                trail_s: end - last,
                longest_s: r.longest_gap(threshold_dbfs, 0.0, end).len_s,
            };
            (file_id(&example(f)).0.to_string(), silence)
        })
        .collect()
}

/// The silence in `rec` (between `from_s` and `to_s`) that the files played do not
/// hold themselves: for each quiet stretch, its length minus what the file playing
/// when it began (its trail, or its longest inner silence) and the file starting
/// inside it (its lead) explain. Returns the worst stretch and that excess.
pub fn added_silence(
    rec: &Recording,
    rows: &[PlayRow],
    own: &BTreeMap<String, OwnSilence>,
    threshold_dbfs: f64,
    from_s: f64,
    to_s: f64,
) -> (Gap, f64) {
    let none = OwnSilence {
        lead_s: 0.0,
        trail_s: 0.0,
        longest_s: 0.0,
    };
    let silence_of = |row: &PlayRow| own.get(&row.media).copied().unwrap_or(none);
    let mut worst = (
        Gap {
            start_s: from_s,
            len_s: 0.0,
        },
        0.0,
    );
    for mut gap in rec.gaps(threshold_dbfs, 0.05) {
        let (start, end) = (gap.start_s.max(from_s), gap.end_s().min(to_s));
        if end <= start {
            continue;
        }
        gap = Gap {
            start_s: start,
            len_s: end - start,
        };
        let playing = rows.iter().rev().find(|r| output_secs(r) <= gap.start_s + 0.005);
        let starting = rows
            .iter()
            .find(|r| output_secs(r) > gap.start_s + 0.005 && output_secs(r) <= gap.end_s() + 0.01);
        let explained = match (playing, starting) {
            (Some(p), Some(n)) => (silence_of(p).trail_s + silence_of(n).lead_s).max(silence_of(p).longest_s),
            (Some(p), None) => silence_of(p).longest_s,
            (None, Some(n)) => silence_of(n).lead_s,
            (None, None) => 0.0,
        };
        let excess = gap.len_s - explained;
        if excess > worst.1 {
            worst = (gap, excess);
        }
    }
    worst
}
