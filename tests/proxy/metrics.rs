//! The Prometheus metrics on the admin listener, against real traffic.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::{Method, StatusCode};
use scim_proxy::lab::client::Answer;

use crate::support::*;

/// Scrapes until `ok` holds (bounded).
async fn scrape_until(
    admin: SocketAddr,
    what: &str,
    ok: impl Fn(&Exposition) -> bool,
) -> Exposition {
    let deadline = Instant::now() + WAIT;
    loop {
        let m = scrape(admin).await;
        if ok(&m) {
            return m;
        }
        assert!(
            Instant::now() < deadline,
            "{what} not within {WAIT:?}:\n{}",
            m.text
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Requests by (route, client, op, status_class) as `scim_proxy_requests_total` exposes them.
fn request_counts(m: &Exposition) -> BTreeMap<(String, String, String, String), f64> {
    m.series("scim_proxy_requests_total")
        .into_iter()
        .map(|s| {
            let l = |k: &str| s.labels.get(k).cloned().unwrap_or_default();
            (
                (l("route"), l("client"), l("op"), l("status_class")),
                s.value,
            )
        })
        .collect()
}

fn total(m: &Exposition, name: &str) -> f64 {
    m.series(name).iter().map(|s| s.value).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_requests_latency_and_upstream_failures_of_real_traffic() {
    let dead_port = unused_port().await;
    let p = Builder::new()
        .admin()
        .limit("upstream_timeout", "\"2s\"")
        .routes(vec![
            RouteSpec::new("main"),
            RouteSpec::new("dead")
                .target(Target::Url(format!(
                    "https://127.0.0.1:{dead_port}/api/v2/scim"
                )))
                .hosts(&["addon-b.example"])
                .clients(&[("okta", OKTA)]),
        ])
        .start()
        .await;
    let admin = p.running().admin_addr.expect("admin");
    let up = p.upstream(0).clone();
    let before = scrape(admin).await;
    assert!(before.series("scim_proxy_requests_total").is_empty());
    assert_eq!(before.value("scim_proxy_in_flight_requests", &[]), 0.0);

    let ok = |a: &Answer, s: u16| assert_eq!(a.status.as_u16(), s, "{:?}", a.body);
    for _ in 0..3 {
        ok(
            &p.get("/SCIM/v2/Users?startIndex=1&count=2", OKTA).await,
            200,
        );
    }
    let body = okta_user("metrics.user@example.com", true);
    ok(
        &send(
            &p,
            Some(OKTA),
            None,
            Method::POST,
            "/SCIM/v2/Users",
            Some(&body),
        )
        .await,
        201,
    );
    ok(
        &send(
            &p,
            Some(OKTA),
            None,
            Method::POST,
            "/SCIM/v2/Users",
            Some(&body),
        )
        .await,
        409,
    );
    ok(
        &p.get("/SCIM/v2/Users?filter=userName+eq+%22x%40y.z%22", ENTRA)
            .await,
        200,
    );
    ok(
        &p.get("/SCIM/v2/Users", "not-a-known-idp-token-4b2e").await,
        401,
    );
    ok(&p.get("/elsewhere", OKTA).await, 404);
    up.push_override(canned(
        503,
        scim_error_body(503, "", "maintenance"),
        Duration::ZERO,
    ));
    ok(&p.get("/SCIM/v2/Users", OKTA).await, 503);
    up.push_override(canned(
        401,
        scim_error_body(401, "", "invalid token"),
        Duration::ZERO,
    ));
    ok(&p.get("/SCIM/v2/Groups", OKTA).await, 401);
    up.push_override(canned(200, empty_list(), Duration::from_secs(5)));
    ok(&p.get("/SCIM/v2/Groups", ENTRA).await, 504);
    let a = p
        .call(
            p.req(Method::GET, "/SCIM/v2/Users")
                .header("host", "addon-b.example")
                .header("authorization", bearer(OKTA)),
            Bytes::new(),
        )
        .await;
    ok(&a, 502);

    let m = scrape_until(admin, "12 requests counted", |m| {
        total(m, "scim_proxy_requests_total") == 12.0
    })
    .await;
    let want: BTreeMap<(String, String, String, String), f64> = [
        (("main", "okta", "user.list", "2xx"), 3.0),
        (("main", "okta", "user.create", "2xx"), 1.0),
        (("main", "okta", "user.create", "4xx"), 1.0),
        (("main", "entra", "user.lookup", "2xx"), 1.0),
        // Refused before authentication (401) or routing within the route (404): no client, no op.
        (("main", "-", "-", "4xx"), 2.0),
        (("main", "okta", "user.list", "5xx"), 1.0),
        (("main", "okta", "group.list", "4xx"), 1.0),
        (("main", "entra", "group.list", "5xx"), 1.0),
        (("dead", "okta", "user.list", "5xx"), 1.0),
    ]
    .into_iter()
    .map(|((r, c, o, s), n)| ((r.to_owned(), c.to_owned(), o.to_owned(), s.to_owned()), n))
    .collect();
    assert_eq!(request_counts(&m), want, "\n{}", m.text);

    // Latency histograms: every answered request, and every upstream answer.
    let main = [("route", "main")];
    assert_eq!(
        m.value("scim_proxy_request_duration_seconds_count", &main),
        11.0
    );
    assert_eq!(
        m.value(
            "scim_proxy_request_duration_seconds_count",
            &[("route", "dead")]
        ),
        1.0
    );
    assert_eq!(
        m.value(
            "scim_proxy_request_duration_seconds_bucket",
            &[("route", "main"), ("le", "+Inf")]
        ),
        11.0
    );
    // 3 lists, create, duplicate, lookup, 503, 401, and the 504 (the time it waited upstream).
    assert_eq!(
        m.value("scim_proxy_upstream_duration_seconds_count", &main),
        9.0
    );
    assert!(
        m.value("scim_proxy_request_duration_seconds_sum", &main) > 2.0,
        "the 504 took 2 s"
    );

    // Every route x kind is exported (at 0 until it happens); these are the ones that happened.
    let failures: BTreeMap<(String, String), f64> = m
        .series("scim_proxy_upstream_failures_total")
        .into_iter()
        .filter(|s| s.value > 0.0)
        .map(|s| {
            (
                (s.labels["route"].clone(), s.labels["kind"].clone()),
                s.value,
            )
        })
        .collect();
    let want_failures: BTreeMap<(String, String), f64> = [
        ("main", "5xx"),
        ("main", "auth"),
        ("main", "timeout"),
        ("dead", "connect"),
    ]
    .into_iter()
    .map(|(r, k)| ((r.to_owned(), k.to_owned()), 1.0))
    .collect();
    assert_eq!(failures, want_failures, "\n{}", m.text);

    // Nothing in flight once every body is done; no route has token_expires.
    scrape_until(admin, "in_flight back to 0", |m| {
        m.value("scim_proxy_in_flight_requests", &[]) == 0.0
    })
    .await;
    assert!(m.series("scim_proxy_token_expiry_seconds").is_empty());
    p.stop().await;
}

/// The families exposed, exactly (name and type). Every family but `requests` (whose `op` and
/// `status_class` are only known per request) is there before any traffic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_exposes_exactly_these_families() {
    let p = Builder::new()
        .admin()
        .routes(vec![route_expiring("main", SystemTime::now() + 30 * DAY)])
        .start()
        .await;
    let admin = p.running().admin_addr.expect("admin");
    let families = |m: &Exposition| -> Vec<(String, String)> { m.types.clone() };
    let idle = scrape(admin).await;
    let pair = |n: &str, t: &str| (n.to_owned(), t.to_owned());
    // token_expiry_seconds is filled in at scrape time for routes with token_expires.
    assert_eq!(
        families(&idle),
        [
            pair("scim_proxy_request_duration_seconds", "histogram"),
            pair("scim_proxy_upstream_duration_seconds", "histogram"),
            pair("scim_proxy_upstream_failures", "counter"),
            pair("scim_proxy_in_flight_requests", "gauge"),
            pair("scim_proxy_token_expiry_seconds", "gauge"),
            pair("scim_proxy_token_expiry_stale", "gauge"),
            pair("scim_proxy_reloads", "counter"),
            pair("scim_proxy_connections_refused", "counter"),
            pair("scim_proxy_open_connections", "gauge"),
            pair("scim_proxy_log_records_dropped", "counter"),
            // acme_certificate_expiry_seconds only while an ACME certificate is held (tests/proxy/acme.rs).
            pair("scim_proxy_acme_orders", "counter"),
            pair("scim_proxy_token_rereads", "counter"),
            pair("scim_proxy_token_resends", "counter"),
        ],
        "\n{}",
        idle.text
    );
    // One of everything: a request, an upstream failure, a reload, a refused (plain HTTP) connection.
    assert_eq!(p.get("/SCIM/v2/Users", OKTA).await.status, StatusCode::OK);
    p.upstream(0).push_override(canned(
        503,
        scim_error_body(503, "", "busy"),
        Duration::ZERO,
    ));
    assert_eq!(p.get("/SCIM/v2/Users", OKTA).await.status.as_u16(), 503);
    p.running().reload().expect("reload");
    let _ = plain_get(p.addr, "/SCIM/v2/Users").await;
    let m = scrape_until(admin, "every family", |m| {
        total(m, "scim_proxy_requests_total") == 2.0
            && m.get("scim_proxy_connections_refused_total", &[("reason", "tls")]) == Some(1.0)
    })
    .await;
    assert_eq!(
        families(&m),
        [
            pair("scim_proxy_requests", "counter"),
            pair("scim_proxy_request_duration_seconds", "histogram"),
            pair("scim_proxy_upstream_duration_seconds", "histogram"),
            pair("scim_proxy_upstream_failures", "counter"),
            pair("scim_proxy_in_flight_requests", "gauge"),
            pair("scim_proxy_token_expiry_seconds", "gauge"),
            pair("scim_proxy_token_expiry_stale", "gauge"),
            pair("scim_proxy_reloads", "counter"),
            pair("scim_proxy_connections_refused", "counter"),
            pair("scim_proxy_open_connections", "gauge"),
            pair("scim_proxy_log_records_dropped", "counter"),
            // acme_certificate_expiry_seconds only while an ACME certificate is held (tests/proxy/acme.rs).
            pair("scim_proxy_acme_orders", "counter"),
            pair("scim_proxy_token_rereads", "counter"),
            pair("scim_proxy_token_resends", "counter"),
        ],
        "\n{}",
        m.text
    );
    // The sample names, with their labels.
    let mut names: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for s in &m.samples {
        names
            .entry(s.name.as_str())
            .or_default()
            .extend(s.labels.keys().map(String::as_str));
    }
    let want: BTreeMap<&str, BTreeSet<&str>> = [
        (
            "scim_proxy_requests_total",
            &["route", "client", "op", "status_class"][..],
        ),
        (
            "scim_proxy_request_duration_seconds_bucket",
            &["route", "le"],
        ),
        ("scim_proxy_request_duration_seconds_sum", &["route"]),
        ("scim_proxy_request_duration_seconds_count", &["route"]),
        (
            "scim_proxy_upstream_duration_seconds_bucket",
            &["route", "le"],
        ),
        ("scim_proxy_upstream_duration_seconds_sum", &["route"]),
        ("scim_proxy_upstream_duration_seconds_count", &["route"]),
        ("scim_proxy_upstream_failures_total", &["route", "kind"]),
        ("scim_proxy_in_flight_requests", &[]),
        ("scim_proxy_token_expiry_seconds", &["route"]),
        ("scim_proxy_token_expiry_stale", &["route"]),
        ("scim_proxy_reloads_total", &["result"]),
        ("scim_proxy_connections_refused_total", &["reason"]),
        ("scim_proxy_open_connections", &[]),
        ("scim_proxy_log_records_dropped_total", &["sink"]),
        ("scim_proxy_acme_orders_total", &["outcome"]),
        ("scim_proxy_token_rereads_total", &["route", "outcome"]),
        ("scim_proxy_token_resends_total", &["route"]),
    ]
    .into_iter()
    .map(|(n, l)| (n, l.iter().copied().collect()))
    .collect();
    assert_eq!(names, want, "\n{}", m.text);
    // Status classes as exposed.
    let classes: BTreeSet<&str> = m
        .series("scim_proxy_requests_total")
        .iter()
        .map(|s| s.labels["status_class"].as_str())
        .collect();
    assert_eq!(classes, BTreeSet::from(["2xx", "5xx"]));
    eprintln!("--- /metrics ---\n{}", m.text);
    p.stop().await;
}

/// The body is the OpenMetrics 1.0 text format (`# EOF`, counters typed without `_total`); its
/// Content-Type must say so, or Prometheus parses it with the classic 0.0.4 parser.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_content_type_matches_the_exposition_format() {
    let p = Builder::new().admin().start().await;
    let admin = p.running().admin_addr.expect("admin");
    assert_eq!(p.get("/SCIM/v2/Users", OKTA).await.status, StatusCode::OK);
    let a = plain_get(admin, "/metrics").await.expect("GET /metrics");
    let body = String::from_utf8_lossy(&a.body).into_owned();
    p.stop().await;
    assert!(body.ends_with("# EOF\n"), "OpenMetrics body:\n{body}");
    assert!(
        body.contains("# TYPE scim_proxy_requests counter\nscim_proxy_requests_total{"),
        "{body}"
    );
    assert_eq!(
        a.header("content-type"),
        Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
    );
}

/// A request waiting for a slow upstream is being served: it must count as in flight.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_flight_counts_a_request_waiting_on_the_upstream() {
    let p = Builder::new().admin().start().await;
    let admin = p.running().admin_addr.expect("admin");
    p.upstream(0)
        .push_override(canned(200, empty_list(), Duration::from_secs(3)));
    let client = p.client.clone();
    let slow = tokio::spawn(async move {
        client
            .send(Method::GET, "/SCIM/v2/Users", Some(OKTA), None)
            .await
    });
    let deadline = Instant::now() + WAIT;
    while p.upstream(0).requests().is_empty() {
        assert!(
            Instant::now() < deadline,
            "the slow request never reached the upstream"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let during = scrape(admin).await;
    let a = bounded("slow request", slow)
        .await
        .expect("task")
        .expect("answer");
    assert_eq!(a.status, StatusCode::OK);
    scrape_until(admin, "in_flight back to 0", |m| {
        m.value("scim_proxy_in_flight_requests", &[]) == 0.0
    })
    .await;
    p.stop().await;
    assert_eq!(
        during.value("scim_proxy_in_flight_requests", &[]),
        1.0,
        "while the upstream was answering"
    );
}

/// Every series whose labels are known from the config is exported at 0 from the first scrape, so
/// `increase(...[5m]) > 0` fires on the first event; a route added by a reload gets its series then.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_series_exist_at_zero_from_the_first_scrape_and_for_routes_added_by_reload() {
    let mut prepared = Builder::new()
        .admin()
        .routes(vec![
            RouteSpec::new("main").hosts(&["addon-a.example"]),
            RouteSpec::new("added").hosts(&["addon-b.example"]),
        ])
        .prepare()
        .await;
    // Serve without the second route first (the last table); the reload below brings it in.
    let full = prepared.toml.clone();
    let added_at = full
        .find("\n[[routes]]\nname = \"added\"")
        .expect("the added route's table");
    prepared.edit_config(&full, &format!("{}\n", &full[..added_at]));
    let p = prepared.start().await;
    let admin = p.running().admin_addr.expect("admin");

    let route_series_at_zero = |m: &Exposition, route: &str| {
        for kind in ["connect", "tls", "timeout", "protocol", "5xx", "auth"] {
            assert_eq!(
                m.get(
                    "scim_proxy_upstream_failures_total",
                    &[("route", route), ("kind", kind)]
                ),
                Some(0.0),
                "{route}/{kind}\n{}",
                m.text
            );
        }
        for histogram in [
            "scim_proxy_request_duration_seconds_count",
            "scim_proxy_upstream_duration_seconds_count",
        ] {
            assert_eq!(
                m.get(histogram, &[("route", route)]),
                Some(0.0),
                "{histogram} {route}\n{}",
                m.text
            );
        }
    };
    let first = scrape(admin).await;
    route_series_at_zero(&first, "main");
    for result in ["ok", "failed"] {
        assert_eq!(
            first.get("scim_proxy_reloads_total", &[("result", result)]),
            Some(0.0),
            "\n{}",
            first.text
        );
    }
    for reason in ["max_connections", "allow_cidrs", "proxy_protocol", "tls"] {
        assert_eq!(
            first.get(
                "scim_proxy_connections_refused_total",
                &[("reason", reason)]
            ),
            Some(0.0),
            "\n{}",
            first.text
        );
    }
    assert!(
        !first.text.contains("route=\"added\""),
        "not configured yet:\n{}",
        first.text
    );

    std::fs::write(p.config_path(), &full).expect("write config");
    p.running().reload().expect("reload with the added route");
    let after = scrape(admin).await;
    route_series_at_zero(&after, "added");
    route_series_at_zero(&after, "main");
    assert_eq!(
        after.value("scim_proxy_reloads_total", &[("result", "ok")]),
        1.0
    );
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_are_counted_ok_and_failed() {
    let p = Builder::new().admin().start().await;
    let admin = p.running().admin_addr.expect("admin");
    let idle = scrape(admin).await;
    for result in ["ok", "failed"] {
        assert_eq!(
            idle.get("scim_proxy_reloads_total", &[("result", result)]),
            Some(0.0),
            "\n{}",
            idle.text
        );
    }
    p.running().reload().expect("a good reload");
    std::fs::write(p.config_path(), "[listen\naddr = ").unwrap();
    assert!(p.running().reload().is_err());
    std::fs::write(
        p.config_path(),
        p.prepared.toml.replace("main.token", "missing.token"),
    )
    .unwrap();
    assert!(p.running().reload().is_err());
    std::fs::write(p.config_path(), &p.prepared.toml).unwrap();
    p.running().reload().expect("fixed");
    let m = scrape(admin).await;
    assert_eq!(
        m.value("scim_proxy_reloads_total", &[("result", "ok")]),
        2.0
    );
    assert_eq!(
        m.value("scim_proxy_reloads_total", &[("result", "failed")]),
        2.0
    );
    assert_eq!(m.series("scim_proxy_reloads_total").len(), 2);
    // Still serving on the good config.
    assert_eq!(p.get("/SCIM/v2/Users", OKTA).await.status, StatusCode::OK);
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_connections_are_counted_by_reason() {
    // 127.0.0.1 is outside allow_cidrs: closed before TLS; the admin listener is not subject to it.
    let p = Builder::new()
        .admin()
        .listen_extra("allow_cidrs = [\"10.0.0.0/8\"]\n")
        .start()
        .await;
    let admin = p.running().admin_addr.expect("admin");
    for _ in 0..3 {
        let r = raw_tls_exchange(
            p.addr,
            p.ca_pem(),
            b"GET /SCIM/v2/Users HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert!(r.is_err(), "{r:?}");
    }
    let m = scrape_until(admin, "3 refusals", |m| {
        m.get(
            "scim_proxy_connections_refused_total",
            &[("reason", "allow_cidrs")],
        ) == Some(3.0)
    })
    .await;
    let counted: Vec<&str> = m
        .series("scim_proxy_connections_refused_total")
        .iter()
        .filter(|s| s.value > 0.0)
        .map(|s| s.labels["reason"].as_str())
        .collect();
    assert_eq!(counted, ["allow_cidrs"], "\n{}", m.text);
    assert!(p.upstream(0).requests().is_empty());
    p.stop().await;

    // Plain HTTP on the TLS port: a failed handshake.
    let p = Builder::new().admin().start().await;
    let admin = p.running().admin_addr.expect("admin");
    let r = plain_get(p.addr, "/SCIM/v2/Users").await;
    assert!(
        r.is_err() || r.as_ref().is_ok_and(|a| a.status != StatusCode::OK),
        "{r:?}"
    );
    scrape_until(admin, "a tls refusal", |m| {
        m.get("scim_proxy_connections_refused_total", &[("reason", "tls")]) == Some(1.0)
    })
    .await;
    p.stop().await;
}
