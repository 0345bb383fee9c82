//! The proxy listener: accept, connection cap, PROXY protocol, allow_cidrs, TLS handshake with a
//! deadline, HTTP/1.1 and HTTP/2 serving, idle close, and graceful drain on shutdown.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Limits;
use crate::proxy::ProxyService;
use crate::proxy::conn::{ConnInfo, ConnState};
use crate::state::Shared;

/// Accepts until `shutdown`, then gives in-flight requests `shutdown_grace` before closing them.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>, shutdown: CancellationToken) {
    let tracker = TaskTracker::new();
    let force_close = CancellationToken::new();
    let open = Arc::new(AtomicUsize::new(0));
    let refusals = RateLimitedWarn::new(Duration::from_secs(10));
    loop {
        let accepted = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // EMFILE and friends: back off briefly instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let snapshot = shared.state.load();
        let max = snapshot.config.limits.max_connections;
        if open.load(Ordering::Acquire) >= max {
            shared.metrics.refused("max_connections");
            refusals.warn(|| {
                tracing::warn!(
                    max,
                    "limits.max_connections reached: refusing new connections"
                )
            });
            continue;
        }
        let listen = &snapshot.config.listen;
        let expects_proxy_header = listen.proxy_protocol && listen.is_trusted_proxy(peer.ip());
        if !expects_proxy_header && !listen.is_allowed(peer.ip()) {
            shared.metrics.refused("allow_cidrs");
            tracing::debug!(peer = %peer, "connection refused by listen.allow_cidrs");
            continue;
        }
        let guard = OpenGuard::new(open.clone(), shared.metrics.open_connections.clone());
        tracker.spawn(handle_connection(
            stream,
            peer,
            expects_proxy_header,
            shared.clone(),
            shutdown.clone(),
            force_close.clone(),
            guard,
        ));
    }
    shared.accepting.store(false, Ordering::Release);
    drop(listener);
    tracker.close();
    let grace = shared.state.load().config.limits.shutdown_grace;
    if !tracker.is_empty() {
        tracing::info!(connections = tracker.len(), grace = %humantime::format_duration(grace), "draining connections");
    }
    if tokio::time::timeout(grace, tracker.wait()).await.is_err() {
        tracing::warn!(
            connections = tracker.len(),
            "shutdown_grace elapsed with requests still in flight; closing them"
        );
        force_close.cancel();
        tracker.wait().await;
    }
}

async fn handle_connection(
    mut stream: TcpStream,
    tcp_peer: SocketAddr,
    expects_proxy_header: bool,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
    force_close: CancellationToken,
    _open: OpenGuard,
) {
    let _ = stream.set_nodelay(true);
    let snapshot = shared.state.load_full();
    let limits = &snapshot.config.limits;
    let mut peer = tcp_peer;
    if expects_proxy_header {
        let header = tokio::time::timeout(
            limits.tls_handshake_timeout,
            crate::server::proxy_protocol::read_header(&mut stream),
        )
        .await;
        match header {
            Ok(Ok(Some(client))) => peer = client,
            Ok(Ok(None)) => {}
            Ok(Err(e)) => {
                shared.metrics.refused("proxy_protocol");
                tracing::info!(peer = %tcp_peer, error = %e, "PROXY protocol header refused");
                return;
            }
            Err(_) => {
                shared.metrics.refused("proxy_protocol");
                tracing::info!(peer = %tcp_peer, "no PROXY protocol header in time");
                return;
            }
        }
        if !snapshot.config.listen.is_allowed(peer.ip()) {
            shared.metrics.refused("allow_cidrs");
            tracing::debug!(peer = %peer, via = %tcp_peer, "connection refused by listen.allow_cidrs");
            return;
        }
    }
    let state = Arc::new(ConnState::new());
    let conn = |tls, sni| ConnInfo {
        peer,
        tcp_peer,
        tls,
        sni,
        state: state.clone(),
    };
    match &snapshot.tls {
        Some(acceptor) => {
            let handshake =
                tokio::time::timeout(limits.tls_handshake_timeout, acceptor.accept(stream)).await;
            let tls = match handshake {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    shared.metrics.refused("tls");
                    tracing::debug!(peer = %peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    shared.metrics.refused("tls");
                    tracing::debug!(peer = %peer, "TLS handshake timed out");
                    return;
                }
            };
            let sni = tls.get_ref().1.server_name().map(str::to_owned);
            serve_http(
                tls,
                conn(true, sni),
                shared.clone(),
                limits,
                shutdown,
                force_close,
            )
            .await;
        }
        None => {
            serve_http(
                stream,
                conn(false, None),
                shared.clone(),
                limits,
                shutdown,
                force_close,
            )
            .await
        }
    }
}

async fn serve_http<I>(
    io: I,
    conn: ConnInfo,
    shared: Arc<Shared>,
    limits: &Limits,
    shutdown: CancellationToken,
    force_close: CancellationToken,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let peer = conn.peer;
    let state = conn.state.clone();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        // Flatten head and body into one write: one TLS record (and one seal) instead of two.
        .writev(false)
        .max_buf_size(limits.max_header_bytes)
        .max_headers(limits.max_headers)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.max_concurrent_streams)
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
        .max_pending_accept_reset_streams(Some(64))
        .max_local_error_reset_streams(Some(256))
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(20));
    let service = TowerToHyperService::new(ProxyService::new(shared, conn));
    let connection = builder.serve_connection(
        TokioIo::new(Tracked {
            inner: io,
            state: state.clone(),
        }),
        service,
    );
    tokio::pin!(connection);
    let idle_timeout = limits.idle_timeout;
    let first_byte_timeout = limits.header_read_timeout;
    let mut tick = tokio::time::interval(
        (idle_timeout.min(first_byte_timeout) / 4)
            .clamp(Duration::from_millis(100), Duration::from_secs(5)),
    );
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut draining = false;
    // After an idle GOAWAY, a peer that keeps the connection open anyway is cut off.
    let mut idle_close_by: Option<Instant> = None;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(peer = %peer, error = %e, "connection ended with an error");
                }
                return;
            }
            _ = force_close.cancelled() => return,
            _ = shutdown.cancelled(), if !draining => {
                connection.as_mut().graceful_shutdown();
                draining = true;
            }
            _ = tick.tick() => {
                if state.write_blocked_for() >= idle_timeout {
                    tracing::debug!(peer = %peer, "closing a connection whose client stopped reading its response");
                    return;
                }
                if idle_close_by.is_some_and(|by| Instant::now() >= by) {
                    return;
                }
                if draining {
                    continue;
                }
                // hyper's header_read_timeout starts only once HTTP/1 is chosen; a connection that
                // sends nothing after the handshake is held to it here.
                if state.silent_for().is_some_and(|t| t >= first_byte_timeout) {
                    tracing::debug!(peer = %peer, "closing a connection that sent no request within header_read_timeout");
                    return;
                }
                if state.requests_in_flight() == 0 && state.idle_for() >= idle_timeout {
                    tracing::debug!(peer = %peer, "closing idle connection");
                    connection.as_mut().graceful_shutdown();
                    draining = true;
                    idle_close_by = Some(Instant::now() + IDLE_CLOSE_GRACE);
                }
            }
        }
    }
}

/// How long a peer gets to close after an idle GOAWAY before the connection is dropped.
const IDLE_CLOSE_GRACE: Duration = Duration::from_secs(5);

/// Counts open connections for `max_connections`.
struct OpenGuard(Arc<AtomicUsize>, prometheus_client::metrics::gauge::Gauge);

impl OpenGuard {
    fn new(open: Arc<AtomicUsize>, gauge: prometheus_client::metrics::gauge::Gauge) -> OpenGuard {
        open.fetch_add(1, Ordering::AcqRel);
        gauge.inc();
        OpenGuard(open, gauge)
    }
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
        self.1.dec();
    }
}

/// A warning an operator needs to see, but not thousands of times a second.
struct RateLimitedWarn {
    every: Duration,
    last: std::sync::Mutex<Option<Instant>>,
}

impl RateLimitedWarn {
    fn new(every: Duration) -> RateLimitedWarn {
        RateLimitedWarn {
            every,
            last: std::sync::Mutex::new(None),
        }
    }

    fn warn(&self, log: impl FnOnce()) {
        let Ok(mut last) = self.last.lock() else {
            return;
        };
        if last.is_none_or(|t| t.elapsed() >= self.every) {
            *last = Some(Instant::now());
            log();
        }
    }
}

/// IO that records when bytes last moved, for the idle close.
struct Tracked<I> {
    inner: I,
    state: Arc<ConnState>,
}

impl<I: AsyncRead + Unpin> AsyncRead for Tracked<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.state.mark_read();
        }
        result
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Tracked<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.state.write_blocked(result.is_pending());
        result
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.state.write_blocked(result.is_pending());
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
