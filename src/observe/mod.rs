//! What the proxy tells its operators: metrics, the traffic log, and the report over it.

pub mod auth_watch;
pub(crate) mod batched_writer;
mod body_mask;
mod credentials;
mod log_drops;
pub mod metrics;
mod pii;
mod query_mask;
mod record;
pub mod report;
mod rotating_file;
mod sink;
pub mod status;
#[cfg(test)]
mod test_support;

/// The traffic log under its long-standing path (the state, the proxy and the report import it
/// from here): the record, the masking of secrets and personal data, and the writer.
pub mod traffic_log {
    pub use super::body_mask::mask_body;
    pub(crate) use super::pii::scrub_text;
    pub use super::pii::{Pii, PiiPolicy};
    pub use super::query_mask::{loggable_path, mask_query_credentials};
    pub use super::record::{TrafficRecord, rfc3339_millis};
    pub use super::sink::{QUEUE_BYTES, QUEUE_RECORDS, TrafficLog};
}
