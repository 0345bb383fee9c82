//! Raw HTTP/1.1 and HTTP/2 exchanges with the proxy: requests written byte for byte, answers parsed,
//! connections watched until they close.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Version};
use scim_proxy::lab::client::Answer;
use scim_proxy::lab::upstream::Upstream;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::*;

/// Writes `request` over a fresh TLS connection (ALPN http/1.1) and reads the answer to EOF.
pub async fn raw_tls_exchange(
    addr: SocketAddr,
    ca_pem: &str,
    request: &[u8],
) -> Result<Answer, String> {
    let config = h1_tls(ca_pem);
    let mut tls = tls_connect(addr, config)
        .await
        .map_err(|e| format!("TLS connect: {e}"))?;
    exchange(&mut tls, request).await
}

/// Writes `request`, reads until EOF (or an error after some bytes), parses one HTTP/1.1 answer.
pub async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    request: &[u8],
) -> Result<Answer, String> {
    s.write_all(request)
        .await
        .map_err(|e| format!("write: {e}"))?;
    s.flush().await.map_err(|e| format!("flush: {e}"))?;
    let bytes = read_to_end_lenient(s, STEP).await?;
    parse_response(&bytes)
}

/// Reads until EOF, or until an error/timeout once at least something arrived.
pub async fn read_to_end_lenient<S: AsyncRead + Unpin>(
    s: &mut S,
    limit: Duration,
) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Ok(Ok(0)) => return Ok(out),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            // No close_notify, or a reset after the answer: what arrived is the answer.
            Ok(Err(_)) if !out.is_empty() => return Ok(out),
            Ok(Err(e)) => return Err(format!("read: {e}")),
            Err(_) if !out.is_empty() && complete_response(&out) => return Ok(out),
            Err(_) => {
                return Err(format!(
                    "no EOF within {limit:?}; got {:?}",
                    String::from_utf8_lossy(&out)
                ));
            }
        }
    }
}

pub fn complete_response(bytes: &[u8]) -> bool {
    parse_response(bytes).is_ok()
}

pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Parses one HTTP/1.1 response (Content-Length, chunked, or to EOF), skipping 1xx interim ones.
pub fn parse_response(mut bytes: &[u8]) -> Result<Answer, String> {
    while bytes.starts_with(b"HTTP/1.1 1") {
        let end = find(bytes, b"\r\n\r\n").ok_or("incomplete interim response")?;
        bytes = &bytes[end + 4..];
    }
    let end = find(bytes, b"\r\n\r\n").ok_or_else(|| {
        format!(
            "no complete response head in {:?}",
            String::from_utf8_lossy(bytes)
        )
    })?;
    let head = std::str::from_utf8(&bytes[..end]).map_err(|e| format!("head not UTF-8: {e}"))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let version = match parts.next() {
        Some("HTTP/1.1") => Version::HTTP_11,
        Some("HTTP/1.0") => Version::HTTP_10,
        other => return Err(format!("not an HTTP/1 status line: {other:?}")),
    };
    let status = parts
        .next()
        .and_then(|s| s.parse::<u16>().ok())
        .and_then(|s| StatusCode::from_u16(s).ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let mut headers = HeaderMap::new();
    for line in lines {
        let (k, v) = line
            .split_once(':')
            .ok_or_else(|| format!("bad header line {line:?}"))?;
        headers.append(
            HeaderName::from_bytes(k.trim().as_bytes()).map_err(|e| e.to_string())?,
            HeaderValue::from_str(v.trim()).map_err(|e| e.to_string())?,
        );
    }
    let rest = &bytes[end + 4..];
    let chunked = headers
        .get("transfer-encoding")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    let body = if chunked {
        decode_chunked(rest)?
    } else if let Some(len) = headers
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
    {
        if rest.len() < len {
            return Err(format!("body short: {} of {len}", rest.len()));
        }
        rest[..len].to_vec()
    } else {
        rest.to_vec()
    };
    Ok(Answer {
        status,
        headers,
        body: Bytes::from(body),
        version,
    })
}

pub fn decode_chunked(mut rest: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let line_end = find(rest, b"\r\n").ok_or("chunk size line incomplete")?;
        let size_text = std::str::from_utf8(&rest[..line_end]).map_err(|e| e.to_string())?;
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16).map_err(|e| format!("chunk size: {e}"))?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        if rest.len() < size + 2 {
            return Err("chunk incomplete".into());
        }
        out.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}

/// Where a chunked body (without trailers) that starts `buf` ends, once it is complete.
pub fn chunked_end(buf: &[u8]) -> Option<usize> {
    let mut at = 0;
    loop {
        let line_end = at + find(&buf[at..], b"\r\n")?;
        let size_text = std::str::from_utf8(&buf[at..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        at = line_end + 2;
        if size == 0 {
            return (buf.len() >= at + 2 && &buf[at..at + 2] == b"\r\n").then_some(at + 2);
        }
        at += size + 2;
        if buf.len() < at {
            return None;
        }
    }
}

/// Plain HTTP/1.1 `GET path` (Connection: close) to `addr`; Err if the connection is refused.
pub async fn plain_get(addr: SocketAddr, path: &str) -> Result<Answer, String> {
    let mut tcp = tokio::time::timeout(STEP, TcpStream::connect(addr))
        .await
        .map_err(|_| "connect timed out".to_string())?
        .map_err(|e| format!("connect: {e}"))?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    exchange(&mut tcp, req.as_bytes()).await
}

/// A raw HTTP/1.1 request with `Connection: close`.
pub fn raw_request(method: &str, target: &str, host: &str, headers: &[(&str, &str)]) -> Vec<u8> {
    let mut r = format!("{method} {target} HTTP/1.1\r\nHost: {host}\r\n");
    for (k, v) in headers {
        r.push_str(&format!("{k}: {v}\r\n"));
    }
    r.push_str("Connection: close\r\n\r\n");
    r.into_bytes()
}

/// Reads exactly one HTTP/1.1 response (Content-Length or chunked), leaving the connection open.
pub async fn read_one<S: AsyncRead + Unpin>(s: &mut S, limit: Duration) -> Result<Answer, String> {
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
pub struct Ended {
    /// Everything read before the end.
    pub bytes: Vec<u8>,
    /// How long it took from the call.
    pub after: Duration,
}

/// Reads until EOF or a read error, at most `limit`; `Err` with what was read if still open.
pub async fn wait_closed<S: AsyncRead + Unpin>(
    s: &mut S,
    limit: Duration,
) -> Result<Ended, Vec<u8>> {
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
pub async fn write_lenient<S: AsyncWrite + Unpin>(s: &mut S, data: &[u8]) -> usize {
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
pub async fn assert_still_serves(p: &TestProxy) {
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

pub fn head(method: &str, target: &str, extra: &str) -> String {
    format!(
        "{method} {target} HTTP/1.1\r\nHost: localhost\r\nAuthorization: {}\r\n{extra}\r\n",
        bearer(OKTA)
    )
}

/// An h2 connection (by ALPN) to the proxy, its connection task spawned.
pub async fn h2_connect(
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

pub fn h2_get(path: &str, token: Option<&str>) -> http::Request<()> {
    let mut b = http::Request::builder()
        .method(Method::GET)
        .uri(format!("https://localhost{path}"));
    if let Some(t) = token {
        b = b.header("authorization", bearer(t));
    }
    b.body(()).unwrap()
}

/// A request with our request id, the IdP's bearer token (or none) and a JSON body.
pub async fn send(
    p: &TestProxy,
    token: Option<&str>,
    rid: Option<&str>,
    method: Method,
    path: &str,
    body: Option<&Value>,
) -> Answer {
    let mut req = p.req(method, path);
    if let Some(t) = token {
        req = req.header("authorization", bearer(t));
    }
    if let Some(rid) = rid {
        req = req.header("x-request-id", rid);
    }
    let bytes = match body {
        Some(v) => {
            req = req.header("content-type", "application/scim+json; charset=utf-8");
            Bytes::from(v.to_string())
        }
        None => Bytes::new(),
    };
    p.call(req, bytes).await
}

/// The request the upstream received with this `X-Request-Id`.
pub fn upstream_saw(up: &Upstream, rid: &str) -> scim_proxy::lab::upstream::RecordedRequest {
    let all = up.requests();
    let mut hits = all
        .iter()
        .filter(|r| r.headers.get("x-request-id").and_then(|v| v.to_str().ok()) == Some(rid));
    let hit = hits
        .next()
        .unwrap_or_else(|| panic!("the upstream saw no request with X-Request-Id {rid}"))
        .clone();
    assert!(hits.next().is_none(), "{rid} reached the upstream twice");
    hit
}
