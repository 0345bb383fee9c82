//! TLS clients trusting the test CA, and what certificate the proxy presents.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::*;

/// rustls roots holding only the test CA.
pub fn roots(ca_pem: &str) -> rustls::RootCertStore {
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pki_types::CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.expect("CA PEM")).expect("CA root");
    }
    roots
}

/// A client config trusting the test CA, limited to `versions`, offering `alpn`.
pub fn client_tls(
    ca_pem: &str,
    versions: &[&'static rustls::SupportedProtocolVersion],
    alpn: &[&[u8]],
) -> Arc<rustls::ClientConfig> {
    let mut c = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(versions)
    .expect("versions")
    .with_root_certificates(roots(ca_pem))
    .with_no_client_auth();
    c.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    // No SNI, so tests may send any Host (Host and SNI differing is 421, tested on its own).
    c.enable_sni = false;
    Arc::new(c)
}

pub type ClientTls = tokio_rustls::client::TlsStream<TcpStream>;

/// Connects over TLS (SNI `localhost`) with `config`.
pub async fn tls_connect(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
) -> std::io::Result<ClientTls> {
    tokio::time::timeout(STEP, async {
        let tcp = TcpStream::connect(addr).await?;
        TlsConnector::from(config)
            .connect(ServerName::try_from("localhost").expect("name"), tcp)
            .await
    })
    .await
    .map_err(|_| std::io::Error::other("TLS connect timed out"))?
}

/// TLS 1.2/1.3 client trusting the test CA, offering only http/1.1.
pub fn h1_tls(ca_pem: &str) -> Arc<rustls::ClientConfig> {
    client_tls(
        ca_pem,
        &[&rustls::version::TLS13, &rustls::version::TLS12],
        &[b"http/1.1"],
    )
}

/// TLS client trusting the test CA, offering only h2.
pub fn h2_tls(ca_pem: &str) -> Arc<rustls::ClientConfig> {
    client_tls(
        ca_pem,
        &[&rustls::version::TLS13, &rustls::version::TLS12],
        &[b"h2"],
    )
}

/// A fresh http/1.1 TLS connection to the proxy.
pub async fn h1_conn(p: &TestProxy) -> ClientTls {
    tls_connect(p.addr, h1_tls(p.ca_pem()))
        .await
        .expect("TLS connection to the proxy")
}

/// Accepts any server certificate and remembers the end-entity one (to see what was presented).
#[derive(Debug)]
pub struct RecordingVerifier {
    pub seen: Mutex<Option<CertificateDer<'static>>>,
    pub provider: Arc<rustls::crypto::CryptoProvider>,
}

impl rustls::client::danger::ServerCertVerifier for RecordingVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        *self.seen.lock().unwrap() = Some(end_entity.clone().into_owned());
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Handshakes with `name` as SNI (an IP name sends none), returning the stream and the leaf the
/// server presented.
pub async fn handshake_presenting(
    addr: SocketAddr,
    name: ServerName<'static>,
) -> (ClientTls, CertificateDer<'static>) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(RecordingVerifier {
        seen: Mutex::new(None),
        provider: provider.clone(),
    });
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(verifier.clone())
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = TcpStream::connect(addr).await.unwrap();
    let tls = tokio::time::timeout(
        STEP,
        TlsConnector::from(Arc::new(config)).connect(name, tcp),
    )
    .await
    .expect("handshake in time")
    .expect("handshake");
    let leaf = verifier
        .seen
        .lock()
        .unwrap()
        .clone()
        .expect("a certificate");
    (tls, leaf)
}

pub fn leaf_of(pem: &str) -> CertificateDer<'static> {
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .next()
        .expect("a certificate")
        .expect("PEM")
}

/// A CA with exactly the name (subject) of the CA in `ca_pem` but a key of its own, as a second dev
/// PKI or a re-made CA has: a certificate issued by the one does not verify under the other.
pub fn same_name_ca(ca_pem: &str) -> String {
    use rustls_pki_types::pem::PemObject;
    let der = rustls_pki_types::CertificateDer::from_pem_slice(ca_pem.as_bytes()).expect("CA PEM");
    let (_, ca) = x509_parser::parse_x509_certificate(der.as_ref()).expect("the test CA");
    let mut dn = rcgen::DistinguishedName::new();
    for attr in ca.subject().iter_attributes() {
        let value = attr.as_str().expect("a text attribute").to_string();
        if *attr.attr_type() == x509_parser::oid_registry::OID_X509_COMMON_NAME {
            dn.push(rcgen::DnType::CommonName, value);
        } else if *attr.attr_type() == x509_parser::oid_registry::OID_X509_ORGANIZATION_NAME {
            dn.push(rcgen::DnType::OrganizationName, value);
        } else {
            panic!("unexpected attribute in the test CA's name: {attr:?}");
        }
    }
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = dn;
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    let twin = params.self_signed(&key).expect("same-name CA").pem();
    assert_ne!(twin, ca_pem);
    twin
}

/// The subject of the test CA, as the proxy writes names (the issuer of the upstream's certificate).
pub fn ca_name(p: &Prepared) -> String {
    let ders = scim_proxy::tls::read_certs(&p.dir.path().join("ca.pem")).expect("ca.pem");
    scim_proxy::tls::cert_info(&ders[0])
        .expect("ca.pem")
        .subject
}
