//! What the fleet benchmarks share: players enrolled through the library, CPU
//! seconds of a process, simulated shops running the real puller code (their
//! media hard-linked from one shared cache), the server's sockets as the kernel
//! sees them, a byte-counting TCP relay, a keep-alive HTTPS load generator
//! (HTTP/1.1 or HTTP/2) and Debian's nginx as a peer.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use skycast_publisher::DataDir;
use skycast_puller::{Config, Overrides};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Barrier;

/// The shops of content-example, which enrolled players are spread over.
pub const SHOPS: [&str; 3] = ["main", "lille", "nantes"];

/// One player enrolled through the library: its id, its token and the puller
/// configuration `player add` would print (the CA and the trusted key in it).
pub struct Enrolled {
    pub id: String,
    pub token: String,
    pub config: String,
}

/// Registers `count` players named `{prefix}-00000`... through the library
/// (the CLI would start thousands of processes): the same `enrol::add_player`
/// the CLI calls. Shops are taken in turn from [`SHOPS`].
pub fn register(data_dir: &Path, prefix: &str, count: usize) -> Vec<Enrolled> {
    let data = DataDir::open(data_dir).unwrap();
    let db = data.db().unwrap();
    (0..count)
        .map(|i| {
            let id = format!("{prefix}-{i:05}");
            let shop = SHOPS[i % SHOPS.len()];
            let config = skycast_publisher::enrol::add_player(
                &data,
                &db,
                &id,
                shop,
                "https://127.0.0.1:1",
                None,
                None,
            )
            .unwrap();
            let doc: toml::Table = config.parse().unwrap();
            let token = doc["token"].as_str().unwrap().to_string();
            Enrolled { id, token, config }
        })
        .collect()
}

/// User + system CPU seconds of process `pid` so far.
pub fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which may hold spaces) start after ") ".
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    // /proc counts in USER_HZ, which Linux fixes at 100 whatever the kernel's HZ.
    ticks / 100.0
}

/// CPU seconds every process of the machine has spent so far (user, nice,
/// system, interrupts, steal; not idle or I/O wait): what was left for a
/// benchmark is the difference.
pub fn machine_busy_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap();
    let cpu = stat.lines().next().unwrap();
    let fields: Vec<f64> = cpu
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().unwrap())
        .collect();
    // user nice system idle iowait irq softirq steal ...
    let busy: f64 = [0, 1, 2, 5, 6, 7].iter().filter_map(|&i| fields.get(i)).sum();
    busy / 100.0
}

/// The one-minute load average.
pub fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|t| t.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}

/// The puller configuration of a simulated shop: `enrolled`'s, pointed at
/// `server` with its data in `data`.
pub fn shop_config(enrolled: &Enrolled, server: &str, data: PathBuf) -> Config {
    let overrides = Overrides {
        server: Some(server.to_string()),
        data: Some(data),
        ..Overrides::default()
    };
    let origin = PathBuf::from(format!("{}.toml", enrolled.id));
    Config::from_toml(&enrolled.config, &origin, Path::new("/"), &overrides).unwrap()
}

/// Hard-links every file of `cache` into `data/media` (made 0700, as the puller
/// makes it), so a shop's first sync finds its media present and fetches only
/// the signed manifest: thousands of shops then hold one copy on disk. Files
/// already there are left alone.
pub fn link_media(cache: &Path, data: &Path) {
    let media = data.join("media");
    skycast_puller::local_store::create_private_dir(&media).unwrap();
    for entry in std::fs::read_dir(cache).unwrap() {
        let entry = entry.unwrap();
        let to = media.join(entry.file_name());
        if !to.exists() {
            std::fs::hard_link(entry.path(), &to).unwrap();
        }
    }
}

/// The server's side of the TCP connections to one local port, from /proc/net/tcp.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ServerSockets {
    /// Established connections.
    pub established: usize,
    /// Of those, how many hold request bytes the server has not read yet.
    pub unread: usize,
}

/// [`ServerSockets`] of `port` on IPv4 loopback.
pub fn server_sockets(port: u16) -> ServerSockets {
    let text = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let mut out = ServerSockets::default();
    for line in text.lines().skip(1) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // sl local_address rem_address st tx_queue:rx_queue ...
        let (Some(local), Some(state), Some(queues)) = (fields.get(1), fields.get(3), fields.get(4)) else {
            continue;
        };
        let local_port = local
            .rsplit(':')
            .next()
            .and_then(|p| u16::from_str_radix(p, 16).ok());
        if local_port != Some(port) || *state != "01" {
            continue;
        }
        out.established += 1;
        let rx = queues
            .split(':')
            .nth(1)
            .and_then(|q| u64::from_str_radix(q, 16).ok())
            .unwrap_or(0);
        if rx > 0 {
            out.unread += 1;
        }
    }
    out
}

/// A TCP relay on 127.0.0.1 to `target` that counts the bytes it carries each
/// way: what a client and a server put on the wire (TLS records included, TCP/IP
/// headers not).
pub struct CountingRelay {
    addr: SocketAddr,
    up: Arc<AtomicU64>,
    down: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl CountingRelay {
    pub async fn start(target: SocketAddr) -> CountingRelay {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (up, down) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let (up2, down2) = (up.clone(), down.clone());
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = tokio::net::TcpStream::connect(target).await else {
                    continue;
                };
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                tokio::spawn(pump(cr, sw, up2.clone()));
                tokio::spawn(pump(sr, cw, down2.clone()));
            }
        });
        CountingRelay { addr, up, down, task }
    }

    /// `https://127.0.0.1:<port>` (the server's certificate names 127.0.0.1).
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// Bytes carried so far: (client → server, server → client).
    pub fn bytes(&self) -> (u64, u64) {
        (self.up.load(Ordering::SeqCst), self.down.load(Ordering::SeqCst))
    }
}

impl Drop for CountingRelay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Copies `from` to `to`, counting each chunk before it is written on.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    count: Arc<AtomicU64>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                count.fetch_add(n as u64, Ordering::SeqCst);
                if to.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown().await;
}

/// The HTTP version a load generator speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpVersion {
    Http1,
    Http2,
}

impl HttpVersion {
    fn alpn(self) -> &'static [u8] {
        match self {
            HttpVersion::Http1 => b"http/1.1",
            HttpVersion::Http2 => b"h2",
        }
    }
}

/// A rustls client configuration trusting only the CA in `ca_pem`, offering `http`.
pub fn tls_client(ca_pem: &Path, http: HttpVersion) -> Arc<rustls::ClientConfig> {
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
    config.alpn_protocols = vec![http.alpn().to_vec()];
    Arc::new(config)
}

/// What a load run measured.
#[derive(Debug, Clone, Copy)]
pub struct LoadRate {
    pub requests: usize,
    pub per_sec: f64,
    /// CPU the server spent per request, in microseconds.
    pub server_cpu_us: f64,
}

/// One request on a connection of either version.
enum Sender {
    Http1(hyper::client::conn::http1::SendRequest<axum::body::Body>),
    Http2(hyper::client::conn::http2::SendRequest<axum::body::Body>),
}

impl Sender {
    async fn get(&mut self, addr: SocketAddr, path: &str, token: &str) -> usize {
        let request = axum::http::Request::get(match self {
            // HTTP/1.1 in origin form with a Host header, as browsers and nginx expect.
            Sender::Http1(_) => path.to_string(),
            Sender::Http2(_) => format!("https://{addr}{path}"),
        })
        .header("host", addr.to_string())
        .header("authorization", format!("Bearer {token}"))
        .body(axum::body::Body::empty())
        .unwrap();
        // A keep-alive connection becomes ready again only once hyper has seen the
        // previous answer end; sending before that is refused ("connection was not ready").
        match self {
            Sender::Http1(s) => s.ready().await,
            Sender::Http2(s) => s.ready().await,
        }
        .expect("connection ready for the next request");
        let response = match self {
            Sender::Http1(s) => s.send_request(request).await,
            Sender::Http2(s) => {
                // HTTP/2 names the authority in the URI; a Host header besides is refused by some servers.
                let (mut parts, body) = request.into_parts();
                parts.headers.remove("host");
                s.send_request(axum::http::Request::from_parts(parts, body)).await
            }
        }
        .expect("request");
        let status = response.status();
        let body = axum::body::to_bytes(axum::body::Body::new(response.into_body()), 1 << 20)
            .await
            .expect("body");
        assert!(
            status.is_success(),
            "GET {path} on {addr}: HTTP {status}: {}",
            String::from_utf8_lossy(&body)
        );
        body.len()
    }
}

/// Opens one TLS connection to `addr` speaking `http` (the server must agree to it).
async fn connect(addr: SocketAddr, tls: Arc<rustls::ClientConfig>, http: HttpVersion) -> Sender {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let stream = tokio_rustls::TlsConnector::from(tls)
        .connect(name, tcp)
        .await
        .unwrap();
    assert_eq!(
        stream.get_ref().1.alpn_protocol(),
        Some(http.alpn()),
        "{addr} did not agree to {http:?}"
    );
    let io = hyper_util::rt::TokioIo::new(stream);
    match http {
        HttpVersion::Http1 => {
            let (send, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
            tokio::spawn(conn);
            Sender::Http1(send)
        }
        HttpVersion::Http2 => {
            let (send, conn) =
                hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io)
                    .await
                    .unwrap();
            tokio::spawn(conn);
            Sender::Http2(send)
        }
    }
}

/// The bytes of the second `GET path` on one connection through `relay` (so
/// the handshake and the connection's first exchange are left out): (up, down).
pub async fn second_request_bytes(
    relay: &CountingRelay,
    ca_pem: &Path,
    http: HttpVersion,
    path: &str,
    token: &str,
) -> (u64, u64) {
    let mut sender = connect(relay.addr, tls_client(ca_pem, http), http).await;
    sender.get(relay.addr, path, token).await;
    let before = relay.bytes();
    sender.get(relay.addr, path, token).await;
    let after = relay.bytes();
    (after.0 - before.0, after.1 - before.1)
}

/// A load run: `connections` keep-alive connections, each sending
/// `per_connection` `GET path` (bearer `token`) one after the other.
#[derive(Debug, Clone)]
pub struct LoadPlan {
    pub http: HttpVersion,
    pub path: String,
    pub token: String,
    pub connections: usize,
    pub per_connection: usize,
}

/// Runs `plan` against `addr` once every connection is open and has had one
/// answer: the rate of answers, handshakes excluded, and the CPU the server
/// spent per request (`server_cpu` reads its CPU seconds so far).
pub async fn load(
    addr: SocketAddr,
    ca_pem: &Path,
    plan: &LoadPlan,
    server_cpu: &dyn Fn() -> f64,
) -> LoadRate {
    let tls = tls_client(ca_pem, plan.http);
    let start = Arc::new(Barrier::new(plan.connections + 1));
    let mut tasks = Vec::with_capacity(plan.connections);
    for _ in 0..plan.connections {
        let (tls, start, plan) = (tls.clone(), start.clone(), plan.clone());
        tasks.push(tokio::spawn(async move {
            let mut sender = connect(addr, tls, plan.http).await;
            sender.get(addr, &plan.path, &plan.token).await;
            start.wait().await;
            for _ in 0..plan.per_connection {
                sender.get(addr, &plan.path, &plan.token).await;
            }
        }));
    }
    start.wait().await;
    let cpu0 = server_cpu();
    let t0 = Instant::now();
    for task in tasks {
        task.await.expect("load connection");
    }
    let secs = t0.elapsed().as_secs_f64();
    let requests = plan.connections * plan.per_connection;
    LoadRate {
        requests,
        per_sec: requests as f64 / secs,
        server_cpu_us: (server_cpu() - cpu0) * 1e6 / requests as f64,
    }
}

/// Debian's nginx serving one file over TLS on 127.0.0.1, as a child process
/// (`daemon off`) with its configuration, pid, logs and temp files in a temp
/// directory. Killed when dropped.
pub struct Nginx {
    child: std::process::Child,
    addr: SocketAddr,
    dir: tempfile::TempDir,
}

/// How long nginx may take to accept connections.
const NGINX_START_TIMEOUT: Duration = Duration::from_secs(20);

impl Nginx {
    /// The nginx binary: on PATH, else where Debian puts it (`/usr/sbin` is not
    /// on every user's PATH).
    pub fn binary() -> Option<PathBuf> {
        let on_path = std::env::var_os("PATH")
            .into_iter()
            .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
            .map(|d| d.join("nginx"));
        on_path
            .chain([PathBuf::from("/usr/sbin/nginx")])
            .find(|p| p.is_file())
    }

    /// Serves `body` as `application/json` at `path` with the certificate
    /// `cert`/`key`, with `workers` worker processes (`auto`: one per core).
    pub async fn start(cert: &Path, key: &Path, path: &str, body: &[u8], workers: &str) -> Nginx {
        let binary = Nginx::binary()
            .expect("nginx is missing: run scripts/install-deps.sh (Debian package nginx-light)");
        let dir = tempfile::tempdir().unwrap();
        let prefix = dir.path();
        let file = prefix.join("www").join(path.trim_start_matches('/'));
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, body).unwrap();
        std::fs::create_dir_all(prefix.join("tmp")).unwrap();
        // A port the kernel picks, freed for nginx to bind (nginx cannot take a socket).
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        // As root, nginx would run its workers as `nobody`, which cannot read the temp dir.
        // /proc/self belongs to the process's effective user.
        let root =
            std::fs::metadata("/proc/self").is_ok_and(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0);
        let user = if root { "user root;" } else { "" };
        let p = prefix.display();
        let conf = format!(
            "{user}\n\
             worker_processes {workers};\n\
             pid {p}/nginx.pid;\n\
             error_log {p}/error.log warn;\n\
             events {{ worker_connections 4096; }}\n\
             http {{\n\
               access_log off;\n\
               client_body_temp_path {p}/tmp/body;\n\
               proxy_temp_path {p}/tmp/proxy;\n\
               fastcgi_temp_path {p}/tmp/fastcgi;\n\
               uwsgi_temp_path {p}/tmp/uwsgi;\n\
               scgi_temp_path {p}/tmp/scgi;\n\
               keepalive_requests 1000000;\n\
               keepalive_timeout 60s;\n\
               server {{\n\
                 listen {addr} ssl http2;\n\
                 ssl_certificate {cert};\n\
                 ssl_certificate_key {key};\n\
                 ssl_protocols TLSv1.2 TLSv1.3;\n\
                 root {p}/www;\n\
                 location = {path} {{ default_type application/json; }}\n\
               }}\n\
             }}\n",
            cert = cert.display(),
            key = key.display(),
        );
        let conf_path = prefix.join("nginx.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let child = std::process::Command::new(&binary)
            .arg("-c")
            .arg(&conf_path)
            .arg("-p")
            .arg(prefix)
            .arg("-e")
            .arg(prefix.join("error.log"))
            .args(["-g", "daemon off;"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        let mut nginx = Nginx { child, addr, dir };
        let deadline = Instant::now() + NGINX_START_TIMEOUT;
        while tokio::net::TcpStream::connect(addr).await.is_err() {
            if let Ok(Some(exit)) = nginx.child.try_wait() {
                panic!("nginx exited with {exit}: {}", nginx.error_log());
            }
            assert!(
                Instant::now() < deadline,
                "nginx did not listen on {addr}: {}",
                nginx.error_log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        nginx
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The master's pid (its workers are its children).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The master's and its workers' CPU seconds so far.
    pub fn cpu_secs(&self) -> f64 {
        let children =
            std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", self.pid())).unwrap_or_default();
        cpu_secs(self.pid())
            + children
                .split_whitespace()
                .filter_map(|p| p.parse::<u32>().ok())
                .map(cpu_secs)
                .sum::<f64>()
    }

    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGKILL to the master only would orphan the workers: SIGTERM stops them all.
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).unwrap_or(i32::MAX));
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
