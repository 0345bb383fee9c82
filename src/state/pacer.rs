//! A route's pacer: a reservation scheduler (GCRA, virtual scheduling) that gives each request the
//! next free send slot in arrival order, within `max_queue_wait`, and holds the route when the
//! upstream says so. Pure: time is passed in; the request path sleeps until the slot it got.
//!
//! A slot a waiter gave up (the IdP went away) is not returned: slots are positions in time, and
//! every later reservation already counts it. Rebooking them all would cost a queue walk per
//! cancellation; leaving the slot idle costs at most one interval in which the upstream gets less
//! than the rate, never more.

use std::time::{Duration, Instant};

use crate::config::Pacing;

/// Longest hold an upstream signal may impose: a bogus `Retry-After` must not wedge the route.
pub const MAX_HOLD: Duration = Duration::from_secs(600);

#[derive(Debug)]
pub struct Pacer {
    interval: Duration,
    /// How far ahead of the schedule a request may go: `(burst - 1) * interval`.
    tolerance: Duration,
    horizon: Duration,
    /// Theoretical arrival time of the next request at the configured rate.
    tat: Option<Instant>,
    /// Until when the upstream asked to be left alone.
    held_until: Option<Instant>,
}

/// A refusal: the slot is further away than `max_queue_wait`; `retry_after` is how far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    pub retry_after: Duration,
}

impl Refused {
    /// Whole seconds, rounded up, at least 1: what `Retry-After` says.
    pub fn retry_after_secs(&self) -> u64 {
        let d = self.retry_after;
        (d.as_secs() + u64::from(d.subsec_nanos() > 0)).max(1)
    }
}

impl Pacer {
    pub fn new(pacing: &Pacing) -> Pacer {
        Pacer {
            interval: pacing.interval,
            tolerance: pacing
                .interval
                .saturating_mul(pacing.burst.saturating_sub(1)),
            horizon: pacing.max_queue_wait,
            tat: None,
            held_until: None,
        }
    }

    /// The send slot of a request that arrived at `arrived`, asking at `now`: `max(now, tat -
    /// tolerance)`, and the schedule moves one interval on. Refused (nothing reserved) when the
    /// slot is more than `max_queue_wait` after `arrived`.
    pub fn reserve(&mut self, now: Instant, arrived: Instant) -> Result<Instant, Refused> {
        let tat = self.tat.map_or(now, |t| t.max(now));
        let slot = tat.checked_sub(self.tolerance).unwrap_or(now).max(now);
        if slot.saturating_duration_since(arrived) > self.horizon {
            return Err(Refused {
                retry_after: slot.saturating_duration_since(now),
            });
        }
        self.tat = Some(tat + self.interval);
        Ok(slot)
    }

    /// The upstream asked for no sends until `until` (at most [`MAX_HOLD`] from `now`): the next
    /// slot is pushed there, and the ones after it follow at the rate, not in a burst.
    pub fn hold(&mut self, now: Instant, until: Instant) {
        let until = until.min(now + MAX_HOLD);
        if self.held_until.is_some_and(|h| h >= until) {
            return;
        }
        self.held_until = Some(until);
        let pushed = until + self.tolerance;
        self.tat = Some(self.tat.map_or(pushed, |t| t.max(pushed)));
    }

    /// Whether a request whose slot came at `now` must wait for a hold that began after it booked.
    pub fn held_at(&self, now: Instant) -> bool {
        self.held_until.is_some_and(|h| h > now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn pacer(per_second: u32, burst: u32, max_queue_wait_ms: u64) -> Pacer {
        Pacer::new(&Pacing {
            interval: Duration::from_secs(1) / per_second,
            burst,
            max_queue_wait: MS * u32::try_from(max_queue_wait_ms).unwrap(),
        })
    }

    #[test]
    fn a_burst_goes_at_once_and_the_rest_follow_one_interval_apart() {
        // 10/s, burst 3: three slots now, then 100 ms apart.
        let mut p = pacer(10, 3, 1000);
        let t0 = Instant::now();
        let slots: Vec<Duration> = (0..6).map(|_| p.reserve(t0, t0).unwrap() - t0).collect();
        assert_eq!(slots, [0, 0, 0, 100, 200, 300].map(|ms| MS * ms));
        // After a quiet spell the burst is available again.
        let later = t0 + Duration::from_secs(5);
        assert_eq!(p.reserve(later, later).unwrap(), later);
    }

    #[test]
    fn a_slot_beyond_max_queue_wait_is_refused_and_reserves_nothing() {
        let mut p = pacer(10, 1, 250);
        let t0 = Instant::now();
        for i in 0..3 {
            assert_eq!(p.reserve(t0, t0).unwrap(), t0 + MS * (100 * i));
        }
        // 0, 100, 200 booked; 300 ms is beyond 250.
        let refused = p.reserve(t0, t0).unwrap_err();
        assert_eq!(refused.retry_after, MS * 300);
        assert_eq!(refused.retry_after_secs(), 1);
        // The refusal did not move the schedule: 50 ms on, the 300 ms slot fits.
        let t1 = t0 + MS * 50;
        assert_eq!(p.reserve(t1, t1).unwrap(), t0 + MS * 300);
    }

    #[test]
    fn first_come_first_served_whoever_asks() {
        // Arrival order is slot order: no caller can jump ahead of one that booked earlier.
        let mut p = pacer(2, 1, 10_000);
        let t0 = Instant::now();
        let a = p.reserve(t0, t0).unwrap();
        let b = p.reserve(t0 + MS, t0 + MS).unwrap();
        let c = p.reserve(t0 + MS * 2, t0 + MS * 2).unwrap();
        assert!(a < b && b < c);
        assert_eq!(c - a, MS * 1000);
    }

    #[test]
    fn a_hold_pushes_the_next_slot_to_the_reset_and_the_rest_follow_at_the_rate() {
        let mut p = pacer(10, 5, 3000);
        let t0 = Instant::now();
        p.hold(t0, t0 + Duration::from_secs(2));
        assert!(p.held_at(t0 + MS * 1999) && !p.held_at(t0 + Duration::from_secs(2)));
        let slots: Vec<Duration> = (0..3).map(|_| p.reserve(t0, t0).unwrap() - t0).collect();
        assert_eq!(slots, [2000, 2100, 2200].map(|ms| MS * ms));
        // Beyond max_queue_wait the answer is at once, with the time still to wait.
        let mut p = pacer(10, 5, 1000);
        p.hold(t0, t0 + Duration::from_millis(2500));
        let refused = p.reserve(t0, t0).unwrap_err();
        assert_eq!(refused.retry_after_secs(), 3);
        // An earlier reset never shortens a hold; a hold is bounded.
        p.hold(t0, t0 + MS);
        assert!(p.held_at(t0 + MS * 2400));
        p.hold(t0, t0 + Duration::from_secs(86_400));
        assert!(!p.held_at(t0 + MAX_HOLD));
    }

    #[test]
    fn a_rebooking_waiter_is_bounded_by_its_arrival() {
        let mut p = pacer(10, 1, 1000);
        let t0 = Instant::now();
        let first = p.reserve(t0, t0).unwrap();
        p.hold(t0, t0 + Duration::from_millis(1500));
        assert!(p.held_at(first));
        // It arrived at t0: a slot at 1.5 s is beyond its 1 s wait.
        assert!(p.reserve(first, t0).is_err());
        let t1 = t0 + MS * 600;
        assert_eq!(p.reserve(t1, t1).unwrap(), t0 + MS * 1500);
    }
}
