//! The http-01 listener (`listen.acme.http_addr`, plain HTTP, what the CA reaches on port 80):
//! answers `GET /.well-known/acme-challenge/<token>` for an order in flight and 404s everything
//! else, so it exposes nothing of the proxy.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::body::{ProxyBody, full};
use crate::config::{AcmeChallenge, Config};
use crate::state::Shared;
use crate::tls::acme::http_challenge_token;

/// The http-01 listener's address, when the config asks for one.
pub fn addr(config: &Config) -> Option<SocketAddr> {
    match config.listen.acme.as_ref()?.challenge {
        AcmeChallenge::Http01(addr) => Some(addr),
        AcmeChallenge::TlsAlpn01 => None,
    }
}

pub async fn serve(listener: TcpListener, shared: Arc<Shared>, shutdown: CancellationToken) {
    loop {
        let (stream, _) = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let shared = shared.clone();
                async move { Ok::<_, Infallible>(answer(&shared, &req)) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(5))
                .keep_alive(false)
                .serve_connection(TokioIo::new(stream), service);
            let _ = tokio::time::timeout(Duration::from_secs(30), conn).await;
        });
    }
}

fn answer(shared: &Shared, req: &Request<Incoming>) -> Response<ProxyBody> {
    let found = (req.method() == Method::GET || req.method() == Method::HEAD)
        .then(|| http_challenge_token(req.uri().path()))
        .flatten()
        .and_then(|token| shared.state.load().acme.as_ref()?.http_challenge(token));
    let (status, body) = match found {
        Some(key_authorization) => (StatusCode::OK, key_authorization),
        None => (StatusCode::NOT_FOUND, "not found\n".to_string()),
    };
    let mut res = Response::new(full(body));
    *res.status_mut() = status;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain"),
    );
    res
}
