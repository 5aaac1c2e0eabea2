//! Sample-rate conversion of stereo frames to [`SAMPLE_RATE`], for the rare MP3
//! that is not at 44.1 kHz (48 kHz, or 22.05 kHz speech).
//!
//! Not rodio's `UniformSourceIterator`: in rodio 0.20 it restarts its converter
//! at every decoded packet, which drops or repeats a fraction of a frame each
//! time (measured on a 48 kHz 1 kHz sine: phase steps every packet, and 0.06 %
//! too many frames). This one keeps its phase across packets.

use super::{CHANNELS, SAMPLE_RATE};

pub(crate) type Frame = [f32; CHANNELS];

/// Cubic (Catmull-Rom) interpolation between input frames. No low-pass filter:
/// MP3 encoders already cut well below 20 kHz, so downsampling from 48 kHz
/// folds back almost nothing.
#[derive(Debug)]
pub(crate) struct Resampler {
    in_rate: u32,
    /// Input frames per output frame.
    step: f64,
    /// Position of the next output frame after `hist[1]`, in input frames.
    t: f64,
    /// Input frames around the position: x[-1], x[0], x[1], x[2].
    hist: [Frame; 4],
    /// Copies of the last frame shifted in after the input ended.
    pads: u8,
    primed: bool,
}

impl Resampler {
    pub(crate) fn new(in_rate: u32) -> Resampler {
        Resampler {
            in_rate,
            step: in_rate as f64 / SAMPLE_RATE as f64,
            t: 0.0,
            hist: [[0.0; CHANNELS]; 4],
            pads: 0,
            primed: false,
        }
    }

    /// The next output frame, pulling input frames (with their rate) from `input`.
    pub(crate) fn next(&mut self, input: &mut impl FnMut() -> Option<(Frame, u32)>) -> Option<Frame> {
        if !self.primed {
            let (first, _) = input()?;
            self.hist = [first; 4];
            self.primed = true;
            self.shift(input);
            self.shift(input);
        }
        while self.t >= 1.0 {
            self.shift(input);
            self.t -= 1.0;
        }
        // Three pads: x[0] itself lies past the last input frame.
        if self.pads >= 3 {
            return None;
        }
        let t = self.t as f32;
        let [xm1, x0, x1, x2] = self.hist;
        let mut out = [0.0; CHANNELS];
        for c in 0..CHANNELS {
            let (a, b, p, q) = (xm1[c], x0[c], x1[c], x2[c]);
            out[c] =
                b + 0.5 * t * (p - a + t * (2.0 * a - 5.0 * b + 4.0 * p - q + t * (3.0 * (b - p) + q - a)));
        }
        self.t += self.step;
        Some(out)
    }

    fn shift(&mut self, input: &mut impl FnMut() -> Option<(Frame, u32)>) {
        let next = match input() {
            Some((frame, rate)) => {
                // A rate change mid-file is legal MP3, if odd; zero would stall the position.
                if rate != self.in_rate && rate != 0 {
                    tracing::debug!(from = self.in_rate, to = rate, "sample rate changed mid-track");
                    self.in_rate = rate;
                    self.step = rate as f64 / SAMPLE_RATE as f64;
                }
                frame
            }
            None => {
                self.pads = self.pads.saturating_add(1);
                self.hist[3]
            }
        };
        self.hist.rotate_left(1);
        self.hist[3] = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::f64::consts::PI;

    /// Resamples `secs` of a `freq` sine at `rate` and returns the left channel.
    fn resample_sine(rate: u32, freq: f64, secs: f64) -> Vec<f32> {
        let n = (secs * rate as f64) as usize;
        let mut i = 0;
        let mut input = move || {
            (i < n).then(|| {
                let s = (0.5 * (2.0 * PI * freq * i as f64 / rate as f64).sin()) as f32;
                i += 1;
                ([s, -s], rate)
            })
        };
        let mut r = Resampler::new(rate);
        let mut out = Vec::new();
        while let Some(f) = r.next(&mut input) {
            assert_eq!(f[0], -f[1], "channels stay apart");
            out.push(f[0]);
        }
        out
    }

    /// Error against the ideal sine at 44.1 kHz, as a signal-to-noise ratio.
    fn snr_db(out: &[f32], freq: f64) -> f64 {
        let w = 2.0 * PI * freq / SAMPLE_RATE as f64;
        let (mut sig, mut err) = (0.0, 0.0);
        // Skip the edges, where the interpolation has no neighbours.
        for (i, &y) in out.iter().enumerate().take(out.len() - 10).skip(10) {
            let ideal = 0.5 * (w * i as f64).sin();
            sig += ideal * ideal;
            err += (y as f64 - ideal).powi(2);
        }
        10.0 * (sig / err).log10()
    }

    #[test]
    fn keeps_length_and_phase_across_the_whole_signal() {
        for (rate, min_snr) in [(48_000, 80.0), (22_050, 70.0), (32_000, 70.0)] {
            let out = resample_sine(rate, 1000.0, 10.0);
            assert!(
                out.len().abs_diff(441_000) <= 1,
                "{rate} Hz: {} frames",
                out.len()
            );
            let snr = snr_db(&out, 1000.0);
            assert!(snr > min_snr, "{rate} Hz: SNR {snr:.1} dB");
        }
    }

    #[test]
    fn empty_and_one_frame_inputs() {
        let mut r = Resampler::new(48_000);
        assert_eq!(r.next(&mut || None), None);
        let mut once = Some(([0.25, 0.5], 48_000));
        let mut r = Resampler::new(48_000);
        let mut input = || once.take();
        assert_eq!(r.next(&mut input), Some([0.25, 0.5]));
        assert_eq!(r.next(&mut input), None);
    }
}
