//! A rotated token picked up on the first 401: the route's token source is read at once, and a
//! request the proxy can send again exactly (bodiless, or a body it holds whole) goes once more
//! with the new token. A 401 means the upstream did not process the request, so this holds for
//! POST and PATCH too. A streamed body, an unchanged token or a request that was already sent
//! twice (the reset retry) gets the 401 as it came.

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode, Uri};

use crate::body::ProxyBody;
use crate::config::Route;
use crate::observe::metrics::RouteLabels;
use crate::proxy::upstream_request::set_token;
use crate::state::token_reread::{Reread, reread_token};
use crate::state::{RouteRuntime, Shared};

/// Why a request was sent a second time, as the traffic record says it.
pub(crate) const TOKEN_ROTATED: &str = "token-rotated";

/// The upstream head and whole body of a request, kept to send it again exactly.
pub(crate) struct Resend {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
}

impl Resend {
    /// Only when the proxy holds the body whole (`whole`; empty when bodiless): a streamed body
    /// is gone once sent.
    pub(crate) fn of(parts: &http::request::Parts, whole: Option<&Bytes>) -> Option<Resend> {
        Some(Resend {
            method: parts.method.clone(),
            uri: parts.uri.clone(),
            headers: parts.headers.clone(),
            body: whole?.clone(),
        })
    }

    /// The same request with `runtime`'s token.
    pub(crate) fn into_request(self, route: &Route, runtime: &RouteRuntime) -> Request<ProxyBody> {
        let mut again = Request::new(crate::body::full(self.body));
        *again.method_mut() = self.method;
        *again.uri_mut() = self.uri;
        *again.headers_mut() = self.headers;
        set_token(again.headers_mut(), route, runtime);
        again
    }
}

/// After an upstream 401: the token source read now (counted by outcome). Some: the route's
/// runtime with the new token, which a reload is also bringing to every later request.
pub(crate) fn reread_after_401(
    shared: &Shared,
    route: &Route,
    runtime: &RouteRuntime,
    status: StatusCode,
) -> Option<Box<RouteRuntime>> {
    if status != StatusCode::UNAUTHORIZED {
        return None;
    }
    let reread = reread_token(shared, route, runtime);
    shared
        .metrics
        .pacing
        .token_reread(&route.name, reread.as_str());
    match reread {
        Reread::Changed(rotated) => Some(rotated),
        Reread::Unchanged | Reread::Failed => None,
    }
}

/// Counts a resend.
pub(crate) fn count_resend(shared: &Shared, route: &Route) {
    shared
        .metrics
        .pacing
        .token_resends
        .get_or_create(&RouteLabels {
            route: route.name.clone(),
        })
        .inc();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::testing::{fixture, parts, scim_get};

    #[test]
    fn only_a_request_held_whole_can_be_sent_again_and_it_goes_with_the_new_token() {
        let head = parts(scim_get("https://acme.goskope.com/api/v2/scim/Users").method("POST"));
        assert!(Resend::of(&head, None).is_none());
        let again = Resend::of(&head, Some(&Bytes::from_static(b"{}"))).unwrap();
        let f = fixture("", "", "");
        let (route, runtime) = f.snapshot.route(0).unwrap();
        let req = again.into_request(route, runtime);
        assert_eq!(req.method(), Method::POST);
        assert_eq!(
            req.headers()[http::header::AUTHORIZATION],
            "Bearer v2-token-0123456789abcdef"
        );
    }
}
