//! Urlencoded forms and queries read as ordered pairs, because a name may repeat
//! (checkboxes, playlist items): one reader for every page, and the helpers
//! pages use to refuse what was sent.

use std::collections::BTreeSet;

use skycast_schema::MediaId;

use super::media::parse_media_id;
use crate::error::{PublisherError, Result};

/// The fields of a urlencoded form or query in order; repeated names kept.
pub(super) struct Fields(Vec<(String, String)>);

impl Fields {
    /// A urlencoded body or query string.
    pub(super) fn parse(bytes: &[u8]) -> Fields {
        Fields(url::form_urlencoded::parse(bytes).into_owned().collect())
    }

    /// Pairs decoded already (axum's `Form<Vec<(String, String)>>`).
    pub(super) fn new(pairs: Vec<(String, String)>) -> Fields {
        Fields(pairs)
    }

    /// The first value of `name` as sent; `None` when absent.
    pub(super) fn first(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// The last value of `name` as sent (a repeat overrides); `None` when absent.
    pub(super) fn last(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `name` as sent, in order.
    pub(super) fn values(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The first value of `name`, trimmed; empty when absent.
    pub(super) fn get(&self, name: &str) -> String {
        self.first(name).map(str::trim).unwrap_or_default().to_string()
    }

    /// The first value of `name`, trimmed, or `default` when absent or empty.
    pub(super) fn get_or(&self, name: &str, default: &str) -> String {
        let value = self.get(name);
        if value.is_empty() {
            default.to_string()
        } else {
            value
        }
    }

    /// Every value of `name`, trimmed, in order; empty ones kept, so that
    /// parallel fields (a date and its hours) stay aligned.
    pub(super) fn all(&self, name: &str) -> Vec<String> {
        self.values(name)
            .into_iter()
            .map(|v| v.trim().to_string())
            .collect()
    }

    /// Every non-empty value of `name`, trimmed, in order, once each.
    pub(super) fn distinct(&self, name: &str) -> Vec<String> {
        let mut seen = BTreeSet::new();
        self.all(name)
            .into_iter()
            .filter(|v| !v.is_empty() && seen.insert(v.clone()))
            .collect()
    }

    /// Every value of `name` read as a media id, in order; one that is not refuses all.
    pub(super) fn media_ids(&self, name: &str) -> Result<Vec<MediaId>> {
        self.values(name).into_iter().map(parse_media_id).collect()
    }
}

/// A refusal of what the user sent, shown to them (400).
pub(super) fn bad(text: impl Into<String>) -> PublisherError {
    PublisherError::BadRequest(text.into())
}

/// At most this many characters of a user's text are echoed in a message.
pub(super) fn shown(text: &str) -> String {
    let mut out: String = text.chars().filter(|c| !c.is_control()).take(60).collect();
    if text.chars().count() > 60 {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_keep_repeats_and_say_how_they_trim() {
        let f = Fields::parse(b"a=+x+&b=1&b=+2&b=&b=1&c=&c=z");
        assert_eq!(f.first("a"), Some(" x "));
        assert_eq!(f.get("a"), "x");
        assert_eq!(f.first("nope"), None);
        assert_eq!(f.get("nope"), "");
        assert_eq!(f.get_or("c", "d"), "d");
        assert_eq!(f.get_or("nope", "d"), "d");
        assert_eq!(f.last("c"), Some("z"));
        assert_eq!(f.values("b"), vec!["1", " 2", "", "1"]);
        assert_eq!(f.all("b"), vec!["1", "2", "", "1"]);
        assert_eq!(f.distinct("b"), vec!["1", "2"]);
        assert!(f.media_ids("b").is_err());
        assert_eq!(f.media_ids("nope").unwrap(), Vec::<MediaId>::new());
    }
}
