//! The upstream TLS client config: always verified, by a verifier that says what it rejected.

use std::path::Path;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use super::presented::{PresentedCert, PresentedCertError, TrustRoots};
use super::{cert_info, provider};

/// The webpki verifier, unchanged, except that a rejected certificate comes back as a
/// [`PresentedCertError`] naming what the upstream presented and the roots in use.
#[derive(Debug)]
struct DiagnosingVerifier {
    inner: Arc<WebPkiServerVerifier>,
    trusted: TrustRoots,
}

impl ServerCertVerifier for DiagnosingVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
            .map_err(|e| match e {
                rustls::Error::InvalidCertificate(error) => {
                    let chain = intermediates.last().map(|last| {
                        let issuer = cert_info(last)
                            .map(|i| i.issuer)
                            .unwrap_or_else(|e| format!("? ({e})"));
                        (intermediates.len(), issuer)
                    });
                    let diagnosis = PresentedCertError {
                        error,
                        server_name: server_name.to_str().into_owned(),
                        presented: PresentedCert::parse(end_entity),
                        chain,
                        trusted: self.trusted.clone(),
                    };
                    rustls::Error::InvalidCertificate(rustls::CertificateError::Other(
                        rustls::OtherError(Arc::new(diagnosis)),
                    ))
                }
                other => other,
            })
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }

    fn requires_raw_public_keys(&self) -> bool {
        self.inner.requires_raw_public_keys()
    }

    fn root_hint_subjects(&self) -> Option<&[DistinguishedName]> {
        self.inner.root_hint_subjects()
    }
}

/// What `with_root_certificates` builds (webpki, no CRLs so no revocation check), wrapped.
pub(crate) fn upstream_verifier(
    roots: RootCertStore,
    ca_file: Option<&Path>,
) -> Result<Arc<dyn ServerCertVerifier>, String> {
    let inner = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
        .allow_unknown_revocation_status()
        .build()
        .map_err(|e| format!("the upstream certificate verifier: {e}"))?;
    Ok(Arc::new(DiagnosingVerifier {
        inner,
        trusted: TrustRoots {
            ca_file: ca_file.map(Path::to_path_buf),
        },
    }))
}

/// Upstream TLS: always verified, against the Mozilla roots plus the operator's `ca_file`
/// (`extra_roots`, read from `ca_file`, which failures name).
pub fn upstream_client_config(
    extra_roots: &[CertificateDer<'static>],
    ca_file: Option<&Path>,
) -> Result<rustls::ClientConfig, String> {
    let mut roots = RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for cert in extra_roots {
        roots.add(cert.clone()).map_err(|e| {
            format!("egress.ca_file: a certificate cannot be used as a trust anchor ({e})")
        })?;
    }
    let verifier = upstream_verifier(roots, ca_file)?;
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    // No ALPN here: hyper-rustls sets h2 + http/1.1 itself (and refuses a config that has some).
    Ok(config)
}

#[cfg(test)]
pub(crate) mod tests {
    use rustls_pki_types::pem::PemObject;

    use super::*;
    use crate::lab::devcerts::DevPki;
    use crate::tls::{describe_tls_error, presented_cert_error};

    fn der(pem: &str) -> CertificateDer<'static> {
        CertificateDer::from_pem_slice(pem.as_bytes()).unwrap()
    }

    /// What the upstream verifier makes of `leaf_pem` for `host`, trusting `ca_pem` as a ca_file.
    pub(crate) fn verify(ca_pem: &str, leaf_pem: &str, host: &str) -> rustls::Error {
        let mut roots = RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        roots.add(der(ca_pem)).unwrap();
        let verifier = upstream_verifier(roots, Some(Path::new("/etc/scim-proxy/ca.pem"))).unwrap();
        let name = ServerName::try_from(host.to_string()).unwrap();
        verifier
            .verify_server_cert(&der(leaf_pem), &[], &name, &[], UnixTime::now())
            .unwrap_err()
    }

    #[test]
    fn a_rejected_certificate_is_described_with_its_names_and_the_roots() {
        let pki = DevPki::new("unit CA").unwrap();
        let leaf = pki.issue(&["scim.example"], &[]).unwrap();
        let e = verify(pki.ca_pem(), &leaf.cert_pem, "other.example");
        let p = presented_cert_error(&e).expect("a PresentedCertError");
        assert!(
            matches!(
                p.error,
                rustls::CertificateError::NotValidForNameContext { .. }
            ),
            "{:?}",
            p.error
        );
        assert_eq!(p.server_name, "other.example");
        let text = describe_tls_error(&e);
        assert!(
            text.starts_with(
                "invalid peer certificate: certificate not valid for name \"other.example\""
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "; the upstream presented subject \"CN=scim.example\" issued by \"CN=unit CA "
            ),
            "{text}"
        );
        assert!(text.contains("(names scim.example; valid "), "{text}");
        assert!(
            text.ends_with("; trusted: Mozilla roots plus egress.ca_file /etc/scim-proxy/ca.pem"),
            "{text}"
        );
        // A certificate that is valid for the name still verifies.
        let ok = pki.issue(&["scim.example"], &[]).unwrap();
        let name = ServerName::try_from("scim.example").unwrap();
        let mut roots = RootCertStore::empty();
        roots.add(der(pki.ca_pem())).unwrap();
        let verifier = upstream_verifier(roots, None).unwrap();
        assert!(
            verifier
                .verify_server_cert(&der(&ok.cert_pem), &[], &name, &[], UnixTime::now())
                .is_ok()
        );
    }

    #[test]
    fn other_tls_errors_are_described_as_rustls_says() {
        let e = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        assert_eq!(
            describe_tls_error(&e),
            "invalid peer certificate: UnknownIssuer"
        );
        assert!(presented_cert_error(&e).is_none());
        assert_eq!(
            TrustRoots { ca_file: None }.to_string(),
            "Mozilla roots (no egress.ca_file)"
        );
    }
}
