//! `Range: bytes=...` requests on media, as players send them to resume.

/// Parses `bytes=A-` or `bytes=A-B` against a body of `len` bytes.
pub(super) fn parse_range(value: &str, len: u64) -> Option<std::ops::Range<u64>> {
    let spec = value.strip_prefix("bytes=")?;
    let (a, b) = spec.split_once('-')?;
    let start: u64 = a.trim().parse().ok()?;
    let end_inclusive: u64 = if b.trim().is_empty() {
        len.checked_sub(1)?
    } else {
        b.trim().parse().ok()?
    };
    let end = end_inclusive.min(len.checked_sub(1)?) + 1;
    (start < end).then_some(start..end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_parsed_and_clamped() {
        let table = [
            ("bytes=0-", 10, Some(0..10)),
            ("bytes=4-", 10, Some(4..10)),
            ("bytes=2-5", 10, Some(2..6)),
            ("bytes=2-50", 10, Some(2..10)),
            ("bytes=10-", 10, None),
            ("bytes=-5", 10, None),
            ("items=0-1", 10, None),
            ("bytes=0-", 0, None),
        ];
        for (value, len, expected) in table {
            assert_eq!(parse_range(value, len), expected, "{value} of {len}");
        }
    }
}
