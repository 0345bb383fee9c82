//! One `[[routes]]` table: its upstream, where its v2 token is read, the hosts and public URL it
//! serves, and the rest of its keys. A route with any problem is left out of the model.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::Validator;
use crate::config::model::{Pacing, PublicUrl, Route, TokenSource, UpstreamAuth, UpstreamBase};
use crate::config::raw::RawRoute;
use crate::config::values::{
    is_tenant_id, normalize_host, parse_public_url, parse_timestamp, parse_upstream,
};

impl Validator {
    /// `key`: `routes[i]`. `plain_listener`: no certificate names what the proxy serves.
    pub(super) fn route(
        &mut self,
        key: &str,
        r: RawRoute,
        base_dir: &Path,
        plain_listener: bool,
    ) -> Option<Route> {
        let before = self.found.count();
        let name = self.name(&format!("{key}.name"), r.name, "required");
        let upstream = self.upstream(key, r.upstream);
        let token = self.token_source(key, r.token_file, r.token_env, base_dir);
        let hosts = self.hosts(key, r.hosts);
        let public_url_given = r.public_url.is_some();
        let public_url = r.public_url.and_then(|u| self.public_url(key, &u));
        if plain_listener && hosts.is_empty() && !public_url_given {
            // Without a certificate nothing names what the proxy serves, so the route must.
            self.problem(
                &format!("{key}.public_url"),
                format!(
                    "required on a plain listener (no listen.cert) unless {key}.hosts is set: \
                     URLs given back to the IdP must not be built from an unchecked Host header"
                ),
            );
        }
        let legacy_tenant_id = r
            .legacy_tenant_id
            .and_then(|t| self.legacy_tenant_id(key, t));
        let upstream_auth = self.upstream_auth(key, r.upstream_auth.as_deref());
        let token_expires = r.token_expires.and_then(|t| self.token_expires(key, &t));
        let token_warn_days = self.count(
            &format!("{key}.token_warn_days"),
            r.token_warn_days,
            14,
            0,
            3650,
        );
        let clients = self.clients(key, r.clients);
        let pacing = self.pacing(key, r.max_requests_per_second, r.burst, r.max_queue_wait);
        if self.found.count() != before {
            return None;
        }
        Some(Route {
            name,
            upstream: upstream?,
            token: token?,
            hosts,
            public_url,
            legacy_tenant_id,
            upstream_auth,
            token_expires,
            token_warn: Duration::from_secs(u64::try_from(token_warn_days).unwrap_or(14) * 86_400),
            rewrite_body_urls: r.rewrite_body_urls.unwrap_or(true),
            clients,
            pacing,
        })
    }

    fn upstream(&mut self, key: &str, raw: Option<String>) -> Option<UpstreamBase> {
        let Some(u) = raw else {
            self.problem(
                &format!("{key}.upstream"),
                "required (e.g. \"https://<tenant>.goskope.com/api/v2/scim\")",
            );
            return None;
        };
        parse_upstream(&u)
            .map_err(|reason| self.problem(&format!("{key}.upstream"), reason))
            .ok()
    }

    /// Where the route's v2 token is read: exactly one of `token_file` and `token_env`.
    fn token_source(
        &mut self,
        key: &str,
        file: Option<PathBuf>,
        env: Option<String>,
        base_dir: &Path,
    ) -> Option<TokenSource> {
        let refusal = match (file, env) {
            (Some(f), None) => return Some(TokenSource::File(base_dir.join(f))),
            (None, Some(e)) if !e.is_empty() && !e.contains('=') && !e.contains('\0') => {
                return Some(TokenSource::Env(e));
            }
            (None, Some(e)) => (
                "token_env",
                format!("{e:?} is not an environment variable name"),
            ),
            (Some(_), Some(_)) => (
                "token_file",
                "set exactly one of token_file and token_env, not both".to_string(),
            ),
            (None, None) => (
                "token_file",
                "one of token_file or token_env is required: where the route's REST API v2 token is read from".to_string(),
            ),
        };
        self.problem(&format!("{key}.{}", refusal.0), refusal.1);
        None
    }

    /// Lower-cased host names, each once; `None`: the key is absent (any host).
    fn hosts(&mut self, key: &str, raw: Option<Vec<String>>) -> Vec<String> {
        let mut hosts: Vec<String> = Vec::new();
        let Some(raw_hosts) = raw else {
            return hosts;
        };
        if raw_hosts.is_empty() {
            self.problem(
                &format!("{key}.hosts"),
                "empty list: omit the key to serve any host, or list the host names",
            );
        }
        for (j, h) in raw_hosts.iter().enumerate() {
            match normalize_host(h) {
                Some(h) if hosts.contains(&h) => self.problem(
                    &format!("{key}.hosts[{j}]"),
                    format!("{h:?} is listed twice"),
                ),
                Some(h) => hosts.push(h),
                None => self.problem(
                    &format!("{key}.hosts[{j}]"),
                    format!("{h:?} is not a host name (no scheme, path or port)"),
                ),
            }
        }
        hosts
    }

    fn public_url(&mut self, key: &str, raw: &str) -> Option<PublicUrl> {
        parse_public_url(raw)
            .map_err(|reason| self.problem(&format!("{key}.public_url"), reason))
            .ok()
    }

    fn legacy_tenant_id(&mut self, key: &str, t: String) -> Option<String> {
        if is_tenant_id(&t) {
            return Some(t);
        }
        self.problem(
            &format!("{key}.legacy_tenant_id"),
            format!(
                "{t:?}: use the tenant id as it appears in the old URL (letters, digits, '-', '_')"
            ),
        );
        None
    }

    fn upstream_auth(&mut self, key: &str, raw: Option<&str>) -> UpstreamAuth {
        match raw {
            None | Some("bearer") => UpstreamAuth::Bearer,
            Some("netskope-api-token") => UpstreamAuth::NetskopeApiToken,
            Some(other) => {
                self.problem(
                    &format!("{key}.upstream_auth"),
                    format!("{other:?}: expected \"bearer\" or \"netskope-api-token\""),
                );
                UpstreamAuth::Bearer
            }
        }
    }

    fn token_expires(&mut self, key: &str, t: &str) -> Option<std::time::SystemTime> {
        let parsed = parse_timestamp(t);
        if parsed.is_none() {
            self.problem(
                &format!("{key}.token_expires"),
                format!(
                    "{t:?} is not an RFC 3339 time like \"2026-03-21T00:00:00Z\" or a date like \"2026-03-21\""
                ),
            );
        }
        parsed
    }

    /// `max_requests_per_second` turns pacing on; `burst` and `max_queue_wait` only mean
    /// something with it.
    fn pacing(
        &mut self,
        key: &str,
        rate: Option<f64>,
        burst: Option<u64>,
        max_queue_wait: Option<String>,
    ) -> Option<Pacing> {
        let Some(rate) = rate else {
            for (given, name) in [
                (burst.is_some(), "burst"),
                (max_queue_wait.is_some(), "max_queue_wait"),
            ] {
                if given {
                    self.problem(
                        &format!("{key}.{name}"),
                        format!("only used with {key}.max_requests_per_second, which is not set"),
                    );
                }
            }
            return None;
        };
        if !(MIN_RATE..=MAX_RATE).contains(&rate) {
            self.problem(
                &format!("{key}.max_requests_per_second"),
                format!("{rate} is out of range ({MIN_RATE} to {MAX_RATE})"),
            );
            return None;
        }
        // Default: one second's worth, the rate itself (at least one request).
        let one_second = rate.ceil().max(1.0) as usize;
        let burst = self.count(&format!("{key}.burst"), burst, one_second, 1, 100_000);
        let max_queue_wait = self.duration(
            &format!("{key}.max_queue_wait"),
            max_queue_wait,
            DEFAULT_MAX_QUEUE_WAIT,
        );
        Some(Pacing {
            interval: Duration::from_secs_f64(1.0 / rate),
            burst: u32::try_from(burst).unwrap_or(1),
            max_queue_wait,
        })
    }
}

/// Below one request a minute a tenant is unusable; above ten thousand a second no tenant limit is.
const MIN_RATE: f64 = 0.01;
const MAX_RATE: f64 = 10_000.0;
/// Long enough to smooth a burst, short against an IdP's own request timeout (Entra: ~60 s).
const DEFAULT_MAX_QUEUE_WAIT: Duration = Duration::from_secs(5);
