//! Publishing over the head at once: play-now and urgent interrupts (never the
//! half-done draft) and rollback to an old version's content.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use skycast_schema::{Interrupt, MediaId};

use super::draft::{prune_expired, referenced_media};
use super::{check_message, verified_manifest, Workspace};
use crate::error::{PublisherError, Result};
use crate::publish::{check_author, commit_with, Published, Unsigned};
use crate::store::BlobId;

impl Workspace<'_> {
    /// Publishes the head plus `interrupt` at once (never waits for review) and adds
    /// it to the saved draft, so a later draft publish keeps it. Unpublished draft
    /// changes are not published. Refuses media outside the library, no shops, and
    /// shop selectors other than `all`, `tag:X` of a shop, or a shop of the head.
    pub fn publish_interrupt(
        &self,
        interrupt: Interrupt<MediaId>,
        author: &str,
        message: &str,
        now: DateTime<Utc>,
    ) -> Result<Published> {
        check_author(author)?;
        let message = check_message(message)?;
        let media = self.media(&interrupt.media).map_err(|e| match e {
            PublisherError::NotFound(_) => PublisherError::BadRequest(format!(
                "the interrupt's media {} is not in the library: upload it first",
                interrupt.media
            )),
            other => other,
        })?;
        if interrupt.shops.is_empty() {
            return Err(PublisherError::BadRequest(
                "the interrupt names no shop: choose `all`, a `tag:NAME` or a shop".into(),
            ));
        }
        if let Some(end) = interrupt.not_after {
            if end.0 < now {
                return Err(PublisherError::BadRequest(format!(
                    "the interrupt ends at {end}, which is already past: choose a later end"
                )));
            }
        }
        let store = self.data.store()?;
        let new_blob = self.blobs_for(&store, vec![media.entry()])?;
        let mut old_head = None;
        let published = commit_with(self.data, &store, author, message, now, |head| {
            let (version, commit) = head.ok_or(PublisherError::NothingPublished)?;
            old_head = Some(version);
            let manifest = verified_manifest(self.data, &store, commit)?;
            let mut program = manifest.program.clone();
            prune_expired(&mut program, now);
            for selector in &interrupt.shops {
                if !program.knows_target(selector) {
                    return Err(PublisherError::BadRequest(format!(
                        "`{selector}` is neither `all`, a `tag:NAME` of a shop, nor a shop of version \
                         {version}: choose among the published shops"
                    )));
                }
            }
            if program.interrupts.iter().any(|i| i.id == interrupt.id) {
                return Err(PublisherError::Conflict(format!(
                    "an interrupt named `{}` is already published: choose another name",
                    interrupt.id
                )));
            }
            program.interrupts.push(interrupt.clone());
            program
                .validate_structure()
                .map_err(|e| PublisherError::BadRequest(format!("the interrupt cannot be added: {e}")))?;
            let blobs: HashMap<MediaId, BlobId> = store.media_ids_in(commit)?.into_iter().collect();
            let mut media = Vec::new();
            for (_, id) in referenced_media(&program) {
                let published = manifest
                    .media_entry(&id)
                    .and_then(|e| Some((e.clone(), *blobs.get(&id)?)));
                match published {
                    Some(pair) => media.push(pair),
                    None => match new_blob.iter().find(|(e, _)| e.id == id) {
                        Some(pair) => media.push(pair.clone()),
                        None => {
                            return Err(PublisherError::Internal(format!(
                                "version {version} references media {id} it does not hold"
                            )))
                        }
                    },
                }
            }
            Ok(Unsigned {
                timezone: manifest.timezone.clone(),
                validity: manifest.expires_at.0 - manifest.published_at.0,
                media,
                program,
            })
        })?;
        self.rebase_saved_draft(old_head, published.version, author, now, |draft| {
            draft.program.interrupts.retain(|i| i.id != interrupt.id);
            draft.program.interrupts.push(interrupt);
        })?;
        Ok(published)
    }

    /// Republishes version `target`'s content as a new version, then replaces the
    /// saved draft by it: unpublished draft changes are dropped.
    pub fn rollback(&self, target: u64, author: &str, now: DateTime<Utc>) -> Result<Published> {
        let published = crate::publish::rollback(self.data, target, author, now)?;
        self.discard_draft()?;
        Ok(published)
    }
}
