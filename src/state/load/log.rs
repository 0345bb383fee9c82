//! The log's loaded parts: the PII hash key (configured, or one random key per process) and the
//! traffic log's directory, which must exist before the file is opened.

use crate::config::{Log, PiiMode, ProblemList, TrafficSink};
use crate::observe::traffic_log::{Pii, PiiPolicy};
use crate::state::tokens::{load_secret, source_key};

pub(super) fn pii_policy(log: &Log, problems: &mut ProblemList) -> PiiPolicy {
    let mode = match log.pii {
        PiiMode::Hash => Pii::Hash,
        PiiMode::Plain => Pii::Plain,
        PiiMode::Omit => Pii::Omit,
    };
    let Some(source) = &log.pii_key else {
        return PiiPolicy::new(mode, process_pii_key());
    };
    let key = load_secret(source, "log.pii_key", "the PII hash key", problems, Ok);
    match key {
        Some(k) if k.trim().len() >= 16 => PiiPolicy::new(mode, k.trim().as_bytes().to_vec()),
        Some(_) => {
            problems.add(
                &source_key("log.pii_key", source),
                format!("the PII hash key from {source} is shorter than 16 characters"),
            );
            PiiPolicy::new(mode, process_pii_key())
        }
        None => PiiPolicy::new(mode, process_pii_key()),
    }
}

/// A random key for the PII hash, the same for every reload of this process (so hashes keep
/// correlating until a restart; configure `log.pii_key_file` for stability across restarts).
fn process_pii_key() -> Vec<u8> {
    static KEY: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    KEY.get_or_init(|| {
        let mut key = uuid::Uuid::new_v4().as_bytes().to_vec();
        key.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
        key
    })
    .clone()
}

pub(super) fn check_traffic_dir(log: &Log, problems: &mut ProblemList) {
    if let TrafficSink::File(path) = &log.traffic
        && let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
        && !dir.is_dir()
    {
        problems.add(
            "log.traffic",
            format!(
                "the directory {} of the traffic log does not exist",
                dir.display()
            ),
        );
    }
}
