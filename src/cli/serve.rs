//! `serve`: run the proxy until SIGTERM/SIGINT; SIGHUP reloads.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::state;

use super::check::load;
use super::runtime::with_runtime_threads;
use super::summary::summary_lines;

/// The runtime is sized before it starts: `[runtime] worker_threads` is read first.
pub(super) fn run(config: PathBuf) -> ExitCode {
    let threads = state::read_config(&config)
        .ok()
        .and_then(|c| c.worker_threads);
    with_runtime_threads(threads, serve(config))
}

async fn serve(path: PathBuf) -> ExitCode {
    let snapshot = match load(&path) {
        Ok(s) => s,
        Err(problems) => {
            for p in &problems.0 {
                tracing::error!("{p}");
            }
            return ExitCode::from(2);
        }
    };
    let running = match crate::start(snapshot, Some(path.clone())).await {
        Ok(r) => r,
        Err(e) => {
            // Plainly on stderr too: the admin reads this line, not a log pipeline.
            eprintln!("{}: {e}", path.display());
            tracing::error!("{}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    };
    let snapshot = running.shared.state.load();
    for line in summary_lines(&snapshot.config, running.proxy_addr, running.admin_addr) {
        tracing::info!("{line}");
    }
    let admin = running
        .admin_addr
        .map_or_else(|| "none".to_string(), |a| a.to_string());
    tracing::info!(addr = %running.proxy_addr, admin = %admin, config = %path.display(), "scim-proxy serving");
    if let Err(e) = wait_for_signals(&running).await {
        tracing::error!("cannot install signal handlers: {e}");
        running.shutdown();
    }
    running.wait().await;
    tracing::info!("scim-proxy stopped");
    ExitCode::SUCCESS
}

#[cfg(unix)]
async fn wait_for_signals(running: &crate::Running) -> std::io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    loop {
        tokio::select! {
            _ = term.recv() => { tracing::info!("SIGTERM: draining"); break; }
            _ = int.recv() => { tracing::info!("SIGINT: draining"); break; }
            _ = hup.recv() => crate::state::reload::reload_and_log(&running.shared, "SIGHUP"),
        }
    }
    running.shutdown();
    Ok(())
}

#[cfg(not(unix))]
async fn wait_for_signals(running: &crate::Running) -> std::io::Result<()> {
    tokio::signal::ctrl_c().await?;
    running.shutdown();
    Ok(())
}
