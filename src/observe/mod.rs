//! What the proxy tells its operators: metrics, the traffic log, and the report over it.

pub mod auth_watch;
pub mod metrics;
pub mod report;
pub mod traffic_log;
