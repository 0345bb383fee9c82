//! The batched writer over a real thread: order, bounds while stalled, flush, close.

use std::io::{self, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::*;

#[derive(Clone, Default)]
struct Collected(Arc<Mutex<Vec<u8>>>, Arc<AtomicU64>);

impl BatchSink for Collected {
    fn write_batch(&mut self, batch: &[u8]) -> io::Result<()> {
        self.1.fetch_add(1, Ordering::Relaxed);
        self.0.lock().unwrap().write_all(batch)
    }
}

impl Collected {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
    fn batches(&self) -> u64 {
        self.1.load(Ordering::Relaxed)
    }
}

const WIDE: Bounds = Bounds {
    lines: 100_000,
    bytes: 64 << 20,
};

#[test]
fn lines_arrive_whole_and_in_order_from_many_threads_in_few_writes() {
    let sink = Collected::default();
    let writer = Arc::new(BatchedWriter::spawn("t-order", sink.clone(), WIDE, |_| {}).unwrap());
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let writer = Arc::clone(&writer);
            std::thread::spawn(move || {
                for i in 0..2_000 {
                    assert!(writer.push(format!("t{t} line {i:05}\n").as_bytes()));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert!(writer.flush(Duration::from_secs(10)));
    let text = sink.text();
    assert_eq!(text.lines().count(), 8_000);
    for t in 0..4 {
        let mine: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with(&format!("t{t} ")))
            .collect();
        let expected: Vec<String> = (0..2_000).map(|i| format!("t{t} line {i:05}")).collect();
        assert_eq!(mine, expected, "thread {t}'s lines in order and whole");
    }
    // Lines queued while the writer lingers share its write: far fewer writes than lines.
    assert!(
        sink.batches() < 8_000 / 4,
        "{} writes for 8,000 lines",
        sink.batches()
    );
    assert_eq!(writer.dropped(), 0);
}

#[test]
fn a_single_line_is_written_soon_without_a_flush() {
    let sink = Collected::default();
    let writer = BatchedWriter::spawn("t-soon", sink.clone(), WIDE, |_| {}).unwrap();
    assert!(writer.push(b"alone\n"));
    let mut waited = 0;
    while sink.text().is_empty() && waited < 200 {
        std::thread::sleep(Duration::from_millis(10));
        waited += 1;
    }
    assert_eq!(sink.text(), "alone\n");
}

/// Blocks every batch until the test lets it go.
struct Gate(crossbeam_channel::Receiver<()>, Collected);

impl BatchSink for Gate {
    fn write_batch(&mut self, batch: &[u8]) -> io::Result<()> {
        let _ = self.0.recv_timeout(Duration::from_secs(30));
        self.1.write_batch(batch)
    }
}

#[test]
fn a_stalled_sink_bounds_lines_and_bytes_including_the_batch_in_hand() {
    let (release, gate) = crossbeam_channel::unbounded();
    let sink = Collected::default();
    let bounds = Bounds {
        lines: 10,
        bytes: 1 << 20,
    };
    let writer = BatchedWriter::spawn("t-stall", Gate(gate, sink.clone()), bounds, |_| {}).unwrap();
    assert!(writer.push(b"first\n"));
    assert!(
        !writer.flush(Duration::from_millis(50)),
        "the sink is stalled"
    );
    // The writer holds "first"; nine more fit, the rest are dropped without waiting.
    let accepted = (0..30)
        .filter(|i| writer.push(format!("{i}\n").as_bytes()))
        .count();
    assert_eq!(accepted, 9);
    assert_eq!(writer.dropped(), 21);
    for _ in 0..10 {
        let _ = release.send(());
    }
    assert!(writer.flush(Duration::from_secs(10)));
    assert_eq!(sink.text().lines().count(), 10);
    // With the sink drained, there is room again.
    assert!(writer.push(b"later\n"));

    let (_release, gate) = crossbeam_channel::unbounded::<()>();
    let bytes = Bounds {
        lines: 1_000,
        bytes: 100,
    };
    let writer =
        BatchedWriter::spawn("t-bytes", Gate(gate, Collected::default()), bytes, |_| {}).unwrap();
    let big = vec![b'x'; 300];
    assert!(
        writer.push(&big),
        "one line over the bound goes when nothing waits"
    );
    assert!(!writer.push(b"small\n"), "nothing more while it waits");
    assert_eq!(writer.dropped(), 1);
    std::mem::forget(writer); // its thread is stalled on purpose; dropping would wait CLOSE_WAIT
}

#[test]
fn failed_batches_are_reported_and_dropping_writes_what_waits() {
    struct Broken;
    impl BatchSink for Broken {
        fn write_batch(&mut self, _: &[u8]) -> io::Result<()> {
            Err(io::Error::other("disk full"))
        }
    }
    let errors = Arc::new(AtomicU64::new(0));
    let counted = Arc::clone(&errors);
    let writer = BatchedWriter::spawn("t-broken", Broken, WIDE, move |_| {
        counted.fetch_add(1, Ordering::Relaxed);
    })
    .unwrap();
    assert!(writer.push(b"a\n"));
    assert!(
        writer.flush(Duration::from_secs(10)),
        "a failed batch is finished too"
    );
    assert_eq!(errors.load(Ordering::Relaxed), 1);

    let sink = Collected::default();
    let writer = BatchedWriter::spawn("t-close", sink.clone(), WIDE, |_| {}).unwrap();
    for i in 0..100 {
        writer.push(format!("{i}\n").as_bytes());
    }
    drop(writer);
    assert_eq!(sink.text().lines().count(), 100);
}
