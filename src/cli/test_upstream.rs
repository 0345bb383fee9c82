//! `test-upstream`: the embedded Netskope-like SCIM upstream served on its own, until a signal.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use super::runtime::with_runtime;
use crate::lab::upstream::{RateLimit, Upstream, UpstreamOptions};

/// What `test-upstream` was asked for on the command line.
pub(super) struct Options {
    pub(super) listen: SocketAddr,
    /// `--cert` and `--key`; plain HTTP without.
    pub(super) tls: Option<(PathBuf, PathBuf)>,
    pub(super) token_file: PathBuf,
    pub(super) base_path: String,
    /// Print each request on stdout.
    pub(super) log_requests: bool,
    /// `--rate-limit`: requests per second.
    pub(super) rate_limit: Option<u32>,
    /// `--reread-token`: the token file read on every request.
    pub(super) reread_token: bool,
}

/// Serves until SIGTERM or Ctrl-C.
pub(super) fn run(options: Options) -> ExitCode {
    with_runtime(serve(options))
}

async fn serve(options: Options) -> ExitCode {
    let Options {
        listen,
        tls,
        token_file,
        base_path,
        log_requests,
        rate_limit,
        reread_token,
    } = options;
    let token = match read_token(&token_file) {
        Ok(t) => t,
        Err(code) => return code,
    };
    let tls = match tls.map(|(cert, key)| server_tls(&cert, &key)).transpose() {
        Ok(tls) => tls,
        Err(code) => return code,
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let options = UpstreamOptions {
        bind: listen,
        tls,
        base_path: base_path.clone(),
        tokens: vec![token],
    };
    let upstream = match Upstream::start(options).await {
        Ok(u) => u,
        Err(e) => {
            eprintln!("cannot listen on {listen}: {e}");
            return ExitCode::FAILURE;
        }
    };
    upstream.log_requests(log_requests);
    upstream.set_rate_limit(rate_limit.map(|limit| RateLimit {
        limit,
        window: std::time::Duration::from_secs(1),
    }));
    if reread_token {
        upstream.set_token_file(Some(token_file.clone()));
    }
    println!(
        "test upstream serving {scheme}://{}{base_path} (Ctrl-C or SIGTERM to stop)",
        upstream.addr()
    );
    wait_for_stop().await;
    upstream.shutdown().await;
    ExitCode::SUCCESS
}

/// The v2 token it demands, white space trimmed; a missing or empty file is a usage problem (2).
fn read_token(path: &Path) -> Result<String, ExitCode> {
    match std::fs::read_to_string(path) {
        Ok(t) if !t.trim().is_empty() => Ok(t.trim().to_string()),
        Ok(_) => {
            eprintln!("{}: empty token file", path.display());
            Err(ExitCode::from(2))
        }
        Err(e) => {
            eprintln!("{}: {e}", path.display());
            Err(ExitCode::from(2))
        }
    }
}

/// The TLS config from `--cert` and `--key`, read as `serve` reads its own.
fn server_tls(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, ExitCode> {
    crate::tls::read_certs(cert)
        .and_then(|c| crate::tls::server_config_from(c, crate::tls::read_key(key)?))
        .map_err(|e| {
            eprintln!("{e}");
            ExitCode::from(2)
        })
}

#[cfg(unix)]
async fn wait_for_stop() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(not(unix))]
async fn wait_for_stop() {
    let _ = tokio::signal::ctrl_c().await;
}
