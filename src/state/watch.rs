//! Background watchers of the running state: token expiry warnings and lost log records.

use std::time::SystemTime;

use crate::observe::metrics::LogDrops;

use super::token_expiry::ExpiryState;

/// Logs a warning once a day per route from `token_warn` before `token_expires`, so the v2
/// token never expires by surprise. After expiry every request logs an error (see proxy).
pub async fn watch_token_expiry(
    shared: std::sync::Arc<crate::state::Shared>,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let mut last_warned: std::collections::HashMap<String, std::time::Instant> = Default::default();
    loop {
        let now = SystemTime::now();
        let snapshot = shared.state.load();
        for (route, runtime) in snapshot.routes() {
            let Some(expiry) = &runtime.token_expiry else {
                continue;
            };
            // Past expiry every request logs an error (see proxy); here: soon, and rotated undated.
            let days_left = match expiry.state(now, route.token_warn) {
                ExpiryState::Fine { .. } | ExpiryState::Expired { .. } => continue,
                ExpiryState::Soon { left } => Some(left.as_secs() / 86_400),
                ExpiryState::Stale => None,
            };
            let Some(warning) = expiry.warning(&route.name, &route.token, now, route.token_warn)
            else {
                continue;
            };
            let due = last_warned
                .get(&route.name)
                .is_none_or(|t| t.elapsed() >= std::time::Duration::from_secs(86_400));
            if due {
                last_warned.insert(route.name.clone(), std::time::Instant::now());
                tracing::warn!(route = %route.name, days_left, "{warning}");
            }
        }
        drop(snapshot);
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(std::time::Duration::from_secs(3600)) => {}
        }
    }
}

/// How often lost log records are reported on stderr at most.
const DROP_REPORT_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// Reports log records dropped since the last report, at most once a minute. Through `tracing`, whose
/// writer never blocks: when stderr itself is stalled the report is one more counted loss.
pub async fn watch_log_drops(
    shared: std::sync::Arc<crate::state::Shared>,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let mut reported = LogDrops::default();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(DROP_REPORT_EVERY) => {}
        }
        let now = shared.log_drops();
        if now != reported {
            tracing::warn!(
                traffic = now.traffic - reported.traffic.min(now.traffic),
                tracing = now.tracing - reported.tracing.min(now.tracing),
                traffic_total = now.traffic,
                tracing_total = now.tracing,
                "log records dropped in the last minute: the log sink (stdout, the traffic file or stderr) is not keeping up"
            );
            reported = now;
        }
    }
}
