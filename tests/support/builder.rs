//! The config directory: routes, the `[limits]`/`[listen]`/`[log]` tables, token and PEM files, and
//! the embedded upstreams behind it ([`Builder`] → [`Prepared`]).

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use scim_proxy::lab::client::ScimClient;
use scim_proxy::lab::devcerts;
use scim_proxy::lab::devcerts::{DevPki, IssuedCert};
use scim_proxy::lab::upstream::{Upstream, UpstreamOptions};
use scim_proxy::{Problems, Snapshot, state};

use super::*;

/// Where a route's `upstream` points.
#[derive(Clone, Debug)]
pub enum Target {
    /// `https://<ip>:<port>/api/v2/scim` of embedded upstream `i`.
    Embedded(usize),
    /// `https://localhost:<port>/api/v2/scim` of embedded upstream `i` (its cert has the SAN).
    EmbeddedByName(usize),
    /// Written as given.
    Url(String),
}

/// One `[[routes]]` table.
#[derive(Clone, Debug)]
pub struct RouteSpec {
    pub name: String,
    pub target: Target,
    pub hosts: Option<Vec<String>>,
    pub legacy_tenant_id: Option<String>,
    pub upstream_auth: Option<String>,
    /// (client name, old IdP token)
    pub clients: Vec<(String, String)>,
    /// Raw lines added inside the `[[routes]]` table.
    pub extra: String,
}

impl RouteSpec {
    /// A route to embedded upstream 0 serving any host, for Okta and Entra.
    pub fn new(name: &str) -> RouteSpec {
        RouteSpec {
            name: name.into(),
            target: Target::Embedded(0),
            hosts: None,
            legacy_tenant_id: None,
            upstream_auth: None,
            clients: vec![("okta".into(), OKTA.into()), ("entra".into(), ENTRA.into())],
            extra: String::new(),
        }
    }

    pub fn upstream(mut self, i: usize) -> RouteSpec {
        self.target = Target::Embedded(i);
        self
    }

    pub fn target(mut self, t: Target) -> RouteSpec {
        self.target = t;
        self
    }

    pub fn hosts(mut self, hosts: &[&str]) -> RouteSpec {
        self.hosts = Some(hosts.iter().map(|h| h.to_string()).collect());
        self
    }

    pub fn tenant(mut self, id: &str) -> RouteSpec {
        self.legacy_tenant_id = Some(id.into());
        self
    }

    pub fn auth(mut self, auth: &str) -> RouteSpec {
        self.upstream_auth = Some(auth.into());
        self
    }

    pub fn clients(mut self, clients: &[(&str, &str)]) -> RouteSpec {
        self.clients = clients
            .iter()
            .map(|(n, t)| (n.to_string(), t.to_string()))
            .collect();
        self
    }
}

/// Builds a config directory (TOML, token files, PEM files) and the embedded upstreams behind it.
#[derive(Clone, Debug)]
pub struct Builder {
    pub upstreams: usize,
    /// Where the embedded upstreams listen.
    pub upstream_ip: IpAddr,
    /// Offer only http/1.1 by ALPN on the embedded upstreams (then the proxy sends a Host header).
    pub upstream_h1_only: bool,
    pub routes: Vec<RouteSpec>,
    /// `key = value` lines in `[limits]` (values as TOML, e.g. `"\"1s\""`).
    pub limits: Vec<(String, String)>,
    pub bind_ip: Option<String>,
    /// Write `egress.ca_file` trusting the test CA (default true).
    pub ca_file: bool,
    pub admin: bool,
    /// Appended to the file as is.
    pub extra_toml: String,
    /// Raw lines added to `[listen]`.
    pub listen_extra: String,
    /// `reload.watch`; off by default so that `Running::reload` is the only trigger.
    pub watch: bool,
}

impl Default for Builder {
    fn default() -> Self {
        Builder {
            upstreams: 1,
            upstream_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            upstream_h1_only: false,
            routes: vec![RouteSpec::new("main")],
            limits: vec![("shutdown_grace".into(), "\"5s\"".into())],
            bind_ip: None,
            ca_file: true,
            admin: false,
            extra_toml: String::new(),
            listen_extra: String::new(),
            watch: false,
        }
    }
}

impl Builder {
    pub fn new() -> Builder {
        Builder::default()
    }

    pub fn upstreams(mut self, n: usize) -> Builder {
        self.upstreams = n;
        self
    }

    pub fn upstream_ip(mut self, ip: IpAddr) -> Builder {
        self.upstream_ip = ip;
        self
    }

    pub fn h1_upstream(mut self) -> Builder {
        self.upstream_h1_only = true;
        self
    }

    pub fn routes(mut self, routes: Vec<RouteSpec>) -> Builder {
        self.routes = routes;
        self
    }

    /// Changes the single default route.
    pub fn route(mut self, f: impl FnOnce(RouteSpec) -> RouteSpec) -> Builder {
        let r = self.routes.remove(0);
        self.routes.insert(0, f(r));
        self
    }

    pub fn limit(mut self, key: &str, toml_value: &str) -> Builder {
        self.limits.retain(|(k, _)| k != key);
        self.limits.push((key.into(), toml_value.into()));
        self
    }

    pub fn bind_ip(mut self, ip: &str) -> Builder {
        self.bind_ip = Some(ip.into());
        self
    }

    pub fn no_ca_file(mut self) -> Builder {
        self.ca_file = false;
        self
    }

    pub fn admin(mut self) -> Builder {
        self.admin = true;
        self
    }

    pub fn listen_extra(mut self, lines: &str) -> Builder {
        self.listen_extra.push_str(lines);
        self
    }

    /// No embedded upstream; the single route points at [`PLACEHOLDER_UPSTREAM`] until
    /// [`Prepared::point_at`] names the real one.
    pub fn placeholder_upstream(self) -> Builder {
        self.upstreams(0)
            .route(|r| r.target(Target::Url(PLACEHOLDER_UPSTREAM.into())))
    }

    pub fn extra(mut self, toml: &str) -> Builder {
        self.extra_toml.push_str(toml);
        self
    }

    /// Generates the PKI, starts the embedded upstreams and writes the config directory.
    pub async fn prepare(self) -> Prepared {
        let pki = DevPki::new("scim-proxy test CA").expect("test CA");
        let upstream_cert = pki
            .issue(
                &["localhost"],
                &[
                    IpAddr::V4(Ipv4Addr::LOCALHOST),
                    IpAddr::V6(Ipv6Addr::LOCALHOST),
                ],
            )
            .expect("upstream certificate");
        let proxy_cert = pki
            .issue(
                &["localhost", "addon-a.example", "addon-b.example"],
                &[IpAddr::V4(Ipv4Addr::LOCALHOST)],
            )
            .expect("proxy certificate");

        let v2_tokens: Vec<String> = self
            .routes
            .iter()
            .map(|r| format!("v2-{}-{}", r.name, uuid::Uuid::new_v4().simple()))
            .collect();

        let mut upstreams = Vec::new();
        for i in 0..self.upstreams {
            let tokens = self
                .routes
                .iter()
                .zip(&v2_tokens)
                .filter(|(r, _)| {
                    matches!(r.target, Target::Embedded(j) | Target::EmbeddedByName(j) if j == i)
                })
                .map(|(_, t)| t.clone())
                .collect();
            let tls = upstream_tls(&upstream_cert, self.upstream_h1_only);
            let up = Upstream::start(UpstreamOptions {
                bind: SocketAddr::new(self.upstream_ip, 0),
                tls: Some(tls),
                base_path: "/api/v2/scim".into(),
                tokens,
            })
            .await
            .expect("start embedded upstream");
            upstreams.push(up);
        }

        let dir = tempfile::Builder::new()
            .prefix("scim-proxy-test-")
            .tempdir()
            .expect("temp dir");
        write_file(dir.path(), "ca.pem", pki.ca_pem());
        write_file(dir.path(), "proxy.crt", &proxy_cert.cert_pem);
        write_private(dir.path(), "proxy.key", &proxy_cert.key_pem);
        for (r, t) in self.routes.iter().zip(&v2_tokens) {
            // A trailing newline, as `echo > file` leaves it.
            write_private(dir.path(), &format!("{}.token", r.name), &format!("{t}\n"));
        }

        let toml = self.toml(&upstreams);
        let config_path = dir.path().join("scim-proxy.toml");
        std::fs::write(&config_path, &toml).expect("write config");
        Prepared {
            dir,
            config_path,
            toml,
            ca_pem: pki.ca_pem().to_string(),
            pki,
            upstream_cert,
            upstreams,
            v2_tokens,
            routes: self.routes,
        }
    }

    /// Prepares and starts the proxy; panics if the config does not load.
    pub async fn start(self) -> TestProxy {
        self.prepare().await.start().await
    }

    fn toml(&self, upstreams: &[Upstream]) -> String {
        let mut t = String::new();
        t.push_str("# written by tests/support\n[listen]\naddr = \"127.0.0.1:0\"\ncert = \"proxy.crt\"\nkey = \"proxy.key\"\n");
        t.push_str(&self.listen_extra);
        t.push('\n');
        if self.admin {
            t.push_str("[admin]\naddr = \"127.0.0.1:0\"\n\n");
        }
        t.push_str("[limits]\n");
        for (k, v) in &self.limits {
            let _ = writeln!(t, "{k} = {v}");
        }
        t.push_str("\n[egress]\n");
        if self.ca_file {
            t.push_str("ca_file = \"ca.pem\"\n");
        }
        if let Some(ip) = &self.bind_ip {
            let _ = writeln!(t, "bind_ip = \"{ip}\"");
        }
        let _ = writeln!(t, "\n[reload]\nwatch = {}", self.watch);
        // The traffic log goes to a file of the test's own (stdout would mix with the test output).
        t.push_str("\n[log]\ntraffic = \"traffic.log\"\n");
        for r in &self.routes {
            let url = match &r.target {
                Target::Embedded(i) => format!("https://{}/api/v2/scim", upstreams[*i].addr()),
                Target::EmbeddedByName(i) => format!(
                    "https://localhost:{}/api/v2/scim",
                    upstreams[*i].addr().port()
                ),
                Target::Url(u) => u.clone(),
            };
            let _ = write!(
                t,
                "\n[[routes]]\nname = \"{}\"\nupstream = \"{url}\"\ntoken_file = \"{}.token\"\n",
                r.name, r.name
            );
            if let Some(hosts) = &r.hosts {
                let list: Vec<String> = hosts.iter().map(|h| format!("\"{h}\"")).collect();
                let _ = writeln!(t, "hosts = [{}]", list.join(", "));
            }
            if let Some(id) = &r.legacy_tenant_id {
                let _ = writeln!(t, "legacy_tenant_id = \"{id}\"");
            }
            if let Some(a) = &r.upstream_auth {
                let _ = writeln!(t, "upstream_auth = \"{a}\"");
            }
            t.push_str(&r.extra);
            for (name, token) in &r.clients {
                let _ = write!(
                    t,
                    "\n[[routes.clients]]\nname = \"{name}\"\ntoken_sha256 = \"{}\"\n",
                    sha256_hex(token.as_bytes())
                );
            }
        }
        t.push('\n');
        t.push_str(&self.extra_toml);
        t
    }
}

pub fn upstream_tls(cert: &IssuedCert, h1_only: bool) -> Arc<rustls::ServerConfig> {
    let tls = devcerts::server_config(cert).expect("upstream TLS config");
    if !h1_only {
        return tls;
    }
    let mut c = (*tls).clone();
    c.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(c)
}

pub fn write_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
    p
}

/// Keys and tokens: owner-only, as an operator would keep them.
pub fn write_private(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = write_file(dir, name, text);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    }
    p
}

/// A written config directory with its upstreams running, not yet served.
pub struct Prepared {
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
    pub toml: String,
    pub ca_pem: String,
    pub pki: DevPki,
    pub upstream_cert: IssuedCert,
    pub upstreams: Vec<Upstream>,
    /// Parallel to `routes`.
    pub v2_tokens: Vec<String>,
    pub routes: Vec<RouteSpec>,
}

/// A route URL that nothing serves, replaced by [`Prepared::point_at`].
pub const PLACEHOLDER_UPSTREAM: &str = "https://127.0.0.1:1/api/v2/scim";

impl Prepared {
    /// Replaces `from` by `to` in the config file (asserting it occurs).
    pub fn edit_config(&mut self, from: &str, to: &str) {
        assert!(self.toml.contains(from), "{from:?} not in the config");
        self.toml = self.toml.replace(from, to);
        std::fs::write(&self.config_path, &self.toml).expect("write config");
    }

    /// Points the placeholder route at `https://127.0.0.1:<port>/api/v2/scim` of `addr`.
    pub fn point_at(&mut self, addr: SocketAddr) {
        self.edit_config(PLACEHOLDER_UPSTREAM, &format!("https://{addr}/api/v2/scim"));
    }

    /// What `serve` and `check` do: read, validate, load everything it names.
    pub fn load(&self) -> Result<Snapshot, Problems> {
        state::read_config(&self.config_path).and_then(|c| state::build(c, None))
    }

    pub async fn start(self) -> TestProxy {
        let snapshot = match self.load() {
            Ok(s) => s,
            Err(p) => panic!("the test config does not load:\n{p}\n---\n{}", self.toml),
        };
        let running = scim_proxy::start(snapshot, Some(self.config_path.clone()))
            .await
            .expect("start the proxy");
        let addr = running.proxy_addr;
        let base = format!("https://localhost:{}", addr.port());
        let mut tls = devcerts::client_config(&self.ca_pem, &[]).expect("client TLS");
        // No SNI, so tests may send any Host (Host and SNI differing is 421, tested on its own).
        Arc::make_mut(&mut tls).enable_sni = false;
        let client = ScimClient::new(&base, tls, false);
        TestProxy {
            running: Some(running),
            addr,
            base,
            client,
            prepared: self,
        }
    }

    /// Stops the upstreams of a config that was never served.
    pub async fn shutdown(self) {
        for u in self.upstreams {
            bounded("upstream shutdown", u.shutdown()).await;
        }
    }
}

pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

/// Adds `lines` to the `[log]` table the harness writes.
pub fn log_config(p: &mut Prepared, lines: &str) {
    p.edit_config(
        "[log]\ntraffic = \"traffic.log\"\n",
        &format!("[log]\ntraffic = \"traffic.log\"\n{lines}"),
    );
}

pub fn route_expiring(name: &str, at: SystemTime) -> RouteSpec {
    let mut r = RouteSpec::new(name);
    r.extra = format!("token_expires = \"{}\"\n", rfc3339(at));
    r
}

pub const DAY: Duration = Duration::from_secs(86_400);
