//! The commercial role's page: upload ads, play one now in chosen shops (an
//! interrupt published at once, or sent for review when review is required), and
//! schedule ads (every N tracks or at fixed times) in the shared draft.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::extract::{Multipart, Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Form, Router};
use chrono::{DateTime, Duration, Utc};
use minijinja::context;
use serde::Serialize;
use skycast_schema::{
    AdRule, AfterMode, DateRange, Interrupt, InterruptLevel, Manifest, MediaId, MediaKind, Program,
    ShopTarget, StartMode, TimeOfDay,
};
use skycast_web::Lang;

use super::auth::Flash;
use super::form::{bad, Fields};
use super::history::local_time;
use super::media::MediaChoice;
use super::{see_other, upload, Ctx, WebState};
use crate::describe;
use crate::error::{PublisherError, Result};
use crate::workspace::{LibraryMedia, Submission, Workspace, MAX_MESSAGE_CHARS};

/// How long a play-now or urgent message may still start after it was sent: a
/// player that was off for longer does not play a stale message.
pub(super) const INTERRUPT_WINDOW_MINUTES: i64 = 60;
/// Largest "every N tracks" a form accepts.
const MAX_EVERY_TRACKS: u32 = 100;
/// Most fixed times one scheduled ad may have.
const MAX_FIXED_TIMES: usize = 48;
/// Recent interrupts listed under the forms.
const RECENT_INTERRUPTS: usize = 20;

pub(super) fn routes() -> Router<Arc<WebState>> {
    Router::new()
        .route("/commercial", get(home))
        .route("/commercial/ads/upload", upload::upload_route(upload_ads))
        // A reload after a refused form lands on the page, not on a 405.
        .route("/commercial/play-now", get(back_home).post(play_now))
        .route("/commercial/ads", get(back_home).post(schedule_ad))
        .route("/commercial/ads/{index}/delete", post(delete_rule))
}

async fn back_home() -> Response {
    see_other("/commercial")
}

/// Every tag some shop of `program` carries, once each, sorted.
pub(super) fn shop_tags<R>(program: &Program<R>) -> BTreeSet<&str> {
    program
        .shops
        .values()
        .flat_map(|s| s.tags.iter().map(String::as_str))
        .collect()
}

/// A shop selector a form may offer: `all`, a shop, or `tag:NAME`.
#[derive(Debug, Clone, Serialize)]
pub(super) struct ShopChoice {
    value: String,
    name: String,
    /// `all`, `shop` or `tag`: how the template labels it.
    kind: &'static str,
}

impl ShopChoice {
    fn of(target: ShopTarget) -> ShopChoice {
        let name = match &target {
            ShopTarget::All => target.to_string(),
            ShopTarget::Tag(name) | ShopTarget::Shop(name) => name.clone(),
        };
        ShopChoice {
            value: target.to_string(),
            name,
            kind: target.kind(),
        }
    }
}

/// `all`, each shop, then each tag of `program`.
pub(super) fn shop_choices(program: Option<&Program<MediaId>>) -> Vec<ShopChoice> {
    let mut out = vec![ShopChoice::of(ShopTarget::All)];
    let Some(program) = program else {
        return out;
    };
    let tags = shop_tags(program);
    out.extend(
        program
            .shops
            .keys()
            .map(|name| ShopChoice::of(ShopTarget::Shop(name.clone()))),
    );
    out.extend(
        tags.into_iter()
            .map(|tag| ShopChoice::of(ShopTarget::Tag(tag.to_string()))),
    );
    out
}

/// The chosen shop selectors, checked against `program`'s shops and tags. `all`
/// makes the others redundant, so it stands alone.
pub(super) fn check_shops(
    chosen: &[String],
    program: &Program<MediaId>,
    version_text: &str,
) -> Result<Vec<ShopTarget>> {
    if chosen.is_empty() {
        return Err(bad("shops: no shop chosen: tick `All shops`, a shop or a tag"));
    }
    if chosen.iter().any(|s| ShopTarget::All == *s) {
        return Ok(vec![ShopTarget::All]);
    }
    chosen
        .iter()
        .map(|selector| {
            selector
                .parse::<ShopTarget>()
                .ok()
                .filter(|target| program.knows_target(target))
                .ok_or_else(|| {
                    bad(format!(
                        "shops: `{selector}` is neither a shop nor a tag of {version_text}: tick one of the \
                         listed shops"
                    ))
                })
        })
        .collect()
}

/// "all shops" or the selectors, for commit messages (which stay English).
pub(super) fn shops_text(shops: &[ShopTarget]) -> String {
    describe::shops_text(shops, "all shops")
}

/// The same in the page's language, for tables.
pub(super) fn shops_label(shops: &[ShopTarget], lang: Lang) -> String {
    describe::shops_text(shops, &skycast_web::text(lang, "ads.all_shops"))
}

/// The library media `field` names; `kinds` limits which kinds it may be.
pub(super) fn check_media(
    ws: &Workspace,
    field: &str,
    value: &str,
    kinds: &[MediaKind],
) -> Result<LibraryMedia> {
    if value.is_empty() {
        return Err(bad(format!("{field}: no media chosen: pick one from the list")));
    }
    let unknown = || {
        bad(format!(
            "{field}: `{value}` is not in the library: pick one from the list"
        ))
    };
    let id: MediaId = value.parse().map_err(|_| unknown())?;
    let media = ws.media(&id).map_err(|e| match e {
        PublisherError::NotFound(_) => unknown(),
        other => other,
    })?;
    if !kinds.is_empty() && !kinds.contains(&media.kind) {
        let wanted: Vec<&str> = kinds.iter().map(|k| k.as_str()).collect();
        return Err(bad(format!(
            "{field}: `{}` is a {} file: pick a media of kind {}",
            media.title,
            media.kind.as_str(),
            wanted.join(" or ")
        )));
    }
    Ok(media)
}

pub(super) fn parse_start(value: &str, default: StartMode) -> Result<StartMode> {
    match value {
        "" => Ok(default),
        "cut" => Ok(StartMode::Cut),
        "boundary" => Ok(StartMode::Boundary),
        other => Err(bad(format!(
            "start: `{other}` is not a start mode: choose `cut` (now) or `boundary` (after the current track)"
        ))),
    }
}

pub(super) fn parse_after(value: &str) -> Result<AfterMode> {
    match value {
        "" | "resume" => Ok(AfterMode::Resume),
        "next" => Ok(AfterMode::Next),
        "restart" => Ok(AfterMode::Restart),
        other => Err(bad(format!(
            "after: `{other}` is not a way to go on: choose `resume`, `next` or `restart`"
        ))),
    }
}

fn start_str(mode: StartMode) -> &'static str {
    match mode {
        StartMode::Cut => "cut",
        StartMode::Boundary => "boundary",
    }
}

fn after_str(mode: AfterMode) -> &'static str {
    match mode {
        AfterMode::Resume => "resume",
        AfterMode::Next => "next",
        AfterMode::Restart => "restart",
    }
}

/// An optional note for the history: at most [`MAX_MESSAGE_CHARS`] characters.
pub(super) fn check_note(note: &str) -> Result<String> {
    if note.chars().count() > MAX_MESSAGE_CHARS {
        return Err(bad(format!(
            "message: the note is longer than {MAX_MESSAGE_CHARS} characters: shorten it"
        )));
    }
    Ok(note.chars().filter(|c| !c.is_control()).collect())
}

/// `<what>: <note>`, cut to the longest message a publish takes.
pub(super) fn commit_message(what: String, note: &str) -> String {
    let text = if note.is_empty() {
        what
    } else {
        format!("{what}: {note}")
    };
    text.chars().take(MAX_MESSAGE_CHARS).collect()
}

/// `<prefix>-<UTC yyyymmddHHMMSS>-<6 random hex>`: unique, and a valid interrupt id.
pub(super) fn interrupt_id(prefix: &str, now: DateTime<Utc>) -> String {
    format!(
        "{prefix}-{}-{}",
        now.format("%Y%m%d%H%M%S"),
        hex::encode(crate::random_bytes::<3>())
    )
}

/// One interrupt of the published version, for the tables of recent messages.
#[derive(Debug, Clone, Serialize)]
pub(super) struct InterruptView {
    id: String,
    title: String,
    shops: String,
    window: String,
    start: &'static str,
    after: &'static str,
    /// `pending`, `active` or `over`.
    state: &'static str,
    #[serde(skip)]
    sort_key: Option<DateTime<Utc>>,
}

/// The head's interrupts whose level is in `levels`, newest first.
pub(super) fn recent_interrupts(
    head: Option<&Manifest>,
    levels: &[InterruptLevel],
    now: DateTime<Utc>,
    lang: Lang,
) -> Vec<InterruptView> {
    let Some(m) = head else {
        return Vec::new();
    };
    let modes = &m.program.playback.messages;
    let mut out: Vec<InterruptView> = m
        .program
        .interrupts
        .iter()
        .filter(|i| levels.contains(&i.level))
        .map(|i| {
            let default = if i.level == InterruptLevel::Urgent {
                modes.urgent
            } else {
                modes.play_now
            };
            let from = i.not_before.map(|t| t.0);
            let to = i.not_after.map(|t| t.0);
            let state = match (from, to) {
                (Some(f), _) if now < f => "pending",
                (_, Some(t)) if now > t => "over",
                _ => "active",
            };
            let window = format!(
                "{} → {}",
                from.map_or_else(|| "…".to_string(), |t| local_time(t, &m.timezone)),
                to.map_or_else(|| "…".to_string(), |t| local_time(t, &m.timezone))
            );
            InterruptView {
                id: i.id.clone(),
                title: m
                    .media_entry(&i.media)
                    .map_or_else(|| i.media.short(), |e| e.title.clone()),
                shops: shops_label(&i.shops, lang),
                window,
                start: start_str(i.start.unwrap_or(default.start)),
                after: after_str(i.after.unwrap_or(default.after)),
                state,
                sort_key: from,
            }
        })
        .collect();
    out.sort_by_key(|v| std::cmp::Reverse(v.sort_key));
    out.truncate(RECENT_INTERRUPTS);
    out
}

/// A form that failed its checks: the same page again, with the error and what
/// was typed. Server errors get the error page.
pub(super) fn refused(
    state: &WebState,
    ctx: &Ctx,
    error: &PublisherError,
    render: impl FnOnce(&Ctx, StatusCode) -> Response,
) -> Response {
    if error.status().is_server_error() {
        return state.error_page(ctx, error);
    }
    tracing::info!(user = %ctx.username(), path = %ctx.path, error = %error, "form refused");
    let mut ctx = ctx.clone();
    ctx.flash = Some(Flash::error(error.public_message()));
    render(&ctx, error.status())
}

// ---- The page ----

/// What the page lists, read in one go from the workspace.
struct PageData {
    library: Vec<LibraryMedia>,
    head: Option<Manifest>,
    draft_program: Program<MediaId>,
    review_required: bool,
    draft_differs: bool,
}

async fn page_data(state: &Arc<WebState>) -> Result<PageData> {
    state
        .with_workspace(|ws| {
            Ok(PageData {
                library: ws.library(None)?,
                head: ws.head_manifest()?,
                draft_program: ws.draft()?.program,
                review_required: ws.review_required()?,
                draft_differs: ws.draft_differs_from_head()?,
            })
        })
        .await
}

#[derive(Debug, Clone, Serialize)]
struct PlayNowForm {
    media: String,
    shops: Vec<String>,
    start: String,
    after: String,
    message: String,
}

impl Default for PlayNowForm {
    fn default() -> Self {
        PlayNowForm {
            media: String::new(),
            shops: Vec::new(),
            start: "cut".into(),
            after: "resume".into(),
            message: String::new(),
        }
    }
}

impl PlayNowForm {
    fn read(f: &Fields) -> PlayNowForm {
        PlayNowForm {
            media: f.get("media"),
            shops: f.distinct("shops"),
            start: f.get_or("start", "cut"),
            after: f.get_or("after", "resume"),
            message: f.get("message"),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
struct ScheduleForm {
    media: String,
    shops: Vec<String>,
    every_tracks: String,
    at: String,
    date_from: String,
    date_to: String,
    start: String,
    after: String,
}

impl Default for ScheduleForm {
    fn default() -> Self {
        ScheduleForm {
            media: String::new(),
            shops: Vec::new(),
            every_tracks: String::new(),
            at: String::new(),
            date_from: String::new(),
            date_to: String::new(),
            start: "boundary".into(),
            after: "resume".into(),
        }
    }
}

impl ScheduleForm {
    fn read(f: &Fields) -> ScheduleForm {
        ScheduleForm {
            media: f.get("media"),
            shops: f.distinct("shops"),
            every_tracks: f.get("every_tracks"),
            at: f.get("at"),
            date_from: f.get("date_from"),
            date_to: f.get("date_to"),
            start: f.get_or("start", "boundary"),
            after: f.get_or("after", "resume"),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
struct RuleView {
    index: usize,
    media: String,
    title: String,
    shops: String,
    every_tracks: Option<String>,
    at: String,
    dates: Option<String>,
    start: &'static str,
    after: &'static str,
}

fn rule_views(program: &Program<MediaId>, library: &[LibraryMedia], lang: Lang) -> Vec<RuleView> {
    let modes = &program.playback.messages;
    program
        .ads
        .iter()
        .enumerate()
        .map(|(index, rule)| RuleView {
            index,
            media: rule.media.to_string(),
            title: library
                .iter()
                .find(|m| m.id == rule.media)
                .map_or_else(|| rule.media.short(), |m| m.title.clone()),
            shops: shops_label(&rule.shops, lang),
            every_tracks: rule.every_tracks.map(|n| n.to_string()),
            at: rule
                .at
                .as_deref()
                .unwrap_or_default()
                .iter()
                .map(|t| t.to_string())
                .collect::<Vec<_>>()
                .join(", "),
            dates: rule.dates.map(|d| format!("{} → {}", d.first, d.last)),
            start: start_str(rule.start.unwrap_or(modes.ad.start)),
            after: after_str(rule.after.unwrap_or(modes.ad.after)),
        })
        .collect()
}

fn render(
    state: &WebState,
    ctx: &Ctx,
    status: StatusCode,
    data: &PageData,
    play_now: &PlayNowForm,
    schedule: &ScheduleForm,
) -> Response {
    let media_choices: Vec<MediaChoice> = data
        .library
        .iter()
        .filter(|m| matches!(m.kind, MediaKind::Ad | MediaKind::Announcement))
        .map(MediaChoice::from)
        .collect();
    let now = state.now();
    state.page_with_status(
        status,
        ctx,
        "ads_home.html",
        context! {
            media_choices => media_choices,
            play_now_shops => shop_choices(data.head.as_ref().map(|m| &m.program)),
            schedule_shops => shop_choices(Some(&data.draft_program)),
            play_now => play_now,
            schedule => schedule,
            rules => rule_views(&data.draft_program, &data.library, ctx.lang),
            recent => recent_interrupts(
                data.head.as_ref(),
                &[InterruptLevel::Ad, InterruptLevel::Announcement],
                now,
                ctx.lang,
            ),
            review_required => data.review_required,
            draft_differs => data.draft_differs,
        },
    )
}

/// Renders the page after a refused form, keeping what was typed.
async fn refuse(
    state: &Arc<WebState>,
    ctx: &Ctx,
    error: PublisherError,
    play_now: PlayNowForm,
    schedule: ScheduleForm,
) -> Response {
    let data = match page_data(state).await {
        Ok(d) => d,
        Err(e) => return state.error_page(ctx, &e),
    };
    refused(state, ctx, &error, |ctx, status| {
        render(state, ctx, status, &data, &play_now, &schedule)
    })
}

async fn home(State(state): State<Arc<WebState>>, ctx: Ctx) -> Response {
    match page_data(&state).await {
        Ok(data) => render(
            &state,
            &ctx,
            StatusCode::OK,
            &data,
            &PlayNowForm::default(),
            &ScheduleForm::default(),
        ),
        Err(e) => state.error_page(&ctx, &e),
    }
}

async fn upload_ads(State(state): State<Arc<WebState>>, ctx: Ctx, multipart: Multipart) -> Response {
    let result = upload::receive_uploads(&state, &ctx, multipart, MediaKind::Ad)
        .await
        .and_then(|outcome| outcome.summary(ctx.lang));
    state.done(&ctx, result, "/commercial").await
}

/// Where a play-now went.
enum PlayNowOutcome {
    Published(u64),
    Requested,
}

async fn play_now(
    State(state): State<Arc<WebState>>,
    ctx: Ctx,
    Form(pairs): Form<Vec<(String, String)>>,
) -> Response {
    let form = PlayNowForm::read(&Fields::new(pairs));
    let user = ctx.username().to_string();
    let role = ctx.user.as_ref().map(|u| u.role);
    let now = state.now();
    let input = form.clone();
    let result = state
        .with_workspace(move |ws| {
            let media = check_media(
                ws,
                "media",
                &input.media,
                &[MediaKind::Ad, MediaKind::Announcement],
            )?;
            let head = ws.head_manifest()?.ok_or_else(|| {
                bad("nothing is published yet: a planning must be published before an ad can play")
            })?;
            let shops = check_shops(
                &input.shops,
                &head.program,
                &format!("version {}", head.version()),
            )?;
            let start = parse_start(&input.start, StartMode::Cut)?;
            let after = parse_after(&input.after)?;
            let note = check_note(&input.message)?;
            let interrupt = Interrupt {
                id: interrupt_id("play-now", now),
                media: media.id,
                // An announcement keeps its own level; both play as "play now".
                level: if media.kind == MediaKind::Announcement {
                    InterruptLevel::Announcement
                } else {
                    InterruptLevel::Ad
                },
                shops: shops.clone(),
                not_before: Some(now.into()),
                not_after: Some((now + Duration::minutes(INTERRUPT_WINDOW_MINUTES)).into()),
                start: Some(start),
                after: Some(after),
            };
            let message = commit_message(
                format!("Play {} now in {}", media.title, shops_text(&shops)),
                &note,
            );
            if ws.submission(role)? == Submission::Request {
                // Review holds every publish from the draft: the interrupt joins the
                // draft and the request carries the whole draft.
                let draft = ws.edit_draft(&user, now, |d| {
                    d.program.interrupts.push(interrupt);
                    Ok(())
                })?;
                ws.request_publish(&draft, &user, &message, now)?;
                Ok(PlayNowOutcome::Requested)
            } else {
                Ok(PlayNowOutcome::Published(
                    ws.publish_interrupt(interrupt, &user, &message, now)?.version,
                ))
            }
        })
        .await;
    match result {
        Ok(outcome) => {
            let text = match outcome {
                PlayNowOutcome::Published(n) => {
                    tracing::info!(user = %ctx.username(), version = n, "play-now published");
                    skycast_web::text(ctx.lang, "ads.flash_played").replace("{n}", &n.to_string())
                }
                PlayNowOutcome::Requested => {
                    tracing::info!(user = %ctx.username(), "play-now sent for review");
                    skycast_web::text(ctx.lang, "ads.flash_waiting")
                }
            };
            state.done(&ctx, Ok(text), "/commercial").await
        }
        Err(e) => refuse(&state, &ctx, e, form, ScheduleForm::default()).await,
    }
}

/// `HH:MM, HH:MM, ...` → sorted distinct times.
fn parse_times(text: &str) -> Result<Vec<TimeOfDay>> {
    let mut times = BTreeSet::new();
    for piece in text
        .split([',', ';', ' '])
        .map(str::trim)
        .filter(|p| !p.is_empty())
    {
        let time: TimeOfDay = piece.parse().map_err(|e: String| bad(format!("at: {e}")))?;
        times.insert(time);
    }
    if times.len() > MAX_FIXED_TIMES {
        return Err(bad(format!(
            "at: {} times is more than {MAX_FIXED_TIMES}: use `every N tracks` instead",
            times.len()
        )));
    }
    Ok(times.into_iter().collect())
}

fn parse_date(field: &str, text: &str) -> Result<chrono::NaiveDate> {
    chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map_err(|_| bad(format!("{field}: `{text}` is not a date: write it as YYYY-MM-DD")))
}

/// The ad rule a schedule form describes; shops are checked against the draft later.
fn ad_rule(ws: &Workspace, form: &ScheduleForm) -> Result<AdRule<MediaId>> {
    let media = check_media(
        ws,
        "media",
        &form.media,
        &[MediaKind::Ad, MediaKind::Announcement],
    )?;
    let (every_tracks, at) = match (form.every_tracks.is_empty(), form.at.is_empty()) {
        (true, true) => {
            return Err(bad(
                "every_tracks / at: give either a number of tracks or fixed times",
            ))
        }
        (false, false) => {
            return Err(bad(
                "every_tracks / at: give a number of tracks or fixed times, not both",
            ))
        }
        (false, true) => {
            let n: u32 = form.every_tracks.parse().map_err(|_| {
                bad(format!(
                    "every_tracks: `{}` is not a whole number: write a number from 1 to {MAX_EVERY_TRACKS}",
                    form.every_tracks
                ))
            })?;
            if !(1..=MAX_EVERY_TRACKS).contains(&n) {
                return Err(bad(format!(
                    "every_tracks: {n} is out of range: write a number from 1 to {MAX_EVERY_TRACKS}"
                )));
            }
            (Some(n), None)
        }
        (true, false) => {
            let times = parse_times(&form.at)?;
            if times.is_empty() {
                return Err(bad(
                    "at: no time given: write times as HH:MM, separated by commas",
                ));
            }
            (None, Some(times))
        }
    };
    let dates = match (form.date_from.is_empty(), form.date_to.is_empty()) {
        (true, true) => None,
        (false, false) => {
            let first = parse_date("date_from", &form.date_from)?;
            let last = parse_date("date_to", &form.date_to)?;
            if last < first {
                return Err(bad(format!(
                    "date_to: {last} is before the first day {first}: swap them"
                )));
            }
            Some(DateRange { first, last })
        }
        (true, false) => {
            return Err(bad(
                "date_from: missing: give both the first and the last day, or neither",
            ))
        }
        (false, true) => {
            return Err(bad(
                "date_to: missing: give both the first and the last day, or neither",
            ))
        }
    };
    Ok(AdRule {
        media: media.id,
        shops: Vec::new(),
        every_tracks,
        at,
        dates,
        start: Some(parse_start(&form.start, StartMode::Boundary)?),
        after: Some(parse_after(&form.after)?),
    })
}

async fn schedule_ad(
    State(state): State<Arc<WebState>>,
    ctx: Ctx,
    Form(pairs): Form<Vec<(String, String)>>,
) -> Response {
    let form = ScheduleForm::read(&Fields::new(pairs));
    let user = ctx.username().to_string();
    let now = state.now();
    let input = form.clone();
    let result = state
        .with_workspace(move |ws| {
            let mut rule = ad_rule(ws, &input)?;
            ws.edit_draft(&user, now, |d| {
                rule.shops = check_shops(&input.shops, &d.program, "the draft")?;
                d.program.ads.push(rule);
                Ok(())
            })?;
            Ok(())
        })
        .await;
    match result {
        Ok(()) => {
            tracing::info!(user = %ctx.username(), "scheduled ad added to the draft");
            let text = skycast_web::text(ctx.lang, "ads.flash_scheduled");
            state.done(&ctx, Ok(text), "/commercial").await
        }
        Err(e) => refuse(&state, &ctx, e, PlayNowForm::default(), form).await,
    }
}

async fn delete_rule(
    State(state): State<Arc<WebState>>,
    ctx: Ctx,
    Path(index): Path<usize>,
    Form(pairs): Form<Vec<(String, String)>>,
) -> Response {
    // The media the page showed at this index: if the list moved meanwhile, the
    // index names another rule and nothing is removed.
    let expected = Fields::new(pairs).get("media");
    let user = ctx.username().to_string();
    let now = state.now();
    let result = state
        .with_workspace(move |ws| {
            ws.edit_draft(&user, now, |d| {
                let Some(rule) = d.program.ads.get(index) else {
                    return Err(PublisherError::Conflict(format!(
                        "scheduled ad {index} is no longer in the draft: reload the page"
                    )));
                };
                if !expected.is_empty() && rule.media.to_string() != expected {
                    return Err(PublisherError::Conflict(
                        "the scheduled ads changed since the page was opened: reload it and try again".into(),
                    ));
                }
                d.program.ads.remove(index);
                Ok(())
            })
        })
        .await
        .map(|_| skycast_web::text(ctx.lang, "ads.flash_deleted"));
    state.done(&ctx, result, "/commercial").await
}
