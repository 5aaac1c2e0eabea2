//! The `speaker` output: the default sound device through rodio (cpal, ALSA on
//! Linux), fed from a bounded queue so that `write` keeps the device's pace.
//!
//! Thread model: rodio's audio thread pulls samples from [`QueueSource`]; the
//! player's thread pushes 20 ms blocks into a queue of about 200 ms. A full
//! queue makes `write` wait, so the player runs at most 200 ms (plus the
//! device's own buffer) ahead of what the shop hears.

use std::cell::RefCell;
use std::mem;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rodio::{OutputStream, Source};

use super::pacer::Pacer;
use super::{AudioError, Output, Pace, CHANNELS, SAMPLE_RATE};

const BLOCK_FRAMES: usize = SAMPLE_RATE as usize / 50;
const BLOCK_SAMPLES: usize = BLOCK_FRAMES * CHANNELS;
/// 10 blocks of 20 ms: enough to ride out a scheduling hiccup, short enough
/// that an ad or a fade starts within a fifth of a second of when the player decides.
const QUEUE_BLOCKS: usize = 10;
/// How often a `write` facing a full queue looks again (std's bounded channel
/// has no stable send-with-timeout, and a blocking send would hang forever on
/// a device that stopped pulling).
const POLL: Duration = Duration::from_millis(5);
/// A device that takes nothing for this long is treated as gone.
const STALL_TIMEOUT: Duration = Duration::from_secs(2);
/// How long releasing waits for the queued audio to be played.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(1);
/// How long the device's thread waits for the next block before it plays a frame
/// of silence. A device that does not pace (ALSA's `null`, a `file` plugin over it)
/// pulls as fast as it can: without this wait it would take seconds of silence
/// between two blocks while the player keeps real time. A real device that waits
/// this long has run dry anyway.
const WAIT_FOR_BLOCK: Duration = Duration::from_millis(50);

/// What rodio plays: the queued blocks, then silence whenever the queue stays dry
/// for [`WAIT_FOR_BLOCK`].
struct QueueSource {
    rx: Receiver<Vec<f32>>,
    block: Vec<f32>,
    pos: usize,
    started: bool,
    shared: Arc<Shared>,
}

#[derive(Default)]
struct Shared {
    /// Set once the sender is gone and every queued block has been played.
    drained: AtomicBool,
    /// Silent frames inserted because the player was late (after the first block).
    underrun_frames: AtomicU64,
}

impl Iterator for QueueSource {
    type Item = f32;

    fn next(&mut self) -> Option<f32> {
        if self.pos >= self.block.len() {
            match self.rx.recv_timeout(WAIT_FOR_BLOCK) {
                Ok(block) => {
                    self.block = block;
                    self.started = true;
                }
                Err(RecvTimeoutError::Timeout) => {
                    // One whole silent frame, so the channels never swap.
                    self.block.clear();
                    self.block.resize(CHANNELS, 0.0);
                    if self.started {
                        self.shared.underrun_frames.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Err(RecvTimeoutError::Disconnected) => {
                    self.shared.drained.store(true, Ordering::Release);
                    return None;
                }
            }
            self.pos = 0;
        }
        let s = self.block.get(self.pos).copied();
        self.pos += 1;
        s
    }
}

impl Source for QueueSource {
    fn current_frame_len(&self) -> Option<usize> {
        // The format never changes, so rodio needs no span boundaries.
        None
    }
    fn channels(&self) -> u16 {
        CHANNELS as u16
    }
    fn sample_rate(&self) -> u32 {
        SAMPLE_RATE
    }
    fn total_duration(&self) -> Option<Duration> {
        None
    }
}

thread_local! {
    /// Devices that stopped taking audio, kept rather than dropped until their
    /// thread moves again: dropping a stream joins its thread, which may be stuck in
    /// the driver (a hung USB card), and the player's thread must never wait on it.
    static STUCK: RefCell<Vec<Stuck>> = const { RefCell::new(Vec::new()) };
}

/// A device that stopped taking audio, its queue's sender dropped: once its thread
/// moves again, the source plays out what was queued, ends, and `drained` is set.
struct Stuck {
    _stream: OutputStream,
    shared: Arc<Shared>,
    since: Instant,
}

/// Drops the stuck devices that moved again (their thread is no longer blocked, so
/// the drop is quick); an error while one is still stuck, since opening the same
/// device again would only find it busy or stuck too.
fn reap_stuck() -> Result<(), AudioError> {
    STUCK.with_borrow_mut(|stuck| {
        stuck.retain(|s| !s.shared.drained.load(Ordering::Acquire));
        match stuck.first() {
            None => Ok(()),
            Some(s) => Err(AudioError::DeviceStuck {
                secs: s.since.elapsed().as_secs(),
            }),
        }
    })
}

/// An open device with our source playing on it.
struct Device {
    // Dropping the stream closes the device (and drops the source).
    _stream: OutputStream,
    tx: SyncSender<Vec<f32>>,
    shared: Arc<Shared>,
}

impl Device {
    fn open() -> Result<Device, AudioError> {
        reap_stuck()?;
        let (stream, handle) = OutputStream::try_default().map_err(|e| AudioError::NoDevice {
            reason: e.to_string(),
        })?;
        let (tx, rx) = sync_channel(QUEUE_BLOCKS);
        let shared = Arc::new(Shared::default());
        let source = QueueSource {
            rx,
            block: Vec::new(),
            pos: 0,
            started: false,
            shared: shared.clone(),
        };
        handle.play_raw(source).map_err(|e| AudioError::NoDevice {
            reason: format!("the device refused the stream: {e}"),
        })?;
        tracing::info!("sound device opened");
        Ok(Device {
            _stream: stream,
            tx,
            shared,
        })
    }

    /// Lets the queued audio play out (bounded wait), then closes the device; one
    /// that does not play out is stuck and is put aside instead (see [`STUCK`]).
    fn close(self) {
        let Device { _stream, tx, shared } = self;
        drop(tx);
        let deadline = Instant::now() + DRAIN_TIMEOUT;
        while !shared.drained.load(Ordering::Acquire) && Instant::now() < deadline {
            std::thread::sleep(POLL);
        }
        if !shared.drained.load(Ordering::Acquire) {
            tracing::warn!("the sound device did not play out its queue: put aside until it moves again");
            Device::put_aside(_stream, shared);
            return;
        }
        let underruns = shared.underrun_frames.load(Ordering::Relaxed);
        if underruns > 0 {
            tracing::warn!(
                silent_ms = underruns * 1000 / SAMPLE_RATE as u64,
                "the player fell behind the sound device: silence was inserted"
            );
        }
        tracing::info!("sound device released");
    }

    /// Keeps a stream whose sender is gone among the stuck ones (see [`STUCK`]).
    fn put_aside(stream: OutputStream, shared: Arc<Shared>) {
        STUCK.with_borrow_mut(|stuck| {
            stuck.push(Stuck {
                _stream: stream,
                shared,
                since: Instant::now(),
            })
        });
    }

    /// The device stopped taking audio: put aside, never dropped here.
    fn abandon(self) {
        let Device { _stream, tx, shared } = self;
        drop(tx);
        Device::put_aside(_stream, shared);
    }
}

pub(crate) struct SpeakerOutput {
    device: Option<Device>,
    /// Samples not yet making a whole block.
    pending: Vec<f32>,
    pace: Pace,
    /// The clock while idle, from the first `idle` after a `write`: one
    /// absolute schedule, so hours of short idle steps do not add up sleep overshoots.
    idle_clock: Option<Pacer>,
}

impl SpeakerOutput {
    pub(crate) fn open(pace: Pace) -> Result<SpeakerOutput, AudioError> {
        // Opened now, so that a shop without a device hears about it at start-up.
        let device = Device::open()?;
        Ok(SpeakerOutput {
            device: Some(device),
            pending: Vec::with_capacity(BLOCK_SAMPLES),
            pace,
            idle_clock: None,
        })
    }

    fn send(&mut self, block: Vec<f32>) -> Result<(), AudioError> {
        let device = match &mut self.device {
            Some(d) => d,
            None => self.device.insert(Device::open()?),
        };
        let deadline = Instant::now() + STALL_TIMEOUT;
        let mut block = block;
        loop {
            match device.tx.try_send(block) {
                Ok(()) => return Ok(()),
                Err(TrySendError::Full(b)) if Instant::now() < deadline => {
                    block = b;
                    std::thread::sleep(POLL);
                }
                Err(e) => {
                    let reason = match e {
                        TrySendError::Full(_) => "the sound device stopped taking audio",
                        TrySendError::Disconnected(_) => "the sound device closed the stream",
                    };
                    // Not drained: it is not playing anyway. The next write tries to
                    // open a device again.
                    if let Some(device) = self.device.take() {
                        match e {
                            TrySendError::Full(_) => device.abandon(),
                            TrySendError::Disconnected(_) => drop(device),
                        }
                    }
                    return Err(AudioError::NoDevice {
                        reason: reason.to_string(),
                    });
                }
            }
        }
    }

    fn release(&mut self) -> Result<(), AudioError> {
        if self.device.is_some() && !self.pending.is_empty() {
            let block = mem::take(&mut self.pending);
            self.send(block)?;
        }
        self.pending.clear();
        if let Some(device) = self.device.take() {
            device.close();
        }
        Ok(())
    }
}

impl Output for SpeakerOutput {
    fn write(&mut self, samples: &[f32]) -> Result<(), AudioError> {
        self.idle_clock = None;
        let mut rest = samples;
        while !rest.is_empty() {
            let take = (BLOCK_SAMPLES - self.pending.len()).min(rest.len());
            self.pending.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if self.pending.len() == BLOCK_SAMPLES {
                let block = mem::replace(&mut self.pending, Vec::with_capacity(BLOCK_SAMPLES));
                self.send(block)?;
            }
        }
        Ok(())
    }

    fn idle(&mut self, frames: u64) -> Result<(), AudioError> {
        // Releasing waits for the queue to play out, so the idle time starts after it.
        self.release()?;
        let pace = self.pace;
        self.idle_clock
            .get_or_insert_with(|| Pacer::new(pace))
            .advance(frames);
        Ok(())
    }

    fn is_released(&self) -> bool {
        self.device.is_none()
    }

    /// Plays out what is queued and releases the device; a later `write` opens it again.
    fn finish(&mut self) -> Result<(), AudioError> {
        self.release()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_a_device_or_says_there_is_none() {
        match SpeakerOutput::open(Pace::REAL_TIME) {
            Ok(mut out) => {
                assert!(!out.is_released());
                out.write(&vec![0.0; 4410]).unwrap();
                out.idle(0).unwrap();
                assert!(out.is_released());
            }
            Err(e @ AudioError::NoDevice { .. }) => assert!(e.to_string().contains("--output null"), "{e}"),
            Err(e) => panic!("expected NoDevice, got {e}"),
        }
    }

    #[test]
    fn the_source_pads_underruns_with_whole_silent_frames() {
        let (tx, rx) = sync_channel(QUEUE_BLOCKS);
        let shared = Arc::new(Shared::default());
        let mut source = QueueSource {
            rx,
            block: Vec::new(),
            pos: 0,
            started: false,
            shared: shared.clone(),
        };
        assert_eq!((source.next(), source.next()), (Some(0.0), Some(0.0)));
        tx.send(vec![0.5, -0.5]).unwrap();
        assert_eq!((source.next(), source.next()), (Some(0.5), Some(-0.5)));
        assert_eq!((source.next(), source.next()), (Some(0.0), Some(0.0)));
        assert_eq!(
            shared.underrun_frames.load(Ordering::Relaxed),
            1,
            "silence before the start is no underrun"
        );
        tx.send(vec![0.25, 0.75]).unwrap();
        drop(tx);
        assert_eq!((source.next(), source.next()), (Some(0.25), Some(0.75)));
        assert_eq!(source.next(), None);
        assert!(shared.drained.load(Ordering::Acquire));
    }
}
