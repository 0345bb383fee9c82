//! Name resolution for the egress: only addresses of the egress address's family.

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};

use hyper_util::client::legacy::connect::dns::Name;

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
