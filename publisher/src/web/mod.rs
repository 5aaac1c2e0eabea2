//! The web UI: server-rendered pages (templates from the `skycast-web` crate) for
//! admins, marketing, sales and auditors, on the same HTTPS listener as the pull
//! protocol. Every request passes [`guard`]: session, role ([`auth::POLICY`]),
//! CSRF, security headers. Handlers only do their page's job.

mod admin;
mod ads;
pub mod auth;
mod enrolment;
mod fleet;
mod form;
mod history;
mod media;
mod pages;
mod planning;
mod playlists;
mod publishing;
mod shops;
mod upload;
mod urgent;
mod webhooks;

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{ConnectInfo, FromRequestParts, Path, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use chrono::{DateTime, Utc};
use minijinja::{context, Value};
use serde::{Deserialize, Serialize};
use skycast_web::Lang;

use crate::data_dir::DataDir;
use crate::db::{Db, Role, User};
use crate::error::{PublisherError, Result};
use auth::{Access, Flash, Session};
use form::Fields;

/// What the web UI needs, shared by every request.
pub struct WebState {
    pub data: DataDir,
    /// No lock around it: `Db` checks out a connection for each call, so a page
    /// never waits behind another request's publish.
    db: Db,
    env: minijinja::Environment<'static>,
    /// Cookies get `Secure` when the UI is served over HTTPS.
    pub secure_cookies: bool,
    /// Largest file an upload may hold; bigger ones are refused while streaming.
    pub max_upload_bytes: u64,
    pub clock: fn() -> DateTime<Utc>,
    /// Version rows and the store's verification, kept between history views.
    history: history::HistoryCache,
    /// Sign-in checks, a few at a time (argon2 takes a core and ~19 MiB each).
    passwords: crate::passwords::PasswordPool,
    /// The supervision views and commands (the dashboard).
    pub fleet: std::sync::Arc<crate::fleet::Fleet>,
}

impl WebState {
    pub fn new(
        data: DataDir,
        secure_cookies: bool,
        max_upload_bytes: u64,
        fleet: std::sync::Arc<crate::fleet::Fleet>,
    ) -> Result<WebState> {
        let db = data.db()?;
        Ok(WebState {
            data,
            db,
            env: skycast_web::environment(),
            secure_cookies,
            max_upload_bytes,
            clock: Utc::now,
            history: history::HistoryCache::default(),
            passwords: crate::passwords::PasswordPool::start()?,
            fleet,
        })
    }

    pub fn now(&self) -> DateTime<Utc> {
        (self.clock)()
    }

    /// Runs `f` with the database on a blocking thread (SQLite and argon2 block).
    pub async fn with_db<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&Db) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let state = self.clone();
        tokio::task::spawn_blocking(move || f(&state.db))
            .await
            .map_err(|e| PublisherError::Internal(e.to_string()))?
    }

    /// Runs `f` with the workspace (library, draft, publishing) on a blocking thread.
    pub async fn with_workspace<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&crate::workspace::Workspace<'_>) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let state = self.clone();
        tokio::task::spawn_blocking(move || f(&crate::workspace::Workspace::new(&state.data, &state.db)))
            .await
            .map_err(|e| PublisherError::Internal(e.to_string()))?
    }

    /// Renders `template` inside the page layout, with `extra` added to the context.
    pub fn page(&self, ctx: &Ctx, template: &str, extra: Value) -> Response {
        self.page_with_status(StatusCode::OK, ctx, template, extra)
    }

    pub fn page_with_status(&self, status: StatusCode, ctx: &Ctx, template: &str, extra: Value) -> Response {
        let base = context! {
            lang => ctx.lang.code(),
            user => ctx.user,
            csrf => ctx.csrf,
            nav => nav(ctx.user.as_ref().map(|u| u.role), &ctx.path),
            flash => ctx.flash,
            path => ctx.path,
        };
        let rendered = self
            .env
            .get_template(template)
            .and_then(|t| t.render(context! { ..base, ..extra }));
        match rendered {
            Ok(html) => (status, Html(html)).into_response(),
            Err(e) => {
                tracing::error!(template, error = %e, "page failed to render");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal error: the publisher logged the details",
                )
                    .into_response()
            }
        }
    }

    /// The error page, in the layout, with the error's status.
    pub fn error_page(&self, ctx: &Ctx, error: &PublisherError) -> Response {
        if error.status().is_server_error() {
            tracing::error!(error = %error, "request failed");
        }
        let status = error.status();
        self.page_with_status(
            status,
            ctx,
            "error.html",
            context! { status => status.as_u16(), message => error.public_message() },
        )
    }

    /// After a form: shows `result` on the next page (POST-redirect-GET) and
    /// redirects to `to`. Server errors get the error page instead.
    pub async fn done(self: &Arc<Self>, ctx: &Ctx, result: Result<String>, to: &str) -> Response {
        let flash = match result {
            Ok(text) => Flash::ok(text),
            Err(e) if e.status().is_server_error() => return self.error_page(ctx, &e),
            Err(e) => Flash::error(e.public_message()),
        };
        if let Some(session) = ctx.session.clone() {
            if let Err(e) = self
                .with_db(move |db| auth::set_flash(db, &session, &flash))
                .await
            {
                return self.error_page(ctx, &e);
            }
        }
        see_other(to)
    }
}

pub fn see_other(to: &str) -> Response {
    Redirect::to(to).into_response()
}

/// What every handler knows about the request: who, in which language, with
/// which CSRF token, and the message left by the previous form.
#[derive(Debug, Clone, Default)]
pub struct Ctx {
    pub user: Option<User>,
    pub csrf: String,
    pub lang: Lang,
    pub flash: Option<Flash>,
    pub path: String,
    /// The client's address, when the listener knows it.
    pub peer: Option<std::net::IpAddr>,
    session: Option<Session>,
}

impl Ctx {
    /// The signed-in user; [`guard`] only lets requests without one reach public pages.
    pub fn username(&self) -> &str {
        self.user.as_ref().map_or("", |u| u.username.as_str())
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Ctx {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> std::result::Result<Ctx, Self::Rejection> {
        Ok(parts.extensions.get::<Ctx>().cloned().unwrap_or_default())
    }
}

#[derive(Serialize)]
struct NavItem {
    href: &'static str,
    label: &'static str,
    active: bool,
}

fn nav(role: Option<Role>, path: &str) -> Vec<NavItem> {
    let items: &[(&str, &str)] = match role {
        None => &[],
        Some(Role::Marketing) => &[
            ("/marketing", "nav.marketing"),
            ("/marketing/media", "nav.media"),
            ("/marketing/playlists", "nav.playlists"),
            ("/marketing/calendar", "nav.calendar"),
            ("/marketing/planning", "nav.planning"),
            ("/shops", "nav.shops"),
            ("/publish", "nav.publish"),
        ],
        Some(Role::Commercial) => &[
            ("/commercial", "nav.commercial"),
            ("/commercial/calendar", "nav.calendar"),
            ("/publish", "nav.publish"),
        ],
        Some(Role::Admin) => &[
            ("/admin", "nav.admin"),
            ("/admin/users", "nav.users"),
            ("/admin/urgent", "nav.urgent"),
            ("/shops", "nav.shops"),
            ("/publish", "nav.publish"),
            ("/admin/reviews", "nav.reviews"),
            ("/history", "nav.history"),
            ("/fleet", "nav.fleet"),
        ],
        Some(Role::Auditor) => &[
            ("/audit", "nav.audit"),
            ("/history", "nav.history"),
            ("/fleet", "nav.fleet"),
        ],
    };
    let best = items
        .iter()
        .filter(|(href, _)| path == *href || path.starts_with(&format!("{href}/")))
        .map(|(href, _)| href.len())
        .max();
    items
        .iter()
        .map(|(href, label)| NavItem {
            href,
            label,
            active: Some(href.len()) == best && (path == *href || path.starts_with(&format!("{href}/"))),
        })
        .collect()
}

/// The web UI's routes, behind [`guard`].
pub fn router(state: Arc<WebState>) -> Router {
    Router::new()
        .route("/", get(root))
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route("/static/{file}", get(static_file))
        .merge(pages::routes())
        .layer(axum::extract::DefaultBodyLimit::max(FORM_BODY_LIMIT))
        .layer(middleware::from_fn_with_state(state.clone(), guard))
        .with_state(state)
}

/// Forms are small; uploads lift this limit on their own routes.
pub const FORM_BODY_LIMIT: usize = 256 * 1024;

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

fn set_cookie(state: &WebState, name: &str, value: &str, max_age_secs: i64) -> HeaderValue {
    let secure = if state.secure_cookies { "; Secure" } else { "" };
    let text = format!("{name}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age_secs}{secure}");
    // Names and values are base64url tokens: always valid header text.
    HeaderValue::from_str(&text).expect("cookie header is ASCII")
}

fn lang_of(headers: &HeaderMap) -> Lang {
    headers
        .get(header::ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok())
        .map_or(Lang::En, Lang::from_accept_language)
}

fn add_security_headers(resp: &mut Response, https: bool) {
    let h = resp.headers_mut();
    if https {
        h.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        );
    }
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; media-src 'self'; style-src 'self'; \
             script-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
}

/// The CSRF token a state-changing request carries: the `x-csrf-token` header,
/// the `csrf` query parameter (multipart uploads), or the `csrf` field of a
/// urlencoded form, which is buffered and handed on unchanged.
async fn submitted_csrf(req: Request) -> std::result::Result<(Option<String>, Request), PublisherError> {
    if let Some(v) = req.headers().get("x-csrf-token").and_then(|v| v.to_str().ok()) {
        let token = v.to_string();
        return Ok((Some(token), req));
    }
    let from_query = req
        .uri()
        .query()
        .and_then(|q| Fields::parse(q.as_bytes()).first("csrf").map(str::to_string));
    if from_query.is_some() {
        return Ok((from_query, req));
    }
    let is_form = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !is_form {
        return Ok((None, req));
    }
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, FORM_BODY_LIMIT)
        .await
        .map_err(|_| PublisherError::BadRequest(format!("the form is over {FORM_BODY_LIMIT} bytes")))?;
    let token = Fields::parse(&bytes).first("csrf").map(str::to_string);
    Ok((token, Request::from_parts(parts, Body::from(bytes))))
}

/// A POST whose `Origin` names another site is refused even with a token.
/// HTTP/2 requests carry the host in the URI's authority, not in `Host`.
fn foreign_origin(headers: &HeaderMap, uri: &axum::http::Uri) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| uri.authority().map(|a| a.as_str()))
        .unwrap_or("");
    let origin_host = origin.split("://").nth(1).unwrap_or("");
    origin == "null" || host.is_empty() || origin_host != host
}

/// Every web request passes here: language, session, role policy, CSRF, flash
/// and security headers. Handlers never repeat these checks.
async fn guard(State(state): State<Arc<WebState>>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    let mut ctx = Ctx {
        lang: lang_of(req.headers()),
        path: path.clone(),
        peer: req
            .extensions()
            .get::<ConnectInfo<crate::net::PeerAddr>>()
            .map(|ConnectInfo(p)| p.0.ip()),
        ..Ctx::default()
    };
    let mut resp = match guarded(&state, &mut ctx, req, next).await {
        Ok(resp) => resp,
        Err(e) => state.error_page(&ctx, &e),
    };
    add_security_headers(&mut resp, state.secure_cookies);
    resp
}

async fn guarded(state: &Arc<WebState>, ctx: &mut Ctx, req: Request, next: Next) -> Result<Response> {
    let access = auth::access(&ctx.path);
    let token = cookie(req.headers(), auth::SESSION_COOKIE);
    let now = state.now();
    let session = match token {
        Some(token) => {
            state
                .with_db(move |db| auth::find_session(db, &token, now))
                .await?
        }
        None => None,
    };
    if let Some(s) = &session {
        ctx.user = Some(s.user.clone());
        ctx.csrf = s.csrf.clone();
    }
    ctx.session = session.clone();
    let changes_state = !matches!(*req.method(), Method::GET | Method::HEAD);
    let mut req = req;
    match (access, &session) {
        (Access::Public, _) => {}
        (_, None) if changes_state => return Err(PublisherError::CsrfRejected),
        (_, None) => return Ok(see_other("/login")),
        (Access::AnyUser, Some(_)) => {}
        (Access::Roles(roles), Some(s)) => {
            if !roles.contains(&s.user.role) {
                return Err(PublisherError::Forbidden {
                    role: s.user.role.as_str(),
                });
            }
        }
    }
    if let (true, Some(s)) = (changes_state, &session) {
        if foreign_origin(req.headers(), req.uri()) {
            return Err(PublisherError::CsrfRejected);
        }
        let (token, rebuilt) = submitted_csrf(req).await?;
        req = rebuilt;
        if !token.is_some_and(|t| auth::same_secret(&t, &s.csrf)) {
            tracing::warn!(user = %s.user.username, path = %ctx.path, "request refused: missing or wrong CSRF token");
            return Err(PublisherError::CsrfRejected);
        }
    }
    if let (false, Some(s)) = (changes_state, session) {
        ctx.flash = state.with_db(move |db| auth::take_flash(db, &s)).await?;
    }
    req.extensions_mut().insert(ctx.clone());
    Ok(next.run(req).await)
}

async fn root(ctx: Ctx) -> Response {
    match &ctx.user {
        Some(u) => see_other(auth::home(u.role)),
        None => see_other("/login"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_is_compared_with_the_host_of_http1_and_http2_requests() {
        let headers = |pairs: &[(&'static str, &'static str)]| {
            let mut h = HeaderMap::new();
            for (k, v) in pairs {
                h.insert(*k, HeaderValue::from_static(v));
            }
            h
        };
        let plain: axum::http::Uri = "/publish".parse().unwrap();
        let h2: axum::http::Uri = "https://127.0.0.1:8443/publish".parse().unwrap();
        let cases = [
            (headers(&[]), &plain, false),
            (
                headers(&[("origin", "https://127.0.0.1:8443"), ("host", "127.0.0.1:8443")]),
                &plain,
                false,
            ),
            (
                headers(&[("origin", "https://evil.example"), ("host", "127.0.0.1:8443")]),
                &plain,
                true,
            ),
            (headers(&[("origin", "https://127.0.0.1:8443")]), &h2, false),
            (headers(&[("origin", "https://evil.example")]), &h2, true),
            (
                headers(&[("origin", "null"), ("host", "127.0.0.1:8443")]),
                &plain,
                true,
            ),
            (headers(&[("origin", "https://127.0.0.1:8443")]), &plain, true),
        ];
        for (i, (h, uri, foreign)) in cases.iter().enumerate() {
            assert_eq!(foreign_origin(h, uri), *foreign, "case {i}");
        }
    }
}

#[derive(Deserialize)]
struct LoginForm {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    csrf: String,
}

fn login_response(
    state: &WebState,
    ctx: &Ctx,
    status: StatusCode,
    username: &str,
    error: Option<String>,
    headers: &HeaderMap,
) -> Response {
    // The sign-in form has no session: its CSRF token is a cookie it must echo.
    let token = cookie(headers, auth::LOGIN_CSRF_COOKIE).unwrap_or_else(crate::random_token);
    let ctx = Ctx {
        csrf: token.clone(),
        ..ctx.clone()
    };
    let mut resp = state.page_with_status(
        status,
        &ctx,
        "login.html",
        context! { username => username, error => error },
    );
    resp.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(state, auth::LOGIN_CSRF_COOKIE, &token, 3600),
    );
    resp
}

async fn login_page(State(state): State<Arc<WebState>>, ctx: Ctx, headers: HeaderMap) -> Response {
    if let Some(user) = &ctx.user {
        return see_other(auth::home(user.role));
    }
    login_response(&state, &ctx, StatusCode::OK, "", None, &headers)
}

async fn login(
    State(state): State<Arc<WebState>>,
    ctx: Ctx,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    let expected = cookie(&headers, auth::LOGIN_CSRF_COOKIE);
    if !expected.is_some_and(|c| auth::same_secret(&c, &form.csrf)) {
        return state.error_page(&ctx, &PublisherError::CsrfRejected);
    }
    let now = state.now();
    let outcome = sign_in(&state, form.username.clone(), form.password, ctx.peer, now).await;
    let text = |key| skycast_web::text(ctx.lang, key);
    match outcome {
        Ok(Ok(Some((token, user)))) => {
            tracing::info!(user = %user.username, role = user.role.as_str(), "signed in");
            let mut resp = see_other(auth::home(user.role));
            let h = resp.headers_mut();
            h.append(
                header::SET_COOKIE,
                set_cookie(&state, auth::SESSION_COOKIE, &token, 12 * 3600),
            );
            h.append(
                header::SET_COOKIE,
                set_cookie(&state, auth::LOGIN_CSRF_COOKIE, "", 0),
            );
            resp
        }
        Ok(Ok(None)) => {
            // Typed names come from anyone: Debug escapes newlines and terminal codes.
            tracing::warn!(user = ?form.username, "sign-in failed");
            login_response(
                &state,
                &ctx,
                StatusCode::UNAUTHORIZED,
                &form.username,
                Some(text("login.failed")),
                &headers,
            )
        }
        Ok(Err(wait)) => {
            tracing::warn!(user = ?form.username, retry_after_secs = wait, "sign-in refused: too many failures");
            let mut resp = login_response(
                &state,
                &ctx,
                StatusCode::TOO_MANY_REQUESTS,
                &form.username,
                Some(format!("{} ({} s)", text("login.locked"), wait)),
                &headers,
            );
            if let Ok(v) = HeaderValue::from_str(&wait.to_string()) {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
            resp
        }
        Err(e) => state.error_page(&ctx, &e),
    }
}

/// Checks a sign-in: `Err(wait)` while throttled, `Ok(None)` for a wrong name or
/// password, else the new session's token. The attempt is counted (and the
/// throttle asked) in one transaction before the password is checked, so a burst
/// of parallel attempts cannot pass the limit; the check runs in the bounded
/// pool ([`crate::passwords::PasswordPool`]) without holding the database.
async fn sign_in(
    state: &Arc<WebState>,
    username: String,
    password: String,
    peer: Option<std::net::IpAddr>,
    now: DateTime<Utc>,
) -> Result<std::result::Result<Option<(String, User)>, u64>> {
    let account = auth::account_key(&username);
    let address = auth::address_key(peer);
    let (for_check, from) = (account.clone(), address.clone());
    let admitted = state
        .with_db(move |db| match auth::begin_attempt(db, &for_check, &from, now)? {
            Err(wait) => Ok(Err(wait)),
            Ok(attempt) => Ok(Ok((attempt, db.password_record(&username)?))),
        })
        .await?;
    let (attempt, record) = match admitted {
        Err(wait) => return Ok(Err(wait)),
        Ok(admitted) => admitted,
    };
    let hash = record.as_ref().map(|(_, h)| h.clone());
    let matches = state.passwords.check(hash, password).await?;
    state
        .with_db(move |db| match record {
            Some((id, _)) if matches => {
                auth::attempt_succeeded(db, attempt, &account, &address)?;
                Ok(Ok(Some((auth::create_session(db, id, now)?, db.user(id)?))))
            }
            // The attempt stays recorded: it is the failure.
            _ => Ok(Ok(None)),
        })
        .await
}

async fn logout(State(state): State<Arc<WebState>>, headers: HeaderMap) -> Response {
    if let Some(token) = cookie(&headers, auth::SESSION_COOKIE) {
        if let Err(e) = state.with_db(move |db| auth::end_session(db, &token)).await {
            tracing::error!(error = %e, "cannot end a session");
        }
    }
    let mut resp = see_other("/login");
    resp.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(&state, auth::SESSION_COOKIE, "", 0),
    );
    resp
}

async fn static_file(Path(file): Path<String>) -> Response {
    match skycast_web::asset(&file) {
        Some((body, mime)) => (
            [
                (header::CONTENT_TYPE, mime),
                (header::CACHE_CONTROL, "public, max-age=3600"),
            ],
            body,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "no such file").into_response(),
    }
}
