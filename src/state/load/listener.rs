//! The listener's certificate and key: read, checked for expiry, and made into the TLS acceptor;
//! or, with `[listen.acme]`, the certificate the ACME side holds (`acme`).

mod acme;

use std::time::SystemTime;

use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use crate::config::{Listen, ProblemList, TlsFiles};
use crate::tls;

/// What the serving certificate gives the snapshot; all None for plain HTTP or on a problem.
#[derive(Default)]
pub(super) struct ListenerTls {
    pub(super) acceptor: Option<TlsAcceptor>,
    pub(super) cert_info: Option<tls::CertInfo>,
    pub(super) cert_names: Option<tls::CertNames>,
    pub(super) acme: Option<std::sync::Arc<tls::acme::AcmeCell>>,
}

pub(super) fn load(
    listen: &Listen,
    previous: Option<&crate::state::Snapshot>,
    problems: &mut ProblemList,
) -> ListenerTls {
    if let Some(config) = &listen.acme {
        return acme::load(config, previous, problems);
    }
    let Some(files) = &listen.tls else {
        return ListenerTls::default();
    };
    let certs = tls::read_certs(&files.cert)
        .map_err(|e| problems.add("listen.cert", e))
        .ok();
    let key = tls::read_key(&files.key)
        .map_err(|e| problems.add("listen.key", e))
        .ok();
    let (Some(certs), Some(key)) = (certs, key) else {
        return ListenerTls::default();
    };
    let (cert_info, cert_names) = describe(files, certs.first(), problems);
    ListenerTls {
        acceptor: acceptor(files, certs, key, problems),
        cert_info,
        cert_names,
        acme: None,
    }
}

/// The leaf certificate's subject, validity and names; an expired one is a problem (IdPs refuse it).
fn describe(
    files: &TlsFiles,
    leaf: Option<&CertificateDer<'static>>,
    problems: &mut ProblemList,
) -> (Option<tls::CertInfo>, Option<tls::CertNames>) {
    let Some(leaf) = leaf else {
        return (None, None);
    };
    let cert = files.cert.display();
    let cert_info = match tls::cert_info(leaf) {
        Ok(info) if info.is_expired(SystemTime::now()) => {
            problems.add(
                "listen.cert",
                format!(
                    "{cert}: the certificate expired on {} (IdPs will refuse it)",
                    humantime::format_rfc3339_seconds(info.not_after)
                ),
            );
            None
        }
        Ok(info) => Some(info),
        Err(e) => {
            problems.add("listen.cert", format!("{cert}: {e}"));
            None
        }
    };
    let cert_names = tls::cert_names(leaf)
        .map_err(|e| problems.add("listen.cert", format!("{cert}: {e}")))
        .ok();
    (cert_info, cert_names)
}

fn acceptor(
    files: &TlsFiles,
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    problems: &mut ProblemList,
) -> Option<TlsAcceptor> {
    match tls::server_config_from(certs, key) {
        Ok(c) => Some(TlsAcceptor::from(c)),
        Err(e) => {
            problems.add(
                "listen.key",
                format!("{} with {}: {e}", files.cert.display(), files.key.display()),
            );
            None
        }
    }
}
