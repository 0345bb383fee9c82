//! Checks shared by every table: addresses, durations, counts, sizes, names, secrets and hashes,
//! each refused with the key it was written under and a stand-in value returned.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::Validator;
use crate::config::model::TokenSource;
use crate::config::raw::RawSize;
use crate::config::values::{is_name, parse_size};

impl Validator {
    pub(super) fn socket_addr(&mut self, key: &str, s: &str) -> Option<SocketAddr> {
        match s.parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                self.problem(
                    key,
                    format!(
                        "{s:?} is not an IP:port address (e.g. \"0.0.0.0:8443\" or \"[::]:8443\")"
                    ),
                );
                None
            }
        }
    }

    pub(super) fn duration(
        &mut self,
        key: &str,
        raw: Option<String>,
        default: Duration,
    ) -> Duration {
        let Some(s) = raw else { return default };
        match humantime::parse_duration(&s) {
            Ok(d) if !d.is_zero() => d,
            Ok(_) => {
                self.problem(key, "must be greater than zero");
                default
            }
            Err(e) => {
                self.problem(
                    key,
                    format!("{s:?} is not a duration like \"30s\" or \"2m\" ({e})"),
                );
                default
            }
        }
    }

    pub(super) fn count(
        &mut self,
        key: &str,
        raw: Option<u64>,
        default: usize,
        min: u64,
        max: u64,
    ) -> usize {
        match raw {
            None => default,
            Some(n) if (min..=max).contains(&n) => usize::try_from(n).unwrap_or(default),
            Some(n) => {
                self.problem(key, format!("{n} is out of range ({min} to {max})"));
                default
            }
        }
    }

    pub(super) fn size(
        &mut self,
        key: &str,
        raw: Option<RawSize>,
        default: u64,
        min: u64,
        max: u64,
    ) -> u64 {
        let n = match raw {
            None => return default,
            Some(RawSize::Bytes(n)) => n,
            Some(RawSize::Text(t)) => match parse_size(&t) {
                Some(n) => n,
                None => {
                    self.problem(
                        key,
                        format!(
                            "{t:?} is not a size like \"4MiB\", \"512KiB\" or a number of bytes"
                        ),
                    );
                    return default;
                }
            },
        };
        if (min..=max).contains(&n) {
            n
        } else {
            self.problem(key, format!("{n} bytes is out of range ({min} to {max})"));
            default
        }
    }

    /// A route's or client's `name`; `required`: what to say when it is missing.
    pub(super) fn name(&mut self, key: &str, raw: Option<String>, required: &str) -> String {
        match raw {
            Some(n) if is_name(&n) => n,
            Some(n) => {
                self.problem(
                    key,
                    format!("{n:?}: use 1-64 letters, digits, '-', '_' or '.'"),
                );
                String::new()
            }
            None => {
                self.problem(key, required);
                String::new()
            }
        }
    }

    /// A secret read from a file or a variable, at most one of the two (`key`: the full key name).
    pub(super) fn optional_secret(
        &mut self,
        (file_key, file): (&str, Option<PathBuf>),
        (env_key, env): (&str, Option<String>),
        base_dir: &Path,
    ) -> Option<TokenSource> {
        match (file, env) {
            (Some(f), None) => Some(TokenSource::File(base_dir.join(f))),
            (None, Some(e)) => Some(TokenSource::Env(e)),
            (None, None) => None,
            (Some(_), Some(_)) => {
                let short = |k: &str| k.rsplit('.').next().unwrap_or(k).to_string();
                self.problem(
                    file_key,
                    format!(
                        "set at most one of {} and {}",
                        short(file_key),
                        short(env_key)
                    ),
                );
                None
            }
        }
    }

    pub(super) fn sha256(&mut self, key: &str, s: &str) -> Option<[u8; 32]> {
        let mut out = [0u8; 32];
        match hex::decode_to_slice(s.trim(), &mut out) {
            Ok(()) => Some(out),
            Err(_) => {
                self.problem(
                    key,
                    "must be 64 hex characters: the SHA-256 of the IdP's bearer token, as printed by `scim-proxy hash-token` (never the token itself)",
                );
                None
            }
        }
    }
}
