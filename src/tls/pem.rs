//! Reading PEM files: a certificate chain, a private key, and errors that say which is which.

use std::path::Path;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Reads a PEM certificate chain; the error names the file and says what is wrong (never contents).
pub fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: not a valid PEM certificate file ({e})", path.display()))?;
    if certs.is_empty() {
        // The commonest mistake: the key and the chain swapped.
        if PrivateKeyDer::from_pem_slice(&pem).is_ok() {
            return Err(format!(
                "{}: this file holds a private key; this key wants the certificate chain (CERTIFICATE blocks), the key goes in its own file",
                path.display()
            ));
        }
        return Err(format!("{}: no CERTIFICATE block found", path.display()));
    }
    Ok(certs)
}

pub fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| {
        if CertificateDer::pem_slice_iter(&pem).any(|c| c.is_ok()) {
            format!(
                "{}: this file holds a certificate; this key wants the private key (PKCS#8, PKCS#1 or SEC1), the chain goes in the cert file",
                path.display()
            )
        } else {
            format!(
                "{}: no usable PEM private key (PKCS#8, PKCS#1 or SEC1) ({e})",
                path.display()
            )
        }
    })
}
