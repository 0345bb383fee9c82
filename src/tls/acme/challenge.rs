//! Challenge answers: the tls-alpn-01 certificate (RFC 8737: the domain as its only name and the
//! key authorization's SHA-256 in the critical acmeIdentifier extension) and the http-01 path.

use std::sync::Arc;

use rcgen::{CertificateParams, CustomExtension, KeyPair};
use rustls::sign::CertifiedKey;
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

/// The self-signed certificate a CA's `acme-tls/1` handshake for `domain` must see, and it with
/// its key as PEM (for replicas).
pub fn tls_alpn_certificate(
    domain: &str,
    digest: &[u8],
) -> Result<(Arc<CertifiedKey>, String), String> {
    let why =
        |e: rcgen::Error| format!("cannot make the tls-alpn-01 certificate for {domain}: {e}");
    let mut params = CertificateParams::new(vec![domain.to_string()]).map_err(why)?;
    params
        .custom_extensions
        .push(CustomExtension::new_acme_identifier(digest));
    let key = KeyPair::generate().map_err(why)?;
    let cert = params.self_signed(&key).map_err(why)?;
    let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let signing = rustls::crypto::ring::sign::any_supported_type(&key_der)
        .map_err(|e| format!("cannot use the tls-alpn-01 key for {domain}: {e}"))?;
    let pem = format!("{}{}", cert.pem(), key.serialize_pem());
    let certified = CertifiedKey::new(vec![cert.der().clone()], signing);
    Ok((Arc::new(certified), pem))
}

/// Where a CA fetches an http-01 answer.
pub const HTTP_CHALLENGE_PREFIX: &str = "/.well-known/acme-challenge/";

/// The token of a `/.well-known/acme-challenge/<token>` path (base64url characters only).
pub fn http_challenge_token(path: &str) -> Option<&str> {
    let token = path.strip_prefix(HTTP_CHALLENGE_PREFIX)?;
    let ok = !token.is_empty()
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    ok.then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tls_alpn_certificate_names_the_domain_and_carries_the_digest() {
        let digest = [7u8; 32];
        let (key, pem) = tls_alpn_certificate("scim.example.com", &digest).unwrap();
        assert!(pem.contains("BEGIN CERTIFICATE") && pem.contains("PRIVATE KEY"));
        let der = key.cert[0].as_ref();
        let (_, cert) = x509_parser::parse_x509_certificate(der).unwrap();
        let names = crate::tls::cert_names(&key.cert[0]).unwrap();
        assert_eq!(names.dns, vec!["scim.example.com".to_string()]);
        // id-pe-acmeIdentifier, critical, an OCTET STRING of the digest.
        let ext = cert
            .extensions()
            .iter()
            .find(|e| e.oid.to_id_string() == "1.3.6.1.5.5.7.1.31")
            .unwrap();
        assert!(ext.critical);
        assert_eq!(&ext.value[2..], &digest);
    }

    #[test]
    fn only_challenge_paths_with_a_plain_token_are_answered() {
        assert_eq!(
            http_challenge_token("/.well-known/acme-challenge/abc-DEF_1"),
            Some("abc-DEF_1")
        );
        assert_eq!(http_challenge_token("/.well-known/acme-challenge/"), None);
        assert_eq!(
            http_challenge_token("/.well-known/acme-challenge/../x"),
            None
        );
        assert_eq!(http_challenge_token("/scim/v2/Users"), None);
    }
}
