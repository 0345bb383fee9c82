//! One error type for the request path: where a fault came from, its status, and its SCIM Error body.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};

use crate::body::ProxyBody;

pub const SCIM_ERROR_URN: &str = "urn:ietf:params:scim:api:messages:2.0:Error";
pub const SCIM_JSON: &str = "application/scim+json";

/// Which side a fault came from (logs and metrics use the same words).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Downstream,
    Upstream,
    Internal,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// 404: no route for the host, or a path outside the served prefixes.
    NotFound,
    /// 400: a target or request that cannot be forwarded safely.
    BadRequest,
    /// 414
    UriTooLong,
    /// 421: the Host is not a name this proxy serves, or differs from the connection's SNI.
    MisdirectedRequest,
    /// 401 with `WWW-Authenticate: Bearer`.
    Unauthorized,
    /// 403: the client address is not in `allow_cidrs` (known only from X-Forwarded-For).
    Forbidden,
    /// 408: the request body stopped arriving for `body_read_timeout`.
    RequestTimeout,
    /// 413: the request body is over `max_body`.
    PayloadTooLarge,
    /// 429 with `Retry-After`: this IdP has `max_requests_per_client` requests in flight.
    TooManyRequests,
    /// 501: a transfer coding other than chunked.
    NotImplemented,
    /// 502: could not connect (refused, DNS, unreachable, egress).
    UpstreamConnect,
    /// 502: upstream TLS failed (certificate, protocol).
    UpstreamTls,
    /// 502: the upstream broke the exchange (reset, malformed response).
    UpstreamProtocol,
    /// 504: no response head within `upstream_timeout`.
    UpstreamTimeout,
    /// 500
    Internal,
}

impl ErrorKind {
    pub fn status(self) -> StatusCode {
        match self {
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::BadRequest => StatusCode::BAD_REQUEST,
            ErrorKind::UriTooLong => StatusCode::URI_TOO_LONG,
            ErrorKind::MisdirectedRequest => StatusCode::MISDIRECTED_REQUEST,
            ErrorKind::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorKind::Forbidden => StatusCode::FORBIDDEN,
            ErrorKind::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            ErrorKind::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorKind::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
            ErrorKind::NotImplemented => StatusCode::NOT_IMPLEMENTED,
            ErrorKind::UpstreamConnect | ErrorKind::UpstreamTls | ErrorKind::UpstreamProtocol => {
                StatusCode::BAD_GATEWAY
            }
            ErrorKind::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn origin(self) -> Origin {
        match self {
            ErrorKind::NotFound
            | ErrorKind::BadRequest
            | ErrorKind::UriTooLong
            | ErrorKind::MisdirectedRequest
            | ErrorKind::Unauthorized
            | ErrorKind::Forbidden
            | ErrorKind::RequestTimeout
            | ErrorKind::PayloadTooLarge
            | ErrorKind::TooManyRequests
            | ErrorKind::NotImplemented => Origin::Downstream,
            ErrorKind::UpstreamConnect
            | ErrorKind::UpstreamTls
            | ErrorKind::UpstreamProtocol
            | ErrorKind::UpstreamTimeout => Origin::Upstream,
            ErrorKind::Internal => Origin::Internal,
        }
    }

    /// The short name logs and metrics use.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::NotFound => "not-found",
            ErrorKind::BadRequest => "bad-request",
            ErrorKind::UriTooLong => "uri-too-long",
            ErrorKind::MisdirectedRequest => "misdirected-request",
            ErrorKind::Unauthorized => "unauthorized",
            ErrorKind::Forbidden => "forbidden",
            ErrorKind::RequestTimeout => "request-timeout",
            ErrorKind::PayloadTooLarge => "payload-too-large",
            ErrorKind::TooManyRequests => "too-many-requests",
            ErrorKind::NotImplemented => "not-implemented",
            ErrorKind::UpstreamConnect => "upstream-connect",
            ErrorKind::UpstreamTls => "upstream-tls",
            ErrorKind::UpstreamProtocol => "upstream-protocol",
            ErrorKind::UpstreamTimeout => "upstream-timeout",
            ErrorKind::Internal => "internal",
        }
    }
}

/// The request body delivered no byte for `body_read_timeout` (in a body's error chain).
#[derive(Debug)]
pub struct BodyStalled(pub std::time::Duration);

impl std::fmt::Display for BodyStalled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the request body stopped arriving: no byte for {} (limits.body_read_timeout)",
            humantime::format_duration(self.0)
        )
    }
}

impl std::error::Error for BodyStalled {}

/// A request the proxy answers itself. `detail` is shown to the client: it must never hold a secret.
#[derive(Debug, Clone)]
pub struct ProxyError {
    pub kind: ErrorKind,
    pub detail: String,
}

impl ProxyError {
    pub fn new(kind: ErrorKind, detail: impl Into<String>) -> ProxyError {
        ProxyError {
            kind,
            detail: detail.into(),
        }
    }

    pub fn into_response(self) -> Response<ProxyBody> {
        let scim_type = match self.kind {
            ErrorKind::PayloadTooLarge => Some("tooLarge"),
            _ => None,
        };
        let mut res = scim_error_response(self.kind.status(), scim_type, &self.detail);
        match self.kind {
            ErrorKind::Unauthorized => {
                res.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"scim-proxy\""),
                );
            }
            ErrorKind::TooManyRequests => {
                res.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            // The rest of an oversized or stalled body is not read: the connection cannot be reused.
            ErrorKind::PayloadTooLarge | ErrorKind::RequestTimeout => {
                res.headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            _ => {}
        }
        res
    }
}

/// An RFC 7644 §3.12 Error response.
pub fn scim_error_response(
    status: StatusCode,
    scim_type: Option<&str>,
    detail: &str,
) -> Response<ProxyBody> {
    let mut body = serde_json::json!({
        "schemas": [SCIM_ERROR_URN],
        "status": status.as_u16().to_string(),
        "detail": detail,
    });
    if let (Some(t), Some(obj)) = (scim_type, body.as_object_mut()) {
        obj.insert("scimType".into(), t.into());
    }
    let bytes = Bytes::from(body.to_string());
    let mut res = Response::new(
        Full::new(bytes)
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *res.status_mut() = status;
    res.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(SCIM_JSON));
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

/// Every error in a chain, including those wrapped inside `io::Error`s (whose `source()` skips
/// the wrapped error: hyper-rustls wraps tokio-rustls's `io::Error` around the `rustls::Error`).
pub fn error_chain<'a>(
    e: &'a (dyn std::error::Error + 'static),
) -> Vec<&'a (dyn std::error::Error + 'static)> {
    let mut out = Vec::new();
    let mut next = Some(e);
    while let Some(err) = next.take() {
        if out.len() >= 32 {
            break;
        }
        out.push(err);
        next = match err
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => err.source(),
        };
    }
    out
}

/// The first error of type `T` anywhere in the chain.
pub fn find_in_chain<'a, T: std::error::Error + 'static>(
    e: &'a (dyn std::error::Error + 'static),
) -> Option<&'a T> {
    error_chain(e)
        .into_iter()
        .find_map(|x| x.downcast_ref::<T>())
}
