//! Hardening proof (issue 4) over real sockets on loopback: bad input, limits and timeouts, load
//! balancers, upstream faults and reloads.
//!
//! Every test starts its own proxy (and upstreams) and stops them. Each refusal asserts the status
//! (and the SCIM Error body where the proxy answers), that nothing was forwarded (the upstream's
//! request count), and that the proxy still serves the next request. Time assertions are only of the
//! "it closed within N s" kind, with generous bounds for a loaded 2-core machine.

mod support;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, StatusCode};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use scim_proxy::lab::client::{Answer, ScimClient};
use scim_proxy::lab::devcerts::{self, IssuedCert};
use scim_proxy::lab::upstream::Override;
use serde_json::json;
use support::*;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

// ------------------------------------------------------------------------------------------ helpers

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

fn user(name: &str) -> serde_json::Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": name,
        "active": true,
        "emails": [{"primary": true, "type": "work", "value": name}]
    })
}

/// TLS 1.2/1.3 client trusting the test CA, offering only http/1.1.
fn h1_tls(ca_pem: &str) -> Arc<rustls::ClientConfig> {
    client_tls(
        ca_pem,
        &[&rustls::version::TLS13, &rustls::version::TLS12],
        &[b"http/1.1"],
    )
}

/// TLS client trusting the test CA, offering only h2.
fn h2_tls(ca_pem: &str) -> Arc<rustls::ClientConfig> {
    client_tls(
        ca_pem,
        &[&rustls::version::TLS13, &rustls::version::TLS12],
        &[b"h2"],
    )
}

/// A fresh http/1.1 TLS connection to the proxy.
async fn h1_conn(p: &TestProxy) -> ClientTls {
    tls_connect(p.addr, h1_tls(p.ca_pem()))
        .await
        .expect("TLS connection to the proxy")
}

/// Reads exactly one HTTP/1.1 response (Content-Length or chunked), leaving the connection open.
async fn read_one<S: AsyncRead + Unpin>(s: &mut S, limit: Duration) -> Result<Answer, String> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Ok(a) = parse_response(&out) {
            let bodyless =
                a.status == StatusCode::NO_CONTENT || a.status == StatusCode::NOT_MODIFIED;
            let framed = a.headers.contains_key("content-length")
                || a.headers.contains_key("transfer-encoding");
            if framed || bodyless {
                return Ok(a);
            }
        }
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Ok(Ok(0)) => {
                return parse_response(&out)
                    .map_err(|e| format!("EOF before a complete response ({e})"));
            }
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Ok(Err(e)) if out.is_empty() => return Err(format!("read: {e}")),
            Ok(Err(_)) => return parse_response(&out),
            Err(_) => {
                return Err(format!(
                    "no complete response within {limit:?}: {:?}",
                    String::from_utf8_lossy(&out)
                ));
            }
        }
    }
}

/// How a connection ended, as a client reading from it sees it.
#[derive(Debug)]
struct Ended {
    /// Everything read before the end.
    bytes: Vec<u8>,
    /// How long it took from the call.
    after: Duration,
}

/// Reads until EOF or a read error, at most `limit`; `Err` with what was read if still open.
async fn wait_closed<S: AsyncRead + Unpin>(s: &mut S, limit: Duration) -> Result<Ended, Vec<u8>> {
    let started = Instant::now();
    let deadline = tokio::time::Instant::now() + limit;
    let mut bytes = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                return Ok(Ended {
                    bytes,
                    after: started.elapsed(),
                });
            }
            Ok(Ok(n)) => bytes.extend_from_slice(&buf[..n]),
            Err(_) => return Err(bytes),
        }
    }
}

/// Writes as much of `data` as the peer takes; a peer that closes early is not an error here.
async fn write_lenient<S: AsyncWrite + Unpin>(s: &mut S, data: &[u8]) -> usize {
    let mut written = 0;
    for chunk in data.chunks(16 * 1024) {
        match tokio::time::timeout(STEP, s.write_all(chunk)).await {
            Ok(Ok(())) => written += chunk.len(),
            _ => break,
        }
    }
    let _ = tokio::time::timeout(STEP, s.flush()).await;
    written
}

/// A GET through the proxy with the Okta token answers 200 and reaches the upstream once more.
async fn assert_still_serves(p: &TestProxy) {
    let before = p.upstream_total();
    let a = p.get("/SCIM/v2/Users", OKTA).await;
    assert_eq!(
        a.status,
        StatusCode::OK,
        "the proxy must still serve: {:?}",
        a.body
    );
    assert_eq!(
        p.upstream_total(),
        before + 1,
        "the next request reached the upstream"
    );
}

/// Waits (bounded) until the traffic log has `n` lines and returns them.
async fn traffic_lines(p: &TestProxy, n: usize) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let lines = p.traffic();
        if lines.len() >= n || Instant::now() > deadline {
            return lines;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn head(method: &str, target: &str, extra: &str) -> String {
    format!(
        "{method} {target} HTTP/1.1\r\nHost: localhost\r\nAuthorization: {}\r\n{extra}\r\n",
        bearer(OKTA)
    )
}

// ------------------------------------------------------------------------------------------ 1. bad input

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_over_max_body_by_content_length_is_413_before_the_body_is_sent() {
    let p = Builder::new().limit("max_body", "\"64KiB\"").start().await;
    let mut tls = h1_conn(&p).await;
    // A 10 MiB body is announced; only the head and 1 KiB of it are sent.
    let req = head(
        "POST",
        "/SCIM/v2/Users",
        "Content-Type: application/scim+json\r\nContent-Length: 10485760\r\n",
    );
    tls.write_all(req.as_bytes()).await.unwrap();
    tls.write_all(&[b' '; 1024]).await.unwrap();
    tls.flush().await.unwrap();
    let a = read_one(&mut tls, STEP)
        .await
        .expect("the 413 arrives while the client has not finished sending");
    p.assert_error(&a, 413, &["larger"]);
    assert_eq!(a.json()["scimType"], json!("tooLarge"));
    assert_eq!(a.header("connection"), Some("close"));
    // And the connection is closed: the rest of the body is not read.
    let ended = wait_closed(&mut tls, STEP)
        .await
        .expect("the connection is closed after the 413");
    assert!(
        ended.bytes.is_empty(),
        "{:?}",
        String::from_utf8_lossy(&ended.bytes)
    );
    assert_eq!(p.upstream_total(), 0, "nothing may be forwarded");
    // Over HTTP/2 too (hyper's client sends the Content-Length of the full body).
    let h2 = ScimClient::new(
        &p.base,
        devcerts::client_config(p.ca_pem(), &[]).unwrap(),
        true,
    );
    let big = Bytes::from(vec![b'x'; 200 * 1024]);
    let req = p
        .req(Method::POST, "/SCIM/v2/Users")
        .header("authorization", bearer(OKTA))
        .header("content-type", "application/scim+json")
        .body(http_body_util::Full::new(big))
        .unwrap();
    let a = h2.request(req).await.expect("h2 answer");
    p.assert_error(&a, 413, &[]);
    assert_eq!(p.upstream_total(), 0, "nothing may be forwarded");
    assert_still_serves(&p).await;
    p.stop().await;
}

/// A chunked body over `max_body`: 413 (the length is not known up front, so the request head may
/// already be on its way upstream, but the upstream never gets the body whole).
async fn chunked_over_max_body(h1_upstream: bool) {
    let b = Builder::new().limit("max_body", "\"64KiB\"");
    let p = if h1_upstream { b.h1_upstream() } else { b }.start().await;
    for content_type in ["application/scim+json", "application/octet-stream"] {
        let mut tls = h1_conn(&p).await;
        let req = head(
            "POST",
            "/SCIM/v2/Users",
            &format!("Content-Type: {content_type}\r\nTransfer-Encoding: chunked\r\n"),
        );
        tls.write_all(req.as_bytes()).await.unwrap();
        // 256 KiB in 8 KiB chunks, then the last chunk; the proxy may stop reading early.
        let mut body = Vec::new();
        for _ in 0..32 {
            body.extend_from_slice(format!("{:x}\r\n", 8192).as_bytes());
            body.extend_from_slice(&[b'a'; 8192]);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(b"0\r\n\r\n");
        let exchange = async {
            write_lenient(&mut tls, &body).await;
            read_one(&mut tls, STEP).await
        };
        let a = bounded("chunked 413", exchange).await.expect("an answer");
        p.assert_error(&a, 413, &[]);
        assert_eq!(a.json()["scimType"], json!("tooLarge"), "{content_type}");
        assert_eq!(a.header("connection"), Some("close"), "{content_type}");
    }
    // What the upstream saw of the aborted requests settles asynchronously.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for r in p.upstream(0).requests() {
        assert!(
            r.body.is_empty(),
            "a body over max_body reached the upstream: {} bytes",
            r.body.len()
        );
    }
    assert_still_serves(&p).await;
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_body_over_max_body_is_413_with_an_http11_upstream() {
    chunked_over_max_body(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_body_over_max_body_is_413_with_an_http2_upstream() {
    chunked_over_max_body(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_head_over_max_header_bytes_or_max_headers_is_431() {
    let p = Builder::new().limit("max_headers", "30").start().await;
    // 20 KiB of one header value (max_header_bytes is 16 KiB by default).
    let big = "a".repeat(20 * 1024);
    let a = p
        .raw(
            head(
                "GET",
                "/SCIM/v2/Users",
                &format!("X-Big: {big}\r\nConnection: close\r\n"),
            )
            .as_bytes(),
        )
        .await;
    assert_eq!(a.status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    // 40 small header fields (limit 30).
    let mut many = String::new();
    for i in 0..40 {
        many.push_str(&format!("X-H{i}: {i}\r\n"));
    }
    many.push_str("Connection: close\r\n");
    let a = p.raw(head("GET", "/SCIM/v2/Users", &many).as_bytes()).await;
    assert_eq!(a.status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    // 25 fields are fine.
    let mut some = String::new();
    for i in 0..25 {
        some.push_str(&format!("X-H{i}: {i}\r\n"));
    }
    some.push_str("Connection: close\r\n");
    assert_eq!(p.upstream_total(), 0, "nothing may be forwarded");
    let a = p.raw(head("GET", "/SCIM/v2/Users", &some).as_bytes()).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(p.upstream_total(), 1);
    assert_still_serves(&p).await;
    p.stop().await;
}

/// The classic CL.TE / TE.CL payloads: a chunked body that ends at once, followed by a second
/// request that a parser believing Content-Length would treat as body, and vice versa.
fn smuggling_payloads() -> Vec<(String, String)> {
    let smuggled = format!(
        "GET /SCIM/v2/Users/smuggled HTTP/1.1\r\nHost: localhost\r\nAuthorization: {}\r\n\r\n",
        bearer(OKTA)
    );
    let body = format!("0\r\n\r\n{smuggled}");
    vec![
        (
            format!(
                "Content-Length: {}\r\nTransfer-Encoding: chunked\r\n",
                body.len()
            ),
            body.clone(),
        ),
        (
            format!(
                "Transfer-Encoding: chunked\r\nContent-Length: {}\r\n",
                body.len()
            ),
            body.clone(),
        ),
        (
            "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n".into(),
            body,
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_length_with_transfer_encoding_never_smuggles_a_request() {
    let p = Builder::new().start().await;
    for (framing, body) in smuggling_payloads() {
        let req = format!(
            "{}{body}",
            head(
                "POST",
                "/SCIM/v2/Users",
                &format!("Content-Type: application/scim+json\r\n{framing}")
            )
        );
        let mut tls = h1_conn(&p).await;
        tls.write_all(req.as_bytes()).await.unwrap();
        // No `Connection: close` was sent: the proxy must close after one answer all the same
        // (RFC 9112 §6.1), so that the bytes after the chunked body are never read as a request.
        let ended = wait_closed(&mut tls, STEP).await.unwrap_or_else(|b| {
            panic!("{framing:?}: still open: {:?}", String::from_utf8_lossy(&b))
        });
        let text = String::from_utf8_lossy(&ended.bytes).to_string();
        assert_eq!(
            text.matches("HTTP/1.1 ").count(),
            1,
            "{framing:?}: one answer only: {text}"
        );
        let a = parse_response(&ended.bytes).expect("an answer");
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{framing:?}: {text}");
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let seen = p.upstream(0).requests();
    for r in &seen {
        assert!(
            !r.path_and_query.contains("smuggled"),
            "a smuggled request got through: {seen:?}"
        );
        assert!(
            r.headers.get("content-length").is_none_or(|v| v == "0"),
            "{:?}",
            r.headers
        );
        assert!(r.body.is_empty(), "{:?}", r.body);
    }
    assert_still_serves(&p).await;
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn obfuscated_transfer_encoding_is_400_from_hyper_and_not_forwarded() {
    let p = Builder::new().start().await;
    for framing in [
        "Transfer-Encoding: xchunked\r\nContent-Length: 5\r\n",
        "Transfer-Encoding : chunked\r\n",
        "Content-Length: +5\r\n",
        "Content-Length: 0x5\r\n",
        "Transfer-Encoding: chunked\r\nConnection: close\r\nContent-Length: 5\r\n",
    ] {
        let req = format!(
            "{}0\r\n\r\n",
            head(
                "POST",
                "/SCIM/v2/Users",
                &format!("Content-Type: application/scim+json\r\n{framing}")
            )
        );
        let mut tls = h1_conn(&p).await;
        tls.write_all(req.as_bytes()).await.unwrap();
        let ended = wait_closed(&mut tls, STEP).await.expect("closed");
        let a = parse_response(&ended.bytes).unwrap_or_else(|e| panic!("{framing:?}: {e}"));
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{framing:?}");
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let seen = p.upstream(0).requests();
    assert!(seen.iter().all(|r| r.body.is_empty()), "{seen:?}");
    assert_still_serves(&p).await;
    p.stop().await;
}

const BAD_CHUNKS: [&str; 4] = [
    "zz\r\n{}\r\n0\r\n\r\n",
    "5\r\nabc\r\n0\r\n\r\n",
    "3\r\nabcX\r\n0\r\n\r\n",
    "ffffffffffffffffffffff\r\nabc\r\n0\r\n\r\n",
];

/// Sends each invalid chunked body, returns what came back (None: closed without an answer).
async fn send_bad_chunks(p: &TestProxy) -> Vec<(String, Option<Answer>)> {
    let mut out = Vec::new();
    for ct in ["application/scim+json", "text/plain"] {
        for body in BAD_CHUNKS {
            let req = format!(
                "{}{body}",
                head(
                    "POST",
                    "/SCIM/v2/Users",
                    &format!("Content-Type: {ct}\r\nTransfer-Encoding: chunked\r\n")
                )
            );
            let mut tls = h1_conn(p).await;
            tls.write_all(req.as_bytes()).await.unwrap();
            let ended = wait_closed(&mut tls, STEP)
                .await
                .unwrap_or_else(|b| panic!("{body:?}: connection still open: {b:?}"));
            out.push((format!("{ct} {body:?}"), parse_response(&ended.bytes).ok()));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_chunked_body_never_reaches_the_upstream_whole_and_the_connection_closes() {
    for h1 in [true, false] {
        let b = Builder::new();
        let p = if h1 { b.h1_upstream() } else { b }.start().await;
        for (what, answer) in send_bad_chunks(&p).await {
            if let Some(a) = answer {
                assert!(
                    a.status.is_client_error() || a.status.is_server_error(),
                    "{what}: {}",
                    a.status
                );
                assert_no_secret(&a, &p.secrets());
            }
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let seen = p.upstream(0).requests();
        assert!(
            seen.iter().all(|r| r.body.is_empty()),
            "a broken body reached the upstream: {seen:?}"
        );
        assert_still_serves(&p).await;
        p.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_chunked_body_is_400_or_closed() {
    for h1 in [true, false] {
        let b = Builder::new();
        let p = if h1 { b.h1_upstream() } else { b }.start().await;
        for (what, answer) in send_bad_chunks(&p).await {
            if let Some(a) = answer {
                assert_eq!(
                    a.status,
                    StatusCode::BAD_REQUEST,
                    "h1 upstream {h1}: {what}: {:?}",
                    a.body
                );
            }
        }
        p.stop().await;
    }
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

/// Accepts any server certificate and remembers the end-entity one (to see what was presented).
#[derive(Debug)]
struct RecordingVerifier {
    seen: Mutex<Option<CertificateDer<'static>>>,
    provider: Arc<rustls::crypto::CryptoProvider>,
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
async fn handshake_presenting(
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

fn leaf_of(pem: &str) -> CertificateDer<'static> {
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .next()
        .expect("a certificate")
        .expect("PEM")
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

/// Sends `GET <raw target>` (Connection: close) and returns everything read until the close.
async fn raw_target(p: &TestProxy, raw: &[u8]) -> Vec<u8> {
    let mut req = b"GET ".to_vec();
    req.extend_from_slice(raw);
    req.extend_from_slice(
        format!(
            " HTTP/1.1\r\nHost: localhost\r\nAuthorization: {}\r\nConnection: close\r\n\r\n",
            bearer(OKTA)
        )
        .as_bytes(),
    );
    let mut tls = h1_conn(p).await;
    tls.write_all(&req).await.unwrap();
    wait_closed(&mut tls, STEP).await.expect("closed").bytes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn percent_ff_in_the_query_is_forwarded_byte_for_byte_but_in_the_path_or_raw_is_400() {
    let p = Builder::new().start().await;
    // The query is the upstream's to decode: passed on exactly as sent.
    let target = "/SCIM/v2/Users/abc%C3%A9?filter=userName%20eq%20%22%FF%C3%A9%22";
    let a = p
        .raw(head("GET", target, "Connection: close\r\n").as_bytes())
        .await;
    assert_eq!(
        a.status,
        StatusCode::NOT_FOUND,
        "the upstream's own answer: {:?}",
        a.body
    );
    let seen = p.upstream(0).requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0].path_and_query,
        "/api/v2/scim/Users/abc%C3%A9?filter=userName%20eq%20%22%FF%C3%A9%22"
    );
    // A path escape that is not UTF-8 means different things to different decoders: 400.
    let a = p
        .raw(head("GET", "/SCIM/v2/Users/%FF%fe", "Connection: close\r\n").as_bytes())
        .await;
    p.assert_error(&a, 400, &["not UTF-8"]);
    assert_eq!(p.upstream(0).requests().len(), 1, "nothing more forwarded");
    // Raw bytes that are not UTF-8 in the request line: hyper refuses them, nothing is forwarded.
    for raw in [
        &b"/SCIM/v2/Users/\xff"[..],
        b"/SCIM/v2/Users?filter=\xff",
        b"/SCIM/v2/Users/\xc3",
    ] {
        let ended = raw_target(&p, raw).await;
        let a = parse_response(&ended).unwrap_or_else(|e| panic!("{raw:?}: {e}"));
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{raw:?}");
    }
    assert_eq!(p.upstream_total(), 1, "nothing more may be forwarded");
    // Raw UTF-8 (not percent-encoded) is either refused or forwarded exactly as sent.
    let ended = raw_target(&p, "/SCIM/v2/Users/\u{e9}".as_bytes()).await;
    let a = parse_response(&ended).expect("an answer");
    let seen = p.upstream(0).requests();
    if a.status == StatusCode::BAD_REQUEST {
        assert_eq!(seen.len(), 1);
    } else {
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[1].path_and_query, "/api/v2/scim/Users/\u{e9}");
    }
    assert_still_serves(&p).await;
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlong_paths_are_414_or_431_and_not_forwarded() {
    let p = Builder::new()
        .limit("max_header_bytes", "\"128KiB\"")
        .start()
        .await;
    // Over the proxy's 8 KiB: 414 with a SCIM Error.
    let path = format!("/SCIM/v2/Users/{}", "a".repeat(9 * 1024));
    let a = p
        .raw(head("GET", &path, "Connection: close\r\n").as_bytes())
        .await;
    p.assert_error(&a, 414, &[]);
    // Over what http::Uri holds (64 KiB): hyper's 414; over max_header_bytes: hyper's 431.
    for (len, want) in [
        (70 * 1024, StatusCode::URI_TOO_LONG),
        (200 * 1024, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE),
    ] {
        let path = format!("/SCIM/v2/Users/{}", "a".repeat(len));
        let mut tls = h1_conn(&p).await;
        write_lenient(
            &mut tls,
            head("GET", &path, "Connection: close\r\n").as_bytes(),
        )
        .await;
        let ended = wait_closed(&mut tls, STEP).await.expect("closed");
        let a = parse_response(&ended.bytes).unwrap_or_else(|e| panic!("{len}: {e}"));
        assert_eq!(a.status, want, "{len}");
    }
    assert_eq!(p.upstream_total(), 0, "nothing may be forwarded");
    assert_still_serves(&p).await;
    p.stop().await;
}

/// An h2 connection (by ALPN) to the proxy, its connection task spawned.
async fn h2_connect(
    p: &TestProxy,
) -> (
    h2::client::SendRequest<Bytes>,
    tokio::task::JoinHandle<Result<(), h2::Error>>,
) {
    let tls = tls_connect(p.addr, h2_tls(p.ca_pem())).await.expect("TLS");
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (client, conn) = tokio::time::timeout(STEP, h2::client::handshake(tls))
        .await
        .expect("h2 handshake in time")
        .expect("h2 handshake");
    (client, tokio::spawn(conn))
}

fn h2_get(path: &str, token: Option<&str>) -> http::Request<()> {
    let mut b = http::Request::builder()
        .method(Method::GET)
        .uri(format!("https://localhost{path}"));
    if let Some(t) = token {
        b = b.header("authorization", bearer(t));
    }
    b.body(()).unwrap()
}

/// One raw HTTP/2 frame.
fn h2_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).unwrap().to_be_bytes();
    let mut f = vec![len[1], len[2], len[3], kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// Frames (type, flags, stream, payload) in `bytes`, up to the first incomplete one.
fn h2_frames(mut bytes: &[u8]) -> Vec<(u8, u8, u32, Vec<u8>)> {
    let mut out = Vec::new();
    while bytes.len() >= 9 {
        let len = usize::from(bytes[0]) << 16 | usize::from(bytes[1]) << 8 | usize::from(bytes[2]);
        if bytes.len() < 9 + len {
            break;
        }
        let stream = u32::from_be_bytes([bytes[5], bytes[6], bytes[7], bytes[8]]) & 0x7fff_ffff;
        out.push((bytes[3], bytes[4], stream, bytes[9..9 + len].to_vec()));
        bytes = &bytes[9 + len..];
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_rapid_reset_flood_gets_goaway_enhance_your_calm() {
    let p = Builder::new().start().await;
    let mut tls = tls_connect(p.addr, h2_tls(p.ca_pem())).await.expect("TLS");
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    // Written frame by frame, as a client that does not wait for anything (CVE-2023-44487): the
    // preface, empty SETTINGS, then HEADERS (GET / without credentials) + RST_STREAM(CANCEL) pairs.
    let mut hpack = vec![0x82, 0x87, 0x84, 0x01, 0x09];
    hpack.extend_from_slice(b"localhost");
    let mut start = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    start.extend(h2_frame(0x4, 0, 0, &[]));
    tls.write_all(&start).await.unwrap();
    let mut sent = 0u32;
    for batch in 0..40u32 {
        let mut flood = Vec::new();
        for i in 0..100u32 {
            let id = 1 + 2 * (batch * 100 + i);
            flood.extend(h2_frame(0x1, 0x4 | 0x1, id, &hpack));
            flood.extend(h2_frame(0x3, 0, id, &0x8u32.to_be_bytes()));
        }
        if write_lenient(&mut tls, &flood).await < flood.len() {
            break;
        }
        sent += 100;
    }
    let ended = wait_closed(&mut tls, STEP)
        .await
        .unwrap_or_else(|_| panic!("the connection is still open after {sent} resets"));
    let frames = h2_frames(&ended.bytes);
    let goaway = frames.iter().find(|f| f.0 == 0x7).unwrap_or_else(|| {
        panic!(
            "no GOAWAY after {sent} resets: {:?}",
            frames.iter().map(|f| f.0).collect::<Vec<_>>()
        )
    });
    let code = u32::from_be_bytes([goaway.3[4], goaway.3[5], goaway.3[6], goaway.3[7]]);
    assert_eq!(code, 0xb, "GOAWAY error code must be ENHANCE_YOUR_CALM");
    let last_stream =
        u32::from_be_bytes([goaway.3[0], goaway.3[1], goaway.3[2], goaway.3[3]]) & 0x7fff_ffff;
    // Stopped after about max_pending_accept_reset_streams (64) streams, not after the flood.
    assert!(
        last_stream < 1000,
        "GOAWAY only after stream {last_stream} ({sent} sent)"
    );
    assert_eq!(p.upstream_total(), 0, "nothing may be forwarded");
    assert_still_serves(&p).await;
    p.stop().await;
}

/// RFC 9113 §8.3.1: a `host` header that differs from `:authority` makes the request malformed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_host_header_differing_from_authority_is_refused_and_not_forwarded() {
    let p = Builder::new().start().await;
    let (client, conn) = h2_connect(&p).await;
    let mut client = tokio::time::timeout(STEP, client.ready())
        .await
        .unwrap()
        .unwrap();
    let mut req = h2_get("/SCIM/v2/Users", Some(OKTA));
    req.headers_mut()
        .insert("host", http::HeaderValue::from_static("evil.example"));
    let (response, _) = client.send_request(req, true).expect("sent");
    let res = tokio::time::timeout(STEP, response).await.unwrap();
    match res {
        Ok(res) => assert_eq!(res.status(), StatusCode::BAD_REQUEST),
        Err(e) => assert!(e.is_reset(), "{e:?}"),
    }
    // The same host as :authority is fine.
    let mut req = h2_get("/SCIM/v2/Users", Some(OKTA));
    req.headers_mut()
        .insert("host", http::HeaderValue::from_static("localhost"));
    let (response, _) = client.send_request(req, true).expect("sent");
    let res = tokio::time::timeout(STEP, response).await.unwrap().unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        p.upstream_total(),
        1,
        "only the consistent request is forwarded"
    );
    conn.abort();
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_oversized_header_list_is_refused_and_not_forwarded() {
    let p = Builder::new().start().await;
    let (client, conn) = h2_connect(&p).await;
    let mut client = tokio::time::timeout(STEP, client.ready())
        .await
        .unwrap()
        .unwrap();
    // 24 KiB of headers (max_header_bytes, and so SETTINGS_MAX_HEADER_LIST_SIZE, is 16 KiB). The
    // h2 client does not check the peer's limit, so the server has to.
    let mut req = h2_get("/SCIM/v2/Users", Some(OKTA));
    for i in 0..24 {
        req.headers_mut().insert(
            http::HeaderName::from_bytes(format!("x-big-{i}").as_bytes()).unwrap(),
            http::HeaderValue::from_str(&"b".repeat(1000)).unwrap(),
        );
    }
    let (response, _) = client.send_request(req, true).expect("sent");
    let res = tokio::time::timeout(STEP, response)
        .await
        .expect("an answer in time")
        .expect("a response");
    assert_eq!(res.status(), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    assert_eq!(p.upstream_total(), 0, "nothing may be forwarded");
    // The stream was refused, not the connection: it still serves a normal request.
    let mut client = tokio::time::timeout(STEP, client.ready())
        .await
        .unwrap()
        .unwrap();
    let (response, _) = client
        .send_request(h2_get("/SCIM/v2/Users", Some(OKTA)), true)
        .unwrap();
    let res = tokio::time::timeout(STEP, response).await.unwrap().unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(p.upstream_total(), 1);
    conn.abort();
    assert_still_serves(&p).await;
    p.stop().await;
}

// ------------------------------------------------------------------------------------------ 2. limits and timeouts

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_heads_are_cut_after_header_read_timeout() {
    let p = Builder::new()
        .limit("header_read_timeout", "\"1s\"")
        .start()
        .await;
    let full = head("GET", "/SCIM/v2/Users", "");
    // Half a head, then nothing.
    let stall = async {
        let mut tls = h1_conn(&p).await;
        tls.write_all(&full.as_bytes()[..full.len() / 2])
            .await
            .unwrap();
        tls.flush().await.unwrap();
        wait_closed(&mut tls, Duration::from_secs(15)).await
    };
    // A byte every 200 ms (each read is recent, but the head never completes): at most 60 bytes.
    let trickle = async {
        let mut tls = h1_conn(&p).await;
        let started = Instant::now();
        for b in full.as_bytes().iter().take(60) {
            if tls.write_all(&[*b]).await.is_err() || tls.flush().await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let ended = wait_closed(&mut tls, Duration::from_secs(15)).await;
        (started.elapsed(), ended)
    };
    let (stalled, (trickled_for, trickled)) = tokio::join!(stall, trickle);
    let stalled = stalled.expect("a stalled head must be cut");
    assert!(
        stalled.after < Duration::from_secs(8),
        "{:?}",
        stalled.after
    );
    assert!(!String::from_utf8_lossy(&stalled.bytes).contains("200 OK"));
    let trickled = trickled.expect("a trickled head must be cut");
    assert!(trickled_for < Duration::from_secs(10), "{trickled_for:?}");
    assert!(!String::from_utf8_lossy(&trickled.bytes).contains("200 OK"));
    assert_eq!(p.upstream_total(), 0, "nothing may be forwarded");
    assert_still_serves(&p).await;
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_tls_handshakes_are_cut_after_tls_handshake_timeout() {
    let p = Builder::new()
        .limit("tls_handshake_timeout", "\"1s\"")
        .start()
        .await;
    // Nothing at all after the TCP connect; and the first bytes of a ClientHello record only.
    let silent = async {
        let mut tcp = TcpStream::connect(p.addr).await.unwrap();
        wait_closed(&mut tcp, Duration::from_secs(15)).await
    };
    let partial = async {
        let mut tcp = TcpStream::connect(p.addr).await.unwrap();
        tcp.write_all(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
            .await
            .unwrap();
        wait_closed(&mut tcp, Duration::from_secs(15)).await
    };
    let (silent, partial) = tokio::join!(silent, partial);
    for (what, ended) in [("silent", silent), ("partial ClientHello", partial)] {
        let ended = ended.unwrap_or_else(|_| panic!("{what}: still open after 15 s"));
        assert!(
            ended.after < Duration::from_secs(8),
            "{what}: {:?}",
            ended.after
        );
        assert!(ended.bytes.is_empty(), "{what}: {:?}", ended.bytes);
    }
    assert_still_serves(&p).await;
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_closed_after_idle_timeout_but_not_while_a_request_is_in_flight() {
    let p = Builder::new().limit("idle_timeout", "\"1s\"").start().await;
    // HTTP/2: one request, then quiet. The server ends the connection (GOAWAY) by itself.
    let (client, conn) = h2_connect(&p).await;
    let mut client = tokio::time::timeout(STEP, client.ready())
        .await
        .unwrap()
        .unwrap();
    let (response, _) = client
        .send_request(h2_get("/SCIM/v2/Users", Some(OKTA)), true)
        .unwrap();
    let res = tokio::time::timeout(STEP, response).await.unwrap().unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    drop(res);
    let started = Instant::now();
    let ended = tokio::time::timeout(Duration::from_secs(15), conn)
        .await
        .expect("an idle HTTP/2 connection must be closed")
        .expect("connection task");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert!(
        ended.is_ok() || ended.as_ref().is_err_and(|e| e.is_go_away() || e.is_io()),
        "{ended:?}"
    );
    // HTTP/1.1 keep-alive: the same.
    let mut tls = h1_conn(&p).await;
    tls.write_all(head("GET", "/SCIM/v2/Users", "").as_bytes())
        .await
        .unwrap();
    let a = read_one(&mut tls, STEP).await.unwrap();
    assert_eq!(a.status, StatusCode::OK);
    let ended = wait_closed(&mut tls, Duration::from_secs(15))
        .await
        .expect("an idle HTTP/1.1 connection must be closed");
    assert!(ended.after < Duration::from_secs(10), "{:?}", ended.after);
    // A request that takes longer than idle_timeout upstream is not cut.
    p.upstream(0).push_override(Override {
        status: StatusCode::OK,
        headers: vec![("content-type".into(), "application/scim+json".into())],
        body: Bytes::from_static(b"{\"slow\":true}"),
        delay: Duration::from_millis(2500),
    });
    let (client, conn) = h2_connect(&p).await;
    let mut client = tokio::time::timeout(STEP, client.ready())
        .await
        .unwrap()
        .unwrap();
    let (response, _) = client
        .send_request(h2_get("/SCIM/v2/Users", Some(OKTA)), true)
        .unwrap();
    let res = tokio::time::timeout(STEP, response)
        .await
        .unwrap()
        .expect("the slow answer");
    assert_eq!(res.status(), StatusCode::OK);
    let mut body = res.into_body();
    let chunk = tokio::time::timeout(STEP, body.data()).await.unwrap();
    assert_eq!(
        chunk.unwrap().unwrap(),
        Bytes::from_static(b"{\"slow\":true}")
    );
    conn.abort();
    assert_eq!(p.upstream_total(), 3);
    p.stop().await;
}

/// An HTTP/2 client that sends nothing but PINGs (and ACKs the server's) holds no request: it is
/// closed with a GOAWAY at idle_timeout. Before, every PING counted as activity, so any h2 library
/// held a connection slot forever with no token and no effort.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_connection_kept_warm_only_by_pings_is_closed_at_idle_timeout() {
    let p = Builder::new().limit("idle_timeout", "\"1s\"").start().await;
    let mut tls = tls_connect(p.addr, h2_tls(p.ca_pem())).await.expect("TLS");
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let mut start = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    start.extend(h2_frame(0x4, 0, 0, &[]));
    tls.write_all(&start).await.unwrap();
    let started = Instant::now();
    let mut seen = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    let mut pings = 0u64;
    let closed = loop {
        assert!(
            started.elapsed() < Duration::from_secs(12),
            "still open after {pings} PINGs: frames {:?}",
            h2_frames(&seen).iter().map(|f| f.0).collect::<Vec<_>>()
        );
        pings += 1;
        let mut out = h2_frame(0x6, 0, 0, &pings.to_be_bytes());
        // ACK the server's SETTINGS and PINGs, as every h2 library does.
        for (kind, flags, _, payload) in h2_frames(&seen) {
            if kind == 0x6 && flags & 0x1 == 0 {
                out.extend(h2_frame(0x6, 0x1, 0, &payload));
            }
        }
        if write_lenient(&mut tls, &out).await < out.len() {
            break true;
        }
        seen.clear();
        match tokio::time::timeout(Duration::from_millis(300), tls.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break true,
            Ok(Ok(n)) => seen.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
        if h2_frames(&seen).iter().any(|f| f.0 == 0x7) {
            break wait_closed(&mut tls, Duration::from_secs(8)).await.is_ok();
        }
    };
    assert!(closed, "GOAWAY sent but the connection stayed open");
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
    assert_still_serves(&p).await;
    p.stop().await;
}

/// A TLS connection that sends no byte after the handshake is closed at header_read_timeout
/// (before: only at idle_timeout, as the HTTP version sniffing ran before hyper's own timer).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_connection_silent_after_the_handshake_is_closed_at_header_read_timeout() {
    let p = Builder::new()
        .limit("header_read_timeout", "\"1s\"")
        .limit("idle_timeout", "\"60s\"")
        .start()
        .await;
    for alpn in [h1_tls(p.ca_pem()), h2_tls(p.ca_pem())] {
        let mut tls = tls_connect(p.addr, alpn).await.expect("TLS");
        let ended = wait_closed(&mut tls, Duration::from_secs(8))
            .await
            .expect("a silent connection must be closed at header_read_timeout");
        assert!(
            ended.after >= Duration::from_millis(900),
            "{:?}",
            ended.after
        );
    }
    assert_still_serves(&p).await;
    p.stop().await;
}

/// A request body that stops after one byte is answered 408 (SCIM Error) at body_read_timeout,
/// frees the IdP's slot, and nothing reaches the upstream whole: buffered JSON and a streamed body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_body_that_stops_arriving_is_408_and_never_completed_upstream() {
    let p = Builder::new()
        .limit("body_read_timeout", "\"1s\"")
        .limit("max_requests_per_client", "1")
        .start()
        .await;
    for content_type in ["application/scim+json", "application/octet-stream"] {
        let mut tls = h1_conn(&p).await;
        let head = head(
            "POST",
            "/SCIM/v2/Users",
            &format!("Content-Type: {content_type}\r\nContent-Length: 100\r\n"),
        );
        tls.write_all(head.as_bytes()).await.unwrap();
        tls.write_all(b"{").await.unwrap();
        tls.flush().await.unwrap();
        let started = Instant::now();
        let a = read_one(&mut tls, Duration::from_secs(8))
            .await
            .unwrap_or_else(|e| panic!("{content_type}: {e}"));
        assert!(
            started.elapsed() >= Duration::from_millis(900),
            "{:?}",
            started.elapsed()
        );
        p.assert_error(&a, 408, &["body_read_timeout"]);
        assert_eq!(a.header("connection"), Some("close"), "{content_type}");
    }
    // The buffered JSON body never left; the streamed one was started and then aborted: the test
    // upstream records it (once its own read fails) with what it got, never the 100 bytes declared.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let seen = p.upstream(0).requests();
    assert!(seen.len() <= 1, "{}", seen.len());
    assert!(
        seen.iter().all(|r| r.body.len() < 100),
        "a stalled body completed upstream"
    );
    // The IdP's one slot is free again.
    assert_still_serves(&p).await;
    let lines = traffic_lines(&p, 3).await;
    let timed_out: Vec<_> = lines.iter().filter(|l| l["status"] == 408).collect();
    assert_eq!(timed_out.len(), 2, "{lines:?}");
    assert!(
        timed_out.iter().all(|l| l["error"] == "request-timeout"),
        "{timed_out:?}"
    );
    p.stop().await;
}

/// A client that stops reading its response blocks the proxy's writes: after idle_timeout of a
/// blocked write the connection is closed, although a request is still in flight.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_its_response_is_closed_after_idle_timeout() {
    const SIZE: usize = 32 * 1024 * 1024; // far more than loopback socket buffers hold
    let p = Builder::new().limit("idle_timeout", "\"1s\"").start().await;
    p.upstream(0).push_override(Override {
        status: StatusCode::OK,
        headers: vec![("content-type".into(), "application/octet-stream".into())],
        body: Bytes::from(vec![b'x'; SIZE]),
        delay: Duration::ZERO,
    });
    let mut tls = h1_conn(&p).await;
    tls.write_all(head("GET", "/SCIM/v2/Users", "").as_bytes())
        .await
        .unwrap();
    // Not reading for well past idle_timeout.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let ended = wait_closed(&mut tls, Duration::from_secs(10))
        .await
        .expect("the connection must be closed, not left waiting on the client");
    assert!(
        ended.bytes.len() < SIZE,
        "the whole response arrived ({} bytes): the stalled write was never cut",
        ended.bytes.len()
    );
    assert_still_serves(&p).await;
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_connections_refuses_the_next_at_once_and_accepts_again_after_a_close() {
    let p = Builder::new()
        .limit("max_connections", "3")
        .limit("header_read_timeout", "\"30s\"")
        .start()
        .await;
    // Three open connections, each having served a request (kept alive).
    let mut open = Vec::new();
    for _ in 0..3 {
        let mut tls = h1_conn(&p).await;
        tls.write_all(head("GET", "/SCIM/v2/Users", "").as_bytes())
            .await
            .unwrap();
        assert_eq!(
            read_one(&mut tls, STEP).await.unwrap().status,
            StatusCode::OK
        );
        open.push(tls);
    }
    // The fourth: TCP connects (the kernel accepts), then the proxy closes it at once.
    let started = Instant::now();
    let refused = tls_connect(p.addr, h1_tls(p.ca_pem())).await;
    assert!(refused.is_err(), "a fourth connection must not be served");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    // The three still serve.
    for tls in open.iter_mut() {
        tls.write_all(head("GET", "/SCIM/v2/Groups", "").as_bytes())
            .await
            .unwrap();
        assert_eq!(read_one(tls, STEP).await.unwrap().status, StatusCode::OK);
    }
    // One closes: a new connection is accepted again (once the proxy has seen the close).
    let mut gone = open.pop().unwrap();
    gone.shutdown().await.unwrap();
    drop(gone);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut tls = loop {
        match tls_connect(p.addr, h1_tls(p.ca_pem())).await {
            Ok(t) => break t,
            Err(e) => assert!(Instant::now() < deadline, "never accepted again: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    tls.write_all(head("GET", "/SCIM/v2/Users", "").as_bytes())
        .await
        .unwrap();
    assert_eq!(
        read_one(&mut tls, STEP).await.unwrap().status,
        StatusCode::OK
    );
    assert_eq!(p.upstream_total(), 7);
    drop(open);
    drop(tls);
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_requests_per_client_answers_429_beyond_it_and_other_idps_are_not_affected() {
    let p = Builder::new()
        .limit("max_requests_per_client", "2")
        .start()
        .await;
    let up = p.upstream(0).clone();
    for _ in 0..2 {
        up.push_override(Override {
            status: StatusCode::OK,
            headers: vec![("content-type".into(), "application/scim+json".into())],
            body: Bytes::from_static(b"{\"slow\":true}"),
            delay: Duration::from_secs(3),
        });
    }
    let slow: Vec<_> = (0..2)
        .map(|_| {
            let client = p.client.clone();
            tokio::spawn(async move {
                client
                    .send(Method::GET, "/SCIM/v2/Users", Some(OKTA), None)
                    .await
            })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(15);
    while up.requests().len() < 2 {
        assert!(
            Instant::now() < deadline,
            "the slow requests never reached the upstream"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Okta's third concurrent request: 429 at once, never forwarded.
    let a = p.get("/SCIM/v2/Users", OKTA).await;
    p.assert_error(&a, 429, &["in flight"]);
    assert_eq!(a.header("retry-after"), Some("1"));
    let a = p
        .send(
            Method::POST,
            "/SCIM/v2/Users",
            Some(OKTA),
            Some(&user("q@x.y")),
        )
        .await;
    p.assert_error(&a, 429, &[]);
    assert_eq!(up.requests().len(), 2, "a 429 must not be forwarded");
    // Entra, same route, meanwhile: served.
    let a = p.get("/SCIM/v2/Users", ENTRA).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(up.requests().len(), 3);
    for s in slow {
        let a = bounded("slow request", s)
            .await
            .unwrap()
            .expect("slow answer");
        assert_eq!(a.status, StatusCode::OK);
    }
    // The slots are free again.
    assert_still_serves(&p).await;
    p.stop().await;
}

// ------------------------------------------------------------------------------------------ 3. behind load balancers

/// TCP from `from` (a loopback address), `prefix` written first (a PROXY header), then TLS.
async fn tls_after(p: &TestProxy, from: Ipv4Addr, prefix: &[u8]) -> std::io::Result<ClientTls> {
    tokio::time::timeout(STEP, async {
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.bind(SocketAddr::from((from, 0)))?;
        let mut tcp = socket.connect(p.addr).await?;
        tcp.write_all(prefix).await?;
        TlsConnector::from(h1_tls(p.ca_pem()))
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
    })
    .await
    .map_err(|_| std::io::Error::other("timed out"))?
}

/// One GET over `tls` tagged with `id` as X-Request-Id.
async fn tagged_get(tls: &mut ClientTls, id: &str, extra: &str) -> Answer {
    let req = head(
        "GET",
        "/SCIM/v2/Users",
        &format!("X-Request-Id: {id}\r\n{extra}Connection: close\r\n"),
    );
    exchange(tls, req.as_bytes()).await.expect("an answer")
}

/// The traffic log line of request `id` (waiting for it, bounded).
async fn traffic_of(p: &TestProxy, id: &str) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(l) = p
            .traffic()
            .into_iter()
            .find(|l| l["request_id"] == json!(id))
        {
            return l;
        }
        assert!(Instant::now() < deadline, "no traffic line for {id}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn proxy_v2_header(src: &str, dst: &str) -> Vec<u8> {
    use ppp::v2;
    v2::Builder::with_addresses(
        v2::Version::Two | v2::Command::Proxy,
        v2::Protocol::Stream,
        (
            src.parse::<SocketAddr>().unwrap(),
            dst.parse::<SocketAddr>().unwrap(),
        ),
    )
    .build()
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_protocol_from_trusted_proxies_names_the_client() {
    let other_ok = can_bind(std::net::IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)));
    let p = Builder::new()
        .listen_extra(
            "proxy_protocol = true\ntrusted_proxies = [\"127.0.0.1/32\"]\nallow_cidrs = [\"198.51.100.0/24\", \"127.0.0.2/32\"]\n",
        )
        .start()
        .await;
    let lb = Ipv4Addr::LOCALHOST;
    // v1 and v2 headers naming an allowed client: served, logged with the client's address.
    let v1 = b"PROXY TCP4 198.51.100.7 127.0.0.1 40001 8443\r\n".to_vec();
    let v2 = proxy_v2_header("198.51.100.7:40002", "127.0.0.1:8443");
    for (id, header) in [("pp-v1", v1), ("pp-v2", v2)] {
        let mut tls = tls_after(&p, lb, &header).await.expect("served");
        let a = tagged_get(&mut tls, id, "").await;
        assert_eq!(a.status, StatusCode::OK, "{id}");
        assert_eq!(
            traffic_of(&p, id).await["src_ip"],
            json!("198.51.100.7"),
            "{id}"
        );
    }
    assert_eq!(p.upstream_total(), 2);
    // Refused before TLS: a client outside allow_cidrs, no header, an UNKNOWN/LOCAL header (the
    // load balancer itself is not allowed), garbage.
    let refused: Vec<(&str, Vec<u8>)> = vec![
        (
            "v1 naming 203.0.113.9",
            b"PROXY TCP4 203.0.113.9 127.0.0.1 40003 8443\r\n".to_vec(),
        ),
        (
            "v2 naming 203.0.113.9",
            proxy_v2_header("203.0.113.9:40004", "127.0.0.1:8443"),
        ),
        ("no header", Vec::new()),
        ("v1 UNKNOWN", b"PROXY UNKNOWN\r\n".to_vec()),
        (
            "a broken v1 header",
            b"PROXY TCP4 198.51.100.7\r\n".to_vec(),
        ),
    ];
    for (what, header) in refused {
        let r = tls_after(&p, lb, &header).await;
        assert!(r.is_err(), "{what}: must be closed before TLS");
    }
    // A PROXY header from a peer that is not a trusted proxy is not believed (it breaks TLS), and
    // that peer, when allowed itself, is served as itself.
    if other_ok {
        let other = Ipv4Addr::new(127, 0, 0, 2);
        let r = tls_after(
            &p,
            other,
            b"PROXY TCP4 198.51.100.7 127.0.0.1 40005 8443\r\n",
        )
        .await;
        assert!(
            r.is_err(),
            "a PROXY header from an untrusted peer must not be accepted"
        );
        let mut tls = tls_after(&p, other, b"")
            .await
            .expect("an allowed direct client");
        let a = tagged_get(&mut tls, "pp-direct", "").await;
        assert_eq!(a.status, StatusCode::OK);
        assert_eq!(
            traffic_of(&p, "pp-direct").await["src_ip"],
            json!("127.0.0.2")
        );
    }
    assert_eq!(
        p.upstream_total(),
        2 + usize::from(other_ok),
        "nothing refused was forwarded"
    );
    // Still serving through the load balancer.
    let mut tls = tls_after(&p, lb, b"PROXY TCP4 198.51.100.9 127.0.0.1 40006 8443\r\n")
        .await
        .expect("served");
    assert_eq!(
        tagged_get(&mut tls, "pp-after", "").await.status,
        StatusCode::OK
    );
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x_forwarded_for_is_ignored_without_trusted_proxies() {
    let p = Builder::new()
        .listen_extra("allow_cidrs = [\"127.0.0.0/8\"]\n")
        .start()
        .await;
    for (id, xff) in [("xff-1", "1.2.3.4"), ("xff-2", "198.51.100.7, 203.0.113.9")] {
        let mut tls = h1_conn(&p).await;
        let claims = format!(
            "X-Forwarded-For: {xff}\r\nX-Forwarded-Host: evil.example\r\nX-Forwarded-Proto: http\r\nForwarded: for=1.2.3.4;host=evil.example\r\nX-Real-IP: 1.2.3.4\r\n"
        );
        let a = tagged_get(&mut tls, id, &claims).await;
        assert_eq!(a.status, StatusCode::OK, "{xff}");
        assert_eq!(
            traffic_of(&p, id).await["src_ip"],
            json!("127.0.0.1"),
            "{xff}"
        );
    }
    assert_eq!(p.upstream_total(), 2);
    // An untrusted client's claims about itself never reach the upstream.
    for r in p.upstream(0).requests() {
        for name in [
            "x-forwarded-for",
            "x-forwarded-host",
            "x-forwarded-proto",
            "forwarded",
            "x-real-ip",
        ] {
            assert!(!r.headers.contains_key(name), "{name} reached the upstream");
        }
    }
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x_forwarded_for_from_trusted_proxies_gives_the_nearest_untrusted_hop() {
    let other_ok = can_bind(std::net::IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)));
    let p = Builder::new()
        .listen_extra(
            "trusted_proxies = [\"127.0.0.1/32\", \"10.0.0.0/8\"]\nallow_cidrs = [\"127.0.0.0/8\", \"198.51.100.0/24\"]\n",
        )
        .start()
        .await;
    // (id, X-Forwarded-For lines, the client address it means, allowed)
    let cases: [(&str, &[&str], &str, bool); 5] = [
        (
            "a",
            &["203.0.113.9, 198.51.100.7, 10.1.2.3"],
            "198.51.100.7",
            true,
        ),
        ("b", &["198.51.100.7, 203.0.113.9"], "203.0.113.9", false),
        ("c", &["198.51.100.7", "203.0.113.9"], "203.0.113.9", false),
        ("d", &["203.0.113.9", "198.51.100.8"], "198.51.100.8", true),
        ("e", &["10.0.0.1, 10.0.0.2"], "127.0.0.1", true),
    ];
    let mut forwarded = 0;
    for (id, lines, client, allowed) in cases {
        let extra: String = lines
            .iter()
            .map(|l| format!("X-Forwarded-For: {l}\r\n"))
            .collect();
        let mut tls = h1_conn(&p).await;
        let a = tagged_get(&mut tls, id, &extra).await;
        if allowed {
            assert_eq!(a.status, StatusCode::OK, "{id}");
            forwarded += 1;
        } else {
            p.assert_error(&a, 403, &[]);
        }
        assert_eq!(traffic_of(&p, id).await["src_ip"], json!(client), "{id}");
        assert_eq!(
            p.upstream_total(),
            forwarded,
            "{id}: a 403 must not be forwarded"
        );
    }
    // From a peer that is not a trusted proxy, X-Forwarded-For is not believed.
    if other_ok {
        let mut tls = tls_after(&p, Ipv4Addr::new(127, 0, 0, 2), b"")
            .await
            .unwrap();
        let a = tagged_get(&mut tls, "f", "X-Forwarded-For: 203.0.113.9\r\n").await;
        assert_eq!(a.status, StatusCode::OK);
        assert_eq!(traffic_of(&p, "f").await["src_ip"], json!("127.0.0.2"));
    }
    // A trusted proxy's X-Forwarded-For is passed on; an untrusted peer's is not.
    let xff_upstream: Vec<Option<String>> = p
        .upstream(0)
        .requests()
        .iter()
        .map(|r| {
            r.headers
                .get("x-forwarded-for")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(
        xff_upstream.first().cloned().flatten().as_deref(),
        Some("203.0.113.9, 198.51.100.7, 10.1.2.3"),
        "{xff_upstream:?}"
    );
    if other_ok {
        assert_eq!(
            xff_upstream.last().cloned().flatten(),
            None,
            "{xff_upstream:?}"
        );
    }
    p.stop().await;
}

// ------------------------------------------------------------------------------------------ 4. upstream faults

/// What a [`Scripted`] upstream does with the n-th request on a connection.
#[derive(Clone, Debug)]
enum Step {
    /// Write these bytes (a whole response) and keep the connection.
    Answer(Vec<u8>),
    /// Write these bytes (a response cut short) and close.
    AnswerThenClose(Vec<u8>),
    /// Read the request whole, then close without a word.
    Close,
}

/// A request a [`Scripted`] upstream read whole.
#[derive(Clone, Debug)]
struct Seen {
    conn: usize,
    method: String,
    target: String,
    body: Vec<u8>,
}

/// A TLS (http/1.1) upstream that follows a script per connection; steps past the end repeat the
/// last one. With `idle_close`, a connection with no new request within it is closed (the upstream's
/// keep-alive timeout).
struct Scripted {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

fn ok_json(body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/scim+json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

impl Scripted {
    async fn start(cert: &IssuedCert, script: Vec<Step>, idle_close: Option<Duration>) -> Scripted {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut tls = (*devcerts::server_config(cert).unwrap()).clone();
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = TlsAcceptor::from(Arc::new(tls));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let conns = Arc::new(AtomicUsize::new(0));
        let seen2 = seen.clone();
        let task = tokio::spawn(async move {
            let mut set = tokio::task::JoinSet::new();
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let conn = conns.fetch_add(1, Ordering::SeqCst);
                let (acceptor, script, seen) = (acceptor.clone(), script.clone(), seen2.clone());
                set.spawn(async move {
                    let Ok(Ok(mut s)) = tokio::time::timeout(STEP, acceptor.accept(tcp)).await
                    else {
                        return;
                    };
                    let mut buf = Vec::new();
                    for n in 0.. {
                        let wait = if n == 0 {
                            STEP
                        } else {
                            idle_close.unwrap_or(STEP)
                        };
                        let Some((method, target, body)) =
                            read_request(&mut s, &mut buf, wait).await
                        else {
                            return;
                        };
                        seen.lock().unwrap().push(Seen {
                            conn,
                            method,
                            target,
                            body,
                        });
                        match script.get(n).or(script.last()).cloned() {
                            Some(Step::Answer(bytes)) => {
                                if s.write_all(&bytes).await.is_err() || s.flush().await.is_err() {
                                    return;
                                }
                            }
                            Some(Step::AnswerThenClose(bytes)) => {
                                let _ = s.write_all(&bytes).await;
                                let _ = s.flush().await;
                                let _ = s.get_mut().0.shutdown().await;
                                return;
                            }
                            Some(Step::Close) | None => {
                                let _ = s.get_mut().0.shutdown().await;
                                return;
                            }
                        }
                    }
                });
            }
        });
        Scripted { addr, seen, task }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn stop(self) {
        self.task.abort();
    }
}

/// Reads one request (head and a Content-Length or chunked body) within `limit`.
async fn read_request<S: AsyncRead + Unpin>(
    s: &mut S,
    buf: &mut Vec<u8>,
    limit: Duration,
) -> Option<(String, String, Vec<u8>)> {
    let deadline = tokio::time::Instant::now() + limit;
    let mut tmp = vec![0u8; 16 * 1024];
    let fill = |buf: &mut Vec<u8>, n: usize, tmp: &[u8]| buf.extend_from_slice(&tmp[..n]);
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        match tokio::time::timeout_at(deadline, s.read(&mut tmp)).await {
            Ok(Ok(n)) if n > 0 => fill(buf, n, &tmp),
            _ => return None,
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    buf.drain(..head_end + 4);
    let mut first = head.lines().next().unwrap_or_default().split(' ');
    let method = first.next().unwrap_or_default().to_string();
    let target = first.next().unwrap_or_default().to_string();
    let lower = head.to_ascii_lowercase();
    let len = lower
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok());
    let chunked = lower.contains("transfer-encoding: chunked");
    loop {
        let done = match len {
            Some(n) => buf.len() >= n,
            None if chunked => buf.ends_with(b"0\r\n\r\n"),
            None => true,
        };
        if done {
            let n = len.unwrap_or(buf.len());
            return Some((method, target, buf.drain(..n).collect()));
        }
        match tokio::time::timeout_at(deadline, s.read(&mut tmp)).await {
            Ok(Ok(n)) if n > 0 => fill(buf, n, &tmp),
            _ => return None,
        }
    }
}

/// A proxy in front of a [`Scripted`] upstream.
async fn behind_scripted(
    b: Builder,
    script: Vec<Step>,
    idle_close: Option<Duration>,
) -> (TestProxy, Scripted) {
    let mut prepared = b.placeholder_upstream().prepare().await;
    let up = Scripted::start(&prepared.upstream_cert, script, idle_close).await;
    prepared.point_at(up.addr);
    (prepared.start().await, up)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_upstream_connect_is_retried_once_then_502_quickly() {
    let port = unused_port().await;
    let p = Builder::new()
        .placeholder_upstream()
        .route(|r| r.target(Target::Url(format!("https://127.0.0.1:{port}/api/v2/scim"))))
        .start()
        .await;
    for (i, method) in [Method::GET, Method::POST, Method::DELETE]
        .into_iter()
        .enumerate()
    {
        let started = Instant::now();
        let body = (method == Method::POST).then(|| user("r@x.y"));
        let a = p
            .send(
                method.clone(),
                "/SCIM/v2/Users/x",
                Some(OKTA),
                body.as_ref(),
            )
            .await;
        let took = started.elapsed();
        p.assert_error(&a, 502, &["connect"]);
        // A refused loopback connect takes microseconds: the 50-250 ms pause is the one retry.
        assert!(
            took >= Duration::from_millis(50),
            "{method}: no retry pause ({took:?})"
        );
        assert!(took < Duration::from_secs(5), "{method}: {took:?}");
        let lines = traffic_lines(&p, i + 1).await;
        assert_eq!(lines[i]["error"], json!("upstream-connect"), "{}", lines[i]);
    }
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_closing_mid_body_gives_the_client_a_truncated_response() {
    // Non-JSON with a Content-Length: streamed, so the head is out before the body breaks.
    let cut_sized =
        b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 100000\r\n\r\n"
            .iter()
            .copied()
            .chain(std::iter::repeat_n(b'x', 1000))
            .collect::<Vec<u8>>();
    let cut_chunked =
        b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\n\r\n3e8\r\n"
            .iter()
            .copied()
            .chain(std::iter::repeat_n(b'y', 1000))
            .chain(b"\r\n3e8\r\nyyy".iter().copied())
            .collect::<Vec<u8>>();
    let (p, up) =
        behind_scripted(Builder::new(), vec![Step::AnswerThenClose(cut_sized)], None).await;
    // Raw HTTP/1.1: the head promised 100000 bytes; fewer came and then the connection closed.
    let mut tls = h1_conn(&p).await;
    tls.write_all(head("GET", "/SCIM/v2/Users/big", "X-Request-Id: cut-1\r\n").as_bytes())
        .await
        .unwrap();
    let ended = wait_closed(&mut tls, STEP)
        .await
        .expect("the proxy must close the connection");
    let text = String::from_utf8_lossy(&ended.bytes);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(
        parse_response(&ended.bytes).is_err(),
        "presented as complete: {} bytes",
        ended.bytes.len()
    );
    // Through an HTTP client, over HTTP/1.1 and HTTP/2: an error, not a short 200.
    let h2 = ScimClient::new(
        &p.base,
        devcerts::client_config(p.ca_pem(), &[]).unwrap(),
        true,
    );
    for (client, id) in [(&p.client, "cut-2"), (&h2, "cut-3")] {
        let req = p
            .req(Method::GET, "/SCIM/v2/Users/big")
            .header("authorization", bearer(OKTA))
            .header("x-request-id", id)
            .body(http_body_util::Full::new(Bytes::new()))
            .unwrap();
        let r = client.request(req).await;
        assert!(r.is_err(), "{id}: a truncated body must be an error: {r:?}");
    }
    for id in ["cut-1", "cut-2", "cut-3"] {
        let line = traffic_of(&p, id).await;
        assert_eq!(line["error"], json!("response-incomplete"), "{line}");
        assert!(line["bytes_out"].as_u64().unwrap() < 100_000, "{line}");
    }
    assert_eq!(up.seen().len(), 3, "each GET reached the upstream once");
    p.stop().await;
    up.stop();

    // Chunked, cut in the second chunk.
    let (p, up) = behind_scripted(
        Builder::new(),
        vec![Step::AnswerThenClose(cut_chunked)],
        None,
    )
    .await;
    let mut tls = h1_conn(&p).await;
    tls.write_all(head("GET", "/SCIM/v2/Users/big", "X-Request-Id: cut-4\r\n").as_bytes())
        .await
        .unwrap();
    let ended = wait_closed(&mut tls, STEP)
        .await
        .expect("the proxy must close the connection");
    assert!(String::from_utf8_lossy(&ended.bytes).starts_with("HTTP/1.1 200"));
    assert!(
        parse_response(&ended.bytes).is_err(),
        "presented as complete"
    );
    assert_eq!(
        traffic_of(&p, "cut-4").await["error"],
        json!("response-incomplete")
    );
    p.stop().await;
    up.stop();

    // Small JSON (read whole before answering): a clean 502.
    let cut_json = b"HTTP/1.1 200 OK\r\ncontent-type: application/scim+json\r\ncontent-length: 500\r\n\r\n{\"id\":\"1\",".to_vec();
    let (p, up) =
        behind_scripted(Builder::new(), vec![Step::AnswerThenClose(cut_json)], None).await;
    let a = p.get("/SCIM/v2/Users/1", OKTA).await;
    p.assert_error(&a, 502, &["broke off"]);
    assert_eq!(up.seen().len(), 1);
    p.stop().await;
    up.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_429_and_503_reach_the_idp_unchanged_and_are_not_retried() {
    let p = Builder::new().start().await;
    let up = p.upstream(0).clone();
    let h2 = ScimClient::new(
        &p.base,
        devcerts::client_config(p.ca_pem(), &[]).unwrap(),
        true,
    );
    let cases = [
        (
            StatusCode::TOO_MANY_REQUESTS,
            "application/json",
            "{\"status\":\"429\",\"detail\":\"rate limited\"}",
        ),
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            "down for maintenance",
        ),
    ];
    let mut expected = 0;
    for (status, ct, body) in cases {
        for (client, http2) in [(&p.client, false), (&h2, true)] {
            for method in [Method::GET, Method::POST, Method::PATCH] {
                let o = Override {
                    status,
                    headers: vec![
                        ("content-type".into(), ct.into()),
                        ("retry-after".into(), "17".into()),
                        ("ratelimit-limit".into(), "4".into()),
                        ("ratelimit-remaining".into(), "0".into()),
                        ("ratelimit-reset".into(), "17".into()),
                        ("ratelimit-policy".into(), "4;w=1".into()),
                    ],
                    body: Bytes::from_static(body.as_bytes()),
                    delay: Duration::ZERO,
                };
                up.push_override(o.clone());
                let a = client
                    .send(
                        method.clone(),
                        "/SCIM/v2/Users/u-1",
                        Some(OKTA),
                        (method != Method::GET).then(|| json!({"a": 1})).as_ref(),
                    )
                    .await
                    .unwrap();
                let what = format!("{status} {method} h2={http2}");
                assert_eq!(a.status, status, "{what}");
                assert_eq!(&a.body[..], body.as_bytes(), "{what}");
                for (k, v) in &o.headers {
                    assert_eq!(a.header(k), Some(v.as_str()), "{what}: {k}");
                }
                expected += 1;
                assert_eq!(
                    up.requests().len(),
                    expected,
                    "{what}: exactly one upstream request"
                );
            }
        }
    }
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pooled_connection_the_upstream_closed_costs_no_get_and_doubles_no_write() {
    // The upstream closes idle keep-alive connections after 300 ms (a keep-alive timeout shorter
    // than the proxy's pool idle timeout).
    let (p, up) = behind_scripted(
        Builder::new(),
        vec![Step::Answer(ok_json("{}"))],
        Some(Duration::from_millis(300)),
    )
    .await;
    assert_eq!(p.get("/SCIM/v2/Users", OKTA).await.status, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert_eq!(p.get("/SCIM/v2/Users", OKTA).await.status, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(900)).await;
    let a = p
        .send(
            Method::POST,
            "/SCIM/v2/Users",
            Some(OKTA),
            Some(&user("p@x.y")),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK);
    let seen = up.seen();
    let posts: Vec<&Seen> = seen.iter().filter(|s| s.method == "POST").collect();
    assert_eq!(posts.len(), 1, "{seen:?}");
    assert!(String::from_utf8_lossy(&posts[0].body).contains("p@x.y"));
    assert_eq!(seen.len(), 3, "{seen:?}");
    p.stop().await;
    up.stop();

    // The upstream reads the second request on a connection and hangs up without an answer
    // (the keep-alive race): a GET is sent again on a new connection and succeeds; a POST or a
    // DELETE is not sent again (502).
    let (p, up) = behind_scripted(
        Builder::new(),
        vec![Step::Answer(ok_json("{\"n\":1}")), Step::Close],
        None,
    )
    .await;
    assert_eq!(p.get("/SCIM/v2/Users", OKTA).await.status, StatusCode::OK);
    let a = p.get("/SCIM/v2/Users/retried", OKTA).await;
    assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
    let seen = up.seen();
    let gets: Vec<&Seen> = seen
        .iter()
        .filter(|s| s.target.ends_with("/retried"))
        .collect();
    assert_eq!(gets.len(), 2, "the GET went again, once: {seen:?}");
    assert_ne!(gets[0].conn, gets[1].conn, "on a new connection");
    for (method, path, body) in [
        (Method::POST, "/SCIM/v2/Users", Some(user("once@x.y"))),
        (Method::DELETE, "/SCIM/v2/Users/once", None),
    ] {
        // The request before it leaves a pooled connection whose next request is cut.
        assert_eq!(p.get("/SCIM/v2/Groups", OKTA).await.status, StatusCode::OK);
        let before = up.seen().len();
        let a = p
            .send(method.clone(), path, Some(OKTA), body.as_ref())
            .await;
        p.assert_error(&a, 502, &[]);
        tokio::time::sleep(Duration::from_millis(300)).await;
        let seen = up.seen();
        let sent: Vec<&Seen> = seen[before..]
            .iter()
            .filter(|s| s.method == method.as_str())
            .collect();
        assert_eq!(
            sent.len(),
            1,
            "{method} must reach the upstream once: {seen:?}"
        );
    }
    p.stop().await;
    up.stop();
}

// ------------------------------------------------------------------------------------------ 5. reload

/// A prepared config with `[reload] watch = true, interval = "200ms"`.
async fn watching(b: Builder) -> Prepared {
    let mut b = b;
    b.watch = true;
    let mut prepared = b.prepare().await;
    prepared.edit_config("watch = true\n", "watch = true\ninterval = \"200ms\"\n");
    prepared
}

fn authorization_of(r: &scim_proxy::lab::upstream::RecordedRequest) -> String {
    r.headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rewritten_token_file_alone_is_picked_up_without_a_signal() {
    let p = watching(Builder::new()).await.start().await;
    let up = p.upstream(0).clone();
    let old = p.v2(0).to_string();
    let new = format!("v2-watched-rotation-{}", uuid::Uuid::new_v4().simple());
    up.set_tokens(vec![old.clone(), new.clone()]);
    assert_eq!(p.get("/SCIM/v2/Users", OKTA).await.status, StatusCode::OK);
    assert_eq!(authorization_of(&up.requests()[0]), bearer(&old));
    write_private(p.dir(), "main.token", &format!("{new}\n"));
    // No SIGHUP, no reload call: the watcher notices within a few intervals.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        assert_eq!(p.get("/SCIM/v2/Users", OKTA).await.status, StatusCode::OK);
        let auth = authorization_of(&up.requests().pop().unwrap());
        if auth == bearer(&new) {
            break;
        }
        assert_eq!(auth, bearer(&old));
        assert!(
            Instant::now() < deadline,
            "the token file change was not picked up"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // And it stays: every request from now on carries the new token.
    for _ in 0..3 {
        assert_eq!(p.get("/SCIM/v2/Users", ENTRA).await.status, StatusCode::OK);
        assert_eq!(
            authorization_of(&up.requests().pop().unwrap()),
            bearer(&new)
        );
    }
    p.stop().await;
}

/// The certificate a new TLS connection to the proxy is presented with.
async fn presented(p: &TestProxy) -> CertificateDer<'static> {
    handshake_presenting(p.addr, ServerName::try_from("localhost").unwrap())
        .await
        .1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_certificate_is_refused_and_the_old_one_keeps_serving() {
    let p = watching(Builder::new()).await.start().await;
    let original_pem = std::fs::read_to_string(p.dir().join("proxy.crt")).unwrap();
    let original = leaf_of(&original_pem);
    assert_eq!(presented(&p).await, original);
    // A connection open across all of this.
    let mut kept = h1_conn(&p).await;

    let other = p
        .prepared
        .pki
        .issue(&["localhost"], &[std::net::IpAddr::V4(Ipv4Addr::LOCALHOST)])
        .unwrap();
    let broken: [(&str, String); 3] = [
        (
            "garbage",
            "-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n".into(),
        ),
        ("empty", String::new()),
        ("a certificate for another key", other.cert_pem.clone()),
    ];
    for (what, pem) in broken {
        write_file(p.dir(), "proxy.crt", &pem);
        // The watcher tries (and refuses) within a few intervals; an explicit reload says why.
        tokio::time::sleep(Duration::from_millis(700)).await;
        let problems = p.running().reload().expect_err(what);
        assert!(
            problems
                .0
                .iter()
                .any(|x| x.key == "listen.cert" || x.key == "listen.key"),
            "{what}: {problems}"
        );
        assert_eq!(
            presented(&p).await,
            original,
            "{what}: the old certificate keeps serving"
        );
        kept.write_all(head("GET", "/SCIM/v2/Users", "").as_bytes())
            .await
            .unwrap();
        assert_eq!(
            read_one(&mut kept, STEP).await.unwrap().status,
            StatusCode::OK,
            "{what}"
        );
        assert_still_serves(&p).await;
    }
    // A good new pair applies (the watcher sees it: no explicit reload), and the open connection
    // is not dropped.
    write_private(p.dir(), "proxy.key", &other.key_pem);
    write_file(p.dir(), "proxy.crt", &other.cert_pem);
    let want = leaf_of(&other.cert_pem);
    let deadline = Instant::now() + Duration::from_secs(10);
    while presented(&p).await != want {
        assert!(
            Instant::now() < deadline,
            "the new certificate was never served"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    kept.write_all(head("GET", "/SCIM/v2/Users", "").as_bytes())
        .await
        .unwrap();
    assert_eq!(
        read_one(&mut kept, STEP).await.unwrap().status,
        StatusCode::OK
    );
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_in_flight_during_a_reload_finish_on_the_old_token_and_keep_their_connection() {
    let p = Builder::new().start().await;
    let up = p.upstream(0).clone();
    let old = p.v2(0).to_string();
    let new = format!("v2-in-flight-rotation-{}", uuid::Uuid::new_v4().simple());
    up.set_tokens(vec![old.clone(), new.clone()]);

    // 1. A POST whose body is still arriving when the reload happens.
    let body = user("inflight@x.y").to_string();
    let mut tls = h1_conn(&p).await;
    let req = head(
        "POST",
        "/SCIM/v2/Users",
        &format!(
            "Content-Type: application/scim+json\r\nContent-Length: {}\r\n",
            body.len()
        ),
    );
    tls.write_all(req.as_bytes()).await.unwrap();
    tls.write_all(&body.as_bytes()[..10]).await.unwrap();
    tls.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    write_private(p.dir(), "main.token", &format!("{new}\n"));
    p.running().reload().expect("reload");
    tls.write_all(&body.as_bytes()[10..]).await.unwrap();
    let a = read_one(&mut tls, STEP).await.unwrap();
    assert_eq!(a.status, StatusCode::CREATED, "{:?}", a.body);
    let seen = up.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        authorization_of(&seen[0]),
        bearer(&old),
        "the request started on the old token"
    );
    // The same connection, next request: the new token.
    tls.write_all(head("GET", "/SCIM/v2/Users", "").as_bytes())
        .await
        .unwrap();
    assert_eq!(
        read_one(&mut tls, STEP).await.unwrap().status,
        StatusCode::OK
    );
    assert_eq!(authorization_of(&up.requests()[1]), bearer(&new));

    // 2. A request waiting for a slow upstream answer across a reload back to the old token.
    up.push_override(Override {
        status: StatusCode::OK,
        headers: vec![("content-type".into(), "application/scim+json".into())],
        body: Bytes::from_static(b"{\"slow\":true}"),
        delay: Duration::from_millis(1500),
    });
    tls.write_all(head("GET", "/SCIM/v2/Users", "").as_bytes())
        .await
        .unwrap();
    let deadline = Instant::now() + STEP;
    while up.requests().len() < 3 {
        assert!(Instant::now() < deadline, "the slow request never arrived");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    write_private(p.dir(), "main.token", &format!("{old}\n"));
    p.running().reload().expect("reload");
    let a = read_one(&mut tls, STEP).await.unwrap();
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(&a.body[..], b"{\"slow\":true}");
    tls.write_all(head("GET", "/SCIM/v2/Users", "Connection: close\r\n").as_bytes())
        .await
        .unwrap();
    assert_eq!(
        read_one(&mut tls, STEP).await.unwrap().status,
        StatusCode::OK
    );
    let seen = up.requests();
    assert_eq!(authorization_of(&seen[2]), bearer(&new));
    assert_eq!(authorization_of(&seen[3]), bearer(&old));
    p.stop().await;
}
