//! History and audit pages: the versions of the store with author, local time and
//! message, one version in words with its signature status, the diff of any two
//! versions in words (admins and auditors), and the auditor's landing page with the
//! store's verification report and the store as a git bundle to download.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use chrono::{DateTime, Utc};
use minijinja::context;
use serde::Serialize;
use skycast_schema::Manifest;

use super::form::Fields;
use super::{Ctx, WebState};
use crate::audit::{self, AuditReport};
use crate::data_dir::DataDir;
use crate::describe::{self, words, DiffSection};
use crate::error::{PublisherError, Result};
use crate::store::{CommitId, Store, StoreError, VersionInfo, MANIFEST_FILE, SIGNATURE_FILE};

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

pub(super) use crate::describe::local_time;

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

/// What the history pages keep between views, for as long as the web state lives.
#[derive(Default)]
pub(crate) struct HistoryCache {
    summaries: Mutex<HashMap<CommitId, ManifestSummary>>,
    report: Mutex<Option<CachedReport>>,
    /// Held by the one bundle being made and downloaded: `git bundle` costs a
    /// pass over the whole store, so others are told to come back later.
    bundle: Arc<tokio::sync::Mutex<()>>,
}

/// What a second bundle download is told to wait, in seconds.
const BUNDLE_RETRY_AFTER_SECS: u64 = 30;

impl HistoryCache {
    fn summary_of(&self, store: &Store, commit: CommitId) -> Result<ManifestSummary> {
        if let Some(s) = self
            .summaries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&commit)
        {
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
        self.summaries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(commit, summary.clone());
        Ok(summary)
    }

    fn row(&self, store: &Store, info: VersionInfo) -> Result<VersionRow> {
        let summary = self.summary_of(store, info.commit)?;
        Ok(VersionRow {
            version: info.version,
            author: info.author,
            time_utc: info.time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            time_local: local_time(info.time, &summary.timezone),
            timezone: summary.timezone,
            message: info.message,
            media_count: summary.media_count,
            commit: info.commit.to_string(),
        })
    }

    /// The newest `limit` versions (all when None), newest first. Walks only as far
    /// back as it shows.
    pub(super) fn recent_versions(&self, store: &Store, limit: Option<usize>) -> Result<Vec<VersionRow>> {
        store
            .recent(limit)?
            .into_iter()
            .map(|info| self.row(store, info))
            .collect()
    }

    /// The last verification of the whole store, kept while `main` and the tags stay
    /// as they were: hashing every media file of every version is too slow for each view.
    fn report(
        &self,
        store: &Store,
        trust: &crate::trust::HistoryTrust,
    ) -> Result<(AuditReport, DateTime<Utc>)> {
        let tags = store
            .version_tags()?
            .into_iter()
            .map(|t| {
                let commit = t
                    .strip_prefix('v')
                    .and_then(|n| n.parse().ok())
                    .and_then(|n| store.tagged_commit(n));
                (t, commit)
            })
            .collect();
        let state: StoreState = (store.head()?, tags);
        let path = store.path().to_path_buf();
        if let Some(c) = &*self.report.lock().unwrap_or_else(|p| p.into_inner()) {
            if c.store == path && c.state == state {
                return Ok((c.report.clone(), c.at));
            }
        }
        let report = audit::verify_store(store, trust)?;
        let at = Utc::now();
        *self.report.lock().unwrap_or_else(|p| p.into_inner()) = Some(CachedReport {
            store: path,
            state,
            report: report.clone(),
            at,
        });
        Ok((report, at))
    }
}

/// Whether a version's signature checks against the data directory's public key.
#[derive(Debug, Serialize)]
struct SignatureStatus {
    ok: bool,
    key_id: Option<String>,
    problem: Option<String>,
}

fn signature_status(data: &DataDir, store: &Store, commit: CommitId, n: u64) -> Result<SignatureStatus> {
    let trusted = crate::trust::trusted_keys(data)?;
    Ok(match store.verified_manifest(commit, &trusted) {
        Ok(v) => SignatureStatus {
            ok: true,
            key_id: Some(v.key_id().to_string()),
            problem: None,
        },
        Err(StoreError::MissingFile {
            file: SIGNATURE_FILE, ..
        }) => SignatureStatus {
            ok: false,
            key_id: None,
            problem: Some(format!("{SIGNATURE_FILE} is missing")),
        },
        Err(StoreError::MissingFile { .. }) => return Err(PublisherError::NoSuchVersion(n)),
        Err(StoreError::Unverified { source, .. }) => SignatureStatus {
            ok: false,
            key_id: None,
            problem: Some(source.to_string()),
        },
        Err(e) => return Err(e.into()),
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
    let st = state.clone();
    match blocking(move || st.history.recent_versions(&st.data.store()?, None)).await {
        Ok(versions) => state.page(&ctx, "history_list.html", context! { versions }),
        Err(e) => state.error_page(&ctx, &e),
    }
}

async fn version_page(State(state): State<Arc<WebState>>, ctx: Ctx, Path(n): Path<String>) -> Response {
    let n = match version_number("requested", Some(&n)) {
        Ok(n) => n,
        Err(e) => return state.error_page(&ctx, &e),
    };
    let st = state.clone();
    let found = blocking(move || {
        let data = &st.data;
        let store = data.store()?;
        let commit = store
            .commit_of_version(n)?
            .ok_or(PublisherError::NoSuchVersion(n))?;
        let info = st.history.row(&store, store.version_info(commit)?)?;
        let manifest = audit::manifest_of(&store, n).ok();
        let signature = signature_status(data, &store, commit, n)?;
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
    sections: Vec<DiffSection>,
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
    let st = state.clone();
    let diff = blocking(move || {
        let store = st.data.store()?;
        let row_of = |n| -> Result<VersionRow> {
            let commit = store
                .commit_of_version(n)?
                .ok_or(PublisherError::NoSuchVersion(n))?;
            st.history.row(&store, store.version_info(commit)?)
        };
        let (from_row, to_row) = (row_of(from)?, row_of(to)?);
        let a = audit::manifest_of(&store, from)?;
        let b = audit::manifest_of(&store, to)?;
        Ok(DiffView {
            from: from_row,
            to: to_row,
            sections: describe::diff(&a, &b),
        })
    })
    .await;
    match diff {
        Ok(diff) => state.page(&ctx, "history_diff.html", context! { diff }),
        Err(e) => state.error_page(&ctx, &e),
    }
}

/// What a store's verification depends on: `main` and where every version tag points.
type StoreState = (Option<CommitId>, Vec<(String, Option<CommitId>)>);

struct CachedReport {
    store: PathBuf,
    state: StoreState,
    report: AuditReport,
    at: DateTime<Utc>,
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
struct UserRow {
    username: String,
    role: &'static str,
    enabled: bool,
    created_at: String,
}

async fn audit_page(State(state): State<Arc<WebState>>, ctx: Ctx) -> Response {
    let st = state.clone();
    let store_part = blocking(move || {
        let store = st.data.store()?;
        let key = st.data.public_key()?;
        let trust = crate::trust::HistoryTrust::of_data_dir(&st.data)?;
        let (report, at) = st.history.report(&store, &trust)?;
        let versions = st.history.recent_versions(&store, Some(10))?;
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
            // Registered players, read-only: the token hashes never leave the database.
            Ok((users, db.players()?))
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
/// download ends or is dropped. `slot` is held until then.
fn file_body(file: tokio::fs::File, slot: tokio::sync::OwnedMutexGuard<()>) -> Body {
    use tokio::io::AsyncReadExt;
    let stream = futures_util::stream::unfold(Some((file, slot)), |file| async move {
        let (mut file, slot) = file?;
        let mut buf = vec![0u8; 64 * 1024];
        match file.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(bytes::Bytes::from(buf)), Some((file, slot))))
            }
            Err(e) => Some((Err(e), None)),
        }
    });
    Body::from_stream(stream)
}

/// `GET /audit/bundle`: one at a time (making it reads the whole store); a
/// second one while the first is made or downloaded gets 503 with Retry-After.
async fn bundle(State(state): State<Arc<WebState>>, ctx: Ctx) -> Response {
    let Ok(slot) = state.history.bundle.clone().try_lock_owned() else {
        let busy = PublisherError::Busy {
            what: "the store bundle",
            retry_after_secs: BUNDLE_RETRY_AFTER_SECS,
        };
        tracing::warn!(user = %ctx.username(), "store bundle refused: another one is in progress");
        return busy.with_retry_after(state.error_page(&ctx, &busy));
    };
    let data = state.data.clone();
    // The slot moves into the blocking task, so a client that goes away does not
    // free it while `git bundle` still runs.
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
        let bundle = store.bundle()?;
        Ok((head, bundle.file, bundle.size_bytes, slot))
    })
    .await;
    let (head, file, size, slot) = match made {
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
        file_body(tokio::fs::File::from_std(file), slot),
    )
        .into_response();
    if let Some(size) = size {
        resp.headers_mut().insert(header::CONTENT_LENGTH, size.into());
    }
    resp
}
