//! The command line: serve, check (and --live), hash-token, report, test-upstream, dev-certs, demo;
//! a file per subcommand. Exit codes: 0 ok, 1 failure, 2 usage or config problems.

mod check;
pub mod check_live;
mod demo;
mod dev_certs;
mod hash_token;
mod log_fields;
mod logging;
mod report;
mod runtime;
mod serve;
mod summary;
mod test_upstream;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

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
        /// Only the users and groups whose latest write failed and has not succeeded since (the
        /// status page's out-of-sync list, from the logs).
        #[arg(long)]
        out_of_sync: bool,
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
        /// A tenant-wide rate limit of N requests per second (fixed one-second window): above it
        /// 429 with Retry-After, and ratelimit-limit/-remaining/-reset on every answer.
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
        rate_limit: Option<u32>,
        /// Read --token-file on every request: rewriting it rotates the token and invalidates the
        /// old one at once (as AWS Secrets Manager's managed rotation does).
        #[arg(long)]
        reread_token: bool,
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
    let _tracing_writer = match logging::init_logging(cli.log_format) {
        Ok(writer) => writer,
        Err(e) => {
            eprintln!("scim-proxy: cannot start the log writer thread: {e}");
            return ExitCode::FAILURE;
        }
    };
    match cli.command {
        Command::HashToken => hash_token::run(),
        Command::Check {
            config,
            live,
            live_timeout,
        } => check::run(&config, live.then_some(live_timeout)),
        Command::DevCerts { dir, names } => dev_certs::run(&dir, &names),
        Command::TestUpstream {
            listen,
            cert,
            key,
            token_file,
            base_path,
            quiet,
            rate_limit,
            reread_token,
        } => test_upstream::run(test_upstream::Options {
            listen,
            tls: cert.zip(key),
            token_file,
            base_path,
            log_requests: !quiet,
            rate_limit,
            reread_token,
        }),
        Command::Report {
            files,
            json,
            out_of_sync,
        } => report::run(&files, json, out_of_sync),
        Command::Serve { config } => serve::run(config),
        Command::Demo { listen, once } => demo::run(listen, once),
    }
}
