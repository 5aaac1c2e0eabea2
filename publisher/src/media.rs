//! Media ingest checks: a file is accepted only if symphonia decodes it as MP3 from
//! start to end; duration, ID3 title/artist and EBU R128 loudness come out of the same pass.

use std::io::Cursor;

use ebur128::{Channel, EbuR128, Mode};
use symphonia::core::audio::{AudioBufferRef, SampleBuffer, SignalSpec};
use symphonia::core::codecs::DecoderOptions;
use symphonia::core::errors::Error as SymError;
use symphonia::core::formats::FormatOptions;
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::{MetadataOptions, StandardTagKey};
use symphonia::core::probe::Hint;

#[derive(Debug, Clone, PartialEq)]
pub struct Mp3Info {
    pub duration_ms: u64,
    pub title: Option<String>,
    pub artist: Option<String>,
    /// Integrated loudness (EBU R128, two decimals); `None` for digital silence.
    pub loudness_lufs: Option<f64>,
}

/// Integrated loudness of decoded audio, fed one decoded packet at a time.
struct LoudnessMeter {
    meter: EbuR128,
    spec: SignalSpec,
    samples: SampleBuffer<f32>,
}

impl LoudnessMeter {
    fn new(first: &AudioBufferRef) -> Option<LoudnessMeter> {
        let spec = *first.spec();
        let channels = spec.channels.count() as u32;
        let mut meter = EbuR128::new(channels, spec.rate, Mode::I).ok()?;
        if channels == 1 {
            // The player plays a mono file on both stereo channels, so it is heard (and a
            // recording measures) 3 dB louder than one channel alone: count it twice.
            meter.set_channel(0, Channel::DualMono).ok()?;
        }
        let samples = SampleBuffer::new(first.capacity() as u64, spec);
        Some(LoudnessMeter { meter, spec, samples })
    }

    /// Adds one decoded packet; `false` when the stream changed format mid-file, which
    /// the meter cannot follow without restarting.
    fn add(&mut self, decoded: &AudioBufferRef) -> bool {
        if *decoded.spec() != self.spec {
            return false;
        }
        let needed = decoded.capacity() * self.spec.channels.count();
        if self.samples.capacity() < needed {
            self.samples = SampleBuffer::new(decoded.capacity() as u64, self.spec);
        }
        self.samples.copy_interleaved_ref(decoded.clone());
        self.meter.add_frames_f32(self.samples.samples()).is_ok()
    }

    /// Rounded to two decimals; `None` when nothing was loud enough to measure
    /// (silence measures -inf).
    fn integrated_lufs(&self) -> Option<f64> {
        let lufs = self.meter.loudness_global().ok()?;
        lufs.is_finite().then(|| (lufs * 100.0).round() / 100.0)
    }
}

/// Decodes `bytes` fully; `Err` holds a reason a person can act on.
pub fn inspect_mp3(bytes: &[u8]) -> Result<Mp3Info, String> {
    if bytes.is_empty() {
        return Err("the file is empty (0 bytes)".into());
    }
    if bytes.starts_with(b"RIFF") {
        return Err("this is a WAV file with an .mp3 name: convert it to MP3 first".into());
    }
    let looks_like_mp3 =
        bytes.starts_with(b"ID3") || (bytes.len() > 1 && bytes[0] == 0xFF && bytes[1] & 0xE0 == 0xE0);
    if !looks_like_mp3 {
        return Err("the file does not start with an ID3 tag or an MPEG audio frame".into());
    }
    let mss = MediaSourceStream::new(Box::new(Cursor::new(bytes.to_vec())), Default::default());
    let mut hint = Hint::new();
    hint.with_extension("mp3");
    let mut probed = symphonia::default::get_probe()
        .format(&hint, mss, &FormatOptions::default(), &MetadataOptions::default())
        .map_err(|e| format!("no MP3 stream found ({e})"))?;

    let (mut title, mut artist) = (None, None);
    let mut take_tags = |rev: &symphonia::core::meta::MetadataRevision| {
        for tag in rev.tags() {
            match tag.std_key {
                Some(StandardTagKey::TrackTitle) => title = Some(tag.value.to_string()),
                Some(StandardTagKey::Artist) => artist = Some(tag.value.to_string()),
                _ => {}
            }
        }
    };
    if let Some(rev) = probed.metadata.get().as_ref().and_then(|m| m.current()) {
        take_tags(rev);
    }
    let mut format = probed.format;
    if let Some(rev) = format.metadata().current() {
        take_tags(rev);
    }

    let track = format.default_track().ok_or("the file holds no audio track")?;
    let track_id = track.id;
    let sample_rate = track
        .codec_params
        .sample_rate
        .ok_or("the audio track has no sample rate")?;
    let declared_frames = track.codec_params.n_frames;
    let mut decoder = symphonia::default::get_codecs()
        .make(&track.codec_params, &DecoderOptions::default())
        .map_err(|e| format!("no decoder for this audio ({e})"))?;

    let mut frames: u64 = 0;
    // Outer `None` until the first packet decodes; inner `None` once loudness cannot be measured.
    let mut loudness: Option<Option<LoudnessMeter>> = None;
    loop {
        let packet = match format.next_packet() {
            Ok(p) => p,
            Err(SymError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => {
                return Err(format!(
                    "the stream is damaged after {} ms ({e})",
                    frames * 1000 / sample_rate as u64
                ))
            }
        };
        if packet.track_id() != track_id {
            continue;
        }
        match decoder.decode(&packet) {
            Ok(buf) => {
                frames += buf.frames() as u64;
                let meter = loudness.get_or_insert_with(|| LoudnessMeter::new(&buf));
                if meter.as_mut().is_some_and(|m| !m.add(&buf)) {
                    *meter = None;
                }
            }
            Err(e) => {
                return Err(format!(
                    "audio frame at {} ms does not decode ({e})",
                    frames * 1000 / sample_rate as u64
                ))
            }
        }
    }
    if frames == 0 {
        return Err("no audio could be decoded".into());
    }
    // The Xing/Info header states the frame count: fewer decoded frames means a cut file.
    if let Some(declared) = declared_frames {
        if frames + (sample_rate as u64 / 10) < declared {
            return Err(format!(
                "the file is truncated: {} ms of {} ms decode",
                frames * 1000 / sample_rate as u64,
                declared * 1000 / sample_rate as u64
            ));
        }
    }
    Ok(Mp3Info {
        duration_ms: frames * 1000 / sample_rate as u64,
        title,
        artist,
        loudness_lufs: loudness.flatten().and_then(|m| m.integrated_lufs()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example(name: &str) -> Vec<u8> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../content-example")
            .join(name);
        std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    #[test]
    fn a_real_mp3_decodes_with_its_duration() {
        let info = inspect_mp3(&example("ads/coffee.mp3")).unwrap();
        assert!(info.duration_ms > 1000, "{info:?}");
    }

    #[test]
    fn loudness_is_measured_in_the_decoding_pass() {
        let lufs = |name: &str| {
            inspect_mp3(&example(name))
                .unwrap()
                .loudness_lufs
                .unwrap_or_else(|| panic!("{name}: no loudness"))
        };
        let (loud, quiet) = (lufs("loudness/loud.mp3"), lufs("loudness/quiet.mp3"));
        for value in [loud, quiet] {
            assert!(
                (-40.0..=-5.0).contains(&value),
                "implausible loudness {value} LUFS"
            );
        }
        // The two files hold the same noise 12 dB apart.
        assert!(
            (loud - quiet - 12.0).abs() <= 0.5,
            "loud {loud} LUFS, quiet {quiet} LUFS"
        );
        assert_eq!(loud, (loud * 100.0).round() / 100.0, "rounded to two decimals");
        assert!(inspect_mp3(&example("ads/coffee.mp3"))
            .unwrap()
            .loudness_lufs
            .is_some());
    }

    #[test]
    fn digital_silence_has_no_loudness() {
        use symphonia::core::audio::{AudioBuffer, Channels, Signal};
        let spec = SignalSpec::new(44_100, Channels::FRONT_LEFT | Channels::FRONT_RIGHT);
        let mut silence = AudioBuffer::<f32>::new(4410, spec);
        silence.render_silence(None);
        let mut meter =
            LoudnessMeter::new(&AudioBufferRef::F32(std::borrow::Cow::Borrowed(&silence))).unwrap();
        for _ in 0..50 {
            assert!(meter.add(&AudioBufferRef::F32(std::borrow::Cow::Borrowed(&silence))));
        }
        assert_eq!(meter.integrated_lufs(), None);
    }

    #[test]
    fn broken_files_are_refused_with_a_reason() {
        let good = example("ads/coffee.mp3");
        let mut wav = b"RIFF\x24\x00\x00\x00WAVEfmt ".to_vec();
        wav.extend(vec![0u8; 2000]);
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (Vec::new(), "empty"),
            (wav, "WAV"),
            (b"hello, I am a text file".to_vec(), "does not start"),
            (good[..good.len() / 2].to_vec(), "truncated"),
        ];
        for (bytes, words) in cases {
            let err = inspect_mp3(&bytes).expect_err(words);
            assert!(err.contains(words), "expected `{words}` in {err}");
        }
    }
}
