//! Listening and serving: accept loop, TLS handshake, HTTP/1 and HTTP/2 connections, the
//! stdout request log, and a bounded graceful shutdown.

use std::convert::Infallible;
use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use super::framing::framed;
use super::request::handle;
use super::state::{State, stopped};

const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
// How long open connections get to finish in-flight requests on shutdown before being cut.
const SHUTDOWN_GRACE: Duration = Duration::from_millis(500);

pub(super) async fn accept_loop(
    listener: TcpListener,
    acceptor: Option<TlsAcceptor>,
    state: Arc<State>,
    mut stop: watch::Receiver<bool>,
    done: watch::Sender<bool>,
) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            _ = stopped(&mut stop) => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => {
                    conns.spawn(serve_conn(tcp, peer, acceptor.clone(), Arc::clone(&state)));
                }
                Err(e) => {
                    // E.g. EMFILE: back off instead of spinning.
                    tracing::warn!(error = %e, "upstream accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            },
        }
    }
    drop(listener);
    // Connections see the same stop signal and shut down gracefully; cut the stragglers.
    let drained = tokio::time::timeout(SHUTDOWN_GRACE * 2, async {
        while conns.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        conns.abort_all();
        while conns.join_next().await.is_some() {}
    }
    drop(state);
    done.send_replace(true);
}

async fn serve_conn(
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
    acceptor: Option<TlsAcceptor>,
    state: Arc<State>,
) {
    let _ = tcp.set_nodelay(true);
    let local = tcp.local_addr().ok();
    let mut stop = state.stop.clone();
    match acceptor {
        Some(acceptor) => {
            let tls = tokio::select! {
                _ = stopped(&mut stop) => return,
                r = tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(tcp)) => match r {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, error = %e, "upstream TLS handshake failed");
                        return;
                    }
                    Err(_) => return,
                },
            };
            serve_http(TokioIo::new(tls), peer, local, state, stop).await;
        }
        None => serve_http(TokioIo::new(tcp), peer, local, state, stop).await,
    }
}

async fn serve_http<I>(
    io: I,
    peer: SocketAddr,
    local: Option<SocketAddr>,
    state: Arc<State>,
    mut stop: watch::Receiver<bool>,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let svc = service_fn(move |req| {
        let state = Arc::clone(&state);
        async move {
            let chunked = state.chunked.load(Ordering::Relaxed);
            // The target only: headers carry the token, and the body personal data.
            let logged = state.log_requests.load(Ordering::Relaxed).then(|| {
                let target = req.uri().path_and_query().map_or("/", |p| p.as_str());
                format!(
                    "{} {:?} {} {target}",
                    peer.ip(),
                    req.version(),
                    req.method()
                )
            });
            let resp = handle(Arc::clone(&state), peer, local, req).await;
            if let Some(line) = logged {
                // A closed stdout must not take the lab upstream down with it.
                let _ = writeln!(
                    std::io::stdout().lock(),
                    "{line} -> {}",
                    resp.status().as_u16()
                );
            }
            Ok::<_, Infallible>(framed(resp, chunked).await)
        }
    });
    let builder = auto::Builder::new(TokioExecutor::new());
    let conn = builder.serve_connection(io, svc);
    tokio::pin!(conn);
    tokio::select! {
        res = conn.as_mut() => {
            if let Err(e) = res {
                tracing::debug!(%peer, error = %e, "upstream connection ended with an error");
            }
        }
        _ = stopped(&mut stop) => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(SHUTDOWN_GRACE, conn.as_mut()).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::*;

    #[tokio::test]
    async fn records_raw_target_peer_and_protocol() {
        let local = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 7));
        let h = harness(true, Some(local)).await;
        let raw = "/Users?filter=userName+eq+%22x%40y%22&aadOptscim062020";
        let a = h.scim("GET", raw, None).await;
        assert_eq!(a.version, http::Version::HTTP_2);
        let r = h.up.requests().pop().unwrap();
        assert_eq!(r.path_and_query, format!("/api/v2/scim{raw}"));
        assert_eq!(r.peer.ip(), local);
        assert_eq!(r.version, http::Version::HTTP_2);
        assert!(r.authenticated);
        assert_eq!(r.headers["authorization"], "Bearer v2-token-1");
        h.shutdown().await;

        let h = harness(false, None).await;
        let a = h.scim("GET", "/Users", None).await;
        assert_eq!(a.version, http::Version::HTTP_11);
        let r = h.up.requests().pop().unwrap();
        assert_eq!(r.version, http::Version::HTTP_11);
        assert_eq!(r.peer.ip(), IpAddr::V4(Ipv4Addr::LOCALHOST));
        h.shutdown().await;
    }

    #[tokio::test]
    async fn plain_http_mode_uses_http_locations() {
        let up = Upstream::start(UpstreamOptions {
            bind: "127.0.0.1:0".parse().unwrap(),
            tls: None,
            base_path: "/api/v2/scim".into(),
            tokens: vec![TOKEN.into()],
        })
        .await
        .unwrap();
        let client: Client<HttpConnector, Full<Bytes>> =
            Client::builder(TokioExecutor::new()).build(HttpConnector::new());
        let req = Request::post(format!("http://{}/api/v2/scim/Users", up.addr()))
            .header("netskope-api-token", TOKEN)
            .body(Full::new(Bytes::from(r#"{"userName":"p@example.com"}"#)))
            .unwrap();
        let resp = tokio::time::timeout(STEP, client.request(req))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(resp.status(), StatusCode::CREATED);
        let location = resp.headers()["location"].to_str().unwrap().to_string();
        assert!(location.starts_with(&format!("http://{}/api/v2/scim/Users/", up.addr())));
        let second = up.clone();
        drop(up);
        tokio::time::timeout(STEP, second.shutdown()).await.unwrap();
    }
}
