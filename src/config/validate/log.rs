//! `[log]` (the traffic log and how personal values appear in it) and `[reload]`.

use std::path::Path;

use super::Validator;
use crate::config::model::{Log, PiiMode, Reload, TrafficSink};
use crate::config::raw::{RawLog, RawReload};

impl Validator {
    pub(super) fn log(&mut self, raw: RawLog, base_dir: &Path) -> Log {
        let d = Log::default();
        let traffic = match raw.traffic.as_deref() {
            None | Some("stdout") => TrafficSink::Stdout,
            Some("off") => TrafficSink::Off,
            Some("") => {
                self.problem("log.traffic", "expected \"stdout\", \"off\" or a file path");
                d.traffic.clone()
            }
            Some(path) => TrafficSink::File(base_dir.join(path)),
        };
        let pii = match raw.pii.as_deref() {
            None | Some("hash") => PiiMode::Hash,
            Some("plain") => PiiMode::Plain,
            Some("omit") => PiiMode::Omit,
            Some(other) => {
                self.problem(
                    "log.pii",
                    format!("{other:?}: expected \"hash\", \"plain\" or \"omit\""),
                );
                PiiMode::Hash
            }
        };
        let pii_key = self.optional_secret(
            ("log.pii_key_file", raw.pii_key_file),
            ("log.pii_key_env", raw.pii_key_env),
            base_dir,
        );
        Log {
            traffic,
            max_file_bytes: self.size(
                "log.max_file_bytes",
                raw.max_file_bytes,
                d.max_file_bytes,
                4096,
                u64::MAX,
            ),
            keep_files: self.count("log.keep_files", raw.keep_files, d.keep_files, 0, 1000),
            queue_records: self.count(
                "log.queue_records",
                raw.queue_records,
                d.queue_records,
                1,
                1 << 20,
            ),
            pii,
            pii_key,
            capture_bodies: raw.capture_bodies.unwrap_or(false),
        }
    }

    pub(super) fn reload(&mut self, raw: RawReload) -> Reload {
        let d = Reload::default();
        Reload {
            watch: raw.watch.unwrap_or(d.watch),
            interval: self.duration("reload.interval", raw.interval, d.interval),
        }
    }
}
