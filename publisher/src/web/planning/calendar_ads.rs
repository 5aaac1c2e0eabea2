//! Sales' side of the calendar: an ad dropped on a minute of a shop's day becomes
//! a fixed-time ad on that date, checked as the ads page checks its rules; a pin
//! removed takes its time out of its rule (the rule goes with its last time).
//! Each answer says what changed in words and carries its undo, as the rules'
//! changes in `calendar_edit` do.

use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use skycast_schema::{AdRule, DateRange, MediaId, MediaKind, ShopTarget};

use crate::error::{PublisherError, Result};
use crate::web::ads::{check_media, check_shops};
use crate::web::form::bad;
use crate::web::{Ctx, WebState};
use crate::workspace::{Draft, Workspace};

use super::calendar_edit::{change_draft, json_error, parse_change};
use super::*;

/// What a change does to the draft's ad rules.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub(super) enum AdEdit {
    /// A new fixed-time ad: `media` at `at` on `date`, in `shop`.
    Create {
        media: String,
        shop: String,
        date: String,
        at: String,
    },
    /// Takes `at` out of ad rule `index` (still `fp`); the rule goes with its last time.
    RemoveTime { index: usize, fp: String, at: String },
    /// Puts `at` back into ad rule `index` (undoing a removed time).
    AddTime { index: usize, fp: String, at: String },
    /// Puts a whole rule back at `index` (undoing the removal of its last time).
    Insert { index: usize, rule: AdRule<MediaId> },
    /// Removes ad rule `index` (still `fp`) (undoing a create or an insert).
    Delete { index: usize, fp: String },
}

fn ad_at(d: &Draft, index: usize, fp: &str) -> Result<()> {
    let rule = d.program.ads.get(index).ok_or_else(|| {
        PublisherError::NotFound(format!(
            "ad rule {} is not in the draft (someone else removed it): reload the calendar",
            index + 1
        ))
    })?;
    if fingerprint(rule) != fp {
        return Err(PublisherError::Conflict(format!(
            "ad rule {} changed since the calendar was loaded (someone else edited the ads): reload and try again",
            index + 1
        )));
    }
    Ok(())
}

/// A rule put back by an undo: the media must still be an ad or an
/// announcement of the library, and its shops still exist.
fn check_restored(ws: &Workspace, d: &Draft, rule: &AdRule<MediaId>) -> Result<()> {
    check_media(
        ws,
        "media",
        &rule.media.to_string(),
        &[MediaKind::Ad, MediaKind::Announcement],
    )?;
    let shops: Vec<String> = rule.shops.iter().map(ToString::to_string).collect();
    check_shops(&shops, &d.program, "the draft")?;
    Ok(())
}

fn apply(ws: &Workspace, d: &mut Draft, edit: AdEdit) -> Result<(AdEdit, Option<usize>)> {
    match edit {
        AdEdit::Create {
            media,
            shop,
            date,
            at,
        } => {
            let media = check_media(ws, "media", &media, &[MediaKind::Ad, MediaKind::Announcement])?;
            let shops = check_shops(std::slice::from_ref(&shop), &d.program, "the draft")?;
            if shops.contains(&ShopTarget::All) {
                return Err(bad("field `shop`: drop the ad on one shop's calendar"));
            }
            let day = parse_date("date", &date)?;
            let rule = AdRule {
                media: media.id,
                shops,
                every_tracks: None,
                at: Some(vec![parse_time("at", &at)?]),
                dates: Some(DateRange {
                    first: day,
                    last: day,
                }),
                start: None,
                after: None,
            };
            let fp = fingerprint(&rule);
            d.program.ads.push(rule);
            let index = d.program.ads.len() - 1;
            Ok((AdEdit::Delete { index, fp }, Some(index)))
        }
        AdEdit::RemoveTime { index, fp, at } => {
            ad_at(d, index, &fp)?;
            let time = parse_time("at", &at)?;
            let rule = &mut d.program.ads[index];
            let times = rule.at.as_mut().filter(|t| t.contains(&time)).ok_or_else(|| {
                PublisherError::Conflict(format!(
                    "ad rule {} plays nothing at {at}: reload the calendar",
                    index + 1
                ))
            })?;
            if times.len() == 1 {
                let old = d.program.ads.remove(index);
                return Ok((AdEdit::Insert { index, rule: old }, None));
            }
            times.retain(|t| *t != time);
            let fp = fingerprint(rule);
            Ok((AdEdit::AddTime { index, fp, at }, Some(index)))
        }
        AdEdit::AddTime { index, fp, at } => {
            ad_at(d, index, &fp)?;
            let time = parse_time("at", &at)?;
            let rule = &mut d.program.ads[index];
            let times = rule.at.as_mut().ok_or_else(|| {
                bad(format!(
                    "ad rule {} plays every few tracks, not at times",
                    index + 1
                ))
            })?;
            if !times.contains(&time) {
                times.push(time);
                times.sort();
            }
            let fp = fingerprint(rule);
            Ok((AdEdit::RemoveTime { index, fp, at }, Some(index)))
        }
        AdEdit::Insert { index, rule } => {
            check_restored(ws, d, &rule)?;
            let fp = fingerprint(&rule);
            let index = index.min(d.program.ads.len());
            d.program.ads.insert(index, rule);
            Ok((AdEdit::Delete { index, fp }, Some(index)))
        }
        AdEdit::Delete { index, fp } => {
            ad_at(d, index, &fp)?;
            let old = d.program.ads.remove(index);
            Ok((AdEdit::Insert { index, rule: old }, None))
        }
    }
}

pub(super) async fn edit_ad(
    State(state): State<Arc<WebState>>,
    ctx: Ctx,
    body: axum::body::Bytes,
) -> Response {
    let edit: AdEdit = match parse_change(&body) {
        Ok(e) => e,
        Err(e) => return json_error(&e),
    };
    change_draft(&state, &ctx, move |ws, d| apply(ws, d, edit)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ad_rule_fingerprint_follows_its_content() {
        let rule: AdRule<MediaId> = serde_norway::from_str(&format!(
            "{{media: {}, shops: [main], at: ['10:35'], dates: 2026-12-15..2026-12-15}}",
            MediaId::of(b"bread")
        ))
        .unwrap();
        let mut other = rule.clone();
        assert_eq!(fingerprint(&rule), fingerprint(&other));
        other.at = Some(vec!["10:40".parse().unwrap()]);
        assert_ne!(fingerprint(&rule), fingerprint(&other));
    }
}
