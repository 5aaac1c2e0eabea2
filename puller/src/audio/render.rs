//! [`render_files`]: plays files back to back through the normal chain (track,
//! gain ramp, output) with no scheduling, for benchmarks and tools.

use std::path::PathBuf;
use std::time::Duration;

use super::{db_to_gain, frames_duration, frames_in, AudioError, Output, Ramp, Track, CHANNELS};

/// Every file starts with this fade-in, as the player does when it starts a track.
pub const RENDER_FADE_IN: Duration = Duration::from_millis(500);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RenderStats {
    /// Frames written to the output.
    pub frames: u64,
    /// Files played to their end.
    pub files: usize,
}

impl RenderStats {
    pub fn duration(&self) -> Duration {
        frames_duration(self.frames)
    }
}

/// Plays `paths` one after another at `gain_db`, each with a [`RENDER_FADE_IN`],
/// in blocks of `block_frames` frames (at least 1). Stops at the first file that
/// does not open or an output error. Does not call `output.finish()`: the
/// caller owns the output and may go on using it.
pub fn render_files(
    paths: &[PathBuf],
    gain_db: f64,
    output: &mut dyn Output,
    block_frames: usize,
) -> Result<RenderStats, AudioError> {
    let gain = db_to_gain(gain_db);
    let mut buf = vec![0f32; block_frames.max(1) * CHANNELS];
    let mut stats = RenderStats::default();
    for path in paths {
        let mut track = Track::open(path)?;
        let mut ramp = Ramp::new(0.0, gain, frames_in(RENDER_FADE_IN));
        loop {
            let n = track.read(&mut buf);
            if n > 0 {
                ramp.apply(&mut buf[..n], 1.0);
                output.write(&buf[..n])?;
                stats.frames += (n / CHANNELS) as u64;
            }
            if n < buf.len() {
                break;
            }
        }
        stats.files += 1;
        tracing::debug!(path = %path.display(), secs = track.position().as_secs_f64(), "rendered");
    }
    Ok(stats)
}
