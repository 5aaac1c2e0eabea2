//! The admin's urgent message: pick (or upload) a media, choose shops, confirm,
//! and an urgent interrupt is published at once, cutting the music. Urgent
//! messages never wait for review.

use std::sync::Arc;

use axum::extract::{Multipart, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use axum::{Form, Router};
use chrono::Duration;
use minijinja::context;
use serde::{Deserialize, Serialize};
use skycast_schema::{AfterMode, Interrupt, InterruptLevel, Manifest, MediaKind, ShopTarget, StartMode};

use super::ads::{
    check_media, check_note, check_shops, commit_message, interrupt_id, recent_interrupts, refused,
    shop_choices, shops_text, INTERRUPT_WINDOW_MINUTES,
};
use super::form::Fields;
use super::media::MediaChoice;
use super::{upload, Ctx, WebState};
use crate::error::{PublisherError, Result};
use crate::workspace::LibraryMedia;

pub(super) fn routes() -> Router<Arc<WebState>> {
    Router::new()
        .route("/admin/urgent", get(home).post(send))
        .route("/admin/urgent/upload", upload::upload_route(upload_message))
}

#[derive(Debug, Clone, Serialize)]
struct UrgentForm {
    media: String,
    shops: Vec<String>,
    message: String,
}

impl UrgentForm {
    fn with_media(media: String) -> UrgentForm {
        UrgentForm {
            media,
            shops: vec![ShopTarget::All.to_string()],
            message: String::new(),
        }
    }
}

struct PageData {
    library: Vec<LibraryMedia>,
    head: Option<Manifest>,
}

async fn page_data(state: &Arc<WebState>) -> Result<PageData> {
    state
        .with_workspace(|ws| {
            Ok(PageData {
                library: ws.library(None)?,
                head: ws.head_manifest()?,
            })
        })
        .await
}

fn render(state: &WebState, ctx: &Ctx, status: StatusCode, data: &PageData, form: &UrgentForm) -> Response {
    // Spoken messages first: they are what an urgent message usually is.
    let mut media: Vec<&LibraryMedia> = data.library.iter().collect();
    media.sort_by_key(|m| match m.kind {
        MediaKind::Urgent => 0,
        MediaKind::Announcement => 1,
        MediaKind::Ad => 2,
        MediaKind::Music => 3,
    });
    let media_choices: Vec<MediaChoice> = media.into_iter().map(MediaChoice::from).collect();
    state.page_with_status(
        status,
        ctx,
        "urgent_home.html",
        context! {
            media_choices => media_choices,
            shop_choices => shop_choices(data.head.as_ref().map(|m| &m.program)),
            form => form,
            recent => recent_interrupts(data.head.as_ref(), &[InterruptLevel::Urgent], state.now(), ctx.lang),
        },
    )
}

#[derive(Deserialize)]
struct HomeQuery {
    /// The media to preselect (after an upload).
    #[serde(default)]
    media: String,
}

async fn home(State(state): State<Arc<WebState>>, ctx: Ctx, Query(q): Query<HomeQuery>) -> Response {
    match page_data(&state).await {
        Ok(data) => render(
            &state,
            &ctx,
            StatusCode::OK,
            &data,
            &UrgentForm::with_media(q.media),
        ),
        Err(e) => state.error_page(&ctx, &e),
    }
}

async fn send(
    State(state): State<Arc<WebState>>,
    ctx: Ctx,
    Form(pairs): Form<Vec<(String, String)>>,
) -> Response {
    let fields = Fields::new(pairs);
    let form = UrgentForm {
        media: fields.get("media"),
        shops: fields.distinct("shops"),
        message: fields.get("message"),
    };
    let confirmed = fields.get("confirm") == "yes";
    let user = ctx.username().to_string();
    let now = state.now();
    let input = form.clone();
    let result = state
        .with_workspace(move |ws| {
            let media = check_media(ws, "media", &input.media, &[])?;
            let head = ws.head_manifest()?.ok_or_else(|| {
                PublisherError::BadRequest(
                    "nothing is published yet: a planning must be published before a message can play".into(),
                )
            })?;
            let shops = check_shops(
                &input.shops,
                &head.program,
                &format!("version {}", head.version()),
            )?;
            let note = check_note(&input.message)?;
            if !confirmed {
                return Err(PublisherError::BadRequest(
                    "confirm: tick \"I confirm this message interrupts the music in the chosen shops now\": \
                     nothing was sent"
                        .into(),
                ));
            }
            let interrupt = Interrupt {
                id: interrupt_id("urgent", now),
                media: media.id,
                level: InterruptLevel::Urgent,
                shops: shops.clone(),
                not_before: Some(now.into()),
                not_after: Some((now + Duration::minutes(INTERRUPT_WINDOW_MINUTES)).into()),
                start: Some(StartMode::Cut),
                after: Some(AfterMode::Resume),
            };
            let message = commit_message(
                format!("Urgent: play {} now in {}", media.title, shops_text(&shops)),
                &note,
            );
            // Never through review: an urgent message that waits is no longer urgent.
            Ok(ws.publish_interrupt(interrupt, &user, &message, now)?.version)
        })
        .await;
    match result {
        Ok(version) => {
            tracing::warn!(user = %ctx.username(), version, "urgent message published");
            let text = skycast_web::text(ctx.lang, "urgent.flash_sent").replace("{n}", &version.to_string());
            state.done(&ctx, Ok(text), "/admin/urgent").await
        }
        Err(e) => {
            let data = match page_data(&state).await {
                Ok(d) => d,
                Err(e) => return state.error_page(&ctx, &e),
            };
            refused(&state, &ctx, &e, |ctx, status| {
                render(&state, ctx, status, &data, &form)
            })
        }
    }
}

async fn upload_message(State(state): State<Arc<WebState>>, ctx: Ctx, multipart: Multipart) -> Response {
    let outcome = upload::receive_uploads(&state, &ctx, multipart, MediaKind::Announcement).await;
    let to = match &outcome {
        Ok(o) => match o.stored.first() {
            Some(m) => format!("/admin/urgent?media={}", m.id),
            None => "/admin/urgent".to_string(),
        },
        Err(_) => "/admin/urgent".to_string(),
    };
    let result = outcome.and_then(|o| o.summary(ctx.lang));
    state.done(&ctx, result, &to).await
}
