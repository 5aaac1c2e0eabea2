//! `skycast-puller enroll`: a shop's box trades a one-time code for its
//! configuration, copying no secret by hand.
//!
//! 1. `GET /v1/ca.pem` over HTTPS **without** certificate verification (the box
//!    trusts nothing yet), and the SHA-256 of the CA certificate's DER compared
//!    with the fingerprint the admin gave: a mismatch stops here, before the
//!    code leaves the box.
//! 2. `POST /v1/enroll {"code": ...}` over HTTPS trusting only that CA (normal
//!    verification, host name included).
//! 3. The answer is checked with the puller's own parser ([`Config::from_toml`])
//!    and must pin the same CA, then written with mode 0600 (temporary file,
//!    fsync, rename; never readable by others, not even for a moment).
//!
//! HTTP stays in [`crate::transport`]; this module sees [`Transport`].

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::Digest;
use skycast_schema::protocol::{CA_CERT_PATH, ENROLL_PATH};

use crate::config::{check_server_url, Config, ConfigError, Overrides, TransportPolicy};
use crate::transport::{
    BuildError, FetchRequest, FetchResponse, HttpsTransport, PostRequest, Transport, TransportError,
};

/// Where `enroll` writes the configuration unless `--config` says otherwise:
/// the file the Debian package's unit reads.
pub const DEFAULT_CONFIG: &str = "/etc/skycast/puller.toml";
/// The user the Debian package's unit runs the puller as: run as root (`sudo`),
/// `enroll` gives it a configuration written in [`DEFAULT_CONFIG`]'s directory.
const SERVICE_USER: &str = "skycast";
/// A CA certificate is a few kilobytes.
const MAX_CA_BYTES: usize = 64 * 1024;
/// A configuration is a few kilobytes too (the CA's PEM is most of it).
const MAX_CONFIG_BYTES: usize = 1024 * 1024;
/// Time allowed for each of the two requests.
const TIMEOUT: Duration = Duration::from_secs(30);

/// What `skycast-puller enroll` was given.
#[derive(Debug, Clone)]
pub struct EnrollOptions {
    /// The publisher's base URL (https).
    pub server: String,
    /// The one-time code, as typed.
    pub code: String,
    /// The CA fingerprint, `sha256:<hex>` or colon-separated hex.
    pub fingerprint: String,
    /// Where the configuration goes.
    pub config: PathBuf,
    /// Written into the configuration as its `data` directory (absolute) instead of the publisher's choice.
    pub data: Option<PathBuf>,
    /// Replace an existing configuration.
    pub force: bool,
}

/// A configuration written.
#[derive(Debug, Clone)]
pub struct Enrolled {
    pub config_path: PathBuf,
    pub player_id: String,
    pub shop: Option<String>,
    pub data: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum EnrollError {
    #[error(
        "fingerprint `{given}` is not a SHA-256 fingerprint: give it as the admin's page or `player enroll` shows it, `sha256:` and 64 hex digits (or 32 colon-separated hex pairs)"
    )]
    BadFingerprint { given: String },
    #[error("{0}")]
    BadServer(#[from] ConfigError),
    #[error("`{path}` exists already: enrolling would replace that configuration; pass --force to replace it, or --config to write elsewhere")]
    ConfigExists { path: PathBuf },
    #[error("{0}")]
    Build(#[from] BuildError),
    #[error("{0}: check the server URL and that the publisher is running")]
    Transport(#[from] TransportError),
    #[error("{url} answered {status}: {message}")]
    Refused {
        url: String,
        status: u16,
        message: String,
    },
    #[error("{url} answered more than {max_bytes} bytes: check that the server URL is the publisher's")]
    TooLarge { url: String, max_bytes: usize },
    #[error("{url} sent no usable PEM certificate ({reason}): check that the server URL is the publisher's")]
    BadCa { url: String, reason: String },
    #[error(
        "the server's CA is {server}, you were given {given}: check the fingerprint with your admin, possible attack (the code was not sent to {url})"
    )]
    FingerprintMismatch {
        url: String,
        server: String,
        given: String,
    },
    #[error(
        "the configuration {url} answered is not usable ({reason}): tell your admin; nothing was written"
    )]
    BadConfig { url: String, reason: String },
    #[error(
        "the configuration {url} answered pins the CA {pinned}, not the one checked ({checked}): tell your admin; nothing was written"
    )]
    ConfigCaMismatch {
        url: String,
        pinned: String,
        checked: String,
    },
    #[error("cannot {action} `{path}`: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> EnrollError {
    let path = path.to_path_buf();
    move |source| EnrollError::Io { action, path, source }
}

/// A SHA-256 fingerprint as typed: `sha256:` (any case) then 64 hex digits,
/// colons between pairs allowed, with or without the prefix.
pub fn parse_fingerprint(text: &str) -> Option<[u8; 32]> {
    let lower = text.trim().to_ascii_lowercase();
    let digits = lower.strip_prefix("sha256:").unwrap_or(&lower);
    let digits: String = digits.chars().filter(|c| *c != ':').collect();
    if digits.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    hex::decode_to_slice(&digits, &mut out).ok()?;
    Some(out)
}

/// The form the publisher shows: `sha256:<lower-case hex>`.
pub fn format_fingerprint(bytes: &[u8; 32]) -> String {
    format!("sha256:{}", hex::encode(bytes))
}

/// The fingerprint of the first certificate in `pem`.
pub fn fingerprint_of_pem(pem: &[u8]) -> Result<[u8; 32], String> {
    let der = rustls_pemfile::certs(&mut std::io::BufReader::new(pem))
        .next()
        .ok_or_else(|| "no certificate in it".to_string())?
        .map_err(|e| e.to_string())?;
    Ok(sha2::Sha256::digest(der.as_ref()).into())
}

/// Enrols this box: see the module's documentation for the steps.
pub async fn enroll(opts: &EnrollOptions) -> Result<Enrolled, EnrollError> {
    let given = parse_fingerprint(&opts.fingerprint).ok_or_else(|| EnrollError::BadFingerprint {
        given: opts.fingerprint.chars().take(120).collect(),
    })?;
    let server = check_server_url(&opts.server, TransportPolicy::HttpsOnly)?;
    refuse_existing(&opts.config, opts.force)?;

    let ca_url = format!("{server}{CA_CERT_PATH}");
    let unverified = HttpsTransport::accepting_any_certificate()?;
    let resp = unverified.fetch(FetchRequest::whole(&ca_url, TIMEOUT)).await?;
    let ca_pem = answer(resp, &ca_url, MAX_CA_BYTES).await?;
    let served = fingerprint_of_pem(&ca_pem).map_err(|reason| EnrollError::BadCa {
        url: ca_url.clone(),
        reason,
    })?;
    if served != given {
        return Err(EnrollError::FingerprintMismatch {
            url: server,
            server: format_fingerprint(&served),
            given: format_fingerprint(&given),
        });
    }
    let ca_pem = String::from_utf8(ca_pem).map_err(|_| EnrollError::BadCa {
        url: ca_url.clone(),
        reason: "not UTF-8 text".into(),
    })?;

    let enroll_url = format!("{server}{ENROLL_PATH}");
    let pinned = HttpsTransport::pinned_to(&ca_pem)?;
    let body = serde_json::json!({ "code": opts.code }).to_string();
    let resp = pinned
        .post(PostRequest {
            url: enroll_url.clone(),
            body: body.into(),
            timeout: TIMEOUT,
        })
        .await?;
    let text = answer(resp, &enroll_url, MAX_CONFIG_BYTES).await?;
    let bad_config = |reason: String| EnrollError::BadConfig {
        url: enroll_url.clone(),
        reason,
    };
    let text = String::from_utf8(text).map_err(|_| bad_config("not UTF-8 text".into()))?;
    let text = match &opts.data {
        Some(dir) => with_data_dir(&text, dir).map_err(bad_config)?,
        None => text,
    };
    let base = config_dir(&opts.config);
    let base = std::path::absolute(&base).unwrap_or(base);
    let config = Config::from_toml(&text, &opts.config, &base, &Overrides::default())
        .map_err(|e| bad_config(e.to_string()))?;
    let pinned_fp = config
        .ca_cert
        .as_deref()
        .map(|pem| fingerprint_of_pem(pem.as_bytes()))
        .transpose()
        .map_err(bad_config)?;
    if pinned_fp != Some(given) {
        return Err(EnrollError::ConfigCaMismatch {
            url: enroll_url,
            pinned: pinned_fp.map_or_else(|| "none".to_string(), |f| format_fingerprint(&f)),
            checked: format_fingerprint(&given),
        });
    }
    write_private(&opts.config, &text, opts.force)?;
    Ok(Enrolled {
        config_path: opts.config.clone(),
        player_id: config.player_id,
        shop: config.shop,
        data: config.data,
    })
}

/// The directory of a config file, `.` for a bare file name.
fn config_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn refuse_existing(path: &Path, force: bool) -> Result<(), EnrollError> {
    if !force && std::fs::symlink_metadata(path).is_ok() {
        return Err(EnrollError::ConfigExists {
            path: path.to_path_buf(),
        });
    }
    Ok(())
}

/// The body of a 200 answer, at most `max` bytes; any other status is a
/// refusal with the server's `{"error": ...}` message.
async fn answer(mut resp: FetchResponse, url: &str, max: usize) -> Result<Vec<u8>, EnrollError> {
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        if body.len() + chunk.len() > max {
            return Err(EnrollError::TooLarge {
                url: url.to_string(),
                max_bytes: max,
            });
        }
        body.extend_from_slice(&chunk);
    }
    if resp.status.is_success() {
        return Ok(body);
    }
    let message = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
        .unwrap_or_else(|| String::from_utf8_lossy(&body).chars().take(200).collect());
    Err(EnrollError::Refused {
        url: url.to_string(),
        status: resp.status.as_u16(),
        message: message.trim_end_matches('.').to_string(),
    })
}

/// The configuration with its `data` set to `dir` (made absolute: a flag is
/// relative to the working directory, a config's paths to the config file).
fn with_data_dir(text: &str, dir: &Path) -> Result<String, String> {
    let dir = std::path::absolute(dir).map_err(|e| format!("the --data directory: {e}"))?;
    let mut table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| e.message().to_string())?;
    table.insert("data".into(), dir.to_string_lossy().into_owned().into());
    let header: String = text
        .lines()
        .take_while(|l| l.starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect();
    let body = toml::to_string(&table).map_err(|e| e.to_string())?;
    Ok(format!("{header}{body}"))
}

/// Writes `text` to `path` with mode 0600: a temporary file beside it
/// (created 0600, never following a link), fsynced, then renamed over it
/// (`replace`) or linked into place only if nothing is there, and the
/// directory fsynced. A failure leaves nothing behind.
fn write_private(path: &Path, text: &str, replace: bool) -> Result<(), EnrollError> {
    let dir = config_dir(path);
    let name = path.file_name().ok_or_else(|| EnrollError::Io {
        action: "write",
        path: path.to_path_buf(),
        source: std::io::Error::other("not a file path: name a file"),
    })?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".tmp-{}", hex::encode(crate::random_bytes::<6>())));
    let tmp = dir.join(tmp_name);
    let written = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(&tmp)
            .map_err(io("create", &tmp))?;
        if let Some((uid, gid)) = service_owner(path) {
            std::os::unix::fs::fchown(&file, Some(uid), Some(gid))
                .map_err(io("give to the skycast user", &tmp))?;
        }
        file.write_all(text.as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(io("write", &tmp))?;
        if replace {
            std::fs::rename(&tmp, path).map_err(io("rename into", path))
        } else {
            // A link fails if something appeared at `path` meanwhile: never replaced by accident.
            match std::fs::hard_link(&tmp, path) {
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(EnrollError::ConfigExists {
                    path: path.to_path_buf(),
                }),
                other => other.map_err(io("write", path)),
            }
        }
    })();
    let _ = std::fs::remove_file(&tmp);
    written?;
    std::fs::File::open(&dir)
        .and_then(|d| d.sync_all())
        .map_err(io("sync", &dir))
}

/// The service user's uid and gid when root writes into the package's config
/// directory (`/etc/skycast`, which only root may write): the unit reads the
/// file as that user, as the package's `postinst` leaves it.
fn service_owner(path: &Path) -> Option<(u32, u32)> {
    if !nix::unistd::geteuid().is_root()
        || Some(config_dir(path).as_path()) != Path::new(DEFAULT_CONFIG).parent()
    {
        return None;
    }
    let user = nix::unistd::User::from_name(SERVICE_USER).ok()??;
    Some((user.uid.as_raw(), user.gid.as_raw()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

    #[test]
    fn fingerprints_are_read_with_or_without_prefix_colons_and_case() {
        let want = parse_fingerprint(HEX).unwrap();
        assert_eq!(format_fingerprint(&want), format!("sha256:{HEX}"));
        let colons = HEX
            .as_bytes()
            .chunks(2)
            .map(|p| std::str::from_utf8(p).unwrap().to_uppercase())
            .collect::<Vec<_>>()
            .join(":");
        for typed in [
            format!("sha256:{HEX}"),
            format!("SHA256:{}", HEX.to_uppercase()),
            colons.clone(),
            format!("sha256:{colons}"),
            format!("  {HEX}\n"),
        ] {
            assert_eq!(parse_fingerprint(&typed), Some(want), "{typed}");
        }
        for refused in [
            "",
            "sha256:",
            &HEX[..62],
            &format!("{HEX}00"),
            &format!("sha1:{HEX}"),
            &HEX.replace('a', "g"),
        ] {
            assert_eq!(parse_fingerprint(refused), None, "{refused}");
        }
    }

    #[test]
    fn a_config_is_written_owner_only_and_not_over_an_existing_one_without_force() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("puller.toml");
        write_private(&path, "a = 1\n", false).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let err = write_private(&path, "a = 2\n", false).unwrap_err();
        assert!(matches!(err, EnrollError::ConfigExists { .. }), "{err}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "a = 1\n");
        write_private(&path, "a = 3\n", true).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "a = 3\n");
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(left.len(), 1, "no temporary file left");
    }

    #[test]
    fn the_data_flag_replaces_the_configs_data_and_keeps_its_header() {
        let text = "# header\n# two\nplayer_id = \"a\"\ndata = \"skycast-a\"\n";
        let out = with_data_dir(text, Path::new("/var/lib/skycast/puller")).unwrap();
        assert!(out.starts_with("# header\n# two\n"), "{out}");
        let table: toml::Table = out.parse().unwrap();
        assert_eq!(table["data"].as_str(), Some("/var/lib/skycast/puller"));
        assert_eq!(table["player_id"].as_str(), Some("a"));
    }
}
