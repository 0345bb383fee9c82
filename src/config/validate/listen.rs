//! `[listen]`: the proxy's address, its certificate and key, and who may connect through what.

use std::net::SocketAddr;
use std::path::Path;

use ipnet::IpNet;

use super::Validator;
use crate::config::model::{Listen, TlsFiles};
use crate::config::raw::RawListen;
use crate::config::values::parse_cidr;

impl Validator {
    pub(super) fn listen(&mut self, raw: Option<RawListen>, base_dir: &Path) -> Listen {
        let fallback = SocketAddr::from(([0, 0, 0, 0], 0));
        let Some(raw) = raw else {
            self.problem("listen", "required table is missing (at least listen.addr)");
            return Listen {
                addr: fallback,
                tls: None,
                allow_cidrs: Vec::new(),
                proxy_protocol: false,
                trusted_proxies: Vec::new(),
                acme: None,
            };
        };
        let addr = match raw.addr {
            Some(a) => self.socket_addr("listen.addr", &a).unwrap_or(fallback),
            None => {
                self.problem("listen.addr", "required");
                fallback
            }
        };
        let tls = self.tls_files(raw.cert, raw.key, base_dir);
        let allow_cidrs = self.cidrs("listen.allow_cidrs", raw.allow_cidrs);
        let trusted_proxies = self.cidrs("listen.trusted_proxies", raw.trusted_proxies);
        let proxy_protocol = raw.proxy_protocol.unwrap_or(false);
        if proxy_protocol && trusted_proxies.is_empty() {
            self.problem(
                "listen.trusted_proxies",
                "required when proxy_protocol = true: the load balancers allowed to send PROXY headers",
            );
        }
        let acme = raw.acme.and_then(|a| self.acme(a, base_dir));
        if acme.is_some() && tls.is_some() {
            self.problem(
                "listen.acme",
                "cert/key and [listen.acme] are mutually exclusive: remove cert and key to let the proxy get its certificate from the ACME CA, or remove [listen.acme] to serve your own",
            );
        }
        Listen {
            addr,
            tls,
            allow_cidrs,
            proxy_protocol,
            trusted_proxies,
            acme,
        }
    }

    /// `cert` and `key`: both (TLS) or neither (plain HTTP).
    fn tls_files(
        &mut self,
        cert: Option<std::path::PathBuf>,
        key: Option<std::path::PathBuf>,
        base_dir: &Path,
    ) -> Option<TlsFiles> {
        match (cert, key) {
            (Some(cert), Some(key)) => Some(TlsFiles {
                cert: base_dir.join(cert),
                key: base_dir.join(key),
            }),
            (None, None) => None,
            (Some(_), None) => {
                self.problem(
                    "listen.key",
                    "required when listen.cert is set (both or neither)",
                );
                None
            }
            (None, Some(_)) => {
                self.problem(
                    "listen.cert",
                    "required when listen.key is set (both or neither)",
                );
                None
            }
        }
    }

    fn cidrs(&mut self, key: &str, raw: Option<Vec<String>>) -> Vec<IpNet> {
        let mut nets = Vec::new();
        for (i, c) in raw.unwrap_or_default().iter().enumerate() {
            match parse_cidr(c) {
                Some(net) => nets.push(net),
                None => self.problem(
                    &format!("{key}[{i}]"),
                    format!(
                        "{c:?} is not a CIDR (e.g. \"10.0.0.0/8\", \"2001:db8::/32\") or IP address"
                    ),
                ),
            }
        }
        nets
    }
}
