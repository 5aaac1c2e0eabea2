//! Skycast puller: pulls signed manifests and media from the publisher, verifies
//! everything, and swaps the shop's `current` version atomically.
//!
//! Entry points: [`sync_once`] (one pull), [`run`] (the daemon loop), [`status()`],
//! [`enroll::enroll`] (a one-time code traded for the configuration).
//! This file only declares the modules and re-exports what callers use.

pub mod audio;
pub mod client;
pub mod clock;
pub mod commands;
pub mod config;
pub mod daemon;
pub mod download;
pub mod enroll;
pub mod live;
pub mod local_store;
pub mod outbox;
pub mod play_log;
pub mod player;
mod random;
pub mod report;
pub mod sources;
pub mod state;
pub mod status;
pub mod sync;
pub mod systemd;
#[cfg(test)]
mod test_support;
pub mod transport;
pub mod trust;

pub use client::{Client, ClientError, Head, MAX_MANIFEST_BYTES, MAX_SIGNATURE_BYTES};
pub use clock::{clock_correction, judge_clock, JudgedClock, CLOCK_TOLERANCE_MS};
pub use config::{Config, ConfigError, MinThroughput, MirrorTransport, Overrides, Token, TransportPolicy};
pub use daemon::{run, RunError};
pub use download::{DownloadError, DownloadStats};
pub use live::{ClockSetting, Live, LiveState};
pub use local_store::{Layout, Pruned, StoreError};
pub use outbox::{Outbox, OutboxError, OutboxSummary};
pub use player::{PlayEvent, PlayerError, PlayerHandle, PlayerOptions};
pub(crate) use random::random_bytes;
pub use report::{ReportError, Reporter};
pub use sources::{MediaServed, Refused, ServedBy, Sources};
pub use state::{LastSync, StateError};
pub use status::{status, status_at, Status, StatusError};
pub use sync::{sync_once, sync_sources, sync_with, SyncError, SyncOutcome, SyncReport};
pub use transport::{FetchRequest, FetchResponse, HttpsTransport, PostRequest, Transport, TransportError};
