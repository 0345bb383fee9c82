//! One accepted connection up to HTTP: the PROXY protocol header from a trusted load balancer
//! (and `allow_cidrs` for the client it names), then the TLS handshake within its deadline.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use std::future::Future;
use std::pin::Pin;

use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

use crate::config::Limits;
use crate::proxy::conn::{ConnInfo, ConnState};
use crate::server::proxy_protocol;
use crate::server::serving::{HttpVersion, LOG_TARGET, Stops, serve_http};
use crate::state::{Shared, Snapshot};

/// Serves one accepted connection (stream, TCP peer, whether a PROXY header comes first) until it
/// ends; `_open` counts it for `max_connections`.
pub(crate) async fn handle_connection(
    (mut stream, tcp_peer, expects_proxy_header): (TcpStream, SocketAddr, bool),
    shared: Arc<Shared>,
    stops: Stops,
    _open: OpenGuard,
) {
    let _ = stream.set_nodelay(true);
    let snapshot = shared.state.load_full();
    let mut peer = tcp_peer;
    if expects_proxy_header {
        match client_from_proxy_header(&mut stream, tcp_peer, &shared, &snapshot).await {
            Some(client) => peer = client,
            None => return,
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
    let limits = &snapshot.config.limits;
    let Some(acceptor) = &snapshot.tls else {
        return Box::pin(serve_http(
            stream,
            HttpVersion::Detect,
            conn(false, None),
            shared.clone(),
            limits,
            stops,
        ))
        .await;
    };
    // Each phase's state on the heap, its locals in a block or a plain fn of their own: the compiler
    // keeps an async fn's locals in the task (moved-from ones too), which made an idle connection's
    // task 12 KiB.
    let next = {
        let handshake = Box::pin(tokio::time::timeout(
            limits.tls_handshake_timeout,
            acceptor.accept(stream),
        ))
        .await;
        after_handshake(handshake, peer, &shared, limits, stops, &conn)
    };
    if let Some(next) = next {
        next.await;
    }
}

type Phase<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// What follows the TLS handshake: nothing (it failed), the end of a tls-alpn-01 validation, or HTTP.
fn after_handshake<'a>(
    handshake: Result<std::io::Result<TlsStream<TcpStream>>, tokio::time::error::Elapsed>,
    peer: SocketAddr,
    shared: &Arc<Shared>,
    limits: &'a Limits,
    stops: Stops,
    conn: &dyn Fn(bool, Option<String>) -> ConnInfo,
) -> Option<Phase<'a>> {
    let tls = match handshake {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            shared.metrics.refused("tls");
            tracing::debug!(target: LOG_TARGET, peer = %peer, error = %e, "TLS handshake failed");
            return None;
        }
        Err(_) => {
            shared.metrics.refused("tls");
            tracing::debug!(target: LOG_TARGET, peer = %peer, "TLS handshake timed out");
            return None;
        }
    };
    // A CA's tls-alpn-01 validation only needs the handshake (RFC 8737 §3); no HTTP follows.
    if tls.get_ref().1.alpn_protocol() == Some(crate::tls::acme::ACME_TLS_ALPN) {
        return Some(Box::pin(async move {
            let mut tls = tls;
            let _ = tokio::io::AsyncWriteExt::shutdown(&mut tls).await;
        }));
    }
    let sni = tls.get_ref().1.server_name().map(str::to_owned);
    let version = HttpVersion::from_alpn(tls.get_ref().1.alpn_protocol());
    let info = conn(true, sni);
    Some(Box::pin(serve_http(
        tls,
        version,
        info,
        shared.clone(),
        limits,
        stops,
    )))
}

/// The client a trusted load balancer names in its PROXY header (itself when the header says
/// LOCAL), or None when the connection is to be closed: no or a bad header in time, or a client
/// outside `allow_cidrs`.
async fn client_from_proxy_header(
    stream: &mut TcpStream,
    tcp_peer: SocketAddr,
    shared: &Shared,
    snapshot: &Snapshot,
) -> Option<SocketAddr> {
    let header = tokio::time::timeout(
        snapshot.config.limits.tls_handshake_timeout,
        proxy_protocol::read_header(stream),
    )
    .await;
    let peer = match header {
        Ok(Ok(Some(client))) => client,
        Ok(Ok(None)) => tcp_peer,
        Ok(Err(e)) => {
            shared.metrics.refused("proxy_protocol");
            tracing::info!(target: LOG_TARGET, peer = %tcp_peer, error = %e, "PROXY protocol header refused");
            return None;
        }
        Err(_) => {
            shared.metrics.refused("proxy_protocol");
            tracing::info!(target: LOG_TARGET, peer = %tcp_peer, "no PROXY protocol header in time");
            return None;
        }
    };
    if !snapshot.config.listen.is_allowed(peer.ip()) {
        shared.metrics.refused("allow_cidrs");
        tracing::debug!(target: LOG_TARGET, peer = %peer, via = %tcp_peer, "connection refused by listen.allow_cidrs");
        return None;
    }
    Some(peer)
}

/// Counts open connections for `max_connections`.
pub(crate) struct OpenGuard(Arc<AtomicUsize>, prometheus_client::metrics::gauge::Gauge);

impl OpenGuard {
    pub(crate) fn new(
        open: Arc<AtomicUsize>,
        gauge: prometheus_client::metrics::gauge::Gauge,
    ) -> OpenGuard {
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
