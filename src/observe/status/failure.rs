//! One failed request as the status page keeps it: the fields of its traffic record an admin
//! needs, personal values already as the traffic log writes them (`[log] pii`).

use serde::{Deserialize, Serialize};

/// A failed request (final status 400 or above). Built from a finished exchange by the logging
/// phase, or from a traffic-log line by `report --out-of-sync`: the same fields either way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// When the request arrived, RFC 3339 UTC with milliseconds (the record's `ts`).
    pub ts: String,
    pub request_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
    pub method: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub op: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource_id: Option<String>,
    /// As the traffic log writes it: hashed, plain, or absent under `omit`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    pub status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_status: Option<u16>,
    #[serde(rename = "scimType", skip_serializing_if = "Option::is_none")]
    pub scim_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// What the proxy found wrong when it answered itself (`ErrorKind::as_str`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Failure {
    /// `upstream` when Netskope answered, `proxy` when the proxy did.
    pub fn answered_by(&self) -> &'static str {
        if self.upstream_status.is_some() {
            "upstream"
        } else {
            "proxy"
        }
    }
}

/// A write through the proxy: POST, PUT, PATCH or DELETE on a user or group (a search is not).
pub fn is_write(method: &str, resource: Option<&str>, op: Option<&str>) -> bool {
    matches!(method, "POST" | "PUT" | "PATCH" | "DELETE")
        && matches!(resource, Some("User" | "Group"))
        && op != Some("search")
}
