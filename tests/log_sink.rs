//! A log sink that stops draining (stdout and stderr pipes nobody reads) must not stop the proxy:
//! records are dropped and counted instead, and a sink that drains loses none.

mod support;

use std::io::Read;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use http::{Method, StatusCode};
use scim_proxy::lab::client::ScimClient;
use support::*;

const FLOOD: usize = 500;
/// Each answer, even to a stalled-log flood, comes well within this.
const ANSWER_WITHIN: Duration = Duration::from_secs(5);

/// A config on fixed loopback ports, the traffic log on stdout with a small queue.
async fn prepare() -> (Prepared, SocketAddr, SocketAddr) {
    let mut p = Builder::new().admin().prepare().await;
    let proxy: SocketAddr = format!("127.0.0.1:{}", unused_port().await)
        .parse()
        .unwrap();
    let admin: SocketAddr = format!("127.0.0.1:{}", unused_port().await)
        .parse()
        .unwrap();
    p.edit_config(
        "[listen]\naddr = \"127.0.0.1:0\"",
        &format!("[listen]\naddr = \"{proxy}\""),
    );
    p.edit_config(
        "[admin]\naddr = \"127.0.0.1:0\"",
        &format!("[admin]\naddr = \"{admin}\""),
    );
    p.edit_config(
        "traffic = \"traffic.log\"",
        "traffic = \"stdout\"\nqueue_records = 64",
    );
    (p, proxy, admin)
}

/// `serve` with stdout and stderr as pipes the caller decides to read or not.
fn spawn(config: &Path) -> ChildGuard {
    let child = Command::new(bin())
        .args(["--log-format", "json", "serve", "--config"])
        .arg(config)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn scim-proxy serve");
    ChildGuard(Some(child))
}

async fn wait_healthy(guard: &mut ChildGuard, admin: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while plain_get(admin, "/healthz").await.is_err() {
        if let Ok(Some(status)) = guard.child().try_wait() {
            panic!("serve exited early ({status})");
        }
        assert!(Instant::now() < deadline, "/healthz never answered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `FLOOD` unauthenticated requests with 4 KB paths, each answered 401 within `ANSWER_WITHIN`.
async fn flood(client: &ScimClient) {
    let path = format!("/SCIM/v2/Users/{}", "a".repeat(4096));
    for i in 0..FLOOD {
        let answer = tokio::time::timeout(
            ANSWER_WITHIN,
            client.send(Method::GET, &path, Some("not-a-client"), None),
        )
        .await
        .unwrap_or_else(|_| panic!("request {i} not answered within {ANSWER_WITHIN:?}"))
        .expect("request");
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "request {i}");
    }
}

/// The value of `scim_proxy_log_records_dropped_total{sink="..."}`.
async fn dropped(admin: SocketAddr, sink: &str) -> f64 {
    let a = plain_get(admin, "/metrics").await.expect("GET /metrics");
    let text = String::from_utf8_lossy(&a.body).into_owned();
    let name = format!("scim_proxy_log_records_dropped_total{{sink=\"{sink}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&name)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in:\n{text}"))
}

#[tokio::test]
async fn a_stalled_stdout_and_stderr_drop_records_but_the_proxy_keeps_answering() {
    let (p, proxy, admin) = prepare().await;
    let mut guard = spawn(&p.config_path);
    wait_healthy(&mut guard, admin).await;
    assert_eq!(dropped(admin, "traffic").await, 0.0, "exported from start");
    assert_eq!(dropped(admin, "tracing").await, 0.0, "exported from start");
    let client = client_for(proxy, &p.ca_pem);

    // Nobody reads the pipes: a blocking log write would freeze the process within a few records.
    flood(&client).await;

    let health = tokio::time::timeout(ANSWER_WITHIN, plain_get(admin, "/healthz"))
        .await
        .expect("/healthz answers")
        .expect("GET /healthz");
    assert_eq!(health.status, StatusCode::OK);
    let idp = tokio::time::timeout(
        ANSWER_WITHIN,
        client.send(Method::GET, "/SCIM/v2/Users", Some(OKTA), None),
    )
    .await
    .expect("an IdP request answers")
    .expect("request");
    assert_eq!(idp.status, StatusCode::OK, "{:?}", idp.body);

    let lost = dropped(admin, "traffic").await;
    assert!(lost > 0.0, "no traffic record counted as dropped");
    let ready = plain_get(admin, "/readyz").await.expect("GET /readyz");
    assert_eq!(ready.status, StatusCode::OK, "provisioning goes on");
    let body = ready.json();
    assert_eq!(body["status"], "ready");
    assert!(
        body["log_records_dropped"]["traffic"].as_u64() >= Some(1),
        "{body}"
    );
    drop(guard);
    p.shutdown().await;
}

#[tokio::test]
async fn a_draining_stdout_loses_no_record() {
    let (p, proxy, admin) = prepare().await;
    let mut guard = spawn(&p.config_path);
    let child = guard.child();
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let stdout = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = out.read_to_string(&mut text);
        text
    });
    let stderr = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = err.read_to_string(&mut text);
        text
    });
    wait_healthy(&mut guard, admin).await;
    let client = client_for(proxy, &p.ca_pem);
    flood(&client).await;
    assert_eq!(dropped(admin, "traffic").await, 0.0);

    // SIGTERM: the queue is written out before the process exits.
    let status = Command::new("kill")
        .arg("-TERM")
        .arg(guard.id().to_string())
        .status()
        .expect("run kill");
    assert!(status.success());
    let exited = tokio::task::spawn_blocking(move || {
        let status = guard.wait_for(Duration::from_secs(20));
        (guard, status)
    })
    .await
    .expect("wait");
    assert!(exited.1.is_some_and(|s| s.success()), "{:?}", exited.1);
    let text = stdout.join().expect("stdout reader");
    let _ = stderr.join();
    let records: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON record"))
        .collect();
    assert_eq!(records.len(), FLOOD, "every record written");
    assert!(records.iter().all(|r| r["status"] == 401));
    p.shutdown().await;
}
