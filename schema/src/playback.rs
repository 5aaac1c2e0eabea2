//! How players play: fades, loudness targets, the fallback playlist and, for each
//! kind of message, when it starts and how the music goes on after it.

use serde::{Deserialize, Serialize};

use crate::media_kind::MediaKind;

/// When a message starts once it is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StartMode {
    /// At once, mid-track (after a short fade of the music).
    Cut,
    /// After the track that is playing ends.
    Boundary,
}

/// How the music goes on after a message that cut it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AfterMode {
    /// The interrupted track goes on from where it stopped.
    #[default]
    Resume,
    /// The interrupted track is dropped; the next one plays.
    Next,
    /// The interrupted track starts again from its beginning.
    Restart,
}

/// The behaviour of one kind of message.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MessageMode {
    pub start: StartMode,
    #[serde(default)]
    pub after: AfterMode,
    /// When set, the music keeps playing this many dB lower under the message
    /// instead of pausing (for spoken announcements).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duck_db: Option<f32>,
}

impl MessageMode {
    const fn new(start: StartMode) -> MessageMode {
        MessageMode {
            start,
            after: AfterMode::Resume,
            duck_db: None,
        }
    }

    /// This mode with an ad rule's or an interrupt's own `start` and `after`, as
    /// the resolver plays it.
    pub fn with_overrides(mut self, start: Option<StartMode>, after: Option<AfterMode>) -> MessageMode {
        if let Some(start) = start {
            self.start = start;
        }
        if let Some(after) = after {
            self.after = after;
        }
        self
    }
}

fn default_scheduled_ad() -> MessageMode {
    MessageMode::new(StartMode::Boundary)
}
fn default_play_now() -> MessageMode {
    MessageMode::new(StartMode::Cut)
}
fn default_closing() -> MessageMode {
    MessageMode::new(StartMode::Boundary)
}
fn default_urgent() -> MessageMode {
    MessageMode::new(StartMode::Cut)
}

/// Defaults per kind of message; an ad rule or an interrupt may override `start`
/// and `after` for itself.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MessageModes {
    /// Ads from `ads:` rules (every N tracks or at fixed times).
    #[serde(default = "default_scheduled_ad")]
    pub ad: MessageMode,
    /// Sales "play now" interrupts (levels `ad` and `announcement`).
    #[serde(default = "default_play_now")]
    pub play_now: MessageMode,
    /// The closing announcement.
    #[serde(default = "default_closing")]
    pub closing: MessageMode,
    /// Urgent interrupts.
    #[serde(default = "default_urgent")]
    pub urgent: MessageMode,
}

impl Default for MessageModes {
    fn default() -> Self {
        MessageModes {
            ad: default_scheduled_ad(),
            play_now: default_play_now(),
            closing: default_closing(),
            urgent: default_urgent(),
        }
    }
}

fn default_target() -> f64 {
    -16.0
}

/// Loudness every kind of media is brought to, in LUFS.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetLoudness {
    #[serde(default = "default_target")]
    pub music: f64,
    #[serde(default = "default_target")]
    pub ad: f64,
    #[serde(default = "default_target")]
    pub announcement: f64,
    #[serde(default = "default_target")]
    pub urgent: f64,
}

impl Default for TargetLoudness {
    fn default() -> Self {
        TargetLoudness {
            music: -16.0,
            ad: -16.0,
            announcement: -16.0,
            urgent: -16.0,
        }
    }
}

impl TargetLoudness {
    pub fn for_kind(&self, kind: MediaKind) -> f64 {
        match kind {
            MediaKind::Music => self.music,
            MediaKind::Ad => self.ad,
            MediaKind::Announcement => self.announcement,
            MediaKind::Urgent => self.urgent,
        }
    }
}

fn default_fade_ms() -> u32 {
    500
}

/// The `playback:` section of a planning and a manifest. Every field has a default,
/// so the section may be left out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Playback {
    /// Fade of the music around an interruption, in milliseconds.
    #[serde(default = "default_fade_ms")]
    pub fade_ms: u32,
    #[serde(default)]
    pub target_lufs: TargetLoudness,
    /// Plays whenever a shop is open and no schedule rule matches; when unset, all
    /// music of the manifest plays in order, so a shop is never silent while open.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback_playlist: Option<String>,
    #[serde(default)]
    pub messages: MessageModes,
}

impl Default for Playback {
    fn default() -> Self {
        Playback {
            fade_ms: default_fade_ms(),
            target_lufs: TargetLoudness::default(),
            fallback_playlist: None,
            messages: MessageModes::default(),
        }
    }
}

impl Playback {
    pub fn is_default(&self) -> bool {
        *self == Playback::default()
    }
}

/// The largest gain a player applies to reach the target, so a near-silent file is
/// not pumped up into noise.
pub const MAX_GAIN_DB: f64 = 20.0;

/// Gain in dB that brings a file measured at `loudness_lufs` to `target_lufs`,
/// bounded to ±[`MAX_GAIN_DB`]. Files without a measurement play unchanged.
pub fn gain_db(loudness_lufs: Option<f64>, target_lufs: f64) -> f64 {
    match loudness_lufs {
        Some(l) if l.is_finite() => (target_lufs - l).clamp(-MAX_GAIN_DB, MAX_GAIN_DB),
        _ => 0.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn playback_section_defaults_when_left_out() {
        let p: Playback = serde_norway::from_str("{}").unwrap();
        assert!(p.is_default());
        assert_eq!(p.messages.ad.start, StartMode::Boundary);
        assert_eq!(p.messages.urgent.start, StartMode::Cut);
        assert_eq!(p.messages.play_now.after, AfterMode::Resume);
        assert_eq!(p.fade_ms, 500);
    }

    #[test]
    fn playback_section_reads_partial_overrides() {
        let p: Playback =
            serde_norway::from_str("messages: {ad: {start: cut, after: next}}\ntarget_lufs: {ad: -18}")
                .unwrap();
        assert_eq!(p.messages.ad.start, StartMode::Cut);
        assert_eq!(p.messages.ad.after, AfterMode::Next);
        assert_eq!(p.messages.closing.start, StartMode::Boundary);
        assert_eq!(p.target_lufs.ad, -18.0);
        assert_eq!(p.target_lufs.music, -16.0);
    }

    #[test]
    fn a_rule_overrides_only_what_it_sets() {
        let base = MessageMode {
            start: StartMode::Boundary,
            after: AfterMode::Resume,
            duck_db: Some(-12.0),
        };
        let cases = [
            (None, None, StartMode::Boundary, AfterMode::Resume),
            (Some(StartMode::Cut), None, StartMode::Cut, AfterMode::Resume),
            (None, Some(AfterMode::Next), StartMode::Boundary, AfterMode::Next),
            (
                Some(StartMode::Cut),
                Some(AfterMode::Restart),
                StartMode::Cut,
                AfterMode::Restart,
            ),
        ];
        for (start, after, want_start, want_after) in cases {
            let mode = base.with_overrides(start, after);
            assert_eq!(
                (mode.start, mode.after, mode.duck_db),
                (want_start, want_after, Some(-12.0))
            );
        }
    }

    #[test]
    fn gain_brings_files_to_the_target_within_bounds() {
        let cases = [
            (Some(-28.0), -16.0, 12.0),
            (Some(-10.0), -16.0, -6.0),
            (Some(-70.0), -16.0, MAX_GAIN_DB),
            (None, -16.0, 0.0),
            (Some(f64::NEG_INFINITY), -16.0, 0.0),
        ];
        for (loudness, target, want) in cases {
            assert_eq!(gain_db(loudness, target), want, "{loudness:?} → {target}");
        }
    }
}
