//! The Publish page: what the shared draft would change, then one signed commit
//! with the person as author and their message, or a request an admin reviews
//! (marketing and sales, when review is required). Also discards the draft.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use axum::{Form, Router};
use minijinja::context;
use serde::{Deserialize, Serialize};
use skycast_schema::{Manifest, Program};

use super::ads::refused;
use super::{see_other, Ctx, WebState};
use crate::describe::DiffSection;
use crate::error::{PublisherError, Result};
use crate::workspace::{Draft, Submission, Submitted, Workspace, MAX_MESSAGE_CHARS};

/// Requests of the signed-in user listed on the page.
const MY_REQUESTS: usize = 10;

pub(super) fn routes() -> Router<Arc<WebState>> {
    Router::new()
        .route("/publish", get(home).post(publish))
        .route("/publish/discard", get(back).post(discard))
}

async fn back() -> Response {
    see_other("/publish")
}

/// Names the draft's content, so a publish goes out only if the draft is still
/// the one whose summary the person read.
fn fingerprint(draft: &Draft) -> String {
    let body = serde_json::to_vec(draft).unwrap_or_default();
    blake3::hash(&body).to_hex().to_string()
}

#[derive(Debug, Clone, Serialize)]
struct RequestView {
    id: i64,
    at: String,
    message: String,
    status: String,
}

#[derive(Debug, Clone, Serialize)]
struct Behind {
    base: String,
    head: String,
}

/// Everything the page shows, read in one go.
struct PageData {
    differs: bool,
    first_version: bool,
    behind: Option<Behind>,
    sections: Vec<DiffSection>,
    /// The draft does not hold together (the flash says why).
    problem: bool,
    review_required: bool,
    requests: Vec<RequestView>,
    fingerprint: String,
}

/// The manifest before anything is published: the draft's, emptied.
fn empty_like(m: &Manifest) -> Manifest {
    Manifest {
        media: Vec::new(),
        program: Program::default(),
        ..m.clone()
    }
}

/// The summary of what publishing `draft` (as `user`) changes compared with
/// `head`, in words; everything is added when nothing is published yet.
pub(super) fn summary(
    ws: &Workspace,
    draft: &Draft,
    head: Option<&Manifest>,
    user: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Vec<DiffSection>> {
    let next = ws.draft_manifest(draft, user, now)?;
    Ok(match head {
        Some(head) => crate::describe::diff(head, &next),
        None => crate::describe::diff(&empty_like(&next), &next),
    })
}

async fn page_data(state: &Arc<WebState>, ctx: &Ctx) -> Result<(PageData, Option<PublisherError>)> {
    let user = ctx.username().to_string();
    let role = ctx.user.as_ref().map(|u| u.role);
    let now = state.now();
    state
        .with_workspace(move |ws| {
            let draft = ws.draft()?;
            let head = ws.head_manifest()?;
            let head_version = head.as_ref().map(Manifest::version);
            let differs = ws.draft_differs_from_head()?;
            let behind = match (draft.base_version, head_version) {
                (base, Some(h)) if differs && base != Some(h) => Some(Behind {
                    base: base.map_or_else(|| "-".into(), |b| b.to_string()),
                    head: h.to_string(),
                }),
                _ => None,
            };
            // A draft that does not hold together says why instead of a summary.
            let (sections, problem) = if differs {
                match summary(ws, &draft, head.as_ref(), &user, now) {
                    Ok(s) => (s, None),
                    Err(e) if !e.status().is_server_error() => (Vec::new(), Some(e)),
                    Err(e) => return Err(e),
                }
            } else {
                (Vec::new(), None)
            };
            let requests = ws
                .requests()?
                .into_iter()
                .filter(|r| r.author == user)
                .take(MY_REQUESTS)
                .map(|r| RequestView {
                    id: r.id,
                    at: r.created_at,
                    message: r.message,
                    status: r.status,
                })
                .collect();
            let data = PageData {
                differs,
                first_version: head.is_none(),
                behind,
                sections,
                problem: problem.is_some(),
                review_required: ws.submission(role)? == Submission::Request,
                requests,
                fingerprint: fingerprint(&draft),
            };
            Ok((data, problem))
        })
        .await
}

fn render(state: &WebState, ctx: &Ctx, status: StatusCode, data: &PageData, message: &str) -> Response {
    state.page_with_status(
        status,
        ctx,
        "publish_home.html",
        context! {
            differs => data.differs,
            first_version => data.first_version,
            behind => data.behind,
            sections => data.sections,
            problem => data.problem,
            review_needed => data.review_required,
            requests => data.requests,
            fingerprint => data.fingerprint,
            message => message,
            max_message => MAX_MESSAGE_CHARS,
        },
    )
}

async fn home(State(state): State<Arc<WebState>>, ctx: Ctx) -> Response {
    match page_data(&state, &ctx).await {
        Ok((data, None)) => render(&state, &ctx, StatusCode::OK, &data, ""),
        Ok((data, Some(problem))) => refused(&state, &ctx, &problem, |ctx, _| {
            render(&state, ctx, StatusCode::OK, &data, "")
        }),
        Err(e) => state.error_page(&ctx, &e),
    }
}

#[derive(Deserialize)]
struct PublishForm {
    #[serde(default)]
    message: String,
    /// The fingerprint of the draft whose summary was shown.
    #[serde(default)]
    draft: String,
}

enum Outcome {
    Published(u64),
    Requested(i64),
}

fn check_message(message: &str) -> Result<()> {
    if message.trim().is_empty() {
        return Err(PublisherError::BadRequest(
            "message: empty: say in a few words what changes and why".into(),
        ));
    }
    let chars = message.chars().count();
    if chars > MAX_MESSAGE_CHARS {
        return Err(PublisherError::BadRequest(format!(
            "message: {chars} characters is over the {MAX_MESSAGE_CHARS}-character limit: shorten it"
        )));
    }
    Ok(())
}

async fn publish(State(state): State<Arc<WebState>>, ctx: Ctx, Form(form): Form<PublishForm>) -> Response {
    let user = ctx.username().to_string();
    let role = ctx.user.as_ref().map(|u| u.role);
    let now = state.now();
    let message = form.message.trim().to_string();
    let shown = form.draft.clone();
    let result = state
        .with_workspace(move |ws| {
            check_message(&message)?;
            let draft = ws.draft()?;
            if !ws.draft_differs_from_head()? {
                return Err(PublisherError::BadRequest(
                    "nothing to publish: the draft is the same as the published version".into(),
                ));
            }
            if !shown.is_empty() && shown != fingerprint(&draft) {
                return Err(PublisherError::Conflict(
                    "the draft changed since this page was opened (someone else edited it): read the summary \
                     again, then publish"
                        .into(),
                ));
            }
            Ok(match ws.submit(&draft, role, &user, &message, now)? {
                Submitted::Published(published) => Outcome::Published(published.version),
                Submitted::Requested(id) => Outcome::Requested(id),
            })
        })
        .await;
    match result {
        Ok(Outcome::Published(n)) => {
            tracing::info!(user = %ctx.username(), version = n, "draft published");
            let text = skycast_web::text(ctx.lang, "publish.flash_published").replace("{n}", &n.to_string());
            state.done(&ctx, Ok(text), "/publish").await
        }
        Ok(Outcome::Requested(id)) => {
            tracing::info!(user = %ctx.username(), request = id, "draft sent for review");
            let text = skycast_web::text(ctx.lang, "publish.flash_requested");
            state.done(&ctx, Ok(text), "/publish").await
        }
        Err(e) => match page_data(&state, &ctx).await {
            Ok((data, _)) => refused(&state, &ctx, &e, |ctx, status| {
                render(&state, ctx, status, &data, &form.message)
            }),
            Err(page_error) => state.error_page(&ctx, &page_error),
        },
    }
}

async fn discard(State(state): State<Arc<WebState>>, ctx: Ctx) -> Response {
    let result = state.with_workspace(|ws| ws.discard_draft()).await;
    if result.is_ok() {
        tracing::info!(user = %ctx.username(), "draft discarded");
    }
    let result = result.map(|()| skycast_web::text(ctx.lang, "publish.flash_discarded"));
    state.done(&ctx, result, "/publish").await
}
