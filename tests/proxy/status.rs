//! The status page (`GET /`) and `/status.json` on the admin listener, after a provisioning run
//! with failures: what they show matches the traffic log, a later success clears a resource from
//! the out-of-sync list, `report --out-of-sync` gives the same list, `[admin] token_sha256`
//! guards them, personal values follow `pii = "hash"`, and a real browser renders the page.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::*;

const ALICE: &str = "alice.status@example.com";
const BOB: &str = "bob.status@example.com";
const CAROL: &str = "carol.status@example.com";
const ADMIN_TOKEN: &str = "admin-status-page-token-4f1d";

/// What the run left: alice's id (her Entra PATCHes failed) and carol's (her failed PATCH was
/// followed by a successful one).
struct Flow {
    alice_id: String,
    carol_id: String,
    /// Traffic records the run wrote.
    records: usize,
}

/// A proxy with the admin listener, `pii = "hash"` with a known key, and a v2 token that expires
/// in five days (inside the default 14 `token_warn_days`).
async fn proxy(admin_token: Option<&str>) -> TestProxy {
    let expires = SystemTime::now() + 5 * DAY;
    let mut prepared = Builder::new()
        .routes(vec![route_expiring("main", expires)])
        .admin()
        .prepare()
        .await;
    log_config(
        &mut prepared,
        "pii = \"hash\"\npii_key_file = \"pii.key\"\n",
    );
    write_private(prepared.dir.path(), "pii.key", PII_KEY);
    if let Some(t) = admin_token {
        prepared.edit_config(
            "[admin]\naddr = \"127.0.0.1:0\"\n",
            &format!(
                "[admin]\naddr = \"127.0.0.1:0\"\ntoken_sha256 = \"{}\"\n",
                sha256_hex(t.as_bytes())
            ),
        );
    }
    prepared.start().await
}

fn admin_addr(p: &TestProxy) -> SocketAddr {
    p.running().admin_addr.expect("admin listener")
}

/// The identities `/status.json` lists as out of sync, newest failure first.
fn identities(out_of_sync: &Value) -> Vec<Value> {
    out_of_sync["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| e["identity"].clone())
        .collect()
}

/// Okta and Entra provisioning with an upstream 409, a 503, a 401 burst and an unknown IdP token;
/// carol's failed PATCH is seen in the out-of-sync list, then cleared by her next PATCH.
async fn provisioning_with_failures(p: &TestProxy, admin_token: Option<&str>) -> Flow {
    let admin = admin_addr(p);
    let okta = Idp::okta(p, Some(PII_KEY));
    let entra = Idp::entra(p, Some(PII_KEY));
    let created = okta
        .step(
            Method::POST,
            "/SCIM/v2/Users",
            Some(okta_user(ALICE, true)),
            201,
            want("User", "user.create").created().subject(ALICE),
        )
        .await;
    let alice_id = id_of(&created);
    // Okta sends the create again: the tenant has her already (409 uniqueness).
    okta.step(
        Method::POST,
        "/SCIM/v2/Users",
        Some(okta_user(ALICE, true)),
        409,
        want("User", "user.create").subject(ALICE),
    )
    .await;
    // Entra creates bob while Netskope is busy.
    p.upstream(0).push_override(canned(
        503,
        scim_error_body(503, "", "Service temporarily unavailable, retry later"),
        Duration::ZERO,
    ));
    entra
        .step(
            Method::POST,
            "/SCIM/v2/Users",
            Some(entra_user(BOB)),
            503,
            want("User", "user.create").subject(BOB),
        )
        .await;
    // Okta creates carol; deactivating her fails once, then succeeds.
    let created = okta
        .step(
            Method::POST,
            "/SCIM/v2/Users",
            Some(okta_user(CAROL, true)),
            201,
            want("User", "user.create").created().subject(CAROL),
        )
        .await;
    let carol_id = id_of(&created);
    let carol_path = format!("/SCIM/v2/Users/{carol_id}");
    let deactivate = patch(json!([{"op": "replace", "path": "active", "value": false}]));
    p.upstream(0).push_override(canned(
        503,
        scim_error_body(503, "", "Service temporarily unavailable, retry later"),
        Duration::ZERO,
    ));
    okta.step(
        Method::PATCH,
        &carol_path,
        Some(deactivate.clone()),
        503,
        want("User", "user.deactivate").id(&carol_id),
    )
    .await;
    let carol = json!({"by": "id", "value": carol_id});
    let seen = status_json(admin, admin_token).await;
    assert!(
        identities(&seen["out_of_sync"]).contains(&carol),
        "carol's failed PATCH makes her out of sync: {:#}",
        seen["out_of_sync"]
    );
    okta.step(
        Method::PATCH,
        &carol_path,
        Some(deactivate),
        204,
        want("User", "user.deactivate").id(&carol_id),
    )
    .await;
    // Entra's PATCHes to alice meet a revoked v2 token: three upstream 401 within a minute.
    let alice_path = format!("/SCIM/v2/Users/{alice_id}");
    for _ in 0..3 {
        p.upstream(0).push_override(canned(
            401,
            scim_error_body(401, "", "Invalid or expired token"),
            Duration::ZERO,
        ));
        entra
            .step(
                Method::PATCH,
                &alice_path,
                Some(patch(
                    json!([{"op": "replace", "path": "displayName", "value": "A"}]),
                )),
                401,
                want("User", "user.update").id(&alice_id),
            )
            .await;
    }
    // An IdP still configured with a token the proxy does not know: refused by the proxy.
    let a = send(
        p,
        Some("stale-idp-token-9a3c"),
        Some("stale-1"),
        Method::GET,
        "/SCIM/v2/Users",
        None,
    )
    .await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    record(p.dir(), "stale-1").await;
    let records = (okta.seq.get() + entra.seq.get()) as usize + 1;
    Flow {
        alice_id,
        carol_id,
        records,
    }
}

/// The outcome of a record as the status page and the report count it.
fn outcome(r: &Value) -> &'static str {
    match r["status"].as_u64().unwrap_or(0) {
        200..=299 => "2xx",
        400..=499 if r.get("upstream_status").is_none() => "refused",
        400..=499 => "4xx",
        500..=599 => "5xx",
        _ => "other",
    }
}

/// No plain userName of the run anywhere in `text`; their hashes are what shows.
fn assert_no_plain_user_names(text: &str, what: &str) {
    for name in [ALICE, BOB, CAROL] {
        let local = name.split('@').next().unwrap();
        assert!(
            !text.contains(local),
            "{what} shows {local:?} under pii = \"hash\""
        );
    }
    for secret in [OKTA, ENTRA, ADMIN_TOKEN] {
        assert!(!text.contains(secret), "{what} shows a token");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_json_matches_the_traffic_log_and_report_out_of_sync_gives_the_same_list() {
    let p = proxy(Some(ADMIN_TOKEN)).await;
    let admin = admin_addr(&p);
    let flow = provisioning_with_failures(&p, Some(ADMIN_TOKEN)).await;
    let log = traffic_records(p.dir(), flow.records).await;
    assert_eq!(log.len(), flow.records);
    let doc = status_json(admin, Some(ADMIN_TOKEN)).await;
    let ctx = format!("{doc:#}");

    // The last failures are the log's failed records, newest first, with the same fields.
    let failed: Vec<&Value> = log
        .iter()
        .rev()
        .filter(|r| r["status"].as_u64() >= Some(400))
        .collect();
    let shown = doc["failures"].as_array().expect("failures");
    assert_eq!(shown.len(), failed.len(), "{ctx}");
    assert_eq!(failed.len(), 7, "409, two 503, three 401, one refusal");
    for (f, r) in shown.iter().zip(&failed) {
        for field in [
            "ts",
            "request_id",
            "route",
            "client",
            "method",
            "op",
            "resource",
            "resource_id",
            "subject",
            "status",
            "upstream_status",
            "scimType",
            "detail",
            "error",
        ] {
            assert_eq!(
                f.get(field),
                r.get(field),
                "{field} of {f} vs the log's {r}"
            );
        }
    }
    let conflict = failed.last().expect("the 409 came first");
    assert_eq!(conflict["scimType"], "uniqueness", "{conflict}");
    assert!(
        conflict["detail"]
            .as_str()
            .unwrap()
            .contains(&pii_hash(PII_KEY, ALICE)),
        "the 409 names alice, hashed: {conflict}"
    );

    // Per IdP: requests in the last hour by outcome, as the log counts them.
    let route = &doc["routes"][0];
    assert_eq!(route["name"], "main");
    for idp in route["idps"].as_array().expect("idps") {
        let client = idp["client"].as_str().unwrap();
        let mine: Vec<&Value> = log
            .iter()
            .filter(|r| r["client"].as_str().unwrap_or("-") == client)
            .collect();
        let n = |o: &str| mine.iter().filter(|r| outcome(r) == o).count();
        let want = json!({
            "requests": mine.len(), "2xx": n("2xx"), "4xx": n("4xx"), "5xx": n("5xx"),
            "refused": n("refused"), "other": n("other"),
        });
        assert_eq!(idp["last_hour"], want, "{client}: {ctx}");
        assert_eq!(idp["last_day"], want, "{client}");
        let last = mine
            .iter()
            .rev()
            .find(|r| r["status"].as_u64() >= Some(400));
        assert_eq!(
            idp["last_failure"]["request_id"],
            last.map_or(Value::Null, |r| r["request_id"].clone())
        );
    }
    let clients: Vec<&str> = route["idps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["client"].as_str().unwrap())
        .collect();
    assert_eq!(clients, ["okta", "entra", "-"]);

    // Who is out of sync: alice by id (Entra's PATCHes), bob and alice by subject (failed
    // creates); carol was cleared by her later successful PATCH.
    let out = &doc["out_of_sync"];
    assert_eq!(
        identities(out),
        [
            json!({"by": "id", "value": flow.alice_id}),
            json!({"by": "subject", "value": pii_hash(PII_KEY, BOB)}),
            json!({"by": "subject", "value": pii_hash(PII_KEY, ALICE)}),
        ],
        "{out:#}"
    );
    assert!(!identities(out).contains(&json!({"by": "id", "value": flow.carol_id})));
    assert_eq!(out["entries"][0]["failures"], 3);
    assert_eq!(out["entries"][0]["last"]["upstream_status"], 401);
    assert_eq!(out["count"], 3);

    // The 401 burst, explained as the log explains it; the token countdown inside warn days.
    let burst = &route["auth_burst"];
    assert_eq!(
        (burst["count"].as_u64(), burst["last_status"].as_u64()),
        (Some(3), Some(401)),
        "{ctx}"
    );
    assert!(burst["meaning"].as_str().unwrap().contains("IP allowlist"));
    assert_eq!(route["token"]["state"], "soon");
    let left = route["token"]["seconds_left"].as_i64().unwrap();
    assert!((4 * 86_400..=5 * 86_400).contains(&left), "{left}");
    assert!(route["last_upstream_success"].is_string());

    // `report --out-of-sync` over the same log: the same list.
    let log_path = p.dir().join("traffic.log");
    let out_cli = run_cli_off_runtime(
        &[
            "report",
            "--out-of-sync",
            "--json",
            log_path.to_str().unwrap(),
        ],
        &[],
        STEP,
    )
    .await;
    assert!(
        out_cli.status.success(),
        "{}",
        String::from_utf8_lossy(&out_cli.stderr)
    );
    let reported: Value = serde_json::from_slice(&out_cli.stdout).expect("--json parses");
    for field in ["count", "entries", "resync"] {
        assert_eq!(reported[field], out[field], "report --out-of-sync {field}");
    }
    let text = run_cli_off_runtime(
        &["report", "--out-of-sync", log_path.to_str().unwrap()],
        &[],
        STEP,
    )
    .await;
    let text = String::from_utf8_lossy(&text.stdout).into_owned();
    assert!(text.starts_with("3 resources out of sync"), "{text}");
    assert!(text.contains("Provision on demand") && text.contains("Retry failed tasks"));

    // pii = "hash": no userName on the page or in the JSON (the 409's detail named alice).
    let page = status_page(admin, Some(ADMIN_TOKEN)).await;
    assert_no_plain_user_names(&doc.to_string(), "/status.json");
    assert_no_plain_user_names(&page, "the page");
    assert!(page.contains(&pii_hash(PII_KEY, BOB)));
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_an_admin_token_the_page_the_json_and_metrics_need_it_and_the_probes_stay_open() {
    let p = proxy(Some(ADMIN_TOKEN)).await;
    let admin = admin_addr(&p);
    for path in ["/", "/status.json", "/metrics"] {
        for token in [None, Some("not-the-admin-token"), Some(OKTA)] {
            let a = admin_get(admin, path, token).await;
            assert_scim_error(&a, 401, &["bearer"], &[ADMIN_TOKEN.to_owned()]);
            let challenge = a.header("www-authenticate").unwrap_or_default();
            assert!(challenge.starts_with("Bearer"), "{path}: {challenge:?}");
        }
        let a = admin_get(admin, path, Some(ADMIN_TOKEN)).await;
        assert_eq!(a.status, StatusCode::OK, "{path} with the token");
    }
    for path in ["/healthz", "/readyz"] {
        let a = admin_get(admin, path, None).await;
        assert_eq!(a.status, StatusCode::OK, "{path} stays open");
    }
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_browser_shows_the_route_the_idps_the_failures_who_is_out_of_sync_and_the_token_countdown()
 {
    let p = proxy(None).await;
    let admin = admin_addr(&p);
    let flow = provisioning_with_failures(&p, None).await;
    traffic_records(p.dir(), flow.records).await;
    let url = format!("http://{admin}/");
    let dom = dump_dom(&url).await;
    assert!(dom.contains("id=\"route-main\""), "the route: {dom}");
    for want in [
        "<b>okta</b>",
        "<b>entra</b>",
        "(unauthenticated)",
        // The failures with the upstream's detail and scimType.
        "already exists",
        "<code>uniqueness</code>",
        "Service temporarily unavailable, retry later",
        "Invalid or expired token",
        "Upstream 401 burst",
        "IP allowlist",
        // Who is out of sync, and what to do per IdP.
        &flow.alice_id,
        &pii_hash(PII_KEY, BOB),
        &pii_hash(PII_KEY, ALICE),
        "Provision on demand",
        "Retry failed tasks",
        // The countdown: five days, inside token_warn_days.
        "token-countdown\">expires in 4 d 23 h",
    ] {
        assert!(dom.contains(want), "the page should show {want:?}:\n{dom}");
    }
    assert!(!dom.contains(&flow.carol_id), "carol is in sync again");
    assert_no_plain_user_names(&dom, "the page in the browser");
    let shot = artifacts_dir().join("status-page.png");
    let _ = std::fs::remove_file(&shot);
    screenshot(&url, &shot).await;
    let png = std::fs::read(&shot).expect("the screenshot was written");
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000,
        "a PNG of the page ({} bytes)",
        png.len()
    );
    p.stop().await;
}

/// With no traffic log, a streamed (chunked) upstream error is still read for the page: its
/// scimType and detail.
#[tokio::test]
async fn with_the_traffic_log_off_a_streamed_failure_still_shows_the_upstream_scim_type_and_detail()
{
    let mut prepared = Builder::new().h1_upstream().admin().prepare().await;
    prepared.edit_config("traffic = \"traffic.log\"", "traffic = \"off\"");
    let p = prepared.start().await;
    p.upstream(0).set_chunked(true);
    let user = okta_user(ALICE, true);
    for want in [201, 409] {
        let res = p
            .send(Method::POST, "/SCIM/v2/Users", Some(OKTA), Some(&user))
            .await;
        assert_eq!(res.status, want);
        assert!(res.header("content-length").is_none(), "streamed");
    }
    let doc = status_json(admin_addr(&p), None).await;
    let failure = &doc["failures"][0];
    assert_eq!(failure["upstream_status"], 409, "{doc:#}");
    assert_eq!(failure["scimType"], "uniqueness", "{doc:#}");
    let detail = failure["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("already exists"), "{doc:#}");
    p.stop().await;
}

/// `check` on an admin listener off loopback: a warning without `token_sha256`, none with it, and
/// a malformed hash is a problem naming the key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_warns_of_an_admin_listener_off_loopback_without_a_token() {
    let mut prepared = Builder::new().admin().prepare().await;
    let config = prepared.config_path.to_str().unwrap().to_owned();
    let loopback = "[admin]\naddr = \"127.0.0.1:0\"\n";
    let args = ["check", "--config", config.as_str()];
    let check = || run_cli_off_runtime(&args, &[], STEP);
    let out = check().await;
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("admin.token_sha256"), "loopback: {stderr}");

    prepared.edit_config(loopback, "[admin]\naddr = \"0.0.0.0:0\"\n");
    let out = check().await;
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(0), "a warning only: {stderr}");
    assert!(
        stderr.lines().any(|l| l.starts_with("warning: ")
            && l.contains("scim-proxy.toml: admin.token_sha256: the admin listener 0.0.0.0:0 is not on a loopback address")),
        "{stderr}"
    );

    let hash = sha256_hex(ADMIN_TOKEN.as_bytes());
    prepared.edit_config(
        "[admin]\naddr = \"0.0.0.0:0\"\n",
        &format!("[admin]\naddr = \"0.0.0.0:0\"\ntoken_sha256 = \"{hash}\"\n"),
    );
    let out = check().await;
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        !stderr.contains("admin.token_sha256"),
        "with a token: {stderr}"
    );

    prepared.edit_config(&hash, ADMIN_TOKEN);
    let out = check().await;
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("scim-proxy.toml: admin.token_sha256: must be 64 hex characters"),
        "{stderr}"
    );
    assert!(
        !stderr.contains(ADMIN_TOKEN),
        "the token itself is not echoed: {stderr}"
    );
    prepared.shutdown().await;
}
