//! scim-proxy: carries IdP SCIM traffic aimed at Netskope's retired `/SCIM/v2` endpoint to REST API v2.
//!
//! The folders follow the data flow (ARCHITECTURE.md): `cli` -> `server` -> `proxy` -> `state` ->
//! `upstream` / `observe` -> `body` / `scim` / `config` / `tls` / `auth` / `error`; `lab` is the
//! embedded upstream, dev certificates and demo, kept apart from the serving code.
//! `start` is what the binary and the tests both call: it binds the listeners and serves until
//! `shutdown`.

pub mod auth;
pub mod body;
pub mod cli;
pub mod config;
pub mod error;
pub mod lab;
pub mod observe;
pub mod proxy;
pub mod scim;
pub mod server;
pub mod state;
pub mod tls;
pub mod upstream;

pub use config::{Config, Problems};
pub use server::{Running, start};
pub use state::{Shared, Snapshot};
