//! Tests of the report over a morning of traffic log lines, as text and as JSON.

use super::aggregate::generic_detail;
use super::*;

/// A morning of three IdPs behind one proxy, as the traffic log writes it (pii = hash).
const LOG: &str = r#"{"ts":"2025-03-01T09:00:00.112Z","request_id":"e-001","route":"entra","client":"entra-prod","src_ip":"20.44.16.7","method":"GET","path":"/SCIM/v2/Users?filter=userName%20eq%20%22h:5f0c1d2e3a4b5c6d%22","upstream_path":"/api/v2/scim/Users?filter=userName%20eq%20%22h:5f0c1d2e3a4b5c6d%22","status":200,"upstream_status":200,"duration_ms":212,"upstream_ms":201,"bytes_in":0,"bytes_out":112,"auth":"ok","resource":"User","op":"user.lookup","subject":"h:5f0c1d2e3a4b5c6d"}
{"ts":"2025-03-01T09:00:00.530Z","request_id":"e-002","route":"entra","client":"entra-prod","src_ip":"20.44.16.7","method":"POST","path":"/SCIM/v2/Users","upstream_path":"/api/v2/scim/Users","status":201,"upstream_status":201,"duration_ms":388,"upstream_ms":377,"bytes_in":702,"bytes_out":655,"auth":"ok","resource":"User","op":"user.create","resource_id":"2819c223-7f76-453a-919d-413861904646","subject":"h:5f0c1d2e3a4b5c6d"}
{"ts":"2025-03-01T09:00:01.004Z","request_id":"e-003","route":"entra","client":"entra-prod","src_ip":"20.44.16.7","method":"GET","path":"/SCIM/v2/Users?filter=userName%20eq%20%22h:0a1b2c3d4e5f6071%22","upstream_path":"/api/v2/scim/Users?filter=userName%20eq%20%22h:0a1b2c3d4e5f6071%22","status":200,"upstream_status":200,"duration_ms":190,"upstream_ms":181,"bytes_in":0,"bytes_out":112,"auth":"ok","resource":"User","op":"user.lookup","subject":"h:0a1b2c3d4e5f6071"}
{"ts":"2025-03-01T09:00:01.390Z","request_id":"e-004","route":"entra","client":"entra-prod","src_ip":"20.44.16.7","method":"PATCH","path":"/SCIM/v2/Users/6e2e0c5f-0d36-4c8b-9f0e-3b9d2b1f7a10","upstream_path":"/api/v2/scim/Users/6e2e0c5f-0d36-4c8b-9f0e-3b9d2b1f7a10","status":204,"upstream_status":204,"duration_ms":240,"upstream_ms":229,"bytes_in":148,"bytes_out":0,"auth":"ok","resource":"User","op":"user.deactivate","resource_id":"6e2e0c5f-0d36-4c8b-9f0e-3b9d2b1f7a10"}
{"ts":"2025-03-01T09:40:12.007Z","request_id":"e-005","route":"entra","client":"entra-prod","src_ip":"20.44.16.7","method":"POST","path":"/SCIM/v2/Users","upstream_path":"/api/v2/scim/Users","status":504,"duration_ms":30002,"bytes_in":688,"bytes_out":160,"auth":"ok","resource":"User","op":"user.create","subject":"h:9d8c7b6a59483726","error":"upstream-timeout"}
2025-03-01T09:41:00.000Z  WARN scim_proxy: some tracing line that ended up in the file

{"ts":"2025-03-01T10:00:00.250Z","request_id":"o-001","route":"okta","client":"okta","src_ip":"52.5.1.9","method":"GET","path":"/SCIM/v2/Users?startIndex=1&count=2","upstream_path":"/api/v2/scim/Users?startIndex=1&count=2","status":200,"upstream_status":200,"duration_ms":150,"upstream_ms":141,"bytes_in":0,"bytes_out":900,"auth":"ok","resource":"User","op":"user.list"}
{"ts":"2025-03-01T10:02:10.000Z","request_id":"o-002","route":"okta","client":"okta","src_ip":"52.5.1.9","method":"POST","path":"/SCIM/v2/Users","upstream_path":"/api/v2/scim/Users","status":409,"upstream_status":409,"duration_ms":201,"upstream_ms":190,"bytes_in":530,"bytes_out":140,"auth":"ok","resource":"User","op":"user.create","subject":"h:1111aaaa2222bbbb","detail":"User already exists in the database.","scimType":"uniqueness"}
{"ts":"2025-03-01T10:02:40.000Z","request_id":"o-003","route":"okta","client":"okta","src_ip":"52.5.1.9","method":"POST","path":"/SCIM/v2/Users","upstream_path":"/api/v2/scim/Users","status":409,"upstream_status":409,"duration_ms":199,"upstream_ms":188,"bytes_in":528,"bytes_out":140,"auth":"ok","resource":"User","op":"user.create","subject":"h:3333cccc4444dddd","detail":"User already exists in the database.","scimType":"uniqueness"}
{"ts":"2025-03-01T10:01:00.000Z","request_id":"o-004","route":"okta","client":"okta","src_ip":"52.5.1.9","method":"GET","path":"/SCIM/v2/Users?filter=userName%20eq%20%22h:1111aaaa2222bbbb%22&startIndex=1&count=100","upstream_path":"/api/v2/scim/Users?filter=userName%20eq%20%22h:1111aaaa2222bbbb%22&startIndex=1&count=100","status":200,"upstream_status":200,"duration_ms":160,"upstream_ms":150,"bytes_in":0,"bytes_out":112,"auth":"ok","resource":"User","op":"user.lookup","subject":"h:1111aaaa2222bbbb"}
{"ts":"2025-03-01T11:00:00.000Z","request_id":"j-001","route":"jumpcloud","src_ip":"34.82.0.4","method":"GET","path":"/SCIM/v2/Users?filter=userName%20eq%20%22h:7777eeee8888ffff%22","status":401,"duration_ms":1,"bytes_in":0,"bytes_out":182,"auth":"unknown-token","resource":"User","op":"user.lookup","subject":"h:7777eeee8888ffff","error":"unauthorized"}
{"ts":"2025-03-01T11:00:05.000Z","request_id":"j-002","route":"jumpcloud","src_ip":"34.82.0.4","method":"POST","path":"/SCIM/v2/Users","status":401,"duration_ms":1,"bytes_in":0,"bytes_out":182,"auth":"unknown-token","resource":"User","op":"user.create","error":"unauthorized"}
{"ts":"2025-03-01T11:00:10.000Z","request_id":"j-003","route":"jumpcloud","src_ip":"34.82.0.4","method":"POST","path":"/SCIM/v2/Groups","status":401,"duration_ms":1,"bytes_in":0,"bytes_out":182,"auth":"unknown-token","resource":"Group","op":"group.create","error":"unauthorized"}
{"ts":"truncated
"#;

fn report(input: &str, json: bool) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("traffic.log");
    std::fs::write(&path, input).unwrap();
    let mut out = Vec::new();
    run(&[path], json, &mut out).unwrap();
    String::from_utf8(out).unwrap()
}

#[test]
fn text_report() {
    let want = r#"12 requests from 2 IdPs, 3 of them unauthenticated (2 lines skipped: not traffic records)

== entra/entra-prod ==
  first seen  2025-03-01T09:00:00.112Z
  last seen   2025-03-01T09:40:12.007Z
  requests    5: 4 2xx, 0 4xx, 1 5xx, 0 refused by proxy

  op               total    2xx    4xx    5xx  refused
  user.create          2      1      0      1        0
  user.lookup          2      2      0      0        0
  user.deactivate      1      1      0      0        0

  failures by reason
       1 x 504 from proxy (upstream-timeout)
           first 2025-03-01T09:40:12.007Z  last 2025-03-01T09:40:12.007Z
           e.g. 2025-03-01T09:40:12.007Z e-005 user.create h:9d8c7b6a59483726 POST /SCIM/v2/Users

== jumpcloud/(unauthenticated) (no configured client token matched) ==
  first seen  2025-03-01T11:00:00.000Z
  last seen   2025-03-01T11:00:10.000Z
  requests    3: 0 2xx, 0 4xx, 0 5xx, 3 refused by proxy

  op            total    2xx    4xx    5xx  refused
  group.create      1      0      0      0        1
  user.create       1      0      0      0        1
  user.lookup       1      0      0      0        1

  failures by reason
       3 x 401 refused by proxy (unauthorized, auth unknown-token)
           first 2025-03-01T11:00:00.000Z  last 2025-03-01T11:00:10.000Z
           e.g. 2025-03-01T11:00:10.000Z j-003 group.create - POST /SCIM/v2/Groups

== okta/okta ==
  first seen  2025-03-01T10:00:00.250Z
  last seen   2025-03-01T10:02:40.000Z
  requests    4: 2 2xx, 2 4xx, 0 5xx, 0 refused by proxy

  op           total    2xx    4xx    5xx  refused
  user.create      2      0      2      0        0
  user.list        1      1      0      0        0
  user.lookup      1      1      0      0        0

  failures by reason
       2 x 409 from upstream, scimType uniqueness: "User already exists in the database."
           first 2025-03-01T10:02:10.000Z  last 2025-03-01T10:02:40.000Z
           e.g. 2025-03-01T10:02:40.000Z o-003 user.create h:3333cccc4444dddd POST /SCIM/v2/Users
"#;
    assert_eq!(report(LOG, false), want);
}

#[test]
fn json_report() {
    let v: serde_json::Value = serde_json::from_str(&report(LOG, true)).unwrap();
    assert_eq!(v["records"], 12);
    assert_eq!(v["skipped_lines"], 2);
    let idps = v["idps"].as_array().unwrap();
    let names: Vec<&str> = idps.iter().map(|i| i["idp"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "entra/entra-prod",
            "jumpcloud/(unauthenticated)",
            "okta/okta"
        ]
    );

    let entra = &idps[0];
    assert_eq!(entra["route"], "entra");
    assert_eq!(entra["first_seen"], "2025-03-01T09:00:00.112Z");
    assert_eq!(entra["last_seen"], "2025-03-01T09:40:12.007Z");
    assert_eq!(
        entra["outcomes"],
        serde_json::json!({"requests": 5, "2xx": 4, "4xx": 0, "5xx": 1, "refused": 0, "other": 0})
    );
    assert_eq!(
        entra["ops"][0],
        serde_json::json!({"op": "user.create", "requests": 2, "2xx": 1, "4xx": 0, "5xx": 1, "refused": 0, "other": 0})
    );
    assert_eq!(
        entra["failures"][0],
        serde_json::json!({"status": 504, "by": "proxy", "error": "upstream-timeout", "count": 1,
                "first_seen": "2025-03-01T09:40:12.007Z", "last_seen": "2025-03-01T09:40:12.007Z",
                "example": {"ts": "2025-03-01T09:40:12.007Z", "request_id": "e-005", "op": "user.create",
                    "subject": "h:9d8c7b6a59483726", "method": "POST", "path": "/SCIM/v2/Users"}})
    );

    let jumpcloud = &idps[1];
    assert_eq!(jumpcloud["client"], serde_json::Value::Null);
    assert_eq!(jumpcloud["outcomes"]["refused"], 3);
    let f = &jumpcloud["failures"][0];
    assert_eq!(
        (
            f["status"].as_u64(),
            f["auth"].as_str(),
            f["count"].as_u64()
        ),
        (Some(401), Some("unknown-token"), Some(3))
    );

    let okta = &idps[2];
    assert_eq!(okta["failures"].as_array().unwrap().len(), 1);
    let f = &okta["failures"][0];
    assert_eq!(f["by"], "upstream");
    assert_eq!(f["scimType"], "uniqueness");
    assert_eq!(f["detail"], "User already exists in the database.");
    assert_eq!(f["count"], 2);
    assert_eq!(f["example"]["request_id"], "o-003", "the latest example");
    assert_eq!(f["first_seen"], "2025-03-01T10:02:10.000Z");
    assert_eq!(
        okta["first_seen"], "2025-03-01T10:00:00.250Z",
        "out-of-order lines"
    );
}

#[test]
fn reads_what_the_writer_writes() {
    use crate::observe::traffic_log::{Pii, PiiPolicy, TrafficLog, TrafficRecord};
    use crate::scim::reading::read_request;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.log");
    let pii = PiiPolicy::new(Pii::Hash, b"k".to_vec());
    {
        let log = TrafficLog::file(&path, 1 << 20, 1).unwrap();
        let body = serde_json::json!({"userName": "a@b.c"});
        let reading = read_request(&http::Method::POST, "/Users", None, Some(&body));
        let mut rec = TrafficRecord::new(
            "r1",
            [10, 0, 0, 1].into(),
            &http::Method::POST,
            "/SCIM/v2/Users",
            &pii,
        );
        rec.route = Some("acme".into());
        rec.client = Some("okta".into());
        rec.status = 409;
        rec.upstream_status = Some(409);
        rec.set_reading(&reading, &pii);
        rec.set_upstream_error(
            &serde_json::json!({"scimType": "uniqueness", "detail": "a@b.c exists"}),
            &reading,
            &pii,
        );
        log.write(&rec);
    }
    let mut out = Vec::new();
    run(&[path], true, &mut out).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["records"], 1);
    let f = &v["idps"][0]["failures"][0];
    let h = pii.apply("a@b.c").unwrap();
    assert_eq!(f["detail"], "h:… exists", "grouped whoever it names");
    assert_eq!(f["example"]["subject"], h);
    assert_eq!(f["example"]["op"], "user.create");
}

#[test]
fn hashed_names_in_details_group_together() {
    let line = |id: &str, h: &str| {
        format!(
            r#"{{"ts":"2025-03-01T10:0{id}:00.000Z","request_id":"r{id}","route":"okta","client":"okta","status":409,"upstream_status":409,"op":"user.create","subject":"{h}","detail":"User {h} already exists","scimType":"uniqueness"}}"#
        )
    };
    let log = [
        line("1", "h:1111aaaa2222bbbb"),
        line("2", "h:3333cccc4444dddd"),
    ]
    .join("\n");
    let v: serde_json::Value = serde_json::from_str(&report(&log, true)).unwrap();
    let failures = v["idps"][0]["failures"].as_array().unwrap();
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0]["detail"], "User h:… already exists");
    assert_eq!(failures[0]["count"], 2);
    assert_eq!(
        generic_detail("path:0123456789abcdef0 h:0123"),
        "path:0123456789abcdef0 h:0123"
    );
}

#[test]
fn empty_input_and_missing_file() {
    assert_eq!(report("", false), "0 requests from 0 IdPs\n");
    let mut out = Vec::new();
    let err = run(
        &[PathBuf::from("/nonexistent/traffic.log")],
        false,
        &mut out,
    )
    .unwrap_err();
    assert!(err.starts_with("/nonexistent/traffic.log: "), "{err}");
}

#[test]
fn several_files_add_up() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("x.log.1"), dir.path().join("x.log"));
    let mut lines = LOG.lines();
    std::fs::write(&a, lines.by_ref().take(3).collect::<Vec<_>>().join("\n")).unwrap();
    std::fs::write(&b, lines.collect::<Vec<_>>().join("\n")).unwrap();
    let mut out = Vec::new();
    run(&[a, b], true, &mut out).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(
        (v["records"].as_u64(), v["skipped_lines"].as_u64()),
        (Some(12), Some(2))
    );
}
