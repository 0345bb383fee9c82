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

#[cfg(test)]
mod tests {
    use crate::state::{Snapshot, build};

    /// One route `acme` with `pacing` lines, loaded from `dir` (which holds its token).
    fn load(dir: &std::path::Path, pacing: &str, previous: Option<&Snapshot>) -> Snapshot {
        std::fs::write(dir.join("acme.token"), "v2-token\n").unwrap();
        let toml = format!(
            "[listen]\naddr = \"127.0.0.1:0\"\n[log]\ntraffic = \"off\"\n\n[[routes]]\nname = \"acme\"\n\
             upstream = \"https://acme.goskope.com/api/v2/scim\"\ntoken_file = \"acme.token\"\n\
             hosts = [\"scim.example\"]\n{pacing}\n[[routes.clients]]\nname = \"okta\"\n\
             token_sha256 = \"{}\"\n",
            "0".repeat(64)
        );
        let config = crate::config::parse(&toml, &dir.join("scim-proxy.toml")).unwrap();
        build(config, previous).unwrap()
    }

    #[test]
    fn the_pacer_survives_a_reload_that_keeps_its_keys_and_is_rebuilt_when_they_change() {
        let dir = tempfile::tempdir().unwrap();
        let paced = "max_requests_per_second = 5";
        let first = load(dir.path(), paced, None);
        let pacer = |s: &Snapshot| s.routes[0].pacer.clone();
        let same = load(dir.path(), paced, Some(&first));
        assert!(std::sync::Arc::ptr_eq(
            &pacer(&first).unwrap(),
            &pacer(&same).unwrap()
        ));
        let faster = load(dir.path(), "max_requests_per_second = 6", Some(&same));
        assert!(!std::sync::Arc::ptr_eq(
            &pacer(&same).unwrap(),
            &pacer(&faster).unwrap()
        ));
        let off = load(dir.path(), "", Some(&faster));
        assert!(pacer(&off).is_none());
    }
}
