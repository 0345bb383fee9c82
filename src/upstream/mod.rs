//! The pooled upstream client: egress bind (family-aware), verified TLS, HTTP/1.1 and HTTP/2 by ALPN.

pub mod classify;
pub mod tunnel;

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::dns::Name;
use hyper_util::rt::TokioIo;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::net::TcpStream;

use crate::body::ProxyBody;
use crate::config::{Egress, Limits};
use crate::upstream::tunnel::TunnelFailure;

pub type Connector = hyper_rustls::HttpsConnector<EgressConnector>;
pub type UpstreamClient = Client<Connector, ProxyBody>;

/// Resolves upstream names to addresses of the egress address's family only: hyper-util binds the
/// local address only when families match, so an IPv4 `bind_ip` must never meet an IPv6 address
/// (it would connect unbound, from an address the tenant allowlist does not know).
#[derive(Clone, Debug, Default)]
pub struct EgressResolver {
    only: Option<Family>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub fn of(ip: IpAddr) -> Family {
        if ip.is_ipv4() { Family::V4 } else { Family::V6 }
    }

    fn name(self) -> &'static str {
        match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        }
    }
}

impl EgressResolver {
    pub fn new(bind_ip: Option<IpAddr>) -> EgressResolver {
        EgressResolver {
            only: bind_ip.map(Family::of),
        }
    }

    /// Resolves `host` and keeps the egress family's addresses, in resolver order.
    pub async fn resolve(only: Option<Family>, host: &str) -> io::Result<Vec<SocketAddr>> {
        let all: Vec<SocketAddr> = tokio::net::lookup_host((host, 0)).await?.collect();
        let kept: Vec<SocketAddr> = all
            .iter()
            .copied()
            .filter(|a| only.is_none_or(|f| Family::of(a.ip()) == f))
            .collect();
        if kept.is_empty() {
            let why = match only {
                Some(f) if !all.is_empty() => format!(
                    "{host} has no {} address, and egress.bind_ip is {}",
                    f.name(),
                    f.name()
                ),
                _ => format!("{host} resolved to no address"),
            };
            return Err(io::Error::new(io::ErrorKind::AddrNotAvailable, why));
        }
        Ok(kept)
    }
}

impl tower::Service<Name> for EgressResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let only = self.only;
        Box::pin(async move { Ok(Self::resolve(only, name.as_str()).await?.into_iter()) })
    }
}

/// Retries a failed TCP connect once after a short jitter. A connect failure means no byte of the
/// request was written, so this is safe for every method, POST included; TLS failures (after bytes
/// moved) are not retried.
#[derive(Clone, Debug)]
pub struct RetryConnect<C> {
    inner: C,
}

impl<C> tower::Service<http::Uri> for RetryConnect<C>
where
    C: tower::Service<http::Uri> + Clone + Send + 'static,
    C::Future: Send,
    C::Response: Send,
    C::Error: Into<crate::body::BoxError> + Send,
{
    type Response = C::Response;
    type Error = crate::body::BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<C::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let first = self.inner.call(uri.clone());
        let mut again = self.inner.clone();
        Box::pin(async move {
            match first.await {
                Ok(conn) => Ok(conn),
                Err(e) => {
                    let e: crate::body::BoxError = e.into();
                    let pause = jitter(Duration::from_millis(50), Duration::from_millis(250));
                    tracing::debug!(error = %e, pause_ms = pause.as_millis() as u64, "upstream connect failed; retrying once");
                    tokio::time::sleep(pause).await;
                    std::future::poll_fn(|cx| again.poll_ready(cx))
                        .await
                        .map_err(Into::into)?;
                    again.call(uri).await.map_err(Into::into)
                }
            }
        })
    }
}

/// A pause in [min, max), spread so that many failing requests do not retry in lockstep.
fn jitter(min: Duration, max: Duration) -> Duration {
    let spread = max.saturating_sub(min).as_millis().max(1);
    let random = u128::from_le_bytes(*uuid::Uuid::new_v4().as_bytes());
    min + Duration::from_millis(u64::try_from(random % spread).unwrap_or(0))
}

type Direct = RetryConnect<HttpConnector<EgressResolver>>;

/// The TCP leg to the upstream: direct from the egress address, or through an HTTP CONNECT
/// forward proxy (reached from the egress address), with TLS to the upstream inside the tunnel.
#[derive(Clone, Debug)]
pub enum EgressConnector {
    Direct(Direct),
    Tunnel(ViaProxy),
}

/// Connects to the forward proxy with the direct connector, then asks it for a tunnel.
#[derive(Clone, Debug)]
pub struct ViaProxy {
    direct: Direct,
    proxy: http::Uri,
    auth: Option<http::HeaderValue>,
    /// The CONNECT answer must come within this (as a TCP connect would).
    timeout: Duration,
}

impl tower::Service<http::Uri> for EgressConnector {
    type Response = TokioIo<TcpStream>;
    type Error = crate::body::BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        match self {
            EgressConnector::Direct(c) => c.poll_ready(cx),
            EgressConnector::Tunnel(v) => v.direct.poll_ready(cx),
        }
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        match self {
            EgressConnector::Direct(c) => Box::pin(c.call(uri)),
            EgressConnector::Tunnel(v) => {
                let to_proxy = v.direct.call(v.proxy.clone());
                let (auth, timeout) = (v.auth.clone(), v.timeout);
                Box::pin(async move {
                    let mut io = to_proxy.await.map_err(|e| ForwardProxyError {
                        failure: TunnelFailure::Connect(
                            crate::error::error_chain(&*e)
                                .last()
                                .map(|e| e.to_string())
                                .unwrap_or_default(),
                        ),
                    })?;
                    let host = uri.host().ok_or("the upstream URL has no host")?;
                    let host = host.trim_start_matches('[').trim_end_matches(']');
                    let port = uri.port_u16().unwrap_or(443);
                    crate::upstream::tunnel::connect(
                        io.inner_mut(),
                        host,
                        port,
                        auth.as_ref(),
                        timeout,
                    )
                    .await
                    .map_err(|failure| ForwardProxyError { failure })?;
                    Ok(io)
                })
            }
        }
    }
}

/// Why the forward proxy leg failed, worded for an admin.
#[derive(Debug)]
pub struct ForwardProxyError {
    pub failure: TunnelFailure,
}

impl std::fmt::Display for ForwardProxyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.failure {
            TunnelFailure::Connect(why) => {
                write!(f, "could not connect to the forward proxy ({why})")
            }
            TunnelFailure::Auth {
                status,
                sent_credentials: false,
            } => write!(
                f,
                "the forward proxy demands authentication ({status}): set egress.via_proxy_auth_file or _env"
            ),
            TunnelFailure::Auth { status, .. } => write!(
                f,
                "the forward proxy refused the credentials ({status}): check egress.via_proxy_auth_file or _env"
            ),
            TunnelFailure::Refused { status, reason } => write!(
                f,
                "the forward proxy refused the CONNECT tunnel to the upstream ({status} {reason})"
            ),
            TunnelFailure::Protocol(why) => write!(f, "the forward proxy tunnel failed: {why}"),
        }
    }
}

impl std::error::Error for ForwardProxyError {}

/// The forward proxy's `user:password`, sent as `Proxy-Authorization: Basic`, never logged.
pub fn proxy_authorization(credentials: &str) -> Result<http::HeaderValue, String> {
    use base64::Engine;
    let credentials = credentials.trim();
    if !credentials.contains(':') {
        return Err("expected user:password".into());
    }
    let encoded = base64::engine::general_purpose::STANDARD.encode(credentials);
    let mut value = http::HeaderValue::from_str(&format!("Basic {encoded}"))
        .map_err(|_| "not usable in a header".to_string())?;
    value.set_sensitive(true);
    Ok(value)
}

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
    let direct = RetryConnect { inner: http };
    let egress_connector = match &egress.via_proxy {
        None => EgressConnector::Direct(direct),
        Some(proxy) => {
            let proxy_uri: http::Uri = proxy
                .url
                .parse()
                .map_err(|e| format!("egress.via_proxy: {e}"))?;
            EgressConnector::Tunnel(ViaProxy {
                direct,
                proxy: proxy_uri,
                auth: proxy_auth,
                timeout: limits.upstream_connect_timeout,
            })
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
pub struct OnceConnector<S>(std::sync::Arc<std::sync::Mutex<Option<S>>>);

// By hand: a derive would ask `S: Clone`, and a connection is not.
impl<S> Clone for OnceConnector<S> {
    fn clone(&self) -> Self {
        OnceConnector(self.0.clone())
    }
}

impl<S> OnceConnector<S> {
    pub fn new(stream: S) -> OnceConnector<S> {
        OnceConnector(std::sync::Arc::new(std::sync::Mutex::new(Some(stream))))
    }
}

impl<S: Send + 'static> tower::Service<http::Uri> for OnceConnector<S> {
    type Response = S;
    type Error = std::io::Error;
    type Future = std::future::Ready<Result<S, std::io::Error>>;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, _uri: http::Uri) -> Self::Future {
        let stream = self.0.lock().ok().and_then(|mut s| s.take());
        std::future::ready(
            stream.ok_or_else(|| std::io::Error::other("the preflight connection is used already")),
        )
    }
}
