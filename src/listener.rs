//! The proxy listener: accept, allow_cidrs, TLS handshake with a deadline, HTTP/1.1 and HTTP/2 serving,
//! graceful drain on shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::proxy::{ConnInfo, ProxyService};
use crate::runtime::Shared;

/// Accepts until `shutdown`, then waits up to `shutdown_grace` for in-flight requests to finish.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>, shutdown: CancellationToken) {
    let graceful = GracefulShutdown::new();
    shared.accepting.store(true, Ordering::Release);
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
        let allow = &snapshot.config.listen.allow_cidrs;
        if !allow.is_empty() && !allow.iter().any(|net| net.contains(&peer.ip())) {
            tracing::info!(peer = %peer, "connection refused by listen.allow_cidrs");
            continue;
        }
        tokio::spawn(handle_connection(
            stream,
            peer,
            shared.clone(),
            graceful.watcher(),
        ));
    }
    shared.accepting.store(false, Ordering::Release);
    drop(listener);
    let grace = shared.state.load().config.limits.shutdown_grace;
    let open = graceful.count();
    if open > 0 {
        tracing::info!(connections = open, grace = %humantime::format_duration(grace), "draining connections");
    }
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("shutdown_grace elapsed with requests still in flight; closing them");
    }
}

async fn handle_connection(
    stream: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    watcher: Watcher,
) {
    let _ = stream.set_nodelay(true);
    let snapshot = shared.state.load_full();
    let limits = &snapshot.config.limits;
    match &snapshot.tls {
        Some(acceptor) => {
            let handshake =
                tokio::time::timeout(limits.tls_handshake_timeout, acceptor.accept(stream)).await;
            let tls = match handshake {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::debug!(peer = %peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(peer = %peer, "TLS handshake timed out");
                    return;
                }
            };
            let conn = ConnInfo { peer, tls: true };
            serve_http(tls, conn, shared.clone(), &snapshot.config.limits, watcher).await;
        }
        None => {
            let conn = ConnInfo { peer, tls: false };
            serve_http(
                stream,
                conn,
                shared.clone(),
                &snapshot.config.limits,
                watcher,
            )
            .await;
        }
    }
}

async fn serve_http<I>(
    io: I,
    conn: ConnInfo,
    shared: Arc<Shared>,
    limits: &crate::config::Limits,
    watcher: Watcher,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let peer = conn.peer;
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(128)
        .keep_alive_interval(Some(Duration::from_secs(30)));
    let service = TowerToHyperService::new(ProxyService::new(shared, conn));
    let connection = builder.serve_connection(TokioIo::new(io), service);
    if let Err(e) = watcher.watch(connection).await {
        tracing::debug!(peer = %peer, error = %e, "connection ended with an error");
    }
}
