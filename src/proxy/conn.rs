//! The connection a request came on, as the request path sees it: who the client is, TLS and SNI,
//! and its liveness, which the listener reads to close idle or stuck connections.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// What the listener knows about the connection a request came on.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    /// The client: the TCP peer, or the address a trusted PROXY header named.
    pub peer: SocketAddr,
    /// The TCP peer itself (a load balancer, with the PROXY protocol).
    pub tcp_peer: SocketAddr,
    pub tls: bool,
    /// The server name the client sent in the TLS handshake, if any.
    pub sni: Option<String>,
    pub state: Arc<ConnState>,
}

/// Per-connection liveness. Idleness is measured in requests, not bytes: HTTP/2 PINGs and their
/// ACKs move bytes on a connection that does nothing, and must not keep it open.
#[derive(Debug)]
pub struct ConnState {
    started: Instant,
    /// When the last request started or ended (ms since `started`).
    last_request_ms: AtomicU64,
    in_flight: AtomicUsize,
    /// Whether the client has sent any byte (after the TLS handshake).
    read_any: std::sync::atomic::AtomicBool,
    /// Since when a write has been waiting on a client that does not read (ms since `started`,
    /// plus one; 0 while writes progress).
    write_blocked_since_ms: AtomicU64,
}

impl ConnState {
    pub fn new() -> ConnState {
        ConnState {
            started: Instant::now(),
            last_request_ms: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            read_any: std::sync::atomic::AtomicBool::new(false),
            write_blocked_since_ms: AtomicU64::new(0),
        }
    }

    pub(crate) fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    pub(crate) fn touch(&self) {
        self.last_request_ms.store(self.now_ms(), Ordering::Relaxed);
    }

    pub(crate) fn idle_for(&self) -> Duration {
        Duration::from_millis(
            self.now_ms()
                .saturating_sub(self.last_request_ms.load(Ordering::Relaxed)),
        )
    }

    pub(crate) fn write_blocked(&self, blocked: bool) {
        if !blocked {
            self.write_blocked_since_ms.store(0, Ordering::Relaxed);
        } else if self.write_blocked_since_ms.load(Ordering::Relaxed) == 0 {
            self.write_blocked_since_ms
                .store(self.now_ms().saturating_add(1), Ordering::Relaxed);
        }
    }

    pub(crate) fn write_blocked_for(&self) -> Duration {
        match self.write_blocked_since_ms.load(Ordering::Relaxed) {
            0 => Duration::ZERO,
            since => Duration::from_millis(self.now_ms().saturating_sub(since - 1)),
        }
    }

    /// Whether the client has sent a byte since the handshake, and how long ago the connection began.
    pub(crate) fn silent_for(&self) -> Option<Duration> {
        (!self.read_any.load(Ordering::Relaxed)).then(|| self.started.elapsed())
    }

    pub(crate) fn mark_read(&self) {
        self.read_any.store(true, Ordering::Relaxed);
    }

    pub(crate) fn requests_in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    /// Marks a request in flight until the guard drops.
    pub fn request_started(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.touch();
        InFlight(self.clone())
    }
}

impl Default for ConnState {
    fn default() -> Self {
        ConnState::new()
    }
}

pub struct InFlight(Arc<ConnState>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.0.touch();
    }
}
