//! Which bodies are rewritten and how: JSON URL rewriting both ways, v2-token redaction on the way
//! down, and the Content-Length that goes with each.
//!
//! Small bodies with a known length (the usual SCIM resource) are rewritten whole, so the exact
//! Content-Length is sent; larger ones stream through the rewriter and go out chunked, so memory
//! stays bounded for big ListResponses. Redaction replaces the token with as many `*`, so it never
//! changes a length by itself.

use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, Full, LengthLimitError};

use crate::body::rewrite::{
    JsonRedactBody, JsonStringRedact, JsonUrlRewriter, Needles, RedactBody, RewriteBody,
    StreamRedact, Transform,
};
use crate::body::{BoxError, ProxyBody};
use crate::error::{ErrorKind, ProxyError};
use crate::scim::base::Base;

/// Bodies up to this size with a known length are rewritten in one piece.
pub const WHOLE_BODY_LIMIT: u64 = 256 * 1024;

/// How much of a streamed JSON answer is kept for the traffic log; a longer one is not read.
pub const TEE_LIMIT: usize = 64 * 1024;

/// The upstream's own bytes of a JSON answer, for the traffic log: read whole, or teed off a
/// streamed body as it goes down (known once that body has ended).
#[derive(Clone, Debug)]
pub enum UpstreamCopy {
    Whole(Bytes),
    Teed(TeeCopy),
}

impl UpstreamCopy {
    /// The whole answer, if it was read whole or streamed to its end within [`TEE_LIMIT`].
    pub fn bytes(&self) -> Option<Bytes> {
        match self {
            UpstreamCopy::Whole(b) => Some(b.clone()),
            UpstreamCopy::Teed(t) => t.bytes(),
        }
    }
}

/// What a [`Tee`] has kept so far.
#[derive(Clone, Debug, Default)]
pub struct TeeCopy(Arc<Mutex<Kept>>);

#[derive(Debug, Default)]
struct Kept {
    bytes: Vec<u8>,
    /// More than [`TEE_LIMIT`] came: what was kept is dropped and nothing more is.
    overflowed: bool,
    ended: bool,
}

impl TeeCopy {
    fn bytes(&self) -> Option<Bytes> {
        let kept = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        (kept.ended && !kept.overflowed).then(|| Bytes::copy_from_slice(&kept.bytes))
    }

    fn keep(&self, data: &[u8]) {
        let mut kept = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if kept.overflowed {
            return;
        }
        if kept.bytes.len() + data.len() > TEE_LIMIT {
            kept.overflowed = true;
            kept.bytes = Vec::new();
        } else {
            kept.bytes.extend_from_slice(data);
        }
    }

    fn end(&self) {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).ended = true;
    }
}

/// Passes a body on unchanged, keeping its first [`TEE_LIMIT`] bytes in a [`TeeCopy`].
struct Tee {
    inner: ProxyBody,
    copy: TeeCopy,
}

impl Body for Tee {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.copy.keep(data);
                }
                // The last frame may be the last poll: hyper stops at `is_end_stream`.
                if self.inner.is_end_stream() {
                    self.copy.end();
                }
            }
            Poll::Ready(None) => self.copy.end(),
            Poll::Ready(Some(Err(_))) | Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// `body` teed into a fresh copy when `keep` (the traffic log wants it), else as it is.
fn tee(body: ProxyBody, keep: bool) -> (ProxyBody, Option<UpstreamCopy>) {
    if !keep {
        return (body, None);
    }
    let copy = TeeCopy::default();
    let teed = Tee {
        inner: body,
        copy: copy.clone(),
    };
    (teed.boxed_unsync(), Some(UpstreamCopy::Teed(copy)))
}

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
            let out = redact(&rewritten, token);
            set_length(headers, out.len());
            // The upstream's own bytes, for the traffic log (which masks the token before use).
            Ok((full(out), Some(UpstreamCopy::Whole(bytes))))
        }
        _ if json && urls.is_some() => {
            let Some((upstream, client)) = urls else {
                return Ok((body, None));
            };
            headers.remove(header::CONTENT_LENGTH);
            let (body, copy) = tee(body, keep_copy);
            let rewritten = RewriteBody::new(body, upstream, client);
            let rewritten = JsonRedactBody::json_strings(rewritten, token.clone());
            Ok((
                RedactBody::shared(rewritten, token.clone()).boxed_unsync(),
                copy,
            ))
        }
        _ => {
            // Escaped spellings of a token with `/`, `"` or `\` are longer than the mask.
            // A JSON string holding the token is written back re-escaped.
            if json || !token.keeps_length() {
                headers.remove(header::CONTENT_LENGTH);
            }
            let (body, copy) = tee(body, keep_copy && json);
            if json {
                let body = JsonRedactBody::json_strings(body, token.clone());
                return Ok((RedactBody::shared(body, token.clone()).boxed_unsync(), copy));
            }
            Ok((RedactBody::shared(body, token.clone()).boxed_unsync(), copy))
        }
    }
}

/// Most bytes an upstream's compressed answer may read or decode to.
pub const DECODED_LIMIT: usize = 64 << 20;

/// An answer compressed although the proxy asked for `identity`: read and decoded (gzip, deflate,
/// br), so that redaction and rewriting see its bytes, and its Content-Encoding removed. An
/// encoding the proxy cannot decode, a broken stream or one over [`DECODED_LIMIT`] is a 502:
/// never passed down unread.
async fn decode_content(headers: &mut HeaderMap, body: ProxyBody) -> Result<ProxyBody, ProxyError> {
    if !is_encoded(headers) {
        return Ok(body);
    }
    let mut codings = Vec::new();
    for v in headers.get_all(header::CONTENT_ENCODING) {
        let v = v.to_str().unwrap_or("\u{0}");
        codings.extend(
            v.split(',')
                .map(|c| c.trim().to_ascii_lowercase())
                .filter(|c| !c.is_empty() && c != "identity"),
        );
    }
    fn refused(why: String) -> ProxyError {
        ProxyError::new(ErrorKind::UpstreamProtocol, why)
    }
    if let Some(unknown) = codings
        .iter()
        .find(|c| !matches!(c.as_str(), "gzip" | "x-gzip" | "deflate" | "br"))
    {
        let shown: String = unknown
            .chars()
            .filter(char::is_ascii_graphic)
            .take(32)
            .collect();
        return Err(refused(format!(
            "the upstream answered with Content-Encoding {shown:?}, which the proxy cannot decode"
        )));
    }
    let mut body = body;
    let mut read = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame =
            frame.map_err(|e| refused(format!("the upstream response body broke off: {e}")))?;
        if let Ok(data) = frame.into_data() {
            if read.len() + data.len() > DECODED_LIMIT {
                return Err(refused(
                    "the upstream's compressed answer is larger than the proxy's limit".into(),
                ));
            }
            read.extend_from_slice(&data);
        }
    }
    let mut bytes = read.freeze();
    // Codings are listed in the order applied: undone last first.
    for coding in codings.iter().rev() {
        bytes = decompress(coding, &bytes).map_err(refused)?;
    }
    headers.remove(header::CONTENT_ENCODING);
    set_length(headers, bytes.len());
    Ok(full(bytes))
}

fn decompress(coding: &str, input: &[u8]) -> Result<Bytes, String> {
    use std::io::Read;
    let reader: Box<dyn Read + '_> = match coding {
        "gzip" | "x-gzip" => Box::new(flate2::read::MultiGzDecoder::new(input)),
        // RFC 9110 `deflate` is zlib-wrapped.
        "deflate" => Box::new(flate2::read::ZlibDecoder::new(input)),
        _ => Box::new(brotli::Decompressor::new(input, 4096)),
    };
    let mut out = Vec::new();
    // One byte past the limit tells a bomb from an answer of exactly the limit.
    reader
        .take(DECODED_LIMIT as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| format!("the upstream's {coding} answer could not be decoded: {e}"))?;
    if out.len() > DECODED_LIMIT {
        return Err(format!(
            "the upstream's {coding} answer decodes to more than the proxy's limit"
        ));
    }
    Ok(Bytes::from(out))
}

/// `input` with every spelling of the token masked, JSON escapes decoded (for whole bodies and
/// what the traffic log keeps).
pub fn redact(input: &[u8], token: &Arc<Needles>) -> Bytes {
    let strings = JsonStringRedact::shared(token.clone()).run_whole(input);
    StreamRedact::shared(token.clone()).run_whole(&strings)
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

    /// A body of unknown length arriving in frames, as a chunked upstream answer does.
    struct Chunks(std::collections::VecDeque<Bytes>);

    impl Body for Chunks {
        type Data = Bytes;
        type Error = BoxError;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
            Poll::Ready(self.0.pop_front().map(|c| Ok(Frame::data(c))))
        }
    }

    fn chunked(chunks: Vec<Bytes>) -> ProxyBody {
        Chunks(chunks.into()).boxed_unsync()
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
    async fn a_streamed_answer_over_the_tee_limit_streams_on_whole_and_is_not_kept() {
        // A 1 MB list in 4 KiB chunks: all of it reaches the client, the copy never grows past the limit.
        let chunk = Bytes::from(vec![b' '; 4096]);
        let chunks: Vec<Bytes> = std::iter::once(Bytes::from_static(b"{\"Resources\":[]"))
            .chain(std::iter::repeat_n(chunk, 256))
            .chain(std::iter::once(Bytes::from_static(b"}")))
            .collect();
        let sent: usize = chunks.iter().map(Bytes::len).sum();
        let copy = TeeCopy::default();
        let mut teed = Tee {
            inner: chunked(chunks),
            copy: copy.clone(),
        };
        let mut passed = 0;
        while let Some(frame) = teed.frame().await {
            passed += frame.unwrap().into_data().map_or(0, |d| d.len());
            assert!(copy.0.lock().unwrap().bytes.len() <= TEE_LIMIT);
        }
        assert_eq!(passed, sent);
        assert!(sent > 1_000_000);
        assert_eq!(copy.bytes(), None);
    }

    #[tokio::test]
    async fn a_streamed_answer_that_broke_off_is_not_kept() {
        let copy = TeeCopy::default();
        let mut teed = Tee {
            inner: chunked(vec![Bytes::from_static(b"{\"id\":")]),
            copy: copy.clone(),
        };
        // The first frame only: the body never ends (the client went away).
        assert!(teed.frame().await.is_some());
        assert_eq!(copy.bytes(), None);
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
