//! SCIM bodies, IdP tokens and `Authorization` values, canned upstream answers, and what an upstream
//! recorded.

use std::time::Duration;

use bytes::Bytes;
use http::{Method, StatusCode};
use scim_proxy::lab::upstream::Override;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::*;

/// The old bearer tokens the IdPs keep sending (the proxy only knows their SHA-256).
pub const OKTA: &str = "okta-old-scim-token-5b1e";
pub const ENTRA: &str = "entra-old-scim-token-77c2";

pub const SCIM_ERROR_URN: &str = "urn:ietf:params:scim:api:messages:2.0:Error";

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// A User to create: `userName` and work email `name`, given and family name "Test User".
pub fn user(name: &str) -> serde_json::Value {
    user_called(name, "Test", "User")
}

/// A User to create: `userName` and work email `name`, with the given and family names.
pub fn user_called(name: &str, given: &str, family: &str) -> serde_json::Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": name,
        "active": true,
        "name": {"givenName": given, "familyName": family},
        "emails": [{"primary": true, "type": "work", "value": name}]
    })
}

pub fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// The single request an upstream recorded since `before`, asserting there is exactly one.
pub fn only_new(
    up: &scim_proxy::lab::upstream::Upstream,
    before: usize,
    what: &str,
) -> scim_proxy::lab::upstream::RecordedRequest {
    let seen = up.requests();
    assert_eq!(
        seen.len(),
        before + 1,
        "{what}: the upstream should have received exactly one request, got {:?}",
        seen.get(before..)
            .unwrap_or_default()
            .iter()
            .map(|r| format!("{} {}", r.method, r.path_and_query))
            .collect::<Vec<_>>()
    );
    seen[before].clone()
}

pub fn header<'a>(
    r: &'a scim_proxy::lab::upstream::RecordedRequest,
    name: &str,
) -> Option<&'a str> {
    r.headers.get(name).and_then(|v| v.to_str().ok())
}

/// POST a user with `Host: host`; the answer.
pub async fn create_user_as(
    p: &TestProxy,
    host: &str,
    name: &str,
) -> scim_proxy::lab::client::Answer {
    p.call(
        p.req(Method::POST, "/SCIM/v2/Users")
            .header("host", host)
            .header("authorization", bearer(OKTA))
            .header("content-type", "application/scim+json"),
        user(name).to_string(),
    )
    .await
}

pub fn minimal_user(name: &str) -> serde_json::Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": name,
        "active": true,
        "emails": [{"primary": true, "type": "work", "value": name}]
    })
}

/// JumpCloud's old "Token Key".
pub const JUMPCLOUD: &str = "jumpcloud-old-scim-token-c41d";

pub const USER_URN: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
pub const GROUP_URN: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
pub const ENTERPRISE_URN: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
pub const PATCH_URN: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
pub const LIST_URN: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";

/// A key for `pii_key_file` (16+ characters).
pub const PII_KEY: &str = "pii-key-for-the-observability-tests-0001";

/// What `pii = "hash"` logs for `value` with `key`: `h:` + the first 8 bytes of HMAC-SHA256, in hex.
pub fn pii_hash(key: &str, value: &str) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key.trim().as_bytes()).expect("HMAC key");
    mac.update(value.as_bytes());
    format!("h:{}", hex::encode(&mac.finalize().into_bytes()[..8]))
}

/// The route of the IdP tests: Okta, Entra ID and JumpCloud provisioning into one tenant.
pub fn three_idps() -> RouteSpec {
    RouteSpec::new("main").clients(&[("okta", OKTA), ("entra", ENTRA), ("jumpcloud", JUMPCLOUD)])
}

pub fn scim_error_body(status: u16, scim_type: &str, detail: &str) -> Bytes {
    Bytes::from(
        json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"],
            "status": status.to_string(),
            "scimType": scim_type,
            "detail": detail,
        })
        .to_string(),
    )
}

pub fn canned(status: u16, body: Bytes, delay: Duration) -> Override {
    Override {
        status: StatusCode::from_u16(status).expect("status"),
        headers: vec![("content-type".into(), "application/scim+json".into())],
        body,
        delay,
    }
}

pub fn empty_list() -> Bytes {
    Bytes::from(
        json!({"schemas": [LIST_URN], "totalResults": 0, "startIndex": 1, "itemsPerPage": 0, "Resources": []})
            .to_string(),
    )
}

/// Okta's create body (OKTA-SCIM): password, groups: [], locale, externalId.
pub fn okta_user(user_name: &str, active: bool) -> Value {
    json!({
        "schemas": [USER_URN],
        "userName": user_name,
        "name": {"givenName": "Test", "familyName": "User"},
        "emails": [{"primary": true, "value": user_name, "type": "work"}],
        "displayName": "Test User",
        "locale": "en-US",
        "externalId": "00ujl29u0le5T6Aj10h7",
        "groups": [],
        "password": "1mz050nq",
        "active": active
    })
}

/// Entra ID's create body (MS-SCIM): core + enterprise schemas, externalId, meta.resourceType, roles: [].
pub fn entra_user(user_name: &str) -> Value {
    json!({
        "schemas": [USER_URN, ENTERPRISE_URN],
        "externalId": "0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef",
        "userName": user_name,
        "active": true,
        "emails": [{"primary": true, "type": "work", "value": user_name}],
        "meta": {"resourceType": "User"},
        "name": {"formatted": "Entra User", "familyName": "User", "givenName": "Entra"},
        "roles": [],
        ENTERPRISE_URN: {"employeeNumber": "701984", "department": "Tour Operations"}
    })
}

/// JumpCloud's full user (PUT for every change; `active` is `!suspended && !passwordExpired`).
pub fn jumpcloud_user(user_name: &str, active: bool) -> Value {
    json!({
        "schemas": [USER_URN],
        "userName": user_name,
        "externalId": "5f1e2d3c4b5a69788796a5b4",
        "name": {"givenName": "Jay", "familyName": "Cloud"},
        "emails": [{"primary": true, "type": "work", "value": user_name}],
        "active": active
    })
}

pub fn patch(ops: Value) -> Value {
    json!({"schemas": [PATCH_URN], "Operations": ops})
}
