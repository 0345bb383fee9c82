//! Pacing, between admission and the send: on a paced route each request waits for its send slot
//! from the route's pacer (first come, first served across IdPs) for at most `max_queue_wait`,
//! or is answered 429 with `Retry-After` at once and never forwarded. After the answer, the
//! upstream's own rate signals (a 429 with `Retry-After`, `ratelimit-remaining: 0` with
//! `ratelimit-reset`) hold the route; the answer itself goes to the IdP unchanged.

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use http::{HeaderMap, StatusCode};

use crate::config::Route;
use crate::error::{ErrorKind, ProxyError};
use crate::observe::metrics::{PacingMetrics, RouteLabels};
use crate::proxy::LOG_TARGET;
use crate::state::RouteRuntime;
use crate::state::pacer::{Pacer, Refused};

/// A waiter whose slot fell inside a hold that began after it booked books again (behind those
/// that booked during the hold: the pacer keeps no queue to reorder), this often at most; its own
/// `max_queue_wait`, counted from its arrival, bounds it long before.
const MAX_REBOOKINGS: usize = 4;

/// Waits for the request's send slot; `None` when the route is not paced (one branch, no lock).
pub(crate) async fn pace(
    route: &Route,
    runtime: &RouteRuntime,
    metrics: &PacingMetrics,
) -> Result<Option<Duration>, ProxyError> {
    let Some(pacer) = &runtime.pacer else {
        return Ok(None);
    };
    let arrived = Instant::now();
    let mut now = arrived;
    for _ in 0..MAX_REBOOKINGS {
        let slot = lock(pacer)
            .reserve(now, arrived)
            .map_err(|refused| refusal(route, metrics, refused))?;
        if slot > now {
            let _waiting = Waiting::start(metrics, &route.name);
            tokio::time::sleep_until(slot.into()).await;
        }
        now = Instant::now();
        if !lock(pacer).held_at(now) {
            break;
        }
    }
    let waited = now.saturating_duration_since(arrived);
    metrics
        .wait
        .get_or_create(&labels(route))
        .observe(waited.as_secs_f64());
    Ok(Some(waited))
}

/// 429 with the time until the slot, counted; nothing was reserved.
fn refusal(route: &Route, metrics: &PacingMetrics, refused: Refused) -> ProxyError {
    metrics.refusals.get_or_create(&labels(route)).inc();
    let secs = refused.retry_after_secs();
    tracing::info!(target: LOG_TARGET, route = %route.name, retry_after = secs, "paced: the next send slot is beyond max_queue_wait; answered 429");
    ProxyError::new(
        ErrorKind::TooManyRequests,
        format!(
            "the tenant's request rate is reached: this route's next send slot is {secs}s away, beyond its max_queue_wait"
        ),
    )
    .with_retry_after(secs)
}

/// After the upstream's answer: its rate signal, if any, holds a paced route until the reset.
pub(crate) fn listen(
    route: &Route,
    runtime: &RouteRuntime,
    metrics: &PacingMetrics,
    status: StatusCode,
    headers: &HeaderMap,
) {
    let Some(pacer) = &runtime.pacer else {
        return;
    };
    let Some((reset, signal)) = rate_signal(status, headers) else {
        return;
    };
    metrics.rate_signal(&route.name, signal);
    tracing::info!(target: LOG_TARGET, route = %route.name, signal, hold_s = reset.as_secs(), "the upstream signalled its rate limit; holding the route's sends until its reset");
    let now = Instant::now();
    lock(pacer).hold(now, now + reset);
}

/// How long the upstream asks to be left alone, and which signal said so: a 429 with
/// `Retry-After` in seconds, or `ratelimit-remaining: 0` with `ratelimit-reset` in seconds.
/// (An HTTP-date `Retry-After` is not read: Netskope sends seconds.)
pub(crate) fn rate_signal(
    status: StatusCode,
    headers: &HeaderMap,
) -> Option<(Duration, &'static str)> {
    let seconds = |name: &str| {
        headers
            .get(name)?
            .to_str()
            .ok()?
            .trim()
            .parse::<u64>()
            .ok()
            .map(Duration::from_secs)
    };
    if status == StatusCode::TOO_MANY_REQUESTS
        && let Some(d) = seconds("retry-after")
    {
        return Some((d, "retry_after"));
    }
    if seconds("ratelimit-remaining") == Some(Duration::ZERO)
        && let Some(d) = seconds("ratelimit-reset")
    {
        return Some((d, "remaining_zero"));
    }
    None
}

fn labels(route: &Route) -> RouteLabels {
    RouteLabels {
        route: route.name.clone(),
    }
}

/// A poisoned pacer only means a request panicked while booking; its schedule is still valid.
fn lock(pacer: &Mutex<Pacer>) -> MutexGuard<'_, Pacer> {
    pacer.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Counts a request in `paced_requests_waiting` while it sleeps, the IdP going away included.
struct Waiting<'a>(&'a PacingMetrics, RouteLabels);

impl<'a> Waiting<'a> {
    fn start(metrics: &'a PacingMetrics, route: &str) -> Waiting<'a> {
        let labels = RouteLabels {
            route: route.to_string(),
        };
        metrics.waiting.get_or_create(&labels).inc();
        Waiting(metrics, labels)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.waiting.get_or_create(&self.1).dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::metrics::Metrics;
    use crate::proxy::testing::fixture;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn the_upstreams_rate_signals_are_read_and_nothing_else() {
        let tmr = StatusCode::TOO_MANY_REQUESTS;
        assert_eq!(
            rate_signal(tmr, &headers(&[("retry-after", " 2 ")])),
            Some((Duration::from_secs(2), "retry_after"))
        );
        let zero = headers(&[("ratelimit-remaining", "0"), ("ratelimit-reset", "3")]);
        assert_eq!(
            rate_signal(StatusCode::OK, &zero),
            Some((Duration::from_secs(3), "remaining_zero"))
        );
        for (status, h) in [
            // Retry-After on a 503 is about an outage, not the rate.
            (
                StatusCode::SERVICE_UNAVAILABLE,
                headers(&[("retry-after", "2")]),
            ),
            (
                tmr,
                headers(&[("retry-after", "Wed, 21 Oct 2015 07:28:00 GMT")]),
            ),
            (
                StatusCode::OK,
                headers(&[("ratelimit-remaining", "4"), ("ratelimit-reset", "3")]),
            ),
            (StatusCode::OK, headers(&[("ratelimit-remaining", "0")])),
            (tmr, HeaderMap::new()),
        ] {
            assert_eq!(rate_signal(status, &h), None, "{h:?}");
        }
    }

    #[tokio::test]
    async fn an_unpaced_route_passes_at_once_and_a_paced_one_refuses_beyond_its_wait() {
        let metrics = Metrics::new();
        let f = fixture("", "", "");
        let (route, runtime) = f.snapshot.route(0).unwrap();
        assert_eq!(pace(route, runtime, &metrics.pacing).await.unwrap(), None);

        let f = fixture(
            "",
            "",
            "max_requests_per_second = 1\nburst = 1\nmax_queue_wait = \"100ms\"",
        );
        let (route, runtime) = f.snapshot.route(0).unwrap();
        let first = pace(route, runtime, &metrics.pacing).await.unwrap();
        assert!(first.is_some_and(|w| w < Duration::from_millis(50)));
        let e = pace(route, runtime, &metrics.pacing).await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::TooManyRequests);
        let res = e.into_response();
        assert_eq!(res.headers()[http::header::RETRY_AFTER], "1");
        let labels = labels(route);
        assert_eq!(metrics.pacing.refusals.get_or_create(&labels).get(), 1);
    }
}
