//! Web UI response times on the demo data: each role's pages, signed in over
//! real HTTPS on loopback, against a peer measured in the same run: the style
//! sheet, which passes through the same TLS, session guard and headers but
//! renders nothing. Prints median, 95th percentile and worst per page, and
//! fails if a page's 95th percentile is over the 200 ms target.

use std::time::{Duration, Instant};

use skycast_tests::web::{WebClient, TEST_PASSWORD};
use skycast_tests::{example, PublisherFixture};

const WARMUP: usize = 3;
const ROUNDS: usize = 40;
const TARGET_MS: f64 = 200.0;

struct Figures {
    median_ms: f64,
    p95_ms: f64,
    worst_ms: f64,
}

async fn measure(web: &mut WebClient, path: &str) -> Figures {
    for _ in 0..WARMUP {
        web.get(path).await;
    }
    let mut times = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        let t0 = Instant::now();
        let page = web.get(path).await;
        times.push(t0.elapsed());
        assert!(
            page.status.is_success(),
            "{path}: HTTP {} (landed on {})",
            page.status,
            page.path
        );
    }
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    Figures {
        median_ms: ms(times[ROUNDS / 2]),
        p95_ms: ms(times[ROUNDS * 95 / 100]),
        worst_ms: ms(times[ROUNDS - 1]),
    }
}

#[tokio::main]
async fn main() {
    let fx = PublisherFixture::start().await;
    fx.publish(&example("planning.yaml"));
    fx.publish(&example("planning-v2.yaml"));
    fx.add_role_users();

    let pages: &[(&str, &str, &[&str])] = &[
        (
            "marketing",
            TEST_PASSWORD,
            &[
                "/marketing",
                "/marketing/media",
                "/marketing/playlists",
                "/marketing/planning",
                "/marketing/planning?shop=main",
                "/marketing/preview?shop=main&date=2026-12-05&time=10:30",
                "/shops",
                "/publish",
            ],
        ),
        ("commercial", TEST_PASSWORD, &["/commercial"]),
        (
            "admin",
            "admin-password",
            &[
                "/admin",
                "/admin/users",
                "/admin/urgent",
                "/admin/reviews",
                "/history",
                "/history/diff?from=1&to=2",
            ],
        ),
        ("auditor", TEST_PASSWORD, &["/audit", "/history/2"]),
    ];

    let mut peer_web = fx.web_client();
    let peer = measure(&mut peer_web, "/static/style.css").await;
    println!(
        "web pages, {ROUNDS} requests each after {WARMUP} warm-up, HTTPS on loopback, demo data (2 versions, content-example)"
    );
    println!(
        "{:<11} {:<58} {:>9} {:>9} {:>9} {:>13}",
        "role", "page", "median ms", "p95 ms", "worst ms", "median/peer"
    );
    println!(
        "{:<11} {:<58} {:>9.1} {:>9.1} {:>9.1} {:>13}",
        "(peer)", "/static/style.css", peer.median_ms, peer.p95_ms, peer.worst_ms, "1.0"
    );
    let mut over = Vec::new();
    for (user, password, paths) in pages {
        let mut web = fx.web_client();
        let landed = web.login(user, password).await;
        assert!(
            landed.status.is_success(),
            "{user} could not sign in: {}",
            landed.status
        );
        for path in paths.iter() {
            let f = measure(&mut web, path).await;
            println!(
                "{:<11} {:<58} {:>9.1} {:>9.1} {:>9.1} {:>13.1}",
                user,
                path,
                f.median_ms,
                f.p95_ms,
                f.worst_ms,
                f.median_ms / peer.median_ms.max(0.001)
            );
            if f.p95_ms > TARGET_MS {
                over.push(format!("{user} {path}: p95 {:.1} ms", f.p95_ms));
            }
        }
    }
    fx.stop().await;
    if over.is_empty() {
        println!("every page's 95th percentile is under the {TARGET_MS} ms target");
    } else {
        eprintln!("over the {TARGET_MS} ms target: {over:?}");
        std::process::exit(1);
    }
}
