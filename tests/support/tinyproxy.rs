//! Debian's tinyproxy as the HTTP CONNECT forward proxy of the egress tests.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use base64::Engine;
use scim_proxy::lab::upstream::RecordedRequest;

use super::*;

/// tinyproxy's `BasicAuth` takes `[-a-z0-9._]+` for both parts.
pub const FWD_USER: &str = "scim-egress";
pub const FWD_PASS: &str = "fwd-pass-7f3a9c2e";
pub const FWD_WRONG_PASS: &str = "fwd-wrong-41d8b6";

/// The tinyproxy binary; panics (never skips) when it is not installed.
pub fn tinyproxy_bin() -> PathBuf {
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
pub struct Tinyproxy {
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
    pub _guard: ChildGuard,
}

impl Tinyproxy {
    /// Starts tinyproxy allowing CONNECT to `connect_port` only, with optional `BasicAuth`.
    pub async fn start(connect_port: u16, auth: Option<(&str, &str)>) -> Tinyproxy {
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

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("tinyproxy.log")).unwrap_or_default()
    }

    /// Source addresses of the connections tinyproxy accepted (`Connect (file descriptor N): IP`).
    pub fn clients(&self) -> Vec<IpAddr> {
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
    pub fn connect_targets(&self) -> Vec<String> {
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
pub fn add_egress(prepared: &mut Prepared, lines: &str) {
    prepared.edit_config("\n[egress]\n", &format!("\n[egress]\n{lines}"));
}

pub fn via(tp: &Tinyproxy) -> String {
    format!("via_proxy = \"{}\"\n", tp.url())
}

/// Asserts the GET/POST requests an upstream saw carried the route's v2 token and nothing of the IdPs'.
pub fn assert_v2_token_only(seen: &[RecordedRequest], v2: &str) {
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
pub fn credential_forms(pass: &str) -> Vec<String> {
    let b64 = base64::engine::general_purpose::STANDARD.encode(format!("{FWD_USER}:{pass}"));
    vec![pass.to_string(), format!("{FWD_USER}:{pass}"), b64]
}

/// Writes `user:pass` to `fwd.credentials` and points `[egress]` at `tp` with it.
pub fn use_credentials(prepared: &mut Prepared, tp: &Tinyproxy, pass: &str) {
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
