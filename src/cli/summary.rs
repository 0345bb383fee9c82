//! The plain-words summary of what a config makes the proxy do.

use crate::config::{Config, Route, TrafficSink};

/// What the config makes the proxy do, in plain words: `check` prints it, `serve` logs it.
/// `listen` and `admin` are the bound addresses (a port 0 in the config becomes a real one).
pub(super) fn summary_lines(
    c: &Config,
    listen: std::net::SocketAddr,
    admin: Option<std::net::SocketAddr>,
) -> Vec<String> {
    let mut lines = Vec::new();
    let scheme = if c.listen.tls.is_some() {
        "https (TLS 1.2/1.3)"
    } else if c.listen.acme.is_some() {
        "https (TLS 1.2/1.3, certificate from ACME)"
    } else {
        "plain http (behind a TLS load balancer)"
    };
    lines.push(format!("listen   {listen} {scheme}"));
    if let Some(acme) = &c.listen.acme {
        let challenge = match acme.challenge {
            crate::config::AcmeChallenge::TlsAlpn01 => "tls-alpn-01 on listen".to_string(),
            crate::config::AcmeChallenge::Http01(a) => format!("http-01 on http://{a}"),
        };
        lines.push(format!(
            "acme     {} from {} ({challenge}; renewed {} before expiry; state in {})",
            acme.domains.join(", "),
            acme.directory,
            humantime::format_duration(acme.renew_before),
            acme.state_dir.display()
        ));
    }
    if !c.listen.allow_cidrs.is_empty() {
        let nets: Vec<String> = c.listen.allow_cidrs.iter().map(|n| n.to_string()).collect();
        lines.push(format!("allow    {}", nets.join(", ")));
    }
    match admin {
        Some(a) => lines.push(format!("admin    http://{a}/healthz /readyz /metrics")),
        None => {
            lines.push("admin    none ([admin] not set: no /healthz, /readyz, /metrics)".into())
        }
    }
    lines.push(egress_line(c));
    lines.push(traffic_line(c));
    lines.extend(c.routes.iter().map(route_line));
    lines
}

fn egress_line(c: &Config) -> String {
    match (c.egress.bind_ip, &c.egress.via_proxy) {
        (Some(ip), None) => format!("egress   from {ip}"),
        (None, None) => "egress   from the default route's address (no bind_ip)".to_string(),
        (Some(ip), Some(p)) => format!(
            "egress   through forward proxy {} (reached from {ip})",
            p.url
        ),
        (None, Some(p)) => format!("egress   through forward proxy {}", p.url),
    }
}

fn traffic_line(c: &Config) -> String {
    match &c.log.traffic {
        TrafficSink::Off => "traffic  log off".to_string(),
        TrafficSink::Stdout => "traffic  log to stdout (JSON lines)".to_string(),
        TrafficSink::File(path) => format!(
            "traffic  log to {} (JSON lines, rotated at {} bytes, {} kept)",
            path.display(),
            c.log.max_file_bytes,
            c.log.keep_files
        ),
    }
}

/// Which requests a route takes, where it sends them, with which token, for which IdPs.
fn route_line(r: &Route) -> String {
    let hosts = if r.hosts.is_empty() {
        "any host".to_string()
    } else {
        r.hosts.join(", ")
    };
    let prefixes = match &r.legacy_tenant_id {
        Some(t) => format!("/SCIM/v2, /SCIM/V2/{t}"),
        None => "/SCIM/v2".to_string(),
    };
    let clients: Vec<&str> = r.clients.iter().map(|c| c.name.as_str()).collect();
    let pacing = r.pacing.map_or(String::new(), |p| {
        format!(
            "; paced: {:.2} requests/s, burst {}, max_queue_wait {}",
            1.0 / p.interval.as_secs_f64(),
            p.burst,
            humantime::format_duration(p.max_queue_wait)
        )
    });
    format!(
        "route    {}: {} {} -> {} (token from {}, sent as {}; IdPs: {}{pacing})",
        r.name,
        hosts,
        prefixes,
        r.upstream.url(),
        r.token,
        r.upstream_auth,
        clients.join(", ")
    )
}
