//! The listeners: the proxy listener (`listener` accepts, `connection` takes one to HTTP,
//! `serving` runs HTTP under its timers) and the admin listener. `start` binds them and serves
//! until `Running::shutdown`.

pub mod acme_http;
pub mod admin;
mod connection;
pub mod listener;
pub mod proxy_protocol;
mod serving;
mod status_page;
mod tracked;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::Problems;
use crate::state::reload;
use crate::state::{Shared, Snapshot};

/// A running proxy: its bound addresses and the means to reload and stop it.
pub struct Running {
    pub proxy_addr: SocketAddr,
    pub admin_addr: Option<SocketAddr>,
    pub shared: Arc<Shared>,
    shutdown: CancellationToken,
    tasks: JoinSet<()>,
}

impl Running {
    /// Re-reads the config file and everything it names; the running state stays on any problem.
    pub fn reload(&self) -> Result<(), Problems> {
        self.shared.reload()
    }

    /// Stops accepting; in-flight requests get `shutdown_grace` to finish.
    pub fn shutdown(&self) {
        self.shutdown.cancel();
    }

    /// Waits until every listener has stopped and drained, then (bounded) for the traffic log queue.
    pub async fn wait(mut self) {
        while self.tasks.join_next().await.is_some() {}
        if let Some(log) = &self.shared.traffic {
            let shared = self.shared.clone();
            let flushed = tokio::task::spawn_blocking(move || {
                shared
                    .traffic
                    .as_ref()
                    .is_none_or(|log| log.flush(FLUSH_ON_STOP))
            })
            .await;
            if !matches!(flushed, Ok(true)) {
                tracing::warn!(
                    dropped = log.dropped(),
                    "the traffic log sink did not take the queued records within {FLUSH_ON_STOP:?}"
                );
            }
        }
    }

    pub async fn stop(self) {
        self.shutdown();
        self.wait().await;
    }
}

/// How long stopping waits for queued traffic records to be written.
const FLUSH_ON_STOP: std::time::Duration = std::time::Duration::from_secs(5);

/// Binds the proxy (and admin) listeners of `snapshot` and starts serving.
pub async fn start(snapshot: Snapshot, config_path: Option<PathBuf>) -> std::io::Result<Running> {
    let listen_addr = snapshot.config.listen.addr;
    let admin_addr = snapshot.config.admin.as_ref().map(|a| a.addr);
    let listener = bind("listen.addr", listen_addr).await?;
    let admin = match admin_addr {
        Some(addr) => Some(bind("admin.addr", addr).await?),
        None => None,
    };
    let acme_http = match acme_http::addr(&snapshot.config) {
        Some(addr) => Some(bind("listen.acme.http_addr", addr).await?),
        None => None,
    };
    let shared = Shared::new(snapshot, config_path)?;
    // Bound is accepting: the kernel queues connections from here on, so /readyz must not report
    // a start-up gap that depends on when the accept task is first polled.
    shared
        .accepting
        .store(true, std::sync::atomic::Ordering::Release);
    let shutdown = CancellationToken::new();
    let mut tasks = JoinSet::new();
    let proxy_addr = listener.local_addr()?;
    // The admin listener outlives the drain: /readyz answers 503 and /healthz 200 until the proxy
    // listener has finished, so orchestrators see the drain rather than a dead process.
    let admin_stop = CancellationToken::new();
    let admin_addr = match admin {
        Some(l) => {
            let addr = l.local_addr()?;
            tasks.spawn(admin::serve(l, shared.clone(), admin_stop.clone()));
            Some(addr)
        }
        None => None,
    };
    let draining = listener::serve(listener, shared.clone(), shutdown.clone());
    tasks.spawn(async move {
        draining.await;
        admin_stop.cancel();
    });
    if shared.config_path.is_some() {
        tasks.spawn(reload::watch(shared.clone(), shutdown.clone()));
    }
    tasks.spawn(crate::state::watch::watch_log_drops(
        shared.clone(),
        shutdown.clone(),
    ));
    tasks.spawn(crate::state::watch::watch_token_expiry(
        shared.clone(),
        shutdown.clone(),
    ));
    tasks.spawn(crate::state::acme::renew(shared.clone(), shutdown.clone()));
    if let Some(l) = acme_http {
        tasks.spawn(acme_http::serve(l, shared.clone(), shutdown.clone()));
    }
    Ok(Running {
        proxy_addr,
        admin_addr,
        shared,
        shutdown,
        tasks,
    })
}

/// Binds `addr`, naming the config key in the error an operator sees.
async fn bind(key: &str, addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| std::io::Error::new(e.kind(), format!("{key}: cannot listen on {addr}: {e}")))
}
