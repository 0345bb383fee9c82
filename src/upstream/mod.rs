//! The pooled upstream client: egress bind (family-aware), verified TLS, HTTP/1.1 and HTTP/2 by
//! ALPN, and what a failure on the way to the upstream means.

pub mod classify;
mod client;
mod egress;
mod forward_proxy;
mod resolve;
mod retry;
pub mod tunnel;

use hyper_util::client::legacy::Client;

use crate::body::ProxyBody;

pub use client::{OnceConnector, build_client, build_connector, client_builder};
pub use egress::{EgressConnector, ViaProxy};
pub use forward_proxy::{ForwardProxyError, proxy_authorization};
pub use resolve::{EgressResolver, Family};
pub use retry::RetryConnect;

pub type Connector = hyper_rustls::HttpsConnector<EgressConnector>;
pub type UpstreamClient = Client<Connector, ProxyBody>;
