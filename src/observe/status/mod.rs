//! What the status page (`GET /` and `/status.json` on the admin listener) knows, kept in memory
//! and bounded: per route and IdP, counts over the last hour and day by op and outcome, last seen,
//! the last failure; the last 50 failures; upstream 401/403 bursts; the out-of-sync set.
//!
//! Fed by the logging phase once a request is done: a counter update, and on a failure one small
//! record. Personal values arrive already as the traffic log writes them.

mod failure;
pub mod html;
mod out_of_sync;
pub mod view;
mod window;

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use failure::{Failure, is_write};
pub use out_of_sync::{Entry, Identity, MAX_OUT_OF_SYNC, OutOfSync};
pub use window::{Counts, Outcome, Window};

use crate::observe::auth_watch::{AUTH_BURST_MEANING, AuthWatch};
use crate::observe::traffic_log::rfc3339_millis;
use view::{AuthBurst, IdpActivity, OpCounts, RouteActivity};

/// How many failures the page lists.
pub const LAST_FAILURES: usize = 50;

/// A finished request as the board counts it.
pub struct Seen<'a> {
    pub at: SystemTime,
    pub route: Option<&'a str>,
    pub client: Option<&'a str>,
    pub op: &'static str,
    pub status: u16,
    pub upstream_status: Option<u16>,
}

/// A successful write, for the out-of-sync set; `subject` gives the subject as logged and is only
/// called when some resource is out of sync (it may hash).
pub struct Succeeded<'a> {
    pub resource: &'a str,
    pub resource_id: Option<&'a str>,
    pub subject: &'a dyn Fn() -> Option<String>,
}

/// The in-memory status, shared by the request path (writes) and the admin listener (reads).
pub struct StatusBoard {
    inner: Mutex<Inner>,
}

struct Inner {
    /// route -> client -> activity. Both names come from the config (`-` when unknown), so the
    /// map is bounded by the configs this process has run.
    idps: HashMap<String, HashMap<String, Idp>>,
    routes: HashMap<String, Route>,
    failures: VecDeque<Failure>,
    out_of_sync: OutOfSync,
}

#[derive(Default)]
struct Idp {
    last_seen: Option<SystemTime>,
    last_failure: Option<Failure>,
    /// By op; ops are the proxy's fixed names, so bounded.
    ops: HashMap<&'static str, Window>,
}

#[derive(Default)]
struct Route {
    last_upstream_success: Option<SystemTime>,
    /// The current run of upstream 401/403: when its first came, how many.
    refusals: Option<(SystemTime, u32)>,
    burst: Option<AuthBurst>,
}

impl Default for StatusBoard {
    fn default() -> Self {
        StatusBoard::new(MAX_OUT_OF_SYNC)
    }
}

impl StatusBoard {
    pub fn new(out_of_sync_limit: usize) -> StatusBoard {
        StatusBoard {
            inner: Mutex::new(Inner {
                idps: HashMap::new(),
                routes: HashMap::new(),
                failures: VecDeque::with_capacity(LAST_FAILURES),
                out_of_sync: OutOfSync::new(out_of_sync_limit),
            }),
        }
    }

    /// One finished request; `failure` when its status is 400 or above, `succeeded` when it was
    /// a successful write.
    pub fn record(&self, seen: Seen<'_>, failure: Option<Failure>, succeeded: Option<Succeeded>) {
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        let inner = &mut *inner;
        let route_name = seen.route.unwrap_or("-");
        let outcome = Outcome::of(seen.status, seen.upstream_status.is_none());
        if let Some(idp) = idp_entry(&mut inner.idps, route_name, seen.client.unwrap_or("-")) {
            idp.last_seen = Some(seen.at);
            idp.ops
                .entry(seen.op)
                .or_default()
                .add(epoch_secs(seen.at), outcome);
            if let Some(f) = &failure {
                idp.last_failure = Some(f.clone());
            }
        }
        if let Some(upstream_status) = seen.upstream_status
            && let Some(route) = route_entry(&mut inner.routes, route_name)
        {
            match upstream_status {
                200..=299 => route.last_upstream_success = Some(seen.at),
                s @ (401 | 403) => route.refused(seen.at, s),
                _ => {}
            }
        }
        if let Some(s) = succeeded
            && !inner.out_of_sync.is_empty()
        {
            let subject = (s.subject)();
            inner
                .out_of_sync
                .succeeded(route_name, s.resource, s.resource_id, subject.as_deref());
        }
        if let Some(f) = failure {
            if is_write(&f.method, f.resource.as_deref(), f.op.as_deref()) {
                inner.out_of_sync.failed(f.clone());
            }
            if inner.failures.len() >= LAST_FAILURES {
                inner.failures.pop_front();
            }
            inner.failures.push_back(f);
        }
    }

    /// What the board knows now, for the page.
    pub fn activity(&self, now: SystemTime) -> view::Activity {
        let Ok(inner) = self.inner.lock() else {
            return view::Activity::default();
        };
        let secs = epoch_secs(now);
        let mut idps = Vec::new();
        for (route, clients) in &inner.idps {
            for (client, idp) in clients {
                let mut ops: Vec<OpCounts> = idp
                    .ops
                    .iter()
                    .map(|(op, w)| OpCounts {
                        op: (*op).to_owned(),
                        last_hour: w.last_hour(secs),
                        last_day: w.last_day(secs),
                    })
                    .filter(|o| o.last_day.requests > 0)
                    .collect();
                ops.sort_by(|a, b| a.op.cmp(&b.op));
                let mut last_hour = Counts::default();
                let mut last_day = Counts::default();
                for o in &ops {
                    last_hour.merge(&o.last_hour);
                    last_day.merge(&o.last_day);
                }
                idps.push(IdpActivity {
                    route: route.clone(),
                    client: client.clone(),
                    last_seen: idp.last_seen.map(rfc3339_millis),
                    last_hour,
                    last_day,
                    ops,
                    last_failure: idp.last_failure.clone(),
                });
            }
        }
        idps.sort_by(|a, b| (&a.route, &a.client).cmp(&(&b.route, &b.client)));
        let routes = inner
            .routes
            .iter()
            .map(|(name, r)| {
                let activity = RouteActivity {
                    last_upstream_success: r.last_upstream_success.map(rfc3339_millis),
                    auth_burst: r.burst.clone(),
                };
                (name.clone(), activity)
            })
            .collect();
        view::Activity {
            idps,
            routes,
            failures: inner.failures.iter().rev().cloned().collect(),
            out_of_sync: inner.out_of_sync.entries(),
            out_of_sync_evicted: inner.out_of_sync.evicted,
        }
    }
}

impl Route {
    /// An upstream 401/403, counted into a burst as `AuthWatch` counts it for the log.
    fn refused(&mut self, at: SystemTime, status: u16) {
        let (start, count) = match self.refusals {
            Some((start, n)) if within(start, at, AuthWatch::WINDOW) => (start, n + 1),
            _ => (at, 1),
        };
        self.refusals = Some((start, count));
        if count < AuthWatch::BURST {
            return;
        }
        match &mut self.burst {
            Some(b) if b.window_start == rfc3339_millis(start) => {
                b.count = count;
                b.last = rfc3339_millis(at);
                b.last_status = status;
            }
            _ => {
                self.burst = Some(AuthBurst {
                    window_start: rfc3339_millis(start),
                    last: rfc3339_millis(at),
                    count,
                    last_status: status,
                    meaning: AUTH_BURST_MEANING,
                })
            }
        }
    }
}

fn within(start: SystemTime, at: SystemTime, window: Duration) -> bool {
    at.duration_since(start).is_ok_and(|d| d <= window)
}

/// The IdP's entry, made on first sight. Looked up by `&str` first: the names are allocated only
/// the first time they are seen, not on every request.
fn idp_entry<'a>(
    idps: &'a mut HashMap<String, HashMap<String, Idp>>,
    route: &str,
    client: &str,
) -> Option<&'a mut Idp> {
    if !idps.contains_key(route) {
        idps.insert(route.to_owned(), HashMap::new());
    }
    let clients = idps.get_mut(route)?;
    if !clients.contains_key(client) {
        clients.insert(client.to_owned(), Idp::default());
    }
    clients.get_mut(client)
}

fn route_entry<'a>(routes: &'a mut HashMap<String, Route>, route: &str) -> Option<&'a mut Route> {
    if !routes.contains_key(route) {
        routes.insert(route.to_owned(), Route::default());
    }
    routes.get_mut(route)
}

fn epoch_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(at: SystemTime, status: u16, upstream_status: Option<u16>) -> Seen<'static> {
        Seen {
            at,
            route: Some("acme"),
            client: Some("okta"),
            op: "user.update",
            status,
            upstream_status,
        }
    }

    fn failure(n: usize, status: u16) -> Failure {
        Failure {
            ts: format!("t{n:03}"),
            request_id: format!("r{n}"),
            route: Some("acme".into()),
            client: Some("okta".into()),
            method: "PATCH".into(),
            op: Some("user.update".into()),
            resource: Some("User".into()),
            resource_id: Some(format!("id{}", n % 3)),
            subject: None,
            status,
            upstream_status: Some(status),
            scim_type: None,
            detail: None,
            error: None,
        }
    }

    #[test]
    fn failures_are_capped_bursts_found_and_a_success_clears_its_resource() {
        let board = StatusBoard::new(2);
        let t0 = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        for n in 0..60 {
            let at = t0 + Duration::from_secs(n as u64);
            board.record(seen(at, 401, Some(401)), Some(failure(n, 401)), None);
        }
        let subject = || None;
        board.record(
            seen(t0 + Duration::from_secs(61), 200, Some(200)),
            None,
            Some(Succeeded {
                resource: "User",
                resource_id: Some("id2"),
                subject: &subject,
            }),
        );
        let a = board.activity(t0 + Duration::from_secs(62));
        assert_eq!(a.failures.len(), LAST_FAILURES);
        assert_eq!(a.failures[0].request_id, "r59", "newest first");
        // The set keeps 2 (id0..id2 cycle), and id2 was cleared by the success.
        let ids: Vec<_> = a.out_of_sync.iter().map(|e| e.identity.clone()).collect();
        assert_eq!(ids, [Identity::Id("id1".into())], "{ids:?}");
        let route = &a.routes["acme"];
        let burst = route.auth_burst.as_ref().expect("a burst");
        assert_eq!((burst.count, burst.last_status), (60, 401));
        assert!(route.last_upstream_success.is_some());
        let idp = &a.idps[0];
        assert_eq!(
            (
                idp.last_hour.requests,
                idp.last_hour.client_error,
                idp.last_hour.ok
            ),
            (61, 60, 1)
        );
    }

    #[test]
    fn two_refusals_a_minute_apart_are_no_burst() {
        let board = StatusBoard::default();
        let t0 = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        for n in 0..4 {
            let at = t0 + Duration::from_secs(61 * n);
            board.record(
                seen(at, 403, Some(403)),
                Some(failure(n as usize, 403)),
                None,
            );
        }
        assert!(board.activity(t0).routes["acme"].auth_burst.is_none());
    }
}
