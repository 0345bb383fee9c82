//! The one place an error becomes a SCIM Error response (RFC 7644 §3.12).

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};

use super::{ErrorKind, ProxyError};
use crate::body::ProxyBody;

pub const SCIM_ERROR_URN: &str = "urn:ietf:params:scim:api:messages:2.0:Error";
pub const SCIM_JSON: &str = "application/scim+json";

impl ProxyError {
    /// The answer the client gets: the kind's status and `detail`, with the headers the kind needs.
    pub fn into_response(self) -> Response<ProxyBody> {
        let scim_type = match self.kind {
            ErrorKind::PayloadTooLarge => Some("tooLarge"),
            _ => None,
        };
        let mut res = scim_error_response(self.kind.status(), scim_type, &self.detail);
        if let Some((name, value)) = extra_header(self.kind) {
            res.headers_mut().insert(name, value);
        }
        if let Some(secs) = self
            .retry_after
            .filter(|_| self.kind == ErrorKind::TooManyRequests)
        {
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        res
    }
}

/// The header a kind of error adds to its response, if any.
fn extra_header(kind: ErrorKind) -> Option<(header::HeaderName, HeaderValue)> {
    match kind {
        ErrorKind::Unauthorized => Some((
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"scim-proxy\""),
        )),
        ErrorKind::TooManyRequests => Some((header::RETRY_AFTER, HeaderValue::from_static("1"))),
        // The rest of an oversized or stalled body is not read: the connection cannot be reused.
        ErrorKind::PayloadTooLarge | ErrorKind::RequestTimeout => {
            Some((header::CONNECTION, HeaderValue::from_static("close")))
        }
        _ => None,
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
