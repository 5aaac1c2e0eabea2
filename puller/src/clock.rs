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

/// The instant the puller judges expiry with, and what is wrong with the local clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JudgedClock {
    pub now: DateTime<Utc>,
    /// Set when the local clock is off by more than the tolerance, or earlier than a
    /// publication the puller has seen: a clock problem to report in `status`.
    pub problem: Option<String>,
}

/// The clock expiry is judged by: the local clock `local`, corrected by the server's
/// (`offset_ms`, server minus local, from its `Date`) when the local one is off by
/// more than [`CLOCK_TOLERANCE_MS`] or earlier than `newest_published`, and never
/// earlier than `newest_published` (the newest `published_at` of a verified
/// manifest): a board without a real-time clock that boots in 1970 can neither keep
/// an expired version fresh nor install one.
pub fn judge_clock(
    local: DateTime<Utc>,
    offset_ms: Option<i64>,
    newest_published: Option<DateTime<Utc>>,
) -> JudgedClock {
    let before_publish = newest_published.is_some_and(|p| local < p);
    let corrected = match offset_ms {
        Some(o) if before_publish || o.abs() > CLOCK_TOLERANCE_MS => {
            local + chrono::Duration::milliseconds(o)
        }
        _ => local,
    };
    let now = match newest_published {
        Some(p) if corrected < p => p,
        _ => corrected,
    };
    let problem = if before_publish {
        Some(format!(
            "local clock reads {}, earlier than a version published at {}: the clock is wrong \
             (no real-time clock or NTP?); expiry is judged on {}; set the clock or enable NTP",
            local.to_rfc3339(),
            newest_published.map(|p| p.to_rfc3339()).unwrap_or_default(),
            now.to_rfc3339()
        ))
    } else {
        offset_ms.filter(|o| o.abs() > CLOCK_TOLERANCE_MS).map(|o| {
            format!(
                "local clock is {:.1} s {} the server: playing on the server's time; check NTP",
                o.abs() as f64 / 1000.0,
                if o > 0 { "behind" } else { "ahead of" }
            )
        })
    };
    JudgedClock { now, problem }
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

    #[test]
    fn expiry_clock_is_server_corrected_and_never_before_the_newest_publication() {
        let t = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
        let real = t("2026-11-22T10:00:00Z");
        let publication = t("2026-11-20T00:00:00Z");
        let published = Some(publication);
        let boot_1970 = t("1970-01-01T00:00:10Z");
        let offset_1970 = (real - boot_1970).num_milliseconds();

        // A board that booted in 1970, the server's Date known: the server's time.
        let judged = judge_clock(boot_1970, Some(offset_1970), published);
        assert_eq!(judged.now, real);
        let problem = judged.problem.unwrap();
        assert!(
            problem.contains("1970-01-01") && problem.contains("clock is wrong"),
            "{problem}"
        );
        // Without any server Date: at least the newest publication.
        let judged = judge_clock(boot_1970, None, published);
        assert_eq!(judged.now, publication);
        assert!(judged.problem.is_some());
        // 30 days behind, after the publication: the server's time, with a warning.
        let behind = real - chrono::Duration::days(30);
        let judged = judge_clock(behind, Some((real - behind).num_milliseconds()), None);
        assert_eq!(judged.now, real);
        assert!(judged.problem.unwrap().contains("behind the server"));
        // A server claiming an earlier time than a publication cannot pull the clock back.
        assert_eq!(judge_clock(boot_1970, Some(1_000), published).now, publication);
        // A good clock is left alone.
        assert_eq!(
            judge_clock(real, Some(300), published),
            JudgedClock {
                now: real,
                problem: None
            }
        );
    }
}
