//! What kind of fault a request met: its status, which side it came from, and its log name.

use http::StatusCode;

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
