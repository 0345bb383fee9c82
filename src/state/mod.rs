//! Loading: config file -> validated config -> everything it points at (tokens, certificates, roots,
//! egress), collected into one immutable `Snapshot`. Reload builds a new one and swaps it in whole.

pub mod readiness;
pub mod reload;
pub mod token_expiry;
pub mod v2_token;
pub mod watch;

use std::net::{IpAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::SystemTime;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

use rustls_pki_types::CertificateDer;
use tokio_rustls::TlsAcceptor;

use crate::body::rewrite::Needles;
use crate::config::{self, Config, PiiMode, Problem, Problems, Route, TokenSource, TrafficSink};
use crate::observe::traffic_log::{Pii, PiiPolicy, TrafficLog};
use crate::scim::base::Base;
use crate::state::token_expiry::TokenExpiry;
use crate::state::v2_token::V2Token;
use crate::tls;
use crate::upstream::{self, Family, UpstreamClient};

/// Everything one request needs, loaded at once. A request takes one snapshot and keeps it to the end.
pub struct Snapshot {
    pub config: Arc<Config>,
    /// Parallel to `config.routes`.
    pub routes: Vec<RouteRuntime>,
    pub tls: Option<TlsAcceptor>,
    /// The serving certificate's subject and validity (None for plain HTTP).
    pub cert_info: Option<tls::CertInfo>,
    /// The names the serving certificate covers; a Host outside them (and the routes' names) is 421.
    pub cert_names: Option<tls::CertNames>,
    pub client: UpstreamClient,
    upstream_roots: Vec<CertificateDer<'static>>,
    proxy_auth: Option<http::HeaderValue>,
    /// How personal values are written to the traffic log.
    pub pii: PiiPolicy,
}

pub struct RouteRuntime {
    pub base: Base,
    pub token: V2Token,
    /// The token's spellings and mask for response bodies, built once.
    pub token_redaction: Arc<Needles>,
    /// Requests in flight per client (parallel to the route's `clients`); kept across reloads by name.
    pub client_in_flight: Vec<Arc<AtomicUsize>>,
    /// `token_expires`, tied to the token it was written for (None: not configured).
    pub token_expiry: Option<TokenExpiry>,
}

impl Snapshot {
    /// A fresh connector with this snapshot's egress and TLS settings (for `check --live`).
    pub fn connector(&self) -> Result<upstream::Connector, String> {
        let tls = tls::upstream_client_config(
            &self.upstream_roots,
            self.config.egress.ca_file.as_deref(),
        )?;
        upstream::build_connector(
            &self.config.egress,
            &self.config.limits,
            tls,
            self.proxy_auth.clone(),
        )
    }

    pub fn route(&self, i: usize) -> Option<(&Route, &RouteRuntime)> {
        Some((self.config.routes.get(i)?, self.routes.get(i)?))
    }

    /// Per route with a `token_expires`: its name, whether the date applies to the token in use,
    /// and the date (for the metrics).
    pub fn token_expiry_dates(&self) -> Vec<(&str, bool, std::time::SystemTime)> {
        self.config
            .routes
            .iter()
            .zip(&self.routes)
            .filter_map(|(route, runtime)| {
                let expiry = runtime.token_expiry.as_ref()?;
                Some((route.name.as_str(), expiry.applies(), expiry.date))
            })
            .collect()
    }
}

/// State shared by the listeners, the admin endpoints and the reloader.
pub struct Shared {
    pub state: ArcSwap<Snapshot>,
    /// Where the config came from, for reloads (None: built in memory).
    pub config_path: Option<PathBuf>,
    /// The proxy listener accepts and no shutdown has begun.
    pub accepting: AtomicBool,
    pub retry_budget: RetryBudget,
    pub metrics: crate::observe::metrics::Metrics,
    pub auth_watch: crate::observe::auth_watch::AuthWatch,
    /// Opened once at start; moving it needs a restart.
    pub traffic: Option<TrafficLog>,
}

/// Retries of idempotent requests after a connection reset, bounded so that a failing upstream
/// is not hit twice as hard: at most `max` per `window`, process-wide.
pub struct RetryBudget {
    window: Duration,
    max: u32,
    state: Mutex<(Instant, u32)>,
}

impl RetryBudget {
    pub fn new(window: Duration, max: u32) -> RetryBudget {
        RetryBudget {
            window,
            max,
            state: Mutex::new((Instant::now(), 0)),
        }
    }

    /// Takes one retry from the budget, if any is left.
    pub fn try_take(&self) -> bool {
        let Ok(mut state) = self.state.lock() else {
            return false;
        };
        if state.0.elapsed() >= self.window {
            *state = (Instant::now(), 0);
        }
        if state.1 < self.max {
            state.1 += 1;
            true
        } else {
            false
        }
    }
}

impl Shared {
    pub fn new(snapshot: Snapshot, config_path: Option<PathBuf>) -> std::io::Result<Arc<Shared>> {
        let log = &snapshot.config.log;
        let traffic = match &log.traffic {
            TrafficSink::Off => None,
            TrafficSink::Stdout => Some(TrafficLog::stdout(log.queue_records)?),
            TrafficSink::File(path) => Some(
                TrafficLog::file_queued(
                    path,
                    log.max_file_bytes,
                    log.keep_files,
                    log.queue_records,
                )
                .map_err(|e| {
                    std::io::Error::new(
                        e.kind(),
                        format!("cannot open the traffic log {}: {e}", path.display()),
                    )
                })?,
            ),
        };
        let metrics = crate::observe::metrics::Metrics::new();
        metrics.declare_routes(&snapshot.config);
        Ok(Arc::new(Shared {
            state: ArcSwap::from_pointee(snapshot),
            config_path,
            accepting: AtomicBool::new(false),
            retry_budget: RetryBudget::new(Duration::from_secs(10), 10),
            metrics,
            auth_watch: crate::observe::auth_watch::AuthWatch::new(),
            traffic,
        }))
    }

    /// Log records dropped since start because a sink did not keep up.
    pub fn log_drops(&self) -> crate::observe::metrics::LogDrops {
        crate::observe::metrics::LogDrops {
            traffic: self.traffic.as_ref().map_or(0, TrafficLog::dropped),
            tracing: crate::observe::metrics::tracing_dropped(),
        }
    }

    pub fn is_ready(&self) -> bool {
        self.accepting.load(Ordering::Acquire)
    }

    /// Re-reads the config file and everything it names; on any problem the running snapshot stays.
    pub fn reload(&self) -> Result<(), Problems> {
        let result = self.reload_inner();
        self.metrics.reload(result.is_ok());
        if result.is_ok() {
            self.metrics.declare_routes(&self.state.load().config);
        }
        result
    }

    fn reload_inner(&self) -> Result<(), Problems> {
        let Some(path) = &self.config_path else {
            return Ok(());
        };
        let current = self.state.load_full();
        let config = read_config(path)?;
        if config.listen.addr != current.config.listen.addr {
            tracing::warn!(
                old = %current.config.listen.addr,
                new = %config.listen.addr,
                "listen.addr changed: a restart is needed to move the listener; still listening on the old address"
            );
        }
        if config.admin != current.config.admin {
            tracing::warn!("admin.addr changed: a restart is needed to move the admin listener");
        }
        if config.log.traffic != current.config.log.traffic
            || config.log.max_file_bytes != current.config.log.max_file_bytes
            || config.log.keep_files != current.config.log.keep_files
            || config.log.queue_records != current.config.log.queue_records
        {
            tracing::warn!(
                "log.traffic, max_file_bytes, keep_files or queue_records changed: a restart is needed to reopen the traffic log"
            );
        }
        let next = build(config, Some(&current))?;
        log_rotated_without_a_date(&current, &next);
        self.state.store(Arc::new(next));
        Ok(())
    }
}

/// A reload that changed a route's token but not its `token_expires`: say so once, now.
fn log_rotated_without_a_date(current: &Snapshot, next: &Snapshot) {
    for (route, runtime) in next.config.routes.iter().zip(&next.routes) {
        let Some(expiry) = &runtime.token_expiry else {
            continue;
        };
        let was_current = previous_route(Some(current), &route.name)
            .and_then(|r| r.token_expiry.as_ref())
            .is_some_and(TokenExpiry::applies);
        if !expiry.applies() && was_current {
            tracing::warn!(
                route = %route.name,
                token_expires = %humantime::format_rfc3339_seconds(expiry.date),
                "token rotated; update token_expires: it holds the previous token's date, which no longer applies"
            );
        }
    }
}

/// Reads and validates a config file (no tokens or certificates yet).
pub fn read_config(path: &Path) -> Result<Config, Problems> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Problems(vec![Problem {
            file: path.to_path_buf(),
            key: String::new(),
            reason: format!("cannot read the config file: {e}"),
        }])
    })?;
    config::parse(&text, path)
}

/// Loads everything a validated config points at. Every problem is collected.
/// With `previous`, the upstream client (and its connection pool) is kept when nothing it uses changed.
pub fn build(config: Config, previous: Option<&Snapshot>) -> Result<Snapshot, Problems> {
    let mut problems = Vec::new();
    let mut problem = |key: String, reason: String| {
        problems.push(Problem {
            file: config.source.clone(),
            key,
            reason,
        })
    };

    let mut cert_info = None;
    let mut cert_names = None;
    let tls = match &config.listen.tls {
        Some(files) => {
            let certs = tls::read_certs(&files.cert)
                .map_err(|e| problem("listen.cert".into(), e))
                .ok();
            let key = tls::read_key(&files.key)
                .map_err(|e| problem("listen.key".into(), e))
                .ok();
            match (certs, key) {
                (Some(certs), Some(key)) => {
                    match certs.first().map(tls::cert_info) {
                        Some(Ok(info)) if info.is_expired(SystemTime::now()) => problem(
                            "listen.cert".into(),
                            format!(
                                "{}: the certificate expired on {} (IdPs will refuse it)",
                                files.cert.display(),
                                humantime::format_rfc3339_seconds(info.not_after)
                            ),
                        ),
                        Some(Ok(info)) => cert_info = Some(info),
                        Some(Err(e)) => problem(
                            "listen.cert".into(),
                            format!("{}: {e}", files.cert.display()),
                        ),
                        None => {}
                    }
                    match certs.first().map(tls::cert_names) {
                        Some(Ok(names)) => cert_names = Some(names),
                        Some(Err(e)) => problem(
                            "listen.cert".into(),
                            format!("{}: {e}", files.cert.display()),
                        ),
                        None => {}
                    }
                    match tls::server_config_from(certs, key) {
                        Ok(c) => Some(TlsAcceptor::from(c)),
                        Err(e) => {
                            problem(
                                "listen.key".into(),
                                format!(
                                    "{} with {}: {e}",
                                    files.cert.display(),
                                    files.key.display()
                                ),
                            );
                            None
                        }
                    }
                }
                _ => None,
            }
        }
        None => None,
    };

    let upstream_roots = match &config.egress.ca_file {
        Some(path) => tls::read_certs(path).unwrap_or_else(|e| {
            problem("egress.ca_file".into(), e);
            Vec::new()
        }),
        None => Vec::new(),
    };

    if let Some(ip) = config.egress.bind_ip
        && let Err(e) = check_local_address(ip)
    {
        problem("egress.bind_ip".into(), e);
    }
    if let (Some(bind), Some(proxy)) = (config.egress.bind_ip, &config.egress.via_proxy)
        && let Some(host) = proxy
            .url
            .parse::<http::Uri>()
            .ok()
            .and_then(|u| u.host().map(str::to_owned))
        && let Ok(proxy_ip) = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
        && Family::of(bind) != Family::of(proxy_ip)
    {
        problem(
            "egress.via_proxy".into(),
            format!("{proxy_ip} is not reachable from egress.bind_ip {bind} (different IP family)"),
        );
    }

    let mut routes = Vec::new();
    for (i, route) in config.routes.iter().enumerate() {
        let key = match route.token {
            TokenSource::File(_) => format!("routes[{i}].token_file"),
            TokenSource::Env(_) => format!("routes[{i}].token_env"),
        };
        match read_token(&route.token).and_then(|t| V2Token::new(&t, route.upstream_auth)) {
            Ok(token) => routes.push(RouteRuntime {
                token_expiry: TokenExpiry::carry(
                    route.token_expires,
                    token.expose_for_redaction().as_bytes(),
                    previous_route(previous, &route.name).and_then(|r| r.token_expiry.as_ref()),
                ),
                base: Base::new("https", &route.upstream.authority, &route.upstream.path),
                token_redaction: Arc::new(Needles::masking(
                    token.expose_for_redaction().as_bytes(),
                )),
                token,
                client_in_flight: route
                    .clients
                    .iter()
                    .map(|c| previous_counter(previous, &route.name, &c.name))
                    .collect(),
            }),
            Err(e) => problem(
                key,
                format!("the REST API v2 token from {}: {e}", route.token),
            ),
        }
        // Through a forward proxy the upstream is resolved by the proxy; the proxy's own address
        // is what must match the egress family.
        if config.egress.via_proxy.is_none()
            && let (Some(bind), Ok(host_ip)) =
                (config.egress.bind_ip, route.upstream.host.parse::<IpAddr>())
            && Family::of(bind) != Family::of(host_ip)
        {
            problem(
                format!("routes[{i}].upstream"),
                format!(
                    "{host_ip} is not reachable from egress.bind_ip {bind} (different IP family)"
                ),
            );
        }
    }

    let proxy_auth = match config
        .egress
        .via_proxy
        .as_ref()
        .and_then(|p| p.credentials.as_ref())
    {
        Some(source) => {
            let key = match source {
                TokenSource::File(_) => "egress.via_proxy_auth_file",
                TokenSource::Env(_) => "egress.via_proxy_auth_env",
            };
            match read_token(source).and_then(|c| upstream::proxy_authorization(&c)) {
                Ok(v) => Some(v),
                Err(e) => {
                    problem(
                        key.into(),
                        format!("the forward proxy credentials from {source}: {e}"),
                    );
                    None
                }
            }
        }
        None => None,
    };

    let pii_mode = match config.log.pii {
        PiiMode::Hash => Pii::Hash,
        PiiMode::Plain => Pii::Plain,
        PiiMode::Omit => Pii::Omit,
    };
    let pii = match &config.log.pii_key {
        Some(source) => {
            let key = match source {
                TokenSource::File(_) => "log.pii_key_file",
                TokenSource::Env(_) => "log.pii_key_env",
            };
            match read_token(source) {
                Ok(k) if k.trim().len() >= 16 => {
                    PiiPolicy::new(pii_mode, k.trim().as_bytes().to_vec())
                }
                Ok(_) => {
                    problem(
                        key.into(),
                        format!("the PII hash key from {source} is shorter than 16 characters"),
                    );
                    PiiPolicy::new(pii_mode, process_pii_key())
                }
                Err(e) => {
                    problem(key.into(), format!("the PII hash key from {source}: {e}"));
                    PiiPolicy::new(pii_mode, process_pii_key())
                }
            }
        }
        None => PiiPolicy::new(pii_mode, process_pii_key()),
    };
    if let TrafficSink::File(path) = &config.log.traffic
        && let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
        && !dir.is_dir()
    {
        problem(
            "log.traffic".into(),
            format!(
                "the directory {} of the traffic log does not exist",
                dir.display()
            ),
        );
    }

    let client_tls =
        match tls::upstream_client_config(&upstream_roots, config.egress.ca_file.as_deref()) {
            Ok(c) => Some(c),
            Err(e) => {
                problem("egress.ca_file".into(), e);
                None
            }
        };

    if !problems.is_empty() {
        return Err(Problems(problems));
    }
    let Some(client_tls) = client_tls else {
        return Err(Problems(problems));
    };
    let client = match previous {
        Some(p)
            if p.config.egress == config.egress
                && p.config.limits == config.limits
                && p.upstream_roots == upstream_roots
                && p.proxy_auth == proxy_auth =>
        {
            p.client.clone()
        }
        _ => upstream::build_client(
            &config.egress,
            &config.limits,
            client_tls,
            proxy_auth.clone(),
        )
        .map_err(|e| {
            Problems(vec![Problem {
                file: config.source.clone(),
                key: "egress".into(),
                reason: e,
            }])
        })?,
    };
    Ok(Snapshot {
        config: Arc::new(config),
        routes,
        tls,
        cert_info,
        cert_names,
        client,
        upstream_roots,
        proxy_auth,
        pii,
    })
}

/// A random key for the PII hash, the same for every reload of this process (so hashes keep
/// correlating until a restart; configure `log.pii_key_file` for stability across restarts).
fn process_pii_key() -> Vec<u8> {
    static KEY: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    KEY.get_or_init(|| {
        let mut key = uuid::Uuid::new_v4().as_bytes().to_vec();
        key.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
        key
    })
    .clone()
}

/// The in-flight counter of the same route and client in the previous snapshot, or a new one.
fn previous_route<'a>(previous: Option<&'a Snapshot>, route: &str) -> Option<&'a RouteRuntime> {
    let p = previous?;
    let i = p.config.routes.iter().position(|r| r.name == route)?;
    p.routes.get(i)
}

fn previous_counter(previous: Option<&Snapshot>, route: &str, client: &str) -> Arc<AtomicUsize> {
    previous
        .and_then(|p| {
            let i = p.config.routes.iter().position(|r| r.name == route)?;
            let j = p.config.routes[i]
                .clients
                .iter()
                .position(|c| c.name == client)?;
            p.routes.get(i)?.client_in_flight.get(j).cloned()
        })
        .unwrap_or_default()
}

/// Reads a v2 token from its file or variable. Errors never contain the token.
pub fn read_token(source: &TokenSource) -> Result<String, String> {
    match source {
        TokenSource::File(path) => {
            std::fs::read_to_string(path).map_err(|e| format!("cannot read: {e}"))
        }
        TokenSource::Env(var) => std::env::var(var).map_err(|e| match e {
            std::env::VarError::NotPresent => "the variable is not set".to_string(),
            std::env::VarError::NotUnicode(_) => "the variable is not valid UTF-8".to_string(),
        }),
    }
}

/// An egress address must belong to this host: binding a socket to it proves it.
pub fn check_local_address(ip: IpAddr) -> Result<(), String> {
    UdpSocket::bind((ip, 0))
        .map(|_| ())
        .map_err(|e| format!("{ip} is not an address of this host ({e})"))
}
