//! `[listen.acme]` against a real ACME CA (pebble, with pebble-challtestsrv as its DNS) on
//! loopback: the first certificate through tls-alpn-01 and through http-01, served to a client that
//! trusts only the CA's root; a restart that serves the stored certificate without an order; a due
//! renewal swapped in while a keep-alive connection stays open; and CAs that refuse (wrong EAB,
//! unreachable directory): a clear error, a 503 /readyz, no crash.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::StatusCode;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use scim_proxy::lab::devcerts::DevPki;

use crate::support::*;

const DOMAIN: &str = "scim.acme.test";
/// How long a first order against pebble may take on a loaded machine.
const ISSUE_LIMIT: Duration = Duration::from_secs(90);

enum Challenge {
    TlsAlpn,
    Http(u16),
}

/// The `[listen.acme]` table for `directory`, with `extra` lines.
fn acme_table(directory: &str, ca_file: &Path, challenge: &Challenge, extra: &str) -> String {
    let challenge = match challenge {
        Challenge::TlsAlpn => String::new(),
        Challenge::Http(port) => {
            format!("challenge = \"http-01\"\nhttp_addr = \"127.0.0.1:{port}\"\n")
        }
    };
    format!(
        "\n[listen.acme]\ndomains = [\"{DOMAIN}\"]\ncontact = \"mailto:idm@acme.test\"\ndirectory = \"{directory}\"\nstate_dir = \"acme-state\"\nca_file = \"{}\"\n{challenge}{extra}\n",
        ca_file.display()
    )
}

/// A config like the other tests' with `[listen.acme]` instead of `cert`/`key`, on `port`.
async fn prepare(port: u16, acme: &str) -> Prepared {
    let mut p = Builder::new().admin().prepare().await;
    p.edit_config(
        "addr = \"127.0.0.1:0\"\ncert = \"proxy.crt\"\nkey = \"proxy.key\"\n",
        &format!("addr = \"127.0.0.1:{port}\"\n{acme}"),
    );
    p
}

fn admin(p: &TestProxy) -> SocketAddr {
    p.running().admin_addr.expect("admin listener")
}

/// Waits for /readyz 200 (the certificate issued), failing with what readyz and pebble said.
async fn wait_issued(p: &TestProxy, pebble: &Pebble) {
    let deadline = Instant::now() + ISSUE_LIMIT;
    loop {
        let (status, body) = readyz(admin(p)).await;
        if status == 200 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no certificate within {ISSUE_LIMIT:?}: /readyz {status} {body}\n{}",
            pebble.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A client that trusts only `root_pem` (the CA's root) and sends SNI `DOMAIN`.
fn client_trusting(root_pem: &str) -> Arc<rustls::ClientConfig> {
    let mut c = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots(root_pem))
    .with_no_client_auth();
    c.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(c)
}

async fn connect(port: u16, config: Arc<rustls::ClientConfig>) -> std::io::Result<ClientTls> {
    tokio::time::timeout(STEP, async {
        let tcp = TcpStream::connect(("127.0.0.1", port)).await?;
        TlsConnector::from(config)
            .connect(ServerName::try_from(DOMAIN).unwrap(), tcp)
            .await
    })
    .await
    .map_err(|_| std::io::Error::other("TLS connect timed out"))?
}

fn leaf(tls: &ClientTls) -> CertificateDer<'static> {
    tls.get_ref().1.peer_certificates().expect("a certificate")[0]
        .clone()
        .into_owned()
}

/// One keep-alive request for the users list with Okta's token.
async fn list_users(
    tls: &mut ClientTls,
    port: u16,
) -> Result<scim_proxy::lab::client::Answer, String> {
    let request = format!(
        "GET /SCIM/v2/Users HTTP/1.1\r\nHost: {DOMAIN}:{port}\r\nAuthorization: Bearer {OKTA}\r\n\r\n"
    );
    tokio::io::AsyncWriteExt::write_all(tls, request.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    read_one(tls, STEP).await
}

/// A verified TLS connection and one request through it: the proxy serves the CA's certificate.
async fn assert_serves_trusted(port: u16, root_pem: &str) -> CertificateDer<'static> {
    let mut tls = connect(port, client_trusting(root_pem))
        .await
        .expect("a handshake verified against the CA's root only");
    let answer = list_users(&mut tls, port).await.expect("an answer");
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    let cert = leaf(&tls);
    let names = scim_proxy::tls::cert_names(&cert).unwrap();
    assert_eq!(names.dns, vec![DOMAIN.to_string()]);
    cert
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test]
async fn tls_alpn_01_gets_a_certificate_that_a_client_trusting_only_the_ca_accepts() {
    let port = unused_port().await;
    let pebble = Pebble::start(PebbleOptions::new(port, unused_port().await)).await;
    let acme = acme_table(&pebble.directory, &pebble.https_ca, &Challenge::TlsAlpn, "");
    let p = prepare(port, &acme).await.start().await;
    wait_issued(&p, &pebble).await;
    let root = pebble.root_pem().await;
    assert_serves_trusted(port, &root).await;
    let metrics = scrape(admin(&p)).await;
    assert_eq!(
        metrics.value("scim_proxy_acme_orders_total", &[("outcome", "issued")]),
        1.0
    );
    assert_eq!(
        metrics.value("scim_proxy_acme_orders_total", &[("outcome", "failed")]),
        0.0
    );
    let left = metrics.value(
        "scim_proxy_acme_certificate_expiry_seconds",
        &[("name", DOMAIN)],
    );
    assert!(left > 80.0 * 86_400.0 && left <= 90.0 * 86_400.0, "{left}");
    // The status page shows the certificate ACME holds, as the IdPs are served it.
    let status = status_json(admin(&p), None).await;
    let served = &status["certificate"];
    assert_eq!(served["state"], "ok", "{status:#}");
    let seconds_left = served["seconds_left"].as_f64().unwrap_or(0.0);
    assert!(
        (seconds_left - left).abs() < 600.0,
        "{seconds_left} vs {left}"
    );
    #[cfg(unix)]
    {
        let state = p.dir().join("acme-state");
        assert_eq!(mode(&state), 0o700);
        for f in ["account.json", "cert.pem", "key.pem"] {
            assert_eq!(mode(&state.join(f)), 0o600, "{f}");
        }
        assert!(!state.join("order.lock").exists(), "the lock is released");
    }
    // check --live: the directory answers; the held certificate's issuer, names and expiry.
    let run = check_live(p.config_path(), &[], &[]).await;
    assert_eq!(run.code, Some(0), "{}", run.all());
    assert_has(
        "check --live",
        &run.stdout,
        &["listen.acme: OK", "reachable: an RFC 8555 directory"],
    );
    let held = run
        .stdout
        .lines()
        .find(|l| l.trim_start().starts_with("certificate "))
        .unwrap_or_else(|| panic!("no certificate line:\n{}", run.all()));
    assert_has(
        "the certificate line",
        held,
        &["issuer CN=Pebble Intermediate CA", DOMAIN, "expires 20"],
    );
    p.stop().await;
}

#[tokio::test]
async fn http_01_gets_a_certificate_and_its_listener_answers_nothing_else() {
    let (port, http_port) = (unused_port().await, unused_port().await);
    let pebble = Pebble::start(PebbleOptions::new(port, http_port)).await;
    let acme = acme_table(
        &pebble.directory,
        &pebble.https_ca,
        &Challenge::Http(http_port),
        "",
    );
    let p = prepare(port, &acme).await.start().await;
    wait_issued(&p, &pebble).await;
    assert_serves_trusted(port, &pebble.root_pem().await).await;
    let http_addr = SocketAddr::from(([127, 0, 0, 1], http_port));
    for path in [
        "/SCIM/v2/Users",
        "/.well-known/acme-challenge/no-such-token",
        "/metrics",
    ] {
        let a = plain_get(http_addr, path).await.expect("http-01 listener");
        assert_eq!(a.status, StatusCode::NOT_FOUND, "{path}");
    }
    p.stop().await;
}

#[tokio::test]
async fn a_restart_serves_the_stored_certificate_without_a_new_order() {
    let port = unused_port().await;
    let mut pebble = Pebble::start(PebbleOptions::new(port, unused_port().await)).await;
    let acme = acme_table(&pebble.directory, &pebble.https_ca, &Challenge::TlsAlpn, "");
    let prepared = prepare(port, &acme).await;
    let config = prepared.config_path.clone();
    let mut p = prepared.start().await;
    wait_issued(&p, &pebble).await;
    let root = pebble.root_pem().await;
    let first = assert_serves_trusted(port, &root).await;
    // Stop the proxy, keep its directory, and take the CA away: any order would now fail.
    if let Some(running) = p.running.take() {
        running.stop().await;
    }
    pebble.stop();
    let snapshot = scim_proxy::state::read_config(&config)
        .and_then(|c| scim_proxy::state::build(c, None))
        .expect("config");
    let running = scim_proxy::start(snapshot, Some(config))
        .await
        .expect("restart");
    let admin = running.admin_addr.unwrap();
    // Ready at once: the stored certificate is served before any order could run.
    let (status, body) = readyz(admin).await;
    assert_eq!(status, 200, "{body}");
    let again = assert_serves_trusted(port, &root).await;
    assert_eq!(again, first, "the same certificate as before the restart");
    let metrics = scrape(admin).await;
    assert_eq!(
        metrics.value("scim_proxy_acme_orders_total", &[("outcome", "issued")]),
        0.0
    );
    assert_eq!(
        metrics.value("scim_proxy_acme_orders_total", &[("outcome", "failed")]),
        0.0
    );
    running.stop().await;
    p.stop().await;
}

#[tokio::test]
async fn a_due_renewal_swaps_the_certificate_while_a_keep_alive_connection_stays_open() {
    let port = unused_port().await;
    let mut options = PebbleOptions::new(port, unused_port().await);
    // renew_before longer than the lifetime: renewal falls due a third into it (10 s).
    options.validity = Duration::from_secs(30);
    let pebble = Pebble::start(options).await;
    let acme = acme_table(
        &pebble.directory,
        &pebble.https_ca,
        &Challenge::TlsAlpn,
        "renew_before = \"1h\"\n",
    );
    let p = prepare(port, &acme).await.start().await;
    wait_issued(&p, &pebble).await;
    let config = client_trusting(&pebble.root_pem().await);
    let mut kept = connect(port, config.clone()).await.expect("handshake");
    let first = leaf(&kept);
    assert_eq!(
        list_users(&mut kept, port).await.unwrap().status,
        StatusCode::OK
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    let renewed = loop {
        let tls = connect(port, config.clone())
            .await
            .expect("handshake during renewal");
        if leaf(&tls) != first {
            break leaf(&tls);
        }
        // Requests keep the connection from idling out while the renewal is awaited.
        assert_eq!(
            list_users(&mut kept, port).await.unwrap().status,
            StatusCode::OK
        );
        assert!(
            Instant::now() < deadline,
            "no renewal within 60 s\n{}",
            pebble.log()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_ne!(renewed, first);
    // The connection opened before the swap still serves, with the certificate it started with.
    assert_eq!(
        list_users(&mut kept, port).await.unwrap().status,
        StatusCode::OK
    );
    assert_eq!(leaf(&kept), first);
    let metrics = scrape(admin(&p)).await;
    assert!(metrics.value("scim_proxy_acme_orders_total", &[("outcome", "issued")]) >= 2.0);
    p.stop().await;
}

/// /readyz stays 503 naming `words`, IdP handshakes fail, and the process lives on.
async fn assert_refused_clearly(p: &TestProxy, port: u16, words: &[&str]) {
    let deadline = Instant::now() + ISSUE_LIMIT;
    let problem = loop {
        let (status, body) = readyz(admin(p)).await;
        assert_eq!(status, 503, "{body}");
        let problem = body["problems"][0].as_str().unwrap_or_default().to_string();
        if words.iter().all(|w| problem.contains(w)) {
            break problem;
        }
        assert!(
            Instant::now() < deadline,
            "/readyz never said {words:?}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(problem.contains("no valid certificate yet"), "{problem}");
    // No stand-in certificate: the handshake itself fails.
    let refusal = handshake_refusal(port).await;
    assert!(refusal.contains("AccessDenied"), "{refusal}");
    let a = plain_get(admin(p), "/healthz").await.expect("healthz");
    assert_eq!(a.status, StatusCode::OK);
}

/// How a handshake that accepts any certificate fails (panics if one is presented).
async fn handshake_refusal(port: u16) -> String {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(RecordingVerifier {
        seen: std::sync::Mutex::new(None),
        provider: provider.clone(),
    });
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(verifier.clone())
        .with_no_client_auth();
    let result = connect(port, Arc::new(config)).await;
    assert!(
        verifier.seen.lock().unwrap().is_none(),
        "a certificate was presented"
    );
    match result {
        Ok(_) => panic!("a handshake succeeded without a certificate"),
        Err(e) => e.to_string(),
    }
}

#[tokio::test]
async fn a_wrong_eab_key_is_a_clear_error_a_503_and_no_crash() {
    let port = unused_port().await;
    let mut options = PebbleOptions::new(port, unused_port().await);
    options.eab = Some((
        "kid-1".into(),
        "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W".into(),
    ));
    let pebble = Pebble::start(options).await;
    let mut prepared = prepare(port, "").await;
    // The right key id, another key.
    write_private(
        prepared.dir.path(),
        "eab.key",
        "b3RoZXIta2V5LW90aGVyLWtleS1vdGhlci1rZXk\n",
    );
    let acme = acme_table(
        &pebble.directory,
        &pebble.https_ca,
        &Challenge::TlsAlpn,
        "eab_kid = \"kid-1\"\neab_hmac_key_file = \"eab.key\"\n",
    );
    prepared.edit_config(
        &format!("addr = \"127.0.0.1:{port}\"\n"),
        &format!("addr = \"127.0.0.1:{port}\"\n{acme}"),
    );
    let p = prepared.start().await;
    assert_refused_clearly(
        &p,
        port,
        &[
            "External Account Binding",
            "kid-1",
            "urn:ietf:params:acme:error:unauthorized",
        ],
    )
    .await;
    let metrics = scrape(admin(&p)).await;
    assert_eq!(
        metrics.value("scim_proxy_acme_orders_total", &[("outcome", "issued")]),
        0.0
    );
    p.stop().await;
}

#[tokio::test]
async fn an_unreachable_directory_is_a_clear_error_a_503_and_no_crash() {
    let (port, nothing) = (unused_port().await, unused_port().await);
    let dir = tempfile::tempdir().unwrap();
    let ca = write_file(
        dir.path(),
        "ca.pem",
        DevPki::new("unused").unwrap().ca_pem(),
    );
    let directory = format!("https://127.0.0.1:{nothing}/dir");
    let acme = acme_table(&directory, &ca, &Challenge::TlsAlpn, "");
    let p = prepare(port, &acme).await.start().await;
    assert_refused_clearly(&p, port, &[&directory, "Connection refused"]).await;
    let run = check_live(p.config_path(), &[], &[]).await;
    assert_eq!(run.code, Some(1), "{}", run.all());
    assert_has(
        "check --live",
        &run.stdout,
        &[
            "listen.acme: FAILED",
            &format!("directory   {directory} FAILED"),
            "Connection refused",
            "certificate none held",
        ],
    );
    p.stop().await;
}

#[tokio::test]
async fn check_refuses_cert_and_key_together_with_listen_acme() {
    let mut p = Builder::new().prepare().await;
    p.edit_config(
        "key = \"proxy.key\"\n",
        "key = \"proxy.key\"\n\n[listen.acme]\ndomains = [\"scim.example.com\"]\ncontact = \"mailto:idm@example.com\"\nstate_dir = \"acme\"\n",
    );
    let path = p.config_path.to_str().unwrap().to_string();
    let out = run_cli(&["check", "--config", &path], b"", &[], CHECK_LIMIT);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_has(
        "check",
        &stderr,
        &[
            "listen.acme: cert/key and [listen.acme] are mutually exclusive",
            "1 problem found",
        ],
    );
    p.shutdown().await;
}

#[tokio::test]
async fn check_names_each_bad_acme_key() {
    let mut p = Builder::new().prepare().await;
    p.edit_config(
        "addr = \"127.0.0.1:0\"\ncert = \"proxy.crt\"\nkey = \"proxy.key\"\n",
        "addr = \"127.0.0.1:0\"\n\n[listen.acme]\ndomains = [\"*.example.com\", \"10.0.0.1\"]\ncontact = \"idm@example.com\"\ndirectory = \"http://ca.example/dir\"\nstate_dir = \"acme\"\nchallenge = \"http-01\"\nrenew_before = \"soon\"\neab_kid = \"kid\"\nca_file = \"missing.pem\"\n",
    );
    let path = p.config_path.to_str().unwrap().to_string();
    let out = run_cli(&["check", "--config", &path], b"", &[], CHECK_LIMIT);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    for (key, words) in [
        ("listen.acme.domains[0]", "dns-01"),
        ("listen.acme.domains[1]", "IP address"),
        ("listen.acme.contact", "mailto:"),
        ("listen.acme.directory", "https://"),
        (
            "listen.acme.http_addr",
            "required with challenge = \"http-01\"",
        ),
        ("listen.acme.renew_before", "not a duration"),
        ("listen.acme.eab_hmac_key_file", "required with eab_kid"),
    ] {
        assert!(
            stderr
                .lines()
                .any(|l| l.contains(&format!("{key}: ")) && l.contains(words)),
            "{key}: {words}:\n{stderr}"
        );
    }
    p.shutdown().await;
}

#[tokio::test]
async fn replicas_sharing_state_dir_answer_each_others_challenges_and_load_each_others_certificates()
 {
    // Replica B listens where the CA validates; replica A elsewhere, so A's orders succeed only
    // through the challenge answers B finds in the shared state_dir.
    let (port_b, port_a) = (unused_port().await, unused_port().await);
    let mut options = PebbleOptions::new(port_b, unused_port().await);
    options.validity = Duration::from_secs(30);
    let pebble = Pebble::start(options).await;
    // B renews 15 s before expiry, A at a third of the lifetime (10 s): A orders first, B loads it.
    let acme = acme_table(
        &pebble.directory,
        &pebble.https_ca,
        &Challenge::TlsAlpn,
        "renew_before = \"15s\"\n",
    );
    let b = prepare(port_b, &acme).await.start().await;
    wait_issued(&b, &pebble).await;
    let config = client_trusting(&pebble.root_pem().await);
    let first = leaf(&connect(port_b, config.clone()).await.expect("B serves"));
    let replica = b
        .prepared
        .toml
        .replace(
            &format!("127.0.0.1:{port_b}"),
            &format!("127.0.0.1:{port_a}"),
        )
        .replace("renew_before = \"15s\"", "renew_before = \"1h\"")
        .replace("traffic = \"traffic.log\"", "traffic = \"traffic-a.log\"");
    let config_a = write_file(b.dir(), "replica-a.toml", &replica);
    let snapshot = scim_proxy::state::read_config(&config_a)
        .and_then(|c| scim_proxy::state::build(c, None))
        .expect("replica A's config");
    let a = scim_proxy::start(snapshot, Some(config_a))
        .await
        .expect("start A");
    let admin_a = a.admin_addr.unwrap();
    // A starts with the stored certificate, without an order of its own.
    assert_eq!(readyz(admin_a).await.0, 200);
    assert_eq!(leaf(&connect(port_a, config.clone()).await.unwrap()), first);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let now_b = leaf(&connect(port_b, config.clone()).await.expect("B serves"));
        if now_b != first {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "B never changed certificate\n{}",
            pebble.log()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let (metrics_a, metrics_b) = (scrape(admin_a).await, scrape(admin(&b)).await);
    let orders =
        |m: &Exposition, outcome| m.value("scim_proxy_acme_orders_total", &[("outcome", outcome)]);
    assert_eq!(
        orders(&metrics_b, "issued"),
        1.0,
        "B loaded A's certificate instead of ordering"
    );
    assert!(orders(&metrics_a, "issued") >= 1.0);
    assert_eq!(
        orders(&metrics_a, "failed"),
        0.0,
        "A's validations reached B and B answered them"
    );
    assert_eq!(orders(&metrics_b, "failed"), 0.0);
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn a_reload_that_adds_a_name_keeps_serving_and_orders_a_certificate_for_both() {
    let port = unused_port().await;
    let pebble = Pebble::start(PebbleOptions::new(port, unused_port().await)).await;
    let acme = acme_table(&pebble.directory, &pebble.https_ca, &Challenge::TlsAlpn, "");
    let mut p = prepare(port, &acme).await.start().await;
    wait_issued(&p, &pebble).await;
    let config = client_trusting(&pebble.root_pem().await);
    let first = leaf(&connect(port, config.clone()).await.unwrap());
    let second = "second.acme.test";
    p.prepared.edit_config(
        &format!("domains = [\"{DOMAIN}\"]"),
        &format!("domains = [\"{DOMAIN}\", \"{second}\"]"),
    );
    p.running().reload().expect("reload");
    // Meanwhile the first certificate still serves and /readyz stays 200.
    assert_eq!(readyz(admin(&p)).await.0, 200);
    let deadline = Instant::now() + ISSUE_LIMIT;
    let names = loop {
        let tls = connect(port, config.clone()).await.expect("still serving");
        let names = scim_proxy::tls::cert_names(&leaf(&tls)).unwrap().dns;
        if leaf(&tls) != first {
            break names;
        }
        assert!(
            Instant::now() < deadline,
            "no new certificate\n{}",
            pebble.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut names = names;
    names.sort();
    assert_eq!(names, vec![DOMAIN.to_string(), second.to_string()]);
    assert_eq!(readyz(admin(&p)).await.0, 200);
    p.stop().await;
}

#[tokio::test]
async fn a_renewal_while_the_ca_is_down_keeps_serving_until_expiry_then_readyz_says_why() {
    let port = unused_port().await;
    let mut options = PebbleOptions::new(port, unused_port().await);
    options.validity = Duration::from_secs(30);
    let mut pebble = Pebble::start(options).await;
    let acme = acme_table(
        &pebble.directory,
        &pebble.https_ca,
        &Challenge::TlsAlpn,
        "renew_before = \"1h\"\n",
    );
    let p = prepare(port, &acme).await.start().await;
    wait_issued(&p, &pebble).await;
    let root = pebble.root_pem().await;
    let first = assert_serves_trusted(port, &root).await;
    let not_after = scim_proxy::tls::cert_info(&first).unwrap().not_after;
    pebble.stop();
    // Renewal falls due 10 s into the certificate's life and fails: the CA is gone.
    let deadline = Instant::now() + Duration::from_secs(40);
    while scrape(admin(&p))
        .await
        .get("scim_proxy_acme_orders_total", &[("outcome", "failed")])
        != Some(1.0)
    {
        assert!(Instant::now() < deadline, "no failed renewal");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(readyz(admin(&p)).await.0, 200, "still valid: still ready");
    assert_eq!(assert_serves_trusted(port, &root).await, first);
    // Past its expiry: 503, naming the expiry and the failing renewal.
    let wait = not_after
        .duration_since(std::time::SystemTime::now())
        .unwrap_or_default();
    tokio::time::sleep(wait + Duration::from_secs(2)).await;
    let (status, body) = readyz(admin(&p)).await;
    assert_eq!(status, 503, "{body}");
    assert_has(
        "/readyz",
        &body.to_string(),
        &[
            "expired at",
            "renewal has not succeeded",
            "Connection refused",
        ],
    );
    let a = plain_get(admin(&p), "/healthz").await.expect("healthz");
    assert_eq!(a.status, StatusCode::OK);
    p.stop().await;
}
