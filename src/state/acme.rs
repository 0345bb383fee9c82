//! The ACME renewal loop: orders when no certificate is held, when the held one is for other names
//! or when renewal is due; retries with backoff; swaps a new certificate into the listener's cell
//! (next handshakes get it, open connections keep theirs); warns daily while a renewal fails and
//! the current certificate still serves. Replicas sharing `state_dir` take its lock to order, and
//! the others load the result.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio_util::sync::CancellationToken;

use crate::config::Acme;
use crate::state::Shared;
use crate::tls::acme::schedule::{self, Next};
use crate::tls::acme::{AcmeCell, Held, Store, held_from_pem, obtain};

/// Longest sleep between looks at the clock and the config.
const MAX_SLEEP: Duration = Duration::from_secs(3600);
/// An order that takes longer than this is abandoned (and retried with backoff).
const ORDER_DEADLINE: Duration = Duration::from_secs(600);
/// How often a replica that found `state_dir` locked looks again for the certificate.
const LOCKED_RETRY: Duration = Duration::from_secs(2);
const WARN_EVERY: Duration = Duration::from_secs(86_400);

pub async fn renew(shared: Arc<Shared>, shutdown: CancellationToken) {
    let mut failures = 0u32;
    let mut warned: Option<Instant> = None;
    loop {
        let snapshot = shared.state.load_full();
        let (Some(cell), Some(acme)) = (snapshot.acme.clone(), snapshot.config.listen.acme.clone())
        else {
            // Without [listen.acme] now; a reload may add it.
            drop(snapshot);
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(5)) => continue,
            }
        };
        drop(snapshot);
        let wait = match step(&shared, &cell, &acme).await {
            Step::Wait(at) => {
                failures = 0;
                at
            }
            Step::Locked => LOCKED_RETRY,
            Step::Failed(error) => {
                failures += 1;
                let backoff = schedule::backoff(failures);
                report_failure(&cell, &acme, &error, backoff, &mut warned);
                backoff
            }
        };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = cell.wake.notified() => {}
            _ = tokio::time::sleep(wait.min(MAX_SLEEP)) => {}
        }
    }
}

enum Step {
    /// Nothing to do for this long.
    Wait(Duration),
    /// Another process holds the order lock.
    Locked,
    Failed(String),
}

async fn step(shared: &Shared, cell: &AcmeCell, acme: &Acme) -> Step {
    let held = cell.current();
    if let Some(h) = &held {
        shared
            .metrics
            .acme_certificate(first(acme), h.info.not_after);
    }
    let now = SystemTime::now();
    let reason = match next_for(held.as_deref(), acme, now) {
        Next::RenewAt(at) => return Step::Wait(at.duration_since(now).unwrap_or_default()),
        Next::OrderNow(reason) => reason,
    };
    let store = Store::new(&acme.state_dir);
    if let Err(e) = store.ensure() {
        return Step::Failed(e);
    }
    // Another replica sharing state_dir may have renewed already.
    if let Some(stored) = newer_stored(&store, held.as_deref(), acme, now) {
        tracing::info!(
            not_after = %humantime::format_rfc3339_seconds(stored.info.not_after),
            "serving the certificate found in listen.acme.state_dir (ordered by another replica)"
        );
        install(shared, cell, acme, stored);
        return Step::Wait(Duration::ZERO);
    }
    let lock = match store.lock() {
        Ok(Some(lock)) => lock,
        Ok(None) => {
            tracing::info!(state_dir = %store.dir().display(), "another replica is ordering (order.lock); waiting for its certificate");
            return Step::Locked;
        }
        Err(e) => return Step::Failed(e),
    };
    tracing::info!(
        reason,
        domains = ?acme.domains,
        directory = %acme.directory,
        "ordering a certificate from the ACME CA"
    );
    let issued = match tokio::time::timeout(ORDER_DEADLINE, obtain(acme, cell, &store)).await {
        Ok(Ok(issued)) => issued,
        Ok(Err(e)) => {
            shared.metrics.acme_order(false);
            return Step::Failed(e);
        }
        Err(_) => {
            shared.metrics.acme_order(false);
            return Step::Failed(format!(
                "the order did not complete within {}",
                humantime::format_duration(ORDER_DEADLINE)
            ));
        }
    };
    let held = match held_from_pem(issued.chain_pem.as_bytes(), issued.key_pem.as_bytes()) {
        Ok(h) => h,
        Err(e) => {
            shared.metrics.acme_order(false);
            return Step::Failed(format!("the CA's certificate is not usable: {e}"));
        }
    };
    if let Err(e) = store.save_cert(&issued.chain_pem, &issued.key_pem) {
        // Served anyway; the next start orders again.
        tracing::warn!("the new certificate could not be stored: {e}");
    }
    drop(lock);
    shared.metrics.acme_order(true);
    tracing::info!(
        issuer = %held.info.issuer,
        names = ?held.names.dns,
        not_after = %humantime::format_rfc3339_seconds(held.info.not_after),
        "certificate issued by the ACME CA; serving it from the next handshake"
    );
    install(shared, cell, acme, held);
    Step::Wait(Duration::ZERO)
}

fn next_for(held: Option<&Held>, acme: &Acme, now: SystemTime) -> Next {
    schedule::next(
        held.map(|h| (&h.info, &h.names)),
        &acme.domains,
        acme.renew_before,
        now,
    )
}

/// The stored certificate when it differs from the held one and needs no order itself.
fn newer_stored(store: &Store, held: Option<&Held>, acme: &Acme, now: SystemTime) -> Option<Held> {
    let stored = store.load_cert().ok()??;
    let differs = held.is_none_or(|h| h.leaf != stored.leaf);
    let fine = matches!(next_for(Some(&stored), acme, now), Next::RenewAt(_));
    (differs && fine && stored.is_valid(now)).then_some(stored)
}

fn install(shared: &Shared, cell: &AcmeCell, acme: &Acme, held: Held) {
    shared
        .metrics
        .acme_certificate(first(acme), held.info.not_after);
    cell.install(held);
}

fn first(acme: &Acme) -> &str {
    acme.domains.first().map_or("", String::as_str)
}

/// Logs a failed order: an error while no valid certificate is held (IdPs cannot connect), else
/// a warning once a day until the held one expires.
fn report_failure(
    cell: &AcmeCell,
    acme: &Acme,
    error: &str,
    retry_in: Duration,
    warned: &mut Option<Instant>,
) {
    cell.set_error(error.to_string());
    let retry = humantime::format_duration(retry_in).to_string();
    match cell.current().filter(|h| h.is_valid(SystemTime::now())) {
        None => tracing::error!(
            directory = %acme.directory,
            retry_in = %retry,
            "no valid certificate: the ACME order failed: {error}"
        ),
        Some(held) => {
            let not_after = humantime::format_rfc3339_seconds(held.info.not_after).to_string();
            if warned.is_none_or(|t| t.elapsed() >= WARN_EVERY) {
                *warned = Some(Instant::now());
                tracing::warn!(
                    directory = %acme.directory,
                    retry_in = %retry,
                    not_after,
                    "certificate renewal failed; still serving the current certificate until it expires: {error}"
                );
            } else {
                tracing::info!(retry_in = %retry, "certificate renewal failed again: {error}");
            }
        }
    }
}
