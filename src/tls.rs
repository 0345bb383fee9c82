//! TLS configs: the inbound server config from PEM files, and the verified upstream client config.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

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

/// Upstream TLS: always verified, against the Mozilla roots plus the operator's `ca_file`.
pub fn upstream_client_config(
    extra_roots: &[CertificateDer<'static>],
) -> Result<rustls::ClientConfig, String> {
    let mut roots = RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for cert in extra_roots {
        roots.add(cert.clone()).map_err(|e| {
            format!("egress.ca_file: a certificate cannot be used as a trust anchor ({e})")
        })?;
    }
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    // No ALPN here: hyper-rustls sets h2 + http/1.1 itself (and refuses a config that has some).
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

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
