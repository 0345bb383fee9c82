//! HTTP/1.1 and HTTP/2 on one connection, through `ProxyService`, under the connection timers:
//! no first byte within `header_read_timeout`, idle for `idle_timeout`, a client that stopped
//! reading, and the drain on shutdown.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::sync::CancellationToken;

use crate::config::Limits;
use crate::proxy::ProxyService;
use crate::proxy::conn::{ConnInfo, ConnState};
use crate::server::tracked::Tracked;
use crate::state::Shared;

/// The connection's phases log under the listener's module name, as they did before they had
/// files of their own, so log filters and searches keep matching.
pub(crate) const LOG_TARGET: &str = "scim_proxy::server::listener";

/// How the listener ends a connection: on shutdown (gracefully) or after the grace (at once).
#[derive(Clone)]
pub(crate) struct Stops {
    pub shutdown: CancellationToken,
    pub force_close: CancellationToken,
}

/// How long a peer gets to close after an idle GOAWAY before the connection is dropped.
const IDLE_CLOSE_GRACE: Duration = Duration::from_secs(5);

/// The HTTP version a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HttpVersion {
    /// On TLS, what ALPN chose: HTTP/2 over TLS is only ever negotiated (RFC 9113 §3.2), so a
    /// client that did not ask for `h2` speaks HTTP/1.1. Nothing is read ahead to tell, which
    /// also keeps hyper's read buffer at its first 8 KiB (growing it for a 24-byte look-ahead
    /// made it 16 KiB on every connection).
    Http1,
    Http2,
    /// In clear, told from the first bytes (HTTP/2 with prior knowledge, §3.3).
    Detect,
}

impl HttpVersion {
    /// The version ALPN selected on a TLS connection.
    pub(crate) fn from_alpn(alpn: Option<&[u8]>) -> HttpVersion {
        match alpn {
            Some(b"h2") => HttpVersion::Http2,
            _ => HttpVersion::Http1,
        }
    }
}

/// Serves requests on `io` until the connection ends, a timer closes it, or the listener stops.
/// A plain fn: the connection is built and boxed here, so the future it returns holds only the
/// box, not a moved-from copy of the TLS stream as an async fn's parameters would.
pub(crate) fn serve_http<I>(
    io: I,
    version: HttpVersion,
    conn: ConnInfo,
    shared: std::sync::Arc<Shared>,
    limits: &Limits,
    stops: Stops,
) -> impl Future<Output = ()> + Send + 'static
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let peer = conn.peer;
    let state = conn.state.clone();
    let service = TowerToHyperService::new(ProxyService::new(shared, conn));
    let io = TokioIo::new(Tracked::new(io, state.clone()));
    let connection = Served::new(io, service, version, limits);
    drive(connection, Timers::new(limits), state, peer, stops)
}

/// Polls the connection under its timers and the listener's stops.
async fn drive<I>(
    mut connection: Served<I>,
    mut timers: Timers,
    state: std::sync::Arc<ConnState>,
    peer: std::net::SocketAddr,
    stops: Stops,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut tick = tokio::time::interval(timers.tick_every());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            result = std::future::poll_fn(|cx| connection.poll_served(cx)) => {
                if let Err(e) = result {
                    tracing::debug!(target: LOG_TARGET, peer = %peer, error = %e, "connection ended with an error");
                }
                return;
            }
            _ = stops.force_close.cancelled() => return,
            _ = stops.shutdown.cancelled(), if !timers.draining => {
                connection.graceful_shutdown();
                timers.draining = true;
            }
            _ = tick.tick() => match timers.check(&state, peer) {
                Verdict::Keep => {}
                Verdict::Close => return,
                Verdict::CloseGracefully => connection.graceful_shutdown(),
            }
        }
    }
}

type ServeError = Box<dyn std::error::Error + Send + Sync>;

/// hyper's connection for the version, each boxed on its own as it is made: an HTTP/1.1
/// connection carries no room for HTTP/2's state (auto's enum is sized for both, 2,720 bytes
/// against 1,840 for HTTP/1.1 alone).
enum Served<I> {
    Http1(Pin<Box<http1::Connection<Io<I>, Service>>>),
    Http2(Pin<Box<http2::Connection<Io<I>, Service, TokioExecutor>>>),
    Detect(Pin<Box<auto::Connection<'static, Io<I>, Service, TokioExecutor>>>),
}

type Io<I> = TokioIo<Tracked<I>>;
type Service = TowerToHyperService<ProxyService>;

impl<I> Served<I>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    fn new(io: Io<I>, service: Service, version: HttpVersion, limits: &Limits) -> Self {
        match version {
            HttpVersion::Http1 => {
                let mut builder = http1::Builder::new();
                http1_settings!(builder, limits)
                    // A head over the limit is 431 however the reads fell: without this, one that
                    // arrived whole in a read past max_buf_size was judged by its URI (414).
                    .max_header_size(limits.max_header_bytes);
                Served::Http1(Box::pin(builder.serve_connection(io, service)))
            }
            HttpVersion::Http2 => {
                let mut builder = http2::Builder::new(TokioExecutor::new());
                http2_settings!(builder, limits);
                Served::Http2(Box::pin(builder.serve_connection(io, service)))
            }
            HttpVersion::Detect => {
                let mut builder = auto::Builder::new(TokioExecutor::new());
                http1_settings!(builder.http1(), limits);
                http2_settings!(builder.http2(), limits);
                let connection = builder.serve_connection(io, service).into_owned();
                Served::Detect(Box::pin(connection))
            }
        }
    }
}

/// What `drive` needs of the connection, whichever it is.
impl<I> Served<I>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    fn poll_served(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ServeError>> {
        match self {
            Served::Http1(c) => c.as_mut().poll(cx).map_err(Into::into),
            Served::Http2(c) => c.as_mut().poll(cx).map_err(Into::into),
            Served::Detect(c) => c.as_mut().poll(cx),
        }
    }

    fn graceful_shutdown(&mut self) {
        match self {
            Served::Http1(c) => c.as_mut().graceful_shutdown(),
            Served::Http2(c) => c.as_mut().graceful_shutdown(),
            Served::Detect(c) => c.as_mut().graceful_shutdown(),
        }
    }
}

/// hyper's HTTP/1.1 settings from `limits`, on hyper's builder or on auto's.
macro_rules! http1_settings {
    ($builder:expr, $limits:expr) => {
        $builder
            .timer(TokioTimer::new())
            .header_read_timeout($limits.header_read_timeout)
            // Flatten head and body into one write: one TLS record (and one seal) instead of two.
            .writev(false)
            .max_buf_size($limits.max_header_bytes)
            .max_headers($limits.max_headers)
            .keep_alive(true)
    };
}
use http1_settings;

/// hyper's HTTP/2 settings from `limits`, on hyper's builder or on auto's.
macro_rules! http2_settings {
    ($builder:expr, $limits:expr) => {
        $builder
            .timer(TokioTimer::new())
            .max_concurrent_streams($limits.max_concurrent_streams)
            .max_header_list_size(u32::try_from($limits.max_header_bytes).unwrap_or(u32::MAX))
            .max_pending_accept_reset_streams(Some(64))
            .max_local_error_reset_streams(Some(256))
            .keep_alive_interval(Some(Duration::from_secs(30)))
            .keep_alive_timeout(Duration::from_secs(20))
    };
}
use http2_settings;

/// What a timer tick decides for the connection.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Keep,
    Close,
    /// GOAWAY / close after the response in flight; the peer then gets `IDLE_CLOSE_GRACE`.
    CloseGracefully,
}

/// The connection's timers, checked on every tick.
struct Timers {
    idle_timeout: Duration,
    first_byte_timeout: Duration,
    draining: bool,
    /// After an idle GOAWAY, a peer that keeps the connection open anyway is cut off.
    idle_close_by: Option<Instant>,
}

impl Timers {
    fn new(limits: &Limits) -> Timers {
        Timers {
            idle_timeout: limits.idle_timeout,
            first_byte_timeout: limits.header_read_timeout,
            draining: false,
            idle_close_by: None,
        }
    }

    fn tick_every(&self) -> Duration {
        (self.idle_timeout.min(self.first_byte_timeout) / 4)
            .clamp(Duration::from_millis(100), Duration::from_secs(5))
    }

    fn check(&mut self, state: &ConnState, peer: std::net::SocketAddr) -> Verdict {
        if state.write_blocked_for() >= self.idle_timeout {
            tracing::debug!(target: LOG_TARGET, peer = %peer, "closing a connection whose client stopped reading its response");
            return Verdict::Close;
        }
        if self.idle_close_by.is_some_and(|by| Instant::now() >= by) {
            return Verdict::Close;
        }
        if self.draining {
            return Verdict::Keep;
        }
        // hyper's header_read_timeout starts only once HTTP/1 is chosen; a connection that
        // sends nothing after the handshake is held to it here.
        if state
            .silent_for()
            .is_some_and(|t| t >= self.first_byte_timeout)
        {
            tracing::debug!(target: LOG_TARGET, peer = %peer, "closing a connection that sent no request within header_read_timeout");
            return Verdict::Close;
        }
        if state.requests_in_flight() == 0 && state.idle_for() >= self.idle_timeout {
            tracing::debug!(target: LOG_TARGET, peer = %peer, "closing idle connection");
            self.draining = true;
            self.idle_close_by = Some(Instant::now() + IDLE_CLOSE_GRACE);
            return Verdict::CloseGracefully;
        }
        Verdict::Keep
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn timers(idle_ms: u64, first_byte_ms: u64) -> Timers {
        Timers::new(&Limits {
            idle_timeout: Duration::from_millis(idle_ms),
            header_read_timeout: Duration::from_millis(first_byte_ms),
            ..Limits::default()
        })
    }

    fn peer() -> std::net::SocketAddr {
        "192.0.2.1:40000".parse().unwrap()
    }

    #[test]
    fn a_silent_connection_is_closed_after_the_first_byte_timeout() {
        let state = ConnState::new();
        let mut t = timers(60_000, 20);
        assert_eq!(t.check(&state, peer()), Verdict::Keep);
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(t.check(&state, peer()), Verdict::Close);
        state.mark_read();
        assert_eq!(t.check(&state, peer()), Verdict::Keep);
    }

    #[test]
    fn an_idle_connection_is_drained_then_cut_off_only_without_requests_in_flight() {
        let state = Arc::new(ConnState::new());
        state.mark_read();
        let mut t = timers(20, 60_000);
        let in_flight = state.request_started();
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(t.check(&state, peer()), Verdict::Keep);
        drop(in_flight);
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(t.check(&state, peer()), Verdict::CloseGracefully);
        assert!(t.draining);
        assert_eq!(t.check(&state, peer()), Verdict::Keep);
    }
}
