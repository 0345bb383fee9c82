//! `[listen.acme]`: the names, contact, CA directory, state folder, challenge, renewal margin,
//! External Account Binding and private CA roots of the certificate the proxy gets itself.

use std::path::Path;
use std::time::Duration;

use super::Validator;
use crate::config::model::{Acme, AcmeChallenge, AcmeEab, LETS_ENCRYPT_DIRECTORY, TokenSource};
use crate::config::raw::RawAcme;
use crate::config::values::normalize_host;

/// Default `renew_before`: Let's Encrypt's advice for 90-day certificates.
const RENEW_BEFORE: Duration = Duration::from_secs(30 * 86_400);

impl Validator {
    pub(super) fn acme(&mut self, raw: RawAcme, base_dir: &Path) -> Option<Acme> {
        let domains = self.acme_domains(raw.domains);
        let contact = self.acme_contact(raw.contact);
        let directory = raw
            .directory
            .unwrap_or_else(|| LETS_ENCRYPT_DIRECTORY.to_string());
        if !directory.starts_with("https://") || directory.len() <= "https://".len() {
            self.problem(
                "listen.acme.directory",
                format!("{directory:?} is not an https:// URL of an ACME directory (RFC 8555 requires HTTPS)"),
            );
        }
        let state_dir = match raw.state_dir {
            Some(d) => Some(base_dir.join(d)),
            None => {
                self.problem(
                    "listen.acme.state_dir",
                    "required: the folder for the account key and the certificate (kept across restarts)",
                );
                None
            }
        };
        let challenge = self.acme_challenge(raw.challenge, raw.http_addr);
        let renew_before =
            self.duration("listen.acme.renew_before", raw.renew_before, RENEW_BEFORE);
        let eab = self.acme_eab(
            raw.eab_kid,
            raw.eab_hmac_key_file,
            raw.eab_hmac_key_env,
            base_dir,
        );
        Some(Acme {
            domains,
            contact: contact?,
            directory,
            state_dir: state_dir?,
            challenge: challenge?,
            renew_before,
            eab,
            ca_file: raw.ca_file.map(|f| base_dir.join(f)),
        })
    }

    fn acme_domains(&mut self, raw: Option<Vec<String>>) -> Vec<String> {
        let key = "listen.acme.domains";
        let Some(raw) = raw else {
            self.problem(key, "required: the DNS names the IdPs connect to");
            return Vec::new();
        };
        if raw.is_empty() {
            self.problem(
                key,
                "empty list: name at least one DNS name the IdPs connect to",
            );
        }
        let mut domains: Vec<String> = Vec::new();
        for (i, d) in raw.iter().enumerate() {
            let key = format!("{key}[{i}]");
            match normalize_host(d) {
                _ if d.starts_with("*.") => self.problem(
                    &key,
                    format!("{d:?}: wildcard names need the dns-01 challenge, which the proxy does not answer; list each name"),
                ),
                Some(h) if h.parse::<std::net::IpAddr>().is_ok() => self.problem(
                    &key,
                    format!("{d:?} is an IP address: public CAs issue certificates for DNS names"),
                ),
                Some(h) if !h.contains('.') || h.contains('_') => self.problem(
                    &key,
                    format!("{d:?} is not a fully qualified DNS name (e.g. \"scim.example.com\")"),
                ),
                Some(h) if domains.contains(&h) => {
                    self.problem(&key, format!("{h:?} is listed twice"))
                }
                Some(h) => domains.push(h),
                None => self.problem(&key, format!("{d:?} is not a DNS name")),
            }
        }
        domains
    }

    fn acme_contact(&mut self, raw: Option<String>) -> Option<String> {
        let key = "listen.acme.contact";
        match raw {
            Some(c) if c.strip_prefix("mailto:").is_some_and(|a| a.contains('@')) => Some(c),
            Some(c) => {
                self.problem(
                    key,
                    format!(
                        "{c:?} is not a mailto: address (e.g. \"mailto:idm-team@example.com\")"
                    ),
                );
                None
            }
            None => {
                self.problem(key, "required: a mailto: address the CA may write to about the account and expiring certificates");
                None
            }
        }
    }

    fn acme_challenge(
        &mut self,
        raw: Option<String>,
        http_addr: Option<String>,
    ) -> Option<AcmeChallenge> {
        match raw.as_deref().unwrap_or("tls-alpn-01") {
            "tls-alpn-01" => {
                if http_addr.is_some() {
                    self.problem(
                        "listen.acme.http_addr",
                        "only used with challenge = \"http-01\" (tls-alpn-01 is answered on listen.addr)",
                    );
                }
                Some(AcmeChallenge::TlsAlpn01)
            }
            "http-01" => match http_addr {
                Some(a) => self
                    .socket_addr("listen.acme.http_addr", &a)
                    .map(AcmeChallenge::Http01),
                None => {
                    self.problem(
                        "listen.acme.http_addr",
                        "required with challenge = \"http-01\": the plain-HTTP address the CA reaches on port 80 (e.g. \"0.0.0.0:80\")",
                    );
                    None
                }
            },
            other => {
                self.problem(
                    "listen.acme.challenge",
                    format!("{other:?} is not one of \"tls-alpn-01\", \"http-01\""),
                );
                None
            }
        }
    }

    fn acme_eab(
        &mut self,
        kid: Option<String>,
        file: Option<std::path::PathBuf>,
        env: Option<String>,
        base_dir: &Path,
    ) -> Option<AcmeEab> {
        let hmac_key = match (file, env) {
            (Some(f), None) => Some(TokenSource::File(base_dir.join(f))),
            (None, Some(e)) if !e.is_empty() && !e.contains('=') && !e.contains('\0') => {
                Some(TokenSource::Env(e))
            }
            (None, Some(e)) => {
                self.problem(
                    "listen.acme.eab_hmac_key_env",
                    format!("{e:?} is not an environment variable name"),
                );
                return None;
            }
            (Some(_), Some(_)) => {
                self.problem(
                    "listen.acme.eab_hmac_key_file",
                    "set exactly one of eab_hmac_key_file and eab_hmac_key_env, not both",
                );
                return None;
            }
            (None, None) => None,
        };
        match (kid, hmac_key) {
            (Some(kid), Some(hmac_key)) if !kid.is_empty() => Some(AcmeEab { kid, hmac_key }),
            (None, None) => None,
            (Some(_), Some(_)) => {
                self.problem("listen.acme.eab_kid", "must not be empty");
                None
            }
            (Some(_), None) => {
                self.problem(
                    "listen.acme.eab_hmac_key_file",
                    "required with eab_kid (or eab_hmac_key_env): the CA's HMAC key for the binding",
                );
                None
            }
            (None, Some(_)) => {
                self.problem(
                    "listen.acme.eab_kid",
                    "required with eab_hmac_key_file or eab_hmac_key_env: the key id the CA gave",
                );
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::{AcmeChallenge, LETS_ENCRYPT_DIRECTORY, TokenSource, parse};

    fn config(acme: &str) -> String {
        format!(
            "[listen]\naddr = \"127.0.0.1:8443\"\n\n[listen.acme]\n{acme}\n\n[[routes]]\nname = \"a\"\nupstream = \"https://a.goskope.com/api/v2/scim\"\ntoken_file = \"a.token\"\n\n[[routes.clients]]\nname = \"okta\"\ntoken_sha256 = \"{}\"\n",
            "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
        )
    }

    const REQUIRED: &str = "domains = [\"SCIM.Example.com.\"]\ncontact = \"mailto:idm@example.com\"\nstate_dir = \"acme\"";

    #[test]
    fn the_defaults_are_lets_encrypt_tls_alpn_01_and_30_days() {
        let c = parse(&config(REQUIRED), Path::new("/etc/scim-proxy/p.toml")).unwrap();
        let acme = c.listen.acme.unwrap();
        assert_eq!(acme.domains, vec!["scim.example.com".to_string()]);
        assert_eq!(acme.directory, LETS_ENCRYPT_DIRECTORY);
        assert_eq!(acme.state_dir, Path::new("/etc/scim-proxy/acme"));
        assert_eq!(acme.challenge, AcmeChallenge::TlsAlpn01);
        assert_eq!(acme.renew_before.as_secs(), 30 * 86_400);
        assert!(acme.eab.is_none() && acme.ca_file.is_none());
        // With ACME the listener is TLS: routes need no hosts or public_url.
        assert!(c.listen.tls.is_none());
    }

    #[test]
    fn http_01_eab_and_a_private_ca_are_read() {
        let text = config(&format!(
            "{REQUIRED}\nchallenge = \"http-01\"\nhttp_addr = \"0.0.0.0:80\"\neab_kid = \"k\"\neab_hmac_key_env = \"EAB\"\nca_file = \"ca.pem\"\nrenew_before = \"10d\"\ndirectory = \"https://ca.example/dir\""
        ));
        let acme = parse(&text, Path::new("/etc/s/p.toml"))
            .unwrap()
            .listen
            .acme
            .unwrap();
        assert_eq!(
            acme.challenge,
            AcmeChallenge::Http01("0.0.0.0:80".parse().unwrap())
        );
        let eab = acme.eab.unwrap();
        assert_eq!(
            (eab.kid.as_str(), eab.hmac_key),
            ("k", TokenSource::Env("EAB".into()))
        );
        assert_eq!(acme.ca_file.unwrap(), Path::new("/etc/s/ca.pem"));
        assert_eq!(acme.renew_before.as_secs(), 10 * 86_400);
        assert_eq!(acme.directory, "https://ca.example/dir");
    }

    #[test]
    fn unknown_and_missing_keys_are_named() {
        let text = config("domain = [\"a.example\"]");
        let problems = parse(&text, Path::new("p.toml")).unwrap_err().to_string();
        for want in [
            "listen.acme.domain: unknown key; did you mean domains?",
            "listen.acme.domains: required",
            "listen.acme.contact: required",
            "listen.acme.state_dir: required",
        ] {
            assert!(problems.contains(want), "{want}:\n{problems}");
        }
    }
}
