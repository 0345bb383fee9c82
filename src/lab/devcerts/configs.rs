//! rustls server and client configs from the dev PKI's PEM strings (ring provider, TLS 1.2/1.3).

use std::sync::Arc;

use rustls::version::{TLS12, TLS13};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::IssuedCert;

fn parse_certs(pem: &str, what: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{what}: bad PEM: {e}"))?;
    if certs.is_empty() {
        return Err(format!("{what}: no CERTIFICATE block found"));
    }
    Ok(certs)
}

/// rustls server config from PEM strings (ALPN h2 + http/1.1, TLS 1.2 and 1.3, ring provider).
pub fn server_config(cert: &IssuedCert) -> Result<Arc<rustls::ServerConfig>, String> {
    let chain = parse_certs(&cert.cert_pem, "server certificate")?;
    let key = PrivateKeyDer::from_pem_slice(cert.key_pem.as_bytes())
        .map_err(|e| format!("server key: bad PEM: {e}"))?;
    let mut config = rustls::ServerConfig::builder_with_provider(crate::tls::provider())
        .with_protocol_versions(&[&TLS13, &TLS12])
        .map_err(|e| format!("server TLS versions: {e}"))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| format!("server certificate/key: {e}"))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// rustls client config trusting only `ca_pem` (ALPN as given, e.g. `&[b"h2", b"http/1.1"]`).
pub fn client_config(ca_pem: &str, alpn: &[&[u8]]) -> Result<Arc<rustls::ClientConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in parse_certs(ca_pem, "CA certificate")? {
        roots
            .add(cert)
            .map_err(|e| format!("CA certificate: {e}"))?;
    }
    let mut config = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
        .with_protocol_versions(&[&TLS13, &TLS12])
        .map_err(|e| format!("client TLS versions: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lab::devcerts::DevPki;
    use std::net::IpAddr;
    use std::net::Ipv4Addr;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};
    use tokio_rustls::{TlsAcceptor, TlsConnector};

    const STEP: Duration = Duration::from_secs(10);

    /// Handshakes `server` against `client` over loopback, writes a byte each way,
    /// and returns the client's result (the server's is only logged by the test runner).
    async fn handshake(
        server: Arc<rustls::ServerConfig>,
        client: Arc<rustls::ClientConfig>,
        server_name: &str,
    ) -> Result<Option<Vec<u8>>, std::io::Error> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let srv = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await?;
            let mut tls = TlsAcceptor::from(server).accept(tcp).await?;
            let mut b = [0u8; 1];
            tls.read_exact(&mut b).await?;
            tls.write_all(&b).await?;
            tls.shutdown().await?;
            Ok::<_, std::io::Error>(())
        });
        let name = rustls_pki_types::ServerName::try_from(server_name.to_string())
            .map_err(std::io::Error::other)?;
        let result = tokio::time::timeout(STEP, async {
            let tcp = TcpStream::connect(addr).await?;
            let mut tls = TlsConnector::from(client).connect(name, tcp).await?;
            tls.write_all(b"x").await?;
            let mut b = [0u8; 1];
            tls.read_exact(&mut b).await?;
            assert_eq!(&b, b"x");
            Ok::<_, std::io::Error>(tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec))
        })
        .await
        .map_err(std::io::Error::other)?;
        srv.abort();
        let _ = srv.await;
        result
    }

    #[tokio::test]
    async fn leaf_verifies_against_ca_with_dns_and_ip_names() {
        let pki = DevPki::new("test CA").unwrap();
        let leaf = pki
            .issue(&["localhost"], &[IpAddr::V4(Ipv4Addr::LOCALHOST)])
            .unwrap();
        assert!(
            leaf.key_pem.contains("PRIVATE KEY-----"),
            "a PKCS#8 PEM key"
        );
        let server = server_config(&leaf).unwrap();
        let client = client_config(pki.ca_pem(), &[b"h2", b"http/1.1"]).unwrap();
        let alpn = handshake(server.clone(), client.clone(), "localhost")
            .await
            .unwrap();
        assert_eq!(alpn.as_deref(), Some(&b"h2"[..]));
        handshake(server, client, "127.0.0.1").await.unwrap();
    }

    #[tokio::test]
    async fn tls12_only_client_still_connects() {
        let pki = DevPki::new("test CA").unwrap();
        let leaf = pki.issue(&["localhost"], &[]).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        for c in parse_certs(pki.ca_pem(), "ca").unwrap() {
            roots.add(c).unwrap();
        }
        let mut client = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
            .with_protocol_versions(&[&TLS12])
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        client.alpn_protocols = vec![b"http/1.1".to_vec()];
        let alpn = handshake(server_config(&leaf).unwrap(), Arc::new(client), "localhost")
            .await
            .unwrap();
        assert_eq!(alpn.as_deref(), Some(&b"http/1.1"[..]));
    }

    #[tokio::test]
    async fn rejects_wrong_name_foreign_ca_and_expired_leaf() {
        let pki = DevPki::new("test CA").unwrap();
        let other = DevPki::new("other CA").unwrap();
        // Two CAs made from the same name still differ by name.
        let again = DevPki::new("test CA").unwrap();
        let name = |p: &DevPki| {
            let der =
                rustls_pki_types::CertificateDer::from_pem_slice(p.ca_pem().as_bytes()).unwrap();
            crate::tls::cert_info(&der).unwrap().subject
        };
        assert_ne!(name(&pki), name(&again));
        assert!(name(&pki).starts_with("CN=test CA "), "{}", name(&pki));
        let leaf = pki.issue(&["localhost"], &[]).unwrap();
        let client = client_config(pki.ca_pem(), &[]).unwrap();
        let foreign = client_config(other.ca_pem(), &[]).unwrap();
        let server = server_config(&leaf).unwrap();
        assert!(
            handshake(server.clone(), client.clone(), "example.com")
                .await
                .is_err()
        );
        assert!(handshake(server, foreign, "localhost").await.is_err());
        let expired = pki.issue_expired(&["localhost"]).unwrap();
        let err = handshake(server_config(&expired).unwrap(), client, "localhost")
            .await
            .unwrap_err();
        assert!(err.to_string().to_lowercase().contains("expired"), "{err}");
    }

    #[test]
    fn bad_pem_is_an_error_not_a_panic() {
        assert!(client_config("", &[]).is_err());
        assert!(client_config("-----BEGIN CERTIFICATE-----\n!!\n", &[]).is_err());
        let bogus = IssuedCert {
            cert_pem: String::new(),
            key_pem: String::new(),
        };
        assert!(server_config(&bogus).is_err());
        let pki = DevPki::new("test CA").unwrap();
        let mut leaf = pki.issue(&["a.test"], &[]).unwrap();
        leaf.key_pem = "nope".into();
        assert!(server_config(&leaf).is_err());
        assert!(pki.issue(&["b\u{e4}d.test"], &[]).is_err());
    }
}
