//! Upstream 401/403 bursts per route, explained in the log once in a while: what an expired or
//! revoked v2 token, missing SCIM scopes or a non-allowlisted egress IP look like.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What a burst of upstream 401/403 most likely means, as the log and the status page say it.
pub const AUTH_BURST_MEANING: &str = "the upstream keeps refusing the REST API v2 token (401/403). Most likely: the v2 token expired or was revoked (Settings > Tools > REST API v2), it lacks the SCIM Users/Groups Read+Write scopes, or this proxy's egress IP is not on the tenant's IP allowlist (Settings > Administration > IP Allowlist)";

/// Upstream 401/403 bursts, explained once in a while per route: they are what an expired or
/// revoked v2 token, missing SCIM scopes, or a non-allowlisted egress IP look like.
pub struct AuthWatch {
    state: Mutex<HashMap<String, Burst>>,
}

/// Per route: when the current window began, refusals in it, when it was last explained.
type Burst = (Instant, u32, Option<Instant>);

impl Default for AuthWatch {
    fn default() -> Self {
        AuthWatch::new()
    }
}

impl AuthWatch {
    /// Refusals within this long of the first of them make a burst (the status page uses the same).
    pub(crate) const WINDOW: Duration = Duration::from_secs(60);
    pub(crate) const BURST: u32 = 3;
    const QUIET: Duration = Duration::from_secs(300);

    pub fn new() -> AuthWatch {
        AuthWatch {
            state: Mutex::new(HashMap::new()),
        }
    }

    pub fn record(&self, route: &str, status: u16) {
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        let now = Instant::now();
        let entry = state.entry(route.to_string()).or_insert((now, 0, None));
        if now.duration_since(entry.0) > Self::WINDOW {
            *entry = (now, 0, entry.2);
        }
        entry.1 += 1;
        if entry.1 >= Self::BURST
            && entry
                .2
                .is_none_or(|last| now.duration_since(last) > Self::QUIET)
        {
            entry.2 = Some(now);
            tracing::error!(
                target: "scim_proxy::access",
                route,
                status,
                count = entry.1,
                "{}",
                AUTH_BURST_MEANING
            );
        }
    }
}
