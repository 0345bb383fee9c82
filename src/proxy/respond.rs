//! The upstream's answer as the IdP gets it: HTTP/1.1 head without hop-by-hop headers, Location
//! under the client's base, no echo of the v2 token; the body through the response filter
//! (URL rewriting, token redaction, a copy for the traffic log).

use http::header::{self, HeaderName, HeaderValue};
use http::{HeaderMap, Method, Response, Version};

use crate::body::ProxyBody;
use crate::body::filter::{self, UpstreamCopy};
use crate::error::ProxyError;
use crate::proxy::LOG_TARGET;
use crate::proxy::headers;
use crate::proxy::routing::Destination;
use crate::scim::base::{self, Base};
use crate::state::RouteRuntime;

/// The response, and the copy of its JSON kept for the traffic log when `keep_copy`.
pub(crate) async fn respond(
    res: Response<ProxyBody>,
    method: &Method,
    dest: &Destination<'_>,
    keep_copy: bool,
) -> Result<(Response<ProxyBody>, Option<UpstreamCopy>), ProxyError> {
    let (mut parts, body) = res.into_parts();
    response_head(&mut parts, dest.runtime, dest.client_base.as_ref());
    let (body, copy) = filter::response_body(
        method,
        parts.status,
        &mut parts.headers,
        body,
        dest.response_urls(),
        &dest.runtime.token_redaction,
        keep_copy,
    )
    .await?;
    Ok((Response::from_parts(parts, body), copy))
}

/// The response head as it goes down.
pub(crate) fn response_head(
    parts: &mut http::response::Parts,
    runtime: &RouteRuntime,
    client_base: Option<&Base>,
) {
    parts.version = Version::HTTP_11;
    headers::strip_hop_by_hop(&mut parts.headers);
    if let Some(client_base) = client_base {
        rewrite_location_headers(&mut parts.headers, &runtime.base, client_base);
    }
    redact_token_echo(&mut parts.headers, runtime.token.expose_for_redaction());
}

fn rewrite_location_headers(headers: &mut HeaderMap, upstream: &Base, client: &Base) {
    for name in [header::LOCATION, header::CONTENT_LOCATION] {
        if let Some(v) = headers.get(&name).and_then(|v| v.to_str().ok())
            && let Some(new) = base::rewrite_location(v, upstream, client)
            && let Ok(new) = HeaderValue::from_str(&new)
        {
            headers.insert(name, new);
        }
    }
}

/// An upstream that echoes the v2 token in a header must not hand it to the IdP.
fn redact_token_echo(headers: &mut HeaderMap, token: &str) {
    let token = token.as_bytes();
    let leaks: Vec<HeaderName> = headers
        .iter()
        .filter(|(_, v)| v.as_bytes().windows(token.len()).any(|w| w == token))
        .map(|(k, _)| k.clone())
        .collect();
    for name in leaks {
        tracing::warn!(target: LOG_TARGET, header = %name, "the upstream echoed the v2 token in a response header; removed it");
        headers.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::testing::{HOST, V2_TOKEN, fixture};
    use http_body_util::BodyExt;

    fn upstream_answer() -> Response<ProxyBody> {
        Response::builder()
            .status(201)
            .version(Version::HTTP_2)
            .header(header::LOCATION, "https://acme.goskope.com/api/v2/scim/Users/7")
            .header("x-debug", format!("seen Bearer {V2_TOKEN}"))
            .header(header::CONNECTION, "x-hop")
            .header("x-hop", "1")
            .header("keep-alive", "timeout=5")
            .header(header::CONTENT_TYPE, "application/scim+json")
            .body(crate::body::full(format!(
                r#"{{"id":"7","meta":{{"location":"https://acme.goskope.com/api/v2/scim/Users/7"}},"note":"{V2_TOKEN}"}}"#
            )))
            .expect("response")
    }

    #[tokio::test]
    async fn the_answer_goes_down_under_the_client_base_without_the_token() {
        let f = fixture("", "", "rewrite_body_urls = true");
        let route = (&f.snapshot.config.routes[0], &f.snapshot.routes[0]);
        let mapped = crate::proxy::route::map_path(route.0, "/SCIM/v2/Users").unwrap();
        let client = Base::new("https", HOST, "/SCIM/v2");
        let dest = Destination::new(route, &mapped, None, Some(client));
        let (res, _) = respond(upstream_answer(), &Method::POST, &dest, false)
            .await
            .unwrap();
        assert_eq!(res.version(), Version::HTTP_11);
        let h = res.headers();
        assert_eq!(
            h[header::LOCATION],
            format!("https://{HOST}/SCIM/v2/Users/7").as_str()
        );
        for gone in ["x-debug", "x-hop", "keep-alive", "connection"] {
            assert!(h.get(gone).is_none(), "{gone} still there");
        }
        let body = res.into_body().collect().await.unwrap().to_bytes();
        let body = String::from_utf8_lossy(&body);
        assert!(
            body.contains(&format!("https://{HOST}/SCIM/v2/Users/7")),
            "{body}"
        );
        assert!(!body.contains(V2_TOKEN), "{body}");
    }

    #[tokio::test]
    async fn without_a_client_base_location_is_left_alone() {
        let f = fixture("", "", "");
        let runtime = &f.snapshot.routes[0];
        let (mut parts, _) = upstream_answer().into_parts();
        response_head(&mut parts, runtime, None);
        assert_eq!(
            parts.headers[header::LOCATION],
            "https://acme.goskope.com/api/v2/scim/Users/7"
        );
    }
}
