//! Which bodies are rewritten and how: JSON URL rewriting both ways, v2-token redaction on the way
//! down, and the Content-Length that goes with each.
//!
//! Small bodies with a known length (the usual SCIM resource) are rewritten whole, so the exact
//! Content-Length is sent; larger ones stream through the rewriter and go out chunked, so memory
//! stays bounded for big ListResponses. Redaction replaces the token with as many `*`, so it never
//! changes a length by itself.

use std::sync::Arc;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, StatusCode};
use http_body_util::{BodyExt, Full, LengthLimitError};

use crate::body::{BoxError, ProxyBody};
use crate::body_rewrite::{
    JsonUrlRewriter, Needles, RedactBody, RewriteBody, StreamRedact, Transform,
};
use crate::error::{ErrorKind, ProxyError};
use crate::rewrite::Base;

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
fn is_encoded(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::CONTENT_ENCODING)
        .iter()
        .any(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"))
}

fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

fn set_length(headers: &mut HeaderMap, len: usize) {
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
}

/// A request body on its way up: client-facing URLs (PATCH `$ref`, Bulk `path`) -> upstream base
/// when `urls` is given. Also returns the body as the client sent it when it was small JSON and
/// read whole (for the traffic log's SCIM reading).
pub async fn request_body(
    headers: &mut HeaderMap,
    body: ProxyBody,
    urls: Option<(&Base, &Base)>,
) -> Result<(ProxyBody, Option<Bytes>), ProxyError> {
    if !is_json(headers) || is_encoded(headers) {
        return Ok((body, None));
    }
    match (declared_length(headers), urls) {
        (Some(n), _) if n <= WHOLE_BODY_LIMIT => {
            let bytes = body.collect().await.map_err(request_body_error)?.to_bytes();
            let out = match urls {
                Some((client, upstream)) => {
                    JsonUrlRewriter::new(client, upstream).run_whole(&bytes)
                }
                None => bytes.clone(),
            };
            set_length(headers, out.len());
            Ok((full(out), Some(bytes)))
        }
        (_, Some((client, upstream))) => {
            headers.remove(header::CONTENT_LENGTH);
            Ok((
                RewriteBody::new(body, client, upstream).boxed_unsync(),
                None,
            ))
        }
        (_, None) => Ok((body, None)),
    }
}

fn request_body_error(e: BoxError) -> ProxyError {
    if let Some(stalled) = crate::error::find_in_chain::<crate::error::BodyStalled>(&*e) {
        ProxyError::new(ErrorKind::RequestTimeout, stalled.to_string())
    } else if has_length_limit(&*e) {
        ProxyError::new(
            ErrorKind::PayloadTooLarge,
            "the request body is larger than the proxy's limit",
        )
    } else {
        ProxyError::new(
            ErrorKind::BadRequest,
            format!("the request body could not be read: {e}"),
        )
    }
}

fn has_length_limit(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(e);
    while let Some(s) = source {
        if s.is::<LengthLimitError>() {
            return true;
        }
        source = s.source();
    }
    false
}

/// A response body on its way down: upstream URLs -> the base the client addressed (JSON only,
/// when `urls` is given), and the v2 token masked in every body (`token`: its spellings and mask,
/// see [`Needles::masking`]). Also returns the body as the upstream sent it when it was small JSON
/// and read whole (for the traffic log).
pub async fn response_body(
    method: &Method,
    status: StatusCode,
    headers: &mut HeaderMap,
    body: ProxyBody,
    urls: Option<(&Base, &Base)>,
    token: &Arc<Needles>,
) -> Result<(ProxyBody, Option<Bytes>), ProxyError> {
    // No body to touch, and a HEAD's Content-Length describes the GET's.
    if method == Method::HEAD
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        return Ok((body, None));
    }
    let json = is_json(headers) && !is_encoded(headers);
    match declared_length(headers) {
        Some(n) if json && n <= WHOLE_BODY_LIMIT => {
            let bytes = body
                .collect()
                .await
                .map_err(|e| {
                    ProxyError::new(
                        ErrorKind::UpstreamProtocol,
                        format!("the upstream response body broke off: {e}"),
                    )
                })?
                .to_bytes();
            let rewritten = match urls {
                Some((upstream, client)) => {
                    JsonUrlRewriter::new(upstream, client).run_whole(&bytes)
                }
                None => bytes.clone(),
            };
            let out = StreamRedact::shared(token.clone()).run_whole(&rewritten);
            set_length(headers, out.len());
            // The upstream's own bytes, for the traffic log (which masks the token before use).
            Ok((full(out), Some(bytes)))
        }
        _ if json && urls.is_some() => {
            let Some((upstream, client)) = urls else {
                return Ok((body, None));
            };
            headers.remove(header::CONTENT_LENGTH);
            let rewritten = RewriteBody::new(body, upstream, client);
            Ok((
                RedactBody::shared(rewritten, token.clone()).boxed_unsync(),
                None,
            ))
        }
        _ => {
            // Escaped spellings of a token with `/`, `"` or `\` are longer than the mask.
            if !token.keeps_length() {
                headers.remove(header::CONTENT_LENGTH);
            }
            Ok((RedactBody::shared(body, token.clone()).boxed_unsync(), None))
        }
    }
}

/// `input` with every spelling of the token masked (for what the traffic log keeps).
pub fn redact(input: &[u8], token: &Arc<Needles>) -> Bytes {
    StreamRedact::shared(token.clone()).run_whole(input)
}

fn full(bytes: Bytes) -> ProxyBody {
    Full::new(bytes)
        .map_err(|never| match never {})
        .boxed_unsync()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(ct: &str, len: Option<usize>) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_str(ct).unwrap());
        if let Some(n) = len {
            set_length(&mut h, n);
        }
        h
    }

    fn up() -> Base {
        Base::new("https", "acme.goskope.com", "/api/v2/scim")
    }
    fn client() -> Base {
        Base::new("https", "proxy.example:8443", "/SCIM/v2")
    }

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

    /// `response_body` with the route's token `secret`, read to the end.
    async fn down(method: Method, h: &mut HeaderMap, body: ProxyBody, secret: &[u8]) -> Bytes {
        response_body(
            &method,
            StatusCode::OK,
            h,
            body,
            Some((&up(), &client())),
            &Arc::new(Needles::masking(secret)),
        )
        .await
        .unwrap()
        .0
        .collect()
        .await
        .unwrap()
        .to_bytes()
    }

    #[tokio::test]
    async fn small_response_rewritten_whole_with_exact_length() {
        let body = br#"{"id":"1","meta":{"location":"https://acme.goskope.com/api/v2/scim/Users/1"},"x":"tok-123"}"#;
        let mut h = headers("application/scim+json", Some(body.len()));
        let out = down(
            Method::GET,
            &mut h,
            full(Bytes::from_static(body)),
            b"tok-123",
        )
        .await;
        let want = br#"{"id":"1","meta":{"location":"https://proxy.example:8443/SCIM/v2/Users/1"},"x":"*******"}"#;
        assert_eq!(&out[..], &want[..]);
        assert_eq!(declared_length(&h), Some(want.len() as u64));
    }

    #[tokio::test]
    async fn large_or_unknown_length_streams_chunked() {
        let mut h = headers("application/json", None);
        let body = br#"{"$ref":"https://acme.goskope.com/api/v2/scim/Users/9"}"#;
        let out = down(Method::GET, &mut h, full(Bytes::from_static(body)), b"zzz").await;
        assert_eq!(
            &out[..],
            br#"{"$ref":"https://proxy.example:8443/SCIM/v2/Users/9"}"#
        );
        assert!(h.get(header::CONTENT_LENGTH).is_none());
    }

    #[tokio::test]
    async fn non_json_only_redacted_and_length_kept() {
        let body = b"<html>tok-123</html>";
        let mut h = headers("text/html", Some(body.len()));
        let out = down(
            Method::GET,
            &mut h,
            full(Bytes::from_static(body)),
            b"tok-123",
        )
        .await;
        assert_eq!(&out[..], b"<html>*******</html>");
        assert_eq!(declared_length(&h), Some(body.len() as u64));
    }

    #[tokio::test]
    async fn token_with_escapable_bytes_drops_the_length_of_a_redacted_body() {
        // `a/b` is also spelt `a\/b` in JSON: the mask is shorter than that spelling.
        let body = br#"<p>a\/b</p>"#;
        let mut h = headers("text/html", Some(body.len()));
        let out = down(Method::GET, &mut h, full(Bytes::from_static(body)), b"a/b").await;
        assert_eq!(&out[..], b"<p>***</p>");
        assert!(h.get(header::CONTENT_LENGTH).is_none());
    }

    #[tokio::test]
    async fn head_and_204_untouched() {
        let mut h = headers("application/json", Some(500));
        let out = down(Method::HEAD, &mut h, crate::body::empty(), b"t").await;
        assert!(out.is_empty());
        assert_eq!(declared_length(&h), Some(500));
    }

    #[tokio::test]
    async fn request_urls_go_to_the_upstream_base() {
        let body = br#"{"Operations":[{"op":"add","path":"members","value":[{"$ref":"https://proxy.example:8443/SCIM/v2/Users/7","value":"7"}]}]}"#;
        let mut h = headers("application/scim+json", Some(body.len()));
        let out = request_body(
            &mut h,
            full(Bytes::from_static(body)),
            Some((&client(), &up())),
        )
        .await
        .unwrap()
        .0
        .collect()
        .await
        .unwrap()
        .to_bytes();
        let want = br#"{"Operations":[{"op":"add","path":"members","value":[{"$ref":"https://acme.goskope.com/api/v2/scim/Users/7","value":"7"}]}]}"#;
        assert_eq!(&out[..], &want[..]);
        assert_eq!(declared_length(&h), Some(want.len() as u64));
    }
}
