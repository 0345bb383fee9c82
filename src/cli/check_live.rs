//! `check --live`: for each route, the real egress path end to end (resolve, connect, TLS, an
//! authenticated `GET <upstream>/Users?count=1`), and what a failure most likely means.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use hyper_rustls::MaybeHttpsStream;
use tower::{Service, ServiceExt};

use crate::config::Route;
use crate::state::{RouteRuntime, Snapshot};
use crate::upstream::ForwardProxyError;
use crate::upstream::tunnel::TunnelFailure;

/// One route's result, printed as a block.
#[derive(Debug)]
pub struct RouteCheck {
    pub route: String,
    pub ok: bool,
    pub lines: Vec<String>,
}

/// Runs the preflight for every route, one after the other (an admin reads them in order).
pub async fn run(snapshot: &Snapshot, timeout: Duration) -> Vec<RouteCheck> {
    let mut out = Vec::new();
    for (i, route) in snapshot.config.routes.iter().enumerate() {
        let Some(runtime) = snapshot.routes.get(i) else {
            continue;
        };
        out.push(check_route(snapshot, route, runtime, timeout).await);
    }
    out
}

async fn check_route(
    snapshot: &Snapshot,
    route: &Route,
    runtime: &RouteRuntime,
    timeout: Duration,
) -> RouteCheck {
    let mut lines = Vec::new();
    let egress = &snapshot.config.egress;
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
    lines.push(format!("egress      {egress_desc}"));
    let target = format!(
        "https://{}{}/Users?count=1",
        route.upstream.authority, route.upstream.path
    );
    lines.push(format!("request     GET {target}"));
    match route.token_expires {
        Some(t) => {
            let when = humantime::format_rfc3339_seconds(t);
            match t.duration_since(SystemTime::now()) {
                Ok(left) => lines.push(format!(
                    "token       expires {when} ({} days left)",
                    left.as_secs() / 86_400
                )),
                Err(_) => lines.push(format!("token       EXPIRED at {when} (token_expires)")),
            }
        }
        None => lines.push(
            "token       expiry not configured (set token_expires to be warned ahead)".to_string(),
        ),
    }

    let result = tokio::time::timeout(timeout, probe(snapshot, route, runtime, &target)).await;
    let ok = match result {
        Err(_) => {
            lines.push(format!(
                "FAILED      no answer within {}",
                humantime::format_duration(timeout)
            ));
            lines.push(
                "meaning     a firewall dropping packets, a wrong route to the upstream, or an overloaded forward proxy"
                    .to_string(),
            );
            false
        }
        Ok(Err(failure)) => {
            lines.push(format!("FAILED      {}", failure.what));
            lines.push(format!("meaning     {}", failure.meaning));
            false
        }
        Ok(Ok(p)) => {
            if let Some(src) = p.source {
                lines.push(format!("source      {src}"));
            }
            lines.push(format!("tls         {} ({})", p.tls_version, p.alpn));
            lines.push(format!("certificate {}", p.cert));
            lines.push(format!(
                "status      {} in {} ms",
                p.status,
                p.latency.as_millis()
            ));
            match p.status.as_u16() {
                200..=299 if p.list.is_none() => {
                    lines.push("result      OK: the token is accepted and SCIM Users can be read from this egress".into());
                    true
                }
                200..=299 => {
                    lines.push(format!("answer      {}", p.list.unwrap_or_default()));
                    lines.push("meaning     a success that is not the SCIM API: a captive portal, a TLS-inspecting proxy's page, or the wrong upstream path (it should end in /api/v2/scim)".into());
                    false
                }
                400 => {
                    lines.push(format!(
                        "meaning     the upstream refused the request itself: wrong upstream path, or a server in front of it that is not the SCIM API{}",
                        p.detail.map(|d| format!(" (upstream said: {d})")).unwrap_or_default()
                    ));
                    false
                }
                401 | 403 => {
                    lines.push(format!(
                        "meaning     the upstream refused the v2 token: it is wrong, expired or revoked, lacks the SCIM scopes (api/v2/scim/Users and Groups, Read+Write), or this egress IP is not on the tenant's IP allowlist{}",
                        p.detail.map(|d| format!(" (upstream said: {d})")).unwrap_or_default()
                    ));
                    false
                }
                404 => {
                    lines.push("meaning     no SCIM endpoint at this path: the upstream should end in /api/v2/scim, and REST API v2 must be enabled on the tenant".into());
                    false
                }
                429 => {
                    lines.push("meaning     rate limited by the tenant: retry later (the proxy passes 429 and Retry-After to IdPs)".into());
                    false
                }
                s if s >= 500 => {
                    lines.push("meaning     the upstream failed: a Netskope-side problem, or a forward proxy error page".into());
                    false
                }
                _ => {
                    lines.push("meaning     an unexpected answer for a SCIM list request".into());
                    false
                }
            }
        }
    };
    RouteCheck {
        route: route.name.clone(),
        ok,
        lines,
    }
}

struct Probe {
    source: Option<String>,
    tls_version: String,
    alpn: String,
    cert: String,
    status: StatusCode,
    latency: Duration,
    detail: Option<String>,
    /// Why a 2xx body is not a SCIM ListResponse, if it is not.
    list: Option<String>,
}

struct Failure {
    what: String,
    meaning: String,
}

fn failure(what: impl Into<String>, meaning: &str) -> Failure {
    Failure {
        what: what.into(),
        meaning: meaning.to_string(),
    }
}

async fn probe(
    snapshot: &Snapshot,
    route: &Route,
    runtime: &RouteRuntime,
    target: &str,
) -> Result<Probe, Failure> {
    let uri: http::Uri = target.parse().map_err(|e| {
        failure(
            format!("the upstream URL is not usable: {e}"),
            "fix routes.upstream",
        )
    })?;
    let started = Instant::now();
    let mut connector = snapshot
        .connector()
        .map_err(|e| failure(e, "the egress settings cannot be used"))?;
    let stream = connector
        .ready()
        .await
        .map_err(|e| classify_connect(&*e))?
        .call(uri.clone())
        .await
        .map_err(|e| classify_connect(&*e))?;
    let MaybeHttpsStream::Https(tls) = stream else {
        return Err(failure(
            "the connection is not TLS",
            "internal: the connector must use TLS",
        ));
    };
    let (io, session) = tls.inner().get_ref();
    let tcp = io.inner().inner();
    let source = match (tcp.local_addr(), &snapshot.config.egress.via_proxy) {
        (Ok(local), Some(p)) => Some(format!("{} (to the forward proxy {})", local.ip(), p.url)),
        (Ok(local), None) => Some(format!(
            "{} -> {}",
            local.ip(),
            peer_or_unknown(tcp.peer_addr().ok())
        )),
        _ => None,
    };
    let tls_version = session
        .protocol_version()
        .map(|v| format!("{v:?}").replace('_', "."))
        .unwrap_or_else(|| "unknown".into());
    let alpn = session
        .alpn_protocol()
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .unwrap_or_else(|| "http/1.1".into());
    let cert = match session.peer_certificates().and_then(|c| c.first()) {
        Some(der) => match crate::tls::cert_info(der) {
            Ok(info) => format!(
                "{} issued by {}, valid until {}",
                info.subject,
                info.issuer,
                humantime::format_rfc3339_seconds(info.not_after)
            ),
            Err(e) => format!("unreadable ({e})"),
        },
        None => "none presented".into(),
    };
    // The request goes over this connection, built and sent as serving sends one: the same head
    // (proxy::upstream_head) through a client with serving's settings (origin-form target, Host,
    // HTTP/2 by ALPN).
    let client = crate::upstream::client_builder(&snapshot.config.limits).build(
        crate::upstream::OnceConnector::new(MaybeHttpsStream::Https(tls)),
    );
    let path_and_query =
        crate::proxy::route::upstream_path_and_query(&route.upstream, "/Users", Some("count=1"));
    let (mut parts, ()) = Request::get("/")
        .header(header::ACCEPT, "application/scim+json")
        .header(
            header::USER_AGENT,
            concat!("scim-proxy-preflight/", env!("CARGO_PKG_VERSION")),
        )
        .body(())
        .map_err(|e| failure(e.to_string(), "internal"))?
        .into_parts();
    crate::proxy::upstream_head(
        &mut parts,
        route,
        runtime,
        &path_and_query,
        "scim-proxy-preflight",
    )
    .map_err(|e| failure(e.detail, "fix routes.upstream"))?;
    let res = client
        .request(Request::from_parts(parts, crate::body::empty()))
        .await
        .map_err(|e| classify_connect(&e))?;
    let latency = started.elapsed();
    let status = res.status();
    let content_type = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("none")
        .to_owned();
    // Bounded: a captive portal or a wrong path may answer with anything.
    let body = http_body_util::Limited::new(res.into_body(), PREFLIGHT_BODY_LIMIT)
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let list = list_response_problem(&body).map(|why| {
        format!(
            "{why}; content type {content_type}, first bytes: {}",
            first_bytes(&body, runtime.token.expose_for_redaction())
        )
    });
    let detail = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| {
            v.get("detail")
                .and_then(|d| d.as_str())
                .map(|d| truncate(d, 200))
        });
    Ok(Probe {
        source,
        tls_version,
        alpn,
        cert,
        status,
        latency,
        detail,
        list,
    })
}

/// What the preflight reads of an answer at most.
const PREFLIGHT_BODY_LIMIT: usize = 64 * 1024;

const LIST_RESPONSE_URN: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";

/// Why `body` is not a SCIM ListResponse (`schemas` holding its URN, `totalResults` an integer),
/// or None when it is.
fn list_response_problem(body: &[u8]) -> Option<String> {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
        return Some("the body is not JSON".into());
    };
    let urn = v
        .get("schemas")
        .and_then(|s| s.as_array())
        .is_some_and(|s| s.iter().any(|u| u.as_str() == Some(LIST_RESPONSE_URN)));
    if !urn {
        return Some(format!(
            "the JSON is not a SCIM ListResponse (no {LIST_RESPONSE_URN} in schemas)"
        ));
    }
    if !v.get("totalResults").is_some_and(|t| t.is_u64()) {
        return Some("the ListResponse has no integer totalResults".into());
    }
    None
}

/// The start of a body as printable text, for an admin to recognise it; never the token.
fn first_bytes(body: &[u8], token: &str) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(120)]);
    let text = if token.is_empty() {
        text.into_owned()
    } else {
        text.replace(token, "[v2 token]")
    };
    let shown: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    format!(
        "`{}{}`",
        shown.trim(),
        if body.len() > 120 { "…" } else { "" }
    )
}

fn peer_or_unknown(peer: Option<SocketAddr>) -> String {
    peer.map(|p| p.to_string()).unwrap_or_else(|| "?".into())
}

fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

/// Names the failing leg and its most likely cause.
fn classify_connect(e: &(dyn std::error::Error + 'static)) -> Failure {
    let links = crate::error::error_chain(e);
    let chain = links
        .iter()
        .map(|l| l.to_string())
        .collect::<Vec<_>>()
        .join(": ");
    let tls = links.iter().find_map(|l| l.downcast_ref::<rustls::Error>());
    let forward = links
        .iter()
        .find_map(|l| l.downcast_ref::<ForwardProxyError>());
    let io_kind = links
        .iter()
        .find_map(|l| l.downcast_ref::<std::io::Error>())
        .map(|io| io.kind());
    if let Some(t) = tls {
        let what = format!("TLS: {}", crate::tls::describe_tls_error(t));
        return match crate::tls::presented_cert_error(t).and_then(certificate_meaning) {
            Some(meaning) => Failure { what, meaning },
            None => failure(what, TLS_MEANING),
        };
    }
    if let Some(f) = forward {
        let meaning = match &f.failure {
            TunnelFailure::Connect(_) => {
                "the forward proxy is unreachable from this host: its address, port or a firewall"
            }
            TunnelFailure::Auth {
                sent_credentials: false,
                ..
            } => "the forward proxy wants credentials: set egress.via_proxy_auth_file",
            TunnelFailure::Auth { .. } => {
                "the forward proxy refused the credentials in egress.via_proxy_auth_file (wrong user or password)"
            }
            TunnelFailure::Refused { .. } => {
                "the forward proxy does not allow CONNECT to this host and port (its ACL), or cannot reach the upstream"
            }
            TunnelFailure::Protocol(_) => {
                "the forward proxy broke the tunnel or did not answer CONNECT"
            }
        };
        return failure(format!("forward proxy: {chain}"), meaning);
    }
    let meaning = match io_kind {
        Some(std::io::ErrorKind::ConnectionRefused) => {
            "nothing listens there: a wrong host or port, or a firewall rejecting"
        }
        Some(std::io::ErrorKind::AddrNotAvailable) => {
            "the upstream name has no address of the egress family, or egress.bind_ip is not on this host"
        }
        Some(std::io::ErrorKind::TimedOut) => {
            "a firewall dropping packets, or no route from this egress"
        }
        _ if chain.contains("failed to lookup")
            || chain.contains("resolve")
            || chain.contains("Name or service") =>
        {
            "DNS: the upstream name does not resolve from this host"
        }
        _ => "connect: a firewall, DNS or routing problem on the path from this egress",
    };
    failure(format!("connect: {chain}"), meaning)
}

const TLS_MEANING: &str = "the upstream's certificate is not trusted or not for this name: a TLS-inspecting proxy on the path (add its CA as egress.ca_file), or a wrong upstream host";

/// What a rejected upstream certificate most likely means, where the verdict says more than
/// [`TLS_MEANING`].
fn certificate_meaning(p: &crate::tls::PresentedCertError) -> Option<String> {
    use rustls::CertificateError as E;
    let cert = p.presented.as_ref().ok()?;
    let when = |t| humantime::format_rfc3339_seconds(t).to_string();
    let ca_file = p.trusted.ca_file.as_ref().map(|f| f.display().to_string());
    Some(match &p.error {
        E::UnknownIssuer => {
            // With intermediates, the untrusted issuer is the one the chain ends at.
            let issuer = p.chain.as_ref().map_or(&cert.issuer, |(_, last)| last);
            let roots = match &ca_file {
                Some(file) => format!("neither a Mozilla root nor in egress.ca_file {file}"),
                None => "not a Mozilla root, and no egress.ca_file is set".to_string(),
            };
            format!(
                "the issuer \"{issuer}\" is not trusted: {roots}. A TLS-inspecting proxy on the path (add its CA to egress.ca_file), an upstream with a private CA (add that CA to egress.ca_file), or a wrong upstream host"
            )
        }
        E::BadSignature => match ca_file {
            Some(file) => format!(
                "the certificate was not signed by the CA it names (\"{}\"): egress.ca_file {file} holds a different CA with the same name (two dev PKIs, say) or a stale one; put the CA that issued the upstream's certificate there",
                cert.issuer
            ),
            None => format!(
                "the certificate was not signed by the CA it names (\"{}\"): a broken or forged certificate, or a TLS-inspecting proxy posing as that CA (add the proxy's own CA to egress.ca_file)",
                cert.issuer
            ),
        },
        E::NotValidForName | E::NotValidForNameContext { .. } => format!(
            "the certificate is for {}, not {}: a wrong upstream host in routes.upstream, or a TLS-inspecting proxy or load balancer presenting another site's certificate",
            if cert.names.is_empty() {
                "no DNS or IP name".to_string()
            } else {
                cert.names.join(", ")
            },
            p.server_name
        ),
        E::Expired | E::ExpiredContext { .. } => format!(
            "the upstream's certificate expired at {} (notAfter): the upstream must renew it, or this host's clock is wrong",
            when(cert.not_after)
        ),
        E::NotValidYet | E::NotValidYetContext { .. } => format!(
            "the upstream's certificate is not valid before {} (notBefore): this host's clock is behind, or the certificate is brand new",
            when(cert.not_before)
        ),
        _ => return None,
    })
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lab::devcerts::DevPki;
    use crate::tls::tests::verify;

    fn meaning_of(ca_pem: &str, leaf_pem: &str, host: &str) -> String {
        let e = verify(ca_pem, leaf_pem, host);
        let failure = classify_connect(&e);
        assert!(
            failure.what.starts_with("TLS: invalid peer certificate: "),
            "{}",
            failure.what
        );
        failure.meaning
    }

    #[test]
    fn a_certificate_for_other_names_names_them_and_the_host() {
        let pki = DevPki::new("unit CA").unwrap();
        let leaf = pki
            .issue(
                &["scim.example", "alt.example"],
                &["127.0.0.9".parse().unwrap()],
            )
            .unwrap();
        let m = meaning_of(pki.ca_pem(), &leaf.cert_pem, "acme.goskope.com");
        assert!(
            m.starts_with("the certificate is for scim.example, alt.example, 127.0.0.9, not acme.goskope.com: "),
            "{m}"
        );
    }

    #[test]
    fn an_expired_certificate_names_its_not_after() {
        let pki = DevPki::new("unit CA").unwrap();
        let leaf = pki.issue_expired(&["scim.example"]).unwrap();
        let der =
            rustls_pki_types::pem::PemObject::from_pem_slice(leaf.cert_pem.as_bytes()).unwrap();
        let not_after = crate::tls::cert_info(&der).unwrap().not_after;
        let m = meaning_of(pki.ca_pem(), &leaf.cert_pem, "scim.example");
        assert!(
            m.starts_with(&format!(
                "the upstream's certificate expired at {} (notAfter)",
                humantime::format_rfc3339_seconds(not_after)
            )),
            "{m}"
        );
    }

    #[test]
    fn an_unknown_issuer_names_it_and_keeps_the_interception_advice() {
        let pki = DevPki::new("unit CA").unwrap();
        let stranger = DevPki::new("stranger CA").unwrap();
        let leaf = stranger.issue(&["scim.example"], &[]).unwrap();
        let m = meaning_of(pki.ca_pem(), &leaf.cert_pem, "scim.example");
        assert!(m.starts_with("the issuer \"CN=stranger CA "), "{m}");
        assert!(
            m.contains("is not trusted: neither a Mozilla root nor in egress.ca_file /etc/scim-proxy/ca.pem. "),
            "{m}"
        );
        assert!(
            m.contains("TLS-inspecting proxy") && m.contains("egress.ca_file"),
            "{m}"
        );
    }
}
