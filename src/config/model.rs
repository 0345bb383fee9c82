//! The validated config: what every other folder reads. Built only by `validate`, so a value of
//! these types has passed every check; paths are already resolved against the config's directory.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;

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
    /// `[listen.acme]`: the serving certificate ordered and renewed from an ACME CA (never with `tls`).
    pub acme: Option<Acme>,
}

/// `[listen.acme]`: where and for which names the proxy gets its own certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acme {
    /// Lower-case DNS names, each once, the first one the certificate's subject.
    pub domains: Vec<String>,
    /// `mailto:` address the CA writes to about the account.
    pub contact: String,
    pub directory: String,
    /// Account key, certificate and key; created 0700, files 0600.
    pub state_dir: PathBuf,
    pub challenge: AcmeChallenge,
    pub renew_before: Duration,
    pub eab: Option<AcmeEab>,
    /// Roots trusted for the ACME server's HTTPS instead of the public ones.
    pub ca_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcmeChallenge {
    /// Answered on the proxy listener itself (ALPN `acme-tls/1`).
    TlsAlpn01,
    /// Answered on a plain-HTTP listener of its own at this address.
    Http01(SocketAddr),
}

/// External Account Binding: the key id and where its HMAC key (base64url) is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcmeEab {
    pub kid: String,
    pub hmac_key: TokenSource,
}

/// Let's Encrypt's production directory, the default `directory`.
pub const LETS_ENCRYPT_DIRECTORY: &str = "https://acme-v02.api.letsencrypt.org/directory";

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
    /// SHA-256 of the bearer token `/`, `/status.json` and `/metrics` require (None: open).
    pub token_sha256: Option<[u8; 32]>,
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
    /// `max_requests_per_second`, `burst`, `max_queue_wait`; None: not paced.
    pub pacing: Option<Pacing>,
}

/// A route's pace towards its tenant: one request per `interval`, `burst` at once after a quiet
/// spell, and a request waits at most `max_queue_wait` for its turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pacing {
    /// 1 / `max_requests_per_second`.
    pub interval: Duration,
    pub burst: u32,
    pub max_queue_wait: Duration,
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
