//! Limits and timeouts: body, head and path sizes, HTTP/2 floods, slow or stalled clients, idle
//! connections, `max_connections` and `max_requests_per_client`.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, StatusCode};
use scim_proxy::lab::client::ScimClient;
use scim_proxy::lab::devcerts;
use scim_proxy::lab::upstream::Override;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::*;

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
    let lines = traffic_records(p.dir(), 3).await;
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
            Some(&minimal_user("q@x.y")),
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
