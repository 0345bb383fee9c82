//! ACME (RFC 8555) for the serving certificate: the shared cell the listener's resolver reads
//! (`cell`, `resolver`), challenge answers (`challenge`), one order (`order`, with instant-acme over
//! `http`), the `state_dir` store, and when to order (`schedule`). The renewal loop that drives
//! them is `state::acme`.

mod cell;
mod challenge;
mod http;
mod order;
mod resolver;
pub mod schedule;
mod store;

use std::sync::Arc;

pub use cell::{AcmeCell, Held};
pub use challenge::{HTTP_CHALLENGE_PREFIX, http_challenge_token, tls_alpn_certificate};
pub use http::AcmeHttp;
pub use order::{Issued, obtain};
pub use resolver::ACME_TLS_ALPN;
pub use store::{OrderLock, Store, held_from_pem};

/// The listener's TLS config with its certificate from `cell` (and `acme-tls/1` answered).
pub fn acme_server_config(cell: Arc<AcmeCell>) -> Result<Arc<rustls::ServerConfig>, String> {
    super::server::server_config_with_resolver(
        Arc::new(resolver::AcmeResolver(cell)),
        &[ACME_TLS_ALPN],
    )
}
