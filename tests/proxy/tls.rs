//! Inbound TLS: protocol versions, ALPN, SNI, client certificates, non-TLS bytes on the TLS port and
//! an expired serving certificate.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::{Method, StatusCode, Version};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use scim_proxy::lab::client::ScimClient;
use scim_proxy::lab::devcerts;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::support::*;

async fn tls_version_roundtrip(version: &'static rustls::SupportedProtocolVersion) {
    let p = Builder::new().start().await;
    let config = client_tls(p.ca_pem(), &[version], &[b"http/1.1"]);
    let mut tls = tls_connect(p.addr, config.clone())
        .await
        .expect("handshake");
    let (_, conn) = tls.get_ref();
    assert_eq!(conn.protocol_version(), Some(version.version));
    assert_eq!(conn.alpn_protocol(), Some(&b"http/1.1"[..]));
    let suite = format!("{:?}", conn.negotiated_cipher_suite().unwrap().suite());
    if version.version == rustls::ProtocolVersion::TLSv1_2 {
        // What Entra requires: ECDHE key exchange with AES-GCM.
        assert!(suite.contains("ECDHE") && suite.contains("GCM"), "{suite}");
    }
    let auth = bearer(OKTA);
    let a = exchange(
        &mut tls,
        &raw_request(
            "GET",
            "/SCIM/v2/Users",
            "localhost",
            &[("Authorization", &auth)],
        ),
    )
    .await
    .expect("exchange");
    assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
    // And through the HTTP client, limited the same way.
    let client = ScimClient::new(&p.base, config, false);
    let a = client
        .send(Method::GET, "/SCIM/v2/Groups", Some(ENTRA), None)
        .await
        .expect("request");
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(p.upstream(0).requests().len(), 2);
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbound_tls12_only_client_works() {
    tls_version_roundtrip(&rustls::version::TLS12).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbound_tls13_only_client_works() {
    tls_version_roundtrip(&rustls::version::TLS13).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbound_http2_by_alpn_works() {
    let p = Builder::new().start().await;
    // ALPN picks h2 when offered.
    let config = client_tls(
        p.ca_pem(),
        &[&rustls::version::TLS13, &rustls::version::TLS12],
        &[b"h2", b"http/1.1"],
    );
    let tls = tls_connect(p.addr, config).await.expect("handshake");
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    drop(tls);

    let h2 = ScimClient::new(
        &p.base,
        devcerts::client_config(p.ca_pem(), &[]).unwrap(),
        true,
    );
    let a = h2
        .send(
            Method::POST,
            "/SCIM/v2/Users",
            Some(OKTA),
            Some(&user("h2@x.y")),
        )
        .await
        .expect("h2 request");
    assert_eq!(a.version, Version::HTTP_2);
    assert_eq!(a.status, StatusCode::CREATED, "{:?}", a.body);
    let id = a.json()["id"].as_str().unwrap().to_string();
    assert_eq!(
        a.header("location"),
        Some(format!("{}/SCIM/v2/Users/{id}", p.base).as_str())
    );
    let a = h2
        .send(
            Method::GET,
            &format!("/SCIM/v2/Users/{id}"),
            Some(OKTA),
            None,
        )
        .await
        .expect("h2 request");
    assert_eq!(a.version, Version::HTTP_2);
    assert_eq!(a.status, StatusCode::OK);
    // Refusals over h2 too.
    let a = h2
        .send(Method::GET, "/SCIM/v2/Users", None, None)
        .await
        .expect("h2 request");
    p.assert_error(&a, 401, &[]);
    assert_eq!(p.upstream(0).requests().len(), 2);
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_client_that_did_not_negotiate_h2_is_held_to_http_1_1() {
    let p = Builder::new().start().await;
    // HTTP/2 over TLS is only ever negotiated (RFC 9113 3.2): after ALPN chose http/1.1, or with
    // no ALPN at all, the HTTP/2 preface is a bad HTTP/1.1 request, not an HTTP/2 connection.
    let no_alpn = client_tls(
        p.ca_pem(),
        &[&rustls::version::TLS13, &rustls::version::TLS12],
        &[],
    );
    for config in [h1_tls(p.ca_pem()), no_alpn] {
        let mut tls = tls_connect(p.addr, config).await.expect("handshake");
        assert_ne!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
        write_lenient(
            &mut tls,
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0",
        )
        .await;
        // hyper closes an HTTP/1.1 connection that opens with the preface; an HTTP/2 server
        // would have answered with its SETTINGS frame.
        let ended = wait_closed(&mut tls, STEP).await.expect("closed");
        assert!(
            ended.bytes.is_empty() || ended.bytes.starts_with(b"HTTP/1.1 "),
            "no HTTP/2 frames: {:?}",
            ended.bytes
        );
    }
    assert_eq!(p.upstream_total(), 0, "nothing may be forwarded");
    // The same client asking for h2 gets it.
    let config = client_tls(p.ca_pem(), &[&rustls::version::TLS13], &[b"h2"]);
    let tls = tls_connect(p.addr, config).await.expect("handshake");
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_on_the_tls_port_gets_no_http_answer() {
    let p = Builder::new().start().await;
    for _ in 0..2 {
        let mut tcp = tokio::net::TcpStream::connect(p.addr).await.unwrap();
        let req = format!(
            "GET /SCIM/v2/Users HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {OKTA}\r\n\r\n"
        );
        tcp.write_all(req.as_bytes()).await.unwrap();
        let got = read_to_end_lenient(&mut tcp, Duration::from_secs(15))
            .await
            .unwrap_or_default();
        assert!(
            !got.starts_with(b"HTTP/"),
            "plain HTTP got an HTTP answer: {:?}",
            String::from_utf8_lossy(&got)
        );
    }
    assert_eq!(p.upstream(0).requests().len(), 0);
    // The proxy still serves.
    let a = p.get("/SCIM/v2/Users", OKTA).await;
    assert_eq!(a.status, StatusCode::OK);
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_the_tls_port_gets_no_http_answer_and_the_connection_closes() {
    let p = Builder::new().start().await;
    // A deterministic pseudo-random blob.
    let mut x: u32 = 0x9e37_79b9;
    let random: Vec<u8> = (0..4096)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x & 0xff) as u8
        })
        .collect();
    let mut huge_record = b"\x16\x03\x01\xff\xff".to_vec();
    huge_record.extend_from_slice(&random[..512]);
    let payloads: Vec<(&str, Vec<u8>)> = vec![
        ("random bytes", random.clone()),
        ("a TLS record announcing 64 KiB of handshake", huge_record),
        (
            "HTTP/2 prior knowledge in clear",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0".to_vec(),
        ),
        (
            "an SSLv2-style hello",
            b"\x80\x2e\x01\x00\x02\x00\x15\x00\x00\x00\x10".to_vec(),
        ),
        ("NUL bytes", vec![0u8; 64]),
    ];
    for (what, bytes) in payloads {
        let mut tcp = TcpStream::connect(p.addr).await.unwrap();
        write_lenient(&mut tcp, &bytes).await;
        let ended = wait_closed(&mut tcp, STEP)
            .await
            .unwrap_or_else(|b| panic!("{what}: connection still open after {STEP:?}: {b:?}"));
        let text = String::from_utf8_lossy(&ended.bytes);
        assert!(
            !text.contains("HTTP/"),
            "{what}: got an HTTP answer: {text:?}"
        );
    }
    assert_eq!(p.upstream_total(), 0, "nothing may be forwarded");
    assert_still_serves(&p).await;
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sni_matching_nothing_gets_the_one_certificate_and_a_host_differing_from_it_421() {
    let p = Builder::new().start().await;
    let served = leaf_of(&std::fs::read_to_string(p.dir().join("proxy.crt")).unwrap());
    let names = [
        ServerName::try_from("nothing-matches.example").unwrap(),
        ServerName::IpAddress(std::net::IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)).into()),
    ];
    for name in names {
        let (mut tls, leaf) = handshake_presenting(p.addr, name.clone()).await;
        assert_eq!(
            leaf, served,
            "{name:?}: the proxy has one certificate and presents it"
        );
        let a = exchange(
            &mut tls,
            head("GET", "/SCIM/v2/Users", "Connection: close\r\n").as_bytes(),
        )
        .await
        .unwrap();
        // A DNS SNI is sent and differs from `Host: localhost`; an IP address is never sent as SNI.
        match name {
            ServerName::DnsName(_) => p.assert_error(&a, 421, &["SNI"]),
            _ => assert_eq!(a.status, StatusCode::OK, "{name:?}"),
        }
    }
    assert_eq!(p.upstream_total(), 1);
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_certificate_is_not_requested_and_does_no_harm() {
    let p = Builder::new().start().await;
    let client_cert = p.prepared.pki.issue(&["idp-client.example"], &[]).unwrap();
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(client_cert.cert_pem.as_bytes())
            .map(|c| c.unwrap())
            .collect();
    let key = PrivateKeyDer::from_pem_slice(client_cert.key_pem.as_bytes()).unwrap();
    for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
        let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_protocol_versions(&[version])
        .unwrap()
        .with_root_certificates(roots(p.ca_pem()))
        .with_client_auth_cert(chain.clone(), key.clone_key())
        .unwrap();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let mut tls = tls_connect(p.addr, Arc::new(config))
            .await
            .expect("handshake");
        // The server asked for no certificate, so none was sent.
        assert!(tls.get_ref().1.peer_certificates().is_some());
        let a = exchange(
            &mut tls,
            head("GET", "/SCIM/v2/Users", "Connection: close\r\n").as_bytes(),
        )
        .await
        .unwrap();
        assert_eq!(a.status, StatusCode::OK, "{:?}", version.version);
    }
    assert_eq!(p.upstream_total(), 2);
    p.stop().await;
}

/// An expired serving certificate cannot be loaded (by design), so it is proved three ways: `check`
/// refuses it with a clear message, a reload to it is refused while the old certificate keeps serving,
/// and the readiness verdict of the real loaded snapshot names the certificate once its clock passes
/// the certificate's notAfter (what `/readyz` reports when a running certificate expires).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_serving_certificate_is_refused_and_readiness_names_it() {
    let mut p = Builder::new().admin().start().await;
    let admin = p.running().admin_addr.expect("admin");
    wait_ready(admin).await;
    let expired = p.prepared.pki.issue_expired(&["localhost"]).expect("cert");
    write_file(p.dir(), "expired.crt", &expired.cert_pem);
    write_private(p.dir(), "expired.key", &expired.key_pem);
    let with_expired = p.prepared.toml.replace(
        "cert = \"proxy.crt\"\nkey = \"proxy.key\"",
        "cert = \"expired.crt\"\nkey = \"expired.key\"",
    );
    assert_ne!(with_expired, p.prepared.toml);
    let other = write_file(p.dir(), "expired.toml", &with_expired);

    let out = run_cli(
        &["check", "--config", other.to_str().unwrap()],
        b"",
        &[],
        STEP,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("listen.cert") && stderr.contains("the certificate expired on"),
        "{stderr}"
    );

    p.prepared.edit_config(
        "cert = \"proxy.crt\"\nkey = \"proxy.key\"",
        "cert = \"expired.crt\"\nkey = \"expired.key\"",
    );
    let problems = p
        .running()
        .reload()
        .expect_err("an expired certificate must not load");
    assert!(
        problems
            .0
            .iter()
            .any(|x| x.key == "listen.cert" && x.reason.contains("expired")),
        "{problems}"
    );
    assert_eq!(p.get("/SCIM/v2/Users", OKTA).await.status, StatusCode::OK);
    wait_ready(admin).await;
    let m = scrape(admin).await;
    assert_eq!(
        m.value("scim_proxy_reloads_total", &[("result", "failed")]),
        1.0
    );

    let snapshot = p.running().shared.state.load_full();
    let info = snapshot
        .cert_info
        .clone()
        .expect("serving certificate info");
    assert!(
        scim_proxy::state::readiness::readiness_problems(&snapshot, true, SystemTime::now())
            .is_empty()
    );
    let later = info.not_after + Duration::from_secs(1);
    let problems = scim_proxy::state::readiness::readiness_problems(&snapshot, true, later);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].contains("serving certificate") && problems[0].contains("expired"),
        "{problems:?}"
    );
    p.stop().await;
}
