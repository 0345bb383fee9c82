//! One error type for the request path: what kind of fault (and so its status and which side it
//! came from), the detail the client reads, and the cause it came from.

mod chain;
mod kind;
mod response;

use std::time::Duration;

pub(crate) use chain::innermost;
pub use chain::{error_chain, find_in_chain};
pub use kind::{ErrorKind, Origin};
pub use response::{SCIM_ERROR_URN, SCIM_JSON, scim_error_response};

use crate::body::BoxError;

/// The request body delivered no byte for `body_read_timeout` (in a body's error chain).
#[derive(Debug)]
pub struct BodyStalled(pub Duration);

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
/// `source`, when kept, is what failed (for logs and `error_chain`); it is never shown.
#[derive(Debug)]
pub struct ProxyError {
    pub kind: ErrorKind,
    pub detail: String,
    source: Option<BoxError>,
    /// Seconds for `Retry-After` on a 429 (None: 1).
    retry_after: Option<u64>,
}

impl ProxyError {
    pub fn new(kind: ErrorKind, detail: impl Into<String>) -> ProxyError {
        ProxyError {
            kind,
            detail: detail.into(),
            source: None,
            retry_after: None,
        }
    }

    /// A 429 that tells the client how many seconds to wait.
    pub fn with_retry_after(mut self, secs: u64) -> ProxyError {
        self.retry_after = Some(secs);
        self
    }

    /// Keeps `cause` as the error this one came from.
    pub fn with_source(mut self, cause: impl Into<BoxError>) -> ProxyError {
        self.source = Some(cause.into());
        self
    }

    /// Which side the fault came from, as its kind says.
    pub fn origin(&self) -> Origin {
        self.kind.origin()
    }

    /// 413: the request body is over `max_body` (`None` where the limit is not at hand).
    pub fn payload_too_large(max: Option<u64>) -> ProxyError {
        let detail = match max {
            Some(max) => {
                format!("the request body is larger than the proxy's limit of {max} bytes")
            }
            None => "the request body is larger than the proxy's limit".to_string(),
        };
        ProxyError::new(ErrorKind::PayloadTooLarge, detail)
    }

    /// 408: the request body stopped arriving for `after` (`limits.body_read_timeout`).
    pub fn body_stalled(after: Duration) -> ProxyError {
        let stalled = BodyStalled(after);
        ProxyError::new(ErrorKind::RequestTimeout, stalled.to_string()).with_source(stalled)
    }

    /// 400: the request body broke on the way in, its cause no longer at hand.
    pub fn unreadable_body() -> ProxyError {
        ProxyError::new(
            ErrorKind::BadRequest,
            "the request body could not be read (malformed chunked encoding, or the connection broke)",
        )
    }

    /// 504: no response head within `upstream_timeout`.
    pub fn upstream_timeout(after: Duration) -> ProxyError {
        ProxyError::new(
            ErrorKind::UpstreamTimeout,
            format!(
                "the upstream did not answer within {}",
                humantime::format_duration(after)
            ),
        )
    }

    /// What reading the request body failed with: 408 when it stalled, 413 when it is over the
    /// limit, else 400 naming the cause.
    pub fn from_request_body(e: BoxError) -> ProxyError {
        let error = if let Some(stalled) = find_in_chain::<BodyStalled>(&*e) {
            ProxyError::new(ErrorKind::RequestTimeout, stalled.to_string())
        } else if find_in_chain::<http_body_util::LengthLimitError>(&*e).is_some() {
            ProxyError::payload_too_large(None)
        } else {
            ProxyError::new(
                ErrorKind::BadRequest,
                format!("the request body could not be read: {e}"),
            )
        };
        error.with_source(e)
    }
}

impl std::fmt::Display for ProxyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.detail)
    }
}

impl std::error::Error for ProxyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn body_errors_keep_todays_words_and_their_cause() {
        use http_body_util::BodyExt;
        let body = http_body_util::Full::new(bytes::Bytes::from_static(b"too long"));
        let Err(limited) = http_body_util::Limited::new(body, 2).collect().await else {
            panic!("a body over its limit");
        };
        let e = ProxyError::from_request_body(limited);
        assert_eq!(e.kind, ErrorKind::PayloadTooLarge);
        assert_eq!(
            e.detail,
            "the request body is larger than the proxy's limit"
        );
        assert!(std::error::Error::source(&e).is_some());
        assert_eq!(
            ProxyError::payload_too_large(Some(10)).detail,
            "the request body is larger than the proxy's limit of 10 bytes"
        );
        let stalled: BoxError = Box::new(BodyStalled(Duration::from_secs(3)));
        let e = ProxyError::from_request_body(stalled);
        assert_eq!(e.kind, ErrorKind::RequestTimeout);
        assert_eq!(
            e.detail,
            ProxyError::body_stalled(Duration::from_secs(3)).detail
        );
        let broken: BoxError = "bad chunk".into();
        let e = ProxyError::from_request_body(broken);
        assert_eq!(e.kind, ErrorKind::BadRequest);
        assert_eq!(e.detail, "the request body could not be read: bad chunk");
        assert_eq!(e.origin(), Origin::Downstream);
        let late = ProxyError::upstream_timeout(Duration::from_secs(30));
        assert_eq!(late.detail, "the upstream did not answer within 30s");
        assert_eq!(late.origin(), Origin::Upstream);
        assert_eq!(
            find_in_chain::<ProxyError>(&e).map(|p| p.kind),
            Some(ErrorKind::BadRequest)
        );
    }
}
