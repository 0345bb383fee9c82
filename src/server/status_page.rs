//! The status document (`/status.json`, and the page `GET /` renders from it): the board's
//! activity joined with what the running snapshot knows (readiness, tokens, certificate, egress).

use std::time::{Duration, SystemTime};

use crate::config::{Config, PiiMode, Route, TrafficSink};
use crate::observe::status::MAX_OUT_OF_SYNC;
use crate::observe::status::view::{
    Activity, CertStatus, OutOfSyncStatus, RouteStatus, StatusDoc, TokenStatus, resync,
};
use crate::observe::traffic_log::rfc3339_millis;
use crate::state::token_expiry::ExpiryState;
use crate::state::{RouteRuntime, Shared, Snapshot};

/// A certificate this close to its end is shown as expiring soon.
const CERT_WARN: Duration = Duration::from_secs(14 * 86_400);

/// The document as of `now`.
pub fn status_doc(shared: &Shared, now: SystemTime) -> StatusDoc {
    let snapshot = shared.state.load();
    let activity = shared.status.activity(now);
    let problems = crate::state::readiness::readiness_problems(&snapshot, shared.is_ready(), now);
    let warnings = crate::state::readiness::readiness_warnings(&snapshot, now);
    let routes = routes(&snapshot, &activity, now);
    StatusDoc {
        version: 1,
        generated_at: rfc3339_millis(now),
        ready: problems.is_empty(),
        problems,
        warnings,
        pii: pii_name(snapshot.config.log.pii),
        traffic_log: traffic_log(&snapshot.config),
        certificate: snapshot.serving_cert_info().map(|c| CertStatus {
            subject: c.subject.clone(),
            not_after: humantime::format_rfc3339_seconds(c.not_after).to_string(),
            seconds_left: seconds_until(c.not_after, now),
            state: match c.not_after.duration_since(now) {
                Ok(left) if left > CERT_WARN => "ok",
                Ok(left) if !left.is_zero() => "soon",
                _ => "expired",
            },
        }),
        routes,
        failures: activity.failures,
        out_of_sync: OutOfSyncStatus {
            count: activity.out_of_sync.len(),
            limit: Some(MAX_OUT_OF_SYNC),
            evicted: activity.out_of_sync_evicted,
            resync: resync(&activity.out_of_sync),
            entries: activity.out_of_sync,
        },
    }
}

/// The configured routes in config order, then any route seen that is no longer configured.
fn routes(snapshot: &Snapshot, activity: &Activity, now: SystemTime) -> Vec<RouteStatus> {
    let egress = egress(&snapshot.config);
    let mut out: Vec<RouteStatus> = snapshot
        .routes()
        .map(|(route, runtime)| {
            let seen = activity.routes.get(&route.name);
            let mut idps: Vec<_> = activity
                .idps
                .iter()
                .filter(|i| i.route == route.name)
                .cloned()
                .collect();
            // Configured IdPs first, in config order; `-` (unauthenticated) last.
            idps.sort_by_key(|i| {
                route
                    .clients
                    .iter()
                    .position(|c| c.name == i.client)
                    .unwrap_or(usize::MAX)
            });
            RouteStatus {
                name: route.name.clone(),
                upstream: route.upstream.url(),
                egress: egress.clone(),
                token: token(route, runtime, now),
                last_upstream_success: seen.and_then(|s| s.last_upstream_success.clone()),
                auth_burst: seen.and_then(|s| s.auth_burst.clone()),
                idps,
            }
        })
        .collect();
    // Requests that matched no route (a wrong Host) are shown under `-`.
    let unrouted: Vec<_> = activity
        .idps
        .iter()
        .filter(|i| snapshot.route_named(&i.route).is_none())
        .cloned()
        .collect();
    if !unrouted.is_empty() {
        out.push(RouteStatus {
            name: "-".to_owned(),
            upstream: "(no route matched, or a route no longer configured)".to_owned(),
            egress,
            token: TokenStatus {
                source: "-".to_owned(),
                expires: None,
                seconds_left: None,
                warn_days: 0,
                state: "unknown",
            },
            last_upstream_success: None,
            auth_burst: None,
            idps: unrouted,
        });
    }
    out
}

fn token(route: &Route, runtime: &RouteRuntime, now: SystemTime) -> TokenStatus {
    let expiry = runtime.token_expiry.as_ref();
    TokenStatus {
        source: route.token.to_string(),
        expires: expiry.map(|e| humantime::format_rfc3339_seconds(e.date).to_string()),
        seconds_left: expiry.map(|e| seconds_until(e.date, now)),
        warn_days: route.token_warn.as_secs() / 86_400,
        state: match expiry.map(|e| e.state(now, route.token_warn)) {
            None => "unknown",
            Some(ExpiryState::Fine { .. }) => "ok",
            Some(ExpiryState::Soon { .. }) => "soon",
            Some(ExpiryState::Expired { .. }) => "expired",
            Some(ExpiryState::Stale) => "stale",
        },
    }
}

fn seconds_until(t: SystemTime, now: SystemTime) -> i64 {
    match t.duration_since(now) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

fn egress(config: &Config) -> String {
    let e = &config.egress;
    match (&e.via_proxy, e.bind_ip) {
        (Some(p), Some(ip)) => format!("via {} (bound to {ip})", p.url),
        (Some(p), None) => format!("via {}", p.url),
        (None, Some(ip)) => format!("bind {ip}"),
        (None, None) => "default (the host's own address and route)".to_owned(),
    }
}

fn traffic_log(config: &Config) -> String {
    match &config.log.traffic {
        TrafficSink::Off => "off".to_owned(),
        TrafficSink::Stdout => "stdout".to_owned(),
        TrafficSink::File(p) => p.display().to_string(),
    }
}

fn pii_name(mode: PiiMode) -> &'static str {
    match mode {
        PiiMode::Hash => "hash",
        PiiMode::Plain => "plain",
        PiiMode::Omit => "omit",
    }
}
