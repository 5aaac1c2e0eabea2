//! [`Track`]: an MP3 file decoded on the fly (rodio over symphonia) into the
//! player's one format, interleaved stereo `f32` at [`SAMPLE_RATE`].

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rodio::{Decoder, Source};

use super::resample::{Frame, Resampler};
use super::{AudioError, CHANNELS, SAMPLE_RATE};

/// An MP3 file being decoded, as interleaved stereo `f32` at [`SAMPLE_RATE`].
/// Streaming: it holds one decoded packet, never the whole file.
pub struct Track {
    path: PathBuf,
    /// Keeps one decoded packet and reads the file as needed.
    decoder: Decoder<EndWatch>,
    /// `None` for files at [`SAMPLE_RATE`], the usual case.
    resampler: Option<Resampler>,
    /// Whether the decoder's last read of the file found its end.
    at_eof: Arc<AtomicBool>,
    read: u64,
    finished: bool,
}

impl Track {
    pub fn open(path: &Path) -> Result<Track, AudioError> {
        let file = File::open(path).map_err(|source| AudioError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        let decode_error = |reason: String| AudioError::Decode {
            path: path.to_path_buf(),
            reason,
        };
        // No BufReader: symphonia's stream buffers already.
        let at_eof = Arc::new(AtomicBool::new(false));
        let watched = EndWatch {
            file,
            at_eof: at_eof.clone(),
        };
        // rodio probes the stream and decodes the first packet here, so a file
        // that is empty, truncated or not MP3 at all fails now rather than mid-play.
        let decoder = Decoder::new(watched).map_err(|e| decode_error(e.to_string()))?;
        // No real MP3 has these; a zero rate would stall the resampler.
        if decoder.channels() == 0 || decoder.sample_rate() == 0 {
            return Err(decode_error(format!(
                "the first packet declares {} channels at {} Hz",
                decoder.channels(),
                decoder.sample_rate()
            )));
        }
        let resampler = (decoder.sample_rate() != SAMPLE_RATE).then(|| {
            tracing::debug!(
                path = %path.display(),
                rate = decoder.sample_rate(),
                "resampling to {SAMPLE_RATE} Hz"
            );
            Resampler::new(decoder.sample_rate())
        });
        Ok(Track {
            path: path.to_path_buf(),
            decoder,
            resampler,
            at_eof,
            read: 0,
            finished: false,
        })
    }

    /// Fills `out` (interleaved stereo) with the next samples; returns how many
    /// samples were written, fewer than `out.len()` only when the track has ended.
    /// A packet that does not decode mid-file is skipped (logged), not fatal.
    ///
    /// Only whole frames are written: `out.len()` should be a multiple of [`CHANNELS`].
    pub fn read(&mut self, out: &mut [f32]) -> usize {
        if self.finished {
            return 0;
        }
        let mut n = 0;
        for slot in out.chunks_exact_mut(CHANNELS) {
            let frame = match &mut self.resampler {
                None => next_frame(&mut self.decoder).map(|(frame, _)| frame),
                Some(r) => r.next(&mut || next_frame(&mut self.decoder)),
            };
            match frame {
                Some(frame) => {
                    slot.copy_from_slice(&frame);
                    n += CHANNELS;
                }
                None => {
                    self.read += n as u64;
                    self.end();
                    return n;
                }
            }
        }
        self.read += n as u64;
        n
    }

    /// How far into the track `read` has got.
    pub fn position(&self) -> Duration {
        Duration::from_secs_f64(self.read as f64 / (CHANNELS as f64 * SAMPLE_RATE as f64))
    }

    /// Moves on to `position` into the track by decoding up to it (exact, and fast:
    /// a minute of MP3 decodes in a tenth of a second even unoptimised; rodio's seek
    /// on these CBR files without a table of contents landed at the start). Past
    /// the end, the track is finished.
    pub fn skip_to(&mut self, position: Duration) {
        let target = super::frames_in(position) * CHANNELS as u64;
        let mut scratch = vec![0f32; 4096];
        while self.read < target && !self.finished {
            let want = ((target - self.read) as usize).min(scratch.len());
            self.read(&mut scratch[..want]);
        }
    }

    pub fn is_finished(&self) -> bool {
        self.finished
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the track stopped before the end of its file. rodio skips up to
    /// three bad packets in a row, ends the track at the fourth and reports
    /// neither; this catches the second case, unless the damage lies within
    /// symphonia's read-ahead (tens of KiB) of the end.
    pub fn ended_early(&self) -> bool {
        self.finished && !self.at_eof.load(Ordering::Relaxed)
    }

    fn end(&mut self) {
        self.finished = true;
        let secs = self.position().as_secs_f64();
        if self.ended_early() {
            // The publisher refuses files with any undecodable packet, so this
            // hints at damage on the shop's disk; the player rehashes the file
            // and reports `media_damaged` only when the hash says so.
            tracing::info!(
                path = %self.path.display(),
                secs,
                "track stopped before the end of its file: checking its hash"
            );
        } else {
            tracing::debug!(path = %self.path.display(), secs, "track ended");
        }
    }
}

/// The next frame of the file as stereo `f32` at the file's rate: mono is
/// copied to both channels, channels past the second are dropped.
fn next_frame(decoder: &mut Decoder<EndWatch>) -> Option<(Frame, u32)> {
    // rodio yields samples one at a time; its channel count and rate are those
    // of the packet the last sample came from, so they are read after it.
    let first = decoder.next()?;
    let (channels, rate) = (decoder.channels(), decoder.sample_rate());
    let left = f32::from(first) / 32_768.0;
    let right = if channels >= 2 {
        f32::from(decoder.next()?) / 32_768.0
    } else {
        left
    };
    for _ in 2..channels {
        decoder.next()?;
    }
    Some(([left, right], rate))
}

/// The file as the decoder reads it, noting whether the latest read found its
/// end: a track that stops elsewhere stopped on damage.
struct EndWatch {
    file: File,
    at_eof: Arc<AtomicBool>,
}

impl Read for EndWatch {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.file.read(buf)?;
        self.at_eof.store(n == 0 && !buf.is_empty(), Ordering::Relaxed);
        Ok(n)
    }
}

impl Seek for EndWatch {
    fn seek(&mut self, pos: SeekFrom) -> std::io::Result<u64> {
        self.at_eof.store(false, Ordering::Relaxed);
        self.file.seek(pos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::frames_in;
    use crate::audio::test_util::example;

    fn decode_all(track: &mut Track) -> Vec<f32> {
        let mut all = Vec::new();
        let mut buf = vec![0f32; 4096];
        loop {
            let n = track.read(&mut buf);
            all.extend_from_slice(&buf[..n]);
            if n < buf.len() {
                return all;
            }
        }
    }

    /// Frames of the whole track, read in blocks as the player does.
    fn decoded_frames(path: &Path) -> u64 {
        let mut track = Track::open(path).unwrap();
        let mut buf = vec![0f32; 2 * 1000];
        let mut samples = 0u64;
        loop {
            let n = track.read(&mut buf);
            samples += n as u64;
            if n < buf.len() {
                break;
            }
        }
        assert!(track.is_finished());
        assert!(!track.ended_early());
        assert_eq!(track.read(&mut buf), 0, "a finished track stays finished");
        assert_eq!(samples % 2, 0, "whole frames only");
        assert_eq!(
            track.position(),
            Duration::from_secs_f64(samples as f64 / 88_200.0)
        );
        samples / 2
    }

    #[test]
    fn decoded_length_is_the_gapless_length() {
        // Lengths of a gapless decode (`mpg123 -q -s FILE | wc -c` / 2 / 44100).
        // `soxi -D` says about 70 ms more: libmad keeps the encoder delay and padding.
        for (file, secs) in [
            ("music/sweep-60s.mp3", 60.0),
            ("music/tone-a.mp3", 20.0),
            ("music/christmas-bells.mp3", 19.2),
            ("music/extra-e.mp3", 15.0),
            ("ads/bread.mp3", 399_760.0 / 2.0 / 44_100.0),
        ] {
            let frames = decoded_frames(&example(file));
            let diff = (frames as f64 / SAMPLE_RATE as f64 - secs).abs();
            assert!(diff < 0.050, "{file}: decoded {frames} frames, expected {secs} s");
        }
    }

    /// The sweep's position from 100 ms read at the track's position.
    fn sweep_position_read(track: &mut Track) -> f64 {
        let mut buf = vec![0f32; 2 * 4410];
        assert_eq!(track.read(&mut buf), buf.len());
        let left: Vec<f32> = buf.chunks(2).map(|f| f[0]).collect();
        let crossings = left.windows(2).filter(|w| (w[0] < 0.0) != (w[1] < 0.0)).count();
        // The window's middle is 50 ms after where it started.
        (crossings as f64 / 2.0 / 0.1 - 200.0) / 30.0 - 0.05
    }

    #[test]
    fn skipping_lands_where_asked_and_past_the_end_finishes() {
        for at in [3.0, 12.0, 41.3] {
            let mut track = Track::open(&example("music/sweep-60s.mp3")).unwrap();
            track.skip_to(Duration::from_secs_f64(at));
            assert!((track.position().as_secs_f64() - at).abs() < 0.001);
            let heard = sweep_position_read(&mut track);
            assert!(
                (heard - at).abs() < 0.2,
                "skipped to {at} s, the sweep says {heard:.2} s"
            );
        }
        let mut track = Track::open(&example("music/tone-a.mp3")).unwrap();
        track.skip_to(Duration::from_secs(5));
        track.skip_to(Duration::from_secs(2));
        assert_eq!(track.position(), Duration::from_secs(5), "never backwards");
        track.skip_to(Duration::from_secs(90));
        let mut buf = vec![0f32; 2 * 1024];
        assert!(track.read(&mut buf) < buf.len(), "past the end the track ends");
    }

    #[test]
    fn mono_becomes_two_equal_channels() {
        let mut track = Track::open(&example("music/tone-a.mp3")).unwrap();
        let mut buf = vec![0f32; 2 * 44_100];
        assert_eq!(track.read(&mut buf), buf.len());
        assert!(buf.chunks(2).all(|f| f[0] == f[1]));
        assert!(
            buf.iter().any(|s| s.abs() > 0.01),
            "the first second is not silent"
        );
        assert_eq!(track.position(), Duration::from_secs(1));
        assert!(!track.is_finished());
    }

    /// Recovers the sweep's position from its frequency: zero crossings over a
    /// 100 ms window give f, and f(t) = 200 + 30 t. Checks that the start is
    /// trimmed (gapless) and that nothing drifts along the minute.
    #[test]
    fn sweep_position_matches_its_frequency() {
        let mut track = Track::open(&example("music/sweep-60s.mp3")).unwrap();
        let all = decode_all(&mut track);
        let left: Vec<f32> = all.chunks(2).map(|f| f[0]).collect();
        for t in [5.0, 20.0, 30.0, 50.0, 59.5] {
            let mid = frames_in(Duration::from_secs_f64(t)) as usize;
            let (a, b) = (mid - 2205, mid + 2205);
            let crossings = left[a..b]
                .windows(2)
                .filter(|w| (w[0] < 0.0) != (w[1] < 0.0))
                .count();
            let freq = crossings as f64 / 2.0 / 0.1;
            let recovered = (freq - 200.0) / 30.0;
            // One crossing more or less is 5 Hz here, i.e. 0.17 s of position.
            assert!(
                (recovered - t).abs() < 0.2,
                "at {t} s the sweep is at {freq} Hz ({recovered} s)"
            );
        }
    }

    #[test]
    fn broken_files_are_decode_errors_naming_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.mp3");
        std::fs::write(&empty, b"").unwrap();
        let text = dir.path().join("notes.mp3");
        std::fs::write(&text, "this is a text file, not audio\n".repeat(200)).unwrap();
        let mut truncated_header = std::fs::read(example("music/tone-a.mp3")).unwrap();
        truncated_header.truncate(3);
        let stub = dir.path().join("stub.mp3");
        std::fs::write(&stub, truncated_header).unwrap();
        for path in [&empty, &text, &stub] {
            match Track::open(path) {
                Err(e @ AudioError::Decode { .. }) => {
                    assert!(e.to_string().contains(&path.display().to_string()), "{e}")
                }
                Err(e) => panic!("{}: expected a decode error, got {e}", path.display()),
                Ok(_) => panic!("{} opened", path.display()),
            }
        }
    }

    #[test]
    fn a_missing_file_is_an_open_error() {
        let path = Path::new("/nonexistent/skycast/track.mp3");
        match Track::open(path) {
            Err(e @ AudioError::Open { .. }) => assert!(e.to_string().contains("/nonexistent/skycast")),
            Err(e) => panic!("expected an open error, got {e}"),
            Ok(_) => panic!("opened a missing file"),
        }
    }

    /// Writes tone-a.mp3 with `len` bytes of noise at its middle.
    fn damaged_copy(dir: &Path, len: usize) -> PathBuf {
        let mut bytes = std::fs::read(example("music/tone-a.mp3")).unwrap();
        let mid = bytes.len() / 2;
        let mut x = 0x2545_f491_u32;
        for b in &mut bytes[mid..mid + len] {
            // xorshift: deterministic noise, with sync-word-like bytes among it
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            *b = x as u8;
        }
        let path = dir.join(format!("damaged-{len}.mp3"));
        std::fs::write(&path, bytes).unwrap();
        path
    }

    /// Damage mid-file costs the damaged packets, or (rodio's limit) the rest of
    /// the track, flagged; never a panic.
    #[test]
    fn damage_mid_file_is_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let mut buf = vec![0f32; 2000];

        // A short damaged run: skipped, the track plays to its end.
        let mut track = Track::open(&damaged_copy(dir.path(), 2000)).unwrap();
        while track.read(&mut buf) == buf.len() {}
        assert!(
            track.position() > Duration::from_secs(19),
            "{:?}",
            track.position()
        );
        assert!(!track.ended_early());

        // A long one: rodio ends the track there; the early end is noticed.
        let mut track = Track::open(&damaged_copy(dir.path(), 20_000)).unwrap();
        while track.read(&mut buf) == buf.len() {}
        assert!(
            track.position() > Duration::from_secs(9),
            "{:?}",
            track.position()
        );
        assert!(track.ended_early());
    }
}
