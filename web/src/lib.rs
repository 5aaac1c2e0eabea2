//! The web UI's assets, without any I/O: page templates (minijinja, auto-escaped),
//! the style sheet and small scripts, and the French and English texts.
//!
//! The publisher renders pages with [`environment`] and serves [`asset`]s; which
//! language a page is in comes from the browser's `Accept-Language` ([`Lang::from_accept_language`]).

use std::collections::BTreeMap;
use std::sync::OnceLock;

use minijinja::{Environment, State, Value};

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/embedded.rs"));
}

/// The languages pages are written in. English when the browser asks for neither.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Lang {
    #[default]
    En,
    Fr,
}

impl Lang {
    pub fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Fr => "fr",
        }
    }

    pub fn from_code(code: &str) -> Option<Lang> {
        match code.trim().to_ascii_lowercase().split(['-', '_']).next()? {
            "en" => Some(Lang::En),
            "fr" => Some(Lang::Fr),
            _ => None,
        }
    }

    /// The supported language the browser prefers most (`fr-FR,fr;q=0.9,en;q=0.8`).
    pub fn from_accept_language(header: &str) -> Lang {
        let mut best: Option<(f32, usize, Lang)> = None;
        for (pos, part) in header.split(',').enumerate() {
            let mut pieces = part.split(';');
            let Some(lang) = pieces.next().and_then(Lang::from_code) else {
                continue;
            };
            let q = pieces
                .find_map(|p| p.trim().strip_prefix("q="))
                .and_then(|q| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            // Highest q wins; on a tie, the one listed first.
            let better = match best {
                None => q > 0.0,
                Some((bq, bpos, _)) => q > bq || (q == bq && pos < bpos),
            };
            if better {
                best = Some((q, pos, lang));
            }
        }
        best.map_or(Lang::En, |(_, _, lang)| lang)
    }
}

type Texts = BTreeMap<String, String>;

fn flatten(prefix: &str, table: &toml::Table, out: &mut Texts) {
    for (key, value) in table {
        let key = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        match value {
            toml::Value::Table(t) => flatten(&key, t, out),
            toml::Value::String(s) => {
                out.insert(key, s.clone());
            }
            other => {
                out.insert(key, other.to_string());
            }
        }
    }
}

fn texts(lang: Lang) -> &'static Texts {
    static TEXTS: OnceLock<[Texts; 2]> = OnceLock::new();
    let all = TEXTS.get_or_init(|| {
        // Every `<area>.<lang>.toml` file adds its keys, so each page's texts live in
        // a file of its own.
        let load = |suffix: &str| {
            let mut out = Texts::new();
            for (name, text) in embedded::TEXTS.iter().filter(|(n, _)| n.ends_with(suffix)) {
                // A broken text file is a build defect that the crate's tests catch.
                let table: toml::Table = text
                    .parse()
                    .unwrap_or_else(|e| panic!("web/i18n/{name} is not valid TOML: {e}"));
                flatten("", &table, &mut out);
            }
            out
        };
        [load(".en.toml"), load(".fr.toml")]
    });
    match lang {
        Lang::En => &all[0],
        Lang::Fr => &all[1],
    }
}

/// The text for `key` in `lang`; the English one when French lacks it, the key
/// itself when both do (a test keeps both files complete).
pub fn text(lang: Lang, key: &str) -> String {
    texts(lang)
        .get(key)
        .or_else(|| texts(Lang::En).get(key))
        .cloned()
        .unwrap_or_else(|| key.to_string())
}

/// `t("key")` in a template: the text in the page's language (the `lang` variable).
fn t(state: &State, key: &str) -> String {
    let lang = state
        .lookup("lang")
        .and_then(|v| v.as_str().and_then(Lang::from_code))
        .unwrap_or_default();
    text(lang, key)
}

/// Every template, with auto-escaping on (the default for `.html`) and `t()` registered.
pub fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    for (name, source) in embedded::TEMPLATES {
        // Templates are part of the crate; the crate's tests compile every one.
        env.add_template(name, source).expect("template compiles");
    }
    env.add_function("t", t);
    env.add_filter("duration", |ms: Value| -> String {
        let ms = ms.as_i64().unwrap_or(0).max(0);
        let secs = ms / 1000;
        format!("{}:{:02}", secs / 60, secs % 60)
    });
    env
}

/// A static file (`style.css`, `app.js`) with its content type.
pub fn asset(name: &str) -> Option<(&'static str, &'static str)> {
    let (_, body) = embedded::STATIC.iter().find(|(n, _)| *n == name)?;
    let mime = match name.rsplit('.').next() {
        Some("css") => "text/css; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("svg") => "image/svg+xml",
        _ => "text/plain; charset=utf-8",
    };
    Some((body, mime))
}

/// Names of all templates, for tests that render each one.
pub fn template_names() -> impl Iterator<Item = &'static str> {
    embedded::TEMPLATES.iter().map(|(n, _)| *n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_language_picks_the_preferred_supported_language() {
        let cases = [
            ("fr-FR,fr;q=0.9,en-US;q=0.8,en;q=0.7", Lang::Fr),
            ("en-GB,en;q=0.9,fr;q=0.8", Lang::En),
            ("de-DE,de;q=0.9,fr;q=0.5", Lang::Fr),
            ("de-DE", Lang::En),
            ("", Lang::En),
            ("en;q=0.2, fr;q=0.8", Lang::Fr),
            ("fr;q=0", Lang::En),
            ("FR", Lang::Fr),
        ];
        for (header, want) in cases {
            assert_eq!(Lang::from_accept_language(header), want, "{header}");
        }
    }

    #[test]
    fn both_languages_have_the_same_keys() {
        let en: Vec<&String> = texts(Lang::En).keys().collect();
        let fr: Vec<&String> = texts(Lang::Fr).keys().collect();
        let missing_fr: Vec<_> = en.iter().filter(|k| !texts(Lang::Fr).contains_key(**k)).collect();
        let missing_en: Vec<_> = fr.iter().filter(|k| !texts(Lang::En).contains_key(**k)).collect();
        assert!(missing_fr.is_empty(), "missing in *.fr.toml: {missing_fr:?}");
        assert!(missing_en.is_empty(), "missing in *.en.toml: {missing_en:?}");
    }

    #[test]
    fn every_text_a_template_asks_for_exists() {
        let call = "t(\"";
        let mut missing = Vec::new();
        for (name, source) in embedded::TEMPLATES {
            for piece in source.split(call).skip(1) {
                let key = piece.split('"').next().unwrap_or_default();
                // `t("role." ~ user.role)` builds its key at render time.
                let dynamic = key.ends_with('.');
                if !dynamic && !texts(Lang::En).contains_key(key) {
                    missing.push(format!("{name}: {key}"));
                }
            }
        }
        assert!(
            missing.is_empty(),
            "texts missing from web/i18n/*.en.toml: {missing:?}"
        );
    }

    #[test]
    fn every_template_compiles_and_autoescapes() {
        let mut env = environment();
        assert!(template_names().count() > 0);
        for name in template_names() {
            env.get_template(name).unwrap();
        }
        env.add_template("probe.html", "{{ x }}").unwrap();
        let rendered = env
            .get_template("probe.html")
            .unwrap()
            .render(minijinja::context! { x => "<script>alert(1)</script>" })
            .unwrap();
        assert!(!rendered.contains("<script>"), "{rendered}");
    }

    #[test]
    fn t_uses_the_page_language() {
        let env = environment();
        let en = env.render_str("{{ t(\"common.logout\") }}", minijinja::context! { lang => "en" });
        let fr = env.render_str("{{ t(\"common.logout\") }}", minijinja::context! { lang => "fr" });
        assert_ne!(en.unwrap(), fr.unwrap());
    }
}
