//! Egress: `bind_ip`, and a real HTTP CONNECT forward proxy (`via_proxy`).
//!
//! The forward proxy is Debian's **tinyproxy**, installed by `tests/run.sh` and started here, one
//! instance per test, in the foreground on a free loopback port with a generated config (CONNECT
//! ACL, optional Basic auth, a log file in the test's temp dir); a guard kills it whatever happens.
//! Without tinyproxy these tests fail: they are never skipped.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use http::{Method, StatusCode, Version};
use scim_proxy::lab::client::Answer;
use scim_proxy::lab::devcerts::DevPki;
use serde_json::json;
use tokio::net::TcpListener;

use crate::support::*;

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

const PROXY_VARS: [&str; 6] = [
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn egress_leaves_from_bind_ip_with_an_ip_upstream() {
    let p = Builder::new().bind_ip("127.0.0.7").start().await;
    let up = p.upstream(0);
    let created = p
        .send(
            Method::POST,
            "/SCIM/v2/Users",
            Some(OKTA),
            Some(&user("egress@x.y")),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED);
    for _ in 0..3 {
        assert_eq!(p.get("/SCIM/v2/Users", ENTRA).await.status, StatusCode::OK);
    }
    let seen = up.requests();
    assert_eq!(seen.len(), 4);
    for r in &seen {
        assert_eq!(
            r.peer.ip(),
            IpAddr::V4(Ipv4Addr::new(127, 0, 0, 7)),
            "{} {}",
            r.method,
            r.path_and_query
        );
    }
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn egress_leaves_from_bind_ip_with_an_upstream_by_name() {
    let p = Builder::new()
        .bind_ip("127.0.0.7")
        .h1_upstream()
        .route(|r| r.target(Target::EmbeddedByName(0)))
        .start()
        .await;
    let up = p.upstream(0);
    for _ in 0..2 {
        let a = p.get("/SCIM/v2/Groups", OKTA).await;
        assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
    }
    let seen = up.requests();
    assert_eq!(seen.len(), 2);
    for r in &seen {
        assert_eq!(r.peer.ip(), IpAddr::V4(Ipv4Addr::new(127, 0, 0, 7)));
        let host = format!("localhost:{}", up.addr().port());
        assert_eq!(header(r, "host"), Some(host.as_str()));
    }
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn egress_bind_ip_not_on_this_host_refuses_to_load() {
    let candidates = ["192.0.2.1", "198.51.100.77", "203.0.113.77"];
    let ip = candidates
        .iter()
        .find(|ip| !can_bind(ip.parse().unwrap()))
        .expect("one of the documentation addresses is not configured here");
    let prepared = Builder::new().bind_ip(ip).prepare().await;
    let problems = prepared
        .load()
        .err()
        .expect("a non-local bind_ip must not load");
    assert_eq!(problems.0.len(), 1, "{problems}");
    assert_eq!(problems.0[0].key, "egress.bind_ip");
    assert_eq!(problems.0[0].file, prepared.config_path);
    let line = problems.to_string();
    assert!(line.contains(ip), "{line}");
    assert!(line.contains("egress.bind_ip"), "{line}");
    prepared.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn egress_ipv6_bind_ip_with_an_ipv4_upstream_is_a_config_problem() {
    let prepared = Builder::new().bind_ip("::1").prepare().await;
    let problems = prepared
        .load()
        .err()
        .expect("an IPv6 bind_ip cannot reach an IPv4 upstream");
    assert!(
        problems
            .0
            .iter()
            .any(|p| p.key == "routes[0].upstream" && p.file == prepared.config_path),
        "{problems}"
    );
    if can_bind(IpAddr::V6(Ipv6Addr::LOCALHOST)) {
        assert_eq!(problems.0.len(), 1, "{problems}");
    } else {
        eprintln!(
            "::1 is not available here: only checked that routes[0].upstream is named ({problems})"
        );
    }
    prepared.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn egress_ipv6_bind_ip_with_an_ipv6_upstream() {
    if !can_bind(IpAddr::V6(Ipv6Addr::LOCALHOST)) {
        eprintln!("::1 is not available here: IPv6 egress not tested");
        return;
    }
    let p = Builder::new()
        .upstream_ip(IpAddr::V6(Ipv6Addr::LOCALHOST))
        .bind_ip("::1")
        .start()
        .await;
    let a = p.get("/SCIM/v2/Users", OKTA).await;
    assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
    let r = only_new(p.upstream(0), 0, "ipv6");
    assert_eq!(r.peer.ip(), IpAddr::V6(Ipv6Addr::LOCALHOST));
    p.stop().await;
}

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
            Some(&user_called("tunnel@example.com", "Egress", "Test")),
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
    let mut serve = ServeChild::spawn_env(&prepared.config_path, &[]);
    let addr = serve.serving_addr(STEP).await;
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
            Some(&user_called("x@y.z", "Egress", "Test")),
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
            Some(&user_called("acl@x.y", "Egress", "Test")),
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_environment_variables_are_ignored() {
    let prepared = Builder::new().prepare().await;
    let trap = Trap::start().await;
    let trap_url = format!("http://{}", trap.addr);
    let envs: Vec<(&str, &str)> = PROXY_VARS.iter().map(|k| (*k, trap_url.as_str())).collect();

    let mut serve = ServeChild::spawn_env(&prepared.config_path, &envs);
    let addr = serve.serving_addr(STEP).await;
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
