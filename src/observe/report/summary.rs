//! The report's shape, as printed with `--json` and rendered as text: per IdP, outcomes by op and
//! failures by reason.

use serde::Serialize;

/// Requests by outcome: 2xx, 4xx and 5xx as the client saw them, `refused` when the proxy answered a
/// client fault itself (auth, route, bad target), `other` for 1xx/3xx.
#[derive(Debug, Default, Clone, Serialize, PartialEq, Eq)]
pub struct Outcomes {
    pub requests: u64,
    #[serde(rename = "2xx")]
    pub ok: u64,
    #[serde(rename = "4xx")]
    pub client_error: u64,
    #[serde(rename = "5xx")]
    pub server_error: u64,
    pub refused: u64,
    pub other: u64,
}

/// Why a request failed: what answered, with which status and SCIM error.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Reason {
    pub status: u16,
    /// `upstream` when Netskope answered, `proxy` when the proxy did.
    pub by: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Only for a refused authentication.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth: Option<String>,
    #[serde(rename = "scimType", skip_serializing_if = "Option::is_none")]
    pub scim_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Failure {
    #[serde(flatten)]
    pub reason: Reason,
    pub count: u64,
    pub first_seen: String,
    pub last_seen: String,
    /// The latest request with this reason.
    pub example: Example,
}

#[derive(Debug, Clone, Serialize)]
pub struct Example {
    pub ts: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub op: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

/// The report as printed with `--json`.
#[derive(Debug, Serialize)]
pub struct Summary {
    pub records: u64,
    /// Lines that were not traffic records.
    pub skipped_lines: u64,
    pub idps: Vec<IdpSummary>,
}

#[derive(Debug, Serialize)]
pub struct IdpSummary {
    /// `route/client`; `-` for what is unknown (e.g. no client when authentication failed).
    pub idp: String,
    pub route: Option<String>,
    pub client: Option<String>,
    pub first_seen: String,
    pub last_seen: String,
    pub outcomes: Outcomes,
    /// Busiest first.
    pub ops: Vec<OpSummary>,
    /// Most frequent first.
    pub failures: Vec<Failure>,
}

#[derive(Debug, Serialize)]
pub struct OpSummary {
    pub op: String,
    #[serde(flatten)]
    pub outcomes: Outcomes,
}
