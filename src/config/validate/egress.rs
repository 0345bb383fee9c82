//! `[egress]`: where upstream connections leave from, which roots they trust, and the forward proxy.

use std::net::IpAddr;
use std::path::Path;

use super::Validator;
use crate::config::model::{Egress, ForwardProxy};
use crate::config::raw::RawEgress;
use crate::config::values::parse_forward_proxy;

impl Validator {
    pub(super) fn egress(&mut self, raw: RawEgress, base_dir: &Path) -> Egress {
        let bind_ip = raw.bind_ip.and_then(|s| self.bind_ip(&s));
        let credentials = self.optional_secret(
            ("egress.via_proxy_auth_file", raw.via_proxy_auth_file),
            ("egress.via_proxy_auth_env", raw.via_proxy_auth_env),
            base_dir,
        );
        let via_proxy = match raw.via_proxy {
            Some(url) => match parse_forward_proxy(&url) {
                Ok(url) => Some(ForwardProxy { url, credentials }),
                Err(reason) => {
                    self.problem("egress.via_proxy", reason);
                    None
                }
            },
            None => {
                if credentials.is_some() {
                    self.problem(
                        "egress.via_proxy_auth_file",
                        "forward proxy credentials are set but egress.via_proxy is not",
                    );
                }
                None
            }
        };
        Egress {
            bind_ip,
            ca_file: raw.ca_file.map(|p| base_dir.join(p)),
            via_proxy,
        }
    }

    /// A specific address (whether this host has it is checked when loading).
    fn bind_ip(&mut self, s: &str) -> Option<IpAddr> {
        match s.parse::<IpAddr>() {
            Ok(ip) if ip.is_unspecified() => {
                self.problem(
                    "egress.bind_ip",
                    "must be a specific address of this host, not 0.0.0.0 or ::",
                );
                None
            }
            Ok(ip) => Some(ip),
            Err(_) => {
                self.problem("egress.bind_ip", format!("{s:?} is not an IP address"));
                None
            }
        }
    }
}
