//! The shape of `/status.json` (documented in docs/status.md); the HTML page renders the same
//! document. Built by the admin listener from the board and the running snapshot.

use std::collections::HashMap;

use serde::Serialize;

use super::{Counts, Entry, Failure};

/// What the board knows (its half of the document).
#[derive(Debug, Default, Clone)]
pub struct Activity {
    pub idps: Vec<IdpActivity>,
    pub routes: HashMap<String, RouteActivity>,
    pub failures: Vec<Failure>,
    pub out_of_sync: Vec<Entry>,
    pub out_of_sync_evicted: u64,
}

/// The whole `/status.json` document.
#[derive(Debug, Clone, Serialize)]
pub struct StatusDoc {
    /// Format version of this document.
    pub version: u32,
    pub generated_at: String,
    pub ready: bool,
    /// Why the proxy is not ready, one line each (as `/readyz`).
    pub problems: Vec<String>,
    /// What to act on although it serves (as `/readyz`).
    pub warnings: Vec<String>,
    /// `[log] pii`: how subjects are shown here (`hash`, `plain`, `omit`).
    pub pii: &'static str,
    /// Where the traffic log goes: `off`, `stdout` or its file.
    pub traffic_log: String,
    pub certificate: Option<CertStatus>,
    pub routes: Vec<RouteStatus>,
    /// The last 50 failures, newest first.
    pub failures: Vec<Failure>,
    pub out_of_sync: OutOfSyncStatus,
}

/// The serving certificate.
#[derive(Debug, Clone, Serialize)]
pub struct CertStatus {
    pub subject: String,
    pub not_after: String,
    /// Negative once expired.
    pub seconds_left: i64,
    /// `ok`, `soon` (inside 14 days) or `expired`.
    pub state: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct RouteStatus {
    pub name: String,
    pub upstream: String,
    /// `bind <ip>`, `via <proxy url>`, or `default` (the host's own route).
    pub egress: String,
    pub token: TokenStatus,
    /// The last upstream 2xx on this route.
    pub last_upstream_success: Option<String>,
    pub auth_burst: Option<AuthBurst>,
    pub idps: Vec<IdpActivity>,
}

/// The route's REST API v2 token: where it is read from and when it expires. Never the token.
#[derive(Debug, Clone, Serialize)]
pub struct TokenStatus {
    pub source: String,
    /// `token_expires`, when configured.
    pub expires: Option<String>,
    /// Negative once expired.
    pub seconds_left: Option<i64>,
    pub warn_days: u64,
    /// `ok`, `soon` (inside `token_warn_days`), `expired`, `stale` (the token changed but
    /// `token_expires` did not) or `unknown` (no `token_expires`).
    pub state: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct RouteActivity {
    pub last_upstream_success: Option<String>,
    pub auth_burst: Option<AuthBurst>,
}

/// The latest run of upstream 401/403 that made a burst (3 within a minute).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuthBurst {
    pub window_start: String,
    pub last: String,
    pub count: u32,
    pub last_status: u16,
    pub meaning: &'static str,
}

/// One IdP (a route's client; `-` for requests no client token matched).
#[derive(Debug, Clone, Serialize)]
pub struct IdpActivity {
    pub route: String,
    pub client: String,
    pub last_seen: Option<String>,
    pub last_hour: Counts,
    pub last_day: Counts,
    pub ops: Vec<OpCounts>,
    pub last_failure: Option<Failure>,
}

#[derive(Debug, Clone, Serialize)]
pub struct OpCounts {
    pub op: String,
    pub last_hour: Counts,
    pub last_day: Counts,
}

#[derive(Debug, Clone, Serialize)]
pub struct OutOfSyncStatus {
    pub count: usize,
    /// How many the live list keeps (absent in `report --out-of-sync`, which keeps all).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
    /// Pushed out by newer ones since start (the traffic log still has them).
    pub evicted: u64,
    /// Per IdP with resources out of sync: how many, and how to push them again.
    pub resync: Vec<Resync>,
    /// Newest failure first.
    pub entries: Vec<Entry>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Resync {
    pub route: String,
    pub client: String,
    pub count: usize,
    pub what_to_do: &'static str,
}

/// Per IdP, how many entries and what to do, in the order IdPs first appear.
pub fn resync(entries: &[Entry]) -> Vec<Resync> {
    let mut out: Vec<Resync> = Vec::new();
    for e in entries {
        let client = e.last.client.clone().unwrap_or_else(|| "-".to_owned());
        match out
            .iter_mut()
            .find(|r| r.route == e.route && r.client == client)
        {
            Some(r) => r.count += 1,
            None => out.push(Resync {
                what_to_do: what_to_do(&client),
                route: e.route.clone(),
                client,
                count: 1,
            }),
        }
    }
    out
}

/// How an admin makes the IdP send its changes again, guessed from the client's name.
pub fn what_to_do(client: &str) -> &'static str {
    let name = client.to_ascii_lowercase();
    if name.contains("entra") || name.contains("azure") || name.contains("aad") {
        "Entra ID: Enterprise applications > the app > Provisioning > Provision on demand for each user listed (or Restart provisioning to retry all)"
    } else if name.contains("okta") {
        "Okta: Applications > the app > Provisioning tasks (Dashboard > Tasks) > Retry failed tasks; or Push Groups > Push now"
    } else if name.contains("jumpcloud") {
        "JumpCloud: SSO Applications > the app > Identity Management > re-sync (deactivate and reactivate Identity Management, or re-save the user/group bindings)"
    } else {
        "Re-provision each listed user or group from the IdP: Entra ID \"Provision on demand\", Okta \"Retry failed tasks\", JumpCloud Identity Management re-sync"
    }
}
