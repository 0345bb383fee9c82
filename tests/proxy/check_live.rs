//! `check --live`: the real binary run against the embedded upstream, for success and for every
//! failure class an admin can meet before a cutover (TLS, 401/403, firewalls, DNS, forward proxies).

use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use http::{Method, StatusCode, Version};
use scim_proxy::lab::upstream::{Override, RecordedRequest, Upstream};
use serde_json::json;

use crate::support::*;

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
