//! Readers of the traffic log (JSON lines).

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::*;

/// The traffic log `traffic.log` in `dir`, one JSON value per line (unparsable lines panic).
pub fn read_traffic(dir: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(dir.join("traffic.log")).unwrap_or_default();
    text.lines()
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("traffic line not JSON ({e}): {l}"))
        })
        .collect()
}

/// The complete lines of a JSON-lines file (a line still being written is left out); every complete
/// line must be a JSON object.
pub fn read_records(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let complete = match text.rfind('\n') {
        Some(i) => &text[..=i],
        None => "",
    };
    complete
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("{}: not a JSON line ({e}): {l}", path.display()));
            assert!(v.is_object(), "not a JSON object: {l}");
            v
        })
        .collect()
}

/// The record of request `rid` in `dir/traffic.log`, waiting (bounded) for it to be written.
pub async fn record(dir: &Path, rid: &str) -> Value {
    let path = dir.join("traffic.log");
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(r) = read_records(&path)
            .into_iter()
            .find(|r| r["request_id"] == rid)
        {
            return r;
        }
        assert!(
            Instant::now() < deadline,
            "no traffic record {rid} within {WAIT:?}:\n{}",
            std::fs::read_to_string(&path).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits (bounded) for `n` traffic records: a record is written once its response has gone out.
pub async fn traffic_records(dir: &Path, n: usize) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + STEP;
    loop {
        let records = read_traffic(dir);
        if records.len() >= n || Instant::now() >= deadline {
            return records;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The traffic log in `dir` as it is now, as text.
pub fn traffic_text(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("traffic.log")).unwrap_or_default()
}

/// The traffic log in `dir` as text, once it holds `n` records (bounded wait, as [`traffic_records`]).
pub async fn traffic_text_after(dir: &Path, n: usize) -> String {
    traffic_records(dir, n).await;
    traffic_text(dir)
}
