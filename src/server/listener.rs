//! The proxy listener's accept loop: the connection cap, `allow_cidrs` for direct peers, one task
//! per connection (`connection`), and the graceful drain on shutdown.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::server::connection::{OpenGuard, handle_connection};
use crate::server::serving::Stops;
use crate::state::Shared;

/// Accepts until `shutdown`, then gives in-flight requests `shutdown_grace` before closing them.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>, shutdown: CancellationToken) {
    let tracker = TaskTracker::new();
    let stops = Stops {
        shutdown,
        force_close: CancellationToken::new(),
    };
    let open = Arc::new(AtomicUsize::new(0));
    let refusals = RateLimitedWarn::new(Duration::from_secs(10));
    loop {
        let accepted = tokio::select! {
            biased;
            _ = stops.shutdown.cancelled() => break,
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
        // Behind a trusted load balancer the client is known only from its PROXY header.
        let expects_proxy_header = listen.proxy_protocol && listen.is_trusted_proxy(peer.ip());
        if !expects_proxy_header && !listen.is_allowed(peer.ip()) {
            shared.metrics.refused("allow_cidrs");
            tracing::debug!(peer = %peer, "connection refused by listen.allow_cidrs");
            continue;
        }
        let guard = OpenGuard::new(open.clone(), shared.metrics.open_connections.clone());
        let connection = (stream, peer, expects_proxy_header);
        tracker.spawn(handle_connection(
            connection,
            shared.clone(),
            stops.clone(),
            guard,
        ));
    }
    shared.accepting.store(false, Ordering::Release);
    drop(listener);
    drain(&tracker, &shared, &stops).await;
}

/// Waits up to `shutdown_grace` for the open connections, then closes what is left.
async fn drain(tracker: &TaskTracker, shared: &Shared, stops: &Stops) {
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
        stops.force_close.cancel();
        tracker.wait().await;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rate_limited_warning_is_written_once_per_period() {
        let warn = RateLimitedWarn::new(Duration::from_secs(60));
        let mut written = 0;
        for _ in 0..3 {
            warn.warn(|| written += 1);
        }
        assert_eq!(written, 1);
    }
}
