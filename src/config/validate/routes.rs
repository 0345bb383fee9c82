//! `[[routes]]` as a whole: each route validated on its own, then the rules between routes
//! (unique names, each host served once, at most one catch-all).

use std::path::Path;

use super::Validator;
use crate::config::model::Route;
use crate::config::raw::RawRoute;

impl Validator {
    pub(super) fn routes(
        &mut self,
        raw: Vec<RawRoute>,
        base_dir: &Path,
        plain_listener: bool,
    ) -> Vec<Route> {
        if raw.is_empty() {
            self.problem("routes", "at least one [[routes]] table is required");
        }
        let mut routes: Vec<Route> = Vec::new();
        for (i, r) in raw.into_iter().enumerate() {
            let key = format!("routes[{i}]");
            if let Some(route) = self.route(&key, r, base_dir, plain_listener) {
                routes.push(route);
            }
        }
        self.cross_route_rules(&routes);
        routes
    }

    fn cross_route_rules(&mut self, routes: &[Route]) {
        let mut any_host_routes = Vec::new();
        for (i, r) in routes.iter().enumerate() {
            if routes[..i].iter().any(|o| o.name == r.name) {
                self.problem(
                    &format!("routes[{i}].name"),
                    format!("{:?} is used by another route", r.name),
                );
            }
            if r.hosts.is_empty() {
                any_host_routes.push(r.name.clone());
            }
            for h in &r.hosts {
                if let Some(o) = routes[..i].iter().find(|o| o.hosts.contains(h)) {
                    self.problem(
                        &format!("routes[{i}].hosts"),
                        format!("host {h:?} is already served by route {:?}", o.name),
                    );
                }
            }
        }
        if any_host_routes.len() > 1 {
            self.problem(
                "routes",
                format!(
                    "at most one route may omit `hosts` (it serves any host); these do: {}",
                    any_host_routes.join(", ")
                ),
            );
        }
    }
}
