//! The inbound TLS server config.

use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::server::ResolvesServerCert;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::ALPN;

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

/// Inbound TLS 1.2 (ECDHE with AES-GCM, which Entra requires) and 1.3, ALPN h2 + http/1.1.
pub fn server_config_from(
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<rustls::ServerConfig>, String> {
    let config = builder()?
        .with_single_cert(certs, key)
        .map_err(|e| format!("certificate and key do not make a usable pair ({e})"))?;
    Ok(finish(config, &[]))
}

/// The same TLS settings, the certificate chosen per handshake by `resolver`, and `extra_alpn`
/// offered after h2 and http/1.1 (ACME's `acme-tls/1`, which only a CA's validation asks for).
pub fn server_config_with_resolver(
    resolver: Arc<dyn ResolvesServerCert>,
    extra_alpn: &[&[u8]],
) -> Result<Arc<rustls::ServerConfig>, String> {
    Ok(finish(builder()?.with_cert_resolver(resolver), extra_alpn))
}

fn builder()
-> Result<rustls::ConfigBuilder<rustls::ServerConfig, rustls::server::WantsServerCert>, String> {
    Ok(
        rustls::ServerConfig::builder_with_provider(server_provider())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| e.to_string())?
            .with_no_client_auth(),
    )
}

fn finish(mut config: rustls::ServerConfig, extra_alpn: &[&[u8]]) -> Arc<rustls::ServerConfig> {
    config.alpn_protocols = ALPN.iter().chain(extra_alpn).map(|p| p.to_vec()).collect();
    config.ignore_client_order = true;
    // Stateless, rotating tickets (as nginx uses): resumption survives many IdP connections
    // without a bounded server-side cache; one ticket per handshake is enough for an IdP.
    if let Ok(ticketer) = rustls::crypto::ring::Ticketer::new() {
        config.ticketer = ticketer;
    }
    config.send_tls13_tickets = 1;
    Arc::new(config)
}
