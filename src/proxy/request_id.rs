//! The request id: the IdP's own `X-Request-Id` when sane (so IdP and proxy logs correlate), else
//! a fresh one; sent upstream, given back, and in every log line of the request.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use http::HeaderMap;

use crate::proxy::X_REQUEST_ID;

/// Keeps a sane inbound `X-Request-Id`, else makes one.
pub(crate) fn request_id(headers: &HeaderMap) -> String {
    headers
        .get(&X_REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned)
        .unwrap_or_else(new_request_id)
}

/// A UUID-shaped id from a process-random half and a counter: unique across restarts and
/// replicas, without the `getrandom` system call per request that a random v4 UUID costs.
fn new_request_id() -> String {
    static PREFIX: OnceLock<[u8; 8]> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let prefix = PREFIX.get_or_init(|| {
        let b = uuid::Uuid::new_v4().into_bytes();
        [b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]
    });
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(prefix);
    bytes[8..].copy_from_slice(&COUNTER.fetch_add(1, Ordering::Relaxed).to_be_bytes());
    uuid::Builder::from_random_bytes(bytes)
        .into_uuid()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn a_sane_inbound_id_is_kept_and_anything_else_replaced() {
        let mut h = HeaderMap::new();
        h.insert(&X_REQUEST_ID, HeaderValue::from_static("okta-123"));
        assert_eq!(request_id(&h), "okta-123");
        h.insert(&X_REQUEST_ID, HeaderValue::from_static("has space"));
        let fresh = request_id(&h);
        assert!(uuid::Uuid::parse_str(&fresh).is_ok(), "{fresh}");
        assert_ne!(fresh, request_id(&HeaderMap::new()));
    }
}
