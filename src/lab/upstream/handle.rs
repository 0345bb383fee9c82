//! The public handle: how an [`Upstream`] is started, what it records, and the state its
//! connections share.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use super::lock;
use super::overrides::Override;
use super::rate_limit::{Limiter, RateLimit};
use super::server::accept_loop;
use super::state::{RecordedRequest, State};
use super::store::Store;

/// How to start an [`Upstream`].
#[derive(Clone, Debug)]
pub struct UpstreamOptions {
    /// Listen address, e.g. `127.0.0.1:0`.
    pub bind: SocketAddr,
    /// `None` serves plain HTTP.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Prefix of every SCIM route, e.g. `/api/v2/scim`.
    pub base_path: String,
    /// Accepted v2 tokens (`Authorization: Bearer` or `Netskope-Api-Token`).
    pub tokens: Vec<String>,
}

/// A running upstream. Clones share the server; it stops on [`Upstream::shutdown`]
/// or when the last clone is dropped.
#[derive(Clone)]
pub struct Upstream {
    addr: SocketAddr,
    state: Arc<State>,
    ctl: Arc<Control>,
}

struct Control {
    pub(super) stop: watch::Sender<bool>,
    pub(super) done: watch::Receiver<bool>,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("addr", &self.addr)
            .field("base_path", &self.state.base_path)
            .finish_non_exhaustive()
    }
}

impl Upstream {
    /// Binds and starts serving in background tasks.
    pub async fn start(opts: UpstreamOptions) -> io::Result<Upstream> {
        let listener = TcpListener::bind(opts.bind).await?;
        let addr = listener.local_addr()?;
        let (stop_tx, stop_rx) = watch::channel(false);
        let (done_tx, done_rx) = watch::channel(false);
        let state = Arc::new(State {
            base_path: normalize_base(&opts.base_path),
            scheme: if opts.tls.is_some() { "https" } else { "http" },
            tokens: Mutex::new(opts.tokens),
            requests: Mutex::new(Vec::new()),
            overrides: Mutex::new(VecDeque::new()),
            store: Mutex::new(Store::default()),
            chunked: AtomicBool::new(false),
            log_requests: AtomicBool::new(false),
            rate_limit: Mutex::new(None),
            token_file: Mutex::new(None),
            stop: stop_rx.clone(),
        });
        let acceptor = opts.tls.map(TlsAcceptor::from);
        tokio::spawn(accept_loop(
            listener,
            acceptor,
            Arc::clone(&state),
            stop_rx,
            done_tx,
        ));
        Ok(Upstream {
            addr,
            state,
            ctl: Arc::new(Control {
                stop: stop_tx,
                done: done_rx,
            }),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every request received so far, in arrival order (rejected ones too).
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.state.requests).clone()
    }

    pub fn clear_requests(&self) {
        lock(&self.state.requests).clear();
    }

    /// Replaces the accepted tokens; takes effect for the next request.
    pub fn set_tokens(&self, tokens: Vec<String>) {
        *lock(&self.state.tokens) = tokens;
    }

    /// With `true`, answers with a body go out without Content-Length, in two chunks (HTTP/1.1
    /// chunked framing, or HTTP/2 DATA frames of unannounced length), as many real upstreams do.
    pub fn set_chunked(&self, chunked: bool) {
        self.state.chunked.store(chunked, Ordering::Relaxed);
    }

    /// With `true`, each request is printed on stdout as `source method target -> status`: the
    /// lab's way to see which address a proxy's fixed egress really leaves from.
    pub fn log_requests(&self, on: bool) {
        self.state.log_requests.store(on, Ordering::Relaxed);
    }

    /// A tenant-wide rate limit (None: unlimited): above it 429 with `Retry-After`, and the
    /// `ratelimit-*` headers on every answer.
    pub fn set_rate_limit(&self, rule: Option<RateLimit>) {
        *lock(&self.state.rate_limit) = rule.map(Limiter::new);
    }

    /// With a file, the one token accepted is read from it on every request: rewriting the file
    /// rotates the token and invalidates the old one at once. None: the `set_tokens` list.
    pub fn set_token_file(&self, file: Option<PathBuf>) {
        *lock(&self.state.token_file) = file;
    }

    /// Queues a canned answer (FIFO) for the next request.
    pub fn push_override(&self, o: Override) {
        lock(&self.state.overrides).push_back(o);
    }

    /// Stops accepting, closes connections and returns once the accept task has ended.
    pub async fn shutdown(self) {
        self.ctl.stop.send_replace(true);
        let mut done = self.ctl.done.clone();
        // Err means the accept task is gone already, which is what we wait for.
        let _ = done.wait_for(|d| *d).await;
    }
}

fn normalize_base(base: &str) -> String {
    let trimmed = base.trim().trim_end_matches('/');
    if trimmed.is_empty() || trimmed.starts_with('/') {
        trimmed.to_string()
    } else {
        format!("/{trimmed}")
    }
}
