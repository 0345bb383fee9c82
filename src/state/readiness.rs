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
    if let Some(problem) = acme_problem(snapshot, now) {
        problems.push(problem);
    }
    problems
}

/// With `[listen.acme]`: why no valid certificate is served (IdP handshakes fail meanwhile).
fn acme_problem(snapshot: &Snapshot, now: SystemTime) -> Option<String> {
    let cell = snapshot.acme.as_ref()?;
    let acme = snapshot.config.listen.acme.as_ref()?;
    let why = cell
        .last_error()
        .unwrap_or_else(|| "the order is in progress".to_string());
    match cell.current() {
        Some(held) if held.is_valid(now) => None,
        Some(held) => Some(format!(
            "the certificate from the ACME CA expired at {} and renewal has not succeeded: {why}",
            humantime::format_rfc3339_seconds(held.info.not_after)
        )),
        None => Some(format!(
            "no valid certificate yet from the ACME CA ({}): {why}",
            acme.directory
        )),
    }
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
