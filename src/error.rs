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
    /// 401 with `WWW-Authenticate: Bearer`.
    Unauthorized,
    /// 403: the client address is not in `allow_cidrs` (known only from X-Forwarded-For).
    Forbidden,
    /// 413: the request body is over `max_body`.
    PayloadTooLarge,
    /// 429 with `Retry-After`: this IdP has `max_requests_per_client` requests in flight.
    TooManyRequests,
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
            ErrorKind::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorKind::Forbidden => StatusCode::FORBIDDEN,
            ErrorKind::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorKind::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
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
            | ErrorKind::Unauthorized
            | ErrorKind::Forbidden
            | ErrorKind::PayloadTooLarge
            | ErrorKind::TooManyRequests => Origin::Downstream,
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
            ErrorKind::Unauthorized => "unauthorized",
            ErrorKind::Forbidden => "forbidden",
            ErrorKind::PayloadTooLarge => "payload-too-large",
            ErrorKind::TooManyRequests => "too-many-requests",
            ErrorKind::UpstreamConnect => "upstream-connect",
            ErrorKind::UpstreamTls => "upstream-tls",
            ErrorKind::UpstreamProtocol => "upstream-protocol",
            ErrorKind::UpstreamTimeout => "upstream-timeout",
            ErrorKind::Internal => "internal",
        }
    }
}

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
            // The rest of an oversized body is not read: the connection cannot be reused.
            ErrorKind::PayloadTooLarge => {
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

/// Classifies a hyper-util client error by walking its source chain.
pub fn classify_upstream_error(err: &hyper_util::client::legacy::Error) -> ProxyError {
    let mut tls: Option<String> = None;
    let mut io: Option<String> = None;
    let mut tunnel: Option<String> = None;
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(err);
    while let Some(e) = source {
        if let Some(t) = e.downcast_ref::<crate::upstream::ForwardProxyError>() {
            tunnel.get_or_insert_with(|| t.to_string());
        }
        if let Some(t) = e.downcast_ref::<rustls::Error>() {
            tls.get_or_insert_with(|| t.to_string());
        }
        if let Some(ioe) = e.downcast_ref::<std::io::Error>() {
            if let Some(t) = ioe
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
            {
                tls.get_or_insert_with(|| t.to_string());
            }
            io.get_or_insert_with(|| ioe.to_string());
        }
        source = e.source();
    }
    if let Some(t) = tunnel {
        return ProxyError::new(ErrorKind::UpstreamConnect, t);
    }
    if let Some(t) = tls {
        return ProxyError::new(ErrorKind::UpstreamTls, format!("upstream TLS failed: {t}"));
    }
    if err.is_connect() {
        let why = io.unwrap_or_else(|| innermost(err));
        return ProxyError::new(
            ErrorKind::UpstreamConnect,
            format!("could not connect to the upstream: {why}"),
        );
    }
    ProxyError::new(
        ErrorKind::UpstreamProtocol,
        format!("the upstream connection failed: {}", innermost(err)),
    )
}

fn innermost(err: &(dyn std::error::Error + 'static)) -> String {
    let mut e = err;
    while let Some(next) = e.source() {
        e = next;
    }
    e.to_string()
}
