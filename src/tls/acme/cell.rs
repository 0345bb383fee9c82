//! `AcmeCell`: what the ACME side shares with the listeners across reloads: the certificate being
//! served, the challenge answers of an order in flight, and why there is no valid certificate.
//! Challenge answers are also written to `state_dir/challenges/`, so that a replica sharing the
//! folder answers the CA's validation for an order another replica placed.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
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
    /// `state_dir/challenges`, once a config named it.
    shared_dir: ArcSwapOption<PathBuf>,
    /// The shared answer files this process wrote (removed when its order ends).
    written: Mutex<Vec<PathBuf>>,
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

    /// Where answers are shared with replicas (`state_dir/challenges`).
    pub fn share_challenges_in(&self, state_dir: &Path) {
        self.shared_dir
            .store(Some(Arc::new(state_dir.join("challenges"))));
    }

    /// `pem`: the certificate and its key, for replicas sharing `state_dir`.
    pub fn set_alpn_challenge(&self, domain: &str, key: Arc<CertifiedKey>, pem: &str) {
        let domain = domain.to_ascii_lowercase();
        self.share(&alpn_file(&domain), pem);
        lock(&self.alpn).insert(domain, key);
    }

    pub fn alpn_challenge(&self, domain: &str) -> Option<Arc<CertifiedKey>> {
        let domain = domain.to_ascii_lowercase();
        if let Some(key) = lock(&self.alpn).get(&domain) {
            return Some(key.clone());
        }
        let pem = self.shared(&alpn_file(&domain))?;
        match super::store::certified_key_from_pem(pem.as_bytes(), pem.as_bytes()) {
            Ok(key) => Some(Arc::new(key)),
            Err(e) => {
                tracing::warn!(domain, "a shared tls-alpn-01 answer is not usable: {e}");
                None
            }
        }
    }

    pub fn set_http_challenge(&self, token: &str, key_authorization: &str) {
        self.share(&http_file(token), key_authorization);
        lock(&self.http).insert(token.to_string(), key_authorization.to_string());
    }

    pub fn http_challenge(&self, token: &str) -> Option<String> {
        if let Some(answer) = lock(&self.http).get(token) {
            return Some(answer.clone());
        }
        self.shared(&http_file(token))
    }

    /// Forgets every challenge answer (the order is over, whichever way).
    pub fn clear_challenges(&self) {
        lock(&self.alpn).clear();
        lock(&self.http).clear();
        for path in lock(&self.written).drain(..) {
            let _ = std::fs::remove_file(path);
        }
    }

    /// Writes a shared answer; a failure only costs the replicas (this process answers from memory).
    fn share(&self, name: &Option<String>, text: &str) {
        let (Some(dir), Some(name)) = (self.shared_dir.load_full(), name) else {
            return;
        };
        let path = dir.join(name);
        let written = std::fs::create_dir_all(&*dir).and_then(|()| {
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create(true).truncate(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            std::io::Write::write_all(&mut options.open(&path)?, text.as_bytes())
        });
        match written {
            Ok(()) => lock(&self.written).push(path),
            Err(e) => tracing::warn!(
                "cannot share the challenge answer in {} (replicas sharing state_dir will not find it): {e}",
                path.display()
            ),
        }
    }

    fn shared(&self, name: &Option<String>) -> Option<String> {
        let dir = self.shared_dir.load_full()?;
        std::fs::read_to_string(dir.join(name.as_ref()?)).ok()
    }
}

/// The shared file of a tls-alpn-01 answer; None for a name that is not a plain DNS name.
fn alpn_file(domain: &str) -> Option<String> {
    let plain = !domain.is_empty()
        && !domain.starts_with('.')
        && domain
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-');
    plain.then(|| format!("tls-alpn-01.{domain}.pem"))
}

/// The shared file of an http-01 answer; None for a token that is not base64url.
fn http_file(token: &str) -> Option<String> {
    let plain = !token.is_empty()
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    plain.then(|| format!("http-01.{token}"))
}

/// A poisoned lock still holds consistent maps (each update is one insert or clear).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replica_sharing_state_dir_answers_the_other_ones_challenges_until_its_order_ends() {
        let dir = tempfile::tempdir().unwrap();
        let (ordering, other) = (AcmeCell::new(), AcmeCell::new());
        ordering.share_challenges_in(dir.path());
        other.share_challenges_in(dir.path());
        let (key, pem) = super::super::tls_alpn_certificate("scim.example.com", &[1; 32]).unwrap();
        ordering.set_alpn_challenge("scim.example.com", key.clone(), &pem);
        ordering.set_http_challenge("tok-1", "tok-1.thumbprint");
        assert_eq!(
            other.http_challenge("tok-1").as_deref(),
            Some("tok-1.thumbprint")
        );
        let found = other
            .alpn_challenge("SCIM.example.com")
            .expect("shared tls-alpn-01 answer");
        assert_eq!(found.cert, key.cert);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let file = dir.path().join("challenges/http-01.tok-1");
            assert_eq!(
                std::fs::metadata(file).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        ordering.clear_challenges();
        assert_eq!(other.http_challenge("tok-1"), None);
        assert!(other.alpn_challenge("scim.example.com").is_none());
    }

    #[test]
    fn names_that_are_not_plain_never_reach_the_file_system() {
        assert_eq!(alpn_file("../../etc/passwd"), None);
        assert_eq!(alpn_file(".hidden"), None);
        assert_eq!(http_file("a/b"), None);
        assert_eq!(http_file(".."), None);
        assert_eq!(
            alpn_file("a.example"),
            Some("tls-alpn-01.a.example.pem".into())
        );
    }
}
