//! Logging on stderr: `RUST_LOG` filtering, text or JSON lines, through a non-blocking writer.

use super::LogFormat;

/// Lines `tracing` may queue for a stalled stderr before it drops them (and counts the loss).
const TRACING_QUEUE_LINES: usize = 8192;

pub(super) fn init_logging(format: LogFormat) -> tracing_appender::non_blocking::WorkerGuard {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colour codes only for a person at a terminal, never into journald or files.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    // A writer thread of its own: a stderr nobody reads loses lines (counted) instead of blocking.
    let (stderr, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(TRACING_QUEUE_LINES)
        .thread_name("tracing-stderr")
        .finish(std::io::stderr());
    crate::observe::metrics::count_tracing_losses(stderr.error_counter());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(stderr);
    match format {
        // Without colour, fields are written straight (same bytes, a fraction of the work).
        LogFormat::Text if !ansi => builder.fmt_fields(super::log_fields::PlainFields).init(),
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
    guard
}
