//! An output that survives its device: when it cannot be opened or fails, time keeps
//! running on a stand-in `null` output and the real one is reopened with a backoff
//! (1 s doubling to 30 s), so a shop without sound is reported, never a dead player.

use std::time::{Duration, Instant};

use super::null::NullOutput;
use super::{open_output, AudioError, Output, OutputSpec, Pace};

const FIRST_RETRY: Duration = Duration::from_secs(1);
const LONGEST_RETRY: Duration = Duration::from_secs(30);

/// When to try again after failures: 1 s, then doubling up to 30 s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    delay: Duration,
    next: Option<Instant>,
}

impl Default for Backoff {
    fn default() -> Backoff {
        Backoff {
            delay: FIRST_RETRY,
            next: None,
        }
    }
}

impl Backoff {
    pub fn failed(&mut self, now: Instant) {
        self.next = Some(now + self.delay);
        self.delay = (self.delay * 2).min(LONGEST_RETRY);
    }

    /// Try again after the first delay, without making the next one longer: for a
    /// device that is only waited for (see [`AudioError::DeviceStuck`]).
    pub fn soon(&mut self, now: Instant) {
        self.next = Some(now + FIRST_RETRY);
    }

    pub fn due(&self, now: Instant) -> bool {
        self.next.is_none_or(|next| now >= next)
    }

    pub fn reset(&mut self) {
        *self = Backoff::default();
    }
}

/// Why there is no sound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Down {
    /// The output could not be opened.
    NoDevice(String),
    /// It was open and failed.
    Failed(String),
}

impl Down {
    pub fn reason(&self) -> &str {
        match self {
            Down::NoDevice(r) | Down::Failed(r) => r,
        }
    }
}

/// A change the player reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Lost(Down),
    Back,
}

pub struct SupervisedOutput {
    spec: OutputSpec,
    pace: Pace,
    real: Option<Box<dyn Output>>,
    /// Keeps time while the real output is down; a fresh one per outage, so its
    /// absolute schedule starts with the outage.
    stand_in: Option<NullOutput>,
    down: Option<Down>,
    backoff: Backoff,
    change: Option<Change>,
}

impl SupervisedOutput {
    /// Opens `spec`; a failure leaves it down (see [`SupervisedOutput::take_change`]).
    pub fn open(spec: &OutputSpec, pace: Pace, now: Instant) -> SupervisedOutput {
        let mut out = SupervisedOutput {
            spec: spec.clone(),
            pace,
            real: None,
            stand_in: None,
            down: None,
            backoff: Backoff::default(),
            change: None,
        };
        out.try_open(now);
        out
    }

    fn try_open(&mut self, now: Instant) {
        match open_output(&self.spec, self.pace) {
            Ok(real) => {
                self.real = Some(real);
                self.stand_in = None;
                self.backoff.reset();
                if self.down.take().is_some() {
                    tracing::info!(output = %self.spec, "sound output is back");
                    self.change = Some(Change::Back);
                }
            }
            Err(e) => {
                match e {
                    AudioError::DeviceStuck { .. } => self.backoff.soon(now),
                    _ => self.backoff.failed(now),
                }
                if self.down.is_none() {
                    self.go_down(Down::NoDevice(e.to_string()));
                } else {
                    tracing::debug!(output = %self.spec, error = %e, "sound output still cannot be opened");
                }
            }
        }
    }

    fn go_down(&mut self, down: Down) {
        tracing::error!(output = %self.spec, reason = down.reason(), "no sound: retrying with a backoff");
        self.real = None;
        self.stand_in = Some(NullOutput::new(self.pace));
        self.change = Some(Change::Lost(down.clone()));
        self.down = Some(down);
    }

    /// A write failed: a device that went away (stopped taking audio, closed the
    /// stream) is "no device"; anything else (a recording's disk) is an error.
    fn failed(&mut self, e: AudioError, now: Instant) {
        self.backoff.failed(now);
        let reason = e.to_string();
        self.go_down(match e {
            AudioError::NoDevice { .. } => Down::NoDevice(reason),
            _ => Down::Failed(reason),
        });
    }

    pub fn down(&self) -> Option<&Down> {
        self.down.as_ref()
    }

    /// The last change since this was asked, if any.
    pub fn take_change(&mut self) -> Option<Change> {
        self.change.take()
    }

    /// While down, tries to reopen once the backoff allows.
    pub fn retry(&mut self, now: Instant) {
        if self.down.is_some() && self.backoff.due(now) {
            self.try_open(now);
        }
    }

    /// Plays a block; while down (or when this write fails) the time passes silently.
    pub fn write(&mut self, samples: &[f32], now: Instant) {
        if let Some(real) = &mut self.real {
            match real.write(samples) {
                Ok(()) => return,
                Err(e) => self.failed(e, now),
            }
        }
        if let Some(stand_in) = &mut self.stand_in {
            // The null output never fails.
            let _ = stand_in.write(samples);
        }
    }

    /// Lets `frames` of silence pass (device released), like [`Output::idle`].
    pub fn idle(&mut self, frames: u64, now: Instant) {
        if let Some(real) = &mut self.real {
            match real.idle(frames) {
                Ok(()) => return,
                Err(e) => self.failed(e, now),
            }
        }
        if let Some(stand_in) = &mut self.stand_in {
            let _ = stand_in.idle(frames);
        }
    }

    /// Flushes the real output, if it is up.
    pub fn finish(&mut self) -> Result<(), AudioError> {
        match &mut self.real {
            Some(real) => real.finish(),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_wait_one_second_doubling_to_thirty() {
        let t0 = Instant::now();
        let mut b = Backoff::default();
        assert!(b.due(t0));
        let mut at = t0;
        let mut waits = Vec::new();
        for _ in 0..7 {
            b.failed(at);
            let mut wait = 0;
            while !b.due(at + Duration::from_secs(wait)) {
                wait += 1;
            }
            waits.push(wait);
            at += Duration::from_secs(wait);
        }
        assert_eq!(waits, [1, 2, 4, 8, 16, 30, 30]);
        b.reset();
        assert!(b.due(at));
    }

    #[test]
    fn an_output_that_cannot_be_opened_is_down_keeps_time_and_is_retried() {
        // /dev/null is a file: no directory can be made under it, even as root.
        let spec: OutputSpec = "wav:/dev/null/skycast/x.wav".parse().unwrap();
        let t0 = Instant::now();
        let mut out = SupervisedOutput::open(&spec, Pace::UNPACED, t0);
        assert!(matches!(out.take_change(), Some(Change::Lost(Down::NoDevice(_)))));
        assert!(out.down().is_some());
        out.write(&[0.0; 2048], t0);
        out.idle(1024, t0);
        out.retry(t0 + Duration::from_secs(2));
        assert_eq!(out.take_change(), None, "still down: no second lost");
        assert!(out.finish().is_ok());
    }

    #[test]
    fn an_output_that_opens_later_comes_back() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("rec");
        std::fs::write(&blocker, b"a file where the directory should be").unwrap();
        let spec = OutputSpec::Wav(blocker.join("x.wav"));
        let t0 = Instant::now();
        let mut out = SupervisedOutput::open(&spec, Pace::UNPACED, t0);
        assert!(matches!(out.take_change(), Some(Change::Lost(_))));
        std::fs::remove_file(&blocker).unwrap();
        out.retry(t0);
        assert_eq!(out.take_change(), None, "not before the backoff");
        out.retry(t0 + Duration::from_secs(1));
        assert_eq!(out.take_change(), Some(Change::Back));
        assert!(out.down().is_none());
        out.write(&[0.0; 2048], t0);
        assert!(blocker.join("x.wav").exists());
    }
}
