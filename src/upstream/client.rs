//! Building the upstream client: the connector (egress, retry, verified TLS), the pool settings,
//! and the one-connection connector `check --live` sends through.

use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::{Connector, EgressConnector, EgressResolver, RetryConnect, UpstreamClient, ViaProxy};
use crate::config::{Egress, Limits};

/// The connector the proxy uses: egress (bind, forward proxy), connect retry, verified TLS with
/// ALPN h2 + http/1.1. `check --live` uses the same one, so it tests the real path.
pub fn build_connector(
    egress: &Egress,
    limits: &Limits,
    tls: rustls::ClientConfig,
    proxy_auth: Option<http::HeaderValue>,
) -> Result<Connector, String> {
    let mut http = HttpConnector::new_with_resolver(EgressResolver::new(egress.bind_ip));
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_local_address(egress.bind_ip);
    http.set_connect_timeout(Some(limits.upstream_connect_timeout));
    http.set_keepalive(Some(Duration::from_secs(30)));
    let direct = RetryConnect::new(http);
    let egress_connector = match &egress.via_proxy {
        None => EgressConnector::Direct(direct),
        Some(proxy) => {
            let proxy_uri: http::Uri = proxy
                .url
                .parse()
                .map_err(|e| format!("egress.via_proxy: {e}"))?;
            EgressConnector::Tunnel(ViaProxy::new(
                direct,
                proxy_uri,
                proxy_auth,
                limits.upstream_connect_timeout,
            ))
        }
    };
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only()
        .enable_http1()
        .enable_http2()
        .wrap_connector(egress_connector);
    Ok(https)
}

/// Builds the one shared client. The pool timer makes the idle timeout effective (without it
/// hyper-util never evicts, and a connection the upstream closed gets reused).
pub fn build_client(
    egress: &Egress,
    limits: &Limits,
    tls: rustls::ClientConfig,
    proxy_auth: Option<http::HeaderValue>,
) -> Result<UpstreamClient, String> {
    let https = build_connector(egress, limits, tls, proxy_auth)?;
    Ok(client_builder(limits).build(https))
}

/// The client settings serving uses; `check --live` sends its request with the same ones.
pub fn client_builder(limits: &Limits) -> hyper_util::client::legacy::Builder {
    let mut builder = Client::builder(TokioExecutor::new());
    builder
        // One TLS record per request head + small body, as on the inbound side.
        .http1_writev(false)
        .pool_idle_timeout(limits.upstream_idle_timeout)
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        // Retries only a request that never started on a reused connection the upstream had closed.
        .retry_canceled_requests(true);
    builder
}

/// A connector that hands out one already-made connection: `check --live` describes the egress
/// path and TLS of a connection it made itself, then sends its request over that very connection
/// through a client built like serving's.
pub struct OnceConnector<S>(Arc<Mutex<Option<S>>>);

// By hand: a derive would ask `S: Clone`, and a connection is not.
impl<S> Clone for OnceConnector<S> {
    fn clone(&self) -> Self {
        OnceConnector(self.0.clone())
    }
}

impl<S> OnceConnector<S> {
    pub fn new(stream: S) -> OnceConnector<S> {
        OnceConnector(Arc::new(Mutex::new(Some(stream))))
    }
}

impl<S: Send + 'static> tower::Service<http::Uri> for OnceConnector<S> {
    type Response = S;
    type Error = std::io::Error;
    type Future = std::future::Ready<Result<S, std::io::Error>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _uri: http::Uri) -> Self::Future {
        let stream = self.0.lock().ok().and_then(|mut s| s.take());
        std::future::ready(
            stream.ok_or_else(|| std::io::Error::other("the preflight connection is used already")),
        )
    }
}
