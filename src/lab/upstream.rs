//! Embedded Netskope-like SCIM 2.0 server (`/api/v2/scim`) that backs `demo` and the proxy's tests.

use std::collections::{HashSet, VecDeque};
use std::convert::Infallible;
use std::io;
use std::io::Write as _;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{
    AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, ETAG, HOST, HeaderName, HeaderValue, IF_MATCH,
    IF_NONE_MATCH, LOCATION,
};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde_json::{Map, Value, json};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

const MAX_BODY: usize = 64 * 1024 * 1024;
const DEFAULT_COUNT: i64 = 100;
// Netskope's filter maxResults.
const MAX_COUNT: i64 = 200;
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
// How long open connections get to finish in-flight requests on shutdown before being cut.
const SHUTDOWN_GRACE: Duration = Duration::from_millis(500);

const SCIM_JSON: &str = "application/scim+json;charset=utf-8";
// Netskope's documented error bodies are plain JSON.
const ERROR_JSON: &str = "application/json";
const ERROR_URN: &str = "urn:ietf:params:scim:api:messages:2.0:Error";
const LIST_URN: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
const PATCH_URN: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
const USER_URN: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const GROUP_URN: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
const ENTERPRISE_URN: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

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

/// A canned answer that replaces SCIM handling for one request.
#[derive(Clone, Debug, Default)]
pub struct Override {
    pub status: StatusCode,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
    /// Wait this long before answering.
    pub delay: Duration,
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
    stop: watch::Sender<bool>,
    done: watch::Receiver<bool>,
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

struct State {
    base_path: String,
    scheme: &'static str,
    tokens: Mutex<Vec<String>>,
    requests: Mutex<Vec<RecordedRequest>>,
    overrides: Mutex<VecDeque<Override>>,
    store: Mutex<Store>,
    chunked: AtomicBool,
    log_requests: AtomicBool,
    stop: watch::Receiver<bool>,
}

impl State {
    fn authenticated(&self, headers: &HeaderMap) -> bool {
        let tokens = lock(&self.tokens);
        let known = |t: &str| !t.is_empty() && tokens.iter().any(|k| k == t);
        let bearer = headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let (scheme, rest) = v.trim().split_once([' ', '\t'])?;
                scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
            });
        let api_token = headers
            .get("netskope-api-token")
            .and_then(|v| v.to_str().ok())
            .map(str::trim);
        bearer.is_some_and(known) || api_token.is_some_and(known)
    }
}

/// A poisoned lock only means a test thread panicked; the data is still usable.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn normalize_base(base: &str) -> String {
    let trimmed = base.trim().trim_end_matches('/');
    if trimmed.is_empty() || trimmed.starts_with('/') {
        trimmed.to_string()
    } else {
        format!("/{trimmed}")
    }
}

/// Resolves once shutdown was requested or every [`Upstream`] handle is gone.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: Option<TlsAcceptor>,
    state: Arc<State>,
    mut stop: watch::Receiver<bool>,
    done: watch::Sender<bool>,
) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            _ = stopped(&mut stop) => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => {
                    conns.spawn(serve_conn(tcp, peer, acceptor.clone(), Arc::clone(&state)));
                }
                Err(e) => {
                    // E.g. EMFILE: back off instead of spinning.
                    tracing::warn!(error = %e, "upstream accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            },
        }
    }
    drop(listener);
    // Connections see the same stop signal and shut down gracefully; cut the stragglers.
    let drained = tokio::time::timeout(SHUTDOWN_GRACE * 2, async {
        while conns.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        conns.abort_all();
        while conns.join_next().await.is_some() {}
    }
    drop(state);
    done.send_replace(true);
}

async fn serve_conn(
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
    acceptor: Option<TlsAcceptor>,
    state: Arc<State>,
) {
    let _ = tcp.set_nodelay(true);
    let local = tcp.local_addr().ok();
    let mut stop = state.stop.clone();
    match acceptor {
        Some(acceptor) => {
            let tls = tokio::select! {
                _ = stopped(&mut stop) => return,
                r = tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(tcp)) => match r {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, error = %e, "upstream TLS handshake failed");
                        return;
                    }
                    Err(_) => return,
                },
            };
            serve_http(TokioIo::new(tls), peer, local, state, stop).await;
        }
        None => serve_http(TokioIo::new(tcp), peer, local, state, stop).await,
    }
}

async fn serve_http<I>(
    io: I,
    peer: SocketAddr,
    local: Option<SocketAddr>,
    state: Arc<State>,
    mut stop: watch::Receiver<bool>,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let svc = service_fn(move |req| {
        let state = Arc::clone(&state);
        async move {
            let chunked = state.chunked.load(Ordering::Relaxed);
            // The target only: headers carry the token, and the body personal data.
            let logged = state.log_requests.load(Ordering::Relaxed).then(|| {
                let target = req.uri().path_and_query().map_or("/", |p| p.as_str());
                format!(
                    "{} {:?} {} {target}",
                    peer.ip(),
                    req.version(),
                    req.method()
                )
            });
            let resp = handle(Arc::clone(&state), peer, local, req).await;
            if let Some(line) = logged {
                // A closed stdout must not take the lab upstream down with it.
                let _ = writeln!(
                    std::io::stdout().lock(),
                    "{line} -> {}",
                    resp.status().as_u16()
                );
            }
            Ok::<_, Infallible>(framed(resp, chunked).await)
        }
    });
    let builder = auto::Builder::new(TokioExecutor::new());
    let conn = builder.serve_connection(io, svc);
    tokio::pin!(conn);
    tokio::select! {
        res = conn.as_mut() => {
            if let Err(e) = res {
                tracing::debug!(%peer, error = %e, "upstream connection ended with an error");
            }
        }
        _ = stopped(&mut stop) => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(SHUTDOWN_GRACE, conn.as_mut()).await;
        }
    }
}

type Resp = Response<Full<Bytes>>;

/// A response body sent whole with its length, or in two chunks of unannounced length.
struct Framed {
    chunks: VecDeque<Bytes>,
    /// The exact length, when announced.
    sized: Option<u64>,
}

impl Body for Framed {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.chunks.pop_front().map(|c| Ok(Frame::data(c))))
    }

    fn is_end_stream(&self) -> bool {
        self.chunks.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        self.sized
            .map_or_else(SizeHint::default, SizeHint::with_exact)
    }
}

async fn framed(resp: Resp, chunked: bool) -> Response<Framed> {
    let (mut parts, body) = resp.into_parts();
    let bytes = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(never) => match never {},
    };
    let len = bytes.len() as u64;
    let chunks: VecDeque<Bytes> = match (bytes.is_empty(), chunked) {
        (true, _) => VecDeque::new(),
        (false, false) => [bytes].into(),
        (false, true) => {
            parts.headers.remove(CONTENT_LENGTH);
            let half = bytes.len() / 2;
            [bytes.slice(..half), bytes.slice(half..)].into()
        }
    };
    let sized = (!chunked || chunks.is_empty()).then_some(len);
    Response::from_parts(parts, Framed { chunks, sized })
}

async fn handle(
    state: Arc<State>,
    peer: SocketAddr,
    local: Option<SocketAddr>,
    req: Request<Incoming>,
) -> Resp {
    let (parts, body) = req.into_parts();
    let body = match Limited::new(body, MAX_BODY).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<LengthLimitError>() => Err(ScimError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            None,
            format!("request body exceeds {MAX_BODY} bytes"),
        )),
        Err(e) => Err(ScimError::bad_request(
            "invalidSyntax",
            format!("could not read request body: {e}"),
        )),
    };
    let authenticated = state.authenticated(&parts.headers);
    let path_and_query = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| parts.uri.to_string());
    lock(&state.requests).push(RecordedRequest {
        method: parts.method.clone(),
        path_and_query,
        headers: parts.headers.clone(),
        body: body.as_ref().map(Bytes::clone).unwrap_or_default(),
        peer,
        version: parts.version,
        authenticated,
    });
    // Strict, as many origin servers are: an HTTP/1 absolute-form target is for a forward proxy.
    if parts.version != http::Version::HTTP_2 && parts.uri.authority().is_some() {
        return ScimError::new(
            StatusCode::BAD_REQUEST,
            None,
            "absolute-form request target refused: this is an origin server".into(),
        )
        .into_response();
    }

    let canned = lock(&state.overrides).pop_front();
    let resp = if let Some(o) = canned {
        if !o.delay.is_zero() {
            let mut stop = state.stop.clone();
            tokio::select! {
                _ = tokio::time::sleep(o.delay) => {}
                _ = stopped(&mut stop) => {}
            }
        }
        override_response(o)
    } else {
        let result = body.and_then(|body| {
            if !authenticated {
                return Err(ScimError::new(
                    StatusCode::UNAUTHORIZED,
                    None,
                    "missing, invalid or expired API token".into(),
                ));
            }
            let host = parts
                .headers
                .get(HOST)
                .and_then(|h| h.to_str().ok())
                .map(str::to_string)
                .or_else(|| parts.uri.authority().map(|a| a.to_string()))
                .or_else(|| local.map(|a| a.to_string()))
                .unwrap_or_else(|| "localhost".into());
            let ctx = Ctx {
                method: &parts.method,
                headers: &parts.headers,
                query: Query::parse(parts.uri.query()),
                body: &body,
                base_url: format!("{}://{host}{}", state.scheme, state.base_path),
            };
            route(&state, parts.uri.path(), &ctx)
        });
        result.unwrap_or_else(ScimError::into_response)
    };
    tracing::debug!(
        method = %parts.method,
        uri = %parts.uri,
        status = resp.status().as_u16(),
        "upstream answered"
    );
    resp
}

fn override_response(o: Override) -> Resp {
    let no_body = body_forbidden(o.status);
    let mut resp = Response::new(Full::new(if no_body {
        Bytes::new()
    } else {
        o.body.clone()
    }));
    *resp.status_mut() = o.status;
    for (name, value) in &o.headers {
        match (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            (Ok(n), Ok(v)) => {
                resp.headers_mut().append(n, v);
            }
            _ => tracing::warn!(%name, "skipping invalid override header"),
        }
    }
    if !no_body && !resp.headers().contains_key(CONTENT_LENGTH) {
        resp.headers_mut()
            .insert(CONTENT_LENGTH, HeaderValue::from(o.body.len()));
    }
    resp
}

fn body_forbidden(status: StatusCode) -> bool {
    status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
}

fn response(status: StatusCode, content_type: &'static str, body: Bytes) -> Resp {
    let no_body = body_forbidden(status);
    let len = body.len();
    let mut resp = Response::new(Full::new(if no_body { Bytes::new() } else { body }));
    *resp.status_mut() = status;
    if !no_body {
        let h = resp.headers_mut();
        h.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        h.insert(CONTENT_LENGTH, HeaderValue::from(len));
    }
    resp
}

fn json_response(status: StatusCode, v: &Value) -> Resp {
    // Serialising a `Value` cannot fail; an empty body would be the fallback.
    let body = serde_json::to_vec(v).map(Bytes::from).unwrap_or_default();
    response(status, SCIM_JSON, body)
}

fn with_header(mut resp: Resp, name: HeaderName, value: &str) -> Resp {
    if let Ok(v) = HeaderValue::from_str(value) {
        resp.headers_mut().insert(name, v);
    }
    resp
}

/// A SCIM Error answer (RFC 7644 §3.12).
#[derive(Debug)]
struct ScimError {
    status: StatusCode,
    scim_type: Option<&'static str>,
    detail: String,
}

impl ScimError {
    fn new(status: StatusCode, scim_type: Option<&'static str>, detail: String) -> Self {
        ScimError {
            status,
            scim_type,
            detail,
        }
    }
    fn bad_request(scim_type: &'static str, detail: String) -> Self {
        Self::new(StatusCode::BAD_REQUEST, Some(scim_type), detail)
    }
    fn not_found(detail: String) -> Self {
        Self::new(StatusCode::NOT_FOUND, None, detail)
    }
    fn into_response(self) -> Resp {
        let mut body = json!({
            "schemas": [ERROR_URN],
            "status": self.status.as_u16().to_string(),
            "detail": self.detail,
        });
        if let (Some(t), Some(m)) = (self.scim_type, body.as_object_mut()) {
            m.insert("scimType".into(), Value::from(t));
        }
        let bytes = serde_json::to_vec(&body)
            .map(Bytes::from)
            .unwrap_or_default();
        response(self.status, ERROR_JSON, bytes)
    }
}

// ---------------------------------------------------------------------------
// Routing

struct Ctx<'a> {
    method: &'a Method,
    headers: &'a HeaderMap,
    query: Query,
    body: &'a [u8],
    /// `<scheme>://<Host as received><base_path>`, the prefix of every `meta.location`.
    base_url: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    User,
    Group,
}

impl Kind {
    fn from_segment(s: &str) -> Option<Kind> {
        match s {
            "Users" => Some(Kind::User),
            "Groups" => Some(Kind::Group),
            _ => None,
        }
    }
    fn endpoint(self) -> &'static str {
        match self {
            Kind::User => "Users",
            Kind::Group => "Groups",
        }
    }
    fn resource_type(self) -> &'static str {
        match self {
            Kind::User => "User",
            Kind::Group => "Group",
        }
    }
    fn schema(self) -> &'static str {
        match self {
            Kind::User => USER_URN,
            Kind::Group => GROUP_URN,
        }
    }
    fn unique_attr(self) -> &'static str {
        match self {
            Kind::User => "userName",
            Kind::Group => "displayName",
        }
    }
}

fn route(state: &State, path: &str, ctx: &Ctx<'_>) -> Result<Resp, ScimError> {
    let not_found = || ScimError::not_found(format!("no SCIM endpoint at {path}"));
    let rest = strip_base(path, &state.base_path).ok_or_else(not_found)?;
    let mut segs: Vec<&str> = rest.split('/').skip(1).collect();
    // Tolerate one trailing slash.
    if segs.len() > 1 && segs.last() == Some(&"") {
        segs.pop();
    }
    let (kind, id) = match segs.as_slice() {
        [r] => (Kind::from_segment(r).ok_or_else(not_found)?, None),
        [r, id] if !id.is_empty() => (
            Kind::from_segment(r).ok_or_else(not_found)?,
            Some(percent_decode(id, false)),
        ),
        _ => return Err(not_found()),
    };
    let mut store = lock(&state.store);
    match (ctx.method.as_str(), id) {
        ("GET", None) => list(&store, kind, ctx),
        ("POST", None) => create(&mut store, kind, ctx),
        ("GET", Some(id)) => get_one(&store, kind, &id, ctx),
        ("PUT", Some(id)) => replace(&mut store, kind, &id, ctx),
        ("PATCH", Some(id)) => patch(&mut store, kind, &id, ctx),
        ("DELETE", Some(id)) => delete(&mut store, kind, &id, ctx),
        (m, _) => Err(ScimError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            None,
            format!("{m} is not supported on {path}"),
        )),
    }
}

fn strip_base<'a>(path: &'a str, base: &str) -> Option<&'a str> {
    let rest = path.strip_prefix(base)?;
    (rest.is_empty() || rest.starts_with('/')).then_some(rest)
}

// ---------------------------------------------------------------------------
// Store

struct Res {
    id: String,
    /// Client attributes as sent (minus `id`/`meta`), after normalisation.
    attrs: Map<String, Value>,
    created: String,
    modified: String,
    version: u64,
}

impl Res {
    fn etag(&self) -> String {
        format!("W/\"{}\"", self.version)
    }
    fn touch(&mut self) {
        self.version = self.version.saturating_add(1);
        self.modified = now_rfc3339();
    }
}

#[derive(Default)]
struct Store {
    users: Vec<Res>,
    groups: Vec<Res>,
}

impl Store {
    fn list(&self, kind: Kind) -> &Vec<Res> {
        match kind {
            Kind::User => &self.users,
            Kind::Group => &self.groups,
        }
    }
    fn list_mut(&mut self, kind: Kind) -> &mut Vec<Res> {
        match kind {
            Kind::User => &mut self.users,
            Kind::Group => &mut self.groups,
        }
    }
    fn position(&self, kind: Kind, id: &str) -> Result<usize, ScimError> {
        self.list(kind)
            .iter()
            .position(|r| r.id == id)
            .ok_or_else(|| ScimError::not_found(format!("{} {id} not found", kind.resource_type())))
    }
    fn check_unique(
        &self,
        kind: Kind,
        attrs: &Map<String, Value>,
        except: Option<&str>,
    ) -> Result<(), ScimError> {
        let attr = kind.unique_attr();
        let Some(Value::String(wanted)) = get_ci(attrs, attr) else {
            return Ok(());
        };
        let wanted = wanted.to_lowercase();
        let taken = self.list(kind).iter().any(|r| {
            Some(r.id.as_str()) != except
                && matches!(get_ci(&r.attrs, attr), Some(Value::String(s)) if s.to_lowercase() == wanted)
        });
        if taken {
            return Err(ScimError::new(
                StatusCode::CONFLICT,
                Some("uniqueness"),
                format!(
                    "{} with {attr} {wanted:?} already exists",
                    kind.resource_type()
                ),
            ));
        }
        Ok(())
    }
}

fn render(kind: Kind, res: &Res, base_url: &str) -> Value {
    let mut m = res.attrs.clone();
    // RFC 7643 §4.1: `password` is "returned: never".
    remove_ci(&mut m, "password");
    if get_ci(&m, "schemas").is_none() {
        m.insert("schemas".into(), json!([kind.schema()]));
    }
    let location = format!("{base_url}/{}/{}", kind.endpoint(), res.id);
    m.insert("id".into(), Value::from(res.id.clone()));
    m.insert(
        "meta".into(),
        json!({
            "resourceType": kind.resource_type(),
            "created": res.created,
            "lastModified": res.modified,
            "location": location,
            "version": res.etag(),
        }),
    );
    if let Some(Value::Array(members)) = m.get_mut("members") {
        for member in members.iter_mut().filter_map(Value::as_object_mut) {
            let endpoint = match get_ci(member, "type") {
                Some(Value::String(t)) if t.eq_ignore_ascii_case("group") => "Groups",
                _ => "Users",
            };
            if let Some(Value::String(v)) = member.get("value") {
                let r = format!("{base_url}/{endpoint}/{v}");
                member.insert("$ref".into(), Value::from(r));
            }
        }
    }
    Value::Object(m)
}

/// Server-side normalisation shared by POST, PUT and PATCH.
fn sanitize(kind: Kind, attrs: &mut Map<String, Value>) -> Result<(), ScimError> {
    // Server-owned attributes are never taken from the client.
    remove_ci(attrs, "id");
    remove_ci(attrs, "meta");
    let unique = kind.unique_attr();
    match get_ci(attrs, unique) {
        Some(Value::String(s)) if !s.trim().is_empty() => {}
        _ => {
            return Err(ScimError::bad_request(
                "invalidValue",
                format!("{unique} is required and must be a non-empty string"),
            ));
        }
    }
    match kind {
        Kind::User => {
            let active = match remove_ci(attrs, "active") {
                None | Some(Value::Null) => true,
                Some(Value::Bool(b)) => b,
                // Entra's default sends "True"/"False".
                Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => true,
                Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => false,
                Some(other) => {
                    return Err(ScimError::bad_request(
                        "invalidValue",
                        format!("active must be a boolean, got {other}"),
                    ));
                }
            };
            attrs.insert("active".into(), Value::Bool(active));
        }
        Kind::Group => {
            if let Some(members) = remove_ci(attrs, "members") {
                attrs.insert("members".into(), normalize_members(members)?);
            }
        }
    }
    Ok(())
}

/// Members are stored as `{value, display?, type?}`, deduplicated; `$ref` is computed on output.
fn normalize_members(v: Value) -> Result<Value, ScimError> {
    let items = match v {
        Value::Null => Vec::new(),
        Value::Array(a) => a,
        obj @ Value::Object(_) => vec![obj],
        other => {
            return Err(ScimError::bad_request(
                "invalidValue",
                format!("members must be a list of objects, got {other}"),
            ));
        }
    };
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let Value::Object(m) = item else {
            return Err(ScimError::bad_request(
                "invalidValue",
                "each member must be an object with a value".into(),
            ));
        };
        let Some(Value::String(value)) = get_ci(&m, "value") else {
            return Err(ScimError::bad_request(
                "invalidValue",
                "each member needs a string value".into(),
            ));
        };
        if !seen.insert(value.clone()) {
            continue;
        }
        let mut member = Map::new();
        member.insert("value".into(), Value::from(value.clone()));
        for key in ["display", "type"] {
            if let Some(Value::String(s)) = get_ci(&m, key) {
                member.insert(key.into(), Value::from(s.clone()));
            }
        }
        out.push(Value::Object(member));
    }
    Ok(Value::Array(out))
}

fn parse_object(body: &[u8]) -> Result<Map<String, Value>, ScimError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(ScimError::bad_request(
            "invalidSyntax",
            "request body must be a JSON object".into(),
        )),
        Err(e) => Err(ScimError::bad_request(
            "invalidSyntax",
            format!("request body is not valid JSON: {e}"),
        )),
    }
}

fn resource_response(status: StatusCode, res: &Res, v: &Value) -> Resp {
    with_header(json_response(status, v), ETAG, &res.etag())
}

// ---------------------------------------------------------------------------
// Handlers

fn list(store: &Store, kind: Kind, ctx: &Ctx<'_>) -> Result<Resp, ScimError> {
    let filter = ctx
        .query
        .get("filter")
        .map(|f| {
            parse_filter(f).map_err(|e| {
                ScimError::bad_request("invalidFilter", format!("unsupported filter {f:?}: {e}"))
            })
        })
        .transpose()?;
    let start = parse_int(&ctx.query, "startIndex", 1)?.max(1);
    let count = parse_int(&ctx.query, "count", DEFAULT_COUNT)?.clamp(0, MAX_COUNT);
    let proj = Projection::from_query(&ctx.query);
    let matched: Vec<Value> = store
        .list(kind)
        .iter()
        .map(|r| render(kind, r, &ctx.base_url))
        .filter(|v| match (&filter, v.as_object()) {
            (Some(f), Some(m)) => f.iter().all(|c| c.matches(m)),
            _ => true,
        })
        .collect();
    let total = matched.len();
    let skip = usize::try_from(start - 1).unwrap_or(usize::MAX);
    let take = usize::try_from(count).unwrap_or(0);
    let page: Vec<Value> = matched
        .into_iter()
        .skip(skip)
        .take(take)
        .map(|v| proj.apply(kind, v))
        .collect();
    let body = json!({
        "schemas": [LIST_URN],
        "totalResults": total,
        "startIndex": start,
        "itemsPerPage": page.len(),
        "Resources": page,
    });
    Ok(json_response(StatusCode::OK, &body))
}

/// Integers as SCIM wants them: absent → default, out of range saturates, junk → 400.
fn parse_int(q: &Query, name: &str, default: i64) -> Result<i64, ScimError> {
    let Some(raw) = q.get(name) else {
        return Ok(default);
    };
    let s = raw.trim();
    if s.is_empty() {
        return Ok(default);
    }
    if let Ok(n) = s.parse::<i64>() {
        return Ok(n);
    }
    let digits = s.strip_prefix(['-', '+']).unwrap_or(s);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(if s.starts_with('-') {
            i64::MIN
        } else {
            i64::MAX
        });
    }
    Err(ScimError::bad_request(
        "invalidValue",
        format!("{name} must be an integer, got {raw:?}"),
    ))
}

fn create(store: &mut Store, kind: Kind, ctx: &Ctx<'_>) -> Result<Resp, ScimError> {
    let mut attrs = parse_object(ctx.body)?;
    sanitize(kind, &mut attrs)?;
    store.check_unique(kind, &attrs, None)?;
    let now = now_rfc3339();
    let res = Res {
        id: uuid::Uuid::new_v4().to_string(),
        attrs,
        created: now.clone(),
        modified: now,
        version: 1,
    };
    let body = render(kind, &res, &ctx.base_url);
    let location = format!("{}/{}/{}", ctx.base_url, kind.endpoint(), res.id);
    let resp = resource_response(StatusCode::CREATED, &res, &body);
    store.list_mut(kind).push(res);
    Ok(with_header(resp, LOCATION, &location))
}

fn get_one(store: &Store, kind: Kind, id: &str, ctx: &Ctx<'_>) -> Result<Resp, ScimError> {
    let res = &store.list(kind)[store.position(kind, id)?];
    let etag = res.etag();
    if header_etag_matches(ctx.headers, &IF_NONE_MATCH, &etag) == Some(true) {
        let resp = response(StatusCode::NOT_MODIFIED, SCIM_JSON, Bytes::new());
        return Ok(with_header(resp, ETAG, &etag));
    }
    let v = Projection::from_query(&ctx.query).apply(kind, render(kind, res, &ctx.base_url));
    Ok(resource_response(StatusCode::OK, res, &v))
}

fn check_if_match(ctx: &Ctx<'_>, res: &Res) -> Result<(), ScimError> {
    if header_etag_matches(ctx.headers, &IF_MATCH, &res.etag()) == Some(false) {
        return Err(ScimError::new(
            StatusCode::PRECONDITION_FAILED,
            None,
            format!("If-Match does not match the current version {}", res.etag()),
        ));
    }
    Ok(())
}

fn replace(store: &mut Store, kind: Kind, id: &str, ctx: &Ctx<'_>) -> Result<Resp, ScimError> {
    let idx = store.position(kind, id)?;
    check_if_match(ctx, &store.list(kind)[idx])?;
    let mut attrs = parse_object(ctx.body)?;
    sanitize(kind, &mut attrs)?;
    store.check_unique(kind, &attrs, Some(id))?;
    let Some(res) = store.list_mut(kind).get_mut(idx) else {
        return Err(ScimError::not_found(format!("{id} not found")));
    };
    res.attrs = attrs;
    res.touch();
    let v = render(kind, res, &ctx.base_url);
    Ok(resource_response(StatusCode::OK, res, &v))
}

fn patch(store: &mut Store, kind: Kind, id: &str, ctx: &Ctx<'_>) -> Result<Resp, ScimError> {
    let idx = store.position(kind, id)?;
    check_if_match(ctx, &store.list(kind)[idx])?;
    let ops = parse_patch(ctx.body)?;
    // Atomic: work on a copy and commit only if every op succeeded.
    let mut attrs = store.list(kind)[idx].attrs.clone();
    for op in &ops {
        apply_op(&mut attrs, op.op, op.path.as_ref(), op.value.clone())?;
    }
    sanitize(kind, &mut attrs)?;
    store.check_unique(kind, &attrs, Some(id))?;
    let Some(res) = store.list_mut(kind).get_mut(idx) else {
        return Err(ScimError::not_found(format!("{id} not found")));
    };
    if res.attrs != attrs {
        res.attrs = attrs;
        res.touch();
    }
    // Netskope's documented PATCH success: 204, empty body.
    let resp = response(StatusCode::NO_CONTENT, SCIM_JSON, Bytes::new());
    Ok(with_header(resp, ETAG, &res.etag()))
}

fn delete(store: &mut Store, kind: Kind, id: &str, ctx: &Ctx<'_>) -> Result<Resp, ScimError> {
    let idx = store.position(kind, id)?;
    check_if_match(ctx, &store.list(kind)[idx])?;
    store.list_mut(kind).remove(idx);
    // A deleted user or group is no longer anyone's member.
    for group in &mut store.groups {
        if let Some(Value::Array(members)) = group.attrs.get_mut("members") {
            let before = members.len();
            members.retain(|m| m.get("value").and_then(Value::as_str) != Some(id));
            if members.len() != before {
                group.touch();
            }
        }
    }
    Ok(response(StatusCode::NO_CONTENT, SCIM_JSON, Bytes::new()))
}

/// `None` without the header; otherwise whether any listed tag (or `*`) matches, weakly.
fn header_etag_matches(headers: &HeaderMap, name: &HeaderName, etag: &str) -> Option<bool> {
    let mut values = headers.get_all(name).iter().peekable();
    values.peek()?;
    let opaque = |t: &str| t.trim().trim_start_matches("W/").to_string();
    let current = opaque(etag);
    let hit = values
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim() == "*" || opaque(t) == current);
    Some(hit)
}

// ---------------------------------------------------------------------------
// attributes / excludedAttributes

struct Projection {
    include: Option<Vec<String>>,
    exclude: Vec<String>,
}

impl Projection {
    fn from_query(q: &Query) -> Projection {
        let names = |s: &str| -> Vec<String> {
            s.split(',')
                .filter_map(|n| parse_attr_path(n.trim(), true).ok())
                .map(|p| p.container.unwrap_or(p.attr).to_lowercase())
                .collect()
        };
        Projection {
            include: q.get("attributes").map(names).filter(|v| !v.is_empty()),
            exclude: q.get("excludedAttributes").map(names).unwrap_or_default(),
        }
    }

    fn apply(&self, kind: Kind, v: Value) -> Value {
        const ALWAYS: [&str; 3] = ["id", "schemas", "meta"];
        let Value::Object(mut m) = v else { return v };
        let always = |k: &str| ALWAYS.iter().any(|a| a.eq_ignore_ascii_case(k));
        if let Some(inc) = &self.include {
            m.retain(|k, _| always(k) || inc.contains(&k.to_lowercase()));
        }
        m.retain(|k, _| always(k) || !self.exclude.contains(&k.to_lowercase()));
        // Netskope leaves group members out unless asked for.
        let wants_members = self
            .include
            .as_ref()
            .is_some_and(|inc| inc.iter().any(|n| n == "members"));
        if kind == Kind::Group && !wants_members {
            remove_ci(&mut m, "members");
        }
        Value::Object(m)
    }
}

// ---------------------------------------------------------------------------
// Query strings

struct Query(Vec<(String, String)>);

impl Query {
    /// `application/x-www-form-urlencoded` rules: Entra sends `+`, Okta `%20`.
    fn parse(raw: Option<&str>) -> Query {
        let pairs = raw
            .unwrap_or("")
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                (percent_decode(k, true), percent_decode(v, true))
            })
            .collect();
        Query(pairs)
    }

    /// First value of a parameter, name case-insensitive.
    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn percent_decode(s: &str, plus_is_space: bool) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3).and_then(|h| {
                    let h = std::str::from_utf8(h).ok()?;
                    u8::from_str_radix(h, 16).ok()
                });
                if let Some(b) = hex {
                    out.push(b);
                    i += 3;
                    continue;
                }
                out.push(b'%');
            }
            b'+' if plus_is_space => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

// ---------------------------------------------------------------------------
// Attribute paths and filters: `attr`, `attr.sub`, `attr[sub eq "v"]`, `attr[sub eq "v"].sub`,
// optionally URN-qualified; filters are `<path> eq <literal>` joined by `and`.

#[derive(Clone, Debug, PartialEq)]
struct AttrPath {
    /// Extension schema URN holding `attr`, e.g. the enterprise User extension.
    container: Option<String>,
    attr: String,
    value_filter: Option<Box<Cmp>>,
    sub: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
struct Cmp {
    path: AttrPath,
    value: Value,
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| s.get(prefix.len()..))
        .flatten()
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'$')
}

/// Index of the `]` closing the `[` at byte 0, skipping quoted strings.
fn find_close_bracket(s: &str) -> Option<usize> {
    let mut in_quote = false;
    let mut escaped = false;
    for (i, b) in s.bytes().enumerate().skip(1) {
        match (in_quote, escaped, b) {
            (true, true, _) => escaped = false,
            (true, false, b'\\') => escaped = true,
            (true, false, b'"') => in_quote = false,
            (false, _, b'"') => in_quote = true,
            (false, _, b']') => return Some(i),
            _ => {}
        }
    }
    None
}

/// `allow_filter` is false inside brackets, so nesting depth is bounded.
fn parse_attr_path(s: &str, allow_filter: bool) -> Result<AttrPath, String> {
    let mut s = s.trim();
    let mut container = None;
    if strip_prefix_ci(s, "urn:").is_some() {
        let core = [USER_URN, GROUP_URN]
            .iter()
            .find_map(|u| strip_prefix_ci(s, u).and_then(|r| r.strip_prefix(':')));
        if let Some(rest) = core {
            s = rest;
        } else if s.eq_ignore_ascii_case(ENTERPRISE_URN) {
            return Ok(AttrPath {
                container: None,
                attr: ENTERPRISE_URN.to_string(),
                value_filter: None,
                sub: None,
            });
        } else {
            let head_end = s.find('[').unwrap_or(s.len());
            let colon = s
                .get(..head_end)
                .and_then(|h| h.rfind(':'))
                .ok_or_else(|| format!("bad attribute URN in {s:?}"))?;
            let urn = s.get(..colon).unwrap_or_default();
            container = Some(if urn.eq_ignore_ascii_case(ENTERPRISE_URN) {
                ENTERPRISE_URN.to_string()
            } else {
                urn.to_string()
            });
            s = s.get(colon + 1..).unwrap_or_default();
        }
    }
    let name_end = s.find(['[', '.']).unwrap_or(s.len());
    let (attr, mut rest) = s.split_at(name_end);
    if !valid_name(attr) {
        return Err(format!("bad attribute name {attr:?}"));
    }
    let mut value_filter = None;
    if rest.starts_with('[') {
        if !allow_filter {
            return Err("nested value filters are not supported".into());
        }
        let close = find_close_bracket(rest).ok_or("unclosed '['")?;
        let inner = rest.get(1..close).unwrap_or_default();
        let mut p = Parser::new(inner);
        let cmp = p.cmp(false)?;
        p.ws();
        if !p.eof() {
            return Err(format!("unsupported value filter {inner:?}"));
        }
        if cmp.path.container.is_some() || cmp.path.sub.is_some() {
            return Err(format!("unsupported value filter {inner:?}"));
        }
        value_filter = Some(Box::new(cmp));
        rest = rest.get(close + 1..).unwrap_or_default();
    }
    let mut sub = None;
    if let Some(s) = rest.strip_prefix('.') {
        if !valid_name(s) {
            return Err(format!("bad sub-attribute {s:?}"));
        }
        sub = Some(s.to_string());
    } else if !rest.is_empty() {
        return Err(format!("unexpected {rest:?} in attribute path"));
    }
    Ok(AttrPath {
        container,
        attr: attr.to_string(),
        value_filter,
        sub,
    })
}

struct Parser<'a> {
    s: &'a str,
    i: usize,
}

impl<'a> Parser<'a> {
    fn new(s: &'a str) -> Self {
        Parser { s, i: 0 }
    }
    fn peek(&self) -> Option<u8> {
        self.s.as_bytes().get(self.i).copied()
    }
    fn eof(&self) -> bool {
        self.i >= self.s.len()
    }
    fn ws(&mut self) {
        while self.peek().is_some_and(|b| b.is_ascii_whitespace()) {
            self.i += 1;
        }
    }
    /// Up to the next whitespace outside brackets and quotes.
    fn attr_token(&mut self) -> &'a str {
        let start = self.i;
        let (mut depth, mut in_quote, mut escaped) = (0u32, false, false);
        while let Some(b) = self.peek() {
            if in_quote {
                match (escaped, b) {
                    (true, _) => escaped = false,
                    (false, b'\\') => escaped = true,
                    (false, b'"') => in_quote = false,
                    _ => {}
                }
            } else {
                match b {
                    b'"' => in_quote = true,
                    b'[' => depth = depth.saturating_add(1),
                    b']' => depth = depth.saturating_sub(1),
                    b if b.is_ascii_whitespace() && depth == 0 => break,
                    _ => {}
                }
            }
            self.i += 1;
        }
        self.s.get(start..self.i).unwrap_or_default()
    }
    fn word(&mut self) -> &'a str {
        let start = self.i;
        while self.peek().is_some_and(|b| !b.is_ascii_whitespace()) {
            self.i += 1;
        }
        self.s.get(start..self.i).unwrap_or_default()
    }
    fn literal(&mut self) -> Result<Value, String> {
        if self.peek() == Some(b'"') {
            let start = self.i;
            self.i += 1;
            let mut escaped = false;
            loop {
                match (self.peek(), escaped) {
                    (None, _) => return Err("unterminated string".into()),
                    (Some(_), true) => escaped = false,
                    (Some(b'\\'), false) => escaped = true,
                    (Some(b'"'), false) => break,
                    _ => {}
                }
                self.i += 1;
            }
            self.i += 1;
            let raw = self.s.get(start..self.i).unwrap_or_default();
            return serde_json::from_str::<String>(raw)
                .map(Value::String)
                .map_err(|e| format!("bad string literal: {e}"));
        }
        let w = self.word();
        match w.to_ascii_lowercase().as_str() {
            "true" => Ok(Value::Bool(true)),
            "false" => Ok(Value::Bool(false)),
            "null" => Ok(Value::Null),
            _ => match serde_json::from_str::<Value>(w) {
                Ok(n @ Value::Number(_)) => Ok(n),
                _ => Err(format!("bad comparison value {w:?}")),
            },
        }
    }
    fn cmp(&mut self, allow_filter: bool) -> Result<Cmp, String> {
        self.ws();
        let token = self.attr_token();
        if token.starts_with('(') || token.eq_ignore_ascii_case("not") {
            return Err("grouping and 'not' are not supported".into());
        }
        let path = parse_attr_path(token, allow_filter)?;
        self.ws();
        let op = self.word();
        if !op.eq_ignore_ascii_case("eq") {
            return Err(format!("operator {op:?} is not supported (only eq)"));
        }
        self.ws();
        let value = self.literal()?;
        Ok(Cmp { path, value })
    }
}

/// `a eq "x" [and b eq "y" ...]`.
fn parse_filter(s: &str) -> Result<Vec<Cmp>, String> {
    let mut p = Parser::new(s);
    let mut terms = vec![p.cmp(true)?];
    loop {
        p.ws();
        if p.eof() {
            return Ok(terms);
        }
        let w = p.word();
        if !w.eq_ignore_ascii_case("and") {
            return Err(format!("{w:?} is not supported (only and)"));
        }
        terms.push(p.cmp(true)?);
    }
}

impl Cmp {
    fn matches(&self, resource: &Map<String, Value>) -> bool {
        let scope = match &self.path.container {
            Some(urn) => match get_ci(resource, urn) {
                Some(Value::Object(o)) => o,
                _ => return false,
            },
            None => resource,
        };
        let Some(top) = get_ci(scope, &self.path.attr) else {
            return false;
        };
        let elems: Vec<&Value> = match top {
            Value::Array(a) => a.iter().collect(),
            v => vec![v],
        };
        let leaf = self.path.sub.as_deref().unwrap_or(&self.path.attr);
        let case_exact = ["id", "externalId"]
            .iter()
            .any(|a| a.eq_ignore_ascii_case(leaf));
        elems
            .into_iter()
            .filter(|e| match &self.path.value_filter {
                Some(vf) => e.as_object().is_some_and(|o| vf.matches(o)),
                None => true,
            })
            .filter_map(|e| match &self.path.sub {
                Some(s) => e.as_object().and_then(|o| get_ci(o, s)),
                None => Some(e),
            })
            .any(|v| value_eq(v, &self.value, case_exact))
    }
}

fn value_eq(actual: &Value, wanted: &Value, case_exact: bool) -> bool {
    match (actual, wanted) {
        (Value::String(a), Value::String(w)) if case_exact => a == w,
        (Value::String(a), Value::String(w)) => a.to_lowercase() == w.to_lowercase(),
        (Value::Array(items), w) => items.iter().any(|a| value_eq(a, w, case_exact)),
        (Value::Number(a), Value::Number(w)) => a.as_f64() == w.as_f64(),
        (a, w) => a == w,
    }
}

// ---------------------------------------------------------------------------
// PATCH

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum OpKind {
    Add,
    Replace,
    Remove,
}

struct PatchOp {
    op: OpKind,
    path: Option<AttrPath>,
    value: Option<Value>,
}

fn invalid_syntax(detail: impl Into<String>) -> ScimError {
    ScimError::bad_request("invalidSyntax", detail.into())
}

fn invalid_path(detail: impl Into<String>) -> ScimError {
    ScimError::bad_request("invalidPath", detail.into())
}

fn parse_patch(body: &[u8]) -> Result<Vec<PatchOp>, ScimError> {
    let m = parse_object(body)?;
    if let Some(schemas) = get_ci(&m, "schemas") {
        let ok = schemas.as_array().is_some_and(|a| {
            a.iter().any(|s| {
                s.as_str()
                    .is_some_and(|s| s.eq_ignore_ascii_case(PATCH_URN))
            })
        });
        if !ok {
            return Err(invalid_syntax(format!("schemas must contain {PATCH_URN}")));
        }
    }
    let Some(Value::Array(ops)) = get_ci(&m, "Operations") else {
        return Err(invalid_syntax("Operations must be an array"));
    };
    ops.iter()
        .map(|op| {
            let Value::Object(o) = op else {
                return Err(invalid_syntax("each operation must be an object"));
            };
            let kind = match get_ci(o, "op").and_then(Value::as_str) {
                Some(s) if s.eq_ignore_ascii_case("add") => OpKind::Add,
                Some(s) if s.eq_ignore_ascii_case("replace") => OpKind::Replace,
                Some(s) if s.eq_ignore_ascii_case("remove") => OpKind::Remove,
                other => {
                    return Err(invalid_syntax(format!(
                        "op must be add, replace or remove, got {other:?}"
                    )));
                }
            };
            let path = match get_ci(o, "path") {
                None | Some(Value::Null) => None,
                Some(Value::String(p)) if p.trim().is_empty() => None,
                Some(Value::String(p)) => Some(
                    parse_attr_path(p, true)
                        .map_err(|e| invalid_path(format!("bad path {p:?}: {e}")))?,
                ),
                Some(other) => return Err(invalid_path(format!("path must be a string: {other}"))),
            };
            Ok(PatchOp {
                op: kind,
                path,
                value: get_ci(o, "value").cloned(),
            })
        })
        .collect()
}

fn apply_op(
    attrs: &mut Map<String, Value>,
    op: OpKind,
    path: Option<&AttrPath>,
    value: Option<Value>,
) -> Result<(), ScimError> {
    let Some(path) = path else {
        if op == OpKind::Remove {
            return Err(ScimError::bad_request(
                "noTarget",
                "remove needs a path".into(),
            ));
        }
        let Some(Value::Object(obj)) = value else {
            return Err(invalid_syntax(
                "an operation without path needs an object value",
            ));
        };
        for (key, v) in obj {
            // Okta sends `id` along; read-only attributes are ignored here.
            if ["id", "meta", "schemas"]
                .iter()
                .any(|k| k.eq_ignore_ascii_case(&key))
            {
                continue;
            }
            let p = parse_attr_path(&key, true)
                .map_err(|e| invalid_path(format!("bad attribute {key:?}: {e}")))?;
            apply_op(attrs, op, Some(&p), Some(v))?;
        }
        return Ok(());
    };
    let create = op != OpKind::Remove;
    let scope = match &path.container {
        None => {
            if ["id", "meta"]
                .iter()
                .any(|k| k.eq_ignore_ascii_case(&path.attr))
            {
                return Err(ScimError::bad_request(
                    "mutability",
                    format!("{} is read-only", path.attr),
                ));
            }
            attrs
        }
        Some(urn) => match child_object(attrs, urn, create)? {
            Some(o) => o,
            None => return Ok(()),
        },
    };
    let need_value = |v: Option<Value>| v.ok_or_else(|| invalid_syntax("value is required"));
    match (&path.value_filter, &path.sub) {
        (None, None) => match op {
            OpKind::Remove => {
                let key = key_ci(scope, &path.attr);
                match (key.and_then(|k| scope.get_mut(&k)), value) {
                    (Some(Value::Array(items)), Some(v)) => {
                        // Entra's default: remove listed members by value.
                        let drop: HashSet<String> = match v {
                            Value::Array(a) => a.iter().map(element_key).collect(),
                            one => HashSet::from([element_key(&one)]),
                        };
                        items.retain(|item| !drop.contains(&element_key(item)));
                    }
                    _ => {
                        remove_ci(scope, &path.attr);
                    }
                }
            }
            OpKind::Add => {
                let v = need_value(value)?;
                let key = key_ci(scope, &path.attr);
                match (key.and_then(|k| scope.get_mut(&k)), v) {
                    (Some(Value::Array(items)), v) => {
                        let new = match v {
                            Value::Array(a) => a,
                            one => vec![one],
                        };
                        let mut seen: HashSet<String> = items.iter().map(element_key).collect();
                        for n in new {
                            if seen.insert(element_key(&n)) {
                                items.push(n);
                            }
                        }
                    }
                    (Some(Value::Object(existing)), Value::Object(new)) => merge_ci(existing, new),
                    (_, v) => set_ci(scope, &path.attr, v),
                }
            }
            OpKind::Replace => {
                let v = need_value(value)?;
                let key = key_ci(scope, &path.attr);
                match (key.and_then(|k| scope.get_mut(&k)), v) {
                    // RFC 7644 §3.5.2.3: sub-attributes not given stay unchanged.
                    (Some(Value::Object(existing)), Value::Object(new)) => merge_ci(existing, new),
                    (_, v) => set_ci(scope, &path.attr, v),
                }
            }
        },
        (None, Some(sub)) => {
            let Some(obj) = child_object(scope, &path.attr, create)? else {
                return Ok(());
            };
            match op {
                OpKind::Remove => {
                    remove_ci(obj, sub);
                }
                _ => set_ci(obj, sub, need_value(value)?),
            }
        }
        (Some(vf), sub) => {
            let key = match key_ci(scope, &path.attr) {
                Some(k) => k,
                None if create => {
                    let k = canonical(&path.attr);
                    scope.insert(k.clone(), Value::Array(Vec::new()));
                    k
                }
                None => return Ok(()),
            };
            let Some(slot) = scope.get_mut(&key) else {
                return Ok(());
            };
            if slot.is_null() {
                *slot = Value::Array(Vec::new());
            }
            let Value::Array(items) = slot else {
                return Err(invalid_path(format!("{} is not multi-valued", path.attr)));
            };
            let hit = |item: &Value| item.as_object().is_some_and(|o| vf.matches(o));
            match op {
                OpKind::Remove => match sub {
                    Some(sub) => {
                        for item in items.iter_mut().filter(|i| hit(i)) {
                            if let Value::Object(o) = item {
                                remove_ci(o, sub);
                            }
                        }
                    }
                    None => items.retain(|i| !hit(i)),
                },
                OpKind::Add | OpKind::Replace => {
                    let v = need_value(value)?;
                    let mut found = false;
                    for item in items.iter_mut().filter(|i| hit(i)) {
                        found = true;
                        match (sub, item, &v) {
                            (Some(sub), Value::Object(o), _) => set_ci(o, sub, v.clone()),
                            (None, Value::Object(o), Value::Object(new)) => {
                                merge_ci(o, new.clone())
                            }
                            (None, item, _) => *item = v.clone(),
                            (Some(_), _, _) => {}
                        }
                    }
                    if !found {
                        // Lenient like most providers: create the element the filter names.
                        let mut o = Map::new();
                        o.insert(canonical(&vf.path.attr), vf.value.clone());
                        match (sub, v) {
                            (Some(sub), v) => set_ci(&mut o, sub, v),
                            (None, Value::Object(new)) => merge_ci(&mut o, new),
                            (None, _) => {
                                return Err(ScimError::bad_request(
                                    "noTarget",
                                    "value filter matched nothing".into(),
                                ));
                            }
                        }
                        items.push(Value::Object(o));
                    }
                }
            }
        }
    }
    Ok(())
}

/// Identity of a multi-valued element: its `value` if it has one, else the whole element.
fn element_key(v: &Value) -> String {
    match v.as_object().and_then(|o| get_ci(o, "value")) {
        Some(value) => format!("v:{value}"),
        None => format!("j:{v}"),
    }
}

/// The complex attribute `name` as an object, created when asked; `None` if absent.
fn child_object<'m>(
    m: &'m mut Map<String, Value>,
    name: &str,
    create: bool,
) -> Result<Option<&'m mut Map<String, Value>>, ScimError> {
    let key = match key_ci(m, name) {
        Some(k) => k,
        None if create => {
            let k = canonical(name);
            m.insert(k.clone(), Value::Object(Map::new()));
            k
        }
        None => return Ok(None),
    };
    let Some(slot) = m.get_mut(&key) else {
        return Ok(None);
    };
    if slot.is_null() {
        if !create {
            return Ok(None);
        }
        *slot = Value::Object(Map::new());
    }
    match slot {
        Value::Object(o) => Ok(Some(o)),
        _ => Err(invalid_path(format!("{name} is not a complex attribute"))),
    }
}

// ---------------------------------------------------------------------------
// Case-insensitive attribute access (RFC 7643 §2.1: attribute names are case-insensitive).

fn key_ci(m: &Map<String, Value>, name: &str) -> Option<String> {
    m.keys().find(|k| k.eq_ignore_ascii_case(name)).cloned()
}

fn get_ci<'m>(m: &'m Map<String, Value>, name: &str) -> Option<&'m Value> {
    m.get(name).or_else(|| {
        m.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    })
}

fn remove_ci(m: &mut Map<String, Value>, name: &str) -> Option<Value> {
    let key = key_ci(m, name)?;
    m.remove(&key)
}

fn set_ci(m: &mut Map<String, Value>, name: &str, v: Value) {
    let key = key_ci(m, name).unwrap_or_else(|| canonical(name));
    m.insert(key, v);
}

fn merge_ci(dst: &mut Map<String, Value>, src: Map<String, Value>) {
    for (k, v) in src {
        set_ci(dst, &k, v);
    }
}

/// New keys get the schema's spelling, so `displayname` from a PATCH path is stored as `displayName`.
fn canonical(name: &str) -> String {
    const KNOWN: &[&str] = &[
        "userName",
        "externalId",
        "displayName",
        "name",
        "givenName",
        "familyName",
        "middleName",
        "formatted",
        "honorificPrefix",
        "honorificSuffix",
        "nickName",
        "profileUrl",
        "title",
        "userType",
        "preferredLanguage",
        "locale",
        "timezone",
        "active",
        "password",
        "emails",
        "phoneNumbers",
        "addresses",
        "groups",
        "roles",
        "members",
        "value",
        "display",
        "type",
        "primary",
        "employeeNumber",
        "costCenter",
        "organization",
        "division",
        "department",
        "manager",
        ENTERPRISE_URN,
    ];
    KNOWN
        .iter()
        .find(|k| k.eq_ignore_ascii_case(name))
        .map_or_else(|| name.to_string(), |k| (*k).to_string())
}

// ---------------------------------------------------------------------------
// Time

/// RFC 3339 UTC timestamp with milliseconds.
fn now_rfc3339() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs();
    let (y, m, d) = civil_from_days(i64::try_from(secs / 86_400).unwrap_or(0));
    let rem = secs % 86_400;
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        now.subsec_millis()
    )
}

/// Days since 1970-01-01 to (year, month, day); Howard Hinnant's algorithm.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (
        y,
        u32::try_from(m).unwrap_or(1),
        u32::try_from(d).unwrap_or(1),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lab::devcerts::{DevPki, client_config, server_config};
    use hyper_rustls::HttpsConnector;
    use hyper_util::client::legacy::Client;
    use hyper_util::client::legacy::connect::HttpConnector;
    use std::net::{IpAddr, Ipv4Addr};

    const TOKEN: &str = "v2-token-1";
    const STEP: Duration = Duration::from_secs(10);

    struct Harness {
        up: Upstream,
        client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
        origin: String,
    }

    struct Answer {
        status: StatusCode,
        headers: HeaderMap,
        body: Bytes,
        version: http::Version,
    }

    impl Answer {
        fn json(&self) -> Value {
            serde_json::from_slice(&self.body).unwrap()
        }
        fn header(&self, name: &str) -> &str {
            self.headers.get(name).unwrap().to_str().unwrap()
        }
    }

    async fn harness(h2: bool, local_ip: Option<IpAddr>) -> Harness {
        let pki = DevPki::new("upstream test CA").unwrap();
        let leaf = pki
            .issue(&["localhost"], &[IpAddr::V4(Ipv4Addr::LOCALHOST)])
            .unwrap();
        let up = Upstream::start(UpstreamOptions {
            bind: "127.0.0.1:0".parse().unwrap(),
            tls: Some(server_config(&leaf).unwrap()),
            base_path: "/api/v2/scim/".into(),
            tokens: vec![TOKEN.into()],
        })
        .await
        .unwrap();
        // hyper-rustls sets ALPN itself and panics if the config already has some.
        let tls = client_config(pki.ca_pem(), &[]).unwrap();
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_local_address(local_ip);
        let builder = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config((*tls).clone())
            .https_only()
            .enable_http1();
        let https = if h2 {
            builder.enable_http2().wrap_connector(http)
        } else {
            builder.wrap_connector(http)
        };
        let client = Client::builder(TokioExecutor::new()).build(https);
        let origin = format!("https://127.0.0.1:{}", up.addr().port());
        Harness { up, client, origin }
    }

    impl Harness {
        async fn call(
            &self,
            method: &str,
            path: &str,
            headers: &[(&str, &str)],
            body: Option<&str>,
        ) -> Answer {
            let body = Bytes::from(body.unwrap_or_default().to_string());
            self.call_raw(method, path, headers, body).await
        }

        async fn call_raw(
            &self,
            method: &str,
            path: &str,
            headers: &[(&str, &str)],
            body: Bytes,
        ) -> Answer {
            let mut req = Request::builder()
                .method(method)
                .uri(format!("{}{path}", self.origin));
            for (k, v) in headers {
                req = req.header(*k, *v);
            }
            let fut = self.client.request(req.body(Full::new(body)).unwrap());
            let resp = tokio::time::timeout(STEP, fut).await.unwrap().unwrap();
            let (parts, body) = resp.into_parts();
            let body = tokio::time::timeout(STEP, body.collect())
                .await
                .unwrap()
                .unwrap()
                .to_bytes();
            Answer {
                status: parts.status,
                headers: parts.headers,
                body,
                version: parts.version,
            }
        }

        /// Authenticated SCIM call under the base path.
        async fn scim(&self, method: &str, path: &str, body: Option<&str>) -> Answer {
            self.scim_with(method, path, &[], body).await
        }

        async fn scim_with(
            &self,
            method: &str,
            path: &str,
            extra: &[(&str, &str)],
            body: Option<&str>,
        ) -> Answer {
            let auth = format!("Bearer {TOKEN}");
            let mut headers = vec![
                ("authorization", auth.as_str()),
                ("content-type", "application/scim+json; charset=utf-8"),
            ];
            headers.extend_from_slice(extra);
            self.call(method, &format!("/api/v2/scim{path}"), &headers, body)
                .await
        }

        async fn create_user(&self, user_name: &str) -> Value {
            let body = json!({
                "schemas": [USER_URN, ENTERPRISE_URN],
                "userName": user_name,
                "externalId": format!("ext-{user_name}"),
                "name": {"givenName": "Given", "familyName": "Family"},
                "emails": [{"value": user_name, "type": "work", "primary": true}],
                ENTERPRISE_URN: {"department": "Eng"},
            });
            let a = self.scim("POST", "/Users", Some(&body.to_string())).await;
            assert_eq!(a.status, StatusCode::CREATED, "{:?}", a.body);
            a.json()
        }

        async fn shutdown(self) {
            tokio::time::timeout(STEP, self.up.shutdown())
                .await
                .unwrap();
        }
    }

    fn assert_error(a: &Answer, status: u16, scim_type: Option<&str>) {
        assert_eq!(a.status.as_u16(), status, "{:?}", a.body);
        assert_eq!(a.header("content-type"), "application/json");
        let v = a.json();
        assert_eq!(v["schemas"], json!([ERROR_URN]));
        assert_eq!(v["status"], json!(status.to_string()));
        assert!(v["detail"].is_string());
        assert_eq!(v["scimType"].as_str(), scim_type, "{v}");
    }

    fn id(v: &Value) -> String {
        v["id"].as_str().unwrap().to_string()
    }

    #[tokio::test]
    async fn auth_is_required_and_rejections_are_recorded() {
        let h = harness(true, None).await;
        let body = json!({"userName": "mallory@example.com"}).to_string();
        let a = h.call("POST", "/api/v2/scim/Users", &[], Some(&body)).await;
        assert_error(&a, 401, None);
        let a = h
            .call(
                "GET",
                "/api/v2/scim/Users",
                &[("authorization", "Bearer wrong")],
                None,
            )
            .await;
        assert_error(&a, 401, None);
        let recorded = h.up.requests();
        assert_eq!(recorded.len(), 2);
        assert!(!recorded[0].authenticated && !recorded[1].authenticated);
        assert_eq!(recorded[0].method, Method::POST);
        assert_eq!(recorded[0].body, Bytes::from(body));
        // The rejected POST created nothing.
        let list = h.scim("GET", "/Users", None).await.json();
        assert_eq!(list["totalResults"], json!(0));

        for headers in [
            [("authorization", "bearer v2-token-1")],
            [("netskope-api-token", "v2-token-1")],
        ] {
            let a = h.call("GET", "/api/v2/scim/Users", &headers, None).await;
            assert_eq!(a.status, StatusCode::OK);
        }
        assert!(h.up.requests().last().unwrap().authenticated);

        h.up.set_tokens(vec!["v2-token-2".into()]);
        assert_error(&h.scim("GET", "/Users", None).await, 401, None);
        let a = h
            .call(
                "GET",
                "/api/v2/scim/Users",
                &[("netskope-api-token", "v2-token-2")],
                None,
            )
            .await;
        assert_eq!(a.status, StatusCode::OK);
        h.up.clear_requests();
        assert!(h.up.requests().is_empty());
        h.shutdown().await;
    }

    #[tokio::test]
    async fn create_returns_location_etag_and_detects_duplicates() {
        let h = harness(true, None).await;
        let body = json!({
            "schemas": [USER_URN, ENTERPRISE_URN],
            "userName": "Alice@Example.com",
            "externalId": "a-1",
            "roles": [],
            ENTERPRISE_URN: {"employeeNumber": "42"},
        })
        .to_string();
        let a = h.scim("POST", "/Users", Some(&body)).await;
        assert_eq!(a.status, StatusCode::CREATED);
        assert_eq!(a.header("content-type"), SCIM_JSON);
        assert_eq!(a.header("content-length"), a.body.len().to_string());
        let v = a.json();
        let uid = id(&v);
        assert!(uuid::Uuid::parse_str(&uid).is_ok());
        let location = format!("{}/api/v2/scim/Users/{uid}", h.origin);
        assert_eq!(a.header("location"), location);
        assert_eq!(v["meta"]["location"], json!(location));
        assert_eq!(v["meta"]["resourceType"], json!("User"));
        assert_eq!(a.header("etag"), v["meta"]["version"].as_str().unwrap());
        assert!(v["meta"]["created"].as_str().unwrap().ends_with('Z'));
        assert_eq!(v["active"], json!(true));
        assert_eq!(v["roles"], json!([]));
        assert_eq!(v[ENTERPRISE_URN]["employeeNumber"], json!("42"));
        assert_eq!(v["schemas"], json!([USER_URN, ENTERPRISE_URN]));

        let dup = json!({"userName": "alice@example.COM"}).to_string();
        assert_error(
            &h.scim("POST", "/Users", Some(&dup)).await,
            409,
            Some("uniqueness"),
        );
        let a = h.scim("GET", &format!("/Users/{uid}"), None).await;
        assert_eq!(a.status, StatusCode::OK);
        assert_eq!(a.json()["userName"], json!("Alice@Example.com"));

        let g = json!({"schemas": [GROUP_URN], "displayName": "Eng", "members": []}).to_string();
        let a = h.scim("POST", "/Groups", Some(&g)).await;
        assert_eq!(a.status, StatusCode::CREATED);
        assert!(
            a.header("location")
                .starts_with(&format!("{}/api/v2/scim/Groups/", h.origin))
        );
        assert_error(
            &h.scim("POST", "/Groups", Some(&g)).await,
            409,
            Some("uniqueness"),
        );
        h.shutdown().await;
    }

    #[tokio::test]
    async fn filters_decode_plus_and_percent_twenty() {
        let h = harness(true, None).await;
        let alice = h.create_user("alice@example.com").await;
        h.create_user("bob@example.com").await;
        let cases = [
            // Entra: `+` for spaces, plus its flag parameter.
            "/Users?filter=userName+eq+%22ALICE%40example.com%22&aadOptscim062020",
            // Okta: `%20`.
            "/Users?filter=userName%20eq%20%22alice@example.com%22&startIndex=1&count=100",
            "/Users?filter=externalId+eq+%22ext-alice%40example.com%22",
            "/Users?filter=emails%5Btype+eq+%22work%22%5D.value+eq+%22alice%40example.com%22",
            "/Users?filter=emails.value%20eq%20%22alice@example.com%22",
            "/Users?FILTER=USERNAME+EQ+%22alice%40example.com%22+AND+active+eq+true",
        ];
        for path in cases {
            let a = h.scim("GET", path, None).await;
            assert_eq!(a.status, StatusCode::OK, "{path}");
            let v = a.json();
            assert_eq!(v["schemas"], json!([LIST_URN]));
            assert_eq!(v["totalResults"], json!(1), "{path}: {v}");
            assert_eq!(v["itemsPerPage"], json!(1));
            assert_eq!(v["startIndex"], json!(1));
            assert_eq!(v["Resources"][0]["id"], alice["id"], "{path}");
        }
        let by_id = format!("/Users?filter=id+eq+%22{}%22", id(&alice));
        assert_eq!(
            h.scim("GET", &by_id, None).await.json()["totalResults"],
            json!(1)
        );
        let none = "/Users?filter=userName+eq+%22nobody%22";
        let v = h.scim("GET", none, None).await.json();
        assert_eq!(v["totalResults"], json!(0));
        assert_eq!(v["Resources"], json!([]));
        for bad in [
            "/Users?filter=userName+co+%22ali%22",
            "/Users?filter=userName+eq+%22a%22+or+userName+eq+%22b%22",
            "/Users?filter=userName+pr",
            "/Users?filter=%28userName+eq+%22a%22%29",
            "/Users?filter=userName+eq+%22unterminated",
            "/Users?filter=emails%5Btype+eq+%22work%22.value+eq+%22x%22",
        ] {
            assert_error(&h.scim("GET", bad, None).await, 400, Some("invalidFilter"));
        }
        // Groups by displayName, case-insensitively.
        let g = json!({"displayName": "Sales Team"}).to_string();
        h.scim("POST", "/Groups", Some(&g)).await;
        let q = "/Groups?excludedAttributes=members&filter=displayName+eq+%22sales+team%22";
        assert_eq!(
            h.scim("GET", q, None).await.json()["totalResults"],
            json!(1)
        );
        h.shutdown().await;
    }

    #[tokio::test]
    async fn pagination_is_one_based_and_capped() {
        let h = harness(false, None).await;
        let mut ids = Vec::new();
        for i in 0..5 {
            ids.push(id(&h.create_user(&format!("u{i}@example.com")).await));
        }
        let v = h
            .scim("GET", "/Users?startIndex=2&count=2", None)
            .await
            .json();
        assert_eq!(v["totalResults"], json!(5));
        assert_eq!(v["startIndex"], json!(2));
        assert_eq!(v["itemsPerPage"], json!(2));
        let got: Vec<String> = v["Resources"].as_array().unwrap().iter().map(id).collect();
        assert_eq!(got, ids[1..3]);
        let v = h.scim("GET", "/Users?startIndex=0", None).await.json();
        assert_eq!(
            (v["startIndex"].clone(), v["itemsPerPage"].clone()),
            (json!(1), json!(5))
        );
        let v = h.scim("GET", "/Users?count=-3", None).await.json();
        assert_eq!(
            (v["totalResults"].clone(), v["itemsPerPage"].clone()),
            (json!(5), json!(0))
        );
        let v = h
            .scim(
                "GET",
                "/Users?count=99999999999999999999999&startIndex=99999999999999999999",
                None,
            )
            .await
            .json();
        assert_eq!(v["itemsPerPage"], json!(0));
        assert_eq!(v["startIndex"], json!(i64::MAX));
        let v = h
            .scim("GET", "/Users?startIndex=5&count=10", None)
            .await
            .json();
        assert_eq!(v["Resources"][0]["id"], json!(ids[4]));
        assert_error(
            &h.scim("GET", "/Users?count=ten", None).await,
            400,
            Some("invalidValue"),
        );
        h.shutdown().await;
    }

    #[tokio::test]
    async fn patch_deactivate_and_update_users() {
        let h = harness(true, None).await;
        let uid = id(&h.create_user("carol@example.com").await);
        let user = format!("/Users/{uid}");
        // Entra's default shape: capitalised op, string boolean.
        let deactivate = json!({
            "schemas": [PATCH_URN],
            "Operations": [{"op": "Replace", "path": "active", "value": "False"}],
        })
        .to_string();
        let a = h.scim("PATCH", &user, Some(&deactivate)).await;
        assert_eq!(a.status, StatusCode::NO_CONTENT);
        assert!(a.body.is_empty());
        assert_eq!(a.header("etag"), "W/\"2\"");
        let v = h.scim("GET", &user, None).await.json();
        assert_eq!(v["active"], json!(false));
        assert_eq!(v["meta"]["version"], json!("W/\"2\""));

        // Okta: path-less replace; Entra with aadOptscim062020: dotted keys.
        let ops = json!({
            "schemas": [PATCH_URN],
            "Operations": [
                {"op": "replace", "value": {"active": true, "name.givenName": "Caroline",
                    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department": "Ops"}},
                {"op": "Add", "path": "title", "value": "Boss"},
                {"op": "replace", "path": "emails[type eq \"work\"].value", "value": "c@example.com"},
                {"op": "add", "path": "phoneNumbers[type eq \"mobile\"].value", "value": "+1 555"},
                {"op": "replace", "path": "name.familyName", "value": "Smith"},
                {"op": "Remove", "path": "externalId"},
            ],
        })
        .to_string();
        assert_eq!(
            h.scim("PATCH", &user, Some(&ops)).await.status,
            StatusCode::NO_CONTENT
        );
        let v = h.scim("GET", &user, None).await.json();
        assert_eq!(v["active"], json!(true));
        assert_eq!(
            v["name"],
            json!({"givenName": "Caroline", "familyName": "Smith"})
        );
        assert_eq!(v["title"], json!("Boss"));
        assert_eq!(v["emails"][0]["value"], json!("c@example.com"));
        assert_eq!(v["emails"][0]["primary"], json!(true));
        assert_eq!(
            v["phoneNumbers"],
            json!([{"type": "mobile", "value": "+1 555"}])
        );
        assert_eq!(v[ENTERPRISE_URN], json!({"department": "Ops"}));
        assert!(v.get("externalId").is_none());

        // Malformed PATCHes change nothing.
        let bad = [
            (
                r#"{"Operations":[{"op":"frobnicate","path":"active","value":true}]}"#,
                "invalidSyntax",
            ),
            (
                r#"{"Operations":[{"op":"replace","path":"emails[type eq","value":1}]}"#,
                "invalidPath",
            ),
            (
                r#"{"Operations":[{"op":"replace","path":"name.givenName.x","value":1}]}"#,
                "invalidPath",
            ),
            (
                r#"{"Operations":[{"op":"replace","path":"title.x","value":1}]}"#,
                "invalidPath",
            ),
            (r#"{"Operations":{}}"#, "invalidSyntax"),
            (
                r#"{"schemas":["urn:nope"],"Operations":[]}"#,
                "invalidSyntax",
            ),
            (
                r#"{"Operations":[{"op":"replace","path":"active","value":"maybe"}]}"#,
                "invalidValue",
            ),
            (
                r#"{"Operations":[{"op":"replace","value":"notAnObject"}]}"#,
                "invalidSyntax",
            ),
            (r#"{"Operations":[{"op":"remove"}]}"#, "noTarget"),
            (
                r#"{"Operations":[{"op":"remove","path":"userName"}]}"#,
                "invalidValue",
            ),
            ("{not json", "invalidSyntax"),
        ];
        for (body, scim_type) in bad {
            let a = h.scim("PATCH", &user, Some(body)).await;
            assert_error(&a, 400, Some(scim_type));
        }
        // Invalid UTF-8 inside a JSON string.
        let a = h
            .call_raw(
                "PATCH",
                &format!("/api/v2/scim{user}"),
                &[("authorization", "Bearer v2-token-1")],
                Bytes::from_static(b"{\"Operations\":[{\"op\":\"add\",\"path\":\"title\",\"value\":\"\xff\xfe\"}]}"),
            )
            .await;
        assert_error(&a, 400, Some("invalidSyntax"));
        assert_eq!(h.scim("GET", &user, None).await.json(), v);

        // PUT replaces (keeps id and created), never creates.
        let put = json!({"userName": "carol@example.com", "active": "False"}).to_string();
        let a = h.scim("PUT", &user, Some(&put)).await;
        assert_eq!(a.status, StatusCode::OK);
        let p = a.json();
        assert_eq!(
            (p["id"].clone(), p["active"].clone()),
            (json!(uid), json!(false))
        );
        assert_eq!(p["meta"]["created"], v["meta"]["created"]);
        assert!(p.get("title").is_none());
        let missing = "/Users/00000000-0000-4000-8000-000000000000";
        assert_error(&h.scim("PUT", missing, Some(&put)).await, 404, None);
        assert_error(
            &h.scim("PATCH", missing, Some(&deactivate)).await,
            404,
            None,
        );
        assert_error(&h.scim("GET", missing, None).await, 404, None);
        assert_error(&h.scim("DELETE", missing, None).await, 404, None);
        h.shutdown().await;
    }

    #[tokio::test]
    async fn group_membership_add_and_remove() {
        let h = harness(true, None).await;
        let u: Vec<String> = [
            h.create_user("m1@example.com").await,
            h.create_user("m2@example.com").await,
            h.create_user("m3@example.com").await,
        ]
        .iter()
        .map(id)
        .collect();
        let g = json!({"displayName": "Team", "members": []}).to_string();
        let gid = id(&h.scim("POST", "/Groups", Some(&g)).await.json());
        let group = format!("/Groups/{gid}");
        let members = |v: &Value| -> Vec<String> {
            v["members"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|m| m["value"].as_str().unwrap().to_string())
                        .collect()
                })
                .unwrap_or_default()
        };
        let with_members = format!("{group}?attributes=members");

        // Entra: Add with `$ref: null`; adding twice is a no-op.
        let add = json!({"schemas": [PATCH_URN], "Operations": [{"op": "Add", "path": "members",
            "value": [{"$ref": null, "value": u[0]}, {"value": u[1]}, {"value": u[0]}]}]})
        .to_string();
        assert_eq!(
            h.scim("PATCH", &group, Some(&add)).await.status,
            StatusCode::NO_CONTENT
        );
        let plain = h.scim("GET", &group, None).await.json();
        assert!(
            plain.get("members").is_none(),
            "members hidden by default: {plain}"
        );
        assert_eq!(plain["displayName"], json!("Team"));
        let v = h.scim("GET", &with_members, None).await.json();
        assert_eq!(members(&v), [u[0].clone(), u[1].clone()]);
        assert_eq!(
            v["members"][0]["$ref"],
            json!(format!("{}/api/v2/scim/Users/{}", h.origin, u[0]))
        );
        // Exclusion wins when both are given.
        let ex = format!("{with_members}&excludedAttributes=members");
        let v = h.scim("GET", &ex, None).await.json();
        assert!(v.get("members").is_none());
        let listed = h
            .scim("GET", "/Groups?attributes=members,displayName", None)
            .await
            .json();
        assert_eq!(
            members(&listed["Resources"][0]),
            [u[0].clone(), u[1].clone()]
        );

        // Okta: remove by filter and add in one request, after a path-less replace of id/displayName.
        let okta = json!({"schemas": [PATCH_URN], "Operations": [
            {"op": "replace", "value": {"id": gid, "displayName": "Team"}},
            {"op": "remove", "path": format!("members[value eq \"{}\"]", u[0])},
            {"op": "add", "path": "members", "value": [{"value": u[2], "display": "m3@example.com"}]},
        ]})
        .to_string();
        assert_eq!(
            h.scim("PATCH", &group, Some(&okta)).await.status,
            StatusCode::NO_CONTENT
        );
        let v = h.scim("GET", &with_members, None).await.json();
        assert_eq!(members(&v), [u[1].clone(), u[2].clone()]);
        assert_eq!(v["members"][1]["display"], json!("m3@example.com"));

        // Entra default removal: Remove with a value list.
        let remove =
            json!({"schemas": [PATCH_URN], "Operations": [{"op": "Remove", "path": "members",
            "value": [{"value": u[1]}]}]})
            .to_string();
        h.scim("PATCH", &group, Some(&remove)).await;
        assert_eq!(
            members(&h.scim("GET", &with_members, None).await.json()),
            [u[2].clone()]
        );

        // Deleting a user drops it from memberships.
        h.scim("PATCH", &group, Some(&add)).await;
        assert_eq!(
            h.scim("DELETE", &format!("/Users/{}", u[0]), None)
                .await
                .status,
            StatusCode::NO_CONTENT
        );
        assert_eq!(
            members(&h.scim("GET", &with_members, None).await.json()),
            [u[2].clone(), u[1].clone()]
        );

        // Remove without value clears all members; lowercase Netskope path names work.
        let clear = json!({"Operations": [{"op": "remove", "path": "members"},
            {"op": "replace", "path": "displayname", "value": "Team 2"}]})
        .to_string();
        let a = h.scim("PATCH", &group, Some(&clear)).await;
        assert_eq!(a.status, StatusCode::NO_CONTENT);
        let v = h.scim("GET", &with_members, None).await.json();
        assert!(members(&v).is_empty());
        assert!(v.get("displayName").is_none(), "attributes= projects: {v}");
        let v = h.scim("GET", &group, None).await.json();
        assert_eq!(v["displayName"], json!("Team 2"));
        assert!(v.get("displayname").is_none());
        let bad =
            json!({"Operations": [{"op": "add", "path": "members", "value": [{"display": "x"}]}]});
        assert_error(
            &h.scim("PATCH", &group, Some(&bad.to_string())).await,
            400,
            Some("invalidValue"),
        );

        assert_eq!(
            h.scim("DELETE", &group, None).await.status,
            StatusCode::NO_CONTENT
        );
        assert_error(&h.scim("GET", &group, None).await, 404, None);
        h.shutdown().await;
    }

    #[tokio::test]
    async fn etags_give_304_and_412() {
        let h = harness(true, None).await;
        let v = h.create_user("dave@example.com").await;
        let user = format!("/Users/{}", id(&v));
        let etag = v["meta"]["version"].as_str().unwrap().to_string();
        let a = h
            .scim_with("GET", &user, &[("if-none-match", &etag)], None)
            .await;
        assert_eq!(a.status, StatusCode::NOT_MODIFIED);
        assert!(a.body.is_empty());
        let a = h
            .scim_with("GET", &user, &[("if-none-match", "W/\"99\"")], None)
            .await;
        assert_eq!(a.status, StatusCode::OK);

        let put = json!({"userName": "dave@example.com"}).to_string();
        let stale = [("if-match", "W/\"99\"")];
        assert_error(
            &h.scim_with("PUT", &user, &stale, Some(&put)).await,
            412,
            None,
        );
        let patch = r#"{"Operations":[{"op":"replace","path":"active","value":false}]}"#;
        assert_error(
            &h.scim_with("PATCH", &user, &stale, Some(patch)).await,
            412,
            None,
        );
        assert_error(&h.scim_with("DELETE", &user, &stale, None).await, 412, None);

        let a = h
            .scim_with("PUT", &user, &[("if-match", &etag)], Some(&put))
            .await;
        assert_eq!(a.status, StatusCode::OK);
        let new_etag = a.header("etag").to_string();
        assert_ne!(new_etag, etag);
        let a = h
            .scim_with("PATCH", &user, &[("if-match", "*")], Some(patch))
            .await;
        assert_eq!(a.status, StatusCode::NO_CONTENT);
        let a = h
            .scim_with("DELETE", &user, &[("if-match", &etag)], None)
            .await;
        assert_eq!(a.status, StatusCode::PRECONDITION_FAILED);
        assert_eq!(
            h.scim("DELETE", &user, None).await.status,
            StatusCode::NO_CONTENT
        );
        h.shutdown().await;
    }

    #[tokio::test]
    async fn overrides_are_fifo_recorded_and_delayed() {
        let h = harness(true, None).await;
        h.up.push_override(Override {
            status: StatusCode::TOO_MANY_REQUESTS,
            headers: vec![
                ("Retry-After".into(), "7".into()),
                ("bad\nname".into(), "x".into()),
            ],
            body: Bytes::from_static(b"{\"detail\":\"slow down\"}"),
            delay: Duration::ZERO,
        });
        h.up.push_override(Override {
            status: StatusCode::SERVICE_UNAVAILABLE,
            ..Override::default()
        });
        // Overrides win even over authentication.
        let a = h.call("POST", "/anything", &[], Some("{}")).await;
        assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(a.header("retry-after"), "7");
        assert_eq!(&a.body[..], b"{\"detail\":\"slow down\"}");
        assert_eq!(
            h.scim("GET", "/Users", None).await.status,
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(h.scim("GET", "/Users", None).await.status, StatusCode::OK);
        let recorded = h.up.requests();
        assert_eq!(recorded.len(), 3);
        assert_eq!(recorded[0].path_and_query, "/anything");

        h.up.push_override(Override {
            status: StatusCode::GATEWAY_TIMEOUT,
            delay: Duration::from_millis(300),
            ..Override::default()
        });
        let started = std::time::Instant::now();
        let a = h.scim("GET", "/Users", None).await;
        assert_eq!(a.status, StatusCode::GATEWAY_TIMEOUT);
        assert!(started.elapsed() >= Duration::from_millis(300));

        // Shutdown is prompt even with a long delay in flight.
        h.up.push_override(Override {
            status: StatusCode::OK,
            delay: Duration::from_secs(300),
            ..Override::default()
        });
        let client = h.client.clone();
        let uri = format!("{}/api/v2/scim/Users", h.origin);
        let pending = tokio::spawn(async move {
            let req = Request::get(uri).body(Full::new(Bytes::new())).unwrap();
            let _ = client.request(req).await;
        });
        for _ in 0..200 {
            if h.up.requests().len() == 5 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(h.up.requests().len(), 5);
        let started = std::time::Instant::now();
        h.shutdown().await;
        assert!(started.elapsed() < Duration::from_secs(5));
        tokio::time::timeout(STEP, pending).await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn records_raw_target_peer_and_protocol() {
        let local = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 7));
        let h = harness(true, Some(local)).await;
        let raw = "/Users?filter=userName+eq+%22x%40y%22&aadOptscim062020";
        let a = h.scim("GET", raw, None).await;
        assert_eq!(a.version, http::Version::HTTP_2);
        let r = h.up.requests().pop().unwrap();
        assert_eq!(r.path_and_query, format!("/api/v2/scim{raw}"));
        assert_eq!(r.peer.ip(), local);
        assert_eq!(r.version, http::Version::HTTP_2);
        assert!(r.authenticated);
        assert_eq!(r.headers["authorization"], "Bearer v2-token-1");
        h.shutdown().await;

        let h = harness(false, None).await;
        let a = h.scim("GET", "/Users", None).await;
        assert_eq!(a.version, http::Version::HTTP_11);
        let r = h.up.requests().pop().unwrap();
        assert_eq!(r.version, http::Version::HTTP_11);
        assert_eq!(r.peer.ip(), IpAddr::V4(Ipv4Addr::LOCALHOST));
        h.shutdown().await;
    }

    #[tokio::test]
    async fn unknown_routes_and_methods_answer_scim_errors() {
        let h = harness(true, None).await;
        let auth = [("authorization", "Bearer v2-token-1")];
        for path in ["/SCIM/v2/Users", "/api/v2/scimX/Users", "/", "/api/v2/scim"] {
            assert_error(&h.call("GET", path, &auth, None).await, 404, None);
        }
        for path in [
            "/Bulk",
            "/Schemas",
            "/ServiceProviderConfig",
            "/Users/a/b",
            "/users",
        ] {
            assert_error(&h.scim("GET", path, None).await, 404, None);
        }
        assert_error(&h.scim("DELETE", "/Users", None).await, 405, None);
        assert_error(&h.scim("POST", "/Users/abc", Some("{}")).await, 405, None);
        assert_error(
            &h.scim("POST", "/Users", Some("[]")).await,
            400,
            Some("invalidSyntax"),
        );
        assert_error(
            &h.scim("POST", "/Users", Some("")).await,
            400,
            Some("invalidSyntax"),
        );
        let no_name = json!({"name": {"givenName": "x"}}).to_string();
        assert_error(
            &h.scim("POST", "/Users", Some(&no_name)).await,
            400,
            Some("invalidValue"),
        );
        let bad_members = json!({"displayName": "x", "members": "nope"}).to_string();
        assert_error(
            &h.scim("POST", "/Groups", Some(&bad_members)).await,
            400,
            Some("invalidValue"),
        );
        // Trailing slash on a collection is tolerated.
        assert_eq!(h.scim("GET", "/Users/", None).await.status, StatusCode::OK);
        h.shutdown().await;
    }

    #[tokio::test]
    async fn plain_http_mode_uses_http_locations() {
        let up = Upstream::start(UpstreamOptions {
            bind: "127.0.0.1:0".parse().unwrap(),
            tls: None,
            base_path: "/api/v2/scim".into(),
            tokens: vec![TOKEN.into()],
        })
        .await
        .unwrap();
        let client: Client<HttpConnector, Full<Bytes>> =
            Client::builder(TokioExecutor::new()).build(HttpConnector::new());
        let req = Request::post(format!("http://{}/api/v2/scim/Users", up.addr()))
            .header("netskope-api-token", TOKEN)
            .body(Full::new(Bytes::from(r#"{"userName":"p@example.com"}"#)))
            .unwrap();
        let resp = tokio::time::timeout(STEP, client.request(req))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(resp.status(), StatusCode::CREATED);
        let location = resp.headers()["location"].to_str().unwrap().to_string();
        assert!(location.starts_with(&format!("http://{}/api/v2/scim/Users/", up.addr())));
        let second = up.clone();
        drop(up);
        tokio::time::timeout(STEP, second.shutdown()).await.unwrap();
    }

    #[test]
    fn query_and_filter_parsing() {
        assert_eq!(percent_decode("a+b%20c%2", true), "a b c%2");
        assert_eq!(percent_decode("a+b%zz", false), "a+b%zz");
        assert_eq!(percent_decode("%E2%82%AC%ff", true), "\u{20ac}\u{fffd}");
        let f =
            parse_filter(r#"emails[type eq "work"].value eq "a\"b" and Active EQ true"#).unwrap();
        assert_eq!(f.len(), 2);
        assert_eq!(f[0].path.attr, "emails");
        assert_eq!(f[0].path.sub.as_deref(), Some("value"));
        assert_eq!(f[0].value, json!("a\"b"));
        assert_eq!(f[1].value, json!(true));
        let p = parse_attr_path(&format!("{ENTERPRISE_URN}:manager.value"), true).unwrap();
        assert_eq!(p.container.as_deref(), Some(ENTERPRISE_URN));
        assert_eq!(
            (p.attr.as_str(), p.sub.as_deref()),
            ("manager", Some("value"))
        );
        let p = parse_attr_path(&format!("{USER_URN}:userName"), true).unwrap();
        assert_eq!((p.container, p.attr.as_str()), (None, "userName"));
        for bad in ["", "a[b[c eq 1] eq 2]", "a b", "a[", "urn:x:", "a.b.c", "é"] {
            assert!(parse_attr_path(bad, true).is_err(), "{bad}");
        }
        for bad in [
            "",
            "x eq",
            "x eq 1 and",
            "x gt 1",
            "x eq \"\\u12\"",
            "x eq \u{fffd}",
        ] {
            assert!(parse_filter(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn dates_are_rfc3339() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        let now = now_rfc3339();
        assert_eq!(now.len(), "2024-01-01T00:00:00.000Z".len());
        assert_eq!(&now[10..11], "T");
    }
}
