//! The running state: config file -> validated config -> everything it points at (tokens,
//! certificates, roots, egress), collected into one immutable `Snapshot`. `Shared` holds the
//! current snapshot for the listeners, the admin endpoints and the reloader; a reload builds a new
//! one and swaps it in whole.

pub mod acme;
mod load;
pub mod pacer;
pub mod readiness;
pub mod reload;
mod retry_budget;
mod shared;
mod snapshot;
pub mod token_expiry;
pub mod token_reread;
mod tokens;
pub mod v2_token;
pub mod watch;

pub use load::{build, check_local_address, read_config};
pub use retry_budget::RetryBudget;
pub use shared::Shared;
pub use snapshot::{RouteRuntime, Snapshot};
pub use tokens::read_token;
