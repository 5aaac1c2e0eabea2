//! The one shared draft: started from the head, edited, validated, turned into a
//! signed version over the version it was based on, then rebased on the new head.

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, Duration, Utc};
use skycast_schema::manifest::check_timezone;
use skycast_schema::{Limits, Manifest, ManifestError, MediaEntry, MediaId, Program};

use super::{
    check_message, read_bounded, verified_manifest, version_text, Workspace, DEFAULT_TIMEZONE,
    DEFAULT_VALID_DAYS,
};
use crate::db::SavedDraft;
use crate::error::{PublisherError, Result};
use crate::publish::{check_author, commit_with, unsigned_manifest, Published, Unsigned};
use crate::store::{BlobId, Store};

/// The shared draft: a planning naming media by content id, and the version it
/// was started from.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Draft {
    /// The published version this draft was started from (or last rebased on);
    /// `None` before the first publish. A draft publishes only over that version.
    pub base_version: Option<u64>,
    pub timezone: String,
    pub valid_days: u32,
    pub program: Program<MediaId>,
}

impl Draft {
    /// The draft made when nothing is saved and nothing is published.
    pub fn empty() -> Draft {
        Draft {
            base_version: None,
            timezone: DEFAULT_TIMEZONE.to_string(),
            valid_days: DEFAULT_VALID_DAYS,
            program: Program::default(),
        }
    }

    /// The draft whose publication would reproduce `manifest`.
    pub fn of_manifest(manifest: &Manifest) -> Draft {
        let seconds = (manifest.expires_at.0 - manifest.published_at.0)
            .num_seconds()
            .max(1);
        let days = (seconds + 86_399) / 86_400;
        Draft {
            base_version: Some(manifest.version()),
            timezone: manifest.timezone.clone(),
            valid_days: u32::try_from(days).unwrap_or(u32::MAX).clamp(1, 3660),
            program: manifest.program.clone(),
        }
    }

    /// Same content (ignores `base_version`).
    pub fn same_content(&self, other: &Draft) -> bool {
        self.timezone == other.timezone
            && self.valid_days == other.valid_days
            && self.program == other.program
    }
}

/// A draft's structural error, naming the field like the manifest checks do.
pub(super) fn draft_error(e: ManifestError) -> PublisherError {
    match e {
        ManifestError::Invalid { field, reason } => {
            PublisherError::BadRequest(format!("draft field `{field}` is invalid: {reason}"))
        }
        other => PublisherError::BadRequest(format!("the draft is invalid: {other}")),
    }
}

/// Why a draft may not publish over `head`.
pub(super) fn stale_draft(base: Option<u64>, head: Option<u64>) -> PublisherError {
    PublisherError::Conflict(format!(
        "the draft was started from {} but {} is published now: publishing it would undo that \
         version; discard the draft to start again from the published version",
        version_text(base),
        version_text(head)
    ))
}

/// Removes the interrupts that ended before `now`.
pub(super) fn prune_expired(program: &mut Program<MediaId>, now: DateTime<Utc>) {
    program
        .interrupts
        .retain(|i| i.not_after.is_none_or(|end| end.0 >= now));
}

/// Each media the program references, once, in order of first reference, with
/// the first field naming it.
pub(super) fn referenced_media(program: &Program<MediaId>) -> Vec<(String, MediaId)> {
    let mut seen = BTreeSet::new();
    program
        .media_refs()
        .into_iter()
        .filter(|(_, id)| seen.insert(**id))
        .map(|(field, id)| (field, *id))
        .collect()
}

impl Workspace<'_> {
    /// The saved draft; else one made from the published head (based on it); else
    /// an empty one.
    pub fn draft(&self) -> Result<Draft> {
        match self.saved_draft()? {
            Some(d) => Ok(d),
            None => self.head_draft(),
        }
    }

    pub(super) fn saved_draft(&self) -> Result<Option<Draft>> {
        let Some(SavedDraft { base_version, body }) = self.db.saved_draft()? else {
            return Ok(None);
        };
        let mut draft: Draft = serde_json::from_str(&body).map_err(|e| {
            PublisherError::Conflict(format!(
                "the saved draft cannot be read ({e}): discard it to start again from the published version"
            ))
        })?;
        draft.base_version = base_version;
        Ok(Some(draft))
    }

    pub(super) fn head_draft(&self) -> Result<Draft> {
        Ok(match self.head_manifest()? {
            Some(m) => Draft::of_manifest(&m),
            None => Draft::empty(),
        })
    }

    /// Everything a draft must be before it is saved, requested or published.
    pub(super) fn validate_draft(&self, draft: &Draft) -> Result<()> {
        check_timezone(&draft.timezone).map_err(draft_error)?;
        if !(1..=3660).contains(&draft.valid_days) {
            return Err(PublisherError::BadRequest(format!(
                "draft field `valid_days` is invalid: {} is outside 1..=3660 days",
                draft.valid_days
            )));
        }
        draft.program.validate_structure().map_err(draft_error)?;
        self.import_head()?;
        for (field, id) in referenced_media(&draft.program) {
            if self.find_media(&id)?.is_none() {
                return Err(PublisherError::BadRequest(format!(
                    "draft field `{field}` names media {id}, which is not in the library: upload it first"
                )));
            }
        }
        Ok(())
    }

    pub(super) fn write_draft(&self, draft: &Draft, by: &str, now: DateTime<Utc>) -> Result<()> {
        let body = serde_json::to_string(draft)
            .map_err(|e| PublisherError::Internal(format!("cannot write the draft as JSON: {e}")))?;
        let max = Limits::default().max_manifest_bytes;
        if body.len() > max {
            return Err(PublisherError::BadRequest(format!(
                "the draft is {} bytes, over the {max}-byte limit: remove playlists or rules",
                body.len()
            )));
        }
        let saved = SavedDraft {
            base_version: draft.base_version,
            body,
        };
        Ok(self.db.write_draft(&saved, by, now)?)
    }

    /// Saves the draft after checking its structure and that every media it names
    /// is in the library.
    pub fn save_draft(&self, draft: &Draft, by: &str, now: DateTime<Utc>) -> Result<()> {
        self.validate_draft(draft)?;
        self.write_draft(draft, by, now)
    }

    /// Reads, changes with `f` and saves the draft in one transaction, so two
    /// editors never lose each other's change. Nothing is saved if `f` or the
    /// checks fail.
    pub fn edit_draft(
        &self,
        by: &str,
        now: DateTime<Utc>,
        f: impl FnOnce(&mut Draft) -> Result<()>,
    ) -> Result<Draft> {
        // Before the transaction: importing may read and verify the head.
        self.import_head()?;
        self.db.transaction(|tx| {
            let ws = Workspace::new(self.data, tx);
            let mut draft = ws.draft()?;
            f(&mut draft)?;
            ws.save_draft(&draft, by, now)?;
            Ok(draft)
        })
    }

    /// Drops the saved draft: the draft is the published head again.
    pub fn discard_draft(&self) -> Result<()> {
        Ok(self.db.delete_draft()?)
    }

    /// True when a saved draft's content differs from the published head's.
    pub fn draft_differs_from_head(&self) -> Result<bool> {
        match self.saved_draft()? {
            Some(saved) => Ok(!saved.same_content(&self.head_draft()?)),
            None => Ok(false),
        }
    }

    /// The published head's manifest, checked against the publisher's key.
    pub fn head_manifest(&self) -> Result<Option<Manifest>> {
        let store = self.data.store()?;
        let manifest = match store.head()? {
            Some(commit) => Some(verified_manifest(self.data, &store, commit)?),
            None => None,
        };
        Ok(manifest)
    }

    /// The published head's version, if any.
    pub fn head_version(&self) -> Result<Option<u64>> {
        Ok(self.data.store()?.head_version()?.map(|(v, _)| v))
    }

    /// The manifest entries for every media `program` references, from the library.
    pub(super) fn entries_for(&self, program: &Program<MediaId>) -> Result<Vec<MediaEntry>> {
        self.import_head()?;
        referenced_media(program)
            .into_iter()
            .map(|(field, id)| match self.find_media(&id)? {
                Some(m) => Ok(m.entry()),
                None => Err(PublisherError::BadRequest(format!(
                    "draft field `{field}` names media {id}, which is not in the library: upload it first"
                ))),
            })
            .collect()
    }

    /// An unsigned manifest of the draft (version = head + 1, published by `by` at
    /// `now`, expired interrupts dropped), for previews and the summary diff.
    pub fn draft_manifest(&self, draft: &Draft, by: &str, now: DateTime<Utc>) -> Result<Manifest> {
        self.validate_draft(draft)?;
        let mut program = draft.program.clone();
        prune_expired(&mut program, now);
        let media = self.entries_for(&program)?;
        let version = self.head_version()?.map_or(1, |v| v + 1);
        let manifest = unsigned_manifest(
            version,
            draft.timezone.clone(),
            Duration::days(draft.valid_days.into()),
            media,
            program,
            by,
            now,
        )?;
        manifest.validate(&Limits::default()).map_err(draft_error)?;
        Ok(manifest)
    }

    /// Each entry with the blob of its file in the store: the store's when it has
    /// one, else the uploaded file's, which must still hash to the entry's id.
    pub(super) fn blobs_for(
        &self,
        store: &Store,
        entries: Vec<MediaEntry>,
    ) -> Result<Vec<(MediaEntry, BlobId)>> {
        let index: HashMap<MediaId, BlobId> = if entries.is_empty() {
            HashMap::new()
        } else {
            store.media_index()?
        };
        let mut out = Vec::with_capacity(entries.len());
        for entry in entries {
            if let Some(oid) = index.get(&entry.id) {
                out.push((entry, *oid));
                continue;
            }
            let path = self.uploads_dir().join(entry.id.file_name());
            let Some(bytes) = read_bounded(&path, Limits::default().max_media_bytes + 1)? else {
                return Err(PublisherError::Conflict(format!(
                    "the file of `{}` ({}) is neither in the store nor in the uploads folder: upload it \
                     again; nothing was published",
                    entry.title,
                    entry.id.short()
                )));
            };
            if MediaId::of(&bytes) != entry.id {
                tracing::error!(path = %path.display(), "an uploaded file no longer matches its content id");
                return Err(PublisherError::Conflict(format!(
                    "the uploaded file of `{}` ({}) changed on disk after its upload (its blake3 no longer \
                     matches): upload it again; nothing was published",
                    entry.title,
                    entry.id.short()
                )));
            }
            out.push((entry, store.write_blob(&bytes)?));
        }
        Ok(out)
    }

    /// Publishes `draft` as one signed commit authored by `author`. The message is
    /// required (at most 500 characters). Interrupts that ended before `now` are
    /// dropped; only media the program references are listed, labelled from the
    /// library. The draft must be based on the published head (`Conflict`
    /// otherwise). Afterwards the saved draft is rebased on the new version.
    pub fn publish(
        &self,
        draft: &Draft,
        author: &str,
        message: &str,
        now: DateTime<Utc>,
    ) -> Result<Published> {
        let message = check_message(message)?;
        self.publish_draft(draft, author, message, now)
    }

    pub(super) fn publish_draft(
        &self,
        draft: &Draft,
        author: &str,
        message: &str,
        now: DateTime<Utc>,
    ) -> Result<Published> {
        check_author(author)?;
        self.validate_draft(draft)?;
        let mut program = draft.program.clone();
        prune_expired(&mut program, now);
        let store = self.data.store()?;
        let media = self.blobs_for(&store, self.entries_for(&program)?)?;
        let unsigned = Unsigned {
            timezone: draft.timezone.clone(),
            validity: Duration::days(draft.valid_days.into()),
            media,
            program,
        };
        let base = draft.base_version;
        let published = commit_with(self.data, &store, author, message, now, |head| {
            let head = head.map(|(v, _)| v);
            if head != base {
                return Err(stale_draft(base, head));
            }
            Ok(unsigned)
        })?;
        self.rebase_saved_draft(base, published.version, author, now, |_| {})?;
        Ok(published)
    }

    /// After a publish over `old_head`: the saved draft loses its ended interrupts
    /// and gets `change`; if it was based on `old_head` it is based on `new_version`
    /// from now on. A draft based on another version stays stale.
    pub(super) fn rebase_saved_draft(
        &self,
        old_head: Option<u64>,
        new_version: u64,
        by: &str,
        now: DateTime<Utc>,
        change: impl FnOnce(&mut Draft),
    ) -> Result<()> {
        // Read and written in one transaction, so an edit made meanwhile is kept.
        self.db.transaction(|tx| {
            let ws = Workspace::new(self.data, tx);
            let Some(mut draft) = ws.saved_draft()? else {
                return Ok(());
            };
            if draft.base_version == old_head {
                draft.base_version = Some(new_version);
            }
            prune_expired(&mut draft.program, now);
            change(&mut draft);
            // Not validated again: the publish happened, and a draft that no longer
            // holds together says why when it is next saved or published.
            ws.write_draft(&draft, by, now)
        })
    }
}
