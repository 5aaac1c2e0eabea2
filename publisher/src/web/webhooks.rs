//! The admin's webhooks page: list (never the secrets), add (the secret shown
//! once, in the message after adding), remove. The same as `skycast-publisher
//! webhook add|list|remove`, through `notify`.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Form, Router};
use minijinja::context;

use super::form::{bad, shown, Fields};
use super::{Ctx, WebState};
use crate::notify;

pub(super) fn routes() -> Router<Arc<WebState>> {
    Router::new()
        .route("/admin/webhooks", get(page).post(add))
        .route("/admin/webhooks/{id}/remove", post(remove))
}

async fn page(State(state): State<Arc<WebState>>, ctx: Ctx) -> Response {
    match state.with_db(|db| Ok(db.webhooks()?)).await {
        Ok(hooks) => state.page(&ctx, "admin_webhooks.html", context! { hooks }),
        Err(e) => state.error_page(&ctx, &e),
    }
}

async fn add(
    State(state): State<Arc<WebState>>,
    ctx: Ctx,
    Form(pairs): Form<Vec<(String, String)>>,
) -> Response {
    let url = Fields::new(pairs).get("url");
    let (lang, by, now) = (ctx.lang, ctx.username().to_string(), state.now());
    let result = if url.is_empty() {
        Err(bad("give the URL of the receiver (`url`), starting with https"))
    } else {
        state
            .with_db(move |db| {
                let (hook, secret) = notify::add_webhook(db, &url, &by, now)?;
                Ok(skycast_web::text(lang, "webhooks.added")
                    .replace("{id}", &hook.id.to_string())
                    .replace("{secret}", secret.expose()))
            })
            .await
    };
    state.done(&ctx, result, "/admin/webhooks").await
}

async fn remove(State(state): State<Arc<WebState>>, ctx: Ctx, Path(id): Path<String>) -> Response {
    let (lang, by) = (ctx.lang, ctx.username().to_string());
    let result = match id.parse::<i64>() {
        Err(_) => Err(bad(format!("webhook `{}`: ids are numbers", shown(&id)))),
        Ok(id) => {
            state
                .with_db(move |db| {
                    let hook = notify::remove_webhook(db, id, &by)?;
                    Ok(skycast_web::text(lang, "webhooks.removed")
                        .replace("{id}", &hook.id.to_string())
                        .replace("{url}", &hook.url))
                })
                .await
        }
    };
    state.done(&ctx, result, "/admin/webhooks").await
}
