//! Log records lost because a sink did not keep up: the traffic log's and the `tracing` writer's.

use std::sync::{Arc, OnceLock};

use crate::observe::batched_writer::BatchedWriter;

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

/// The process's `tracing` writer, set once by `main`.
static TRACING_LINES: OnceLock<Arc<BatchedWriter>> = OnceLock::new();

/// Makes the `tracing` writer's losses visible in `/metrics` and `/readyz`.
pub(crate) fn count_tracing_losses(lines: Arc<BatchedWriter>) {
    let _ = TRACING_LINES.set(lines);
}

/// Lines the `tracing` writer dropped since start (0 when it is not the batched one).
pub fn tracing_dropped() -> u64 {
    TRACING_LINES.get().map_or(0, |lines| lines.dropped())
}
