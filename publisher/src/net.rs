//! The listener people and players connect to: connection caps (overall and per
//! address, sized from the open-file limit), TLS handshakes off the accept path,
//! HTTP/1.1 and HTTP/2 served by hyper with a header timer and an idle timer,
//! shedding of idle and slow connections under pressure, a graceful drain on
//! shutdown, and the peer address handlers see.
//!
//! A connection is *busy* while one of its requests is in flight (from the
//! complete request head to the last byte of the response body: a long-poll, a
//! download) and *idle* otherwise (TLS handshake, a request head still arriving,
//! keep-alive between requests). Only idle connections are ever timed out or
//! shed, so long-polls and downloads are never cut by these limits.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::ConnectInfo;
use bytes::Bytes;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, Notify};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tower::ServiceExt;

/// How long a client may take to finish its TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client may take to send a complete request head.
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a connection that has served a request may wait for the next one.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// The default global cap never goes above this, however high the open-file
/// limit: each TLS connection costs tens of KiB.
const DEFAULT_MAX_CONNECTIONS_CEILING: usize = 4096;
/// How long an idle connection told to close may linger before it is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(1);
/// How long shutdown waits for requests in flight before closing their connections.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest request head (and read buffer) of an HTTP/1.1 connection.
const MAX_HTTP1_BUFFER: usize = 64 * 1024;
/// At most one warning about the caps per this period (a flood would fill the log).
const REPORT_EVERY: Duration = Duration::from_secs(10);

/// The caps and timers of the listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnLimits {
    /// Connections open at once, all addresses together.
    pub max_connections: usize,
    /// Connections open at once from one IPv4 address or one IPv6 /64.
    pub max_per_ip: usize,
    pub handshake_timeout: Duration,
    /// From the end of the handshake (or the last response) to a complete request head.
    pub header_timeout: Duration,
    /// Keep-alive between requests (HTTP/1.1 connections also close after
    /// `header_timeout` without a new request: hyper times the head from the
    /// moment the connection waits for it).
    pub idle_timeout: Duration,
}

impl ConnLimits {
    /// Caps that fit an open-file limit of `nofile`: three quarters of it for
    /// connections (the rest is for the database, the store and media files),
    /// at most 4096, and half of that per address, so hundreds of players
    /// behind one NAT fit while a single address cannot take every slot.
    pub fn for_fd_limit(nofile: u64) -> ConnLimits {
        let nofile = usize::try_from(nofile).unwrap_or(usize::MAX);
        let max_connections = (nofile / 4 * 3).clamp(16, DEFAULT_MAX_CONNECTIONS_CEILING);
        ConnLimits {
            max_connections,
            max_per_ip: max_connections / 2,
            handshake_timeout: HANDSHAKE_TIMEOUT,
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
        }
    }

    /// Caps for this process's current open-file limit (see [`raise_fd_limit`]).
    pub fn for_current_fd_limit() -> ConnLimits {
        let nofile = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
            .map(|(soft, _)| soft)
            .unwrap_or(1024);
        ConnLimits::for_fd_limit(nofile)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FdLimitError {
    #[error("cannot read the open-file limit (RLIMIT_NOFILE): {0}")]
    Read(nix::Error),
    #[error("cannot raise the open-file limit from {soft} to {hard}: {source}; raise it with `ulimit -n` or LimitNOFILE= in the service unit")]
    Raise {
        soft: u64,
        hard: u64,
        source: nix::Error,
    },
}

/// Whether `url` names this machine (127.0.0.0/8, ::1, `localhost`): the only
/// place plain HTTP may go from the publisher (webhooks, mirrors), since it
/// crosses no network.
pub fn is_loopback_url(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// Raises this process's soft open-file limit to its hard limit and returns
/// the limit now in force.
pub fn raise_fd_limit() -> Result<u64, FdLimitError> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).map_err(FdLimitError::Read)?;
    if soft >= hard {
        return Ok(soft);
    }
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard).map_err(|source| FdLimitError::Raise {
        soft,
        hard,
        source,
    })?;
    Ok(hard)
}

/// The client's address, for sign-in throttling, over plain TCP or TLS.
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub SocketAddr);

/// Serves `app` on `listener` (over TLS when `tls` is given) until `stop` turns
/// true (or its sender is dropped); then stops accepting, lets requests in
/// flight finish (up to 30 s) and returns when every connection is closed.
pub async fn serve(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    limits: ConnLimits,
    app: axum::Router,
    mut stop: watch::Receiver<bool>,
) {
    let table = Arc::new(ConnTable::new(limits));
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let mut http = auto::Builder::new(TokioExecutor::new());
    http.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(MAX_HTTP1_BUFFER);
    http.http2().timer(TokioTimer::new());
    let http = Arc::new(http);
    let mut conns = JoinSet::new();
    loop {
        while let Some(ended) = conns.try_join_next() {
            if let Err(e) = ended {
                tracing::error!(error = %e, "a connection task failed");
            }
        }
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.wait_for(|stopped| *stopped) => break,
        };
        let (tcp, peer) = match accepted {
            Ok(c) => c,
            Err(e) if is_out_of_files(&e) => {
                // Free a descriptor for the next accept, and let it close.
                tracing::debug!(error = %e, "accept failed");
                table.shed_one();
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
            Err(e) => {
                tracing::debug!(error = %e, "accept failed");
                // A client that gave up before the accept costs nothing; other
                // errors (no memory, no buffers) get a pause instead of a spin.
                if !matches!(
                    e.kind(),
                    std::io::ErrorKind::ConnectionAborted | std::io::ErrorKind::ConnectionReset
                ) {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                continue;
            }
        };
        let Some(slot) = table.admit(peer.ip()) else {
            continue;
        };
        let connection = Connection {
            slot,
            peer,
            http: http.clone(),
            app: app.clone(),
            limits,
            stop: stop.clone(),
        };
        conns.spawn(connection.run(tcp, acceptor.clone()));
    }
    drop(listener);
    let drained = tokio::time::timeout(DRAIN_TIMEOUT + CLOSE_GRACE, async {
        while conns.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            open = conns.len(),
            "connections still open after the drain: closing them"
        );
        conns.abort_all();
        while conns.join_next().await.is_some() {}
    }
}

fn is_out_of_files(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(code) if code == nix::libc::EMFILE || code == nix::libc::ENFILE)
}

/// The key a per-address cap counts: an IPv4 address, or an IPv6 /64 (one
/// subscriber's network, which holds more addresses than anyone can count).
fn cap_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        v4 => v4,
    }
}

/// Every open connection, for the caps and for choosing whom to shed.
struct ConnTable {
    limits: ConnLimits,
    epoch: Instant,
    inner: Mutex<Table>,
}

#[derive(Default)]
struct Table {
    next_id: u64,
    open: HashMap<u64, Arc<Conn>>,
    per_key: HashMap<IpAddr, usize>,
    shed: u64,
    refused: u64,
    /// Accepts that failed for want of a file descriptor.
    out_of_files: u64,
    last_report: Option<Instant>,
}

/// One open connection, as the table and its own task see it.
struct Conn {
    id: u64,
    key: IpAddr,
    epoch: Instant,
    in_flight: AtomicUsize,
    /// Milliseconds after `epoch` since which no request has been in flight.
    idle_since_ms: AtomicU64,
    served: AtomicBool,
    /// Told when the table sheds this connection: close at once.
    evict: Notify,
    /// Told when a request ends: the idle timer starts again.
    changed: Notify,
    /// Set when a response asked for the connection to close (`Connection:
    /// close`, e.g. a cut-off token's 401): HTTP/1.1 closes by itself after
    /// it, HTTP/2 has no such header, so the connection is shut down gracefully
    /// (GOAWAY once the streams in flight end).
    close_asked: AtomicBool,
}

impl Conn {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// When this connection times out for idleness, or `None` while it is busy.
    fn idle_deadline(&self, limits: &ConnLimits) -> Option<Instant> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        let allowed = if self.served.load(Ordering::Acquire) {
            limits.idle_timeout
        } else {
            limits.header_timeout
        };
        let since = Duration::from_millis(self.idle_since_ms.load(Ordering::Acquire));
        Some(self.epoch + since + allowed)
    }
}

impl ConnTable {
    fn new(limits: ConnLimits) -> ConnTable {
        ConnTable {
            limits,
            epoch: Instant::now(),
            inner: Mutex::new(Table::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A slot for a new connection from `ip`. At a cap, the connection idle the
    /// longest (from that address at the per-address cap) is shed to make room;
    /// when every connection concerned is busy the new one is refused.
    fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<Slot> {
        let key = cap_key(ip);
        let mut table = self.lock();
        let over_key = table.per_key.get(&key).copied().unwrap_or(0) >= self.limits.max_per_ip;
        let over_total = table.open.len() >= self.limits.max_connections;
        if over_key || over_total {
            // Shedding one of this address's own connections relieves both caps.
            if table.shed_oldest_idle(over_key.then_some(key)).is_none() {
                table.refused += 1;
                self.report(&mut table);
                return None;
            }
            self.report(&mut table);
        }
        let id = table.next_id;
        table.next_id += 1;
        let conn = Arc::new(Conn {
            id,
            key,
            epoch: self.epoch,
            in_flight: AtomicUsize::new(0),
            idle_since_ms: AtomicU64::new(0),
            served: AtomicBool::new(false),
            evict: Notify::new(),
            changed: Notify::new(),
            close_asked: AtomicBool::new(false),
        });
        conn.idle_since_ms.store(conn.now_ms(), Ordering::Release);
        table.open.insert(id, conn.clone());
        *table.per_key.entry(key).or_insert(0) += 1;
        Some(Slot {
            table: self.clone(),
            conn,
        })
    }

    /// Sheds the connection idle the longest, after an accept ran out of descriptors.
    fn shed_one(&self) {
        let mut table = self.lock();
        table.out_of_files += 1;
        table.shed_oldest_idle(None);
        self.report(&mut table);
    }

    fn report(&self, table: &mut Table) {
        let now = Instant::now();
        if table.last_report.is_some_and(|at| now - at < REPORT_EVERY) {
            return;
        }
        tracing::warn!(
            open = table.open.len(),
            max_connections = self.limits.max_connections,
            max_per_ip = self.limits.max_per_ip,
            shed = table.shed,
            refused = table.refused,
            out_of_files = table.out_of_files,
            "connection cap reached: shedding idle and slow connections, refusing new ones when all are busy \
             (if out_of_files is not 0, lower --max-connections or raise the open-file limit)"
        );
        table.last_report = Some(now);
        table.shed = 0;
        table.refused = 0;
        table.out_of_files = 0;
    }
}

impl Table {
    /// Sheds the connection (from `key`, if given) with no request in flight
    /// that has been idle the longest; its id, or `None` if all are busy.
    fn shed_oldest_idle(&mut self, key: Option<IpAddr>) -> Option<u64> {
        let victim = self
            .open
            .values()
            .filter(|c| key.is_none_or(|k| c.key == k))
            .filter(|c| c.in_flight.load(Ordering::Acquire) == 0)
            .min_by_key(|c| (c.idle_since_ms.load(Ordering::Acquire), c.id))
            .cloned()?;
        self.remove(victim.id);
        victim.evict.notify_one();
        self.shed += 1;
        Some(victim.id)
    }

    fn remove(&mut self, id: u64) {
        if let Some(conn) = self.open.remove(&id) {
            if let Some(n) = self.per_key.get_mut(&conn.key) {
                *n -= 1;
                if *n == 0 {
                    self.per_key.remove(&conn.key);
                }
            }
        }
    }
}

/// A connection's place in the table, given back when its task ends.
struct Slot {
    table: Arc<ConnTable>,
    conn: Arc<Conn>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.table.lock().remove(self.conn.id);
    }
}

/// Held from a complete request head to the end of its response body.
struct Busy(Arc<Conn>);

impl Busy {
    fn start(conn: Arc<Conn>) -> Busy {
        conn.served.store(true, Ordering::Release);
        conn.in_flight.fetch_add(1, Ordering::AcqRel);
        Busy(conn)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.idle_since_ms.store(self.0.now_ms(), Ordering::Release);
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.0.changed.notify_one();
    }
}

/// A response body that keeps its connection busy until it is sent.
struct Tracked {
    body: axum::body::Body,
    busy: Option<Busy>,
}

impl hyper::body::Body for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        if matches!(polled, Poll::Ready(None) | Poll::Ready(Some(Err(_)))) {
            self.busy = None;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// One accepted connection and what it needs to serve itself.
struct Connection {
    slot: Slot,
    peer: SocketAddr,
    http: Arc<auto::Builder<TokioExecutor>>,
    app: axum::Router,
    limits: ConnLimits,
    stop: watch::Receiver<bool>,
}

impl Connection {
    async fn run(mut self, tcp: TcpStream, tls: Option<tokio_rustls::TlsAcceptor>) {
        let Some(acceptor) = tls else {
            return self.serve_http(TokioIo::new(tcp)).await;
        };
        let peer = self.peer;
        let conn = self.slot.conn.clone();
        let handshake = tokio::time::timeout(self.limits.handshake_timeout, acceptor.accept(tcp));
        let tls = tokio::select! {
            done = handshake => match done {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return;
                }
            },
            _ = conn.evict.notified() => {
                tracing::debug!(%peer, "connection shed during its TLS handshake");
                return;
            }
            _ = self.stop.wait_for(|stopped| *stopped) => return,
        };
        // The header timer starts now.
        conn.idle_since_ms.store(conn.now_ms(), Ordering::Release);
        self.serve_http(TokioIo::new(tls)).await
    }

    async fn serve_http<I>(mut self, io: I)
    where
        I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    {
        let peer = self.peer;
        let conn = self.slot.conn.clone();
        let service = {
            let (conn, app) = (conn.clone(), self.app.clone());
            hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
                req.extensions_mut().insert(ConnectInfo(PeerAddr(peer)));
                let busy = Busy::start(conn.clone());
                let app = app.clone();
                let conn = conn.clone();
                async move {
                    let response = app.oneshot(req).await?;
                    let closing = response
                        .headers()
                        .get(axum::http::header::CONNECTION)
                        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
                    if closing {
                        conn.close_asked.store(true, Ordering::Release);
                    }
                    Ok::<_, Infallible>(response.map(|body| Tracked {
                        body,
                        busy: Some(busy),
                    }))
                }
            })
        };
        let served = self.http.serve_connection(io, service);
        tokio::pin!(served);
        // Once set, the connection is closing: dropped at this instant at the latest.
        let mut close_by = None;
        if *self.stop.borrow_and_update() {
            served.as_mut().graceful_shutdown();
            close_by = Some(Instant::now() + DRAIN_TIMEOUT);
        }
        loop {
            let idle_by = conn.idle_deadline(&self.limits);
            let wake = match (close_by, idle_by) {
                (Some(close), _) => close,
                (None, Some(idle)) => idle,
                (None, None) => Instant::now() + self.limits.idle_timeout,
            };
            tokio::select! {
                ended = served.as_mut() => {
                    if let Err(e) = ended {
                        tracing::debug!(%peer, error = %e, "connection ended");
                    }
                    return;
                }
                _ = conn.evict.notified() => {
                    tracing::debug!(%peer, "idle connection shed to make room");
                    return;
                }
                _ = conn.changed.notified() => {
                    if close_by.is_none() && conn.close_asked.load(Ordering::Acquire) {
                        served.as_mut().graceful_shutdown();
                        close_by = Some(Instant::now() + CLOSE_GRACE);
                    }
                }
                _ = self.stop.changed(), if close_by.is_none() => {
                    served.as_mut().graceful_shutdown();
                    close_by = Some(Instant::now() + DRAIN_TIMEOUT);
                }
                _ = tokio::time::sleep_until(wake) => {
                    let now = Instant::now();
                    if close_by.is_some_and(|at| now >= at) {
                        tracing::debug!(%peer, "connection closed after its grace period");
                        return;
                    }
                    if close_by.is_none() && conn.idle_deadline(&self.limits).is_some_and(|at| now >= at) {
                        tracing::debug!(%peer, "idle connection timed out");
                        served.as_mut().graceful_shutdown();
                        close_by = Some(now + CLOSE_GRACE);
                    }
                }
            }
        }
    }
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, TlsListener>> for PeerAddr {
    fn connect_info(stream: axum::serve::IncomingStream<'_, TlsListener>) -> PeerAddr {
        PeerAddr(*stream.remote_addr())
    }
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, TcpListener>> for PeerAddr {
    fn connect_info(stream: axum::serve::IncomingStream<'_, TcpListener>) -> PeerAddr {
        PeerAddr(*stream.remote_addr())
    }
}

type Handshaken = (tokio_rustls::server::TlsStream<TcpStream>, SocketAddr);

/// Accepts TCP connections and runs each TLS handshake in its own task, so a slow
/// or silent client cannot hold up the others; finished handshakes queue here.
/// An `axum::serve` listener for test servers (the tampering proxy); it has none
/// of [`serve`]'s caps and timers, which `serve` itself uses.
pub struct TlsListener {
    ready: mpsc::Receiver<Handshaken>,
    local: SocketAddr,
}

impl TlsListener {
    /// The listener and its accept loop, for the caller to run in its task set.
    /// The loop ends when the listener is dropped, aborting handshakes under way.
    pub fn new(
        listener: TcpListener,
        config: Arc<rustls::ServerConfig>,
    ) -> (TlsListener, impl Future<Output = ()> + Send + 'static) {
        let local = listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        let (tx, ready) = mpsc::channel(64);
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        let accept_loop = async move {
            let mut handshakes = JoinSet::new();
            loop {
                while handshakes.try_join_next().is_some() {}
                let accepted = tokio::select! {
                    accepted = listener.accept() => accepted,
                    _ = tx.closed() => return,
                };
                let (tcp, peer) = match accepted {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let acceptor = acceptor.clone();
                let handshaken = tx.clone();
                handshakes.spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(tls)) => {
                            let _ = handshaken.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        };
        (TlsListener { ready, local }, accept_loop)
    }

    /// The listener with its accept loop spawned on the runtime, for callers
    /// without a task set of their own (test proxies).
    pub fn spawn(listener: TcpListener, config: Arc<rustls::ServerConfig>) -> TlsListener {
        let (listener, accept_loop) = TlsListener::new(listener, config);
        tokio::spawn(accept_loop);
        listener
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(conn) => conn,
            // The accept loop only ends when this listener is dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.local)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::FutureExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn limits(max_connections: usize, max_per_ip: usize) -> ConnLimits {
        ConnLimits {
            max_connections,
            max_per_ip,
            ..ConnLimits::for_fd_limit(1024)
        }
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn is_open(table: &ConnTable, slot: &Slot) -> bool {
        table.lock().open.contains_key(&slot.conn.id)
    }

    fn was_shed(slot: &Slot) -> bool {
        slot.conn.evict.notified().now_or_never().is_some()
    }

    #[test]
    fn caps_follow_the_open_file_limit_and_leave_room_for_hundreds_behind_one_address() {
        let at_1024 = ConnLimits::for_fd_limit(1024);
        assert_eq!((at_1024.max_connections, at_1024.max_per_ip), (768, 384));
        let high = ConnLimits::for_fd_limit(1 << 20);
        assert_eq!((high.max_connections, high.max_per_ip), (4096, 2048));
        assert_eq!(ConnLimits::for_fd_limit(20).max_connections, 16);
    }

    #[test]
    fn at_the_global_cap_the_oldest_idle_connection_is_shed_and_busy_ones_never() {
        let table = Arc::new(ConnTable::new(limits(2, 2)));
        let first = table.admit(ip("10.0.0.1")).unwrap();
        let second = table.admit(ip("10.0.0.2")).unwrap();
        let _long_poll = Busy::start(first.conn.clone());
        let third = table.admit(ip("10.0.0.3")).unwrap();
        assert!(
            is_open(&table, &first) && !was_shed(&first),
            "a busy connection is never shed"
        );
        assert!(
            !is_open(&table, &second) && was_shed(&second),
            "the idle one made room"
        );
        let _download = Busy::start(third.conn.clone());
        assert!(
            table.admit(ip("10.0.0.4")).is_none(),
            "all busy: the new one is refused"
        );
        assert_eq!(table.lock().open.len(), 2);
    }

    #[test]
    fn at_the_per_address_cap_only_that_addresss_connections_are_shed() {
        let table = Arc::new(ConnTable::new(limits(10, 2)));
        let other = table.admit(ip("10.0.0.9")).unwrap();
        let old = table.admit(ip("10.0.0.1")).unwrap();
        let young = table.admit(ip("10.0.0.1")).unwrap();
        let newest = table.admit(ip("10.0.0.1")).unwrap();
        assert!(
            !is_open(&table, &old) && was_shed(&old),
            "the address's oldest idle made room"
        );
        assert!(is_open(&table, &other) && is_open(&table, &young) && is_open(&table, &newest));
        drop(newest);
        assert_eq!(
            table.lock().per_key.get(&ip("10.0.0.1")),
            Some(&1),
            "a closed slot is given back"
        );
    }

    #[test]
    fn ipv6_addresses_of_one_64_share_a_cap_and_mapped_ipv4_counts_as_ipv4() {
        assert_eq!(
            cap_key(ip("2001:db8:1:2::5")),
            cap_key(ip("2001:db8:1:2:ffff::1"))
        );
        assert_ne!(cap_key(ip("2001:db8:1:2::5")), cap_key(ip("2001:db8:1:3::5")));
        assert_eq!(cap_key(ip("::ffff:192.0.2.7")), ip("192.0.2.7"));
    }

    /// One raw HTTP/1.1 GET over plain TCP; the whole answer, read until the server closes.
    async fn get(addr: SocketAddr, path: &str) -> String {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
        tcp.write_all(request.as_bytes()).await.unwrap();
        let mut answer = String::new();
        tcp.read_to_string(&mut answer).await.unwrap();
        answer
    }

    #[tokio::test]
    async fn shutdown_lets_a_request_in_flight_finish_and_handlers_see_the_peer_address() {
        let (started_tx, mut started) = mpsc::channel::<()>(1);
        let release = Arc::new(Notify::new());
        let app = axum::Router::new()
            .route(
                "/slow",
                axum::routing::get({
                    let release = release.clone();
                    move || async move {
                        let _ = started_tx.send(()).await;
                        release.notified().await;
                        "done"
                    }
                }),
            )
            .route(
                "/peer",
                axum::routing::get(|ConnectInfo(PeerAddr(peer)): ConnectInfo<PeerAddr>| async move {
                    peer.ip().to_string()
                }),
            );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop_tx, stop) = watch::channel(false);
        let server = tokio::spawn(serve(listener, None, limits(16, 16), app, stop));

        assert!(
            get(addr, "/peer").await.ends_with("127.0.0.1"),
            "ConnectInfo<PeerAddr> is set"
        );
        let in_flight = tokio::spawn(get(addr, "/slow"));
        started.recv().await.unwrap();
        // A keep-alive connection between requests: closed by the stop.
        let mut idle = TcpStream::connect(addr).await.unwrap();
        idle.write_all(b"GET /peer HTTP/1.1\r\nHost: test\r\n\r\n")
            .await
            .unwrap();
        let mut answer = Vec::new();
        while !answer.ends_with(b"127.0.0.1") {
            let mut buf = [0u8; 512];
            let n = idle.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed before answering");
            answer.extend_from_slice(&buf[..n]);
        }
        stop_tx.send(true).unwrap();
        assert_eq!(
            idle.read(&mut [0u8; 64]).await.unwrap_or(0),
            0,
            "the idle connection is closed"
        );
        assert!(!server.is_finished(), "serve waits for the request in flight");
        // The handler finishes only after the stop: the drain waits for it.
        release.notify_one();
        let answer = in_flight.await.unwrap();
        assert!(
            answer.starts_with("HTTP/1.1 200") && answer.ends_with("done"),
            "{answer}"
        );
        tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .expect("serve returns once drained")
            .unwrap();
    }

    #[test]
    fn an_idle_connection_times_out_after_the_header_timeout_then_the_idle_timeout() {
        let table = Arc::new(ConnTable::new(limits(4, 4)));
        let slot = table.admit(ip("10.0.0.1")).unwrap();
        let l = table.limits;
        let fresh = slot.conn.idle_deadline(&l).unwrap();
        assert!(fresh <= Instant::now() + l.header_timeout);
        let busy = Busy::start(slot.conn.clone());
        assert_eq!(
            slot.conn.idle_deadline(&l),
            None,
            "a request in flight is never timed out"
        );
        drop(busy);
        let served = slot.conn.idle_deadline(&l).unwrap();
        assert!(served > Instant::now() + l.idle_timeout - Duration::from_secs(1));
    }
}
