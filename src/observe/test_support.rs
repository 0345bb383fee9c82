//! What the traffic log tests share: policies, a full record, and a writer to read back.

use std::io::{self, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::Method;
use serde_json::json;

use crate::observe::pii::{Pii, PiiPolicy};
use crate::observe::record::TrafficRecord;
use crate::observe::sink::TrafficLog;
use crate::scim::reading::read_request;

/// Writes through the queue and waits until the writer thread has written it.
pub(crate) fn write_now(log: &TrafficLog, record: &TrafficRecord) {
    log.write(record);
    assert!(log.flush(Duration::from_secs(10)), "flush timed out");
}

pub(crate) fn hash_policy() -> PiiPolicy {
    PiiPolicy::new(Pii::Hash, b"traffic-log-test-key".to_vec())
}

pub(crate) fn plain() -> PiiPolicy {
    PiiPolicy::new(Pii::Plain, Vec::new())
}

pub(crate) fn full_record() -> TrafficRecord {
    let pii = hash_policy();
    let body = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": "test.user@okta.local",
        "password": "1mz050nq",
        "active": true
    });
    let mut reading = read_request(&Method::POST, "/Users", None, Some(&body));
    let mut rec = TrafficRecord::new(
        "6f1c2a7e-1b9d-4d8e-9a51-0c8f5b2e7d34",
        "203.0.113.7".parse().unwrap(),
        &Method::POST,
        "/SCIM/v2/Users?access_token=eyJhbGciOi",
        &pii,
    );
    rec.ts = "2025-03-01T09:15:02.417Z".into();
    rec.route = Some("acme".into());
    rec.client = Some("okta".into());
    rec.set_upstream_path("/api/v2/scim/Users?access_token=eyJhbGciOi", &pii);
    rec.status = 409;
    rec.upstream_status = Some(409);
    rec.duration_ms = 183;
    rec.upstream_ms = Some(171);
    rec.bytes_in = 312;
    rec.bytes_out = 164;
    rec.auth = Some("ok");
    let error = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"],
        "scimType": "uniqueness",
        "detail": "User 'test.user@okta.local' already exists", "status": "409"});
    let answer = serde_json::to_vec(&error).unwrap_or_default();
    crate::scim::reading::complete_from_response(&mut reading, 409, Some(&answer));
    rec.set_reading(&reading, &pii);
    rec.set_upstream_error(&error, &reading, &pii);
    rec.error = None;
    rec.set_request_body(body, &pii);
    rec.set_response_body(error, &pii);
    rec
}

#[derive(Clone, Default)]
pub(crate) struct Shared(pub(crate) Arc<Mutex<Vec<u8>>>);

impl Write for Shared {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
