//! What playback costs a shop's machine: CPU per hour of audio of the player's
//! chain (`render_files` into an unpaced `null` output) next to `mpg123`
//! decoding the same files, and the peak memory of the process while rendering.
//!
//! Run: `cargo bench -p skycast-puller --bench playback`. Needs `mpg123`
//! (`bash scripts/install-deps.sh`).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use skycast_puller::audio::{open_output, render_files, OutputSpec, Pace, RenderStats};

/// The music is played round after round until at least this much audio.
const MIN_AUDIO: Duration = Duration::from_secs(600);
/// About 23 ms, a block size a player would use.
const BLOCK_FRAMES: usize = 1024;
const GAIN_DB: f64 = -6.0;

fn main() -> ExitCode {
    let hwm_start = vm_hwm_mib();
    if Command::new("mpg123")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_err()
    {
        eprintln!("playback bench: `mpg123` was not found; it is the reference decoder. Install it with");
        eprintln!("  bash scripts/install-deps.sh");
        return ExitCode::FAILURE;
    }
    let music = Path::new(env!("CARGO_MANIFEST_DIR")).join("../content-example/music");
    let files = mp3s_in(&music);
    if files.is_empty() {
        eprintln!("playback bench: no MP3 in {}", music.display());
        return ExitCode::FAILURE;
    }

    // One round first: it warms the page cache and says how long a round lasts.
    let round = render(&files).stats;
    let rounds = (MIN_AUDIO.as_secs_f64() / round.duration().as_secs_f64()).ceil() as usize;
    let playlist: Vec<PathBuf> = files.iter().cycle().take(files.len() * rounds).cloned().collect();

    let cpu0 = cpu(libc::RUSAGE_SELF);
    let run = render(&playlist);
    let skycast_cpu = cpu(libc::RUSAGE_SELF) - cpu0;
    let audio = run.stats.duration();
    let (rss, hwm) = (max_rss_mib(), vm_hwm_mib());

    let cpu0 = cpu(libc::RUSAGE_CHILDREN);
    let t0 = Instant::now();
    for path in &playlist {
        let devnull = File::create("/dev/null").expect("/dev/null opens");
        let status = Command::new("mpg123")
            .args(["-q", "-s"])
            .arg(path)
            .stdout(devnull)
            .status()
            .expect("mpg123 starts");
        assert!(status.success(), "mpg123 failed on {}: {status}", path.display());
    }
    let mpg123_wall = t0.elapsed();
    let mpg123_cpu = cpu(libc::RUSAGE_CHILDREN) - cpu0;

    let hours = audio.as_secs_f64() / 3600.0;
    let per_hour = |d: Duration| d.as_secs_f64() / hours;
    println!(
        "playback bench: {} files x {rounds} rounds = {} plays, {:.1} s of audio ({:.1} min), \
         blocks of {BLOCK_FRAMES} frames",
        files.len(),
        run.stats.files,
        audio.as_secs_f64(),
        audio.as_secs_f64() / 60.0
    );
    println!(
        "  skycast render_files -> null, unpaced: {:>7.3} s CPU ({:.3} s wall) = {:>6.2} s CPU \
         per hour of audio ({:.0}x real time)",
        skycast_cpu.as_secs_f64(),
        run.wall.as_secs_f64(),
        per_hour(skycast_cpu),
        audio.as_secs_f64() / run.wall.as_secs_f64()
    );
    println!(
        "  mpg123 -q -s FILE > /dev/null:         {:>7.3} s CPU ({:.3} s wall) = {:>6.2} s CPU \
         per hour of audio (s16, channels as in the file, one process per file)",
        mpg123_cpu.as_secs_f64(),
        mpg123_wall.as_secs_f64(),
        per_hour(mpg123_cpu)
    );
    println!(
        "  ratio skycast / mpg123 (CPU): {:.2}",
        skycast_cpu.as_secs_f64() / mpg123_cpu.as_secs_f64()
    );
    println!(
        "  peak RSS of the bench process (harness included): VmHWM {} (at start, before decoding: {})",
        fmt_mib(hwm),
        fmt_mib(hwm_start)
    );
    println!(
        "  ru_maxrss {rss:.1} MiB (Linux keeps the peak of the process image before execve: run under \
         cargo, this can be cargo's own peak; VmHWM is not affected)"
    );
    ExitCode::SUCCESS
}

struct Run {
    stats: RenderStats,
    wall: Duration,
}

fn render(paths: &[PathBuf]) -> Run {
    let mut out = open_output(&OutputSpec::Null, Pace::UNPACED).expect("the null output opens");
    let t0 = Instant::now();
    let stats = render_files(paths, GAIN_DB, out.as_mut(), BLOCK_FRAMES).expect("the example music renders");
    Run {
        stats,
        wall: t0.elapsed(),
    }
}

fn mp3s_in(dir: &Path) -> Vec<PathBuf> {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "mp3"))
        .collect();
    files.sort();
    files
}

fn rusage(who: libc::c_int) -> libc::rusage {
    // SAFETY: rusage is plain data (all-zero is a valid value) and getrusage
    // only writes into the struct it is given.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::getrusage(who, &mut ru) };
    assert_eq!(rc, 0, "getrusage: {}", std::io::Error::last_os_error());
    ru
}

/// User plus system CPU time of `who` (this process, or its waited-for children).
fn cpu(who: libc::c_int) -> Duration {
    let ru = rusage(who);
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Peak resident set size so far; Linux reports it in KiB.
fn max_rss_mib() -> f64 {
    rusage(libc::RUSAGE_SELF).ru_maxrss as f64 / 1024.0
}

fn vm_hwm_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn fmt_mib(v: Option<f64>) -> String {
    v.map_or_else(|| "unavailable".to_string(), |v| format!("{v:.1} MiB"))
}
