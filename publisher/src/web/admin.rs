//! The admin's pages: the landing page (pending reviews, latest versions, players
//! with their recorded changes, the "review required" setting), user management,
//! the review of publish requests, rollback to an old version, and disabling,
//! enabling, re-keying and removing players. The guard lets only admins in.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Form, Router};
use chrono::{DateTime, Utc};
use minijinja::context;
use serde::{Deserialize, Serialize};
use skycast_schema::Manifest;
use skycast_web::Lang;

use super::history::{local_time, version_number};
use super::publishing;
use super::{Ctx, WebState};
use crate::data_dir::DataDir;
use crate::db::{Actor, Db, Role, User, Via};
use crate::describe::DiffSection;
use crate::error::{PublisherError, Result};
use crate::passwords::hash_password;
use crate::workspace::{PublishRequest, Workspace};

pub(super) fn routes() -> Router<Arc<WebState>> {
    Router::new()
        .route("/admin", get(home))
        .route("/admin/settings", post(settings))
        .route("/admin/users", get(users_page).post(create_user))
        .route("/admin/users/{id}", get(user_page).post(update_user))
        .route("/admin/users/{id}/delete", post(delete_user))
        .route("/admin/users/{id}/unlock", post(unlock_user))
        .route("/admin/reviews", get(reviews_page))
        .route("/admin/reviews/{id}/approve", post(approve))
        .route("/admin/reviews/{id}/reject", post(reject))
        .route("/admin/rollback/{n}", post(rollback))
        .route("/admin/players/{id}/disable", post(disable_player))
        .route("/admin/players/{id}/enable", post(enable_player))
        .route("/admin/players/{id}/rotate-token", post(rotate_player_token))
        .route("/admin/players/{id}/remove", post(remove_player))
}

/// Runs `f` with the workspace (draft, requests, store) on a blocking thread.
async fn with_ws<T: Send + 'static>(
    state: &Arc<WebState>,
    f: impl FnOnce(&Workspace<'_>, &DataDir, &Db) -> Result<T> + Send + 'static,
) -> Result<T> {
    let data = state.data.clone();
    state
        .with_db(move |db| {
            let ws = Workspace::new(&data, db);
            f(&ws, &data, db)
        })
        .await
}

/// A text of this area with `{name}` placeholders filled in.
pub(super) fn text(lang: Lang, key: &str, args: &[(&str, &str)]) -> String {
    let mut out = skycast_web::text(lang, key);
    for (name, value) in args {
        out = out.replace(&format!("{{{name}}}"), value);
    }
    out
}

/// A numeric id from the URL: a clear message rather than axum's plain-text rejection.
fn id_of(what: &str, text: &str) -> Result<i64> {
    text.parse::<i64>().map_err(|_| {
        PublisherError::NotFound(format!(
            "{what} `{}`: ids are numbers",
            text.chars().take(40).collect::<String>()
        ))
    })
}

async fn home(State(state): State<Arc<WebState>>, ctx: Ctx) -> Response {
    let (st, now) = (state.clone(), state.now());
    let found = with_ws(&state, move |ws, data, db| {
        let pending = ws.requests()?.iter().filter(|r| r.status == "pending").count();
        let versions = st.history.recent_versions(&data.store()?, Some(5))?;
        let players = (db.players()?, db.player_events(PLAYER_EVENTS_SHOWN)?);
        let enrolments = db.enrolments()?;
        let pending_enrolments = enrolments
            .iter()
            .filter(|e| e.state(now) == crate::db::EnrolmentState::Pending)
            .count();
        Ok((
            pending,
            versions,
            players,
            ws.review_required()?,
            pending_enrolments,
        ))
    })
    .await;
    match found {
        Ok((pending, versions, (players, player_events), review_required, pending_enrolments)) => state.page(
            &ctx,
            "admin_home.html",
            context! { pending, versions, players, player_events, review_required, pending_enrolments },
        ),
        Err(e) => state.error_page(&ctx, &e),
    }
}

#[derive(Deserialize)]
struct SettingsForm {
    /// A checkbox: `on` when ticked, absent otherwise.
    #[serde(default)]
    review_required: Option<String>,
}

async fn settings(State(state): State<Arc<WebState>>, ctx: Ctx, Form(form): Form<SettingsForm>) -> Response {
    let on = form.review_required.as_deref() == Some("on");
    let result = with_ws(&state, move |ws, _, _| ws.set_review_required(on)).await;
    if result.is_ok() {
        tracing::info!(user = %ctx.username(), review_required = on, "setting changed");
    }
    let key = if on {
        "admin.settings.review_on"
    } else {
        "admin.settings.review_off"
    };
    let result = result.map(|()| text(ctx.lang, key, &[]));
    state.done(&ctx, result, "/admin").await
}

// ---- Users ----

fn roles() -> Vec<&'static str> {
    Role::ALL.iter().map(|r| r.as_str()).collect()
}

async fn users_page(State(state): State<Arc<WebState>>, ctx: Ctx) -> Response {
    match state.with_db(|db| Ok(db.users()?)).await {
        Ok(users) => state.page(&ctx, "admin_users.html", context! { users, roles => roles() }),
        Err(e) => state.error_page(&ctx, &e),
    }
}

#[derive(Deserialize)]
struct CreateUserForm {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    role: String,
}

async fn create_user(
    State(state): State<Arc<WebState>>,
    ctx: Ctx,
    Form(form): Form<CreateUserForm>,
) -> Response {
    let username = form.username.trim().to_string();
    let lang = ctx.lang;
    let by = ctx.username().to_string();
    let result = state
        .with_db(move |db| {
            let role = Role::parse(&form.role)?;
            db.create_user(&username, &form.password, role)?;
            tracing::info!(user = %by, created = %username, role = role.as_str(), "user created");
            Ok(text(lang, "admin.users.created_ok", &[("name", &username)]))
        })
        .await;
    state.done(&ctx, result, "/admin/users").await
}

async fn user_page(State(state): State<Arc<WebState>>, ctx: Ctx, Path(id): Path<String>) -> Response {
    let found = match id_of("user", &id) {
        Ok(id) => {
            let now = state.now();
            state
                .with_db(move |db| {
                    let user = db.user(id)?;
                    let failures = super::auth::recent_failures(db, &user.username, now)?;
                    Ok((user, failures))
                })
                .await
        }
        Err(e) => Err(e),
    };
    match found {
        Ok((edited, failures)) => {
            let is_self = ctx.user.as_ref().is_some_and(|u| u.id == edited.id);
            state.page(
                &ctx,
                "admin_user.html",
                context! { edited, is_self, roles => roles(), failures },
            )
        }
        Err(e) => state.error_page(&ctx, &e),
    }
}

#[derive(Deserialize)]
struct UpdateUserForm {
    #[serde(default)]
    role: String,
    /// A checkbox: `on` when ticked, absent otherwise.
    #[serde(default)]
    disabled: Option<String>,
    /// Empty keeps the current password.
    #[serde(default)]
    password: String,
}

/// Admins may not lock themselves out: the next page would refuse them. Checked
/// after the database's own rules, so the last admin hears that reason first.
fn check_self_edit(lang: Lang, me: &User, role: Role, disabled: bool) -> Result<()> {
    if disabled {
        return Err(PublisherError::BadRequest(text(
            lang,
            "admin.users.cannot_disable_self",
            &[],
        )));
    }
    if me.role == Role::Admin && role != Role::Admin {
        return Err(PublisherError::BadRequest(text(
            lang,
            "admin.users.cannot_demote_self",
            &[],
        )));
    }
    Ok(())
}

async fn update_user(
    State(state): State<Arc<WebState>>,
    ctx: Ctx,
    Path(id): Path<String>,
    Form(form): Form<UpdateUserForm>,
) -> Response {
    let id = match id_of("user", &id) {
        Ok(id) => id,
        Err(e) => return state.error_page(&ctx, &e),
    };
    let lang = ctx.lang;
    let me = ctx.user.clone();
    let by = ctx.username().to_string();
    let result = state
        .with_db(move |db| {
            let role = Role::parse(&form.role)?;
            let disabled = form.disabled.as_deref() == Some("on");
            let user = db.user(id)?;
            // Hashed before the transaction: argon2 takes tens of milliseconds.
            let hash = match form.password.as_str() {
                "" => None,
                password => Some(hash_password(&user.username, password)?),
            };
            // Role, state and password change together or not at all: an error
            // inside the transaction rolls it back.
            db.transaction(|tx| {
                if let Some(hash) = &hash {
                    tx.set_password_hash(id, hash)?;
                }
                tx.update_user(id, role, disabled)?;
                if let Some(me) = me.as_ref().filter(|me| me.id == id) {
                    check_self_edit(lang, me, role, disabled)?;
                }
                Ok::<_, PublisherError>(())
            })?;
            tracing::info!(
                user = %by,
                edited = %user.username,
                role = role.as_str(),
                disabled,
                password_changed = !form.password.is_empty(),
                "user changed"
            );
            Ok(text(lang, "admin.users.saved", &[("name", &user.username)]))
        })
        .await;
    state.done(&ctx, result, &format!("/admin/users/{id}")).await
}

async fn delete_user(State(state): State<Arc<WebState>>, ctx: Ctx, Path(id): Path<String>) -> Response {
    let id = match id_of("user", &id) {
        Ok(id) => id,
        Err(e) => return state.error_page(&ctx, &e),
    };
    let lang = ctx.lang;
    let me = ctx.user.as_ref().map(|u| u.id);
    let by = ctx.username().to_string();
    let result = state
        .with_db(move |db| {
            let user = db.user(id)?;
            // The last-admin rule speaks first; deleting yourself is then rolled back.
            db.transaction(|tx| {
                tx.delete_user(id)?;
                if me == Some(id) {
                    return Err(PublisherError::BadRequest(text(
                        lang,
                        "admin.users.cannot_delete_self",
                        &[],
                    )));
                }
                Ok(())
            })?;
            tracing::info!(user = %by, deleted = %user.username, "user deleted");
            Ok(text(lang, "admin.users.deleted", &[("name", &user.username)]))
        })
        .await;
    // On failure the user still exists: back to their page with the reason.
    let to = if result.is_ok() {
        "/admin/users".to_string()
    } else {
        format!("/admin/users/{id}")
    };
    state.done(&ctx, result, &to).await
}

/// Forgets the user's failed sign-ins from every address, so a throttled user
/// (or one an attacker keeps delaying) can sign in at once.
async fn unlock_user(State(state): State<Arc<WebState>>, ctx: Ctx, Path(id): Path<String>) -> Response {
    let id = match id_of("user", &id) {
        Ok(id) => id,
        Err(e) => return state.error_page(&ctx, &e),
    };
    let lang = ctx.lang;
    let by = ctx.username().to_string();
    let result = state
        .with_db(move |db| {
            let user = db.user(id)?;
            let forgotten = super::auth::unlock(db, &user.username)?;
            tracing::info!(user = %by, unlocked = %user.username, forgotten, "user unlocked");
            Ok(text(
                lang,
                "admin.users.unlocked",
                &[("name", &user.username), ("count", &forgotten.to_string())],
            ))
        })
        .await;
    state.done(&ctx, result, &format!("/admin/users/{id}")).await
}

// ---- Reviews ----

/// A publish request and, while pending, what approving it would change.
#[derive(Serialize)]
struct RequestView {
    #[serde(flatten)]
    request: PublishRequest,
    created_local: String,
    diff: Option<Vec<DiffSection>>,
    /// Why the diff could not be made (e.g. a media file left the library).
    diff_error: Option<String>,
    /// The version the request was made against, when another one has been
    /// published since: approving it would undo that one, so it is refused.
    stale_base: Option<String>,
}

/// What approving `request` would change compared with `head`, and the version
/// the request was made against.
fn pending_diff(
    ws: &Workspace<'_>,
    request: &PublishRequest,
    head: Option<&Manifest>,
    now: DateTime<Utc>,
) -> Result<(Vec<DiffSection>, Option<u64>)> {
    let draft = ws.request_draft(request.id)?;
    let sections = publishing::summary(ws, &draft, head, &request.author, now)?;
    Ok((sections, draft.base_version))
}

async fn reviews_page(State(state): State<Arc<WebState>>, ctx: Ctx) -> Response {
    let now = state.now();
    let found = with_ws(&state, move |ws, _, _| {
        let head = ws.head_manifest()?;
        let timezone = head.as_ref().map_or("UTC", |m| m.timezone.as_str());
        let mut pending = Vec::new();
        let mut decided = Vec::new();
        for request in ws.requests()? {
            let created_local = DateTime::parse_from_rfc3339(&request.created_at)
                .map(|t| local_time(t.with_timezone(&Utc), timezone))
                .unwrap_or_else(|_| request.created_at.clone());
            let mut view = RequestView {
                request,
                created_local,
                diff: None,
                diff_error: None,
                stale_base: None,
            };
            if view.request.status != "pending" {
                decided.push(view);
                continue;
            }
            match pending_diff(ws, &view.request, head.as_ref(), now) {
                Ok((sections, base)) => {
                    view.diff = Some(sections);
                    if base != head.as_ref().map(Manifest::version) {
                        view.stale_base = Some(base.map_or_else(|| "—".to_string(), |v| v.to_string()));
                    }
                }
                Err(e) if !e.status().is_server_error() => view.diff_error = Some(e.public_message()),
                Err(e) => return Err(e),
            }
            pending.push(view);
        }
        let head_version = head.as_ref().map(Manifest::version);
        Ok((pending, decided, ws.review_required()?, head_version))
    })
    .await;
    match found {
        Ok((pending, decided, review_required, head)) => state.page(
            &ctx,
            "admin_reviews.html",
            context! { pending, decided, review_required, head },
        ),
        Err(e) => state.error_page(&ctx, &e),
    }
}

async fn approve(State(state): State<Arc<WebState>>, ctx: Ctx, Path(id): Path<String>) -> Response {
    let id = match id_of("publish request", &id) {
        Ok(id) => id,
        Err(e) => return state.error_page(&ctx, &e),
    };
    let (admin, now, lang) = (ctx.username().to_string(), state.now(), ctx.lang);
    let result = with_ws(&state, move |ws, _, _| {
        let published = ws.approve(id, &admin, now)?;
        tracing::info!(user = %admin, request = id, version = published.version, "publish request approved");
        Ok(text(
            lang,
            "admin.reviews.approved",
            &[("version", &published.version.to_string())],
        ))
    })
    .await;
    state.done(&ctx, result, "/admin/reviews").await
}

async fn reject(State(state): State<Arc<WebState>>, ctx: Ctx, Path(id): Path<String>) -> Response {
    let id = match id_of("publish request", &id) {
        Ok(id) => id,
        Err(e) => return state.error_page(&ctx, &e),
    };
    let (admin, now, lang) = (ctx.username().to_string(), state.now(), ctx.lang);
    let result = with_ws(&state, move |ws, _, _| {
        ws.reject(id, &admin, now)?;
        tracing::info!(user = %admin, request = id, "publish request rejected");
        Ok(text(lang, "admin.reviews.rejected", &[("id", &id.to_string())]))
    })
    .await;
    state.done(&ctx, result, "/admin/reviews").await
}

// ---- Rollback ----

async fn rollback(State(state): State<Arc<WebState>>, ctx: Ctx, Path(n): Path<String>) -> Response {
    let target = match version_number("target", Some(&n)) {
        Ok(n) => n,
        Err(e) => return state.error_page(&ctx, &e),
    };
    let (admin, now, lang) = (ctx.username().to_string(), state.now(), ctx.lang);
    let result = with_ws(&state, move |ws, _, _| {
        let published = ws.rollback(target, &admin, now)?;
        tracing::info!(user = %admin, target, version = published.version, "rolled back");
        Ok(published.version)
    })
    .await;
    let to = match &result {
        Ok(v) => format!("/history/{v}"),
        Err(_) => "/history".to_string(),
    };
    let result = result.map(|v| {
        text(
            lang,
            "admin.rollback.done",
            &[("version", &v.to_string()), ("target", &target.to_string())],
        )
    });
    state.done(&ctx, result, &to).await
}

// ---- Players ----

/// How many of the latest player changes the landing page lists.
const PLAYER_EVENTS_SHOWN: u32 = 20;

/// The signed-in admin, for the record of a player change.
fn web_actor(name: &str, at: DateTime<Utc>) -> Actor<'_> {
    Actor {
        name,
        via: Via::Web,
        at,
    }
}

async fn disable_player(State(state): State<Arc<WebState>>, ctx: Ctx, Path(id): Path<String>) -> Response {
    set_player_disabled(state, ctx, id, true).await
}

async fn enable_player(State(state): State<Arc<WebState>>, ctx: Ctx, Path(id): Path<String>) -> Response {
    set_player_disabled(state, ctx, id, false).await
}

async fn set_player_disabled(state: Arc<WebState>, ctx: Ctx, id: String, disabled: bool) -> Response {
    let (admin, now, lang) = (ctx.username().to_string(), state.now(), ctx.lang);
    let result = state
        .with_db(move |db| {
            let changed = db.set_player_disabled(&id, disabled, web_actor(&admin, now))?;
            tracing::info!(user = %admin, player = %id, disabled, changed, "player changed");
            let key = match (disabled, changed) {
                (true, true) => "admin.players.disabled_ok",
                (true, false) => "admin.players.already_disabled",
                (false, true) => "admin.players.enabled_ok",
                (false, false) => "admin.players.already_enabled",
            };
            Ok(text(lang, key, &[("id", &id)]))
        })
        .await;
    state.done(&ctx, result, "/admin").await
}

/// Answers with the new configuration itself rather than a redirect: it holds
/// the new token, which is shown once and never stored (the page is `no-store`).
async fn rotate_player_token(
    State(state): State<Arc<WebState>>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> Response {
    let (admin, now) = (ctx.username().to_string(), state.now());
    let result = with_ws(&state, move |_, data, db| {
        let url = data.settings()?.public_url;
        let rotated = crate::enrol::rotate_player_token(data, db, &id, web_actor(&admin, now), &url, None)?;
        tracing::info!(user = %admin, player = %id, "player token rotated");
        Ok(rotated)
    })
    .await;
    match result {
        Ok((player, config)) => state.page(&ctx, "admin_player_token.html", context! { player, config }),
        Err(e) => state.done(&ctx, Err(e), "/admin").await,
    }
}

async fn remove_player(State(state): State<Arc<WebState>>, ctx: Ctx, Path(id): Path<String>) -> Response {
    let (admin, now, lang) = (ctx.username().to_string(), state.now(), ctx.lang);
    let result = state
        .with_db(move |db| {
            let player = db.remove_player(&id, web_actor(&admin, now))?;
            tracing::info!(user = %admin, player = %id, shop = %player.shop, "player removed");
            Ok(text(
                lang,
                "admin.players.removed_ok",
                &[("id", &id), ("shop", &player.shop)],
            ))
        })
        .await;
    state.done(&ctx, result, "/admin").await
}
