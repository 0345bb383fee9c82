//! A request body on its way up: client-facing URLs rewritten to the upstream base.

use bytes::Bytes;
use http::header::{self, HeaderMap};
use http_body_util::{BodyExt, LengthLimitError};

use crate::body::framing::{WHOLE_BODY_LIMIT, declared_length, is_encoded, is_json, set_length};
use crate::body::json_urls::JsonUrlRewriter;
use crate::body::transform::{RewriteBody, Transform};
use crate::body::{BoxError, ProxyBody, full};
use crate::error::{ErrorKind, ProxyError};
use crate::scim::base::Base;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::body::test_bodies::{client, headers, up};

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
