//! Authenticates the IdP by its old bearer token against the route's clients (401, one reason each).

use http::{HeaderMap, header};

use crate::auth::{self, AuthOutcome};
use crate::config::Route;
use crate::error::{ErrorKind, ProxyError};

/// What the Authorization header says about the caller; logged whatever it is.
pub(crate) fn authenticate(route: &Route, headers: &HeaderMap) -> AuthOutcome {
    auth::authenticate(
        &route.clients,
        headers
            .get_all(header::AUTHORIZATION)
            .iter()
            .map(|v| v.as_bytes()),
    )
}

/// The index of the authenticated client in `route.clients`, or the 401 that says why not.
pub(crate) fn accepted(outcome: AuthOutcome) -> Result<usize, ProxyError> {
    let why = match outcome {
        AuthOutcome::Ok(i) => return Ok(i),
        AuthOutcome::Missing => "missing Authorization: Bearer token",
        AuthOutcome::BadScheme => "malformed Authorization header: expected one `Bearer <token>`",
        AuthOutcome::UnknownToken => "the bearer token is not valid for this endpoint",
    };
    Err(ProxyError::new(ErrorKind::Unauthorized, why))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::testing::{OKTA, fixture, parts};
    use http::Request;

    fn outcome(authorization: &[&str]) -> AuthOutcome {
        let f = fixture("", "", "");
        let mut req = Request::get("/SCIM/v2/Users");
        for v in authorization {
            req = req.header(header::AUTHORIZATION, *v);
        }
        authenticate(&f.snapshot.config.routes[0], &parts(req).headers)
    }

    #[test]
    fn each_refusal_is_a_401_with_its_reason() {
        assert_eq!(outcome(&[&format!("Bearer {OKTA}")]), AuthOutcome::Ok(0));
        assert_eq!(accepted(outcome(&[&format!("Bearer {OKTA}")])).unwrap(), 0);
        for (headers, log, detail) in [
            (vec![], "missing", "missing Authorization: Bearer token"),
            (
                vec!["Basic abc"],
                "bad-scheme",
                "malformed Authorization header: expected one `Bearer <token>`",
            ),
            (
                vec!["Bearer a", "Bearer b"],
                "bad-scheme",
                "malformed Authorization header: expected one `Bearer <token>`",
            ),
            (
                vec!["Bearer not-the-token"],
                "unknown-token",
                "the bearer token is not valid for this endpoint",
            ),
        ] {
            let got = outcome(&headers);
            assert_eq!(got.as_str(), log);
            let e = accepted(got).unwrap_err();
            assert_eq!(
                (e.kind, e.detail.as_str()),
                (ErrorKind::Unauthorized, detail)
            );
        }
    }
}
