//! Audio primitives for the player: MP3 tracks decoded to one fixed format, the
//! outputs (speaker, null, wav) that pace playback in real time, and gain ramps.
//!
//! Everything inside the player is interleaved stereo `f32` at [`SAMPLE_RATE`];
//! tracks in other formats are converted when opened.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

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
    #[error("cannot write the recording {path}: {reason}")]
    Wav { path: PathBuf, reason: String },
    #[error("`{0}` is not an output: use speaker, null or wav:PATH")]
    BadSpec(String),
}

/// An MP3 file being decoded, as interleaved stereo `f32` at [`SAMPLE_RATE`].
/// Streaming: it holds one decoded packet, never the whole file.
pub struct Track {
    // filled in by the audio module
}

impl Track {
    pub fn open(path: &Path) -> Result<Track, AudioError> {
        let _ = path;
        todo!()
    }

    /// Fills `out` (interleaved stereo) with the next samples; returns how many
    /// samples were written, fewer than `out.len()` only when the track has ended.
    /// A packet that does not decode mid-file is skipped (logged), not fatal.
    pub fn read(&mut self, out: &mut [f32]) -> usize {
        let _ = out;
        todo!()
    }

    /// How far into the track `read` has got.
    pub fn position(&self) -> Duration {
        todo!()
    }

    pub fn is_finished(&self) -> bool {
        todo!()
    }
}

/// Where the sound goes: `speaker`, `null` or `wav:PATH`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum OutputSpec {
    #[default]
    Speaker,
    Null,
    Wav(PathBuf),
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

pub fn open_output(spec: &OutputSpec, pace: Pace) -> Result<Box<dyn Output>, AudioError> {
    let _ = (spec, pace);
    todo!()
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
        Ramp { from, to, frames, done: 0 }
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
