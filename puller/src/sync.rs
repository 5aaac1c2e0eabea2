//! The sync pipeline: one pull of head, manifest and signature, verification, the
//! downloads, the atomic swap and the prune, with its errors and its report.

use std::collections::BTreeSet;
use std::fmt;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use skycast_schema::protocol::{
    root_file_path, version_file_path, HEAD_PATH, MANIFEST_FILE, ROOT_FILE, ROOT_SIGNATURE_FILE,
    SIGNATURE_FILE,
};
use skycast_schema::{
    check_installable, verify, Limits, Manifest, Refusal, RootError, TrustedKeys, Verified, VerifyError,
};

use crate::client::{Client, ClientError, Fetched, Head, MAX_MANIFEST_BYTES, MAX_SIGNATURE_BYTES};
use crate::clock::judge_clock;
use crate::config::Config;
use crate::download::{self, DownloadError, MediaSources, Progress};
use crate::live::FetchProgress;
use crate::local_store::{Layout, Pruned, StoreError};
use crate::sources::{Ledger, ServedBy, Sources};
use crate::state::{LastSync, State, StateError};
use crate::trust::{self, TrustError};

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Download(#[from] DownloadError),
    #[error("manifest version {version} from {url} failed verification: {source}")]
    Verify {
        version: u64,
        url: String,
        #[source]
        source: VerifyError,
    },
    #[error("possible replay: {refusal} (offered by {url})")]
    Replay { url: String, refusal: Refusal },
    #[error("{refusal} (offered by {url})")]
    Expired { url: String, refusal: Refusal },
    #[error("{url} holds a manifest for version {found}, not {expected}: refusing it, possible attack")]
    VersionMismatch { url: String, expected: u64, found: u64 },
    #[error("trust root from {url} refused, keeping root {kept}: {source}")]
    Root {
        url: String,
        kept: u64,
        #[source]
        source: RootError,
    },
    #[error(transparent)]
    Trust(#[from] TrustError),
}

impl SyncError {
    /// True when something offered failed its signature, hash, size or version
    /// check: a possible attack, reported as `verify_failed`.
    pub fn is_verify_failure(&self) -> bool {
        matches!(
            self,
            SyncError::Verify { .. }
                | SyncError::Root { .. }
                | SyncError::Replay { .. }
                | SyncError::VersionMismatch { .. }
                | SyncError::Download(DownloadError::HashMismatch { .. } | DownloadError::TooLong { .. })
        )
    }

    /// True when the server could not be reached (see [`ClientError::is_network`]).
    pub fn is_network(&self) -> bool {
        match self {
            SyncError::Client(e) | SyncError::Download(DownloadError::Http(e)) => e.is_network(),
            SyncError::Download(DownloadError::Cut { .. } | DownloadError::TooSlow { .. }) => true,
            _ => false,
        }
    }

    /// True when the server offered a version the puller will not install because it
    /// expired: the shop keeps playing its current version but is stale.
    pub fn is_stale(&self) -> bool {
        matches!(self, SyncError::Expired { .. })
    }
}

/// What a successful sync did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncOutcome {
    UpToDate,
    Swapped { previous: Option<u64> },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncReport {
    /// The version `current` names after the sync (0 when nothing is published yet).
    pub version: u64,
    pub outcome: SyncOutcome,
    pub downloaded_media: u64,
    pub downloaded_bytes: u64,
    /// Media of the new version that were already present locally.
    pub reused_media: u64,
    pub pruned: Pruned,
    /// Set when the active version has expired (the sync still succeeded).
    pub stale_reason: Option<String>,
    pub duration: Duration,
    /// Which source served the head, the manifest and the media, and which were
    /// skipped or refused.
    pub served_by: ServedBy,
}

impl fmt::Display for SyncReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.outcome {
            SyncOutcome::UpToDate => write!(f, "up to date at version {}", self.version)?,
            SyncOutcome::Swapped { .. } => write!(
                f,
                "swapped to version {}: {} media downloaded ({} bytes)",
                self.version, self.downloaded_media, self.downloaded_bytes
            )?,
        }
        if let Some(reason) = &self.stale_reason {
            write!(f, " (stale: {reason})")?;
        }
        Ok(())
    }
}

/// One pull: head, manifest, verify, download, swap, prune. `now` is the local clock:
/// bookkeeping uses it as is; expiry is judged on it corrected by the server's `Date`
/// and never earlier than the newest `published_at` seen (see
/// [`crate::clock::judge_clock`]). On failure `current` is unchanged and the error is
/// recorded in `state.sqlite`. Every server and mirror of the config is a source
/// (see [`sync_sources`]).
pub async fn sync_once(config: &Config, now: impl Fn() -> DateTime<Utc>) -> Result<SyncReport, SyncError> {
    let config = &trust::with_root_cas(config.clone())?;
    let sources = Sources::new(config)?;
    sync_sources(config, &sources, &now, &FetchProgress::default()).await
}

/// [`sync_once`] with a client that is kept between syncs; it stands for the first
/// server of the config (the other servers and the mirrors get their own clients).
pub async fn sync_with(
    config: &Config,
    client: &Client,
    now: &impl Fn() -> DateTime<Utc>,
) -> Result<SyncReport, SyncError> {
    sync_with_progress(config, client, now, &FetchProgress::default()).await
}

/// [`sync_with`], telling `progress` how far the downloads are.
pub async fn sync_with_progress(
    config: &Config,
    client: &Client,
    now: &impl Fn() -> DateTime<Utc>,
    progress: &FetchProgress,
) -> Result<SyncReport, SyncError> {
    let sources = Sources::for_client(config, client.clone())?;
    sync_sources(config, &sources, now, progress).await
}

/// One pull over an ordered set of sources:
///
/// - head from the servers in order: the first that answers wins (one that is down
///   or answers 5xx is skipped; any other answer, a 401 included, is the answer);
/// - only when no server answers, head from the mirrors in order, with the manifest
///   and signature from the same mirror; a mirror behind what this player accepted
///   is skipped, not an attack; a mirror whose manifest is refused is skipped too;
/// - media from the mirrors in order, then the server that answered, then the other
///   servers (see [`download::fetch_from_sources`]).
///
/// Every object is verified exactly as the origin's: a mirror can make a player
/// accept nothing the origin could not. Who served what, and every source skipped
/// or refused on the way, is in [`SyncReport::served_by`] and `status`.
pub async fn sync_sources(
    config: &Config,
    sources: &Sources,
    now: &impl Fn() -> DateTime<Utc>,
    progress: &FetchProgress,
) -> Result<SyncReport, SyncError> {
    let layout = Layout::new(&config.data);
    // Another puller on the same directory is not an error of this one: not recorded.
    let lock = layout.open_locked()?;
    let result = sync_locked(config, sources, &layout, now, progress).await;
    progress.end();
    if let Err(err) = &result {
        let recorded = State::open(&layout.state_db()).and_then(|mut s| {
            s.record_error(&err.to_string(), now())?;
            if let SyncError::Expired { refusal, .. } = err {
                s.record_stale(&refusal.to_string())?;
            }
            Ok(())
        });
        if let Err(e) = recorded {
            tracing::warn!(error = %e, "cannot record the sync error");
        }
    }
    drop(lock);
    result
}

fn expiry_note(manifest: &Manifest, now: DateTime<Utc>) -> Option<String> {
    (manifest.expires_at.0 <= now).then(|| {
        format!(
            "version {} expired at {}: the publisher must publish again",
            manifest.version(),
            manifest.expires_at
        )
    })
}

impl SyncError {
    /// True when the fault is this player's own (disk, state), not a source's: no
    /// other source can do better.
    fn is_local(&self) -> bool {
        matches!(
            self,
            SyncError::Store(_) | SyncError::State(_) | SyncError::Download(DownloadError::Store(_))
        )
    }
}

/// What the servers said to `head`.
enum ServerHead {
    /// Server `index` answered.
    Answered(usize, Fetched<Head>),
    /// None did; the last one's error.
    NoneAnswered(ClientError),
}

/// Asks the servers for head in order; one that is down (or answers 5xx) is noted in
/// `served` and `down`, and the next is asked. Any other error, a 401 above all, is
/// an answer: it is returned (another server would not make a wrong token right).
async fn head_from_servers(
    sources: &Sources,
    served: &mut ServedBy,
    down: &mut Vec<String>,
) -> Result<ServerHead, ClientError> {
    let mut last_error = None;
    for (index, server) in sources.servers().iter().enumerate() {
        match server.head(None, None).await {
            Ok(head) => {
                sources.set_in_use(Some(index));
                return Ok(ServerHead::Answered(index, head));
            }
            Err(e) if e.is_network() => {
                served.refuse(server.base(), &e);
                down.push(server.base().to_string());
                last_error = Some(e);
            }
            Err(e) => {
                sources.set_in_use(Some(index));
                return Err(e);
            }
        }
    }
    sources.set_in_use(None);
    // `Sources` always holds a server, so the loop kept an error.
    Ok(ServerHead::NoneAnswered(last_error.unwrap_or_else(|| {
        ClientError::Build("no server configured".into())
    })))
}

/// The largest trust root (or its signature file) a player reads.
const MAX_ROOT_BYTES: usize = skycast_schema::root::MAX_ROOT_BYTES;

/// Follows the trust root chain up to the root `offered` by `server` (one
/// version at a time, each kept once verified) and returns the keys manifests
/// may be signed with. An older root offered (a backup site behind) is no
/// reason to go back: the newest trusted one stands.
async fn follow_roots(
    config: &Config,
    layout: &Layout,
    server: &Client,
    offered: Option<u64>,
) -> Result<TrustedKeys, SyncError> {
    let Some(mut root) = trust::current(config, layout)? else {
        return Ok(config.pinned_keys());
    };
    while offered.is_some_and(|offered| offered > root.version()) {
        let next = root.version() + 1;
        let url = server.url(&root_file_path(next, ROOT_FILE));
        let yaml = server.root_file(next, ROOT_FILE, MAX_ROOT_BYTES).await?;
        let sig = server
            .root_file(next, ROOT_SIGNATURE_FILE, MAX_ROOT_BYTES)
            .await?;
        root = root.next(&yaml, &sig).map_err(|source| SyncError::Root {
            url,
            kept: root.version(),
            source,
        })?;
        trust::keep(layout, &root)?;
        tracing::info!(root_version = root.version(), "trust root followed");
    }
    Ok(root.trusted_keys())
}

/// The version a source offers, judged: `manifest` is `None` when it is the active
/// one, else the verified, installable manifest. `now` is the judged clock.
struct Offer {
    version: u64,
    now: DateTime<Utc>,
    manifest: Option<Verified<Manifest>>,
}

/// What [`judge_offer`] needs to know of this player.
struct Known {
    active: Option<u64>,
    highest: u64,
    local: DateTime<Utc>,
    offset_ms: Option<i64>,
    newest_published: Option<DateTime<Utc>>,
    /// The keys a manifest may be signed with (the newest trusted root's).
    trusted: TrustedKeys,
}

/// Fetches and verifies the manifest `client` offers with `offered`, with the
/// replay, expiry and version rules: the same for a server and a mirror.
async fn judge_offer(client: &Client, offered: u64, known: &Known) -> Result<Offer, SyncError> {
    let clock = judge_clock(known.local, known.offset_ms, known.newest_published);
    if let Some(problem) = &clock.problem {
        tracing::warn!(offset_ms = known.offset_ms, "{problem}");
    }
    if offered == known.active.unwrap_or(0) {
        return Ok(Offer {
            version: offered,
            now: clock.now,
            manifest: None,
        });
    }
    let highest = known.highest;
    if offered <= highest {
        return Err(SyncError::Replay {
            url: client.url(HEAD_PATH),
            refusal: Refusal::NotNewer { offered, highest },
        });
    }
    let manifest_url = client.url(&version_file_path(offered, MANIFEST_FILE));
    let bytes = client
        .version_file(offered, MANIFEST_FILE, MAX_MANIFEST_BYTES)
        .await?;
    let signature = client
        .version_file(offered, SIGNATURE_FILE, MAX_SIGNATURE_BYTES)
        .await?;
    let verified = verify(&bytes, &signature, &known.trusted, &Limits::default()).map_err(|source| {
        SyncError::Verify {
            version: offered,
            url: manifest_url.clone(),
            source,
        }
    })?;
    // The offered manifest is signed: the true time is at least its publication.
    let clock = judge_clock(
        known.local,
        known.offset_ms,
        known.newest_published.max(Some(verified.published_at.0)),
    );
    check_installable(&verified, highest, clock.now).map_err(|refusal| match refusal {
        Refusal::NotNewer { .. } => SyncError::Replay {
            url: manifest_url.clone(),
            refusal,
        },
        Refusal::Expired { .. } => SyncError::Expired {
            url: manifest_url.clone(),
            refusal,
        },
    })?;
    if verified.version() != offered {
        return Err(SyncError::VersionMismatch {
            url: manifest_url,
            expected: offered,
            found: verified.version(),
        });
    }
    tracing::info!(
        version = offered,
        source = client.base(),
        key_id = %verified.key_id(),
        media_count = verified.media.len(),
        size_bytes = verified.total_media_bytes(),
        "manifest verified"
    );
    Ok(Offer {
        version: offered,
        now: clock.now,
        manifest: Some(verified),
    })
}

/// No server answered: the first mirror offering a newer version whose manifest
/// passes every check, else the first at the active version (up to date). Each mirror skipped is noted in `served` (and in `down` when
/// it did not answer). When none will do, the error that matters most: a mirror's
/// refused object (tampered, replayed, stale), else the servers' silence.
async fn offer_from_mirrors(
    sources: &Sources,
    known: &Known,
    served: &mut ServedBy,
    down: &mut Vec<String>,
    servers_error: ClientError,
) -> Result<(usize, Offer), SyncError> {
    let mut refused: Option<SyncError> = None;
    // A mirror at the active version says "up to date"; a later one may be ahead
    // (the first is merely slower to fill), so it is kept only as the fallback.
    let mut level: Option<(usize, Offer)> = None;
    for (index, mirror) in sources.mirrors().iter().enumerate() {
        let head = match mirror.head(None, None).await {
            Ok(head) => head,
            Err(e) => {
                if e.is_network() {
                    down.push(mirror.base().to_string());
                }
                served.refuse(mirror.base(), &e);
                continue;
            }
        };
        let offered = head.value.version;
        if offered != known.active.unwrap_or(0) && offered <= known.highest {
            // A mirror that has not caught up yet is no attack: the next one may have.
            served.refuse(
                mirror.base(),
                &format!(
                    "{} is behind: it offers version {offered}, this player has accepted version {}",
                    mirror.url(HEAD_PATH),
                    known.highest
                ),
            );
            continue;
        }
        match judge_offer(mirror, offered, known).await {
            Ok(offer) if offer.manifest.is_none() => {
                level.get_or_insert((index, offer));
            }
            Ok(offer) => return Ok((index, offer)),
            Err(e) if e.is_local() => return Err(e),
            Err(e) => {
                if e.is_verify_failure() {
                    served.refuse_as_attack(mirror.base(), &e);
                } else {
                    served.refuse(mirror.base(), &e);
                }
                let worse = match &refused {
                    None => e.is_verify_failure() || e.is_stale(),
                    Some(kept) => e.is_verify_failure() && !kept.is_verify_failure(),
                };
                if worse {
                    refused = Some(e);
                }
            }
        }
    }
    if let Some(found) = level {
        return Ok(found);
    }
    Err(refused.unwrap_or(SyncError::Client(servers_error)))
}

async fn sync_locked(
    config: &Config,
    sources: &Sources,
    layout: &Layout,
    now: &impl Fn() -> DateTime<Utc>,
    progress: &FetchProgress,
) -> Result<SyncReport, SyncError> {
    let started = Instant::now();
    let mut state = State::open(&layout.state_db())?;
    let active = layout.current_version()?;
    // `current` counts too: a crash between the swap and the bookkeeping loses nothing.
    let highest = state.highest_accepted()?.max(active.unwrap_or(0));
    // Read once for the whole sync (the clock, the up-to-date check, the prune):
    // at fleet scale a manifest parse is most of a sync's CPU.
    let active_manifest = active.map(|v| layout.load_manifest(v));
    // The clock is never earlier than what was already published and accepted.
    let active_published = active_manifest
        .as_ref()
        .and_then(|m| m.as_ref().ok())
        .map(|m| m.published_at.0);
    let newest_published = state.newest_published_at()?.max(active_published);
    let mut served = ServedBy::default();
    let mut down = Vec::new();

    let servers_said = head_from_servers(sources, &mut served, &mut down).await;
    state.record_server_in_use(sources.server_in_use().map(Client::base))?;
    let local = now();
    let (head_source, offer) = match servers_said? {
        ServerHead::Answered(index, head) => {
            let offset_ms = head.server_date.map(|d| (d - local).num_milliseconds());
            if let Some(offset) = offset_ms {
                state.record_clock_offset(offset)?;
            }
            let server = &sources.servers()[index];
            let trusted = follow_roots(config, layout, server, head.value.root_version).await?;
            let known = Known {
                active,
                highest,
                local,
                offset_ms,
                newest_published,
                trusted,
            };
            (server, judge_offer(server, head.value.version, &known).await?)
        }
        ServerHead::NoneAnswered(servers_error) => {
            // A mirror's `Date` is not trusted with expiry (a stale mirror could
            // claim an old date): the offset a server last gave stands.
            // A mirror serves no roots: its versions verify with the root already held.
            let known = Known {
                active,
                highest,
                local,
                offset_ms: state.snapshot()?.clock_offset_ms,
                newest_published,
                trusted: trust::trusted_keys(config, layout)?,
            };
            let (index, offer) =
                offer_from_mirrors(sources, &known, &mut served, &mut down, servers_error).await?;
            tracing::info!(
                mirror = sources.mirrors()[index].base(),
                version = offer.version,
                "no server answers: following a mirror's head"
            );
            (&sources.mirrors()[index], offer)
        }
    };
    served.head = Some(head_source.base().to_string());
    let offered = offer.version;

    // Media: mirrors first, then the server that answered, then the other servers.
    let mut media_clients: Vec<&Client> = sources.mirrors().iter().collect();
    if !media_clients.iter().any(|c| c.base() == head_source.base()) {
        media_clients.push(head_source);
    }
    media_clients.extend(
        sources
            .servers()
            .iter()
            .filter(|c| c.base() != head_source.base()),
    );
    let ledger = Ledger::new(served);
    let media_sources = MediaSources::new(media_clients, &down, ledger.clone());

    let Some(verified) = offer.manifest else {
        let stale_reason = match (active, active_manifest) {
            (Some(v), Some(manifest)) => {
                let manifest = manifest?;
                if manifest.media.iter().any(|e| !layout.has_media(&e.id, e.size)) {
                    repair(config, &media_sources, layout, v, progress).await?;
                }
                expiry_note(&manifest, offer.now)
            }
            _ => None,
        };
        let served_by = ledger.snapshot();
        state.record_success(&LastSync {
            version: offered,
            outcome: "up_to_date".into(),
            downloaded_media: 0,
            downloaded_bytes: 0,
            at: now(),
            served_by: served_by.clone(),
        })?;
        tracing::debug!(version = offered, "up to date");
        return Ok(SyncReport {
            version: offered,
            outcome: SyncOutcome::UpToDate,
            downloaded_media: 0,
            downloaded_bytes: 0,
            reused_media: 0,
            pruned: Pruned::default(),
            stale_reason,
            duration: started.elapsed(),
            served_by,
        });
    };
    ledger.update(|l| l.manifest = Some(head_source.base().to_string()));

    let stats = download_reporting(config, &media_sources, layout, &verified, progress).await?;
    layout.install(&verified)?;
    state.record_published_at(verified.published_at.0)?;
    let served_by = ledger.snapshot();
    state.record_success(&LastSync {
        version: offered,
        outcome: "swapped".into(),
        downloaded_media: stats.media,
        downloaded_bytes: stats.bytes,
        at: now(),
        served_by: served_by.clone(),
    })?;

    let previous = active.zip(active_manifest).and_then(|(v, m)| match m {
        Ok(m) => Some((v, m)),
        Err(e) => {
            tracing::warn!(version = v, error = %e, "cannot read the previous version; its media will be pruned");
            None
        }
    });
    let mut keep: Vec<(u64, &Manifest)> = vec![(offered, &verified)];
    if let Some((v, m)) = &previous {
        keep.push((*v, m));
    }
    let wanted: BTreeSet<_> = verified.media.iter().map(|e| e.id).collect();
    // The swap is done: a failed clean-up is logged, not a failed sync.
    let pruned = layout.prune(&keep, &wanted).unwrap_or_else(|e| {
        tracing::warn!(error = %e, "pruning old media failed; will retry after the next swap");
        Pruned::default()
    });
    let duration = started.elapsed();
    tracing::info!(
        version = offered,
        previous_version = active,
        downloaded_media = stats.media,
        size_bytes = stats.bytes,
        reused_media = stats.reused,
        pruned_media = pruned.media,
        duration_ms = duration.as_millis() as u64,
        "swapped current"
    );
    Ok(SyncReport {
        version: offered,
        outcome: SyncOutcome::Swapped { previous: active },
        downloaded_media: stats.media,
        downloaded_bytes: stats.bytes,
        reused_media: stats.reused,
        pruned,
        stale_reason: None,
        duration,
        served_by,
    })
}

/// [`download::download_missing_from`] with its progress told to `progress`.
async fn download_reporting(
    config: &Config,
    sources: &MediaSources<'_>,
    layout: &Layout,
    manifest: &Verified<Manifest>,
    progress: &FetchProgress,
) -> Result<download::DownloadStats, SyncError> {
    let on_progress = |p: Progress| match p {
        Progress::Total(total) => progress.begin(manifest.version(), total),
        Progress::Landed(bytes) => progress.add(bytes),
    };
    Ok(download::download_missing_from(
        sources,
        layout,
        manifest,
        config.parallel_downloads,
        config.min_throughput,
        &on_progress,
    )
    .await?)
}

/// Downloads again the media of the active version that went missing (a damaged
/// file the player or `verify_media` removed); `current` stays as it is.
async fn repair(
    config: &Config,
    sources: &MediaSources<'_>,
    layout: &Layout,
    version: u64,
    progress: &FetchProgress,
) -> Result<(), SyncError> {
    let verified = layout.load_verified(version, &trust::trusted_keys(config, layout)?)?;
    let stats = download_reporting(config, sources, layout, &verified, progress).await?;
    tracing::info!(
        version,
        downloaded_media = stats.media,
        size_bytes = stats.bytes,
        "media of the active version downloaded again"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::config::MinThroughput;
    use crate::config::Token;
    use crate::status::{status, status_at};
    use crate::test_support::{
        key, manifest_yaml, media, server_and_config, Fault, MemoryTransport, Trickle, FUTURE, MEMORY_SERVER,
        PAST,
    };
    use skycast_schema::protocol::media_path;
    use skycast_schema::{MediaId, SecretKey};

    fn layout(config: &Config) -> Layout {
        Layout::new(&config.data)
    }

    fn media_files(config: &Config) -> BTreeSet<String> {
        std::fs::read_dir(config.data.join("media"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    }

    #[tokio::test]
    async fn first_sync_downloads_everything_then_reports_up_to_date() {
        let (server, _dir, config) = server_and_config().await;
        let (a, b) = (media(1, 100_000), media(2, 30_000));
        server.publish(1, &[&a, &b], FUTURE);
        let report = sync_once(&config, Utc::now).await.unwrap();
        assert_eq!(report.outcome, SyncOutcome::Swapped { previous: None });
        assert_eq!(
            report.to_string(),
            "swapped to version 1: 2 media downloaded (130000 bytes)"
        );
        assert_eq!(layout(&config).current_version().unwrap(), Some(1));
        assert_eq!(
            std::fs::read(layout(&config).media_path(&MediaId::of(&a))).unwrap(),
            a
        );
        let again = sync_once(&config, Utc::now).await.unwrap();
        assert_eq!(again.to_string(), "up to date at version 1");

        let st = status(&config).unwrap();
        assert_eq!(st.active_version, Some(1));
        assert_eq!(st.highest_accepted, 1);
        assert_eq!(st.media_count, 2);
        assert_eq!(st.media_bytes, 130_000);
        assert!(!st.stale);
        assert!(st.last_error.is_none());
        assert!(st.last_success_at.is_some());
        assert!(st.clock_offset_ms.is_some());
    }

    #[tokio::test]
    async fn a_media_file_removed_after_install_is_downloaded_again_at_the_same_version() {
        let (server, _dir, config) = server_and_config().await;
        let (a, b) = (media(1, 10_000), media(2, 3_000));
        server.publish(1, &[&a, &b], FUTURE);
        sync_once(&config, Utc::now).await.unwrap();
        let path = layout(&config).media_path(&MediaId::of(&b));
        std::fs::remove_file(&path).unwrap();
        let progress = FetchProgress::default();
        let client = Client::new(&config).unwrap();
        let report = sync_with_progress(&config, &client, &Utc::now, &progress)
            .await
            .unwrap();
        assert_eq!(report.outcome, SyncOutcome::UpToDate);
        assert_eq!(std::fs::read(&path).unwrap(), b);
        assert_eq!(progress.get(), None, "no download under way after the sync");
    }

    #[tokio::test]
    async fn nothing_published_yet_is_up_to_date_at_version_zero() {
        let (_server, _dir, config) = server_and_config().await;
        let report = sync_once(&config, Utc::now).await.unwrap();
        assert_eq!(report.to_string(), "up to date at version 0");
        assert_eq!(status(&config).unwrap().active_version, None);
    }

    #[tokio::test]
    async fn new_version_reuses_present_media_and_prunes_what_no_kept_version_needs() {
        let (server, _dir, config) = server_and_config().await;
        let (a, b, c, d) = (media(1, 1000), media(2, 2000), media(3, 3000), media(4, 4000));
        server.publish(1, &[&a, &b], FUTURE);
        sync_once(&config, Utc::now).await.unwrap();
        server.publish(2, &[&b, &c], FUTURE);
        let r2 = sync_once(&config, Utc::now).await.unwrap();
        assert_eq!((r2.downloaded_media, r2.reused_media), (1, 1));
        // Version 1 is the previous one: its media stay.
        assert!(layout(&config).media_path(&MediaId::of(&a)).exists());
        server.publish(3, &[&c, &d], FUTURE);
        sync_once(&config, Utc::now).await.unwrap();
        let expected: BTreeSet<String> = [&b, &c, &d].iter().map(|m| MediaId::of(m).file_name()).collect();
        assert_eq!(media_files(&config), expected);
        let versions: BTreeSet<String> = std::fs::read_dir(config.data.join("versions"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(versions, BTreeSet::from(["2".to_string(), "3".to_string()]));
    }

    #[tokio::test]
    async fn replayed_older_manifest_is_refused_after_restart() {
        let (server, _dir, config) = server_and_config().await;
        let (a, b) = (media(1, 1000), media(2, 1000));
        server.publish(1, &[&a], FUTURE);
        sync_once(&config, Utc::now).await.unwrap();
        server.publish(2, &[&b], FUTURE);
        sync_once(&config, Utc::now).await.unwrap();

        // The server (or a man in the middle) goes back to version 1.
        server.set_head(1);
        let err = sync_once(&config, Utc::now).await.unwrap_err();
        assert!(err.to_string().contains("possible replay"), "{err}");
        assert_eq!(layout(&config).current_version().unwrap(), Some(2));
        let st = status(&config).unwrap();
        assert!(st.last_error.unwrap().contains("possible replay"));

        // Even with state.sqlite lost, `current` alone keeps replay protection.
        std::fs::remove_file(config.data.join("state.sqlite")).unwrap();
        let err = sync_once(&config, Utc::now).await.unwrap_err();
        assert!(matches!(err, SyncError::Replay { .. }), "{err}");
    }

    #[tokio::test]
    async fn highest_accepted_is_max_of_state_and_current_after_a_crash_before_bookkeeping() {
        let (server, _dir, config) = server_and_config().await;
        let a = media(1, 1000);
        server.publish(1, &[&a], FUTURE);
        sync_once(&config, Utc::now).await.unwrap();
        // A signed, valid version 1 again under a new number is still refused when it
        // is not above what `current` names.
        let yaml = manifest_yaml(1, &[&a], FUTURE).into_bytes();
        server.publish_raw(1, yaml.clone(), key().sign(&yaml).into_bytes());
        assert_eq!(sync_once(&config, Utc::now).await.unwrap().version, 1);
        // A manifest stored under head 5 but claiming version 1 is refused.
        server.publish_raw(5, yaml.clone(), key().sign(&yaml).into_bytes());
        let err = sync_once(&config, Utc::now).await.unwrap_err();
        assert!(matches!(err, SyncError::Replay { .. }), "{err}");
    }

    #[tokio::test]
    async fn expired_manifest_is_refused_and_status_says_stale() {
        let (server, _dir, config) = server_and_config().await;
        let (a, b) = (media(1, 1000), media(2, 1000));
        server.publish(1, &[&a], FUTURE);
        sync_once(&config, Utc::now).await.unwrap();
        server.publish(2, &[&b], PAST);
        let err = sync_once(&config, Utc::now).await.unwrap_err();
        assert!(err.is_stale(), "{err}");
        assert!(err.to_string().contains("expired"), "{err}");
        assert_eq!(layout(&config).current_version().unwrap(), Some(1));
        assert_eq!(
            server.media_requests(),
            1,
            "nothing of an expired version is downloaded"
        );
        let st = status(&config).unwrap();
        assert!(st.stale);
        assert!(st.stale_reason.unwrap().contains("expired"));
        assert!(st.last_error.is_some());
    }

    #[tokio::test]
    async fn active_version_past_its_expiry_is_reported_stale() {
        let dir = tempfile::tempdir().unwrap();
        let config = crate::test_support::test_config(MEMORY_SERVER, &dir.path().join("data"));
        let transport = Arc::new(MemoryTransport::default());
        let client = MemoryTransport::client(&transport);
        let a = media(1, 1000);
        transport.publish(1, &[&a], "2030-01-01T00:00:00Z");
        sync_with(&config, &client, &Utc::now).await.unwrap();
        let later = || "2031-01-01T00:00:00Z".parse::<DateTime<Utc>>().unwrap();
        // The server's clock agrees (it wins over the local one when they differ).
        transport.set_server_date(Some(later()));
        let report = sync_with(&config, &client, &later).await.unwrap();
        assert!(
            report.to_string().starts_with("up to date at version 1 (stale: "),
            "{report}"
        );
        let st = status_at(&config, later()).unwrap();
        assert!(st.stale);
    }

    #[tokio::test]
    async fn manifest_signed_by_an_untrusted_key_is_refused() {
        let (server, _dir, config) = server_and_config().await;
        let a = media(1, 1000);
        server.put_media(a.clone());
        let yaml = manifest_yaml(1, &[&a], FUTURE).into_bytes();
        let sig = SecretKey::from_seed([9; 32]).sign(&yaml).into_bytes();
        server.publish_raw(1, yaml, sig);
        let err = sync_once(&config, Utc::now).await.unwrap_err();
        assert!(matches!(err, SyncError::Verify { .. }), "{err}");
        assert!(err.to_string().contains("does not trust"), "{err}");
        assert_eq!(layout(&config).current_version().unwrap(), None);
        assert_eq!(server.media_requests(), 0);
    }

    #[tokio::test]
    async fn tampered_media_fails_the_sync_and_keeps_current() {
        let (server, _dir, config) = server_and_config().await;
        let (a, b) = (media(1, 1000), media(2, 5000));
        server.publish(1, &[&a], FUTURE);
        sync_once(&config, Utc::now).await.unwrap();
        server.publish(2, &[&b], FUTURE);
        server.set_fault(Fault::FlipByte(10));
        let err = sync_once(&config, Utc::now).await.unwrap_err();
        assert!(err.to_string().contains(&MediaId::of(&b).to_string()), "{err}");
        assert_eq!(layout(&config).current_version().unwrap(), Some(1));
        assert!(!layout(&config).media_path(&MediaId::of(&b)).exists());
    }

    #[tokio::test]
    async fn interrupted_sync_keeps_current_and_the_next_one_resumes() {
        let (server, _dir, config) = server_and_config().await;
        let (a, b) = (media(1, 1000), media(2, 300_000));
        server.publish(1, &[&a], FUTURE);
        sync_once(&config, Utc::now).await.unwrap();
        server.publish(2, &[&a, &b], FUTURE);
        server.set_fault(Fault::CutAfter(100_000));
        let err = sync_once(&config, Utc::now).await.unwrap_err();
        assert!(
            matches!(err, SyncError::Download(DownloadError::Cut { .. })),
            "{err}"
        );
        assert_eq!(layout(&config).current_version().unwrap(), Some(1));
        server.set_fault(Fault::None);
        let report = sync_once(&config, Utc::now).await.unwrap();
        assert_eq!(report.version, 2);
        assert!(report.downloaded_bytes < b.len() as u64, "{report:?}");
        assert_eq!(server.ranges_seen().len(), 1);
    }

    #[tokio::test]
    async fn leftovers_of_a_kill_during_sync_are_tolerated_and_cleaned() {
        let (server, _dir, config) = server_and_config().await;
        let (a, b) = (media(1, 1000), media(2, 2000));
        server.publish(1, &[&a], FUTURE);
        sync_once(&config, Utc::now).await.unwrap();
        server.publish(2, &[&b], FUTURE);
        // What a kill -9 in the middle of installing version 2 can leave behind.
        let root = &config.data;
        std::os::unix::fs::symlink("versions/2", root.join("current.tmp-1-2-3")).unwrap();
        std::fs::create_dir_all(root.join("versions/2")).unwrap();
        std::fs::write(
            root.join(format!("versions/2/{MANIFEST_FILE}.tmp-1-2-3")),
            b"half",
        )
        .unwrap();
        std::fs::write(root.join("versions/2").join(MANIFEST_FILE), b"half written").unwrap();
        std::fs::write(root.join(format!("partial/{}.part", MediaId::of(&b))), &b[..700]).unwrap();
        let report = sync_once(&config, Utc::now).await.unwrap();
        assert_eq!(report.version, 2);
        assert!(!root.join("current.tmp-1-2-3").exists());
        assert!(!root
            .join(format!("versions/2/{MANIFEST_FILE}.tmp-1-2-3"))
            .exists());
        assert_eq!(
            std::fs::read(root.join("current").join(MANIFEST_FILE)).unwrap(),
            manifest_yaml(2, &[&b], FUTURE).into_bytes()
        );
        assert_eq!(report.downloaded_bytes, 1300);
    }

    #[tokio::test]
    async fn wrong_token_is_reported_as_such() {
        let (server, dir, _config) = server_and_config().await;
        let mut config = server.config(&dir.path().join("data"));
        config.token = Token::new("wrong");
        let err = sync_once(&config, Utc::now).await.unwrap_err();
        assert!(err.to_string().contains("401"), "{err}");
        assert!(
            !err.to_string().contains("wrong"),
            "the token must never be shown: {err}"
        );
    }

    #[tokio::test]
    async fn unreachable_server_is_recorded_as_last_error() {
        let (server, _dir, config) = server_and_config().await;
        let config = config.with_server("http://127.0.0.1:1").unwrap();
        drop(server);
        let err = sync_once(&config, Utc::now).await.unwrap_err();
        assert!(
            err.to_string()
                .contains(&format!("http://127.0.0.1:1{HEAD_PATH}")),
            "{err}"
        );
        assert!(status(&config).unwrap().last_error.is_some());
    }

    #[tokio::test]
    async fn sync_through_an_in_memory_transport_installs_and_refuses_a_tampered_body() {
        let dir = tempfile::tempdir().unwrap();
        let config = crate::test_support::test_config(MEMORY_SERVER, &dir.path().join("data"));
        let transport = Arc::new(MemoryTransport::default());
        let client = MemoryTransport::client(&transport);
        let (a, b) = (media(1, 20_000), media(2, 30_000));
        transport.publish(1, &[&a], FUTURE);
        let report = sync_with(&config, &client, &Utc::now).await.unwrap();
        assert_eq!(report.outcome, SyncOutcome::Swapped { previous: None });
        assert_eq!(
            std::fs::read(layout(&config).media_path(&MediaId::of(&a))).unwrap(),
            a
        );

        // Version 2's media arrive with one byte changed.
        transport.publish(2, &[&b], FUTURE);
        let mut tampered = b.clone();
        tampered[1234] ^= 0xff;
        transport.put(&media_path(&MediaId::of(&b)), tampered);
        let err = sync_with(&config, &client, &Utc::now).await.unwrap_err();
        assert!(
            matches!(err, SyncError::Download(DownloadError::HashMismatch { .. })),
            "{err}"
        );
        let media_url = format!("{MEMORY_SERVER}{}", media_path(&MediaId::of(&b)));
        assert!(err.to_string().contains(&media_url), "{err}");
        assert_eq!(layout(&config).current_version().unwrap(), Some(1));
        assert!(!layout(&config).media_path(&MediaId::of(&b)).exists());
        assert!(!layout(&config).partial_path(&MediaId::of(&b)).exists());
        assert!(
            transport
                .requests()
                .iter()
                .all(|r| r.url.starts_with(MEMORY_SERVER)),
            "every request went through the transport"
        );
    }

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    #[tokio::test]
    async fn trickling_media_server_aborts_the_sync_within_the_window_and_the_next_sync_resumes() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = crate::test_support::test_config(MEMORY_SERVER, &dir.path().join("data"));
        // 1 KiB/s over 400 ms: the server below sends 20 bytes every 50 ms (400 B/s).
        config.min_throughput = MinThroughput {
            bytes_per_sec: 1024,
            window: Duration::from_millis(400),
        };
        let transport = Arc::new(MemoryTransport::default());
        let client = MemoryTransport::client(&transport);
        let a = media(1, 100_000);
        transport.publish(1, &[&a], FUTURE);
        transport.set_trickle(Some(Trickle {
            fast_bytes: 30_000,
            bytes: 20,
            every: Duration::from_millis(50),
        }));
        let started = Instant::now();
        let err = sync_with(&config, &client, &Utc::now).await.unwrap_err();
        let took = started.elapsed();
        assert!(
            matches!(err, SyncError::Download(DownloadError::TooSlow { .. })),
            "{err}"
        );
        // The burst leaves the window after 400 ms, then one tick (100 ms) at most.
        assert!(took < Duration::from_millis(1_500), "took {took:?}");
        assert_eq!(layout(&config).current_version().unwrap(), None);
        let kept = std::fs::metadata(layout(&config).partial_path(&MediaId::of(&a)))
            .unwrap()
            .len();
        assert!(kept >= 30_000 && kept < a.len() as u64, "kept {kept}");
        let st = status(&config).unwrap();
        let why = st.last_error.unwrap();
        assert!(
            why.contains("too slow") && why.contains("1024 bytes/s") && why.contains("resumes"),
            "{why}"
        );

        transport.set_trickle(None);
        let report = sync_with(&config, &client, &Utc::now).await.unwrap();
        assert_eq!(report.version, 1);
        assert_eq!(report.downloaded_bytes, a.len() as u64 - kept);
        assert_eq!(transport.requests().last().map(|r| r.from_byte), Some(kept));
        assert_eq!(
            std::fs::read(layout(&config).media_path(&MediaId::of(&a))).unwrap(),
            a
        );
        assert!(status(&config).unwrap().last_error.is_none());
    }

    #[tokio::test]
    async fn clock_in_1970_or_30_days_behind_neither_installs_nor_keeps_fresh_an_expired_version() {
        let dir = tempfile::tempdir().unwrap();
        let config = crate::test_support::test_config(MEMORY_SERVER, &dir.path().join("data"));
        let transport = Arc::new(MemoryTransport::default());
        let client = MemoryTransport::client(&transport);
        let (a, b) = (media(1, 1000), media(2, 1000));
        let boot_1970 = || at("1970-01-01T00:01:00Z");

        // The server says 22 November; a board without RTC says 1970: v1 is fresh.
        transport.set_server_date(Some(at("2026-11-22T10:00:00Z")));
        transport.publish(1, &[&a], "2026-11-25T00:00:00Z");
        let report = sync_with(&config, &client, &boot_1970).await.unwrap();
        assert_eq!(report.outcome, SyncOutcome::Swapped { previous: None });
        let st = status_at(&config, boot_1970()).unwrap();
        assert!(!st.stale);
        let warning = st.clock_warning.unwrap();
        assert!(
            warning.contains("1970-01-01") && warning.contains("clock is wrong"),
            "{warning}"
        );

        // A week later v1 has expired on the server's clock, not on the board's.
        transport.set_server_date(Some(at("2026-12-01T10:00:00Z")));
        let report = sync_with(&config, &client, &boot_1970).await.unwrap();
        assert!(report.stale_reason.is_some(), "{report}");
        let st = status_at(&config, boot_1970()).unwrap();
        assert!(st.stale, "{st:?}");
        assert!(st.stale_reason.unwrap().contains("expired"));
        assert!(st.clock_warning.is_some());

        // v2 expired yesterday: refused on a 1970 clock and on one 30 days behind.
        transport.publish(2, &[&b], "2026-11-30T00:00:00Z");
        let err = sync_with(&config, &client, &boot_1970).await.unwrap_err();
        assert!(err.is_stale(), "{err}");
        let behind = || at("2026-11-01T10:00:00Z");
        let err = sync_with(&config, &client, &behind).await.unwrap_err();
        assert!(err.is_stale(), "{err}");
        assert_eq!(layout(&config).current_version().unwrap(), Some(1));
        let st = status_at(&config, behind()).unwrap();
        assert!(st.stale);
        assert!(
            st.clock_warning
                .unwrap()
                .contains("2592000.0 s behind the server"),
            "30 days behind is reported"
        );
        assert!(!layout(&config).media_path(&MediaId::of(&b)).exists());
    }

    #[tokio::test]
    async fn clock_never_goes_below_the_newest_accepted_publication_without_a_server_date() {
        let dir = tempfile::tempdir().unwrap();
        let config = crate::test_support::test_config(MEMORY_SERVER, &dir.path().join("data"));
        let transport = Arc::new(MemoryTransport::default());
        let client = MemoryTransport::client(&transport);
        let (a, b) = (media(1, 1000), media(2, 1000));
        // No `Date` at all, and a board that booted in 1970.
        let boot_1970 = || at("1970-01-01T00:01:00Z");
        let publish = |version: u64, m: &[u8], published: &str, expires: &str| {
            let yaml = manifest_yaml(version, &[m], expires)
                .replace("2020-01-01T00:00:00Z", published)
                .into_bytes();
            let sig = key().sign(&yaml).into_bytes();
            transport.put(&version_file_path(version, MANIFEST_FILE), yaml);
            transport.put(&version_file_path(version, SIGNATURE_FILE), sig);
            transport.put_media(m.to_vec());
            let head = serde_json::json!({"version": version, "published_at": published,
                "manifest": version_file_path(version, MANIFEST_FILE)});
            transport.put(HEAD_PATH, head.to_string().into_bytes());
        };
        publish(1, &a, "2026-11-20T00:00:00Z", FUTURE);
        sync_with(&config, &client, &boot_1970).await.unwrap();
        let warning = status_at(&config, boot_1970()).unwrap().clock_warning.unwrap();
        assert!(warning.contains("clock is wrong"), "{warning}");

        // Signed in 2025 to expire in 2026-01, offered after a version of 2026-11:
        // the clock is at least 2026-11-20, so it has expired.
        publish(2, &b, "2025-06-01T00:00:00Z", "2026-01-01T00:00:00Z");
        let err = sync_with(&config, &client, &boot_1970).await.unwrap_err();
        assert!(err.is_stale(), "{err}");
        assert_eq!(layout(&config).current_version().unwrap(), Some(1));
    }

    /// Servers and mirrors in memory, and a config whose data is in a temp dir.
    struct Sites {
        _dir: tempfile::TempDir,
        config: Config,
        servers: Vec<Arc<MemoryTransport>>,
        mirrors: Vec<Arc<MemoryTransport>>,
        sources: Sources,
    }

    const BACKUP: &str = "https://backup.invalid";
    const MIRROR_A: &str = "https://mirror-a.invalid/sky";
    const MIRROR_B: &str = "https://mirror-b.invalid";

    fn sites(servers: &[&str], mirrors: &[&str]) -> Sites {
        let dir = tempfile::tempdir().unwrap();
        let config = crate::test_support::test_config(MEMORY_SERVER, &dir.path().join("data"));
        let servers: Vec<_> = servers.iter().map(|u| Arc::new(MemoryTransport::at(u))).collect();
        let mirrors: Vec<_> = mirrors.iter().map(|u| Arc::new(MemoryTransport::at(u))).collect();
        let sources = Sources::with_clients(
            servers.iter().map(MemoryTransport::client).collect(),
            mirrors.iter().map(MemoryTransport::client).collect(),
        );
        Sites {
            _dir: dir,
            config,
            servers,
            mirrors,
            sources,
        }
    }

    impl Sites {
        async fn sync(&self) -> Result<SyncReport, SyncError> {
            sync_sources(&self.config, &self.sources, &Utc::now, &FetchProgress::default()).await
        }

        fn served_by(&self) -> ServedBy {
            status(&self.config).unwrap().last_sync.unwrap().served_by
        }
    }

    fn heads_asked(t: &MemoryTransport) -> usize {
        t.requests().iter().filter(|r| r.url.ends_with(HEAD_PATH)).count()
    }

    fn refused_urls(served: &ServedBy) -> Vec<String> {
        served.refused.iter().map(|r| r.url.clone()).collect()
    }

    #[tokio::test]
    async fn servers_are_asked_in_order_and_a_down_primary_fails_over_to_the_backup() {
        let s = sites(&[MEMORY_SERVER, BACKUP], &[]);
        let a = media(1, 5000);
        for server in &s.servers {
            server.publish(1, &[&a], FUTURE);
        }
        let report = s.sync().await.unwrap();
        assert_eq!(report.served_by.head.as_deref(), Some(MEMORY_SERVER));
        assert_eq!(
            heads_asked(&s.servers[1]),
            0,
            "the backup is not asked while the primary answers"
        );
        assert_eq!(
            status(&s.config).unwrap().server_in_use.as_deref(),
            Some(MEMORY_SERVER)
        );

        s.servers[0].set_down(true);
        s.servers[1].publish(2, &[&a], FUTURE);
        let report = s.sync().await.unwrap();
        assert_eq!(report.version, 2);
        let served = s.served_by();
        assert_eq!(served.head.as_deref(), Some(BACKUP));
        assert_eq!(served.manifest.as_deref(), Some(BACKUP));
        assert_eq!(refused_urls(&served), [MEMORY_SERVER]);
        assert_eq!(status(&s.config).unwrap().server_in_use.as_deref(), Some(BACKUP));

        // The primary is back: the next sync asks it first again.
        s.servers[0].set_down(false);
        s.servers[0].publish(2, &[&a], FUTURE);
        s.sync().await.unwrap();
        assert_eq!(
            status(&s.config).unwrap().server_in_use.as_deref(),
            Some(MEMORY_SERVER)
        );
        assert_eq!(s.sources.in_use_index(), Some(0));
    }

    #[tokio::test]
    async fn a_401_from_the_primary_is_reported_and_not_failed_over() {
        let s = sites(&[MEMORY_SERVER, BACKUP], &[]);
        s.servers[1].publish(1, &[&media(1, 100)], FUTURE);
        s.servers[0].set_status(Some(reqwest::StatusCode::UNAUTHORIZED));
        let err = s.sync().await.unwrap_err();
        assert!(
            matches!(err, SyncError::Client(ClientError::Unauthorized { .. })),
            "{err}"
        );
        assert!(
            s.servers[1].requests().is_empty(),
            "a wrong token is not a reason to fail over"
        );
        // A 5xx is: the server is there but cannot serve.
        s.servers[0].set_status(Some(reqwest::StatusCode::SERVICE_UNAVAILABLE));
        assert_eq!(s.sync().await.unwrap().version, 1);
    }

    #[tokio::test]
    async fn mirror_head_is_followed_only_when_no_server_answers() {
        let s = sites(&[MEMORY_SERVER], &[MIRROR_A]);
        let (a, b) = (media(1, 3000), media(2, 4000));
        s.servers[0].publish(1, &[&a], FUTURE);
        // The mirror already holds version 2; the origin says 1, and the origin wins.
        s.mirrors[0].copy_from(&s.servers[0]);
        s.mirrors[0].publish(2, &[&b], FUTURE);
        let report = s.sync().await.unwrap();
        assert_eq!(report.version, 1);
        assert_eq!(
            heads_asked(&s.mirrors[0]),
            0,
            "no mirror head while the origin answers"
        );
        let served = s.served_by();
        assert_eq!(served.manifest.as_deref(), Some(MEMORY_SERVER));
        assert_eq!(served.media[0].url, MIRROR_A, "media come from the mirror first");
        assert_eq!(s.servers[0].media_requests(), 0);

        s.servers[0].set_down(true);
        let report = s.sync().await.unwrap();
        assert_eq!(report.version, 2);
        let served = s.served_by();
        assert_eq!(served.head.as_deref(), Some(MIRROR_A));
        assert_eq!(served.manifest.as_deref(), Some(MIRROR_A));
        assert_eq!(served.media[0].bytes, 4000);
        assert_eq!(refused_urls(&served), [MEMORY_SERVER]);
        assert_eq!(status(&s.config).unwrap().server_in_use, None);
        assert!(
            s.mirrors[0].requests().iter().all(|r| !r.url.contains('?')),
            "no long-poll on a mirror"
        );
    }

    #[tokio::test]
    async fn mirror_behind_is_skipped_without_an_alarm_and_the_next_mirror_serves() {
        let s = sites(&[MEMORY_SERVER], &[MIRROR_A, MIRROR_B]);
        let (a, b) = (media(1, 1000), media(2, 1000));
        s.servers[0].publish(2, &[&a], FUTURE);
        s.sync().await.unwrap();
        s.servers[0].set_down(true);
        s.mirrors[0].publish(1, &[&a], FUTURE);
        // Only a mirror behind: nothing new, and no attack either.
        let err = s.sync().await.unwrap_err();
        assert!(!err.is_verify_failure() && err.is_network(), "{err}");
        assert_eq!(layout(&s.config).current_version().unwrap(), Some(2));

        s.mirrors[1].publish(3, &[&b], FUTURE);
        let report = s.sync().await.unwrap();
        assert_eq!(report.version, 3);
        let served = s.served_by();
        assert_eq!(served.head.as_deref(), Some(MIRROR_B));
        let behind = served.refused.iter().find(|r| r.url == MIRROR_A).unwrap();
        assert!(behind.error.contains("behind"), "{behind:?}");
    }

    #[tokio::test]
    async fn switching_servers_never_rolls_back() {
        let s = sites(&[MEMORY_SERVER, BACKUP], &[]);
        let a = media(1, 1000);
        s.servers[0].publish(3, &[&a], FUTURE);
        s.servers[1].publish(2, &[&a], FUTURE);
        s.sync().await.unwrap();
        s.servers[0].set_down(true);
        let err = s.sync().await.unwrap_err();
        assert!(matches!(err, SyncError::Replay { .. }), "{err}");
        assert!(err.to_string().contains(BACKUP), "{err}");
        assert_eq!(layout(&s.config).current_version().unwrap(), Some(3));
        // Even with `current` gone the state remembers version 3.
        std::fs::remove_file(s.config.data.join("current")).unwrap();
        assert!(matches!(s.sync().await.unwrap_err(), SyncError::Replay { .. }));
        s.servers[1].publish(4, &[&a], FUTURE);
        assert_eq!(s.sync().await.unwrap().version, 4);
    }

    #[tokio::test]
    async fn tampered_or_truncated_mirror_media_are_refused_and_the_origin_serves_them() {
        let s = sites(&[MEMORY_SERVER], &[MIRROR_A]);
        let (a, b) = (media(1, 20_000), media(2, 30_000));
        s.servers[0].publish(1, &[&a, &b], FUTURE);
        s.mirrors[0].copy_from(&s.servers[0]);
        let mut tampered = a.clone();
        tampered[100] ^= 1;
        s.mirrors[0].put(&media_path(&MediaId::of(&a)), tampered);
        s.mirrors[0].put(&media_path(&MediaId::of(&b)), b[..10_000].to_vec());
        let report = s.sync().await.unwrap();
        assert_eq!(report.version, 1);
        let served = s.served_by();
        assert_eq!(
            served.media,
            [crate::sources::MediaServed {
                url: MEMORY_SERVER.into(),
                count: 2,
                bytes: 50_000
            }],
            "the origin sent every byte again, from byte 0"
        );
        assert_eq!(refused_urls(&served), [MIRROR_A, MIRROR_A]);
        let errors: Vec<_> = served.refused.iter().map(|r| r.error.as_str()).collect();
        assert!(errors.iter().any(|e| e.contains("does not match")), "{errors:?}");
        assert!(
            errors.iter().any(|e| e.contains("stopped at 10000")),
            "{errors:?}"
        );
        let attacks: Vec<_> = served.possible_attacks().map(|r| r.error.as_str()).collect();
        assert!(
            attacks.len() == 1 && attacks[0].contains("does not match"),
            "a wrong hash is an attack signal, a short file is not: {attacks:?}"
        );
        assert!(
            s.servers[0].requests().iter().all(|r| r.from_byte == 0),
            "no resume of a mirror's bytes"
        );
        assert!(std::fs::read_dir(s.config.data.join("partial"))
            .unwrap()
            .next()
            .is_none());
    }

    #[tokio::test]
    async fn a_good_mirror_serves_every_media_byte() {
        let s = sites(&[MEMORY_SERVER], &[MIRROR_A]);
        let (a, b) = (media(1, 20_000), media(2, 30_000));
        s.servers[0].publish(1, &[&a, &b], FUTURE);
        s.mirrors[0].copy_from(&s.servers[0]);
        s.sync().await.unwrap();
        assert_eq!(s.servers[0].media_requests(), 0);
        let served = s.served_by();
        assert_eq!(served.media.len(), 1);
        assert_eq!(
            (served.media[0].url.as_str(), served.media[0].bytes),
            (MIRROR_A, 50_000)
        );
        assert!(served.refused.is_empty(), "{served:?}");
    }

    #[tokio::test]
    async fn a_mirror_down_is_tried_once_per_sync_not_once_per_file() {
        let s = sites(&[MEMORY_SERVER], &[MIRROR_A]);
        let files: Vec<Vec<u8>> = (1..=6).map(|i| media(i, 1000)).collect();
        let refs: Vec<&[u8]> = files.iter().map(|f| f.as_slice()).collect();
        s.servers[0].publish(1, &refs, FUTURE);
        s.mirrors[0].set_down(true);
        s.sync().await.unwrap();
        // Two downloads run in parallel: each may have asked it before it was known down.
        assert!(
            s.mirrors[0].media_requests() <= 2,
            "{}",
            s.mirrors[0].media_requests()
        );
        assert_eq!(s.served_by().media[0].count, 6);
    }

    #[tokio::test]
    async fn stale_or_tampered_mirror_manifests_are_refused_and_the_next_mirror_serves() {
        let s = sites(&[MEMORY_SERVER], &[MIRROR_A, MIRROR_B]);
        let a = media(1, 1000);
        s.servers[0].publish(1, &[&a], FUTURE);
        s.sync().await.unwrap();
        s.servers[0].set_down(true);
        // Mirror A: version 2, expired (a mirror left behind, caught by expiry). Its
        // `Date` claims a time before the expiry: a mirror's clock is not trusted.
        s.mirrors[0].publish(2, &[&a], PAST);
        s.mirrors[0].set_server_date(Some(at("2020-06-01T00:00:00Z")));
        let err = s.sync().await.unwrap_err();
        assert!(err.is_stale(), "{err}");
        assert_eq!(layout(&s.config).current_version().unwrap(), Some(1));
        // Mirror A now: version 2 with a manifest changed after signing.
        s.mirrors[0].publish(2, &[&a], FUTURE);
        let path = version_file_path(2, MANIFEST_FILE);
        let yaml = manifest_yaml(2, &[&a], FUTURE).replace("Track 0", "Track X");
        s.mirrors[0].put(&path, yaml.into_bytes());
        let err = s.sync().await.unwrap_err();
        assert!(
            matches!(err, SyncError::Verify { .. }) && err.is_verify_failure(),
            "{err}"
        );
        // Mirror B holds the real version 2: it is taken, mirror A is on record.
        s.mirrors[1].publish(2, &[&a], FUTURE);
        assert_eq!(s.sync().await.unwrap().version, 2);
        let served = s.served_by();
        assert_eq!(served.manifest.as_deref(), Some(MIRROR_B));
        assert!(served
            .refused
            .iter()
            .any(|r| r.url == MIRROR_A && r.error.contains("verification")));
    }
}
