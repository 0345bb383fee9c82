//! SCIM Error answers (RFC 7644 §3.12) with Netskope's plain-JSON content type.

use bytes::Bytes;
use http::StatusCode;
use serde_json::{Value, json};

use super::response::{Resp, response};
use super::{ERROR_JSON, ERROR_URN};

/// A SCIM Error answer (RFC 7644 §3.12).
#[derive(Debug)]
pub(super) struct ScimError {
    pub(super) status: StatusCode,
    pub(super) scim_type: Option<&'static str>,
    pub(super) detail: String,
}

impl ScimError {
    pub(super) fn new(status: StatusCode, scim_type: Option<&'static str>, detail: String) -> Self {
        ScimError {
            status,
            scim_type,
            detail,
        }
    }
    pub(super) fn bad_request(scim_type: &'static str, detail: String) -> Self {
        Self::new(StatusCode::BAD_REQUEST, Some(scim_type), detail)
    }
    pub(super) fn not_found(detail: String) -> Self {
        Self::new(StatusCode::NOT_FOUND, None, detail)
    }
    pub(super) fn into_response(self) -> Resp {
        let mut body = json!({
            "schemas": [ERROR_URN],
            "status": self.status.as_u16().to_string(),
            "detail": self.detail,
        });
        if let (Some(t), Some(m)) = (self.scim_type, body.as_object_mut()) {
            m.insert("scimType".into(), Value::from(t));
        }
        let bytes = serde_json::to_vec(&body)
            .map(Bytes::from)
            .unwrap_or_default();
        response(self.status, ERROR_JSON, bytes)
    }
}

pub(super) fn invalid_syntax(detail: impl Into<String>) -> ScimError {
    ScimError::bad_request("invalidSyntax", detail.into())
}

pub(super) fn invalid_path(detail: impl Into<String>) -> ScimError {
    ScimError::bad_request("invalidPath", detail.into())
}
