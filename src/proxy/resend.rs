//! A rotated token picked up on the first 401: the route's token source is read at once, and a
//! request the proxy can send again exactly (bodiless, or a body it holds whole) goes once more
//! with the new token. A 401 means the upstream did not process the request, so this holds for
//! POST and PATCH too. A streamed body, an unchanged token or a request that was already sent
//! twice (the reset retry) gets the 401 as it came.

use http::{Request, StatusCode};

use crate::body::ProxyBody;
use crate::config::Route;
use crate::proxy::send::Replay;
use crate::proxy::upstream_request::set_token;
use crate::state::token_reread::{Reread, reread_token};
use crate::state::{RouteRuntime, Shared};

/// Why a request was sent a second time, as the traffic record says it.
pub(crate) const TOKEN_ROTATED: &str = "token-rotated";

/// The kept request with `runtime`'s token in place of the one it was sent with.
pub(crate) fn with_token(
    replay: &Replay,
    route: &Route,
    runtime: &RouteRuntime,
) -> Request<ProxyBody> {
    let mut again = replay.request();
    set_token(again.headers_mut(), route, runtime);
    again
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::testing::{fixture, parts, scim_get};
    use bytes::Bytes;
    use http::Method;

    #[test]
    fn only_a_request_held_whole_can_be_sent_again_and_it_goes_with_the_new_token() {
        let head = parts(scim_get("https://acme.goskope.com/api/v2/scim/Users").method("POST"));
        assert!(Replay::of(&head, None).is_none());
        let again = Replay::of(&head, Some(&Bytes::from_static(b"{}"))).unwrap();
        let f = fixture("", "", "");
        let (route, runtime) = f.snapshot.route(0).unwrap();
        let req = with_token(&again, route, runtime);
        assert_eq!(req.method(), Method::POST);
        assert_eq!(
            req.headers()[http::header::AUTHORIZATION],
            "Bearer v2-token-0123456789abcdef"
        );
    }
}
