//! The lab, kept apart from the serving code: the embedded Netskope-like upstream, a small SCIM
//! client, dev certificates, and the `demo` driver.
pub mod client;
pub mod demo;
pub mod devcerts;
pub mod upstream;

pub use demo::{DEMO_ENTRA_TOKEN, DEMO_OKTA_TOKEN, run};
