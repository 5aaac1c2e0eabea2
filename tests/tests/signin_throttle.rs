//! Sign-in throttling against the real `skycast-publisher serve` (a child process
//! on a free loopback port): a burst of parallel wrong passwords reaches argon2
//! only as often as the throttle allows and does not fill memory, the right
//! password still works from another address, the admin always gets in from an
//! address that has not failed, and an admin unlocks a user from the CLI and the
//! user's page. Second addresses are other loopback sources (`127.0.0.2`, ...).

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use reqwest::{Client, StatusCode};
use skycast_publisher::web::auth::PER_ACCOUNT_AND_ADDRESS;
use skycast_tests::serve_process::{init_with_marketing, publisher_cli, ServeProcess};
use skycast_tests::web::{WebClient, TEST_PASSWORD};

const ADMIN_PASSWORD: &str = "admin-password";
/// Any value works as the sign-in CSRF token when the same value is the cookie:
/// what an attacker without an account sends.
const LOGIN_CSRF: &str = "attacker-chosen-login-csrf-token-0123456789";

fn loopback(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
}

/// One sign-in attempt; answers its status and how long it took.
async fn attempt(
    serve: &ServeProcess,
    client: &Client,
    user: &str,
    password: &str,
) -> (StatusCode, Duration) {
    let started = Instant::now();
    let resp = client
        .post(format!("{}/login", serve.url()))
        .header("cookie", format!("skycast_login_csrf={LOGIN_CSRF}"))
        .header("accept-language", "en")
        .form(&[("username", user), ("password", password), ("csrf", LOGIN_CSRF)])
        .send()
        .await
        .unwrap();
    let status = resp.status();
    resp.bytes().await.unwrap();
    (status, started.elapsed())
}

/// 40 simultaneous wrong passwords for one user from one address: only the
/// throttle's free allowance reaches argon2 (401), the rest are refused at once
/// (429, Retry-After) without hashing, and the server's peak memory grows by
/// less than 100 MB. Afterwards the user's right password works from another
/// address, the admin signs in from addresses that have not failed, the burst's
/// address stays delayed for that user, and `user unlock` lifts it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_wrong_passwords_is_counted_before_hashing_and_locks_out_nobody_elsewhere() {
    const BURST: usize = 40;
    let dir = tempfile::tempdir().unwrap();
    let data = init_with_marketing(dir.path());
    let mut serve = ServeProcess::start(&data, &[]).await;
    let (_, rss_start) = serve.memory_kib();

    // One argon2 check, timed (the median of three, the machine being shared)
    // from an address and names the burst does not use.
    let mut checks = Vec::new();
    for i in 0..3 {
        let (status, took) = attempt(
            &serve,
            &serve.client_from(loopback(9)),
            &format!("nobody{i}"),
            "wrong-password",
        )
        .await;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "an unknown name is checked like a wrong password"
        );
        checks.push(took);
    }
    checks.sort();
    let one_check = checks[1];

    // Connections opened before the burst, so the timings are the requests'.
    let (_, rss_idle) = serve.memory_kib();
    let mut clients = Vec::new();
    for _ in 0..BURST {
        let client = serve.client_from(loopback(1));
        let resp = client.get(format!("{}/login", serve.url())).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        resp.bytes().await.unwrap();
        clients.push(client);
    }
    eprintln!(
        "{BURST} open connections: server VmRSS {rss_idle} KiB -> {} KiB",
        serve.memory_kib().1
    );
    let reset = serve.reset_peak();
    let (peak_before, rss_before) = serve.memory_kib();
    let started = Instant::now();
    let burst = clients.iter().map(|client| {
        let serve = &serve;
        async move { attempt(serve, client, "marketing", "wrong-password").await }
    });
    let answers = futures_util::future::join_all(burst).await;
    let burst_time = started.elapsed();
    let (peak_after, rss_after) = serve.memory_kib();
    let growth_kib = peak_after.saturating_sub(peak_before);
    // Also counting the memory the first check's thread keeps for the next ones.
    let growth_since_start_kib = peak_after.saturating_sub(rss_start);

    let checked: Vec<Duration> = answers
        .iter()
        .filter(|(s, _)| *s == StatusCode::UNAUTHORIZED)
        .map(|(_, t)| *t)
        .collect();
    let refused: Vec<Duration> = answers
        .iter()
        .filter(|(s, _)| *s == StatusCode::TOO_MANY_REQUESTS)
        .map(|(_, t)| *t)
        .collect();
    let slowest_refusal = refused.iter().max().copied().unwrap_or_default();
    let slowest_check = checked.iter().max().copied().unwrap_or_default();
    let mut sorted = refused.clone();
    sorted.sort();
    let median_refusal = sorted.get(sorted.len() / 2).copied().unwrap_or_default();
    let hashed = serve.log_text().matches("sign-in failed").count() - checks.len();
    eprintln!(
        "{BURST} parallel wrong passwords in {burst_time:?}: {} checked (401, slowest {slowest_check:?}), {} refused \
         (429, median {median_refusal:?}, slowest {slowest_refusal:?}); one argon2 check {one_check:?}; {hashed} failures logged; server VmHWM \
         {peak_before} KiB -> {peak_after} KiB (+{growth_kib} KiB, peak reset {reset}), VmRSS {rss_before} -> \
         {rss_after} KiB; +{growth_since_start_kib} KiB since before the first check",
        checked.len(),
        refused.len(),
    );
    let allowed = PER_ACCOUNT_AND_ADDRESS.free as usize;
    assert_eq!(
        checked.len(),
        allowed,
        "only the free allowance reaches argon2: {answers:?}"
    );
    assert_eq!(hashed, allowed, "the log counts the same checks");
    assert_eq!(
        refused.len(),
        BURST - allowed,
        "the rest are refused: {answers:?}"
    );
    // Had every attempt been hashed, the burst would take this long on every core.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as u32;
    let all_hashed = one_check * BURST as u32 / cores;
    assert!(
        burst_time < all_hashed && slowest_refusal < all_hashed && median_refusal < all_hashed / 2,
        "refusals do not wait for argon2: burst {burst_time:?}, refusals median {median_refusal:?}, slowest \
         {slowest_refusal:?}; {BURST} checks on {cores} cores {all_hashed:?}"
    );
    assert!(
        growth_since_start_kib < 100 * 1024,
        "peak memory grew by {growth_kib} KiB during the burst, {growth_since_start_kib} KiB since before \
         the first check"
    );

    // The burst's address waits for this user, whatever the password.
    let here = serve.client_from(loopback(1));
    let resp = here
        .post(format!("{}/login", serve.url()))
        .header("cookie", format!("skycast_login_csrf={LOGIN_CSRF}"))
        .form(&[
            ("username", "marketing"),
            ("password", TEST_PASSWORD),
            ("csrf", LOGIN_CSRF),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "the right password from the burst's address"
    );
    let retry: u64 = resp.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=15 * 60).contains(&retry), "Retry-After {retry} s");

    // Elsewhere nobody is locked out.
    let (status, _) = attempt(
        &serve,
        &serve.client_from(loopback(2)),
        "marketing",
        TEST_PASSWORD,
    )
    .await;
    assert_eq!(
        status,
        StatusCode::SEE_OTHER,
        "the right password from another address"
    );
    for from in [loopback(2), loopback(3)] {
        let (status, _) = attempt(&serve, &serve.client_from(from), "admin", ADMIN_PASSWORD).await;
        assert_eq!(
            status,
            StatusCode::SEE_OTHER,
            "the admin from {from}, which has not failed"
        );
    }

    // The admin unlocks the user from the CLI: the burst's address gets in too.
    let out = publisher_cli(
        &[
            "user",
            "unlock",
            "--data",
            data.to_str().unwrap(),
            "--name",
            "marketing",
        ],
        &[],
    );
    assert!(out.contains("user `marketing` unlocked"), "{out}");
    let (status, _) = attempt(&serve, &here, "marketing", TEST_PASSWORD).await;
    assert_eq!(
        status,
        StatusCode::SEE_OTHER,
        "the right password after unlock: {out}"
    );
    serve.stop().await;
}

/// A user throttled after five wrong passwords shows their failures on the
/// admin's user page; its Unlock button forgets them and the user signs in.
#[tokio::test]
async fn the_admin_unlocks_a_throttled_user_from_the_user_page() {
    let dir = tempfile::tempdir().unwrap();
    let data = init_with_marketing(dir.path());
    let mut serve = ServeProcess::start(&data, &[]).await;
    let shop = serve.client_from(loopback(4));
    for i in 0..PER_ACCOUNT_AND_ADDRESS.free {
        let (status, _) = attempt(&serve, &shop, "marketing", "wrong-password").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "wrong password {i}");
    }
    let (status, _) = attempt(&serve, &shop, "marketing", TEST_PASSWORD).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "throttled");

    let mut admin = WebClient::new(&serve.url(), &serve.ca_path());
    let home = admin.login("admin", ADMIN_PASSWORD).await;
    assert_eq!(home.path, "/admin", "{}", home.body);
    let id = skycast_publisher::DataDir::open(&data)
        .unwrap()
        .db()
        .unwrap()
        .users()
        .unwrap()
        .into_iter()
        .find(|u| u.username == "marketing")
        .unwrap()
        .id;
    let page = admin.get(&format!("/admin/users/{id}")).await;
    assert!(
        page.body.contains("from every address: 5<"),
        "the page counts the failures: {}",
        page.body
    );
    assert!(page.body.contains(r#"id="unlock-user""#), "{}", page.body);
    let page = admin.post(&format!("/admin/users/{id}/unlock"), &[]).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(
        page.body
            .contains("User marketing unlocked: 5 failed sign-ins forgotten"),
        "{}",
        page.body
    );
    assert!(page.body.contains("from every address: 0<"), "{}", page.body);
    let (status, _) = attempt(&serve, &shop, "marketing", TEST_PASSWORD).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "the user signs in after unlock");
    assert!(serve.log_text().contains("user unlocked"));
    serve.stop().await;
}
