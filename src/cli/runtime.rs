//! The async runtime each subcommand runs on, sized as `[runtime] worker_threads` asks.

use std::process::ExitCode;

use tokio::runtime::{Builder, Runtime};

pub(super) fn with_runtime(fut: impl std::future::Future<Output = ExitCode>) -> ExitCode {
    with_runtime_threads(None, fut)
}

pub(super) fn with_runtime_threads(
    threads: Option<usize>,
    fut: impl std::future::Future<Output = ExitCode>,
) -> ExitCode {
    // One worker: a current-thread runtime, without the work-stealing scheduler's overhead.
    let mut builder = match threads {
        Some(1) => Builder::new_current_thread(),
        _ => Builder::new_multi_thread(),
    };
    if let Some(n) = threads.filter(|n| *n > 1) {
        builder.worker_threads(n);
    }
    match build(builder) {
        Ok(rt) => rt.block_on(fut),
        Err(code) => code,
    }
}

/// A one-thread runtime for work that is mostly synchronous (`check`).
pub(super) fn current_thread() -> Result<Runtime, ExitCode> {
    build(Builder::new_current_thread())
}

/// Builds with timers and I/O on; a failure is said on stderr and becomes exit code 1.
fn build(mut builder: Builder) -> Result<Runtime, ExitCode> {
    builder.enable_all().build().map_err(|e| {
        eprintln!("cannot start the async runtime: {e}");
        ExitCode::FAILURE
    })
}
