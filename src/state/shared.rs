//! `Shared`: the process state the listeners, the admin endpoints and the reloader hold: the
//! current snapshot, readiness, retry budget, metrics and the traffic log opened at start.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;

use super::RetryBudget;
use super::load::{build, read_config};
use super::snapshot::Snapshot;
use super::token_expiry::TokenExpiry;
use super::token_reread::TokenReloads;
use crate::config::{Config, Problems, TrafficSink};
use crate::observe::auth_watch::AuthWatch;
use crate::observe::metrics::{self, LogDrops, Metrics};
use crate::observe::status::StatusBoard;
use crate::observe::traffic_log::TrafficLog;

/// State shared by the listeners, the admin endpoints and the reloader.
pub struct Shared {
    pub state: ArcSwap<Snapshot>,
    /// Where the config came from, for reloads (None: built in memory).
    pub config_path: Option<PathBuf>,
    /// The proxy listener accepts and no shutdown has begun.
    pub accepting: AtomicBool,
    pub retry_budget: RetryBudget,
    pub metrics: Metrics,
    pub auth_watch: AuthWatch,
    /// What the admin status page shows: bounded, in memory, fed by the logging phase.
    pub status: StatusBoard,
    /// Opened once at start; moving it needs a restart.
    pub traffic: Option<TrafficLog>,
    /// One reload at a time for rotations found by an upstream 401.
    pub token_reloads: TokenReloads,
}

impl Shared {
    pub fn new(snapshot: Snapshot, config_path: Option<PathBuf>) -> std::io::Result<Arc<Shared>> {
        let traffic = open_traffic_log(&snapshot.config)?;
        let metrics = Metrics::new();
        metrics.declare_routes(&snapshot.config);
        Ok(Arc::new(Shared {
            state: ArcSwap::from_pointee(snapshot),
            config_path,
            accepting: AtomicBool::new(false),
            retry_budget: RetryBudget::new(Duration::from_secs(10), 10),
            metrics,
            auth_watch: AuthWatch::new(),
            status: StatusBoard::default(),
            traffic,
            token_reloads: TokenReloads::default(),
        }))
    }

    /// Log records dropped since start because a sink did not keep up.
    pub fn log_drops(&self) -> LogDrops {
        LogDrops {
            traffic: self.traffic.as_ref().map_or(0, TrafficLog::dropped),
            tracing: metrics::tracing_dropped(),
        }
    }

    pub fn is_ready(&self) -> bool {
        self.accepting.load(Ordering::Acquire)
    }

    /// Re-reads the config file and everything it names; on any problem the running snapshot stays.
    pub fn reload(&self) -> Result<(), Problems> {
        let result = self.reload_inner();
        self.metrics.reload(result.is_ok());
        if result.is_ok() {
            self.metrics.declare_routes(&self.state.load().config);
        }
        result
    }

    fn reload_inner(&self) -> Result<(), Problems> {
        let Some(path) = &self.config_path else {
            return Ok(());
        };
        let current = self.state.load_full();
        let config = read_config(path)?;
        warn_restart_needed(&current.config, &config);
        let next = build(config, Some(&current))?;
        log_rotated_without_a_date(&current, &next);
        let acme = next.acme.clone();
        self.state.store(Arc::new(next));
        // The renewal loop looks again: the names or the CA may have changed.
        if let Some(cell) = acme {
            cell.wake.notify_one();
        }
        Ok(())
    }
}

/// The traffic log the config names, opened once for the life of the process.
fn open_traffic_log(config: &Config) -> std::io::Result<Option<TrafficLog>> {
    let log = &config.log;
    Ok(match &log.traffic {
        TrafficSink::Off => None,
        TrafficSink::Stdout => Some(TrafficLog::stdout(log.queue_records)?),
        TrafficSink::File(path) => Some(
            TrafficLog::file_queued(path, log.max_file_bytes, log.keep_files, log.queue_records)
                .map_err(|e| {
                    std::io::Error::new(
                        e.kind(),
                        format!("cannot open the traffic log {}: {e}", path.display()),
                    )
                })?,
        ),
    })
}

/// A reload swaps the snapshot but not the sockets or the traffic log: say which changes wait for a
/// restart.
fn warn_restart_needed(current: &Config, next: &Config) {
    if next.listen.addr != current.listen.addr {
        tracing::warn!(
            old = %current.listen.addr,
            new = %next.listen.addr,
            "listen.addr changed: a restart is needed to move the listener; still listening on the old address"
        );
    }
    let http_addr = |c: &Config| match c.listen.acme.as_ref().map(|a| a.challenge) {
        Some(crate::config::AcmeChallenge::Http01(addr)) => Some(addr),
        _ => None,
    };
    if http_addr(next) != http_addr(current) {
        tracing::warn!(
            "listen.acme.http_addr or challenge changed: a restart is needed to move the http-01 listener"
        );
    }
    if next.admin.as_ref().map(|a| a.addr) != current.admin.as_ref().map(|a| a.addr) {
        tracing::warn!("admin.addr changed: a restart is needed to move the admin listener");
    }
    if next.log.traffic != current.log.traffic
        || next.log.max_file_bytes != current.log.max_file_bytes
        || next.log.keep_files != current.log.keep_files
        || next.log.queue_records != current.log.queue_records
    {
        tracing::warn!(
            "log.traffic, max_file_bytes, keep_files or queue_records changed: a restart is needed to reopen the traffic log"
        );
    }
}

/// A reload that changed a route's token but not its `token_expires`: say so once, now.
fn log_rotated_without_a_date(current: &Snapshot, next: &Snapshot) {
    for (route, runtime) in next.routes() {
        let Some(expiry) = &runtime.token_expiry else {
            continue;
        };
        let was_current = current
            .route_named(&route.name)
            .and_then(|(_, r)| r.token_expiry.as_ref())
            .is_some_and(TokenExpiry::applies);
        if !expiry.applies() && was_current {
            tracing::warn!(
                route = %route.name,
                token_expires = %humantime::format_rfc3339_seconds(expiry.date),
                "token rotated; update token_expires: it holds the previous token's date, which no longer applies"
            );
        }
    }
}
