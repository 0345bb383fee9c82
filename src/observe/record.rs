//! The per-request traffic record and its JSON shape.
//!
//! A record is built field by field from non-secret values; the fields that carry client input (`path`,
//! `upstream_path`, `subject`, `detail`, bodies) are private and only set through the masking setters.

mod secrets;
#[cfg(test)]
mod tests;

use std::net::IpAddr;
use std::time::SystemTime;

use serde::Serialize;
use serde_json::Value;

use crate::observe::body_mask::mask_body;
use crate::observe::pii::{PiiPolicy, scrub_text};
use crate::observe::query_mask::loggable_path;
use crate::scim::reading::{Resource, ScimReading, scim_error};

/// One line of the traffic log. Field order is the JSON order.
#[derive(Debug, Clone, Serialize)]
pub struct TrafficRecord {
    /// RFC 3339 UTC with milliseconds, when the request arrived.
    pub ts: String,
    pub request_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
    pub src_ip: IpAddr,
    pub method: String,
    path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    upstream_path: Option<String>,
    pub status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_status: Option<u16>,
    pub duration_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_ms: Option<u64>,
    /// Time waited for a send slot on a paced route.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waited_ms: Option<u64>,
    /// Why the request was sent upstream a second time (`token-rotated`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resent: Option<&'static str>,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// `AuthOutcome::as_str`: a `&'static str` cannot carry anything the client sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource: Option<Resource>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub op: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    subject: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<String>,
    #[serde(rename = "scimType", skip_serializing_if = "Option::is_none")]
    pub scim_type: Option<String>,
    /// `ErrorKind::as_str` when the proxy answered itself.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_body: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_body: Option<Value>,
    /// Secrets masked in every string field when the record is written (see [`TrafficLog::write`]).
    #[serde(skip)]
    secrets: Vec<Vec<u8>>,
    /// SHA-256 of the IdP tokens: a path or query piece hashing to one is masked when written.
    #[serde(skip)]
    token_hashes: Vec<[u8; 32]>,
}

impl TrafficRecord {
    /// A record stamped now. `path_and_query` is the request target as received; it is stored through
    /// [`loggable_path`]. Status and the rest are filled in as the request runs.
    pub fn new(
        request_id: &str,
        src_ip: IpAddr,
        method: &http::Method,
        path_and_query: &str,
        pii: &PiiPolicy,
    ) -> TrafficRecord {
        TrafficRecord {
            ts: rfc3339_millis(SystemTime::now()),
            request_id: request_id.to_owned(),
            route: None,
            client: None,
            src_ip,
            method: method.as_str().to_owned(),
            path: loggable_path(path_and_query, pii),
            upstream_path: None,
            status: 0,
            upstream_status: None,
            duration_ms: 0,
            upstream_ms: None,
            waited_ms: None,
            resent: None,
            bytes_in: 0,
            bytes_out: 0,
            auth: None,
            resource: None,
            op: None,
            resource_id: None,
            subject: None,
            detail: None,
            scim_type: None,
            error: None,
            request_body: None,
            response_body: None,
            secrets: Vec::new(),
            token_hashes: Vec::new(),
        }
    }

    /// IdP tokens, known only by their hash, that no path piece of the written line may be.
    pub fn add_token_hashes(&mut self, hashes: impl IntoIterator<Item = [u8; 32]>) {
        self.token_hashes.extend(hashes);
    }

    /// A secret (the route's v2 token) that no string of the written line may hold, whatever its
    /// spelling in the source (the strings here are already decoded from JSON).
    pub fn add_secret(&mut self, secret: &[u8]) {
        if !secret.is_empty() && !self.secrets.iter().any(|s| s == secret) {
            self.secrets.push(secret.to_vec());
        }
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    pub fn upstream_path(&self) -> Option<&str> {
        self.upstream_path.as_deref()
    }

    /// The subject as logged (after the PII policy).
    pub fn subject(&self) -> Option<&str> {
        self.subject.as_deref()
    }

    pub fn detail(&self) -> Option<&str> {
        self.detail.as_deref()
    }

    pub fn set_upstream_path(&mut self, path_and_query: &str, pii: &PiiPolicy) {
        self.upstream_path = Some(loggable_path(path_and_query, pii));
    }

    /// Resource, op, id, and the subject through the PII policy.
    pub fn set_reading(&mut self, reading: &ScimReading, pii: &PiiPolicy) {
        self.resource = Some(reading.resource);
        self.op = Some(reading.op);
        self.resource_id = reading.resource_id.clone();
        self.subject = reading.subject.as_deref().and_then(|s| pii.apply(s));
    }

    /// `detail` and `scimType` of an upstream error body. The detail is free text that may name the user
    /// (e.g. a 409): the reading's subject and e-mail-like words in it go through the PII policy.
    pub fn set_upstream_error(&mut self, body: &Value, reading: &ScimReading, pii: &PiiPolicy) {
        let (detail, scim_type) = scim_error(body);
        self.detail = detail.map(|d| scrub_text(&d, reading.subject.as_deref(), pii));
        self.scim_type = scim_type;
    }

    /// Capture mode: the request body with secrets masked and personal values per `pii`.
    pub fn set_request_body(&mut self, mut body: Value, pii: &PiiPolicy) {
        mask_body(&mut body, pii);
        self.request_body = Some(body);
    }

    /// Capture mode: the response body with secrets masked and personal values per `pii`.
    pub fn set_response_body(&mut self, mut body: Value, pii: &PiiPolicy) {
        mask_body(&mut body, pii);
        self.response_body = Some(body);
    }
}

/// RFC 3339 UTC with milliseconds, e.g. `2025-03-01T09:00:00.123Z`.
pub fn rfc3339_millis(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}
