//! Content ids: the blake3 hash of a file's bytes, written as 64 lowercase hex characters.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A validated blake3 content id. Being 64 lowercase hex characters, it can never
/// hold a path separator, `..` or anything else that would escape a directory
/// when used as a file name.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MediaId([u8; 32]);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("media id `{shown}` is not a blake3 content id: expected 64 lowercase hex characters")]
pub struct MediaIdError {
    shown: String,
}

impl MediaId {
    /// The id of a complete in-memory byte string.
    pub fn of(bytes: &[u8]) -> MediaId {
        MediaId(*blake3::hash(bytes).as_bytes())
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// File name used for this media in every store: `<hex>.mp3`.
    pub fn file_name(&self) -> String {
        format!("{self}.mp3")
    }

    /// First 12 hex characters, for logs and readable reports.
    pub fn short(&self) -> String {
        self.to_string()[..12].to_string()
    }
}

impl FromStr for MediaId {
    type Err = MediaIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let well_formed = s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if !well_formed {
            // Cap what we echo back: the input may be hostile or huge.
            let shown: String = s.chars().take(80).collect();
            return Err(MediaIdError { shown });
        }
        let mut out = [0u8; 32];
        // Cannot fail: checked above that `s` is 64 hex characters.
        hex::decode_to_slice(s, &mut out).expect("validated hex");
        Ok(MediaId(out))
    }
}

impl fmt::Display for MediaId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for MediaId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MediaId({self})")
    }
}

impl Serialize for MediaId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for MediaId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Hashes a file while it streams past, counting its bytes, so a download or an
/// ingest never has to hold the whole file or read it twice.
#[derive(Default, Clone)]
pub struct ContentHasher {
    hasher: blake3::Hasher,
    len: u64,
}

impl ContentHasher {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn update(&mut self, chunk: &[u8]) {
        self.hasher.update(chunk);
        self.len += chunk.len() as u64;
    }

    /// Bytes seen so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn finalize(&self) -> (MediaId, u64) {
        (MediaId(*self.hasher.finalize().as_bytes()), self.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streaming_hash_equals_one_shot_hash() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let mut h = ContentHasher::new();
        for chunk in data.chunks(4097) {
            h.update(chunk);
        }
        assert_eq!(h.finalize(), (MediaId::of(&data), data.len() as u64));
    }

    #[test]
    fn id_round_trips_through_text() {
        let id = MediaId::of(b"hello");
        assert_eq!(id.to_string().parse::<MediaId>().unwrap(), id);
        assert_eq!(id.file_name(), format!("{id}.mp3"));
    }

    #[test]
    fn malformed_ids_are_refused() {
        let good = MediaId::of(b"x").to_string();
        let cases = [
            String::new(),
            good[..63].to_string(),
            format!("{good}0"),
            good.to_uppercase(),
            format!("../{}", &good[3..]),
            format!("{}/x", &good[..62]),
            format!("{}.mp3", &good[..60]),
            "g".repeat(64),
        ];
        for case in cases {
            let err = case.parse::<MediaId>().unwrap_err();
            assert!(err.to_string().contains("64 lowercase hex"), "{case}: {err}");
        }
    }
}
