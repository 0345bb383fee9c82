//! The request as the upstream gets it: origin-form target under the upstream base, header
//! hygiene, the v2 token and the request id on the head; the body counted, limited, and (JSON)
//! rewritten to the upstream's URLs and kept for the SCIM reading.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::{Method, Uri, Version};
use http_body::Body as _;
use http_body_util::BodyExt;

use crate::body::{ProxyBody, filter};
use crate::config::{Limits, Listen, Route, UpstreamAuth};
use crate::error::{ErrorKind, ProxyError};
use crate::proxy::conn::ConnInfo;
use crate::proxy::counted::{Counted, InboundFailure};
use crate::proxy::routing::Destination;
use crate::proxy::{X_REQUEST_ID, headers};
use crate::scim::reading::{self, ScimReading};
use crate::state::RouteRuntime;

static NETSKOPE_API_TOKEN: HeaderName = HeaderName::from_static("netskope-api-token");

/// The serving head: forwarding headers only from a trusted proxy, then `upstream_head`, and a
/// plain answer asked for, since every answer is read for token redaction (and rewriting).
pub(crate) fn prepare_head(
    parts: &mut http::request::Parts,
    listen: &Listen,
    conn: &ConnInfo,
    dest: &Destination<'_>,
    request_id: &str,
) -> Result<(), ProxyError> {
    if !listen.is_trusted_proxy(conn.peer.ip()) {
        headers::strip_untrusted_forwarding(&mut parts.headers);
    }
    upstream_head(
        parts,
        dest.route,
        dest.runtime,
        &dest.upstream_path,
        request_id,
    )?;
    parts.headers.insert(
        header::ACCEPT_ENCODING,
        HeaderValue::from_static("identity"),
    );
    Ok(())
}

/// Turns a request head into the one sent to `route`'s upstream: target, header hygiene, the v2
/// token, the request id. Serving and `check --live` both build their upstream request here, and
/// send it through the same pooled client (origin-form target and Host come from it), so the
/// preflight can never send what serving would not.
pub(crate) fn upstream_head(
    parts: &mut http::request::Parts,
    route: &Route,
    runtime: &RouteRuntime,
    path_and_query: &str,
    request_id: &str,
) -> Result<(), ProxyError> {
    let upstream_uri: Uri = format!("https://{}{}", route.upstream.authority, path_and_query)
        .parse()
        .map_err(|_| {
            ProxyError::new(ErrorKind::BadRequest, "request target cannot be forwarded")
        })?;
    headers::upstream_request_headers(&mut parts.headers);
    set_token(&mut parts.headers, route, runtime);
    if let Ok(v) = HeaderValue::from_str(request_id) {
        parts.headers.insert(X_REQUEST_ID.clone(), v);
    }
    parts.uri = upstream_uri;
    parts.version = Version::HTTP_11;
    Ok(())
}

/// The route's v2 token in the header its `upstream_auth` names.
pub(crate) fn set_token(headers: &mut http::HeaderMap, route: &Route, runtime: &RouteRuntime) {
    match route.upstream_auth {
        UpstreamAuth::Bearer => headers.insert(header::AUTHORIZATION, runtime.token.header_value()),
        UpstreamAuth::NetskopeApiToken => {
            headers.insert(NETSKOPE_API_TOKEN.clone(), runtime.token.header_value())
        }
    };
}

/// The body as it goes up, the JSON read from it (when small enough to read whole) and what the
/// request does, and where the inbound body records why it failed.
pub(crate) struct UpstreamBody {
    pub body: ProxyBody,
    pub json: Option<Bytes>,
    pub reading: ScimReading,
    pub failure: Arc<InboundFailure>,
    /// The bytes going up when the proxy holds them whole (empty: bodiless): a request that can be
    /// sent again exactly. None: streamed.
    pub whole: Option<Bytes>,
}

/// Wraps the inbound body (`Counted`) and passes it through the request body filter, which
/// rewrites the client's URLs to the upstream's when the route asks for it.
pub(crate) async fn upstream_body(
    parts: &mut http::request::Parts,
    body: ProxyBody,
    dest: &Destination<'_>,
    limits: &Limits,
    bytes_in: &Arc<AtomicU64>,
) -> Result<UpstreamBody, ProxyError> {
    let bodiless = body.is_end_stream();
    let (counted, failure) = Counted::new(body, limits, bytes_in.clone());
    let urls = dest.request_urls();
    let filtered = filter::request_body(&mut parts.headers, counted.boxed_unsync(), urls).await?;
    let (body, json) = (filtered.body, filtered.json);
    let whole = filtered.sent_whole.or_else(|| bodiless.then(Bytes::new));
    let reading = scim_reading(
        &parts.method,
        &dest.rest,
        &dest.upstream_path,
        json.as_ref(),
    );
    Ok(UpstreamBody {
        body,
        json,
        reading,
        failure,
        whole,
    })
}

/// What the SCIM request does, from its method, the path after the prefix, the query sent
/// upstream and its JSON body.
fn scim_reading(
    method: &Method,
    rest: &str,
    upstream_path: &str,
    json: Option<&Bytes>,
) -> ScimReading {
    let value = json.and_then(|b| serde_json::from_slice::<serde_json::Value>(b).ok());
    let query = upstream_path.split_once('?').map(|(_, q)| q);
    reading::read_request(method, rest, query, value.as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::route;
    use crate::proxy::testing::{OKTA, V2_TOKEN, conn, fixture, parts, scim_get};

    #[test]
    fn the_upstream_head_carries_the_v2_token_and_no_inbound_credentials() {
        let f = fixture("", "", "");
        let route = (&f.snapshot.config.routes[0], &f.snapshot.routes[0]);
        let mapped = route::map_path(route.0, "/SCIM/v2/Users").unwrap();
        let dest = Destination::new(route, &mapped, Some("count=1"), None);
        let mut head = parts(
            scim_get("/SCIM/v2/Users?count=1")
                .header("x-forwarded-for", "198.51.100.1")
                .header("accept-encoding", "gzip")
                .header("connection", "keep-alive"),
        );
        let direct = conn("192.0.2.1:40000", false, None);
        let listen = &f.snapshot.config.listen;
        prepare_head(&mut head, listen, &direct, &dest, "rid-1").unwrap();
        assert_eq!(
            head.uri,
            "https://acme.goskope.com/api/v2/scim/Users?count=1"
        );
        let h = &head.headers;
        assert_eq!(
            h[header::AUTHORIZATION],
            format!("Bearer {V2_TOKEN}").as_str()
        );
        assert!(!format!("{h:?}").contains(OKTA));
        assert_eq!(h[header::ACCEPT_ENCODING], "identity");
        assert_eq!(h[&X_REQUEST_ID], "rid-1");
        assert!(h.get("x-forwarded-for").is_none() && h.get(header::CONNECTION).is_none());
    }

    #[test]
    fn the_reading_uses_the_query_sent_upstream() {
        let r = scim_reading(
            &Method::GET,
            "/Users",
            "/api/v2/scim/Users?filter=userName%20eq%20%22a%22",
            None,
        );
        assert_eq!(r.op, "user.lookup");
    }
}
