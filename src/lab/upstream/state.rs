//! What the upstream's connections share: the store, what was received, canned answers, switches.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::AtomicBool;

use bytes::Bytes;
use http::{HeaderMap, Method};
use tokio::sync::watch;

use super::overrides::Override;
use super::rate_limit::Limiter;
use super::store::Store;

/// One request as the upstream received it.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    pub method: Method,
    /// Raw request target, not decoded.
    pub path_and_query: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// Source address of the TCP connection.
    pub peer: SocketAddr,
    pub version: http::Version,
    pub authenticated: bool,
}

/// Shared by every connection of one upstream.
pub(super) struct State {
    pub(super) base_path: String,
    pub(super) scheme: &'static str,
    pub(super) tokens: Mutex<Vec<String>>,
    pub(super) requests: Mutex<Vec<RecordedRequest>>,
    pub(super) overrides: Mutex<VecDeque<Override>>,
    pub(super) store: Mutex<Store>,
    pub(super) chunked: AtomicBool,
    pub(super) log_requests: AtomicBool,
    /// A tenant-wide rate limit, when set.
    pub(super) rate_limit: Mutex<Option<Limiter>>,
    /// When set, the one accepted token is read from this file on every request.
    pub(super) token_file: Mutex<Option<PathBuf>>,
    pub(super) stop: watch::Receiver<bool>,
}

/// Resolves once shutdown was requested or every [`super::Upstream`] handle is gone.
pub(super) async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}
