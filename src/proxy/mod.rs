//! The request path as a tower `Service`: route, authenticate, swap the token, forward, rewrite, log.
//!
//! Phases, in order (each refusal is answered here and nothing is forwarded):
//! request id -> one config snapshot -> client address (X-Forwarded-For from trusted proxies only,
//! 403) -> served host and SNI on TLS (421) -> route by host (404) -> path safety and prefix (400/414/404) -> bearer auth (401) -> body
//! limit (413) -> per-IdP in-flight cap (429) -> upstream request (path, Host, v2 token, no inbound
//! credentials, no hop-by-hop) -> pooled client within `upstream_timeout` (502/504) -> response
//! headers (hop-by-hop, Location, token echo) -> client.

pub mod conn;
pub mod headers;
pub mod logging;
pub mod route;

use std::convert::Infallible;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::{HeaderMap, Method, Request, Response, Uri, Version};
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, LengthLimitError, Limited};

use crate::auth::{self, AuthOutcome};
use crate::body::filter;
use crate::body::{BoxError, ProxyBody};
use crate::config::{Listen, Route, UpstreamAuth};
use crate::error::{ErrorKind, Origin, ProxyError};
use crate::proxy::logging::{Exchange, InFlightGauge, Logged};
use crate::scim::base::{self, Base};
use crate::scim::reading;
use crate::state::{RouteRuntime, Shared, Snapshot};
use crate::upstream::classify::classify_upstream_error;
pub use conn::ConnInfo;
use route::RouteError;

pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
static NETSKOPE_API_TOKEN: HeaderName = HeaderName::from_static("netskope-api-token");
static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

#[derive(Clone)]
pub struct ProxyService {
    shared: Arc<Shared>,
    conn: Arc<ConnInfo>,
}

impl ProxyService {
    pub fn new(shared: Arc<Shared>, conn: ConnInfo) -> ProxyService {
        ProxyService {
            shared,
            conn: Arc::new(conn),
        }
    }
}

impl<B> tower::Service<Request<B>> for ProxyService
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response<ProxyBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let shared = self.shared.clone();
        let conn = self.conn.clone();
        Box::pin(async move { Ok(handle(shared, conn, req).await) })
    }
}

async fn handle<B>(shared: Arc<Shared>, conn: Arc<ConnInfo>, req: Request<B>) -> Response<ProxyBody>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let in_flight = conn.state.request_started();
    let gauge = InFlightGauge::start(&shared);
    let snapshot = shared.state.load_full();
    let request_id = request_id(req.headers());
    let path_and_query = req
        .uri()
        .path_and_query()
        .map_or_else(|| req.uri().path().to_owned(), |p| p.as_str().to_owned());
    let mut exchange = Exchange::new(
        request_id,
        req.method().clone(),
        path_and_query,
        conn.peer.ip(),
    );

    let forwarded = forward(&shared, &snapshot, &conn, req, &mut exchange).await;
    let mut res = match forwarded {
        Ok(res) => res,
        Err(e) => {
            exchange.error = Some(e.kind);
            if e.kind.origin() != Origin::Downstream {
                tracing::warn!(
                    request_id = %exchange.request_id,
                    route = exchange.route.as_deref().unwrap_or("-"),
                    kind = e.kind.as_str(),
                    detail = %e.detail,
                    "upstream failure"
                );
            }
            e.into_response()
        }
    };
    if let Ok(v) = HeaderValue::from_str(&exchange.request_id) {
        res.headers_mut().insert(X_REQUEST_ID.clone(), v);
    }
    let status = res.status().as_u16();
    // Logged, counted and the connection freed when the response body has gone out.
    res.map(|body| {
        Logged::new(body, exchange, status, shared, snapshot, in_flight, gauge).boxed_unsync()
    })
}

async fn forward<B>(
    shared: &Shared,
    snapshot: &Snapshot,
    conn: &ConnInfo,
    req: Request<B>,
    exchange: &mut Exchange,
) -> Result<Response<ProxyBody>, ProxyError>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let (mut parts, body) = req.into_parts();
    let config = &snapshot.config;

    let client_ip = client_ip(&config.listen, conn, &parts.headers);
    exchange.client_ip = client_ip;
    if client_ip != conn.peer.ip() && !config.listen.is_allowed(client_ip) {
        return Err(ProxyError::new(
            ErrorKind::Forbidden,
            "client address not allowed",
        ));
    }

    // The authority (absolute-form or HTTP/2) wins over Host; either only selects among configured routes.
    let client_authority = client_authority(&parts)?;
    refuse_unknown_transfer_coding(&parts.headers)?;
    if conn.tls {
        check_served_name(snapshot, conn, client_authority.as_deref())?;
    }
    let index = route::select_route(&config.routes, client_authority.as_deref())
        .map_err(|_| ProxyError::new(ErrorKind::NotFound, "no route serves this host"))?;
    let (route, runtime) = snapshot
        .route(index)
        .ok_or_else(|| ProxyError::new(ErrorKind::Internal, "route table out of step"))?;
    exchange.route = Some(route.name.clone());
    exchange.route_index = Some(index);
    if let Some(expiry) = &runtime.token_expiry
        && expiry.applies()
        && expiry.date <= std::time::SystemTime::now()
    {
        let expires = expiry.date;
        // Still forwarded: the upstream decides, and the IdP sees its real answer.
        tracing::error!(
            route = %route.name,
            expired = %humantime::format_rfc3339_seconds(expires),
            "the route's REST API v2 token is past token_expires: issue a new one and write it to {}",
            route.token
        );
    }

    let mapped = route::map_path(route, parts.uri.path()).map_err(|e| match e {
        RouteError::UnknownHost | RouteError::NotFound => ProxyError::new(
            ErrorKind::NotFound,
            "not a SCIM endpoint of this proxy: use /SCIM/v2/Users or /SCIM/v2/Groups",
        ),
        RouteError::Unsafe(why) => ProxyError::new(
            ErrorKind::BadRequest,
            format!("refused request target: {why}"),
        ),
        RouteError::TooLong => ProxyError::new(ErrorKind::UriTooLong, "request target too long"),
    })?;

    let auth = auth::authenticate(
        &route.clients,
        parts
            .headers
            .get_all(header::AUTHORIZATION)
            .iter()
            .map(|v| v.as_bytes()),
    );
    exchange.auth = Some(auth.as_str());
    let client_index = match auth {
        AuthOutcome::Ok(i) => i,
        AuthOutcome::Missing => {
            return Err(ProxyError::new(
                ErrorKind::Unauthorized,
                "missing Authorization: Bearer token",
            ));
        }
        AuthOutcome::BadScheme => {
            return Err(ProxyError::new(
                ErrorKind::Unauthorized,
                "malformed Authorization header: expected one `Bearer <token>`",
            ));
        }
        AuthOutcome::UnknownToken => {
            return Err(ProxyError::new(
                ErrorKind::Unauthorized,
                "the bearer token is not valid for this endpoint",
            ));
        }
    };
    exchange.client = route.clients.get(client_index).map(|c| c.name.clone());

    let limits = &config.limits;
    let declared_len = content_length(&parts.headers)?;
    if declared_len.is_some_and(|n| n > limits.max_body) {
        return Err(too_large(limits.max_body));
    }

    let client_slot = runtime
        .client_in_flight
        .get(client_index)
        .and_then(|counter| ClientSlot::take(counter, limits.max_requests_per_client))
        .ok_or_else(|| {
            ProxyError::new(
                ErrorKind::TooManyRequests,
                format!(
                    "this IdP already has {} requests in flight through the proxy",
                    limits.max_requests_per_client
                ),
            )
        })?;

    // The base URLs are given back under: `public_url`, else the authority the client addressed,
    // which is a name this proxy serves (checked above on TLS; a route host on a plain listener).
    let client_base = match &route.public_url {
        Some(public) => Some(Base::new(&public.scheme, &public.authority, &public.path)),
        None => client_authority.as_deref().map(|authority| {
            let scheme = if conn.tls {
                "https"
            } else {
                forwarded_proto(&config.listen, conn, &parts.headers)
            };
            Base::new(scheme, authority, mapped.client_prefix)
        }),
    };

    let path_and_query =
        route::upstream_path_and_query(&route.upstream, mapped.rest, parts.uri.query());
    // The path after the prefix, for the SCIM reading, before the URI is replaced.
    let rest = mapped.rest.to_owned();
    if !config.listen.is_trusted_proxy(conn.peer.ip()) {
        headers::strip_untrusted_forwarding(&mut parts.headers);
    }
    upstream_head(
        &mut parts,
        route,
        runtime,
        &path_and_query,
        &exchange.request_id,
    )?;

    let method = parts.method.clone();
    exchange.upstream_path = Some(path_and_query);
    let body_limit = usize::try_from(limits.max_body).unwrap_or(usize::MAX);
    let body_urls = route
        .rewrite_body_urls
        .then_some(client_base.as_ref())
        .flatten()
        .map(|client| (client, &runtime.base));
    // Every answer is read for token redaction (and rewriting): ask the upstream for plain ones.
    parts.headers.insert(
        header::ACCEPT_ENCODING,
        HeaderValue::from_static("identity"),
    );
    // A bodiless idempotent request can be sent again if the connection breaks before an answer.
    let replay = (is_replayable(&method) && body.is_end_stream())
        .then(|| (method.clone(), parts.uri.clone(), parts.headers.clone()));
    // The inbound body is watched on its own: when it fails (over max_body, broken chunking, the
    // IdP went away) the client library may only report a reset stream, and the fault is the IdP's.
    let inbound_failure = Arc::new(InboundFailure::default());
    let counted = Counted {
        inner: Limited::new(body, body_limit).boxed_unsync(),
        count: exchange.bytes_in.clone(),
        failure: inbound_failure.clone(),
        stall_after: limits.body_read_timeout,
        stall: None,
    };
    let (body, request_json) =
        filter::request_body(&mut parts.headers, counted.boxed_unsync(), body_urls).await?;
    let request_value = request_json
        .as_ref()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(b).ok());
    exchange.reading = Some(reading::read_request(
        &method,
        &rest,
        exchange
            .upstream_path
            .as_deref()
            .and_then(|p| p.split_once('?'))
            .map(|(_, q)| q),
        request_value.as_ref(),
    ));
    exchange.request_json = request_json;
    let upstream_req = Request::from_parts(parts, body);

    let sent = Instant::now();
    let deadline = tokio::time::Instant::now() + limits.upstream_timeout;
    let timeout_error = || {
        ProxyError::new(
            ErrorKind::UpstreamTimeout,
            format!(
                "the upstream did not answer within {}",
                humantime::format_duration(limits.upstream_timeout)
            ),
        )
    };
    let first = tokio::time::timeout_at(deadline, snapshot.client.request(upstream_req)).await;
    exchange.upstream_time = Some(sent.elapsed());
    let mut result = first.map_err(|_| timeout_error())?;
    if let (Err(e), Some((method, uri, headers))) = (&result, replay)
        && is_reset_before_answer(e)
        && shared.retry_budget.try_take()
    {
        tracing::info!(request_id = %exchange.request_id, error = %e, "connection to the upstream broke before an answer; retrying the idempotent request once");
        exchange.retried = true;
        let mut again = Request::new(crate::body::empty());
        *again.method_mut() = method;
        *again.uri_mut() = uri;
        *again.headers_mut() = headers;
        let second = tokio::time::timeout_at(deadline, snapshot.client.request(again)).await;
        exchange.upstream_time = Some(sent.elapsed());
        result = second.map_err(|_| timeout_error())?;
    }
    if let Err(e) = &result
        && let Some(failure) = inbound_failure.get()
    {
        tracing::debug!(request_id = %exchange.request_id, error = %e, "the request body failed on the way in");
        return Err(match failure {
            Inbound::TooLarge => too_large(limits.max_body),
            Inbound::Broken => ProxyError::new(
                ErrorKind::BadRequest,
                "the request body could not be read (malformed chunked encoding, or the connection broke)",
            ),
            Inbound::Stalled => ProxyError::new(
                ErrorKind::RequestTimeout,
                crate::error::BodyStalled(limits.body_read_timeout).to_string(),
            ),
        });
    }
    let res = match result {
        Ok(res) => res,
        Err(e) if crate::error::find_in_chain::<LengthLimitError>(&e).is_some() => {
            return Err(too_large(limits.max_body));
        }
        Err(e) => return Err(classify_upstream_error(&e)),
    };
    exchange.upstream_status = Some(res.status().as_u16());

    let (mut parts, body) = res.into_parts();
    parts.version = Version::HTTP_11;
    headers::strip_hop_by_hop(&mut parts.headers);
    if let Some(client_base) = &client_base {
        rewrite_location_headers(&mut parts.headers, &runtime.base, client_base);
    }
    redact_token_echo(&mut parts.headers, runtime.token.expose_for_redaction());
    let down_urls = body_urls.map(|(client, upstream)| (upstream, client));
    let (body, response_json) = filter::response_body(
        &method,
        parts.status,
        &mut parts.headers,
        body.map_err(Into::into).boxed_unsync(),
        down_urls,
        &runtime.token_redaction,
        shared.traffic.is_some(),
    )
    .await?;
    exchange.response_json = response_json;
    // The IdP's slot is freed with the exchange, when the response body is done.
    exchange.client_slot = Some(client_slot);
    Ok(Response::from_parts(parts, body))
}

/// Turns a request head into the one sent to `route`'s upstream: target, header hygiene, the v2
/// token, the request id. Serving and `check --live` both build their upstream request here, and
/// send it through the same pooled client (origin-form target and Host come from it), so the
/// preflight can never send what serving would not.
pub(crate) fn upstream_head(
    parts: &mut http::request::Parts,
    route: &Route,
    runtime: &RouteRuntime,
    path_and_query: &str,
    request_id: &str,
) -> Result<(), ProxyError> {
    let upstream_uri: Uri = format!("https://{}{}", route.upstream.authority, path_and_query)
        .parse()
        .map_err(|_| {
            ProxyError::new(ErrorKind::BadRequest, "request target cannot be forwarded")
        })?;
    headers::upstream_request_headers(&mut parts.headers);
    match route.upstream_auth {
        UpstreamAuth::Bearer => parts
            .headers
            .insert(header::AUTHORIZATION, runtime.token.header_value()),
        UpstreamAuth::NetskopeApiToken => parts
            .headers
            .insert(NETSKOPE_API_TOKEN.clone(), runtime.token.header_value()),
    };
    if let Ok(v) = HeaderValue::from_str(request_id) {
        parts.headers.insert(X_REQUEST_ID.clone(), v);
    }
    parts.uri = upstream_uri;
    parts.version = Version::HTTP_11;
    Ok(())
}

/// Why the inbound body failed, if it did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Inbound {
    TooLarge,
    Broken,
    /// No byte for `body_read_timeout`: the body fails, so the upstream request is aborted.
    Stalled,
}

#[derive(Default)]
struct InboundFailure(std::sync::OnceLock<Inbound>);

impl InboundFailure {
    fn get(&self) -> Option<Inbound> {
        self.0.get().copied()
    }
}

/// Counts request body bytes for the traffic log's `bytes_in`, and records why the body failed.
struct Counted {
    inner: ProxyBody,
    count: Arc<std::sync::atomic::AtomicU64>,
    failure: Arc<InboundFailure>,
    stall_after: Duration,
    /// Armed while the body is waited on; reset by every frame.
    stall: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Body for Counted {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if polled.is_pending() {
            let after = self.stall_after;
            let stall = self
                .stall
                .get_or_insert_with(|| Box::pin(tokio::time::sleep(after)));
            if stall.as_mut().poll(cx).is_ready() {
                let _ = self.failure.0.set(Inbound::Stalled);
                return Poll::Ready(Some(Err(Box::new(crate::error::BodyStalled(after)))));
            }
            return Poll::Pending;
        }
        self.stall = None;
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.count.fetch_add(data.len() as u64, Ordering::Relaxed);
                }
            }
            Poll::Ready(Some(Err(e))) => {
                let kind = if crate::error::find_in_chain::<LengthLimitError>(&**e).is_some() {
                    Inbound::TooLarge
                } else {
                    Inbound::Broken
                };
                let _ = self.failure.0.set(kind);
            }
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

fn too_large(max: u64) -> ProxyError {
    ProxyError::new(
        ErrorKind::PayloadTooLarge,
        format!("the request body is larger than the proxy's limit of {max} bytes"),
    )
}

/// On TLS, the addressed host must be one this proxy serves (a route's `hosts` or `public_url`
/// host, or a name the certificate covers) and the one the client named in SNI: else 421, so a
/// forged Host is never forwarded nor reflected in the URLs given back.
fn check_served_name(
    snapshot: &Snapshot,
    conn: &ConnInfo,
    authority: Option<&str>,
) -> Result<(), ProxyError> {
    let Some(authority) = authority else {
        return Ok(());
    };
    let misdirected = |why: &str| ProxyError::new(ErrorKind::MisdirectedRequest, why.to_string());
    let host = route::host_without_port(authority)
        .ok_or_else(|| misdirected("this proxy does not serve the requested host"))?;
    if let Some(sni) = &conn.sni
        && !sni.trim_end_matches('.').eq_ignore_ascii_case(host)
    {
        return Err(misdirected(
            "the requested host differs from the TLS server name (SNI) of this connection",
        ));
    }
    let by_route = snapshot.config.routes.iter().any(|r| {
        r.hosts.iter().any(|h| h.eq_ignore_ascii_case(host))
            || r.public_url
                .as_ref()
                .is_some_and(|p| p.host.eq_ignore_ascii_case(host))
    });
    let by_cert = snapshot
        .cert_names
        .as_ref()
        .is_some_and(|names| names.covers(host));
    if by_route || by_cert {
        Ok(())
    } else {
        Err(misdirected("this proxy does not serve the requested host"))
    }
}

/// The authority the client addressed: the target's (absolute-form, HTTP/2 `:authority`), else the
/// one Host header (RFC 9112 §3.2: exactly one, required in HTTP/1.1). Never with userinfo, which
/// would otherwise reach the URLs handed back to the client.
fn client_authority(parts: &http::request::Parts) -> Result<Option<String>, ProxyError> {
    let bad = |why: &str| ProxyError::new(ErrorKind::BadRequest, why.to_string());
    let mut hosts = parts.headers.get_all(header::HOST).iter();
    let host = hosts.next();
    if hosts.next().is_some() {
        return Err(bad("more than one Host header"));
    }
    if let Some(a) = parts.uri.authority() {
        if a.as_str().contains('@') {
            return Err(bad("userinfo is not allowed in the request target"));
        }
        if !has_valid_port(a.as_str()) {
            return Err(bad("invalid port in the request target"));
        }
        // RFC 9113 §8.3.1: an HTTP/2 request whose host header differs from :authority is malformed.
        if parts.version == Version::HTTP_2
            && let Some(host) = host
            && !host.as_bytes().eq_ignore_ascii_case(a.as_str().as_bytes())
        {
            return Err(bad("the host header differs from :authority"));
        }
        return Ok(Some(a.as_str().to_owned()));
    }
    let Some(host) = host else {
        return match parts.version {
            Version::HTTP_10 | Version::HTTP_09 => Ok(None),
            _ => Err(bad("missing Host header")),
        };
    };
    host.to_str()
        .ok()
        .filter(|h| !h.contains('@'))
        .filter(|h| {
            h.parse::<http::uri::Authority>()
                .is_ok_and(|a| a.as_str() == *h)
        })
        .filter(|h| has_valid_port(h))
        .map(|h| Some(h.to_owned()))
        .ok_or_else(|| bad("invalid Host header"))
}

/// An authority's port, when it has one, is 1 to 65535 (an empty port is allowed by RFC 3986).
fn has_valid_port(authority: &str) -> bool {
    let after_host = authority
        .rfind(']')
        .map_or(authority, |i| &authority[i + 1..]);
    match after_host.rsplit_once(':') {
        None | Some((_, "")) => true,
        Some((_, port)) => port.parse::<u16>().is_ok_and(|p| p != 0),
    }
}

/// Only `chunked` framing is understood: any other transfer coding would reach the upstream as if
/// the bytes were plain (RFC 9112 §6.1: 501).
fn refuse_unknown_transfer_coding(headers: &HeaderMap) -> Result<(), ProxyError> {
    let unknown = headers
        .get_all(header::TRANSFER_ENCODING)
        .iter()
        .flat_map(|v| v.to_str().unwrap_or("?").split(','))
        .any(|coding| !coding.trim().eq_ignore_ascii_case("chunked"));
    if unknown {
        return Err(ProxyError::new(
            ErrorKind::NotImplemented,
            "unsupported transfer coding: only chunked is accepted",
        ));
    }
    Ok(())
}

/// One Content-Length, or none; several different ones are a smuggling attempt.
fn content_length(headers: &HeaderMap) -> Result<Option<u64>, ProxyError> {
    let mut found: Option<u64> = None;
    for v in headers.get_all(header::CONTENT_LENGTH) {
        let n = v
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .ok_or_else(|| ProxyError::new(ErrorKind::BadRequest, "invalid Content-Length"))?;
        if found.is_some_and(|f| f != n) {
            return Err(ProxyError::new(
                ErrorKind::BadRequest,
                "conflicting Content-Length headers",
            ));
        }
        found = Some(n);
    }
    Ok(found)
}

/// Safe to send twice: a read. DELETE is idempotent in theory, but a retried DELETE that had
/// already gone through answers 404, which would hide the real result from the IdP.
fn is_replayable(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// The pooled connection broke (reset, closed) after the request may have left but before any answer.
fn is_reset_before_answer(e: &hyper_util::client::legacy::Error) -> bool {
    if e.is_connect() {
        return false;
    }
    crate::error::error_chain(e).iter().any(|s| {
        s.downcast_ref::<hyper::Error>()
            .is_some_and(|h| h.is_incomplete_message() || h.is_canceled())
            || s.downcast_ref::<std::io::Error>().is_some_and(|io| {
                matches!(
                    io.kind(),
                    std::io::ErrorKind::ConnectionReset
                        | std::io::ErrorKind::ConnectionAborted
                        | std::io::ErrorKind::BrokenPipe
                        | std::io::ErrorKind::UnexpectedEof
                )
            })
    })
}

/// The client's address: the connection's, or, from a trusted proxy, the nearest untrusted hop
/// of X-Forwarded-For (the rightmost one a trusted proxy did not add itself).
fn client_ip(listen: &Listen, conn: &ConnInfo, headers: &HeaderMap) -> IpAddr {
    let peer = conn.peer.ip();
    if !listen.is_trusted_proxy(peer) {
        return peer;
    }
    let hops: Vec<&str> = headers
        .get_all(&X_FORWARDED_FOR)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    for hop in hops.iter().rev() {
        match hop.parse::<IpAddr>() {
            Ok(ip) if listen.is_trusted_proxy(ip) => continue,
            Ok(ip) => return ip,
            // An unparsable hop ends what can be believed.
            Err(_) => break,
        }
    }
    peer
}

/// `X-Forwarded-Proto` from a TLS-terminating load balancer in front of a plain listener.
/// Only shapes the URLs handed back to the same client, so it is read from any plain-HTTP peer
/// unless trusted proxies are configured, then only from them.
fn forwarded_proto(listen: &Listen, conn: &ConnInfo, headers: &HeaderMap) -> &'static str {
    if !listen.trusted_proxies.is_empty() && !listen.is_trusted_proxy(conn.tcp_peer.ip()) {
        return "http";
    }
    match headers.get("x-forwarded-proto").map(|v| v.as_bytes()) {
        Some(v) if v.eq_ignore_ascii_case(b"https") => "https",
        _ => "http",
    }
}

fn rewrite_location_headers(headers: &mut HeaderMap, upstream: &Base, client: &Base) {
    for name in [header::LOCATION, header::CONTENT_LOCATION] {
        if let Some(v) = headers.get(&name).and_then(|v| v.to_str().ok())
            && let Some(new) = base::rewrite_location(v, upstream, client)
            && let Ok(new) = HeaderValue::from_str(&new)
        {
            headers.insert(name, new);
        }
    }
}

/// An upstream that echoes the v2 token in a header must not hand it to the IdP.
fn redact_token_echo(headers: &mut HeaderMap, token: &str) {
    let token = token.as_bytes();
    let leaks: Vec<HeaderName> = headers
        .iter()
        .filter(|(_, v)| v.as_bytes().windows(token.len()).any(|w| w == token))
        .map(|(k, _)| k.clone())
        .collect();
    for name in leaks {
        tracing::warn!(header = %name, "the upstream echoed the v2 token in a response header; removed it");
        headers.remove(name);
    }
}

/// Keeps a sane inbound `X-Request-Id` (so IdP and proxy logs correlate), else makes one.
fn request_id(headers: &HeaderMap) -> String {
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
    use std::sync::OnceLock;
    use std::sync::atomic::AtomicU64;
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

/// One of an IdP's `max_requests_per_client` slots, freed when the response body is done.
pub struct ClientSlot(Arc<AtomicUsize>);

impl ClientSlot {
    fn take(counter: &Arc<AtomicUsize>, max: usize) -> Option<ClientSlot> {
        counter
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| ClientSlot(counter.clone()))
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}
