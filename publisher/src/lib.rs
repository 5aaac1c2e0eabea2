//! Skycast publisher: turns plannings into signed versions in a git store, serves
//! them to shop players over HTTPS, and gives auditors offline verification.

pub mod app;
pub mod audit;
pub mod cert_renewal;
mod cron;
pub mod data_dir;
pub mod db;
pub mod describe;
pub mod enrol;
pub mod error;
pub mod fleet;
pub mod follow;
mod http;
pub mod media;
pub mod metrics;
pub mod mirror;
pub mod net;
pub mod notify;
pub mod passwords;
pub mod protocol;
pub mod publish;
pub mod resign;
pub mod stamp;
pub mod store;
pub mod systemd;
pub mod tls;
pub mod trust;
pub mod web;
pub mod workspace;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

pub use app::{run, ServeConfig, TransportMode};
pub use data_dir::{DataDir, FollowerInit, InitOptions, RootKeysSpec};
pub use enrol::{check_plain_name, check_shop_name, player_config_toml};
pub use error::{PublisherError, Result};
pub use net::TlsListener;
pub use skycast_schema::Head;

/// `N` bytes from the OS random source.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    // The OS random source failing leaves no safe way to make keys, salts or tokens.
    getrandom::getrandom(&mut bytes).expect("OS random source available");
    bytes
}

/// 32 random bytes as URL-safe base64 text: player tokens, generated passwords.
pub fn random_token() -> String {
    URL_SAFE_NO_PAD.encode(random_bytes::<32>())
}
