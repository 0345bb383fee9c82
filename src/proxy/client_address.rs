//! Who the client is: the connection's address or, from a trusted proxy, the nearest untrusted hop
//! of X-Forwarded-For; an address learnt that way must still pass `listen.allow_cidrs` (403).

use std::net::IpAddr;

use http::HeaderMap;
use http::header::HeaderName;

use crate::config::Listen;
use crate::error::{ErrorKind, ProxyError};
use crate::proxy::conn::ConnInfo;

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// The client's address: the connection's, or, from a trusted proxy, the nearest untrusted hop
/// of X-Forwarded-For (the rightmost one a trusted proxy did not add itself).
pub(crate) fn client_ip(listen: &Listen, conn: &ConnInfo, headers: &HeaderMap) -> IpAddr {
    let peer = conn.peer.ip();
    if !listen.is_trusted_proxy(peer) {
        return peer;
    }
    let hops: Vec<&str> = headers
        .get_all(&X_FORWARDED_FOR)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    for hop in hops.iter().rev() {
        match hop.parse::<IpAddr>() {
            Ok(ip) if listen.is_trusted_proxy(ip) => continue,
            Ok(ip) => return ip,
            // An unparsable hop ends what can be believed.
            Err(_) => break,
        }
    }
    peer
}

/// The connection's own address passed `allow_cidrs` when it was accepted; only an address named
/// by a trusted proxy is checked here.
pub(crate) fn check_allowed(
    listen: &Listen,
    conn: &ConnInfo,
    client_ip: IpAddr,
) -> Result<(), ProxyError> {
    if client_ip != conn.peer.ip() && !listen.is_allowed(client_ip) {
        return Err(ProxyError::new(
            ErrorKind::Forbidden,
            "client address not allowed",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::testing::{conn, fixture, parts, scim_get};

    const LISTEN: &str =
        "trusted_proxies = [\"10.0.0.0/8\"]\nallow_cidrs = [\"192.0.2.0/24\", \"10.0.0.0/8\"]";

    fn forwarded(xff: &str) -> HeaderMap {
        parts(scim_get("/SCIM/v2/Users").header("x-forwarded-for", xff)).headers
    }

    #[test]
    fn the_nearest_untrusted_hop_from_a_trusted_proxy_is_the_client() {
        let f = fixture(LISTEN, "", "");
        let listen = &f.snapshot.config.listen;
        let lb = conn("10.0.0.5:40000", false, None);
        let ip = client_ip(listen, &lb, &forwarded("203.0.113.9, 192.0.2.7, 10.1.1.1"));
        assert_eq!(ip, "192.0.2.7".parse::<IpAddr>().unwrap());
        assert!(check_allowed(listen, &lb, ip).is_ok());
        // An unparsable hop ends the trust: the proxy itself is taken as the client.
        let ip = client_ip(listen, &lb, &forwarded("192.0.2.7, nonsense"));
        assert_eq!(ip, lb.peer.ip());
    }

    #[test]
    fn an_untrusted_peer_cannot_name_the_client() {
        let f = fixture(LISTEN, "", "");
        let listen = &f.snapshot.config.listen;
        let direct = conn("192.0.2.1:40000", false, None);
        let ip = client_ip(listen, &direct, &forwarded("198.51.100.1"));
        assert_eq!(ip, direct.peer.ip());
    }

    #[test]
    fn a_forwarded_address_outside_allow_cidrs_is_forbidden() {
        let f = fixture(LISTEN, "", "");
        let listen = &f.snapshot.config.listen;
        let lb = conn("10.0.0.5:40000", false, None);
        let ip = client_ip(listen, &lb, &forwarded("198.51.100.1"));
        let e = check_allowed(listen, &lb, ip).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Forbidden);
    }
}
