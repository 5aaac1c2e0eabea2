//! Mirrors: S3-compatible buckets (Garage, MinIO, AWS S3...) the publisher copies
//! every version to, so players can fetch immutable content (and, when the
//! origin is unreachable, the signed manifest) from object storage or a CDN in
//! front of it. Players verify whatever a mirror serves exactly as they verify
//! the origin, so a mirror is trusted for availability only.
//!
//! Layout on a mirror (keys from `skycast_schema::protocol::mirror_key`, the
//! origin's paths without their leading `/`): `v1/media/<blake3>` (content
//! addressed: uploaded once), `v1/versions/<n>/manifest.yaml` and `.sig` (the
//! exact bytes the origin serves), then, only after those are there, the small
//! `v1/head` pointer (the JSON of `skycast_schema::Head`), which never moves
//! back to a lower version.
//!
//! `mirror add|list|remove|status` record and show mirrors ([`add`], [`remove`],
//! [`status`]); `serve` runs the [`worker::MirrorTask`], which queues every
//! version not yet mirrored (persistently, `db/mirrors.rs`), uploads them oldest
//! first and retries failures with a backoff that survives a restart. A mirror
//! that failed [`FAILING_AFTER_FAILURES`] times without catching up opens the
//! `mirror_failing` alert (`fleet/alerts.rs`), resolved once its queue is empty.
//!
//! Credentials are never stored: they come from `AWS_ACCESS_KEY_ID` and
//! `AWS_SECRET_ACCESS_KEY` in the environment of `serve`, or from a TOML file
//! (mode 0600) whose path `mirror add --credentials` records.

pub mod upload;
pub mod worker;

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::data_dir::DataDir;
use crate::db::{Db, DbError, MirrorRow, NewMirror};

/// Failed attempts, without the mirror catching up in between, after which
/// `mirror_failing` opens: with the backoff below that is about 7 s of
/// failures (1 + 2 + 4 s), long enough to ride out one dropped connection,
/// short enough that an operator hears of a dead mirror within a minute.
pub const FAILING_AFTER_FAILURES: u32 = 3;
/// The wait after the first failure; doubled after each one, up to [`RETRY_MAX`].
pub const RETRY_FIRST: Duration = Duration::from_secs(1);
/// The longest wait between two attempts on a failing mirror.
pub const RETRY_MAX: Duration = Duration::from_secs(30);

/// How long to wait before the next attempt after `failures` failures in a row.
pub fn retry_after(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    RETRY_FIRST.saturating_mul(1 << doublings).min(RETRY_MAX)
}

/// What mirroring refuses or fails at, naming the mirror, file or object.
#[derive(Debug, thiserror::Error)]
pub enum MirrorError {
    #[error("mirror name `{0}` must be {rule}", rule = skycast_schema::PLAIN_NAME_RULE)]
    BadName(String),
    #[error("mirror `{0}` already exists: `skycast-publisher mirror remove --name {0}` first, or pick another --name")]
    Exists(String),
    #[error("mirror `{0}` does not exist: `skycast-publisher mirror list` shows the mirrors")]
    NoSuchMirror(String),
    #[error("S3 endpoint `{url}` is not usable: {reason}")]
    BadEndpoint { url: String, reason: String },
    #[error("mirror `{name}`: {what} must not be empty")]
    Empty { name: String, what: &'static str },
    #[error("credentials file `{path}` can be read by others (mode {mode:o}): run `chmod 600 {path}`", path = .path.display())]
    CredentialsFileOpen { path: PathBuf, mode: u32 },
    #[error("cannot read credentials file `{path}`: {source}", path = .path.display())]
    CredentialsFileUnreadable { path: PathBuf, source: std::io::Error },
    #[error("credentials file `{path}` is not TOML with `access_key_id` and `secret_access_key`: {reason}", path = .path.display())]
    CredentialsFileInvalid { path: PathBuf, reason: String },
    #[error("mirror `{0}` has no credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY for `serve`, or add the mirror again with --credentials FILE")]
    NoCredentials(String),
    #[error("mirror `{mirror}`: cannot set up the S3 client: {source}")]
    Client {
        mirror: String,
        source: object_store::Error,
    },
    #[error("mirror `{mirror}`: `{key}`: {source}")]
    Object {
        mirror: String,
        key: String,
        source: object_store::Error,
    },
    #[error("mirror `{mirror}`: cannot read `{path}` to upload it: {source}", path = .path.display())]
    ReadMedia {
        mirror: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("mirror `{mirror}`: version {version}: {reason}")]
    Store {
        mirror: String,
        version: u64,
        reason: String,
    },
    #[error(transparent)]
    Db(#[from] DbError),
}

/// Each refusal keeps its meaning (and so its HTTP status) in the publisher's error.
impl From<MirrorError> for crate::PublisherError {
    fn from(e: MirrorError) -> Self {
        use crate::PublisherError;
        match e {
            MirrorError::Db(e) => e.into(),
            e @ MirrorError::Exists(_) => PublisherError::Conflict(e.to_string()),
            MirrorError::NoSuchMirror(name) => PublisherError::NotFound(format!(
                "mirror `{name}`: `skycast-publisher mirror list` shows the mirrors"
            )),
            e @ (MirrorError::BadName(_)
            | MirrorError::BadEndpoint { .. }
            | MirrorError::Empty { .. }
            | MirrorError::CredentialsFileOpen { .. }
            | MirrorError::CredentialsFileUnreadable { .. }
            | MirrorError::CredentialsFileInvalid { .. }
            | MirrorError::NoCredentials(_)) => PublisherError::BadRequest(e.to_string()),
            e @ (MirrorError::Client { .. }
            | MirrorError::Object { .. }
            | MirrorError::ReadMedia { .. }
            | MirrorError::Store { .. }) => PublisherError::Internal(e.to_string()),
        }
    }
}

/// The secret half of a key pair; its `Debug` hides it, so it is never logged.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct SecretKey(String);

impl SecretKey {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(..)")
    }
}

/// An S3 access key pair.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: SecretKey,
}

impl Credentials {
    /// `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY`, when both are set and not empty.
    pub fn from_env() -> Option<Credentials> {
        let id = std::env::var("AWS_ACCESS_KEY_ID")
            .ok()
            .filter(|v| !v.is_empty())?;
        let secret = std::env::var("AWS_SECRET_ACCESS_KEY")
            .ok()
            .filter(|v| !v.is_empty())?;
        Some(Credentials {
            access_key_id: id,
            secret_access_key: SecretKey(secret),
        })
    }

    /// Reads a credentials file, refusing one that anyone but its owner may read.
    pub fn from_file(path: &Path) -> Result<Credentials, MirrorError> {
        check_private(path)?;
        let text =
            std::fs::read_to_string(path).map_err(|source| MirrorError::CredentialsFileUnreadable {
                path: path.to_path_buf(),
                source,
            })?;
        toml::from_str(&text).map_err(|e| MirrorError::CredentialsFileInvalid {
            path: path.to_path_buf(),
            reason: e.message().to_string(),
        })
    }
}

/// A secret file must be readable by its owner only (0600 or stricter).
fn check_private(path: &Path) -> Result<(), MirrorError> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).map_err(|source| MirrorError::CredentialsFileUnreadable {
        path: path.to_path_buf(),
        source,
    })?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(MirrorError::CredentialsFileOpen {
            path: path.to_path_buf(),
            mode,
        });
    }
    Ok(())
}

/// Where a mirror's credentials come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialSource {
    /// The environment `serve` started with.
    Environment,
    /// A 0600 TOML file, read when `serve` connects to the mirror.
    File(PathBuf),
}

impl CredentialSource {
    fn of(row: &MirrorRow) -> CredentialSource {
        match &row.credentials_file {
            Some(path) => CredentialSource::File(PathBuf::from(path)),
            None => CredentialSource::Environment,
        }
    }

    /// As `mirror list` and `mirror status` show it.
    pub fn describe(&self) -> String {
        match self {
            CredentialSource::Environment => "environment".to_string(),
            CredentialSource::File(path) => format!("file {}", path.display()),
        }
    }
}

/// Checks an endpoint: an `http(s)://host[:port]` URL with no path, query or
/// credentials; plain HTTP only to a loopback address (anything else would send
/// signed requests in the clear).
pub fn check_endpoint(url: &str) -> Result<url::Url, MirrorError> {
    let bad = |reason: &str| MirrorError::BadEndpoint {
        url: url.to_string(),
        reason: reason.to_string(),
    };
    let parsed =
        url::Url::parse(url).map_err(|e| bad(&format!("{e}: give a URL like https://s3.example.com")))?;
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(bad(
            "it holds credentials: give them with --credentials FILE or the environment",
        ));
    }
    if parsed.path() != "/" || parsed.query().is_some() {
        return Err(bad("give only scheme, host and port: the bucket is --bucket"));
    }
    match parsed.scheme() {
        "https" => Ok(parsed),
        "http" if crate::net::is_loopback_url(&parsed) => Ok(parsed),
        "http" => Err(bad("plain http is allowed only to a loopback address: use https")),
        _ => Err(bad("use an https:// URL")),
    }
}

/// A mirror to add, as given on the command line.
#[derive(Debug, Clone)]
pub struct MirrorSpec {
    pub name: String,
    pub endpoint: String,
    pub bucket: String,
    pub region: String,
    pub credentials_file: Option<PathBuf>,
}

/// Records a mirror after checking its name, endpoint and credentials file (which
/// must exist, be 0600 and parse; its path is stored absolute, its content never).
/// `serve` starts copying every version to it within a tick.
pub fn add(db: &Db, spec: &MirrorSpec, by: &str, now: DateTime<Utc>) -> Result<MirrorRow, MirrorError> {
    if !skycast_schema::is_plain_name(&spec.name) {
        return Err(MirrorError::BadName(spec.name.clone()));
    }
    for (what, value) in [("--bucket", &spec.bucket), ("--region", &spec.region)] {
        if value.trim().is_empty() {
            return Err(MirrorError::Empty {
                name: spec.name.clone(),
                what,
            });
        }
    }
    let endpoint = check_endpoint(&spec.endpoint)?;
    let credentials_file = match &spec.credentials_file {
        Some(path) => {
            Credentials::from_file(path)?;
            let absolute =
                std::path::absolute(path).map_err(|source| MirrorError::CredentialsFileUnreadable {
                    path: path.clone(),
                    source,
                })?;
            Some(absolute.to_string_lossy().into_owned())
        }
        None => None,
    };
    let endpoint = endpoint.as_str().trim_end_matches('/').to_string();
    let new = NewMirror {
        name: &spec.name,
        endpoint: &endpoint,
        bucket: spec.bucket.trim(),
        region: spec.region.trim(),
        credentials_file: credentials_file.as_deref(),
        added_by: by,
    };
    if !db.add_mirror(&new, now)? {
        return Err(MirrorError::Exists(spec.name.clone()));
    }
    db.mirror(&spec.name)?
        .ok_or_else(|| MirrorError::NoSuchMirror(spec.name.clone()))
}

/// Forgets a mirror and its queue (what it holds stays in the bucket).
pub fn remove(db: &Db, name: &str) -> Result<(), MirrorError> {
    if db.remove_mirror(name)? {
        Ok(())
    } else {
        Err(MirrorError::NoSuchMirror(name.to_string()))
    }
}

/// One mirror's state, as `mirror status --json` prints it and the dashboard shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MirrorStatus {
    pub name: String,
    pub endpoint: String,
    pub bucket: String,
    pub region: String,
    /// `environment` or `file <path>`.
    pub credentials: String,
    /// The version the mirror's `v1/head` names (0: none yet).
    pub mirrored_version: u64,
    pub head_version: u64,
    /// Versions published but not yet on the mirror.
    pub versions_behind: u64,
    /// Seconds since the oldest version not yet on the mirror was published (0 when caught up).
    pub lag_secs: u64,
    /// Versions waiting in the queue.
    pub queue_len: u64,
    /// Failing: [`FAILING_AFTER_FAILURES`] failures or more without catching up.
    pub failing: bool,
    pub failures_since_caught_up: u32,
    pub last_error: Option<String>,
    pub last_error_at: Option<String>,
    pub last_success_at: Option<String>,
    pub next_attempt_at: Option<String>,
}

/// Every mirror and the head it is compared with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MirrorsStatus {
    pub head_version: u64,
    pub head_published_at: Option<String>,
    pub mirrors: Vec<MirrorStatus>,
}

fn parse_instant(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

impl MirrorStatus {
    /// `head_published_at`: when the head was published, for a lag the queue does
    /// not know yet (published while `serve` was not running).
    pub fn of(
        row: MirrorRow,
        head_version: u64,
        head_published_at: Option<&str>,
        now: DateTime<Utc>,
    ) -> MirrorStatus {
        let versions_behind = head_version.saturating_sub(row.mirrored_version);
        let behind_since = row
            .oldest_queued_published_at
            .as_deref()
            .or(head_published_at)
            .and_then(parse_instant);
        let lag_secs = match (versions_behind, behind_since) {
            (0, _) | (_, None) => 0,
            (_, Some(t)) => u64::try_from((now - t).num_seconds()).unwrap_or(0),
        };
        MirrorStatus {
            credentials: CredentialSource::of(&row).describe(),
            failing: is_failing(&row, head_version),
            name: row.name,
            endpoint: row.endpoint,
            bucket: row.bucket,
            region: row.region,
            mirrored_version: row.mirrored_version,
            head_version,
            versions_behind,
            lag_secs,
            queue_len: row.queue_len,
            failures_since_caught_up: row.failures_since_caught_up,
            last_error: row.last_error,
            last_error_at: row.last_error_at,
            last_success_at: row.last_success_at,
            next_attempt_at: row.next_attempt_at,
        }
    }
}

/// Whether a mirror is failing: behind the head (or with work queued) after
/// [`FAILING_AFTER_FAILURES`] failures since it last caught up.
pub fn is_failing(row: &MirrorRow, head_version: u64) -> bool {
    let behind = row.queue_len > 0 || head_version > row.mirrored_version;
    behind && row.failures_since_caught_up >= FAILING_AFTER_FAILURES
}

/// The state of every mirror against a head given by the caller (the dashboard
/// passes the head it already holds).
pub fn status_with_head(
    db: &Db,
    head_version: u64,
    head_published_at: Option<&str>,
    now: DateTime<Utc>,
) -> Result<Vec<MirrorStatus>, MirrorError> {
    Ok(db
        .mirrors()?
        .into_iter()
        .map(|row| MirrorStatus::of(row, head_version, head_published_at, now))
        .collect())
}

/// `mirror status`: every mirror against the store's head.
pub fn status(data: &DataDir, now: DateTime<Utc>) -> crate::Result<MirrorsStatus> {
    let store = data.store()?;
    let (head_version, head_published_at) = match store.head_version()? {
        Some((version, commit)) => (version, worker::published_at(&store, commit)),
        None => (0, None),
    };
    let mirrors = status_with_head(&data.db()?, head_version, head_published_at.as_deref(), now)?;
    Ok(MirrorsStatus {
        head_version,
        head_published_at,
        mirrors,
    })
}

/// `mirror status` as lines of text.
pub fn render(status: &MirrorsStatus) -> String {
    if status.mirrors.is_empty() {
        return "no mirror yet: `skycast-publisher mirror add` adds one\n".to_string();
    }
    let mut out = format!("head version {}\n", status.head_version);
    for m in &status.mirrors {
        let state = if m.failing {
            "FAILING"
        } else if m.versions_behind == 0 {
            "in sync"
        } else {
            "catching up"
        };
        out.push_str(&format!(
            "{}\t{}/{}\t{state}\tmirrored v{}\t{} behind, lag {} s\tqueue {}\tlast success {}\tlast error {}\n",
            m.name,
            m.endpoint,
            m.bucket,
            m.mirrored_version,
            m.versions_behind,
            m.lag_secs,
            m.queue_len,
            m.last_success_at.as_deref().unwrap_or("never"),
            match (&m.last_error, &m.last_error_at) {
                (Some(e), Some(at)) => format!("{e} (at {at})"),
                (Some(e), None) => e.clone(),
                _ => "-".to_string(),
            }
        ));
    }
    out
}

/// `mirror list` as lines of text: name, endpoint, bucket, region, credentials, who added it.
pub fn render_list(rows: &[MirrorRow]) -> String {
    if rows.is_empty() {
        return "no mirror yet: `skycast-publisher mirror add` adds one\n".to_string();
    }
    rows.iter()
        .map(|m| {
            format!(
                "{}\t{}\t{}\t{}\tcredentials from {}\tadded by {} at {}\n",
                m.name,
                m.endpoint,
                m.bucket,
                m.region,
                CredentialSource::of(m).describe(),
                m.added_by,
                m.added_at
            )
        })
        .collect()
}

#[cfg(test)]
mod tests;
