//! `/healthz` and `/readyz`: while running, while draining, and with tokens near or past
//! `token_expires`.

use std::time::{Duration, Instant, SystemTime};

use http::{Method, StatusCode};
use serde_json::json;

use crate::support::*;

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

/// The rotation trap: the admin writes a new token into token_file (as the README says) while
/// token_expires still holds the old token's date. The proxy stays ready, uses the new token, and
/// says the date belongs to the previous token until token_expires is updated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_token_under_an_old_token_expires_stays_ready_and_asks_for_the_new_date() {
    let old_date = rfc3339(SystemTime::now() - DAY);
    let p = Builder::new()
        .admin()
        .routes(vec![route_expiring("main", SystemTime::now() - DAY)])
        .start()
        .await;
    let admin = p.running().admin_addr.expect("admin");
    let (status, body) = readyz(admin).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body["warnings"][0].as_str().unwrap().contains("expired"),
        "{body}"
    );

    let new = format!("v2-rotated-{}", uuid::Uuid::new_v4().simple());
    p.upstream(0).set_tokens(vec![new.clone()]);
    write_private(p.dir(), "main.token", &format!("{new}\n"));
    p.running().reload().expect("reload");
    let (status, body) = readyz(admin).await;
    assert_eq!(status, 200, "{body}");
    let warnings = body["warnings"].as_array().expect("warnings");
    assert_eq!(warnings.len(), 1, "{body}");
    let warning = warnings[0].as_str().unwrap();
    assert!(
        warning.contains("token rotated; update token_expires"),
        "{warning}"
    );
    assert!(!warning.contains(&new), "{warning}");
    let m = scrape(admin).await;
    assert_eq!(
        m.value("scim_proxy_token_expiry_stale", &[("route", "main")]),
        1.0
    );
    assert!(
        !m.text.contains("scim_proxy_token_expiry_seconds{"),
        "the old date says nothing about the new token:\n{}",
        m.text
    );
    // The new token is the one forwarded, and the IdP sees the upstream's answer.
    assert_eq!(p.get("/SCIM/v2/Users", OKTA).await.status, StatusCode::OK);

    // The admin updates the date: the warning goes, the gauge follows the new date.
    let config = std::fs::read_to_string(p.config_path()).unwrap();
    let new_date = rfc3339(SystemTime::now() + 90 * DAY);
    assert!(config.contains(&old_date), "{config}");
    std::fs::write(p.config_path(), config.replace(&old_date, &new_date)).unwrap();
    p.running().reload().expect("reload");
    let (status, body) = readyz(admin).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"status": "ready"}));
    let m = scrape(admin).await;
    assert_eq!(
        m.value("scim_proxy_token_expiry_stale", &[("route", "main")]),
        0.0
    );
    assert!(m.value("scim_proxy_token_expiry_seconds", &[("route", "main")]) > 89.0 * 86_400.0);
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_is_200_with_a_valid_certificate_and_unexpired_tokens() {
    let p = Builder::new()
        .admin()
        .routes(vec![route_expiring("main", SystemTime::now() + 30 * DAY)])
        .start()
        .await;
    let admin = p.running().admin_addr.expect("admin");
    wait_ready(admin).await;
    let h = plain_get(admin, "/healthz").await.expect("healthz");
    assert_eq!(h.status, StatusCode::OK);
    assert_eq!(h.json(), json!({"status": "ok"}));
    let left = scrape(admin)
        .await
        .value("scim_proxy_token_expiry_seconds", &[("route", "main")]);
    assert!(
        (30.0 * 86_400.0 - 120.0..=30.0 * 86_400.0 + 1.0).contains(&left),
        "{left}"
    );
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_warns_of_a_route_whose_token_is_past_token_expires_and_requests_still_go_through() {
    let now = SystemTime::now();
    let p = Builder::new()
        .admin()
        .routes(vec![
            route_expiring("expired", now - 2 * DAY),
            route_expiring("current", now + 30 * DAY).hosts(&["addon-a.example"]),
            RouteSpec::new("unset").hosts(&["addon-b.example"]),
        ])
        .start()
        .await;
    let admin = p.running().admin_addr.expect("admin");
    // A warning, not unreadiness: every replica would leave the Service at once otherwise.
    let (status, body) = readyz(admin).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "ready");
    assert!(body.get("problems").is_none(), "{body}");
    let warnings = body["warnings"].as_array().expect("warnings");
    assert_eq!(warnings.len(), 1, "{body}");
    let warning = warnings[0].as_str().unwrap();
    for part in [
        "route expired",
        "token_expires",
        "expired.token",
        "update token_expires",
    ] {
        assert!(warning.contains(part), "{warning:?} lacks {part:?}");
    }
    for s in p.secrets() {
        assert!(!body.to_string().contains(&s));
    }
    assert_eq!(
        plain_get(admin, "/healthz").await.unwrap().status,
        StatusCode::OK
    );

    // Forwarded all the same: the upstream decides.
    let a = send(
        &p,
        Some(OKTA),
        Some("past-1"),
        Method::GET,
        "/SCIM/v2/Users",
        None,
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    let seen = upstream_saw(p.upstream(0), "past-1");
    assert_eq!(
        seen.headers.get("authorization").unwrap().to_str().unwrap(),
        bearer(p.v2(0))
    );
    assert_eq!(record(p.dir(), "past-1").await["route"], "expired");

    let m = scrape(admin).await;
    let expired = m.value("scim_proxy_token_expiry_seconds", &[("route", "expired")]);
    assert!(
        (-2.0 * 86_400.0 - 120.0..=-2.0 * 86_400.0 + 1.0).contains(&expired),
        "{expired}"
    );
    let current = m.value("scim_proxy_token_expiry_seconds", &[("route", "current")]);
    assert!(current > 29.0 * 86_400.0, "{current}");
    assert_eq!(
        m.get("scim_proxy_token_expiry_seconds", &[("route", "unset")]),
        None
    );
    p.stop().await;
}

/// SIGTERM's drain as the README describes it: `/readyz` turns 503 while in-flight requests finish,
/// and `/healthz` (liveness) keeps answering 200.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_turns_503_and_healthz_stays_200_while_draining() {
    let p = Builder::new()
        .admin()
        .limit("shutdown_grace", "\"10s\"")
        .start()
        .await;
    let admin = p.running().admin_addr.expect("admin");
    wait_ready(admin).await;
    p.upstream(0)
        .push_override(canned(200, empty_list(), Duration::from_secs(2)));
    let client = p.client.clone();
    let slow = tokio::spawn(async move {
        client
            .send(Method::GET, "/SCIM/v2/Users", Some(OKTA), None)
            .await
    });
    let deadline = Instant::now() + WAIT;
    while p.upstream(0).requests().is_empty() {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    p.running().shutdown();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let ready = plain_get(admin, "/readyz").await;
    let health = plain_get(admin, "/healthz").await;
    let a = bounded("slow request", slow)
        .await
        .expect("task")
        .expect("answer");
    assert_eq!(a.status, StatusCode::OK, "the in-flight request finishes");
    p.stop().await;
    let ready = ready.expect("/readyz answers during the drain");
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(String::from_utf8_lossy(&ready.body).contains("not accepting"));
    assert_eq!(
        health.expect("/healthz answers during the drain").status,
        StatusCode::OK
    );
}
