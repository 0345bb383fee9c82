//! Each route's runtime state: its v2 token read and checked, its upstream base, and what it keeps
//! from the same-named route of the previous snapshot (in-flight counters, token-expiry state, the pacer while its keys are unchanged).

use std::sync::{Arc, Mutex};

use super::egress;
use crate::body::rewrite::Needles;
use crate::config::{Config, ProblemList, Route};
use crate::scim::base::Base;
use crate::state::pacer::Pacer;
use crate::state::snapshot::{RouteRuntime, Snapshot};
use crate::state::token_expiry::TokenExpiry;
use crate::state::tokens::load_secret;
use crate::state::v2_token::V2Token;

/// One runtime per route, in config order; a route whose token cannot be loaded has none (and a
/// problem, so the snapshot is refused).
pub(super) fn load(
    config: &Config,
    previous: Option<&Snapshot>,
    problems: &mut ProblemList,
) -> Vec<RouteRuntime> {
    let mut routes = Vec::new();
    for (i, route) in config.routes.iter().enumerate() {
        let token = load_secret(
            &route.token,
            &format!("routes[{i}].token"),
            "the REST API v2 token",
            problems,
            |t| V2Token::new(&t, route.upstream_auth),
        );
        if let Some(token) = token {
            let before = previous.and_then(|p| p.route_named(&route.name));
            routes.push(RouteRuntime::load(route, token, before));
        }
        if let Some(reason) = egress::unreachable_upstream(&config.egress, route) {
            problems.add(&format!("routes[{i}].upstream"), reason);
        }
    }
    routes
}

impl RouteRuntime {
    /// `before`: the same-named route in the previous snapshot, whose counters and expiry state
    /// carry over.
    fn load(
        route: &Route,
        token: V2Token,
        before: Option<(&Route, &RouteRuntime)>,
    ) -> RouteRuntime {
        let secret = token.expose_for_redaction().as_bytes();
        RouteRuntime {
            token_expiry: TokenExpiry::carry(
                route.token_expires,
                secret,
                before.and_then(|(_, r)| r.token_expiry.as_ref()),
            ),
            base: Base::new("https", &route.upstream.authority, &route.upstream.path),
            token_redaction: Arc::new(Needles::masking(secret)),
            client_in_flight: route
                .clients
                .iter()
                .map(|c| {
                    before
                        .and_then(|(r, runtime)| runtime.in_flight_of(r, &c.name))
                        .cloned()
                        .unwrap_or_default()
                })
                .collect(),
            pacer: route.pacing.map(|pacing| {
                before
                    .filter(|(r, _)| r.pacing == Some(pacing))
                    .and_then(|(_, runtime)| runtime.pacer.clone())
                    .unwrap_or_else(|| Arc::new(Mutex::new(Pacer::new(&pacing))))
            }),
            token,
        }
    }
}
