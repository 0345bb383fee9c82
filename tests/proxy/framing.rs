//! Message framing and streaming: Content-Length against Transfer-Encoding, smuggling attempts,
//! invalid chunked bodies, large bodies streamed both ways, and HTTP/1.1 and HTTP/2 connections side
//! by side.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, StatusCode, Version};
use scim_proxy::lab::client::{Answer, ScimClient};
use scim_proxy::lab::devcerts;
use scim_proxy::lab::upstream::Override;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::*;

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
async fn conflicting_framing_is_refused_and_never_forwarded() {
    let p = Builder::new().start().await;
    let auth = bearer(OKTA);
    for framing in [
        "Content-Length: 2\r\nContent-Length: 3\r\n",
        "Content-Length: 2, 3\r\n",
        "Transfer-Encoding: chunked, identity\r\n",
    ] {
        let req = format!(
            "POST /SCIM/v2/Users HTTP/1.1\r\nHost: localhost\r\nAuthorization: {auth}\r\n{framing}Connection: close\r\n\r\n2\r\n{{}}\r\n0\r\n\r\n"
        );
        let a = p.raw(req.as_bytes()).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{framing:?}");
    }
    assert_eq!(p.upstream_total(), 0);
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_transfer_coding_is_refused() {
    let p = Builder::new().start().await;
    let auth = bearer(OKTA);
    let req = format!(
        "POST /SCIM/v2/Users HTTP/1.1\r\nHost: localhost\r\nAuthorization: {auth}\r\nTransfer-Encoding: gzip, chunked\r\nConnection: close\r\n\r\n2\r\n{{}}\r\n0\r\n\r\n"
    );
    let a = p.raw(req.as_bytes()).await;
    assert_eq!(p.upstream_total(), 0, "forwarded");
    assert!(
        a.status == StatusCode::NOT_IMPLEMENTED || a.status == StatusCode::BAD_REQUEST,
        "{}",
        a.status
    );
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_20_mib_request_body_arrives_intact() {
    let p = Builder::new().limit("max_body", "\"32MiB\"").start().await;
    let up = p.upstream(0);
    up.push_override(Override {
        status: StatusCode::OK,
        headers: vec![("content-type".into(), "application/scim+json".into())],
        body: Bytes::from_static(b"{}"),
        delay: Duration::ZERO,
    });
    let body: Vec<u8> = (0..20 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let sum = sha256_hex(&body);
    let a = p
        .call(
            p.req(Method::POST, "/SCIM/v2/Users")
                .header("authorization", bearer(OKTA))
                .header("content-type", "application/octet-stream"),
            body,
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
    let r = only_new(up, 0, "20 MiB");
    assert_eq!(r.body.len(), 20 * 1024 * 1024);
    assert_eq!(sha256_hex(&r.body), sum);
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_10_mib_response_body_arrives_intact() {
    let p = Builder::new().start().await;
    let body: Vec<u8> = (0..10 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(40_503) >> 7) as u8)
        .collect();
    let sum = sha256_hex(&body);
    p.upstream(0).push_override(Override {
        status: StatusCode::OK,
        headers: vec![("content-type".into(), "application/scim+json".into())],
        body: Bytes::from(body),
        delay: Duration::ZERO,
    });
    let a = p.get("/SCIM/v2/Users", OKTA).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.body.len(), 10 * 1024 * 1024);
    assert_eq!(sha256_hex(&a.body), sum);
    p.stop().await;
}

/// Proves streaming in both directions: the upstream sees the first part of a chunked request body
/// before the client has sent the rest, and the client sees the first part of the response before
/// the upstream has sent the rest. A proxy that buffers either whole hangs here (bounded) and fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_are_streamed_not_buffered_whole() {
    let mut prepared = Builder::new().placeholder_upstream().prepare().await;
    let raw = RawServer::start(RawBehaviour::StreamProbe, &prepared.upstream_cert).await;
    prepared.point_at(raw.addr);
    let p = prepared.start().await;

    let config = client_tls(
        p.ca_pem(),
        &[&rustls::version::TLS13, &rustls::version::TLS12],
        &[b"http/1.1"],
    );
    let mut tls = tls_connect(p.addr, config).await.expect("connect");
    let head = format!(
        "POST /SCIM/v2/Users HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {OKTA}\r\nContent-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    let first = vec![b'a'; 64 * 1024];
    tls.write_all(head.as_bytes()).await.unwrap();
    tls.write_all(format!("{:x}\r\n", first.len()).as_bytes())
        .await
        .unwrap();
    tls.write_all(&first).await.unwrap();
    tls.write_all(b"\r\n").await.unwrap();
    tls.flush().await.unwrap();

    let mut progress = raw.body_progress.clone();
    tokio::time::timeout(STEP, progress.wait_for(|n| *n > 0))
        .await
        .expect("the upstream saw no body bytes while the client was still sending: request body buffered")
        .unwrap();
    assert!(
        raw.requests().is_empty(),
        "the request cannot be complete yet"
    );

    let last = b"the-end";
    tls.write_all(format!("{:x}\r\n", last.len()).as_bytes())
        .await
        .unwrap();
    tls.write_all(last).await.unwrap();
    tls.write_all(b"\r\n0\r\n\r\n").await.unwrap();
    tls.flush().await.unwrap();

    // Read until the first part of the response shows, while the upstream holds the second back.
    let mut got = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    let deadline = Instant::now() + STEP;
    while !got.windows(FIRST_PART.len()).any(|w| w == FIRST_PART) {
        let left = deadline.saturating_duration_since(Instant::now());
        let n = tokio::time::timeout(left, tls.read(&mut buf))
            .await
            .expect("the first part of the response did not arrive: response buffered")
            .expect("read");
        assert!(
            n > 0,
            "EOF before the first part: {:?}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
    }
    assert!(
        !got.windows(SECOND_PART.len()).any(|w| w == SECOND_PART),
        "the second part cannot have been sent yet"
    );
    raw.release_response();
    got.extend(read_to_end_lenient(&mut tls, STEP).await.expect("rest"));
    let a = parse_response(&got).expect("response");
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.body, [FIRST_PART, SECOND_PART].concat());

    let reqs = raw.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].body, [&first[..], last].concat());
    assert_eq!(reqs[0].target, "/api/v2/scim/Users");
    p.stop().await;
    raw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_connections_are_pooled_h2_by_alpn_or_http11() {
    for h1 in [false, true] {
        let b = Builder::new();
        let p = if h1 { b.h1_upstream() } else { b }.start().await;
        for _ in 0..3 {
            assert_eq!(p.get("/SCIM/v2/Users", OKTA).await.status, StatusCode::OK);
        }
        let seen = p.upstream(0).requests();
        assert_eq!(seen.len(), 3);
        let want = if h1 {
            Version::HTTP_11
        } else {
            Version::HTTP_2
        };
        for r in &seen {
            assert_eq!(r.version, want, "h1-only upstream: {h1}");
            assert_eq!(
                r.peer, seen[0].peer,
                "one pooled connection (h1-only: {h1})"
            );
        }
        p.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_over_h1_and_h2_are_not_mixed_up() {
    let p = Builder::new().start().await;
    let h1 = p.client.clone();
    let h2 = ScimClient::new(
        &p.base,
        devcerts::client_config(p.ca_pem(), &[]).unwrap(),
        true,
    );
    let mut set = tokio::task::JoinSet::new();
    for i in 0..40 {
        let client = if i % 2 == 0 { h1.clone() } else { h2.clone() };
        let base = p.base.clone();
        let token = if i % 3 == 0 { ENTRA } else { OKTA };
        set.spawn(async move {
            let req = http::Request::builder()
                .method(Method::GET)
                .uri(format!("{base}/SCIM/v2/Users?count=1&n={i}"))
                .header("authorization", bearer(token))
                .header("x-request-id", format!("req-{i}"))
                .body(http_body_util::Full::new(Bytes::new()))
                .unwrap();
            (i, client.request(req).await)
        });
    }
    let mut done = 0;
    while let Some(r) = bounded("concurrent requests", set.join_next()).await {
        let (i, a) = r.unwrap();
        let a = a.unwrap_or_else(|e| panic!("request {i}: {e}"));
        assert_eq!(a.status, StatusCode::OK, "request {i}");
        assert_eq!(a.header("x-request-id"), Some(format!("req-{i}").as_str()));
        done += 1;
    }
    assert_eq!(done, 40);
    let seen = p.upstream(0).requests();
    assert_eq!(seen.len(), 40);
    for i in 0..40 {
        let matching: Vec<_> = seen
            .iter()
            .filter(|r| r.path_and_query == format!("/api/v2/scim/Users?count=1&n={i}"))
            .collect();
        assert_eq!(matching.len(), 1, "request {i}");
        assert_eq!(
            header(matching[0], "x-request-id"),
            Some(format!("req-{i}").as_str())
        );
    }
    p.stop().await;
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
