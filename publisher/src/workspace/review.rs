//! Review: the one policy deciding whether a submission publishes or waits for
//! an admin, the requests that wait, and their approval or rejection.

use chrono::{DateTime, Utc};

use super::draft::stale_draft;
use super::{check_message, version_text, Draft, Workspace};
use crate::db::PublishRequest;
use crate::db::Role;
use crate::error::{PublisherError, Result};
use crate::publish::{check_author, Published};

impl Workspace<'_> {
    /// Whether publishing from the draft needs an admin's approval.
    pub fn review_required(&self) -> Result<bool> {
        Ok(self.db.review_required()?)
    }

    pub fn set_review_required(&self, on: bool) -> Result<()> {
        Ok(self.db.set_review_required(on)?)
    }

    /// Records a snapshot of `draft` waiting for an admin; returns its id.
    pub fn request_publish(
        &self,
        draft: &Draft,
        author: &str,
        message: &str,
        now: DateTime<Utc>,
    ) -> Result<i64> {
        check_author(author)?;
        let message = check_message(message)?;
        self.validate_draft(draft)?;
        let head = self.head_version()?;
        if draft.base_version != head {
            return Err(stale_draft(draft.base_version, head));
        }
        let body = serde_json::to_string(draft)
            .map_err(|e| PublisherError::Internal(format!("cannot write the draft as JSON: {e}")))?;
        Ok(self.db.add_request(author, message, &body, now)?)
    }

    /// Every request, newest first.
    pub fn requests(&self) -> Result<Vec<PublishRequest>> {
        Ok(self.db.requests()?)
    }

    pub fn request(&self, id: i64) -> Result<PublishRequest> {
        Ok(self.db.request(id)?)
    }

    /// The draft a request would publish.
    pub fn request_draft(&self, id: i64) -> Result<Draft> {
        let body = self.db.request_body(id)?;
        serde_json::from_str(&body).map_err(|e| {
            PublisherError::Conflict(format!(
                "publish request {id} cannot be read ({e}): reject it and request again"
            ))
        })
    }

    pub(super) fn check_pending(&self, request: &PublishRequest) -> Result<()> {
        if request.status == "pending" {
            return Ok(());
        }
        let by = request
            .decided_by
            .as_deref()
            .map(|who| format!(" by {who}"))
            .unwrap_or_default();
        Err(PublisherError::Conflict(format!(
            "publish request {} was already {}{by}: nothing to do",
            request.id, request.status
        )))
    }

    /// Publishes a pending request's snapshot, authored by the requester, with the
    /// message "<message> (approved by <admin>)". `Conflict` when the request is not
    /// pending, or was made against a version that is no longer the head.
    pub fn approve(&self, id: i64, admin: &str, now: DateTime<Utc>) -> Result<Published> {
        check_author(admin)?;
        let request = self.request(id)?;
        self.check_pending(&request)?;
        let draft = self.request_draft(id)?;
        let head = self.head_version()?;
        if draft.base_version != head {
            return Err(PublisherError::Conflict(format!(
                "publish request {id} was made against {} but {} is published now: approving it would \
                 undo that version; reject it and ask {} to request again from the current draft",
                version_text(draft.base_version),
                version_text(head),
                request.author
            )));
        }
        let message = format!("{} (approved by {admin})", request.message);
        let published = self.publish_draft(&draft, &request.author, &message, now)?;
        // The version is out: record it even if another admin rejected meanwhile.
        self.db.mark_request_approved(id, admin, now, published.version)?;
        Ok(published)
    }

    /// Refuses a pending request; nothing is published.
    pub fn reject(&self, id: i64, admin: &str, now: DateTime<Utc>) -> Result<()> {
        let request = self.request(id)?;
        self.check_pending(&request)?;
        if !self.db.mark_request_rejected(id, admin, now)? {
            return self.check_pending(&self.request(id)?);
        }
        Ok(())
    }
}

/// How a submission reaches the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Submission {
    /// Signed and committed at once.
    Publish,
    /// Held as a request until an admin approves it.
    Request,
}

impl Submission {
    /// The one review policy: when review is required, marketing and sales wait
    /// for an admin; admins never do (and urgent messages never ask).
    pub fn decide(role: Option<Role>, review_required: bool) -> Submission {
        match role {
            Some(Role::Marketing | Role::Commercial) if review_required => Submission::Request,
            _ => Submission::Publish,
        }
    }
}

/// What [`Workspace::submit`] did.
#[derive(Debug)]
pub enum Submitted {
    Published(Published),
    /// The id of the publish request waiting for review.
    Requested(i64),
}

impl Workspace<'_> {
    /// How a person with `role` submits now, under the admin's review setting.
    pub fn submission(&self, role: Option<Role>) -> Result<Submission> {
        Ok(Submission::decide(role, self.review_required()?))
    }

    /// Publishes `draft` as `author`, or files it for review, as the policy says.
    pub fn submit(
        &self,
        draft: &Draft,
        role: Option<Role>,
        author: &str,
        message: &str,
        now: DateTime<Utc>,
    ) -> Result<Submitted> {
        Ok(match self.submission(role)? {
            Submission::Publish => Submitted::Published(self.publish(draft, author, message, now)?),
            Submission::Request => Submitted::Requested(self.request_publish(draft, author, message, now)?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_marketing_and_sales_wait_for_review_and_only_when_it_is_required() {
        use Submission::*;
        let table = [
            (Some(Role::Marketing), true, Request),
            (Some(Role::Commercial), true, Request),
            (Some(Role::Admin), true, Publish),
            (Some(Role::Marketing), false, Publish),
            (Some(Role::Commercial), false, Publish),
            (Some(Role::Admin), false, Publish),
        ];
        for (role, required, expected) in table {
            assert_eq!(
                Submission::decide(role, required),
                expected,
                "{role:?}, review required: {required}"
            );
        }
    }
}
