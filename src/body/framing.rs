//! What a body's headers say about it: JSON or not, content-encoded or not, its length; and
//! the size up to which a body is read whole.

use http::header::{self, HeaderMap, HeaderValue};

/// Bodies up to this size with a known length are rewritten in one piece.
pub const WHOLE_BODY_LIMIT: u64 = 256 * 1024;

/// `application/json`, `application/scim+json` and any other `+json`, parameters ignored.
pub fn is_json(headers: &HeaderMap) -> bool {
    let Some(ct) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Has a Content-Encoding other than identity (then bytes are not text we can rewrite).
pub(crate) fn is_encoded(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::CONTENT_ENCODING)
        .iter()
        .any(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"))
}

pub(crate) fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

pub(crate) fn set_length(headers: &mut HeaderMap, len: usize) {
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::body::test_bodies::headers;

    #[test]
    fn json_detection() {
        for ct in [
            "application/json",
            "application/scim+json; charset=utf-8",
            "Application/SCIM+JSON",
        ] {
            assert!(is_json(&headers(ct, None)), "{ct}");
        }
        for ct in ["text/plain", "application/jsonp", "text/json+html"] {
            assert!(!is_json(&headers(ct, None)), "{ct}");
        }
    }
}
