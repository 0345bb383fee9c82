//! Logging on stderr: `RUST_LOG` filtering, text or JSON lines, written off the event loop in batches.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use tracing_subscriber::fmt::MakeWriter;

use super::LogFormat;
use crate::observe::batched_writer::{BatchedWriter, Bounds, WriteAll};

/// Lines `tracing` may keep waiting for a stalled stderr before it drops them (and counts the loss).
const TRACING_QUEUE: Bounds = Bounds {
    lines: 8192,
    bytes: 16 << 20,
};
/// How long exit waits for stderr to take the last lines.
const FLUSH_ON_EXIT: Duration = Duration::from_secs(5);

/// Writes what is queued when the process ends.
pub(super) struct FlushOnExit(Arc<BatchedWriter>);

impl Drop for FlushOnExit {
    fn drop(&mut self) {
        self.0.flush(FLUSH_ON_EXIT);
    }
}

pub(super) fn init_logging(format: LogFormat) -> io::Result<FlushOnExit> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colour codes only for a person at a terminal, never into journald or files.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    // A writer thread of its own: a stderr nobody reads loses lines (counted) instead of blocking.
    let lines = Arc::new(BatchedWriter::spawn(
        "tracing-stderr",
        WriteAll(io::stderr()),
        TRACING_QUEUE,
        |_| {}, // nowhere left to tell of a failed stderr
    )?);
    crate::observe::metrics::count_tracing_losses(Arc::clone(&lines));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(StderrLines(Arc::clone(&lines)));
    match format {
        // Without colour, fields are written straight (same bytes, a fraction of the work).
        LogFormat::Text if !ansi => builder.fmt_fields(super::log_fields::PlainFields).init(),
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
    Ok(FlushOnExit(lines))
}

/// `tracing`'s writer: each event arrives as one `write` of its whole line.
struct StderrLines(Arc<BatchedWriter>);

impl<'a> MakeWriter<'a> for StderrLines {
    type Writer = QueuedLine<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        QueuedLine(&self.0)
    }
}

struct QueuedLine<'a>(&'a BatchedWriter);

impl io::Write for QueuedLine<'_> {
    fn write(&mut self, line: &[u8]) -> io::Result<usize> {
        // A dropped line is counted by the writer; failing here would only print the loss to stderr.
        self.0.push(line);
        Ok(line.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
