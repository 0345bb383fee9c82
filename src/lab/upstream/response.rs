//! Building answers: status, SCIM JSON body with its length, and extra headers.

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderName, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::Full;
use serde_json::Value;

use super::SCIM_JSON;

pub(super) type Resp = Response<Full<Bytes>>;

pub(super) fn body_forbidden(status: StatusCode) -> bool {
    status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
}

pub(super) fn response(status: StatusCode, content_type: &'static str, body: Bytes) -> Resp {
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

pub(super) fn json_response(status: StatusCode, v: &Value) -> Resp {
    // Serialising a `Value` cannot fail; an empty body would be the fallback.
    let body = serde_json::to_vec(v).map(Bytes::from).unwrap_or_default();
    response(status, SCIM_JSON, body)
}

pub(super) fn with_header(mut resp: Resp, name: HeaderName, value: &str) -> Resp {
    if let Ok(v) = HeaderValue::from_str(value) {
        resp.headers_mut().insert(name, v);
    }
    resp
}
