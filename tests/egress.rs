//! Egress through a real HTTP CONNECT forward proxy, and `check --live` (issue 5).
//!
//! The forward proxy is Debian's **tinyproxy**, installed by `tests/run.sh` and started here, one
//! instance per test, in the foreground on a free loopback port with a generated config (CONNECT
//! ACL, optional Basic auth, a log file in the test's temp dir); a guard kills it whatever happens.
//! Without tinyproxy these tests fail: they are never skipped.
//!
//! `check --live` is the real binary run against the embedded upstream, for success and for every
//! failure class an admin can meet before a cutover. Egress by `bind_ip` alone is in `core.rs`.

mod support;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use base64::Engine;
use http::{Method, StatusCode, Version};
use scim_proxy::lab::client::{Answer, ScimClient};
use scim_proxy::lab::devcerts::{self, DevPki};
use scim_proxy::lab::upstream::{Override, RecordedRequest, Upstream};
use serde_json::json;
use support::*;
use tokio::net::TcpListener;

const EGRESS_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 7);
/// tinyproxy's `BasicAuth` takes `[-a-z0-9._]+` for both parts.
const FWD_USER: &str = "scim-egress";
const FWD_PASS: &str = "fwd-pass-7f3a9c2e";
const FWD_WRONG_PASS: &str = "fwd-wrong-41d8b6";
/// How long one `check --live` run may take before the test fails.
const CHECK_LIMIT: Duration = Duration::from_secs(30);

fn user(name: &str) -> serde_json::Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": name,
        "active": true,
        "name": {"givenName": "Egress", "familyName": "Test"},
        "emails": [{"primary": true, "type": "work", "value": name}]
    })
}

// ------------------------------------------------------------------------------------------ tinyproxy

/// The tinyproxy binary; panics (never skips) when it is not installed.
fn tinyproxy_bin() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/usr/sbin")])
        .map(|d| d.join("tinyproxy"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "tinyproxy is not installed: run tests/run.sh (it installs it with \
                 `apt-get install tinyproxy`); the egress tests need a real forward proxy"
            )
        })
}

/// A tinyproxy instance on 127.0.0.1, killed when dropped.
struct Tinyproxy {
    addr: SocketAddr,
    dir: tempfile::TempDir,
    _guard: ChildGuard,
}

impl Tinyproxy {
    /// Starts tinyproxy allowing CONNECT to `connect_port` only, with optional `BasicAuth`.
    async fn start(connect_port: u16, auth: Option<(&str, &str)>) -> Tinyproxy {
        let bin = tinyproxy_bin();
        let mut failures = Vec::new();
        // The free port is picked, released, then bound by tinyproxy: another test may take it in
        // between, so a failed start is retried on a new port (bounded).
        for _attempt in 0..4 {
            let dir = tempfile::Builder::new()
                .prefix("tinyproxy-test-")
                .tempdir()
                .expect("temp dir");
            let port = unused_port().await;
            let log = dir.path().join("tinyproxy.log");
            let mut conf = format!(
                "Listen 127.0.0.1\nPort {port}\nAllow 127.0.0.0/8\nConnectPort {connect_port}\n\
                 LogFile \"{}\"\nLogLevel Info\nTimeout 60\nMaxClients 64\n",
                log.display()
            );
            if let Some((user, pass)) = auth {
                conf.push_str(&format!("BasicAuth {user} {pass}\n"));
            }
            let conf_path = write_file(dir.path(), "tinyproxy.conf", &conf);
            let out = std::fs::File::create(dir.path().join("tinyproxy.out")).expect("out file");
            let err = out.try_clone().expect("clone out file");
            let child = std::process::Command::new(&bin)
                .arg("-d")
                .arg("-c")
                .arg(&conf_path)
                .stdin(std::process::Stdio::null())
                .stdout(out)
                .stderr(err)
                .spawn()
                .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));
            let mut guard = ChildGuard(Some(child));
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                if text.contains("Accepting connections") {
                    return Tinyproxy {
                        addr: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
                        dir,
                        _guard: guard,
                    };
                }
                if let Ok(Some(status)) = guard.child().try_wait() {
                    let out = std::fs::read_to_string(dir.path().join("tinyproxy.out"))
                        .unwrap_or_default();
                    failures.push(format!("port {port}: exited {status}:\n{text}\n{out}"));
                    break;
                }
                if Instant::now() >= deadline {
                    failures.push(format!("port {port}: not accepting within 10 s:\n{text}"));
                    break;
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        }
        panic!("tinyproxy did not start:\n{}", failures.join("\n---\n"));
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("tinyproxy.log")).unwrap_or_default()
    }

    /// Source addresses of the connections tinyproxy accepted (`Connect (file descriptor N): IP`).
    fn clients(&self) -> Vec<IpAddr> {
        self.log()
            .lines()
            .filter_map(|l| {
                l.split_once("]: Connect (file descriptor ")?
                    .1
                    .split_once("): ")
            })
            .filter_map(|(_, ip)| ip.trim().parse().ok())
            .collect()
    }

    /// The targets of the CONNECT requests it read (`host:port`).
    fn connect_targets(&self) -> Vec<String> {
        self.log()
            .lines()
            .filter_map(|l| {
                l.split_once("]: Request (file descriptor ")?
                    .1
                    .split_once("): ")
            })
            .filter_map(|(_, req)| req.strip_prefix("CONNECT "))
            .filter_map(|rest| rest.split_whitespace().next())
            .map(str::to_string)
            .collect()
    }
}

/// Adds `lines` to the config's `[egress]` table.
fn add_egress(prepared: &mut Prepared, lines: &str) {
    prepared.edit_config("\n[egress]\n", &format!("\n[egress]\n{lines}"));
}

fn via(tp: &Tinyproxy) -> String {
    format!("via_proxy = \"{}\"\n", tp.url())
}

// ------------------------------------------------------------------------------------------ helpers

/// Asserts the GET/POST requests an upstream saw carried the route's v2 token and nothing of the IdPs'.
fn assert_v2_token_only(seen: &[RecordedRequest], v2: &str) {
    assert!(!seen.is_empty(), "the upstream saw nothing");
    let want = format!("Bearer {v2}");
    for r in seen {
        assert!(r.authenticated, "{} {}", r.method, r.path_and_query);
        assert_eq!(
            r.headers.get("authorization").and_then(|v| v.to_str().ok()),
            Some(want.as_str()),
            "{} {}",
            r.method,
            r.path_and_query
        );
        for (k, v) in &r.headers {
            let v = String::from_utf8_lossy(v.as_bytes());
            assert!(
                !v.contains(OKTA) && !v.contains(ENTRA),
                "header {k} carries an IdP token upstream"
            );
        }
        assert!(r.headers.get("proxy-authorization").is_none());
    }
}

/// The Basic credentials in every form they could leak in.
fn credential_forms(pass: &str) -> Vec<String> {
    let b64 = base64::engine::general_purpose::STANDARD.encode(format!("{FWD_USER}:{pass}"));
    vec![pass.to_string(), format!("{FWD_USER}:{pass}"), b64]
}

fn assert_no_credentials(what: &str, text: &str, forms: &[String]) {
    for f in forms {
        assert!(
            !text.contains(f.as_str()),
            "{what} carries the forward proxy credentials ({f:?}):\n{text}"
        );
    }
}

fn answer_text(a: &Answer) -> String {
    let mut s = format!("{}\n", a.status);
    for (k, v) in &a.headers {
        s.push_str(&format!("{k}: {}\n", String::from_utf8_lossy(v.as_bytes())));
    }
    s.push_str(&String::from_utf8_lossy(&a.body));
    s
}

fn traffic_text(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("traffic.log")).unwrap_or_default()
}

/// Waits (bounded) for `n` traffic records: a record is written once its response has gone out.
async fn traffic_records(dir: &Path, n: usize) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + STEP;
    loop {
        let records = read_traffic(dir);
        if records.len() >= n || Instant::now() >= deadline {
            return records;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A client for a `serve` child listening on `addr`, trusting the test CA.
fn client_for(addr: SocketAddr, ca_pem: &str) -> ScimClient {
    let tls = devcerts::client_config(ca_pem, &[]).expect("client TLS");
    ScimClient::new(&format!("https://localhost:{}", addr.port()), tls, false)
}

/// `scim-proxy serve` as a child with extra environment variables; stderr to a file.
struct ServeEnv {
    guard: ChildGuard,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl ServeEnv {
    fn spawn(config: &Path, envs: &[(&str, &str)]) -> ServeEnv {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = dir.path().join("serve.stderr");
        let file = std::fs::File::create(&log).expect("stderr file");
        let mut cmd = std::process::Command::new(bin());
        cmd.args(["--log-format", "json", "serve", "--config"])
            .arg(config)
            .env("RUST_LOG", "debug")
            .env("NO_COLOR", "1")
            .env_remove("NO_PROXY")
            .env_remove("no_proxy")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::from(file));
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("spawn scim-proxy serve");
        ServeEnv {
            guard: ChildGuard(Some(child)),
            log,
            _dir: dir,
        }
    }

    fn stderr(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.log).unwrap_or_default()).into_owned()
    }

    async fn serving_addr(&mut self) -> SocketAddr {
        let deadline = Instant::now() + STEP;
        loop {
            let found = self.stderr().lines().find_map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).ok()?;
                if !v.get("message")?.as_str()?.contains("serving") {
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
                Instant::now() < deadline,
                "no 'serving' line within {STEP:?}:\n{}",
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A TCP listener that counts connections and closes each at once: what a proxy taken from the
/// environment would meet.
struct Trap {
    addr: SocketAddr,
    hits: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Trap {
    async fn start() -> Trap {
        let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("bind trap");
        let addr = l.local_addr().expect("addr");
        let hits = Arc::new(AtomicUsize::new(0));
        let h = hits.clone();
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = l.accept().await {
                h.fetch_add(1, Ordering::SeqCst);
                drop(tcp);
            }
        });
        Trap { addr, hits, task }
    }
}

impl Drop for Trap {
    fn drop(&mut self) {
        self.task.abort();
    }
}

// ------------------------------------------------------------------------------------------ check --live

/// What `check --config FILE --live` printed, and how it exited.
struct CheckRun {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl CheckRun {
    fn all(&self) -> String {
        format!(
            "exit {:?}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }

    /// The value of the report line labelled `label` (`egress`, `source`, …) in route `route`'s block.
    fn find_field(&self, route: &str, label: &str) -> Option<String> {
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

    fn field(&self, route: &str, label: &str) -> String {
        self.find_field(route, label)
            .unwrap_or_else(|| panic!("no {label:?} line for route {route}:\n{}", self.all()))
    }

    fn has_field(&self, route: &str, label: &str) -> bool {
        self.find_field(route, label).is_some()
    }

    fn assert_route(&self, route: &str, ok: bool) {
        let want = format!("route {route}: {}", if ok { "OK" } else { "FAILED" });
        assert!(
            self.stdout.lines().any(|l| l == want),
            "want {want:?}:\n{}",
            self.all()
        );
    }

    fn assert_summary(&self, passed: usize, total: usize) {
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

    fn assert_failed(&self) {
        assert_eq!(
            self.code,
            Some(1),
            "a failed live check exits 1:\n{}",
            self.all()
        );
    }

    /// Asserts `meaning` of `route` mentions each of `words` (case-insensitive).
    fn assert_meaning(&self, route: &str, words: &[&str]) {
        let m = self.field(route, "meaning").to_lowercase();
        for w in words {
            assert!(
                m.contains(&w.to_lowercase()),
                "the meaning should mention {w:?}:\n{}",
                self.all()
            );
        }
    }

    fn assert_no_secret(&self, secrets: &[String]) {
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
async fn check_live(config: &Path, extra: &[&str], envs: &[(&str, &str)]) -> CheckRun {
    let mut args: Vec<String> = vec![
        "check".into(),
        "--config".into(),
        config.display().to_string(),
        "--live".into(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let envs: Vec<(String, String)> = envs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let out = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let envs: Vec<(&str, &str)> = envs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        run_cli(&args, b"", &envs, CHECK_LIMIT)
    })
    .await
    .expect("check --live thread");
    CheckRun {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn secrets_of(p: &Prepared) -> Vec<String> {
    let mut s = p.v2_tokens.clone();
    s.extend([OKTA.to_string(), ENTRA.to_string()]);
    s
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

fn only_request(up: &Upstream) -> RecordedRequest {
    let seen = up.requests();
    assert_eq!(
        seen.len(),
        1,
        "{:?}",
        seen.iter()
            .map(|r| format!("{} {}", r.method, r.path_and_query))
            .collect::<Vec<_>>()
    );
    seen.into_iter().next().expect("one request")
}

// ================================================================================ (a) via_proxy

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn via_proxy_carries_idp_traffic_through_tinyproxy_from_the_bind_ip() {
    let mut prepared = Builder::new().bind_ip("127.0.0.7").prepare().await;
    let up_port = prepared.upstreams[0].addr().port();
    let tp = Tinyproxy::start(up_port, None).await;
    add_egress(&mut prepared, &via(&tp));
    let p = prepared.start().await;

    let created = p
        .send(
            Method::POST,
            "/SCIM/v2/Users",
            Some(OKTA),
            Some(&user("tunnel@example.com")),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
    let id = created.json()["id"].as_str().expect("id").to_string();
    let read = p.get(&format!("/SCIM/v2/Users/{id}"), ENTRA).await;
    assert_eq!(read.status, StatusCode::OK, "{:?}", read.body);
    assert_eq!(read.json()["userName"], "tunnel@example.com");
    let list = p
        .get(
            "/SCIM/v2/Users?filter=userName%20eq%20%22tunnel@example.com%22",
            OKTA,
        )
        .await;
    assert_eq!(list.status, StatusCode::OK, "{:?}", list.body);
    assert_eq!(list.json()["totalResults"], 1);

    // The upstream saw tinyproxy's outgoing connection (127.0.0.1), not scim-proxy's bind_ip, and
    // the v2 token only; TLS ran end to end inside the tunnel (HTTP/2 was agreed by ALPN with the
    // upstream itself, which a CONNECT relay cannot do on the upstream's behalf).
    let seen = p.upstream(0).requests();
    assert_eq!(seen.len(), 3, "{seen:?}");
    for r in &seen {
        assert_eq!(r.peer.ip(), IpAddr::V4(Ipv4Addr::LOCALHOST), "{r:?}");
        assert_ne!(r.peer.ip(), IpAddr::V4(EGRESS_IP));
        assert_eq!(
            r.version,
            Version::HTTP_2,
            "{} {}",
            r.method,
            r.path_and_query
        );
    }
    assert_v2_token_only(&seen, p.v2(0));

    // tinyproxy was reached from 127.0.0.7 and asked to CONNECT to the upstream.
    let clients = tp.clients();
    assert!(
        !clients.is_empty(),
        "tinyproxy saw no client:\n{}",
        tp.log()
    );
    assert!(
        clients.iter().all(|ip| *ip == IpAddr::V4(EGRESS_IP)),
        "every connection to tinyproxy must leave from bind_ip 127.0.0.7: {clients:?}\n{}",
        tp.log()
    );
    let targets = tp.connect_targets();
    assert!(!targets.is_empty(), "{}", tp.log());
    let want = format!("127.0.0.1:{up_port}");
    assert!(targets.iter().all(|t| *t == want), "{targets:?}");

    let records = traffic_records(p.dir(), 3).await;
    let statuses: Vec<_> = records
        .iter()
        .map(|r| r["upstream_status"].clone())
        .collect();
    assert_eq!(
        statuses,
        vec![json!(201), json!(200), json!(200)],
        "{records:?}"
    );
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn via_proxy_verifies_the_upstream_certificate_inside_the_tunnel() {
    let mut prepared = Builder::new().bind_ip("127.0.0.7").prepare().await;
    let up_port = prepared.upstreams[0].addr().port();
    let tp = Tinyproxy::start(up_port, None).await;
    add_egress(&mut prepared, &via(&tp));
    // A CA that did not sign the upstream's certificate.
    let other = DevPki::new("some other CA").expect("other CA");
    write_file(prepared.dir.path(), "wrong-ca.pem", other.ca_pem());
    prepared.edit_config("ca_file = \"ca.pem\"", "ca_file = \"wrong-ca.pem\"");
    let p = prepared.start().await;

    let a = p.get("/SCIM/v2/Users", OKTA).await;
    p.assert_error(&a, 502, &["TLS"]);
    assert_eq!(
        p.upstream_total(),
        0,
        "no request may reach an unverified upstream"
    );
    // The tunnel itself was opened (so the failure is scim-proxy's verification, end to end).
    let want = format!("127.0.0.1:{up_port}");
    assert!(
        tp.connect_targets().contains(&want),
        "tinyproxy should have been asked to CONNECT to {want}:\n{}",
        tp.log()
    );
    assert!(tp.log().contains("Established connection"), "{}", tp.log());
    let records = traffic_records(p.dir(), 1).await;
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0]["status"], 502);
    assert_eq!(records[0]["error"], "upstream-tls", "{records:?}");
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn via_proxy_leaves_the_upstream_name_to_the_forward_proxy() {
    let mut prepared = Builder::new()
        .bind_ip("127.0.0.7")
        .h1_upstream()
        .route(|r| r.target(Target::EmbeddedByName(0)))
        .prepare()
        .await;
    let up_port = prepared.upstreams[0].addr().port();
    let tp = Tinyproxy::start(up_port, None).await;
    add_egress(&mut prepared, &via(&tp));
    let p = prepared.start().await;

    let a = p.get("/SCIM/v2/Groups", OKTA).await;
    assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
    // CONNECT names the host as configured (the forward proxy resolves it), and the upstream got
    // the right Host over HTTP/1.1 inside the tunnel.
    let want = format!("localhost:{up_port}");
    assert_eq!(tp.connect_targets(), vec![want.clone()], "{}", tp.log());
    let seen = p.upstream(0).requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].version, Version::HTTP_11);
    assert_eq!(
        seen[0].headers.get("host").and_then(|v| v.to_str().ok()),
        Some(want.as_str())
    );
    assert_eq!(seen[0].peer.ip(), IpAddr::V4(Ipv4Addr::LOCALHOST));
    assert_v2_token_only(&seen, p.v2(0));
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_forward_proxy_is_a_502_after_the_connect_timeout() {
    let mut prepared = Builder::new()
        .limit("upstream_timeout", "\"2s\"")
        .limit("upstream_connect_timeout", "\"1s\"")
        .prepare()
        .await;
    // Accepts TCP, never answers the CONNECT.
    let silent = RawServer::start(RawBehaviour::Silent, &prepared.upstream_cert).await;
    add_egress(
        &mut prepared,
        &format!("via_proxy = \"http://{}\"\n", silent.addr),
    );
    let config = prepared.config_path.clone();
    let p = prepared.start().await;

    let started = Instant::now();
    let a = p.get("/SCIM/v2/Users", OKTA).await;
    let took = started.elapsed();
    // A CONNECT left unanswered counts as a failed connect: upstream_connect_timeout, not the
    // (longer) upstream_timeout, and a 502 that says so.
    p.assert_error(&a, 502, &["did not answer CONNECT in time"]);
    assert!(took < Duration::from_secs(10), "took {took:?}");
    assert!(silent.connections.load(Ordering::SeqCst) >= 1);
    assert_eq!(p.upstream_total(), 0);

    let run = check_live(&config, &["--live-timeout", "10s"], &[]).await;
    run.assert_failed();
    assert!(
        run.field("main", "FAILED")
            .contains("did not answer CONNECT in time"),
        "{}",
        run.all()
    );
    run.assert_meaning("main", &["forward proxy", "did not answer CONNECT"]);
    p.stop().await;
    silent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_applies_new_forward_proxy_credentials_and_a_change_of_egress() {
    let mut prepared = Builder::new().bind_ip("127.0.0.7").prepare().await;
    let up_port = prepared.upstreams[0].addr().port();
    let tp = Tinyproxy::start(up_port, Some((FWD_USER, FWD_PASS))).await;
    use_credentials(&mut prepared, &tp, FWD_WRONG_PASS);
    let mut p = prepared.start().await;

    let a = p.get("/SCIM/v2/Users", OKTA).await;
    p.assert_error(&a, 502, &["forward proxy"]);
    assert_eq!(p.upstream_total(), 0);

    // The right credentials, then a reload: the next request goes through.
    write_private(
        p.dir(),
        "fwd.credentials",
        &format!("{FWD_USER}:{FWD_PASS}\n"),
    );
    p.running().reload().expect("reload");
    let a = p.get("/SCIM/v2/Users", OKTA).await;
    assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
    let last = p.upstream(0).requests().pop().expect("a request");
    assert_eq!(
        last.peer.ip(),
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        "through tinyproxy"
    );

    // No forward proxy any more: the pooled tunnel must not be reused; direct from bind_ip.
    let connects = tp.connect_targets().len();
    let lines = format!("{}via_proxy_auth_file = \"fwd.credentials\"\n", via(&tp));
    p.prepared.edit_config(&lines, "");
    p.running().reload().expect("reload");
    for _ in 0..2 {
        let a = p.get("/SCIM/v2/Users", ENTRA).await;
        assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
        let last = p.upstream(0).requests().pop().expect("a request");
        assert_eq!(last.peer.ip(), IpAddr::V4(EGRESS_IP), "direct from bind_ip");
    }
    assert_eq!(tp.connect_targets().len(), connects, "{}", tp.log());

    // And back through the forward proxy.
    p.prepared
        .edit_config("\n[egress]\n", &format!("\n[egress]\n{lines}"));
    p.running().reload().expect("reload");
    let a = p.get("/SCIM/v2/Users", OKTA).await;
    assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
    let last = p.upstream(0).requests().pop().expect("a request");
    assert_eq!(
        last.peer.ip(),
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        "through tinyproxy"
    );
    assert_eq!(tp.connect_targets().len(), connects + 1, "{}", tp.log());
    assert!(
        tp.clients().iter().all(|ip| *ip == IpAddr::V4(EGRESS_IP)),
        "{}",
        tp.log()
    );
    p.stop().await;
}

// ================================================================================ (b) credentials

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn via_proxy_with_basic_auth_credentials_from_a_file() {
    let mut prepared = Builder::new().prepare().await;
    let up_port = prepared.upstreams[0].addr().port();
    let tp = Tinyproxy::start(up_port, Some((FWD_USER, FWD_PASS))).await;
    use_credentials(&mut prepared, &tp, FWD_PASS);
    let p = prepared.start().await;

    for token in [OKTA, ENTRA] {
        let a = p.get("/SCIM/v2/Users?count=5", token).await;
        assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
        assert_no_credentials("a response", &answer_text(&a), &credential_forms(FWD_PASS));
    }
    let seen = p.upstream(0).requests();
    assert_eq!(seen.len(), 2);
    assert_v2_token_only(&seen, p.v2(0));
    assert!(!tp.connect_targets().is_empty(), "{}", tp.log());
    traffic_records(p.dir(), 2).await;
    assert_no_credentials(
        "the traffic log",
        &traffic_text(p.dir()),
        &credential_forms(FWD_PASS),
    );
    p.stop().await;
}

/// Writes `user:pass` to `fwd.credentials` and points `[egress]` at `tp` with it.
fn use_credentials(prepared: &mut Prepared, tp: &Tinyproxy, pass: &str) {
    write_private(
        prepared.dir.path(),
        "fwd.credentials",
        &format!("{FWD_USER}:{pass}\n"),
    );
    add_egress(
        prepared,
        &format!("{}via_proxy_auth_file = \"fwd.credentials\"\n", via(tp)),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn via_proxy_without_credentials_against_basic_auth_is_a_502_naming_407() {
    let mut prepared = Builder::new().prepare().await;
    let up_port = prepared.upstreams[0].addr().port();
    let tp = Tinyproxy::start(up_port, Some((FWD_USER, FWD_PASS))).await;
    add_egress(&mut prepared, &via(&tp));
    let p = prepared.start().await;

    let a = p.get("/SCIM/v2/Users", OKTA).await;
    p.assert_error(
        &a,
        502,
        &[
            "the forward proxy demands authentication (407)",
            "via_proxy_auth_file",
        ],
    );
    assert_eq!(p.upstream_total(), 0);
    assert!(!tp.connect_targets().is_empty(), "{}", tp.log());
    let records = traffic_records(p.dir(), 1).await;
    assert_eq!(records[0]["error"], "upstream-connect", "{records:?}");
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn via_proxy_with_wrong_credentials_is_a_502_that_leaks_nothing() {
    let mut prepared = Builder::new().prepare().await;
    let up_port = prepared.upstreams[0].addr().port();
    let tp = Tinyproxy::start(up_port, Some((FWD_USER, FWD_PASS))).await;
    use_credentials(&mut prepared, &tp, FWD_WRONG_PASS);
    // A `serve` child (debug log level), so that everything it logs is read too.
    let mut serve = ServeEnv::spawn(&prepared.config_path, &[]);
    let addr = serve.serving_addr().await;
    let client = client_for(addr, &prepared.ca_pem);

    let a = client
        .send(Method::GET, "/SCIM/v2/Users", Some(OKTA), None)
        .await
        .expect("request to serve");
    let secrets = secrets_of(&prepared);
    // What the detail says about the cause is checked (ignored, BUG) in the next test.
    assert_scim_error(&a, 502, &["forward proxy"], &secrets);
    let b = client
        .send(
            Method::POST,
            "/SCIM/v2/Users",
            Some(ENTRA),
            Some(&user("x@y.z")),
        )
        .await
        .expect("request to serve");
    assert_scim_error(&b, 502, &["forward proxy"], &secrets);
    assert!(prepared.upstreams[0].requests().is_empty());
    // tinyproxy read the CONNECTs (and turned the credentials down).
    assert!(tp.connect_targets().len() >= 2, "{}", tp.log());
    assert!(!tp.log().contains("Established connection"), "{}", tp.log());

    let records = traffic_records(prepared.dir.path(), 2).await;
    assert_eq!(records.len(), 2, "{records:?}");
    for r in &records {
        assert_eq!(r["status"], 502, "{r}");
        assert_eq!(r["error"], "upstream-connect", "{r}");
    }
    let mut forms = credential_forms(FWD_WRONG_PASS);
    forms.extend(credential_forms(FWD_PASS));
    for (what, text) in [
        ("the GET response", answer_text(&a)),
        ("the POST response", answer_text(&b)),
        ("the traffic log", traffic_text(prepared.dir.path())),
        ("serve's stderr", serve.stderr()),
    ] {
        assert_no_credentials(what, &text, &forms);
        for s in &secrets {
            assert!(!text.contains(s.as_str()), "{what} carries a token");
        }
    }
    drop(serve);
    prepared.shutdown().await;
}

/// tinyproxy (1.11, Debian's) answers a CONNECT with *wrong* credentials `401 Unauthorized` (only
/// missing credentials get `407`). hyper-util's `Tunnel` maps every non-200/407 answer to
/// `TunnelUnsuccessful` without its status, so scim-proxy reports bad credentials as an ACL refusal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn via_proxy_with_wrong_credentials_says_the_credentials_were_refused() {
    let mut prepared = Builder::new().prepare().await;
    let up_port = prepared.upstreams[0].addr().port();
    let tp = Tinyproxy::start(up_port, Some((FWD_USER, FWD_PASS))).await;
    use_credentials(&mut prepared, &tp, FWD_WRONG_PASS);
    let config = prepared.config_path.clone();
    let p = prepared.start().await;

    let a = p.get("/SCIM/v2/Users", OKTA).await;
    p.assert_error(&a, 502, &["forward proxy", "auth"]);
    let detail = a.json()["detail"].as_str().unwrap_or_default().to_string();
    assert!(
        !detail.contains("refused the CONNECT tunnel"),
        "bad credentials are not an ACL refusal: {detail}"
    );

    let run = check_live(&config, &[], &[]).await;
    run.assert_failed();
    run.assert_meaning("main", &["credentials", "egress.via_proxy_auth_file"]);
    let meaning = run.field("main", "meaning");
    assert!(!meaning.contains("ACL"), "{}", run.all());
    p.stop().await;
}

// ================================================================================ (c) CONNECT refused

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connect_refused_by_the_forward_proxy_acl_is_a_clear_502() {
    let mut prepared = Builder::new().bind_ip("127.0.0.7").prepare().await;
    let up_port = prepared.upstreams[0].addr().port();
    // tinyproxy allows CONNECT to 443 only: not to the upstream's port.
    let blocked = if up_port == 443 { 8443 } else { 443 };
    let tp = Tinyproxy::start(blocked, None).await;
    add_egress(&mut prepared, &via(&tp));
    let p = prepared.start().await;

    let a = p.get("/SCIM/v2/Users", OKTA).await;
    p.assert_error(&a, 502, &["refused the CONNECT tunnel"]);
    let b = p
        .send(
            Method::POST,
            "/SCIM/v2/Users",
            Some(OKTA),
            Some(&user("acl@x.y")),
        )
        .await;
    p.assert_error(&b, 502, &["refused the CONNECT tunnel"]);
    assert_eq!(p.upstream_total(), 0, "the upstream must see nothing");
    let refused = format!("Refused CONNECT method on port {up_port}");
    assert!(tp.log().contains(&refused), "{}", tp.log());
    let records = traffic_records(p.dir(), 2).await;
    assert!(
        records.iter().all(|r| r["error"] == "upstream-connect"),
        "{records:?}"
    );
    p.stop().await;
}

// ================================================================================ (d) proxy down

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forward_proxy_that_is_down_is_a_quick_502() {
    let mut prepared = Builder::new().prepare().await;
    let dead = unused_port().await;
    add_egress(
        &mut prepared,
        &format!("via_proxy = \"http://127.0.0.1:{dead}\"\n"),
    );
    let p = prepared.start().await;

    for _ in 0..2 {
        let started = Instant::now();
        let a = p.get("/SCIM/v2/Users", OKTA).await;
        let took = started.elapsed();
        p.assert_error(&a, 502, &["could not connect to the forward proxy"]);
        // One connect retry after at most 250 ms of jitter; never the 10 s connect timeout.
        assert!(took < Duration::from_secs(5), "took {took:?}");
    }
    assert_eq!(p.upstream_total(), 0);
    p.stop().await;
}

// ================================================================================ (e) config only

const PROXY_VARS: [&str; 6] = [
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_environment_variables_are_ignored() {
    let prepared = Builder::new().prepare().await;
    let trap = Trap::start().await;
    let trap_url = format!("http://{}", trap.addr);
    let envs: Vec<(&str, &str)> = PROXY_VARS.iter().map(|k| (*k, trap_url.as_str())).collect();

    let mut serve = ServeEnv::spawn(&prepared.config_path, &envs);
    let addr = serve.serving_addr().await;
    let client = client_for(addr, &prepared.ca_pem);
    for token in [OKTA, ENTRA] {
        let a = client
            .send(Method::GET, "/SCIM/v2/Users", Some(token), None)
            .await
            .expect("request to serve");
        assert_eq!(a.status, StatusCode::OK, "{:?}\n{}", a.body, serve.stderr());
    }
    let seen = prepared.upstreams[0].requests();
    assert_eq!(seen.len(), 2);
    assert_v2_token_only(&seen, &prepared.v2_tokens[0]);

    // check --live with the same environment goes direct too.
    let mut check_envs = envs.clone();
    check_envs.extend([("NO_PROXY", ""), ("no_proxy", "")]);
    let run = check_live(&prepared.config_path, &[], &check_envs).await;
    assert_eq!(run.code, Some(0), "{}", run.all());
    assert!(
        run.field("main", "egress").starts_with("direct from"),
        "{}",
        run.all()
    );
    assert_eq!(prepared.upstreams[0].requests().len(), 3);
    assert_eq!(
        trap.hits.load(Ordering::SeqCst),
        0,
        "a proxy from the environment was used"
    );
    drop(serve);
    prepared.shutdown().await;
}

// ================================================================================ check --live

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_live_success_prints_egress_source_tls_certificate_status_and_token_expiry() {
    let expires = SystemTime::now() + Duration::from_secs(90 * 86_400);
    let expires_text = rfc3339(expires);
    let prepared = Builder::new()
        .bind_ip("127.0.0.7")
        .route(|mut r| {
            r.extra = format!("token_expires = \"{expires_text}\"\n");
            r
        })
        .prepare()
        .await;
    let up = prepared.upstreams[0].clone();
    let run = check_live(&prepared.config_path, &[], &[]).await;
    assert_eq!(run.code, Some(0), "{}", run.all());
    run.assert_route("main", true);
    assert_eq!(
        run.field("main", "egress"),
        "direct from 127.0.0.7 (egress.bind_ip)"
    );
    assert_eq!(
        run.field("main", "source"),
        format!("127.0.0.7 -> {}", up.addr())
    );
    assert_eq!(run.field("main", "tls"), "TLSv1.3 (h2)");
    let cert = run.field("main", "certificate");
    assert!(
        cert.starts_with("CN=localhost issued by CN=scim-proxy test CA"),
        "{cert}"
    );
    let until = cert
        .split_once("valid until ")
        .map(|(_, t)| t)
        .unwrap_or_else(|| panic!("no expiry: {cert}"));
    let until = humantime::parse_rfc3339(until).unwrap_or_else(|e| panic!("{until:?}: {e}"));
    let ahead = until
        .duration_since(SystemTime::now())
        .expect("the certificate is valid");
    assert!(
        ahead > Duration::from_secs(29 * 86_400) && ahead <= Duration::from_secs(30 * 86_400),
        "the test certificate is valid for 30 days: {cert}"
    );
    let status = run.field("main", "status");
    let ms = status
        .strip_prefix("200 OK in ")
        .and_then(|s| s.strip_suffix(" ms"))
        .unwrap_or_else(|| panic!("{status:?}"));
    let ms: u64 = ms.parse().unwrap_or_else(|e| panic!("{status:?}: {e}"));
    assert!(ms < CHECK_LIMIT.as_millis() as u64, "{status}");
    let token = run.field("main", "token");
    assert!(
        token.starts_with(&format!("expires {expires_text} (")) && token.ends_with(" days left)"),
        "{token}"
    );
    let days: u64 = token
        .trim_end_matches(" days left)")
        .rsplit('(')
        .next()
        .and_then(|d| d.parse().ok())
        .unwrap_or_else(|| panic!("{token}"));
    assert!((89..=90).contains(&days), "{token}");
    assert!(
        run.field("main", "result").starts_with("OK"),
        "{}",
        run.all()
    );
    assert_eq!(
        run.field("main", "request"),
        format!("GET https://{}/api/v2/scim/Users?count=1", up.addr())
    );
    run.assert_summary(1, 1);
    run.assert_no_secret(&secrets_of(&prepared));

    let r = only_request(&up);
    assert_eq!(r.method, Method::GET);
    assert_eq!(r.path_and_query, "/api/v2/scim/Users?count=1");
    assert_eq!(r.peer.ip(), IpAddr::V4(EGRESS_IP));
    assert_v2_token_only(&[r], &prepared.v2_tokens[0]);
    prepared.shutdown().await;
}

/// The preflight sends what serving sends: against an HTTP/1.1 origin that refuses absolute-form
/// targets with 400 (as strict servers do), it passes, with the same target, Host and token a
/// forwarded request carries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_live_against_a_strict_http11_origin_sends_origin_form_like_serving() {
    let prepared = Builder::new().h1_upstream().prepare().await;
    let up = prepared.upstreams[0].clone();
    let run = check_live(&prepared.config_path, &[], &[]).await;
    assert_eq!(run.code, Some(0), "{}", run.all());
    run.assert_route("main", true);
    assert!(
        run.field("main", "tls").ends_with("(http/1.1)"),
        "{}",
        run.all()
    );
    let preflight = only_request(&up);
    assert_eq!(preflight.version, Version::HTTP_11);
    assert_eq!(preflight.path_and_query, "/api/v2/scim/Users?count=1");
    run.assert_no_secret(&secrets_of(&prepared));
    // A forwarded request carries the same Host and the same token header.
    let p = prepared.start().await;
    assert_eq!(p.get("/SCIM/v2/Users", OKTA).await.status, StatusCode::OK);
    let seen = up.requests();
    let served = seen.last().expect("the forwarded request");
    for name in ["host", "authorization"] {
        assert_eq!(
            preflight.headers.get(name),
            served.headers.get(name),
            "{name} differs between check --live and serving"
        );
    }
    p.stop().await;
}

/// A 2xx that is not a SCIM ListResponse (a captive portal, an inspecting proxy's page, the wrong
/// path) fails and says what came back; a 400 has a meaning of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_live_fails_a_success_that_is_not_a_list_response_and_explains_a_400() {
    let prepared = Builder::new().prepare().await;
    let up = prepared.upstreams[0].clone();
    let canned = |status: u16, content_type: &str, body: &str| Override {
        status: StatusCode::from_u16(status).unwrap(),
        headers: vec![("content-type".into(), content_type.into())],
        body: bytes::Bytes::from(body.to_owned()),
        delay: Duration::ZERO,
    };
    for (body, content_type, says) in [
        (
            "<html><body>Sign in to continue</body></html>",
            "text/html",
            "not JSON",
        ),
        ("{}", "application/json", "not a SCIM ListResponse"),
        (
            r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:ListResponse"],"totalResults":"1"}"#,
            "application/scim+json",
            "no integer totalResults",
        ),
    ] {
        up.push_override(canned(200, content_type, body));
        let run = check_live(&prepared.config_path, &[], &[]).await;
        run.assert_failed();
        run.assert_route("main", false);
        let answer = run.field("main", "answer");
        assert!(answer.contains(says), "{answer}");
        assert!(answer.contains(content_type), "{answer}");
        assert!(answer.contains(&body[..body.len().min(8)]), "{answer}");
        run.assert_meaning("main", &["captive portal", "wrong upstream path"]);
        run.assert_no_secret(&secrets_of(&prepared));
    }
    up.push_override(canned(
        400,
        "application/scim+json",
        r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:Error"],"status":"400","detail":"bad request"}"#,
    ));
    let run = check_live(&prepared.config_path, &[], &[]).await;
    run.assert_failed();
    run.assert_meaning(
        "main",
        &[
            "refused the request itself",
            "wrong upstream path",
            "not the SCIM API",
        ],
    );
    prepared.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_live_401_names_token_scopes_and_allowlist() {
    let prepared = Builder::new().prepare().await;
    let up = prepared.upstreams[0].clone();
    // The tenant no longer accepts the configured v2 token.
    up.set_tokens(vec!["v2-some-other-token".into()]);
    let run = check_live(&prepared.config_path, &[], &[]).await;
    run.assert_failed();
    run.assert_route("main", false);
    assert!(
        run.field("main", "status")
            .starts_with("401 Unauthorized in "),
        "{}",
        run.all()
    );
    run.assert_meaning("main", &["wrong, expired", "SCIM scopes", "IP allowlist"]);
    assert!(!run.has_field("main", "result"), "{}", run.all());
    assert!(
        run.field("main", "token")
            .starts_with("expiry not configured"),
        "{}",
        run.all()
    );
    run.assert_summary(0, 1);
    run.assert_no_secret(&secrets_of(&prepared));
    assert!(!only_request(&up).authenticated);
    prepared.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_live_403_names_token_scopes_and_allowlist_with_the_upstream_detail() {
    let prepared = Builder::new().prepare().await;
    let up = prepared.upstreams[0].clone();
    // The embedded upstream runs in this process; the check child's request takes the override.
    up.push_override(Override {
        status: StatusCode::FORBIDDEN,
        headers: vec![("content-type".into(), "application/json".into())],
        body: json!({
            "schemas": [SCIM_ERROR_URN],
            "status": "403",
            "detail": "source IP not in the tenant allowlist"
        })
        .to_string()
        .into(),
        delay: Duration::ZERO,
    });
    let run = check_live(&prepared.config_path, &[], &[]).await;
    run.assert_failed();
    run.assert_route("main", false);
    assert!(
        run.field("main", "status").starts_with("403 Forbidden in "),
        "{}",
        run.all()
    );
    run.assert_meaning(
        "main",
        &[
            "wrong, expired",
            "SCIM scopes",
            "IP allowlist",
            "(upstream said: source IP not in the tenant allowlist)",
        ],
    );
    run.assert_summary(0, 1);
    run.assert_no_secret(&secrets_of(&prepared));
    prepared.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_live_tls_failure_names_interception_or_a_missing_ca() {
    // No egress.ca_file: the test CA is not trusted.
    let prepared = Builder::new().no_ca_file().prepare().await;
    let run = check_live(&prepared.config_path, &[], &[]).await;
    run.assert_failed();
    run.assert_route("main", false);
    assert!(
        run.field("main", "FAILED").starts_with("TLS: "),
        "{}",
        run.all()
    );
    run.assert_meaning("main", &["TLS-inspecting proxy", "egress.ca_file"]);
    assert!(!run.has_field("main", "status"), "{}", run.all());
    run.assert_summary(0, 1);
    assert!(prepared.upstreams[0].requests().is_empty());
    prepared.shutdown().await;
}

/// A CA with exactly the name (subject) of the CA in `ca_pem` but a key of its own, as a second dev
/// PKI or a re-made CA has: a certificate issued by the one does not verify under the other.
fn same_name_ca(ca_pem: &str) -> String {
    use rustls_pki_types::pem::PemObject;
    let der = rustls_pki_types::CertificateDer::from_pem_slice(ca_pem.as_bytes()).expect("CA PEM");
    let (_, ca) = x509_parser::parse_x509_certificate(der.as_ref()).expect("the test CA");
    let mut dn = rcgen::DistinguishedName::new();
    for attr in ca.subject().iter_attributes() {
        let value = attr.as_str().expect("a text attribute").to_string();
        if *attr.attr_type() == x509_parser::oid_registry::OID_X509_COMMON_NAME {
            dn.push(rcgen::DnType::CommonName, value);
        } else if *attr.attr_type() == x509_parser::oid_registry::OID_X509_ORGANIZATION_NAME {
            dn.push(rcgen::DnType::OrganizationName, value);
        } else {
            panic!("unexpected attribute in the test CA's name: {attr:?}");
        }
    }
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = dn;
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    let twin = params.self_signed(&key).expect("same-name CA").pem();
    assert_ne!(twin, ca_pem);
    twin
}

/// The subject of the test CA, as the proxy writes names (the issuer of the upstream's certificate).
fn ca_name(p: &Prepared) -> String {
    let ders = scim_proxy::tls::read_certs(&p.dir.path().join("ca.pem")).expect("ca.pem");
    scim_proxy::tls::cert_info(&ders[0])
        .expect("ca.pem")
        .subject
}

fn assert_has(what: &str, text: &str, parts: &[&str]) {
    for part in parts {
        assert!(
            text.contains(part),
            "{what} should contain {part:?}:\n{text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_live_tls_failure_under_a_same_name_ca_names_the_ca_file_and_the_presented_certificate()
 {
    let mut prepared = Builder::new().prepare().await;
    write_file(
        prepared.dir.path(),
        "twin-ca.pem",
        &same_name_ca(&prepared.ca_pem),
    );
    prepared.edit_config("ca_file = \"ca.pem\"", "ca_file = \"twin-ca.pem\"");
    let issuer = ca_name(&prepared);
    let ca_file = prepared.dir.path().join("twin-ca.pem");
    let run = check_live(&prepared.config_path, &[], &[]).await;
    run.assert_failed();
    run.assert_route("main", false);
    let failed = run.field("main", "FAILED");
    assert_has(
        "the FAILED line",
        &failed,
        &[
            "TLS: invalid peer certificate: BadSignature; ",
            "the upstream presented subject \"CN=localhost\"",
            &format!("issued by \"{issuer}\""),
            "names localhost, 127.0.0.1, ::1",
            &format!(
                "; trusted: Mozilla roots plus egress.ca_file {}",
                ca_file.display()
            ),
        ],
    );
    let meaning = run.field("main", "meaning");
    assert_has(
        "the meaning",
        &meaning,
        &[
            "not signed by the CA it names",
            &format!("\"{issuer}\""),
            &format!("egress.ca_file {}", ca_file.display()),
            "same name",
        ],
    );
    assert!(!run.has_field("main", "status"), "{}", run.all());
    run.assert_summary(0, 1);
    run.assert_no_secret(&secrets_of(&prepared));
    assert!(prepared.upstreams[0].requests().is_empty());
    prepared.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_live_tls_failure_without_a_ca_file_names_the_mozilla_roots_and_the_untrusted_issuer()
{
    let prepared = Builder::new().no_ca_file().prepare().await;
    let issuer = ca_name(&prepared);
    let run = check_live(&prepared.config_path, &[], &[]).await;
    run.assert_failed();
    let failed = run.field("main", "FAILED");
    assert_has(
        "the FAILED line",
        &failed,
        &[
            "TLS: invalid peer certificate: UnknownIssuer; ",
            &format!("the upstream presented subject \"CN=localhost\" issued by \"{issuer}\""),
            "; trusted: Mozilla roots (no egress.ca_file)",
        ],
    );
    let meaning = run.field("main", "meaning");
    assert_has(
        "the meaning",
        &meaning,
        &[
            &format!(
                "the issuer \"{issuer}\" is not trusted: not a Mozilla root, and no egress.ca_file is set"
            ),
            "TLS-inspecting proxy",
            "egress.ca_file",
        ],
    );
    run.assert_summary(0, 1);
    assert!(prepared.upstreams[0].requests().is_empty());
    prepared.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serving_tls_failure_names_the_presented_certificate_and_the_trust_roots_in_the_log_and_the_502()
 {
    let mut prepared = Builder::new().prepare().await;
    write_file(
        prepared.dir.path(),
        "twin-ca.pem",
        &same_name_ca(&prepared.ca_pem),
    );
    prepared.edit_config("ca_file = \"ca.pem\"", "ca_file = \"twin-ca.pem\"");
    let issuer = ca_name(&prepared);
    let ca_file = prepared.dir.path().join("twin-ca.pem");
    let mut serve = ServeEnv::spawn(&prepared.config_path, &[]);
    let addr = serve.serving_addr().await;
    let client = client_for(addr, &prepared.ca_pem);

    let a = client
        .send(Method::GET, "/SCIM/v2/Users", Some(OKTA), None)
        .await
        .expect("request to serve");
    let want = [
        "upstream TLS failed: invalid peer certificate: BadSignature; ".to_string(),
        format!("the upstream presented subject \"CN=localhost\" issued by \"{issuer}\""),
        format!(
            "; trusted: Mozilla roots plus egress.ca_file {}",
            ca_file.display()
        ),
    ];
    let want: Vec<&str> = want.iter().map(String::as_str).collect();
    let secrets = secrets_of(&prepared);
    assert_scim_error(&a, 502, &want, &secrets);
    assert!(prepared.upstreams[0].requests().is_empty());

    let records = traffic_records(prepared.dir.path(), 1).await;
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0]["status"], 502);
    assert_eq!(records[0]["error"], "upstream-tls", "{records:?}");

    // The warning names the same (the log writer may lag the response a little).
    let deadline = Instant::now() + STEP;
    let (line, stderr) = loop {
        let stderr = serve.stderr();
        let found = stderr
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|v| v["message"] == "upstream failure");
        match found {
            Some(line) => break (line, stderr),
            None if Instant::now() >= deadline => panic!("no \"upstream failure\" line:\n{stderr}"),
            None => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    };
    assert_eq!(line["kind"], "upstream-tls", "{line}");
    assert_has(
        "the log line",
        line["detail"].as_str().unwrap_or_default(),
        &want,
    );
    for s in &secrets {
        assert!(!stderr.contains(s.as_str()), "serve's stderr carries {s:?}");
    }
    drop(serve);
    prepared.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_live_connect_refused_names_a_firewall_or_nothing_listening() {
    let dead = unused_port().await;
    let prepared = Builder::new()
        .upstreams(0)
        .route(|r| r.target(Target::Url(format!("https://127.0.0.1:{dead}/api/v2/scim"))))
        .prepare()
        .await;
    let run = check_live(&prepared.config_path, &[], &[]).await;
    run.assert_failed();
    run.assert_route("main", false);
    assert!(
        run.field("main", "FAILED").starts_with("connect: "),
        "{}",
        run.all()
    );
    run.assert_meaning("main", &["nothing listens", "firewall"]);
    run.assert_summary(0, 1);
    prepared.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_live_silent_upstream_times_out_and_names_a_firewall() {
    let mut prepared = Builder::new().placeholder_upstream().prepare().await;
    let silent = RawServer::start(RawBehaviour::Silent, &prepared.upstream_cert).await;
    prepared.point_at(silent.addr);
    let started = Instant::now();
    let run = check_live(&prepared.config_path, &["--live-timeout", "1s"], &[]).await;
    run.assert_failed();
    assert!(
        run.field("main", "FAILED")
            .starts_with("no answer within 1s"),
        "{}",
        run.all()
    );
    run.assert_meaning("main", &["firewall"]);
    assert!(started.elapsed() < Duration::from_secs(15), "{}", run.all());
    assert!(silent.connections.load(Ordering::SeqCst) >= 1);
    silent.stop().await;
    prepared.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_live_unresolvable_name_names_dns() {
    let prepared = Builder::new()
        .upstreams(0)
        .route(|r| {
            r.target(Target::Url(
                "https://nonexistent.invalid/api/v2/scim".into(),
            ))
        })
        .prepare()
        .await;
    let run = check_live(&prepared.config_path, &["--live-timeout", "15s"], &[]).await;
    run.assert_failed();
    run.assert_route("main", false);
    assert!(
        run.field("main", "FAILED").starts_with("connect: "),
        "{}",
        run.all()
    );
    run.assert_meaning("main", &["DNS"]);
    run.assert_summary(0, 1);
    prepared.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_live_through_tinyproxy_names_the_forward_proxy_and_its_failures() {
    let mut prepared = Builder::new().bind_ip("127.0.0.7").prepare().await;
    let up = prepared.upstreams[0].clone();
    let up_port = up.addr().port();
    let tp = Tinyproxy::start(up_port, Some((FWD_USER, FWD_PASS))).await;
    use_credentials(&mut prepared, &tp, FWD_PASS);
    let mut secrets = secrets_of(&prepared);
    secrets.extend(credential_forms(FWD_PASS));

    // Allowed, with credentials: OK, and the egress is the forward proxy reached from 127.0.0.7.
    let run = check_live(&prepared.config_path, &[], &[]).await;
    assert_eq!(run.code, Some(0), "{}", run.all());
    run.assert_route("main", true);
    assert_eq!(
        run.field("main", "egress"),
        format!(
            "through forward proxy {} (connection to it from 127.0.0.7)",
            tp.url()
        )
    );
    assert_eq!(
        run.field("main", "source"),
        format!("127.0.0.7 (to the forward proxy {})", tp.url())
    );
    assert_eq!(run.field("main", "tls"), "TLSv1.3 (h2)");
    assert!(run.field("main", "status").starts_with("200 OK in "));
    run.assert_summary(1, 1);
    run.assert_no_secret(&secrets);
    let r = only_request(&up);
    assert_eq!(
        r.peer.ip(),
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        "tinyproxy's address"
    );
    assert_v2_token_only(&[r], &prepared.v2_tokens[0]);
    assert_eq!(tp.clients(), vec![IpAddr::V4(EGRESS_IP)], "{}", tp.log());

    // Without credentials: 407, named.
    prepared.edit_config("via_proxy_auth_file = \"fwd.credentials\"\n", "");
    let run = check_live(&prepared.config_path, &[], &[]).await;
    run.assert_failed();
    let failed = run.field("main", "FAILED");
    assert!(
        failed.starts_with("forward proxy: ") && failed.contains("(407)"),
        "{}",
        run.all()
    );
    run.assert_meaning("main", &["wants credentials", "egress.via_proxy_auth_file"]);
    run.assert_summary(0, 1);

    // A forward proxy whose ACL does not allow CONNECT to the upstream's port.
    let blocked = if up_port == 443 { 8443 } else { 443 };
    let acl = Tinyproxy::start(blocked, None).await;
    prepared.edit_config(&via(&tp), &via(&acl));
    let run = check_live(&prepared.config_path, &[], &[]).await;
    run.assert_failed();
    assert!(
        run.field("main", "egress").contains(&acl.url()),
        "{}",
        run.all()
    );
    let failed = run.field("main", "FAILED");
    assert!(
        failed.starts_with("forward proxy: ") && failed.contains("refused the CONNECT tunnel"),
        "{}",
        run.all()
    );
    run.assert_meaning("main", &["does not allow CONNECT", "(its ACL)"]);
    run.assert_summary(0, 1);
    assert!(
        acl.log()
            .contains(&format!("Refused CONNECT method on port {up_port}")),
        "{}",
        acl.log()
    );

    // Nothing on the forward proxy's port.
    let dead = unused_port().await;
    prepared.edit_config(
        &via(&acl),
        &format!("via_proxy = \"http://127.0.0.1:{dead}\"\n"),
    );
    let run = check_live(&prepared.config_path, &[], &[]).await;
    run.assert_failed();
    run.assert_meaning("main", &["forward proxy is unreachable"]);

    assert_eq!(
        up.requests().len(),
        1,
        "only the successful check reached the upstream"
    );
    prepared.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_live_checks_every_route_and_fails_if_any_fails() {
    let dead = unused_port().await;
    let prepared = Builder::new()
        .routes(vec![
            // The failing route first: the check goes on to the next one.
            RouteSpec::new("broken")
                .hosts(&["addon-b.example"])
                .target(Target::Url(format!("https://127.0.0.1:{dead}/api/v2/scim"))),
            RouteSpec::new("good").hosts(&["addon-a.example"]),
        ])
        .prepare()
        .await;
    let run = check_live(&prepared.config_path, &[], &[]).await;
    run.assert_failed();
    run.assert_route("broken", false);
    run.assert_route("good", true);
    run.assert_meaning("broken", &["nothing listens"]);
    assert!(
        run.field("good", "status").starts_with("200 OK"),
        "{}",
        run.all()
    );
    run.assert_summary(1, 2);
    let broken_at = run.stdout.find("route broken:").expect("broken block");
    let good_at = run.stdout.find("route good:").expect("good block");
    assert!(broken_at < good_at, "routes are reported in config order");
    assert_eq!(prepared.upstreams[0].requests().len(), 1);
    prepared.shutdown().await;
}
