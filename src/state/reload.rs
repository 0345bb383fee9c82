//! Reload on file change: polls the config, certificate, key, CA and token files and reloads the
//! whole state when any of them changes. A refused reload keeps the running state.
//!
//! Polling metadata (not inotify) follows Kubernetes Secret updates, which swap a symlink two
//! levels up, and editors that replace files by rename.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use tokio_util::sync::CancellationToken;

use crate::config::TokenSource;
use crate::state::{Shared, Snapshot};

/// Every file a snapshot was built from.
pub fn watched_files(snapshot: &Snapshot, config_path: Option<&PathBuf>) -> Vec<PathBuf> {
    let c = &snapshot.config;
    let mut files: Vec<PathBuf> = config_path.into_iter().cloned().collect();
    if let Some(tls) = &c.listen.tls {
        files.push(tls.cert.clone());
        files.push(tls.key.clone());
    }
    files.extend(c.egress.ca_file.iter().cloned());
    for r in &c.routes {
        if let TokenSource::File(p) = &r.token {
            files.push(p.clone());
        }
    }
    files
}

/// What changes when a file's content is replaced (following symlinks): mtime, size, inode.
type Stamp = Option<(SystemTime, u64, u64)>;

fn stamp(path: &PathBuf) -> Stamp {
    let m = std::fs::metadata(path).ok()?;
    #[cfg(unix)]
    let ino = std::os::unix::fs::MetadataExt::ino(&m);
    #[cfg(not(unix))]
    let ino = 0;
    Some((m.modified().ok()?, m.len(), ino))
}

fn stamps(files: &[PathBuf]) -> Vec<(PathBuf, Stamp)> {
    files.iter().map(|f| (f.clone(), stamp(f))).collect()
}

/// Reloads (logging the outcome) and counts it.
pub fn reload_and_log(shared: &Shared, why: &str) {
    match shared.reload() {
        Ok(()) => tracing::info!(trigger = why, "configuration reloaded"),
        Err(problems) => {
            for p in &problems.0 {
                tracing::error!(
                    trigger = why,
                    "reload refused, still serving the previous configuration: {p}"
                );
            }
        }
    }
}

/// Polls until `shutdown`. The files to watch are re-derived after every reload.
pub async fn watch(shared: Arc<Shared>, shutdown: CancellationToken) {
    let mut seen = stamps(&watched_files(
        &shared.state.load(),
        shared.config_path.as_ref(),
    ));
    loop {
        let interval = shared.state.load().config.reload.interval;
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
        if !shared.state.load().config.reload.watch {
            continue;
        }
        let files: Vec<PathBuf> = seen.iter().map(|(f, _)| f.clone()).collect();
        let now = stamps(&files);
        if now == seen {
            continue;
        }
        let changed: Vec<String> = now
            .iter()
            .zip(&seen)
            .filter(|(a, b)| a.1 != b.1)
            .map(|(a, _)| a.0.display().to_string())
            .collect();
        reload_and_log(&shared, &format!("file change: {}", changed.join(", ")));
        // Remember what was seen even when the reload was refused: the next change retries.
        seen = stamps(&watched_files(
            &shared.state.load(),
            shared.config_path.as_ref(),
        ));
        for (f, s) in &now {
            if let Some(entry) = seen.iter_mut().find(|(g, _)| g == f) {
                entry.1 = *s;
            }
        }
    }
}
