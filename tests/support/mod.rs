//! Shared harness for the integration tests: a throwaway PKI, embedded upstreams, a config written to a
//! temp dir and loaded the way `serve` loads it, a TLS client, raw TLS/TCP helpers and tiny raw servers
//! for faults the embedded upstream cannot produce.
#![allow(dead_code)]

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode, Version};
use http_body_util::Full;
use rustls_pki_types::ServerName;
use rustls_pki_types::pem::PemObject;
use scim_proxy::lab::client::{Answer, ScimClient};
use scim_proxy::lab::devcerts::{self, DevPki, IssuedCert};
use scim_proxy::lab::upstream::{Upstream, UpstreamOptions};
use scim_proxy::{Problems, Running, Snapshot, state};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// The old bearer tokens the IdPs keep sending (the proxy only knows their SHA-256).
pub const OKTA: &str = "okta-old-scim-token-5b1e";
pub const ENTRA: &str = "entra-old-scim-token-77c2";

pub const SCIM_ERROR_URN: &str = "urn:ietf:params:scim:api:messages:2.0:Error";

/// Upper bound for any single step that talks to a socket.
pub const STEP: Duration = Duration::from_secs(20);

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

// ------------------------------------------------------------------------------------------ config

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

fn upstream_tls(cert: &IssuedCert, h1_only: bool) -> Arc<rustls::ServerConfig> {
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

/// The traffic log `traffic.log` in `dir`, one JSON value per line (unparsable lines panic).
pub fn read_traffic(dir: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(dir.join("traffic.log")).unwrap_or_default();
    text.lines()
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("traffic line not JSON ({e}): {l}"))
        })
        .collect()
}

/// Awaits `f`, panicking if it takes longer than 40 s (nothing in these tests should).
pub async fn bounded<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(40), f)
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish within 40 s"))
}

// ------------------------------------------------------------------------------------------ proxy

/// A running proxy in front of its embedded upstreams.
pub struct TestProxy {
    pub running: Option<Running>,
    pub addr: SocketAddr,
    /// `https://localhost:<port>`, what the client addresses.
    pub base: String,
    pub client: ScimClient,
    pub prepared: Prepared,
}

impl TestProxy {
    pub fn running(&self) -> &Running {
        self.running.as_ref().expect("running")
    }

    pub fn upstream(&self, i: usize) -> &Upstream {
        &self.prepared.upstreams[i]
    }

    pub fn v2(&self, route: usize) -> &str {
        &self.prepared.v2_tokens[route]
    }

    pub fn ca_pem(&self) -> &str {
        &self.prepared.ca_pem
    }

    pub fn dir(&self) -> &Path {
        self.prepared.dir.path()
    }

    pub fn config_path(&self) -> &Path {
        &self.prepared.config_path
    }

    /// The traffic log so far, one JSON value per line.
    pub fn traffic(&self) -> Vec<serde_json::Value> {
        read_traffic(self.dir())
    }

    /// Every secret a response body must never carry.
    pub fn secrets(&self) -> Vec<String> {
        let mut s: Vec<String> = self.prepared.v2_tokens.clone();
        for r in &self.prepared.routes {
            for (_, t) in &r.clients {
                s.push(t.clone());
            }
        }
        s
    }

    /// Requests recorded by every upstream, in upstream order.
    pub fn upstream_total(&self) -> usize {
        self.prepared
            .upstreams
            .iter()
            .map(|u| u.requests().len())
            .sum()
    }

    /// A request builder for `path` on the proxy (no credentials).
    pub fn req(&self, method: Method, path: &str) -> http::request::Builder {
        Request::builder()
            .method(method)
            .uri(format!("{}{}", self.base, path))
            .header("accept", "application/scim+json")
    }

    pub async fn call(&self, req: http::request::Builder, body: impl Into<Bytes>) -> Answer {
        let req = req.body(Full::new(body.into())).expect("request");
        self.client
            .request(req)
            .await
            .expect("request to the proxy")
    }

    /// `GET path` with `Authorization: Bearer <token>`.
    pub async fn get(&self, path: &str, token: &str) -> Answer {
        self.client
            .send(Method::GET, path, Some(token), None)
            .await
            .expect("request to the proxy")
    }

    pub async fn send(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&serde_json::Value>,
    ) -> Answer {
        self.client
            .send(method, path, token, body)
            .await
            .expect("request to the proxy")
    }

    /// Writes `request` raw over TLS (http/1.1) and reads the answer to EOF.
    pub async fn raw(&self, request: &[u8]) -> Answer {
        raw_tls_exchange(self.addr, &self.prepared.ca_pem, request)
            .await
            .expect("raw exchange with the proxy")
    }

    /// Asserts a SCIM Error the proxy answered itself: status, schemas, status string, detail
    /// containing each of `detail_has` (case-insensitive), and no secret anywhere in the answer.
    pub fn assert_error(&self, a: &Answer, status: u16, detail_has: &[&str]) {
        assert_scim_error(a, status, detail_has, &self.secrets());
    }

    pub async fn stop(mut self) {
        if let Some(r) = self.running.take() {
            bounded("proxy stop", r.stop()).await;
        }
        for u in std::mem::take(&mut self.prepared.upstreams) {
            bounded("upstream shutdown", u.shutdown()).await;
        }
    }
}

pub fn assert_scim_error(a: &Answer, status: u16, detail_has: &[&str], secrets: &[String]) {
    let text = String::from_utf8_lossy(&a.body);
    assert_eq!(a.status.as_u16(), status, "status; body: {text}");
    let ct = a.header("content-type").unwrap_or_default();
    assert!(
        ct.starts_with("application/scim+json"),
        "content-type {ct:?}; body: {text}"
    );
    let v: serde_json::Value = serde_json::from_slice(&a.body)
        .unwrap_or_else(|e| panic!("the error body is not JSON ({e}): {text}"));
    assert_eq!(v["schemas"], serde_json::json!([SCIM_ERROR_URN]), "{text}");
    assert_eq!(v["status"], serde_json::json!(status.to_string()), "{text}");
    let detail = v["detail"]
        .as_str()
        .unwrap_or_else(|| panic!("no detail string: {text}"));
    assert!(!detail.trim().is_empty(), "empty detail: {text}");
    for want in detail_has {
        assert!(
            detail.to_lowercase().contains(&want.to_lowercase()),
            "detail {detail:?} should mention {want:?}"
        );
    }
    assert_no_secret(a, secrets);
}

/// Neither the body nor any header carries one of `secrets`.
pub fn assert_no_secret(a: &Answer, secrets: &[String]) {
    let text = String::from_utf8_lossy(&a.body);
    for s in secrets {
        assert!(!text.contains(s.as_str()), "the body leaks a token: {text}");
        for (k, v) in &a.headers {
            assert!(
                !String::from_utf8_lossy(v.as_bytes()).contains(s.as_str()),
                "header {k} leaks a token"
            );
        }
    }
}

// ------------------------------------------------------------------------------------------ TLS clients

/// rustls roots holding only the test CA.
pub fn roots(ca_pem: &str) -> rustls::RootCertStore {
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pki_types::CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.expect("CA PEM")).expect("CA root");
    }
    roots
}

/// A client config trusting the test CA, limited to `versions`, offering `alpn`.
pub fn client_tls(
    ca_pem: &str,
    versions: &[&'static rustls::SupportedProtocolVersion],
    alpn: &[&[u8]],
) -> Arc<rustls::ClientConfig> {
    let mut c = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(versions)
    .expect("versions")
    .with_root_certificates(roots(ca_pem))
    .with_no_client_auth();
    c.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    // No SNI, so tests may send any Host (Host and SNI differing is 421, tested on its own).
    c.enable_sni = false;
    Arc::new(c)
}

pub type ClientTls = tokio_rustls::client::TlsStream<TcpStream>;

/// Connects over TLS (SNI `localhost`) with `config`.
pub async fn tls_connect(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
) -> std::io::Result<ClientTls> {
    tokio::time::timeout(STEP, async {
        let tcp = TcpStream::connect(addr).await?;
        TlsConnector::from(config)
            .connect(ServerName::try_from("localhost").expect("name"), tcp)
            .await
    })
    .await
    .map_err(|_| std::io::Error::other("TLS connect timed out"))?
}

/// Writes `request` over a fresh TLS connection (ALPN http/1.1) and reads the answer to EOF.
pub async fn raw_tls_exchange(
    addr: SocketAddr,
    ca_pem: &str,
    request: &[u8],
) -> Result<Answer, String> {
    let config = client_tls(
        ca_pem,
        &[&rustls::version::TLS13, &rustls::version::TLS12],
        &[b"http/1.1"],
    );
    let mut tls = tls_connect(addr, config)
        .await
        .map_err(|e| format!("TLS connect: {e}"))?;
    exchange(&mut tls, request).await
}

/// Writes `request`, reads until EOF (or an error after some bytes), parses one HTTP/1.1 answer.
pub async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    request: &[u8],
) -> Result<Answer, String> {
    s.write_all(request)
        .await
        .map_err(|e| format!("write: {e}"))?;
    s.flush().await.map_err(|e| format!("flush: {e}"))?;
    let bytes = read_to_end_lenient(s, STEP).await?;
    parse_response(&bytes)
}

/// Reads until EOF, or until an error/timeout once at least something arrived.
pub async fn read_to_end_lenient<S: AsyncRead + Unpin>(
    s: &mut S,
    limit: Duration,
) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Ok(Ok(0)) => return Ok(out),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            // No close_notify, or a reset after the answer: what arrived is the answer.
            Ok(Err(_)) if !out.is_empty() => return Ok(out),
            Ok(Err(e)) => return Err(format!("read: {e}")),
            Err(_) if !out.is_empty() && complete_response(&out) => return Ok(out),
            Err(_) => {
                return Err(format!(
                    "no EOF within {limit:?}; got {:?}",
                    String::from_utf8_lossy(&out)
                ));
            }
        }
    }
}

fn complete_response(bytes: &[u8]) -> bool {
    parse_response(bytes).is_ok()
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Parses one HTTP/1.1 response (Content-Length, chunked, or to EOF), skipping 1xx interim ones.
pub fn parse_response(mut bytes: &[u8]) -> Result<Answer, String> {
    while bytes.starts_with(b"HTTP/1.1 1") {
        let end = find(bytes, b"\r\n\r\n").ok_or("incomplete interim response")?;
        bytes = &bytes[end + 4..];
    }
    let end = find(bytes, b"\r\n\r\n").ok_or_else(|| {
        format!(
            "no complete response head in {:?}",
            String::from_utf8_lossy(bytes)
        )
    })?;
    let head = std::str::from_utf8(&bytes[..end]).map_err(|e| format!("head not UTF-8: {e}"))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let version = match parts.next() {
        Some("HTTP/1.1") => Version::HTTP_11,
        Some("HTTP/1.0") => Version::HTTP_10,
        other => return Err(format!("not an HTTP/1 status line: {other:?}")),
    };
    let status = parts
        .next()
        .and_then(|s| s.parse::<u16>().ok())
        .and_then(|s| StatusCode::from_u16(s).ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let mut headers = HeaderMap::new();
    for line in lines {
        let (k, v) = line
            .split_once(':')
            .ok_or_else(|| format!("bad header line {line:?}"))?;
        headers.append(
            HeaderName::from_bytes(k.trim().as_bytes()).map_err(|e| e.to_string())?,
            HeaderValue::from_str(v.trim()).map_err(|e| e.to_string())?,
        );
    }
    let rest = &bytes[end + 4..];
    let chunked = headers
        .get("transfer-encoding")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    let body = if chunked {
        decode_chunked(rest)?
    } else if let Some(len) = headers
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
    {
        if rest.len() < len {
            return Err(format!("body short: {} of {len}", rest.len()));
        }
        rest[..len].to_vec()
    } else {
        rest.to_vec()
    };
    Ok(Answer {
        status,
        headers,
        body: Bytes::from(body),
        version,
    })
}

fn decode_chunked(mut rest: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let line_end = find(rest, b"\r\n").ok_or("chunk size line incomplete")?;
        let size_text = std::str::from_utf8(&rest[..line_end]).map_err(|e| e.to_string())?;
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16).map_err(|e| format!("chunk size: {e}"))?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        if rest.len() < size + 2 {
            return Err("chunk incomplete".into());
        }
        out.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}

/// Where a chunked body (without trailers) that starts `buf` ends, once it is complete.
fn chunked_end(buf: &[u8]) -> Option<usize> {
    let mut at = 0;
    loop {
        let line_end = at + find(&buf[at..], b"\r\n")?;
        let size_text = std::str::from_utf8(&buf[at..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        at = line_end + 2;
        if size == 0 {
            return (buf.len() >= at + 2 && &buf[at..at + 2] == b"\r\n").then_some(at + 2);
        }
        at += size + 2;
        if buf.len() < at {
            return None;
        }
    }
}

/// Plain HTTP/1.1 `GET path` (Connection: close) to `addr`; Err if the connection is refused.
pub async fn plain_get(addr: SocketAddr, path: &str) -> Result<Answer, String> {
    let mut tcp = tokio::time::timeout(STEP, TcpStream::connect(addr))
        .await
        .map_err(|_| "connect timed out".to_string())?
        .map_err(|e| format!("connect: {e}"))?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    exchange(&mut tcp, req.as_bytes()).await
}

/// A port on 127.0.0.1 with nothing listening (bound, then released).
pub async fn unused_port() -> u16 {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("bind");
    let port = l.local_addr().expect("addr").port();
    drop(l);
    port
}

/// Whether this host can bind `ip` (i.e. the address is configured here).
pub fn can_bind(ip: IpAddr) -> bool {
    std::net::UdpSocket::bind((ip, 0)).is_ok()
}

// ------------------------------------------------------------------------------------------ raw servers

/// What a [`RawServer`] does with each connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RawBehaviour {
    /// Accepts TCP and then never says anything (no TLS handshake, no answer).
    Silent,
    /// TLS (http/1.1 only); answers GET with `200 {}` and keeps the connection; reads any other
    /// request completely and then closes the connection without answering.
    CloseUnlessGet,
    /// TLS (http/1.1 only); reads a request head and its body, signalling body progress, then answers
    /// `200` with a body of two parts, the second only after `release_response` is called.
    StreamProbe,
}

/// A request as a raw server read it.
#[derive(Clone, Debug)]
pub struct RawRequest {
    pub method: String,
    pub target: String,
    pub head: String,
    pub body: Vec<u8>,
}

/// A tiny TLS/TCP server on 127.0.0.1 for faults; stopped (every connection cut) by `stop`.
pub struct RawServer {
    pub addr: SocketAddr,
    pub requests: Arc<Mutex<Vec<RawRequest>>>,
    pub connections: Arc<AtomicUsize>,
    /// Body bytes of the request in progress received so far (StreamProbe).
    pub body_progress: tokio::sync::watch::Receiver<usize>,
    release: Arc<tokio::sync::Notify>,
    task: JoinHandle<()>,
}

/// The marker that ends the first part of a StreamProbe response body.
pub const FIRST_PART: &[u8] = b"FIRST-PART-OF-THE-RESPONSE;";
pub const SECOND_PART: &[u8] = b"SECOND-PART-OF-THE-RESPONSE";

impl RawServer {
    pub async fn start(behaviour: RawBehaviour, cert: &IssuedCert) -> RawServer {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("bind raw server");
        let addr = listener.local_addr().expect("addr");
        let acceptor = TlsAcceptor::from(upstream_tls(cert, true));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let (progress_tx, body_progress) = tokio::sync::watch::channel(0usize);
        let progress_tx = Arc::new(progress_tx);
        let release = Arc::new(tokio::sync::Notify::new());
        let (reqs, conns, rel) = (requests.clone(), connections.clone(), release.clone());
        let task = tokio::spawn(async move {
            let mut set = tokio::task::JoinSet::new();
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                conns.fetch_add(1, Ordering::SeqCst);
                let (acceptor, reqs, progress, rel) = (
                    acceptor.clone(),
                    reqs.clone(),
                    progress_tx.clone(),
                    rel.clone(),
                );
                set.spawn(async move {
                    if behaviour == RawBehaviour::Silent {
                        let _tcp = tcp;
                        std::future::pending::<()>().await;
                        return;
                    }
                    let Ok(Ok(tls)) = tokio::time::timeout(STEP, acceptor.accept(tcp)).await else {
                        return;
                    };
                    raw_conn(tls, behaviour, reqs, progress, rel).await;
                });
            }
        });
        RawServer {
            addr,
            requests,
            connections,
            body_progress,
            release,
            task,
        }
    }

    pub fn requests(&self) -> Vec<RawRequest> {
        self.requests.lock().expect("lock").clone()
    }

    /// Lets a StreamProbe send the second part of its response body.
    pub fn release_response(&self) {
        self.release.notify_one();
    }

    pub async fn stop(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

async fn raw_conn<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    behaviour: RawBehaviour,
    reqs: Arc<Mutex<Vec<RawRequest>>>,
    progress: Arc<tokio::sync::watch::Sender<usize>>,
    release: Arc<tokio::sync::Notify>,
) {
    let mut buf: Vec<u8> = Vec::new();
    let mut tmp = vec![0u8; 64 * 1024];
    loop {
        // Head.
        let head_end = loop {
            if let Some(i) = find(&buf, b"\r\n\r\n") {
                break i;
            }
            match s.read(&mut tmp).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&tmp[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
        buf.drain(..head_end + 4);
        let mut first = head.lines().next().unwrap_or_default().split(' ');
        let method = first.next().unwrap_or_default().to_string();
        let target = first.next().unwrap_or_default().to_string();
        let lower = head.to_ascii_lowercase();
        let content_length = lower
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse::<usize>().ok());
        let chunked = lower
            .lines()
            .any(|l| l.starts_with("transfer-encoding:") && l.contains("chunked"));
        progress.send_replace(0);
        // Body: Content-Length, or chunked up to the last chunk (kept raw).
        let body = loop {
            progress.send_replace(buf.len());
            if let Some(len) = content_length {
                if buf.len() >= len {
                    break buf.drain(..len).collect::<Vec<u8>>();
                }
            } else if chunked {
                if let Some(end) = chunked_end(&buf) {
                    let raw = buf.drain(..end).collect::<Vec<u8>>();
                    break decode_chunked(&raw).unwrap_or(raw);
                }
            } else {
                break Vec::new();
            }
            match s.read(&mut tmp).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&tmp[..n]),
            }
        };
        reqs.lock().expect("lock").push(RawRequest {
            method: method.clone(),
            target,
            head,
            body,
        });
        match behaviour {
            RawBehaviour::Silent => return,
            RawBehaviour::CloseUnlessGet if method != "GET" => {
                // Read it all, answer nothing, hang up.
                let _ = s.shutdown().await;
                return;
            }
            RawBehaviour::CloseUnlessGet => {
                let ok = b"HTTP/1.1 200 OK\r\ncontent-type: application/scim+json\r\ncontent-length: 2\r\n\r\n{}";
                if s.write_all(ok).await.is_err() {
                    return;
                }
            }
            RawBehaviour::StreamProbe => {
                let head = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n";
                let first = format!("{:x}\r\n", FIRST_PART.len());
                if s.write_all(head).await.is_err()
                    || s.write_all(first.as_bytes()).await.is_err()
                    || s.write_all(FIRST_PART).await.is_err()
                    || s.write_all(b"\r\n").await.is_err()
                    || s.flush().await.is_err()
                {
                    return;
                }
                release.notified().await;
                let second = format!("{:x}\r\n", SECOND_PART.len());
                let _ = s.write_all(second.as_bytes()).await;
                let _ = s.write_all(SECOND_PART).await;
                let _ = s.write_all(b"\r\n0\r\n\r\n").await;
                let _ = s.flush().await;
                let _ = s.shutdown().await;
                return;
            }
        }
    }
}

// ------------------------------------------------------------------------------------------ child processes

/// A child process killed (and reaped) when dropped, whatever the test did.
pub struct ChildGuard(pub Option<std::process::Child>);

impl ChildGuard {
    pub fn id(&self) -> u32 {
        self.0.as_ref().expect("child").id()
    }

    pub fn child(&mut self) -> &mut std::process::Child {
        self.0.as_mut().expect("child")
    }

    /// Polls for exit for up to `limit`; None if still running.
    pub fn wait_for(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = self.child().try_wait() {
                return Some(status);
            }
            if std::time::Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_scim-proxy")
}

/// Runs the binary to completion with `stdin`, killing it (and failing) after `limit`.
pub fn run_cli(
    args: &[&str],
    stdin: &[u8],
    envs: &[(&str, &str)],
    limit: Duration,
) -> std::process::Output {
    use std::io::{Read, Write};
    use std::process::{Command, Stdio};
    let mut cmd = Command::new(bin());
    cmd.args(args)
        .env("NO_COLOR", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut guard = ChildGuard(Some(cmd.spawn().expect("spawn scim-proxy")));
    let child = guard.child();
    let mut input = child.stdin.take().expect("stdin");
    let data = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let out_reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let err_reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let status = guard
        .wait_for(limit)
        .unwrap_or_else(|| panic!("scim-proxy {args:?} did not exit within {limit:?}"));
    let _ = writer.join();
    let stdout = out_reader.join().unwrap_or_default();
    let stderr = err_reader.join().unwrap_or_default();
    std::process::Output {
        status,
        stdout,
        stderr,
    }
}

/// `scim-proxy serve` as a child process, its stderr going to a file read back on demand.
pub struct ServeChild {
    pub guard: ChildGuard,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl ServeChild {
    pub fn spawn(config: &Path) -> ServeChild {
        use std::process::{Command, Stdio};
        let dir = tempfile::tempdir().expect("temp dir");
        let log = dir.path().join("serve.stderr");
        let file = std::fs::File::create(&log).expect("stderr file");
        let child = Command::new(bin())
            .args(["--log-format", "json", "serve", "--config"])
            .arg(config)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(file))
            .spawn()
            .expect("spawn scim-proxy serve");
        ServeChild {
            guard: ChildGuard(Some(child)),
            log,
            _dir: dir,
        }
    }

    /// Everything the process wrote to stderr so far.
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.log).unwrap_or_default()).into_owned()
    }

    /// Waits (bounded) for the "serving" log line and returns the proxy's address from it.
    pub async fn serving_addr(&mut self, limit: Duration) -> SocketAddr {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let found = self.stderr().lines().find_map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).ok()?;
                let msg = v.get("message")?.as_str()?;
                if !msg.contains("serving") {
                    return None;
                }
                v.get("addr")?.as_str()?.parse::<SocketAddr>().ok()
            });
            if let Some(addr) = found {
                return addr;
            }
            if let Ok(Some(status)) = self.guard.child().try_wait() {
                panic!("serve exited early ({status}):\n{}", self.stderr());
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no 'serving' line within {limit:?}:\n{}",
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits (bounded, without blocking the runtime) for the process to exit.
    pub async fn exit_status(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = self.guard.child().try_wait() {
                return Some(status);
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `kill -<signal> <pid>`.
    pub fn signal(&self, signal: &str) {
        let status = std::process::Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.guard.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} failed");
    }
}
