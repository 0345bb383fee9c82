//! Keeping the tenant's rate limit and a rotated token from failing provisioning (issue 17): a
//! paced route smooths bursts from several IdPs first come first served, refuses beyond
//! `max_queue_wait` without forwarding, holds after the upstream's rate signals, and a token
//! rotated with immediate invalidation is picked up on the first 401 and the request sent once more
//! when it can be replayed exactly.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, StatusCode};
use scim_proxy::lab::client::{Answer, ScimClient};
use scim_proxy::lab::devcerts;
use scim_proxy::lab::upstream::{Override, RateLimit};

use crate::support::*;

/// The default route paced with these `[[routes]]` lines.
fn paced(lines: &str) -> Builder {
    Builder::new().route(|mut r| {
        r.extra = format!("{lines}\n");
        r
    })
}

/// `GET /SCIM/v2/Users?count=1&startIndex=<n>` as `token`, with request id `rid`: the index
/// tells the requests apart at the upstream.
async fn list_page(p: &TestProxy, token: &str, n: usize, rid: &str) -> (StatusCode, Instant) {
    let req = p
        .req(
            Method::GET,
            &format!("/SCIM/v2/Users?count=1&startIndex={n}"),
        )
        .header("authorization", bearer(token))
        .header("x-request-id", rid);
    let a = p.call(req, Bytes::new()).await;
    (a.status, Instant::now())
}

/// One request of a burst: after `delay`, `list_page(token, index)` with request id `rid`.
struct Planned {
    delay: Duration,
    token: &'static str,
    index: usize,
    rid: String,
}

/// Runs the plan concurrently through `client`; the answers (and when each came) in plan order.
async fn burst(p: &TestProxy, client: &ScimClient, plan: Vec<Planned>) -> Vec<(Answer, Instant)> {
    let mut tasks = tokio::task::JoinSet::new();
    let n = plan.len();
    for (i, step) in plan.into_iter().enumerate() {
        let client = client.clone();
        let uri = format!("{}/SCIM/v2/Users?count=1&startIndex={}", p.base, step.index);
        tasks.spawn(async move {
            tokio::time::sleep(step.delay).await;
            let req = http::Request::get(uri)
                .header("authorization", bearer(step.token))
                .header("x-request-id", step.rid)
                .body(http_body_util::Full::new(Bytes::new()))
                .expect("request");
            let a = client.request(req).await.expect("request to the proxy");
            (i, a, Instant::now())
        });
    }
    let mut answers: Vec<Option<(Answer, Instant)>> = (0..n).map(|_| None).collect();
    bounded("the burst", async {
        while let Some(done) = tasks.join_next().await {
            let (i, a, t) = done.expect("burst task");
            answers[i] = Some((a, t));
        }
    })
    .await;
    answers.into_iter().map(|a| a.expect("answered")).collect()
}

/// The `startIndex` of each request the upstream got, in arrival order.
fn upstream_indexes(p: &TestProxy) -> Vec<usize> {
    p.upstream(0)
        .requests()
        .iter()
        .filter_map(|r| r.path_and_query.split("startIndex=").nth(1)?.parse().ok())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_from_two_idps_at_twice_the_rate_is_smoothed_in_arrival_order() {
    let proxy = paced("max_requests_per_second = 10\nburst = 1\nmax_queue_wait = \"5s\"")
        .start()
        .await;
    let p = &proxy;
    let started = Instant::now();
    // 20 requests in one second, Okta and Entra alternating every 50 ms: twice the rate.
    let plan = (0..20u32)
        .map(|i| Planned {
            delay: Duration::from_millis(50) * i,
            token: if i % 2 == 0 { OKTA } else { ENTRA },
            index: if i % 2 == 0 { 1 } else { 101 } + i as usize / 2,
            rid: format!("smooth-{i}"),
        })
        .collect();
    let answers = burst(p, &p.client, plan).await;
    assert!(
        answers.iter().all(|(a, _)| a.status == StatusCode::OK),
        "none lost or refused: {:?}",
        answers.iter().map(|(a, _)| a.status).collect::<Vec<_>>()
    );
    // 20 sends at 10/s, one at a time: the last goes about 1.9 s after the first.
    let last = answers.iter().map(|(_, t)| *t).max().unwrap();
    let spread = last - started;
    assert!(
        spread >= Duration::from_millis(1500) && spread < Duration::from_secs(10),
        "{spread:?}"
    );
    let seen = upstream_indexes(p);
    assert_eq!(seen.len(), 20);
    let okta: Vec<usize> = seen.iter().copied().filter(|n| *n < 100).collect();
    let entra: Vec<usize> = seen.iter().copied().filter(|n| *n > 100).collect();
    assert_eq!(okta, (1..=10).collect::<Vec<_>>(), "Okta's order: {seen:?}");
    assert_eq!(
        entra,
        (101..=110).collect::<Vec<_>>(),
        "Entra's order: {seen:?}"
    );
    // First come, first served: Entra is served in between, not after Okta's whole burst.
    let first_entra = seen.iter().position(|n| *n > 100).unwrap();
    let last_okta = seen.iter().rposition(|n| *n < 100).unwrap();
    assert!(first_entra < last_okta, "{seen:?}");
    // The record says how long the late ones waited.
    let late = record(p.dir(), "smooth-19").await;
    assert!(late["waited_ms"].as_u64().unwrap() >= 500, "{late}");
    let first = record(p.dir(), "smooth-0").await;
    assert!(first["waited_ms"].as_u64().unwrap() < 500, "{first}");
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_beyond_max_queue_wait_is_refused_and_never_reaches_the_upstream() {
    let p = paced("max_requests_per_second = 5\nburst = 1\nmax_queue_wait = \"1s\"")
        .admin()
        .start()
        .await;
    // One HTTP/2 connection, warmed up: the burst arrives at once, not spread by handshakes.
    let mut tls = devcerts::client_config(p.ca_pem(), &[]).unwrap();
    std::sync::Arc::make_mut(&mut tls).enable_sni = false;
    let h2 = ScimClient::new(&p.base, tls, true);
    let warm = h2
        .send(Method::GET, "/SCIM/v2/Users", Some(OKTA), None)
        .await
        .unwrap();
    assert_eq!(warm.status, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(300)).await;
    p.upstream(0).clear_requests();
    let plan = (0..15)
        .map(|i| Planned {
            delay: Duration::ZERO,
            token: if i % 2 == 0 { OKTA } else { ENTRA },
            index: i,
            rid: format!("bound-{i}"),
        })
        .collect();
    let answers: Vec<Answer> = burst(&p, &h2, plan)
        .await
        .into_iter()
        .map(|(a, _)| a)
        .collect();
    let ok = answers
        .iter()
        .filter(|a| a.status == StatusCode::OK)
        .count();
    let refused: Vec<_> = answers
        .iter()
        .filter(|a| a.status == StatusCode::TOO_MANY_REQUESTS)
        .collect();
    assert_eq!(ok + refused.len(), 15, "only 200s and 429s");
    // Slots at 0, 0.2 … 1.0 s fit; a little more while the burst arrives, never all of it.
    assert!((5..=8).contains(&ok), "{ok} went through");
    for a in &refused {
        p.assert_error(a, 429, &["max_queue_wait"]);
        let secs: u64 = a.header("retry-after").unwrap().parse().unwrap();
        assert!((1..=5).contains(&secs), "Retry-After {secs}");
    }
    assert_eq!(
        p.upstream_total(),
        ok,
        "nothing beyond the bound was forwarded"
    );
    let m = scrape(p.running().admin_addr.unwrap()).await;
    let route = [("route", "main")];
    assert_eq!(
        m.value("scim_proxy_paced_refusals_total", &route),
        refused.len() as f64
    );
    assert_eq!(m.value("scim_proxy_paced_requests_waiting", &route), 0.0);
    // The proxy still serves once the queue has drained.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(p.get("/SCIM/v2/Users", OKTA).await.status, StatusCode::OK);
    p.stop().await;
}

/// Sends one request that meets the upstream's rate signal (`signal` queued first, when given),
/// then one more at once: the second waits for the reset. The first answer, and how long the
/// second took.
async fn held_after(p: &TestProxy, signal: Option<Override>) -> (Answer, Duration) {
    if let Some(o) = signal {
        p.upstream(0).push_override(o);
    }
    let first = p.get("/SCIM/v2/Users", OKTA).await;
    let started = Instant::now();
    let (second, _) = list_page(p, ENTRA, 1, "after-signal").await;
    assert_eq!(second, StatusCode::OK);
    (first, started.elapsed())
}

fn about_two_seconds(d: Duration) -> bool {
    d >= Duration::from_millis(1500) && d < Duration::from_secs(10)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_429_with_retry_after_holds_the_route_for_that_long() {
    let p = paced("max_requests_per_second = 50\nmax_queue_wait = \"10s\"")
        .admin()
        .start()
        .await;
    let throttled = Override {
        status: StatusCode::TOO_MANY_REQUESTS,
        headers: vec![
            ("retry-after".into(), "2".into()),
            ("content-type".into(), "application/json".into()),
        ],
        body: Bytes::from_static(b"{\"status\":429,\"detail\":\"rate limit exceeded\"}"),
        delay: Duration::ZERO,
    };
    let (first, held) = held_after(&p, Some(throttled.clone())).await;
    // The IdP sees the upstream's own 429 and its Retry-After.
    assert_eq!(first.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(first.header("retry-after"), Some("2"));
    assert_eq!(&first.body[..], &throttled.body[..]);
    assert!(about_two_seconds(held), "{held:?}");
    let r = record(p.dir(), "after-signal").await;
    assert!(r["waited_ms"].as_u64().unwrap() >= 1000, "{r}");
    let m = scrape(p.running().admin_addr.unwrap()).await;
    let signal = [("route", "main"), ("signal", "retry_after")];
    assert_eq!(
        m.value("scim_proxy_upstream_rate_signals_total", &signal),
        1.0
    );
    // Once the reset has passed, requests go at once again.
    let (first, again) = held_after(&p, None).await;
    assert_eq!(first.status, StatusCode::OK);
    assert!(again < Duration::from_millis(1000), "{again:?}");
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ratelimit_remaining_zero_holds_the_route_until_the_reset() {
    let p = paced("max_requests_per_second = 50\nmax_queue_wait = \"10s\"")
        .start()
        .await;
    // The lab upstream's own limit: one request per 2 s window, so the first answer says
    // ratelimit-remaining: 0, ratelimit-reset: 2.
    p.upstream(0).set_rate_limit(Some(RateLimit {
        limit: 1,
        window: Duration::from_secs(2),
    }));
    let (first, held) = held_after(&p, None).await;
    assert_eq!(first.status, StatusCode::OK);
    // The upstream's headers reach the IdP unchanged.
    assert_eq!(first.header("ratelimit-remaining"), Some("0"));
    assert_eq!(first.header("ratelimit-reset"), Some("2"));
    assert_eq!(first.header("ratelimit-limit"), Some("1"));
    assert!(about_two_seconds(held), "{held:?}");
    let (_, held) = held_after(&p, None).await;
    assert!(about_two_seconds(held), "{held:?}");
    // Held, not refused: the upstream never answered 429.
    let statuses: Vec<_> = p
        .traffic()
        .iter()
        .map(|r| r["upstream_status"].as_u64())
        .collect();
    assert!(statuses.iter().all(|s| *s == Some(200)), "{statuses:?}");
    p.stop().await;
}

/// Rotates route 0's token the way a managed rotation does: the new token is written to the file
/// the proxy reads, and from that moment the upstream accepts only the new one.
fn rotate(p: &TestProxy) -> String {
    let new = format!("v2-rotated-{}", uuid::Uuid::new_v4().simple());
    write_private(p.dir(), "main.token", &format!("{new}\n"));
    p.upstream(0).set_tokens(vec![new.clone()]);
    new
}

/// The upstream's records since `from`: (method, authenticated).
fn upstream_since(p: &TestProxy, from: usize) -> Vec<(Method, bool)> {
    p.upstream(0).requests()[from..]
        .iter()
        .map(|r| (r.method.clone(), r.authenticated))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_rotated_with_immediate_invalidation_costs_no_failed_request() {
    let p = Builder::new().admin().start().await;
    rotate(&p);
    let before = p.upstream(0).requests().len();
    let req = p
        .req(Method::POST, "/SCIM/v2/Users")
        .header("authorization", bearer(OKTA))
        .header("content-type", "application/scim+json")
        .header("x-request-id", "post-after-rotation");
    let created = p.call(req, user("rotated@example.com").to_string()).await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
    // Sent twice: refused with the old token, created with the new one, exactly once.
    assert_eq!(
        upstream_since(&p, before),
        [(Method::POST, false), (Method::POST, true)]
    );
    let r = record(p.dir(), "post-after-rotation").await;
    assert_eq!(
        (r["status"].as_u64(), r["resent"].as_str()),
        (Some(201), Some("token-rotated"))
    );
    let id = id_of(&created);

    // A second rotation finds a PATCH.
    let second = rotate(&p);
    let before = p.upstream(0).requests().len();
    let req = p
        .req(Method::PATCH, &format!("/SCIM/v2/Users/{id}"))
        .header("authorization", bearer(ENTRA))
        .header("content-type", "application/scim+json")
        .header("x-request-id", "patch-after-rotation");
    let body = patch(serde_json::json!([{"op": "replace", "path": "active", "value": false}]));
    let patched = p.call(req, body.to_string()).await;
    assert_eq!(patched.status, StatusCode::NO_CONTENT, "{:?}", patched.body);
    assert_eq!(
        upstream_since(&p, before),
        [(Method::PATCH, false), (Method::PATCH, true)]
    );
    let r = record(p.dir(), "patch-after-rotation").await;
    assert_eq!(r["resent"].as_str(), Some("token-rotated"));
    // The 401 reloaded the proxy: the next request goes with the new token the first time.
    let before = p.upstream(0).requests().len();
    assert_eq!(
        p.get(&format!("/SCIM/v2/Users/{id}"), OKTA).await.status,
        StatusCode::OK
    );
    let sent = p.upstream(0).requests();
    assert_eq!(sent.len(), before + 1);
    assert_eq!(
        sent[before].headers["authorization"],
        bearer(&second).as_str()
    );
    // Counted, and the new token is nowhere in what the IdP or the log got.
    let m = scrape(p.running().admin_addr.unwrap()).await;
    let route = [("route", "main")];
    assert_eq!(m.value("scim_proxy_token_resends_total", &route), 2.0);
    let changed = [("route", "main"), ("outcome", "changed")];
    assert_eq!(m.value("scim_proxy_token_rereads_total", &changed), 2.0);
    assert!(!traffic_text(p.dir()).contains(&second));
    assert_no_secret(&patched, &[second]);
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_401_with_an_unchanged_token_passes_through_at_once() {
    let p = Builder::new().admin().start().await;
    // The upstream revokes the token; the file still holds it.
    p.upstream(0).set_tokens(vec!["revoked-elsewhere".into()]);
    let req = p
        .req(Method::GET, "/SCIM/v2/Users")
        .header("authorization", bearer(OKTA))
        .header("x-request-id", "unchanged-token");
    let a = p.call(req, Bytes::new()).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert_eq!(p.upstream_total(), 1, "not sent again");
    let r = record(p.dir(), "unchanged-token").await;
    assert_eq!(r["upstream_status"].as_u64(), Some(401));
    assert!(r.get("resent").is_none(), "{r}");
    let m = scrape(p.running().admin_addr.unwrap()).await;
    let unchanged = [("route", "main"), ("outcome", "unchanged")];
    assert_eq!(m.value("scim_proxy_token_rereads_total", &unchanged), 1.0);
    assert_eq!(
        m.value("scim_proxy_token_resends_total", &[("route", "main")]),
        0.0
    );
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_body_is_never_sent_again() {
    let p = Builder::new().start().await;
    rotate(&p);
    // Chunked, without Content-Length: the proxy streams it and does not hold it.
    let body = user("streamed@example.com").to_string();
    let req = format!(
        "POST /SCIM/v2/Users HTTP/1.1\r\nHost: localhost\r\nAuthorization: {}\r\n\
         Content-Type: application/scim+json\r\nTransfer-Encoding: chunked\r\n\
         X-Request-Id: streamed-after-rotation\r\nConnection: close\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
        bearer(OKTA),
        body.len()
    );
    let a = p.raw(req.as_bytes()).await;
    assert_eq!(
        a.status,
        StatusCode::UNAUTHORIZED,
        "the upstream's 401, as it came"
    );
    assert_eq!(upstream_since(&p, 0), [(Method::POST, false)]);
    let r = record(p.dir(), "streamed-after-rotation").await;
    assert!(r.get("resent").is_none(), "{r}");
    // The 401 still made the proxy pick the new token up: the retry by the IdP succeeds.
    let created = p
        .send(
            Method::POST,
            "/SCIM/v2/Users",
            Some(OKTA),
            Some(&user("streamed@example.com")),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED);
    assert_eq!(p.upstream_total(), 2);
    p.stop().await;
}
