//! The `null` output: discards the audio but keeps time, for shops without a
//! sound device, tests and benchmarks.

use super::pacer::Pacer;
use super::{AudioError, Output, Pace, CHANNELS};

pub(crate) struct NullOutput {
    pacer: Pacer,
    idle: bool,
}

impl NullOutput {
    pub(crate) fn new(pace: Pace) -> NullOutput {
        NullOutput {
            pacer: Pacer::new(pace),
            idle: false,
        }
    }
}

impl Output for NullOutput {
    fn write(&mut self, samples: &[f32]) -> Result<(), AudioError> {
        self.idle = false;
        self.pacer.advance((samples.len() / CHANNELS) as u64);
        Ok(())
    }

    fn idle(&mut self, frames: u64) -> Result<(), AudioError> {
        self.idle = true;
        self.pacer.advance(frames);
        Ok(())
    }

    fn is_released(&self) -> bool {
        self.idle
    }

    fn finish(&mut self) -> Result<(), AudioError> {
        Ok(())
    }
}
