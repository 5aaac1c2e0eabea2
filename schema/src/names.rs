//! The plain-name rule: what may name a playlist, a shop, a tag, an interrupt or
//! a player. Names become URL parts, file names and SQL values elsewhere, so the
//! manifest, the planning, the web forms and the CLI all check this one rule.

/// The rule in words, for error messages: "`X` must be {PLAIN_NAME_RULE}".
pub const PLAIN_NAME_RULE: &str = "1-64 characters of a-z, 0-9, `-` or `_`, starting with a letter or digit";

/// Whether `name` follows [`PLAIN_NAME_RULE`].
pub fn is_plain_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        && name.as_bytes()[0].is_ascii_alphanumeric()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_names_are_short_lowercase_and_start_with_a_letter_or_digit() {
        let long = "a".repeat(65);
        let table = [
            ("main", true),
            ("main-1", true),
            ("9th_street", true),
            (&long[..64], true),
            ("", false),
            (&long[..], false),
            ("-x", false),
            ("_x", false),
            ("Main", false),
            ("tag:main", false),
            ("a b", false),
            ("café", false),
            ("../x", false),
        ];
        for (name, plain) in table {
            assert_eq!(is_plain_name(name), plain, "{name:?}");
        }
    }
}
