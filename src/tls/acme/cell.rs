//! `AcmeCell`: what the ACME side shares with the listeners across reloads: the certificate being
//! served, the challenge answers of an order in flight, and why there is no valid certificate.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use arc_swap::ArcSwapOption;
use rustls::sign::CertifiedKey;
use tokio::sync::Notify;

use crate::tls::{CertInfo, CertNames};

/// A certificate the proxy serves: the rustls key and what operators see of it.
pub struct Held {
    pub key: Arc<CertifiedKey>,
    pub info: CertInfo,
    pub names: CertNames,
    /// The leaf's DER, to tell a renewal's certificate from the one before.
    pub leaf: Vec<u8>,
}

impl Held {
    pub fn is_valid(&self, now: SystemTime) -> bool {
        now >= self.info.not_before && now <= self.info.not_after
    }
}

/// Shared by every snapshot built from an `[listen.acme]` config (a reload keeps it).
#[derive(Default)]
pub struct AcmeCell {
    current: ArcSwapOption<Held>,
    /// tls-alpn-01: domain -> challenge certificate, while its order is in flight.
    alpn: Mutex<HashMap<String, Arc<CertifiedKey>>>,
    /// http-01: token -> key authorization, while its order is in flight.
    http: Mutex<HashMap<String, String>>,
    /// Why the last order failed (None: none failed since the last success).
    last_error: Mutex<Option<String>>,
    /// Wakes the renewal loop after a reload (the names may have changed).
    pub wake: Notify,
}

impl AcmeCell {
    pub fn new() -> Arc<AcmeCell> {
        Arc::new(AcmeCell::default())
    }

    pub fn current(&self) -> Option<Arc<Held>> {
        self.current.load_full()
    }

    /// Serves `held` from the next handshake on; open connections keep the one they have.
    pub fn install(&self, held: Held) {
        self.current.store(Some(Arc::new(held)));
        *lock(&self.last_error) = None;
    }

    pub fn set_error(&self, error: String) {
        *lock(&self.last_error) = Some(error);
    }

    pub fn last_error(&self) -> Option<String> {
        lock(&self.last_error).clone()
    }

    pub fn set_alpn_challenge(&self, domain: &str, key: Arc<CertifiedKey>) {
        lock(&self.alpn).insert(domain.to_ascii_lowercase(), key);
    }

    pub fn alpn_challenge(&self, domain: &str) -> Option<Arc<CertifiedKey>> {
        lock(&self.alpn).get(&domain.to_ascii_lowercase()).cloned()
    }

    pub fn set_http_challenge(&self, token: &str, key_authorization: &str) {
        lock(&self.http).insert(token.to_string(), key_authorization.to_string());
    }

    pub fn http_challenge(&self, token: &str) -> Option<String> {
        lock(&self.http).get(token).cloned()
    }

    /// Forgets every challenge answer (the order is over, whichever way).
    pub fn clear_challenges(&self) {
        lock(&self.alpn).clear();
        lock(&self.http).clear();
    }
}

/// A poisoned lock still holds consistent maps (each update is one insert or clear).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
