//! The HTTP CONNECT leg through a forward proxy. Written here rather than taken from hyper-util's
//! `Tunnel` because an admin needs the proxy's status: hyper-util keeps only 200 and 407, so a
//! refused password (401 from tinyproxy, 403 from others) would read as an ACL refusal.

use std::time::Duration;

use http::HeaderValue;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Longest CONNECT response head read before giving up.
const MAX_HEAD: usize = 16 * 1024;

/// Why the forward proxy leg failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TunnelFailure {
    /// TCP connect to the forward proxy failed.
    Connect(String),
    /// 407, or 401 with credentials configured: credentials missing or refused.
    Auth { status: u16, sent_credentials: bool },
    /// Any other non-2xx answer to CONNECT (an ACL, an unknown host, an upstream error at the proxy).
    Refused { status: u16, reason: String },
    /// Connected, but the CONNECT answer did not come in time or was not HTTP.
    Protocol(String),
}

/// Sends `CONNECT host:port` on `stream` and reads the answer head; on 2xx the stream is the tunnel.
pub async fn connect(
    stream: &mut TcpStream,
    host: &str,
    port: u16,
    auth: Option<&HeaderValue>,
    timeout: Duration,
) -> Result<(), TunnelFailure> {
    let exchange = async {
        stream
            .write_all(&connect_head(host, port, auth))
            .await
            .map_err(|e| TunnelFailure::Protocol(format!("writing CONNECT: {e}")))?;
        let answer = read_head(stream).await?;
        let (status, reason) = status_line(&answer).ok_or_else(|| {
            TunnelFailure::Protocol("the forward proxy's answer is not HTTP".into())
        })?;
        verdict(status, reason, auth.is_some())
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .unwrap_or_else(|_| {
            Err(TunnelFailure::Protocol(
                "the forward proxy did not answer CONNECT in time".into(),
            ))
        })
}

/// `CONNECT host:port HTTP/1.1` with Host and, when configured, the proxy credentials.
fn connect_head(host: &str, port: u16, auth: Option<&HeaderValue>) -> Vec<u8> {
    let authority = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let mut head = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n").into_bytes();
    if let Some(auth) = auth {
        head.extend_from_slice(b"Proxy-Authorization: ");
        head.extend_from_slice(auth.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(b"\r\n");
    head
}

/// The answer head up to its blank line, read byte-wise so that no tunnel byte is consumed.
async fn read_head(stream: &mut TcpStream) -> Result<Vec<u8>, TunnelFailure> {
    let mut answer = Vec::with_capacity(256);
    let mut byte = [0u8; 1];
    while !answer.ends_with(b"\r\n\r\n") {
        if answer.len() >= MAX_HEAD {
            return Err(TunnelFailure::Protocol(
                "the forward proxy's answer head is too long".into(),
            ));
        }
        let n = stream
            .read(&mut byte)
            .await
            .map_err(|e| TunnelFailure::Protocol(format!("reading the CONNECT answer: {e}")))?;
        if n == 0 {
            return Err(TunnelFailure::Protocol(
                "the forward proxy closed the connection instead of answering CONNECT".into(),
            ));
        }
        answer.push(byte[0]);
    }
    Ok(answer)
}

/// What the proxy's status means: 2xx is the tunnel; 407 (or 401 to credentials sent) is about
/// the credentials; anything else is a refusal.
fn verdict(status: u16, reason: String, sent_credentials: bool) -> Result<(), TunnelFailure> {
    match status {
        200..=299 => Ok(()),
        407 => Err(TunnelFailure::Auth {
            status,
            sent_credentials,
        }),
        401 if sent_credentials => Err(TunnelFailure::Auth {
            status,
            sent_credentials: true,
        }),
        _ => Err(TunnelFailure::Refused { status, reason }),
    }
}

/// `HTTP/1.x 403 Forbidden` -> (403, "Forbidden").
fn status_line(head: &[u8]) -> Option<(u16, String)> {
    let line = head.split(|b| *b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?.trim_end();
    let mut parts = line.splitn(3, ' ');
    let version = parts.next()?;
    if !version.starts_with("HTTP/1.") {
        return None;
    }
    let status = parts.next()?.parse().ok()?;
    let reason = parts.next().unwrap_or("").chars().take(100).collect();
    Some((status, reason))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines() {
        assert_eq!(
            status_line(b"HTTP/1.1 200 Connection established\r\n\r\n"),
            Some((200, "Connection established".into()))
        );
        assert_eq!(
            status_line(b"HTTP/1.0 403\r\n\r\n"),
            Some((403, String::new()))
        );
        assert_eq!(status_line(b"SSH-2.0-OpenSSH\r\n"), None);
        assert_eq!(status_line(b"HTTP/1.1 abc x\r\n"), None);
    }

    async fn proxy_answering(
        answer: &'static [u8],
    ) -> (std::net::SocketAddr, tokio::task::JoinHandle<Vec<u8>>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut got = vec![0u8; 4096];
            let n = s.read(&mut got).await.unwrap();
            s.write_all(answer).await.unwrap();
            s.write_all(b"TUNNELBYTES").await.unwrap();
            got.truncate(n);
            got
        });
        (addr, task)
    }

    /// What the proxy answers, the credentials sent, and the outcome expected.
    type Case<'a> = (
        &'static [u8],
        Option<&'a HeaderValue>,
        Result<(), TunnelFailure>,
    );

    #[tokio::test]
    async fn statuses_are_kept() {
        let auth = HeaderValue::from_static("Basic dTpw");
        let cases: [Case<'_>; 4] = [
            (b"HTTP/1.1 200 OK\r\n\r\n", None, Ok(())),
            (
                b"HTTP/1.0 401 Unauthorized\r\n\r\n",
                Some(&auth),
                Err(TunnelFailure::Auth {
                    status: 401,
                    sent_credentials: true,
                }),
            ),
            (
                b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic\r\n\r\n",
                None,
                Err(TunnelFailure::Auth {
                    status: 407,
                    sent_credentials: false,
                }),
            ),
            (
                b"HTTP/1.1 403 Forbidden\r\n\r\n",
                None,
                Err(TunnelFailure::Refused {
                    status: 403,
                    reason: "Forbidden".into(),
                }),
            ),
        ];
        for (answer, auth, want) in cases {
            let (addr, task) = proxy_answering(answer).await;
            let mut s = TcpStream::connect(addr).await.unwrap();
            let got = connect(
                &mut s,
                "acme.goskope.com",
                443,
                auth,
                Duration::from_secs(5),
            )
            .await;
            assert_eq!(got, want);
            let sent = String::from_utf8(task.await.unwrap()).unwrap();
            assert!(
                sent.starts_with(
                    "CONNECT acme.goskope.com:443 HTTP/1.1\r\nHost: acme.goskope.com:443\r\n"
                ),
                "{sent}"
            );
            assert_eq!(
                sent.contains("Proxy-Authorization: Basic dTpw"),
                auth.is_some()
            );
            if want.is_ok() {
                // Nothing past the answer head was consumed.
                let mut rest = [0u8; 11];
                s.read_exact(&mut rest).await.unwrap();
                assert_eq!(&rest, b"TUNNELBYTES");
            }
        }
    }

    #[tokio::test]
    async fn a_silent_proxy_times_out() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hold = tokio::spawn(async move {
            let (s, _) = listener.accept().await.unwrap();
            tokio::time::sleep(Duration::from_secs(5)).await;
            drop(s);
        });
        let mut s = TcpStream::connect(addr).await.unwrap();
        let got = connect(&mut s, "h", 443, None, Duration::from_millis(200)).await;
        assert!(
            matches!(got, Err(TunnelFailure::Protocol(ref m)) if m.contains("in time")),
            "{got:?}"
        );
        hold.abort();
    }
}
