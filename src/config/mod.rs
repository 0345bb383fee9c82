//! The config file: raw serde structs, then validation into a `Config`. No I/O here.
//!
//! Every problem is collected (not just the first) and names the file, the key and the reason.
//! Unknown keys are errors: a misplaced key must never be silently ignored.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;

/// One thing wrong with a config, addressed as `file: key: reason`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: PathBuf,
    pub key: String,
    pub reason: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}: {}", self.file.display(), self.reason)
        } else {
            write!(f, "{}: {}: {}", self.file.display(), self.key, self.reason)
        }
    }
}

/// All the problems found in one config, printed one per line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problems(pub Vec<Problem>);

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Problems {}

// ---------------------------------------------------------------- raw file structs

#[derive(Debug, Default, Deserialize)]
struct RawConfig {
    listen: Option<RawListen>,
    admin: Option<RawAdmin>,
    limits: Option<RawLimits>,
    egress: Option<RawEgress>,
    reload: Option<RawReload>,
    log: Option<RawLog>,
    runtime: Option<RawRuntime>,
    #[serde(default)]
    routes: Vec<RawRoute>,
}

#[derive(Debug, Default, Deserialize)]
struct RawListen {
    addr: Option<String>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    allow_cidrs: Option<Vec<String>>,
    proxy_protocol: Option<bool>,
    trusted_proxies: Option<Vec<String>>,
}

/// A size as operators write it: `4194304`, `"4MiB"`, `"512KiB"`, `"1MB"`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawSize {
    Bytes(u64),
    Text(String),
}

#[derive(Debug, Default, Deserialize)]
struct RawLog {
    traffic: Option<String>,
    max_file_bytes: Option<RawSize>,
    keep_files: Option<u64>,
    queue_records: Option<u64>,
    pii: Option<String>,
    pii_key_file: Option<PathBuf>,
    pii_key_env: Option<String>,
    capture_bodies: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
struct RawRuntime {
    worker_threads: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
struct RawReload {
    watch: Option<bool>,
    interval: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct RawAdmin {
    addr: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct RawLimits {
    upstream_timeout: Option<String>,
    upstream_connect_timeout: Option<String>,
    upstream_idle_timeout: Option<String>,
    header_read_timeout: Option<String>,
    body_read_timeout: Option<String>,
    tls_handshake_timeout: Option<String>,
    idle_timeout: Option<String>,
    shutdown_grace: Option<String>,
    max_body: Option<RawSize>,
    max_header_bytes: Option<RawSize>,
    max_headers: Option<u64>,
    max_connections: Option<u64>,
    max_requests_per_client: Option<u64>,
    max_concurrent_streams: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
struct RawEgress {
    bind_ip: Option<String>,
    ca_file: Option<PathBuf>,
    via_proxy: Option<String>,
    via_proxy_auth_file: Option<PathBuf>,
    via_proxy_auth_env: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct RawRoute {
    name: Option<String>,
    upstream: Option<String>,
    token_file: Option<PathBuf>,
    token_env: Option<String>,
    hosts: Option<Vec<String>>,
    public_url: Option<String>,
    legacy_tenant_id: Option<String>,
    upstream_auth: Option<String>,
    token_expires: Option<String>,
    token_warn_days: Option<u64>,
    rewrite_body_urls: Option<bool>,
    #[serde(default)]
    clients: Vec<RawClient>,
}

#[derive(Debug, Default, Deserialize)]
struct RawClient {
    name: Option<String>,
    token_sha256: Option<String>,
    additional_token_sha256: Option<Vec<String>>,
}

// ---------------------------------------------------------------- validated config

/// A validated config. Paths are resolved against the config file's directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub source: PathBuf,
    pub listen: Listen,
    pub admin: Option<Admin>,
    pub limits: Limits,
    pub egress: Egress,
    pub reload: Reload,
    pub log: Log,
    /// Tokio worker threads; None = one per core.
    pub worker_threads: Option<usize>,
    pub routes: Vec<Route>,
}

/// The traffic log: one JSON object per request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Log {
    pub traffic: TrafficSink,
    pub max_file_bytes: u64,
    pub keep_files: usize,
    /// Traffic records waiting for a sink that does not keep up before new ones are dropped.
    pub queue_records: usize,
    pub pii: PiiMode,
    /// Key of the keyed hash of personal values; without one, a random per-process key.
    pub pii_key: Option<TokenSource>,
    pub capture_bodies: bool,
}

impl Default for Log {
    fn default() -> Self {
        Log {
            traffic: TrafficSink::Stdout,
            max_file_bytes: 100 * 1024 * 1024,
            keep_files: 10,
            queue_records: 8192,
            pii: PiiMode::Hash,
            pii_key: None,
            capture_bodies: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrafficSink {
    Off,
    Stdout,
    File(PathBuf),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PiiMode {
    Hash,
    Plain,
    Omit,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listen {
    pub addr: SocketAddr,
    /// None: plain HTTP (behind a TLS-terminating load balancer).
    pub tls: Option<TlsFiles>,
    /// Empty: every source is allowed.
    pub allow_cidrs: Vec<IpNet>,
    /// Expect a PROXY protocol v1/v2 header on connections from `trusted_proxies`.
    pub proxy_protocol: bool,
    /// Load balancers whose PROXY header and X-Forwarded-For are believed.
    pub trusted_proxies: Vec<IpNet>,
}

impl Listen {
    pub fn is_trusted_proxy(&self, ip: IpAddr) -> bool {
        self.trusted_proxies.iter().any(|n| n.contains(&ip))
    }

    pub fn is_allowed(&self, ip: IpAddr) -> bool {
        self.allow_cidrs.is_empty() || self.allow_cidrs.iter().any(|n| n.contains(&ip))
    }
}

/// Watching the config, certificate, key, CA and token files for changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reload {
    pub watch: bool,
    pub interval: Duration,
}

impl Default for Reload {
    fn default() -> Self {
        Reload {
            watch: true,
            interval: Duration::from_secs(2),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admin {
    pub addr: SocketAddr,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// From the request leaving to the upstream's response head: 504 after it.
    pub upstream_timeout: Duration,
    pub upstream_connect_timeout: Duration,
    /// Pooled upstream connections idle longer are closed (below common 60 s upstream keep-alives).
    pub upstream_idle_timeout: Duration,
    /// HTTP/1.1: the request head must arrive within this, counted from when the connection
    /// starts waiting for it (so it is also the keep-alive idle limit between requests).
    pub header_read_timeout: Duration,
    /// A request body that delivers no byte for this long is answered 408 and its upstream
    /// request aborted (a stalled body would otherwise hold the IdP's slot forever).
    pub body_read_timeout: Duration,
    pub tls_handshake_timeout: Duration,
    /// A connection with no request in flight for this long is closed, however many bytes
    /// (HTTP/2 PINGs, say) keep it warm; a response the client stops reading for this long too.
    pub idle_timeout: Duration,
    pub shutdown_grace: Duration,
    /// Request bodies above this are refused with 413.
    pub max_body: u64,
    /// HTTP/1.1 request head (request line + headers) above this is refused with 431.
    pub max_header_bytes: usize,
    pub max_headers: usize,
    /// Connections above this are closed at once (never queued).
    pub max_connections: usize,
    /// Requests in flight per route and IdP; beyond it 429 with Retry-After.
    pub max_requests_per_client: usize,
    /// HTTP/2 streams per connection.
    pub max_concurrent_streams: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            upstream_timeout: Duration::from_secs(30),
            upstream_connect_timeout: Duration::from_secs(10),
            upstream_idle_timeout: Duration::from_secs(30),
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(10),
            tls_handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            shutdown_grace: Duration::from_secs(30),
            max_body: 4 * 1024 * 1024,
            max_header_bytes: 16 * 1024,
            max_headers: 100,
            max_connections: 4096,
            max_requests_per_client: 64,
            max_concurrent_streams: 128,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Egress {
    pub bind_ip: Option<IpAddr>,
    pub ca_file: Option<PathBuf>,
    /// HTTP CONNECT forward proxy every upstream connection goes through.
    pub via_proxy: Option<ForwardProxy>,
}

/// `http://host:port` of a CONNECT forward proxy, and where its `user:password` is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardProxy {
    /// `http://host:port`
    pub url: String,
    pub credentials: Option<TokenSource>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub name: String,
    pub upstream: UpstreamBase,
    pub token: TokenSource,
    /// Lower-case host names, without port. Empty: this route serves any host.
    pub hosts: Vec<String>,
    /// The client-facing base every URL given back is built from, when set (else the checked Host).
    pub public_url: Option<PublicUrl>,
    pub legacy_tenant_id: Option<String>,
    pub upstream_auth: UpstreamAuth,
    /// When the v2 token expires (Netskope shows it when the token is made), if configured.
    pub token_expires: Option<std::time::SystemTime>,
    /// Warn this long before `token_expires`.
    pub token_warn: Duration,
    /// Rewrite URLs inside JSON bodies too (headers are always rewritten).
    pub rewrite_body_urls: bool,
    pub clients: Vec<Client>,
}

/// The route's upstream SCIM base, e.g. `https://acme.goskope.com/api/v2/scim`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamBase {
    /// Host as written (lower-cased), IPv6 without brackets.
    pub host: String,
    pub port: u16,
    /// `host[:port]` as it goes in the Host header / :authority.
    pub authority: String,
    /// Base path without trailing slash, e.g. `/api/v2/scim`; empty for the root.
    pub path: String,
}

impl UpstreamBase {
    /// `https://authority/path`, the prefix that upstream URLs in responses start with.
    pub fn url(&self) -> String {
        format!("https://{}{}", self.authority, self.path)
    }
}

/// A route's `public_url`, e.g. `https://scim.example.com/SCIM/v2`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicUrl {
    /// `https` or `http`.
    pub scheme: String,
    /// Lower-case host, IPv6 without brackets.
    pub host: String,
    /// `host[:port]` as written in URLs (lower-cased, brackets kept).
    pub authority: String,
    /// Path without trailing slash, e.g. `/SCIM/v2`.
    pub path: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    File(PathBuf),
    Env(String),
}

impl fmt::Display for TokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenSource::File(p) => write!(f, "file {}", p.display()),
            TokenSource::Env(v) => write!(f, "env ${v}"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamAuth {
    /// `Authorization: Bearer <v2 token>`, what Netskope's IdP guides configure.
    Bearer,
    /// `Netskope-Api-Token: <v2 token>`, the documented REST API v2 header.
    NetskopeApiToken,
}

impl fmt::Display for UpstreamAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            UpstreamAuth::Bearer => "bearer",
            UpstreamAuth::NetskopeApiToken => "netskope-api-token",
        })
    }
}

/// One IdP allowed on a route, known by the SHA-256 of the old bearer token(s) it sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    pub name: String,
    /// The first is `token_sha256`; more are allowed so an IdP token can be rotated.
    pub token_sha256: Vec<[u8; 32]>,
}

// ---------------------------------------------------------------- parsing and validation

/// Parses and validates config text read from `file`. Relative paths resolve against `file`'s directory.
pub fn parse(text: &str, file: &Path) -> Result<Config, Problems> {
    let mut v = Validator {
        file: file.to_path_buf(),
        problems: Vec::new(),
    };
    let deserializer = toml::Deserializer::new(text);
    let mut unknown = Vec::new();
    let raw: RawConfig = match serde_ignored::deserialize(deserializer, |path| {
        unknown.push(key_path(&path));
    }) {
        Ok(raw) => raw,
        Err(e) => return Err(Problems(vec![v.toml_problem(&e)])),
    };
    for key in unknown {
        let reason = match suggest_key(&key) {
            Some(near) => format!("unknown key; did you mean {near}?"),
            None => "unknown key (misspelt, or in the wrong table?)".to_string(),
        };
        v.problem(&key, reason);
    }
    let base_dir = file.parent().map(Path::to_path_buf).unwrap_or_default();
    let config = v.config(raw, &base_dir);
    if v.problems.is_empty() {
        Ok(config)
    } else {
        Err(Problems(v.problems))
    }
}

/// The closest known key to a misspelt one (`routes[0].token_fiel` -> `token_file`), from the
/// fields serde knows for that table, so the list never drifts from the structs.
fn suggest_key(path: &str) -> Option<&'static str> {
    let plain: Vec<&str> = path
        .split('.')
        .map(|part| part.split('[').next().unwrap_or(part))
        .collect();
    let (leaf, table) = plain.split_last()?;
    let fields = match table.join(".").as_str() {
        "" => fields_of::<RawConfig>(),
        "listen" => fields_of::<RawListen>(),
        "admin" => fields_of::<RawAdmin>(),
        "limits" => fields_of::<RawLimits>(),
        "egress" => fields_of::<RawEgress>(),
        "reload" => fields_of::<RawReload>(),
        "log" => fields_of::<RawLog>(),
        "runtime" => fields_of::<RawRuntime>(),
        "routes" => fields_of::<RawRoute>(),
        "routes.clients" => fields_of::<RawClient>(),
        _ => &[],
    };
    fields
        .iter()
        .map(|f| (strsim::damerau_levenshtein(leaf, f), *f))
        .filter(|(d, f)| *d <= 2 || strsim::normalized_damerau_levenshtein(leaf, f) >= 0.5)
        .min_by_key(|(d, _)| *d)
        .map(|(_, f)| f)
}

/// The field names serde's derive gives a struct, read by asking it to deserialize itself from a
/// deserializer that only records them.
fn fields_of<'de, T: Deserialize<'de>>() -> &'static [&'static str] {
    struct Fields(Option<&'static [&'static str]>);
    #[derive(Debug)]
    struct Stop;
    impl std::fmt::Display for Stop {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("stop")
        }
    }
    impl std::error::Error for Stop {}
    impl serde::de::Error for Stop {
        fn custom<M: fmt::Display>(_: M) -> Self {
            Stop
        }
    }
    impl<'de> serde::Deserializer<'de> for &mut Fields {
        type Error = Stop;
        fn deserialize_any<V: serde::de::Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
            Err(Stop)
        }
        fn deserialize_struct<V: serde::de::Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Stop> {
            self.0 = Some(fields);
            Err(Stop)
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
            option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
            ignored_any
        }
    }
    let mut fields = Fields(None);
    let _ = T::deserialize(&mut fields);
    fields.0.unwrap_or(&[])
}

struct Validator {
    file: PathBuf,
    problems: Vec<Problem>,
}

impl Validator {
    fn problem(&mut self, key: &str, reason: impl Into<String>) {
        self.problems.push(Problem {
            file: self.file.clone(),
            key: key.to_string(),
            reason: reason.into(),
        });
    }

    fn toml_problem(&self, e: &toml::de::Error) -> Problem {
        // toml's message already says the line, the column and the key; its caret excerpt only
        // reads right on lines of its own.
        Problem {
            file: self.file.clone(),
            key: String::new(),
            reason: e.to_string().trim_end().to_string(),
        }
    }

    fn config(&mut self, raw: RawConfig, base_dir: &Path) -> Config {
        let plain_listener = raw
            .listen
            .as_ref()
            .is_none_or(|l| l.cert.is_none() && l.key.is_none());
        let listen = self.listen(raw.listen, base_dir);
        let admin = raw.admin.and_then(|a| match a.addr {
            Some(addr) => self
                .socket_addr("admin.addr", &addr)
                .map(|addr| Admin { addr }),
            None => {
                self.problem("admin.addr", "required when [admin] is present");
                None
            }
        });
        let limits = self.limits(raw.limits.unwrap_or_default());
        let egress = self.egress(raw.egress.unwrap_or_default(), base_dir);
        let reload = self.reload(raw.reload.unwrap_or_default());
        let log = self.log(raw.log.unwrap_or_default(), base_dir);
        let worker_threads = raw
            .runtime
            .and_then(|r| r.worker_threads)
            .map(|n| self.count("runtime.worker_threads", Some(n), 1, 1, 1024));
        let routes = self.routes(raw.routes, base_dir, plain_listener);
        if let (Some(a), l) = (&admin, &listen)
            && a.addr == l.addr
            && a.addr.port() != 0
        {
            self.problem("admin.addr", "must differ from listen.addr");
        }
        Config {
            source: self.file.clone(),
            listen,
            admin,
            limits,
            egress,
            reload,
            log,
            worker_threads,
            routes,
        }
    }

    fn socket_addr(&mut self, key: &str, s: &str) -> Option<SocketAddr> {
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

    fn listen(&mut self, raw: Option<RawListen>, base_dir: &Path) -> Listen {
        let fallback = SocketAddr::from(([0, 0, 0, 0], 0));
        let Some(raw) = raw else {
            self.problem("listen", "required table is missing (at least listen.addr)");
            return Listen {
                addr: fallback,
                tls: None,
                allow_cidrs: Vec::new(),
                proxy_protocol: false,
                trusted_proxies: Vec::new(),
            };
        };
        let addr = match raw.addr {
            Some(a) => self.socket_addr("listen.addr", &a).unwrap_or(fallback),
            None => {
                self.problem("listen.addr", "required");
                fallback
            }
        };
        let tls = match (raw.cert, raw.key) {
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
        };
        let allow_cidrs = self.cidrs("listen.allow_cidrs", raw.allow_cidrs);
        let trusted_proxies = self.cidrs("listen.trusted_proxies", raw.trusted_proxies);
        let proxy_protocol = raw.proxy_protocol.unwrap_or(false);
        if proxy_protocol && trusted_proxies.is_empty() {
            self.problem(
                "listen.trusted_proxies",
                "required when proxy_protocol = true: the load balancers allowed to send PROXY headers",
            );
        }
        Listen {
            addr,
            tls,
            allow_cidrs,
            proxy_protocol,
            trusted_proxies,
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

    fn duration(&mut self, key: &str, raw: Option<String>, default: Duration) -> Duration {
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

    fn limits(&mut self, raw: RawLimits) -> Limits {
        let d = Limits::default();
        Limits {
            upstream_timeout: self.duration(
                "limits.upstream_timeout",
                raw.upstream_timeout,
                d.upstream_timeout,
            ),
            upstream_connect_timeout: self.duration(
                "limits.upstream_connect_timeout",
                raw.upstream_connect_timeout,
                d.upstream_connect_timeout,
            ),
            upstream_idle_timeout: self.duration(
                "limits.upstream_idle_timeout",
                raw.upstream_idle_timeout,
                d.upstream_idle_timeout,
            ),
            header_read_timeout: self.duration(
                "limits.header_read_timeout",
                raw.header_read_timeout,
                d.header_read_timeout,
            ),
            body_read_timeout: self.duration(
                "limits.body_read_timeout",
                raw.body_read_timeout,
                d.body_read_timeout,
            ),
            tls_handshake_timeout: self.duration(
                "limits.tls_handshake_timeout",
                raw.tls_handshake_timeout,
                d.tls_handshake_timeout,
            ),
            idle_timeout: self.duration("limits.idle_timeout", raw.idle_timeout, d.idle_timeout),
            shutdown_grace: self.duration(
                "limits.shutdown_grace",
                raw.shutdown_grace,
                d.shutdown_grace,
            ),
            max_body: self.size("limits.max_body", raw.max_body, d.max_body, 1, u64::MAX),
            max_header_bytes: self
                .size(
                    "limits.max_header_bytes",
                    raw.max_header_bytes,
                    d.max_header_bytes as u64,
                    8192,
                    1 << 20,
                )
                .try_into()
                .unwrap_or(d.max_header_bytes),
            max_headers: self.count(
                "limits.max_headers",
                raw.max_headers,
                d.max_headers,
                1,
                1000,
            ),
            max_connections: self.count(
                "limits.max_connections",
                raw.max_connections,
                d.max_connections,
                1,
                1_000_000,
            ),
            max_requests_per_client: self.count(
                "limits.max_requests_per_client",
                raw.max_requests_per_client,
                d.max_requests_per_client,
                1,
                1_000_000,
            ),
            max_concurrent_streams: self
                .count(
                    "limits.max_concurrent_streams",
                    raw.max_concurrent_streams,
                    d.max_concurrent_streams as usize,
                    1,
                    10_000,
                )
                .try_into()
                .unwrap_or(d.max_concurrent_streams),
        }
    }

    fn count(&mut self, key: &str, raw: Option<u64>, default: usize, min: u64, max: u64) -> usize {
        match raw {
            None => default,
            Some(n) if (min..=max).contains(&n) => usize::try_from(n).unwrap_or(default),
            Some(n) => {
                self.problem(key, format!("{n} is out of range ({min} to {max})"));
                default
            }
        }
    }

    fn size(&mut self, key: &str, raw: Option<RawSize>, default: u64, min: u64, max: u64) -> u64 {
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

    fn log(&mut self, raw: RawLog, base_dir: &Path) -> Log {
        let d = Log::default();
        let traffic = match raw.traffic.as_deref() {
            None | Some("stdout") => TrafficSink::Stdout,
            Some("off") => TrafficSink::Off,
            Some("") => {
                self.problem("log.traffic", "expected \"stdout\", \"off\" or a file path");
                d.traffic.clone()
            }
            Some(path) => TrafficSink::File(base_dir.join(path)),
        };
        let pii = match raw.pii.as_deref() {
            None | Some("hash") => PiiMode::Hash,
            Some("plain") => PiiMode::Plain,
            Some("omit") => PiiMode::Omit,
            Some(other) => {
                self.problem(
                    "log.pii",
                    format!("{other:?}: expected \"hash\", \"plain\" or \"omit\""),
                );
                PiiMode::Hash
            }
        };
        let pii_key = self.optional_secret(
            ("log.pii_key_file", raw.pii_key_file),
            ("log.pii_key_env", raw.pii_key_env),
            base_dir,
        );
        Log {
            traffic,
            max_file_bytes: self.size(
                "log.max_file_bytes",
                raw.max_file_bytes,
                d.max_file_bytes,
                4096,
                u64::MAX,
            ),
            keep_files: self.count("log.keep_files", raw.keep_files, d.keep_files, 0, 1000),
            queue_records: self.count(
                "log.queue_records",
                raw.queue_records,
                d.queue_records,
                1,
                1 << 20,
            ),
            pii,
            pii_key,
            capture_bodies: raw.capture_bodies.unwrap_or(false),
        }
    }

    /// A secret read from a file or a variable, at most one of the two (`key`: the full key name).
    fn optional_secret(
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

    fn reload(&mut self, raw: RawReload) -> Reload {
        let d = Reload::default();
        Reload {
            watch: raw.watch.unwrap_or(d.watch),
            interval: self.duration("reload.interval", raw.interval, d.interval),
        }
    }

    fn egress(&mut self, raw: RawEgress, base_dir: &Path) -> Egress {
        let bind_ip = raw.bind_ip.and_then(|s| match s.parse::<IpAddr>() {
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
        });
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

    fn routes(&mut self, raw: Vec<RawRoute>, base_dir: &Path, plain_listener: bool) -> Vec<Route> {
        if raw.is_empty() {
            self.problem("routes", "at least one [[routes]] table is required");
        }
        let mut routes: Vec<Route> = Vec::new();
        for (i, r) in raw.into_iter().enumerate() {
            let key = format!("routes[{i}]");
            if let Some(route) = self.route(&key, r, base_dir, plain_listener) {
                routes.push(route);
            }
        }
        // Cross-route rules.
        let mut any_host_routes = Vec::new();
        for (i, r) in routes.iter().enumerate() {
            if routes[..i].iter().any(|o| o.name == r.name) {
                self.problem(
                    &format!("routes[{i}].name"),
                    format!("{:?} is used by another route", r.name),
                );
            }
            if r.hosts.is_empty() {
                any_host_routes.push(r.name.clone());
            }
            for h in &r.hosts {
                if let Some(o) = routes[..i].iter().find(|o| o.hosts.contains(h)) {
                    self.problem(
                        &format!("routes[{i}].hosts"),
                        format!("host {h:?} is already served by route {:?}", o.name),
                    );
                }
            }
        }
        if any_host_routes.len() > 1 {
            self.problem(
                "routes",
                format!(
                    "at most one route may omit `hosts` (it serves any host); these do: {}",
                    any_host_routes.join(", ")
                ),
            );
        }
        routes
    }

    fn route(
        &mut self,
        key: &str,
        r: RawRoute,
        base_dir: &Path,
        plain_listener: bool,
    ) -> Option<Route> {
        let before = self.problems.len();
        let name = match r.name {
            Some(n) if is_name(&n) => n,
            Some(n) => {
                self.problem(
                    &format!("{key}.name"),
                    format!("{n:?}: use 1-64 letters, digits, '-', '_' or '.'"),
                );
                String::new()
            }
            None => {
                self.problem(&format!("{key}.name"), "required");
                String::new()
            }
        };
        let upstream = match r.upstream {
            Some(u) => match parse_upstream(&u) {
                Ok(b) => Some(b),
                Err(reason) => {
                    self.problem(&format!("{key}.upstream"), reason);
                    None
                }
            },
            None => {
                self.problem(
                    &format!("{key}.upstream"),
                    "required (e.g. \"https://<tenant>.goskope.com/api/v2/scim\")",
                );
                None
            }
        };
        let token = match (r.token_file, r.token_env) {
            (Some(f), None) => Some(TokenSource::File(base_dir.join(f))),
            (None, Some(e)) if !e.is_empty() && !e.contains('=') && !e.contains('\0') => {
                Some(TokenSource::Env(e))
            }
            (None, Some(e)) => {
                self.problem(
                    &format!("{key}.token_env"),
                    format!("{e:?} is not an environment variable name"),
                );
                None
            }
            (Some(_), Some(_)) => {
                self.problem(
                    &format!("{key}.token_file"),
                    "set exactly one of token_file and token_env, not both",
                );
                None
            }
            (None, None) => {
                self.problem(
                    &format!("{key}.token_file"),
                    "one of token_file or token_env is required: where the route's REST API v2 token is read from",
                );
                None
            }
        };
        let mut hosts: Vec<String> = Vec::new();
        if let Some(raw_hosts) = r.hosts {
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
        }
        let public_url_given = r.public_url.is_some();
        let public_url = r.public_url.and_then(|u| match parse_public_url(&u) {
            Ok(p) => Some(p),
            Err(reason) => {
                self.problem(&format!("{key}.public_url"), reason);
                None
            }
        });
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
        let legacy_tenant_id = match r.legacy_tenant_id {
            Some(t)
                if !t.is_empty()
                    && t.len() <= 128
                    && t.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') =>
            {
                Some(t)
            }
            Some(t) => {
                self.problem(
                    &format!("{key}.legacy_tenant_id"),
                    format!("{t:?}: use the tenant id as it appears in the old URL (letters, digits, '-', '_')"),
                );
                None
            }
            None => None,
        };
        let upstream_auth = match r.upstream_auth.as_deref() {
            None | Some("bearer") => UpstreamAuth::Bearer,
            Some("netskope-api-token") => UpstreamAuth::NetskopeApiToken,
            Some(other) => {
                self.problem(
                    &format!("{key}.upstream_auth"),
                    format!("{other:?}: expected \"bearer\" or \"netskope-api-token\""),
                );
                UpstreamAuth::Bearer
            }
        };
        let token_expires = r.token_expires.and_then(|t| match parse_timestamp(&t) {
            Some(ts) => Some(ts),
            None => {
                self.problem(
                    &format!("{key}.token_expires"),
                    format!("{t:?} is not an RFC 3339 time like \"2026-03-21T00:00:00Z\" or a date like \"2026-03-21\""),
                );
                None
            }
        });
        let token_warn_days = self.count(
            &format!("{key}.token_warn_days"),
            r.token_warn_days,
            14,
            0,
            3650,
        );
        if r.clients.is_empty() {
            self.problem(
                &format!("{key}.clients"),
                "at least one [[routes.clients]] is required: without one, every request is refused",
            );
        }
        let mut clients: Vec<Client> = Vec::new();
        for (j, c) in r.clients.into_iter().enumerate() {
            let ckey = format!("{key}.clients[{j}]");
            if let Some(client) = self.client(&ckey, c) {
                if clients.iter().any(|o| o.name == client.name) {
                    self.problem(
                        &format!("{ckey}.name"),
                        format!("{:?} is used by another client of this route", client.name),
                    );
                }
                for h in &client.token_sha256 {
                    if let Some(o) = clients.iter().find(|o| o.token_sha256.contains(h)) {
                        self.problem(
                            &format!("{ckey}.token_sha256"),
                            format!(
                                "the same token hash is already given to client {:?}",
                                o.name
                            ),
                        );
                    }
                }
                clients.push(client);
            }
        }
        if self.problems.len() != before {
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
        })
    }

    fn client(&mut self, key: &str, c: RawClient) -> Option<Client> {
        let before = self.problems.len();
        let name = match c.name {
            Some(n) if is_name(&n) => n,
            Some(n) => {
                self.problem(
                    &format!("{key}.name"),
                    format!("{n:?}: use 1-64 letters, digits, '-', '_' or '.'"),
                );
                String::new()
            }
            None => {
                self.problem(
                    &format!("{key}.name"),
                    "required: the IdP's name, as logs and metrics show it",
                );
                String::new()
            }
        };
        let mut hashes = Vec::new();
        match c.token_sha256 {
            Some(h) => {
                if let Some(h) = self.sha256(&format!("{key}.token_sha256"), &h) {
                    hashes.push(h);
                }
            }
            None => self.problem(
                &format!("{key}.token_sha256"),
                "required: the hex SHA-256 of the bearer token this IdP sends (see `scim-proxy hash-token`)",
            ),
        }
        for (k, h) in c
            .additional_token_sha256
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            if let Some(h) = self.sha256(&format!("{key}.additional_token_sha256[{k}]"), h) {
                if hashes.contains(&h) {
                    self.problem(
                        &format!("{key}.additional_token_sha256[{k}]"),
                        "listed twice",
                    );
                }
                hashes.push(h);
            }
        }
        (self.problems.len() == before).then_some(Client {
            name,
            token_sha256: hashes,
        })
    }

    fn sha256(&mut self, key: &str, s: &str) -> Option<[u8; 32]> {
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

/// `routes[0].clients[1].name`, the way an operator reads a TOML key.
fn key_path(path: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path as P;
    match path {
        P::Root => String::new(),
        P::Seq { parent, index } => format!("{}[{index}]", key_path(parent)),
        P::Map { parent, key } => {
            let parent = key_path(parent);
            if parent.is_empty() {
                key.to_string()
            } else {
                format!("{parent}.{key}")
            }
        }
        P::Some { parent } | P::NewtypeStruct { parent } | P::NewtypeVariant { parent } => {
            key_path(parent)
        }
    }
}

/// RFC 3339 (`2026-03-21T00:00:00Z`, offsets allowed) or a date (`2026-03-21`, midnight UTC).
pub fn parse_timestamp(s: &str) -> Option<std::time::SystemTime> {
    let s = s.trim();
    if s.len() == 10 {
        return humantime::parse_rfc3339(&format!("{s}T00:00:00Z")).ok();
    }
    humantime::parse_rfc3339_weak(s.trim_end_matches('Z'))
        .ok()
        .filter(|_| s.ends_with('Z') || s.ends_with('z'))
        .or_else(|| parse_with_offset(s))
}

/// `2026-03-21T10:00:00+02:00` -> UTC.
fn parse_with_offset(s: &str) -> Option<std::time::SystemTime> {
    let (sign, at) = s
        .rfind('+')
        .map(|i| (1i64, i))
        .or_else(|| s.rfind('-').filter(|i| *i > 10).map(|i| (-1, i)))?;
    let (local, offset) = s.split_at(at);
    let (h, m) = offset.get(1..)?.split_once(':')?;
    let secs = sign * (h.parse::<i64>().ok()? * 3600 + m.parse::<i64>().ok()? * 60);
    let t = humantime::parse_rfc3339_weak(local).ok()?;
    let shift = Duration::from_secs(secs.unsigned_abs());
    if secs >= 0 {
        t.checked_sub(shift)
    } else {
        t.checked_add(shift)
    }
}

/// `4194304`, `"4MiB"`, `"512 KiB"`, `"1MB"`, `"10k"` -> bytes.
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let n: u64 = digits.parse().ok()?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1000,
        "kib" => 1024,
        "m" | "mb" => 1000 * 1000,
        "mib" => 1024 * 1024,
        "g" | "gb" => 1000 * 1000 * 1000,
        "gib" => 1024 * 1024 * 1024,
        _ => return None,
    };
    n.checked_mul(mult)
}

fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn parse_cidr(s: &str) -> Option<IpNet> {
    s.parse::<IpNet>()
        .ok()
        .or_else(|| s.parse::<IpAddr>().ok().map(IpNet::from))
        .map(|n| n.trunc())
}

/// Lower-cases a configured host name; `None` if it is not a bare host name or IP literal.
pub fn normalize_host(h: &str) -> Option<String> {
    let h = h.trim().to_ascii_lowercase();
    let h = h.strip_suffix('.').unwrap_or(&h).to_string();
    if h.is_empty() || h.len() > 253 {
        return None;
    }
    if let Some(inner) = h.strip_prefix('[').and_then(|x| x.strip_suffix(']')) {
        return inner
            .parse::<std::net::Ipv6Addr>()
            .ok()
            .map(|ip| ip.to_string());
    }
    if let Ok(ip) = h.parse::<std::net::Ipv6Addr>() {
        return Some(ip.to_string());
    }
    h.bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
        .then_some(h)
}

/// `http://host:port` for a CONNECT forward proxy (credentials go in a file, never in the URL).
pub fn parse_forward_proxy(s: &str) -> Result<String, String> {
    let uri: http::Uri = s.parse().map_err(|e| format!("{s:?} is not a URL ({e})"))?;
    if uri.scheme_str() != Some("http") {
        return Err(format!(
            "{s:?}: expected http://host:port (the tunnel to the upstream is TLS end to end inside it)"
        ));
    }
    let authority = uri
        .authority()
        .ok_or_else(|| format!("{s:?} has no host"))?;
    if authority.as_str().contains('@') {
        return Err(format!(
            "{s:?}: credentials in the URL are not allowed; use via_proxy_auth_file or via_proxy_auth_env"
        ));
    }
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        return Err(format!("{s:?}: only http://host:port, without a path"));
    }
    let port = authority.port_u16().unwrap_or(80);
    Ok(format!(
        "http://{}:{port}",
        authority.host().to_ascii_lowercase()
    ))
}

/// Parses a route's `upstream`: https only, a host, optional port, a path; no query or credentials.
pub fn parse_upstream(s: &str) -> Result<UpstreamBase, String> {
    let uri: http::Uri = s.parse().map_err(|e| format!("{s:?} is not a URL ({e})"))?;
    match uri.scheme_str() {
        Some("https") => {}
        Some(other) => {
            return Err(format!(
                "{s:?}: scheme {other:?} is not allowed; the upstream must be https (the v2 token must never cross the network in clear)"
            ));
        }
        None => return Err(format!("{s:?} is not an absolute https:// URL")),
    }
    let authority = uri
        .authority()
        .ok_or_else(|| format!("{s:?} has no host"))?;
    if authority.as_str().contains('@') {
        return Err(format!(
            "{s:?}: credentials in the URL are not allowed; use token_file or token_env"
        ));
    }
    if uri.query().is_some() || s.contains('#') {
        return Err(format!(
            "{s:?}: a query or fragment is not allowed in the upstream base"
        ));
    }
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase();
    if host.is_empty() {
        return Err(format!("{s:?} has no host"));
    }
    let port = authority.port_u16().unwrap_or(443);
    let authority = match authority.port_u16() {
        Some(p) if p != 443 => format!("{}:{p}", authority.host().to_ascii_lowercase()),
        _ => authority.host().to_ascii_lowercase(),
    };
    let path = uri.path().trim_end_matches('/').to_string();
    if path.split('/').any(|seg| seg == "." || seg == "..") || path.contains('%') {
        return Err(format!(
            "{s:?}: the path must be plain, without dot segments or percent-encoding"
        ));
    }
    Ok(UpstreamBase {
        host,
        port,
        authority,
        path,
    })
}

/// Validates a route's `public_url`: absolute http(s), a host, a path, no userinfo, query or fragment.
pub fn parse_public_url(s: &str) -> Result<PublicUrl, String> {
    let example = "(e.g. \"https://scim.example.com/SCIM/v2\")";
    let uri: http::Uri = s
        .parse()
        .map_err(|e| format!("{s:?} is not a URL ({e}) {example}"))?;
    let scheme = match uri.scheme_str() {
        Some(sch @ ("https" | "http")) => sch.to_string(),
        _ => {
            return Err(format!(
                "{s:?} is not an absolute https:// or http:// URL {example}"
            ));
        }
    };
    let authority = uri
        .authority()
        .ok_or_else(|| format!("{s:?} has no host {example}"))?;
    if authority.as_str().contains('@') {
        return Err(format!("{s:?}: userinfo is not allowed"));
    }
    if uri.query().is_some() || s.contains('#') {
        return Err(format!("{s:?}: a query or fragment is not allowed"));
    }
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase();
    if host.is_empty() {
        return Err(format!("{s:?} has no host {example}"));
    }
    // `http::Uri` reports `/` for a URL written without a path.
    let written_path = s
        .split_once("://")
        .map(|(_, rest)| rest.trim_start_matches(authority.as_str()))
        .unwrap_or_default();
    let path = uri.path().trim_end_matches('/').to_string();
    if written_path.is_empty() || path.is_empty() {
        return Err(format!("{s:?} needs the path the IdP uses {example}"));
    }
    if path.split('/').any(|seg| seg == "." || seg == "..") || path.contains('%') {
        return Err(format!(
            "{s:?}: the path must be plain, without dot segments or percent-encoding"
        ));
    }
    Ok(PublicUrl {
        scheme,
        host,
        authority: authority.as_str().to_ascii_lowercase(),
        path,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

    fn minimal() -> String {
        format!(
            r#"
[listen]
addr = "127.0.0.1:8443"

[[routes]]
name = "acme"
upstream = "https://acme.goskope.com/api/v2/scim/"
public_url = "https://scim.example.com/SCIM/v2"
token_file = "acme.token"

[[routes.clients]]
name = "okta"
token_sha256 = "{HASH}"
"#
        )
    }

    fn problems(text: &str) -> Vec<String> {
        match parse(text, Path::new("/etc/scim-proxy/p.toml")) {
            Ok(_) => Vec::new(),
            Err(p) => p.0.iter().map(|p| p.to_string()).collect(),
        }
    }

    #[test]
    fn minimal_config_validates_with_defaults() {
        let c = parse(&minimal(), Path::new("/etc/scim-proxy/p.toml")).unwrap();
        assert_eq!(c.listen.addr, "127.0.0.1:8443".parse().unwrap());
        assert!(c.listen.tls.is_none());
        assert_eq!(c.limits, Limits::default());
        let r = &c.routes[0];
        assert_eq!(r.upstream.url(), "https://acme.goskope.com/api/v2/scim");
        assert_eq!(
            r.token,
            TokenSource::File("/etc/scim-proxy/acme.token".into())
        );
        assert_eq!(r.upstream_auth, UpstreamAuth::Bearer);
        assert_eq!(hex::encode(r.clients[0].token_sha256[0]), HASH);
    }

    #[test]
    fn unknown_keys_are_errors_and_all_are_reported() {
        let text = minimal().replace("[listen]", "[listen]\nadress = \"x\"")
            + "\n[egress]\nbindip = \"1.2.3.4\"\n";
        let p = problems(&text);
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(
            p[0].contains("listen.adress: unknown key (misspelt"),
            "{p:?}"
        );
        assert!(
            p[1].contains("egress.bindip: unknown key; did you mean bind_ip?"),
            "{p:?}"
        );
    }

    #[test]
    fn suggestions_come_from_the_table_the_key_is_in() {
        assert_eq!(suggest_key("routes[0].token_fiel"), Some("token_file"));
        assert_eq!(
            suggest_key("routes[2].clients[1].token_sha265"),
            Some("token_sha256")
        );
        assert_eq!(suggest_key("listn"), Some("listen"));
        assert_eq!(suggest_key("limits.idle_timout"), Some("idle_timeout"));
        // Nothing near: no guess.
        assert_eq!(suggest_key("listen.colour"), None);
        assert!(fields_of::<RawRoute>().contains(&"token_expires"));
    }

    #[test]
    fn every_problem_is_reported_with_file_and_key() {
        let text = r#"
[listen]
addr = "nope"
cert = "a.crt"
[limits]
upstream_timeout = "soon"
[egress]
bind_ip = "0.0.0.0"
[[routes]]
name = "a b"
upstream = "http://acme.goskope.com/api/v2/scim"
token_file = "t"
token_env = "T"
upstream_auth = "basic"
hosts = []
[[routes.clients]]
name = "okta"
token_sha256 = "secret-token"
"#;
        let p = problems(text);
        let want = [
            "listen.addr:",
            "listen.key: required when listen.cert",
            "limits.upstream_timeout:",
            "egress.bind_ip:",
            "routes[0].name:",
            "routes[0].upstream:",
            "routes[0].token_file: set exactly one",
            "routes[0].hosts: empty list",
            "routes[0].upstream_auth:",
            "routes[0].clients[0].token_sha256: must be 64 hex",
        ];
        for w in want {
            assert!(
                p.iter()
                    .any(|l| l.starts_with("/etc/scim-proxy/p.toml: ") && l.contains(w)),
                "missing {w:?} in {p:#?}"
            );
        }
        assert_eq!(p.len(), want.len(), "{p:#?}");
    }

    #[test]
    fn public_url_is_validated_and_a_plain_listener_needs_it_or_hosts() {
        let c = parse(&minimal(), Path::new("/etc/scim-proxy/p.toml")).unwrap();
        let public = c.routes[0].public_url.clone().unwrap();
        assert_eq!(
            (
                public.scheme.as_str(),
                public.authority.as_str(),
                public.path.as_str()
            ),
            ("https", "scim.example.com", "/SCIM/v2")
        );
        for bad in [
            "scim.example.com/SCIM/v2",
            "ftp://scim.example.com/SCIM/v2",
            "https://scim.example.com",
            "https://scim.example.com/",
            "https://scim.example.com/SCIM/v2?x=1",
            "https://scim.example.com/SCIM/v2#f",
            "https://u@scim.example.com/SCIM/v2",
        ] {
            let text = minimal().replace("https://scim.example.com/SCIM/v2", bad);
            let p = problems(&text);
            assert!(
                p.len() == 1 && p[0].starts_with("/etc/scim-proxy/p.toml: routes[0].public_url: "),
                "{bad}: {p:#?}"
            );
        }
        let without = minimal().replace("public_url = \"https://scim.example.com/SCIM/v2\"\n", "");
        let p = problems(&without);
        assert_eq!(p.len(), 1, "{p:#?}");
        assert!(
            p[0].contains("routes[0].public_url: required on a plain listener")
                && p[0].contains("routes[0].hosts"),
            "{p:#?}"
        );
        assert!(
            problems(&without.replace("token_file", "hosts = [\"scim.example.com\"]\ntoken_file"))
                .is_empty()
        );
        assert!(
            problems(&without.replace("[listen]", "[listen]\ncert = \"a.crt\"\nkey = \"a.key\""))
                .is_empty()
        );
    }

    #[test]
    fn cross_route_rules() {
        let route = |name: &str, hosts: &str| {
            format!(
                "[[routes]]\nname = \"{name}\"\nupstream = \"https://x.goskope.com/api/v2/scim\"\ntoken_env = \"T\"\n{hosts}\n[[routes.clients]]\nname = \"c\"\ntoken_sha256 = \"{HASH}\"\n"
            )
        };
        let text = format!(
            "[listen]\naddr = \"127.0.0.1:1\"\ncert = \"a.crt\"\nkey = \"a.key\"\n{}{}{}{}",
            route("a", ""),
            route("b", ""),
            route("a", "hosts = [\"H.example\"]"),
            route("d", "hosts = [\"h.example.\"]")
        );
        let p = problems(&text);
        assert!(
            p.iter()
                .any(|l| l.contains("routes[2].name") && l.contains("another route")),
            "{p:#?}"
        );
        assert!(
            p.iter()
                .any(|l| l.contains("routes[3].hosts") && l.contains("already served")),
            "{p:#?}"
        );
        assert!(
            p.iter()
                .any(|l| l.contains("at most one route may omit `hosts`")),
            "{p:#?}"
        );
    }

    #[test]
    fn syntax_and_type_errors_name_the_file() {
        let p = problems("[listen\naddr=1");
        assert_eq!(p.len(), 1);
        assert!(p[0].starts_with("/etc/scim-proxy/p.toml: "), "{p:?}");
        let p = problems(&minimal().replace("\"127.0.0.1:8443\"", "8443"));
        assert!(p[0].contains("addr"), "{p:?}");
    }

    #[test]
    fn upstream_url_rules() {
        assert_eq!(
            parse_upstream("https://A.goskope.com:443/api/v2/scim/")
                .unwrap()
                .authority,
            "a.goskope.com"
        );
        let b = parse_upstream("https://127.0.0.1:8444/api/v2/scim").unwrap();
        assert_eq!(
            (b.host.as_str(), b.port, b.authority.as_str()),
            ("127.0.0.1", 8444, "127.0.0.1:8444")
        );
        let b = parse_upstream("https://[::1]:9/x").unwrap();
        assert_eq!((b.host.as_str(), b.authority.as_str()), ("::1", "[::1]:9"));
        for bad in [
            "http://a/api",
            "a.goskope.com/api",
            "https://u:p@a/api",
            "https://a/api?x=1",
            "https://a/api/../x",
            "https://a/api%2f",
        ] {
            assert!(parse_upstream(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn secrets_come_from_a_file_or_a_variable_not_both() {
        let text = minimal()
            + "\n[egress]\nvia_proxy = \"http://proxy.corp:3128\"\nvia_proxy_auth_file = \"p\"\nvia_proxy_auth_env = \"P\"\n[log]\npii_key_file = \"k\"\npii_key_env = \"K\"\n";
        let p = problems(&text);
        assert!(p.iter().any(|l| l.contains("egress.via_proxy_auth_file: set at most one of via_proxy_auth_file and via_proxy_auth_env")), "{p:#?}");
        assert!(
            p.iter()
                .any(|l| l
                    .contains("log.pii_key_file: set at most one of pii_key_file and pii_key_env")),
            "{p:#?}"
        );
        assert_eq!(p.len(), 2, "{p:#?}");
        let one = minimal()
            + "\n[egress]\nvia_proxy = \"http://proxy.corp:3128\"\nvia_proxy_auth_env = \"P\"\n";
        let c = parse(&one, Path::new("/etc/scim-proxy/p.toml")).unwrap();
        let proxy = c.egress.via_proxy.unwrap();
        assert_eq!(proxy.url, "http://proxy.corp:3128");
        assert_eq!(proxy.credentials, Some(TokenSource::Env("P".into())));
    }

    #[test]
    fn timestamps() {
        let t = |s| {
            parse_timestamp(s)
                .map(humantime::format_rfc3339_seconds)
                .map(|t| t.to_string())
        };
        assert_eq!(t("2026-03-21").as_deref(), Some("2026-03-21T00:00:00Z"));
        assert_eq!(
            t("2026-03-21T10:00:00Z").as_deref(),
            Some("2026-03-21T10:00:00Z")
        );
        assert_eq!(
            t("2026-03-21T10:00:00+02:00").as_deref(),
            Some("2026-03-21T08:00:00Z")
        );
        assert_eq!(
            t("2026-03-21T10:00:00-01:30").as_deref(),
            Some("2026-03-21T11:30:00Z")
        );
        assert_eq!(t("next tuesday"), None);
        assert_eq!(t("2026-03-21T10:00:00"), None);
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4MiB"), Some(4 << 20));
        assert_eq!(parse_size("512 KiB"), Some(512 << 10));
        assert_eq!(parse_size("1MB"), Some(1_000_000));
        assert_eq!(parse_size("100"), Some(100));
        assert_eq!(parse_size("4 furlongs"), None);
        assert_eq!(parse_size("MiB"), None);
        assert_eq!(parse_size("99999999999999999999GiB"), None);
        let p = problems(&minimal().replace(
            "[listen]",
            "[limits]\nmax_body = \"big\"\nmax_header_bytes = 10\n[listen]",
        ));
        assert!(p.iter().any(|l| l.contains("limits.max_body")), "{p:?}");
        assert!(
            p.iter()
                .any(|l| l.contains("limits.max_header_bytes") && l.contains("out of range")),
            "{p:?}"
        );
        let p = problems(&minimal().replace("[listen]", "[listen]\nproxy_protocol = true"));
        assert!(
            p.iter()
                .any(|l| l.contains("listen.trusted_proxies: required")),
            "{p:?}"
        );
    }

    #[test]
    fn host_normalisation() {
        assert_eq!(
            normalize_host("Addon-ACME.goskope.com").as_deref(),
            Some("addon-acme.goskope.com")
        );
        assert_eq!(normalize_host("[::1]").as_deref(), Some("::1"));
        assert_eq!(normalize_host("a.example:443"), None);
        assert_eq!(normalize_host("https://a"), None);
    }
}
