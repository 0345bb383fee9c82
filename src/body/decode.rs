//! Undoing a Content-Encoding the upstream used although the proxy asked for `identity`
//! (gzip, deflate, br), within [`DECODED_LIMIT`] so a compression bomb is refused.

use bytes::Bytes;
use http::header::{self, HeaderMap};
use http_body_util::BodyExt;

use crate::body::framing::{is_encoded, set_length};
use crate::body::{ProxyBody, full};
use crate::error::{ErrorKind, ProxyError};

/// Most bytes an upstream's compressed answer may read or decode to.
pub const DECODED_LIMIT: usize = 64 << 20;

/// An answer compressed although the proxy asked for `identity`: read and decoded (gzip, deflate,
/// br), so that redaction and rewriting see its bytes, and its Content-Encoding removed. An
/// encoding the proxy cannot decode, a broken stream or one over [`DECODED_LIMIT`] is a 502:
/// never passed down unread.
pub(crate) async fn decode_content(
    headers: &mut HeaderMap,
    body: ProxyBody,
) -> Result<ProxyBody, ProxyError> {
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
