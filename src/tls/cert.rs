//! What a certificate says: subject, issuer, validity, and the names it covers.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls_pki_types::CertificateDer;

/// The certificate, or why it does not parse (in the words errors show).
fn parse<'a>(
    der: &'a CertificateDer<'_>,
) -> Result<x509_parser::certificate::X509Certificate<'a>, String> {
    x509_parser::parse_x509_certificate(der.as_ref())
        .map(|(_, cert)| cert)
        .map_err(|e| format!("not a parsable X.509 certificate ({e})"))
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
    let cert = parse(der)?;
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
    let cert = parse(der)?;
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
