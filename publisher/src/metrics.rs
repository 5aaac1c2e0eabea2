//! `/metrics` for Prometheus, on a listener of its own (`serve --metrics-listen
//! ADDR`, off by default; plain HTTP like node_exporter, so it belongs on
//! loopback or a private network). The fleet's gauges are read from
//! [`Fleet::view`] at each scrape; the counters and the request-duration
//! histogram live in this process ([`record_report`], [`track`]).
//!
//! The exposition text format is written by hand: a dozen series, and the
//! format is small and stable; a client library would add a registry and
//! types for nothing more.
//!
//! Names follow the Prometheus rules: base units (`_seconds`), `_total` only on
//! counters, `_timestamp_seconds` for instants, one series per player only
//! where it is needed (last report, in sync).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use chrono::{DateTime, Utc};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::fleet::{AlertKind, Fleet, FleetView};
use crate::mirror::MirrorStatus;

/// The counters of this process. Process-wide on purpose: a Prometheus counter
/// counts what one process did since it started, and a scrape reads one process.
static COUNTERS: Counters = Counters::new();

/// Upper bounds of the request-duration buckets, in seconds (long-polls wait up to 30 s).
const BUCKETS: [f64; 13] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// Which requests a duration is counted with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteGroup {
    /// The pull protocol (`/v1/...`) but long-polls.
    Protocol,
    /// `GET /v1/head?wait=...`, which waits on purpose.
    LongPoll,
    /// The web UI.
    Web,
}

impl RouteGroup {
    const ALL: [RouteGroup; 3] = [RouteGroup::Protocol, RouteGroup::LongPoll, RouteGroup::Web];

    fn as_str(self) -> &'static str {
        match self {
            RouteGroup::Protocol => "protocol",
            RouteGroup::LongPoll => "long_poll",
            RouteGroup::Web => "web",
        }
    }

    fn of(path: &str, query: Option<&str>) -> RouteGroup {
        let waits = query.is_some_and(|q| q.split('&').any(|kv| kv.starts_with("wait=")));
        if path == skycast_schema::protocol::HEAD_PATH && waits {
            RouteGroup::LongPoll
        } else if path.starts_with("/v1/") {
            RouteGroup::Protocol
        } else {
            RouteGroup::Web
        }
    }
}

struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    const fn new() -> Histogram {
        Histogram {
            buckets: [const { AtomicU64::new(0) }; BUCKETS.len()],
            count: AtomicU64::new(0),
            sum_micros: AtomicU64::new(0),
        }
    }

    fn observe(&self, secs: f64) {
        for (bound, bucket) in BUCKETS.iter().zip(&self.buckets) {
            if secs <= *bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add((secs * 1e6).round() as u64, Ordering::Relaxed);
    }
}

struct Counters {
    reports: AtomicU64,
    plays: AtomicU64,
    http: [Histogram; 3],
}

impl Counters {
    const fn new() -> Counters {
        Counters {
            reports: AtomicU64::new(0),
            plays: AtomicU64::new(0),
            http: [Histogram::new(), Histogram::new(), Histogram::new()],
        }
    }

    fn http(&self, group: RouteGroup) -> &Histogram {
        &self.http[group as usize]
    }
}

/// Counts one report accepted from a player, carrying `plays` new play entries
/// (`skycast_reports_total`, `skycast_plays_total`). The protocol's report
/// handler calls it once per accepted report.
pub fn record_report(plays: u64) {
    COUNTERS.reports.fetch_add(1, Ordering::Relaxed);
    COUNTERS.plays.fetch_add(plays, Ordering::Relaxed);
}

/// Middleware timing every request of the main listener until its answer's head
/// is ready (a streamed body is not included), by [`RouteGroup`]:
/// `axum::middleware::from_fn(metrics::track)`.
pub async fn track(req: Request, next: Next) -> Response {
    let group = RouteGroup::of(req.uri().path(), req.uri().query());
    let started = Instant::now();
    let resp = next.run(req).await;
    COUNTERS.http(group).observe(started.elapsed().as_secs_f64());
    resp
}

/// A label value with `\`, `"` and newlines escaped, as the text format wants.
fn label(value: &str) -> String {
    value
        .replace('\\', r"\\")
        .replace('"', "\\\"")
        .replace('\n', r"\n")
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    // Writing to a String cannot fail.
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// A family of one series without labels.
fn scalar(out: &mut String, name: &str, kind: &str, help: &str, value: u64) {
    family(out, name, kind, help);
    let _ = writeln!(out, "{name} {value}");
}

fn seconds(text: &str) -> Option<f64> {
    let t = DateTime::parse_from_rfc3339(text).ok()?;
    Some(t.timestamp_millis() as f64 / 1000.0)
}

/// The exposition text (format 0.0.4) of `view` and this process's counters.
pub fn render(view: &FleetView) -> String {
    let mut out = String::new();
    let (mut up, mut ko, mut disabled) = (0u64, 0u64, 0u64);
    for p in &view.players {
        match (p.disabled, p.up) {
            (true, _) => disabled += 1,
            (false, true) => up += 1,
            (false, false) => ko += 1,
        }
    }
    family(
        &mut out,
        "skycast_players",
        "gauge",
        "Registered players by state: up (reported within --offline-after), ko (silent longer, or never reported), disabled.",
    );
    for (state, n) in [("up", up), ("ko", ko), ("disabled", disabled)] {
        let _ = writeln!(out, "skycast_players{{state=\"{state}\"}} {n}");
    }
    family(
        &mut out,
        "skycast_player_last_report_timestamp_seconds",
        "gauge",
        "When each player last reported, in Unix time (players that never reported have no series).",
    );
    for p in &view.players {
        if let Some(at) = p.last_report_at.as_deref().and_then(seconds) {
            let _ = writeln!(
                out,
                "skycast_player_last_report_timestamp_seconds{{player=\"{}\"}} {at}",
                label(&p.id)
            );
        }
    }
    family(
        &mut out,
        "skycast_player_in_sync",
        "gauge",
        "1 when the enabled player's active version is the head version, else 0.",
    );
    for p in view.players.iter().filter(|p| !p.disabled) {
        let _ = writeln!(
            out,
            "skycast_player_in_sync{{player=\"{}\"}} {}",
            label(&p.id),
            u8::from(p.in_sync)
        );
    }
    scalar(
        &mut out,
        "skycast_head_version",
        "gauge",
        "The published version players are told to have (0 before the first publish).",
        view.head_version,
    );
    family(&mut out, "skycast_alerts_open", "gauge", "Open alerts by kind.");
    for kind in AlertKind::ALL {
        let n = view
            .players
            .iter()
            .flat_map(|p| &p.open_alerts)
            .filter(|a| a.kind == kind && a.resolved_at.is_none())
            .count();
        let _ = writeln!(out, "skycast_alerts_open{{kind=\"{}\"}} {n}", kind.as_str());
    }
    scalar(
        &mut out,
        "skycast_reports_total",
        "counter",
        "Reports accepted from players since this serve started.",
        COUNTERS.reports.load(Ordering::Relaxed),
    );
    scalar(
        &mut out,
        "skycast_plays_total",
        "counter",
        "Play entries received in reports since this serve started.",
        COUNTERS.plays.load(Ordering::Relaxed),
    );
    family(
        &mut out,
        "skycast_http_request_duration_seconds",
        "histogram",
        "Time to answer a request's head (a streamed body is not included), by route group: protocol, long_poll (head with wait), web.",
    );
    for group in RouteGroup::ALL {
        let h = COUNTERS.http(group);
        let g = group.as_str();
        // Read the count first: buckets observed later are only larger, so
        // `+Inf` (the count) never falls below a bucket in one scrape.
        let count = h.count.load(Ordering::Relaxed);
        let mut cumulative_max = 0;
        for (bound, bucket) in BUCKETS.iter().zip(&h.buckets) {
            let n = bucket.load(Ordering::Relaxed).min(count).max(cumulative_max);
            cumulative_max = n;
            let _ = writeln!(
                out,
                "skycast_http_request_duration_seconds_bucket{{group=\"{g}\",le=\"{bound}\"}} {n}"
            );
        }
        let _ = writeln!(
            out,
            "skycast_http_request_duration_seconds_bucket{{group=\"{g}\",le=\"+Inf\"}} {count}"
        );
        let sum = h.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(
            out,
            "skycast_http_request_duration_seconds_sum{{group=\"{g}\"}} {sum}"
        );
        let _ = writeln!(
            out,
            "skycast_http_request_duration_seconds_count{{group=\"{g}\"}} {count}"
        );
    }
    out
}

/// The gauges of the object-storage mirrors, one series per mirror.
pub fn render_mirrors(out: &mut String, mirrors: &[MirrorStatus]) {
    type Gauge = fn(&MirrorStatus) -> u64;
    let gauges: [(&str, &str, Gauge); 3] = [
        (
            "skycast_mirror_versions_behind",
            "Versions published but not yet on each object-storage mirror.",
            |m| m.versions_behind,
        ),
        (
            "skycast_mirror_lag_seconds",
            "Seconds since the oldest version not yet on each mirror was published (0 when in sync).",
            |m| m.lag_secs,
        ),
        (
            "skycast_mirror_failing",
            "1 while a mirror keeps failing to take new versions (the mirror_failing alert), else 0.",
            |m| u64::from(m.failing),
        ),
    ];
    for (name, help, value) in gauges {
        family(out, name, "gauge", help);
        for m in mirrors {
            let _ = writeln!(out, "{name}{{mirror=\"{}\"}} {}", label(&m.name), value(m));
        }
    }
}

async fn metrics(State(fleet): State<Arc<Fleet>>) -> Response {
    let now = Utc::now();
    let mirrors = match fleet.mirrors(now).await {
        Ok(mirrors) => mirrors,
        Err(e) => {
            tracing::warn!(error = %e, "metrics: cannot read the mirrors; their gauges are left out");
            Vec::new()
        }
    };
    match fleet.view(now).await {
        Ok(view) => (
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
            {
                let mut out = render(&view);
                render_mirrors(&mut out, &mirrors);
                out
            },
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "metrics: the fleet view failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the fleet view failed: the publisher logged the details\n",
            )
                .into_response()
        }
    }
}

/// The metrics listener's routes: `GET /metrics` only.
pub fn router(fleet: Arc<Fleet>) -> Router {
    Router::new().route("/metrics", get(metrics)).with_state(fleet)
}

/// Serves `/metrics` on `listener` (plain HTTP) until `stop` turns true.
pub async fn serve(listener: TcpListener, fleet: Arc<Fleet>, mut stop: watch::Receiver<bool>) {
    match listener.local_addr() {
        Ok(addr) => {
            tracing::info!(%addr, "serving metrics at /metrics (plain HTTP: keep it on loopback or a private network)")
        }
        Err(e) => {
            tracing::warn!(error = %e, "serving metrics at /metrics on an address the system does not tell")
        }
    }
    let shutdown = async move {
        while !*stop.borrow() {
            if stop.changed().await.is_err() {
                return;
            }
        }
    };
    if let Err(e) = axum::serve(listener, router(fleet))
        .with_graceful_shutdown(shutdown)
        .await
    {
        tracing::error!(error = %e, "the metrics listener failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::{Activity, AlertView, PlayerView};
    use skycast_schema::report::OutputState;

    fn player(id: &str, up: bool, disabled: bool, in_sync: bool) -> PlayerView {
        PlayerView {
            id: id.into(),
            shop: "main".into(),
            disabled,
            up,
            last_report_at: up.then(|| "2026-12-01T10:00:00Z".to_string()),
            last_report_age_secs: up.then_some(3),
            active_version: Some(3),
            in_sync,
            behind_by: u64::from(!in_sync),
            behind_since: None,
            activity: Activity::Playing,
            now_playing: None,
            output: OutputState::Playing,
            fetching: None,
            last_error: None,
            clock_offset_ms: None,
            free_disk_bytes: None,
            audio_clock: None,
            agent_version: None,
            uptime_secs: None,
            open_alerts: Vec::new(),
        }
    }

    #[test]
    fn exposition_counts_players_alerts_and_requests() {
        let mut ko = player("b\"x", false, false, false);
        ko.open_alerts.push(AlertView {
            id: 1,
            kind: AlertKind::Unreachable,
            player_id: ko.id.clone(),
            shop: "main".into(),
            opened_at: "2026-12-01T10:00:00Z".into(),
            resolved_at: None,
            acknowledged_by: None,
            text_en: "x".into(),
            text_fr: "x".into(),
        });
        let view = FleetView {
            generated_at: "2026-12-01T10:00:03Z".into(),
            head_version: 4,
            offline_after_secs: 30,
            players: vec![
                player("a", true, false, true),
                ko,
                player("c", false, true, false),
            ],
        };
        record_report(3);
        COUNTERS.http(RouteGroup::Web).observe(0.02);
        let text = render(&view);
        for line in [
            "skycast_players{state=\"up\"} 1",
            "skycast_players{state=\"ko\"} 1",
            "skycast_players{state=\"disabled\"} 1",
            "skycast_player_last_report_timestamp_seconds{player=\"a\"} 1796119200",
            "skycast_player_in_sync{player=\"a\"} 1",
            "skycast_player_in_sync{player=\"b\\\"x\"} 0",
            "skycast_head_version 4",
            "skycast_alerts_open{kind=\"unreachable\"} 1",
            "skycast_alerts_open{kind=\"disk_low\"} 0",
            "# TYPE skycast_reports_total counter",
            "# TYPE skycast_http_request_duration_seconds histogram",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
        assert!(
            !text.contains("in_sync{player=\"c\"}"),
            "disabled players have no in-sync series"
        );
        let count = |g: &str| {
            text.lines()
                .find_map(|l| {
                    l.strip_prefix(&format!(
                        "skycast_http_request_duration_seconds_count{{group=\"{g}\"}} "
                    ))
                })
                .unwrap()
                .parse::<u64>()
                .unwrap()
        };
        assert!(count("web") >= 1);
    }

    #[test]
    fn route_groups_set_long_polls_apart() {
        assert_eq!(
            RouteGroup::of("/v1/head", Some("after=3&wait=30")),
            RouteGroup::LongPoll
        );
        assert_eq!(RouteGroup::of("/v1/head", None), RouteGroup::Protocol);
        assert_eq!(RouteGroup::of("/v1/media/abc", None), RouteGroup::Protocol);
        assert_eq!(RouteGroup::of("/fleet", Some("wait=1")), RouteGroup::Web);
    }

    #[test]
    fn mirror_gauges_have_one_series_per_mirror() {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::db::Db::open(&dir.path().join("p.sqlite")).unwrap();
        let now = DateTime::parse_from_rfc3339("2026-12-01T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let spec = crate::mirror::MirrorSpec {
            name: "eu".into(),
            endpoint: "http://127.0.0.1:3900".into(),
            bucket: "skycast".into(),
            region: "garage".into(),
            credentials_file: None,
        };
        crate::mirror::add(&db, &spec, "ann", now).unwrap();
        db.enqueue_mirror_versions("eu", &[(1, Some("2026-12-01T09:59:00Z".into()))], now)
            .unwrap();
        let mut out = String::new();
        render_mirrors(
            &mut out,
            &crate::mirror::status_with_head(&db, 1, None, now).unwrap(),
        );
        for line in [
            "# TYPE skycast_mirror_versions_behind gauge",
            "skycast_mirror_versions_behind{mirror=\"eu\"} 1",
            "skycast_mirror_lag_seconds{mirror=\"eu\"} 60",
            "skycast_mirror_failing{mirror=\"eu\"} 0",
        ] {
            assert!(out.lines().any(|l| l == line), "{line} in:\n{out}");
        }
    }
}
