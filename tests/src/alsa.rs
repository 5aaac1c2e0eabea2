//! A real ALSA PCM without sound hardware, for `run --output speaker`: the default
//! device is ALSA's `file` plugin over its `null` device, configured by an
//! `.asoundrc` in a home directory of the test's own (passed to the player as
//! `HOME`). `null` takes samples as fast as they come, like no sound card does: the
//! player has to keep real time itself. The `file` plugin records what the device
//! was given as a WAV file (its header names the format the player chose);
//! [`AlsaPipeDevice`] writes it into a pipe instead, so the test can make it hang.

use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::recording::Recording;

pub struct AlsaFileDevice {
    pub home: PathBuf,
    pub recording: PathBuf,
}

impl AlsaFileDevice {
    /// Writes `dir/home/.asoundrc` recording to `dir/alsa.wav`.
    pub fn new(dir: &Path) -> AlsaFileDevice {
        let home = dir.join("home");
        std::fs::create_dir_all(&home).unwrap();
        let recording = dir.join("alsa.wav");
        let conf = format!(
            "pcm.!default {{\n    type file\n    slave.pcm \"null\"\n    file \"{}\"\n    format \"wav\"\n}}\n",
            recording.display()
        );
        std::fs::write(home.join(".asoundrc"), conf).unwrap();
        AlsaFileDevice { home, recording }
    }

    /// The environment the player needs to find this device.
    pub fn env(&self) -> [(&'static str, &Path); 1] {
        [("HOME", self.home.as_path())]
    }

    /// What the device recorded so far (the plugin fixes the header's lengths only
    /// on close; the reader copes with a header that lags).
    pub fn recorded(&self) -> Recording {
        Recording::open(&self.recording)
    }
}

/// An ALSA device that can hang: the `file` plugin over `null` writes into a named
/// pipe that a thread of the test reads. Stopping the reads ([`AlsaPipeDevice::hang`])
/// blocks the device's thread in its write once the pipe is full, as a hung USB
/// card or driver would: the device stops taking audio. Every stream the player
/// opens starts a new WAV in the pipe (its `RIFF…WAVE` header), read as its own
/// segment.
pub struct AlsaPipeDevice {
    pub home: PathBuf,
    pipe: Arc<Pipe>,
    reader: Option<std::thread::JoinHandle<()>>,
}

#[derive(Default)]
struct Pipe {
    hung: AtomicBool,
    stop: AtomicBool,
    received: Mutex<Received>,
}

/// Everything read, and where each read began with the instant it arrived.
#[derive(Default)]
struct Received {
    bytes: Vec<u8>,
    reads: Vec<(usize, Instant)>,
}

impl AlsaPipeDevice {
    /// Makes `dir/device.fifo`, writes `dir/home/.asoundrc` naming it and starts
    /// reading; the pipe gets the audio as the player gave it.
    pub fn new(dir: &Path) -> AlsaPipeDevice {
        AlsaPipeDevice::with_recording(dir, None)
    }

    /// Like [`AlsaPipeDevice::new`], with ALSA's `plug` turning the audio into
    /// 16-bit mono at `rate` Hz before the pipe: an hour of it fits in memory.
    pub fn downmixed(dir: &Path, rate: u32) -> AlsaPipeDevice {
        AlsaPipeDevice::with_recording(dir, Some(rate))
    }

    fn with_recording(dir: &Path, downmix: Option<u32>) -> AlsaPipeDevice {
        let home = dir.join("home");
        std::fs::create_dir_all(&home).unwrap();
        let fifo = dir.join("device.fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let recorder = format!(
            "{{\n    type file\n    slave.pcm \"null\"\n    file \"{}\"\n    format \"wav\"\n}}\n",
            fifo.display()
        );
        let conf = match downmix {
            None => format!("pcm.!default {recorder}"),
            Some(rate) => format!(
                "pcm.recorder {recorder}pcm.!default {{\n    type plug\n    slave {{\n        pcm \"recorder\"\n        \
                 format S16_LE\n        channels 1\n        rate {rate}\n    }}\n}}\n"
            ),
        };
        std::fs::write(home.join(".asoundrc"), conf).unwrap();
        // Non-blocking: the open does not wait for a writer, and a read finds out
        // at once whether a stream is writing (EOF: none is).
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(nix::libc::O_NONBLOCK)
            .open(&fifo)
            .unwrap();
        let pipe = Arc::new(Pipe::default());
        let shared = pipe.clone();
        let reader = std::thread::spawn(move || {
            let mut buf = vec![0u8; 1 << 16];
            while !shared.stop.load(Ordering::Relaxed) {
                if shared.hung.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                }
                match file.read(&mut buf) {
                    // No stream writes at the moment.
                    Ok(0) => std::thread::sleep(Duration::from_millis(2)),
                    Ok(n) => {
                        let received = &mut *shared.received.lock().unwrap();
                        received.reads.push((received.bytes.len(), Instant::now()));
                        received.bytes.extend_from_slice(&buf[..n]);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    Err(e) => panic!("reading the ALSA pipe: {e}"),
                }
            }
        });
        AlsaPipeDevice {
            home,
            pipe,
            reader: Some(reader),
        }
    }

    /// The environment the player needs to find this device.
    pub fn env(&self) -> [(&'static str, &Path); 1] {
        [("HOME", self.home.as_path())]
    }

    /// Stops reading: the device hangs once the pipe is full.
    pub fn hang(&self) {
        self.pipe.hung.store(true, Ordering::Relaxed);
    }

    /// Reads again: the device's thread moves on.
    pub fn unhang(&self) {
        self.pipe.hung.store(false, Ordering::Relaxed);
    }

    /// The streams so far, each with the instant its first bytes arrived.
    pub fn segments(&self) -> Vec<(Instant, Recording)> {
        let received = self.pipe.received.lock().unwrap();
        let Received { bytes, reads } = &*received;
        // A header is "RIFF", a length, "WAVE": never the start of an audio frame
        // that a test's tones make (as f32 "RIFF" is 12,869.5; as i16 a full-scale pair).
        let starts: Vec<usize> = (0..bytes.len().saturating_sub(12))
            .filter(|&i| &bytes[i..i + 4] == b"RIFF" && &bytes[i + 8..i + 12] == b"WAVE")
            .collect();
        starts
            .iter()
            .enumerate()
            .map(|(k, &start)| {
                let end = starts.get(k + 1).copied().unwrap_or(bytes.len());
                let arrived = reads
                    .iter()
                    .rev()
                    .find(|(at, _)| *at <= start)
                    .map(|(_, instant)| *instant)
                    .expect("a read holds every byte");
                let rec = Recording::from_wav_bytes(&bytes[start..end])
                    .unwrap_or_else(|e| panic!("stream {k} in the ALSA pipe is not a WAV: {e}"));
                (arrived, rec)
            })
            .collect()
    }
}

impl Drop for AlsaPipeDevice {
    fn drop(&mut self) {
        self.pipe.stop.store(true, Ordering::Relaxed);
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}
