//! Reading traffic logs: the fields of a record the report uses, one JSON line at a time.

use serde::Deserialize;

/// The fields of a traffic record the report uses; `ts` and `status` make a line a record.
#[derive(Debug, Deserialize)]
pub(super) struct Line {
    pub(super) ts: String,
    pub(super) status: u16,
    #[serde(default)]
    pub(super) request_id: Option<String>,
    #[serde(default)]
    pub(super) route: Option<String>,
    #[serde(default)]
    pub(super) client: Option<String>,
    #[serde(default)]
    pub(super) method: Option<String>,
    #[serde(default)]
    pub(super) path: Option<String>,
    #[serde(default)]
    pub(super) upstream_status: Option<u16>,
    #[serde(default)]
    pub(super) auth: Option<String>,
    #[serde(default)]
    pub(super) op: Option<String>,
    #[serde(default)]
    pub(super) resource: Option<String>,
    #[serde(default)]
    pub(super) resource_id: Option<String>,
    #[serde(default)]
    pub(super) subject: Option<String>,
    #[serde(default)]
    pub(super) detail: Option<String>,
    #[serde(default, rename = "scimType")]
    pub(super) scim_type: Option<String>,
    #[serde(default)]
    pub(super) error: Option<String>,
}
