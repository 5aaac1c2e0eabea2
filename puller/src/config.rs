//! The puller's TOML configuration, resolved against the config file's directory and
//! checked (server URL scheme, trusted keys, CA certificate) before anything runs.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use skycast_schema::{PublicKey, TrustedKeys, VerifiedRoot};

use crate::audio::OutputSpec;

/// Whether the puller may talk to a server over plain HTTP. HTTPS only unless a
/// test or a lab explicitly opts out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TransportPolicy {
    #[default]
    HttpsOnly,
    AllowInsecureHttp,
}

/// Whether mirrors may be reached over plain HTTP. A mirror only ever serves signed,
/// hashed objects (so HTTP cannot make a player accept anything), but HTTPS is still
/// the default: plain HTTP shows which shop fetches what to anyone on the path.
/// `allow_http_mirrors = true` in the config maps to [`MirrorTransport::AllowHttp`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MirrorTransport {
    #[default]
    HttpsOnly,
    AllowHttp,
}

/// The player's bearer token. Its `Debug` never shows the value, so it cannot leak
/// through logs or error reports.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    pub fn new(value: impl Into<String>) -> Token {
        Token(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {path} is invalid: {reason}")]
    Parse { path: PathBuf, reason: String },
    #[error("server URL `{url}` is invalid: {reason}")]
    BadServerUrl { url: String, reason: String },
    #[error(
        "server URL `{url}` uses plain HTTP: use an https:// URL, or pass --allow-insecure-http \
         (allow_insecure_http = true) on a test bench only"
    )]
    InsecureHttp { url: String },
    #[error(
        "{path} names both `server` and `servers`: keep one (`servers = [primary, backup]` lists several)"
    )]
    ServerAndServers { path: PathBuf },
    #[error("{path} names no server: add `server = \"https://...\"` or `servers = [\"https://...\", ...]`")]
    NoServer { path: PathBuf },
    #[error("mirror URL `{url}` is invalid: {reason}")]
    BadMirrorUrl { url: String, reason: String },
    #[error(
        "mirror URL `{url}` uses plain HTTP: use an https:// mirror, or set allow_http_mirrors = true \
         (every object is still verified, but plain HTTP shows what the shop fetches)"
    )]
    InsecureMirror { url: String },
    #[error("trusted key #{index} in {path} is invalid: {reason}")]
    BadTrustedKey {
        path: PathBuf,
        index: usize,
        reason: String,
    },
    #[error("no trusted_keys and no root in {path}: enrol the player, or add the publisher's public key (`ed25519:...`)")]
    NoTrustedKeys { path: PathBuf },
    #[error("the trust root in {path} is refused: {reason}")]
    BadRoot { path: PathBuf, reason: String },
    #[error("ca_cert in {path} holds no PEM certificate: paste the publisher's tls/ca.pem")]
    BadCaCert { path: PathBuf },
    #[error("`{field}` in {path} must be at least {min}")]
    OutOfRange {
        path: PathBuf,
        field: &'static str,
        min: u64,
    },
}

/// The file as written (see ARCHITECTURE.md, "Puller configuration").
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    player_id: String,
    #[serde(default)]
    shop: Option<String>,
    /// One server, or `servers` (ordered: primary first): exactly one of the two.
    #[serde(default)]
    server: Option<String>,
    #[serde(default)]
    servers: Option<Vec<String>>,
    /// Static copies of the protocol's objects (object storage, CDN), tried first for
    /// media and for head only when no server answers.
    #[serde(default)]
    mirrors: Vec<String>,
    #[serde(default)]
    allow_http_mirrors: bool,
    token: String,
    data: PathBuf,
    /// Pinned keys, read only when no `root` is given.
    #[serde(default)]
    trusted_keys: Vec<String>,
    /// The trust root the player was enrolled with (`root.yaml`'s text) and its
    /// signatures: from there it follows the chain the server offers.
    #[serde(default)]
    root: Option<String>,
    #[serde(default)]
    root_signatures: Option<String>,
    #[serde(default)]
    ca_cert: Option<String>,
    #[serde(default = "default_poll_interval")]
    poll_interval_secs: u64,
    #[serde(default = "default_long_poll")]
    long_poll_secs: u64,
    #[serde(default = "default_parallel")]
    parallel_downloads: usize,
    #[serde(default)]
    allow_insecure_http: bool,
    /// A media download slower than this, averaged over the window, is aborted.
    #[serde(default = "default_min_throughput")]
    min_download_bytes_per_sec: u64,
    #[serde(default = "default_throughput_window")]
    min_download_window_secs: u64,
    /// `speaker` (default), `null` or `wav:PATH`.
    #[serde(default)]
    output: Option<String>,
    /// Seconds between two supervision reports (one also goes out at each change).
    #[serde(default = "default_report_interval")]
    report_interval_secs: u64,
}

fn default_poll_interval() -> u64 {
    10
}
fn default_long_poll() -> u64 {
    30
}
fn default_report_interval() -> u64 {
    10
}
fn default_parallel() -> usize {
    4
}
fn default_min_throughput() -> u64 {
    MinThroughput::DEFAULT.bytes_per_sec
}
fn default_throughput_window() -> u64 {
    MinThroughput::DEFAULT.window.as_secs()
}

/// The slowest a media download may be: fewer than `bytes_per_sec` per second on
/// average over any `window` (once the answer has run that long) aborts it, so a
/// server trickling bytes never hangs a sync. The partial file is kept for a resume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MinThroughput {
    pub bytes_per_sec: u64,
    pub window: Duration,
}

impl MinThroughput {
    /// 1 KiB/s over 30 s.
    pub const DEFAULT: MinThroughput = MinThroughput {
        bytes_per_sec: 1024,
        window: Duration::from_secs(30),
    };

    /// Bytes a window must bring at least.
    pub fn min_bytes_per_window(&self) -> u64 {
        (self.bytes_per_sec as u128 * self.window.as_millis() / 1000) as u64
    }
}

impl Default for MinThroughput {
    fn default() -> MinThroughput {
        MinThroughput::DEFAULT
    }
}

/// Command-line values that take precedence over the file.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--server`: replaces `server` or the whole `servers` list.
    pub server: Option<String>,
    /// Relative paths here are relative to the working directory, as usual for flags.
    pub data: Option<PathBuf>,
    /// `Some(AllowInsecureHttp)` when `--allow-insecure-http` was given.
    pub transport: Option<TransportPolicy>,
    /// `--output`.
    pub output: Option<OutputSpec>,
    /// `--clock-start`: the player's clock starts at this instant.
    pub clock_start: Option<DateTime<Utc>>,
    /// `--clock-rate`: seconds of audio per wall-clock second (tests, demos).
    pub clock_rate: Option<f64>,
}

/// A checked configuration. Build it with [`Config::load`] or [`Config::from_toml`].
#[derive(Debug, Clone)]
pub struct Config {
    pub player_id: String,
    pub shop: Option<String>,
    /// Base URL without a trailing slash, e.g. `https://127.0.0.1:8443`: the first of
    /// [`Config::servers`].
    pub server: String,
    /// Every server, primary first (`servers = [...]`, or just `server`), each checked
    /// by [`check_server_url`]; never empty.
    pub servers: Vec<String>,
    /// Mirror base URLs in order, without a trailing slash (`mirrors = [...]`).
    pub mirrors: Vec<String>,
    pub mirror_transport: MirrorTransport,
    pub token: Token,
    /// Data directory, already resolved against the config file's directory.
    pub data: PathBuf,
    pub trusted_keys: Vec<PublicKey>,
    /// The root the player was enrolled with (`root` and `root_signatures`),
    /// signed by its own threshold; when set, it decides the trusted keys.
    pub enrolled_root: Option<VerifiedRoot>,
    /// PEM of the only CA trusted for the server's certificate, when given.
    pub ca_cert: Option<String>,
    pub poll_interval: Duration,
    pub long_poll: Duration,
    pub parallel_downloads: usize,
    /// See [`MinThroughput`]; config keys `min_download_bytes_per_sec`,
    /// `min_download_window_secs`.
    pub min_throughput: MinThroughput,
    pub transport: TransportPolicy,
    /// Where the player's sound goes.
    pub output: OutputSpec,
    pub clock_start: Option<DateTime<Utc>>,
    pub clock_rate: f64,
    /// Time between two supervision reports (`report_interval_secs`, default 10).
    pub report_interval: Duration,
    /// Set by [`Config::load`] when the file (it holds the token) is readable by
    /// group or others; `status` shows it.
    pub config_warning: Option<String>,
}

impl Config {
    /// Reads and checks a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Config::load_with(path, &Overrides::default())
    }

    /// Reads a config file, applies command-line overrides, then checks the result.
    pub fn load_with(path: &Path, overrides: &Overrides) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        let base = if base.as_os_str().is_empty() {
            Path::new(".")
        } else {
            base
        };
        // Absolute, so logs and `status` name the directory unambiguously.
        let base = std::path::absolute(base).unwrap_or_else(|_| base.to_path_buf());
        let mut config = Config::from_toml(&text, path, &base, overrides)?;
        config.config_warning = readable_by_others(path);
        if let Some(warning) = &config.config_warning {
            tracing::warn!(path = %path.display(), "{warning}");
        }
        Ok(config)
    }

    /// Parses config text. `origin` names the file in errors; relative `data` paths are
    /// resolved against `base_dir`.
    pub fn from_toml(
        text: &str,
        origin: &Path,
        base_dir: &Path,
        overrides: &Overrides,
    ) -> Result<Config, ConfigError> {
        let parse_err = |reason: String| ConfigError::Parse {
            path: origin.to_path_buf(),
            reason: reason.trim().replace('\n', " "),
        };
        let file: ConfigFile = toml::from_str(text).map_err(|e| parse_err(e.message().to_string()))?;
        let transport = match (overrides.transport, file.allow_insecure_http) {
            (Some(t), _) => t,
            (None, true) => TransportPolicy::AllowInsecureHttp,
            (None, false) => TransportPolicy::HttpsOnly,
        };
        let listed = match (&overrides.server, file.server, file.servers) {
            // A `--server` flag replaces whatever the file lists.
            (Some(flag), _, _) => vec![flag.clone()],
            (None, Some(_), Some(_)) => {
                return Err(ConfigError::ServerAndServers {
                    path: origin.to_path_buf(),
                })
            }
            (None, Some(one), None) => vec![one],
            (None, None, Some(list)) if !list.is_empty() => list,
            (None, None, _) => {
                return Err(ConfigError::NoServer {
                    path: origin.to_path_buf(),
                })
            }
        };
        let servers = listed
            .iter()
            .map(|url| check_server_url(url, transport))
            .collect::<Result<Vec<_>, _>>()?;
        // `listed` is never empty (checked above), so neither is `servers`.
        let server = servers[0].clone();
        let mirror_transport = if file.allow_http_mirrors {
            MirrorTransport::AllowHttp
        } else {
            MirrorTransport::HttpsOnly
        };
        let mirrors = file
            .mirrors
            .iter()
            .map(|url| check_mirror_url(url, mirror_transport))
            .collect::<Result<Vec<_>, _>>()?;
        let data = match &overrides.data {
            Some(d) => d.clone(),
            None if file.data.is_absolute() => file.data.clone(),
            None => base_dir.join(&file.data),
        };
        let mut trusted_keys = Vec::new();
        for (index, text) in file.trusted_keys.iter().enumerate() {
            let key = text
                .parse::<PublicKey>()
                .map_err(|e| ConfigError::BadTrustedKey {
                    path: origin.to_path_buf(),
                    index,
                    reason: e.to_string(),
                })?;
            trusted_keys.push(key);
        }
        let enrolled_root = match (&file.root, &file.root_signatures) {
            (Some(root), Some(sigs)) => Some(
                VerifiedRoot::trust_initial(root.as_bytes(), sigs.as_bytes()).map_err(|e| {
                    ConfigError::BadRoot {
                        path: origin.to_path_buf(),
                        reason: e.to_string(),
                    }
                })?,
            ),
            (None, None) => None,
            _ => {
                return Err(ConfigError::BadRoot {
                    path: origin.to_path_buf(),
                    reason: "`root` and `root_signatures` go together: copy both from the enrolment".into(),
                })
            }
        };
        if trusted_keys.is_empty() && enrolled_root.is_none() {
            return Err(ConfigError::NoTrustedKeys {
                path: origin.to_path_buf(),
            });
        }
        let ca_cert = match file.ca_cert {
            Some(pem) if !pem.trim().is_empty() => {
                let certs = rustls_pemfile::certs(&mut pem.as_bytes())
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|_| ConfigError::BadCaCert {
                        path: origin.to_path_buf(),
                    })?;
                if certs.is_empty() {
                    return Err(ConfigError::BadCaCert {
                        path: origin.to_path_buf(),
                    });
                }
                Some(pem)
            }
            _ => None,
        };
        let at_least = |field: &'static str, value: u64, min: u64| {
            if value < min {
                Err(ConfigError::OutOfRange {
                    path: origin.to_path_buf(),
                    field,
                    min,
                })
            } else {
                Ok(())
            }
        };
        at_least("poll_interval_secs", file.poll_interval_secs, 1)?;
        at_least("long_poll_secs", file.long_poll_secs, 1)?;
        at_least("parallel_downloads", file.parallel_downloads as u64, 1)?;
        at_least("min_download_window_secs", file.min_download_window_secs, 1)?;
        at_least("report_interval_secs", file.report_interval_secs, 1)?;
        let output = match (&overrides.output, &file.output) {
            (Some(o), _) => o.clone(),
            (None, Some(text)) => text.parse::<OutputSpec>().map_err(|e| parse_err(e.to_string()))?,
            (None, None) => OutputSpec::default(),
        };
        Ok(Config {
            player_id: file.player_id,
            shop: file.shop,
            server,
            servers,
            mirrors,
            mirror_transport,
            token: Token(file.token),
            data,
            trusted_keys,
            enrolled_root,
            ca_cert,
            poll_interval: Duration::from_secs(file.poll_interval_secs),
            // The server caps waits at 60 s; asking for more only delays error detection.
            long_poll: Duration::from_secs(file.long_poll_secs.min(60)),
            parallel_downloads: file.parallel_downloads.min(64),
            min_throughput: MinThroughput {
                bytes_per_sec: file.min_download_bytes_per_sec,
                window: Duration::from_secs(file.min_download_window_secs),
            },
            transport,
            output,
            clock_start: overrides.clock_start,
            clock_rate: overrides.clock_rate.unwrap_or(1.0),
            report_interval: Duration::from_secs(file.report_interval_secs),
            config_warning: None,
        })
    }

    /// Replaces the server list by this one URL, re-checking it against the
    /// transport policy.
    pub fn with_server(mut self, url: &str) -> Result<Config, ConfigError> {
        self.server = check_server_url(url, self.transport)?;
        self.servers = vec![self.server.clone()];
        Ok(self)
    }

    pub fn with_data(mut self, dir: impl Into<PathBuf>) -> Config {
        self.data = dir.into();
        self
    }

    /// The pinned keys, for a player enrolled without a root; with one, the
    /// keys come from the chain it follows (`trust::trusted_keys`).
    pub fn pinned_keys(&self) -> TrustedKeys {
        TrustedKeys::new(self.trusted_keys.iter().copied())
    }
}

/// A warning when the config file (it holds the player token) can be read by group
/// or others; `None` when it cannot, or when its mode cannot be read.
pub fn readable_by_others(path: &Path) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
    (mode & 0o077 != 0).then(|| {
        format!(
            "config file {} is readable by group or others (mode {mode:o}) and holds the player token: \
             run `chmod 600 {}`",
            path.display(),
            path.display()
        )
    })
}

/// Parses the URL, refuses plain HTTP unless allowed, and drops a trailing slash.
pub fn check_server_url(url: &str, transport: TransportPolicy) -> Result<String, ConfigError> {
    let parsed = reqwest::Url::parse(url).map_err(|e| ConfigError::BadServerUrl {
        url: url.to_string(),
        reason: e.to_string(),
    })?;
    match (parsed.scheme(), transport) {
        ("https", _) | ("http", TransportPolicy::AllowInsecureHttp) => {}
        ("http", TransportPolicy::HttpsOnly) => {
            return Err(ConfigError::InsecureHttp { url: url.to_string() });
        }
        (other, _) => {
            return Err(ConfigError::BadServerUrl {
                url: url.to_string(),
                reason: format!("scheme `{other}` is not https"),
            })
        }
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(ConfigError::BadServerUrl {
            url: url.to_string(),
            reason: "a server URL has no query or fragment".into(),
        });
    }
    Ok(parsed.as_str().trim_end_matches('/').to_string())
}

/// Parses a mirror base URL: https, or http with [`MirrorTransport::AllowHttp`]; no
/// query or fragment (object keys are appended to it); no trailing slash.
pub fn check_mirror_url(url: &str, transport: MirrorTransport) -> Result<String, ConfigError> {
    let bad = |reason: String| ConfigError::BadMirrorUrl {
        url: url.to_string(),
        reason,
    };
    let parsed = reqwest::Url::parse(url).map_err(|e| bad(e.to_string()))?;
    match (parsed.scheme(), transport) {
        ("https", _) | ("http", MirrorTransport::AllowHttp) => {}
        ("http", MirrorTransport::HttpsOnly) => {
            return Err(ConfigError::InsecureMirror { url: url.to_string() });
        }
        (other, _) => return Err(bad(format!("scheme `{other}` is not https"))),
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(bad("a mirror URL has no query or fragment".into()));
    }
    Ok(parsed.as_str().trim_end_matches('/').to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use skycast_schema::SecretKey;

    fn text(server: &str, extra: &str) -> String {
        format!(
            "player_id = \"main-1\"\nshop = \"main\"\nserver = \"{server}\"\ntoken = \"tok\"\n\
             data = \"skycast-main-1\"\ntrusted_keys = [\"{}\"]\n{extra}",
            SecretKey::from_seed([1; 32]).public()
        )
    }

    fn load(text: &str, overrides: &Overrides) -> Result<Config, ConfigError> {
        Config::from_toml(text, Path::new("/etc/p.toml"), Path::new("/etc/sky"), overrides)
    }

    #[test]
    fn relative_data_is_resolved_against_the_config_directory() {
        let c = load(&text("https://h:8443/", ""), &Overrides::default()).unwrap();
        assert_eq!(c.data, Path::new("/etc/sky/skycast-main-1"));
        assert_eq!(c.server, "https://h:8443");
        assert_eq!(c.poll_interval, Duration::from_secs(10));
        assert_eq!(c.parallel_downloads, 4);
        assert_eq!(c.min_throughput, MinThroughput::DEFAULT);
        assert_eq!(c.min_throughput.min_bytes_per_window(), 30 * 1024);
        assert_eq!(c.transport, TransportPolicy::HttpsOnly);
        assert_eq!(c.report_interval, Duration::from_secs(10));
    }

    #[test]
    fn report_interval_is_read_and_at_least_one_second() {
        let c = load(
            &text("https://h", "report_interval_secs = 3\n"),
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(c.report_interval, Duration::from_secs(3));
        let err = load(
            &text("https://h", "report_interval_secs = 0\n"),
            &Overrides::default(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("report_interval_secs"), "{err}");
    }

    #[test]
    fn plain_http_is_refused_unless_explicitly_allowed() {
        let err = load(&text("http://h:8080", ""), &Overrides::default()).unwrap_err();
        assert!(matches!(err, ConfigError::InsecureHttp { .. }), "{err}");
        assert!(err.to_string().contains("--allow-insecure-http"));
        let c = load(
            &text("http://h:8080", "allow_insecure_http = true\n"),
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(c.transport, TransportPolicy::AllowInsecureHttp);
        let flag = Overrides {
            transport: Some(TransportPolicy::AllowInsecureHttp),
            ..Overrides::default()
        };
        load(&text("http://h:8080", ""), &flag).unwrap();
    }

    #[test]
    fn flags_override_the_file() {
        let o = Overrides {
            server: Some("http://127.0.0.1:9".into()),
            data: Some(PathBuf::from("rel")),
            transport: Some(TransportPolicy::AllowInsecureHttp),
            ..Overrides::default()
        };
        let c = load(&text("https://h", ""), &o).unwrap();
        assert_eq!(c.server, "http://127.0.0.1:9");
        assert_eq!(c.data, PathBuf::from("rel"));
        let o = Overrides {
            server: Some("http://127.0.0.1:9".into()),
            ..Overrides::default()
        };
        assert!(matches!(
            load(&text("https://h", ""), &o),
            Err(ConfigError::InsecureHttp { .. })
        ));
    }

    #[test]
    fn bad_keys_unknown_fields_and_bad_ca_are_refused() {
        let bad_key = text("https://h", "").replace("ed25519:", "ed25519:xx");
        assert!(matches!(
            load(&bad_key, &Overrides::default()),
            Err(ConfigError::BadTrustedKey { index: 0, .. })
        ));
        let typo = text("https://h", "allow_insecure_htp = true\n");
        let err = load(&typo, &Overrides::default()).unwrap_err().to_string();
        assert!(err.contains("allow_insecure_htp"), "{err}");
        let ca = text("https://h", "ca_cert = \"not a pem\"\n");
        assert!(matches!(
            load(&ca, &Overrides::default()),
            Err(ConfigError::BadCaCert { .. })
        ));
    }

    #[test]
    fn config_readable_by_others_is_warned_about() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.toml");
        std::fs::write(&path, text("https://h", "min_download_window_secs = 2\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let c = Config::load(&path).unwrap();
        let warning = c.config_warning.unwrap();
        assert!(warning.contains("chmod 600"), "{warning}");
        assert_eq!(c.min_throughput.window, Duration::from_secs(2));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(Config::load(&path).unwrap().config_warning, None);
    }

    /// The config text without its `server` line.
    fn text_without_server(extra: &str) -> String {
        text("https://h", extra).replace("server = \"https://h\"\n", "")
    }

    #[test]
    fn servers_are_read_in_order_and_the_first_is_the_server() {
        let c = load(
            &text_without_server("servers = [\"https://a:8443/\", \"https://b:8443\"]\n"),
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(c.servers, ["https://a:8443", "https://b:8443"]);
        assert_eq!(c.server, "https://a:8443");
        let one = load(&text("https://h/", ""), &Overrides::default()).unwrap();
        assert_eq!(one.servers, ["https://h"]);
        let flag = Overrides {
            server: Some("https://c".into()),
            ..Overrides::default()
        };
        let c = load(
            &text_without_server("servers = [\"https://a\", \"https://b\"]\n"),
            &flag,
        )
        .unwrap();
        assert_eq!(c.servers, ["https://c"], "--server replaces the list");
    }

    #[test]
    fn both_server_and_servers_or_neither_is_a_config_error() {
        let err = load(
            &text("https://h", "servers = [\"https://b\"]\n"),
            &Overrides::default(),
        )
        .unwrap_err();
        assert!(matches!(err, ConfigError::ServerAndServers { .. }), "{err}");
        assert!(err.to_string().contains("keep one"), "{err}");
        for neither in [text_without_server(""), text_without_server("servers = []\n")] {
            let err = load(&neither, &Overrides::default()).unwrap_err();
            assert!(matches!(err, ConfigError::NoServer { .. }), "{err}");
        }
        let err = load(
            &text_without_server("servers = [\"https://a\", \"http://b\"]\n"),
            &Overrides::default(),
        )
        .unwrap_err();
        assert!(
            matches!(err, ConfigError::InsecureHttp { .. }),
            "every server is checked: {err}"
        );
    }

    #[test]
    fn http_mirror_is_refused_without_the_opt_in() {
        let c = load(
            &text("https://h", "mirrors = [\"https://cdn.example/sky/\"]\n"),
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(c.mirrors, ["https://cdn.example/sky"]);
        assert_eq!(c.mirror_transport, MirrorTransport::HttpsOnly);
        let plain = "mirrors = [\"http://localhost:3902/sky\"]\n";
        let err = load(&text("https://h", plain), &Overrides::default()).unwrap_err();
        assert!(matches!(err, ConfigError::InsecureMirror { .. }), "{err}");
        assert!(err.to_string().contains("allow_http_mirrors = true"), "{err}");
        let c = load(
            &text("https://h", &format!("{plain}allow_http_mirrors = true\n")),
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(c.mirrors, ["http://localhost:3902/sky"]);
        assert_eq!(c.mirror_transport, MirrorTransport::AllowHttp);
        assert_eq!(c.transport, TransportPolicy::HttpsOnly, "servers stay HTTPS only");
    }

    #[test]
    fn token_is_never_shown_by_debug() {
        let c = load(&text("https://h", ""), &Overrides::default()).unwrap();
        assert!(!format!("{c:?}").contains("\"tok\""));
    }
}
