//! Who the client is behind load balancers: PROXY protocol, `X-Forwarded-For` from trusted proxies,
//! and `allow_cidrs`.

use std::net::{Ipv4Addr, SocketAddr};

use http::StatusCode;
use rustls_pki_types::ServerName;
use scim_proxy::lab::client::Answer;
use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio_rustls::TlsConnector;

use crate::support::*;

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
async fn allow_cidrs_closes_other_sources_before_tls() {
    let p = Builder::new()
        .listen_extra("allow_cidrs = [\"10.0.0.0/8\", \"fd00::/8\"]\n")
        .start()
        .await;
    let r = raw_tls_exchange(
        p.addr,
        p.ca_pem(),
        &raw_request(
            "GET",
            "/SCIM/v2/Users",
            "localhost",
            &[("Authorization", &bearer(OKTA))],
        ),
    )
    .await;
    assert!(r.is_err(), "127.0.0.1 is not allowed: {r:?}");
    assert_eq!(p.upstream(0).requests().len(), 0);
    p.stop().await;
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
            record(p.dir(), id).await["src_ip"],
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
            record(p.dir(), "pp-direct").await["src_ip"],
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
            record(p.dir(), id).await["src_ip"],
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
        assert_eq!(record(p.dir(), id).await["src_ip"], json!(client), "{id}");
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
        assert_eq!(record(p.dir(), "f").await["src_ip"], json!("127.0.0.2"));
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
