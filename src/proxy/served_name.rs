//! The name the client addressed: the authority (absolute-form or HTTP/2 `:authority`) or the one
//! Host header (400 when malformed), on TLS a name this proxy serves and the SNI (421), and the
//! base URL the client is given back under.

use http::header;
use http::{HeaderMap, Version};

use crate::config::{Listen, Route};
use crate::error::{ErrorKind, ProxyError};
use crate::proxy::conn::ConnInfo;
use crate::proxy::route;
use crate::scim::base::Base;
use crate::state::Snapshot;

/// The authority the client addressed: the target's (absolute-form, HTTP/2 `:authority`), else the
/// one Host header (RFC 9112 §3.2: exactly one, required in HTTP/1.1). Never with userinfo, which
/// would otherwise reach the URLs handed back to the client. It only selects among configured routes.
fn client_authority(parts: &http::request::Parts) -> Result<Option<String>, ProxyError> {
    let bad = |why: &str| ProxyError::new(ErrorKind::BadRequest, why.to_string());
    let mut hosts = parts.headers.get_all(header::HOST).iter();
    let host = hosts.next();
    if hosts.next().is_some() {
        return Err(bad("more than one Host header"));
    }
    if let Some(a) = parts.uri.authority() {
        if a.as_str().contains('@') {
            return Err(bad("userinfo is not allowed in the request target"));
        }
        if !has_valid_port(a.as_str()) {
            return Err(bad("invalid port in the request target"));
        }
        // RFC 9113 §8.3.1: an HTTP/2 request whose host header differs from :authority is malformed.
        if parts.version == Version::HTTP_2
            && let Some(host) = host
            && !host.as_bytes().eq_ignore_ascii_case(a.as_str().as_bytes())
        {
            return Err(bad("the host header differs from :authority"));
        }
        return Ok(Some(a.as_str().to_owned()));
    }
    let Some(host) = host else {
        return match parts.version {
            Version::HTTP_10 | Version::HTTP_09 => Ok(None),
            _ => Err(bad("missing Host header")),
        };
    };
    host.to_str()
        .ok()
        .filter(|h| !h.contains('@'))
        .filter(|h| {
            h.parse::<http::uri::Authority>()
                .is_ok_and(|a| a.as_str() == *h)
        })
        .filter(|h| has_valid_port(h))
        .map(|h| Some(h.to_owned()))
        .ok_or_else(|| bad("invalid Host header"))
}

/// An authority's port, when it has one, is 1 to 65535 (an empty port is allowed by RFC 3986).
fn has_valid_port(authority: &str) -> bool {
    let after_host = authority
        .rfind(']')
        .map_or(authority, |i| &authority[i + 1..]);
    match after_host.rsplit_once(':') {
        None | Some((_, "")) => true,
        Some((_, port)) => port.parse::<u16>().is_ok_and(|p| p != 0),
    }
}

/// On TLS, the addressed host must be one this proxy serves (a route's `hosts` or `public_url`
/// host, or a name the certificate covers) and the one the client named in SNI: else 421, so a
/// forged Host is never forwarded nor reflected in the URLs given back. A plain listener only
/// ever selects among route hosts.
pub(crate) fn check_served_name(
    snapshot: &Snapshot,
    conn: &ConnInfo,
    authority: Option<&str>,
) -> Result<(), ProxyError> {
    let (true, Some(authority)) = (conn.tls, authority) else {
        return Ok(());
    };
    let misdirected = |why: &str| ProxyError::new(ErrorKind::MisdirectedRequest, why.to_string());
    let host = route::host_without_port(authority)
        .ok_or_else(|| misdirected("this proxy does not serve the requested host"))?;
    if let Some(sni) = &conn.sni
        && !sni.trim_end_matches('.').eq_ignore_ascii_case(host)
    {
        return Err(misdirected(
            "the requested host differs from the TLS server name (SNI) of this connection",
        ));
    }
    let by_route = snapshot.config.routes.iter().any(|r| {
        r.hosts.iter().any(|h| h.eq_ignore_ascii_case(host))
            || r.public_url
                .as_ref()
                .is_some_and(|p| p.host.eq_ignore_ascii_case(host))
    });
    let by_cert = snapshot
        .cert_names
        .as_ref()
        .is_some_and(|names| names.covers(host));
    if by_route || by_cert {
        Ok(())
    } else {
        Err(misdirected("this proxy does not serve the requested host"))
    }
}

/// The authority the client addressed, and the scheme it used to reach the proxy.
pub(crate) struct Addressed {
    authority: Option<String>,
    scheme: &'static str,
}

/// What the client addressed (400 when the authority is malformed or ambiguous).
pub(crate) fn addressed(
    parts: &http::request::Parts,
    listen: &Listen,
    conn: &ConnInfo,
) -> Result<Addressed, ProxyError> {
    let authority = client_authority(parts)?;
    let scheme = if conn.tls {
        "https"
    } else {
        forwarded_proto(listen, conn, &parts.headers)
    };
    Ok(Addressed { authority, scheme })
}

impl Addressed {
    pub(crate) fn authority(&self) -> Option<&str> {
        self.authority.as_deref()
    }

    /// The base the upstream's URLs are given back under: `public_url`, else the authority the
    /// client addressed, which is a name this proxy serves (checked on TLS; a route host on a
    /// plain listener).
    pub(crate) fn client_base(&self, route: &Route, client_prefix: &str) -> Option<Base> {
        if let Some(public) = &route.public_url {
            return Some(Base::new(&public.scheme, &public.authority, &public.path));
        }
        let authority = self.authority.as_deref()?;
        Some(Base::new(self.scheme, authority, client_prefix))
    }
}

/// `X-Forwarded-Proto` from a TLS-terminating load balancer in front of a plain listener.
/// Only shapes the URLs handed back to the same client, so it is read from any plain-HTTP peer
/// unless trusted proxies are configured, then only from them.
fn forwarded_proto(listen: &Listen, conn: &ConnInfo, headers: &HeaderMap) -> &'static str {
    if !listen.trusted_proxies.is_empty() && !listen.is_trusted_proxy(conn.tcp_peer.ip()) {
        return "http";
    }
    match headers.get("x-forwarded-proto").map(|v| v.as_bytes()) {
        Some(v) if v.eq_ignore_ascii_case(b"https") => "https",
        _ => "http",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::testing::{HOST, conn, fixture, parts, scim_get};
    use http::Request;

    #[test]
    fn on_tls_a_host_not_served_or_not_the_sni_is_misdirected() {
        let f = fixture("", "", "");
        let tls = conn("192.0.2.1:40000", true, Some(HOST));
        assert!(check_served_name(&f.snapshot, &tls, Some(HOST)).is_ok());
        assert!(check_served_name(&f.snapshot, &tls, Some("SCIM.example.:443")).is_ok());
        let other = check_served_name(&f.snapshot, &tls, Some("other.example")).unwrap_err();
        assert_eq!(other.kind, ErrorKind::MisdirectedRequest);
        assert!(other.detail.contains("SNI"));
        let no_sni = conn("192.0.2.1:40000", true, None);
        let unknown = check_served_name(&f.snapshot, &no_sni, Some("other.example")).unwrap_err();
        assert_eq!(
            unknown.detail,
            "this proxy does not serve the requested host"
        );
        // A plain listener routes by host instead.
        let plain = conn("192.0.2.1:40000", false, None);
        assert!(check_served_name(&f.snapshot, &plain, Some("other.example")).is_ok());
    }

    #[test]
    fn the_authority_is_one_valid_host() {
        let ok = parts(scim_get("/SCIM/v2/Users"));
        assert_eq!(client_authority(&ok).unwrap().as_deref(), Some(HOST));
        for bad in [
            parts(
                Request::get("/")
                    .header("host", "a.example")
                    .header("host", "b.example"),
            ),
            parts(Request::get("/").header("host", "a.example:0")),
            parts(Request::get("/").header("host", "user@a.example")),
            parts(Request::get("https://user@a.example/")),
            parts(Request::get("/")),
        ] {
            assert_eq!(
                client_authority(&bad).unwrap_err().kind,
                ErrorKind::BadRequest
            );
        }
        let http10 = parts(Request::get("/").version(Version::HTTP_10));
        assert_eq!(client_authority(&http10).unwrap(), None);
    }

    #[test]
    fn the_base_given_back_follows_the_connection_and_a_trusted_proto() {
        let f = fixture("", "", "");
        let (route, listen) = (&f.snapshot.config.routes[0], &f.snapshot.config.listen);
        let head = parts(scim_get("/").header("x-forwarded-proto", "https"));
        let plain = conn("192.0.2.1:40000", false, None);
        let addressed = addressed(&head, listen, &plain).unwrap();
        let base = addressed.client_base(route, "/SCIM/v2").unwrap();
        assert_eq!(base.url(), format!("https://{HOST}/SCIM/v2"));
        // Trusted proxies configured, and this peer not one of them: its proto is not believed.
        let f = fixture("trusted_proxies = [\"10.0.0.0/8\"]", "", "");
        let listen = &f.snapshot.config.listen;
        let base = super::addressed(&head, listen, &plain)
            .unwrap()
            .client_base(route, "/x");
        assert_eq!(base.unwrap().url(), format!("http://{HOST}/x"));
    }
}
