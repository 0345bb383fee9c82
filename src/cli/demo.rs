//! `demo`: the lab's provisioning flow through a real proxy (see `crate::lab::demo`).

use std::net::SocketAddr;
use std::process::ExitCode;

use super::runtime::with_runtime;

pub(super) fn run(listen: SocketAddr, once: bool) -> ExitCode {
    with_runtime(async move {
        match crate::lab::run(listen, once).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("demo failed: {e}");
                ExitCode::FAILURE
            }
        }
    })
}
