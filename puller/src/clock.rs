//! Clock policy: when the player trusts the server's clock over the local one.

use chrono::{DateTime, Utc};
use skycast_schema::Manifest;

/// Offsets up to this are left alone (latency, small drift).
pub const CLOCK_TOLERANCE_MS: i64 = 2_000;

/// Milliseconds to add to the local clock. The server's time wins when the local
/// clock is obviously wrong (earlier than the manifest was published) or off by more
/// than a few seconds; a small offset is network latency, not a wrong clock.
pub fn clock_correction(offset_ms: Option<i64>, manifest: Option<&Manifest>, now: DateTime<Utc>) -> i64 {
    let Some(offset) = offset_ms else { return 0 };
    let before_publish = manifest.is_some_and(|m| now < m.published_at.0);
    if before_publish || offset.abs() > CLOCK_TOLERANCE_MS {
        offset
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support;

    #[test]
    fn clock_correction_trusts_the_server_only_when_the_local_clock_is_off() {
        let now: DateTime<Utc> = "2026-11-22T10:00:00Z".parse().unwrap();
        let published = |at: &str| {
            let yaml = test_support::manifest_yaml(1, &[b"a"], "2099-01-01T00:00:00Z")
                .replace("2020-01-01T00:00:00Z", at);
            Manifest::parse(yaml.as_bytes()).unwrap()
        };
        let past = published("2026-11-22T09:00:00Z");
        let future = published("2026-11-22T11:00:00Z");
        let cases = [
            (None, Some(&past), 0),
            (Some(300), Some(&past), 0),
            (Some(-1_500), None, 0),
            (Some(5_000), Some(&past), 5_000),
            (Some(-86_400_000), None, -86_400_000),
            // Earlier than the publication: obviously wrong, even by less than the tolerance.
            (Some(1_000), Some(&future), 1_000),
        ];
        for (offset, manifest, want) in cases {
            assert_eq!(clock_correction(offset, manifest, now), want, "{offset:?}");
        }
    }
}
