//! A real ALSA PCM without sound hardware, for `run --output speaker`: the default
//! device is ALSA's `file` plugin over its `null` device, configured by an
//! `.asoundrc` in a home directory of the test's own (passed to the player as
//! `HOME`). `null` takes samples as fast as they come, like no sound card does: the
//! player has to keep real time itself. The `file` plugin records what the device
//! was given as a WAV file (its header names the format the player chose).

use std::path::{Path, PathBuf};

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
