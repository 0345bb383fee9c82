//! The proxy's integration tests, one module per concern, over real sockets on loopback with a
//! run-time test CA.
//!
//! Every test starts its own proxy in front of its own embedded upstream(s) and stops it: in process
//! through `tests/support`, or as a `scim-proxy` child process where what is tested is the binary's
//! command line, exit status or tracing output. Where the proxy answers itself, the test checks the
//! SCIM Error body and that the upstream got nothing; each refusal also checks that the proxy still
//! serves the next request. Time assertions are only of the "it closed within N s" kind, with generous
//! bounds for a loaded 2-core machine.
//!
//! Tests that need a process of their own are separate binaries: `tests/log_sink.rs` (stdout and
//! stderr pipes), `tests/interop.rs` (external scim2 tools) and `tests/config_example.rs`.

#[path = "../support/mod.rs"]
mod support;

mod acme;
mod auth;
mod check_live;
mod cli;
mod client_address;
mod egress;
mod framing;
mod limits;
mod metrics;
mod pacing;
mod readiness;
mod reload;
mod report;
mod rewriting;
mod routing;
mod secrets;
mod status;
mod tls;
mod traffic_log;
mod upstream_faults;
