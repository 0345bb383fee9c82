//! Loading a snapshot: the config file read and validated, then everything it names (the serving
//! certificate, tokens, roots, egress, the PII key) loaded, one part per file. Every problem is
//! collected; with a previous snapshot, what did not change is carried over.

mod egress;
mod listener;
mod log;
mod routes;

use std::path::Path;
use std::sync::Arc;

use crate::config::{self, Config, ProblemList, Problems};
use crate::state::Snapshot;

pub use egress::check_local_address;

/// Reads and validates a config file (no tokens or certificates yet).
pub fn read_config(path: &Path) -> Result<Config, Problems> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Problems::whole_file(path, format!("cannot read the config file: {e}")))?;
    config::parse(&text, path)
}

/// Loads everything a validated config points at. Every problem is collected.
/// With `previous`, the upstream client (and its connection pool) is kept when nothing it uses changed,
/// and each route keeps its in-flight counters and token-expiry state.
pub fn build(config: Config, previous: Option<&Snapshot>) -> Result<Snapshot, Problems> {
    let mut problems = ProblemList::new(&config.source);
    // The order of the parts is the order their problems are reported in.
    let listener = listener::load(&config.listen, previous, &mut problems);
    let upstream_roots = egress::roots(&config.egress, &mut problems);
    egress::check_addresses(&config.egress, &mut problems);
    let routes = routes::load(&config, previous, &mut problems);
    let proxy_auth = egress::proxy_auth(&config.egress, &mut problems);
    let pii = log::pii_policy(&config.log, &mut problems);
    log::check_traffic_dir(&config.log, &mut problems);
    let client_tls = egress::client_tls(&config.egress, &upstream_roots, &mut problems);

    let Some(client_tls) = problems.result(client_tls)? else {
        return Err(Problems(Vec::new()));
    };
    let client =
        egress::upstream_client(&config, previous, &upstream_roots, &proxy_auth, client_tls)?;
    Ok(Snapshot {
        config: Arc::new(config),
        routes,
        tls: listener.acceptor,
        cert_info: listener.cert_info,
        cert_names: listener.cert_names,
        acme: listener.acme,
        client,
        upstream_roots,
        proxy_auth,
        pii,
    })
}
