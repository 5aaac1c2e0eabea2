//! Real-time pacing for the outputs that have no device clock (`null`, `wav`):
//! the sample count stays the player's clock, whatever the output.

use std::time::{Duration, Instant};

use super::{Pace, SAMPLE_RATE};

/// Sleeps so that `frames` of audio take `frames / SAMPLE_RATE / rate` seconds
/// of wall time, counted from the first frame. A caller that falls behind
/// (slow disk, suspended machine) catches up without sleeping rather than
/// drifting: the schedule is absolute, not per block.
#[derive(Debug)]
pub(crate) struct Pacer {
    rate: Option<f64>,
    start: Option<Instant>,
    frames: u64,
}

impl Pacer {
    pub(crate) fn new(pace: Pace) -> Pacer {
        let rate = match pace.0 {
            Some(r) if r.is_finite() && r > 0.0 => Some(r),
            Some(r) => {
                // Only a caller bug gets here; playing unpaced is visible and harmless.
                tracing::warn!(rate = r, "pace rate is not a positive number: playing unpaced");
                None
            }
            None => None,
        };
        Pacer {
            rate,
            start: None,
            frames: 0,
        }
    }

    /// Counts `frames` more and sleeps until they are due.
    pub(crate) fn advance(&mut self, frames: u64) {
        let start = *self.start.get_or_insert_with(Instant::now);
        self.frames += frames;
        let Some(rate) = self.rate else { return };
        let secs = self.frames as f64 / SAMPLE_RATE as f64 / rate;
        // Out of range only for absurd rates or frame counts: then there is nothing sane to wait for.
        let Ok(offset) = Duration::try_from_secs_f64(secs) else {
            return;
        };
        let Some(due) = start.checked_add(offset) else {
            return;
        };
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
    }
}
