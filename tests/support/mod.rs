//! Shared harness for the integration tests: a throwaway PKI, embedded upstreams, a config written to
//! a temp dir and loaded the way `serve` loads it, TLS clients, raw TLS/TCP helpers, tiny raw servers
//! for faults the embedded upstream cannot produce, child processes, and readers of what the proxy
//! wrote.
#![allow(dead_code)]

mod admin;
mod browser;
mod builder;
mod cli;
mod idp;
mod metrics;
mod pebble;
mod ports;
mod proxy;
mod raw_http;
mod raw_server;
mod scim;
mod time;
mod tinyproxy;
mod tls;
mod traffic;

// Each binary uses its own part of the harness.
#[allow(unused_imports)]
pub use {
    admin::*, browser::*, builder::*, cli::*, idp::*, metrics::*, pebble::*, ports::*, proxy::*,
    raw_http::*, raw_server::*, scim::*, time::*, tinyproxy::*, tls::*, traffic::*,
};
