//! The TCP leg to the upstream: direct from the egress address, or through a forward proxy.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::forward_proxy::ForwardProxyError;
use super::tunnel::{self, TunnelFailure};
use super::{EgressResolver, RetryConnect};
use crate::body::BoxError;

/// A TCP connect from the egress address, retried once.
pub type Direct = RetryConnect<HttpConnector<EgressResolver>>;

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

type Connecting = Pin<Box<dyn Future<Output = Result<TokioIo<TcpStream>, BoxError>> + Send>>;

impl ViaProxy {
    pub fn new(
        direct: Direct,
        proxy: http::Uri,
        auth: Option<http::HeaderValue>,
        timeout: Duration,
    ) -> ViaProxy {
        ViaProxy {
            direct,
            proxy,
            auth,
            timeout,
        }
    }

    /// A TCP connection to the proxy, then `CONNECT` to the upstream of `uri` on it.
    fn connect(&mut self, uri: http::Uri) -> Connecting {
        use tower::Service;
        let to_proxy = self.direct.call(self.proxy.clone());
        let (auth, timeout) = (self.auth.clone(), self.timeout);
        Box::pin(async move {
            let mut io = to_proxy.await.map_err(|e| ForwardProxyError {
                failure: TunnelFailure::Connect(crate::error::innermost(&*e)),
            })?;
            let host = uri.host().ok_or("the upstream URL has no host")?;
            let host = host.trim_start_matches('[').trim_end_matches(']');
            let port = uri.port_u16().unwrap_or(443);
            tunnel::connect(io.inner_mut(), host, port, auth.as_ref(), timeout)
                .await
                .map_err(|failure| ForwardProxyError { failure })?;
            Ok(io)
        })
    }
}

impl tower::Service<http::Uri> for EgressConnector {
    type Response = TokioIo<TcpStream>;
    type Error = BoxError;
    type Future = Connecting;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        match self {
            EgressConnector::Direct(c) => c.poll_ready(cx),
            EgressConnector::Tunnel(v) => v.direct.poll_ready(cx),
        }
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        match self {
            EgressConnector::Direct(c) => Box::pin(c.call(uri)),
            EgressConnector::Tunnel(v) => v.connect(uri),
        }
    }
}
