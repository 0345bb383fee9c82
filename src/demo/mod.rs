//! `scim-proxy demo`: the embedded Netskope-like upstream, a small client, and the demo driver.
pub mod client;
mod flow;
pub mod upstream;

pub use flow::{DEMO_ENTRA_TOKEN, DEMO_OKTA_TOKEN, run};
