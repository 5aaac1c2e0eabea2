//! Slow clients against the real `skycast-publisher serve` under `ulimit -n 1024`
//! (issue 10, done-when 1): thousands of TLS connections that trickle a request
//! head neither exhaust the server's file descriptors nor starve players and
//! people; the header timeout closes them and memory stays bounded.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use skycast_tests::serve_process::ServeProcess;
use skycast_tests::{example_music, write_planning, Puller};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{Notify, Semaphore};

const SLOW_CONNECTIONS: usize = 2000;
/// Connections being opened (TCP connect and TLS handshake) at once.
const OPENING_AT_ONCE: usize = 64;
const HEADER_TIMEOUT_SECS: u64 = 3;
const IDLE_TIMEOUT_SECS: u64 = 5;
/// One byte of the request head every this often: well inside the timeout, so
/// only a deadline on the whole head (not an inactivity timer) closes them.
const TRICKLE_EVERY: Duration = Duration::from_millis(700);
/// Players and people start once this many slow clients are trickling.
const UNDER_ATTACK: usize = 500;

/// `skycast-publisher <args>`; fails the test unless it exits 0; its stdout.
fn cli(args: &[&str]) -> String {
    skycast_tests::serve_process::publisher_cli(
        args,
        &[("SKYCAST_ADMIN_PASSWORD", "admin-password"), ("RUST_LOG", "warn")],
    )
}

fn tls_client(ca_pem: &Path) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(ca_pem).unwrap();
    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Arc::new(config)
}

#[derive(Debug)]
enum Slow {
    /// Refused or shed before the TLS handshake finished.
    NotAdmitted,
    /// Closed by the server this long after the handshake ended.
    Closed(Duration),
    /// Still open long after the header timeout.
    StillOpen,
}

/// One slow client: connects from `source`, finishes the TLS handshake, sends
/// the start of a request head (HTTP/1.1, or the HTTP/2 preface for `h2`), then
/// one byte at a time, until the server closes the connection.
async fn slow_client(
    server: SocketAddr,
    source: IpAddr,
    h2: bool,
    tls: Arc<rustls::ClientConfig>,
    opening: Arc<Semaphore>,
    trickling: Arc<AtomicUsize>,
    under_attack: Arc<Notify>,
) -> Slow {
    let permit = opening.acquire_owned().await.unwrap();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    if socket.bind(SocketAddr::new(source, 0)).is_err() {
        return Slow::NotAdmitted;
    }
    let Ok(tcp) = socket.connect(server).await else {
        return Slow::NotAdmitted;
    };
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let connected = tokio::time::timeout(
        Duration::from_secs(15),
        tokio_rustls::TlsConnector::from(tls).connect(name, tcp),
    )
    .await;
    let Ok(Ok(mut stream)) = connected else {
        return Slow::NotAdmitted;
    };
    drop(permit);
    let since = Instant::now();
    let (first, rest): (&[u8], &[u8]) = if h2 {
        let preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
        (&preface[..3], &preface[3..])
    } else {
        (
            b"GET /login HTTP/1.1\r\nHost: 127.0.0.1\r\n",
            b"X-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        )
    };
    if stream.write_all(first).await.is_err() || stream.flush().await.is_err() {
        return Slow::Closed(since.elapsed());
    }
    if trickling.fetch_add(1, Ordering::SeqCst) + 1 == UNDER_ATTACK {
        under_attack.notify_one();
    }
    let mut next = rest.iter().copied();
    let mut tick = tokio::time::interval(TRICKLE_EVERY);
    tick.tick().await;
    let give_up = tokio::time::sleep(Duration::from_secs(HEADER_TIMEOUT_SECS * 4));
    tokio::pin!(give_up);
    let mut buf = [0u8; 256];
    let outcome = loop {
        tokio::select! {
            read = stream.read(&mut buf) => match read {
                Ok(0) | Err(_) => break Slow::Closed(since.elapsed()),
                // An answer (a 408 or an HTTP/2 GOAWAY) before the close.
                Ok(_) => {}
            },
            _ = tick.tick() => {
                let Some(byte) = next.next() else { continue };
                if stream.write_all(&[byte]).await.is_err() || stream.flush().await.is_err() {
                    break Slow::Closed(since.elapsed());
                }
            }
            _ = &mut give_up => break Slow::StillOpen,
        }
    };
    trickling.fetch_sub(1, Ordering::SeqCst);
    outcome
}

/// A player's long-poll of `head` held `wait_secs`: its status and duration.
async fn long_poll(url: String, ca_pem: PathBuf, token: String, wait_secs: u64) -> (u16, Duration) {
    let ca = reqwest::Certificate::from_pem(&std::fs::read(ca_pem).unwrap()).unwrap();
    let client = reqwest::Client::builder()
        .add_root_certificate(ca)
        .tls_built_in_root_certs(false)
        .build()
        .unwrap();
    let started = Instant::now();
    let resp = client
        .get(format!("{url}/v1/head?after=1&wait={wait_secs}"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap_or_else(|e| panic!("long-poll failed after {:?}: {e}", started.elapsed()));
    let status = resp.status().as_u16();
    let _ = resp.bytes().await.expect("long-poll body");
    (status, started.elapsed())
}

/// Opens a connection speaking `alpn`, gets `/login` on it, then waits for the
/// server to close it: how long it stayed open idle after the response.
async fn idle_close_after(server: SocketAddr, ca_pem: &Path, alpn: &[u8]) -> Duration {
    let mut config = Arc::unwrap_or_clone(tls_client(ca_pem));
    config.alpn_protocols = vec![alpn.to_vec()];
    let tcp = tokio::net::TcpStream::connect(server).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .unwrap();
    let io = hyper_util::rt::TokioIo::new(tls);
    let request = || {
        axum::http::Request::get(format!("https://127.0.0.1:{}/login", server.port()))
            .body(axum::body::Body::empty())
            .unwrap()
    };
    // The request handle is kept until the end: a client connection ends when
    // its last handle is dropped, and this measures the server's close.
    if alpn == b"h2" {
        let (mut send, conn) =
            hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io)
                .await
                .unwrap();
        let conn = tokio::spawn(conn);
        read_ok(send.send_request(request()).await.unwrap()).await;
        let answered = Instant::now();
        closed(conn).await;
        drop(send);
        answered.elapsed()
    } else {
        let (mut send, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
        let conn = tokio::spawn(conn);
        read_ok(send.send_request(request()).await.unwrap()).await;
        let answered = Instant::now();
        closed(conn).await;
        drop(send);
        answered.elapsed()
    }
}

async fn read_ok(response: axum::http::Response<hyper::body::Incoming>) {
    assert_eq!(response.status(), 200);
    axum::body::to_bytes(axum::body::Body::new(response.into_body()), usize::MAX)
        .await
        .unwrap();
}

async fn closed<E>(conn: tokio::task::JoinHandle<Result<(), E>>) {
    let ended = tokio::time::timeout(Duration::from_secs(30), conn).await;
    assert!(ended.is_ok(), "the server closes an idle connection within 30 s");
}

/// A person opening the sign-in page on a fresh connection: status and time.
async fn login_page(url: &str, ca_pem: &Path) -> (u16, Duration) {
    let ca = reqwest::Certificate::from_pem(&std::fs::read(ca_pem).unwrap()).unwrap();
    let client = reqwest::Client::builder()
        .add_root_certificate(ca)
        .tls_built_in_root_certs(false)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let started = Instant::now();
    let status = match client.get(format!("{url}/login")).send().await {
        Ok(resp) => resp.status().as_u16(),
        Err(e) => panic!(
            "/login failed under slow clients after {:?}: {e}",
            started.elapsed()
        ),
    };
    (status, started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_slow_header_connections_leave_players_and_people_served_and_are_closed_by_the_header_timeout(
) {
    // The clients need their own descriptors: 2,000 sockets and more.
    let _ = skycast_publisher::net::raise_fd_limit();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("publisher");
    let data_arg = data.to_str().unwrap();
    cli(&["init", "--data", data_arg]);
    let music = example_music();
    let planning = write_planning(&dir.path().join("planning"), &[music[0].as_str()]);
    cli(&[
        "publish",
        "--data",
        data_arg,
        "--planning",
        planning.to_str().unwrap(),
    ]);

    let header_timeout = HEADER_TIMEOUT_SECS.to_string();
    let idle_timeout = IDLE_TIMEOUT_SECS.to_string();
    let mut serve = ServeProcess::start_with_open_files(
        &data,
        &[
            "--header-timeout-secs",
            &header_timeout,
            "--idle-timeout-secs",
            &idle_timeout,
        ],
        1024,
    )
    .await;
    let url = serve.url();
    let player_dir: PathBuf = dir.path().join("player");
    std::fs::create_dir_all(&player_dir).unwrap();
    let config = cli(&[
        "player",
        "add",
        "--data",
        data_arg,
        "--id",
        "shop-1",
        "--shop",
        "main",
        "--server-url",
        &url,
        "--player-data",
        player_dir.join("data").to_str().unwrap(),
    ]);
    let puller = Puller {
        config: player_dir.join("puller.toml"),
        data: player_dir.join("data"),
    };
    std::fs::write(&puller.config, &config).unwrap();
    let token = toml::from_str::<toml::Value>(&config).unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string();
    let ca_pem = data.join("tls/ca.pem");
    let baseline_kib = serve.rss_kib();

    // Half the slow clients share 127.0.0.1 with the players and people (one
    // NAT), the rest come from four other addresses.
    let tls = tls_client(&ca_pem);
    let opening = Arc::new(Semaphore::new(OPENING_AT_ONCE));
    let trickling = Arc::new(AtomicUsize::new(0));
    let under_attack = Arc::new(Notify::new());
    let attack_started = Instant::now();
    // A long-poll far longer than the header timeout, waiting through the attack.
    let long_poll_secs = HEADER_TIMEOUT_SECS * 2;
    let waiting = tokio::spawn(long_poll(url.clone(), ca_pem.clone(), token, long_poll_secs));
    let slow: Vec<_> = (0..SLOW_CONNECTIONS)
        .map(|i| {
            let source = if i % 2 == 0 {
                Ipv4Addr::LOCALHOST
            } else {
                Ipv4Addr::new(127, 0, 0, 2 + (i % 8 / 2) as u8)
            };
            tokio::spawn(slow_client(
                serve.addr(),
                IpAddr::V4(source),
                i % 10 == 9,
                tls.clone(),
                opening.clone(),
                trickling.clone(),
                under_attack.clone(),
            ))
        })
        .collect();

    // Players and people while the slow connections arrive and trickle.
    tokio::time::timeout(Duration::from_secs(30), under_attack.notified())
        .await
        .expect("500 slow clients trickling within 30 s");
    let mut login_times = Vec::new();
    let mut most_open = 0;
    let mut most_files = 0;
    for round in 0..3 {
        let (status, took) = login_page(&url, &ca_pem).await;
        assert_eq!(status, 200, "/login in round {round}");
        login_times.push(took);
        let synced = Instant::now();
        let out = puller.sync().await;
        assert!(
            out.status.success(),
            "a puller's sync failed under slow clients (round {round}, {:?}): {}",
            synced.elapsed(),
            String::from_utf8_lossy(&out.stderr)
        );
        most_open = most_open.max(trickling.load(Ordering::SeqCst));
        most_files = most_files.max(serve.open_files());
    }
    let (status, took) = login_page(&url, &ca_pem).await;
    assert_eq!(status, 200, "/login after the syncs");
    login_times.push(took);
    assert_eq!(
        puller.current_version(),
        Some(1),
        "the puller installed the version"
    );
    let (status, held) = waiting.await.unwrap();
    assert_eq!(status, 200, "the long-poll was answered");
    assert!(
        held + Duration::from_millis(200) >= Duration::from_secs(long_poll_secs),
        "the long-poll was cut after {held:?} (asked {long_poll_secs} s, header timeout {HEADER_TIMEOUT_SECS} s)"
    );

    let mut not_admitted = 0;
    let mut shed = 0;
    let mut timed_out = 0;
    let mut still_open = 0;
    let mut longest = Duration::ZERO;
    let header_timeout = Duration::from_secs(HEADER_TIMEOUT_SECS);
    for task in slow {
        match task.await.unwrap() {
            Slow::NotAdmitted => not_admitted += 1,
            Slow::Closed(after) => {
                longest = longest.max(after);
                if after + Duration::from_millis(300) >= header_timeout {
                    timed_out += 1;
                } else {
                    shed += 1;
                }
            }
            Slow::StillOpen => still_open += 1,
        }
    }
    let attack_took = attack_started.elapsed();
    let peak_kib = serve.peak_memory_kib();
    let log = serve.plain_log();
    println!(
        "{SLOW_CONNECTIONS} slow connections in {attack_took:.1?}: {timed_out} closed by the {HEADER_TIMEOUT_SECS} s header timeout, \
         {shed} shed earlier, {not_admitted} refused before the handshake, {still_open} still open; longest {longest:.1?}"
    );
    println!(
        "serve: VmHWM {} MiB (RSS {} MiB before), at most {most_files} open files, {most_open} slow clients trickling at once; \
         /login took {login_times:.2?}; a {long_poll_secs} s long-poll held {held:.1?}",
        peak_kib / 1024,
        baseline_kib / 1024,
    );

    assert_eq!(still_open, 0, "slow connections outlived the header timeout");
    assert!(
        longest <= header_timeout + Duration::from_secs(2),
        "a slow connection stayed open {longest:?}, header timeout {header_timeout:?}"
    );
    assert!(
        timed_out >= 100,
        "only {timed_out} slow connections were closed by the header timeout (shed {shed}, refused {not_admitted})"
    );
    for took in &login_times {
        assert!(
            *took < Duration::from_secs(2),
            "/login took {took:?} under slow clients"
        );
    }
    assert!(
        peak_kib < 300 * 1024,
        "serve's peak memory reached {} MiB",
        peak_kib / 1024
    );
    assert!(
        most_files < 1024,
        "serve reached the open-file limit: {most_files}"
    );
    let out_of_files = log
        .split_whitespace()
        .filter_map(|w| w.strip_prefix("out_of_files="))
        .any(|n| n != "0");
    assert!(
        !out_of_files && !log.contains("Too many open files") && !log.contains("os error 24"),
        "serve ran out of file descriptors:\n{log}"
    );
    assert!(
        log.contains("connection cap reached"),
        "the caps were reached and reported:\n{log}"
    );

    // Keep-alive: an idle HTTP/2 connection closes after the idle timeout, an
    // idle HTTP/1.1 one after the header timeout (hyper times the next head).
    let (h2_idle, h1_idle) = tokio::join!(
        idle_close_after(serve.addr(), &ca_pem, b"h2"),
        idle_close_after(serve.addr(), &ca_pem, b"http/1.1"),
    );
    println!("idle keep-alive closed after {h2_idle:.1?} (HTTP/2) and {h1_idle:.1?} (HTTP/1.1)");
    let around = |took: Duration, secs: u64| {
        took + Duration::from_millis(300) >= Duration::from_secs(secs)
            && took <= Duration::from_secs(secs + 2)
    };
    assert!(
        around(h2_idle, IDLE_TIMEOUT_SECS),
        "HTTP/2 idle for {h2_idle:?}, idle timeout {IDLE_TIMEOUT_SECS} s"
    );
    assert!(
        around(h1_idle, HEADER_TIMEOUT_SECS),
        "HTTP/1.1 idle for {h1_idle:?}, header timeout {HEADER_TIMEOUT_SECS} s"
    );

    // A graceful stop: SIGTERM, and serve exits cleanly.
    serve.terminate();
    let exit = tokio::time::timeout(Duration::from_secs(20), serve.wait())
        .await
        .expect("serve stops within 20 s of SIGTERM");
    assert!(exit.success(), "serve exited with {exit}:\n{}", serve.plain_log());
}
