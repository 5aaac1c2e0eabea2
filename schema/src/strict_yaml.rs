//! A pre-pass over YAML text that refuses repeated mapping keys at any depth.
//!
//! serde drops the location of duplicate struct fields and silently keeps the last
//! of two equal map keys; a manifest is a security document, so both are errors
//! here, reported with the key path and line.

use std::collections::BTreeSet;
use std::fmt;

use serde::de::{self, Deserialize, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

/// Parses `text` as YAML and fails on the first mapping that repeats a key.
pub fn check_no_duplicate_keys(text: &str) -> Result<(), serde_norway::Error> {
    serde_norway::from_str::<AnyValue>(text).map(|_| ())
}

struct AnyValue;

struct AnyVisitor;

impl<'de> Deserialize<'de> for AnyValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(AnyVisitor)
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

impl<'de> Visitor<'de> for AnyVisitor {
    type Value = AnyValue;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<AnyValue, E> {
        Ok(AnyValue)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<AnyValue, E> {
        Ok(AnyValue)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<AnyValue, E> {
        Ok(AnyValue)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<AnyValue, E> {
        Ok(AnyValue)
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<AnyValue, E> {
        Ok(AnyValue)
    }
    fn visit_unit<E: de::Error>(self) -> Result<AnyValue, E> {
        Ok(AnyValue)
    }
    fn visit_none<E: de::Error>(self) -> Result<AnyValue, E> {
        Ok(AnyValue)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<AnyValue, D::Error> {
        AnyValue::deserialize(d)
    }
    fn visit_enum<A: de::EnumAccess<'de>>(self, data: A) -> Result<AnyValue, A::Error> {
        use de::VariantAccess;
        let (AnyValue, variant) = data.variant::<AnyValue>()?;
        variant.newtype_variant::<AnyValue>()
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<AnyValue, A::Error> {
        while seq.next_element::<AnyValue>()?.is_some() {}
        Ok(AnyValue)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<AnyValue, A::Error> {
        let mut seen = BTreeSet::new();
        while map.next_key_seed(UniqueKey(&mut seen))?.is_some() {
            map.next_value::<AnyValue>()?;
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
    fn distinct_keys_pass() {
        check_no_duplicate_keys("a: 1\nb:\n  a: 2\nc: [{a: 1}, {a: 2}]\n").unwrap();
    }
}
