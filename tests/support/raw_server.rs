//! Tiny TLS/TCP servers for upstream faults the embedded upstream cannot produce.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use scim_proxy::lab::devcerts::IssuedCert;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use super::*;

/// What a [`RawServer`] does with each connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RawBehaviour {
    /// Accepts TCP and then never says anything (no TLS handshake, no answer).
    Silent,
    /// TLS (http/1.1 only); answers GET with `200 {}` and keeps the connection; reads any other
    /// request completely and then closes the connection without answering.
    CloseUnlessGet,
    /// TLS (http/1.1 only); reads a request head and its body, signalling body progress, then answers
    /// `200` with a body of two parts, the second only after `release_response` is called.
    StreamProbe,
}

/// A request as a raw server read it.
#[derive(Clone, Debug)]
pub struct RawRequest {
    pub method: String,
    pub target: String,
    pub head: String,
    pub body: Vec<u8>,
}

/// A tiny TLS/TCP server on 127.0.0.1 for faults; stopped (every connection cut) by `stop`.
pub struct RawServer {
    pub addr: SocketAddr,
    pub requests: Arc<Mutex<Vec<RawRequest>>>,
    pub connections: Arc<AtomicUsize>,
    /// Body bytes of the request in progress received so far (StreamProbe).
    pub body_progress: tokio::sync::watch::Receiver<usize>,
    release: Arc<tokio::sync::Notify>,
    task: JoinHandle<()>,
}

/// The marker that ends the first part of a StreamProbe response body.
pub const FIRST_PART: &[u8] = b"FIRST-PART-OF-THE-RESPONSE;";
pub const SECOND_PART: &[u8] = b"SECOND-PART-OF-THE-RESPONSE";

impl RawServer {
    pub async fn start(behaviour: RawBehaviour, cert: &IssuedCert) -> RawServer {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("bind raw server");
        let addr = listener.local_addr().expect("addr");
        let acceptor = TlsAcceptor::from(upstream_tls(cert, true));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let (progress_tx, body_progress) = tokio::sync::watch::channel(0usize);
        let progress_tx = Arc::new(progress_tx);
        let release = Arc::new(tokio::sync::Notify::new());
        let (reqs, conns, rel) = (requests.clone(), connections.clone(), release.clone());
        let task = tokio::spawn(async move {
            let mut set = tokio::task::JoinSet::new();
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                conns.fetch_add(1, Ordering::SeqCst);
                let (acceptor, reqs, progress, rel) = (
                    acceptor.clone(),
                    reqs.clone(),
                    progress_tx.clone(),
                    rel.clone(),
                );
                set.spawn(async move {
                    if behaviour == RawBehaviour::Silent {
                        let _tcp = tcp;
                        std::future::pending::<()>().await;
                        return;
                    }
                    let Ok(Ok(tls)) = tokio::time::timeout(STEP, acceptor.accept(tcp)).await else {
                        return;
                    };
                    raw_conn(tls, behaviour, reqs, progress, rel).await;
                });
            }
        });
        RawServer {
            addr,
            requests,
            connections,
            body_progress,
            release,
            task,
        }
    }

    pub fn requests(&self) -> Vec<RawRequest> {
        self.requests.lock().expect("lock").clone()
    }

    /// Lets a StreamProbe send the second part of its response body.
    pub fn release_response(&self) {
        self.release.notify_one();
    }

    pub async fn stop(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

pub async fn raw_conn<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    behaviour: RawBehaviour,
    reqs: Arc<Mutex<Vec<RawRequest>>>,
    progress: Arc<tokio::sync::watch::Sender<usize>>,
    release: Arc<tokio::sync::Notify>,
) {
    let mut buf: Vec<u8> = Vec::new();
    let mut tmp = vec![0u8; 64 * 1024];
    loop {
        // Head.
        let head_end = loop {
            if let Some(i) = find(&buf, b"\r\n\r\n") {
                break i;
            }
            match s.read(&mut tmp).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&tmp[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
        buf.drain(..head_end + 4);
        let mut first = head.lines().next().unwrap_or_default().split(' ');
        let method = first.next().unwrap_or_default().to_string();
        let target = first.next().unwrap_or_default().to_string();
        let lower = head.to_ascii_lowercase();
        let content_length = lower
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse::<usize>().ok());
        let chunked = lower
            .lines()
            .any(|l| l.starts_with("transfer-encoding:") && l.contains("chunked"));
        progress.send_replace(0);
        // Body: Content-Length, or chunked up to the last chunk (kept raw).
        let body = loop {
            progress.send_replace(buf.len());
            if let Some(len) = content_length {
                if buf.len() >= len {
                    break buf.drain(..len).collect::<Vec<u8>>();
                }
            } else if chunked {
                if let Some(end) = chunked_end(&buf) {
                    let raw = buf.drain(..end).collect::<Vec<u8>>();
                    break decode_chunked(&raw).unwrap_or(raw);
                }
            } else {
                break Vec::new();
            }
            match s.read(&mut tmp).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&tmp[..n]),
            }
        };
        reqs.lock().expect("lock").push(RawRequest {
            method: method.clone(),
            target,
            head,
            body,
        });
        match behaviour {
            RawBehaviour::Silent => return,
            RawBehaviour::CloseUnlessGet if method != "GET" => {
                // Read it all, answer nothing, hang up.
                let _ = s.shutdown().await;
                return;
            }
            RawBehaviour::CloseUnlessGet => {
                let ok = b"HTTP/1.1 200 OK\r\ncontent-type: application/scim+json\r\ncontent-length: 2\r\n\r\n{}";
                if s.write_all(ok).await.is_err() {
                    return;
                }
            }
            RawBehaviour::StreamProbe => {
                let head = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n";
                let first = format!("{:x}\r\n", FIRST_PART.len());
                if s.write_all(head).await.is_err()
                    || s.write_all(first.as_bytes()).await.is_err()
                    || s.write_all(FIRST_PART).await.is_err()
                    || s.write_all(b"\r\n").await.is_err()
                    || s.flush().await.is_err()
                {
                    return;
                }
                release.notified().await;
                let second = format!("{:x}\r\n", SECOND_PART.len());
                let _ = s.write_all(second.as_bytes()).await;
                let _ = s.write_all(SECOND_PART).await;
                let _ = s.write_all(b"\r\n0\r\n\r\n").await;
                let _ = s.flush().await;
                let _ = s.shutdown().await;
                return;
            }
        }
    }
}
