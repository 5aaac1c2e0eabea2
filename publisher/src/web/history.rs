//! History and audit pages: the versions of the store with author, local time and
//! message, one version in words with its signature status, the diff of any two
//! versions in words (admins and auditors), and the auditor's landing page with the
//! store's verification report and the store as a git bundle to download.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use chrono::{DateTime, Utc};
use git2::Oid;
use minijinja::context;
use serde::Serialize;
use skycast_schema::{verify, Limits, Manifest, MediaId, TrustedKeys};

use super::form::Fields;
use super::{Ctx, WebState};
use crate::audit::{self, AuditReport};
use crate::data_dir::DataDir;
use crate::error::{PublisherError, Result};
use crate::store::{Store, MANIFEST_FILE, SIGNATURE_FILE};

pub(super) fn routes() -> Router<Arc<WebState>> {
    Router::new()
        .route("/history", get(history_page))
        .route("/history/diff", get(diff_page))
        .route("/history/{n}", get(version_page))
        .route("/audit", get(audit_page))
        .route("/audit/bundle", get(bundle))
}

/// Runs store work (git, hashing) on a blocking thread.
pub(super) async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| PublisherError::Internal(e.to_string()))?
}

/// `t` shown in the manifest's time zone, `YYYY-MM-DD HH:MM`; in UTC when the
/// zone is unknown (a manifest that does not parse).
pub(super) fn local_time(t: DateTime<Utc>, timezone: &str) -> String {
    match skycast_schema::schedule::local_datetime(timezone, t) {
        Ok(local) => local.format("%Y-%m-%d %H:%M").to_string(),
        Err(_) => t.format("%Y-%m-%d %H:%M UTC").to_string(),
    }
}

/// One version as the history table shows it.
#[derive(Debug, Clone, Serialize)]
pub(super) struct VersionRow {
    pub version: u64,
    pub author: String,
    pub time_utc: String,
    pub time_local: String,
    pub timezone: String,
    pub message: String,
    /// None when the version's manifest does not parse (the audit says why).
    pub media_count: Option<usize>,
    pub commit: String,
}

/// What a row needs from a version's manifest. Commits never change, so this is
/// computed once per commit id, not on every page view.
#[derive(Clone)]
struct ManifestSummary {
    timezone: String,
    media_count: Option<usize>,
}

fn summary_cache() -> &'static Mutex<HashMap<Oid, ManifestSummary>> {
    static CACHE: OnceLock<Mutex<HashMap<Oid, ManifestSummary>>> = OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(HashMap::new()))
}

fn summary_of(store: &Store, commit: &git2::Commit<'_>) -> Result<ManifestSummary> {
    let cache = summary_cache();
    if let Some(s) = cache.lock().unwrap_or_else(|p| p.into_inner()).get(&commit.id()) {
        return Ok(s.clone());
    }
    let parsed = store
        .file_at(commit, MANIFEST_FILE)?
        .and_then(|bytes| Manifest::parse(&bytes).ok());
    let summary = match parsed {
        Some(m) => ManifestSummary {
            timezone: m.timezone.clone(),
            media_count: Some(m.media.len()),
        },
        None => ManifestSummary {
            timezone: "UTC".into(),
            media_count: None,
        },
    };
    cache
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(commit.id(), summary.clone());
    Ok(summary)
}

fn row(store: &Store, commit: &git2::Commit<'_>) -> Result<VersionRow> {
    let author = commit.author();
    let time = DateTime::from_timestamp(author.when().seconds(), 0).unwrap_or_default();
    let summary = summary_of(store, commit)?;
    Ok(VersionRow {
        version: store.version_of(commit)?,
        author: author.name().unwrap_or("?").to_string(),
        time_utc: time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        time_local: local_time(time, &summary.timezone),
        timezone: summary.timezone,
        message: commit.message().unwrap_or("").trim().to_string(),
        media_count: summary.media_count,
        commit: commit.id().to_string(),
    })
}

/// The newest `limit` versions (all when None), newest first. Walks only as far
/// back as it shows.
pub(super) fn recent_versions(store: &Store, limit: Option<usize>) -> Result<Vec<VersionRow>> {
    let mut out = Vec::new();
    let mut next = store.head_commit()?;
    while let Some(commit) = next {
        if limit.is_some_and(|l| out.len() >= l) {
            break;
        }
        out.push(row(store, &commit)?);
        next = commit.parents().next();
    }
    Ok(out)
}

/// A media reference in words: its title, or a short id when the manifest lacks it.
fn title(m: &Manifest, id: &MediaId) -> String {
    m.media_entry(id).map_or_else(|| id.short(), |e| e.title.clone())
}

/// The text serde gives a unit enum (`cut`, `resume`, `urgent`...).
fn word<T: Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => String::new(),
    }
}

#[derive(Debug, Serialize)]
pub(super) struct MediaWords {
    title: String,
    artist: Option<String>,
    kind: String,
    duration_ms: u64,
    loudness: Option<String>,
}

#[derive(Debug, Serialize)]
pub(super) struct ShopWords {
    name: String,
    tags: Vec<String>,
    /// (weekday code, hours); empty means open every day, all day.
    hours: Vec<(String, String)>,
    exceptions: Vec<(String, String)>,
    closing: Option<(String, u32)>,
}

#[derive(Debug, Serialize)]
pub(super) struct PlaylistWords {
    name: String,
    order: String,
    tracks: Vec<String>,
}

#[derive(Debug, Serialize)]
pub(super) struct RuleWords {
    playlist: String,
    shops: Vec<String>,
    dates: Option<String>,
    days: Option<String>,
    time: Option<String>,
    priority: i32,
}

#[derive(Debug, Serialize)]
pub(super) struct AdWords {
    title: String,
    shops: Vec<String>,
    every_tracks: Option<u32>,
    at: Option<String>,
    dates: Option<String>,
    start: Option<String>,
    after: Option<String>,
}

#[derive(Debug, Serialize)]
pub(super) struct InterruptWords {
    id: String,
    title: String,
    level: String,
    shops: Vec<String>,
    not_before: Option<String>,
    not_after: Option<String>,
    start: Option<String>,
}

/// A manifest in words, for people: titles instead of content ids, local times.
#[derive(Debug, Serialize)]
pub(super) struct Words {
    version: u64,
    timezone: String,
    published_at: String,
    expires_at: String,
    published_by: String,
    media: Vec<MediaWords>,
    shops: Vec<ShopWords>,
    playlists: Vec<PlaylistWords>,
    rules: Vec<RuleWords>,
    ads: Vec<AdWords>,
    interrupts: Vec<InterruptWords>,
}

pub(super) fn words(m: &Manifest) -> Words {
    let tz = m.timezone.as_str();
    let p = &m.program;
    Words {
        version: m.version(),
        timezone: m.timezone.clone(),
        published_at: local_time(m.published_at.0, tz),
        expires_at: local_time(m.expires_at.0, tz),
        published_by: m.published_by.clone(),
        media: m
            .media
            .iter()
            .map(|e| MediaWords {
                title: e.title.clone(),
                artist: e.artist.clone(),
                kind: e.kind.as_str().to_string(),
                duration_ms: e.duration_ms,
                loudness: e.loudness_lufs.map(|l| format!("{l:.1} LUFS")),
            })
            .collect(),
        shops: p
            .shops
            .iter()
            .map(|(name, s)| ShopWords {
                name: name.clone(),
                tags: s.tags.clone(),
                hours: s
                    .hours
                    .iter()
                    .map(|(d, h)| (d.to_string(), h.to_string()))
                    .collect(),
                exceptions: s
                    .exceptions
                    .iter()
                    .map(|(d, h)| (d.to_string(), h.to_string()))
                    .collect(),
                closing: s
                    .closing_announcement
                    .as_ref()
                    .map(|c| (title(m, &c.media), c.minutes_before)),
            })
            .collect(),
        playlists: p
            .playlists
            .iter()
            .map(|(name, pl)| PlaylistWords {
                name: name.clone(),
                order: word(&pl.order),
                tracks: pl.items.iter().map(|i| title(m, i)).collect(),
            })
            .collect(),
        rules: p
            .schedule
            .iter()
            .map(|r| RuleWords {
                playlist: r.playlist.clone(),
                shops: r.shops.clone(),
                dates: r.dates.map(|d| d.to_string()),
                days: r
                    .days
                    .as_ref()
                    .map(|d| d.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")),
                time: r.time.map(|t| t.to_string()),
                priority: r.priority,
            })
            .collect(),
        ads: p
            .ads
            .iter()
            .map(|a| AdWords {
                title: title(m, &a.media),
                shops: a.shops.clone(),
                every_tracks: a.every_tracks,
                at: a
                    .at
                    .as_ref()
                    .map(|at| at.iter().map(|t| t.to_string()).collect::<Vec<_>>().join(", ")),
                dates: a.dates.map(|d| d.to_string()),
                start: a.start.as_ref().map(word),
                after: a.after.as_ref().map(word),
            })
            .collect(),
        interrupts: p
            .interrupts
            .iter()
            .map(|i| InterruptWords {
                id: i.id.clone(),
                title: title(m, &i.media),
                level: word(&i.level),
                shops: i.shops.clone(),
                not_before: i.not_before.map(|t| local_time(t.0, tz)),
                not_after: i.not_after.map(|t| local_time(t.0, tz)),
                start: i.start.as_ref().map(word),
            })
            .collect(),
    }
}

/// Whether a version's signature checks against the data directory's public key.
#[derive(Debug, Serialize)]
struct SignatureStatus {
    ok: bool,
    key_id: Option<String>,
    problem: Option<String>,
}

fn signature_status(data: &DataDir, store: &Store, n: u64) -> Result<SignatureStatus> {
    let trusted = TrustedKeys::new([data.public_key()?]);
    let bytes = store.version_file(n, MANIFEST_FILE)?;
    let sig = match store.version_file(n, SIGNATURE_FILE) {
        Ok(s) => s,
        Err(PublisherError::NoSuchVersion(_)) => {
            return Ok(SignatureStatus {
                ok: false,
                key_id: None,
                problem: Some(format!("{SIGNATURE_FILE} is missing")),
            })
        }
        Err(e) => return Err(e),
    };
    Ok(match verify(&bytes, &sig, &trusted, &Limits::default()) {
        Ok(v) => SignatureStatus {
            ok: true,
            key_id: Some(v.key_id().to_string()),
            problem: None,
        },
        Err(e) => SignatureStatus {
            ok: false,
            key_id: None,
            problem: Some(e.to_string()),
        },
    })
}

/// A version number from a URL: a clear 400 rather than axum's plain-text rejection.
pub(super) fn version_number(what: &str, text: Option<&str>) -> Result<u64> {
    let text = text.map(str::trim).unwrap_or("");
    if text.is_empty() {
        return Err(PublisherError::BadRequest(format!(
            "the {what} version is missing: pick two versions in the history"
        )));
    }
    text.trim_start_matches('v')
        .parse::<u64>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| {
            PublisherError::BadRequest(format!(
                "`{}` is not a version number: use a number such as 3",
                text.chars().take(40).collect::<String>()
            ))
        })
}

async fn history_page(State(state): State<Arc<WebState>>, ctx: Ctx) -> Response {
    let data = state.data.clone();
    match blocking(move || recent_versions(&data.store()?, None)).await {
        Ok(versions) => state.page(&ctx, "history_list.html", context! { versions }),
        Err(e) => state.error_page(&ctx, &e),
    }
}

async fn version_page(State(state): State<Arc<WebState>>, ctx: Ctx, Path(n): Path<String>) -> Response {
    let n = match version_number("requested", Some(&n)) {
        Ok(n) => n,
        Err(e) => return state.error_page(&ctx, &e),
    };
    let data = state.data.clone();
    let found = blocking(move || {
        let store = data.store()?;
        let commit = store
            .commit_of_version(n)?
            .ok_or(PublisherError::NoSuchVersion(n))?;
        let info = row(&store, &commit)?;
        let manifest = audit::manifest_of(&store, n).ok();
        let signature = signature_status(&data, &store, n)?;
        let head = store.head_version()?.map(|(v, _)| v);
        Ok((info, manifest.as_ref().map(words), signature, head))
    })
    .await;
    match found {
        Ok((info, words, signature, head)) => state.page(
            &ctx,
            "history_version.html",
            context! {
                info,
                words,
                signature,
                head,
                previous => (n > 1).then(|| n - 1),
            },
        ),
        Err(e) => state.error_page(&ctx, &e),
    }
}

/// Two versions and what differs between them, in words.
#[derive(Debug, Serialize)]
struct DiffView {
    from: VersionRow,
    to: VersionRow,
    sections: Vec<audit::DiffSection>,
}

async fn diff_page(State(state): State<Arc<WebState>>, ctx: Ctx, RawQuery(query): RawQuery) -> Response {
    // A repeated `from` or `to` counts by its last value.
    let fields = Fields::parse(query.as_deref().unwrap_or_default().as_bytes());
    let numbers = version_number("first", fields.last("from"))
        .and_then(|a| Ok((a, version_number("second", fields.last("to"))?)));
    let (from, to) = match numbers {
        Ok(v) => v,
        Err(e) => return state.error_page(&ctx, &e),
    };
    let data = state.data.clone();
    let diff = blocking(move || {
        let store = data.store()?;
        let row_of = |n| -> Result<VersionRow> {
            let commit = store
                .commit_of_version(n)?
                .ok_or(PublisherError::NoSuchVersion(n))?;
            row(&store, &commit)
        };
        let (from_row, to_row) = (row_of(from)?, row_of(to)?);
        let a = audit::manifest_of(&store, from)?;
        let b = audit::manifest_of(&store, to)?;
        Ok(DiffView {
            from: from_row,
            to: to_row,
            sections: audit::diff(&a, &b),
        })
    })
    .await;
    match diff {
        Ok(diff) => state.page(&ctx, "history_diff.html", context! { diff }),
        Err(e) => state.error_page(&ctx, &e),
    }
}

/// What a store's verification depends on: `main` and where every version tag points.
type StoreState = (Option<Oid>, Vec<(String, Option<Oid>)>);

struct CachedReport {
    store: PathBuf,
    state: StoreState,
    report: AuditReport,
    at: DateTime<Utc>,
}

/// The last verification of the whole store, kept while `main` and the tags stay
/// as they were: hashing every media file of every version is too slow for each view.
fn cached_report(store: &Store, trusted: &TrustedKeys) -> Result<(AuditReport, DateTime<Utc>)> {
    static LAST: OnceLock<Mutex<Option<CachedReport>>> = OnceLock::new();
    let tags = store
        .version_tags()?
        .into_iter()
        .map(|t| {
            let oid = t
                .strip_prefix('v')
                .and_then(|n| n.parse().ok())
                .and_then(|n| store.tagged_commit(n));
            (t, oid)
        })
        .collect();
    let state: StoreState = (store.head_oid()?, tags);
    let path = store.path().to_path_buf();
    let last = LAST.get_or_init(|| Mutex::new(None));
    if let Some(c) = &*last.lock().unwrap_or_else(|p| p.into_inner()) {
        if c.store == path && c.state == state {
            return Ok((c.report.clone(), c.at));
        }
    }
    let report = audit::verify_store(store, trusted)?;
    let at = Utc::now();
    *last.lock().unwrap_or_else(|p| p.into_inner()) = Some(CachedReport {
        store: path,
        state,
        report: report.clone(),
        at,
    });
    Ok((report, at))
}

#[derive(Debug, Serialize)]
struct ReportView {
    ok: bool,
    checked_at: String,
    versions: usize,
    problems: Vec<String>,
    /// (version, problem or warning)
    version_problems: Vec<(u64, String)>,
    warnings: Vec<(u64, String)>,
    key_id: String,
    /// The whole key text, for `skycast-publisher verify --key` on a clone.
    public_key: String,
}

#[derive(Debug, Serialize)]
pub(super) struct PlayerRow {
    id: String,
    shop: String,
    disabled: bool,
    created_at: String,
}

/// Registered players, read-only: the token hashes never leave the database.
pub(super) fn players(db: &crate::db::Db) -> Result<Vec<PlayerRow>> {
    let mut stmt = db
        .conn()
        .prepare("SELECT id, shop, disabled, created_at FROM players ORDER BY shop, id")
        .map_err(db.err())?;
    let rows = stmt
        .query_map([], |r| {
            Ok(PlayerRow {
                id: r.get(0)?,
                shop: r.get(1)?,
                disabled: r.get(2)?,
                created_at: r.get(3)?,
            })
        })
        .map_err(db.err())?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(db.err());
    rows
}

#[derive(Debug, Serialize)]
struct UserRow {
    username: String,
    role: &'static str,
    enabled: bool,
    created_at: String,
}

async fn audit_page(State(state): State<Arc<WebState>>, ctx: Ctx) -> Response {
    let data = state.data.clone();
    let store_part = blocking(move || {
        let store = data.store()?;
        let key = data.public_key()?;
        let (report, at) = cached_report(&store, &TrustedKeys::new([key]))?;
        let versions = recent_versions(&store, Some(10))?;
        let head = store.head_version()?.map(|(v, _)| v);
        let current = match head {
            Some(n) => Some(words(&audit::manifest_of(&store, n)?)),
            None => None,
        };
        let view = ReportView {
            ok: report.ok(),
            checked_at: local_time(at, current.as_ref().map_or("UTC", |w| w.timezone.as_str())),
            versions: report.versions.len(),
            problems: report.problems.clone(),
            version_problems: report
                .versions
                .iter()
                .flat_map(|v| v.problems.iter().map(|p| (v.version, p.clone())))
                .collect(),
            warnings: report
                .versions
                .iter()
                .flat_map(|v| v.warnings.iter().map(|p| (v.version, p.clone())))
                .collect(),
            key_id: key.id().to_string(),
            public_key: key.to_string(),
        };
        Ok((view, versions, head, current))
    })
    .await;
    let db_part = state
        .with_db(|db| {
            let users: Vec<UserRow> = db
                .users()?
                .into_iter()
                .map(|u| UserRow {
                    username: u.username,
                    role: u.role.as_str(),
                    enabled: !u.disabled,
                    created_at: u.created_at,
                })
                .collect();
            Ok((users, players(db)?))
        })
        .await;
    match (store_part, db_part) {
        (Ok((report, versions, head, current)), Ok((users, players))) => state.page(
            &ctx,
            "audit_home.html",
            context! { report, versions, head, current, users, players },
        ),
        (Err(e), _) | (_, Err(e)) => state.error_page(&ctx, &e),
    }
}

/// Reads `file` in chunks; the file is already unlinked, so it vanishes when the
/// download ends or is dropped.
fn file_body(file: tokio::fs::File) -> Body {
    use tokio::io::AsyncReadExt;
    let stream = futures_util::stream::unfold(Some(file), |file| async move {
        let mut file = file?;
        let mut buf = vec![0u8; 64 * 1024];
        match file.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(bytes::Bytes::from(buf)), Some(file)))
            }
            Err(e) => Some((Err(e), None)),
        }
    });
    Body::from_stream(stream)
}

/// Writes the whole store (every ref and tag) as a git bundle into a temporary
/// file with the system `git`; returns the file, already opened and unlinked.
fn make_bundle(store_path: PathBuf) -> Result<std::fs::File> {
    let tmp = std::env::temp_dir().join(format!("skycast-bundle-{}.bundle", crate::random_token()));
    // Nothing from the request reaches this command: the store path is the
    // data directory's, the output a random name.
    // `safe.directory`: the store may belong to another account than the server's
    // (git refuses such repositories otherwise); it is this server's own store.
    let mut safe = std::ffi::OsString::from("safe.directory=");
    safe.push(&store_path);
    let out = std::process::Command::new("git")
        .arg("-c")
        .arg(safe)
        .arg("-C")
        .arg(&store_path)
        .args(["bundle", "create"])
        .arg(&tmp)
        .arg("--all")
        .env("GIT_TERMINAL_PROMPT", "0")
        .output();
    let result = match out {
        Ok(o) if o.status.success() => std::fs::File::open(&tmp).map_err(PublisherError::io("open", &tmp)),
        Ok(o) => Err(PublisherError::Internal(format!(
            "`git bundle create` failed ({}): {}",
            o.status,
            String::from_utf8_lossy(&o.stderr).trim()
        ))),
        Err(e) => Err(PublisherError::Internal(format!(
            "cannot run `git` to make the bundle (install git: scripts/install-deps.sh): {e}"
        ))),
    };
    // Unlinking an open file keeps it readable through the handle on Unix.
    let _ = std::fs::remove_file(&tmp);
    result
}

async fn bundle(State(state): State<Arc<WebState>>, ctx: Ctx) -> Response {
    let data = state.data.clone();
    let made = blocking(move || {
        let store = data.store()?;
        let head = store
            .head_version()?
            .ok_or_else(|| {
                PublisherError::Conflict(
                    "nothing is published yet: the store has no version to download".into(),
                )
            })?
            .0;
        let file = make_bundle(store.path().to_path_buf())?;
        let size = file.metadata().map(|m| m.len()).ok();
        Ok((head, file, size))
    })
    .await;
    let (head, file, size) = match made {
        Ok(v) => v,
        Err(e) => return state.error_page(&ctx, &e),
    };
    tracing::info!(user = %ctx.username(), version = head, size_bytes = size.unwrap_or(0), "store bundle downloaded");
    let disposition = format!("attachment; filename=\"skycast-store-{head}.bundle\"");
    let mut resp = (
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        file_body(tokio::fs::File::from_std(file)),
    )
        .into_response();
    if let Some(size) = size {
        resp.headers_mut().insert(header::CONTENT_LENGTH, size.into());
    }
    resp
}
