//! A real Garage cluster for the mirror tests: 3 nodes on loopback in 2 zones
//! (dc1: nodes 0 and 1, dc2: node 2), `replication_factor = 3`, each node with
//! its own directory and ports. Garage runs as separate `garage server`
//! processes (it is AGPL: nothing of it is linked into Skycast); the `garage`
//! binary comes from `scripts/install-deps.sh` (`cargo install --locked garage`).
//!
//! The cluster gets a bucket, a key allowed to read and write it, and website
//! access with the alias `localhost`: Garage's web endpoint takes a Host that
//! does not end with its `root_domain` whole as the bucket's name, so players
//! read `http://localhost:<web port of node K>/v1/head` with no credentials.
//! Nodes can be killed and restarted; every process is killed on drop.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// The bucket the publisher mirrors to.
pub const BUCKET: &str = "skycast";
/// The alias the web endpoint serves the bucket under (the Host players send).
pub const WEB_ALIAS: &str = "localhost";
/// The region the S3 API signs for.
pub const REGION: &str = "garage";
/// How long the cluster may take to start, or a node to come back.
const READY_TIMEOUT: Duration = Duration::from_secs(90);
const POLL: Duration = Duration::from_millis(100);

/// The `garage` binary: on PATH, or where `cargo install` puts it. Fails the
/// test (never skips it) when it is missing.
pub fn garage_bin() -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join("garage"));
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .map(|dir| dir.join("bin/garage"));
    on_path
        .chain(cargo_home)
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "the `garage` binary is not installed (not on PATH, not in ~/.cargo/bin): \
                 run scripts/install-deps.sh, which runs `cargo install --locked garage`"
            )
        })
}

/// A port free on 127.0.0.1 now (the kernel's pick; Garage binds it right after).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Node {
    zone: &'static str,
    dir: PathBuf,
    config: PathBuf,
    s3: SocketAddr,
    web: SocketAddr,
    admin: SocketAddr,
    id: String,
    child: Option<std::process::Child>,
}

impl Node {
    fn log_path(&self) -> PathBuf {
        self.dir.join("garage.log")
    }

    fn start(&mut self) {
        assert!(self.child.is_none(), "node {} runs already", self.dir.display());
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap();
        let child = std::process::Command::new(garage_bin())
            .arg("-c")
            .arg(&self.config)
            .arg("server")
            .env("RUST_LOG", "garage=info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// `garage -c <config> <args>`: its stdout, or its stderr as the error.
    fn cli(&self, args: &[&str]) -> Result<String, String> {
        let out = std::process::Command::new(garage_bin())
            .arg("-c")
            .arg(&self.config)
            .args(args)
            .env("RUST_LOG", "warn")
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }

    fn cli_ok(&self, args: &[&str]) -> String {
        self.cli(args)
            .unwrap_or_else(|e| panic!("garage {args:?}: {e}\nnode log:\n{}", self.log()))
    }

    /// Whether the admin API's `/health` says the cluster can serve (quorum reached).
    fn healthy(&self) -> bool {
        // A blocking one-shot request: no runtime needed here.
        let Ok(mut stream) = std::net::TcpStream::connect_timeout(&self.admin, Duration::from_secs(1)) else {
            return false;
        };
        use std::io::{Read, Write};
        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
        let request = format!(
            "GET /health HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.admin
        );
        if stream.write_all(request.as_bytes()).is_err() {
            return false;
        }
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        answer.starts_with("HTTP/1.1 200")
    }
}

/// The running cluster.
pub struct GarageCluster {
    _dir: tempfile::TempDir,
    nodes: Vec<Node>,
    key_id: String,
    secret: String,
}

fn wait_until(what: &str, mut ok: impl FnMut() -> bool, log: impl Fn() -> String) {
    let deadline = Instant::now() + READY_TIMEOUT;
    while !ok() {
        assert!(
            Instant::now() < deadline,
            "garage: {what} did not happen\n{}",
            log()
        );
        std::thread::sleep(POLL);
    }
}

impl GarageCluster {
    /// Starts 3 nodes, connects them, applies a layout (dc1: 2 nodes, dc2: 1),
    /// waits until every node is healthy, then makes the bucket, the key and the
    /// website alias. Blocking (run it with `spawn_blocking` beside servers of the
    /// same process).
    pub fn start() -> GarageCluster {
        garage_bin();
        let dir = tempfile::Builder::new().prefix("garage-").tempdir().unwrap();
        let secret = hex::encode(skycast_publisher::random_bytes::<32>());
        let mut nodes = Vec::new();
        for (i, zone) in ["dc1", "dc1", "dc2"].into_iter().enumerate() {
            let node_dir = dir.path().join(format!("node{i}"));
            std::fs::create_dir_all(node_dir.join("meta")).unwrap();
            std::fs::create_dir_all(node_dir.join("data")).unwrap();
            let addr = |port| SocketAddr::from(([127, 0, 0, 1], port));
            let (rpc, s3, web, admin) = (
                addr(free_port()),
                addr(free_port()),
                addr(free_port()),
                addr(free_port()),
            );
            let config = node_dir.join("garage.toml");
            let text = format!(
                r#"metadata_dir = "{meta}"
data_dir = "{data}"
db_engine = "sqlite"
replication_factor = 3
consistency_mode = "consistent"
rpc_bind_addr = "{rpc}"
rpc_public_addr = "{rpc}"
rpc_secret = "{secret}"

[s3_api]
api_bind_addr = "{s3}"
s3_region = "{REGION}"
root_domain = ".s3.garage.test"

[s3_web]
bind_addr = "{web}"
root_domain = ".web.garage.test"
index = "index.html"

[admin]
api_bind_addr = "{admin}"
"#,
                meta = node_dir.join("meta").display(),
                data = node_dir.join("data").display(),
            );
            std::fs::write(&config, text).unwrap();
            // It holds the cluster's RPC secret.
            std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600)).unwrap();
            nodes.push(Node {
                zone,
                dir: node_dir,
                config,
                s3,
                web,
                admin,
                id: String::new(),
                child: None,
            });
        }
        let mut cluster = GarageCluster {
            _dir: dir,
            nodes,
            key_id: String::new(),
            secret: String::new(),
        };
        for node in &mut cluster.nodes {
            node.start();
        }
        for i in 0..cluster.nodes.len() {
            let mut id = String::new();
            wait_until(
                &format!("node {i} answering `node id`"),
                || match cluster.nodes[i].cli(&["node", "id", "-q"]) {
                    Ok(out) => {
                        id = out.trim().to_string();
                        !id.is_empty()
                    }
                    Err(_) => false,
                },
                || cluster.nodes[i].log(),
            );
            // `node id -q` prints `<id>@<addr>`; the layout wants the id alone.
            cluster.nodes[i].id = id;
        }
        let first = &cluster.nodes[0];
        for other in &cluster.nodes[1..] {
            first.cli_ok(&["node", "connect", &other.id]);
        }
        for node in &cluster.nodes {
            let short = node.id.split('@').next().unwrap_or(&node.id).to_string();
            first.cli_ok(&["layout", "assign", "-z", node.zone, "-c", "1G", &short]);
        }
        first.cli_ok(&["layout", "apply", "--version", "1"]);
        for i in 0..cluster.nodes.len() {
            cluster.wait_healthy(i);
        }
        let first = &cluster.nodes[0];
        first.cli_ok(&["bucket", "create", BUCKET]);
        let created = first.cli_ok(&["key", "create", "skycast-publisher"]);
        let field = |name: &str| {
            created
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    (k.trim().eq_ignore_ascii_case(name)).then(|| v.trim().to_string())
                })
                .unwrap_or_else(|| panic!("`garage key create` printed no {name}: {created}"))
        };
        let (key_id, secret) = (field("Key ID"), field("Secret key"));
        first.cli_ok(&[
            "bucket", "allow", "--read", "--write", "--owner", BUCKET, "--key", &key_id,
        ]);
        first.cli_ok(&["bucket", "website", "--allow", BUCKET]);
        first.cli_ok(&["bucket", "alias", BUCKET, WEB_ALIAS]);
        cluster.key_id = key_id;
        cluster.secret = secret;
        cluster
    }

    fn wait_healthy(&self, i: usize) {
        wait_until(
            &format!("node {i} healthy"),
            || self.nodes[i].healthy(),
            || self.nodes[i].log(),
        );
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The S3 API of node `i`, as `mirror add --s3-endpoint` takes it.
    pub fn s3_endpoint(&self, i: usize) -> String {
        format!("http://{}", self.nodes[i].s3)
    }

    /// The public web endpoint of node `i`, as a puller's `mirrors = [...]` lists it.
    pub fn web_url(&self, i: usize) -> String {
        format!("http://{WEB_ALIAS}:{}", self.nodes[i].web.port())
    }

    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    pub fn secret(&self) -> &str {
        &self.secret
    }

    /// Writes the key as a `mirror add --credentials` file (mode 0600).
    pub fn write_credentials(&self, path: &Path) {
        std::fs::write(
            path,
            format!(
                "access_key_id = \"{}\"\nsecret_access_key = \"{}\"\n",
                self.key_id, self.secret
            ),
        )
        .unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }

    /// Kills node `i` (SIGKILL): a crash, its files stay.
    pub fn kill(&mut self, i: usize) {
        self.nodes[i].kill();
    }

    /// Starts node `i` again on its ports and waits until it is healthy.
    pub fn restart(&mut self, i: usize) {
        self.nodes[i].start();
        self.reconnect(i);
        self.wait_healthy(i);
    }

    /// Connects node `i` to every other running node: a restarted node does not
    /// always find its peers again by itself soon (they were met through
    /// `node connect`, not `bootstrap_peers`).
    fn reconnect(&self, i: usize) {
        for (j, other) in self.nodes.iter().enumerate() {
            if j == i || other.child.is_none() {
                continue;
            }
            wait_until(
                &format!("node {i} connected to node {j}"),
                || self.nodes[i].cli(&["node", "connect", &other.id]).is_ok(),
                || self.nodes[i].log(),
            );
        }
    }

    /// Kills every node: the storage is gone for the publisher and the players.
    pub fn stop_all(&mut self) {
        for node in &mut self.nodes {
            node.kill();
        }
    }

    /// Starts every stopped node and waits until all are healthy.
    pub fn start_all(&mut self) {
        for node in &mut self.nodes {
            if node.child.is_none() {
                node.start();
            }
        }
        for i in 0..self.nodes.len() {
            self.reconnect(i);
        }
        for i in 0..self.nodes.len() {
            self.wait_healthy(i);
        }
    }

    /// The log of node `i` so far.
    pub fn log(&self, i: usize) -> String {
        self.nodes[i].log()
    }

    /// [`GarageCluster::web_get`] again (for at most 30 s) while node `i` does
    /// not answer 200: after a restart, or on a loaded machine, a node learns
    /// the bucket's website access, its alias and new objects from its peers a
    /// moment later (Garage's tables converge) and answers 400, 403 or 404
    /// until then (a whole suite on 2 cores once took more than 15 s).
    pub async fn web_get_eventually(&self, i: usize, key: &str) -> (u16, Vec<u8>) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (status, body) = self.web_get(i, key).await;
            if status == 200 || Instant::now() >= deadline {
                return (status, body);
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// `GET <web endpoint of node i>/<key>` with no credentials, as a player
    /// does: the status and the body.
    pub async fn web_get(&self, i: usize, key: &str) -> (u16, Vec<u8>) {
        let resp = reqwest::Client::new()
            .get(format!("{}/{key}", self.web_url(i)))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {key} from node {i}: {e}"));
        let status = resp.status().as_u16();
        (status, resp.bytes().await.unwrap().to_vec())
    }
}

impl Drop for GarageCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            node.kill();
        }
    }
}
