//! The `scim-proxy` binary as a child process: run to completion, or `serve` with its stderr read
//! back, and `check --live`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::Full;
use scim_proxy::lab::client::{Answer, ScimClient};
use scim_proxy::lab::devcerts;
use serde_json::Value;

use super::*;

/// How long one `check --live` run may take before the test fails.
pub const CHECK_LIMIT: Duration = Duration::from_secs(30);

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

/// [`run_cli`] on a blocking thread, so that the test's runtime keeps serving meanwhile.
pub async fn run_cli_off_runtime(
    args: &[&str],
    envs: &[(&str, &str)],
    limit: Duration,
) -> std::process::Output {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let envs: Vec<(String, String)> = envs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let envs: Vec<(&str, &str)> = envs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        run_cli(&args, b"", &envs, limit)
    })
    .await
    .expect("the CLI thread")
}

/// `scim-proxy serve` as a child process, its stderr going to a file read back on demand.
pub struct ServeChild {
    pub guard: ChildGuard,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl ServeChild {
    pub fn spawn(config: &Path) -> ServeChild {
        ServeChild::start(config, "info", |_| {})
    }

    /// `serve` at debug level, with `envs` and without the test's `NO_PROXY`/`no_proxy`.
    pub fn spawn_env(config: &Path, envs: &[(&str, &str)]) -> ServeChild {
        ServeChild::start(config, "debug", |cmd| {
            cmd.env_remove("NO_PROXY").env_remove("no_proxy");
            for (k, v) in envs {
                cmd.env(k, v);
            }
        })
    }

    fn start(
        config: &Path,
        rust_log: &str,
        adjust: impl FnOnce(&mut std::process::Command),
    ) -> ServeChild {
        use std::process::{Command, Stdio};
        let dir = tempfile::tempdir().expect("temp dir");
        let log = dir.path().join("serve.stderr");
        let file = std::fs::File::create(&log).expect("stderr file");
        let mut cmd = Command::new(bin());
        cmd.args(["--log-format", "json", "serve", "--config"])
            .arg(config)
            .env("RUST_LOG", rust_log)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(file));
        adjust(&mut cmd);
        let child = cmd.spawn().expect("spawn scim-proxy serve");
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
        let line = self.serving_line(limit).await;
        line["addr"]
            .as_str()
            .and_then(|a| a.parse::<SocketAddr>().ok())
            .expect("the serving line names an address")
    }

    /// Waits (bounded) for the "serving" log line (one with the proxy's `addr`) and returns it.
    pub async fn serving_line(&mut self, limit: Duration) -> serde_json::Value {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let found = self.stderr().lines().find_map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).ok()?;
                let msg = v.get("message")?.as_str()?;
                if !msg.contains("serving") {
                    return None;
                }
                v.get("addr")?.as_str()?.parse::<SocketAddr>().ok()?;
                Some(v)
            });
            if let Some(line) = found {
                return line;
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

/// `scim-proxy --log-format json serve` as a child: stdout and stderr go to files read back on
/// demand; killed when dropped.
pub struct Served {
    pub serve: ServeChild,
    pub out: PathBuf,
    pub _out_dir: tempfile::TempDir,
    pub addr: SocketAddr,
    pub admin: Option<SocketAddr>,
    pub client: ScimClient,
}

impl Served {
    pub async fn start(config: &Path, ca_pem: &str) -> Served {
        let out_dir = tempfile::tempdir().expect("temp dir");
        let out = out_dir.path().join("stdout");
        let file = std::fs::File::create(&out).expect("stdout file");
        let mut serve = ServeChild::start(config, "info", |cmd| {
            cmd.stdout(std::process::Stdio::from(file));
        });
        let line = serve.serving_line(WAIT).await;
        let addr = line["addr"]
            .as_str()
            .and_then(|a| a.parse::<SocketAddr>().ok())
            .expect("the serving line names an address");
        let admin = line["admin"]
            .as_str()
            .and_then(|a| a.parse::<SocketAddr>().ok());
        let mut tls = devcerts::client_config(ca_pem, &[]).expect("client TLS");
        // No SNI, so `get` may send any Host (as in tests/support).
        std::sync::Arc::make_mut(&mut tls).enable_sni = false;
        let client = ScimClient::new(&format!("https://localhost:{}", addr.port()), tls, false);
        Served {
            serve,
            out,
            _out_dir: out_dir,
            addr,
            admin,
            client,
        }
    }

    pub fn stdout(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }

    pub fn stderr(&self) -> String {
        self.serve.stderr()
    }

    /// The JSON lines of stderr (tracing, flattened).
    pub fn events(&self) -> Vec<Value> {
        self.stderr()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Waits (bounded) until at least `n` stderr events match `pred`; returns the matching ones.
    pub async fn wait_events(
        &self,
        what: &str,
        n: usize,
        pred: impl Fn(&Value) -> bool,
    ) -> Vec<Value> {
        let deadline = Instant::now() + WAIT;
        loop {
            let hits: Vec<Value> = self.events().into_iter().filter(|e| pred(e)).collect();
            if hits.len() >= n {
                return hits;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: {} of {n} within {WAIT:?}; stderr:\n{}",
                hits.len(),
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    pub async fn get(&self, path: &str, token: &str, rid: &str, host: Option<&str>) -> Answer {
        let mut req = Request::builder()
            .method(Method::GET)
            .uri(format!("https://localhost:{}{path}", self.addr.port()))
            .header("accept", "application/scim+json")
            .header("authorization", bearer(token))
            .header("x-request-id", rid);
        if let Some(h) = host {
            req = req.header("host", h);
        }
        self.client
            .request(req.body(Full::new(Bytes::new())).expect("request"))
            .await
            .expect("request to the serve child")
    }

    /// SIGTERM, then a bounded wait for exit 0; what it wrote to stdout and stderr.
    pub async fn stop(mut self) -> (String, String) {
        self.serve.signal("TERM");
        let status = self
            .serve
            .exit_status(WAIT)
            .await
            .expect("serve did not exit on SIGTERM");
        assert!(status.success(), "serve exited with {status}");
        (self.stdout(), self.stderr())
    }
}

pub fn message(e: &Value) -> &str {
    e["message"].as_str().unwrap_or_default()
}

/// A client for a `serve` child listening on `addr`, trusting the test CA.
pub fn client_for(addr: SocketAddr, ca_pem: &str) -> ScimClient {
    let tls = devcerts::client_config(ca_pem, &[]).expect("client TLS");
    ScimClient::new(&format!("https://localhost:{}", addr.port()), tls, false)
}

/// What `check --config FILE --live` printed, and how it exited.
pub struct CheckRun {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl CheckRun {
    pub fn all(&self) -> String {
        format!(
            "exit {:?}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }

    /// The value of the report line labelled `label` (`egress`, `source`, …) in route `route`'s block.
    pub fn find_field(&self, route: &str, label: &str) -> Option<String> {
        let head = format!("route {route}: ");
        let mut in_block = false;
        for l in self.stdout.lines() {
            if l.starts_with("route ") {
                in_block = l.starts_with(&head);
                continue;
            }
            if !in_block {
                continue;
            }
            if let Some(rest) = l.trim_start().strip_prefix(label)
                && rest.starts_with(' ')
            {
                return Some(rest.trim().to_string());
            }
        }
        None
    }

    pub fn field(&self, route: &str, label: &str) -> String {
        self.find_field(route, label)
            .unwrap_or_else(|| panic!("no {label:?} line for route {route}:\n{}", self.all()))
    }

    pub fn has_field(&self, route: &str, label: &str) -> bool {
        self.find_field(route, label).is_some()
    }

    pub fn assert_route(&self, route: &str, ok: bool) {
        let want = format!("route {route}: {}", if ok { "OK" } else { "FAILED" });
        assert!(
            self.stdout.lines().any(|l| l == want),
            "want {want:?}:\n{}",
            self.all()
        );
    }

    pub fn assert_summary(&self, passed: usize, total: usize) {
        let want = format!(
            "{passed} of {total} route{} passed the live check",
            if total == 1 { "" } else { "s" }
        );
        assert!(
            self.stdout.lines().any(|l| l == want),
            "want {want:?}:\n{}",
            self.all()
        );
    }

    pub fn assert_failed(&self) {
        assert_eq!(
            self.code,
            Some(1),
            "a failed live check exits 1:\n{}",
            self.all()
        );
    }

    /// Asserts `meaning` of `route` mentions each of `words` (case-insensitive).
    pub fn assert_meaning(&self, route: &str, words: &[&str]) {
        let m = self.field(route, "meaning").to_lowercase();
        for w in words {
            assert!(
                m.contains(&w.to_lowercase()),
                "the meaning should mention {w:?}:\n{}",
                self.all()
            );
        }
    }

    pub fn assert_no_secret(&self, secrets: &[String]) {
        for s in secrets {
            assert!(
                !self.stdout.contains(s.as_str()) && !self.stderr.contains(s.as_str()),
                "check output carries a secret ({s:?}):\n{}",
                self.all()
            );
        }
    }
}

/// Runs `scim-proxy check --config <config> --live <extra…>` off the runtime (the embedded
/// upstream keeps serving on it), bounded by [`CHECK_LIMIT`].
pub async fn check_live(config: &Path, extra: &[&str], envs: &[(&str, &str)]) -> CheckRun {
    let mut args: Vec<String> = vec![
        "check".into(),
        "--config".into(),
        config.display().to_string(),
        "--live".into(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run_cli_off_runtime(&args, envs, CHECK_LIMIT).await;
    CheckRun {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

pub fn assert_has(what: &str, text: &str, parts: &[&str]) {
    for part in parts {
        assert!(
            text.contains(part),
            "{what} should contain {part:?}:\n{text}"
        );
    }
}
