//! Which handler a path and method reach under the base path.

use http::StatusCode;

use super::ctx::Ctx;
use super::error::ScimError;
use super::handlers::{create, delete, get_one, patch, replace};
use super::kind::Kind;
use super::list::list;
use super::lock;
use super::query::percent_decode;
use super::response::Resp;
use super::state::State;

pub(super) fn route(state: &State, path: &str, ctx: &Ctx<'_>) -> Result<Resp, ScimError> {
    let not_found = || ScimError::not_found(format!("no SCIM endpoint at {path}"));
    let rest = strip_base(path, &state.base_path).ok_or_else(not_found)?;
    let mut segs: Vec<&str> = rest.split('/').skip(1).collect();
    // Tolerate one trailing slash.
    if segs.len() > 1 && segs.last() == Some(&"") {
        segs.pop();
    }
    let (kind, id) = match segs.as_slice() {
        [r] => (Kind::from_segment(r).ok_or_else(not_found)?, None),
        [r, id] if !id.is_empty() => (
            Kind::from_segment(r).ok_or_else(not_found)?,
            Some(percent_decode(id, false)),
        ),
        _ => return Err(not_found()),
    };
    let mut store = lock(&state.store);
    match (ctx.method.as_str(), id) {
        ("GET", None) => list(&store, kind, ctx),
        ("POST", None) => create(&mut store, kind, ctx),
        ("GET", Some(id)) => get_one(&store, kind, &id, ctx),
        ("PUT", Some(id)) => replace(&mut store, kind, &id, ctx),
        ("PATCH", Some(id)) => patch(&mut store, kind, &id, ctx),
        ("DELETE", Some(id)) => delete(&mut store, kind, &id, ctx),
        (m, _) => Err(ScimError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            None,
            format!("{m} is not supported on {path}"),
        )),
    }
}

fn strip_base<'a>(path: &'a str, base: &str) -> Option<&'a str> {
    let rest = path.strip_prefix(base)?;
    (rest.is_empty() || rest.starts_with('/')).then_some(rest)
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::*;

    #[tokio::test]
    async fn unknown_routes_and_methods_answer_scim_errors() {
        let h = harness(true, None).await;
        let auth = [("authorization", "Bearer v2-token-1")];
        for path in ["/SCIM/v2/Users", "/api/v2/scimX/Users", "/", "/api/v2/scim"] {
            assert_error(&h.call("GET", path, &auth, None).await, 404, None);
        }
        for path in [
            "/Bulk",
            "/Schemas",
            "/ServiceProviderConfig",
            "/Users/a/b",
            "/users",
        ] {
            assert_error(&h.scim("GET", path, None).await, 404, None);
        }
        assert_error(&h.scim("DELETE", "/Users", None).await, 405, None);
        assert_error(&h.scim("POST", "/Users/abc", Some("{}")).await, 405, None);
        assert_error(
            &h.scim("POST", "/Users", Some("[]")).await,
            400,
            Some("invalidSyntax"),
        );
        assert_error(
            &h.scim("POST", "/Users", Some("")).await,
            400,
            Some("invalidSyntax"),
        );
        let no_name = json!({"name": {"givenName": "x"}}).to_string();
        assert_error(
            &h.scim("POST", "/Users", Some(&no_name)).await,
            400,
            Some("invalidValue"),
        );
        let bad_members = json!({"displayName": "x", "members": "nope"}).to_string();
        assert_error(
            &h.scim("POST", "/Groups", Some(&bad_members)).await,
            400,
            Some("invalidValue"),
        );
        // Trailing slash on a collection is tolerated.
        assert_eq!(h.scim("GET", "/Users/", None).await.status, StatusCode::OK);
        h.shutdown().await;
    }
}
