//! A tenant-wide rate limit as Netskope's REST API v2 keeps one: a fixed window of `limit`
//! requests, 429 with `Retry-After` above it, and `ratelimit-limit`, `ratelimit-remaining`,
//! `ratelimit-reset` (seconds) on every answer.

use std::time::{Duration, Instant};

use http::HeaderValue;
use http::header::RETRY_AFTER;

use super::response::Resp;

/// `limit` requests per `window`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    pub limit: u32,
    pub window: Duration,
}

/// The window now and what was used of it.
#[derive(Debug)]
pub(super) struct Limiter {
    rule: RateLimit,
    started: Option<Instant>,
    used: u32,
}

/// One request's share: let through or not, what is left and when the window resets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Verdict {
    pub allowed: bool,
    pub remaining: u32,
    /// Whole seconds until the window resets, rounded up.
    pub reset_secs: u64,
}

impl Limiter {
    pub(super) fn new(rule: RateLimit) -> Limiter {
        Limiter {
            rule,
            started: None,
            used: 0,
        }
    }

    /// Counts a request arriving at `now`; a refused one does not use the window.
    pub(super) fn take(&mut self, now: Instant) -> Verdict {
        let started = match self.started {
            Some(s) if now.saturating_duration_since(s) < self.rule.window => s,
            _ => {
                self.used = 0;
                now
            }
        };
        self.started = Some(started);
        let allowed = self.used < self.rule.limit;
        if allowed {
            self.used += 1;
        }
        let left = (started + self.rule.window).saturating_duration_since(now);
        Verdict {
            allowed,
            remaining: self.rule.limit - self.used,
            reset_secs: (left.as_secs() + u64::from(left.subsec_nanos() > 0)).max(1),
        }
    }
}

impl Verdict {
    /// The `ratelimit-*` headers, and `Retry-After` on a refusal.
    pub(super) fn stamp(&self, resp: &mut Resp) {
        let h = resp.headers_mut();
        h.insert("ratelimit-remaining", HeaderValue::from(self.remaining));
        h.insert("ratelimit-reset", HeaderValue::from(self.reset_secs));
        if !self.allowed {
            h.insert(RETRY_AFTER, HeaderValue::from(self.reset_secs));
        }
    }
}

impl Limiter {
    pub(super) fn limit(&self) -> u32 {
        self.rule.limit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_lets_limit_requests_through_and_resets() {
        let mut l = Limiter::new(RateLimit {
            limit: 2,
            window: Duration::from_secs(1),
        });
        let t0 = Instant::now();
        let v: Vec<(bool, u32)> = (0..3)
            .map(|_| l.take(t0))
            .map(|v| (v.allowed, v.remaining))
            .collect();
        assert_eq!(v, [(true, 1), (true, 0), (false, 0)]);
        assert_eq!(l.take(t0 + Duration::from_millis(400)).reset_secs, 1);
        let next = l.take(t0 + Duration::from_secs(1));
        assert!(next.allowed && next.remaining == 1);
    }
}
