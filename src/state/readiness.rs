//! Readiness (`/readyz`): why this instance cannot serve, and what an admin should act on although
//! it serves.

use std::time::SystemTime;

use super::Snapshot;

/// Why the proxy is not ready, one line each; empty when it is.
pub fn readiness_problems(snapshot: &Snapshot, accepting: bool, now: SystemTime) -> Vec<String> {
    let mut problems = Vec::new();
    if !accepting {
        problems
            .push("the proxy listener is not accepting (starting or shutting down)".to_string());
    }
    if let Some(cert) = &snapshot.cert_info
        && cert.is_expired(now)
    {
        problems.push(format!(
            "the serving certificate ({}) expired at {}",
            cert.subject,
            humantime::format_rfc3339_seconds(cert.not_after)
        ));
    }
    problems
}

/// What an admin should act on although the proxy serves: an expired, soon-expiring or
/// rotated-but-undated v2 token. Not readiness: an upstream that refuses a token refuses it for
/// every replica, and the IdP must keep seeing the upstream's real answer.
pub fn readiness_warnings(snapshot: &Snapshot, now: SystemTime) -> Vec<String> {
    snapshot
        .routes()
        .filter_map(|(route, runtime)| {
            runtime
                .token_expiry
                .as_ref()?
                .warning(&route.name, &route.token, now, route.token_warn)
        })
        .collect()
}
