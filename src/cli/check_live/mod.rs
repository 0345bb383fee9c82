//! `check --live`: for each route, the real egress path end to end (resolve, connect, TLS, an
//! authenticated `GET <upstream>/Users?count=1`), and what a failure most likely means.

pub mod acme;
mod answer;
mod meaning;
mod probe;
mod render;

use std::time::Duration;

use crate::config::Route;
use crate::state::{RouteRuntime, Snapshot};

pub use render::render;

/// One route's result, printed as a block.
#[derive(Debug)]
pub struct RouteCheck {
    pub route: String,
    pub ok: bool,
    pub lines: Vec<String>,
}

/// Runs the preflight for every route, one after the other (an admin reads them in order).
pub async fn run(snapshot: &Snapshot, timeout: Duration) -> Vec<RouteCheck> {
    let mut out = Vec::new();
    for (route, runtime) in snapshot.routes() {
        out.push(check_route(snapshot, route, runtime, timeout).await);
    }
    out
}

async fn check_route(
    snapshot: &Snapshot,
    route: &Route,
    runtime: &RouteRuntime,
    timeout: Duration,
) -> RouteCheck {
    let target = format!(
        "https://{}{}/Users?count=1",
        route.upstream.authority, route.upstream.path
    );
    let mut lines = render::preamble(&snapshot.config.egress, route, &target);
    let probed = tokio::time::timeout(timeout, probe::probe(snapshot, route, runtime, &target));
    let ok = match probed.await {
        Err(_) => {
            lines.extend(render::failed(&meaning::no_answer(timeout)));
            false
        }
        Ok(Err(failure)) => {
            lines.extend(render::failed(&failure));
            false
        }
        Ok(Ok(p)) => render::answered(p, &mut lines),
    };
    RouteCheck {
        route: route.name.clone(),
        ok,
        lines,
    }
}
