//! Publishing: a planning and its MP3s become a signed manifest and one commit;
//! a rollback republishes an old version's content under a new, higher version,
//! and a re-sign republishes the head's own content with a fresh expiry.

use std::collections::{BTreeSet, HashMap};
use std::io::Read;
use std::num::NonZeroU64;
use std::path::{Component, Path};

use chrono::{DateTime, Duration, Timelike, Utc};
use skycast_schema::{Limits, Manifest, MediaEntry, MediaId, MediaKind, Planning, Program, SCHEMA_V1};

use crate::data_dir::DataDir;
use crate::error::{PublisherError, Result};
use crate::media::inspect_mp3;
use crate::store::{BlobId, CommitId, NewVersion, Store, StoreError};

/// What a publish produced.
#[derive(Debug, Clone)]
pub struct Published {
    pub version: u64,
    pub commit: CommitId,
    pub media_count: usize,
    /// Media this version has that the previous head did not.
    pub new_media: usize,
}

/// A manifest before it has a version number and signature, with the blob of
/// each media file already written to the store.
pub(crate) struct Unsigned {
    pub(crate) timezone: String,
    pub(crate) validity: Duration,
    pub(crate) media: Vec<(MediaEntry, BlobId)>,
    pub(crate) program: Program<MediaId>,
}

pub(crate) fn check_author(author: &str) -> Result<()> {
    let ok = !author.trim().is_empty()
        && author.len() <= 100
        && !author.chars().any(|c| c.is_control() || c == '<' || c == '>');
    if ok {
        Ok(())
    } else {
        Err(PublisherError::BadRequest(format!(
            "author `{author}` is not usable: give a name without <, > or control characters"
        )))
    }
}

/// Reads one media file of a planning, refusing anything that is not a whole MP3.
fn read_media(path: &Path, shown: &str, limits: &Limits) -> Result<(Vec<u8>, MediaId)> {
    let file = std::fs::File::open(path).map_err(PublisherError::io("open", path))?;
    let size = file.metadata().map_err(PublisherError::io("stat", path))?.len();
    if size > limits.max_media_bytes {
        return Err(PublisherError::MediaTooLarge {
            path: shown.to_string(),
            size_bytes: size,
            max_bytes: limits.max_media_bytes,
        });
    }
    let mut bytes = Vec::with_capacity(size as usize);
    file.take(limits.max_media_bytes + 1)
        .read_to_end(&mut bytes)
        .map_err(PublisherError::io("read", path))?;
    let id = MediaId::of(&bytes);
    Ok((bytes, id))
}

/// Resolves a planning's media path against its directory, refusing absolute paths
/// and `..` so a planning cannot reach outside its own folder.
fn resolve(base: &Path, rel: &str, planning: &Path) -> Result<std::path::PathBuf> {
    let p = Path::new(rel);
    if p.components()
        .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(PublisherError::Planning {
            path: planning.to_path_buf(),
            reason: format!("media path `{rel}` must be relative and stay inside the planning's folder"),
        });
    }
    Ok(base.join(p))
}

pub fn publish_planning(
    data: &DataDir,
    planning_path: &Path,
    author: &str,
    message: Option<&str>,
    now: DateTime<Utc>,
) -> Result<Published> {
    // Before any media is written to the store.
    data.refuse_if_follower()?;
    check_author(author)?;
    let text = std::fs::read_to_string(planning_path).map_err(PublisherError::io("read", planning_path))?;
    let planning = Planning::parse(&text).map_err(|e| PublisherError::Planning {
        path: planning_path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let base = planning_path.parent().unwrap_or(Path::new("."));
    let limits = Limits::default();

    // Validate every file before writing anything, so a bad file stores nothing.
    let mut files = Vec::new();
    for rel in planning.media_paths() {
        let path = resolve(base, rel, planning_path)?;
        let (bytes, id) = read_media(&path, rel, &limits)?;
        let info = inspect_mp3(&bytes).map_err(|reason| PublisherError::NotMp3 {
            path: rel.to_string(),
            reason,
        })?;
        let meta = planning.media.get(rel).cloned().unwrap_or_default();
        let stem = Path::new(rel)
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or(rel)
            .to_string();
        let entry = MediaEntry {
            id,
            size: bytes.len() as u64,
            duration_ms: info.duration_ms,
            title: meta
                .title
                .or(info.title)
                .filter(|t| !t.trim().is_empty())
                .unwrap_or(stem),
            artist: meta.artist.or(info.artist).filter(|a| !a.trim().is_empty()),
            kind: meta.kind.unwrap_or(MediaKind::Music),
            loudness_lufs: info.loudness_lufs,
        };
        files.push((rel.to_string(), entry, bytes));
    }

    let store = data.store()?;
    let mut media = Vec::new();
    let mut seen = BTreeSet::new();
    for (_, entry, bytes) in &files {
        if seen.insert(entry.id) {
            media.push((entry.clone(), store.write_blob(bytes)?));
        }
    }
    let validity = Duration::seconds(i64::try_from(planning.validity_secs()).unwrap_or(i64::MAX));
    let program = planning.program.try_map_media(|_, rel: String| {
        files
            .iter()
            .find(|(r, _, _)| *r == rel)
            .map(|(_, e, _)| e.id)
            .ok_or_else(|| PublisherError::Internal(format!("media `{rel}` was not read")))
    })?;
    let unsigned = Unsigned {
        timezone: planning.timezone,
        validity,
        media,
        program,
    };
    let file_name = planning_path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("planning");
    let message = message
        .map(str::to_string)
        .unwrap_or_else(|| format!("Publish {file_name}"));
    commit_unsigned(data, &store, unsigned, author, &message, now)
}

/// Publishes a new version whose content equals version `target`: a rollback never
/// lowers the version number, so players accept it like any other update.
pub fn rollback(data: &DataDir, target: u64, author: &str, now: DateTime<Utc>) -> Result<Published> {
    check_author(author)?;
    let store = data.store()?;
    let commit = store
        .commit_of_version(target)?
        .ok_or(PublisherError::NoSuchVersion(target))?;
    let unsigned = content_of(data, &store, target, commit)?;
    commit_unsigned(
        data,
        &store,
        unsigned,
        author,
        &format!("Roll back to version {target}"),
        now,
    )
}

/// Version `version`'s content (at `commit`), verified, ready to be signed again
/// with the same length of validity.
fn content_of(data: &DataDir, store: &Store, version: u64, commit: CommitId) -> Result<Unsigned> {
    // Only content that still verifies may come back.
    let trusted = crate::trust::trusted_keys(data)?;
    let old = match store.verified_manifest(commit, &trusted) {
        Err(StoreError::MissingFile { .. }) => return Err(PublisherError::NoSuchVersion(version)),
        other => other?,
    };
    let blobs: HashMap<MediaId, BlobId> = store.media_ids_in(commit)?.into_iter().collect();
    let mut media = Vec::new();
    for entry in &old.media {
        let oid = blobs
            .get(&entry.id)
            .ok_or_else(|| PublisherError::Internal(format!("version {version} lacks media {}", entry.id)))?;
        media.push((entry.clone(), *oid));
    }
    Ok(Unsigned {
        timezone: old.timezone.clone(),
        validity: old.expires_at.0 - old.published_at.0,
        media,
        program: old.program.clone(),
    })
}

/// What a re-sign did: the version it re-signed and the one it made.
#[derive(Debug, Clone)]
pub struct Resigned {
    pub of_version: u64,
    pub published: Published,
    pub expires_at: DateTime<Utc>,
}

/// Publishes the head's own content again as the next version, signed now with the
/// head's length of validity: players take it without downloading anything (every
/// media is the same) and their expiry moves on. The head is read under the store
/// lock, so a publish landing meanwhile is what gets re-signed.
pub fn resign(data: &DataDir, author: &str, now: DateTime<Utc>) -> Result<Resigned> {
    check_author(author)?;
    let store = data.store()?;
    let mut of_version = 0;
    let mut validity = Duration::zero();
    let published = commit_with(
        data,
        &store,
        author,
        "Re-sign (same content, new expiry)",
        now,
        |head| {
            let (version, commit) = head.ok_or_else(|| {
                PublisherError::BadRequest("nothing to re-sign: publish a first version".into())
            })?;
            of_version = version;
            let unsigned = content_of(data, &store, version, commit)?;
            validity = unsigned.validity;
            Ok(unsigned)
        },
    )?;
    Ok(Resigned {
        of_version,
        expires_at: now.with_nanosecond(0).unwrap_or(now) + validity,
        published,
    })
}

/// Whether a head published at `published_at` and valid until `expires_at` is due
/// for re-signing at `now`: half of its validity has passed.
pub fn resign_due(published_at: DateTime<Utc>, expires_at: DateTime<Utc>, now: DateTime<Utc>) -> bool {
    now - published_at >= (expires_at - published_at) / 2
}

/// Signs and commits `unsigned` as the version after the current head.
pub(crate) fn commit_unsigned(
    data: &DataDir,
    store: &Store,
    unsigned: Unsigned,
    author: &str,
    message: &str,
    now: DateTime<Utc>,
) -> Result<Published> {
    commit_with(data, store, author, message, now, |_| Ok(unsigned))
}

/// The manifest `version` would be, before signing. `now` loses its fraction of a
/// second: manifests carry whole seconds, so emitted and parsed times stay equal.
pub(crate) fn unsigned_manifest(
    version: u64,
    timezone: String,
    validity: Duration,
    media: Vec<MediaEntry>,
    program: Program<MediaId>,
    author: &str,
    now: DateTime<Utc>,
) -> Result<Manifest> {
    let now = now.with_nanosecond(0).unwrap_or(now);
    let version = NonZeroU64::new(version)
        .ok_or_else(|| PublisherError::Internal("version 0 cannot be published".into()))?;
    Ok(Manifest {
        schema: SCHEMA_V1.to_string(),
        version,
        published_at: now.into(),
        expires_at: (now + validity).into(),
        published_by: author.to_string(),
        timezone,
        media,
        program,
    })
}

/// Holding the store lock, asks `prepare` for the content of the next version given
/// the current head (version and commit), then signs and commits it. Content derived
/// from head (an interrupt added to it) or checked against it (a draft's base) is
/// prepared here, so no other publish can land in between.
pub(crate) fn commit_with(
    data: &DataDir,
    store: &Store,
    author: &str,
    message: &str,
    now: DateTime<Utc>,
    prepare: impl FnOnce(Option<(u64, CommitId)>) -> Result<Unsigned>,
) -> Result<Published> {
    // A second site never signs: every version comes from the primary.
    data.refuse_if_follower()?;
    let lock = data.lock_store()?;
    for path in store.clear_stale_locks(&lock)? {
        tracing::warn!(path = %path.display(), "removed a lock file left by a killed writer");
    }
    store.repair_tags()?;
    let head = store.head_version()?;
    let version = head.map_or(1, |(v, _)| v + 1);
    let previous_media: BTreeSet<MediaId> = match head {
        Some((_, commit)) => store
            .media_ids_in(commit)?
            .into_iter()
            .map(|(id, _)| id)
            .collect(),
        None => BTreeSet::new(),
    };
    let draft = prepare(head)?;
    // Manifests carry whole seconds: dropping the rest keeps emitted and parsed times equal.
    let now = now.with_nanosecond(0).unwrap_or(now);
    let manifest = unsigned_manifest(
        version,
        draft.timezone,
        draft.validity,
        draft.media.iter().map(|(e, _)| e.clone()).collect(),
        draft.program,
        author,
        now,
    )?;
    manifest.validate(&Limits::default())?;
    let bytes = format!("# Skycast manifest, signed: do not edit\n{}", manifest.to_yaml()).into_bytes();
    let key = data.secret_key()?;
    let roots = crate::trust::check_signing_key(data, &key.public())?;
    let signature = key.sign(&bytes);
    let media: Vec<(MediaId, BlobId)> = draft.media.iter().map(|(e, blob)| (e.id, *blob)).collect();
    let commit = store.commit_version(NewVersion {
        version,
        manifest: &bytes,
        signature: signature.as_bytes(),
        media: &media,
        roots: &roots,
        author,
        message,
        time: now,
        parent: head.map(|(_, oid)| oid),
    })?;
    let new_media = media
        .iter()
        .filter(|(id, _)| !previous_media.contains(id))
        .count();
    Ok(Published {
        version,
        commit,
        media_count: media.len(),
        new_media,
    })
}
