//! Integration tests of the core proxy (issue 2) over real sockets on loopback, with a run-time test CA.
//!
//! Every test starts its own proxy and upstream(s) from a config written to a temp dir and stops them.
//! Where the proxy answers itself, the test checks the SCIM Error body and that the upstream got nothing.

mod support;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, StatusCode, Version};
use scim_proxy::lab::client::ScimClient;
use scim_proxy::lab::devcerts;
use scim_proxy::lab::upstream::Override;
use serde_json::json;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn user(name: &str) -> serde_json::Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": name,
        "active": true,
        "name": {"givenName": "Test", "familyName": "User"},
        "emails": [{"primary": true, "type": "work", "value": name}]
    })
}

/// A raw HTTP/1.1 request with `Connection: close`.
fn raw_request(method: &str, target: &str, host: &str, headers: &[(&str, &str)]) -> Vec<u8> {
    let mut r = format!("{method} {target} HTTP/1.1\r\nHost: {host}\r\n");
    for (k, v) in headers {
        r.push_str(&format!("{k}: {v}\r\n"));
    }
    r.push_str("Connection: close\r\n\r\n");
    r.into_bytes()
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// The single request an upstream recorded since `before`, asserting there is exactly one.
fn only_new(
    up: &scim_proxy::lab::upstream::Upstream,
    before: usize,
    what: &str,
) -> scim_proxy::lab::upstream::RecordedRequest {
    let seen = up.requests();
    assert_eq!(
        seen.len(),
        before + 1,
        "{what}: the upstream should have received exactly one request, got {:?}",
        seen.get(before..)
            .unwrap_or_default()
            .iter()
            .map(|r| format!("{} {}", r.method, r.path_and_query))
            .collect::<Vec<_>>()
    );
    seen[before].clone()
}

fn header<'a>(r: &'a scim_proxy::lab::upstream::RecordedRequest, name: &str) -> Option<&'a str> {
    r.headers.get(name).and_then(|v| v.to_str().ok())
}

// ---- 1. route forms and route selection ---------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefix_forms_map_onto_the_upstream_base() {
    let p = Builder::new().route(|r| r.tenant("1234")).start().await;
    let up = p.upstream(0);
    // (client path, upstream path, status the embedded upstream gives)
    let cases = [
        ("/SCIM/v2/Users", "/api/v2/scim/Users", 200),
        ("/scim/V2/Users", "/api/v2/scim/Users", 200),
        ("/Scim/v2/Groups", "/api/v2/scim/Groups", 200),
        ("/SCIM/v2/", "/api/v2/scim/", 404),
        ("/SCIM/v2", "/api/v2/scim", 404),
        ("/SCIM/V2/1234/Users", "/api/v2/scim/Users", 200),
        ("/scim/v2/1234/Groups", "/api/v2/scim/Groups", 200),
        ("/SCIM/V2/1234", "/api/v2/scim", 404),
        ("/SCIM/V2/1234/", "/api/v2/scim/", 404),
    ];
    for (path, want, status) in cases {
        let before = up.requests().len();
        let a = p.get(path, OKTA).await;
        let r = only_new(up, before, path);
        assert_eq!(r.path_and_query, want, "{path}");
        assert_eq!(r.method, Method::GET, "{path}");
        assert!(
            r.authenticated,
            "{path}: the upstream must get the v2 token"
        );
        assert_eq!(a.status.as_u16(), status, "{path}: {:?}", a.body);
        if status == 404 {
            // The upstream's own 404 passes through: it is not the proxy's refusal.
            let detail = a.json()["detail"].as_str().unwrap_or_default().to_string();
            assert!(
                !detail.contains("not a SCIM endpoint of this proxy"),
                "{path}: {detail}"
            );
        }
    }
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_and_ids_are_forwarded_byte_for_byte() {
    let p = Builder::new().start().await;
    let up = p.upstream(0);
    let created = p
        .send(
            Method::POST,
            "/SCIM/v2/Users",
            Some(OKTA),
            Some(&user("a@b.c")),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
    let id = created.json()["id"].as_str().unwrap().to_string();

    // Entra's '+' and Okta's '%20' forms find the same user; unknown parameters ride along.
    for q in [
        "filter=userName+eq+%22a%40b.c%22",
        "filter=userName%20eq%20%22a%40b.c%22",
        "aadOptscim062020&filter=userName+eq+%22a%40b.c%22",
        "filter=userName+eq+%22a%40b.c%22&aadOptscim062020=&startIndex=1&count=10",
    ] {
        let path = format!("/SCIM/v2/Users?{q}");
        let before = up.requests().len();
        let a = p.get(&path, ENTRA).await;
        let r = only_new(up, before, &path);
        assert_eq!(r.path_and_query, format!("/api/v2/scim/Users?{q}"));
        assert_eq!(a.status, StatusCode::OK, "{path}");
        assert_eq!(a.json()["totalResults"], json!(1), "{path}: {:?}", a.body);
        assert_eq!(a.json()["Resources"][0]["id"], json!(id), "{path}");
    }

    // Ids, URNs and escapes in the path and query are not decoded or re-encoded.
    for tail in [
        format!("/Users/{id}"),
        "/Users/a%20b%3Ac%25d".to_string(),
        "/Schemas/urn:ietf:params:scim:schemas:core:2.0:User".to_string(),
        "/Users/urn%3Aietf%3Aparams%3Ascim".to_string(),
        "/Users?filter=externalId+eq+%22a%2Fb%5Cc%22".to_string(),
        "/Users?attributes=userName,emails&x=%7B%7D".to_string(),
    ] {
        let path = format!("/SCIM/v2{tail}");
        let before = up.requests().len();
        let _ = p.get(&path, OKTA).await;
        let r = only_new(up, before, &path);
        assert_eq!(r.path_and_query, format!("/api/v2/scim{tail}"), "{path}");
    }
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_select_routes_and_each_upstream_sees_only_its_own() {
    let p = Builder::new()
        .upstreams(3)
        .h1_upstream()
        .routes(vec![
            RouteSpec::new("a")
                .upstream(0)
                .hosts(&["addon-a.example"])
                .clients(&[("okta", OKTA)]),
            RouteSpec::new("b")
                .upstream(1)
                .hosts(&["Addon-B.example", "b2.example"])
                .clients(&[("entra", ENTRA)]),
            RouteSpec::new("any").upstream(2).clients(&[("okta", OKTA)]),
        ])
        .start()
        .await;
    let ua = p.upstream(0);
    let ub = p.upstream(1);
    let uany = p.upstream(2);

    // (Host sent, token, upstream index, route index)
    let cases = [
        ("addon-a.example", OKTA, 0, 0),
        ("ADDON-A.Example:8443", OKTA, 0, 0),
        ("addon-b.example", ENTRA, 1, 1),
        ("addon-B.EXAMPLE:443", ENTRA, 1, 1),
        ("b2.example", ENTRA, 1, 1),
        ("localhost", OKTA, 2, 2),
        ("127.0.0.1:9", OKTA, 2, 2),
    ];
    for (host, token, ui, ri) in cases {
        let counts: Vec<usize> = (0..3).map(|i| p.upstream(i).requests().len()).collect();
        let a = p
            .call(
                p.req(Method::GET, "/SCIM/v2/Users")
                    .header("host", host)
                    .header("authorization", bearer(token)),
                Bytes::new(),
            )
            .await;
        assert_eq!(a.status, StatusCode::OK, "Host {host}: {:?}", a.body);
        for (i, before) in counts.iter().enumerate() {
            let want = before + usize::from(i == ui);
            assert_eq!(
                p.upstream(i).requests().len(),
                want,
                "Host {host}: upstream {i}"
            );
        }
        let r = p.upstream(ui).requests().pop().unwrap();
        assert_eq!(header(&r, "authorization"), Some(bearer(p.v2(ri)).as_str()));
        // The upstream host comes from the route, never from the client's Host.
        let authority = p.upstream(ui).addr().to_string();
        assert_eq!(header(&r, "host"), Some(authority.as_str()), "Host {host}");
    }

    // A token of route b is not valid on route a: 401, nothing forwarded anywhere.
    let total = p.upstream_total();
    let a = p
        .call(
            p.req(Method::GET, "/SCIM/v2/Users")
                .header("host", "addon-a.example")
                .header("authorization", bearer(ENTRA)),
            Bytes::new(),
        )
        .await;
    p.assert_error(&a, 401, &[]);
    assert_eq!(p.upstream_total(), total);
    for u in [ua, ub, uany] {
        assert!(u.requests().iter().all(|r| r.authenticated));
    }
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_the_proxy_does_not_serve_is_421_and_a_served_one_without_route_404() {
    let p = Builder::new()
        .routes(vec![RouteSpec::new("a").hosts(&["addon-a.example"])])
        .start()
        .await;
    // Covered by the certificate, but no route: 404. Covered by nothing: 421.
    for (host, status) in [
        ("other.example", 421),
        ("localhost", 404),
        ("addon-a.example.evil", 421),
        ("127.0.0.1", 404),
    ] {
        let a = p
            .call(
                p.req(Method::GET, "/SCIM/v2/Users")
                    .header("host", host)
                    .header("authorization", bearer(OKTA)),
                Bytes::new(),
            )
            .await;
        p.assert_error(&a, status, &[]);
    }
    // Raw, without any Host header at all (HTTP/1.0).
    let a = p
        .raw(
            format!("GET /SCIM/v2/Users HTTP/1.0\r\nAuthorization: Bearer {OKTA}\r\n\r\n")
                .as_bytes(),
        )
        .await;
    p.assert_error(&a, 404, &[]);
    assert_eq!(p.upstream_total(), 0, "nothing may be forwarded");
    // The right host works.
    let a = p
        .call(
            p.req(Method::GET, "/SCIM/v2/Users")
                .header("host", "addon-a.example")
                .header("authorization", bearer(OKTA)),
            Bytes::new(),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(p.upstream_total(), 1);
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absolute_form_target_is_served_by_its_path_and_its_authority_only_selects_a_route() {
    let p = Builder::new()
        .upstreams(2)
        .h1_upstream()
        .routes(vec![
            RouteSpec::new("x").upstream(0).hosts(&["addon-x.example"]),
            RouteSpec::new("any").upstream(1),
        ])
        .start()
        .await;
    let auth = bearer(OKTA);
    let ux = p.upstream(0);
    let uany = p.upstream(1);

    // The authority picks route x although Host names something else.
    let before = ux.requests().len();
    let a = p
        .raw(&raw_request(
            "GET",
            "https://addon-x.example/SCIM/v2/Users?count=1",
            "localhost",
            &[("Authorization", &auth)],
        ))
        .await;
    assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
    let r = only_new(ux, before, "absolute-form");
    assert_eq!(r.path_and_query, "/api/v2/scim/Users?count=1");
    assert_eq!(header(&r, "host"), Some(ux.addr().to_string().as_str()));
    assert_eq!(uany.requests().len(), 0);

    // An authority naming the upstream itself (or anything else) cannot steer the request there:
    // it only falls to the catch-all route, which forwards to its own configured upstream.
    let target = format!("https://{}/SCIM/v2/Users", ux.addr());
    let before_x = ux.requests().len();
    let a = p
        .raw(&raw_request(
            "GET",
            &target,
            "addon-x.example",
            &[("Authorization", &auth)],
        ))
        .await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(ux.requests().len(), before_x);
    let r = only_new(uany, 0, "absolute-form to the catch-all");
    assert_eq!(r.path_and_query, "/api/v2/scim/Users");
    assert_eq!(header(&r, "host"), Some(uany.addr().to_string().as_str()));

    // The path still decides: the upstream's own path is not served.
    let total = p.upstream_total();
    let a = p
        .raw(&raw_request(
            "GET",
            "https://addon-x.example/api/v2/scim/Users",
            "addon-x.example",
            &[("Authorization", &auth)],
        ))
        .await;
    p.assert_error(&a, 404, &[]);
    assert_eq!(p.upstream_total(), total);
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absolute_form_with_an_authority_the_proxy_does_not_serve_is_421() {
    let p = Builder::new()
        .routes(vec![RouteSpec::new("a").hosts(&["addon-a.example"])])
        .start()
        .await;
    let auth = bearer(OKTA);
    let a = p
        .raw(&raw_request(
            "GET",
            "https://evil.example/SCIM/v2/Users",
            "addon-a.example",
            &[("Authorization", &auth)],
        ))
        .await;
    p.assert_error(&a, 421, &["does not serve"]);
    assert!(!String::from_utf8_lossy(&a.body).contains("evil"));
    assert_eq!(p.upstream_total(), 0);
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_authority_selects_the_route() {
    let p = Builder::new()
        .upstreams(2)
        .routes(vec![
            RouteSpec::new("local").upstream(0).hosts(&["localhost"]),
            RouteSpec::new("a").upstream(1).hosts(&["addon-a.example"]),
        ])
        .start()
        .await;
    let h2 = ScimClient::new(
        &p.base,
        devcerts::client_config(p.ca_pem(), &[]).unwrap(),
        true,
    );
    let a = h2
        .send(Method::GET, "/SCIM/v2/Users", Some(OKTA), None)
        .await
        .unwrap();
    assert_eq!(a.version, Version::HTTP_2);
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(p.upstream(0).requests().len(), 1);
    assert_eq!(p.upstream(1).requests().len(), 0);
    // The same over h2 with a route only for another name: 404, nothing forwarded.
    let q = Builder::new()
        .routes(vec![RouteSpec::new("a").hosts(&["addon-a.example"])])
        .start()
        .await;
    let h2 = ScimClient::new(
        &q.base,
        devcerts::client_config(q.ca_pem(), &[]).unwrap(),
        true,
    );
    let a = h2
        .send(Method::GET, "/SCIM/v2/Users", Some(OKTA), None)
        .await
        .unwrap();
    q.assert_error(&a, 404, &[]);
    assert_eq!(q.upstream_total(), 0);
    p.stop().await;
    q.stop().await;
}

// ---- 2. refusals, never forwarded ---------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_paths_are_404_and_never_forwarded() {
    let p = Builder::new().route(|r| r.tenant("1234")).start().await;
    for path in [
        "/",
        "/api/v2/scim/Users",
        "/SCIM/v20/Users",
        "/SCIM/v2x/Users",
        "/SCIM",
        "/SCIM/",
        "/scim2/Users",
        "/xSCIM/v2/Users",
        "/SCIM/v1/Users",
        "/healthz",
        "/readyz",
        "/SCIM/v2;x/Users",
    ] {
        let a = p.get(path, OKTA).await;
        p.assert_error(&a, 404, &[]);
    }
    // Also with other methods.
    let a = p
        .send(
            Method::POST,
            "/api/v2/scim/Users",
            Some(OKTA),
            Some(&user("x@y.z")),
        )
        .await;
    p.assert_error(&a, 404, &[]);
    assert_eq!(p.upstream_total(), 0, "nothing may be forwarded");
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsafe_targets_are_400_and_never_forwarded() {
    let p = Builder::new().route(|r| r.tenant("1234")).start().await;
    let auth = bearer(OKTA);
    // Written raw: clients would normalise these before sending.
    for target in [
        "/SCIM/v2/../Users",
        "/SCIM/v2/Users/..",
        "/SCIM/v2/../../api/v2/scim/Users",
        "/SCIM/v2/./Users",
        "/SCIM/v2/%2e%2e/admin",
        "/SCIM/v2/%2E%2E/Users",
        "/SCIM/v2/.%2E/Users",
        "/SCIM/v2/%2e./Users",
        "/SCIM/v2/%2e/Users",
        "/SCIM/v2/..;/Users",
        "/SCIM/V2/1234/../Users",
        "/SCIM%2Fv2/Users",
        "/SCIM%2fv2/Users",
        "/SCIM/v2/Users%2F1",
        "/SCIM/v2\\Users",
        "/SCIM\\v2/Users",
        "/SCIM%5Cv2/Users",
        "/SCIM/v2/Users/%5c",
        "/SCIM/v2/Users/%00",
        "/SCIM/v2/Users%00/x",
        "/SCIM/v2/Users/%zz",
        "/SCIM/v2/Users/%2",
        // Refused forms spelt in escapes, and escapes that are not UTF-8 (overlong '.').
        "/SCIM/v2/%2e%2e%3b/Users",
        "/SCIM/v2/%2E%2E%3Bjsessionid=x/Users",
        "/SCIM/v2/..%3b/Users",
        "/SCIM/v2/%C0%AE%C0%AE/Users",
        "/SCIM/v2/Users/%C0%AE",
        "/SCIM/v2/Users/%FF%FE",
    ] {
        let a = p
            .raw(&raw_request(
                "GET",
                target,
                "localhost",
                &[("Authorization", &auth)],
            ))
            .await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{target}: {:?}", a.body);
        p.assert_error(&a, 400, &[]);
    }
    // A POST with a body is refused the same way.
    let body = user("dot@seg.ment").to_string();
    let len = body.len().to_string();
    let mut req = raw_request(
        "POST",
        "/SCIM/v2/%2e%2e/Users",
        "localhost",
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/scim+json"),
            ("Content-Length", &len),
        ],
    );
    req.extend_from_slice(body.as_bytes());
    let a = p.raw(&req).await;
    p.assert_error(&a, 400, &[]);
    // Targets that are not origin- or absolute-form: CONNECT (authority-form) and OPTIONS *.
    let upstream = p.upstream(0).addr().to_string();
    for (method, target) in [("CONNECT", upstream.as_str()), ("OPTIONS", "*")] {
        let a = p
            .raw(&raw_request(
                method,
                target,
                &upstream,
                &[("Authorization", &auth)],
            ))
            .await;
        p.assert_error(&a, 400, &[]);
    }
    // Too long: 414, not forwarded.
    let long = format!("/SCIM/v2/Users/{}", "a".repeat(9000));
    let a = p.get(&long, OKTA).await;
    p.assert_error(&a, 414, &[]);
    assert_eq!(p.upstream_total(), 0, "nothing may be forwarded");
    p.stop().await;
}

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
async fn invalid_host_header_is_400_and_not_forwarded() {
    let p = Builder::new().start().await;
    let auth = bearer(OKTA);
    for host in [
        "a b",
        "a/b",
        "[::1",
        "a:b:c",
        "localhost:0",
        "localhost:65536",
        "localhost:99999",
        "[::1]:0",
    ] {
        let a = p
            .raw(&raw_request(
                "GET",
                "/SCIM/v2/Users",
                host,
                &[("Authorization", &auth)],
            ))
            .await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "Host {host:?}");
        p.assert_error(&a, 400, &[]);
    }
    // The same port rule for an absolute-form target.
    let a = p
        .raw(&raw_request(
            "GET",
            "https://localhost:0/SCIM/v2/Users",
            "localhost",
            &[("Authorization", &auth)],
        ))
        .await;
    p.assert_error(&a, 400, &["port"]);
    assert_eq!(p.upstream_total(), 0);
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http11_requests_need_exactly_one_valid_host_header() {
    let p = Builder::new()
        .routes(vec![
            RouteSpec::new("a").hosts(&["addon-a.example"]),
            RouteSpec::new("any"),
        ])
        .start()
        .await;
    let auth = bearer(OKTA);
    let two = raw_request(
        "GET",
        "/SCIM/v2/Users",
        "addon-a.example",
        &[("Host", "other.example"), ("Authorization", &auth)],
    );
    let a = p.raw(&two).await;
    p.assert_error(&a, 400, &["host"]);
    let none = format!(
        "GET /SCIM/v2/Users HTTP/1.1\r\nAuthorization: {auth}\r\nConnection: close\r\n\r\n"
    );
    let a = p.raw(none.as_bytes()).await;
    p.assert_error(&a, 400, &["host"]);
    let userinfo = raw_request(
        "GET",
        "/SCIM/v2/Users",
        "user@addon-a.example",
        &[("Authorization", &auth)],
    );
    let a = p.raw(&userinfo).await;
    p.assert_error(&a, 400, &["host"]);
    assert_eq!(p.upstream_total(), 0);
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflicting_framing_is_refused_and_never_forwarded() {
    let p = Builder::new().start().await;
    let auth = bearer(OKTA);
    for framing in [
        "Content-Length: 2\r\nContent-Length: 3\r\n",
        "Content-Length: 2, 3\r\n",
        "Transfer-Encoding: chunked, identity\r\n",
    ] {
        let req = format!(
            "POST /SCIM/v2/Users HTTP/1.1\r\nHost: localhost\r\nAuthorization: {auth}\r\n{framing}Connection: close\r\n\r\n2\r\n{{}}\r\n0\r\n\r\n"
        );
        let a = p.raw(req.as_bytes()).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{framing:?}");
    }
    assert_eq!(p.upstream_total(), 0);
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_transfer_coding_is_refused() {
    let p = Builder::new().start().await;
    let auth = bearer(OKTA);
    let req = format!(
        "POST /SCIM/v2/Users HTTP/1.1\r\nHost: localhost\r\nAuthorization: {auth}\r\nTransfer-Encoding: gzip, chunked\r\nConnection: close\r\n\r\n2\r\n{{}}\r\n0\r\n\r\n"
    );
    let a = p.raw(req.as_bytes()).await;
    assert_eq!(p.upstream_total(), 0, "forwarded");
    assert!(
        a.status == StatusCode::NOT_IMPLEMENTED || a.status == StatusCode::BAD_REQUEST,
        "{}",
        a.status
    );
    p.stop().await;
}

// ---- 3. token swap and headers ------------------------------------------------------------------

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
async fn request_id_is_generated_when_absent_and_sent_both_ways() {
    let p = Builder::new().start().await;
    let up = p.upstream(0);
    let mut ids = Vec::new();
    for i in 0..2 {
        let a = p.get("/SCIM/v2/Users", OKTA).await;
        assert_eq!(a.status, StatusCode::OK);
        let id = a.header("x-request-id").expect("x-request-id").to_string();
        assert!(id.len() >= 16, "{id}");
        let r = only_new(up, i, "request id");
        assert_eq!(header(&r, "x-request-id"), Some(id.as_str()));
        ids.push(id);
    }
    assert_ne!(ids[0], ids[1], "each request gets its own id");
    // Also on the proxy's own refusals.
    let a = p
        .call(
            p.req(Method::GET, "/SCIM/v2/Users")
                .header("x-request-id", "refused-7"),
            Bytes::new(),
        )
        .await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert_eq!(a.header("x-request-id"), Some("refused-7"));
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hop_by_hop_response_headers_are_dropped_end_to_end_kept() {
    let p = Builder::new().h1_upstream().start().await;
    p.upstream(0).push_override(Override {
        status: StatusCode::OK,
        headers: vec![
            ("content-type".into(), "application/scim+json".into()),
            ("connection".into(), "x-up-hop".into()),
            ("x-up-hop".into(), "drop-me".into()),
            ("keep-alive".into(), "timeout=5".into()),
            ("etag".into(), "W/\"3\"".into()),
            ("x-custom-up".into(), "keep-me".into()),
        ],
        body: Bytes::from_static(b"{\"ok\":true}"),
        delay: Duration::ZERO,
    });
    let a = p.get("/SCIM/v2/Users", OKTA).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(&a.body[..], b"{\"ok\":true}");
    assert!(a.headers.get("x-up-hop").is_none(), "{:?}", a.headers);
    assert!(a.headers.get("keep-alive").is_none(), "{:?}", a.headers);
    assert_eq!(a.header("etag"), Some("W/\"3\""));
    assert_eq!(a.header("x-custom-up"), Some("keep-me"));
    p.stop().await;
}

// ---- 4. egress ----------------------------------------------------------------------------------

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

// ---- 5. streaming -------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_20_mib_request_body_arrives_intact() {
    let p = Builder::new().limit("max_body", "\"32MiB\"").start().await;
    let up = p.upstream(0);
    up.push_override(Override {
        status: StatusCode::OK,
        headers: vec![("content-type".into(), "application/scim+json".into())],
        body: Bytes::from_static(b"{}"),
        delay: Duration::ZERO,
    });
    let body: Vec<u8> = (0..20 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let sum = sha256_hex(&body);
    let a = p
        .call(
            p.req(Method::POST, "/SCIM/v2/Users")
                .header("authorization", bearer(OKTA))
                .header("content-type", "application/octet-stream"),
            body,
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
    let r = only_new(up, 0, "20 MiB");
    assert_eq!(r.body.len(), 20 * 1024 * 1024);
    assert_eq!(sha256_hex(&r.body), sum);
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_10_mib_response_body_arrives_intact() {
    let p = Builder::new().start().await;
    let body: Vec<u8> = (0..10 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(40_503) >> 7) as u8)
        .collect();
    let sum = sha256_hex(&body);
    p.upstream(0).push_override(Override {
        status: StatusCode::OK,
        headers: vec![("content-type".into(), "application/scim+json".into())],
        body: Bytes::from(body),
        delay: Duration::ZERO,
    });
    let a = p.get("/SCIM/v2/Users", OKTA).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.body.len(), 10 * 1024 * 1024);
    assert_eq!(sha256_hex(&a.body), sum);
    p.stop().await;
}

/// Proves streaming in both directions: the upstream sees the first part of a chunked request body
/// before the client has sent the rest, and the client sees the first part of the response before
/// the upstream has sent the rest. A proxy that buffers either whole hangs here (bounded) and fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_are_streamed_not_buffered_whole() {
    let mut prepared = Builder::new().placeholder_upstream().prepare().await;
    let raw = RawServer::start(RawBehaviour::StreamProbe, &prepared.upstream_cert).await;
    prepared.point_at(raw.addr);
    let p = prepared.start().await;

    let config = client_tls(
        p.ca_pem(),
        &[&rustls::version::TLS13, &rustls::version::TLS12],
        &[b"http/1.1"],
    );
    let mut tls = tls_connect(p.addr, config).await.expect("connect");
    let head = format!(
        "POST /SCIM/v2/Users HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {OKTA}\r\nContent-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    let first = vec![b'a'; 64 * 1024];
    tls.write_all(head.as_bytes()).await.unwrap();
    tls.write_all(format!("{:x}\r\n", first.len()).as_bytes())
        .await
        .unwrap();
    tls.write_all(&first).await.unwrap();
    tls.write_all(b"\r\n").await.unwrap();
    tls.flush().await.unwrap();

    let mut progress = raw.body_progress.clone();
    tokio::time::timeout(STEP, progress.wait_for(|n| *n > 0))
        .await
        .expect("the upstream saw no body bytes while the client was still sending: request body buffered")
        .unwrap();
    assert!(
        raw.requests().is_empty(),
        "the request cannot be complete yet"
    );

    let last = b"the-end";
    tls.write_all(format!("{:x}\r\n", last.len()).as_bytes())
        .await
        .unwrap();
    tls.write_all(last).await.unwrap();
    tls.write_all(b"\r\n0\r\n\r\n").await.unwrap();
    tls.flush().await.unwrap();

    // Read until the first part of the response shows, while the upstream holds the second back.
    let mut got = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    let deadline = Instant::now() + STEP;
    while !got.windows(FIRST_PART.len()).any(|w| w == FIRST_PART) {
        let left = deadline.saturating_duration_since(Instant::now());
        let n = tokio::time::timeout(left, tls.read(&mut buf))
            .await
            .expect("the first part of the response did not arrive: response buffered")
            .expect("read");
        assert!(
            n > 0,
            "EOF before the first part: {:?}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
    }
    assert!(
        !got.windows(SECOND_PART.len()).any(|w| w == SECOND_PART),
        "the second part cannot have been sent yet"
    );
    raw.release_response();
    got.extend(read_to_end_lenient(&mut tls, STEP).await.expect("rest"));
    let a = parse_response(&got).expect("response");
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.body, [FIRST_PART, SECOND_PART].concat());

    let reqs = raw.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].body, [&first[..], last].concat());
    assert_eq!(reqs[0].target, "/api/v2/scim/Users");
    p.stop().await;
    raw.stop().await;
}

// ---- 6. failures --------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_listening_upstream_is_502() {
    let port = unused_port().await;
    let p = Builder::new()
        .placeholder_upstream()
        .route(|r| r.target(Target::Url(format!("https://127.0.0.1:{port}/api/v2/scim"))))
        .start()
        .await;
    for method in [Method::GET, Method::POST] {
        let started = Instant::now();
        let body = user("a@b.c");
        let a = p
            .send(method.clone(), "/SCIM/v2/Users", Some(OKTA), Some(&body))
            .await;
        p.assert_error(&a, 502, &["connect"]);
        assert!(started.elapsed() < Duration::from_secs(15), "{method}");
    }
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untrusted_upstream_certificate_is_502_and_nothing_is_sent() {
    let p = Builder::new().no_ca_file().start().await;
    let a = p.get("/SCIM/v2/Users", OKTA).await;
    p.assert_error(&a, 502, &["certificate"]);
    assert_eq!(
        p.upstream(0).requests().len(),
        0,
        "no request may be sent over an unverified connection"
    );
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untrusted_upstream_certificate_is_502_mentioning_tls() {
    let p = Builder::new().no_ca_file().start().await;
    let a = p.get("/SCIM/v2/Users", OKTA).await;
    p.assert_error(&a, 502, &["tls"]);
    assert_eq!(
        p.upstream(0).requests().len(),
        0,
        "no request may be sent over an unverified connection"
    );
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_certificate_for_another_name_or_expired_is_502_and_nothing_is_sent() {
    let mut prepared = Builder::new().placeholder_upstream().prepare().await;
    let wrong_name = prepared
        .pki
        .issue(&["other.example"], &[])
        .expect("certificate");
    let expired = prepared
        .pki
        .issue_expired(&["localhost"])
        .expect("certificate");
    let mut ups = Vec::new();
    for cert in [&wrong_name, &expired] {
        ups.push(
            scim_proxy::lab::upstream::Upstream::start(
                scim_proxy::lab::upstream::UpstreamOptions {
                    bind: "127.0.0.1:0".parse().unwrap(),
                    tls: Some(devcerts::server_config(cert).unwrap()),
                    base_path: "/api/v2/scim".into(),
                    tokens: prepared.v2_tokens.clone(),
                },
            )
            .await
            .unwrap(),
        );
    }
    // Route 0 to the wrong-name upstream by IP, route 1 to the expired one by name.
    prepared.point_at(ups[0].addr());
    prepared.edit_config(
        "[[routes.clients]]\nname = \"entra\"",
        &format!(
            "[[routes.clients]]\nname = \"entra\"\ntoken_sha256 = \"{}\"\n\n[[routes]]\nname = \"expired\"\nupstream = \"https://localhost:{}/api/v2/scim\"\ntoken_file = \"main.token\"\nhosts = [\"addon-b.example\"]\n\n[[routes.clients]]\nname = \"entra\"",
            sha256_hex(ENTRA.as_bytes()),
            ups[1].addr().port()
        ),
    );
    let p = prepared.start().await;
    let a = p.get("/SCIM/v2/Users", OKTA).await;
    p.assert_error(&a, 502, &[]);
    let a = p
        .call(
            p.req(Method::GET, "/SCIM/v2/Users")
                .header("host", "addon-b.example")
                .header("authorization", bearer(ENTRA)),
            Bytes::new(),
        )
        .await;
    p.assert_error(&a, 502, &[]);
    let detail = a.json()["detail"]
        .as_str()
        .unwrap_or_default()
        .to_lowercase();
    assert!(detail.contains("expired"), "{detail}");
    for u in ups {
        assert_eq!(
            u.requests().len(),
            0,
            "a request went over an unverified connection"
        );
        u.shutdown().await;
    }
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_that_does_not_answer_in_time_is_504_and_a_post_is_not_retried() {
    let p = Builder::new()
        .limit("upstream_timeout", "\"1s\"")
        .start()
        .await;
    let up = p.upstream(0);
    for _ in 0..3 {
        up.push_override(Override {
            status: StatusCode::CREATED,
            headers: vec![],
            body: Bytes::from_static(b"{}"),
            delay: Duration::from_secs(5),
        });
    }
    let started = Instant::now();
    let a = p
        .send(
            Method::POST,
            "/SCIM/v2/Users",
            Some(OKTA),
            Some(&user("slow@x.y")),
        )
        .await;
    let took = started.elapsed();
    p.assert_error(&a, 504, &[]);
    assert!(took < Duration::from_secs(4), "took {took:?}");
    // The POST reached the upstream once and was not sent again.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let seen = up.requests();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].method, Method::POST);
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_that_accepts_but_never_speaks_tls_is_504_quickly() {
    let mut prepared = Builder::new()
        .placeholder_upstream()
        .limit("upstream_timeout", "\"1s\"")
        .prepare()
        .await;
    let silent = RawServer::start(RawBehaviour::Silent, &prepared.upstream_cert).await;
    prepared.point_at(silent.addr);
    let p = prepared.start().await;
    let started = Instant::now();
    let a = p.get("/SCIM/v2/Users", OKTA).await;
    let took = started.elapsed();
    p.assert_error(&a, 504, &[]);
    assert!(took < Duration::from_secs(4), "took {took:?}");
    assert!(silent.connections.load(std::sync::atomic::Ordering::SeqCst) >= 1);
    p.stop().await;
    silent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_closing_after_reading_a_write_is_502_and_it_is_not_retried() {
    let mut prepared = Builder::new().placeholder_upstream().prepare().await;
    let raw = RawServer::start(RawBehaviour::CloseUnlessGet, &prepared.upstream_cert).await;
    prepared.point_at(raw.addr);
    let p = prepared.start().await;

    // POST on a fresh connection.
    let a = p
        .send(
            Method::POST,
            "/SCIM/v2/Users",
            Some(OKTA),
            Some(&user("one@x.y")),
        )
        .await;
    p.assert_error(&a, 502, &[]);
    // POST, PATCH and PUT on a pooled connection that just served a GET.
    let patch = json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "replace", "path": "active", "value": false}]
    });
    let writes = [
        (Method::POST, "/SCIM/v2/Users".to_string(), user("two@x.y")),
        (Method::PATCH, "/SCIM/v2/Users/u-1".to_string(), patch),
        (
            Method::PUT,
            "/SCIM/v2/Users/u-1".to_string(),
            user("three@x.y"),
        ),
    ];
    for (method, path, body) in &writes {
        let a = p.get("/SCIM/v2/Users", OKTA).await;
        assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
        let a = p.send(method.clone(), path, Some(OKTA), Some(body)).await;
        p.assert_error(&a, 502, &[]);
    }

    tokio::time::sleep(Duration::from_millis(1000)).await;
    let reqs = raw.requests();
    let summary: Vec<String> = reqs
        .iter()
        .map(|r| format!("{} {}", r.method, r.target))
        .collect();
    let count = |m: &str| reqs.iter().filter(|r| r.method == m).count();
    assert_eq!(
        count("POST"),
        2,
        "each write reaches the upstream once: {summary:?}"
    );
    assert_eq!(count("PATCH"), 1, "{summary:?}");
    assert_eq!(count("PUT"), 1, "{summary:?}");
    assert_eq!(count("GET"), 3, "{summary:?}");
    let posts: Vec<_> = reqs.iter().filter(|r| r.method == "POST").collect();
    assert!(String::from_utf8_lossy(&posts[0].body).contains("one@x.y"));
    assert!(String::from_utf8_lossy(&posts[1].body).contains("two@x.y"));
    for r in &reqs {
        assert!(!r.head.contains(OKTA), "the IdP token reached the upstream");
    }
    p.stop().await;
    raw.stop().await;
}

// ---- 7. pass-through ----------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_read_delete_pass_through_with_location_rewritten() {
    let p = Builder::new().route(|r| r.tenant("1234")).start().await;
    let up = p.upstream(0);

    let a = p
        .send(
            Method::POST,
            "/SCIM/v2/Users",
            Some(OKTA),
            Some(&user("loc@x.y")),
        )
        .await;
    assert_eq!(a.status, StatusCode::CREATED, "{:?}", a.body);
    let id = a.json()["id"].as_str().unwrap().to_string();
    assert_eq!(
        a.header("location"),
        Some(format!("{}/SCIM/v2/Users/{id}", p.base).as_str())
    );

    let a = p
        .send(
            Method::POST,
            "/SCIM/V2/1234/Users",
            Some(ENTRA),
            Some(&user("loc2@x.y")),
        )
        .await;
    assert_eq!(a.status, StatusCode::CREATED);
    let id2 = a.json()["id"].as_str().unwrap().to_string();
    assert_eq!(
        a.header("location"),
        Some(format!("{}/SCIM/V2/1234/Users/{id2}", p.base).as_str())
    );

    // The same user again: the upstream's 409 passes through.
    let a = p
        .send(
            Method::POST,
            "/SCIM/v2/Users",
            Some(OKTA),
            Some(&user("loc@x.y")),
        )
        .await;
    assert_eq!(a.status, StatusCode::CONFLICT);
    assert_eq!(a.json()["status"], json!("409"));

    // PATCH and PUT keep their method and body.
    let patch = json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "Replace", "path": "active", "value": "False"}]
    });
    let a = p
        .send(
            Method::PATCH,
            &format!("/SCIM/v2/Users/{id}"),
            Some(ENTRA),
            Some(&patch),
        )
        .await;
    assert!(a.status.is_success(), "{:?}", a.body);
    let r = up.requests().pop().unwrap();
    assert_eq!(r.method, Method::PATCH);
    assert_eq!(r.body, patch.to_string().as_bytes());
    let mut replaced = user("loc@x.y");
    replaced["displayName"] = json!("Replaced");
    let a = p
        .send(
            Method::PUT,
            &format!("/SCIM/v2/Users/{id}"),
            Some(OKTA),
            Some(&replaced),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
    assert_eq!(a.json()["displayName"], json!("Replaced"));
    let r = up.requests().pop().unwrap();
    assert_eq!(r.method, Method::PUT);
    assert_eq!(r.path_and_query, format!("/api/v2/scim/Users/{id}"));

    // 204 stays 204 with no body.
    for (path, token) in [
        (format!("/SCIM/v2/Users/{id}"), OKTA),
        (format!("/SCIM/V2/1234/Users/{id2}"), ENTRA),
    ] {
        let a = p.send(Method::DELETE, &path, Some(token), None).await;
        assert_eq!(a.status, StatusCode::NO_CONTENT, "{path}");
        assert!(a.body.is_empty());
        let a = p.get(&path, token).await;
        assert_eq!(a.status, StatusCode::NOT_FOUND, "{path}");
    }
    assert_eq!(up.requests().len(), 9);
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canned_statuses_headers_and_bodies_pass_through_unchanged() {
    let p = Builder::new().route(|r| r.tenant("1234")).start().await;
    let up = p.upstream(0);
    let up_base = format!("https://{}/api/v2/scim", up.addr());
    let conflict = br#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:Error"],"status":"409","scimType":"uniqueness","detail":"User already exists in the database: a@b.c"}"#;
    let cases: Vec<(Override, &str, &str)> = vec![
        (
            Override {
                status: StatusCode::CONFLICT,
                headers: vec![("content-type".into(), "application/json".into())],
                body: Bytes::from_static(conflict),
                delay: Duration::ZERO,
            },
            "POST",
            "/SCIM/v2/Users",
        ),
        (
            Override {
                status: StatusCode::TOO_MANY_REQUESTS,
                headers: vec![
                    ("retry-after".into(), "7".into()),
                    ("ratelimit-remaining".into(), "0".into()),
                    ("ratelimit-reset".into(), "7".into()),
                    ("ratelimit-limit".into(), "4".into()),
                ],
                body: Bytes::from_static(b"{\"status\":\"429\",\"detail\":\"slow down\"}"),
                delay: Duration::ZERO,
            },
            "GET",
            "/SCIM/v2/Users",
        ),
        (
            Override {
                status: StatusCode::SERVICE_UNAVAILABLE,
                headers: vec![("retry-after".into(), "120".into())],
                body: Bytes::from_static(b"maintenance"),
                delay: Duration::ZERO,
            },
            "GET",
            "/SCIM/v2/Groups",
        ),
        (
            Override {
                status: StatusCode::NO_CONTENT,
                headers: vec![("etag".into(), "W/\"9\"".into())],
                body: Bytes::new(),
                delay: Duration::ZERO,
            },
            "PATCH",
            "/SCIM/v2/Users/abc",
        ),
        (
            Override {
                status: StatusCode::NOT_FOUND,
                headers: vec![("content-type".into(), "application/json".into())],
                body: Bytes::from_static(b"{\"detail\":\"no such user\"}"),
                delay: Duration::ZERO,
            },
            "GET",
            "/SCIM/v2/Users/nope",
        ),
    ];
    for (o, method, path) in cases {
        let expect = o.clone();
        up.push_override(o);
        let method: Method = method.parse().unwrap();
        let a = p
            .call(
                p.req(method.clone(), path)
                    .header("authorization", bearer(OKTA)),
                if method == Method::GET {
                    Bytes::new()
                } else {
                    Bytes::from_static(b"{}")
                },
            )
            .await;
        assert_eq!(a.status, expect.status, "{method} {path}");
        assert_eq!(a.body, expect.body, "{method} {path}: body changed");
        for (k, v) in &expect.headers {
            assert_eq!(a.header(k), Some(v.as_str()), "{method} {path}: {k}");
        }
    }

    // Location and Content-Location under the upstream base come back under the client's base.
    let cases = [
        (
            "/SCIM/v2/Users",
            format!("{up_base}/Users/r1"),
            format!("{}/SCIM/v2/Users/r1", p.base),
        ),
        (
            "/SCIM/V2/1234/Users",
            format!("{up_base}/Users/r2"),
            format!("{}/SCIM/V2/1234/Users/r2", p.base),
        ),
        (
            "/scim/v2/Users",
            "/api/v2/scim/Users/r3".to_string(),
            "/scim/v2/Users/r3".to_string(),
        ),
        (
            "/SCIM/v2/Users",
            "https://elsewhere.example/api/v2/scim/Users/r4".to_string(),
            "https://elsewhere.example/api/v2/scim/Users/r4".to_string(),
        ),
    ];
    for (path, upstream_loc, want) in cases {
        up.push_override(Override {
            status: StatusCode::CREATED,
            headers: vec![
                ("location".into(), upstream_loc.clone()),
                ("content-location".into(), upstream_loc.clone()),
            ],
            body: Bytes::from_static(b"{}"),
            delay: Duration::ZERO,
        });
        let a = p
            .send(Method::POST, path, Some(OKTA), Some(&user("l@x.y")))
            .await;
        assert_eq!(a.status, StatusCode::CREATED);
        assert_eq!(a.header("location"), Some(want.as_str()), "{upstream_loc}");
        assert_eq!(
            a.header("content-location"),
            Some(want.as_str()),
            "{upstream_loc}"
        );
    }
    assert_eq!(up.requests().len(), 9);
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_echoing_the_v2_token_does_not_leak_it() {
    let p = Builder::new().start().await;
    let v2 = p.v2(0).to_string();
    p.upstream(0).push_override(Override {
        status: StatusCode::OK,
        headers: vec![
            ("x-debug-authorization".into(), format!("Bearer {v2}")),
            ("x-echo".into(), v2.clone()),
            ("x-other".into(), "fine".into()),
        ],
        body: Bytes::from_static(b"{}"),
        delay: Duration::ZERO,
    });
    let a = p.get("/SCIM/v2/Users", OKTA).await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(a.headers.get("x-debug-authorization").is_none());
    assert!(a.headers.get("x-echo").is_none());
    assert_eq!(a.header("x-other"), Some("fine"));
    assert_no_secret(&a, std::slice::from_ref(&v2));
    // Nor in a body (an upstream echoing the request, e.g. on TRACE or in a debug error).
    p.upstream(0).push_override(Override {
        status: StatusCode::BAD_REQUEST,
        headers: vec![("content-type".into(), "application/json".into())],
        body: Bytes::from(format!(
            "{{\"detail\":\"bad request, Authorization: Bearer {v2}\"}}"
        )),
        delay: Duration::ZERO,
    });
    let a = p.get("/SCIM/v2/Users", OKTA).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert!(String::from_utf8_lossy(&a.body).contains("bad request"));
    assert_no_secret(&a, &[v2]);
    p.stop().await;
}

// ---- 8. inbound TLS and connections -------------------------------------------------------------

async fn tls_version_roundtrip(version: &'static rustls::SupportedProtocolVersion) {
    let p = Builder::new().start().await;
    let config = client_tls(p.ca_pem(), &[version], &[b"http/1.1"]);
    let mut tls = tls_connect(p.addr, config.clone())
        .await
        .expect("handshake");
    let (_, conn) = tls.get_ref();
    assert_eq!(conn.protocol_version(), Some(version.version));
    assert_eq!(conn.alpn_protocol(), Some(&b"http/1.1"[..]));
    let suite = format!("{:?}", conn.negotiated_cipher_suite().unwrap().suite());
    if version.version == rustls::ProtocolVersion::TLSv1_2 {
        // What Entra requires: ECDHE key exchange with AES-GCM.
        assert!(suite.contains("ECDHE") && suite.contains("GCM"), "{suite}");
    }
    let auth = bearer(OKTA);
    let a = exchange(
        &mut tls,
        &raw_request(
            "GET",
            "/SCIM/v2/Users",
            "localhost",
            &[("Authorization", &auth)],
        ),
    )
    .await
    .expect("exchange");
    assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
    // And through the HTTP client, limited the same way.
    let client = ScimClient::new(&p.base, config, false);
    let a = client
        .send(Method::GET, "/SCIM/v2/Groups", Some(ENTRA), None)
        .await
        .expect("request");
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(p.upstream(0).requests().len(), 2);
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbound_tls12_only_client_works() {
    tls_version_roundtrip(&rustls::version::TLS12).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbound_tls13_only_client_works() {
    tls_version_roundtrip(&rustls::version::TLS13).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbound_http2_by_alpn_works() {
    let p = Builder::new().start().await;
    // ALPN picks h2 when offered.
    let config = client_tls(
        p.ca_pem(),
        &[&rustls::version::TLS13, &rustls::version::TLS12],
        &[b"h2", b"http/1.1"],
    );
    let tls = tls_connect(p.addr, config).await.expect("handshake");
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    drop(tls);

    let h2 = ScimClient::new(
        &p.base,
        devcerts::client_config(p.ca_pem(), &[]).unwrap(),
        true,
    );
    let a = h2
        .send(
            Method::POST,
            "/SCIM/v2/Users",
            Some(OKTA),
            Some(&user("h2@x.y")),
        )
        .await
        .expect("h2 request");
    assert_eq!(a.version, Version::HTTP_2);
    assert_eq!(a.status, StatusCode::CREATED, "{:?}", a.body);
    let id = a.json()["id"].as_str().unwrap().to_string();
    assert_eq!(
        a.header("location"),
        Some(format!("{}/SCIM/v2/Users/{id}", p.base).as_str())
    );
    let a = h2
        .send(
            Method::GET,
            &format!("/SCIM/v2/Users/{id}"),
            Some(OKTA),
            None,
        )
        .await
        .expect("h2 request");
    assert_eq!(a.version, Version::HTTP_2);
    assert_eq!(a.status, StatusCode::OK);
    // Refusals over h2 too.
    let a = h2
        .send(Method::GET, "/SCIM/v2/Users", None, None)
        .await
        .expect("h2 request");
    p.assert_error(&a, 401, &[]);
    assert_eq!(p.upstream(0).requests().len(), 2);
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_on_the_tls_port_gets_no_http_answer() {
    let p = Builder::new().start().await;
    for _ in 0..2 {
        let mut tcp = tokio::net::TcpStream::connect(p.addr).await.unwrap();
        let req = format!(
            "GET /SCIM/v2/Users HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {OKTA}\r\n\r\n"
        );
        tcp.write_all(req.as_bytes()).await.unwrap();
        let got = read_to_end_lenient(&mut tcp, Duration::from_secs(15))
            .await
            .unwrap_or_default();
        assert!(
            !got.starts_with(b"HTTP/"),
            "plain HTTP got an HTTP answer: {:?}",
            String::from_utf8_lossy(&got)
        );
    }
    assert_eq!(p.upstream(0).requests().len(), 0);
    // The proxy still serves.
    let a = p.get("/SCIM/v2/Users", OKTA).await;
    assert_eq!(a.status, StatusCode::OK);
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_connections_are_pooled_h2_by_alpn_or_http11() {
    for h1 in [false, true] {
        let b = Builder::new();
        let p = if h1 { b.h1_upstream() } else { b }.start().await;
        for _ in 0..3 {
            assert_eq!(p.get("/SCIM/v2/Users", OKTA).await.status, StatusCode::OK);
        }
        let seen = p.upstream(0).requests();
        assert_eq!(seen.len(), 3);
        let want = if h1 {
            Version::HTTP_11
        } else {
            Version::HTTP_2
        };
        for r in &seen {
            assert_eq!(r.version, want, "h1-only upstream: {h1}");
            assert_eq!(
                r.peer, seen[0].peer,
                "one pooled connection (h1-only: {h1})"
            );
        }
        p.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_over_h1_and_h2_are_not_mixed_up() {
    let p = Builder::new().start().await;
    let h1 = p.client.clone();
    let h2 = ScimClient::new(
        &p.base,
        devcerts::client_config(p.ca_pem(), &[]).unwrap(),
        true,
    );
    let mut set = tokio::task::JoinSet::new();
    for i in 0..40 {
        let client = if i % 2 == 0 { h1.clone() } else { h2.clone() };
        let base = p.base.clone();
        let token = if i % 3 == 0 { ENTRA } else { OKTA };
        set.spawn(async move {
            let req = http::Request::builder()
                .method(Method::GET)
                .uri(format!("{base}/SCIM/v2/Users?count=1&n={i}"))
                .header("authorization", bearer(token))
                .header("x-request-id", format!("req-{i}"))
                .body(http_body_util::Full::new(Bytes::new()))
                .unwrap();
            (i, client.request(req).await)
        });
    }
    let mut done = 0;
    while let Some(r) = bounded("concurrent requests", set.join_next()).await {
        let (i, a) = r.unwrap();
        let a = a.unwrap_or_else(|e| panic!("request {i}: {e}"));
        assert_eq!(a.status, StatusCode::OK, "request {i}");
        assert_eq!(a.header("x-request-id"), Some(format!("req-{i}").as_str()));
        done += 1;
    }
    assert_eq!(done, 40);
    let seen = p.upstream(0).requests();
    assert_eq!(seen.len(), 40);
    for i in 0..40 {
        let matching: Vec<_> = seen
            .iter()
            .filter(|r| r.path_and_query == format!("/api/v2/scim/Users?count=1&n={i}"))
            .collect();
        assert_eq!(matching.len(), 1, "request {i}");
        assert_eq!(
            header(matching[0], "x-request-id"),
            Some(format!("req-{i}").as_str())
        );
    }
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_cidrs_closes_other_sources_before_tls() {
    let p = Builder::new()
        .listen_extra("allow_cidrs = [\"10.0.0.0/8\", \"fd00::/8\"]\n")
        .start()
        .await;
    let r = raw_tls_exchange(
        p.addr,
        p.ca_pem(),
        &raw_request(
            "GET",
            "/SCIM/v2/Users",
            "localhost",
            &[("Authorization", &bearer(OKTA))],
        ),
    )
    .await;
    assert!(r.is_err(), "127.0.0.1 is not allowed: {r:?}");
    assert_eq!(p.upstream(0).requests().len(), 0);
    p.stop().await;
}

// ---- 9. admin -----------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_and_readyz_while_running_then_not_ready_after_shutdown() {
    let mut p = Builder::new().admin().start().await;
    let admin = p.running().admin_addr.expect("admin listener");
    assert_ne!(admin, p.addr);
    let a = plain_get(admin, "/healthz").await.expect("healthz");
    assert_eq!(a.status, StatusCode::OK);
    // Ready once the listener accepts: poll briefly, bounded.
    let mut ready = None;
    for _ in 0..100 {
        let a = plain_get(admin, "/readyz").await.expect("readyz");
        if a.status == StatusCode::OK {
            ready = Some(a);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ready = ready.expect("/readyz never answered 200");
    assert!(String::from_utf8_lossy(&ready.body).contains("ready"));
    let a = plain_get(admin, "/nope").await.expect("admin 404");
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    assert_eq!(p.get("/SCIM/v2/Users", OKTA).await.status, StatusCode::OK);

    let running = p.running.take().unwrap();
    running.shutdown();
    let mut not_ready = false;
    for _ in 0..100 {
        match plain_get(admin, "/readyz").await {
            Err(_) => {
                not_ready = true;
                break;
            }
            Ok(a) if a.status == StatusCode::SERVICE_UNAVAILABLE => {
                not_ready = true;
                break;
            }
            Ok(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    assert!(not_ready, "/readyz still 200 5 s after shutdown");
    bounded("wait", running.wait()).await;
    // The proxy port no longer serves.
    let r = raw_tls_exchange(
        p.addr,
        p.ca_pem(),
        &raw_request("GET", "/SCIM/v2/Users", "localhost", &[]),
    )
    .await;
    assert!(r.is_err(), "{r:?}");
    p.stop().await;
}

// ---- 10. command line ---------------------------------------------------------------------------

#[test]
fn cli_hash_token_prints_the_sha256_of_stdin() {
    // sha256("abc"), the FIPS 180-2 test vector.
    let abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
    for input in [&b"abc"[..], b"abc\n", b"abc\r\n"] {
        let out = run_cli(&["hash-token"], input, &[], Duration::from_secs(30));
        assert!(out.status.success(), "{input:?}: {out:?}");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            abc,
            "{input:?}"
        );
    }
    let out = run_cli(
        &["hash-token"],
        format!("{OKTA}\n").as_bytes(),
        &[],
        Duration::from_secs(30),
    );
    assert!(out.status.success());
    let printed = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert_eq!(printed, sha256_hex(OKTA.as_bytes()));
    assert!(!String::from_utf8_lossy(&out.stderr).contains(OKTA));
    // Nothing to hash: an error, not the hash of the empty string.
    let out = run_cli(&["hash-token"], b"\n", &[], Duration::from_secs(30));
    assert!(!out.status.success(), "{out:?}");
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains(&sha256_hex(b"")),
        "{out:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_check_accepts_a_good_config_and_summarises_the_routes() {
    let prepared = Builder::new()
        .upstreams(2)
        .admin()
        .routes(vec![
            RouteSpec::new("acme")
                .upstream(0)
                .hosts(&["addon-acme.example"])
                .tenant("1234"),
            RouteSpec::new("globex")
                .upstream(1)
                .auth("netskope-api-token"),
        ])
        .prepare()
        .await;
    let path = prepared.config_path.to_str().unwrap().to_string();
    let out = tokio::task::spawn_blocking(move || {
        run_cli(
            &["check", "--config", &path],
            b"",
            &[],
            Duration::from_secs(60),
        )
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for want in [
        "acme",
        "globex",
        "addon-acme.example",
        &format!("https://{}/api/v2/scim", prepared.upstreams[0].addr()),
        &format!("https://{}/api/v2/scim", prepared.upstreams[1].addr()),
    ] {
        assert!(stdout.contains(want), "summary lacks {want:?}:\n{stdout}");
    }
    for t in &prepared.v2_tokens {
        assert!(
            !stdout.contains(t.as_str()),
            "the summary prints a v2 token"
        );
    }
    prepared.shutdown().await;
}

#[test]
fn cli_check_reports_every_syntax_level_mistake_with_file_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_file(
        dir.path(),
        "bad.toml",
        r#"
[listen]
addr = "127.0.0.1:0"
adress = "typo"

[limits]
upstream_timeout = "soon"

[egress]
bind_ip = "not-an-ip"

[[routes]]
name = "acme"
upstream = "http://acme.example/api/v2/scim"
token_file = "acme.token"

[[routes.clients]]
name = "okta"
token_sha256 = "not-hex"
"#,
    );
    let p = path.to_str().unwrap();
    let out = run_cli(&["check", "--config", p], b"", &[], Duration::from_secs(60));
    assert!(!out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    for key in [
        "listen.adress",
        "limits.upstream_timeout",
        "egress.bind_ip",
        "routes[0].upstream",
        "routes[0].clients[0].token_sha256",
    ] {
        assert!(
            stderr
                .lines()
                .any(|l| l.starts_with(&format!("{p}: {key}:"))),
            "no line `{p}: {key}: ...` in:\n{stderr}"
        );
    }
    assert!(out.stdout.is_empty() || !String::from_utf8_lossy(&out.stdout).contains(": OK"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_check_and_serve_report_every_load_level_mistake() {
    let ip = ["192.0.2.1", "198.51.100.77", "203.0.113.77"]
        .into_iter()
        .find(|ip| !can_bind(ip.parse().unwrap()))
        .expect("a documentation address not configured here");
    let mut prepared = Builder::new().bind_ip(ip).prepare().await;
    prepared.edit_config("cert = \"proxy.crt\"", "cert = \"missing.crt\"");
    prepared.edit_config("key = \"proxy.key\"", "key = \"missing.key\"");
    prepared.edit_config("ca_file = \"ca.pem\"", "ca_file = \"missing-ca.pem\"");
    prepared.edit_config(
        "token_file = \"main.token\"",
        "token_file = \"missing.token\"",
    );
    let path = prepared.config_path.to_str().unwrap().to_string();
    let out = tokio::task::spawn_blocking({
        let path = path.clone();
        move || {
            run_cli(
                &["check", "--config", &path],
                b"",
                &[],
                Duration::from_secs(60),
            )
        }
    })
    .await
    .unwrap();
    assert!(!out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    for (key, mentions) in [
        ("listen.cert", "missing.crt"),
        ("listen.key", "missing.key"),
        ("egress.ca_file", "missing-ca.pem"),
        ("egress.bind_ip", ip),
        ("routes[0].token_file", "missing.token"),
    ] {
        assert!(
            stderr
                .lines()
                .any(|l| l.starts_with(&format!("{path}: {key}:")) && l.contains(mentions)),
            "no line `{path}: {key}: ...{mentions}...` in:\n{stderr}"
        );
    }
    // `serve` refuses the same config and says why (the bind_ip among the rest).
    let out = tokio::task::spawn_blocking({
        let path = path.clone();
        move || {
            run_cli(
                &["serve", "--config", &path],
                b"",
                &[("RUST_LOG", "info")],
                Duration::from_secs(60),
            )
        }
    })
    .await
    .unwrap();
    assert!(!out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("egress.bind_ip"), "{stderr}");
    assert!(stderr.contains("routes[0].token_file"), "{stderr}");
    prepared.shutdown().await;
}

#[test]
fn cli_check_on_the_shipped_example_fails_only_on_operator_files() {
    let example = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/scim-proxy.example.toml"
    );
    assert!(
        std::path::Path::new(example).exists(),
        "config/scim-proxy.example.toml is missing"
    );
    let out = run_cli(
        &["check", "--config", example],
        b"",
        &[],
        Duration::from_secs(60),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    let problems: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with(&format!("{example}: ")))
        .collect();
    assert!(
        problems.iter().any(|l| l.contains(": listen.cert:")),
        "{stderr}"
    );
    assert!(
        problems
            .iter()
            .any(|l| l.contains("].token_file:") || l.contains("].token_env:")),
        "{stderr}"
    );
    for l in &problems {
        let key = l[example.len() + 2..]
            .split(": ")
            .next()
            .unwrap_or_default();
        let operator_file = key == "listen.cert"
            || key == "listen.key"
            || (key.starts_with("routes[")
                && (key.ends_with("].token_file") || key.ends_with("].token_env")));
        assert!(operator_file, "unexpected problem in the example: {l}");
    }
    // Nothing but problem lines and the count.
    for l in stderr.lines() {
        assert!(
            problems.contains(&l) || l.contains("problem"),
            "unexpected output: {l}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_serve_answers_then_drains_on_sigterm_and_exits_0() {
    let prepared = Builder::new()
        .limit("shutdown_grace", "\"15s\"")
        .prepare()
        .await;
    let mut serve = ServeChild::spawn(&prepared.config_path);
    let addr = serve.serving_addr(Duration::from_secs(30)).await;
    assert!(addr.ip().is_loopback() && addr.port() != 0, "{addr}");
    let client = ScimClient::new(
        &format!("https://localhost:{}", addr.port()),
        devcerts::client_config(&prepared.ca_pem, &[]).unwrap(),
        false,
    );
    let up = prepared.upstreams[0].clone();
    let a = client
        .send(Method::GET, "/SCIM/v2/Users", Some(OKTA), None)
        .await
        .expect("request");
    assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
    assert_eq!(up.requests().len(), 1);

    // A slow request is in flight when SIGTERM comes: it still completes.
    up.push_override(Override {
        status: StatusCode::OK,
        headers: vec![("content-type".into(), "application/scim+json".into())],
        body: Bytes::from_static(b"{\"slow\":true}"),
        delay: Duration::from_secs(2),
    });
    let slow = tokio::spawn({
        let client = client.clone();
        async move {
            client
                .send(Method::GET, "/SCIM/v2/Users", Some(ENTRA), None)
                .await
        }
    });
    let deadline = Instant::now() + Duration::from_secs(15);
    while up.requests().len() < 2 {
        assert!(
            Instant::now() < deadline,
            "the slow request never reached the upstream"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    serve.signal("TERM");
    let a = bounded("slow request", slow)
        .await
        .unwrap()
        .expect("slow request");
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(&a.body[..], b"{\"slow\":true}");
    let status = serve
        .exit_status(Duration::from_secs(20))
        .await
        .unwrap_or_else(|| {
            panic!(
                "serve still running 20 s after SIGTERM:\n{}",
                serve.stderr()
            )
        });
    assert_eq!(status.code(), Some(0), "{}", serve.stderr());
    let stderr = serve.stderr();
    assert!(stderr.contains("SIGTERM"), "{stderr}");
    // The port is closed now.
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());

    // A traffic line per request with method, path, route, client, status, duration; no token.
    let traffic = read_traffic(prepared.dir.path());
    let raw_traffic = std::fs::read_to_string(prepared.dir.path().join("traffic.log")).unwrap();
    assert_eq!(traffic.len(), 2, "{raw_traffic}");
    for (line, client) in traffic.iter().zip(["okta", "entra"]) {
        assert_eq!(line["method"], json!("GET"), "{line}");
        assert_eq!(line["path"], json!("/SCIM/v2/Users"), "{line}");
        assert_eq!(line["route"], json!("main"), "{line}");
        assert_eq!(line["client"], json!(client), "{line}");
        assert_eq!(line["status"], json!(200), "{line}");
        assert!(line["duration_ms"].is_u64(), "{line}");
    }
    for secret in [OKTA, ENTRA, prepared.v2_tokens[0].as_str()] {
        assert!(
            !stderr.contains(secret),
            "a token is in the logs:\n{stderr}"
        );
        assert!(
            !raw_traffic.contains(secret),
            "a token is in the traffic log"
        );
    }
    prepared.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_serve_exits_0_on_sigint() {
    let prepared = Builder::new().prepare().await;
    let mut serve = ServeChild::spawn(&prepared.config_path);
    let addr = serve.serving_addr(Duration::from_secs(30)).await;
    let a = raw_tls_exchange(
        addr,
        &prepared.ca_pem,
        &raw_request(
            "GET",
            "/SCIM/v2/Groups",
            "localhost",
            &[("Authorization", &bearer(OKTA))],
        ),
    )
    .await
    .expect("request");
    assert_eq!(a.status, StatusCode::OK);
    serve.signal("INT");
    let status = serve
        .exit_status(Duration::from_secs(20))
        .await
        .unwrap_or_else(|| panic!("serve still running 20 s after SIGINT:\n{}", serve.stderr()));
    assert_eq!(status.code(), Some(0), "{}", serve.stderr());
    prepared.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_serve_cuts_requests_still_running_after_the_grace_and_exits_0() {
    let prepared = Builder::new()
        .limit("shutdown_grace", "\"1s\"")
        .prepare()
        .await;
    let mut serve = ServeChild::spawn(&prepared.config_path);
    let addr = serve.serving_addr(Duration::from_secs(30)).await;
    let up = prepared.upstreams[0].clone();
    up.push_override(Override {
        status: StatusCode::OK,
        headers: vec![],
        body: Bytes::from_static(b"{}"),
        delay: Duration::from_secs(30),
    });
    let ca = prepared.ca_pem.clone();
    let stuck = tokio::spawn(async move {
        raw_tls_exchange(
            addr,
            &ca,
            &raw_request(
                "GET",
                "/SCIM/v2/Users",
                "localhost",
                &[("Authorization", &bearer(OKTA))],
            ),
        )
        .await
    });
    let deadline = Instant::now() + Duration::from_secs(15);
    while up.requests().is_empty() {
        assert!(
            Instant::now() < deadline,
            "the request never reached the upstream"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let signalled = Instant::now();
    serve.signal("TERM");
    let status = serve
        .exit_status(Duration::from_secs(15))
        .await
        .unwrap_or_else(|| panic!("serve did not bound the drain:\n{}", serve.stderr()));
    assert_eq!(status.code(), Some(0), "{}", serve.stderr());
    assert!(signalled.elapsed() < Duration::from_secs(15));
    let r = bounded("cut request", stuck).await.unwrap();
    assert!(
        r.as_ref().map_or(true, |a| a.status != StatusCode::OK),
        "the request cannot have completed: {r:?}"
    );
    prepared.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_serve_reloads_on_sighup() {
    let prepared = Builder::new().prepare().await;
    let up = prepared.upstreams[0].clone();
    let old = prepared.v2_tokens[0].clone();
    let new = format!("v2-hup-{}", uuid::Uuid::new_v4().simple());
    up.set_tokens(vec![old.clone(), new.clone()]);
    let mut serve = ServeChild::spawn(&prepared.config_path);
    let addr = serve.serving_addr(Duration::from_secs(30)).await;
    let get = |ca: String| async move {
        raw_tls_exchange(
            addr,
            &ca,
            &raw_request(
                "GET",
                "/SCIM/v2/Users",
                "localhost",
                &[("Authorization", &bearer(OKTA))],
            ),
        )
        .await
        .expect("request")
    };
    assert_eq!(get(prepared.ca_pem.clone()).await.status, StatusCode::OK);
    write_private(prepared.dir.path(), "main.token", &format!("{new}\n"));
    serve.signal("HUP");
    // The reload is asynchronous: poll (bounded) until a request carries the new token.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        assert_eq!(get(prepared.ca_pem.clone()).await.status, StatusCode::OK);
        let last = up.requests().pop().unwrap();
        if header(&last, "authorization") == Some(bearer(&new).as_str()) {
            break;
        }
        assert_eq!(header(&last, "authorization"), Some(bearer(&old).as_str()));
        assert!(
            Instant::now() < deadline,
            "SIGHUP did not reload:\n{}",
            serve.stderr()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        header(&up.requests()[0], "authorization"),
        Some(bearer(&old).as_str())
    );
    serve.signal("TERM");
    let status = serve.exit_status(Duration::from_secs(20)).await;
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{}", serve.stderr());
    prepared.shutdown().await;
}

/// The config mistakes admins make, as the real binary reports them: a misspelt key or table gets
/// a suggestion; a TOML syntax error keeps its line, column and caret excerpt on lines of their own.
#[test]
fn check_suggests_misspelt_keys_and_shows_toml_syntax_errors_readably() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("typo.toml");
    std::fs::write(
        &path,
        "[listn]\naddr = \"127.0.0.1:0\"\n[[routes]]\nname = \"a\"\ntoken_fiel = \"t\"\n",
    )
    .unwrap();
    let out = run_cli(
        &["check", "--config", path.to_str().unwrap()],
        b"",
        &[],
        Duration::from_secs(30),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("listn: unknown key; did you mean listen?"),
        "{stderr}"
    );
    assert!(
        stderr.contains("routes[0].token_fiel: unknown key; did you mean token_file?"),
        "{stderr}"
    );
    std::fs::write(&path, "[listen]\naddr = \n").unwrap();
    let out = run_cli(
        &["check", "--config", path.to_str().unwrap()],
        b"",
        &[],
        Duration::from_secs(30),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert!(
        lines[0].ends_with("TOML parse error at line 2, column 8"),
        "{stderr}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.trim_start().starts_with("2 | addr =")),
        "{stderr}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.trim() == "|        ^" || l.ends_with('^')),
        "{stderr}"
    );
}

/// Runs the real binary with `args` off the runtime (the test's servers keep running on it).
async fn cli_off_runtime(args: &[&str]) -> std::process::Output {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run_cli(&args, b"", &[], Duration::from_secs(30))
    })
    .await
    .expect("the CLI thread")
}

/// Certificate and key swapped: each key says what its file holds and what it wants instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_says_when_listen_cert_and_key_are_swapped() {
    let mut prepared = Builder::new().prepare().await;
    prepared.edit_config(
        "cert = \"proxy.crt\"\nkey = \"proxy.key\"",
        "cert = \"proxy.key\"\nkey = \"proxy.crt\"",
    );
    let config = prepared.config_path.to_str().unwrap();
    let out = cli_off_runtime(&["check", "--config", config]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("listen.cert: ")
            && stderr
                .contains("this file holds a private key; this key wants the certificate chain"),
        "{stderr}"
    );
    assert!(
        stderr.contains("listen.key: ")
            && stderr.contains("this file holds a certificate; this key wants the private key"),
        "{stderr}"
    );
    prepared.shutdown().await;
}

/// Plain `check` warns (exit 0) about an upstream URL that does not end in /api/v2/scim.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_warns_of_an_upstream_path_other_than_api_v2_scim() {
    let prepared = Builder::new()
        .route(|r| r.target(Target::Url("https://127.0.0.1:1/SCIM/v2".into())))
        .prepare()
        .await;
    let config = prepared.config_path.to_str().unwrap();
    let out = cli_off_runtime(&["check", "--config", config]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("warning:")
            && stderr.contains("routes[0].upstream")
            && stderr.contains("does not end in /api/v2/scim"),
        "{stderr}"
    );
    prepared.shutdown().await;
}

/// `serve` on a listen.addr already in use names the key and the file, as admin.addr does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_on_a_listen_addr_in_use_names_the_key() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let mut prepared = Builder::new().prepare().await;
    prepared.edit_config(
        "[listen]\naddr = \"127.0.0.1:0\"",
        &format!("[listen]\naddr = \"127.0.0.1:{port}\""),
    );
    let config = prepared.config_path.to_str().unwrap();
    let out = cli_off_runtime(&["serve", "--config", config]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "scim-proxy.toml: listen.addr: cannot listen on 127.0.0.1:{port}"
        )) && stderr.to_lowercase().contains("in use"),
        "{stderr}"
    );
    drop(busy);
    prepared.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_demo_once_runs_the_flow_and_exits_0() {
    let tmp = tempfile::tempdir().unwrap();
    let tmp_path = tmp.path().to_str().unwrap().to_string();
    let out = tokio::task::spawn_blocking(move || {
        run_cli(
            &["demo", "--listen", "127.0.0.1:0", "--once"],
            b"",
            &[("TMPDIR", &tmp_path)],
            Duration::from_secs(120),
        )
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("The flow passed"), "{stdout}");
    assert!(!stdout.contains("FAILED"), "{stdout}");
    assert!(
        stdout.contains("upstream saw nothing"),
        "the refused step should show nothing forwarded:\n{stdout}"
    );
    // The upstream leg leaves from the fixed egress the demo config sets, not from 127.0.0.1.
    assert!(stdout.contains("bind_ip"), "{stdout}");
    let forwarded: Vec<&str> = stdout
        .lines()
        .filter(|l| l.contains("upstream saw ") && !l.contains("upstream saw nothing"))
        .collect();
    assert!(!forwarded.is_empty(), "{stdout}");
    for line in forwarded {
        assert!(line.contains(" from 127.0.0.2 "), "{line}");
    }
}

// ---- 11. reload ---------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_picks_up_a_rotated_v2_token() {
    let p = Builder::new().start().await;
    let up = p.upstream(0);
    let old = p.v2(0).to_string();
    let new = format!("v2-rotated-{}", uuid::Uuid::new_v4().simple());
    up.set_tokens(vec![old.clone(), new.clone()]);
    assert_eq!(p.get("/SCIM/v2/Users", OKTA).await.status, StatusCode::OK);
    assert_eq!(
        header(&up.requests()[0], "authorization"),
        Some(bearer(&old).as_str())
    );
    write_private(p.dir(), "main.token", &format!("{new}\n"));
    // Not before the reload.
    assert_eq!(p.get("/SCIM/v2/Users", OKTA).await.status, StatusCode::OK);
    assert_eq!(
        header(&up.requests()[1], "authorization"),
        Some(bearer(&old).as_str())
    );
    p.running().reload().expect("reload");
    assert_eq!(p.get("/SCIM/v2/Users", OKTA).await.status, StatusCode::OK);
    assert_eq!(
        header(&up.requests()[2], "authorization"),
        Some(bearer(&new).as_str())
    );
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_with_a_broken_config_fails_and_the_old_config_keeps_serving() {
    let p = Builder::new().start().await;
    let up = p.upstream(0);
    let old = p.v2(0).to_string();
    let new = format!("v2-rotated-{}", uuid::Uuid::new_v4().simple());
    up.set_tokens(vec![old.clone(), new.clone()]);
    // A new token file and a config with a misplaced key: nothing of it may apply.
    write_private(p.dir(), "main.token", &format!("{new}\n"));
    let broken = p
        .prepared
        .toml
        .replace("[egress]\n", "[egress]\nbindip = \"127.0.0.1\"\n");
    assert_ne!(broken, p.prepared.toml);
    std::fs::write(p.config_path(), &broken).unwrap();
    let problems = p
        .running()
        .reload()
        .expect_err("a broken config must not load");
    assert!(
        problems
            .0
            .iter()
            .any(|x| x.key == "egress.bindip" && x.file == p.config_path()),
        "{problems}"
    );
    let a = p.get("/SCIM/v2/Users", OKTA).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(
        header(&up.requests()[0], "authorization"),
        Some(bearer(&old).as_str())
    );
    // A config that does not even parse, and one naming a missing token file.
    std::fs::write(p.config_path(), "[listen\naddr = ").unwrap();
    assert!(p.running().reload().is_err());
    std::fs::write(
        p.config_path(),
        p.prepared.toml.replace("main.token", "missing.token"),
    )
    .unwrap();
    let problems = p.running().reload().expect_err("missing token file");
    assert!(
        problems.0.iter().any(|x| x.key == "routes[0].token_file"),
        "{problems}"
    );
    let a = p.get("/SCIM/v2/Users", ENTRA).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(
        header(&up.requests()[1], "authorization"),
        Some(bearer(&old).as_str())
    );
    // Fixed again: the reload applies.
    std::fs::write(p.config_path(), &p.prepared.toml).unwrap();
    p.running().reload().expect("reload");
    assert_eq!(p.get("/SCIM/v2/Users", OKTA).await.status, StatusCode::OK);
    assert_eq!(
        header(&up.requests()[2], "authorization"),
        Some(bearer(&new).as_str())
    );
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_applies_a_new_egress_bind_ip() {
    let mut p = Builder::new().bind_ip("127.0.0.7").start().await;
    let up = p.upstream(0).clone();
    assert_eq!(p.get("/SCIM/v2/Users", OKTA).await.status, StatusCode::OK);
    p.prepared
        .edit_config("bind_ip = \"127.0.0.7\"", "bind_ip = \"127.0.0.8\"");
    p.running().reload().expect("reload");
    assert_eq!(p.get("/SCIM/v2/Users", OKTA).await.status, StatusCode::OK);
    let peers: Vec<IpAddr> = up.requests().iter().map(|r| r.peer.ip()).collect();
    assert_eq!(
        peers,
        [
            IpAddr::V4(Ipv4Addr::new(127, 0, 0, 7)),
            IpAddr::V4(Ipv4Addr::new(127, 0, 0, 8))
        ]
    );
    p.stop().await;
}

// ---- 12. logs -----------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traffic_log_has_one_line_per_request_and_never_a_token() {
    let p = Builder::new().start().await;
    let auth = bearer(OKTA);
    // 200, 401 (unknown token, which must not be logged either), 404, 400, 201.
    let unknown = "an-unknown-idp-token-9d1f";
    assert_eq!(p.get("/SCIM/v2/Users", OKTA).await.status, StatusCode::OK);
    assert_eq!(
        p.get("/SCIM/v2/Users", unknown).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        p.get("/elsewhere", OKTA).await.status,
        StatusCode::NOT_FOUND
    );
    let a = p
        .raw(&raw_request(
            "GET",
            "/SCIM/v2/%2e%2e/x",
            "localhost",
            &[("Authorization", &auth)],
        ))
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    let a = p
        .send(
            Method::POST,
            "/SCIM/v2/Users",
            Some(ENTRA),
            Some(&user("log@x.y")),
        )
        .await;
    assert_eq!(a.status, StatusCode::CREATED);

    // Lines may be written when the response ends: wait (bounded) for all five.
    let deadline = Instant::now() + Duration::from_secs(10);
    let lines = loop {
        let lines = p.traffic();
        if lines.len() >= 5 || Instant::now() > deadline {
            break lines;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let statuses: Vec<u64> = lines.iter().filter_map(|l| l["status"].as_u64()).collect();
    assert_eq!(statuses, [200, 401, 404, 400, 201], "{lines:#?}");
    for l in &lines {
        for key in ["method", "path", "status", "duration_ms"] {
            assert!(!l[key].is_null(), "{key} missing: {l}");
        }
    }
    assert_eq!(lines[0]["client"], json!("okta"));
    assert_eq!(lines[4]["client"], json!("entra"));
    assert_eq!(lines[4]["method"], json!("POST"));
    let raw = std::fs::read_to_string(p.dir().join("traffic.log")).unwrap();
    let mut secrets = p.secrets();
    secrets.push(unknown.to_string());
    for s in &secrets {
        assert!(!raw.contains(s.as_str()), "a token is in the traffic log");
    }
    p.stop().await;
}

// ---- Host-header injection: URLs given back only for names the proxy serves -------------------

/// POST a user with `Host: host`; the answer.
async fn create_user_as(p: &TestProxy, host: &str, name: &str) -> scim_proxy::lab::client::Answer {
    p.call(
        p.req(Method::POST, "/SCIM/v2/Users")
            .header("host", host)
            .header("authorization", bearer(OKTA))
            .header("content-type", "application/scim+json"),
        user(name).to_string(),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_hosts_the_certificate_covers_are_served_and_reflected() {
    // One catch-all route: before, any Host was served and came back in the URLs.
    let p = Builder::new().start().await;
    // The proxy certificate covers localhost, addon-a.example, addon-b.example and 127.0.0.1.
    for (i, host) in ["addon-a.example", "127.0.0.1", "[::1]:8443"]
        .iter()
        .enumerate()
    {
        let a = create_user_as(&p, host, &format!("host{i}@x.y")).await;
        if *host == "[::1]:8443" {
            // No IPv6 SAN on the test certificate.
            p.assert_error(&a, 421, &["does not serve"]);
            continue;
        }
        assert_eq!(a.status, StatusCode::CREATED, "{host}: {:?}", a.body);
        let want = format!("https://{host}/SCIM/v2/Users/");
        assert!(
            a.header("location").is_some_and(|l| l.starts_with(&want)),
            "{host}: {:?}",
            a.headers
        );
        let meta = a.json()["meta"]["location"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(meta.starts_with(&want), "{host}: {meta}");
    }
    let total = p.upstream_total();
    for host in [
        "evil.example",
        "evil.example:443",
        "localhost.evil.example",
        "127.0.0.2",
        "x.addon-a.example",
    ] {
        let a = create_user_as(&p, host, "evil@x.y").await;
        p.assert_error(&a, 421, &["does not serve"]);
        let text = String::from_utf8_lossy(&a.body).to_string();
        assert!(
            !text.contains("evil.example") && !text.contains("127.0.0.2"),
            "{host}: {text}"
        );
        assert!(a.header("location").is_none(), "{host}");
    }
    assert_eq!(
        p.upstream_total(),
        total,
        "a misdirected request was forwarded"
    );
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_differing_from_sni_is_421() {
    let p = Builder::new().start().await;
    let mut config = (*client_tls(
        &p.prepared.ca_pem,
        &[&rustls::version::TLS13],
        &[b"http/1.1"],
    ))
    .clone();
    config.enable_sni = true; // tls_connect names `localhost`
    let config = std::sync::Arc::new(config);
    for (host, status) in [("addon-a.example", 421), ("localhost:443", 200)] {
        let mut tls = tls_connect(p.addr, config.clone())
            .await
            .expect("TLS connect");
        let request = format!(
            "GET /SCIM/v2/Users HTTP/1.1\r\nHost: {host}\r\nAuthorization: {}\r\nConnection: close\r\n\r\n",
            bearer(OKTA)
        );
        let a = exchange(&mut tls, request.as_bytes())
            .await
            .expect("exchange");
        if status == 421 {
            p.assert_error(&a, 421, &["SNI"]);
            assert_eq!(p.upstream_total(), 0, "a misdirected request was forwarded");
        } else {
            assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
        }
    }
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_url_wins_for_every_url_given_back() {
    let mut prepared = Builder::new().prepare().await;
    prepared.edit_config(
        "token_file = \"main.token\"\n",
        "token_file = \"main.token\"\npublic_url = \"https://scim.public.example/SCIM/v2\"\n",
    );
    let p = prepared.start().await;
    let a = create_user_as(&p, "localhost", "public@x.y").await;
    assert_eq!(a.status, StatusCode::CREATED, "{:?}", a.body);
    let want = "https://scim.public.example/SCIM/v2/Users/";
    assert!(
        a.header("location").is_some_and(|l| l.starts_with(want)),
        "{:?}",
        a.headers
    );
    let meta = a.json()["meta"]["location"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(meta.starts_with(want), "{meta}");
    // The public_url host is served though no SAN covers it.
    let a = create_user_as(&p, "scim.public.example", "public2@x.y").await;
    assert_eq!(a.status, StatusCode::CREATED, "{:?}", a.body);
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn served_names_follow_a_reloaded_certificate() {
    let p = Builder::new().start().await;
    let renamed = p
        .prepared
        .pki
        .issue(&["localhost", "renamed.example"], &[])
        .expect("certificate");
    write_file(p.dir(), "proxy.crt", &renamed.cert_pem);
    write_private(p.dir(), "proxy.key", &renamed.key_pem);
    p.running().reload().expect("reload");
    let a = create_user_as(&p, "renamed.example", "renamed@x.y").await;
    assert_eq!(a.status, StatusCode::CREATED, "{:?}", a.body);
    let a = create_user_as(&p, "addon-a.example", "old@x.y").await;
    p.assert_error(&a, 421, &["does not serve"]);
    p.stop().await;
}

#[test]
fn cli_check_refuses_a_plain_listener_route_without_hosts_or_public_url() {
    let dir = tempfile::tempdir().unwrap();
    write_private(dir.path(), "acme.token", "v2-token\n");
    let config = |route_extra: &str| {
        format!(
            "[listen]\naddr = \"127.0.0.1:0\"\n\n[[routes]]\nname = \"acme\"\nupstream = \"https://acme.goskope.com/api/v2/scim\"\ntoken_file = \"acme.token\"\n{route_extra}\n[[routes.clients]]\nname = \"okta\"\ntoken_sha256 = \"{}\"\n",
            sha256_hex(OKTA.as_bytes())
        )
    };
    let path = write_file(dir.path(), "plain.toml", &config(""));
    let p = path.to_str().unwrap();
    let out = run_cli(&["check", "--config", p], b"", &[], Duration::from_secs(60));
    assert!(!out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.lines().any(|l| l.starts_with(&format!(
            "{p}: routes[0].public_url: required on a plain listener"
        )) && l.contains("routes[0].hosts")),
        "{stderr}"
    );
    for fixed in [
        "public_url = \"https://scim.example.com/SCIM/v2\"",
        "hosts = [\"scim.example.com\"]",
    ] {
        write_file(dir.path(), "plain.toml", &config(fixed));
        let out = run_cli(&["check", "--config", p], b"", &[], Duration::from_secs(60));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("public_url"), "{fixed}: {stderr}");
    }
}

/// Every flag of every subcommand says in `--help` what it does.
#[test]
fn every_subcommand_flag_has_a_help_line() {
    let top = run_cli(&["--help"], b"", &[], Duration::from_secs(30));
    let top = String::from_utf8_lossy(&top.stdout).into_owned();
    let commands: Vec<String> = top
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .filter(|c| c != "help")
        .collect();
    for expected in [
        "serve",
        "check",
        "hash-token",
        "report",
        "test-upstream",
        "dev-certs",
        "demo",
    ] {
        assert!(commands.iter().any(|c| c == expected), "{expected}: {top}");
    }
    for command in &commands {
        let out = run_cli(&[command, "--help"], b"", &[], Duration::from_secs(30));
        assert!(out.status.success(), "{command} --help");
        let help = String::from_utf8_lossy(&out.stdout).into_owned();
        let mut flags = 0;
        for line in help.lines() {
            let t = line.trim_start();
            if !(t.starts_with('-') || t.starts_with('[') || t.starts_with('<')) {
                continue;
            }
            flags += 1;
            // `  --flag <VALUE>  What it does`: the description follows two spaces or more.
            let (spec, text) = t.split_once("  ").unwrap_or((t, ""));
            assert!(
                !text.trim().is_empty(),
                "{command}: `{spec}` has no help line:\n{help}"
            );
        }
        assert!(flags >= 2, "{command}: no options listed:\n{help}");
    }
}

/// The start-up log says, in plain words, what is served where and where the traffic log goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_start_up_log_names_listeners_routes_and_the_traffic_log_plainly() {
    let prepared = Builder::new().admin().prepare().await;
    let mut serve = ServeChild::spawn(&prepared.config_path);
    let addr = serve.serving_addr(Duration::from_secs(30)).await;
    let messages: Vec<String> = serve
        .stderr()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| {
            let fields = v.get("fields").unwrap_or(&v);
            let msg = fields.get("message")?.as_str()?.to_string();
            let admin = fields.get("admin").and_then(|a| a.as_str()).unwrap_or("");
            Some(format!("{msg} {admin}"))
        })
        .collect();
    let all = messages.join("\n");
    assert!(!all.contains("Some("), "{all}");
    assert!(!all.contains("None"), "{all}");
    assert!(
        all.contains(&format!("listen   {addr} https")),
        "listener: {all}"
    );
    assert!(all.contains("admin    http://127.0.0.1:"), "admin: {all}");
    assert!(all.contains("route    main: "), "route: {all}");
    assert!(all.contains("IdPs: okta, entra"), "clients: {all}");
    let traffic = prepared.dir.path().join("traffic.log");
    assert!(
        all.contains(&format!("traffic  log to {}", traffic.display())),
        "traffic log location: {all}"
    );
    serve.signal("TERM");
    assert!(serve.exit_status(Duration::from_secs(30)).await.is_some());
    prepared.shutdown().await;
}

/// `test-upstream` logs each request with the address it came from, never the token: the lab's
/// way to see the fixed egress at work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_upstream_logs_each_request_with_its_source_address() {
    use std::io::BufRead;
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().unwrap();
    let token = "lab-v2-token-7f3a";
    let token_file = write_private(dir.path(), "v2.token", &format!("  {token}\n"));
    let mut child = ChildGuard(Some(
        Command::new(bin())
            .args(["test-upstream", "--listen", "127.0.0.1:0", "--token-file"])
            .arg(&token_file)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn test-upstream"),
    ));
    let stdout = child.child().stdout.take().expect("stdout");
    let (lines_tx, lines_rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let next_line = |what: &str| {
        lines_rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("no {what} line from test-upstream"))
    };
    let banner = next_line("serving");
    let addr: std::net::SocketAddr = banner
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no address in {banner:?}"));

    for (source, bearer, status) in [("127.0.0.3", token, 200), ("127.0.0.4", "wrong", 401)] {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
        let mut tcp = socket.connect(addr).await.expect("connect");
        let request = format!(
            "GET /api/v2/scim/Users?count=1 HTTP/1.1\r\nHost: lab\r\nAuthorization: Bearer {bearer}\r\nConnection: close\r\n\r\n"
        );
        tcp.write_all(request.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        bounded("answer", tcp.read_to_end(&mut answer))
            .await
            .unwrap();
        assert!(
            answer.starts_with(format!("HTTP/1.1 {status}").as_bytes()),
            "{}",
            String::from_utf8_lossy(&answer)
        );
        let line = next_line("request");
        assert_eq!(
            line,
            format!("{source} HTTP/1.1 GET /api/v2/scim/Users?count=1 -> {status}")
        );
        assert!(!line.contains(bearer));
    }
}

/// The README's "Try it on one machine" block, run as written (ports moved to free ones): two dev
/// PKIs, `test-upstream` over TLS, `check --live`, `serve`, and the Okta and Entra curl flows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_lab_runs_as_written() {
    use std::os::unix::process::CommandExt;
    use std::process::{Command, Stdio};
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let section = readme
        .split("\n## Try it on one machine\n")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .expect("a 'Try it on one machine' section in the README");
    let mut script = section
        .split("```bash\n")
        .nth(1)
        .and_then(|rest| rest.split("\n```").next())
        .expect("a bash block in the lab section")
        .to_string();
    for fixed in ["8443", "9443", "9090"] {
        let port = unused_port().await.to_string();
        script = script.replace(fixed, &port);
    }
    let dir = tempfile::tempdir().unwrap();
    let bin_dir = std::path::Path::new(bin()).parent().unwrap().to_path_buf();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out_file = dir.path().join("lab.out");
    let child = Command::new("bash")
        .args(["-euo", "pipefail", "-c", &script])
        .current_dir(dir.path())
        .env("PATH", path)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::from(std::fs::File::create(&out_file).unwrap()))
        .stderr(Stdio::from(
            std::fs::File::create(dir.path().join("lab.err")).unwrap(),
        ))
        // Its own process group: the whole lab (upstream, proxy) is stopped with it.
        .process_group(0)
        .spawn()
        .expect("bash");
    let group = child.id();
    let mut guard = ChildGuard(Some(child));
    let status = tokio::task::spawn_blocking(move || {
        let status = guard.wait_for(Duration::from_secs(120));
        let _ = Command::new("kill")
            .args(["-TERM", "--", &format!("-{group}")])
            .status();
        status
    })
    .await
    .unwrap();
    let out = std::fs::read_to_string(&out_file).unwrap_or_default();
    let err = std::fs::read_to_string(dir.path().join("lab.err")).unwrap_or_default();
    let status = status.unwrap_or_else(|| panic!("the lab did not finish:\n{out}\n{err}"));
    assert!(status.success(), "the lab failed ({status}):\n{out}\n{err}");
    for seen in [
        // The upstream saw the v2 path from the fixed egress, for each step of both flows.
        "127.0.0.2 HTTP/2.0 GET /api/v2/scim/Users?startIndex=1&count=1 -> 200",
        "127.0.0.2 HTTP/2.0 POST /api/v2/scim/Users -> 201",
        "127.0.0.2 HTTP/2.0 GET /api/v2/scim/Users?filter=userName+eq+%22grace%40lab.test%22 -> 200",
        "\"userName\":\"grace@lab.test\"",
        "\"active\":false",
        "\"status\":\"401\"",
    ] {
        assert!(out.contains(seen), "{seen:?} missing from:\n{out}\n{err}");
    }
    let patches = out
        .lines()
        .filter(|l| {
            l.starts_with("127.0.0.2 HTTP/2.0 PATCH /api/v2/scim/Users/")
                && (l.ends_with("-> 200") || l.ends_with("-> 204"))
        })
        .count();
    assert_eq!(patches, 2, "{out}");
    // Nothing unauthenticated reached the upstream, and no token was printed.
    assert!(!out.lines().any(|l| l.ends_with("-> 401")), "{out}");
    for token in ["lab-v2-token", "lab-okta-old-token", "lab-entra-old-token"] {
        let shown = out
            .lines()
            .chain(err.lines())
            .filter(|l| l.contains(token) && !l.contains("OKTA=") && !l.contains("echo"))
            .count();
        assert_eq!(shown, 0, "{token} printed:\n{out}\n{err}");
    }
    // check, check --live and report ran and said so.
    assert!(out.contains("OK"), "{out}");
    assert!(out.contains("okta") && out.contains("entra"), "{out}");
}
