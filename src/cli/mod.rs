//! The command line: serve, check, hash-token, demo. Exit codes: 0 ok, 1 failure, 2 usage or config problems.

pub mod check_live;

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use crate::config::Config;
use crate::state;

#[derive(Parser)]
#[command(
    name = "scim-proxy",
    version,
    about = "TLS reverse proxy that carries IdP SCIM traffic from Netskope's retired /SCIM/v2 endpoint to REST API v2 (/api/v2/scim)",
    long_about = None
)]
struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy. SIGHUP reloads the config, certificates and tokens; SIGTERM/SIGINT drain and exit.
    Serve {
        /// The TOML config file (see config/scim-proxy.example.toml).
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Load and validate everything the config names without serving; print every problem found.
    Check {
        /// The TOML config file to check (the same one `serve` would read).
        #[arg(long, short)]
        config: PathBuf,
        /// Also connect to every route's upstream through the configured egress and send an
        /// authenticated GET /Users?count=1: what an admin runs before switching an IdP.
        #[arg(long)]
        live: bool,
        /// Per-route time limit for --live.
        #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
        live_timeout: std::time::Duration,
    },
    /// Read a bearer token on stdin and print the token_sha256 value for [[routes.clients]].
    HashToken,
    /// Summarise traffic logs per IdP: operations, outcomes, and failures grouped by upstream reason.
    Report {
        /// Traffic log files (JSON lines); standard input when none.
        files: Vec<PathBuf>,
        /// One JSON document instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Serve the embedded Netskope-like SCIM upstream on its own (a lab target for the proxy,
    /// soak and load tests). Not a Netskope replacement: in memory, nothing persists.
    /// Each request is logged on stdout with its source address, so a fixed egress can be seen.
    TestUpstream {
        /// Address and port to listen on.
        #[arg(long, default_value = "127.0.0.1:9443")]
        listen: std::net::SocketAddr,
        /// PEM certificate chain to serve (e.g. `dev-certs --dir certs/upstream`); plain HTTP
        /// without --cert and --key.
        #[arg(long, requires = "key")]
        cert: Option<PathBuf>,
        /// PEM private key of --cert.
        #[arg(long, requires = "cert")]
        key: Option<PathBuf>,
        /// File holding the v2 token it demands (Bearer or Netskope-Api-Token); white space trimmed.
        #[arg(long)]
        token_file: PathBuf,
        /// Path the SCIM API is served under, as Netskope's /api/v2/scim.
        #[arg(long, default_value = "/api/v2/scim")]
        base_path: String,
        /// Do not log each request on stdout.
        #[arg(long)]
        quiet: bool,
    },
    /// Write a throwaway CA and a server certificate for local testing (never for production).
    DevCerts {
        /// Directory to write ca.pem, server.crt and server.key (0600) into.
        #[arg(long, default_value = "certs/dev")]
        dir: PathBuf,
        /// DNS names for the server certificate (localhost and 127.0.0.1 are always included).
        #[arg(long = "name")]
        names: Vec<String>,
    },
    /// Start the proxy with throwaway certificates in front of an embedded Netskope-like SCIM upstream,
    /// drive a provisioning flow through it, then keep serving.
    Demo {
        /// Where the demo proxy listens.
        #[arg(long, default_value = "127.0.0.1:8443")]
        listen: std::net::SocketAddr,
        /// Exit after the flow instead of serving on.
        #[arg(long)]
        once: bool,
    },
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // Kept to the end of main: dropping it writes what tracing still has queued (bounded).
    let _tracing_writer = init_logging(cli.log_format);
    match cli.command {
        Command::HashToken => hash_token(),
        Command::Check {
            config,
            live,
            live_timeout,
        } => check(&config, live.then_some(live_timeout)),
        Command::DevCerts { dir, names } => dev_certs(&dir, &names),
        Command::TestUpstream {
            listen,
            cert,
            key,
            token_file,
            base_path,
            quiet,
        } => with_runtime(test_upstream(
            listen,
            cert.zip(key),
            token_file,
            base_path,
            !quiet,
        )),
        Command::Report { files, json } => {
            let mut out = std::io::stdout().lock();
            match crate::observe::report::run(&files, json, &mut out) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("report: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Serve { config } => {
            // The runtime is sized before it starts: read [runtime] worker_threads first.
            let threads = state::read_config(&config)
                .ok()
                .and_then(|c| c.worker_threads);
            with_runtime_threads(threads, serve(config))
        }
        Command::Demo { listen, once } => with_runtime(async move {
            match crate::lab::run(listen, once).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("demo failed: {e}");
                    ExitCode::FAILURE
                }
            }
        }),
    }
}

/// Lines `tracing` may queue for a stalled stderr before it drops them (and counts the loss).
const TRACING_QUEUE_LINES: usize = 8192;

fn init_logging(format: LogFormat) -> tracing_appender::non_blocking::WorkerGuard {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colour codes only for a person at a terminal, never into journald or files.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    // A writer thread of its own: a stderr nobody reads loses lines (counted) instead of blocking.
    let (stderr, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(TRACING_QUEUE_LINES)
        .thread_name("tracing-stderr")
        .finish(std::io::stderr());
    crate::observe::metrics::count_tracing_losses(stderr.error_counter());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
    guard
}

fn with_runtime(fut: impl std::future::Future<Output = ExitCode>) -> ExitCode {
    with_runtime_threads(None, fut)
}

fn with_runtime_threads(
    threads: Option<usize>,
    fut: impl std::future::Future<Output = ExitCode>,
) -> ExitCode {
    // One worker: a current-thread runtime, without the work-stealing scheduler's overhead.
    let mut builder = match threads {
        Some(1) => tokio::runtime::Builder::new_current_thread(),
        _ => tokio::runtime::Builder::new_multi_thread(),
    };
    if let Some(n) = threads.filter(|n| *n > 1) {
        builder.worker_threads(n);
    }
    match builder.enable_all().build() {
        Ok(rt) => rt.block_on(fut),
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

fn hash_token() -> ExitCode {
    let mut input = Vec::new();
    if let Err(e) = std::io::stdin().take(64 * 1024).read_to_end(&mut input) {
        eprintln!("cannot read the token from stdin: {e}");
        return ExitCode::FAILURE;
    }
    // A trailing newline from `echo` or a file is not part of the token.
    let token = input.trim_ascii();
    if token.is_empty() {
        eprintln!("no token on stdin (usage: printf '%s' \"$TOKEN\" | scim-proxy hash-token)");
        return ExitCode::from(2);
    }
    if crate::auth::bearer_token(&[b"Bearer ".as_slice(), token].concat()).is_none() {
        eprintln!(
            "warning: this token has characters a bearer token cannot carry; no IdP can send it"
        );
    }
    println!("{}", hex::encode(crate::auth::token_sha256(token)));
    ExitCode::SUCCESS
}

async fn test_upstream(
    listen: std::net::SocketAddr,
    tls: Option<(PathBuf, PathBuf)>,
    token_file: PathBuf,
    base_path: String,
    log_requests: bool,
) -> ExitCode {
    let token = match std::fs::read_to_string(&token_file) {
        Ok(t) if !t.trim().is_empty() => t.trim().to_string(),
        Ok(_) => {
            eprintln!("{}: empty token file", token_file.display());
            return ExitCode::from(2);
        }
        Err(e) => {
            eprintln!("{}: {e}", token_file.display());
            return ExitCode::from(2);
        }
    };
    let tls = match tls {
        Some((cert, key)) => match crate::tls::read_certs(&cert)
            .and_then(|c| crate::tls::server_config_from(c, crate::tls::read_key(&key)?))
        {
            Ok(c) => Some(c),
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::from(2);
            }
        },
        None => None,
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let upstream =
        match crate::lab::upstream::Upstream::start(crate::lab::upstream::UpstreamOptions {
            bind: listen,
            tls,
            base_path: base_path.clone(),
            tokens: vec![token],
        })
        .await
        {
            Ok(u) => u,
            Err(e) => {
                eprintln!("cannot listen on {listen}: {e}");
                return ExitCode::FAILURE;
            }
        };
    upstream.log_requests(log_requests);
    println!(
        "test upstream serving {scheme}://{}{base_path} (Ctrl-C or SIGTERM to stop)",
        upstream.addr()
    );
    wait_for_stop().await;
    upstream.shutdown().await;
    ExitCode::SUCCESS
}

#[cfg(unix)]
async fn wait_for_stop() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(not(unix))]
async fn wait_for_stop() {
    let _ = tokio::signal::ctrl_c().await;
}

fn dev_certs(dir: &std::path::Path, names: &[String]) -> ExitCode {
    let mut dns: Vec<&str> = vec!["localhost"];
    dns.extend(names.iter().map(String::as_str));
    let loopback = [std::net::IpAddr::from([127, 0, 0, 1])];
    let written = crate::lab::devcerts::DevPki::new("scim-proxy dev CA")
        .map_err(|e| e.to_string())
        .and_then(|pki| {
            let leaf = pki.issue(&dns, &loopback).map_err(|e| e.to_string())?;
            write_dev_certs(dir, pki.ca_pem(), &leaf)
        });
    match written {
        Ok(()) => {
            println!(
                "wrote {0}/ca.pem, {0}/server.crt, {0}/server.key (for {1})",
                dir.display(),
                dns.join(", ")
            );
            println!(
                "trust ca.pem in the test client only; production needs a publicly trusted certificate"
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("dev-certs: {e}");
            ExitCode::FAILURE
        }
    }
}

fn write_dev_certs(
    dir: &std::path::Path,
    ca_pem: &str,
    leaf: &crate::lab::devcerts::IssuedCert,
) -> Result<(), String> {
    use std::io::Write;
    std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let write = |name: &str, text: &str, private: bool| -> Result<(), String> {
        let path = dir.join(name);
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        if private {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let _ = private;
        let mut file = options
            .open(&path)
            .map_err(|e| format!("writing {}: {e}", path.display()))?;
        file.write_all(text.as_bytes())
            .map_err(|e| format!("writing {}: {e}", path.display()))
    };
    write("ca.pem", ca_pem, false)?;
    write("server.crt", &leaf.cert_pem, false)?;
    write("server.key", &leaf.key_pem, true)
}

/// Loads everything; prints every problem, or a summary of the routes.
fn load(path: &std::path::Path) -> Result<crate::Snapshot, crate::Problems> {
    let config = state::read_config(path)?;
    state::build(config, None)
}

fn check(path: &std::path::Path, live: Option<std::time::Duration>) -> ExitCode {
    // Loading builds a client and TLS acceptor; that needs a runtime context for the timer.
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let _guard = rt.enter();
    match load(path) {
        Ok(snapshot) => {
            print_summary(&snapshot.config);
            warn_unusual_upstream_paths(&snapshot.config);
            let expired = report_token_expiry(&snapshot);
            let live_ok = match live {
                None => true,
                Some(timeout) => {
                    println!();
                    let checks = rt.block_on(crate::cli::check_live::run(&snapshot, timeout));
                    print!("{}", crate::cli::check_live::render(&checks));
                    checks.iter().all(|c| c.ok)
                }
            };
            if live_ok && !expired {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(problems) => {
            for p in &problems.0 {
                eprintln!("{p}");
            }
            eprintln!(
                "{} problem{} found; nothing was started",
                problems.0.len(),
                if problems.0.len() == 1 { "" } else { "s" }
            );
            ExitCode::from(2)
        }
    }
}

/// Prints each route's token expiry finding: an error (returns true) for a date in the past, a
/// warning inside `token_warn_days`. Serving still starts: the upstream decides.
fn report_token_expiry(snapshot: &crate::Snapshot) -> bool {
    let now = std::time::SystemTime::now();
    let mut expired = false;
    for (i, (route, runtime)) in snapshot
        .config
        .routes
        .iter()
        .zip(&snapshot.routes)
        .enumerate()
    {
        let Some(expiry) = &runtime.token_expiry else {
            continue;
        };
        let state = expiry.state(now, route.token_warn);
        let Some(what) = expiry.warning(&route.name, &route.token, now, route.token_warn) else {
            continue;
        };
        let key = format!("routes[{i}].token_expires");
        if matches!(
            state,
            crate::state::token_expiry::ExpiryState::Expired { .. }
        ) {
            expired = true;
            eprintln!(
                "{}: {key}: in the past: {what}",
                snapshot.config.source.display()
            );
        } else {
            eprintln!(
                "warning: {}: {key}: {what}",
                snapshot.config.source.display()
            );
        }
    }
    expired
}

/// Netskope's SCIM API lives at `/api/v2/scim`; another path is allowed (a gateway in front, a
/// lab) but is the first thing to suspect, so plain `check` says so before `--live` would.
fn warn_unusual_upstream_paths(c: &Config) {
    for (i, r) in c.routes.iter().enumerate() {
        if !r.upstream.path.eq_ignore_ascii_case("/api/v2/scim") {
            eprintln!(
                "warning: {}: routes[{i}].upstream: {} does not end in /api/v2/scim, where Netskope serves SCIM",
                c.source.display(),
                r.upstream.url()
            );
        }
    }
}

fn print_summary(c: &Config) {
    println!("{}: OK", c.source.display());
    for line in summary_lines(c, c.listen.addr, c.admin.as_ref().map(|a| a.addr)) {
        println!("{line}");
    }
}

/// What the config makes the proxy do, in plain words: `check` prints it, `serve` logs it.
/// `listen` and `admin` are the bound addresses (a port 0 in the config becomes a real one).
fn summary_lines(
    c: &Config,
    listen: std::net::SocketAddr,
    admin: Option<std::net::SocketAddr>,
) -> Vec<String> {
    let mut lines = Vec::new();
    let scheme = if c.listen.tls.is_some() {
        "https (TLS 1.2/1.3)"
    } else {
        "plain http (behind a TLS load balancer)"
    };
    lines.push(format!("listen   {listen} {scheme}"));
    if !c.listen.allow_cidrs.is_empty() {
        let nets: Vec<String> = c.listen.allow_cidrs.iter().map(|n| n.to_string()).collect();
        lines.push(format!("allow    {}", nets.join(", ")));
    }
    match admin {
        Some(a) => lines.push(format!("admin    http://{a}/healthz /readyz /metrics")),
        None => {
            lines.push("admin    none ([admin] not set: no /healthz, /readyz, /metrics)".into())
        }
    }
    lines.push(match (c.egress.bind_ip, &c.egress.via_proxy) {
        (Some(ip), None) => format!("egress   from {ip}"),
        (None, None) => "egress   from the default route's address (no bind_ip)".to_string(),
        (Some(ip), Some(p)) => format!(
            "egress   through forward proxy {} (reached from {ip})",
            p.url
        ),
        (None, Some(p)) => format!("egress   through forward proxy {}", p.url),
    });
    lines.push(match &c.log.traffic {
        crate::config::TrafficSink::Off => "traffic  log off".to_string(),
        crate::config::TrafficSink::Stdout => "traffic  log to stdout (JSON lines)".to_string(),
        crate::config::TrafficSink::File(path) => format!(
            "traffic  log to {} (JSON lines, rotated at {} bytes, {} kept)",
            path.display(),
            c.log.max_file_bytes,
            c.log.keep_files
        ),
    });
    for r in &c.routes {
        let hosts = if r.hosts.is_empty() {
            "any host".to_string()
        } else {
            r.hosts.join(", ")
        };
        let prefixes = match &r.legacy_tenant_id {
            Some(t) => format!("/SCIM/v2, /SCIM/V2/{t}"),
            None => "/SCIM/v2".to_string(),
        };
        let clients: Vec<&str> = r.clients.iter().map(|c| c.name.as_str()).collect();
        lines.push(format!(
            "route    {}: {} {} -> {} (token from {}, sent as {}; IdPs: {})",
            r.name,
            hosts,
            prefixes,
            r.upstream.url(),
            r.token,
            r.upstream_auth,
            clients.join(", ")
        ));
    }
    lines
}

async fn serve(path: PathBuf) -> ExitCode {
    let snapshot = match load(&path) {
        Ok(s) => s,
        Err(problems) => {
            for p in &problems.0 {
                tracing::error!("{p}");
            }
            return ExitCode::from(2);
        }
    };
    let running = match crate::start(snapshot, Some(path.clone())).await {
        Ok(r) => r,
        Err(e) => {
            // Plainly on stderr too: the admin reads this line, not a log pipeline.
            eprintln!("{}: {e}", path.display());
            tracing::error!("{}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    };
    let snapshot = running.shared.state.load();
    for line in summary_lines(&snapshot.config, running.proxy_addr, running.admin_addr) {
        tracing::info!("{line}");
    }
    let admin = running
        .admin_addr
        .map_or_else(|| "none".to_string(), |a| a.to_string());
    tracing::info!(addr = %running.proxy_addr, admin = %admin, config = %path.display(), "scim-proxy serving");
    if let Err(e) = wait_for_signals(&running).await {
        tracing::error!("cannot install signal handlers: {e}");
        running.shutdown();
    }
    running.wait().await;
    tracing::info!("scim-proxy stopped");
    ExitCode::SUCCESS
}

#[cfg(unix)]
async fn wait_for_signals(running: &crate::Running) -> std::io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    loop {
        tokio::select! {
            _ = term.recv() => { tracing::info!("SIGTERM: draining"); break; }
            _ = int.recv() => { tracing::info!("SIGINT: draining"); break; }
            _ = hup.recv() => crate::state::reload::reload_and_log(&running.shared, "SIGHUP"),
        }
    }
    running.shutdown();
    Ok(())
}

#[cfg(not(unix))]
async fn wait_for_signals(running: &crate::Running) -> std::io::Result<()> {
    tokio::signal::ctrl_c().await?;
    running.shutdown();
    Ok(())
}
