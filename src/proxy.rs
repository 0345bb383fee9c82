//! The request path as a tower `Service`: route, authenticate, swap the token, forward, rewrite, log.
//!
//! Phases, in order (each refusal is answered here and nothing is forwarded):
//! request id -> one config snapshot -> route by host (404) -> path safety and prefix (400/414/404)
//! -> bearer auth (401) -> upstream request (path, Host, v2 token, no inbound credentials, no hop-by-hop)
//! -> pooled client within `upstream_timeout` (502/504) -> response headers (hop-by-hop, Location) -> client.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::{Request, Response, Uri, Version};
use http_body::Body;
use http_body_util::BodyExt;

use crate::auth::{self, AuthOutcome};
use crate::body::{BoxError, ProxyBody};
use crate::config::UpstreamAuth;
use crate::error::{ErrorKind, ProxyError, classify_upstream_error};
use crate::headers;
use crate::rewrite::{self, Base};
use crate::route::{self, RouteError};
use crate::runtime::{Shared, Snapshot};

pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
static NETSKOPE_API_TOKEN: HeaderName = HeaderName::from_static("netskope-api-token");

/// What the listener knows about the connection a request came on.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    pub peer: SocketAddr,
    pub tls: bool,
}

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

/// What the access log line says about one request, filled in as the phases run.
#[derive(Default)]
struct Outcome {
    route: Option<String>,
    client: Option<String>,
    auth: Option<&'static str>,
    upstream_status: Option<u16>,
    error: Option<ErrorKind>,
}

async fn handle<B>(shared: Arc<Shared>, conn: Arc<ConnInfo>, req: Request<B>) -> Response<ProxyBody>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let started = Instant::now();
    let snapshot = shared.state.load_full();
    let request_id = request_id(req.headers());
    let method = req.method().clone();
    // Logged without the query: filters carry user names, and a misplaced credential could ride there.
    let path = req.uri().path().to_owned();
    let mut outcome = Outcome::default();

    let mut res = match forward(&snapshot, &conn, req, &request_id, &mut outcome).await {
        Ok(res) => res,
        Err(e) => {
            outcome.error = Some(e.kind);
            if e.kind.origin() != crate::error::Origin::Downstream {
                tracing::warn!(request_id = %request_id, kind = e.kind.as_str(), detail = %e.detail, "upstream failure");
            }
            e.into_response()
        }
    };
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        res.headers_mut().insert(X_REQUEST_ID.clone(), v);
    }
    tracing::info!(
        target: "scim_proxy::access",
        request_id = %request_id,
        peer = %conn.peer.ip(),
        method = %method,
        path = %path,
        route = outcome.route.as_deref().unwrap_or("-"),
        client = outcome.client.as_deref().unwrap_or("-"),
        auth = outcome.auth.unwrap_or("-"),
        status = res.status().as_u16(),
        upstream_status = outcome.upstream_status.unwrap_or(0),
        error = outcome.error.map(|k| k.as_str()).unwrap_or("-"),
        duration_ms = started.elapsed().as_millis() as u64,
        "request"
    );
    res
}

async fn forward<B>(
    snapshot: &Snapshot,
    conn: &ConnInfo,
    req: Request<B>,
    request_id: &str,
    outcome: &mut Outcome,
) -> Result<Response<ProxyBody>, ProxyError>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let (mut parts, body) = req.into_parts();

    // The authority (absolute-form or HTTP/2) wins over Host; either only selects among configured routes.
    let client_authority: Option<String> = match parts.uri.authority() {
        Some(a) => Some(a.as_str().to_owned()),
        None => match parts.headers.get(header::HOST) {
            Some(h) => {
                let h = h
                    .to_str()
                    .ok()
                    .filter(|h| {
                        h.parse::<http::uri::Authority>()
                            .is_ok_and(|a| a.as_str() == *h)
                    })
                    .ok_or_else(|| ProxyError::new(ErrorKind::BadRequest, "invalid Host header"))?;
                Some(h.to_owned())
            }
            None => None,
        },
    };
    let index = route::select_route(&snapshot.config.routes, client_authority.as_deref())
        .map_err(|_| ProxyError::new(ErrorKind::NotFound, "no route serves this host"))?;
    let (route, runtime) = snapshot
        .route(index)
        .ok_or_else(|| ProxyError::new(ErrorKind::Internal, "route table out of step"))?;
    outcome.route = Some(route.name.clone());

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
    outcome.auth = Some(auth.as_str());
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
    outcome.client = route.clients.get(client_index).map(|c| c.name.clone());

    // The base the client addressed, for rewriting upstream URLs back.
    let client_base = client_authority.as_deref().map(|authority| {
        let scheme = if conn.tls {
            "https"
        } else {
            forwarded_proto(&parts.headers)
        };
        Base::new(scheme, authority, mapped.client_prefix)
    });

    let path_and_query =
        route::upstream_path_and_query(&route.upstream, mapped.rest, parts.uri.query());
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
    let upstream_req = Request::from_parts(parts, body.map_err(Into::into).boxed_unsync());

    let timeout = snapshot.config.limits.upstream_timeout;
    let res = match tokio::time::timeout(timeout, snapshot.client.request(upstream_req)).await {
        Ok(Ok(res)) => res,
        Ok(Err(e)) => return Err(classify_upstream_error(&e)),
        Err(_) => {
            return Err(ProxyError::new(
                ErrorKind::UpstreamTimeout,
                format!(
                    "the upstream did not answer within {}",
                    humantime::format_duration(timeout)
                ),
            ));
        }
    };
    outcome.upstream_status = Some(res.status().as_u16());

    let (mut parts, body) = res.into_parts();
    parts.version = Version::HTTP_11;
    headers::strip_hop_by_hop(&mut parts.headers);
    if let Some(client_base) = &client_base {
        rewrite_location_headers(&mut parts.headers, &runtime.base, client_base);
    }
    redact_token_echo(&mut parts.headers, runtime.token.expose_for_redaction());
    Ok(Response::from_parts(
        parts,
        body.map_err(Into::into).boxed_unsync(),
    ))
}

/// `X-Forwarded-Proto` from the TLS-terminating load balancer in front of a plain listener.
fn forwarded_proto(headers: &http::HeaderMap) -> &'static str {
    match headers.get("x-forwarded-proto").map(|v| v.as_bytes()) {
        Some(v) if v.eq_ignore_ascii_case(b"https") => "https",
        _ => "http",
    }
}

fn rewrite_location_headers(headers: &mut http::HeaderMap, upstream: &Base, client: &Base) {
    for name in [header::LOCATION, header::CONTENT_LOCATION] {
        if let Some(v) = headers.get(&name).and_then(|v| v.to_str().ok())
            && let Some(new) = rewrite::rewrite_location(v, upstream, client)
            && let Ok(new) = HeaderValue::from_str(&new)
        {
            headers.insert(name, new);
        }
    }
}

/// An upstream that echoes the v2 token in a header must not hand it to the IdP.
fn redact_token_echo(headers: &mut http::HeaderMap, token: &str) {
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
fn request_id(headers: &http::HeaderMap) -> String {
    headers
        .get(&X_REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}
