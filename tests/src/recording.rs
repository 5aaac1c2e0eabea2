//! Analysis of what a player recorded (its `wav:PATH` output) for end-to-end tests: silences
//! and gaps, levels, EBU R128 loudness, frequencies, and where in `music/sweep-60s.mp3` the
//! sound heard at a given instant comes from.
//!
//! Levels are in dBFS relative to a full-scale square wave (a full-scale sine is −3.01 dBFS),
//! measured over both channels. Functions panic with a clear message on misuse: this is
//! test code.

use std::fmt;
use std::io::Cursor;
use std::path::Path;

use ebur128::{EbuR128, Mode};

/// Length of the windows levels are measured over, and so the resolution of gap and
/// sound-onset times (gap edges are then sharpened to the sample).
pub const WINDOW_S: f64 = 0.010;

/// `music/sweep-60s.mp3` is a linear sine sweep of instantaneous frequency
/// `SWEEP_START_HZ + SWEEP_HZ_PER_S · t` for `0 ≤ t ≤ SWEEP_LEN_S`.
pub const SWEEP_START_HZ: f64 = 200.0;
pub const SWEEP_HZ_PER_S: f64 = 30.0;
pub const SWEEP_LEN_S: f64 = 60.0;

/// How much later everything plays when an MP3 decoder ignores the LAME header's gapless
/// fields (1105 samples of encoder delay and decoder latency at 44.1 kHz, as mpg123
/// `--no-gapless` or symphonia without `enable_gapless`): the sweep position heard at a
/// given instant then reads this much early.
pub const MP3_UNTRIMMED_DELAY_S: f64 = 1105.0 / 44_100.0;

/// Below this a window is too quiet to hold the sweep.
const SWEEP_MIN_LEVEL_DBFS: f64 = -50.0;
/// Largest RMS deviation, in cycles, of zero crossings from a linear sweep: more means the
/// window holds something else (a mix, a cut, noise).
const SWEEP_MAX_RESIDUAL_CYCLES: f64 = 0.05;
/// Largest stretch without a zero crossing, in typical periods, in a window holding the sweep.
const SWEEP_MAX_PERIOD_SPREAD: f64 = 3.0;
/// Fewest zero crossings a sweep position is estimated from.
const SWEEP_MIN_CROSSINGS: usize = 8;

/// A stretch of (near) silence.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Gap {
    pub start_s: f64,
    pub len_s: f64,
}

impl Gap {
    pub fn end_s(&self) -> f64 {
        self.start_s + self.len_s
    }
}

/// A recording as stereo `f32` frames in [-1, 1]; a mono file is heard on both channels.
#[derive(Clone)]
pub struct Recording {
    pub sample_rate: u32,
    pub frames: Vec<[f32; 2]>,
}

impl fmt::Debug for Recording {
    // The samples themselves would flood a failing test's output.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Recording {{ {} Hz, {} frames, {:.3} s }}",
            self.sample_rate,
            self.frames.len(),
            self.duration_secs()
        )
    }
}

impl Recording {
    /// Reads a WAV file, also one still being written: when the header's data length lags
    /// behind the file (or is 0), every complete frame on disk is read anyway.
    pub fn open(path: &Path) -> Recording {
        let bytes = std::fs::read(path)
            .unwrap_or_else(|e| panic!("cannot read the recording {}: {e}", path.display()));
        Recording::from_wav_bytes(&bytes)
            .unwrap_or_else(|reason| panic!("{} is not a readable recording: {reason}", path.display()))
    }

    /// Parses the bytes of a WAV file (see [`Recording::open`]).
    pub fn from_wav_bytes(bytes: &[u8]) -> Result<Recording, String> {
        match (read_with_hound(bytes), WavLayout::parse(bytes)) {
            // hound trusts the header's data length, which lags behind a file being written.
            (Ok(read), Ok(layout)) if read.frames.len() >= layout.complete_frames(bytes.len()) => Ok(read),
            (_, Ok(layout)) => Ok(layout.read(bytes)),
            (Ok(read), Err(_)) => Ok(read),
            (Err(hound), Err(ours)) => Err(format!("{ours} (hound: {hound})")),
        }
    }

    pub fn from_frames(sample_rate: u32, frames: Vec<[f32; 2]>) -> Recording {
        assert!(sample_rate > 0, "a recording needs a sample rate");
        Recording { sample_rate, frames }
    }

    pub fn duration_secs(&self) -> f64 {
        self.frames.len() as f64 / self.sample_rate as f64
    }

    /// The part between `start_s` and `end_s` (clamped to the recording); its time starts at 0.
    pub fn slice(&self, start_s: f64, end_s: f64) -> Recording {
        let (from, to) = self.span(start_s, end_s);
        Recording::from_frames(self.sample_rate, self.frames[from..to].to_vec())
    }

    /// Stretches of at least `min_len_s` where the RMS over every 10 ms window stays below
    /// `threshold_dbfs`, in order. Edges are sharpened to the first/last sample below the
    /// threshold, so they are exact to well under 10 ms.
    pub fn gaps(&self, threshold_dbfs: f64, min_len_s: f64) -> Vec<Gap> {
        self.quiet_runs(threshold_dbfs, 0, self.frames.len())
            .into_iter()
            .map(|run| self.gap_of(run))
            // The epsilon keeps a gap of exactly `min_len_s` samples from being lost to rounding.
            .filter(|gap| gap.len_s + 1e-9 >= min_len_s)
            .collect()
    }

    /// The longest quiet stretch between `from_s` and `to_s` (cut at those bounds); a gap of
    /// length 0 at `from_s` when there is none.
    pub fn longest_gap(&self, threshold_dbfs: f64, from_s: f64, to_s: f64) -> Gap {
        let (from, to) = self.span(from_s, to_s);
        self.quiet_runs(threshold_dbfs, from, to)
            .into_iter()
            .max_by_key(|(start, end)| end - start)
            .map(|run| self.gap_of(run))
            .unwrap_or(Gap {
                start_s: self.time_of(from),
                len_s: 0.0,
            })
    }

    /// RMS level over both channels between `start_s` and `end_s`; −∞ for digital silence.
    pub fn rms_dbfs(&self, start_s: f64, end_s: f64) -> f64 {
        let (from, to) = self.non_empty_span(start_s, end_s);
        mean_square_dbfs(&self.frames[from..to])
    }

    /// Whether no 10 ms window between `start_s` and `end_s` reaches `threshold_dbfs`.
    pub fn is_silent(&self, start_s: f64, end_s: f64, threshold_dbfs: f64) -> bool {
        let (from, to) = self.non_empty_span(start_s, end_s);
        self.windows(from, to)
            .all(|(a, b)| mean_square_dbfs(&self.frames[a..b]) < threshold_dbfs)
    }

    /// EBU R128 integrated loudness (stereo, gated) between `start_s` and `end_s`; −∞ when the
    /// span is silent or shorter than one 400 ms gating block.
    pub fn loudness_lufs(&self, start_s: f64, end_s: f64) -> f64 {
        let (from, to) = self.non_empty_span(start_s, end_s);
        let mut meter = EbuR128::new(2, self.sample_rate, Mode::I)
            .unwrap_or_else(|e| panic!("no loudness meter for {} Hz: {e:?}", self.sample_rate));
        meter
            .add_frames_f32(self.frames[from..to].as_flattened())
            .unwrap_or_else(|e| panic!("loudness meter: {e:?}"));
        meter
            .loudness_global()
            .unwrap_or_else(|e| panic!("loudness meter: {e:?}"))
    }

    /// The frequency with the most energy between `start_s` and `end_s` (mono mix, Hann
    /// window, interpolated spectrum peak); 0 for silence. Exact to a small fraction of a
    /// hertz for a tone over 100 ms or more.
    pub fn dominant_frequency(&self, start_s: f64, end_s: f64) -> f64 {
        let (from, to) = self.non_empty_span(start_s, end_s);
        let mut mono = mono_mix(&self.frames[from..to]);
        remove_mean(&mut mono);
        let n = mono.len();
        // Zero padding (4×) makes the peak interpolation accurate; the cap bounds memory.
        let padded = (4 * n)
            .next_power_of_two()
            .min(n.next_power_of_two().max(1 << 22));
        let mut re = vec![0.0; padded];
        let mut im = vec![0.0; padded];
        for (i, (out, sample)) in re.iter_mut().zip(&mono).enumerate() {
            let hann = 0.5 - 0.5 * (2.0 * std::f64::consts::PI * i as f64 / n as f64).cos();
            *out = sample * hann;
        }
        fft_in_place(&mut re, &mut im);
        let magnitude = |k: usize| (re[k] * re[k] + im[k] * im[k]).sqrt();
        let Some(peak) = (1..padded / 2).max_by(|&a, &b| magnitude(a).total_cmp(&magnitude(b))) else {
            return 0.0;
        };
        if magnitude(peak) == 0.0 {
            return 0.0;
        }
        // A parabola through the log magnitudes of the peak and its neighbours.
        let (left, centre, right) = (
            magnitude(peak - 1).max(1e-300).ln(),
            magnitude(peak).ln(),
            magnitude(peak + 1).max(1e-300).ln(),
        );
        let curvature = left - 2.0 * centre + right;
        let offset = if curvature < 0.0 {
            0.5 * (left - right) / curvature
        } else {
            0.0
        };
        (peak as f64 + offset) * self.sample_rate as f64 / padded as f64
    }

    /// Where in `music/sweep-60s.mp3` the sound around `at_s` comes from, in seconds of the
    /// file: the instantaneous frequency at `at_s` (from a fit of a linear sweep to the
    /// interpolated zero crossings in the `window_s` centred on it) mapped through
    /// `t = (f − 200) / 30`. `None` when the window is silent or not a clean sweep.
    pub fn sweep_position(&self, at_s: f64, window_s: f64) -> Option<f64> {
        let half_s = window_s / 2.0;
        let (from, to) = self.span(at_s - half_s, at_s + half_s);
        // An empty window measures −∞, so it is caught here too.
        if mean_square_dbfs(&self.frames[from..to]) < SWEEP_MIN_LEVEL_DBFS {
            return None;
        }
        let mut mono = mono_mix(&self.frames[from..to]);
        remove_mean(&mut mono);
        // Times of upward zero crossings relative to `at_s`, in units of `half_s`
        // (which keeps the fit well conditioned); crossing number k is k cycles on.
        let crossings: Vec<f64> = mono
            .windows(2)
            .enumerate()
            .filter(|(_, pair)| pair[0] < 0.0 && pair[1] >= 0.0)
            .map(|(i, pair)| {
                let fraction = -pair[0] / (pair[1] - pair[0]);
                let time_s = (from + i) as f64 / self.sample_rate as f64 + fraction / self.sample_rate as f64;
                (time_s - at_s) / half_s
            })
            .collect();
        if crossings.len() < SWEEP_MIN_CROSSINGS {
            return None;
        }
        // A clean tone crosses zero all through the window: a stretch without crossings
        // (a dropout, or sound in only part of the window) would leave the fit extrapolating.
        let edge_u = |frame: usize| (frame as f64 / self.sample_rate as f64 - at_s) / half_s;
        let mut intervals: Vec<f64> = crossings.windows(2).map(|pair| pair[1] - pair[0]).collect();
        intervals.sort_by(f64::total_cmp);
        let typical_interval = intervals[intervals.len() / 2];
        let widest_interval = intervals
            .last()
            .copied()
            .unwrap_or(0.0)
            .max(crossings[0] - edge_u(from))
            .max(edge_u(to) - crossings[crossings.len() - 1]);
        if widest_interval > SWEEP_MAX_PERIOD_SPREAD * typical_interval {
            return None;
        }
        // A linear sweep has a quadratic phase: cycles(u) = a + b·u + c·u², and its
        // frequency at `at_s` (u = 0) is b / half_s.
        let points: Vec<(f64, f64)> = crossings
            .iter()
            .enumerate()
            .map(|(k, &u)| (u, k as f64))
            .collect();
        let [a, b, c] = fit_quadratic(&points)?;
        let residual = (points
            .iter()
            .map(|&(u, k)| (k - (a + b * u + c * u * u)).powi(2))
            .sum::<f64>()
            / points.len() as f64)
            .sqrt();
        if residual > SWEEP_MAX_RESIDUAL_CYCLES {
            return None;
        }
        let frequency = b / half_s;
        let position_s = (frequency - SWEEP_START_HZ) / SWEEP_HZ_PER_S;
        // One second of slack either side: a window at the very ends of the sweep.
        (-1.0..=SWEEP_LEN_S + 1.0)
            .contains(&position_s)
            .then_some(position_s)
    }

    /// Start of the first 10 ms window from `from_s` on whose RMS reaches `threshold_dbfs`.
    pub fn first_sound_after(&self, from_s: f64, threshold_dbfs: f64) -> Option<f64> {
        let (from, to) = self.span(from_s, self.duration_secs());
        self.windows(from, to)
            .find(|&(a, b)| mean_square_dbfs(&self.frames[a..b]) >= threshold_dbfs)
            .map(|(a, _)| self.time_of(a))
    }

    /// End of the last 10 ms window up to `to_s` whose RMS reaches `threshold_dbfs`.
    pub fn last_sound_before(&self, to_s: f64, threshold_dbfs: f64) -> Option<f64> {
        let (_, to) = self.span(0.0, to_s);
        let window = self.window_frames();
        (0..to.div_ceil(window))
            .map(|i| (to.saturating_sub((i + 1) * window), to - i * window))
            .find(|&(a, b)| mean_square_dbfs(&self.frames[a..b]) >= threshold_dbfs)
            .map(|(_, b)| self.time_of(b))
    }

    fn frame_at(&self, time_s: f64) -> usize {
        let frame = (time_s * self.sample_rate as f64).round().max(0.0) as usize;
        frame.min(self.frames.len())
    }

    fn time_of(&self, frame: usize) -> f64 {
        frame as f64 / self.sample_rate as f64
    }

    /// Frame range of a span, clamped to the recording (possibly empty).
    fn span(&self, start_s: f64, end_s: f64) -> (usize, usize) {
        let from = self.frame_at(start_s);
        (from, self.frame_at(end_s).max(from))
    }

    fn non_empty_span(&self, start_s: f64, end_s: f64) -> (usize, usize) {
        let (from, to) = self.span(start_s, end_s);
        assert!(
            from < to,
            "the span {start_s:.3}..{end_s:.3} s holds no audio: the recording lasts {:.3} s",
            self.duration_secs()
        );
        (from, to)
    }

    fn window_frames(&self) -> usize {
        ((self.sample_rate as f64 * WINDOW_S).round() as usize).max(1)
    }

    /// Consecutive 10 ms windows from `from` to `to`; the last may be shorter.
    fn windows(&self, from: usize, to: usize) -> impl Iterator<Item = (usize, usize)> {
        let window = self.window_frames();
        (from..to).step_by(window).map(move |a| (a, (a + window).min(to)))
    }

    /// Frame ranges between `from` and `to` made of windows below `threshold_dbfs`, each
    /// widened by the adjacent samples (at most one window) that are below it too.
    fn quiet_runs(&self, threshold_dbfs: f64, from: usize, to: usize) -> Vec<(usize, usize)> {
        let mut runs: Vec<(usize, usize)> = Vec::new();
        for (a, b) in self.windows(from, to) {
            if mean_square_dbfs(&self.frames[a..b]) >= threshold_dbfs {
                continue;
            }
            match runs.last_mut() {
                Some(run) if run.1 == a => run.1 = b,
                _ => runs.push((a, b)),
            }
        }
        let quiet_amplitude = 10f64.powf(threshold_dbfs / 20.0) as f32;
        let is_quiet = |frame: &[f32; 2]| frame.iter().all(|s| s.abs() < quiet_amplitude);
        let window = self.window_frames();
        for run in &mut runs {
            let earliest = run.0.saturating_sub(window).max(from);
            while run.0 > earliest && is_quiet(&self.frames[run.0 - 1]) {
                run.0 -= 1;
            }
            let latest = (run.1 + window).min(to);
            while run.1 < latest && is_quiet(&self.frames[run.1]) {
                run.1 += 1;
            }
        }
        runs
    }

    fn gap_of(&self, (start, end): (usize, usize)) -> Gap {
        Gap {
            start_s: self.time_of(start),
            len_s: self.time_of(end - start),
        }
    }
}

/// Mean square over both channels, in dB relative to full scale; −∞ for zeros or no frames.
fn mean_square_dbfs(frames: &[[f32; 2]]) -> f64 {
    if frames.is_empty() {
        return f64::NEG_INFINITY;
    }
    let sum: f64 = frames
        .iter()
        .flatten()
        .map(|&s| f64::from(s) * f64::from(s))
        .sum();
    10.0 * (sum / (2 * frames.len()) as f64).log10()
}

fn mono_mix(frames: &[[f32; 2]]) -> Vec<f64> {
    frames
        .iter()
        .map(|[l, r]| (f64::from(*l) + f64::from(*r)) / 2.0)
        .collect()
}

fn remove_mean(samples: &mut [f64]) {
    let mean = samples.iter().sum::<f64>() / samples.len().max(1) as f64;
    samples.iter_mut().for_each(|s| *s -= mean);
}

/// Least-squares `[a, b, c]` of `y = a + b·x + c·x²`; `None` when degenerate.
fn fit_quadratic(points: &[(f64, f64)]) -> Option<[f64; 3]> {
    // Normal equations: sums of x^(i+j) against sums of y·x^i.
    let mut matrix = [[0.0f64; 4]; 3];
    for &(x, y) in points {
        let powers = [1.0, x, x * x, x * x * x, x * x * x * x];
        for (i, row) in matrix.iter_mut().enumerate() {
            for (j, cell) in row.iter_mut().take(3).enumerate() {
                *cell += powers[i + j];
            }
            row[3] += y * powers[i];
        }
    }
    // Gaussian elimination with partial pivoting.
    for col in 0..3 {
        let pivot = (col..3).max_by(|&a, &b| matrix[a][col].abs().total_cmp(&matrix[b][col].abs()))?;
        matrix.swap(col, pivot);
        if matrix[col][col].abs() < 1e-12 {
            return None;
        }
        for row in col + 1..3 {
            let factor = matrix[row][col] / matrix[col][col];
            let pivot_row = matrix[col];
            for (cell, above) in matrix[row].iter_mut().zip(pivot_row).skip(col) {
                *cell -= factor * above;
            }
        }
    }
    let mut solution = [0.0; 3];
    for row in (0..3).rev() {
        let known: f64 = (row + 1..3).map(|j| matrix[row][j] * solution[j]).sum();
        solution[row] = (matrix[row][3] - known) / matrix[row][row];
    }
    Some(solution)
}

/// Radix-2 complex FFT, in place; the length must be a power of two.
fn fft_in_place(re: &mut [f64], im: &mut [f64]) {
    let n = re.len();
    assert!(
        n.is_power_of_two() && im.len() == n,
        "FFT length {n} is not a power of two"
    );
    let mut j = 0;
    for i in 1..n {
        let mut bit = n >> 1;
        while j & bit != 0 {
            j ^= bit;
            bit >>= 1;
        }
        j |= bit;
        if i < j {
            re.swap(i, j);
            im.swap(i, j);
        }
    }
    let mut len = 2;
    while len <= n {
        let angle = -2.0 * std::f64::consts::PI / len as f64;
        let (step_re, step_im) = (angle.cos(), angle.sin());
        for start in (0..n).step_by(len) {
            let (mut w_re, mut w_im) = (1.0, 0.0);
            for k in start..start + len / 2 {
                let m = k + len / 2;
                let t_re = re[m] * w_re - im[m] * w_im;
                let t_im = re[m] * w_im + im[m] * w_re;
                re[m] = re[k] - t_re;
                im[m] = im[k] - t_im;
                re[k] += t_re;
                im[k] += t_im;
                (w_re, w_im) = (w_re * step_re - w_im * step_im, w_re * step_im + w_im * step_re);
            }
        }
        len <<= 1;
    }
}

fn read_with_hound(bytes: &[u8]) -> Result<Recording, String> {
    let mut reader = hound::WavReader::new(Cursor::new(bytes)).map_err(|e| e.to_string())?;
    let spec = reader.spec();
    let samples: Vec<f32> = match spec.sample_format {
        hound::SampleFormat::Float => reader.samples::<f32>().collect::<Result<_, _>>(),
        hound::SampleFormat::Int => {
            let full_scale = (1u64 << (spec.bits_per_sample - 1)) as f32;
            reader
                .samples::<i32>()
                .map(|s| s.map(|s| s as f32 / full_scale))
                .collect::<Result<_, _>>()
        }
    }
    .map_err(|e| e.to_string())?;
    Ok(Recording::from_frames(
        spec.sample_rate,
        stereo_frames(&samples, usize::from(spec.channels)),
    ))
}

/// Interleaved samples of `channels` channels as stereo frames (mono on both sides, channels
/// past the second dropped); an incomplete last frame is dropped.
fn stereo_frames(samples: &[f32], channels: usize) -> Vec<[f32; 2]> {
    samples
        .chunks_exact(channels)
        .map(|frame| [frame[0], frame[if channels > 1 { 1 } else { 0 }]])
        .collect()
}

/// Where the samples of a WAV file are, read from its chunks without trusting the data
/// chunk's length: a recording has no chunk after its data, and its header may lag.
struct WavLayout {
    channels: usize,
    sample_rate: u32,
    bits: usize,
    float: bool,
    data_start: usize,
}

const WAVE_FORMAT_PCM: u16 = 1;
const WAVE_FORMAT_IEEE_FLOAT: u16 = 3;
const WAVE_FORMAT_EXTENSIBLE: u16 = 0xFFFE;

impl WavLayout {
    fn parse(bytes: &[u8]) -> Result<WavLayout, String> {
        let u16_at = |at: usize| u16::from_le_bytes([bytes[at], bytes[at + 1]]);
        let u32_at = |at: usize| u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
        if bytes.len() < 12 || &bytes[0..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
            return Err("no RIFF/WAVE header".into());
        }
        let mut format = None;
        let mut at = 12;
        while at + 8 <= bytes.len() {
            let (id, size, body) = (&bytes[at..at + 4], u32_at(at + 4) as usize, at + 8);
            if id == b"fmt " {
                if size < 16 || body + 16 > bytes.len() {
                    return Err("the fmt chunk is cut short".into());
                }
                let mut tag = u16_at(body);
                if tag == WAVE_FORMAT_EXTENSIBLE && size >= 26 && body + 26 <= bytes.len() {
                    // The sub-format GUID starts with the plain format tag.
                    tag = u16_at(body + 24);
                }
                format = Some((tag, u16_at(body + 2), u32_at(body + 4), u16_at(body + 14)));
            } else if id == b"data" {
                let (tag, channels, sample_rate, bits) = format.ok_or("the data chunk comes before fmt")?;
                let supported = match tag {
                    WAVE_FORMAT_PCM => matches!(bits, 8 | 16 | 24 | 32),
                    WAVE_FORMAT_IEEE_FLOAT => bits == 32,
                    _ => false,
                };
                if !supported || channels == 0 || sample_rate == 0 {
                    return Err(format!(
                        "unsupported format: tag {tag}, {channels} channels, {sample_rate} Hz, {bits} bits"
                    ));
                }
                return Ok(WavLayout {
                    channels: usize::from(channels),
                    sample_rate,
                    bits: usize::from(bits),
                    float: tag == WAVE_FORMAT_IEEE_FLOAT,
                    data_start: body,
                });
            }
            // Chunks are padded to an even length.
            at = body.saturating_add(size).saturating_add(size & 1);
        }
        Err("no data chunk (the header is incomplete)".into())
    }

    fn frame_bytes(&self) -> usize {
        self.channels * self.bits / 8
    }

    fn complete_frames(&self, file_len: usize) -> usize {
        file_len.saturating_sub(self.data_start) / self.frame_bytes()
    }

    fn read(&self, bytes: &[u8]) -> Recording {
        let sample_bytes = self.bits / 8;
        let end = self.data_start + self.complete_frames(bytes.len()) * self.frame_bytes();
        let samples: Vec<f32> = bytes[self.data_start..end]
            .chunks_exact(sample_bytes)
            .map(|b| match (self.float, sample_bytes) {
                (true, _) => f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
                // 8-bit WAV is unsigned, centred on 128.
                (false, 1) => (f32::from(b[0]) - 128.0) / 128.0,
                (false, 2) => f32::from(i16::from_le_bytes([b[0], b[1]])) / 32_768.0,
                // Shifting into the top of an i32 sign-extends 24-bit samples.
                (false, 3) => (i32::from_le_bytes([0, b[0], b[1], b[2]]) >> 8) as f32 / 8_388_608.0,
                (false, _) => i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f32 / 2_147_483_648.0,
            })
            .collect();
        Recording::from_frames(self.sample_rate, stereo_frames(&samples, self.channels))
    }
}

#[cfg(test)]
mod tests {
    use std::f64::consts::PI;
    use std::path::PathBuf;

    use super::*;

    const RATE: u32 = 44_100;

    /// Writes 16-bit stereo, as the player does, with the same signal on both channels.
    fn write_wav(path: &Path, mono: &[f64]) {
        let spec = hound::WavSpec {
            channels: 2,
            sample_rate: RATE,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut writer = hound::WavWriter::create(path, spec).unwrap();
        for &s in mono {
            let quantised = (s * 32_767.0).round().clamp(-32_768.0, 32_767.0) as i16;
            writer.write_sample(quantised).unwrap();
            writer.write_sample(quantised).unwrap();
        }
        writer.finalize().unwrap();
    }

    fn tone(hz: f64, amplitude: f64, secs: f64) -> Vec<f64> {
        let n = (secs * RATE as f64).round() as usize;
        (0..n)
            .map(|i| amplitude * (2.0 * PI * hz * i as f64 / RATE as f64).sin())
            .collect()
    }

    fn silence(secs: f64) -> Vec<f64> {
        vec![0.0; (secs * RATE as f64).round() as usize]
    }

    /// The sweep of `sweep-60s.mp3` from `from_s` to `to_s` of the file.
    fn sweep(from_s: f64, to_s: f64, amplitude: f64) -> Vec<f64> {
        let first = (from_s * RATE as f64).round() as usize;
        let last = (to_s * RATE as f64).round() as usize;
        (first..last)
            .map(|i| {
                let t = i as f64 / RATE as f64;
                let cycles = SWEEP_START_HZ * t + SWEEP_HZ_PER_S / 2.0 * t * t;
                amplitude * (2.0 * PI * cycles).sin()
            })
            .collect()
    }

    fn recording_of(mono: &[f64]) -> (tempfile::TempDir, PathBuf, Recording) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("recording.wav");
        write_wav(&path, mono);
        let recording = Recording::open(&path);
        (dir, path, recording)
    }

    fn assert_near(what: &str, got: f64, want: f64, tolerance: f64) {
        assert!(
            (got - want).abs() <= tolerance,
            "{what}: got {got:.4}, want {want:.4} ± {tolerance}"
        );
    }

    #[test]
    fn a_silence_between_tones_is_found_to_the_window() {
        let (gap_start, gap_len) = (1.2345, 0.7503);
        let signal = [
            tone(440.0, 0.5, gap_start),
            silence(gap_len),
            tone(440.0, 0.5, 1.0),
        ]
        .concat();
        let (_dir, _, rec) = recording_of(&signal);
        assert_eq!(rec.sample_rate, RATE);
        assert_near("duration", rec.duration_secs(), gap_start + gap_len + 1.0, 1e-4);

        let gaps = rec.gaps(-40.0, 0.1);
        assert_eq!(gaps.len(), 1, "{gaps:?}");
        assert_near("gap start", gaps[0].start_s, gap_start, WINDOW_S);
        assert_near("gap length", gaps[0].len_s, gap_len, WINDOW_S);
        assert!(rec.gaps(-40.0, gap_len + 0.05).is_empty());
        assert_eq!(rec.longest_gap(-40.0, 0.0, rec.duration_secs()), gaps[0]);
        let cut = rec.longest_gap(-40.0, 1.5, 1.7);
        assert_near("gap cut at the bounds", cut.len_s, 0.2, 1e-6);
        assert_eq!(rec.longest_gap(-40.0, 0.0, 1.0).len_s, 0.0);

        let resumes = rec.first_sound_after(gap_start + 0.1, -40.0).unwrap();
        assert_near("sound resumes", resumes, gap_start + gap_len, WINDOW_S);
        let stops = rec.last_sound_before(gap_start + 0.5, -40.0).unwrap();
        assert_near("sound stops", stops, gap_start, WINDOW_S);
        assert_eq!(rec.first_sound_after(rec.duration_secs() + 1.0, -40.0), None);
        assert_eq!(rec.last_sound_before(0.0, -40.0), None);

        assert!(rec.is_silent(gap_start + 0.01, gap_start + gap_len - 0.01, -60.0));
        assert!(!rec.is_silent(gap_start - 0.1, gap_start + 0.1, -60.0));
        // A sine of amplitude 0.5 has an RMS of 0.5/√2: −9.03 dBFS.
        assert_near("tone level", rec.rms_dbfs(0.1, 1.1), -9.03, 0.05);
        assert_eq!(rec.rms_dbfs(gap_start + 0.1, gap_start + 0.2), f64::NEG_INFINITY);

        let part = rec.slice(gap_start - 0.5, gap_start + gap_len + 0.5);
        assert_near("slice length", part.duration_secs(), gap_len + 1.0, 1e-4);
        assert_near(
            "gap in the slice",
            part.gaps(-40.0, 0.1)[0].start_s,
            0.5,
            WINDOW_S,
        );
    }

    #[test]
    fn loudness_follows_gain_and_matches_the_ebu_reference() {
        let (_dir, _, rec) = recording_of(&[tone(1000.0, 0.5, 3.0), tone(1000.0, 0.5 / 3.981, 3.0)].concat());
        // EBU Tech 3341: a 1 kHz stereo sine peaking at −6.02 dBFS measures −6.02 LUFS.
        let loud = rec.loudness_lufs(0.0, 3.0);
        assert_near("loudness of the 1 kHz reference", loud, -6.02, 0.1);
        let quiet = rec.loudness_lufs(3.0, 6.0);
        assert_near("12 dB lower", loud - quiet, 12.0, 0.3);

        let (_dir, _, noise) = recording_of(
            &(0..3 * RATE as usize)
                // A fixed pseudo-random sequence: the test must not vary from run to run.
                .map(|i| ((i as f64 * 12.9898).sin() * 43_758.545).fract() * 0.5)
                .collect::<Vec<_>>(),
        );
        let (_dir, _, quieter) = recording_of(
            &(0..3 * RATE as usize)
                .map(|i| ((i as f64 * 12.9898).sin() * 43_758.545).fract() * 0.5 / 3.981)
                .collect::<Vec<_>>(),
        );
        let difference = noise.loudness_lufs(0.0, 3.0) - quieter.loudness_lufs(0.0, 3.0);
        assert_near("noise 12 dB lower", difference, 12.0, 0.3);
        assert_eq!(rec.slice(0.0, 0.3).loudness_lufs(0.0, 0.3), f64::NEG_INFINITY);
    }

    #[test]
    fn the_dominant_frequency_of_a_tone_is_exact() {
        let (_dir, _, rec) = recording_of(&[tone(440.0, 0.5, 1.0), tone(1234.5, 0.1, 1.0)].concat());
        assert_near("440 Hz", rec.dominant_frequency(0.2, 0.3), 440.0, 0.2);
        assert_near("1234.5 Hz", rec.dominant_frequency(1.1, 1.9), 1234.5, 0.2);
        assert_near(
            "mixed: the stronger",
            rec.dominant_frequency(0.5, 1.3),
            440.0,
            1.0,
        );
    }

    #[test]
    fn a_synthetic_sweep_gives_its_position_within_20_ms() {
        // Half a second of silence, then the sweep from 10 s to 40 s of the file.
        let lead_s = 0.5;
        let signal = [silence(lead_s), sweep(10.0, 40.0, 0.5)].concat();
        let (_dir, _, rec) = recording_of(&signal);
        let quieter =
            Recording::from_frames(RATE, rec.frames.iter().map(|[l, r]| [l * 0.1, r * 0.1]).collect());
        for at_s in [0.6, 1.0, 5.25, 12.0, 20.0, 29.0, 30.4] {
            let want = at_s - lead_s + 10.0;
            for (gain, rec) in [("0 dB", &rec), ("-20 dB", &quieter)] {
                let got = rec
                    .sweep_position(at_s, 0.1)
                    .unwrap_or_else(|| panic!("no sweep at {at_s} s ({gain})"));
                assert_near(&format!("position at {at_s} s ({gain})"), got, want, 0.020);
            }
        }
        assert_near(
            "frequency at 20 s",
            rec.dominant_frequency(19.95, 20.05),
            SWEEP_START_HZ + SWEEP_HZ_PER_S * (20.0 - lead_s + 10.0),
            1.0,
        );
        assert_eq!(rec.sweep_position(0.2, 0.1), None, "silence");
        // The window straddles the cut from silence into the sweep.
        assert_eq!(rec.sweep_position(lead_s, 0.1), None, "cut");
        let mut dropout = rec.clone();
        let at = (12.0 * RATE as f64) as usize;
        dropout.frames[at..at + 441].fill([0.0, 0.0]);
        assert_eq!(dropout.sweep_position(12.0, 0.1), None, "10 ms dropout");
        assert!(dropout.sweep_position(12.2, 0.1).is_some());
    }

    #[test]
    fn a_sweep_mixed_with_another_tone_is_not_a_clean_sweep() {
        let mixed: Vec<f64> = sweep(20.0, 21.0, 0.4)
            .iter()
            .zip(tone(3000.0, 0.3, 1.0))
            .map(|(a, b)| a + b)
            .collect();
        let (_dir, _, rec) = recording_of(&mixed);
        assert_eq!(rec.sweep_position(0.5, 0.1), None);
    }

    #[test]
    fn a_recording_whose_header_lags_still_opens_in_full() {
        let signal = tone(440.0, 0.5, 1.0);
        let (_dir, path, full) = recording_of(&signal);
        assert_eq!(full.frames.len(), signal.len());
        let written = std::fs::read(&path).unwrap();
        assert_eq!(&written[36..40], b"data", "hound writes a 44-byte header");
        let data_len = (written.len() - 44) as u32;
        for stale_len in [0, data_len / 2, u32::MAX] {
            let mut bytes = written.clone();
            bytes[40..44].copy_from_slice(&stale_len.to_le_bytes());
            bytes[4..8].copy_from_slice(&(stale_len.saturating_add(36)).to_le_bytes());
            // A frame only half written yet.
            bytes.extend_from_slice(&[1, 2, 3]);
            let rec =
                Recording::from_wav_bytes(&bytes).unwrap_or_else(|e| panic!("data length {stale_len}: {e}"));
            assert_eq!(rec.frames.len(), signal.len(), "data length {stale_len}");
            assert_eq!(rec.frames, full.frames, "data length {stale_len}");
        }
        assert!(Recording::from_wav_bytes(&written[..30]).is_err());
        assert!(Recording::from_wav_bytes(b"hello").is_err());
    }

    /// `content-example/music/sweep-60s.mp3` decoded by mpg123, with or without its
    /// gapless trimming (a player that ignores the LAME header hears ~25 ms more at the start).
    fn decoded_sweep(dir: &Path, gapless: bool) -> Recording {
        let mp3 = crate::example("music/sweep-60s.mp3");
        let wav = dir.join(if gapless { "gapless.wav" } else { "padded.wav" });
        let out = std::process::Command::new("mpg123")
            .arg("-q")
            .arg(if gapless { "--gapless" } else { "--no-gapless" })
            .arg("-w")
            .arg(&wav)
            .arg(&mp3)
            .output()
            .unwrap_or_else(|e| panic!("mpg123 is needed to decode test MP3s (apt-get install mpg123): {e}"));
        assert!(
            out.status.success(),
            "mpg123 {}: {}",
            mp3.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        Recording::open(&wav)
    }

    #[test]
    fn the_real_sweep_file_gives_its_position_within_50_ms() {
        let dir = tempfile::tempdir().unwrap();
        for gapless in [true, false] {
            let rec = decoded_sweep(dir.path(), gapless);
            assert_near("sweep length", rec.duration_secs(), SWEEP_LEN_S, 0.1);
            for at_s in [0.5, 5.0, 10.0, 20.0, 30.0, 40.0, 50.0, 59.5] {
                let got = rec
                    .sweep_position(at_s, 0.1)
                    .unwrap_or_else(|| panic!("no sweep at {at_s} s (gapless: {gapless})"));
                eprintln!(
                    "sweep (gapless: {gapless}) at {at_s:>4} s: position {got:.4} s, error {:+.1} ms",
                    (got - at_s) * 1000.0
                );
                assert_near(
                    &format!("position at {at_s} s (gapless: {gapless})"),
                    got,
                    at_s,
                    0.050,
                );
                let delay_s = if gapless { 0.0 } else { MP3_UNTRIMMED_DELAY_S };
                assert_near("position, decoder delay aside", got, at_s - delay_s, 0.002);
            }
        }
    }

    #[test]
    fn a_decoded_mono_file_measures_what_the_publisher_measured() {
        let dir = tempfile::tempdir().unwrap();
        let rec = decoded_sweep(dir.path(), true);
        let bytes = std::fs::read(crate::example("music/sweep-60s.mp3")).unwrap();
        let published = skycast_publisher::media::inspect_mp3(&bytes)
            .unwrap()
            .loudness_lufs
            .expect("the sweep has a loudness");
        let heard = rec.loudness_lufs(0.0, rec.duration_secs());
        eprintln!("sweep-60s.mp3: published {published} LUFS, heard {heard:.2} LUFS");
        // The publisher counts a mono file as dual mono, as the shop hears it on two channels.
        assert_near("loudness heard vs published", heard, published, 0.2);
    }
}
