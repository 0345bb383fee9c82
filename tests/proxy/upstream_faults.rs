//! Upstream faults: nothing listening, untrusted or wrong certificates, timeouts, connections closed
//! mid-request or mid-body, 429/503, stale pooled connections, and what is (not) retried.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, StatusCode};
use scim_proxy::lab::client::ScimClient;
use scim_proxy::lab::devcerts;
use scim_proxy::lab::devcerts::IssuedCert;
use scim_proxy::lab::upstream::Override;
use serde_json::json;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::support::*;

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
async fn nothing_listening_upstream_is_502() {
    let port = unused_port().await;
    let p = Builder::new()
        .placeholder_upstream()
        .route(|r| r.target(Target::Url(format!("https://127.0.0.1:{port}/api/v2/scim"))))
        .start()
        .await;
    for method in [Method::GET, Method::POST] {
        let started = Instant::now();
        let body = user("a@b.c");
        let a = p
            .send(method.clone(), "/SCIM/v2/Users", Some(OKTA), Some(&body))
            .await;
        p.assert_error(&a, 502, &["connect"]);
        assert!(started.elapsed() < Duration::from_secs(15), "{method}");
    }
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untrusted_upstream_certificate_is_502_and_nothing_is_sent() {
    let p = Builder::new().no_ca_file().start().await;
    let a = p.get("/SCIM/v2/Users", OKTA).await;
    p.assert_error(&a, 502, &["certificate"]);
    assert_eq!(
        p.upstream(0).requests().len(),
        0,
        "no request may be sent over an unverified connection"
    );
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untrusted_upstream_certificate_is_502_mentioning_tls() {
    let p = Builder::new().no_ca_file().start().await;
    let a = p.get("/SCIM/v2/Users", OKTA).await;
    p.assert_error(&a, 502, &["tls"]);
    assert_eq!(
        p.upstream(0).requests().len(),
        0,
        "no request may be sent over an unverified connection"
    );
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_certificate_for_another_name_or_expired_is_502_and_nothing_is_sent() {
    let mut prepared = Builder::new().placeholder_upstream().prepare().await;
    let wrong_name = prepared
        .pki
        .issue(&["other.example"], &[])
        .expect("certificate");
    let expired = prepared
        .pki
        .issue_expired(&["localhost"])
        .expect("certificate");
    let mut ups = Vec::new();
    for cert in [&wrong_name, &expired] {
        ups.push(
            scim_proxy::lab::upstream::Upstream::start(
                scim_proxy::lab::upstream::UpstreamOptions {
                    bind: "127.0.0.1:0".parse().unwrap(),
                    tls: Some(devcerts::server_config(cert).unwrap()),
                    base_path: "/api/v2/scim".into(),
                    tokens: prepared.v2_tokens.clone(),
                },
            )
            .await
            .unwrap(),
        );
    }
    // Route 0 to the wrong-name upstream by IP, route 1 to the expired one by name.
    prepared.point_at(ups[0].addr());
    prepared.edit_config(
        "[[routes.clients]]\nname = \"entra\"",
        &format!(
            "[[routes.clients]]\nname = \"entra\"\ntoken_sha256 = \"{}\"\n\n[[routes]]\nname = \"expired\"\nupstream = \"https://localhost:{}/api/v2/scim\"\ntoken_file = \"main.token\"\nhosts = [\"addon-b.example\"]\n\n[[routes.clients]]\nname = \"entra\"",
            sha256_hex(ENTRA.as_bytes()),
            ups[1].addr().port()
        ),
    );
    let p = prepared.start().await;
    let a = p.get("/SCIM/v2/Users", OKTA).await;
    p.assert_error(&a, 502, &[]);
    let a = p
        .call(
            p.req(Method::GET, "/SCIM/v2/Users")
                .header("host", "addon-b.example")
                .header("authorization", bearer(ENTRA)),
            Bytes::new(),
        )
        .await;
    p.assert_error(&a, 502, &[]);
    let detail = a.json()["detail"]
        .as_str()
        .unwrap_or_default()
        .to_lowercase();
    assert!(detail.contains("expired"), "{detail}");
    for u in ups {
        assert_eq!(
            u.requests().len(),
            0,
            "a request went over an unverified connection"
        );
        u.shutdown().await;
    }
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_that_does_not_answer_in_time_is_504_and_a_post_is_not_retried() {
    let p = Builder::new()
        .limit("upstream_timeout", "\"1s\"")
        .start()
        .await;
    let up = p.upstream(0);
    for _ in 0..3 {
        up.push_override(Override {
            status: StatusCode::CREATED,
            headers: vec![],
            body: Bytes::from_static(b"{}"),
            delay: Duration::from_secs(5),
        });
    }
    let started = Instant::now();
    let a = p
        .send(
            Method::POST,
            "/SCIM/v2/Users",
            Some(OKTA),
            Some(&user("slow@x.y")),
        )
        .await;
    let took = started.elapsed();
    p.assert_error(&a, 504, &[]);
    assert!(took < Duration::from_secs(4), "took {took:?}");
    // The POST reached the upstream once and was not sent again.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let seen = up.requests();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].method, Method::POST);
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_that_accepts_but_never_speaks_tls_is_504_quickly() {
    let mut prepared = Builder::new()
        .placeholder_upstream()
        .limit("upstream_timeout", "\"1s\"")
        .prepare()
        .await;
    let silent = RawServer::start(RawBehaviour::Silent, &prepared.upstream_cert).await;
    prepared.point_at(silent.addr);
    let p = prepared.start().await;
    let started = Instant::now();
    let a = p.get("/SCIM/v2/Users", OKTA).await;
    let took = started.elapsed();
    p.assert_error(&a, 504, &[]);
    assert!(took < Duration::from_secs(4), "took {took:?}");
    assert!(silent.connections.load(std::sync::atomic::Ordering::SeqCst) >= 1);
    p.stop().await;
    silent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_closing_after_reading_a_write_is_502_and_it_is_not_retried() {
    let mut prepared = Builder::new().placeholder_upstream().prepare().await;
    let raw = RawServer::start(RawBehaviour::CloseUnlessGet, &prepared.upstream_cert).await;
    prepared.point_at(raw.addr);
    let p = prepared.start().await;

    // POST on a fresh connection.
    let a = p
        .send(
            Method::POST,
            "/SCIM/v2/Users",
            Some(OKTA),
            Some(&user("one@x.y")),
        )
        .await;
    p.assert_error(&a, 502, &[]);
    // POST, PATCH and PUT on a pooled connection that just served a GET.
    let patch = json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "replace", "path": "active", "value": false}]
    });
    let writes = [
        (Method::POST, "/SCIM/v2/Users".to_string(), user("two@x.y")),
        (Method::PATCH, "/SCIM/v2/Users/u-1".to_string(), patch),
        (
            Method::PUT,
            "/SCIM/v2/Users/u-1".to_string(),
            user("three@x.y"),
        ),
    ];
    for (method, path, body) in &writes {
        let a = p.get("/SCIM/v2/Users", OKTA).await;
        assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
        let a = p.send(method.clone(), path, Some(OKTA), Some(body)).await;
        p.assert_error(&a, 502, &[]);
    }

    tokio::time::sleep(Duration::from_millis(1000)).await;
    let reqs = raw.requests();
    let summary: Vec<String> = reqs
        .iter()
        .map(|r| format!("{} {}", r.method, r.target))
        .collect();
    let count = |m: &str| reqs.iter().filter(|r| r.method == m).count();
    assert_eq!(
        count("POST"),
        2,
        "each write reaches the upstream once: {summary:?}"
    );
    assert_eq!(count("PATCH"), 1, "{summary:?}");
    assert_eq!(count("PUT"), 1, "{summary:?}");
    assert_eq!(count("GET"), 3, "{summary:?}");
    let posts: Vec<_> = reqs.iter().filter(|r| r.method == "POST").collect();
    assert!(String::from_utf8_lossy(&posts[0].body).contains("one@x.y"));
    assert!(String::from_utf8_lossy(&posts[1].body).contains("two@x.y"));
    for r in &reqs {
        assert!(!r.head.contains(OKTA), "the IdP token reached the upstream");
    }
    p.stop().await;
    raw.stop().await;
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
        let body = (method == Method::POST).then(|| minimal_user("r@x.y"));
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
        let lines = traffic_records(p.dir(), i + 1).await;
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
        let line = record(p.dir(), id).await;
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
        record(p.dir(), "cut-4").await["error"],
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
            Some(&minimal_user("p@x.y")),
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
        (
            Method::POST,
            "/SCIM/v2/Users",
            Some(minimal_user("once@x.y")),
        ),
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serving_tls_failure_names_the_presented_certificate_and_the_trust_roots_in_the_log_and_the_502()
 {
    let mut prepared = Builder::new().prepare().await;
    write_file(
        prepared.dir.path(),
        "twin-ca.pem",
        &same_name_ca(&prepared.ca_pem),
    );
    prepared.edit_config("ca_file = \"ca.pem\"", "ca_file = \"twin-ca.pem\"");
    let issuer = ca_name(&prepared);
    let ca_file = prepared.dir.path().join("twin-ca.pem");
    let mut serve = ServeChild::spawn_env(&prepared.config_path, &[]);
    let addr = serve.serving_addr(STEP).await;
    let client = client_for(addr, &prepared.ca_pem);

    let a = client
        .send(Method::GET, "/SCIM/v2/Users", Some(OKTA), None)
        .await
        .expect("request to serve");
    let want = [
        "upstream TLS failed: invalid peer certificate: BadSignature; ".to_string(),
        format!("the upstream presented subject \"CN=localhost\" issued by \"{issuer}\""),
        format!(
            "; trusted: Mozilla roots plus egress.ca_file {}",
            ca_file.display()
        ),
    ];
    let want: Vec<&str> = want.iter().map(String::as_str).collect();
    let secrets = secrets_of(&prepared);
    assert_scim_error(&a, 502, &want, &secrets);
    assert!(prepared.upstreams[0].requests().is_empty());

    let records = traffic_records(prepared.dir.path(), 1).await;
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0]["status"], 502);
    assert_eq!(records[0]["error"], "upstream-tls", "{records:?}");

    // The warning names the same (the log writer may lag the response a little).
    let deadline = Instant::now() + STEP;
    let (line, stderr) = loop {
        let stderr = serve.stderr();
        let found = stderr
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|v| v["message"] == "upstream failure");
        match found {
            Some(line) => break (line, stderr),
            None if Instant::now() >= deadline => panic!("no \"upstream failure\" line:\n{stderr}"),
            None => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    };
    assert_eq!(line["kind"], "upstream-tls", "{line}");
    assert_has(
        "the log line",
        line["detail"].as_str().unwrap_or_default(),
        &want,
    );
    for s in &secrets {
        assert!(!stderr.contains(s.as_str()), "serve's stderr carries {s:?}");
    }
    drop(serve);
    prepared.shutdown().await;
}
