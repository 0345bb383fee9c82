//! A rejected upstream certificate in words: what the upstream presented and the roots it was
//! checked against.

use std::path::PathBuf;
use std::time::SystemTime;

use rustls_pki_types::CertificateDer;

use super::{cert_info, cert_names};

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
    pub(super) fn parse(der: &CertificateDer<'_>) -> Result<PresentedCert, String> {
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
