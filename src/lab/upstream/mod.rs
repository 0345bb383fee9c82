//! Embedded Netskope-like SCIM 2.0 server (`/api/v2/scim`) that backs `demo` and the proxy's tests.
//!
//! A request goes `server` (connection) → `request` (record, override, auth) → `routes` →
//! `handlers` / `list` on the in-memory `store`.

mod attrs;
mod auth;
mod ctx;
mod error;
mod filter;
mod framing;
mod handle;
mod handlers;
mod kind;
mod list;
mod overrides;
mod patch;
mod path;
mod projection;
mod query;
mod rate_limit;
mod request;
mod resource;
mod response;
mod routes;
mod server;
mod state;
mod store;
#[cfg(test)]
mod testkit;
mod time;

use std::sync::{Mutex, MutexGuard, PoisonError};

pub use handle::{Upstream, UpstreamOptions};
pub use overrides::Override;
pub use rate_limit::RateLimit;
pub use state::RecordedRequest;

const SCIM_JSON: &str = "application/scim+json;charset=utf-8";
// Netskope's documented error bodies are plain JSON.
const ERROR_JSON: &str = "application/json";
const ERROR_URN: &str = "urn:ietf:params:scim:api:messages:2.0:Error";
const LIST_URN: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
const PATCH_URN: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
const USER_URN: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const GROUP_URN: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
const ENTERPRISE_URN: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

/// A poisoned lock only means a test thread panicked; the data is still usable.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
