//! The traffic log's writer: records queued (bounded, in records and bytes) to a thread of its own
//! that writes them to stdout, a rotated file or any writer; what does not fit is dropped and counted.

use std::io::{self, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::observe::batched_writer::{BatchSink, BatchedWriter, Bounds};
use crate::observe::record::TrafficRecord;
use crate::observe::rotating_file::RotatingFile;

/// Writes records as JSON lines from a thread of its own, so that a sink that stops draining (a full
/// pipe, a hung log shipper, a slow disk) never blocks request handling. Records wait, bounded in
/// count and bytes, and are written in batches; what does not fit is dropped and counted (`dropped`),
/// never a request delayed. A failed write is counted (`write_errors`) and warned about at most once
/// a minute.
pub struct TrafficLog {
    lines: BatchedWriter,
    state: Arc<WriterState>,
}

struct WriterState {
    errors: AtomicU64,
    last_warning: Mutex<Option<Instant>>,
}

enum Sink {
    Stdout,
    File(RotatingFile),
    Writer(Box<dyn Write + Send>),
}

impl BatchSink for Sink {
    fn write_batch(&mut self, batch: &[u8]) -> io::Result<()> {
        match self {
            Sink::Stdout => {
                let mut out = io::stdout().lock();
                out.write_all(batch).and_then(|()| out.flush())
            }
            Sink::Writer(w) => w.write_all(batch).and_then(|()| w.flush()),
            Sink::File(f) => f.write_lines(batch),
        }
    }
}

const WARN_EVERY: Duration = Duration::from_secs(60);
/// Records waiting for a stalled sink before new ones are dropped (`log.queue_records`'s default).
pub const QUEUE_RECORDS: usize = 8192;
/// Bytes waiting for a stalled sink before new records are dropped.
pub const QUEUE_BYTES: usize = 64 << 20;

impl TrafficLog {
    pub fn stdout(queue_records: usize) -> io::Result<TrafficLog> {
        TrafficLog::with_sink(Sink::Stdout, queue_records)
    }

    /// A file rotated when the next line would take it over `max_bytes`, keeping `keep` older files
    /// (`x.log.1` newest … `x.log.<keep>` oldest). Fails if the file cannot be created or opened.
    pub fn file(path: &Path, max_bytes: u64, keep: usize) -> io::Result<TrafficLog> {
        TrafficLog::file_queued(path, max_bytes, keep, QUEUE_RECORDS)
    }

    /// [`TrafficLog::file`] with a queue of `queue_records`.
    pub fn file_queued(
        path: &Path,
        max_bytes: u64,
        keep: usize,
        queue_records: usize,
    ) -> io::Result<TrafficLog> {
        let file = RotatingFile::open(path, max_bytes, keep)?;
        TrafficLog::with_sink(Sink::File(file), queue_records)
    }

    /// Any writer (tests, or a channel to a background task).
    pub fn writer(w: impl Write + Send + 'static) -> io::Result<TrafficLog> {
        TrafficLog::with_sink(Sink::Writer(Box::new(w)), QUEUE_RECORDS)
    }

    fn with_sink(sink: Sink, queue_records: usize) -> io::Result<TrafficLog> {
        let state = Arc::new(WriterState {
            errors: AtomicU64::new(0),
            last_warning: Mutex::new(None),
        });
        let writer_state = Arc::clone(&state);
        let bounds = Bounds {
            lines: queue_records,
            bytes: QUEUE_BYTES,
        };
        // The thread ends when the log is dropped, after writing what is queued.
        let lines = BatchedWriter::spawn("traffic-log", sink, bounds, move |e| {
            writer_state.failed(&e.to_string())
        })?;
        Ok(TrafficLog { lines, state })
    }

    /// Queues one record as one line; never waits for the sink. A full queue drops the record.
    pub fn write(&self, record: &TrafficRecord) {
        // The one place a record becomes a line: no string in it may hold a secret.
        let mut line = match record.to_masked_json() {
            Ok(line) => line,
            Err(e) => return self.state.failed(&e.to_string()),
        };
        line.push(b'\n');
        self.lines.push(&line);
    }

    /// Waits (at most `limit`) until every record queued before this call is written; false on timeout.
    pub fn flush(&self, limit: Duration) -> bool {
        self.lines.flush(limit)
    }

    /// Failed writes and rotations since start (for metrics).
    pub fn write_errors(&self) -> u64 {
        self.state.errors.load(Ordering::Relaxed)
    }

    /// Records dropped since start because the sink did not keep up.
    pub fn dropped(&self) -> u64 {
        self.lines.dropped()
    }
}

impl WriterState {
    fn failed(&self, why: &str) {
        let total = self.errors.fetch_add(1, Ordering::Relaxed) + 1;
        let mut last = self
            .last_warning
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if last.is_none_or(|t| t.elapsed() >= WARN_EVERY) {
            *last = Some(Instant::now());
            tracing::warn!(error = %why, errors = total, "cannot write the traffic log");
        }
    }
}

#[cfg(test)]
#[path = "sink_tests.rs"]
mod tests;
