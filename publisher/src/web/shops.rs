//! The shops pages (marketing and admins): the list of shops of the draft, and
//! per shop its tags, opening hours per weekday, exception dates and closing
//! announcement. Edits go into the shared draft; a shop that players are
//! registered for, or that rules still name, is not deleted.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use chrono::NaiveDate;
use minijinja::context;
use serde::Serialize;
use skycast_schema::shop_target::ALL_SHOPS;
use skycast_schema::{
    is_plain_name, ClosingAnnouncement, DailyHours, MediaId, MediaKind, Program, Shop, ShopTarget,
    TimeWindow, Weekday, PLAIN_NAME_RULE,
};

use super::form::{bad, shown, Fields};
use super::planning::parse_date;
use super::{Ctx, WebState};
use crate::error::{PublisherError, Result};
use crate::workspace::LibraryMedia;

/// Longest lead time of a closing announcement the form offers (4 hours).
pub const MAX_CLOSING_MINUTES: u32 = 240;

pub(super) fn routes() -> Router<Arc<WebState>> {
    Router::new()
        .route("/shops", get(list).post(create))
        .route("/shops/{name}", get(edit_page).post(save))
        .route("/shops/{name}/delete", post(delete))
}

fn check_shop_name(field: &str, name: &str) -> Result<()> {
    if name == ALL_SHOPS {
        return Err(bad(format!(
            "field `{field}`: `{ALL_SHOPS}` is reserved for targeting every shop: choose another name"
        )));
    }
    if !is_plain_name(name) {
        return Err(bad(format!(
            "field `{field}`: `{}` must be {PLAIN_NAME_RULE}",
            shown(name)
        )));
    }
    Ok(())
}

/// Opening hours as typed: `HH:MM-HH:MM`, or empty (or `closed`) for closed.
fn parse_hours(field: &str, text: &str) -> Result<DailyHours> {
    let text: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    let text = text.replace(['–', '—'], "-");
    if text.is_empty() || text.eq_ignore_ascii_case("closed") {
        return Ok(DailyHours::Closed);
    }
    text.parse::<TimeWindow>().map(DailyHours::Open).map_err(|e| {
        bad(format!(
            "field `{field}`: `{}` is not opening hours ({e}): write HH:MM-HH:MM, for example 09:00-19:00, \
             or leave it empty when closed",
            shown(&text)
        ))
    })
}

fn hours_text(hours: &DailyHours) -> String {
    match hours {
        DailyHours::Closed => String::new(),
        DailyHours::Open(w) => w.to_string(),
    }
}

/// Targets (`tag:NAME`, shop names) that rules, ads or messages name but no shop
/// of `program` answers to, described for a person.
fn dangling_targets<R>(program: &Program<R>) -> Vec<String> {
    let mut out = Vec::new();
    let mut check = |what: String, targets: &[ShopTarget]| {
        for t in targets.iter().filter(|t| !program.knows_target(t)) {
            out.push(format!("{what} names `{t}`"));
        }
    };
    for (i, r) in program.schedule.iter().enumerate() {
        check(format!("schedule rule {} ({})", i + 1, r.playlist), &r.shops);
    }
    for (i, a) in program.ads.iter().enumerate() {
        check(format!("ad rule {}", i + 1), &a.shops);
    }
    for int in &program.interrupts {
        check(format!("message `{}`", int.id), &int.shops);
    }
    out
}

// ---- List ----

#[derive(Serialize)]
struct HoursGroup {
    first: &'static str,
    last: &'static str,
    /// Empty when closed.
    hours: String,
}

#[derive(Serialize)]
struct ShopRow {
    name: String,
    tags: Vec<String>,
    always_open: bool,
    hours: Vec<HoursGroup>,
    exceptions: usize,
    closing: Option<ClosingView>,
    players: usize,
}

#[derive(Serialize)]
struct ClosingView {
    title: String,
    minutes_before: u32,
}

/// Consecutive weekdays with the same hours, as one group (`mon`–`fri` 09:00-19:00).
fn hours_groups(shop: &Shop<MediaId>) -> Vec<HoursGroup> {
    let mut out: Vec<HoursGroup> = Vec::new();
    for day in Weekday::ALL {
        let hours = shop.hours.get(&day).map(hours_text).unwrap_or_default();
        match out.last_mut() {
            Some(g) if g.hours == hours => g.last = day.key(),
            _ => out.push(HoursGroup {
                first: day.key(),
                last: day.key(),
                hours,
            }),
        }
    }
    out
}

fn always_open(shop: &Shop<MediaId>) -> bool {
    shop.hours.is_empty() && shop.exceptions.is_empty()
}

fn title_in(library: &[LibraryMedia], id: &MediaId) -> String {
    library
        .iter()
        .find(|m| &m.id == id)
        .map_or_else(|| id.short(), |m| m.title.clone())
}

/// Players registered per shop (read-only; players are added with the CLI).
fn players_by_shop(db: &crate::db::Db) -> Result<BTreeMap<String, Vec<String>>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for player in db.players()? {
        out.entry(player.shop).or_default().push(player.id);
    }
    Ok(out)
}

async fn list(State(state): State<Arc<WebState>>, ctx: Ctx) -> Response {
    render_list(&state, &ctx, String::new(), None, StatusCode::OK).await
}

async fn render_list(
    state: &Arc<WebState>,
    ctx: &Ctx,
    new_name: String,
    error: Option<String>,
    status: StatusCode,
) -> Response {
    let loaded = state
        .with_workspace(|ws| Ok((ws.draft()?, ws.library(None)?)))
        .await;
    let players = state.with_db(players_by_shop).await;
    let ((draft, library), players) = match (loaded, players) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => return state.error_page(ctx, &e),
    };
    let rows: Vec<ShopRow> = draft
        .program
        .shops
        .iter()
        .map(|(name, shop)| ShopRow {
            name: name.clone(),
            tags: shop.tags.clone(),
            always_open: always_open(shop),
            hours: hours_groups(shop),
            exceptions: shop.exceptions.len(),
            closing: shop.closing_announcement.as_ref().map(|c| ClosingView {
                title: title_in(&library, &c.media),
                minutes_before: c.minutes_before,
            }),
            players: players.get(name).map_or(0, Vec::len),
        })
        .collect();
    state.page_with_status(
        status,
        ctx,
        "shops_list.html",
        context! { shops => rows, new_name => new_name, error => error },
    )
}

// ---- Create ----

async fn create(State(state): State<Arc<WebState>>, ctx: Ctx, body: Bytes) -> Response {
    let fields = Fields::parse(&body);
    let name = fields.get("name");
    let by = ctx.username().to_string();
    let now = state.now();
    let chosen = name.clone();
    let result = state
        .with_workspace(move |ws| {
            check_shop_name("name", &chosen)?;
            ws.edit_draft(&by, now, |d| {
                if d.program.shops.contains_key(&chosen) {
                    return Err(PublisherError::Conflict(format!(
                        "field `name`: a shop is already named `{chosen}`: choose another name"
                    )));
                }
                d.program.shops.insert(
                    chosen.clone(),
                    Shop {
                        tags: Vec::new(),
                        hours: BTreeMap::new(),
                        exceptions: BTreeMap::new(),
                        closing_announcement: None,
                    },
                );
                Ok(())
            })
            .map(|_| ())
        })
        .await;
    match result {
        Ok(()) => {
            let text = skycast_web::text(ctx.lang, "shops.created").replace("{name}", &name);
            state.done(&ctx, Ok(text), &format!("/shops/{name}")).await
        }
        Err(e) if e.status().is_client_error() => {
            render_list(&state, &ctx, name, Some(e.public_message()), e.status()).await
        }
        Err(e) => state.error_page(&ctx, &e),
    }
}

// ---- Edit ----

#[derive(Serialize, Clone, Default)]
struct ExceptionRow {
    date: String,
    hours: String,
}

/// The edit form's values: the draft's, or what was submitted.
#[derive(Serialize, Clone, Default)]
struct ShopForm {
    tags: String,
    always_open: bool,
    /// `(weekday key, HH:MM-HH:MM or empty)` for mon..sun.
    hours: Vec<(&'static str, String)>,
    exceptions: Vec<ExceptionRow>,
    closing_media: String,
    closing_minutes: String,
}

impl ShopForm {
    fn of(shop: &Shop<MediaId>) -> ShopForm {
        ShopForm {
            tags: shop.tags.join(", "),
            always_open: always_open(shop),
            hours: Weekday::ALL
                .iter()
                .map(|d| (d.key(), shop.hours.get(d).map(hours_text).unwrap_or_default()))
                .collect(),
            exceptions: shop
                .exceptions
                .iter()
                .map(|(date, h)| ExceptionRow {
                    date: date.to_string(),
                    hours: hours_text(h),
                })
                .collect(),
            closing_media: shop
                .closing_announcement
                .as_ref()
                .map(|c| c.media.to_string())
                .unwrap_or_default(),
            closing_minutes: shop
                .closing_announcement
                .as_ref()
                .map_or_else(String::new, |c| c.minutes_before.to_string()),
        }
    }

    fn from_fields(fields: &Fields) -> ShopForm {
        let removed: BTreeSet<String> = fields.all("exception_remove").into_iter().collect();
        let dates = fields.all("exception_date");
        let hours = fields.all("exception_hours");
        let exceptions = dates
            .into_iter()
            .zip(hours.into_iter().chain(std::iter::repeat(String::new())))
            // The empty row for a new exception, and rows ticked for removal, are dropped.
            .filter(|(date, hours)| {
                let blank = date.is_empty() && hours.is_empty();
                !blank && !removed.contains(date)
            })
            .map(|(date, hours)| ExceptionRow { date, hours })
            .collect();
        ShopForm {
            tags: fields.get("tags"),
            always_open: !fields.get("always_open").is_empty(),
            hours: Weekday::ALL
                .iter()
                .map(|d| (d.key(), fields.get(&format!("hours_{}", d.key()))))
                .collect(),
            exceptions,
            closing_media: fields.get("closing_media"),
            closing_minutes: fields.get("closing_minutes"),
        }
    }

    /// Applies the form to `shop`, naming the field of the first mistake.
    fn apply(&self, shop: &mut Shop<MediaId>, library: &[LibraryMedia]) -> Result<()> {
        let mut tags: Vec<String> = Vec::new();
        for tag in self.tags.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            if !is_plain_name(tag) {
                return Err(bad(format!(
                    "field `tags`: `{}` must be {PLAIN_NAME_RULE}; separate tags with commas",
                    shown(tag)
                )));
            }
            if !tags.iter().any(|t| t == tag) {
                tags.push(tag.to_string());
            }
        }
        let mut exceptions = BTreeMap::new();
        for row in &self.exceptions {
            if row.date.is_empty() {
                return Err(bad(format!(
                    "field `exception_date`: give the date of the exception with hours `{}`",
                    shown(&row.hours)
                )));
            }
            let date: NaiveDate = parse_date("exception_date", &row.date)?;
            let hours = parse_hours("exception_hours", &row.hours)?;
            if exceptions.insert(date, hours).is_some() {
                return Err(bad(format!("field `exception_date`: {date} is listed twice")));
            }
        }
        let mut hours = BTreeMap::new();
        if !self.always_open {
            for (i, (key, text)) in self.hours.iter().enumerate() {
                let day = Weekday::ALL[i];
                match parse_hours(&format!("hours_{key}"), text)? {
                    DailyHours::Open(w) => {
                        hours.insert(day, DailyHours::Open(w));
                    }
                    // Keep an explicit `closed` the shop had, so the diff shows no noise.
                    DailyHours::Closed if shop.hours.get(&day) == Some(&DailyHours::Closed) => {
                        hours.insert(day, DailyHours::Closed);
                    }
                    DailyHours::Closed => {}
                }
            }
            // A shop with no hours at all is open around the clock: one closed every
            // day must say so.
            if hours.is_empty() && exceptions.is_empty() {
                hours = Weekday::ALL.iter().map(|d| (*d, DailyHours::Closed)).collect();
            }
        } else if !exceptions.is_empty() {
            return Err(bad(
                "field `always_open`: a shop open around the clock has no exception dates: remove them, or give \
                 weekday hours instead",
            ));
        }
        let closing = match (self.closing_media.as_str(), self.closing_minutes.as_str()) {
            ("", _) => None,
            (media, minutes) => {
                let id: MediaId = media
                    .parse()
                    .ok()
                    .filter(|id| library.iter().any(|m| &m.id == id))
                    .ok_or_else(|| {
                        bad(format!(
                            "field `closing_media`: `{}` is not a media of the library: pick one from the list",
                            shown(media)
                        ))
                    })?;
                let minutes_before = minutes
                    .parse::<u32>()
                    .ok()
                    .filter(|m| (1..=MAX_CLOSING_MINUTES).contains(m))
                    .ok_or_else(|| {
                        bad(format!(
                            "field `closing_minutes`: `{}` is not a whole number of minutes from 1 to \
                             {MAX_CLOSING_MINUTES}",
                            shown(minutes)
                        ))
                    })?;
                if self.always_open {
                    return Err(bad(
                        "field `closing_media`: a shop open around the clock never closes, so a closing \
                         announcement would never play: give weekday hours or choose no announcement",
                    ));
                }
                Some(ClosingAnnouncement {
                    media: id,
                    minutes_before,
                })
            }
        };
        shop.tags = tags;
        shop.hours = hours;
        shop.exceptions = exceptions;
        shop.closing_announcement = closing;
        Ok(())
    }
}

#[derive(Serialize)]
struct MediaGroup {
    kind: &'static str,
    items: Vec<MediaOption>,
}

#[derive(Serialize)]
struct MediaOption {
    id: String,
    title: String,
}

/// Library media for the closing announcement: announcements first, then ads,
/// then anything else.
fn media_groups(library: &[LibraryMedia]) -> Vec<MediaGroup> {
    [
        MediaKind::Announcement,
        MediaKind::Ad,
        MediaKind::Music,
        MediaKind::Urgent,
    ]
    .into_iter()
    .map(|kind| MediaGroup {
        kind: kind.as_str(),
        items: library
            .iter()
            .filter(|m| m.kind == kind)
            .map(|m| MediaOption {
                id: m.id.to_string(),
                title: m.title.clone(),
            })
            .collect(),
    })
    .filter(|g| !g.items.is_empty())
    .collect()
}

fn known_shop(name: &str) -> Result<()> {
    if is_plain_name(name) {
        Ok(())
    } else {
        Err(PublisherError::NotFound(format!(
            "no shop is named `{}`",
            shown(name)
        )))
    }
}

async fn edit_page(State(state): State<Arc<WebState>>, ctx: Ctx, Path(name): Path<String>) -> Response {
    render_edit(&state, &ctx, name, None, None, StatusCode::OK).await
}

async fn render_edit(
    state: &Arc<WebState>,
    ctx: &Ctx,
    name: String,
    form: Option<ShopForm>,
    error: Option<String>,
    status: StatusCode,
) -> Response {
    let wanted = name.clone();
    let loaded = state
        .with_workspace(move |ws| {
            known_shop(&wanted)?;
            let draft = ws.draft()?;
            let shop = draft.program.shops.get(&wanted).cloned().ok_or_else(|| {
                PublisherError::NotFound(format!("no shop is named `{wanted}` in the draft"))
            })?;
            Ok((shop, ws.library(None)?))
        })
        .await;
    let shop_players = state
        .with_db(players_by_shop)
        .await
        .map(|mut p| p.remove(&name).unwrap_or_default());
    let ((shop, library), players) = match (loaded, shop_players) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => return state.error_page(ctx, &e),
    };
    let form = form.unwrap_or_else(|| ShopForm::of(&shop));
    state.page_with_status(
        status,
        ctx,
        "shops_edit.html",
        context! {
            name => name,
            form => form,
            media => media_groups(&library),
            players => players,
            error => error,
            max_minutes => MAX_CLOSING_MINUTES,
        },
    )
}

async fn save(
    State(state): State<Arc<WebState>>,
    ctx: Ctx,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    let fields = Fields::parse(&body);
    let form = ShopForm::from_fields(&fields);
    let by = ctx.username().to_string();
    let now = state.now();
    let (submitted, wanted) = (form.clone(), name.clone());
    let result = state
        .with_workspace(move |ws| {
            known_shop(&wanted)?;
            let library = ws.library(None)?;
            ws.edit_draft(&by, now, |d| {
                let shop = d.program.shops.get_mut(&wanted).ok_or_else(|| {
                    PublisherError::NotFound(format!("no shop is named `{wanted}` in the draft"))
                })?;
                submitted.apply(shop, &library)?;
                let dangling = dangling_targets(&d.program);
                if !dangling.is_empty() {
                    return Err(bad(format!(
                        "field `tags`: {} but no shop would have it: keep the tag or change them first",
                        dangling.join(", ")
                    )));
                }
                Ok(())
            })
            .map(|_| ())
        })
        .await;
    match result {
        Ok(()) => {
            let text = skycast_web::text(ctx.lang, "shops.saved").replace("{name}", &name);
            state.done(&ctx, Ok(text), &format!("/shops/{name}")).await
        }
        Err(e) if matches!(e.status(), StatusCode::BAD_REQUEST | StatusCode::CONFLICT) => {
            render_edit(
                &state,
                &ctx,
                name,
                Some(form),
                Some(e.public_message()),
                e.status(),
            )
            .await
        }
        Err(e) => state.error_page(&ctx, &e),
    }
}

// ---- Delete ----

async fn delete(State(state): State<Arc<WebState>>, ctx: Ctx, Path(name): Path<String>) -> Response {
    let wanted = name.clone();
    let players = state
        .with_db(move |db| {
            known_shop(&wanted)?;
            let ids: Vec<String> = db
                .players()?
                .into_iter()
                .filter(|p| p.shop == wanted)
                .map(|p| p.id)
                .collect();
            Ok(ids)
        })
        .await;
    let by = ctx.username().to_string();
    let now = state.now();
    let wanted = name.clone();
    let result = match players {
        Err(e) => Err(e),
        Ok(ids) if !ids.is_empty() => Err(PublisherError::Conflict(format!(
            "shop `{name}` cannot be deleted: players {} are registered for it and would find no schedule; \
             move them to another shop first",
            ids.join(", ")
        ))),
        Ok(_) => {
            state
                .with_workspace(move |ws| {
                    ws.edit_draft(&by, now, |d| {
                        if d.program.shops.remove(&wanted).is_none() {
                            return Err(PublisherError::NotFound(format!(
                                "no shop is named `{wanted}` in the draft"
                            )));
                        }
                        let dangling = dangling_targets(&d.program);
                        if !dangling.is_empty() {
                            return Err(PublisherError::Conflict(format!(
                                "shop `{wanted}` cannot be deleted: {}: change them first",
                                dangling.join(", ")
                            )));
                        }
                        Ok(())
                    })
                    .map(|_| ())
                })
                .await
        }
    };
    match result {
        Ok(()) => {
            let text = skycast_web::text(ctx.lang, "shops.deleted").replace("{name}", &name);
            state.done(&ctx, Ok(text), "/shops").await
        }
        Err(e) if e.status() == StatusCode::NOT_FOUND => state.error_page(&ctx, &e),
        Err(e) => {
            let back = if is_plain_name(&name) {
                format!("/shops/{name}")
            } else {
                "/shops".to_string()
            };
            state.done(&ctx, Err(e), &back).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opening_hours_accept_windows_and_empty_for_closed() {
        let cases = [
            ("09:00-19:00", Some("09:00-19:00")),
            (" 09:00 – 19:00 ", Some("09:00-19:00")),
            ("22:00-02:00", Some("22:00-02:00")),
            ("", Some("closed")),
            ("closed", Some("closed")),
            ("9h-19h", None),
            ("09:00", None),
            ("09:00-09:00", None),
            ("<script>", None),
        ];
        for (text, expected) in cases {
            let got = parse_hours("hours_mon", text);
            match expected {
                Some(want) => assert_eq!(got.unwrap().to_string(), want, "{text}"),
                None => assert!(
                    got.unwrap_err().to_string().contains("field `hours_mon`"),
                    "{text}"
                ),
            }
        }
    }

    #[test]
    fn shop_names_are_plain_and_not_all() {
        for ok in ["main", "lyon-2", "a_b", "9"] {
            assert!(check_shop_name("name", ok).is_ok(), "{ok}");
        }
        for refused in [
            "all",
            "",
            "Lyon",
            "-x",
            "a b",
            "x'; DROP TABLE players; --",
            &"a".repeat(65),
        ] {
            let e = check_shop_name("name", refused).unwrap_err().to_string();
            assert!(e.contains("field `name`"), "{refused}: {e}");
        }
    }

    #[test]
    fn weekdays_with_equal_hours_are_grouped() {
        let mut shop: Shop<MediaId> = Shop {
            tags: Vec::new(),
            hours: BTreeMap::new(),
            exceptions: BTreeMap::new(),
            closing_announcement: None,
        };
        for d in &Weekday::ALL[..5] {
            shop.hours.insert(*d, parse_hours("h", "09:00-19:00").unwrap());
        }
        shop.hours
            .insert(Weekday::Sat, parse_hours("h", "10:00-18:00").unwrap());
        let groups: Vec<(&str, &str, String)> = hours_groups(&shop)
            .into_iter()
            .map(|g| (g.first, g.last, g.hours))
            .collect();
        assert_eq!(
            groups,
            [
                ("mon", "fri", "09:00-19:00".to_string()),
                ("sat", "sat", "10:00-18:00".to_string()),
                ("sun", "sun", String::new())
            ]
        );
    }
}
