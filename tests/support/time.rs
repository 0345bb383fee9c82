//! Bounds on every wait.

use std::time::Duration;

/// Upper bound for any single step that talks to a socket.
pub const STEP: Duration = Duration::from_secs(20);

/// Awaits `f`, panicking if it takes longer than 40 s (nothing in these tests should).
pub async fn bounded<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(40), f)
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish within 40 s"))
}

/// Upper bound for waiting on something asynchronous (a record, a log line, a metric).
pub const WAIT: Duration = Duration::from_secs(15);
