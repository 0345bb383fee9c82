//! The traffic log: every field of each record of realistic Okta, Entra ID and JumpCloud sequences,
//! the SCIM reading of their requests, the PII policy, captured bodies, and the file sink.
//! Requests carry an `X-Request-Id` of the test's own, so each one's record is found by id.

use std::collections::BTreeSet;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::{Method, StatusCode};
use scim_proxy::lab::client::Answer;
use serde_json::{Value, json};

use crate::support::*;

fn is_pii_hash(s: &str) -> bool {
    s.len() == 18
        && s.starts_with("h:")
        && s[2..]
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn keys(r: &Value) -> BTreeSet<String> {
    r.as_object().expect("object").keys().cloned().collect()
}

fn key_set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

async fn reading_proxy() -> TestProxy {
    let mut prepared = Builder::new().routes(vec![three_idps()]).prepare().await;
    log_config(&mut prepared, "pii = \"plain\"\n");
    prepared.start().await
}

/// What the traffic log reads of the upstream's answer: the same records whether the upstream
/// announces a Content-Length or answers chunked (streamed bodies are teed for the record).
async fn records_of_read_and_conflict(chunked: bool) -> (Value, Value) {
    let mut prepared = Builder::new().h1_upstream().prepare().await;
    log_config(&mut prepared, "pii = \"plain\"\n");
    let p = prepared.start().await;
    p.upstream(0).set_chunked(chunked);
    let framing = |a: &Answer| a.header("content-length").is_some();
    let user = okta_user("framing.user@example.com", true);
    let created = send(
        &p,
        Some(OKTA),
        None,
        Method::POST,
        "/SCIM/v2/Users",
        Some(&user),
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED);
    let uid = id_of(&created);

    let read = send(
        &p,
        Some(OKTA),
        Some("framing-read"),
        Method::GET,
        &format!("/SCIM/v2/Users/{uid}"),
        None,
    )
    .await;
    assert_eq!(read.status, StatusCode::OK);
    assert_eq!(read.json()["userName"], "framing.user@example.com");
    // The upstream's framing carries through: a chunked answer is streamed, not read whole.
    assert_eq!(framing(&read), !chunked, "{:?}", read.headers);
    let dup = send(
        &p,
        Some(OKTA),
        Some("framing-dup"),
        Method::POST,
        "/SCIM/v2/Users",
        Some(&user),
    )
    .await;
    assert_eq!(dup.status, StatusCode::CONFLICT);
    assert_eq!(framing(&dup), !chunked, "{:?}", dup.headers);
    let records = (
        record(p.dir(), "framing-read").await,
        record(p.dir(), "framing-dup").await,
    );
    p.stop().await;
    records
}

/// Every form of `name` a log could carry: as is, lower-cased, and percent-encoded.
fn assert_never_named(raw: &str, name: &str) {
    let lower = raw.to_lowercase();
    for form in [name.to_lowercase(), name.replace('@', "%40").to_lowercase()] {
        assert!(!lower.contains(&form), "{form} is in the log:\n{raw}");
    }
}

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_field_of_each_record_of_a_realistic_sequence() {
    let dead_port = unused_port().await;
    let p = Builder::new()
        .limit("upstream_timeout", "\"3s\"")
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
    let up = p.upstream(0).clone();
    let started = SystemTime::now();
    let forwarded = key_set(&[
        "ts",
        "request_id",
        "route",
        "client",
        "src_ip",
        "method",
        "path",
        "upstream_path",
        "status",
        "upstream_status",
        "duration_ms",
        "upstream_ms",
        "bytes_in",
        "bytes_out",
        "auth",
        "resource",
        "op",
    ]);
    let with = |extra: &[&str]| -> BTreeSet<String> {
        let mut k = forwarded.clone();
        k.extend(extra.iter().map(|s| s.to_string()));
        k
    };
    let mut all = Vec::new();

    // Okta's connection test, with its own X-Request-Id: kept, returned, and what the upstream saw.
    let a = send(
        &p,
        Some(OKTA),
        Some("okta-conn-test-1"),
        Method::GET,
        "/SCIM/v2/Users?startIndex=1&count=2",
        None,
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.header("x-request-id"), Some("okta-conn-test-1"));
    let r = record(p.dir(), "okta-conn-test-1").await;
    assert_eq!(keys(&r), forwarded, "{r}");
    assert_eq!(r["route"], "main");
    assert_eq!(r["client"], "okta");
    assert_eq!(r["src_ip"], "127.0.0.1");
    assert_eq!(r["method"], "GET");
    assert_eq!(r["path"], "/SCIM/v2/Users?startIndex=1&count=2");
    assert_eq!(
        r["upstream_path"],
        "/api/v2/scim/Users?startIndex=1&count=2"
    );
    assert_eq!(r["status"], 200);
    assert_eq!(r["upstream_status"], 200);
    assert_eq!(r["bytes_in"], 0);
    assert_eq!(r["bytes_out"], json!(a.body.len()));
    assert_eq!(r["auth"], "ok");
    assert_eq!(r["resource"], "User");
    assert_eq!(r["op"], "user.list");
    let seen = upstream_saw(&up, "okta-conn-test-1");
    assert_eq!(
        seen.path_and_query,
        "/api/v2/scim/Users?startIndex=1&count=2"
    );
    all.push(r);

    // No X-Request-Id: one is generated, returned, sent upstream and logged.
    let body = okta_user("pat.doe@example.com", true);
    let a = send(
        &p,
        Some(OKTA),
        None,
        Method::POST,
        "/SCIM/v2/Users",
        Some(&body),
    )
    .await;
    assert_eq!(a.status, StatusCode::CREATED);
    let rid = a
        .header("x-request-id")
        .expect("a generated X-Request-Id is returned")
        .to_owned();
    assert!(uuid::Uuid::parse_str(&rid).is_ok(), "{rid}");
    let r = record(p.dir(), &rid).await;
    assert_eq!(keys(&r), with(&["resource_id", "subject"]), "{r}");
    assert_eq!(r["method"], "POST");
    assert_eq!(r["status"], 201);
    assert_eq!(r["upstream_status"], 201);
    assert_eq!(r["bytes_in"], json!(body.to_string().len()));
    assert_eq!(r["bytes_out"], json!(a.body.len()));
    assert_eq!(r["op"], "user.create");
    assert_eq!(r["resource_id"], a.json()["id"]);
    assert!(is_pii_hash(r["subject"].as_str().unwrap()), "{r}");
    assert_eq!(upstream_saw(&up, &rid).body.len(), body.to_string().len());
    let uid = id_of(&a);
    all.push(r);

    // The same user again: the upstream's 409 detail and scimType are in the record.
    let a = send(
        &p,
        Some(OKTA),
        Some("okta-dup"),
        Method::POST,
        "/SCIM/v2/Users",
        Some(&body),
    )
    .await;
    assert_eq!(a.status, StatusCode::CONFLICT);
    let r = record(p.dir(), "okta-dup").await;
    assert_eq!(keys(&r), with(&["subject", "detail", "scimType"]), "{r}");
    assert_eq!(r["status"], 409);
    assert_eq!(r["upstream_status"], 409);
    assert_eq!(r["scimType"], "uniqueness");
    let detail = r["detail"].as_str().unwrap();
    assert!(detail.contains("already exists"), "{detail}");
    assert!(!detail.contains("pat.doe"), "the user is named: {detail}");
    assert_eq!(r["bytes_out"], json!(a.body.len()));
    all.push(r);

    // An upstream SCIM Error of another kind, as it came.
    up.push_override(canned(
        400,
        scim_error_body(
            400,
            "invalidValue",
            "Attribute 'nickName' is not supported by this tenant",
        ),
        Duration::ZERO,
    ));
    let nick = patch(json!([{"op": "replace", "path": "nickName", "value": "Pat"}]));
    let a = send(
        &p,
        Some(OKTA),
        Some("okta-400"),
        Method::PATCH,
        &format!("/SCIM/v2/Users/{uid}"),
        Some(&nick),
    )
    .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    let r = record(p.dir(), "okta-400").await;
    assert_eq!(
        keys(&r),
        with(&["resource_id", "detail", "scimType"]),
        "{r}"
    );
    assert_eq!(
        r["detail"],
        "Attribute 'nickName' is not supported by this tenant"
    );
    assert_eq!(r["scimType"], "invalidValue");
    assert_eq!(r["op"], "user.update");
    assert_eq!(r["resource_id"], json!(uid));
    assert_eq!(r["bytes_in"], json!(nick.to_string().len()));
    all.push(r);

    // A credential misplaced in the query: masked in both paths, never in the log.
    let a = send(
        &p,
        Some(OKTA),
        Some("okta-query-token"),
        Method::GET,
        "/SCIM/v2/Users?access_token=SeCrEt-ONE-77&startIndex=1&token=SeCrEt-TWO-88&count=2",
        None,
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    let r = record(p.dir(), "okta-query-token").await;
    assert_eq!(
        r["path"],
        "/SCIM/v2/Users?access_token=***&startIndex=1&token=***&count=2"
    );
    assert_eq!(
        r["upstream_path"],
        "/api/v2/scim/Users?access_token=***&startIndex=1&token=***&count=2"
    );
    all.push(r);

    // Refused by the proxy: auth outcome, error, and nothing about an upstream.
    let refused = key_set(&[
        "ts",
        "request_id",
        "route",
        "src_ip",
        "method",
        "path",
        "status",
        "duration_ms",
        "bytes_in",
        "bytes_out",
        "auth",
        "error",
    ]);
    for (rid, authz, outcome) in [
        ("auth-missing", None, "missing"),
        ("auth-basic", Some("Basic b2t0YTpzZWNyZXQ="), "bad-scheme"),
        (
            "auth-unknown",
            Some("Bearer not-a-known-idp-token-4b2e"),
            "unknown-token",
        ),
    ] {
        let mut req = p
            .req(Method::GET, "/SCIM/v2/Users?startIndex=1&count=2")
            .header("x-request-id", rid);
        if let Some(v) = authz {
            req = req.header("authorization", v);
        }
        let a = p.call(req, Bytes::new()).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{rid}");
        assert_eq!(a.header("x-request-id"), Some(rid));
        let r = record(p.dir(), rid).await;
        assert_eq!(keys(&r), refused, "{r}");
        assert_eq!(r["auth"], outcome, "{r}");
        assert_eq!(r["error"], "unauthorized");
        assert_eq!(r["status"], 401);
        assert_eq!(r["route"], "main");
        assert_eq!(r["bytes_out"], json!(a.body.len()));
        all.push(r);
    }

    // An answer that took the upstream a while: upstream_ms and duration_ms cover it.
    up.push_override(canned(200, empty_list(), Duration::from_millis(700)));
    let a = send(
        &p,
        Some(ENTRA),
        Some("entra-slow"),
        Method::GET,
        "/SCIM/v2/Users?filter=userName+eq+%22slow%40contoso.com%22",
        None,
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    let r = record(p.dir(), "entra-slow").await;
    assert_eq!(keys(&r), with(&["subject"]), "{r}");
    assert_eq!(r["client"], "entra");
    assert_eq!(r["op"], "user.lookup");
    let (up_ms, total_ms) = (
        r["upstream_ms"].as_u64().unwrap(),
        r["duration_ms"].as_u64().unwrap(),
    );
    assert!(up_ms >= 700, "{r}");
    assert!(total_ms >= up_ms, "{r}");
    all.push(r);

    // 504: the proxy's own failure, no upstream status.
    up.push_override(canned(200, empty_list(), Duration::from_secs(6)));
    let a = send(
        &p,
        Some(ENTRA),
        Some("entra-timeout"),
        Method::GET,
        "/SCIM/v2/Groups?excludedAttributes=members&filter=displayName+eq+%22Slow%22",
        None,
    )
    .await;
    assert_eq!(a.status, StatusCode::GATEWAY_TIMEOUT);
    let r = record(p.dir(), "entra-timeout").await;
    assert_eq!(r["error"], "upstream-timeout", "{r}");
    assert_eq!(r["status"], 504);
    assert!(r.get("upstream_status").is_none(), "{r}");
    assert_eq!(r["op"], "group.lookup");
    let subject = r["subject"].as_str().unwrap();
    assert_eq!(
        r["upstream_path"],
        json!(format!(
            "/api/v2/scim/Groups?excludedAttributes=members&filter=displayName%20eq%20%22{subject}%22"
        ))
    );
    assert!(r["duration_ms"].as_u64().unwrap() >= 3000, "{r}");
    assert_eq!(r["bytes_out"], json!(a.body.len()));
    all.push(r);

    // 502: nothing listens behind route "dead".
    let a = p
        .call(
            p.req(Method::GET, "/SCIM/v2/Users?startIndex=1&count=2")
                .header("host", "addon-b.example")
                .header("authorization", bearer(OKTA))
                .header("x-request-id", "dead-connect"),
            Bytes::new(),
        )
        .await;
    assert_eq!(a.status, StatusCode::BAD_GATEWAY);
    let r = record(p.dir(), "dead-connect").await;
    assert_eq!(r["route"], "dead");
    assert_eq!(r["client"], "okta");
    assert_eq!(r["error"], "upstream-connect", "{r}");
    assert!(r.get("upstream_status").is_none(), "{r}");
    assert_eq!(
        r["upstream_path"],
        "/api/v2/scim/Users?startIndex=1&count=2"
    );
    all.push(r);

    // Every record: RFC 3339 UTC with milliseconds, within the test's run.
    let finished = SystemTime::now();
    for r in &all {
        let ts = r["ts"].as_str().expect("ts");
        let b = ts.as_bytes();
        assert!(
            ts.len() == 24 && ts.ends_with('Z') && b[10] == b'T' && b[19] == b'.',
            "ts {ts:?}"
        );
        let t = humantime::parse_rfc3339(ts).unwrap_or_else(|e| panic!("ts {ts:?}: {e}"));
        assert!(
            t + Duration::from_secs(1) >= started && t <= finished + Duration::from_secs(1),
            "ts {ts} outside the test"
        );
    }
    let raw = std::fs::read_to_string(p.dir().join("traffic.log")).unwrap();
    for s in p.secrets().iter().map(String::as_str).chain([
        "SeCrEt-ONE-77",
        "SeCrEt-TWO-88",
        "not-a-known-idp-token-4b2e",
        "b2t0YTpzZWNyZXQ=",
    ]) {
        assert!(!raw.contains(s), "{s} is in the traffic log");
    }
    p.stop().await;
}

/// `ts` is documented (src/traffic_log.rs) as the time the request arrived.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ts_is_when_the_request_arrived() {
    let p = Builder::new().start().await;
    let delay = Duration::from_millis(1500);
    p.upstream(0)
        .push_override(canned(200, empty_list(), delay));
    let a = send(
        &p,
        Some(OKTA),
        Some("ts-1"),
        Method::GET,
        "/SCIM/v2/Users",
        None,
    )
    .await;
    let answered = SystemTime::now();
    assert_eq!(a.status, StatusCode::OK);
    let r = record(p.dir(), "ts-1").await;
    let ts = humantime::parse_rfc3339(r["ts"].as_str().unwrap()).unwrap();
    // The request arrived at least `delay` before the answer reached the client.
    assert!(
        ts + delay <= answered + Duration::from_millis(5),
        "ts {} is not the arrival time (answered at {})",
        r["ts"],
        humantime::format_rfc3339_millis(answered)
    );
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn okta_requests_are_read_as_scim_operations() {
    let p = reading_proxy().await;
    okta_flow(&Idp::okta(&p, None)).await;
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entra_requests_are_read_as_scim_operations() {
    let p = reading_proxy().await;
    entra_flow(&Idp::entra(&p, None)).await;
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jumpcloud_requests_are_read_as_scim_operations() {
    let p = reading_proxy().await;
    let j = Idp::jumpcloud(&p, None);
    jumpcloud_flow(&j).await;
    // Discovery, whatever the upstream answers to it (the embedded one has no such endpoint).
    for path in ["/SCIM/v2/ServiceProviderConfig", "/SCIM/v2/Schemas"] {
        j.step(Method::GET, path, None, 404, want("discovery", "discovery"))
            .await;
    }
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scim_reading_of_an_answer_does_not_depend_on_its_framing() {
    let (read, dup) = records_of_read_and_conflict(false).await;
    assert_eq!(read["op"], "user.read");
    assert_eq!(read["subject"], "framing.user@example.com", "{read}");
    assert_eq!(dup["scimType"], "uniqueness", "{dup}");
    let detail = dup["detail"].as_str().expect("detail");
    assert!(detail.contains("already exists"), "{detail}");

    let (chunked_read, chunked_dup) = records_of_read_and_conflict(true).await;
    // Everything but what differs from run to run (ids, times, sizes of the framing).
    let same = |r: &Value| {
        let mut r = r.clone();
        let o = r.as_object_mut().expect("object");
        for k in [
            "ts",
            "duration_ms",
            "upstream_ms",
            "resource_id",
            "path",
            "upstream_path",
            "bytes_out",
        ] {
            o.remove(k);
        }
        r
    };
    assert_eq!(same(&chunked_read), same(&read));
    assert_eq!(same(&chunked_dup), same(&dup));
    assert_eq!(chunked_read["subject"], "framing.user@example.com");
    assert_eq!(chunked_dup["detail"], dup["detail"]);
    assert_eq!(chunked_dup["scimType"], "uniqueness");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pii_hash_is_keyed_stable_across_restarts_and_never_names_the_user() {
    let name = "okta.user@example.com";
    let mut prepared = Builder::new().prepare().await;
    log_config(&mut prepared, "pii_key_file = \"pii.key\"\n");
    write_private(prepared.dir.path(), "pii.key", &format!("{PII_KEY}\n"));
    let p = prepared.start().await;
    let h = pii_hash(PII_KEY, name);
    let lookup = "/SCIM/v2/Users?filter=userName%20eq%20%22okta.user%40example.com%22&startIndex=1&count=100";

    let a = send(&p, Some(OKTA), Some("h-1"), Method::GET, lookup, None).await;
    assert_eq!(a.status, StatusCode::OK);
    let a = send(
        &p,
        Some(OKTA),
        Some("h-2"),
        Method::POST,
        "/SCIM/v2/Users",
        Some(&okta_user(name, true)),
    )
    .await;
    assert_eq!(a.status, StatusCode::CREATED);
    let uid = id_of(&a);
    let a = send(
        &p,
        Some(OKTA),
        Some("h-3"),
        Method::POST,
        "/SCIM/v2/Users",
        Some(&okta_user(name, true)),
    )
    .await;
    assert_eq!(a.status, StatusCode::CONFLICT);
    let a = send(
        &p,
        Some(ENTRA),
        Some("h-4"),
        Method::GET,
        &format!("/SCIM/v2/Users/{uid}"),
        None,
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    let a = send(
        &p,
        Some(ENTRA),
        Some("h-5"),
        Method::GET,
        "/SCIM/v2/Users?filter=userName+eq+%22okta.user%40example.com%22",
        None,
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    for rid in ["h-1", "h-2", "h-3", "h-4", "h-5"] {
        let r = record(p.dir(), rid).await;
        assert_eq!(r["subject"], json!(h), "{r}");
    }
    // The filter literal in both paths is the same hash.
    let r = record(p.dir(), "h-1").await;
    let encoded = format!("%22{h}%22");
    assert!(r["path"].as_str().unwrap().contains(&encoded), "{r}");
    assert!(
        r["upstream_path"].as_str().unwrap().contains(&encoded),
        "{r}"
    );
    let r = record(p.dir(), "h-3").await;
    assert!(
        r["detail"].as_str().unwrap().contains("already exists"),
        "{r}"
    );
    let raw = std::fs::read_to_string(p.dir().join("traffic.log")).unwrap();
    assert_never_named(&raw, name);

    // A restart with the same key file: the same hash.
    let TestProxy {
        running, prepared, ..
    } = p;
    bounded("stop", running.expect("running").stop()).await;
    let p = prepared.start().await;
    let a = send(&p, Some(OKTA), Some("h-6"), Method::GET, lookup, None).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(record(p.dir(), "h-6").await["subject"], json!(h));

    // Another key: another hash, same form.
    write_private(p.dir(), "pii.key", "another-pii-key-of-this-deployment\n");
    let TestProxy {
        running, prepared, ..
    } = p;
    bounded("stop", running.expect("running").stop()).await;
    let p = prepared.start().await;
    let a = send(&p, Some(OKTA), Some("h-7"), Method::GET, lookup, None).await;
    assert_eq!(a.status, StatusCode::OK);
    let other = record(p.dir(), "h-7").await["subject"].clone();
    assert!(is_pii_hash(other.as_str().unwrap()), "{other}");
    assert_ne!(other, json!(h));
    assert_eq!(
        other,
        json!(pii_hash("another-pii-key-of-this-deployment", name))
    );
    let raw = std::fs::read_to_string(p.dir().join("traffic.log")).unwrap();
    assert_never_named(&raw, name);
    p.stop().await;
}

/// The upstream's 409 detail names the user as it stored it (lower-cased by the embedded upstream);
/// the scrubbing of `detail` must catch that form too, not only the exact subject.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pii_hash_keeps_a_non_email_user_name_out_of_an_upstream_detail() {
    let name = "Pat.Doe";
    let p = Builder::new().start().await;
    let body = jumpcloud_user(name, true);
    for rid in ["nd-1", "nd-2"] {
        send(
            &p,
            Some(OKTA),
            Some(rid),
            Method::POST,
            "/SCIM/v2/Users",
            Some(&body),
        )
        .await;
    }
    let r = record(p.dir(), "nd-2").await;
    assert_eq!(r["status"], 409, "{r}");
    let raw = std::fs::read_to_string(p.dir().join("traffic.log")).unwrap();
    assert_never_named(&raw, name);
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pii_plain_names_the_user_and_omit_leaves_the_subject_out() {
    let name = "entra.user@contoso.com";
    let mut prepared = Builder::new().prepare().await;
    log_config(&mut prepared, "pii = \"plain\"\n");
    let mut p = prepared.start().await;
    let lookup = "/SCIM/v2/Users?filter=userName+eq+%22entra.user%40contoso.com%22";
    send(&p, Some(ENTRA), Some("plain-1"), Method::GET, lookup, None).await;
    send(
        &p,
        Some(ENTRA),
        Some("plain-2"),
        Method::POST,
        "/SCIM/v2/Users",
        Some(&entra_user(name)),
    )
    .await;
    let a = send(
        &p,
        Some(ENTRA),
        Some("plain-3"),
        Method::POST,
        "/SCIM/v2/Users",
        Some(&entra_user(name)),
    )
    .await;
    assert_eq!(a.status, StatusCode::CONFLICT);
    let r = record(p.dir(), "plain-1").await;
    assert_eq!(r["subject"], name);
    // Plain keeps the path exactly as received.
    assert_eq!(r["path"], lookup);
    assert_eq!(record(p.dir(), "plain-2").await["subject"], name);
    let r = record(p.dir(), "plain-3").await;
    assert!(r["detail"].as_str().unwrap().contains(name), "{r}");

    // The same proxy reloaded with pii = "omit".
    p.prepared.edit_config("pii = \"plain\"", "pii = \"omit\"");
    p.running().reload().expect("reload");
    send(&p, Some(ENTRA), Some("omit-1"), Method::GET, lookup, None).await;
    send(
        &p,
        Some(ENTRA),
        Some("omit-2"),
        Method::POST,
        "/SCIM/v2/Users",
        Some(&entra_user(name)),
    )
    .await;
    let r = record(p.dir(), "omit-1").await;
    assert!(r.get("subject").is_none(), "{r}");
    assert_eq!(r["op"], "user.lookup");
    assert_eq!(r["path"], "/SCIM/v2/Users?filter=userName%20eq%20%22***%22");
    let r = record(p.dir(), "omit-2").await;
    assert!(r.get("subject").is_none(), "{r}");
    assert_eq!(r["status"], 409);
    assert_eq!(
        r["detail"], "User with userName \"***\" already exists",
        "{r}"
    );
    let text = std::fs::read_to_string(p.dir().join("traffic.log")).unwrap();
    let after: String = text
        .lines()
        .filter(|l| l.contains("\"omit-"))
        .collect::<Vec<_>>()
        .join("\n");
    assert_never_named(&after, name);
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn captured_bodies_mask_passwords_and_follow_the_pii_policy() {
    let name = "okta.user@example.com";
    let mut prepared = Builder::new().prepare().await;
    log_config(
        &mut prepared,
        "pii_key_file = \"pii.key\"\ncapture_bodies = true\n",
    );
    write_private(prepared.dir.path(), "pii.key", PII_KEY);
    let mut p = prepared.start().await;
    let h = |s: &str| json!(pii_hash(PII_KEY, s));

    let body = okta_user(name, true);
    let a = send(
        &p,
        Some(OKTA),
        Some("cap-1"),
        Method::POST,
        "/SCIM/v2/Users",
        Some(&body),
    )
    .await;
    assert_eq!(a.status, StatusCode::CREATED);
    let uid = id_of(&a);
    let r = record(p.dir(), "cap-1").await;
    let req = &r["request_body"];
    assert_eq!(req["password"], "***", "{r}");
    assert_eq!(req["userName"], h(name));
    assert_eq!(req["name"]["givenName"], h("Test"));
    assert_eq!(req["emails"][0]["value"], h(name));
    assert_eq!(req["emails"][0]["type"], "work");
    assert_eq!(req["externalId"], h("00ujl29u0le5T6Aj10h7"));
    assert_eq!(req["active"], true);
    assert_eq!(req["locale"], "en-US");
    let res = &r["response_body"];
    assert_eq!(res["id"], json!(uid), "{r}");
    assert_eq!(res["userName"], h(name));
    assert_ne!(res["password"], "1mz050nq");

    // A PATCH setting a password, and a group whose own name is not personal.
    let a = send(
        &p,
        Some(OKTA),
        Some("cap-2"),
        Method::PATCH,
        &format!("/SCIM/v2/Users/{uid}"),
        Some(&patch(
            json!([{"op": "replace", "path": "password", "value": "n3w-Passw0rd!"}]),
        )),
    )
    .await;
    assert_eq!(a.status, StatusCode::NO_CONTENT);
    let r = record(p.dir(), "cap-2").await;
    assert_eq!(r["request_body"]["Operations"][0]["value"], "***", "{r}");
    assert!(r.get("response_body").is_none(), "a 204 has no body: {r}");
    let group = json!({"schemas": [GROUP_URN], "displayName": "Finance", "members": [{"value": uid, "display": name}]});
    send(
        &p,
        Some(OKTA),
        Some("cap-3"),
        Method::POST,
        "/SCIM/v2/Groups",
        Some(&group),
    )
    .await;
    let r = record(p.dir(), "cap-3").await;
    assert_eq!(r["request_body"]["displayName"], "Finance", "{r}");
    assert_eq!(r["request_body"]["members"][0]["display"], h(name));
    assert_eq!(r["request_body"]["members"][0]["value"], json!(uid));
    let raw = std::fs::read_to_string(p.dir().join("traffic.log")).unwrap();
    for secret in ["1mz050nq", "n3w-Passw0rd!"] {
        assert!(!raw.contains(secret), "{secret} in the log");
    }
    assert_never_named(&raw, name);

    // Plain: personal values shown, the password still masked.
    p.prepared.edit_config(
        "capture_bodies = true",
        "capture_bodies = true\npii = \"plain\"",
    );
    p.running().reload().expect("reload");
    let other = okta_user("kim.lee@example.com", true);
    send(
        &p,
        Some(OKTA),
        Some("cap-4"),
        Method::POST,
        "/SCIM/v2/Users",
        Some(&other),
    )
    .await;
    let r = record(p.dir(), "cap-4").await;
    assert_eq!(r["request_body"]["userName"], "kim.lee@example.com", "{r}");
    assert_eq!(r["request_body"]["password"], "***");
    assert_eq!(r["response_body"]["userName"], "kim.lee@example.com");
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_traffic_file_rotates_under_traffic_keeping_whole_lines() {
    let mut prepared = Builder::new().prepare().await;
    prepared.edit_config(
        "traffic = \"traffic.log\"\n",
        "traffic = \"x.log\"\nmax_file_bytes = 4096\nkeep_files = 2\n",
    );
    let p = prepared.start().await;
    // 4 IdP connections at once, 15 lookups each: about 30 KiB of records.
    let mut tasks = Vec::new();
    for t in 0..4 {
        let client = p.client.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..15 {
                let a = client
                    .send(
                        Method::GET,
                        &format!(
                            "/SCIM/v2/Users?filter=userName%20eq%20%22user{t}-{i}%40example.com%22"
                        ),
                        Some(OKTA),
                        None,
                    )
                    .await
                    .expect("request");
                assert_eq!(a.status, StatusCode::OK);
            }
        }));
    }
    for t in tasks {
        bounded("burst", t).await.expect("task");
    }
    let last = send(
        &p,
        Some(ENTRA),
        Some("the-last-one"),
        Method::GET,
        "/SCIM/v2/Users",
        None,
    )
    .await;
    assert_eq!(last.status, StatusCode::OK);
    let current = p.dir().join("x.log");
    let deadline = Instant::now() + WAIT;
    while !read_records(&current)
        .iter()
        .any(|r| r["request_id"] == "the-last-one")
    {
        assert!(Instant::now() < deadline, "the last record never arrived");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut names: Vec<String> = std::fs::read_dir(p.dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.contains(".log"))
        .collect();
    names.sort();
    assert_eq!(names, ["x.log", "x.log.1", "x.log.2"]);
    let mut ids = BTreeSet::new();
    for name in &names {
        let text = std::fs::read_to_string(p.dir().join(name)).unwrap();
        assert!(text.len() <= 4096, "{name}: {} bytes", text.len());
        assert!(text.ends_with('\n'), "{name} ends mid-line");
        for line in text.lines() {
            let v: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{name}: torn line ({e}): {line}"));
            assert!(
                ids.insert(v["request_id"].as_str().unwrap().to_owned()),
                "duplicate {line}"
            );
        }
    }
    // The last record is the last line of the current file; older ones were rotated away.
    let text = std::fs::read_to_string(&current).unwrap();
    assert!(text.lines().last().unwrap().contains("\"the-last-one\""));
    assert!(ids.len() < 61, "nothing was pruned: {}", ids.len());
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traffic_off_writes_no_record_and_the_access_line_goes_to_stderr() {
    let mut prepared = Builder::new().prepare().await;
    prepared.edit_config("traffic = \"traffic.log\"", "traffic = \"off\"");
    let served = Served::start(&prepared.config_path, &prepared.ca_pem).await;
    let a = served
        .get("/SCIM/v2/Users?startIndex=1&count=2", OKTA, "off-1", None)
        .await;
    assert_eq!(a.status, StatusCode::OK);
    let a = served
        .get(
            "/SCIM/v2/Users",
            "not-a-known-idp-token-4b2e",
            "off-2",
            None,
        )
        .await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    let lines = served
        .wait_events("access lines", 2, |e| {
            e["target"] == "scim_proxy::access" && message(e) == "request"
        })
        .await;
    let ok = lines
        .iter()
        .find(|e| e["request_id"] == "off-1")
        .expect("off-1");
    assert_eq!(ok["status"], 200, "{ok}");
    assert_eq!(ok["upstream_status"], 200);
    assert_eq!(ok["route"], "main");
    assert_eq!(ok["client"], "okta");
    assert_eq!(ok["op"], "user.list");
    assert_eq!(ok["auth"], "ok");
    assert_eq!(ok["src_ip"], "127.0.0.1");
    let refused = lines
        .iter()
        .find(|e| e["request_id"] == "off-2")
        .expect("off-2");
    assert_eq!(refused["status"], 401, "{refused}");
    assert_eq!(refused["auth"], "unknown-token");
    assert!(!served.stderr().contains("not-a-known-idp-token-4b2e"));
    let (stdout, _) = served.stop().await;
    assert_eq!(stdout, "", "traffic = \"off\" writes no record to stdout");
    assert!(!prepared.dir.path().join("traffic.log").exists());
    prepared.shutdown().await;
}
