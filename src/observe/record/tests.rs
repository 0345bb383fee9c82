//! Tests of the record: its JSON shape, the PII policy on its fields, and secrets masked when written.

use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use http::Method;
use serde_json::{Value, json};

use super::*;
use crate::observe::pii::{Pii, PiiPolicy};
use crate::observe::sink::TrafficLog;
use crate::observe::test_support::{Shared, full_record, hash_policy, plain, write_now};
use crate::scim::reading::read_request;

#[test]
fn full_record_golden_json() {
    let got = serde_json::to_string(&full_record()).unwrap();
    let h = hash_policy().apply("test.user@okta.local").unwrap();
    let want = format!(
        concat!(
            r#"{{"ts":"2025-03-01T09:15:02.417Z","request_id":"6f1c2a7e-1b9d-4d8e-9a51-0c8f5b2e7d34","#,
            r#""route":"acme","client":"okta","src_ip":"203.0.113.7","method":"POST","#,
            r#""path":"/SCIM/v2/Users?access_token=***","upstream_path":"/api/v2/scim/Users?access_token=***","#,
            r#""status":409,"upstream_status":409,"duration_ms":183,"upstream_ms":171,"#,
            r#""bytes_in":312,"bytes_out":164,"auth":"ok","resource":"User","op":"user.create","#,
            r#""subject":"{h}","detail":"User '{h}' already exists","scimType":"uniqueness","#,
            // serde_json sorts object keys (no `preserve_order`).
            r#""request_body":{{"active":true,"password":"***","#,
            r#""schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"{h}"}},"#,
            r#""response_body":{{"detail":"User '{h}' already exists","#,
            r#""schemas":["urn:ietf:params:scim:api:messages:2.0:Error"],"scimType":"uniqueness","status":"409"}}}}"#
        ),
        h = h
    );
    assert_eq!(got, want);
    assert_eq!(
        h, "h:9e921cc904a5e792",
        "the hash is part of the golden output"
    );
}

#[test]
fn minimal_record_and_proxy_error() {
    let mut rec = TrafficRecord::new(
        "r1",
        "2001:db8::1".parse().unwrap(),
        &Method::GET,
        "/SCIM/v2/Users",
        &plain(),
    );
    rec.ts = "2025-03-01T09:00:00.000Z".into();
    rec.status = 504;
    rec.duration_ms = 30000;
    rec.error = Some(crate::error::ErrorKind::UpstreamTimeout.as_str());
    assert_eq!(
        serde_json::to_string(&rec).unwrap(),
        concat!(
            r#"{"ts":"2025-03-01T09:00:00.000Z","request_id":"r1","src_ip":"2001:db8::1","method":"GET","#,
            r#""path":"/SCIM/v2/Users","status":504,"duration_ms":30000,"bytes_in":0,"bytes_out":0,"#,
            r#""error":"upstream-timeout"}"#
        )
    );
}

#[test]
fn timestamps_are_rfc3339_utc_millis() {
    let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_740_820_502_417);
    assert_eq!(rfc3339_millis(t), "2025-03-01T09:15:02.417Z");
    let now = TrafficRecord::new("r", [127, 0, 0, 1].into(), &Method::GET, "/", &plain()).ts;
    assert!(now.len() == 24 && now.ends_with('Z'), "{now}");
}

#[test]
fn reading_subject_goes_through_the_policy() {
    let reading = read_request(
        &Method::GET,
        "/Users",
        Some("filter=userName+eq+%22alice%40contoso.com%22"),
        None,
    );
    let mut rec = TrafficRecord::new("r", [10, 0, 0, 1].into(), &Method::GET, "/", &plain());
    rec.set_reading(&reading, &hash_policy());
    assert_eq!(
        rec.subject(),
        hash_policy().apply("alice@contoso.com").as_deref()
    );
    assert_eq!(rec.op, Some("user.lookup"));
    rec.set_reading(&reading, &PiiPolicy::new(Pii::Omit, vec![]));
    assert_eq!(rec.subject(), None);
    rec.set_reading(&reading, &plain());
    assert_eq!(rec.subject(), Some("alice@contoso.com"));
}

#[test]
fn error_detail_is_scrubbed() {
    let reading = read_request(
        &Method::POST,
        "/Users",
        None,
        Some(&json!({"userName": "bob.smith"})),
    );
    let body = json!({"detail": "User bob.smith (bob@example.com) already exists.", "scimType": "uniqueness"});
    let mut rec = TrafficRecord::new("r", [10, 0, 0, 1].into(), &Method::POST, "/", &plain());
    rec.set_upstream_error(&body, &reading, &hash_policy());
    let (hs, he) = (
        hash_policy().apply("bob.smith").unwrap(),
        hash_policy().apply("bob@example.com").unwrap(),
    );
    assert_eq!(
        rec.detail(),
        Some(format!("User {hs} ({he}) already exists.").as_str())
    );
    assert_eq!(rec.scim_type.as_deref(), Some("uniqueness"));
    rec.set_upstream_error(&body, &reading, &PiiPolicy::new(Pii::Omit, vec![]));
    assert_eq!(rec.detail(), Some("User *** (***) already exists."));
    rec.set_upstream_error(&body, &reading, &plain());
    assert_eq!(
        rec.detail(),
        Some("User bob.smith (bob@example.com) already exists.")
    );
}

#[test]
fn a_path_piece_hashing_to_an_idp_token_is_masked_when_written() {
    const IDP: &str = "idp-SECRET-okta-1b2c";
    let pii = plain();
    let mut rec = TrafficRecord::new(
        "r-1",
        IpAddr::from([127, 0, 0, 1]),
        &http::Method::GET,
        &format!("/SCIM/v2/Users/{IDP}?x=idp%2DSECRET-okta-1b2c&y=2"),
        &pii,
    );
    rec.set_upstream_path(&format!("/api/v2/scim/Users;{IDP}"), &pii);
    rec.add_token_hashes([crate::auth::token_sha256(IDP.as_bytes())]);
    let buf = Shared::default();
    let log = TrafficLog::writer(buf.clone()).unwrap();
    write_now(&log, &rec);
    let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    assert!(!text.contains("okta-1b2c"), "{text}");
    let v: Value = serde_json::from_str(text.trim()).unwrap();
    assert_eq!(v["path"], "/SCIM/v2/Users/***?x=***&y=2");
}

#[test]
fn every_string_field_is_checked_against_the_secret_when_written() {
    const T: &str = "v2-SECRET-tok-42";
    let pii = plain();
    let mut rec = TrafficRecord::new(
        "r-1",
        IpAddr::from([127, 0, 0, 1]),
        &http::Method::GET,
        "/SCIM/v2/Users/v2%2DSECRET-tok-42?x=1",
        &pii,
    );
    rec.set_upstream_path(&format!("/api/v2/scim/Users?q={T}"), &pii);
    rec.detail = Some(format!("bad {T}"));
    rec.subject = Some(T.into());
    rec.scim_type = Some(T.into());
    rec.resource_id = Some(T.into());
    rec.set_response_body(json!({ "note": [format!("x{T}x")], T: 1 }), &pii);
    rec.add_secret(T.as_bytes());
    let buf = Shared::default();
    let log = TrafficLog::writer(buf.clone()).unwrap();
    write_now(&log, &rec);
    let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(!text.contains(T), "{text}");
    assert!(!text.contains("tok-42"), "{text}");
    let v: Value = serde_json::from_str(text.trim()).unwrap();
    assert_eq!(v["detail"], format!("bad {}", "*".repeat(T.len())));
    assert!(
        v["path"]
            .as_str()
            .unwrap()
            .starts_with("/SCIM/v2/Users/***")
    );
}
