//! Audio primitives for the player: MP3 tracks decoded to one fixed format, the
//! outputs (speaker, null, wav) that pace playback in real time, and gain ramps.
//!
//! Everything inside the player is interleaved stereo `f32` at [`SAMPLE_RATE`];
//! tracks in other formats are converted when opened.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

mod discipline;
mod null;
mod pacer;
mod render;
mod resample;
mod speaker;
mod supervised;
mod track;
mod wav;

pub use discipline::{ClockReading, Discipline};
pub use render::{render_files, RenderStats, RENDER_FADE_IN};
pub use supervised::{Backoff, Change, Down, SupervisedOutput};
pub use track::Track;

pub const SAMPLE_RATE: u32 = 44_100;
pub const CHANNELS: usize = 2;

/// Frames (one sample per channel) in `d`.
pub fn frames_in(d: Duration) -> u64 {
    (d.as_secs_f64() * SAMPLE_RATE as f64).round() as u64
}

/// Duration of `frames` frames.
pub fn frames_duration(frames: u64) -> Duration {
    Duration::from_secs_f64(frames as f64 / SAMPLE_RATE as f64)
}

pub fn db_to_gain(db: f64) -> f32 {
    10f64.powf(db / 20.0) as f32
}

#[derive(Debug, thiserror::Error)]
pub enum AudioError {
    #[error("cannot open {path}: {source}")]
    Open { path: PathBuf, source: std::io::Error },
    #[error("{path} does not decode as MP3: {reason}")]
    Decode { path: PathBuf, reason: String },
    #[error("no sound device could be opened ({reason}): use --output null or --output wav:PATH on a machine without one")]
    NoDevice { reason: String },
    #[error("the sound device has taken no audio for {secs} s and is not released yet: check its cable and driver; it is opened again as soon as it moves")]
    DeviceStuck { secs: u64 },
    #[error("cannot write the recording {path}: {reason}")]
    Wav { path: PathBuf, reason: String },
    #[error("`{0}` is not an output: use speaker, null or wav:PATH")]
    BadSpec(String),
}

/// Where the sound goes: `speaker`, `null` or `wav:PATH`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum OutputSpec {
    #[default]
    Speaker,
    Null,
    Wav(PathBuf),
}

impl OutputSpec {
    /// Whether a sound device sets the pace (its own crystal, or none at all), so
    /// that the player must keep its schedule on the wall clock itself (see
    /// [`Discipline`]); `null` and `wav` keep an exact software pace.
    pub fn paced_by_device(&self) -> bool {
        matches!(self, OutputSpec::Speaker)
    }
}

impl FromStr for OutputSpec {
    type Err = AudioError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "speaker" => Ok(OutputSpec::Speaker),
            "null" => Ok(OutputSpec::Null),
            _ => match s.strip_prefix("wav:") {
                Some(p) if !p.is_empty() => Ok(OutputSpec::Wav(PathBuf::from(p))),
                _ => Err(AudioError::BadSpec(s.to_string())),
            },
        }
    }
}

impl fmt::Display for OutputSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OutputSpec::Speaker => f.write_str("speaker"),
            OutputSpec::Null => f.write_str("null"),
            OutputSpec::Wav(p) => write!(f, "wav:{}", p.display()),
        }
    }
}

/// How fast outputs consume audio: `rate` seconds of audio per second of wall
/// time (1.0 = real time). `None` = as fast as possible (benchmarks).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pace(pub Option<f64>);

impl Pace {
    pub const REAL_TIME: Pace = Pace(Some(1.0));
    pub const UNPACED: Pace = Pace(None);
}

/// A sink for the player's audio. `write` blocks to keep pace, so the player's
/// sample count is its clock.
pub trait Output {
    /// Plays one block of interleaved stereo samples (re-opening the device if it
    /// was released).
    fn write(&mut self, samples: &[f32]) -> Result<(), AudioError>;
    /// Lets `frames` of silence pass with the device released (out of hours).
    /// `wav` records them as silence so the recording stays aligned with the clock.
    fn idle(&mut self, frames: u64) -> Result<(), AudioError>;
    /// Whether the device is currently released.
    fn is_released(&self) -> bool;
    /// Flushes what is buffered (the wav header is kept valid after every block).
    fn finish(&mut self) -> Result<(), AudioError>;
}

/// Opens the output `spec` names. `null` and `wav` sleep after each `write`
/// and `idle` so that audio leaves them at `pace` (an absolute schedule from
/// the first frame: a late caller catches up rather than drifting). `speaker`
/// is paced by the device, whatever `pace` says, except that `idle` sleeps the
/// idle time at `pace`. The speaker's output is not `Send`: open it on the
/// thread that plays.
pub fn open_output(spec: &OutputSpec, pace: Pace) -> Result<Box<dyn Output>, AudioError> {
    Ok(match spec {
        OutputSpec::Speaker => Box::new(speaker::SpeakerOutput::open(pace)?),
        OutputSpec::Null => Box::new(null::NullOutput::new(pace)),
        OutputSpec::Wav(path) => Box::new(wav::WavOutput::create(path, pace)?),
    })
}

/// A linear gain ramp over a number of frames, for fades and ducking.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ramp {
    pub from: f32,
    pub to: f32,
    pub frames: u64,
    pub done: u64,
}

impl Ramp {
    pub fn new(from: f32, to: f32, frames: u64) -> Ramp {
        Ramp {
            from,
            to,
            frames,
            done: 0,
        }
    }
    pub fn steady(gain: f32) -> Ramp {
        Ramp::new(gain, gain, 0)
    }
    /// The gain the ramp has reached.
    pub fn current(&self) -> f32 {
        if self.done >= self.frames {
            self.to
        } else {
            self.from + (self.to - self.from) * (self.done as f32 / self.frames as f32)
        }
    }
    pub fn is_done(&self) -> bool {
        self.done >= self.frames
    }
    /// Multiplies interleaved stereo `samples` by the ramp (times `scale`) and advances it.
    pub fn apply(&mut self, samples: &mut [f32], scale: f32) {
        for frame in samples.chunks_mut(CHANNELS) {
            let g = self.current() * scale;
            for s in frame {
                *s *= g;
            }
            if self.done < self.frames {
                self.done += 1;
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod test_util {
    use std::path::PathBuf;

    /// A file of the repository's `content-example/`.
    pub(crate) fn example(rel: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../content-example")
            .join(rel)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::test_util::example;
    use super::*;

    /// `secs` of a 440 Hz sine at half scale, interleaved stereo.
    fn tone(secs: f64) -> Vec<f32> {
        let frames = frames_in(Duration::from_secs_f64(secs));
        (0..frames)
            .flat_map(|i| {
                let s = 0.5 * (2.0 * std::f64::consts::PI * 440.0 * i as f64 / SAMPLE_RATE as f64).sin();
                [s as f32; CHANNELS]
            })
            .collect()
    }

    fn read_wav(path: &std::path::Path) -> (hound::WavSpec, Vec<i16>) {
        let mut reader = hound::WavReader::open(path).unwrap();
        let samples = reader.samples::<i16>().collect::<Result<Vec<_>, _>>().unwrap();
        (reader.spec(), samples)
    }

    #[test]
    fn output_specs_round_trip() {
        for text in ["speaker", "null", "wav:/tmp/x.wav", "wav:relative/rec.wav"] {
            let spec: OutputSpec = text.parse().unwrap();
            assert_eq!(spec.to_string(), text);
        }
        assert_eq!(
            "wav:/tmp/x.wav".parse::<OutputSpec>().unwrap(),
            OutputSpec::Wav("/tmp/x.wav".into())
        );
        for bad in ["wav:", "foo", "", "Speaker", "wav"] {
            match bad.parse::<OutputSpec>() {
                Err(e @ AudioError::BadSpec(_)) => {
                    assert!(e.to_string().contains("speaker, null or wav:PATH"))
                }
                other => panic!("{bad:?} gave {other:?}"),
            }
        }
    }

    #[test]
    fn wav_records_tone_idle_tone_frame_exact() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/dir/rec.wav");
        let mut out = open_output(&OutputSpec::Wav(path.clone()), Pace::UNPACED).unwrap();
        assert!(!out.is_released());
        out.write(&tone(1.0)).unwrap();
        assert!(!out.is_released());
        out.idle(frames_in(Duration::from_millis(500))).unwrap();
        assert!(out.is_released());
        out.write(&tone(0.5)).unwrap();
        assert!(!out.is_released());

        // Not finished yet: what a killed player leaves behind must already be valid.
        let (spec, before_finish) = read_wav(&path);
        assert_eq!(before_finish.len(), 2 * 88_200);

        out.finish().unwrap();
        drop(out);
        let (spec_after, samples) = read_wav(&path);
        assert_eq!(spec, spec_after);
        assert_eq!(
            (spec.channels, spec.sample_rate, spec.bits_per_sample),
            (2, 44_100, 16)
        );
        assert_eq!(spec.sample_format, hound::SampleFormat::Int);
        assert_eq!(samples, before_finish);
        let frames: Vec<&[i16]> = samples.chunks(2).collect();
        assert_eq!(frames.len(), 88_200);
        let peak = |r: std::ops::Range<usize>| frames[r].iter().map(|f| f[0].unsigned_abs()).max().unwrap();
        assert!(peak(0..44_100) > 16_000, "tone in the first second");
        assert_eq!(peak(44_100..66_150), 0, "silence while idle");
        assert!(peak(66_150..88_200) > 16_000, "tone after the idle");
        // Half scale: 0.5 * 32767 rounds to 16384 at most.
        assert!(peak(0..88_200) <= 16_384);
    }

    #[test]
    fn wav_clamps_out_of_range_samples() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("clamp.wav");
        let mut out = open_output(&OutputSpec::Wav(path.clone()), Pace::UNPACED).unwrap();
        out.write(&[2.0, -3.0, 1.0, -1.0, f32::NAN, 0.0]).unwrap();
        out.finish().unwrap();
        assert_eq!(read_wav(&path).1, [32_767, -32_767, 32_767, -32_767, 0, 0]);
    }

    #[test]
    fn wav_errors_name_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a-file");
        std::fs::write(&file, b"x").unwrap();
        let path = file.join("rec.wav");
        match open_output(&OutputSpec::Wav(path.clone()), Pace::UNPACED) {
            Err(e @ AudioError::Wav { .. }) => {
                assert!(e.to_string().contains(&path.display().to_string()), "{e}")
            }
            Err(e) => panic!("expected a wav error, got {e}"),
            Ok(_) => panic!("created a recording under a file"),
        }
    }

    #[test]
    fn null_keeps_pace() {
        let two_seconds = tone(2.0);
        let mut out = open_output(&OutputSpec::Null, Pace(Some(20.0))).unwrap();
        let t0 = Instant::now();
        for block in two_seconds.chunks(2 * 4410) {
            out.write(block).unwrap();
        }
        let took = t0.elapsed();
        assert!(
            took >= Duration::from_millis(90) && took < Duration::from_secs(1),
            "took {took:?}"
        );

        let mut out = open_output(&OutputSpec::Null, Pace::UNPACED).unwrap();
        let t0 = Instant::now();
        for block in two_seconds.chunks(2 * 4410) {
            out.write(block).unwrap();
        }
        out.idle(frames_in(Duration::from_secs(3600))).unwrap();
        assert!(
            t0.elapsed() < Duration::from_millis(500),
            "unpaced took {:?}",
            t0.elapsed()
        );
    }

    #[test]
    fn null_idle_keeps_pace_and_reports_released() {
        let mut out = open_output(&OutputSpec::Null, Pace(Some(10.0))).unwrap();
        assert!(!out.is_released());
        let t0 = Instant::now();
        out.idle(frames_in(Duration::from_secs(1))).unwrap();
        assert!(out.is_released());
        out.write(&tone(1.0)).unwrap();
        assert!(!out.is_released());
        let took = t0.elapsed();
        assert!(
            took >= Duration::from_millis(180) && took < Duration::from_secs(1),
            "took {took:?}"
        );
    }

    #[test]
    fn a_bad_pace_plays_unpaced_instead_of_panicking() {
        for rate in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            let mut out = open_output(&OutputSpec::Null, Pace(Some(rate))).unwrap();
            out.write(&tone(0.1)).unwrap();
            out.idle(1_000).unwrap();
        }
    }

    #[test]
    fn render_plays_files_back_to_back_with_fade_in_and_gain() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("render.wav");
        let mut out = open_output(&OutputSpec::Wav(path.clone()), Pace::UNPACED).unwrap();
        let files = [example("music/extra-e.mp3"), example("ads/bread.mp3")];
        let stats = render_files(&files, -6.0, out.as_mut(), 1000).unwrap();
        out.finish().unwrap();
        assert_eq!(stats.files, 2);
        let expected = frames_in(Duration::from_secs(15)) + 399_760 / 2;
        assert!(
            stats.frames.abs_diff(expected) < 2205,
            "{} frames, expected {expected}",
            stats.frames
        );
        let (_, samples) = read_wav(&path);
        assert_eq!(samples.len() as u64, 2 * stats.frames);
        assert_eq!(samples[0], 0, "the fade starts from silence");

        // The same first second unfaded, at 0 dB, to compare against.
        let mut track = Track::open(&files[0]).unwrap();
        let mut raw = vec![0f32; 2 * 44_100];
        assert_eq!(track.read(&mut raw), raw.len());
        let rms = |s: &[f32]| (s.iter().map(|x| x * x).sum::<f32>() / s.len() as f32).sqrt();
        let rendered: Vec<f32> = samples[..2 * 44_100]
            .iter()
            .map(|&s| s as f32 / 32_767.0)
            .collect();
        // After the fade, -6 dB is half the amplitude.
        let (a, b) = (2 * 33_075, 2 * 44_100);
        let ratio = rms(&rendered[a..b]) / rms(&raw[a..b]);
        assert!((ratio - 0.501).abs() < 0.01, "gain ratio {ratio}");
        // Mid-fade (0.25 s), the gain is about half of its final value.
        let (a, b) = (2 * 10_000, 2 * 12_050);
        let ratio = rms(&rendered[a..b]) / rms(&raw[a..b]);
        assert!((ratio - 0.25).abs() < 0.03, "mid-fade gain ratio {ratio}");
    }

    #[test]
    fn render_stops_at_a_file_that_does_not_open() {
        let mut out = open_output(&OutputSpec::Null, Pace::UNPACED).unwrap();
        let files = [example("ads/bread.mp3"), example("ads/missing.mp3")];
        match render_files(&files, 0.0, out.as_mut(), 512) {
            Err(e @ AudioError::Open { .. }) => assert!(e.to_string().contains("missing.mp3")),
            other => panic!("expected an open error, got {other:?}"),
        }
    }
}
