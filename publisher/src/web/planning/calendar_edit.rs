//! Changes the calendar makes to the draft, as JSON: create, change, delete and
//! re-insert a rule (each answer carries its inverse, so the page can undo), and
//! MP3 files dropped onto a slot (uploaded and checked as the library does, put
//! into a new playlist named after the slot, scheduled there). Each answer says in
//! words what changed (the draft's diff); a refused change leaves the draft as it
//! was and says why.

use std::sync::Arc;

use axum::extract::{Multipart, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use skycast_schema::{MediaKind, PlayOrder, Playlist, ScheduleRule, TimeWindow, Weekday};

use crate::describe::{diff, Change};
use crate::error::{PublisherError, Result};
use crate::web::form::{bad, shown};
use crate::web::upload::receive_uploads;
use crate::web::{Ctx, WebState};
use crate::workspace::{Draft, Workspace};

use super::rules::{form_of, rule_from_form};
use super::week::{rule_fingerprint, RuleForm};
use super::*;

/// What a calendar change does to the schedule's rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum Op {
    /// Append `rule`.
    Create,
    /// Replace rule `index` (still `fp`) by `rule`.
    Update,
    /// Remove rule `index` (still `fp`).
    Delete,
    /// Put `rule` back at `index` (undoing a delete).
    Insert,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Edit {
    op: Op,
    #[serde(default)]
    index: Option<usize>,
    #[serde(default)]
    fp: Option<String>,
    #[serde(default)]
    rule: Option<RuleForm>,
}

#[derive(Serialize)]
struct Said {
    change: Change,
    text: String,
}

/// The answer to a change that landed.
#[derive(Serialize)]
struct Done<U> {
    /// The draft's diff of this change, in words.
    said: Vec<Said>,
    /// The change that undoes this one.
    undo: U,
    /// The rule the change left in place (created, changed, re-inserted).
    index: Option<usize>,
}

pub(super) fn json_error(e: &PublisherError) -> Response {
    (
        e.status(),
        Json(serde_json::json!({ "error": e.public_message() })),
    )
        .into_response()
}

/// The rule at `index`, refused when another edit changed it since the page
/// showed it (`fp`).
fn current<'d>(d: &'d Draft, index: Option<usize>, fp: Option<&str>) -> Result<(usize, &'d ScheduleRule)> {
    let index = index.ok_or_else(|| bad("field `index`: say which rule to change"))?;
    let rule = d.program.schedule.get(index).ok_or_else(|| {
        PublisherError::NotFound(format!(
            "rule {} is not in the draft (someone else removed it): reload the calendar",
            index + 1
        ))
    })?;
    if fp.is_none_or(|fp| rule_fingerprint(rule) != fp) {
        return Err(PublisherError::Conflict(format!(
            "rule {} changed since the calendar was loaded (someone else edited the planning): reload and try again",
            index + 1
        )));
    }
    Ok((index, rule))
}

fn rule_of(edit: &Edit, d: &Draft) -> Result<ScheduleRule> {
    let form = edit
        .rule
        .as_ref()
        .ok_or_else(|| bad("field `rule`: the change carries no rule"))?;
    rule_from_form(form, &d.program)
}

/// Applies `edit` to the draft; returns its inverse and the rule it leaves in place.
fn apply(d: &mut Draft, edit: &Edit) -> Result<(Edit, Option<usize>)> {
    let undo = |op, index: usize, fp: Option<String>, rule: Option<RuleForm>| Edit {
        op,
        index: Some(index),
        fp,
        rule,
    };
    match edit.op {
        Op::Create => {
            let rule = rule_of(edit, d)?;
            let fp = rule_fingerprint(&rule);
            d.program.schedule.push(rule);
            let index = d.program.schedule.len() - 1;
            Ok((undo(Op::Delete, index, Some(fp), None), Some(index)))
        }
        Op::Update => {
            let (index, _) = current(d, edit.index, edit.fp.as_deref())?;
            let rule = rule_of(edit, d)?;
            let fp = rule_fingerprint(&rule);
            let old = std::mem::replace(&mut d.program.schedule[index], rule);
            Ok((
                undo(Op::Update, index, Some(fp), Some(form_of(&old))),
                Some(index),
            ))
        }
        Op::Delete => {
            let (index, _) = current(d, edit.index, edit.fp.as_deref())?;
            let old = d.program.schedule.remove(index);
            Ok((undo(Op::Insert, index, None, Some(form_of(&old))), None))
        }
        Op::Insert => {
            let rule = rule_of(edit, d)?;
            let fp = rule_fingerprint(&rule);
            let index = edit.index.unwrap_or(usize::MAX).min(d.program.schedule.len());
            d.program.schedule.insert(index, rule);
            Ok((undo(Op::Delete, index, Some(fp), None), Some(index)))
        }
    }
}

/// Runs `change` on the draft and says what it did in words. `change` returns
/// the change that undoes it and the position it left in place.
async fn run_change<U: Send + 'static>(
    state: &Arc<WebState>,
    ctx: &Ctx,
    change: impl FnOnce(&Workspace, &mut Draft) -> Result<(U, Option<usize>)> + Send + 'static,
) -> Result<Done<U>> {
    let by = ctx.username().to_string();
    let now = state.now();
    let result = state
        .with_workspace(move |ws| {
            let before = ws.draft()?;
            let mut outcome = None;
            let after = ws.edit_draft(&by, now, |d| {
                outcome = Some(change(ws, d)?);
                Ok(())
            })?;
            let (undo, index) =
                outcome.ok_or_else(|| PublisherError::Internal("the change did not run".into()))?;
            let (a, b) = (
                ws.draft_manifest(&before, &by, now)?,
                ws.draft_manifest(&after, &by, now)?,
            );
            let said = diff(&a, &b)
                .into_iter()
                .flat_map(|s| s.lines)
                .map(|l| Said {
                    change: l.change,
                    text: l.text,
                })
                .collect();
            Ok(Done { said, undo, index })
        })
        .await;
    match &result {
        Ok(done) => {
            tracing::info!(user = %ctx.username(), lines = done.said.len(), "calendar change saved in the draft")
        }
        Err(e) => tracing::warn!(user = %ctx.username(), reason = %e, "calendar change refused"),
    }
    result
}

/// [`run_change`], answered as JSON: what it did and its undo, or why not.
pub(super) async fn change_draft<U: Serialize + Send + 'static>(
    state: &Arc<WebState>,
    ctx: &Ctx,
    change: impl FnOnce(&Workspace, &mut Draft) -> Result<(U, Option<usize>)> + Send + 'static,
) -> Response {
    match run_change(state, ctx, change).await {
        Ok(done) => Json(done).into_response(),
        Err(e) => json_error(&e),
    }
}

/// The change of `body`, or why it is not one.
pub(super) fn parse_change<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T> {
    serde_json::from_slice(body).map_err(|e| {
        bad(format!(
            "the change is not the JSON the calendar sends ({e}): reload the page"
        ))
    })
}

pub(super) async fn edit_rule(
    State(state): State<Arc<WebState>>,
    ctx: Ctx,
    body: axum::body::Bytes,
) -> Response {
    let edit: Edit = match parse_change(&body) {
        Ok(e) => e,
        Err(e) => return json_error(&e),
    };
    change_draft(&state, &ctx, move |_, d| apply(d, &edit)).await
}

/// A playlist name for files dropped on `shop`, `day` at `from`: `main-sat-1400`,
/// then `main-sat-1400-2`… when taken.
fn slot_playlist_name(d: &Draft, shop: &str, day: Weekday, from: &str) -> String {
    let base = format!("{shop}-{}-{}", day.key(), from.replace(':', ""));
    let mut name = base.clone();
    let mut n = 2;
    while d.program.playlists.contains_key(&name) {
        name = format!("{base}-{n}");
        n += 1;
    }
    name
}

/// MP3 files dropped on a slot of a shop's day: they are checked and stored as an
/// upload to the library is, then played there every such weekday by a new
/// playlist and rule. Nothing is scheduled unless every file decoded.
pub(super) async fn drop_files(
    State(state): State<Arc<WebState>>,
    ctx: Ctx,
    headers: HeaderMap,
    multipart: Multipart,
) -> Response {
    let wants_json = headers
        .get(axum::http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/json"));
    let mut back = "/marketing/calendar".to_string();
    let result = async {
        let outcome = receive_uploads(&state, &ctx, multipart, MediaKind::Music).await?;
        outcome.summary(ctx.lang)?;
        let field = |name: &str| outcome.fields.get(name).cloned().unwrap_or_default();
        let (shop, date, from, to) = (field("shop"), field("date"), field("from_time"), field("to_time"));
        back = format!(
            "/marketing/calendar?shop={}&week={}",
            url::form_urlencoded::byte_serialize(shop.as_bytes()).collect::<String>(),
            url::form_urlencoded::byte_serialize(date.as_bytes()).collect::<String>()
        );
        let items: Vec<_> = outcome.stored.iter().map(|m| m.id).collect();
        run_change(&state, &ctx, move |_, d| {
            if !d.program.shops.contains_key(&shop) {
                return Err(bad(format!("field `shop`: no shop is named `{}`", shown(&shop))));
            }
            let day = Weekday::of(parse_date("date", &date)?);
            let window = TimeWindow {
                start: parse_time("from_time", &from)?,
                end: parse_time("to_time", &to)?,
            };
            if window.start == window.end {
                return Err(bad("field `to_time`: must differ from `from_time`"));
            }
            let name = slot_playlist_name(d, &shop, day, &from);
            d.program.playlists.insert(
                name.clone(),
                Playlist {
                    order: PlayOrder::default(),
                    items,
                },
            );
            let form = RuleForm {
                playlist: name,
                shops: vec![shop.clone()],
                days: vec![day.key().to_string()],
                from_time: from.clone(),
                to_time: to.clone(),
                priority: "0".to_string(),
                ..RuleForm::default()
            };
            let create = Edit {
                op: Op::Create,
                index: None,
                fp: None,
                rule: Some(form),
            };
            apply(d, &create)
        })
        .await
    }
    .await;
    // The calendar's script gets JSON; a plain form (no script) gets the
    // calendar page back with the outcome as a message.
    match (wants_json, result) {
        (true, Ok(done)) => Json(done).into_response(),
        (true, Err(e)) => json_error(&e),
        (false, result) => {
            let text = result.map(|_| skycast_web::text(ctx.lang, "calendar.dropped"));
            state.done(&ctx, text, &back).await
        }
    }
}

#[cfg(test)]
mod tests {
    use axum::http::StatusCode;

    use super::*;

    fn draft() -> Draft {
        let mut d = Draft::empty();
        d.program = serde_norway::from_str(
            "{playlists: {a: {items: []}, b: {items: []}}, shops: {main: {hours: {}}}}",
        )
        .unwrap();
        d
    }

    fn form(playlist: &str, from: &str, to: &str) -> RuleForm {
        RuleForm {
            playlist: playlist.into(),
            shops: vec!["main".into()],
            days: vec!["sat".into()],
            from_time: from.into(),
            to_time: to.into(),
            priority: "0".into(),
            ..RuleForm::default()
        }
    }

    fn create(d: &mut Draft, rule: RuleForm) -> (Edit, Option<usize>) {
        let edit = Edit {
            op: Op::Create,
            index: None,
            fp: None,
            rule: Some(rule),
        };
        apply(d, &edit).unwrap()
    }

    /// Every change followed by its undo gives the draft back, whatever the op.
    #[test]
    fn each_change_and_its_undo_give_the_draft_back() {
        let mut d = draft();
        let (undo_create, at) = create(&mut d, form("a", "14:00", "16:00"));
        assert_eq!(at, Some(0));
        let start = d.clone();
        let fp = rule_fingerprint(&d.program.schedule[0]);
        let cases = [
            Edit {
                op: Op::Update,
                index: Some(0),
                fp: Some(fp.clone()),
                rule: Some(form("b", "15:00", "17:00")),
            },
            Edit {
                op: Op::Delete,
                index: Some(0),
                fp: Some(fp.clone()),
                rule: None,
            },
        ];
        for edit in cases {
            let mut changed = start.clone();
            let (undo, _) = apply(&mut changed, &edit).unwrap();
            assert_ne!(changed, start, "{edit:?}");
            apply(&mut changed, &undo).unwrap();
            assert_eq!(changed, start, "{edit:?} then {undo:?}");
        }
        apply(&mut d, &undo_create).unwrap();
        assert!(d.program.schedule.is_empty());
    }

    #[test]
    fn a_change_to_a_rule_someone_else_changed_is_refused() {
        let mut d = draft();
        create(&mut d, form("a", "14:00", "16:00"));
        let before = d.clone();
        for (index, fp, status) in [
            (Some(0), Some("0000"), StatusCode::CONFLICT),
            (Some(0), None, StatusCode::CONFLICT),
            (Some(7), Some("0000"), StatusCode::NOT_FOUND),
            (None, None, StatusCode::BAD_REQUEST),
        ] {
            let e = apply(
                &mut d,
                &Edit {
                    op: Op::Delete,
                    index,
                    fp: fp.map(str::to_string),
                    rule: None,
                },
            )
            .unwrap_err();
            assert_eq!(e.status(), status, "{e}");
            assert_eq!(d, before);
        }
    }

    #[test]
    fn dropped_files_get_a_playlist_named_after_their_slot() {
        let mut d = draft();
        assert_eq!(
            slot_playlist_name(&d, "main", Weekday::Sat, "14:00"),
            "main-sat-1400"
        );
        d.program.playlists.insert(
            "main-sat-1400".into(),
            Playlist {
                order: PlayOrder::default(),
                items: vec![],
            },
        );
        assert_eq!(
            slot_playlist_name(&d, "main", Weekday::Sat, "14:00"),
            "main-sat-1400-2"
        );
    }
}
