//! Registering a shop player: the rules its id and shop name follow, and the
//! puller configuration `player add` (and `player rotate-token`, the web UI's
//! "new token") prints for the shop's box.

use crate::data_dir::DataDir;
use crate::db::{Actor, Db, RegisteredPlayer};
use crate::error::{PublisherError, Result};

/// A new bearer token for a player: 32 random bytes.
pub fn new_player_token() -> String {
    format!("skp_{}", crate::random_token())
}

/// Registers player `id` of `shop` and returns its puller configuration, for
/// `server_url` with data directory `player_data` (default `skycast-<id>`).
/// With `out`, the configuration is also written there (mode 0600), staged
/// before the player exists: a file that cannot be written registers nothing.
pub fn add_player(
    data: &DataDir,
    db: &Db,
    id: &str,
    shop: &str,
    server_url: &str,
    player_data: Option<&str>,
    out: Option<&std::path::Path>,
) -> Result<String> {
    data.refuse_if_follower()?;
    check_plain_name("player id", id)?;
    check_shop_name(shop)?;
    let token = new_player_token();
    let config = player_config_toml(
        data,
        id,
        shop,
        &token,
        server_url,
        &player_data_or_default(id, player_data),
    )?;
    // Dropped on failure, a staged file leaves nothing behind.
    let staged = out.map(|path| stage_private(path, &config)).transpose()?;
    db.add_player(id, shop, &token)?;
    if let Some(staged) = staged {
        staged.commit()?;
    }
    Ok(config)
}

fn player_data_or_default(id: &str, player_data: Option<&str>) -> String {
    player_data.map_or_else(|| format!("skycast-{id}"), str::to_string)
}

/// Gives player `id` a new token (its old one is refused from its next request,
/// a waiting long-poll included) and returns the player and its new puller
/// configuration, for `server_url` with data directory `player_data` (default
/// `skycast-<id>`). The configuration is made before the token changes, so a
/// failure leaves the old token working.
pub fn rotate_player_token(
    data: &DataDir,
    db: &Db,
    id: &str,
    who: Actor<'_>,
    server_url: &str,
    player_data: Option<&str>,
) -> Result<(RegisteredPlayer, String)> {
    let player = db.player(id)?;
    let token = new_player_token();
    let config = player_config_toml(
        data,
        id,
        &player.shop,
        &token,
        server_url,
        &player_data_or_default(id, player_data),
    )?;
    let player = db.rotate_player_token(id, &token, who)?;
    Ok((player, config))
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
    // With a trust root the player follows it from the newest one (verified by
    // its own threshold); a directory made before roots pins its one key.
    match crate::trust::local_chain(data)? {
        Some(root) => {
            let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
            doc.insert("root".into(), text(root.bytes()).into());
            doc.insert("root_signatures".into(), text(root.signature_bytes()).into());
        }
        None => {
            doc.insert(
                "trusted_keys".into(),
                toml::Value::Array(vec![data.public_key()?.to_string().into()]),
            );
        }
    }
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

/// Player ids and shop names end up in URLs, file names and configs: keep them
/// plain, by the manifest's own rule ([`skycast_schema::is_plain_name`]).
pub fn check_plain_name(what: &str, name: &str) -> Result<()> {
    if skycast_schema::is_plain_name(name) {
        Ok(())
    } else {
        Err(PublisherError::BadRequest(format!(
            "{what} `{name}` must be {}",
            skycast_schema::PLAIN_NAME_RULE
        )))
    }
}

/// A shop name a manifest accepts: plain, and not `all` (which targets every shop).
pub fn check_shop_name(name: &str) -> Result<()> {
    check_plain_name("shop", name)?;
    if skycast_schema::is_shop_name(name) {
        Ok(())
    } else {
        Err(PublisherError::BadRequest(format!(
            "shop `{name}` is reserved for targeting every shop: choose another name"
        )))
    }
}

/// A puller configuration on its way to a file only its owner can read: written
/// in full to a temporary file with mode 0600 beside `path`, then renamed over
/// it by [`PrivateFile::commit`]. Dropped uncommitted, it leaves nothing behind.
pub struct PrivateFile {
    tmp: std::path::PathBuf,
    path: std::path::PathBuf,
    committed: bool,
}

/// Stages `text` for `path` (see [`PrivateFile`]); nothing is at `path` yet.
pub fn stage_private(path: &std::path::Path, text: &str) -> Result<PrivateFile> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let name = path.file_name().ok_or_else(|| {
        PublisherError::BadRequest(format!("`{}` is not a file path: name a file", path.display()))
    })?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".tmp-{}", hex::encode(crate::random_bytes::<6>())));
    let tmp = path.with_file_name(tmp_name);
    let staged = PrivateFile {
        tmp: tmp.clone(),
        path: path.to_path_buf(),
        committed: false,
    };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(&tmp)
        .map_err(PublisherError::io("create", &tmp))?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(PublisherError::io("write", &tmp))?;
    Ok(staged)
}

impl PrivateFile {
    /// Puts the staged file at its path, replacing what was there.
    pub fn commit(mut self) -> Result<()> {
        std::fs::rename(&self.tmp, &self.path).map_err(PublisherError::io("rename into", &self.path))?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for PrivateFile {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}
