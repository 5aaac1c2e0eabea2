//! The `wav:PATH` output: records what the speaker would play, 16-bit stereo
//! at 44.1 kHz, paced like `null`, so tests and demos can listen afterwards.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use hound::{SampleFormat, WavSpec, WavWriter};

use super::pacer::Pacer;
use super::{AudioError, Output, Pace, CHANNELS, SAMPLE_RATE};

/// Zeros written per call while idling: bounded memory however long the idle.
const IDLE_CHUNK_FRAMES: usize = 4096;
const ZEROS: [i16; IDLE_CHUNK_FRAMES * CHANNELS] = [0; IDLE_CHUNK_FRAMES * CHANNELS];

/// RIFF sizes are 32-bit and hound does not check them (its counter would
/// overflow), so the output stops at this many samples: about 6 h 45 min.
const MAX_SAMPLES: u64 = (u32::MAX as u64 - 1024) / 2;

pub(crate) struct WavOutput {
    path: PathBuf,
    writer: WavWriter<BufWriter<File>>,
    pacer: Pacer,
    idle: bool,
}

impl WavOutput {
    pub(crate) fn create(path: &Path, pace: Pace) -> Result<WavOutput, AudioError> {
        let fail = |reason: String| AudioError::Wav {
            path: path.to_path_buf(),
            reason,
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .map_err(|e| fail(format!("cannot create the directory {}: {e}", parent.display())))?;
        }
        let spec = WavSpec {
            channels: CHANNELS as u16,
            sample_rate: SAMPLE_RATE,
            bits_per_sample: 16,
            sample_format: SampleFormat::Int,
        };
        let writer = WavWriter::create(path, spec).map_err(|e| fail(e.to_string()))?;
        tracing::info!(path = %path.display(), "recording to a wav file");
        Ok(WavOutput {
            path: path.to_path_buf(),
            writer,
            pacer: Pacer::new(pace),
            idle: false,
        })
    }

    fn error(&self, e: hound::Error) -> AudioError {
        AudioError::Wav {
            path: self.path.clone(),
            reason: e.to_string(),
        }
    }

    fn append(&mut self, samples: impl ExactSizeIterator<Item = i16>) -> Result<(), AudioError> {
        if u64::from(self.writer.len()) + samples.len() as u64 > MAX_SAMPLES {
            return Err(AudioError::Wav {
                path: self.path.clone(),
                reason: "the recording reached the 4 GiB size limit of a wav file: record shorter runs"
                    .to_string(),
            });
        }
        for s in samples {
            self.writer.write_sample(s).map_err(|e| self.error(e))?;
        }
        // hound's flush rewrites the RIFF and data sizes before flushing the
        // buffer, so a killed player leaves a valid file holding what it played.
        self.writer.flush().map_err(|e| self.error(e))
    }
}

fn to_i16(s: f32) -> i16 {
    // NaN clamps to NaN, and `as` maps NaN to 0: silence.
    (s.clamp(-1.0, 1.0) * i16::MAX as f32).round() as i16
}

impl Output for WavOutput {
    fn write(&mut self, samples: &[f32]) -> Result<(), AudioError> {
        self.idle = false;
        self.append(samples.iter().map(|&s| to_i16(s)))?;
        self.pacer.advance((samples.len() / CHANNELS) as u64);
        Ok(())
    }

    fn idle(&mut self, frames: u64) -> Result<(), AudioError> {
        self.idle = true;
        let mut left = frames;
        while left > 0 {
            let n = left.min(IDLE_CHUNK_FRAMES as u64);
            self.append(ZEROS[..n as usize * CHANNELS].iter().copied())?;
            self.pacer.advance(n);
            left -= n;
        }
        Ok(())
    }

    fn is_released(&self) -> bool {
        self.idle
    }

    /// The file is complete after every block already; this reports a failure to
    /// write it out. The output can still be written to afterwards.
    fn finish(&mut self) -> Result<(), AudioError> {
        self.writer.flush().map_err(|e| self.error(e))
    }
}
