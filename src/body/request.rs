//! A request body on its way up: client-facing URLs rewritten to the upstream base.

use bytes::Bytes;
use http::header::{self, HeaderMap};
use http_body_util::BodyExt;

use crate::body::framing::{WHOLE_BODY_LIMIT, declared_length, is_encoded, is_json, set_length};
use crate::body::json_urls::JsonUrlRewriter;
use crate::body::transform::{RewriteBody, Transform};
use crate::body::{ProxyBody, full};
use crate::error::ProxyError;
use crate::scim::base::Base;

/// A request body on its way up: client-facing URLs (PATCH `$ref`, Bulk `path`) -> upstream base
/// when `urls` is given. Also returns the body as the client sent it when it was small JSON and
/// read whole (for the traffic log's SCIM reading).
pub async fn request_body(
    headers: &mut HeaderMap,
    body: ProxyBody,
    urls: Option<(&Base, &Base)>,
) -> Result<RequestBody, ProxyError> {
    let streamed = |body| RequestBody {
        body,
        json: None,
        sent_whole: None,
    };
    if !is_json(headers) || is_encoded(headers) {
        return Ok(streamed(body));
    }
    match (declared_length(headers), urls) {
        (Some(n), _) if n <= WHOLE_BODY_LIMIT => {
            let bytes = body
                .collect()
                .await
                .map_err(ProxyError::from_request_body)?
                .to_bytes();
            let out = match urls {
                Some((client, upstream)) => {
                    JsonUrlRewriter::new(client, upstream).run_whole(&bytes)
                }
                None => bytes.clone(),
            };
            set_length(headers, out.len());
            Ok(RequestBody {
                body: full(out.clone()),
                json: Some(bytes),
                sent_whole: Some(out),
            })
        }
        (_, Some((client, upstream))) => {
            headers.remove(header::CONTENT_LENGTH);
            Ok(streamed(
                RewriteBody::new(body, client, upstream).boxed_unsync(),
            ))
        }
        (_, None) => Ok(streamed(body)),
    }
}

/// The body going up, and what the proxy holds of it.
pub struct RequestBody {
    pub body: ProxyBody,
    /// The body as the client sent it, when it was small JSON read whole.
    pub json: Option<Bytes>,
    /// The bytes going up, when the proxy holds them whole (then they can be sent again exactly).
    pub sent_whole: Option<Bytes>,
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
        .body
        .collect()
        .await
        .unwrap()
        .to_bytes();
        let want = br#"{"Operations":[{"op":"add","path":"members","value":[{"$ref":"https://acme.goskope.com/api/v2/scim/Users/7","value":"7"}]}]}"#;
        assert_eq!(&out[..], &want[..]);
        assert_eq!(declared_length(&h), Some(want.len() as u64));
    }
}
