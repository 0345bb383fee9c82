//! A response body on its way down: upstream URLs rewritten to the base the client addressed,
//! the v2 token masked in every body, and the JSON the upstream sent kept for the traffic log.
//!
//! Small bodies with a known length (the usual SCIM resource) are rewritten whole, so the exact
//! Content-Length is sent; larger ones stream through the rewriter and go out chunked, so memory
//! stays bounded for big ListResponses. Redaction replaces the token with as many `*`, so it never
//! changes a length by itself.

use std::sync::Arc;

use bytes::Bytes;
use http::header::{self, HeaderMap};
use http::{Method, StatusCode};
use http_body_util::BodyExt;

use crate::body::decode::decode_content;
use crate::body::framing::{WHOLE_BODY_LIMIT, declared_length, is_encoded, is_json, set_length};
use crate::body::json_redact::{JsonBodyRedact, masks_anything};
use crate::body::json_urls::JsonUrlRewriter;
use crate::body::redact::Needles;
use crate::body::tee::{UpstreamCopy, tee};
use crate::body::transform::{JsonRedactBody, RedactBody, RewriteBody, Transform};
use crate::body::{ProxyBody, full};
use crate::error::{ErrorKind, ProxyError};
use crate::scim::base::Base;

/// A response body on its way down: upstream URLs -> the base the client addressed (JSON only,
/// when `urls` is given), and the v2 token masked in every body (`token`: its spellings and mask,
/// see [`Needles::masking`]). Also returns the JSON body as the upstream sent it, for the traffic
/// log: read whole when small with a known length, else (with `keep_copy`) teed off the stream,
/// whatever the upstream's framing.
pub async fn response_body(
    method: &Method,
    status: StatusCode,
    headers: &mut HeaderMap,
    body: ProxyBody,
    urls: Option<(&Base, &Base)>,
    token: &Arc<Needles>,
    keep_copy: bool,
) -> Result<(ProxyBody, Option<UpstreamCopy>), ProxyError> {
    // No body to touch, and a HEAD's Content-Length describes the GET's.
    if method == Method::HEAD
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        return Ok((body, None));
    }
    let body = decode_content(headers, body).await?;
    let json = is_json(headers) && !is_encoded(headers);
    match (declared_length(headers), urls) {
        (Some(n), _) if json && n <= WHOLE_BODY_LIMIT => {
            rewrite_whole(headers, body, urls, token).await
        }
        (_, Some((upstream, client))) if json => {
            headers.remove(header::CONTENT_LENGTH);
            let (body, copy) = tee(body, keep_copy);
            let rewritten = RewriteBody::new(body, upstream, client);
            let masked = JsonRedactBody::json_strings(rewritten, token.clone());
            Ok((masked.boxed_unsync(), copy))
        }
        _ => Ok(mask_streamed(headers, body, json, token, keep_copy)),
    }
}

/// A small JSON answer of known length, read, rewritten and masked in one piece, with the exact
/// Content-Length; the upstream's own bytes go to the traffic log (which masks the token itself).
async fn rewrite_whole(
    headers: &mut HeaderMap,
    body: ProxyBody,
    urls: Option<(&Base, &Base)>,
    token: &Arc<Needles>,
) -> Result<(ProxyBody, Option<UpstreamCopy>), ProxyError> {
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
        Some((upstream, client)) => JsonUrlRewriter::new(upstream, client).run_whole(&bytes),
        None => bytes.clone(),
    };
    let out = redact(&rewritten, token);
    set_length(headers, out.len());
    Ok((full(out), Some(UpstreamCopy::Whole(bytes))))
}

/// A body streamed down with only the token masked (not JSON, or no URLs to rewrite).
fn mask_streamed(
    headers: &mut HeaderMap,
    body: ProxyBody,
    json: bool,
    token: &Arc<Needles>,
    keep_copy: bool,
) -> (ProxyBody, Option<UpstreamCopy>) {
    // Escaped spellings of a token with `/`, `"` or `\` are longer than the mask.
    // A JSON string holding the token is written back re-escaped.
    if json || !token.keeps_length() {
        headers.remove(header::CONTENT_LENGTH);
    }
    let (body, copy) = tee(body, keep_copy && json);
    if json {
        let masked = JsonRedactBody::json_strings(body, token.clone());
        return (masked.boxed_unsync(), copy);
    }
    (RedactBody::shared(body, token.clone()).boxed_unsync(), copy)
}

/// `input` with every spelling of the token masked, JSON escapes decoded (for whole bodies and
/// what the traffic log keeps). A body with nothing to mask, the usual one, is given back as it is.
pub fn redact(input: &Bytes, token: &Arc<Needles>) -> Bytes {
    if !masks_anything(input, token) {
        return input.clone();
    }
    JsonBodyRedact::shared(token.clone()).run_whole(input)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::body::test_bodies::{chunked, client, headers, up};

    /// `response_body` with the route's token `secret`, read to the end.
    async fn down(method: Method, h: &mut HeaderMap, body: ProxyBody, secret: &[u8]) -> Bytes {
        response_body(
            &method,
            StatusCode::OK,
            h,
            body,
            Some((&up(), &client())),
            &Arc::new(Needles::masking(secret)),
            false,
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

    /// `response_body` keeping a copy for the traffic log: the body read to the end, then the copy.
    async fn down_with_copy(h: &mut HeaderMap, body: ProxyBody) -> (Bytes, Option<Bytes>) {
        let (body, copy) = response_body(
            &Method::GET,
            StatusCode::OK,
            h,
            body,
            Some((&up(), &client())),
            &Arc::new(Needles::masking(b"tok-123")),
            true,
        )
        .await
        .unwrap();
        let out = body.collect().await.unwrap().to_bytes();
        (out, copy.and_then(|c| c.bytes()))
    }

    #[tokio::test]
    async fn streamed_json_is_teed_for_the_log_as_the_upstream_sent_it() {
        let body = r#"{"id":"1","userName":"pat@example.com","meta":{"location":"https://acme.goskope.com/api/v2/scim/Users/1"}}"#;
        let (a, b) = body.split_at(30);
        let mut h = headers("application/scim+json", None);
        let (out, copy) = down_with_copy(
            &mut h,
            chunked(vec![Bytes::from(a.to_owned()), Bytes::from(b.to_owned())]),
        )
        .await;
        assert_eq!(
            out,
            body.replace(
                "https://acme.goskope.com/api/v2/scim",
                "https://proxy.example:8443/SCIM/v2"
            )
        );
        assert_eq!(copy.as_deref(), Some(body.as_bytes()));
    }

    #[tokio::test]
    async fn head_and_204_untouched() {
        let mut h = headers("application/json", Some(500));
        let out = down(Method::HEAD, &mut h, crate::body::empty(), b"t").await;
        assert!(out.is_empty());
        assert_eq!(declared_length(&h), Some(500));
    }
}
