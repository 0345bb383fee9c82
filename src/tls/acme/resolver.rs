//! The listener's certificate with ACME: the held certificate for IdPs, the tls-alpn-01
//! challenge certificate for a CA's validation handshake (ALPN `acme-tls/1` only, RFC 8737), and
//! no certificate at all (a failed handshake) while none is held.

use std::sync::Arc;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::AcmeCell;

/// The ALPN protocol of a tls-alpn-01 validation handshake.
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

#[derive(Debug)]
pub(super) struct AcmeResolver(pub(super) Arc<AcmeCell>);

impl std::fmt::Debug for AcmeCell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AcmeCell").finish_non_exhaustive()
    }
}

impl ResolvesServerCert for AcmeResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        if is_validation(hello.alpn()) {
            return self.0.alpn_challenge(hello.server_name()?);
        }
        // None fails the handshake: no stand-in certificate is ever presented as if real.
        self.0.current().map(|held| held.key.clone())
    }
}

/// A CA's tls-alpn-01 validation offers `acme-tls/1` and nothing else.
fn is_validation<'a>(alpn: Option<impl Iterator<Item = &'a [u8]>>) -> bool {
    let Some(mut offered) = alpn else {
        return false;
    };
    offered.next() == Some(ACME_TLS_ALPN) && offered.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_hello_offering_acme_tls_alone_is_a_validation() {
        let offer = |p: &[&'static [u8]]| is_validation(Some(p.iter().copied()));
        assert!(offer(&[ACME_TLS_ALPN]));
        assert!(!offer(&[b"h2", ACME_TLS_ALPN]));
        assert!(!offer(&[b"h2", b"http/1.1"]));
        assert!(!offer(&[]));
        assert!(!is_validation(None::<std::vec::IntoIter<&[u8]>>));
    }
}
