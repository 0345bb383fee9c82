//! Egress: the extra upstream roots, whether the bind address and the forward proxy are usable,
//! the proxy's credentials, and the upstream client built from them (kept across reloads when none
//! of them changed).

use std::net::{IpAddr, UdpSocket};

use rustls_pki_types::CertificateDer;

use crate::config::{Config, Egress, Problem, ProblemList, Problems, Route};
use crate::state::Snapshot;
use crate::state::tokens::load_secret;
use crate::tls;
use crate::upstream::{self, Family, UpstreamClient};

pub(super) fn roots(egress: &Egress, problems: &mut ProblemList) -> Vec<CertificateDer<'static>> {
    match &egress.ca_file {
        Some(path) => tls::read_certs(path).unwrap_or_else(|e| {
            problems.add("egress.ca_file", e);
            Vec::new()
        }),
        None => Vec::new(),
    }
}

/// `bind_ip` must be this host's, and of the forward proxy's IP family when that is an IP literal.
pub(super) fn check_addresses(egress: &Egress, problems: &mut ProblemList) {
    if let Some(ip) = egress.bind_ip
        && let Err(e) = check_local_address(ip)
    {
        problems.add("egress.bind_ip", e);
    }
    if let (Some(bind), Some(proxy)) = (egress.bind_ip, &egress.via_proxy)
        && let Some(host) = proxy
            .url
            .parse::<http::Uri>()
            .ok()
            .and_then(|u| u.host().map(str::to_owned))
        && let Ok(proxy_ip) = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
        && Family::of(bind) != Family::of(proxy_ip)
    {
        problems.add(
            "egress.via_proxy",
            format!("{proxy_ip} is not reachable from egress.bind_ip {bind} (different IP family)"),
        );
    }
}

/// Why a route's upstream, written as an IP literal, cannot be reached from `bind_ip`.
/// Through a forward proxy the upstream is resolved by the proxy; the proxy's own address is what
/// must match the egress family.
pub(super) fn unreachable_upstream(egress: &Egress, route: &Route) -> Option<String> {
    if egress.via_proxy.is_some() {
        return None;
    }
    let bind = egress.bind_ip?;
    let host_ip = route.upstream.host.parse::<IpAddr>().ok()?;
    (Family::of(bind) != Family::of(host_ip)).then(|| {
        format!("{host_ip} is not reachable from egress.bind_ip {bind} (different IP family)")
    })
}

/// The forward proxy's `Proxy-Authorization`, when credentials are configured.
pub(super) fn proxy_auth(egress: &Egress, problems: &mut ProblemList) -> Option<http::HeaderValue> {
    let source = egress.via_proxy.as_ref()?.credentials.as_ref()?;
    load_secret(
        source,
        "egress.via_proxy_auth",
        "the forward proxy credentials",
        problems,
        |c| upstream::proxy_authorization(&c),
    )
}

pub(super) fn client_tls(
    egress: &Egress,
    roots: &[CertificateDer<'static>],
    problems: &mut ProblemList,
) -> Option<rustls::ClientConfig> {
    tls::upstream_client_config(roots, egress.ca_file.as_deref())
        .map_err(|e| problems.add("egress.ca_file", e))
        .ok()
}

/// The previous snapshot's client (and its pool) when nothing it uses changed, else a new one.
pub(super) fn upstream_client(
    config: &Config,
    previous: Option<&Snapshot>,
    roots: &[CertificateDer<'static>],
    proxy_auth: &Option<http::HeaderValue>,
    tls: rustls::ClientConfig,
) -> Result<UpstreamClient, Problems> {
    if let Some(p) = previous
        && p.config.egress == config.egress
        && p.config.limits == config.limits
        && p.upstream_roots == roots
        && p.proxy_auth == *proxy_auth
    {
        return Ok(p.client.clone());
    }
    upstream::build_client(&config.egress, &config.limits, tls, proxy_auth.clone()).map_err(|e| {
        Problems(vec![Problem {
            file: config.source.clone(),
            key: "egress".into(),
            reason: e,
        }])
    })
}

/// An egress address must belong to this host: binding a socket to it proves it.
pub fn check_local_address(ip: IpAddr) -> Result<(), String> {
    UdpSocket::bind((ip, 0))
        .map(|_| ())
        .map_err(|e| format!("{ip} is not an address of this host ({e})"))
}
