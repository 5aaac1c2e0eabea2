//! Registering a shop player: the rules its id and shop name follow, the
//! puller configuration `player add` (and `player rotate-token`, the web UI's
//! "new token") prints for the shop's box, and enrolment: a one-time code
//! (`player enroll`, the admin's "Register a player") that the box redeems
//! with `skycast-puller enroll` for that same configuration.

use chrono::{DateTime, Utc};

use crate::data_dir::DataDir;
use crate::db::{Actor, Db, Enrolment, NewEnrolment, Redemption, RegisteredPlayer};
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
    check_new_player(data, id, shop)?;
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

/// A new player is registered on the primary only, with a plain id and shop name.
fn check_new_player(data: &DataDir, id: &str, shop: &str) -> Result<()> {
    data.refuse_if_follower()?;
    check_plain_name("player id", id)?;
    check_shop_name(shop)
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

/// Crockford's base32: digits and capitals without I, L, O and U, so a code
/// read aloud or copied by hand has no look-alike characters.
const CODE_ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
/// Characters of a code: 16 × 5 = 80 random bits, typed as 4 groups of 4.
pub const CODE_CHARS: usize = 16;
/// How long a code is valid unless `--valid-minutes` says otherwise.
pub const DEFAULT_VALID_MINUTES: i64 = 60;
/// The longest validity a code may be given: a code is for the next visit, not a credential.
pub const MAX_VALID_MINUTES: i64 = 24 * 60;

/// A fresh one-time code, as shown: `ABCD-EFGH-JKMN-PQRS`.
pub fn new_enrolment_code() -> String {
    code_from_bytes(crate::random_bytes::<10>())
}

/// 80 bits as 16 base32 characters in groups of 4.
fn code_from_bytes(bytes: [u8; 10]) -> String {
    let mut bits: u128 = 0;
    for b in bytes {
        bits = (bits << 8) | u128::from(b);
    }
    let mut out = String::with_capacity(CODE_CHARS + 3);
    for i in 0..CODE_CHARS {
        if i > 0 && i % 4 == 0 {
            out.push('-');
        }
        let shift = 5 * (CODE_CHARS - 1 - i);
        out.push(char::from(CODE_ALPHABET[((bits >> shift) & 0x1f) as usize]));
    }
    out
}

/// A code as typed, in the one form its hash is made of: upper case, without
/// dashes or spaces, `O` read as `0` and `I`/`L` as `1`. `None` when it cannot
/// be a code (wrong length or a character outside the alphabet).
pub fn normalise_code(text: &str) -> Option<String> {
    let mut out = String::with_capacity(CODE_CHARS);
    for c in text.chars().filter(|c| !matches!(c, '-' | ' ' | '\t')) {
        let c = match c.to_ascii_uppercase() {
            'O' => '0',
            'I' | 'L' => '1',
            c => c,
        };
        if !c.is_ascii() || !CODE_ALPHABET.contains(&(c as u8)) {
            return None;
        }
        out.push(c);
    }
    (out.len() == CODE_CHARS).then_some(out)
}

/// What an admin hands to the person at the shop's box, shown once.
#[derive(Debug, Clone, serde::Serialize)]
pub struct IssuedCode {
    pub enrolment: Enrolment,
    /// The one-time code, as shown (`ABCD-EFGH-JKMN-PQRS`); never stored.
    pub code: String,
    /// The CA's fingerprint the box checks before it sends the code.
    pub fingerprint: String,
    /// The command to run on the box.
    pub command: String,
}

/// What an admin asks for when making a code (`player enroll`, "Register a player").
#[derive(Debug, Clone, Copy)]
pub struct CodeRequest<'a> {
    pub id: &'a str,
    pub shop: &'a str,
    /// Written into the configuration and the command.
    pub server_url: &'a str,
    /// The player's data directory in its configuration (default `skycast-<id>`).
    pub player_data: Option<&'a str>,
    /// How long the code stays valid.
    pub valid: chrono::Duration,
}

/// Registers a pending enrolment and returns its one-time code (only its hash
/// is stored). Refused on a second site, for an id already registered or with
/// a pending enrolment, and for a validity over [`MAX_VALID_MINUTES`].
pub fn enroll_player(data: &DataDir, db: &Db, asked: CodeRequest<'_>, who: Actor<'_>) -> Result<IssuedCode> {
    let CodeRequest {
        id,
        shop,
        server_url,
        player_data,
        valid,
    } = asked;
    check_new_player(data, id, shop)?;
    if valid < chrono::Duration::zero() || valid > chrono::Duration::minutes(MAX_VALID_MINUTES) {
        return Err(PublisherError::BadRequest(format!(
            "a code is valid for at most {MAX_VALID_MINUTES} minutes: choose a shorter validity"
        )));
    }
    if db.player(id).is_ok() {
        return Err(PublisherError::Conflict(format!(
            "player `{id}` is already registered: `skycast-publisher player rotate-token --id {id}` gives it a new configuration, or `player remove` it first"
        )));
    }
    let fingerprint = ca_fingerprint(data)?;
    let code = new_enrolment_code();
    let normalised = normalise_code(&code)
        .ok_or_else(|| PublisherError::Internal("a new enrolment code does not read back".into()))?;
    let player_data = player_data_or_default(id, player_data);
    let enrolment = db.add_enrolment(&NewEnrolment {
        player_id: id,
        shop,
        code: &normalised,
        server_url,
        player_data: &player_data,
        created_by: who.name,
        via: who.via,
        created_at: who.at,
        expires_at: who.at + valid,
    })?;
    let command =
        format!("skycast-puller enroll --server {server_url} --code {code} --fingerprint {fingerprint}");
    Ok(IssuedCode {
        enrolment,
        code,
        fingerprint,
        command,
    })
}

/// Redeems the code a box sent from address `from` at `now`: the player is
/// registered with a fresh token and the code marked used, in one transaction,
/// and its puller configuration is returned (made before, so a failure
/// registers nothing). Unknown, used, expired and cancelled codes are each
/// refused with their own message.
pub fn redeem_code(
    data: &DataDir,
    db: &Db,
    code: &str,
    from: &str,
    now: DateTime<Utc>,
) -> Result<(Enrolment, String)> {
    data.refuse_if_follower()?;
    let normalised = normalise_code(code).ok_or_else(|| {
        PublisherError::CodeRefused(format!(
            "this is not an enrolment code: a code is {CODE_CHARS} letters and digits like ABCD-EFGH-JKMN-PQRS; check it with your admin"
        ))
    })?;
    let found = db
        .enrolment_by_code(&normalised)?
        .ok_or(crate::db::DbError::EnrolmentCodeUnknown)?;
    let token = new_player_token();
    let config = player_config_toml(
        data,
        &found.player_id,
        &found.shop,
        &token,
        &found.server_url,
        &found.player_data,
    )?;
    let redeemed = db.redeem_enrolment(Redemption {
        code: &normalised,
        token: &token,
        from,
        at: now,
    })?;
    Ok((redeemed, config))
}

/// The fingerprint players check the CA by: `sha256:` and the hex SHA-256 of
/// the CA certificate's DER.
pub fn ca_fingerprint(data: &DataDir) -> Result<String> {
    let path = data.ca_cert_path();
    let pem = std::fs::read(&path).map_err(PublisherError::io("read", &path))?;
    crate::tls::fingerprint_of_pem(&pem)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_four_groups_of_four_base32_characters() {
        assert_eq!(code_from_bytes([0; 10]), "0000-0000-0000-0000");
        assert_eq!(code_from_bytes([0xff; 10]), "ZZZZ-ZZZZ-ZZZZ-ZZZZ");
        let code = new_enrolment_code();
        assert_eq!(code.len(), 19, "{code}");
        assert_ne!(code, new_enrolment_code());
        assert_eq!(normalise_code(&code).unwrap(), code.replace('-', ""));
    }

    #[test]
    fn a_code_reads_back_whatever_its_case_dashes_and_look_alikes() {
        let want = Some("ABCD0123EFGH1111".to_string());
        for typed in [
            "ABCD-0123-EFGH-1111",
            "abcd-0123-efgh-1111",
            "ABCD0123EFGH1111",
            " abcd 0123 efgh 1111 ",
            "ABCD-O123-EFGH-IlLi",
        ] {
            assert_eq!(normalise_code(typed), want, "{typed}");
        }
        for refused in [
            "",
            "ABCD-0123-EFGH-111",
            "ABCD-0123-EFGH-11111",
            "ABCD-0123-EFGH-111U",
            "ÀBCD-0123-EFGH-1111",
        ] {
            assert_eq!(normalise_code(refused), None, "{refused}");
        }
    }
}
