//! Lines handed from request handling to a writer thread of their own, written in batches.
//!
//! The event loop appends a line to a shared buffer and goes on; the writer thread takes whatever
//! has gathered and writes it with one call. A channel with a wake-up per line cost the proxy more
//! than the line itself: a futex wake, spinning `sched_yield`s and a `write(2)` per request on a
//! loaded core. Here the writer is woken once per batch, and lingers a moment (`LINGER`) so that a
//! busy proxy writes tens of lines per system call, as nginx's `access_log ... buffer= flush=` does.
//! Unwritten lines are bounded in count and bytes (those being written included); what does not
//! fit is dropped and counted, never waited for.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// How long the writer waits for more lines after the first of a batch arrives.
const LINGER: Duration = Duration::from_millis(20);
/// A batch this large is written without waiting out the linger.
const BATCH_BYTES: usize = 64 << 10;
/// The buffer a batch leaves behind is kept for the next one up to this size (then given back).
const KEEP_CAPACITY: usize = 1 << 20;

/// Where batches go: called on the writer thread only, so it may block.
pub(crate) trait BatchSink: Send + 'static {
    /// Writes whole lines (each ends in `\n`).
    fn write_batch(&mut self, batch: &[u8]) -> io::Result<()>;
}

/// How many lines, and how many bytes, may wait for a sink that does not keep up.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Bounds {
    pub lines: usize,
    pub bytes: usize,
}

/// The producers' handle. Dropping it writes what waits (bounded by `CLOSE_WAIT`) and ends the thread.
pub(crate) struct BatchedWriter {
    shared: Arc<Shared>,
}

const CLOSE_WAIT: Duration = Duration::from_secs(5);

struct Shared {
    pending: Mutex<Pending>,
    /// The writer waits here for lines (or a flush, or the close).
    lines_ready: Condvar,
    /// Flushes wait here for the writer to get past their lines.
    batch_written: Condvar,
    dropped: AtomicU64,
    bounds: Bounds,
}

#[derive(Default)]
struct Pending {
    buf: Vec<u8>,
    /// Lines not yet written: those in `buf` and those the writer holds.
    unwritten_lines: usize,
    unwritten_bytes: usize,
    /// Lines accepted since start, and lines the writer has got past (written or failed).
    accepted: u64,
    finished: u64,
    writer: WriterIs,
    flush_asked: bool,
    closed: bool,
}

#[derive(Default, Clone, Copy, PartialEq, Eq)]
enum WriterIs {
    #[default]
    Writing,
    /// Waiting for a first line: the next one wakes it.
    Idle,
    /// Gathering a batch: only a full batch, a flush or the close wakes it early.
    Lingering,
}

impl BatchedWriter {
    /// Starts the writer thread `name` in front of `sink`; `on_error` is told of each failed batch.
    pub(crate) fn spawn(
        name: &str,
        sink: impl BatchSink,
        bounds: Bounds,
        on_error: impl Fn(&io::Error) + Send + 'static,
    ) -> io::Result<BatchedWriter> {
        let shared = Arc::new(Shared {
            pending: Mutex::new(Pending::default()),
            lines_ready: Condvar::new(),
            batch_written: Condvar::new(),
            dropped: AtomicU64::new(0),
            bounds: Bounds {
                lines: bounds.lines.max(1),
                bytes: bounds.bytes.max(1),
            },
        });
        let writer = Arc::clone(&shared);
        std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || writer.run(sink, on_error))?;
        Ok(BatchedWriter { shared })
    }

    /// Queues one whole line (ending in `\n`); never waits for the sink. False when it was dropped.
    pub(crate) fn push(&self, line: &[u8]) -> bool {
        let shared = &*self.shared;
        let mut pending = shared.lock();
        // One line over the byte bound still goes when nothing waits: it is not lost for its size.
        let full = pending.unwritten_lines >= shared.bounds.lines
            || (pending.unwritten_bytes > 0
                && pending.unwritten_bytes + line.len() > shared.bounds.bytes);
        if full || pending.closed {
            drop(pending);
            shared.dropped.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        pending.buf.extend_from_slice(line);
        pending.unwritten_lines += 1;
        pending.unwritten_bytes += line.len();
        pending.accepted += 1;
        let wake = match pending.writer {
            WriterIs::Idle => true,
            WriterIs::Lingering => pending.buf.len() >= BATCH_BYTES,
            WriterIs::Writing => false,
        };
        if wake {
            pending.writer = WriterIs::Writing;
            drop(pending);
            shared.lines_ready.notify_one();
        }
        true
    }

    /// Waits (at most `limit`) until every line queued before this call is written; false on timeout.
    pub(crate) fn flush(&self, limit: Duration) -> bool {
        self.shared.flush(limit)
    }

    /// Lines dropped since start because the sink did not keep up.
    pub(crate) fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }
}

impl Drop for BatchedWriter {
    fn drop(&mut self) {
        self.shared.flush(CLOSE_WAIT);
        self.shared.lock().closed = true;
        self.shared.lines_ready.notify_one();
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn flush(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        let mut pending = self.lock();
        let target = pending.accepted;
        if pending.finished >= target {
            return true;
        }
        pending.flush_asked = true;
        self.lines_ready.notify_one();
        while pending.finished < target {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                return false;
            };
            pending = self
                .batch_written
                .wait_timeout(pending, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        true
    }

    /// The writer thread: takes what has gathered, writes it, and again, until closed and empty.
    fn run(&self, mut sink: impl BatchSink, on_error: impl Fn(&io::Error)) {
        let mut batch = Vec::new();
        loop {
            let mut pending = self.lock();
            while pending.buf.is_empty() && !pending.closed {
                pending.writer = WriterIs::Idle;
                pending = self
                    .lines_ready
                    .wait(pending)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            if pending.buf.is_empty() {
                return; // closed, and everything written
            }
            let linger_until = Instant::now() + LINGER;
            while !pending.flush_asked && !pending.closed && pending.buf.len() < BATCH_BYTES {
                let Some(left) = linger_until.checked_duration_since(Instant::now()) else {
                    break;
                };
                pending.writer = WriterIs::Lingering;
                pending = self
                    .lines_ready
                    .wait_timeout(pending, left)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
            }
            pending.writer = WriterIs::Writing;
            pending.flush_asked = false;
            std::mem::swap(&mut pending.buf, &mut batch);
            let (lines, bytes) = (pending.accepted - pending.finished, batch.len());
            drop(pending);

            if let Err(e) = sink.write_batch(&batch) {
                on_error(&e);
            }
            batch.clear();
            if batch.capacity() > KEEP_CAPACITY {
                batch = Vec::new();
            }

            let mut pending = self.lock();
            pending.finished += lines;
            pending.unwritten_lines = pending.unwritten_lines.saturating_sub(lines as usize);
            pending.unwritten_bytes = pending.unwritten_bytes.saturating_sub(bytes);
            drop(pending);
            self.batch_written.notify_all();
        }
    }
}

/// Writes each batch with `write_all` to any writer (stderr, stdout, a test's buffer).
pub(crate) struct WriteAll<W>(pub W);

impl<W: io::Write + Send + 'static> BatchSink for WriteAll<W> {
    fn write_batch(&mut self, batch: &[u8]) -> io::Result<()> {
        self.0.write_all(batch)?;
        self.0.flush()
    }
}

#[cfg(test)]
#[path = "batched_writer_tests.rs"]
mod tests;
