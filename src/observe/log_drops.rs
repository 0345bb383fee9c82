//! Log records lost because a sink did not keep up: the traffic log's and the `tracing` writer's.

use std::sync::OnceLock;

/// Log records dropped since start because a sink did not keep up.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LogDrops {
    pub traffic: u64,
    pub tracing: u64,
}

impl LogDrops {
    pub fn any(&self) -> bool {
        self.traffic > 0 || self.tracing > 0
    }
}

/// The loss count of the process's non-blocking `tracing` writer, set once by `main`.
static TRACING_LOSSES: OnceLock<tracing_appender::non_blocking::ErrorCounter> = OnceLock::new();

/// Makes the `tracing` writer's losses visible in `/metrics` and `/readyz`.
pub fn count_tracing_losses(counter: tracing_appender::non_blocking::ErrorCounter) {
    let _ = TRACING_LOSSES.set(counter);
}

/// Lines the `tracing` writer dropped since start (0 when it is not the non-blocking one).
pub fn tracing_dropped() -> u64 {
    TRACING_LOSSES
        .get()
        .map_or(0, |c| u64::try_from(c.dropped_lines()).unwrap_or(u64::MAX))
}
