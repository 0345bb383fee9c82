//! `check`: load and validate everything the config names, print the summary and every
//! problem or warning, and with `--live` try each route's upstream.

use std::process::ExitCode;

use crate::config::Config;
use crate::state;

use super::runtime::current_thread;
use super::summary::summary_lines;

/// Loads everything; prints every problem, or a summary of the routes.
pub(super) fn load(path: &std::path::Path) -> Result<crate::Snapshot, crate::Problems> {
    let config = state::read_config(path)?;
    state::build(config, None)
}

pub(super) fn run(path: &std::path::Path, live: Option<std::time::Duration>) -> ExitCode {
    // Loading builds a client and TLS acceptor; that needs a runtime context for the timer.
    let rt = match current_thread() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let _guard = rt.enter();
    match load(path) {
        Ok(snapshot) => {
            print_summary(&snapshot.config);
            warn_unusual_upstream_paths(&snapshot.config);
            warn_open_admin(&snapshot.config);
            let expired = report_token_expiry(&snapshot);
            let live_ok = match live {
                None => true,
                Some(timeout) => {
                    println!();
                    let acme_ok = match &snapshot.config.listen.acme {
                        Some(acme) => {
                            let acme =
                                rt.block_on(crate::cli::check_live::acme::check(acme, timeout));
                            print!("{}", crate::cli::check_live::acme::render(&acme));
                            acme.ok
                        }
                        None => true,
                    };
                    let checks = rt.block_on(crate::cli::check_live::run(&snapshot, timeout));
                    print!("{}", crate::cli::check_live::render(&checks));
                    acme_ok && checks.iter().all(|c| c.ok)
                }
            };
            if live_ok && !expired {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(problems) => {
            for p in &problems.0 {
                eprintln!("{p}");
            }
            eprintln!(
                "{} problem{} found; nothing was started",
                problems.0.len(),
                if problems.0.len() == 1 { "" } else { "s" }
            );
            ExitCode::from(2)
        }
    }
}

/// Prints each route's token expiry finding: an error (returns true) for a date in the past, a
/// warning inside `token_warn_days`. Serving still starts: the upstream decides.
fn report_token_expiry(snapshot: &crate::Snapshot) -> bool {
    let now = std::time::SystemTime::now();
    let mut expired = false;
    for (i, (route, runtime)) in snapshot.routes().enumerate() {
        let Some(expiry) = &runtime.token_expiry else {
            continue;
        };
        let state = expiry.state(now, route.token_warn);
        let Some(what) = expiry.warning(&route.name, &route.token, now, route.token_warn) else {
            continue;
        };
        let key = format!("routes[{i}].token_expires");
        if matches!(
            state,
            crate::state::token_expiry::ExpiryState::Expired { .. }
        ) {
            expired = true;
            eprintln!(
                "{}: {key}: in the past: {what}",
                snapshot.config.source.display()
            );
        } else {
            eprintln!(
                "warning: {}: {key}: {what}",
                snapshot.config.source.display()
            );
        }
    }
    expired
}

/// Netskope's SCIM API lives at `/api/v2/scim`; another path is allowed (a gateway in front, a
/// lab) but is the first thing to suspect, so plain `check` says so before `--live` would.
fn warn_unusual_upstream_paths(c: &Config) {
    for (i, r) in c.routes.iter().enumerate() {
        if !r.upstream.path.eq_ignore_ascii_case("/api/v2/scim") {
            eprintln!(
                "warning: {}: routes[{i}].upstream: {} does not end in /api/v2/scim, where Netskope serves SCIM",
                c.source.display(),
                r.upstream.url()
            );
        }
    }
}

/// The status page names users and failures: off loopback, it should need a token.
fn warn_open_admin(c: &Config) {
    if let Some(a) = &c.admin
        && !a.addr.ip().is_loopback()
        && a.token_sha256.is_none()
    {
        eprintln!(
            "warning: {}: admin.token_sha256: the admin listener {} is not on a loopback address and has no token: anyone who reaches it reads the status page (failures, who is out of sync) and /metrics; set token_sha256 (see `scim-proxy hash-token`) or bind it to 127.0.0.1",
            c.source.display(),
            a.addr
        );
    }
}

fn print_summary(c: &Config) {
    println!("{}: OK", c.source.display());
    for line in summary_lines(c, c.listen.addr, c.admin.as_ref().map(|a| a.addr)) {
        println!("{line}");
    }
}
