//! TLS: the crypto provider and ALPN both directions share; the inbound server config
//! (`server`), the verified upstream client config (`client`), PEM files and certificates.

pub mod acme;
mod cert;
mod client;
mod pem;
mod presented;
mod server;

use std::sync::Arc;

use rustls::crypto::CryptoProvider;

pub use cert::{CertInfo, CertNames, cert_info, cert_names};
pub use client::upstream_client_config;
pub use pem::{read_certs, read_key};
pub use presented::{
    PresentedCert, PresentedCertError, TrustRoots, describe_tls_error, presented_cert_error,
};
pub use server::{server_config_from, server_config_with_resolver};

/// ALPN offered inbound and upstream: HTTP/2 first, HTTP/1.1 as fallback.
pub const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

#[cfg(test)]
pub(crate) mod tests {
    pub(crate) use super::client::tests::verify;
}
