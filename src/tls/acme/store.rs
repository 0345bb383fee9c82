//! `state_dir`: the ACME account, the certificate chain and its key, and the lock that lets
//! replicas sharing the folder order one at a time. The folder is 0700, every file 0600, and each
//! file is replaced by rename so a reader never sees half of one.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use instant_acme::AccountCredentials;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};

use super::Held;
use crate::tls::{cert_info, cert_names};

const ACCOUNT: &str = "account.json";
const CERT: &str = "cert.pem";
const KEY: &str = "key.pem";
const LOCK: &str = "order.lock";
/// A lock older than this was left by a replica that died mid-order.
const LOCK_STALE: Duration = Duration::from_secs(600);

/// The account as stored: the directory it belongs to, and its key and URL.
#[derive(Serialize, Deserialize)]
struct StoredAccount {
    directory: String,
    credentials: AccountCredentials,
}

pub struct Store {
    dir: PathBuf,
}

impl Store {
    pub fn new(dir: &Path) -> Store {
        Store {
            dir: dir.to_path_buf(),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Creates the folder (0700) if missing and tightens an existing one.
    pub fn ensure(&self) -> Result<(), String> {
        let why = |e: std::io::Error| format!("state_dir {}: {e}", self.dir.display());
        std::fs::create_dir_all(&self.dir).map_err(why)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&self.dir, std::fs::Permissions::from_mode(0o700))
                .map_err(why)?;
        }
        Ok(())
    }

    /// The stored certificate, or None when there is none yet.
    pub fn load_cert(&self) -> Result<Option<Held>, String> {
        let (cert, key) = (self.dir.join(CERT), self.dir.join(KEY));
        if !cert.exists() && !key.exists() {
            return Ok(None);
        }
        let read =
            |p: &Path| std::fs::read(p).map_err(|e| format!("cannot read {}: {e}", p.display()));
        held_from_pem(&read(&cert)?, &read(&key)?)
            .map(Some)
            .map_err(|e| format!("{}: {e}", cert.display()))
    }

    /// Stores a new chain and key (the key first: a reader that finds the new chain finds its key).
    pub fn save_cert(&self, chain_pem: &str, key_pem: &str) -> Result<(), String> {
        self.write(KEY, key_pem.as_bytes())?;
        self.write(CERT, chain_pem.as_bytes())
    }

    /// The stored account, if it belongs to `directory`.
    pub fn load_account(&self, directory: &str) -> Option<AccountCredentials> {
        let text = std::fs::read(self.dir.join(ACCOUNT)).ok()?;
        let stored: StoredAccount = serde_json::from_slice(&text).ok()?;
        (stored.directory == directory).then_some(stored.credentials)
    }

    pub fn save_account(
        &self,
        directory: &str,
        credentials: AccountCredentials,
    ) -> Result<(), String> {
        let stored = StoredAccount {
            directory: directory.to_string(),
            credentials,
        };
        let text = serde_json::to_vec_pretty(&stored).map_err(|e| e.to_string())?;
        self.write(ACCOUNT, &text)
    }

    /// Takes the order lock, or None while another process holds a fresh one.
    pub fn lock(&self) -> Result<Option<OrderLock>, String> {
        let path = self.dir.join(LOCK);
        for _ in 0..2 {
            match private_file(&path, true) {
                Ok(mut f) => {
                    let _ = writeln!(f, "pid {}", std::process::id());
                    return Ok(Some(OrderLock(path)));
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let age = std::fs::metadata(&path)
                        .and_then(|m| m.modified())
                        .ok()
                        .and_then(|t| SystemTime::now().duration_since(t).ok());
                    if age.is_some_and(|a| a < LOCK_STALE) {
                        return Ok(None);
                    }
                    let _ = std::fs::remove_file(&path);
                }
                Err(e) => return Err(format!("cannot create {}: {e}", path.display())),
            }
        }
        Ok(None)
    }

    fn write(&self, name: &str, data: &[u8]) -> Result<(), String> {
        let path = self.dir.join(name);
        let tmp = self.dir.join(format!(".{name}.tmp"));
        let why = |e: std::io::Error| format!("cannot write {}: {e}", path.display());
        let _ = std::fs::remove_file(&tmp);
        let mut f = private_file(&tmp, true).map_err(why)?;
        f.write_all(data).and_then(|()| f.sync_all()).map_err(why)?;
        std::fs::rename(&tmp, &path).map_err(why)
    }
}

/// Held while this process orders; removed on drop.
pub struct OrderLock(PathBuf);

impl Drop for OrderLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Opens a new file readable by the owner only.
fn private_file(path: &Path, create_new: bool) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(create_new);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

/// A served certificate from its PEM chain (leaf first) and key.
pub fn held_from_pem(chain_pem: &[u8], key_pem: &[u8]) -> Result<Held, String> {
    let key = certified_key_from_pem(chain_pem, key_pem)?;
    key.keys_match()
        .map_err(|e| format!("the certificate and key do not match ({e})"))?;
    let leaf = key
        .cert
        .first()
        .ok_or("no CERTIFICATE block found")?
        .clone();
    Ok(Held {
        info: cert_info(&leaf)?,
        names: cert_names(&leaf)?,
        leaf: leaf.as_ref().to_vec(),
        key: std::sync::Arc::new(key),
    })
}

/// A rustls certificate and key from PEM (the chain leaf first). Not matched here: webpki refuses
/// to parse a tls-alpn-01 certificate (its critical acmeIdentifier extension).
pub fn certified_key_from_pem(
    chain_pem: &[u8],
    key_pem: &[u8],
) -> Result<rustls::sign::CertifiedKey, String> {
    let chain = CertificateDer::pem_slice_iter(chain_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("not a valid PEM certificate chain ({e})"))?;
    if chain.is_empty() {
        return Err("no CERTIFICATE block found".to_string());
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem)
        .map_err(|e| format!("no usable private key beside it ({e})"))?;
    let signing = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|e| format!("the private key is not usable ({e})"))?;
    Ok(rustls::sign::CertifiedKey::new(chain, signing))
}
