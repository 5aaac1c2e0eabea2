//! Media downloads: into `partial/`, hashed while streaming, capped at the size the
//! verified manifest declares, resumed with `Range`, and renamed into `media/` only
//! once size and blake3 match. A download slower than [`MinThroughput`] is aborted
//! (its partial file kept), so a server trickling bytes never hangs a sync.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures_util::stream::{self, StreamExt};
use reqwest::StatusCode;
use skycast_schema::{ContentHasher, Manifest, MediaEntry, MediaId, Verified};
use tokio::io::AsyncWriteExt;

use crate::client::{one_line, Client, ClientError};
use crate::config::MinThroughput;
use crate::local_store::{
    fsync_dir, hash_file, open_private_file, remove_file_if_exists, Layout, StoreError,
};
use crate::sources::Ledger;

#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    #[error(transparent)]
    Http(#[from] ClientError),
    #[error(
        "{url} sent more than the {declared_bytes} bytes the manifest declares for media {id}: \
         cut off and deleted the partial download, possible attack"
    )]
    TooLong {
        url: String,
        id: MediaId,
        declared_bytes: u64,
    },
    #[error(
        "media from {url} does not match the manifest: expected blake3 {expected}, got {got}: \
         deleted the partial download, possible tampering"
    )]
    HashMismatch {
        url: String,
        expected: MediaId,
        got: MediaId,
    },
    #[error(
        "download of {url} stopped at {received_bytes} of {declared_bytes} bytes ({detail}): \
         the partial file is kept and the next sync resumes it"
    )]
    Cut {
        url: String,
        received_bytes: u64,
        declared_bytes: u64,
        detail: String,
    },
    #[error(
        "download of {url} is too slow: {window_bytes} bytes in the last {window_secs:.1} s, below the \
         minimum of {min_bytes_per_sec} bytes/s; stopped at {received_bytes} of {declared_bytes} bytes: \
         the partial file is kept and the next sync resumes it; check the network or the server"
    )]
    TooSlow {
        url: String,
        window_bytes: u64,
        window_secs: f64,
        min_bytes_per_sec: u64,
        received_bytes: u64,
        declared_bytes: u64,
    },
    #[error("{url} kept refusing to resume or restart the download ({detail}): try again later")]
    NoProgress { url: String, detail: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

use crate::local_store::io_err as io;

/// Download progress, for reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Bytes of the media to fetch, before the first download starts.
    Total(u64),
    /// A media file of this size is in `media/`.
    Landed(u64),
}

fn size_of(manifest: &Manifest, id: &MediaId) -> u64 {
    manifest.media_entry(id).map_or(0, |e| e.size)
}

/// What a sync's downloads did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DownloadStats {
    /// Media files that were fetched (fully or resumed) and moved into `media/`.
    pub media: u64,
    /// Bytes received from the network for them.
    pub bytes: u64,
    /// Media already present in `media/`.
    pub reused: u64,
}

/// The sources one sync fetches media from, in the order each file tries them
/// (mirrors first, then servers), and the ledger of who served what.
pub struct MediaSources<'a> {
    clients: Vec<&'a Client>,
    /// A source that did not answer (or too slowly) once is skipped by the files
    /// after it in this sync: a mirror that is down costs one timeout, not one per file.
    down: Mutex<Vec<bool>>,
    ledger: Ledger,
}

impl<'a> MediaSources<'a> {
    /// `clients` in order; those in `down_already` (base URLs) are known down.
    pub fn new(clients: Vec<&'a Client>, down_already: &[String], ledger: Ledger) -> MediaSources<'a> {
        let down = clients
            .iter()
            .map(|c| down_already.iter().any(|d| d == c.base()))
            .collect();
        MediaSources {
            clients,
            down: Mutex::new(down),
            ledger,
        }
    }

    fn is_down(&self, index: usize) -> bool {
        self.down.lock().unwrap_or_else(|p| p.into_inner())[index]
    }

    fn mark_down(&self, index: usize) {
        self.down.lock().unwrap_or_else(|p| p.into_inner())[index] = true;
    }
}

impl DownloadError {
    /// True when the source did not answer, or too slowly: later files skip it.
    fn source_is_down(&self) -> bool {
        match self {
            DownloadError::Http(e) => e.is_network(),
            DownloadError::TooSlow { .. } => true,
            _ => false,
        }
    }
}

/// Downloads every media of the manifest missing from `media/`, at most `parallel`
/// at a time, each aborted when slower than `min`. All downloads run to their end;
/// the first failure is returned. `progress` hears the bytes still to fetch once,
/// then the size of each file as it lands.
pub async fn download_missing(
    client: &Client,
    layout: &Layout,
    manifest: &Verified<Manifest>,
    parallel: usize,
    min: MinThroughput,
    progress: &(dyn Fn(Progress) + Sync),
) -> Result<DownloadStats, DownloadError> {
    let sources = MediaSources::new(vec![client], &[], Ledger::default());
    download_missing_from(&sources, layout, manifest, parallel, min, progress).await
}

/// [`download_missing`] where each file tries `sources` in order (see
/// [`fetch_from_sources`]) and every success and refusal goes to their ledger.
pub async fn download_missing_from(
    sources: &MediaSources<'_>,
    layout: &Layout,
    manifest: &Verified<Manifest>,
    parallel: usize,
    min: MinThroughput,
    progress: &(dyn Fn(Progress) + Sync),
) -> Result<DownloadStats, DownloadError> {
    let mut stats = DownloadStats::default();
    let missing: Vec<&MediaEntry> = manifest
        .media
        .iter()
        .filter(|e| {
            let present = layout.has_media(&e.id, e.size);
            if present {
                stats.reused += 1;
            }
            !present
        })
        .collect();
    progress(Progress::Total(missing.iter().map(|e| e.size).sum()));
    // Futures are built first so no closure ends up in the stream's type: a closure
    // over borrowed entries would make the whole sync future not `Send`.
    let jobs: Vec<_> = missing
        .into_iter()
        .map(|entry| fetch_tagged(sources, layout, entry, min))
        .collect();
    let mut results = stream::iter(jobs).buffer_unordered(parallel.max(1));
    let mut first_error = None;
    let mut failures = 0;
    while let Some((id, result)) = results.next().await {
        match result {
            Ok(bytes) => {
                progress(Progress::Landed(size_of(manifest, &id)));
                stats.media += 1;
                stats.bytes += bytes;
            }
            Err(e) => {
                tracing::info!(media = %id.short(), error = %e, "media download failed");
                failures += 1;
                first_error.get_or_insert(e);
            }
        }
    }
    match first_error {
        Some(e) => {
            if failures > 1 {
                tracing::info!(failures, "several media downloads failed; reporting the first");
            }
            Err(e)
        }
        None => Ok(stats),
    }
}

async fn fetch_tagged(
    sources: &MediaSources<'_>,
    layout: &Layout,
    entry: &MediaEntry,
    min: MinThroughput,
) -> (MediaId, Result<u64, DownloadError>) {
    (entry.id, fetch_from_sources(sources, layout, entry, min).await)
}

/// Brings one media file in from the first source that serves it right. A source
/// that fails (down, 404, cut, too slow) or sends bytes that are refused (too long,
/// wrong hash) is noted in the ledger and the next one is tried, from byte 0: the
/// partial file is removed, so no source's bytes are ever judged as another's. The
/// last source's failure leaves the partial file as [`fetch_media_with`] does (a cut
/// download resumes at the next sync) and is the error returned. A resumed file
/// whose hash fails is fetched once more from byte 0 from the same source before
/// the source is blamed: its first bytes may have come from another one.
pub async fn fetch_from_sources(
    sources: &MediaSources<'_>,
    layout: &Layout,
    entry: &MediaEntry,
    min: MinThroughput,
) -> Result<u64, DownloadError> {
    let partial = layout.partial_path(&entry.id);
    let mut last_error = None;
    let count = sources.clients.len();
    for (index, client) in sources.clients.iter().enumerate() {
        let is_last = (index + 1..count).all(|i| sources.is_down(i));
        // A source known down is still tried when it is all there is left to try.
        if sources.is_down(index) && !(is_last && last_error.is_none()) {
            continue;
        }
        let resumed = std::fs::metadata(&partial).is_ok_and(|m| m.len() > 0);
        let mut result = fetch_media_with(client, layout, entry, min).await;
        if resumed && matches!(result, Err(DownloadError::HashMismatch { .. })) {
            // `finish` removed the partial file: this fetch starts from byte 0.
            result = fetch_media_with(client, layout, entry, min).await;
        }
        match result {
            Ok(bytes) => {
                sources.ledger.update(|l| l.served_media(client.base(), bytes));
                return Ok(bytes);
            }
            // The local disk, not the source: no other source does better.
            Err(e @ DownloadError::Store(_)) => return Err(e),
            Err(e) => {
                if e.source_is_down() {
                    sources.mark_down(index);
                }
                let attack = matches!(
                    e,
                    DownloadError::HashMismatch { .. } | DownloadError::TooLong { .. }
                );
                sources.ledger.update(|l| {
                    if attack {
                        l.refuse_as_attack(client.base(), &e)
                    } else {
                        l.refuse(client.base(), &e)
                    }
                });
                if !is_last {
                    remove_file_if_exists(&partial)?;
                }
                last_error = Some(e);
            }
        }
    }
    // There is at least one source (the server), so an error was kept above.
    Err(last_error.unwrap_or_else(|| DownloadError::NoProgress {
        url: entry.id.to_string(),
        detail: "no source to download from".into(),
    }))
}

/// The sliding-window minimum-throughput rule, fed with instants by its caller (so
/// it is tested without waiting).
#[derive(Debug)]
pub struct ThroughputGuard {
    min: MinThroughput,
    started: Instant,
    /// (instant, bytes received up to then), oldest first, spanning at most a window.
    samples: VecDeque<(Instant, u64)>,
    total: u64,
}

impl ThroughputGuard {
    pub fn new(min: MinThroughput, started: Instant) -> ThroughputGuard {
        ThroughputGuard {
            min,
            started,
            samples: VecDeque::from([(started, 0)]),
            total: 0,
        }
    }

    /// Counts `bytes` received at `at`.
    pub fn record(&mut self, at: Instant, bytes: u64) {
        self.total += bytes;
        self.samples.push_back((at, self.total));
    }

    /// `Err(bytes in the last window)` when the last full window brought fewer bytes
    /// than the rule asks; the first window after the start is never judged early.
    pub fn check(&mut self, at: Instant) -> Result<(), u64> {
        let window = self.min.window;
        if at.saturating_duration_since(self.started) < window {
            return Ok(());
        }
        let window_start = at - window;
        // Keep the newest sample at or before the window's start as its baseline.
        while self.samples.len() > 1 && self.samples[1].0 <= window_start {
            self.samples.pop_front();
        }
        let baseline = self.samples.front().map_or(0, |s| s.1);
        let in_window = self.total - baseline;
        if in_window < self.min.min_bytes_per_window() {
            Err(in_window)
        } else {
            Ok(())
        }
    }

    /// How long to wait for the next chunk before judging again.
    pub fn tick(&self) -> Duration {
        (self.min.window / 4).max(Duration::from_millis(10))
    }
}

enum Attempt {
    Done,
    StartOver(String),
}

/// [`fetch_media_with`] under the default [`MinThroughput`].
pub async fn fetch_media(client: &Client, layout: &Layout, entry: &MediaEntry) -> Result<u64, DownloadError> {
    fetch_media_with(client, layout, entry, MinThroughput::DEFAULT).await
}

/// Brings one media file into `media/`, resuming a partial download if there is one,
/// aborting when it is slower than `min`. Returns the number of bytes received.
pub async fn fetch_media_with(
    client: &Client,
    layout: &Layout,
    entry: &MediaEntry,
    min: MinThroughput,
) -> Result<u64, DownloadError> {
    let started = Instant::now();
    let mut received = 0u64;
    let mut last_reason = String::new();
    // A resume the server cannot honour starts over once; a second refusal is an error.
    for _ in 0..3 {
        match attempt(client, layout, entry, &mut received, min).await? {
            Attempt::Done => {
                tracing::info!(
                    media = %entry.id.short(),
                    size_bytes = entry.size,
                    received_bytes = received,
                    duration_ms = started.elapsed().as_millis() as u64,
                    "media verified and stored"
                );
                return Ok(received);
            }
            Attempt::StartOver(reason) => {
                tracing::info!(media = %entry.id.short(), reason = %reason, "restarting download from byte 0");
                remove_file_if_exists(&layout.partial_path(&entry.id))?;
                last_reason = reason;
            }
        }
    }
    Err(DownloadError::NoProgress {
        url: client.media_url(&entry.id),
        detail: last_reason,
    })
}

async fn attempt(
    client: &Client,
    layout: &Layout,
    entry: &MediaEntry,
    received: &mut u64,
    min: MinThroughput,
) -> Result<Attempt, DownloadError> {
    let partial = layout.partial_path(&entry.id);
    let declared = entry.size;
    let mut hasher = hash_existing(&partial).await?;
    let mut offset = hasher.len();
    if offset > declared {
        return Ok(Attempt::StartOver(format!(
            "partial file holds {offset} bytes, more than the declared {declared}"
        )));
    }
    if offset == declared {
        return match finish(layout, entry, &partial, &hasher, &client.media_url(&entry.id)).await {
            Ok(()) => Ok(Attempt::Done),
            Err(DownloadError::HashMismatch { .. }) => Ok(Attempt::StartOver(
                "complete partial file did not match its hash".into(),
            )),
            Err(e) => Err(e),
        };
    }

    let mut guard = ThroughputGuard::new(min, Instant::now());
    let too_slow = |window_bytes: u64, received_bytes: u64| DownloadError::TooSlow {
        url: client.media_url(&entry.id),
        window_bytes,
        window_secs: min.window.as_secs_f64(),
        min_bytes_per_sec: min.bytes_per_sec,
        received_bytes,
        declared_bytes: declared,
    };
    // An answer that does not even start within a window is as slow as can be.
    let (url, mut resp) = match tokio::time::timeout(min.window, client.media(&entry.id, offset)).await {
        Ok(answer) => answer?,
        Err(_) => return Err(too_slow(0, offset)),
    };
    let mut append = offset > 0;
    match resp.status {
        StatusCode::PARTIAL_CONTENT => match resp.range_start {
            Some(start) if start == offset => {}
            Some(0) => {
                append = false;
                offset = 0;
                hasher = ContentHasher::new();
            }
            other => {
                return Ok(Attempt::StartOver(format!(
                    "206 answer starts at {other:?}, not at byte {offset}"
                )))
            }
        },
        StatusCode::RANGE_NOT_SATISFIABLE if offset > 0 => {
            return Ok(Attempt::StartOver(format!(
                "server cannot resume at byte {offset} (416)"
            )));
        }
        s if s.is_success() && s != StatusCode::PARTIAL_CONTENT => {
            // 200: the whole file again, from byte 0.
            append = false;
            offset = 0;
            hasher = ContentHasher::new();
        }
        s => {
            return Err(ClientError::Status {
                url,
                status: s,
                message: None,
            }
            .into())
        }
    }
    let too_long = || DownloadError::TooLong {
        url: url.clone(),
        id: entry.id,
        declared_bytes: declared,
    };
    if resp.content_length.is_some_and(|n| offset + n > declared) {
        drop(resp);
        remove_file_if_exists(&partial)?;
        return Err(too_long());
    }

    let file = {
        let partial = partial.clone();
        run_blocking(move || {
            let mut file = open_private_file(&partial, !append)?;
            if append {
                std::io::Seek::seek(&mut file, std::io::SeekFrom::End(0)).map_err(io("seek", &partial))?;
            }
            Ok(file)
        })
        .await?
    };
    let mut file = tokio::fs::File::from_std(file);
    loop {
        // Cancelling `chunk` on a tick loses nothing: the stream keeps its data.
        let chunk = match tokio::time::timeout(guard.tick(), resp.chunk()).await {
            Err(_no_chunk_this_tick) => {
                if let Err(window_bytes) = guard.check(Instant::now()) {
                    drop(resp);
                    file.flush().await.map_err(io("write", &partial))?;
                    return Err(too_slow(window_bytes, hasher.len()));
                }
                continue;
            }
            Ok(Ok(Some(c))) => c,
            Ok(Ok(None)) => break,
            Ok(Err(e)) => {
                file.flush().await.map_err(io("write", &partial))?;
                return Err(DownloadError::Cut {
                    url,
                    received_bytes: hasher.len(),
                    declared_bytes: declared,
                    // The whole chain of the cause, as download errors have always shown it.
                    detail: std::error::Error::source(&e).map_or_else(|| e.detail(), one_line),
                });
            }
        };
        if hasher.len() + chunk.len() as u64 > declared {
            // Stop reading at once: the rest of the body is never consumed.
            drop(resp);
            drop(file);
            remove_file_if_exists(&partial)?;
            return Err(too_long());
        }
        file.write_all(&chunk).await.map_err(io("write", &partial))?;
        hasher.update(&chunk);
        *received += chunk.len() as u64;
        let at = Instant::now();
        guard.record(at, chunk.len() as u64);
        if let Err(window_bytes) = guard.check(at) {
            drop(resp);
            file.flush().await.map_err(io("write", &partial))?;
            return Err(too_slow(window_bytes, hasher.len()));
        }
    }
    file.flush().await.map_err(io("write", &partial))?;
    if hasher.len() < declared {
        return Err(DownloadError::Cut {
            url,
            received_bytes: hasher.len(),
            declared_bytes: declared,
            detail: "the server ended the answer early".into(),
        });
    }
    drop(file);
    // `finish` fsyncs before the rename, for resumed and fresh downloads alike.
    finish(layout, entry, &partial, &hasher, &url).await?;
    Ok(Attempt::Done)
}

/// Checks the hash of a complete partial file, then fsyncs it and renames it into
/// `media/`. On a mismatch the partial file is deleted.
async fn finish(
    layout: &Layout,
    entry: &MediaEntry,
    partial: &Path,
    hasher: &ContentHasher,
    url: &str,
) -> Result<(), DownloadError> {
    let (got, len) = hasher.finalize();
    if got != entry.id || len != entry.size {
        remove_file_if_exists(partial)?;
        return Err(DownloadError::HashMismatch {
            url: url.to_string(),
            expected: entry.id,
            got,
        });
    }
    let partial = partial.to_path_buf();
    let target = layout.media_path(&entry.id);
    let media_dir = layout.media_dir();
    run_blocking(move || {
        std::fs::File::open(&partial)
            .and_then(|f| f.sync_all())
            .map_err(io("fsync", &partial))?;
        std::fs::rename(&partial, &target).map_err(io("rename into", &target))?;
        fsync_dir(&media_dir)
    })
    .await?;
    Ok(())
}

/// Hashes what an earlier, interrupted download left, so resuming keeps one hash
/// over the whole file. An absent file is an empty prefix.
async fn hash_existing(path: &Path) -> Result<ContentHasher, StoreError> {
    let path: PathBuf = path.to_path_buf();
    // A symlink planted here is refused: its target is neither read nor written.
    run_blocking(move || hash_file(&path)).await
}

async fn run_blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        Err(e) => Err(StoreError::Io {
            action: "run file task for",
            path: PathBuf::from("<data dir>"),
            source: std::io::Error::other(e.to_string()),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use crate::test_support::{client_for, Fault, MemoryTransport, TestServer};
    use skycast_schema::protocol::media_path;

    fn entry(bytes: &[u8]) -> MediaEntry {
        MediaEntry {
            id: MediaId::of(bytes),
            size: bytes.len() as u64,
            duration_ms: 1000,
            title: "t".into(),
            artist: None,
            kind: skycast_schema::MediaKind::Music,
            loudness_lufs: None,
        }
    }

    fn body(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 % 251) as u8).collect()
    }

    async fn setup(data: &[u8]) -> (TestServer, tempfile::TempDir, Layout, Client) {
        let server = TestServer::start().await;
        server.put_media(data.to_vec());
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        std::fs::create_dir_all(layout.partial_dir()).unwrap();
        std::fs::create_dir_all(layout.media_dir()).unwrap();
        let client = client_for(&server);
        (server, dir, layout, client)
    }

    #[tokio::test]
    async fn download_is_verified_then_renamed_into_media() {
        let data = body(300_000);
        let (_server, _dir, layout, client) = setup(&data).await;
        let got = fetch_media(&client, &layout, &entry(&data)).await.unwrap();
        assert_eq!(got, data.len() as u64);
        assert_eq!(
            std::fs::read(layout.media_path(&MediaId::of(&data))).unwrap(),
            data
        );
        assert!(!layout.partial_path(&MediaId::of(&data)).exists());
    }

    #[tokio::test]
    async fn download_longer_than_declared_size_is_cut_off_and_refused() {
        let data = body(100_000);
        let (server, _dir, layout, client) = setup(&data).await;
        // Declared 1000 bytes shorter than what the server sends, without Content-Length.
        let mut e = entry(&data);
        e.size -= 1000;
        server.set_fault(Fault::NoContentLength);
        let err = fetch_media(&client, &layout, &e).await.unwrap_err();
        assert!(matches!(err, DownloadError::TooLong { .. }), "{err}");
        assert!(!layout.partial_path(&e.id).exists());
        assert!(!layout.media_path(&e.id).exists());
        // With an honest Content-Length, nothing is read at all.
        server.set_fault(Fault::None);
        let err = fetch_media(&client, &layout, &e).await.unwrap_err();
        assert!(matches!(err, DownloadError::TooLong { .. }), "{err}");
    }

    #[tokio::test]
    async fn tampered_media_is_deleted_and_the_error_names_the_expected_hash() {
        let data = body(50_000);
        let (server, _dir, layout, client) = setup(&data).await;
        server.set_fault(Fault::FlipByte(1234));
        let e = entry(&data);
        let err = fetch_media(&client, &layout, &e).await.unwrap_err();
        assert!(err.to_string().contains(&e.id.to_string()), "{err}");
        assert!(!layout.partial_path(&e.id).exists());
        assert!(!layout.media_path(&e.id).exists());
    }

    #[tokio::test]
    async fn resumes_partial_download_with_range() {
        let data = body(200_000);
        let (server, _dir, layout, client) = setup(&data).await;
        let e = entry(&data);
        server.set_fault(Fault::CutAfter(70_000));
        let err = fetch_media(&client, &layout, &e).await.unwrap_err();
        assert!(matches!(err, DownloadError::Cut { .. }), "{err}");
        let kept = std::fs::metadata(layout.partial_path(&e.id)).unwrap().len();
        assert!(kept > 0 && kept < data.len() as u64, "kept {kept}");
        assert!(!layout.media_path(&e.id).exists());

        server.set_fault(Fault::None);
        let got = fetch_media(&client, &layout, &e).await.unwrap();
        assert_eq!(got, data.len() as u64 - kept);
        assert_eq!(server.ranges_seen(), vec![format!("bytes={kept}-")]);
        assert_eq!(std::fs::read(layout.media_path(&e.id)).unwrap(), data);
    }

    #[tokio::test]
    async fn server_ignoring_range_restarts_from_zero() {
        let data = body(20_000);
        let (server, _dir, layout, client) = setup(&data).await;
        let e = entry(&data);
        std::fs::write(layout.partial_path(&e.id), &data[..5000]).unwrap();
        server.set_fault(Fault::IgnoreRange);
        assert_eq!(
            fetch_media(&client, &layout, &e).await.unwrap(),
            data.len() as u64
        );
        assert_eq!(std::fs::read(layout.media_path(&e.id)).unwrap(), data);
    }

    #[tokio::test]
    async fn unsatisfiable_range_deletes_the_partial_and_starts_over() {
        let data = body(20_000);
        let (server, _dir, layout, client) = setup(&data).await;
        let e = entry(&data);
        std::fs::write(layout.partial_path(&e.id), &data[..5000]).unwrap();
        server.set_fault(Fault::RangeNotSatisfiable);
        assert_eq!(
            fetch_media(&client, &layout, &e).await.unwrap(),
            data.len() as u64
        );
        assert_eq!(std::fs::read(layout.media_path(&e.id)).unwrap(), data);
    }

    #[tokio::test]
    async fn corrupt_partial_prefix_fails_the_hash_and_is_deleted() {
        let data = body(20_000);
        let (_server, _dir, layout, client) = setup(&data).await;
        let e = entry(&data);
        std::fs::write(layout.partial_path(&e.id), vec![0u8; 5000]).unwrap();
        let err = fetch_media(&client, &layout, &e).await.unwrap_err();
        assert!(matches!(err, DownloadError::HashMismatch { .. }), "{err}");
        assert!(!layout.partial_path(&e.id).exists());
        fetch_media(&client, &layout, &e).await.unwrap();
    }

    #[tokio::test]
    async fn download_through_an_in_memory_transport_resumes_and_refuses_a_tampered_body() {
        let data = body(40_000);
        let e = entry(&data);
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        std::fs::create_dir_all(layout.partial_dir()).unwrap();
        std::fs::create_dir_all(layout.media_dir()).unwrap();
        let transport = Arc::new(MemoryTransport::default());
        let client = MemoryTransport::client(&transport);

        // A body with one byte changed is deleted, never renamed into media/.
        let mut tampered = data.clone();
        tampered[30_000] ^= 0xff;
        transport.put(&media_path(&e.id), tampered);
        let err = fetch_media(&client, &layout, &e).await.unwrap_err();
        assert!(matches!(err, DownloadError::HashMismatch { .. }), "{err}");
        assert!(err.to_string().contains(&client.media_url(&e.id)), "{err}");
        assert!(!layout.partial_path(&e.id).exists());
        assert!(!layout.media_path(&e.id).exists());

        // What an interrupted download left is resumed from its end.
        transport.put_media(data.clone());
        std::fs::write(layout.partial_path(&e.id), &data[..12_345]).unwrap();
        let got = fetch_media(&client, &layout, &e).await.unwrap();
        assert_eq!(got, (data.len() - 12_345) as u64);
        assert_eq!(transport.requests().last().map(|r| r.from_byte), Some(12_345));
        assert_eq!(std::fs::read(layout.media_path(&e.id)).unwrap(), data);
    }

    #[tokio::test]
    async fn symlink_planted_at_the_partial_path_is_refused_and_its_target_untouched() {
        let data = body(20_000);
        let (server, dir, layout, client) = setup(&data).await;
        let e = entry(&data);
        let target = dir.path().join("precious.txt");
        std::fs::write(&target, b"keep me").unwrap();
        std::os::unix::fs::symlink(&target, layout.partial_path(&e.id)).unwrap();
        let err = fetch_media(&client, &layout, &e).await.unwrap_err();
        assert!(
            matches!(err, DownloadError::Store(StoreError::NotRegularFile { .. })),
            "{err}"
        );
        assert!(err.to_string().contains("a symlink"), "{err}");
        assert!(
            err.to_string().contains(&e.id.to_string()),
            "names the path: {err}"
        );
        assert_eq!(std::fs::read(&target).unwrap(), b"keep me");
        assert_eq!(
            server.media_requests(),
            0,
            "nothing is fetched through a planted link"
        );

        // A dangling link is refused too, and creates nothing where it points.
        let absent = dir.path().join("absent");
        std::fs::remove_file(layout.partial_path(&e.id)).unwrap();
        std::os::unix::fs::symlink(&absent, layout.partial_path(&e.id)).unwrap();
        let err = fetch_media(&client, &layout, &e).await.unwrap_err();
        assert!(err.to_string().contains("a symlink"), "{err}");
        assert!(!absent.exists());
        assert!(!layout.media_path(&e.id).exists());
    }

    #[test]
    fn throughput_guard_judges_the_last_full_window_only() {
        let min = MinThroughput {
            bytes_per_sec: 1000,
            window: Duration::from_secs(10),
        };
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut guard = ThroughputGuard::new(min, t0);
        // Nothing for 9 s: the first window is not judged early.
        assert_eq!(guard.check(t0 + s(9)), Ok(()));
        assert_eq!(guard.check(t0 + s(10)), Err(0));
        let mut guard = ThroughputGuard::new(min, t0);
        guard.record(t0 + s(1), 50_000);
        assert_eq!(guard.check(t0 + s(10)), Ok(()));
        // Then 1 byte per second: the burst leaves the window after 11 s.
        for i in 2..=12 {
            guard.record(t0 + s(i), 1);
        }
        assert_eq!(guard.check(t0 + s(10)), Ok(()));
        assert_eq!(guard.check(t0 + s(12)), Err(10));
        assert!(guard.tick() <= min.window / 4);
    }
}
