//! Picks the route for the addressed host (404) and maps the path under its legacy prefixes
//! (404/400/414), in the request path's words; the pure rules live in `route`.

use std::time::SystemTime;

use crate::config::Route;
use crate::error::{ErrorKind, ProxyError};
use crate::proxy::LOG_TARGET;
use crate::proxy::route::{self, Mapped, RouteError};
use crate::scim::base::Base;
use crate::state::{RouteRuntime, Snapshot};

/// The route serving `authority`: its index in the snapshot, its config and its runtime state.
pub(crate) fn select<'s>(
    snapshot: &'s Snapshot,
    authority: Option<&str>,
) -> Result<(usize, &'s Route, &'s RouteRuntime), ProxyError> {
    let index = route::select_route(&snapshot.config.routes, authority)
        .map_err(|_| ProxyError::new(ErrorKind::NotFound, "no route serves this host"))?;
    let (route, runtime) = snapshot
        .route(index)
        .ok_or_else(|| ProxyError::new(ErrorKind::Internal, "route table out of step"))?;
    Ok((index, route, runtime))
}

/// An expired v2 token is logged on every request, and the request still forwarded: the upstream
/// decides, and the IdP sees its real answer.
pub(crate) fn warn_if_token_expired(route: &Route, runtime: &RouteRuntime) {
    if let Some(expiry) = &runtime.token_expiry
        && expiry.applies()
        && expiry.date <= SystemTime::now()
    {
        tracing::error!(
            target: LOG_TARGET,
            route = %route.name,
            expired = %humantime::format_rfc3339_seconds(expiry.date),
            "the route's REST API v2 token is past token_expires: issue a new one and write it to {}",
            route.token
        );
    }
}

/// The request path under one of the route's legacy prefixes, or why it is refused.
pub(crate) fn map_path<'a>(route: &Route, path: &'a str) -> Result<Mapped<'a>, ProxyError> {
    route::map_path(route, path).map_err(|e| match e {
        RouteError::UnknownHost | RouteError::NotFound => ProxyError::new(
            ErrorKind::NotFound,
            "not a SCIM endpoint of this proxy: use /SCIM/v2/Users or /SCIM/v2/Groups",
        ),
        RouteError::Unsafe(why) => ProxyError::new(
            ErrorKind::BadRequest,
            format!("refused request target: {why}"),
        ),
        RouteError::TooLong => ProxyError::new(ErrorKind::UriTooLong, "request target too long"),
    })
}

/// Where a request goes and how its URLs come back: the route, the upstream target, the path
/// after the prefix (what the SCIM reading reads) and the base given back to the client.
pub(crate) struct Destination<'s> {
    pub route: &'s Route,
    pub runtime: &'s RouteRuntime,
    pub upstream_path: String,
    pub rest: String,
    pub client_base: Option<Base>,
}

impl<'s> Destination<'s> {
    pub(crate) fn new(
        (route, runtime): (&'s Route, &'s RouteRuntime),
        mapped: &Mapped<'_>,
        query: Option<&str>,
        client_base: Option<Base>,
    ) -> Destination<'s> {
        Destination {
            route,
            runtime,
            upstream_path: route::upstream_path_and_query(&route.upstream, mapped.rest, query),
            rest: mapped.rest.to_owned(),
            client_base,
        }
    }

    /// The same destination under another runtime of the same route (a rotated token's).
    pub(crate) fn with_runtime<'r>(&self, runtime: &'r RouteRuntime) -> Destination<'r>
    where
        's: 'r,
    {
        Destination {
            route: self.route,
            runtime,
            upstream_path: self.upstream_path.clone(),
            rest: self.rest.clone(),
            client_base: self.client_base.clone(),
        }
    }

    /// (client, upstream) bases for rewriting a request body, when the route rewrites bodies.
    pub(crate) fn request_urls(&self) -> Option<(&Base, &Base)> {
        let client = self
            .client_base
            .as_ref()
            .filter(|_| self.route.rewrite_body_urls)?;
        Some((client, &self.runtime.base))
    }

    /// The same bases the other way round, for the response body.
    pub(crate) fn response_urls(&self) -> Option<(&Base, &Base)> {
        self.request_urls()
            .map(|(client, upstream)| (upstream, client))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::testing::{HOST, fixture};

    #[test]
    fn a_host_no_route_serves_is_not_found() {
        let f = fixture("", "", "");
        let (index, route, _) = select(&f.snapshot, Some(HOST)).unwrap();
        assert_eq!((index, route.name.as_str()), (0, "acme"));
        let e = select(&f.snapshot, Some("other.example")).err().unwrap();
        assert_eq!(e.kind, ErrorKind::NotFound);
        assert_eq!(e.detail, "no route serves this host");
    }

    #[test]
    fn only_safe_paths_under_the_legacy_prefix_map() {
        let f = fixture("", "", "");
        let route = &f.snapshot.config.routes[0];
        let mapped = map_path(route, "/scim/V2/Users/1").unwrap();
        assert_eq!(
            (mapped.client_prefix, mapped.rest),
            ("/scim/V2", "/Users/1")
        );
        assert_eq!(
            map_path(route, "/api/v2/scim/Users").unwrap_err().kind,
            ErrorKind::NotFound
        );
        assert_eq!(
            map_path(route, "/SCIM/v2/../x").unwrap_err().kind,
            ErrorKind::BadRequest
        );
        let long = format!("/SCIM/v2/Users/{}", "a".repeat(route::MAX_PATH_LEN));
        assert_eq!(
            map_path(route, &long).unwrap_err().kind,
            ErrorKind::UriTooLong
        );
    }
}
