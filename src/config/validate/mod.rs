//! Raw tables -> validated model. One file per table; each part checks its own keys, adds every
//! problem it finds to the list and goes on with a stand-in value, so one run reports them all.

mod acme;
mod client;
mod egress;
mod limits;
mod listen;
mod log;
mod route;
mod routes;
mod scalars;

use std::path::Path;

use super::model::{Admin, Config};
use super::problems::{ProblemList, Problems};
use super::raw::RawConfig;

/// Validates one file, collecting what is wrong with it.
pub(super) struct Validator {
    found: ProblemList,
}

impl Validator {
    pub(super) fn new(file: &Path) -> Validator {
        Validator {
            found: ProblemList::new(file),
        }
    }

    fn problem(&mut self, key: &str, reason: impl Into<String>) {
        self.found.add(key, reason);
    }

    /// Validates the whole file; `unknown`: the keys serde did not know.
    pub(super) fn config(
        mut self,
        raw: RawConfig,
        unknown: &[String],
        base_dir: &Path,
    ) -> Result<Config, Problems> {
        for key in unknown {
            self.found.unknown_key(key);
        }
        let plain_listener = raw
            .listen
            .as_ref()
            .is_none_or(|l| l.cert.is_none() && l.key.is_none() && l.acme.is_none());
        let listen = self.listen(raw.listen, base_dir);
        let admin = raw.admin.and_then(|a| self.admin(a.addr, a.token_sha256));
        let limits = self.limits(raw.limits.unwrap_or_default());
        let egress = self.egress(raw.egress.unwrap_or_default(), base_dir);
        let reload = self.reload(raw.reload.unwrap_or_default());
        let log = self.log(raw.log.unwrap_or_default(), base_dir);
        let worker_threads = raw
            .runtime
            .and_then(|r| r.worker_threads)
            .map(|n| self.count("runtime.worker_threads", Some(n), 1, 1, 1024));
        let routes = self.routes(raw.routes, base_dir, plain_listener);
        if let Some(a) = &admin
            && a.addr == listen.addr
            && a.addr.port() != 0
        {
            self.problem("admin.addr", "must differ from listen.addr");
        }
        let config = Config {
            source: self.found.file().to_path_buf(),
            listen,
            admin,
            limits,
            egress,
            reload,
            log,
            worker_threads,
            routes,
        };
        self.found.result(config)
    }

    fn admin(&mut self, addr: Option<String>, token: Option<String>) -> Option<Admin> {
        let token_sha256 = token.and_then(|t| {
            let mut out = [0u8; 32];
            match hex::decode_to_slice(t.trim(), &mut out) {
                Ok(()) => Some(out),
                Err(_) => {
                    self.problem(
                        "admin.token_sha256",
                        "must be 64 hex characters: the SHA-256 of the admin bearer token, as printed by `scim-proxy hash-token` (never the token itself)",
                    );
                    None
                }
            }
        });
        match addr {
            Some(addr) => self
                .socket_addr("admin.addr", &addr)
                .map(|addr| Admin { addr, token_sha256 }),
            None => {
                self.problem("admin.addr", "required when [admin] is present");
                None
            }
        }
    }
}
