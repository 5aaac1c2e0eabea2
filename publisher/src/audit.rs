//! The auditor's tools: verify every version of the store offline (signature,
//! version order, tags, every media hash and size) and list its history. The
//! diff of two versions in words is `describe`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;

use skycast_schema::{ContentHasher, Manifest, MediaId, TrustedKeys};

use crate::error::Result;
use crate::store::{
    BlobId, CommitId, RootFile, Store, StoreError, MANIFEST_FILE, MEDIA_DIR, ROOT_DIR, SIGNATURE_FILE,
};
use crate::trust::HistoryTrust;

#[derive(Debug, Clone)]
pub struct VersionAudit {
    pub version: u64,
    pub commit: CommitId,
    pub author: String,
    pub message: String,
    pub media_count: usize,
    pub problems: Vec<String>,
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, Default)]
pub struct AuditReport {
    pub versions: Vec<VersionAudit>,
    pub problems: Vec<String>,
}

impl AuditReport {
    pub fn ok(&self) -> bool {
        self.problems.is_empty() && self.versions.iter().all(|v| v.problems.is_empty())
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        for v in &self.versions {
            let state = if v.problems.is_empty() { "ok  " } else { "FAIL" };
            let _ = writeln!(
                out,
                "{state} v{:<4} {}  {:<12} {:>3} media  {}",
                v.version,
                &v.commit.to_string()[..10],
                v.author,
                v.media_count,
                v.message
            );
            for p in &v.problems {
                let _ = writeln!(out, "       problem: {p}");
            }
            for w in &v.warnings {
                let _ = writeln!(out, "       warning: {w}");
            }
        }
        for p in &self.problems {
            let _ = writeln!(out, "FAIL store: {p}");
        }
        let failed = self.versions.iter().filter(|v| !v.problems.is_empty()).count() + self.problems.len();
        if failed == 0 {
            let _ = writeln!(
                out,
                "verified {} versions: every signature and media hash checks",
                self.versions.len()
            );
        } else {
            let _ = writeln!(
                out,
                "{failed} problem(s) in {} versions: the store cannot be trusted as is",
                self.versions.len()
            );
        }
        out
    }
}

/// Checks the whole first-parent history of `main`, oldest first.
pub fn verify_store(store: &Store, trust: &HistoryTrust) -> Result<AuditReport> {
    let mut report = AuditReport::default();
    let history = store.history()?;
    if history.is_empty() {
        report
            .problems
            .push("no version on main: nothing to verify".into());
        return Ok(report);
    }
    // Blobs shared between versions are hashed once.
    let mut checked_blobs: HashMap<BlobId, (MediaId, u64)> = HashMap::new();
    let mut previous: Option<u64> = None;
    let mut previous_roots: Vec<RootFile> = Vec::new();
    let mut on_main = BTreeSet::new();
    // What players trust today: a version whose key was revoked since is flagged.
    let newest_keys = match history.last() {
        Some(last) => trust.keys_at(store, last.commit).unwrap_or_default(),
        None => TrustedKeys::default(),
    };
    for info in &history {
        on_main.insert(info.commit);
        let commit = info.commit;
        let mut audit = VersionAudit {
            version: info.version,
            commit: info.commit,
            author: info.author.clone(),
            message: info.message.clone(),
            media_count: 0,
            problems: Vec::new(),
            warnings: Vec::new(),
        };
        let roots = store.roots_at(commit)?;
        if let Some(problem) = roots_problem(&previous_roots, &roots) {
            audit.problems.push(problem);
        }
        previous_roots = roots;
        let trusted = match trust.keys_at(store, commit) {
            Ok(keys) => keys,
            Err(e) => {
                audit.problems.push(format!("its trust root: {e}"));
                TrustedKeys::default()
            }
        };
        let (media_count, problems) =
            check_commit(store, commit, info.version, &trusted, &mut checked_blobs)?;
        if problems.is_empty() {
            let refused = roots_now_refuse(store, commit, &newest_keys)?;
            if !refused.is_empty() {
                audit.warnings.push(refused);
            }
        }
        audit.media_count = media_count;
        audit.problems.extend(problems);
        if let Some(prev) = previous {
            if info.version <= prev {
                audit.problems.push(format!(
                    "version {} does not follow version {prev}: history was rewritten",
                    info.version
                ));
            }
        }
        previous = Some(info.version);
        match store.tagged_commit(info.version) {
            Some(c) if c == info.commit => {}
            Some(c) => audit
                .problems
                .push(format!("tag v{} names commit {c}, not this one", info.version)),
            None => audit.warnings.push(format!(
                "tag v{} is missing: the next publish repairs it",
                info.version
            )),
        }
        report.versions.push(audit);
    }
    for tag in store.version_tags()? {
        let Some(n) = tag.strip_prefix('v').and_then(|n| n.parse::<u64>().ok()) else {
            continue;
        };
        if let Some(c) = store.tagged_commit(n) {
            if !on_main.contains(&c) {
                report
                    .problems
                    .push(format!("tag {tag} names commit {c}, which is not on main"));
            }
        }
    }
    Ok(report)
}

/// Roots only ever grow: each commit keeps its predecessor's roots byte for byte.
fn roots_problem(before: &[RootFile], now: &[RootFile]) -> Option<String> {
    if now.len() < before.len() {
        return Some(format!(
            "it carries {} trust root(s), fewer than the {} before it: the root was rolled back",
            now.len(),
            before.len()
        ));
    }
    before.iter().zip(now).find(|(a, b)| a != b).map(|(a, _)| {
        format!(
            "its trust root {} differs from the one before it: the root history was rewritten",
            a.version
        )
    })
}

/// Why players trusting `newest` would now refuse `commit`'s manifest (a key
/// revoked since it was published), or an empty string.
fn roots_now_refuse(store: &Store, commit: CommitId, newest: &TrustedKeys) -> Result<String> {
    if newest.is_empty() {
        return Ok(String::new());
    }
    Ok(match store.verified_manifest(commit, newest) {
        Err(StoreError::Unverified { source, .. }) => {
            format!("players trusting the newest root refuse it now: {source}")
        }
        _ => String::new(),
    })
}

/// The checks of one version that need nothing but its commit: the signature
/// of its manifest, the files it holds, each media file's hash and size, and
/// the version number it declares. Returns the media count and the problems.
/// `checked_blobs` remembers blobs already hashed (shared between versions).
pub fn check_commit(
    store: &Store,
    commit: CommitId,
    version: u64,
    trusted: &TrustedKeys,
    checked_blobs: &mut HashMap<BlobId, (MediaId, u64)>,
) -> Result<(usize, Vec<String>)> {
    let mut media_count = 0;
    let mut problems = Vec::new();
    let verified = match store.verified_manifest(commit, trusted) {
        Ok(v) => Some(v),
        Err(StoreError::Unverified { source, .. }) => {
            problems.push(source.to_string());
            None
        }
        Err(StoreError::MissingFile { .. }) => {
            problems.push(format!("{MANIFEST_FILE} or {SIGNATURE_FILE} is missing"));
            None
        }
        Err(e) => return Err(e.into()),
    };
    for name in store.root_entries(commit)? {
        if ![MANIFEST_FILE, SIGNATURE_FILE, MEDIA_DIR, ROOT_DIR].contains(&name.as_str()) {
            problems.push(format!("unexpected file `{name}` in the version"));
        }
    }
    if let Some(m) = verified {
        media_count = m.media.len();
        let files: BTreeMap<String, BlobId> = store.media_in(commit)?.into_iter().collect();
        for entry in &m.media {
            let Some(oid) = files.get(&entry.id.file_name()) else {
                problems.push(format!("media {} ({}) is missing", entry.id, entry.title));
                continue;
            };
            let (id, size) = match checked_blobs.get(oid) {
                Some(v) => *v,
                None => {
                    let mut h = ContentHasher::new();
                    h.update(&store.read_blob(*oid)?);
                    let v = h.finalize();
                    checked_blobs.insert(*oid, v);
                    v
                }
            };
            if id != entry.id {
                problems.push(format!(
                    "media {} ({}) has content hashing to {id}: altered",
                    entry.id, entry.title
                ));
            } else if size != entry.size {
                problems.push(format!(
                    "media {} is {size} bytes, the manifest says {}",
                    entry.id, entry.size
                ));
            }
        }
        let listed: BTreeSet<String> = m.media.iter().map(|e| e.id.file_name()).collect();
        for name in files.keys().filter(|n| !listed.contains(*n)) {
            problems.push(format!("media file `{name}` is not listed in the manifest"));
        }
        if m.version() != version {
            problems.push("manifest version changed between reads".into());
        }
    }
    Ok((media_count, problems))
}

/// Reads and parses (without verifying) the manifest of version `n`.
pub fn manifest_of(store: &Store, n: u64) -> Result<Manifest> {
    Ok(Manifest::parse(&store.version_file(n, MANIFEST_FILE)?)?)
}

pub fn render_history(store: &Store) -> Result<String> {
    let mut out = String::new();
    let history = store.history()?;
    if history.is_empty() {
        return Ok("no version published yet\n".into());
    }
    for info in history.iter().rev() {
        let media = store.media_in(info.commit)?.len();
        let _ = writeln!(
            out,
            "v{:<4} {}  {:<12} {:>3} media  {}",
            info.version,
            info.time.format("%Y-%m-%d %H:%M:%SZ"),
            info.author,
            media,
            info.message
        );
    }
    Ok(out)
}
