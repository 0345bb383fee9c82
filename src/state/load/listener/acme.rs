//! The listener with `[listen.acme]`: the cell carried over from the previous snapshot (a reload
//! keeps serving what is held), else a new one holding the stored certificate when it is valid for
//! exactly the configured names; the files it names checked now, so `check` reports them.

use std::time::SystemTime;

use tokio_rustls::TlsAcceptor;

use super::ListenerTls;
use crate::config::{Acme, ProblemList, TokenSource};
use crate::state::Snapshot;
use crate::tls::{self, acme::Store, acme::schedule};

pub(super) fn load(
    config: &Acme,
    previous: Option<&Snapshot>,
    problems: &mut ProblemList,
) -> ListenerTls {
    check_files(config, problems);
    let cell = previous.and_then(|p| p.acme.clone()).unwrap_or_default();
    cell.share_challenges_in(&config.state_dir);
    if cell.current().is_none() {
        match Store::new(&config.state_dir).load_cert() {
            Ok(Some(held))
                if held.is_valid(SystemTime::now())
                    && schedule::covers_exactly(&held.names, &config.domains) =>
            {
                cell.install(held);
            }
            Ok(_) => {}
            // Not a config problem: the renewal loop orders a new one and overwrites it.
            Err(e) => tracing::warn!(
                "the stored ACME certificate is not usable, a new one will be ordered: {e}"
            ),
        }
    }
    let acceptor = match tls::acme::acme_server_config(cell.clone()) {
        Ok(c) => Some(TlsAcceptor::from(c)),
        Err(e) => {
            problems.add("listen.acme", e);
            None
        }
    };
    ListenerTls {
        acceptor,
        cert_info: None,
        // The names served are the ones ordered, whichever certificate is held right now.
        cert_names: Some(tls::CertNames {
            dns: config.domains.clone(),
            ips: Vec::new(),
        }),
        acme: Some(cell),
    }
}

/// `ca_file` and the EAB key must be readable now, not at the first renewal months later.
fn check_files(config: &Acme, problems: &mut ProblemList) {
    if let Some(ca) = &config.ca_file
        && let Err(e) = tls::read_certs(ca)
    {
        problems.add("listen.acme.ca_file", e);
    }
    if let Some(eab) = &config.eab {
        let (key, readable) = match &eab.hmac_key {
            TokenSource::File(p) => (
                "listen.acme.eab_hmac_key_file",
                std::fs::read_to_string(p).map_err(|e| format!("cannot read {}: {e}", p.display())),
            ),
            TokenSource::Env(name) => (
                "listen.acme.eab_hmac_key_env",
                std::env::var(name).map_err(|_| format!("{name} is not set")),
            ),
        };
        if let Err(e) = readable {
            problems.add(key, e);
        }
    }
}
