//! Which shops a schedule rule, an ad rule or an interrupt is for: `all`,
//! `tag:NAME` (every shop with that tag) or a shop's name. Parsed and written only
//! here; manifests, plannings and web forms hold the typed value.

use std::fmt;
use std::str::FromStr;

use crate::names::{is_plain_name, PLAIN_NAME_RULE};

/// The text of [`ShopTarget::All`].
pub const ALL_SHOPS: &str = "all";
/// The prefix of [`ShopTarget::Tag`].
pub const TAG_PREFIX: &str = "tag:";

/// A shop selector as manifests and plannings write it (`shops: [all]`,
/// `shops: [tag:pilot, lyon]`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ShopTarget {
    /// `all`: every shop.
    All,
    /// `tag:NAME`: every shop whose `tags` hold NAME.
    Tag(String),
    /// A shop's name.
    Shop(String),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{text}` is not a shop target: write `all`, `tag:NAME` or a shop name, each name {PLAIN_NAME_RULE}")]
pub struct ShopTargetError {
    pub text: String,
}

impl ShopTarget {
    /// Whether this target selects the shop `shop_name` carrying `shop_tags`.
    pub fn matches(&self, shop_name: &str, shop_tags: &[String]) -> bool {
        match self {
            ShopTarget::All => true,
            ShopTarget::Tag(tag) => shop_tags.iter().any(|t| t == tag),
            ShopTarget::Shop(name) => name == shop_name,
        }
    }

    /// Whether any of `targets` selects the shop.
    pub fn any_matches(targets: &[ShopTarget], shop_name: &str, shop_tags: &[String]) -> bool {
        targets.iter().any(|t| t.matches(shop_name, shop_tags))
    }

    /// `all`, `tag` or `shop`: how pages label a target.
    pub fn kind(&self) -> &'static str {
        match self {
            ShopTarget::All => "all",
            ShopTarget::Tag(_) => "tag",
            ShopTarget::Shop(_) => "shop",
        }
    }

    /// The targets as a planning writes them, comma-separated: `lyon, tag:pilot`.
    pub fn join(targets: &[ShopTarget]) -> String {
        targets
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// `all` makes every other target redundant, so a list holding it is just `[all]`.
    pub fn normalized(targets: Vec<ShopTarget>) -> Vec<ShopTarget> {
        if targets.contains(&ShopTarget::All) {
            vec![ShopTarget::All]
        } else {
            targets
        }
    }
}

/// Whether `name` may name a shop: a plain name other than `all`, which targets
/// every shop.
pub fn is_shop_name(name: &str) -> bool {
    is_plain_name(name) && name != ALL_SHOPS
}

impl FromStr for ShopTarget {
    type Err = ShopTargetError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let target = match s.strip_prefix(TAG_PREFIX) {
            _ if s == ALL_SHOPS => Some(ShopTarget::All),
            Some(tag) => is_plain_name(tag).then(|| ShopTarget::Tag(tag.to_string())),
            None => is_plain_name(s).then(|| ShopTarget::Shop(s.to_string())),
        };
        target.ok_or_else(|| ShopTargetError { text: s.to_string() })
    }
}

impl fmt::Display for ShopTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ShopTarget::All => f.write_str(ALL_SHOPS),
            ShopTarget::Tag(tag) => write!(f, "{TAG_PREFIX}{tag}"),
            ShopTarget::Shop(name) => f.write_str(name),
        }
    }
}
serde_via_text!(ShopTarget);

/// Compares with the text form, so `rule.shops == ["all"]` reads as it is written.
impl PartialEq<str> for ShopTarget {
    fn eq(&self, other: &str) -> bool {
        match self {
            ShopTarget::All => other == ALL_SHOPS,
            ShopTarget::Tag(tag) => other.strip_prefix(TAG_PREFIX) == Some(tag.as_str()),
            ShopTarget::Shop(name) => name == other,
        }
    }
}

impl PartialEq<&str> for ShopTarget {
    fn eq(&self, other: &&str) -> bool {
        self == *other
    }
}

impl PartialEq<String> for ShopTarget {
    fn eq(&self, other: &String) -> bool {
        self == other.as_str()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shop_targets_round_trip_through_their_text() {
        let table = [
            ("all", ShopTarget::All),
            ("tag:pilot", ShopTarget::Tag("pilot".into())),
            ("tag:9-a_b", ShopTarget::Tag("9-a_b".into())),
            ("lyon", ShopTarget::Shop("lyon".into())),
            ("main-1", ShopTarget::Shop("main-1".into())),
            // `tag` alone is a shop name; only the prefix with its colon makes a tag.
            ("tag", ShopTarget::Shop("tag".into())),
            ("all-day", ShopTarget::Shop("all-day".into())),
        ];
        for (text, target) in table {
            assert_eq!(text.parse::<ShopTarget>(), Ok(target.clone()), "{text}");
            assert_eq!(target.to_string(), text);
            assert!(target == text, "{text} compares equal to its text");
            let yaml = serde_norway::to_string(&target).unwrap();
            assert_eq!(
                serde_norway::from_str::<ShopTarget>(&yaml).unwrap(),
                target,
                "{yaml}"
            );
        }
    }

    #[test]
    fn malformed_shop_targets_are_refused_naming_the_text() {
        for text in [
            "",
            "tag:",
            "tag:Pilot",
            "tag:tag:x",
            "Lyon",
            "-x",
            "_x",
            "all shops",
            "ALL",
            "a:b",
        ] {
            let err = text.parse::<ShopTarget>().unwrap_err().to_string();
            assert!(err.contains(&format!("`{text}`")), "{err}");
            assert!(err.contains("`tag:NAME`"), "{err}");
            let yaml = format!("{text:?}");
            assert!(serde_norway::from_str::<ShopTarget>(&yaml).is_err(), "{yaml}");
        }
    }

    #[test]
    fn targets_select_shops_by_name_tag_or_all() {
        let tags = ["pilot".to_string(), "north".to_string()];
        let table = [
            ("all", true),
            ("lille", true),
            ("lyon", false),
            ("tag:north", true),
            ("tag:south", false),
        ];
        for (text, selected) in table {
            let target: ShopTarget = text.parse().unwrap();
            assert_eq!(target.matches("lille", &tags), selected, "{text}");
        }
        let lyon_only = [ShopTarget::Shop("lyon".into())];
        assert!(!ShopTarget::any_matches(&lyon_only, "lille", &tags));
        assert!(ShopTarget::any_matches(&lyon_only, "lyon", &[]));
    }

    #[test]
    fn shop_names_are_plain_names_but_all() {
        for (name, ok) in [
            ("lyon", true),
            ("all-day", true),
            ("all", false),
            ("-x", false),
            ("Lyon", false),
        ] {
            assert_eq!(is_shop_name(name), ok, "{name}");
        }
    }

    #[test]
    fn all_stands_alone_in_a_list() {
        let main = ShopTarget::Shop("main".into());
        assert_eq!(
            ShopTarget::normalized(vec![main.clone(), ShopTarget::All]),
            [ShopTarget::All]
        );
        assert_eq!(ShopTarget::normalized(vec![main.clone()]), vec![main.clone()]);
        assert_eq!(
            ShopTarget::join(&[main, ShopTarget::Tag("pilot".into())]),
            "main, tag:pilot"
        );
    }
}
