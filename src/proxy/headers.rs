//! Pure header operations on the way up and down: hop-by-hop (RFC 9110 §7.6.1) and credential stripping.

use http::HeaderMap;
use http::header::{self, HeaderName};

/// Hop-by-hop headers, never forwarded in either direction.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Inbound credentials: the IdP's token must never reach the upstream.
pub const INBOUND_CREDENTIALS: [HeaderName; 4] = [
    header::AUTHORIZATION,
    HeaderName::from_static("netskope-api-token"),
    header::COOKIE,
    header::PROXY_AUTHORIZATION,
];

/// What a proxy in front says about the client. Believed, and passed on, only from `trusted_proxies`:
/// from anyone else they are the client's own claims about itself.
const FORWARDING: [HeaderName; 6] = [
    HeaderName::from_static("x-forwarded-for"),
    HeaderName::from_static("x-forwarded-host"),
    HeaderName::from_static("x-forwarded-proto"),
    HeaderName::from_static("x-forwarded-port"),
    HeaderName::from_static("x-real-ip"),
    header::FORWARDED,
];

/// Removes the forwarding headers of a client that is not a trusted proxy.
pub fn strip_untrusted_forwarding(headers: &mut HeaderMap) {
    remove_present(headers, |name| FORWARDING.contains(name));
}

/// Removes every header whose name `drop` picks. The request's few names are looked at once and
/// only those present are removed: a removal hashes its name, and most of the names stripped are
/// absent from most requests.
fn remove_present(headers: &mut HeaderMap, drop: impl Fn(&HeaderName) -> bool) {
    // Each round removes one name (no allocation): at most as many rounds as names.
    for _ in 0..headers.keys_len() {
        let Some(name) = headers.keys().find(|n| drop(n)).cloned() else {
            return;
        };
        headers.remove(name);
    }
}

/// Removes hop-by-hop headers, including every header the `Connection` header names.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    remove_present(headers, |name| HOP_BY_HOP.contains(name));
}

/// Prepares inbound headers for the upstream: no hop-by-hop, no credentials, no Host
/// (the client sets it from the upstream URI), no Expect (hyper answered it already).
pub fn upstream_request_headers(headers: &mut HeaderMap) {
    strip_hop_by_hop(headers);
    remove_present(headers, |name| {
        INBOUND_CREDENTIALS.contains(name) || name == header::HOST || name == header::EXPECT
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_every_forwarding_header_and_nothing_else() {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("x-forwarded-for", "1.2.3.4"),
            ("X-Forwarded-Host", "evil.example"),
            ("x-forwarded-proto", "http"),
            ("x-forwarded-port", "80"),
            ("x-real-ip", "1.2.3.4"),
            ("forwarded", "for=1.2.3.4;proto=http"),
            ("content-type", "application/scim+json"),
        ] {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        strip_untrusted_forwarding(&mut h);
        assert_eq!(h.len(), 1, "{h:?}");
        assert!(h.contains_key("content-type"));
    }

    #[test]
    fn strips_hop_by_hop_and_connection_named() {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("connection", "keep-alive, X-Secret-Hop"),
            ("keep-alive", "timeout=5"),
            ("x-secret-hop", "1"),
            ("transfer-encoding", "chunked"),
            ("te", "trailers"),
            ("upgrade", "h2c"),
            ("content-type", "application/scim+json"),
            ("retry-after", "30"),
        ] {
            h.append(k, v.parse().unwrap());
        }
        strip_hop_by_hop(&mut h);
        let left: Vec<_> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, ["content-type", "retry-after"]);
    }

    #[test]
    fn strips_credentials_host_expect() {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("authorization", "Bearer old"),
            ("netskope-api-token", "x"),
            ("cookie", "a=b"),
            ("proxy-authorization", "Basic x"),
            ("host", "addon-acme.goskope.com"),
            ("expect", "100-continue"),
            ("accept", "application/scim+json"),
        ] {
            h.append(k, v.parse().unwrap());
        }
        upstream_request_headers(&mut h);
        let left: Vec<_> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, ["accept"]);
    }
}
