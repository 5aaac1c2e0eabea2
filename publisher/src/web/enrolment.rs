//! The admin's "Register a player" page: a form (id, shop, validity) that
//! makes a one-time enrolment code and shows it once with its expiry, the CA
//! fingerprint and the command to run on the shop's box; the pending
//! enrolments (with Cancel) and the players enrolled by code. The guard lets
//! only admins in (`/admin` in `auth::POLICY`).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Form, Router};
use minijinja::context;
use serde::Deserialize;

use super::admin::text;
use super::{Ctx, WebState};
use crate::db::{Actor, EnrolmentState, Via};
use crate::error::PublisherError;

pub(super) fn routes() -> Router<Arc<WebState>> {
    Router::new()
        .route("/admin/enrolments", get(page).post(create))
        .route("/admin/enrolments/{id}/cancel", post(cancel))
}

/// How many enrolled players (codes used) the page lists, newest first.
const ENROLLED_SHOWN: usize = 50;

async fn page(State(state): State<Arc<WebState>>, ctx: Ctx) -> Response {
    let now = state.now();
    let found = state
        .with_db(move |db| {
            let all = db.enrolments()?;
            let pending: Vec<_> = all
                .iter()
                .filter(|e| e.state(now) == EnrolmentState::Pending)
                .cloned()
                .collect();
            let enrolled: Vec<_> = all
                .into_iter()
                .filter(|e| e.state(now) == EnrolmentState::Used)
                .take(ENROLLED_SHOWN)
                .collect();
            Ok((pending, enrolled))
        })
        .await;
    match found {
        Ok((pending, enrolled)) => state.page(
            &ctx,
            "admin_enrolments.html",
            context! {
                pending,
                enrolled,
                default_minutes => crate::enrol::DEFAULT_VALID_MINUTES,
                max_minutes => crate::enrol::MAX_VALID_MINUTES,
            },
        ),
        Err(e) => state.error_page(&ctx, &e),
    }
}

#[derive(Deserialize)]
struct EnrolForm {
    #[serde(default)]
    id: String,
    #[serde(default)]
    shop: String,
    /// Minutes; empty for the default.
    #[serde(default)]
    valid_minutes: String,
}

/// Answers with the code itself rather than a redirect: it is shown once and
/// never stored (the page is `no-store`).
async fn create(State(state): State<Arc<WebState>>, ctx: Ctx, Form(form): Form<EnrolForm>) -> Response {
    let (admin, now, lang) = (ctx.username().to_string(), state.now(), ctx.lang);
    let (id, shop) = (form.id.trim().to_string(), form.shop.trim().to_string());
    let minutes = match form.valid_minutes.trim() {
        "" => Ok(crate::enrol::DEFAULT_VALID_MINUTES),
        m => m
            .parse::<i64>()
            .ok()
            .filter(|m| (1..=crate::enrol::MAX_VALID_MINUTES).contains(m))
            .ok_or_else(|| {
                PublisherError::BadRequest(text(
                    lang,
                    "admin.enrol.bad_minutes",
                    &[("max", &crate::enrol::MAX_VALID_MINUTES.to_string())],
                ))
            }),
    };
    let data = state.data.clone();
    let result = match minutes {
        Ok(minutes) => {
            state
                .with_db(move |db| {
                    let url = data.settings()?.public_url;
                    let who = Actor {
                        name: &admin,
                        via: Via::Web,
                        at: now,
                    };
                    let asked = crate::enrol::CodeRequest {
                        id: &id,
                        shop: &shop,
                        server_url: &url,
                        player_data: None,
                        valid: chrono::Duration::minutes(minutes),
                    };
                    let issued = crate::enrol::enroll_player(&data, db, asked, who)?;
                    tracing::info!(user = %admin, player = %id, shop = %shop, expires_at = %issued.enrolment.expires_at, "enrolment code made");
                    Ok(issued)
                })
                .await
        }
        Err(e) => Err(e),
    };
    match result {
        Ok(issued) => state.page(&ctx, "admin_enrolment_code.html", context! { issued }),
        Err(e) => state.done(&ctx, Err(e), "/admin/enrolments").await,
    }
}

async fn cancel(State(state): State<Arc<WebState>>, ctx: Ctx, Path(id): Path<String>) -> Response {
    let (admin, now, lang) = (ctx.username().to_string(), state.now(), ctx.lang);
    let result = state
        .with_db(move |db| {
            db.cancel_enrolment(&id, &admin, now)?;
            tracing::info!(user = %admin, player = %id, "enrolment cancelled");
            Ok(text(lang, "admin.enrol.cancelled", &[("id", &id)]))
        })
        .await;
    state.done(&ctx, result, "/admin/enrolments").await
}
