//! Tests of the traffic log writer: whole lines from many threads, rotation, errors, stalls.

use super::*;
use crate::observe::test_support::{Shared, full_record, write_now};
use serde_json::Value;

struct Broken;

impl Write for Broken {
    fn write(&mut self, _: &[u8]) -> io::Result<usize> {
        Err(io::Error::other("disk full"))
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn writes_one_json_line_per_record_from_many_threads() {
    let buf = Shared::default();
    let log = Arc::new(TrafficLog::writer(buf.clone()).unwrap());
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let log = log.clone();
            std::thread::spawn(move || {
                for _ in 0..50 {
                    write_now(&log, &full_record());
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    assert_eq!(text.lines().count(), 400);
    for line in text.lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["op"], "user.create");
    }
    assert_eq!(log.write_errors(), 0);
}

#[test]
fn write_errors_are_counted_not_raised() {
    let log = TrafficLog::writer(Broken).unwrap();
    for _ in 0..3 {
        write_now(&log, &full_record());
    }
    assert_eq!(log.write_errors(), 3);
}

fn numbered(i: usize) -> TrafficRecord {
    let mut r = full_record();
    r.request_id = format!("req-{i:04}");
    r
}

#[test]
fn rotates_by_size_without_splitting_lines() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("logs").join("x.log");
    let line_len = serde_json::to_vec(&numbered(0)).unwrap().len() as u64 + 1;
    let max = line_len * 3 + 10;
    let log = TrafficLog::file(&path, max, 2).unwrap();
    for i in 0..20 {
        write_now(&log, &numbered(i));
    }
    assert_eq!(log.write_errors(), 0);
    let mut names: Vec<String> = std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["x.log", "x.log.1", "x.log.2"]);
    let mut ids = Vec::new();
    for name in ["x.log.2", "x.log.1", "x.log"] {
        let text = std::fs::read_to_string(dir.path().join("logs").join(name)).unwrap();
        assert!(text.len() as u64 <= max, "{name} is {} bytes", text.len());
        assert!(text.ends_with('\n'));
        for line in text.lines() {
            let v: Value = serde_json::from_str(line).expect("whole lines only");
            ids.push(v["request_id"].as_str().unwrap().to_owned());
        }
    }
    // The newest survive, in order: 20 lines at 3 a file leave 2 in x.log and 3 in each of the 2 kept.
    let want: Vec<String> = (12..20).map(|i| format!("req-{i:04}")).collect();
    assert_eq!(ids, want);
}

#[test]
fn reopening_appends_and_counts_the_existing_size() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.log");
    let line_len = serde_json::to_vec(&numbered(0)).unwrap().len() as u64 + 1;
    {
        let log = TrafficLog::file(&path, line_len * 2, 3).unwrap();
        write_now(&log, &numbered(0));
    }
    let log = TrafficLog::file(&path, line_len * 2, 3).unwrap();
    write_now(&log, &numbered(1));
    write_now(&log, &numbered(2));
    let current = std::fs::read_to_string(&path).unwrap();
    let first = std::fs::read_to_string(dir.path().join("x.log.1")).unwrap();
    assert_eq!(first.lines().count(), 2);
    assert_eq!(current.lines().count(), 1);
    assert!(current.contains("req-0002"));
}

#[test]
fn keep_zero_keeps_only_the_current_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.log");
    let log = TrafficLog::file(&path, 10, 0).unwrap();
    for i in 0..5 {
        write_now(&log, &numbered(i));
    }
    assert_eq!(log.write_errors(), 0);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    // A line longer than max_bytes still goes whole into a file of its own.
    assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 1);
}

#[test]
fn a_file_created_behind_its_back_is_an_error_then_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.log");
    let line_len = serde_json::to_vec(&numbered(0)).unwrap().len() as u64 + 1;
    let log = TrafficLog::file(&path, line_len, 3).unwrap();
    write_now(&log, &numbered(0));
    // Another writer (say, a second instance on the same path) rotated meanwhile: file_rotate's
    // list of old files is stale and its rotation asserts.
    std::fs::write(dir.path().join("x.log.1"), "{}\n").unwrap();
    write_now(&log, &numbered(1));
    assert_eq!(log.write_errors(), 1);
    let current = std::fs::read_to_string(&path).unwrap();
    assert!(
        current.contains("req-0000") && current.contains("req-0001"),
        "no line lost"
    );
    // Rebuilt from disk: the next rotation works.
    write_now(&log, &numbered(2));
    assert_eq!(log.write_errors(), 1);
    assert!(std::fs::read_to_string(&path).unwrap().contains("req-0002"));
    assert!(dir.path().join("x.log.2").exists());
}

#[test]
fn unusable_paths_are_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plain-file");
    std::fs::write(&file, "x").unwrap();
    assert!(TrafficLog::file(&file.join("x.log"), 1000, 2).is_err());
    assert!(TrafficLog::file(&dir.path().join("x.log"), 0, 2).is_err());
    assert!(TrafficLog::file(Path::new("/"), 1000, 2).is_err());
    assert!(
        TrafficLog::file(dir.path(), 1000, 2).is_err(),
        "a directory"
    );
}

/// A sink that blocks every write until the test lets it go, like a pipe nobody reads.
struct Stalled {
    release: crossbeam_channel::Receiver<()>,
    out: Shared,
}

impl Write for Stalled {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let _ = self.release.recv_timeout(Duration::from_secs(30));
        self.out.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_stalled_sink_drops_and_counts_records_instead_of_blocking() {
    let (release, gate) = crossbeam_channel::unbounded();
    let out = Shared(Arc::new(Mutex::new(Vec::new())));
    let log = TrafficLog::writer(Stalled {
        release: gate,
        out: out.clone(),
    })
    .unwrap();
    let total = QUEUE_RECORDS + 100;
    // The sink stays stalled until released below: writes that waited for it would never finish,
    // so they run on a thread and must all return while it is still stalled (the bound is only
    // there to fail instead of hanging).
    let log = Arc::new(log);
    let (done, finished) = crossbeam_channel::bounded(1);
    let writer = std::thread::spawn({
        let log = Arc::clone(&log);
        move || {
            for i in 0..total {
                log.write(&numbered(i));
            }
            let _ = done.send(());
        }
    });
    let returned = finished.recv_timeout(Duration::from_secs(120)).is_ok();
    if !returned {
        for _ in 0..total {
            let _ = release.send(());
        }
    }
    assert!(returned, "writes waited for the stalled sink");
    writer.join().unwrap();
    let dropped = log.dropped();
    // QUEUE_RECORDS wait unwritten (the batch the stalled writer holds among them).
    assert_eq!(dropped, 100);
    // Once the sink drains, every record that was not dropped is written, in order.
    for _ in 0..total {
        let _ = release.send(());
    }
    assert!(log.flush(Duration::from_secs(20)));
    let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
    assert_eq!(text.lines().count() as u64, total as u64 - dropped);
    assert!(text.lines().next().unwrap().contains("req-0000"));
    assert_eq!(log.write_errors(), 0);
}

#[test]
fn a_draining_sink_loses_nothing() {
    let buf = Shared(Arc::new(Mutex::new(Vec::new())));
    let log = TrafficLog::writer(buf.clone()).unwrap();
    let total = QUEUE_RECORDS * 3;
    for i in 0..total {
        log.write(&numbered(i));
        if i % 1000 == 999 {
            // Let the writer catch up now and then, as a sink that drains does.
            assert!(log.flush(Duration::from_secs(10)));
        }
    }
    drop(log);
    let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    assert_eq!(text.lines().count(), total, "the drop flushes the rest");
}
