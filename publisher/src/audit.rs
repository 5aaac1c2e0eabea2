//! The auditor's tools: verify every version of the store offline (signature,
//! version order, tags, every media hash and size), list history, diff versions.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;

use git2::Oid;
use skycast_schema::{verify, ContentHasher, Limits, Manifest, MediaId, TrustedKeys};

use crate::error::Result;
use crate::store::{Store, MANIFEST_FILE, MEDIA_DIR, SIGNATURE_FILE};

#[derive(Debug, Clone)]
pub struct VersionAudit {
    pub version: u64,
    pub commit: Oid,
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
pub fn verify_store(store: &Store, trusted: &TrustedKeys) -> Result<AuditReport> {
    let mut report = AuditReport::default();
    let history = store.history()?;
    if history.is_empty() {
        report
            .problems
            .push("no version on main: nothing to verify".into());
        return Ok(report);
    }
    // Blobs shared between versions are hashed once.
    let mut checked_blobs: HashMap<Oid, (MediaId, u64)> = HashMap::new();
    let mut previous: Option<u64> = None;
    let mut on_main = BTreeSet::new();
    for info in &history {
        on_main.insert(info.commit);
        let commit = store.find_commit(info.commit)?;
        let mut audit = VersionAudit {
            version: info.version,
            commit: info.commit,
            author: info.author.clone(),
            message: info.message.clone(),
            media_count: 0,
            problems: Vec::new(),
            warnings: Vec::new(),
        };
        let manifest = store.file_at(&commit, MANIFEST_FILE)?;
        let sig = store.file_at(&commit, SIGNATURE_FILE)?;
        let verified = match (manifest, sig) {
            (Some(m), Some(s)) => match verify(&m, &s, trusted, &Limits::default()) {
                Ok(v) => Some(v),
                Err(e) => {
                    audit.problems.push(e.to_string());
                    None
                }
            },
            _ => {
                audit
                    .problems
                    .push(format!("{MANIFEST_FILE} or {SIGNATURE_FILE} is missing"));
                None
            }
        };
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
        for name in store.root_entries(&commit)? {
            if ![MANIFEST_FILE, SIGNATURE_FILE, MEDIA_DIR].contains(&name.as_str()) {
                audit
                    .problems
                    .push(format!("unexpected file `{name}` in the version"));
            }
        }
        if let Some(m) = verified {
            audit.media_count = m.media.len();
            let files: BTreeMap<String, Oid> = store.media_in(&commit)?.into_iter().collect();
            for entry in &m.media {
                let Some(oid) = files.get(&entry.id.file_name()) else {
                    audit
                        .problems
                        .push(format!("media {} ({}) is missing", entry.id, entry.title));
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
                    audit.problems.push(format!(
                        "media {} ({}) has content hashing to {id}: altered",
                        entry.id, entry.title
                    ));
                } else if size != entry.size {
                    audit.problems.push(format!(
                        "media {} is {size} bytes, the manifest says {}",
                        entry.id, entry.size
                    ));
                }
            }
            let listed: BTreeSet<String> = m.media.iter().map(|e| e.id.file_name()).collect();
            for name in files.keys().filter(|n| !listed.contains(*n)) {
                audit
                    .problems
                    .push(format!("media file `{name}` is not listed in the manifest"));
            }
            if m.version() != info.version {
                audit
                    .problems
                    .push("manifest version changed between reads".into());
            }
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
        let commit = store.find_commit(info.commit)?;
        let media = store.media_in(&commit)?.len();
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

fn duration_text(ms: u64) -> String {
    format!("{}:{:02}", ms / 60_000, (ms / 1000) % 60)
}

/// One compact JSON line per item, so a changed rule shows as a removed and an added line.
fn lines<T: serde::Serialize>(items: &[T]) -> Vec<String> {
    items
        .iter()
        .map(|i| serde_json::to_string(i).unwrap_or_default())
        .collect()
}

fn diff_lines(out: &mut String, heading: &str, a: &[String], b: &[String]) {
    let removed: Vec<&String> = a.iter().filter(|l| !b.contains(l)).collect();
    let added: Vec<&String> = b.iter().filter(|l| !a.contains(l)).collect();
    if removed.is_empty() && added.is_empty() {
        return;
    }
    let _ = writeln!(out, "{heading}:");
    for l in removed {
        let _ = writeln!(out, "  - {l}");
    }
    for l in added {
        let _ = writeln!(out, "  + {l}");
    }
}

/// A readable diff: media by title, playlists by their items' titles, and the
/// schedule, ads, interrupts and shops as changed lines.
pub fn render_diff(a: &Manifest, b: &Manifest) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "version {} ({} by {}) -> version {} ({} by {})",
        a.version(),
        a.published_at,
        a.published_by,
        b.version(),
        b.published_at,
        b.published_by
    );
    let title =
        |m: &Manifest, id: &MediaId| m.media_entry(id).map_or_else(|| id.short(), |e| e.title.clone());
    let ids_a: BTreeSet<MediaId> = a.media.iter().map(|e| e.id).collect();
    let ids_b: BTreeSet<MediaId> = b.media.iter().map(|e| e.id).collect();
    let describe = |e: &skycast_schema::MediaEntry| {
        let artist = e
            .artist
            .as_deref()
            .map(|a| format!(" by {a}"))
            .unwrap_or_default();
        format!(
            "\"{}\"{artist} ({}, {}, {} bytes)",
            e.title,
            e.kind.as_str(),
            duration_text(e.duration_ms),
            e.size
        )
    };
    let added: Vec<String> = b
        .media
        .iter()
        .filter(|e| !ids_a.contains(&e.id))
        .map(describe)
        .collect();
    let removed: Vec<String> = a
        .media
        .iter()
        .filter(|e| !ids_b.contains(&e.id))
        .map(describe)
        .collect();
    diff_lines(&mut out, "media", &removed, &added);

    let mut playlist_names: BTreeSet<&String> = a.program.playlists.keys().collect();
    playlist_names.extend(b.program.playlists.keys());
    for name in playlist_names {
        let items = |m: &Manifest| -> Vec<String> {
            m.program
                .playlists
                .get(name)
                .map_or_else(Vec::new, |p| p.items.iter().map(|i| title(m, i)).collect())
        };
        let (ia, ib) = (items(a), items(b));
        let (oa, ob) = (
            a.program.playlists.get(name).map(|p| p.order),
            b.program.playlists.get(name).map(|p| p.order),
        );
        if ia != ib || oa != ob {
            let mut section = String::new();
            match (oa, ob) {
                (None, Some(_)) => {
                    let _ = writeln!(section, "playlist {name} (new, {} items):", ib.len());
                }
                (Some(_), None) => {
                    let _ = writeln!(section, "playlist {name} (removed)");
                }
                _ => {
                    let _ = writeln!(section, "playlist {name}: {} -> {} items", ia.len(), ib.len());
                    if oa != ob {
                        let _ = writeln!(
                            section,
                            "  order {:?} -> {:?}",
                            oa.unwrap_or_default(),
                            ob.unwrap_or_default()
                        );
                    }
                }
            }
            out.push_str(&section);
            for t in ia.iter().filter(|t| !ib.contains(t)) {
                let _ = writeln!(out, "  - {t}");
            }
            for t in ib.iter().filter(|t| !ia.contains(t)) {
                let _ = writeln!(out, "  + {t}");
            }
        }
    }
    diff_lines(
        &mut out,
        "schedule",
        &lines(&a.program.schedule),
        &lines(&b.program.schedule),
    );
    diff_lines(&mut out, "ads", &lines(&a.program.ads), &lines(&b.program.ads));
    diff_lines(
        &mut out,
        "interrupts",
        &lines(&a.program.interrupts),
        &lines(&b.program.interrupts),
    );
    let shops = |m: &Manifest| -> Vec<String> {
        m.program
            .shops
            .iter()
            .map(|(n, s)| format!("{n}: {}", lines(std::slice::from_ref(s))[0]))
            .collect()
    };
    diff_lines(&mut out, "shops", &shops(a), &shops(b));
    if a.timezone != b.timezone {
        let _ = writeln!(out, "timezone: {} -> {}", a.timezone, b.timezone);
    }
    if out.lines().count() == 1 {
        out.push_str("same content\n");
    }
    out
}
