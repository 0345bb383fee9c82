//! What the proxy changes on the way through: URLs given back (Location, `meta.location`) for the
//! names it serves, `public_url`, request ids, hop-by-hop headers; and what it leaves unchanged.

use std::time::Duration;

use bytes::Bytes;
use http::{Method, StatusCode};
use scim_proxy::lab::upstream::Override;
use serde_json::json;

use crate::support::*;

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
