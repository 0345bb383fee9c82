//! Throwaway PKI (CA, leaf certificates; rustls configs in `configs`) for `demo` and the tests;
//! never for production.

mod configs;

use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};

pub use configs::{client_config, server_config};

const DAY: Duration = Duration::from_secs(24 * 60 * 60);

/// A self-signed CA that lives only in memory.
pub struct DevPki {
    issuer: Issuer<'static, KeyPair>,
    ca_pem: String,
}

/// A leaf certificate issued by [`DevPki`].
#[derive(Clone, Debug)]
pub struct IssuedCert {
    /// Leaf certificate, PEM.
    pub cert_pem: String,
    /// PKCS#8 private key, PEM.
    pub key_pem: String,
}

impl std::fmt::Debug for DevPki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the CA key.
        f.debug_struct("DevPki").finish_non_exhaustive()
    }
}

/// Seconds since the Unix epoch; a clock before 1970 counts as the epoch.
fn unix_now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
}

/// Validity from `now - not_before_ago` to `not_after` (ahead of or before now).
fn set_validity(params: &mut CertificateParams, not_before_ago: Duration, not_after: Validity) {
    // rcgen takes `time::OffsetDateTime`; build it from the epoch so we need no `time` dependency.
    let epoch = rcgen::date_time_ymd(1970, 1, 1);
    let now = unix_now();
    params.not_before = epoch + now.saturating_sub(not_before_ago);
    params.not_after = match not_after {
        Validity::Ahead(d) => epoch + now.saturating_add(d),
        Validity::Ago(d) => epoch + now.saturating_sub(d),
    };
}

enum Validity {
    Ahead(Duration),
    Ago(Duration),
}

fn leaf_params(dns_names: &[&str], ips: &[IpAddr]) -> Result<CertificateParams, rcgen::Error> {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    let cn = dns_names.first().copied().unwrap_or("scim-proxy dev leaf");
    dn.push(DnType::CommonName, cn);
    params.distinguished_name = dn;
    let mut sans = Vec::with_capacity(dns_names.len() + ips.len());
    for name in dns_names {
        sans.push(SanType::DnsName((*name).try_into()?));
    }
    sans.extend(ips.iter().map(|ip| SanType::IpAddress(*ip)));
    params.subject_alt_names = sans;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    Ok(params)
}

impl DevPki {
    /// A fresh self-signed ECDSA P-256 CA, valid from a day ago for 30 days. Its name is
    /// `common_name` plus a random suffix, so two dev PKIs (a trust store holding an old one, say)
    /// can never be mistaken for each other.
    pub fn new(common_name: &str) -> Result<DevPki, rcgen::Error> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        let suffix = uuid::Uuid::new_v4().simple().to_string();
        let unique = format!("{common_name} {}", &suffix[..8]);
        dn.push(DnType::CommonName, unique);
        dn.push(DnType::OrganizationName, "scim-proxy dev PKI");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        set_validity(&mut params, DAY, Validity::Ahead(30 * DAY));
        let cert = params.self_signed(&key)?;
        Ok(DevPki {
            ca_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        })
    }

    /// The CA certificate, PEM.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// A leaf for server and client auth with exactly these SANs, valid from a day ago for 30 days.
    pub fn issue(&self, dns_names: &[&str], ips: &[IpAddr]) -> Result<IssuedCert, rcgen::Error> {
        let mut params = leaf_params(dns_names, ips)?;
        set_validity(&mut params, DAY, Validity::Ahead(30 * DAY));
        self.sign(&params)
    }

    /// A leaf whose validity lies entirely in the past (60 to 30 days ago), for expiry tests.
    pub fn issue_expired(&self, dns_names: &[&str]) -> Result<IssuedCert, rcgen::Error> {
        let mut params = leaf_params(dns_names, &[])?;
        set_validity(&mut params, 60 * DAY, Validity::Ago(30 * DAY));
        self.sign(&params)
    }

    fn sign(&self, params: &CertificateParams) -> Result<IssuedCert, rcgen::Error> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(IssuedCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}
