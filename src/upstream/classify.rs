//! What went wrong on the way to the upstream: one walk of the error chain that both the request
//! path (a 502's kind and detail) and `check --live` (the failing leg and its meaning) read.

use std::error::Error;
use std::io;

use hyper_util::client::legacy::Error as ClientError;

use super::ForwardProxyError;
use crate::error::{ErrorKind, ProxyError, error_chain};

/// Which leg failed. TLS and forward proxy failures exclude each other: the TLS handshake starts
/// only once the tunnel stands.
#[derive(Debug)]
pub(crate) enum UpstreamFailure<'a> {
    /// The TLS handshake with the upstream (its certificate, the protocol).
    Tls(&'a rustls::Error),
    /// The forward proxy leg: reaching it, its credentials, its answer to CONNECT.
    ForwardProxy(&'a ForwardProxyError),
    /// The TCP connect to the upstream.
    Connect(NetworkCause),
    /// Connected, then the exchange broke (a reset, a malformed response).
    Protocol(NetworkCause),
}

/// The most likely network cause, from the first I/O error's kind, else the chain's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NetworkCause {
    Refused,
    /// No address of the egress family, or the egress address is not on this host.
    NoAddress,
    TimedOut,
    Dns,
    Other,
}

/// An upstream failure read once: the failing leg, and the chain it was read from.
pub(crate) struct UpstreamFault<'a> {
    pub failure: UpstreamFailure<'a>,
    links: Vec<&'a (dyn Error + 'static)>,
    /// The first I/O error: its words say why a connect failed.
    io: Option<&'a io::Error>,
}

impl<'a> UpstreamFault<'a> {
    /// Reads `e`; `connecting` says whether it failed before a connection stood.
    pub fn read(e: &'a (dyn Error + 'static), connecting: bool) -> UpstreamFault<'a> {
        let links = error_chain(e);
        let io = links.iter().find_map(|l| l.downcast_ref::<io::Error>());
        let tls = links.iter().find_map(|l| l.downcast_ref::<rustls::Error>());
        let forward = links
            .iter()
            .find_map(|l| l.downcast_ref::<ForwardProxyError>());
        let failure = match (tls, forward) {
            (Some(t), _) => UpstreamFailure::Tls(t),
            (None, Some(f)) => UpstreamFailure::ForwardProxy(f),
            (None, None) => {
                let cause = network_cause(io.map(io::Error::kind), &links);
                if connecting {
                    UpstreamFailure::Connect(cause)
                } else {
                    UpstreamFailure::Protocol(cause)
                }
            }
        };
        UpstreamFault { failure, links, io }
    }

    /// Reads an error of the pooled client (which knows whether it failed connecting).
    pub fn of_client(err: &'a ClientError) -> UpstreamFault<'a> {
        UpstreamFault::read(err, err.is_connect())
    }

    /// Every link's words, outermost first, joined with ": ".
    pub fn chain(&self) -> String {
        self.links
            .iter()
            .map(|l| l.to_string())
            .collect::<Vec<_>>()
            .join(": ")
    }

    /// The innermost link's words: usually the most specific ("Connection refused").
    pub fn innermost(&self) -> String {
        self.links.last().map(|e| e.to_string()).unwrap_or_default()
    }

    /// The request path's answer: a 502 with a detail the client may read.
    pub fn to_proxy_error(&self) -> ProxyError {
        match &self.failure {
            UpstreamFailure::ForwardProxy(f) => {
                ProxyError::new(ErrorKind::UpstreamConnect, f.to_string())
            }
            UpstreamFailure::Tls(t) => ProxyError::new(
                ErrorKind::UpstreamTls,
                format!("upstream TLS failed: {}", crate::tls::describe_tls_error(t)),
            ),
            UpstreamFailure::Connect(_) => {
                let why = self
                    .io
                    .map(|e| e.to_string())
                    .unwrap_or_else(|| self.innermost());
                ProxyError::new(
                    ErrorKind::UpstreamConnect,
                    format!("could not connect to the upstream: {why}"),
                )
            }
            UpstreamFailure::Protocol(_) => ProxyError::new(
                ErrorKind::UpstreamProtocol,
                format!("the upstream connection failed: {}", self.innermost()),
            ),
        }
    }
}

fn network_cause(io: Option<io::ErrorKind>, links: &[&(dyn Error + 'static)]) -> NetworkCause {
    match io {
        Some(io::ErrorKind::ConnectionRefused) => NetworkCause::Refused,
        Some(io::ErrorKind::AddrNotAvailable) => NetworkCause::NoAddress,
        Some(io::ErrorKind::TimedOut) => NetworkCause::TimedOut,
        // The resolver's errors carry no kind of their own: known by their words.
        _ if links.iter().any(|l| {
            let words = l.to_string();
            ["failed to lookup", "resolve", "Name or service"]
                .iter()
                .any(|w| words.contains(w))
        }) =>
        {
            NetworkCause::Dns
        }
        _ => NetworkCause::Other,
    }
}

/// Classifies a client error (without keeping it; `ProxyError::from(err)` keeps it as the source).
pub fn classify_upstream_error(err: &ClientError) -> ProxyError {
    UpstreamFault::of_client(err).to_proxy_error()
}

/// The request path's answer to a client error, which it keeps as its source.
impl From<ClientError> for ProxyError {
    fn from(err: ClientError) -> ProxyError {
        classify_upstream_error(&err).with_source(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::tunnel::TunnelFailure;

    #[test]
    fn a_refused_connect_reads_the_same_for_both_readers() {
        let e = io::Error::new(io::ErrorKind::ConnectionRefused, "Connection refused");
        let fault = UpstreamFault::read(&e, true);
        assert!(matches!(
            fault.failure,
            UpstreamFailure::Connect(NetworkCause::Refused)
        ));
        let p = fault.to_proxy_error();
        assert_eq!(p.kind, ErrorKind::UpstreamConnect);
        assert_eq!(
            p.detail,
            "could not connect to the upstream: Connection refused"
        );
        // The io::Error, then the message it wraps.
        assert_eq!(fault.chain(), "Connection refused: Connection refused");
        let exchange = UpstreamFault::read(&e, false).to_proxy_error();
        assert_eq!(exchange.kind, ErrorKind::UpstreamProtocol);
        assert_eq!(
            exchange.detail,
            "the upstream connection failed: Connection refused"
        );
    }

    #[test]
    fn a_forward_proxy_failure_is_found_inside_an_io_error() {
        let e = io::Error::other(ForwardProxyError {
            failure: TunnelFailure::Refused {
                status: 403,
                reason: "Forbidden".into(),
            },
        });
        let fault = UpstreamFault::read(&e, true);
        assert!(matches!(fault.failure, UpstreamFailure::ForwardProxy(_)));
        let p = fault.to_proxy_error();
        assert_eq!(p.kind, ErrorKind::UpstreamConnect);
        assert_eq!(
            p.detail,
            "the forward proxy refused the CONNECT tunnel to the upstream (403 Forbidden)"
        );
    }

    #[test]
    fn resolver_words_mean_dns() {
        let e = io::Error::other("failed to lookup address information: Name or service not known");
        let fault = UpstreamFault::read(&e, true);
        assert!(matches!(
            fault.failure,
            UpstreamFailure::Connect(NetworkCause::Dns)
        ));
    }
}
