//! Inbound IdP tokens and the v2 token swap: 401s, the token sent upstream, `netskope_api_token`
//! mode, and what the log says of upstream 401s and expiring tokens.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{Method, StatusCode};
use scim_proxy::lab::upstream::Override;
use serde_json::Value;

use crate::support::*;

const AUTH_BURST: &str = "the upstream keeps refusing the REST API v2 token";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_credentials_are_401_with_www_authenticate_and_never_forwarded() {
    let p = Builder::new().start().await;
    let basic = format!(
        "Basic {}",
        // base64("okta:<token>") is irrelevant: any Basic is refused.
        "b2t0YTpva3RhLW9sZC1zY2ltLXRva2VuLTViMWU="
    );
    let cases: Vec<(&str, Vec<String>)> = vec![
        ("missing", vec![]),
        ("basic", vec![basic]),
        ("unknown bearer", vec![bearer("not-a-configured-token")]),
        ("bearer with the v2 token", vec![bearer(p.v2(0))]),
        ("empty bearer", vec!["Bearer".into()]),
        ("no scheme", vec![OKTA.into()]),
        ("case-changed token", vec![bearer(&OKTA.to_uppercase())]),
        ("two headers", vec![bearer(OKTA), bearer(OKTA)]),
        ("two different headers", vec![bearer(OKTA), bearer(ENTRA)]),
    ];
    for (what, values) in cases {
        for method in [Method::GET, Method::POST, Method::DELETE] {
            let mut req = p.req(method.clone(), "/SCIM/v2/Users");
            for v in &values {
                req = req.header("authorization", v.as_str());
            }
            let a = p.call(req, Bytes::new()).await;
            assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{what} {method}");
            p.assert_error(&a, 401, &[]);
            let www = a.header("www-authenticate").unwrap_or_default();
            assert!(
                www.to_ascii_lowercase().starts_with("bearer"),
                "{what}: WWW-Authenticate {www:?}"
            );
        }
    }
    // Two Authorization headers written raw, too.
    let a = p
        .raw(&raw_request(
            "GET",
            "/SCIM/v2/Users",
            "localhost",
            &[
                ("Authorization", &bearer(OKTA)),
                ("Authorization", &bearer(OKTA)),
            ],
        ))
        .await;
    p.assert_error(&a, 401, &[]);
    assert_eq!(p.upstream_total(), 0, "nothing may be forwarded");

    // The scheme is case-insensitive.
    for v in [format!("bearer {OKTA}"), format!("BEARER {ENTRA}")] {
        let a = p
            .call(
                p.req(Method::GET, "/SCIM/v2/Users")
                    .header("authorization", v.as_str()),
                Bytes::new(),
            )
            .await;
        assert_eq!(a.status, StatusCode::OK, "{v}");
    }
    assert_eq!(p.upstream_total(), 2);
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_swap_and_header_hygiene_on_the_way_up() {
    let p = Builder::new().h1_upstream().start().await;
    let up = p.upstream(0);
    up.push_override(Override {
        status: StatusCode::CREATED,
        headers: vec![("content-type".into(), "application/scim+json".into())],
        body: Bytes::from_static(b"{}"),
        delay: Duration::ZERO,
    });
    let body = user("swap@example.com").to_string();
    let len = body.len().to_string();
    let auth = bearer(OKTA);
    let mut req = raw_request(
        "POST",
        "/SCIM/v2/Users",
        "addon-a.example:9443",
        &[
            ("Authorization", &auth),
            ("Cookie", "session=idp-cookie"),
            ("Netskope-Api-Token", "forged-by-the-client"),
            ("Proxy-Authorization", "Basic Zm9vOmJhcg=="),
            ("Connection", "X-Hop-Named, keep-alive"),
            ("X-Hop-Named", "must-not-pass"),
            ("Keep-Alive", "timeout=5"),
            ("Proxy-Connection", "keep-alive"),
            ("TE", "trailers"),
            ("Upgrade", "h2c"),
            ("X-Custom", "kept-value"),
            ("Accept", "application/scim+json"),
            ("Content-Type", "application/scim+json; charset=utf-8"),
            ("If-Match", "W/\"1\""),
            ("User-Agent", "Okta SCIM Client 1.0.0"),
            ("X-Request-Id", "idp-req-42"),
            ("Content-Length", &len),
        ],
    );
    req.extend_from_slice(body.as_bytes());
    let a = p.raw(&req).await;
    assert_eq!(a.status, StatusCode::CREATED, "{:?}", a.body);
    assert_eq!(a.header("x-request-id"), Some("idp-req-42"));

    let r = only_new(up, 0, "swap");
    assert_eq!(r.method, Method::POST);
    assert_eq!(r.body, body.as_bytes());
    let v2 = bearer(p.v2(0));
    assert_eq!(header(&r, "authorization"), Some(v2.as_str()));
    assert_eq!(r.headers.get_all("authorization").iter().count(), 1);
    for (k, v) in &r.headers {
        let v = String::from_utf8_lossy(v.as_bytes());
        assert!(
            !v.contains(OKTA),
            "the IdP token reached the upstream in {k}"
        );
    }
    for gone in [
        "cookie",
        "netskope-api-token",
        "proxy-authorization",
        "connection",
        "x-hop-named",
        "keep-alive",
        "proxy-connection",
        "te",
        "upgrade",
    ] {
        assert!(
            r.headers.get(gone).is_none(),
            "{gone} reached the upstream: {:?}",
            r.headers.get(gone)
        );
    }
    for (k, v) in [
        ("x-custom", "kept-value"),
        ("accept", "application/scim+json"),
        ("content-type", "application/scim+json; charset=utf-8"),
        ("if-match", "W/\"1\""),
        ("user-agent", "Okta SCIM Client 1.0.0"),
        ("x-request-id", "idp-req-42"),
    ] {
        assert_eq!(header(&r, k), Some(v), "{k}");
    }
    let authority = up.addr().to_string();
    assert_eq!(header(&r, "host"), Some(authority.as_str()));
    assert_eq!(r.headers.get_all("host").iter().count(), 1);
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn netskope_api_token_mode_sends_no_authorization() {
    let p = Builder::new()
        .h1_upstream()
        .route(|r| r.auth("netskope-api-token"))
        .start()
        .await;
    let up = p.upstream(0);
    let a = p
        .call(
            p.req(Method::GET, "/SCIM/v2/Users")
                .header("authorization", bearer(OKTA))
                .header("netskope-api-token", "forged-by-the-client")
                .header("cookie", "a=b"),
            Bytes::new(),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
    let r = only_new(up, 0, "netskope-api-token");
    assert!(r.authenticated);
    assert!(r.headers.get("authorization").is_none());
    assert!(r.headers.get("cookie").is_none());
    let sent: Vec<_> = r.headers.get_all("netskope-api-token").iter().collect();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].to_str().unwrap(), p.v2(0));
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_upstream_401s_is_explained_once_in_the_log() {
    let prepared = Builder::new().prepare().await;
    let served = Served::start(&prepared.config_path, &prepared.ca_pem).await;
    let up = &prepared.upstreams[0];
    for _ in 0..3 {
        up.push_override(canned(
            401,
            scim_error_body(401, "", "Invalid or expired API token"),
            Duration::ZERO,
        ));
    }
    for i in 0..3 {
        let a = served
            .get("/SCIM/v2/Users", OKTA, &format!("burst-{i}"), None)
            .await;
        assert_eq!(
            a.status,
            StatusCode::UNAUTHORIZED,
            "passed through to the IdP"
        );
    }
    let hits = served
        .wait_events("the 401 burst explained", 1, |e| {
            message(e).contains(AUTH_BURST)
        })
        .await;
    let e = &hits[0];
    assert_eq!(e["level"], "ERROR", "{e}");
    assert_eq!(e["route"], "main");
    assert_eq!(e["status"], 401);
    assert_eq!(e["count"], 3);
    let text = message(e);
    for cause in [
        "expired or was revoked",
        "SCIM Users/Groups",
        "egress IP is not on the tenant's IP allowlist",
    ] {
        assert!(text.contains(cause), "{text:?} lacks {cause:?}");
    }
    let r = record(prepared.dir.path(), "burst-2").await;
    assert_eq!(r["upstream_status"], 401);
    assert_eq!(r["detail"], "Invalid or expired API token");

    // More refusals (403 too) within the quiet period: not repeated.
    for _ in 0..3 {
        up.push_override(canned(
            403,
            scim_error_body(403, "", "Forbidden"),
            Duration::ZERO,
        ));
    }
    for i in 3..6 {
        let a = served
            .get("/SCIM/v2/Users", OKTA, &format!("burst-{i}"), None)
            .await;
        assert_eq!(a.status, StatusCode::FORBIDDEN);
    }
    record(prepared.dir.path(), "burst-5").await;
    let (_, stderr) = served.stop().await;
    assert_eq!(stderr.matches(AUTH_BURST).count(), 1, "{stderr}");
    for t in [&prepared.v2_tokens[0], &OKTA.to_owned()] {
        assert!(!stderr.contains(t.as_str()), "a token on stderr");
    }
    prepared.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_token_logs_an_error_on_every_request_and_a_soon_expiring_one_warns() {
    let now = SystemTime::now();
    let mut later = route_expiring("later", now + 100 * DAY).hosts(&["addon-b.example"]);
    later.extra.push_str("token_warn_days = 14\n");
    let prepared = Builder::new()
        .admin()
        .routes(vec![
            route_expiring("expired", now - 2 * DAY),
            route_expiring("soon", now + 3 * DAY).hosts(&["addon-a.example"]),
            later,
        ])
        .prepare()
        .await;
    let served = Served::start(&prepared.config_path, &prepared.ca_pem).await;
    let admin = served.admin.expect("admin address in the serving line");
    let (status, body) = readyz(admin).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["warnings"].as_array().map(Vec::len), Some(2), "{body}");

    for i in 0..2 {
        let a = served
            .get("/SCIM/v2/Users", OKTA, &format!("exp-{i}"), None)
            .await;
        assert_eq!(a.status, StatusCode::OK, "still forwarded");
        upstream_saw(&prepared.upstreams[0], &format!("exp-{i}"));
    }
    for (i, host) in ["addon-a.example", "addon-b.example"].iter().enumerate() {
        let a = served
            .get("/SCIM/v2/Users", OKTA, &format!("ok-{i}"), Some(host))
            .await;
        assert_eq!(a.status, StatusCode::OK);
    }
    let past = |e: &Value| message(e).contains("past token_expires");
    let errors = served.wait_events("an error per request", 2, past).await;
    for e in &errors {
        assert_eq!(e["level"], "ERROR", "{e}");
        assert_eq!(e["route"], "expired");
        assert!(message(e).contains("expired.token"), "{e}");
    }
    let warnings = served
        .wait_events("the soon-expiring warning", 1, |e| {
            message(e).contains("expires soon")
        })
        .await;
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert_eq!(warnings[0]["level"], "WARN");
    assert_eq!(warnings[0]["route"], "soon");
    assert_eq!(warnings[0]["days_left"], 2, "{}", warnings[0]);

    let m = scrape(admin).await;
    assert!(m.value("scim_proxy_token_expiry_seconds", &[("route", "expired")]) < 0.0);
    let soon = m.value("scim_proxy_token_expiry_seconds", &[("route", "soon")]);
    assert!(
        (2.9 * 86_400.0..=3.0 * 86_400.0 + 1.0).contains(&soon),
        "{soon}"
    );
    let (_, stderr) = served.stop().await;
    assert_eq!(stderr.matches("past token_expires").count(), 2, "{stderr}");
    assert_eq!(stderr.matches("expires soon").count(), 1, "{stderr}");
    prepared.shutdown().await;
}
