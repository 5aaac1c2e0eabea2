//! Skycast publisher: turns plannings into signed versions in a git store, serves
//! them to shop players over HTTPS, and gives auditors offline verification.

pub mod audit;
pub mod data_dir;
pub mod db;
pub mod error;
pub mod media;
pub mod publish;
pub mod server;
pub mod store;
pub mod tls;
pub mod web;
pub mod workspace;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

pub use data_dir::{DataDir, InitOptions};
pub use error::{PublisherError, Result};
pub use server::{run, Head, ServeConfig, TlsListener, TransportMode};

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

/// A puller configuration ready to save, as `player add` prints it.
pub fn player_config_toml(
    data: &DataDir,
    player_id: &str,
    shop: &str,
    token: &str,
    server_url: &str,
    player_data: &str,
) -> Result<String> {
    let ca_path = data.ca_cert_path();
    let ca = std::fs::read_to_string(&ca_path).map_err(PublisherError::io("read", &ca_path))?;
    let mut doc = toml::Table::new();
    doc.insert("player_id".into(), player_id.into());
    doc.insert("shop".into(), shop.into());
    doc.insert("server".into(), server_url.into());
    doc.insert("token".into(), token.into());
    doc.insert("data".into(), player_data.into());
    doc.insert(
        "trusted_keys".into(),
        toml::Value::Array(vec![data.public_key()?.to_string().into()]),
    );
    doc.insert("ca_cert".into(), ca.into());
    doc.insert("poll_interval_secs".into(), 10.into());
    doc.insert("long_poll_secs".into(), 30.into());
    doc.insert("parallel_downloads".into(), 4.into());
    doc.insert(
        "allow_insecure_http".into(),
        server_url.starts_with("http://").into(),
    );
    let body = toml::to_string(&doc).map_err(|e| PublisherError::Internal(e.to_string()))?;
    Ok(format!(
        "# Skycast puller configuration for player `{player_id}` (shop `{shop}`).\n\
         # Keep it private: the token lets this player read the published versions.\n{body}"
    ))
}

/// Player ids and shop names end up in URLs, file names and configs: keep them plain.
pub fn check_plain_name(what: &str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(PublisherError::BadRequest(format!(
            "{what} `{name}` must be 1-64 characters of a-z, 0-9, `-` or `_`"
        )))
    }
}
