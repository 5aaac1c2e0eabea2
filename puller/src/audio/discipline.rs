//! Keeps the player's schedule on the wall clock when a sound device sets the pace.
//!
//! A sound card's crystal is off by tens of ppm, some devices (ALSA's `null`, a
//! `file` plugin over it) take samples as fast as they are given, and releasing and
//! reopening the device at closing costs time no frame counts. So for an output
//! paced by a device the player's clock is not its frame count but
//! `frames + offset`, and this module steers `offset` towards the wall clock (the
//! monotonic clock times the clock rate):
//!
//! - While sound plays, the offset moves by at most [`MAX_SLEW`] of each block
//!   (bookkeeping only: no sample is added or dropped, so nothing is heard and the
//!   clock never runs backwards); an error over [`STEP_AFTER`] behind (a stall, a
//!   suspended box) is stepped at once, like the software pacer's catch-up.
//! - The schedule may run ahead of the wall clock by up to [`LEAD_ALLOWANCE`]
//!   uncorrected: that is the audio a device holds in its buffer and our queue, not
//!   yet heard. A device that does not pace holds none, so once it has been
//!   throttled only [`DEADBAND`] is let be either way; behind, always only that.
//! - While silent (closed, idle, no device) the whole error is corrected at once,
//!   forwards, or backwards by at most half of the silent step.
//! - A device that takes samples faster than [`THROTTLE_RATE`] times real time is
//!   not pacing at all: a token bucket of [`BURST`] makes the player wait, so it
//!   plays at real time instead of racing through the schedule.
//!
//! Outputs paced in software (`null`, `wav`) keep an absolute schedule from their
//! first frame already, so their frame count is the wall clock and they need none of
//! this. Time comes in as a parameter so that hours of a drifting device can be
//! simulated in a unit test.

use std::time::{Duration, Instant};

use super::SAMPLE_RATE;

/// Largest correction while sound plays, as a share of the block it is applied to.
pub const MAX_SLEW: f64 = 0.05;
/// The schedule behind the wall clock by less than this is jitter (blocks leave in
/// bursts when the device's queue frees).
pub const DEADBAND: Duration = Duration::from_millis(20);
/// The schedule ahead of the wall clock by less than this is audio on its way to
/// the speaker (device buffer and queue): left alone.
pub const LEAD_ALLOWANCE: Duration = Duration::from_millis(500);
/// Behind by more than this while playing: stepped at once.
pub const STEP_AFTER: Duration = Duration::from_secs(2);
/// A device taking samples faster than this many times real time is throttled.
/// Above 1 + 0.1 %, so that a fast crystal is left to the slew and never waited on.
pub const THROTTLE_RATE: f64 = 1.0015;
/// Audio a device may take at once beyond real time (its buffer and our queue filling).
pub const BURST: Duration = Duration::from_millis(250);
/// The device's rate is judged over at least this much wall time.
/// (Every duration here is of audio, except this one.)
const RATE_WINDOW: Duration = Duration::from_secs(10);

/// What the player shows about its audio clock in `status` and reports.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClockReading {
    /// How far the schedule is ahead (+) or behind (−) of the wall clock now.
    pub schedule_offset_ms: i64,
    /// The device's measured rate against the monotonic clock, in parts per
    /// million off real time (+ = it takes samples faster); `None` until measured.
    pub device_rate_ppm: Option<f64>,
    /// Whether the device needed the player to wait for it since it last fell
    /// silent (it does not pace).
    pub throttled: bool,
}

#[derive(Debug, Clone)]
pub struct Discipline {
    /// Audio frames per wall second (the sample rate times the clock rate).
    frames_per_sec: f64,
    /// The wall clock's zero and the schedule frame it stood for.
    start: Instant,
    start_frames: f64,
    /// Schedule frames = output frames + offset.
    offset: f64,
    /// Token bucket for devices that do not pace, in frames.
    bucket: f64,
    bucket_at: Instant,
    throttled: bool,
    /// Start of the current measurement: wall instant and output frames.
    window: Option<(Instant, u64)>,
    rate_ppm: Option<f64>,
}

/// Frames in `d` of audio.
fn audio_frames(d: Duration) -> f64 {
    d.as_secs_f64() * SAMPLE_RATE as f64
}

impl Discipline {
    /// A clock whose schedule frame `frames` is now, running at `rate` seconds of
    /// audio per wall second (1.0 in a shop).
    pub fn new(now: Instant, frames: u64, rate: f64) -> Discipline {
        let rate = if rate.is_finite() && rate > 0.0 { rate } else { 1.0 };
        let frames_per_sec = SAMPLE_RATE as f64 * rate;
        Discipline {
            frames_per_sec,
            start: now,
            start_frames: frames as f64,
            offset: 0.0,
            bucket: audio_frames(BURST),
            bucket_at: now,
            throttled: false,
            window: None,
            rate_ppm: None,
        }
    }

    /// The schedule frames to add to the output's frame count.
    pub fn offset(&self) -> i64 {
        self.offset.round() as i64
    }

    fn wall_frames(&self, now: Instant) -> f64 {
        self.start_frames + now.saturating_duration_since(self.start).as_secs_f64() * self.frames_per_sec
    }

    /// Schedule minus wall clock, in frames, for an output at `frames`.
    fn error(&self, frames: u64, now: Instant) -> f64 {
        frames as f64 + self.offset - self.wall_frames(now)
    }

    /// After `written` frames of sound left for the device (its total is now
    /// `frames`), at `now`: slews the offset and says how long to wait before the
    /// next block (zero unless the device does not pace).
    pub fn after_sound(&mut self, frames: u64, written: u64, now: Instant) -> Duration {
        // The bucket fills at a little over real time, up to the burst.
        let refill =
            now.saturating_duration_since(self.bucket_at).as_secs_f64() * self.frames_per_sec * THROTTLE_RATE;
        self.bucket = (self.bucket + refill).min(audio_frames(BURST)) - written as f64;
        self.bucket_at = now;
        let wait = if self.bucket < 0.0 {
            self.throttled = true;
            Duration::from_secs_f64(-self.bucket / (self.frames_per_sec * THROTTLE_RATE))
        } else {
            Duration::ZERO
        };
        self.measure(frames, now + wait);

        let error = self.error(frames, now + wait);
        let most = written as f64 * MAX_SLEW;
        if -error > audio_frames(STEP_AFTER) {
            self.offset -= error;
        } else if -error > audio_frames(DEADBAND) {
            self.offset += (-error - audio_frames(DEADBAND)).min(most);
        } else {
            let allowance = if self.throttled { DEADBAND } else { LEAD_ALLOWANCE };
            if error > audio_frames(allowance) {
                self.offset -= (error - audio_frames(allowance)).min(most);
            }
        }
        wait
    }

    /// After `frames_silent` frames passed without sound (the output's total is now
    /// `frames`): corrects the whole error, within the step's bounds.
    pub fn after_silence(&mut self, frames: u64, frames_silent: u64, now: Instant) {
        self.window = None;
        self.throttled = false;
        let error = self.error(frames, now);
        let most_back = frames_silent as f64 * 0.5;
        self.offset -= error.min(most_back);
        // A released device starts its next burst with a full bucket.
        self.bucket = audio_frames(BURST);
        self.bucket_at = now;
    }

    /// Measures the device's rate over windows of sound of [`RATE_WINDOW`].
    fn measure(&mut self, frames: u64, now: Instant) {
        match self.window {
            None => self.window = Some((now, frames)),
            Some((since, at)) => {
                let secs = now.saturating_duration_since(since).as_secs_f64();
                if secs >= RATE_WINDOW.as_secs_f64() {
                    let rate = (frames - at) as f64 / (secs * self.frames_per_sec);
                    self.rate_ppm = Some((rate - 1.0) * 1e6);
                    self.window = Some((now, frames));
                }
            }
        }
    }

    /// The reading for `status` and reports, for an output at `frames`.
    pub fn reading(&self, frames: u64, now: Instant) -> ClockReading {
        ClockReading {
            schedule_offset_ms: (self.error(frames, now) * 1000.0 / self.frames_per_sec).round() as i64,
            device_rate_ppm: self.rate_ppm,
            throttled: self.throttled,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BLOCK: u64 = 1024;

    /// A simulated device whose crystal runs `ppm` off: it takes a block when its
    /// own clock says the previous one has played, after filling `buffer` first.
    struct SimDevice {
        ppm: f64,
        /// Seconds of audio the device takes at once when opened.
        buffer: f64,
        /// False: the device takes everything at once (does not pace).
        paced: bool,
    }

    struct SimRun {
        clock: Discipline,
        frames: u64,
        now: Instant,
        worst_ms: f64,
        longest_wait: Duration,
    }

    impl SimRun {
        fn new(t0: Instant) -> SimRun {
            SimRun {
                clock: Discipline::new(t0, 0, 1.0),
                frames: 0,
                now: t0,
                worst_ms: 0.0,
                longest_wait: Duration::ZERO,
            }
        }

        fn schedule_ms(&self) -> f64 {
            (self.frames as f64 + self.clock.offset) * 1000.0 / SAMPLE_RATE as f64
        }

        /// Plays `secs` of sound into `device`; the wall clock is `self.now`.
        fn play(&mut self, device: &SimDevice, secs: f64, t0: Instant) {
            let blocks = (secs * SAMPLE_RATE as f64 / BLOCK as f64) as u64;
            let device_start = self.now;
            let mut taken = 0u64;
            for _ in 0..blocks {
                if device.paced {
                    // The device accepts the block once it has played all but its buffer.
                    let played_secs = (taken as f64 / SAMPLE_RATE as f64 - device.buffer).max(0.0);
                    let due = device_start + Duration::from_secs_f64(played_secs / (1.0 + device.ppm * 1e-6));
                    if due > self.now {
                        self.now = due;
                    }
                }
                taken += BLOCK;
                self.frames += BLOCK;
                let wait = self.clock.after_sound(self.frames, BLOCK, self.now);
                self.longest_wait = self.longest_wait.max(wait);
                self.now += wait;
                let wall_ms = self.now.duration_since(t0).as_secs_f64() * 1000.0;
                self.worst_ms = self.worst_ms.max((self.schedule_ms() - wall_ms).abs());
            }
        }

        /// Closed for `secs`: the device is released (what it still holds plays out
        /// and the reopen costs `lost` seconds nobody counts), idle steps of 250 ms.
        fn close(&mut self, secs: f64, lost: f64) {
            self.now += Duration::from_secs_f64(lost);
            let step = frames(0.25);
            for _ in 0..(secs / 0.25) as u64 {
                self.frames += step;
                self.now += Duration::from_secs_f64(0.25);
                self.clock.after_silence(self.frames, step, self.now);
            }
        }
    }

    fn frames(secs: f64) -> u64 {
        (secs * SAMPLE_RATE as f64) as u64
    }

    /// A shop day of 12 hours with a device `ppm` off, every hour 20 s of silence
    /// (an idle gap that costs 0.8 s of release and reopen, after which the device
    /// fills its buffer again).
    fn twelve_hours(device: SimDevice) -> (SimRun, Instant) {
        let t0 = Instant::now();
        let mut run = SimRun::new(t0);
        for _ in 0..12 {
            run.play(&device, 3600.0 - 20.0, t0);
            run.close(20.0, 0.8);
        }
        (run, t0)
    }

    #[test]
    fn a_device_a_tenth_of_a_percent_fast_or_slow_stays_on_the_wall_clock_for_twelve_hours() {
        for ppm in [1000.0, -1000.0, 50.0, 0.0] {
            let (run, t0) = twelve_hours(SimDevice {
                ppm,
                buffer: 0.2,
                paced: true,
            });
            // Uncorrected, 0.1 % of 12 h is 43 s.
            assert!(
                run.worst_ms < 1000.0,
                "{ppm} ppm: worst error {:.0} ms",
                run.worst_ms
            );
            assert_eq!(
                run.longest_wait,
                Duration::ZERO,
                "{ppm} ppm: a pacing device is never waited on"
            );
            let reading = run.clock.reading(run.frames, run.now);
            let measured = reading.device_rate_ppm.unwrap();
            // Its last window of 10 s was sound (the close came before the last hour's end).
            println!(
                "{ppm} ppm: worst schedule error {:.0} ms in 12 h, rate measured {measured:.0} ppm",
                run.worst_ms
            );
            assert!(
                (measured - ppm).abs() < 30.0,
                "{ppm} ppm measured as {measured:.0}"
            );
            assert!(!reading.throttled);
            let wall_ms = run.now.duration_since(t0).as_secs_f64() * 1000.0;
            assert!((run.schedule_ms() - wall_ms).abs() < 1000.0);
        }
    }

    #[test]
    fn a_device_that_does_not_pace_is_throttled_to_real_time() {
        let t0 = Instant::now();
        let mut run = SimRun::new(t0);
        let device = SimDevice {
            ppm: 0.0,
            buffer: 0.0,
            paced: false,
        };
        run.play(&device, 600.0, t0);
        let wall = run.now.duration_since(t0).as_secs_f64();
        // Ten minutes of audio take ten minutes, the burst and the throttle's margin aside.
        assert!(
            (wall - 600.0).abs() < 600.0 * 0.005,
            "600 s of audio took {wall:.1} s"
        );
        assert!(run.worst_ms < 600.0, "worst error {:.0} ms", run.worst_ms);
        let reading = run.clock.reading(run.frames, run.now);
        assert!(reading.throttled);
        // It holds nothing unheard: the schedule is kept within the deadband of it.
        assert!(
            reading.schedule_offset_ms.abs() <= DEADBAND.as_millis() as i64 + 1,
            "{reading:?}"
        );
    }

    #[test]
    fn corrections_while_playing_are_small_and_never_turn_the_clock_back() {
        let t0 = Instant::now();
        let mut clock = Discipline::new(t0, 0, 1.0);
        // The device took 1.5 s at once (a big buffer): the schedule is 1.5 s ahead.
        let mut frames = frames(1.5);
        let mut now = t0;
        let mut last = frames as f64 + clock.offset;
        for _ in 0..5_000 {
            frames += BLOCK;
            now += Duration::from_secs_f64(BLOCK as f64 / SAMPLE_RATE as f64);
            clock.after_sound(frames, BLOCK, now);
            let schedule = frames as f64 + clock.offset;
            let advanced = schedule - last;
            assert!(advanced > 0.0, "the clock went back");
            assert!(
                (advanced - BLOCK as f64).abs() <= BLOCK as f64 * MAX_SLEW + 1e-6,
                "a correction of {advanced} frames in a block"
            );
            last = schedule;
        }
        // 5,000 blocks (116 s) at 5 % correct 5.8 s: only the allowed lead is left.
        let left = clock.reading(frames, now).schedule_offset_ms;
        assert!(
            (left - LEAD_ALLOWANCE.as_millis() as i64).abs() <= 1,
            "{left} ms ahead"
        );
    }

    #[test]
    fn a_stall_is_stepped_over_and_silence_catches_up_at_once() {
        let t0 = Instant::now();
        let mut clock = Discipline::new(t0, 0, 1.0);
        // Three seconds of wall time with one block written: behind by ~3 s.
        let now = t0 + Duration::from_secs(3);
        clock.after_sound(BLOCK, BLOCK, now);
        assert!(clock.reading(BLOCK, now).schedule_offset_ms.abs() < 5);
        // Silence: 1 s behind is caught up in one step.
        let now = now + Duration::from_secs(1);
        let f = BLOCK + frames(0.25);
        clock.after_silence(f, frames(0.25), now);
        assert!(clock.reading(f, now).schedule_offset_ms.abs() < 5);
        // A second ahead during a silent step of 1.25 s: back by half the step only,
        // so the clock still moves on.
        let before = f as f64 + clock.offset;
        let f = f + frames(1.25);
        let now = now + Duration::from_millis(250);
        clock.after_silence(f, frames(1.25), now);
        assert!((clock.reading(f, now).schedule_offset_ms - 375).abs() < 5);
        assert!(f as f64 + clock.offset > before);
    }

    #[test]
    fn a_clock_rate_scales_the_wall_clock() {
        let t0 = Instant::now();
        let mut clock = Discipline::new(t0, 0, 10.0);
        // Ten seconds of audio in one wall second at ten times real time: on time.
        let mut written = 0;
        let mut now = t0;
        while written < frames(10.0) {
            written += BLOCK;
            now += Duration::from_secs_f64(BLOCK as f64 / SAMPLE_RATE as f64 / 10.0);
            assert_eq!(clock.after_sound(written, BLOCK, now), Duration::ZERO);
        }
        assert!(clock.reading(written, now).schedule_offset_ms.abs() < 50);
        for bad in [0.0, -2.0, f64::NAN] {
            let c = Discipline::new(t0, 0, bad);
            assert_eq!(c.frames_per_sec, SAMPLE_RATE as f64);
        }
    }
}
