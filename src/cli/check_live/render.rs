//! The preflight's words: each route's lines, and the report an admin reads.

use std::fmt::Write as _;
use std::time::SystemTime;

use super::RouteCheck;
use super::meaning::{self, Failure};
use super::probe::Probe;
use crate::config::{Egress, Route};

/// What is checked, before any result: the egress path, the request, the token's expiry.
pub(super) fn preamble(egress: &Egress, route: &Route, target: &str) -> Vec<String> {
    let egress_desc = match (&egress.via_proxy, egress.bind_ip) {
        (Some(p), Some(ip)) => format!(
            "through forward proxy {} (connection to it from {ip})",
            p.url
        ),
        (Some(p), None) => format!("through forward proxy {}", p.url),
        (None, Some(ip)) => format!("direct from {ip} (egress.bind_ip)"),
        (None, None) => {
            "direct from this host's default source address (no egress.bind_ip)".to_string()
        }
    };
    let token = match route.token_expires {
        Some(t) => {
            let when = humantime::format_rfc3339_seconds(t);
            match t.duration_since(SystemTime::now()) {
                Ok(left) => format!(
                    "token       expires {when} ({} days left)",
                    left.as_secs() / 86_400
                ),
                Err(_) => format!("token       EXPIRED at {when} (token_expires)"),
            }
        }
        None => {
            "token       expiry not configured (set token_expires to be warned ahead)".to_string()
        }
    };
    vec![
        format!("egress      {egress_desc}"),
        format!("request     GET {target}"),
        token,
    ]
}

pub(super) fn failed(failure: &Failure) -> [String; 2] {
    [
        format!("FAILED      {}", failure.what),
        format!("meaning     {}", failure.meaning),
    ]
}

/// The lines of a route that answered; true when the answer is a SCIM list.
pub(super) fn answered(p: Probe, lines: &mut Vec<String>) -> bool {
    let c = &p.connection;
    if let Some(src) = &c.source {
        lines.push(format!("source      {src}"));
    }
    lines.push(format!("tls         {} ({})", c.tls_version, c.alpn));
    lines.push(format!("certificate {}", c.cert));
    lines.push(format!(
        "status      {} in {} ms",
        p.status,
        p.latency.as_millis()
    ));
    match (p.status.is_success(), p.list) {
        (true, None) => {
            lines.push(
                "result      OK: the token is accepted and SCIM Users can be read from this egress"
                    .into(),
            );
            true
        }
        (true, Some(list)) => {
            lines.push(format!("answer      {list}"));
            lines.push(format!("meaning     {}", meaning::NOT_SCIM));
            false
        }
        (false, _) => {
            let why = meaning::of_status(p.status.as_u16(), p.detail.as_deref());
            lines.push(format!("meaning     {why}"));
            false
        }
    }
}

/// The report an admin reads before switching an IdP.
pub fn render(checks: &[RouteCheck]) -> String {
    let mut out = String::new();
    for c in checks {
        let _ = writeln!(
            out,
            "route {}: {}",
            c.route,
            if c.ok { "OK" } else { "FAILED" }
        );
        for l in &c.lines {
            let _ = writeln!(out, "  {l}");
        }
        out.push('\n');
    }
    let failed = checks.iter().filter(|c| !c.ok).count();
    let _ = writeln!(
        out,
        "{} of {} route{} passed the live check",
        checks.len() - failed,
        checks.len(),
        if checks.len() == 1 { "" } else { "s" }
    );
    out
}
