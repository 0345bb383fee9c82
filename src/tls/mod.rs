//! TLS configs: the inbound server config from PEM files, and the verified upstream client config.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

/// ALPN offered inbound and upstream: HTTP/2 first, HTTP/1.1 as fallback.
pub const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The inbound provider prefers AES-128-GCM: as strong for this use, a cheaper SHA-256 key
/// schedule, faster bulk encryption (the ring default leads with AES-256-GCM-SHA384).
fn server_provider() -> Arc<CryptoProvider> {
    use rustls::crypto::ring::cipher_suite as cs;
    let mut provider = rustls::crypto::ring::default_provider();
    provider.cipher_suites = vec![
        cs::TLS13_AES_128_GCM_SHA256,
        cs::TLS13_AES_256_GCM_SHA384,
        cs::TLS13_CHACHA20_POLY1305_SHA256,
        cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        cs::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    ];
    Arc::new(provider)
}

/// Reads a PEM certificate chain; the error names the file and says what is wrong (never contents).
pub fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: not a valid PEM certificate file ({e})", path.display()))?;
    if certs.is_empty() {
        // The commonest mistake: the key and the chain swapped.
        if PrivateKeyDer::from_pem_slice(&pem).is_ok() {
            return Err(format!(
                "{}: this file holds a private key; this key wants the certificate chain (CERTIFICATE blocks), the key goes in its own file",
                path.display()
            ));
        }
        return Err(format!("{}: no CERTIFICATE block found", path.display()));
    }
    Ok(certs)
}

pub fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| {
        if CertificateDer::pem_slice_iter(&pem).any(|c| c.is_ok()) {
            format!(
                "{}: this file holds a certificate; this key wants the private key (PKCS#8, PKCS#1 or SEC1), the chain goes in the cert file",
                path.display()
            )
        } else {
            format!(
                "{}: no usable PEM private key (PKCS#8, PKCS#1 or SEC1) ({e})",
                path.display()
            )
        }
    })
}

/// What operators need to know about a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    pub subject: String,
    pub issuer: String,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
}

impl CertInfo {
    pub fn is_expired(&self, now: SystemTime) -> bool {
        now > self.not_after
    }
}

/// Subject, issuer and validity of a DER certificate.
pub fn cert_info(der: &CertificateDer<'_>) -> Result<CertInfo, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref())
        .map_err(|e| format!("not a parsable X.509 certificate ({e})"))?;
    let to_system = |t: x509_parser::time::ASN1Time| {
        let secs = t.timestamp();
        if secs >= 0 {
            UNIX_EPOCH + Duration::from_secs(secs.unsigned_abs())
        } else {
            UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs())
        }
    };
    Ok(CertInfo {
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        not_before: to_system(cert.validity().not_before),
        not_after: to_system(cert.validity().not_after),
    })
}

/// The names a serving certificate covers (its DNS and IP subject alternative names).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CertNames {
    /// Lower-case DNS names, without a trailing dot; may start with `*.`.
    pub dns: Vec<String>,
    pub ips: Vec<std::net::IpAddr>,
}

impl CertNames {
    /// Whether `host` (no port, IPv6 without brackets) is covered: an IP literal by an IP SAN, a
    /// name by a DNS SAN, where `*.example.com` stands for exactly one label (RFC 6125 §6.4.3).
    pub fn covers(&self, host: &str) -> bool {
        if let Ok(ip) = host.parse::<std::net::IpAddr>() {
            return self.ips.contains(&ip);
        }
        let host = host.strip_suffix('.').unwrap_or(host);
        self.dns.iter().any(|name| match name.strip_prefix("*.") {
            Some(parent) => host.split_once('.').is_some_and(|(label, rest)| {
                !label.is_empty() && rest.eq_ignore_ascii_case(parent)
            }),
            None => name.eq_ignore_ascii_case(host),
        })
    }
}

/// The DNS and IP subject alternative names of a DER certificate.
pub fn cert_names(der: &CertificateDer<'_>) -> Result<CertNames, String> {
    use x509_parser::extensions::GeneralName;
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref())
        .map_err(|e| format!("not a parsable X.509 certificate ({e})"))?;
    let mut names = CertNames::default();
    let san = cert
        .subject_alternative_name()
        .map_err(|e| format!("unreadable subjectAltName extension ({e})"))?;
    for name in san.iter().flat_map(|s| s.value.general_names.iter()) {
        match name {
            GeneralName::DNSName(d) => {
                let d = d.trim_end_matches('.').to_ascii_lowercase();
                if !d.is_empty() {
                    names.dns.push(d);
                }
            }
            GeneralName::IPAddress(bytes) => {
                if let Ok(b) = <[u8; 4]>::try_from(*bytes) {
                    names.ips.push(std::net::IpAddr::from(b));
                } else if let Ok(b) = <[u8; 16]>::try_from(*bytes) {
                    names.ips.push(std::net::IpAddr::from(b));
                }
            }
            _ => {}
        }
    }
    Ok(names)
}

/// Inbound TLS 1.2 (ECDHE with AES-GCM, which Entra requires) and 1.3, ALPN h2 + http/1.1.
pub fn server_config_from(
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<rustls::ServerConfig>, String> {
    let mut config = rustls::ServerConfig::builder_with_provider(server_provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("certificate and key do not make a usable pair ({e})"))?;
    config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
    config.ignore_client_order = true;
    // Stateless, rotating tickets (as nginx uses): resumption survives many IdP connections
    // without a bounded server-side cache; one ticket per handshake is enough for an IdP.
    if let Ok(ticketer) = rustls::crypto::ring::Ticketer::new() {
        config.ticketer = ticketer;
    }
    config.send_tls13_tickets = 1;
    Ok(Arc::new(config))
}

/// The trust roots the upstream is verified against, in the words errors use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustRoots {
    /// `egress.ca_file`, whose certificates are added to the Mozilla roots.
    pub ca_file: Option<PathBuf>,
}

impl std::fmt::Display for TrustRoots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.ca_file {
            Some(path) => write!(f, "Mozilla roots plus egress.ca_file {}", path.display()),
            None => f.write_str("Mozilla roots (no egress.ca_file)"),
        }
    }
}

/// What an upstream presented, as far as it parses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresentedCert {
    pub subject: String,
    pub issuer: String,
    /// DNS and IP subject alternative names, as written in the certificate.
    pub names: Vec<String>,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
}

impl PresentedCert {
    fn parse(der: &CertificateDer<'_>) -> Result<PresentedCert, String> {
        let info = cert_info(der)?;
        let names = cert_names(der).unwrap_or_default();
        Ok(PresentedCert {
            subject: info.subject,
            issuer: info.issuer,
            names: names
                .dns
                .into_iter()
                .chain(names.ips.iter().map(|ip| ip.to_string()))
                .collect(),
            not_before: info.not_before,
            not_after: info.not_after,
        })
    }
}

/// An upstream certificate that failed verification: rustls's verdict, with what the upstream
/// presented and what it was checked against (rustls's own errors carry no certificate).
///
/// It travels as `rustls::Error::InvalidCertificate(CertificateError::Other(..))`; find it with
/// [`presented_cert_error`].
#[derive(Debug)]
pub struct PresentedCertError {
    /// The verifier's verdict (`UnknownIssuer`, `BadSignature`, …).
    pub error: rustls::CertificateError,
    /// The name the certificate was checked for (the upstream host).
    pub server_name: String,
    /// The end-entity certificate, or why it does not parse.
    pub presented: Result<PresentedCert, String>,
    /// How many more certificates the upstream sent, and the issuer of the last of them.
    pub chain: Option<(usize, String)>,
    pub trusted: TrustRoots,
}

impl std::fmt::Display for PresentedCertError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}; ", self.error)?;
        match &self.presented {
            Ok(p) => {
                write!(
                    f,
                    "the upstream presented subject \"{}\" issued by \"{}\" (",
                    p.subject, p.issuer
                )?;
                if p.names.is_empty() {
                    f.write_str("no DNS or IP names")?;
                } else {
                    write!(f, "names {}", p.names.join(", "))?;
                }
                write!(
                    f,
                    "; valid {} to {})",
                    humantime::format_rfc3339_seconds(p.not_before),
                    humantime::format_rfc3339_seconds(p.not_after)
                )?;
            }
            Err(why) => write!(f, "the upstream presented a certificate that is {why}")?,
        }
        if let Some((n, last_issuer)) = &self.chain {
            write!(
                f,
                ", then {n} more certificate{}, the last issued by \"{last_issuer}\"",
                if *n == 1 { "" } else { "s" }
            )?;
        }
        write!(f, "; trusted: {}", self.trusted)
    }
}

impl std::error::Error for PresentedCertError {}

/// The [`PresentedCertError`] inside a rustls error, if the upstream verifier made it.
pub fn presented_cert_error(e: &rustls::Error) -> Option<&PresentedCertError> {
    match e {
        rustls::Error::InvalidCertificate(rustls::CertificateError::Other(other)) => {
            other.0.downcast_ref::<PresentedCertError>()
        }
        _ => None,
    }
}

/// A rustls error in words: for a failed upstream certificate, rustls's verdict with what the
/// upstream presented and the trust roots in use.
pub fn describe_tls_error(e: &rustls::Error) -> String {
    match presented_cert_error(e) {
        Some(p) => format!("invalid peer certificate: {p}"),
        None => e.to_string(),
    }
}

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
    use super::*;
    use crate::lab::devcerts::DevPki;

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

    #[test]
    fn names_covered_by_the_certificate() {
        let names = CertNames {
            dns: vec!["scim.example.com".into(), "*.wild.example".into()],
            ips: vec!["127.0.0.1".parse().unwrap(), "::1".parse().unwrap()],
        };
        for host in [
            "scim.example.com",
            "SCIM.Example.com.",
            "a.wild.example",
            "127.0.0.1",
            "::1",
        ] {
            assert!(names.covers(host), "{host}");
        }
        for host in [
            "evil.example",
            "wild.example",
            "a.b.wild.example",
            ".wild.example",
            "127.0.0.2",
            "scim.example.com.evil",
        ] {
            assert!(!names.covers(host), "{host}");
        }
    }
}
