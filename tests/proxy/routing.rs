//! Route forms and route selection: prefixes, hosts, absolute-form targets, HTTP/2 authority, and the
//! targets and Host headers refused before anything is forwarded.

use bytes::Bytes;
use http::{Method, StatusCode, Version};
use scim_proxy::lab::client::ScimClient;
use scim_proxy::lab::devcerts;
use serde_json::json;
use tokio::io::AsyncWriteExt;

use crate::support::*;

/// Sends `GET <raw target>` (Connection: close) and returns everything read until the close.
async fn raw_target(p: &TestProxy, raw: &[u8]) -> Vec<u8> {
    let mut req = b"GET ".to_vec();
    req.extend_from_slice(raw);
    req.extend_from_slice(
        format!(
            " HTTP/1.1\r\nHost: localhost\r\nAuthorization: {}\r\nConnection: close\r\n\r\n",
            bearer(OKTA)
        )
        .as_bytes(),
    );
    let mut tls = h1_conn(p).await;
    tls.write_all(&req).await.unwrap();
    wait_closed(&mut tls, STEP).await.expect("closed").bytes
}

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
async fn percent_ff_in_the_query_is_forwarded_byte_for_byte_but_in_the_path_or_raw_is_400() {
    let p = Builder::new().start().await;
    // The query is the upstream's to decode: passed on exactly as sent.
    let target = "/SCIM/v2/Users/abc%C3%A9?filter=userName%20eq%20%22%FF%C3%A9%22";
    let a = p
        .raw(head("GET", target, "Connection: close\r\n").as_bytes())
        .await;
    assert_eq!(
        a.status,
        StatusCode::NOT_FOUND,
        "the upstream's own answer: {:?}",
        a.body
    );
    let seen = p.upstream(0).requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0].path_and_query,
        "/api/v2/scim/Users/abc%C3%A9?filter=userName%20eq%20%22%FF%C3%A9%22"
    );
    // A path escape that is not UTF-8 means different things to different decoders: 400.
    let a = p
        .raw(head("GET", "/SCIM/v2/Users/%FF%fe", "Connection: close\r\n").as_bytes())
        .await;
    p.assert_error(&a, 400, &["not UTF-8"]);
    assert_eq!(p.upstream(0).requests().len(), 1, "nothing more forwarded");
    // Raw bytes that are not UTF-8 in the request line: hyper refuses them, nothing is forwarded.
    for raw in [
        &b"/SCIM/v2/Users/\xff"[..],
        b"/SCIM/v2/Users?filter=\xff",
        b"/SCIM/v2/Users/\xc3",
    ] {
        let ended = raw_target(&p, raw).await;
        let a = parse_response(&ended).unwrap_or_else(|e| panic!("{raw:?}: {e}"));
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{raw:?}");
    }
    assert_eq!(p.upstream_total(), 1, "nothing more may be forwarded");
    // Raw UTF-8 (not percent-encoded) is either refused or forwarded exactly as sent.
    let ended = raw_target(&p, "/SCIM/v2/Users/\u{e9}".as_bytes()).await;
    let a = parse_response(&ended).expect("an answer");
    let seen = p.upstream(0).requests();
    if a.status == StatusCode::BAD_REQUEST {
        assert_eq!(seen.len(), 1);
    } else {
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[1].path_and_query, "/api/v2/scim/Users/\u{e9}");
    }
    assert_still_serves(&p).await;
    p.stop().await;
}

/// RFC 9113 §8.3.1: a `host` header that differs from `:authority` makes the request malformed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_host_header_differing_from_authority_is_refused_and_not_forwarded() {
    let p = Builder::new().start().await;
    let (client, conn) = h2_connect(&p).await;
    let mut client = tokio::time::timeout(STEP, client.ready())
        .await
        .unwrap()
        .unwrap();
    let mut req = h2_get("/SCIM/v2/Users", Some(OKTA));
    req.headers_mut()
        .insert("host", http::HeaderValue::from_static("evil.example"));
    let (response, _) = client.send_request(req, true).expect("sent");
    let res = tokio::time::timeout(STEP, response).await.unwrap();
    match res {
        Ok(res) => assert_eq!(res.status(), StatusCode::BAD_REQUEST),
        Err(e) => assert!(e.is_reset(), "{e:?}"),
    }
    // The same host as :authority is fine.
    let mut req = h2_get("/SCIM/v2/Users", Some(OKTA));
    req.headers_mut()
        .insert("host", http::HeaderValue::from_static("localhost"));
    let (response, _) = client.send_request(req, true).expect("sent");
    let res = tokio::time::timeout(STEP, response).await.unwrap().unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        p.upstream_total(),
        1,
        "only the consistent request is forwarded"
    );
    conn.abort();
    p.stop().await;
}
