//! A pre-pass over YAML text that refuses repeated mapping keys at any depth.
//!
//! serde drops the location of duplicate struct fields and silently keeps the last
//! of two equal map keys; a manifest is a security document, so both are errors
//! here, reported with the key path and line.

use std::cell::Cell;
use std::collections::BTreeSet;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

/// Parses `text` as YAML and fails on the first mapping that repeats a key.
pub fn check_no_duplicate_keys(text: &str) -> Result<(), serde_norway::Error> {
    check_flow_depth(text)?;
    // Every value takes at least one byte of text unless an alias (`*name`) repeats
    // it; a budget of values per byte stops an alias bomb in time linear in its size
    // (serde_norway alone replays up to 100 aliases per event of the document).
    let budget = Cell::new(text.len().saturating_mul(2).saturating_add(64));
    serde_norway::Deserializer::from_str(text)
        .deserialize_any(AnyVisitor(&budget))
        .map(|_| ())
}

/// Deepest `[`/`{` nesting a document may have. serde_norway refuses more than 128
/// levels anyway, but only after libyaml has scanned them, in time quadratic in the
/// depth (100,000 `[` took minutes).
const MAX_FLOW_DEPTH: usize = 128;

/// Refuses text nested deeper than [`MAX_FLOW_DEPTH`] before libyaml sees it.
/// Brackets are counted everywhere, quoted or not, so no quoting hides them; only
/// text with more than 128 unclosed brackets is refused, which no manifest has.
fn check_flow_depth(text: &str) -> Result<(), serde_norway::Error> {
    let mut depth = 0usize;
    for b in text.bytes() {
        match b {
            b'[' | b'{' => depth += 1,
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => continue,
        }
        if depth > MAX_FLOW_DEPTH {
            return Err(de::Error::custom(format!(
                "YAML is nested more than {MAX_FLOW_DEPTH} levels deep"
            )));
        }
    }
    Ok(())
}

struct AnyValue;

/// Visits any value, spending one unit of the budget per value.
#[derive(Clone, Copy)]
struct AnyVisitor<'a>(&'a Cell<usize>);

impl AnyVisitor<'_> {
    fn spend<E: de::Error>(self) -> Result<AnyValue, E> {
        match self.0.get().checked_sub(1) {
            Some(left) => {
                self.0.set(left);
                Ok(AnyValue)
            }
            None => Err(E::custom(
                "YAML expands to more values than its size allows: aliases (`*name`) must not multiply it",
            )),
        }
    }
}

impl<'de> DeserializeSeed<'de> for AnyVisitor<'_> {
    type Value = AnyValue;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<AnyValue, D::Error> {
        d.deserialize_any(self)
    }
}

/// Reads one mapping key and records it in `seen`, failing if it is already there.
/// The check runs while the key scalar is read, so the error carries the key's line.
struct UniqueKey<'a>(&'a mut BTreeSet<String>);

impl UniqueKey<'_> {
    fn record<E: de::Error>(self, key: String) -> Result<(), E> {
        if self.0.contains(&key) {
            return Err(E::custom(format!(
                "duplicate key `{key}`: each key may appear once, remove one of them"
            )));
        }
        self.0.insert(key);
        Ok(())
    }
}

impl<'de> DeserializeSeed<'de> for UniqueKey<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for UniqueKey<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a scalar mapping key")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        self.record(v.to_string())
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<(), E> {
        self.record(v.to_string())
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        self.record(v.to_string())
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        self.record(v.to_string())
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        self.record(v.to_string())
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.record("~".to_string())
    }
}

impl<'de> Visitor<'de> for AnyVisitor<'_> {
    type Value = AnyValue;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<AnyValue, E> {
        self.spend()
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<AnyValue, E> {
        self.spend()
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<AnyValue, E> {
        self.spend()
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<AnyValue, E> {
        self.spend()
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<AnyValue, E> {
        self.spend()
    }
    fn visit_unit<E: de::Error>(self) -> Result<AnyValue, E> {
        self.spend()
    }
    fn visit_none<E: de::Error>(self) -> Result<AnyValue, E> {
        self.spend()
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<AnyValue, D::Error> {
        self.spend()?;
        d.deserialize_any(self)
    }
    fn visit_enum<A: de::EnumAccess<'de>>(self, data: A) -> Result<AnyValue, A::Error> {
        use de::VariantAccess;
        self.spend()?;
        let (AnyValue, variant) = data.variant_seed(self)?;
        variant.newtype_variant_seed(self)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<AnyValue, A::Error> {
        self.spend()?;
        while seq.next_element_seed(self)?.is_some() {}
        Ok(AnyValue)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<AnyValue, A::Error> {
        self.spend()?;
        let mut seen = BTreeSet::new();
        while map.next_key_seed(UniqueKey(&mut seen))?.is_some() {
            map.next_value_seed(self)?;
        }
        Ok(AnyValue)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_keys_are_reported_with_path_and_line() {
        let cases = [
            ("a: 1\na: 2\n", "duplicate key `a`", "line 2"),
            ("a:\n  x: 1\n  y: 2\n  x: 3\n", "a: duplicate key `x`", "line 4"),
            ("l:\n  - {k: 1, k: 2}\n", "duplicate key `k`", "line 2"),
        ];
        for (text, what, line) in cases {
            let err = check_no_duplicate_keys(text).unwrap_err().to_string();
            assert!(err.contains(what) && err.contains(line), "{text:?} gave {err}");
        }
    }

    #[test]
    fn deep_flow_nesting_is_refused_before_yaml_scans_it() {
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        let clock = std::time::Instant::now();
        let err = check_no_duplicate_keys(&deep).unwrap_err().to_string();
        assert!(err.contains("nested more than 128 levels"), "{err}");
        assert!(clock.elapsed() < std::time::Duration::from_secs(1));
        let fine = format!("{}{}", "[".repeat(MAX_FLOW_DEPTH), "]".repeat(MAX_FLOW_DEPTH));
        assert!(check_flow_depth(&fine).is_ok());
    }

    #[test]
    fn an_alias_bomb_is_refused_in_time_linear_in_its_size() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            let p = i - 1;
            let refs = vec![format!("*a{p}"); 10].join(", ");
            text.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
        }
        // Padding raises serde_norway's own limit (100 alias jumps per event).
        let padded = format!(
            "{}{text}",
            (0..2000)
                .map(|i| format!("k{i}: [1, 2, 3]\n"))
                .collect::<String>()
        );
        let clock = std::time::Instant::now();
        let err = check_no_duplicate_keys(&padded).unwrap_err().to_string();
        assert!(err.contains("aliases"), "{err}");
        assert!(
            clock.elapsed() < std::time::Duration::from_secs(1),
            "{:?}",
            clock.elapsed()
        );
        // An alias that repeats a little within the budget is still fine.
        check_no_duplicate_keys("a: &x [1, 2]\nb: *x\n").unwrap();
    }

    #[test]
    fn distinct_keys_pass() {
        check_no_duplicate_keys("a: 1\nb:\n  a: 2\nc: [{a: 1}, {a: 2}]\n").unwrap();
    }
}
