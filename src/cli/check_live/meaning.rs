//! What a failed check most likely means, in an admin's words: for each failing leg (from the
//! shared upstream classification), each rejected certificate, and each unwelcome answer.

use std::time::Duration;

use crate::tls::PresentedCertError;
use crate::upstream::classify::{NetworkCause, UpstreamFailure, UpstreamFault};
use crate::upstream::tunnel::TunnelFailure;

/// Why a route failed before an answer: the failing leg and its most likely cause.
pub(super) struct Failure {
    pub what: String,
    pub meaning: String,
}

pub(super) fn failure(what: impl Into<String>, meaning: &str) -> Failure {
    Failure {
        what: what.into(),
        meaning: meaning.to_string(),
    }
}

/// No answer at all within `--live-timeout`.
pub(super) fn no_answer(timeout: Duration) -> Failure {
    failure(
        format!("no answer within {}", humantime::format_duration(timeout)),
        "a firewall dropping packets, a wrong route to the upstream, or an overloaded forward proxy",
    )
}

/// Names the failing leg and its most likely cause.
pub(super) fn of_fault(fault: &UpstreamFault<'_>) -> Failure {
    match &fault.failure {
        UpstreamFailure::Tls(t) => Failure {
            what: format!("TLS: {}", crate::tls::describe_tls_error(t)),
            meaning: crate::tls::presented_cert_error(t)
                .and_then(certificate_meaning)
                .unwrap_or_else(|| TLS_MEANING.to_string()),
        },
        UpstreamFailure::ForwardProxy(f) => failure(
            format!("forward proxy: {}", fault.chain()),
            forward_proxy_meaning(&f.failure),
        ),
        // The preflight names every failure below TLS a connect failure, exchange ones included.
        UpstreamFailure::Connect(cause) | UpstreamFailure::Protocol(cause) => failure(
            format!("connect: {}", fault.chain()),
            network_meaning(*cause),
        ),
    }
}

fn forward_proxy_meaning(failure: &TunnelFailure) -> &'static str {
    match failure {
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
    }
}

fn network_meaning(cause: NetworkCause) -> &'static str {
    match cause {
        NetworkCause::Refused => {
            "nothing listens there: a wrong host or port, or a firewall rejecting"
        }
        NetworkCause::NoAddress => {
            "the upstream name has no address of the egress family, or egress.bind_ip is not on this host"
        }
        NetworkCause::TimedOut => "a firewall dropping packets, or no route from this egress",
        NetworkCause::Dns => "DNS: the upstream name does not resolve from this host",
        NetworkCause::Other => {
            "connect: a firewall, DNS or routing problem on the path from this egress"
        }
    }
}

const TLS_MEANING: &str = "the upstream's certificate is not trusted or not for this name: a TLS-inspecting proxy on the path (add its CA as egress.ca_file), or a wrong upstream host";

/// What a rejected upstream certificate most likely means, where the verdict says more than
/// [`TLS_MEANING`].
fn certificate_meaning(p: &PresentedCertError) -> Option<String> {
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

/// A 2xx whose body is not a SCIM ListResponse.
pub(super) const NOT_SCIM: &str = "a success that is not the SCIM API: a captive portal, a TLS-inspecting proxy's page, or the wrong upstream path (it should end in /api/v2/scim)";

/// What a non-2xx answer to the list request means; `detail` is the upstream's own words.
pub(super) fn of_status(status: u16, detail: Option<&str>) -> String {
    let said = detail
        .map(|d| format!(" (upstream said: {d})"))
        .unwrap_or_default();
    match status {
        400 => format!(
            "the upstream refused the request itself: wrong upstream path, or a server in front of it that is not the SCIM API{said}"
        ),
        401 | 403 => format!(
            "the upstream refused the v2 token: it is wrong, expired or revoked, lacks the SCIM scopes (api/v2/scim/Users and Groups, Read+Write), or this egress IP is not on the tenant's IP allowlist{said}"
        ),
        404 => "no SCIM endpoint at this path: the upstream should end in /api/v2/scim, and REST API v2 must be enabled on the tenant".into(),
        429 => "rate limited by the tenant: retry later (the proxy passes 429 and Retry-After to IdPs)".into(),
        s if s >= 500 => "the upstream failed: a Netskope-side problem, or a forward proxy error page".into(),
        _ => "an unexpected answer for a SCIM list request".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lab::devcerts::DevPki;
    use crate::tls::tests::verify;

    fn meaning_of(ca_pem: &str, leaf_pem: &str, host: &str) -> String {
        let e = verify(ca_pem, leaf_pem, host);
        let failure = of_fault(&UpstreamFault::read(&e, true));
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
