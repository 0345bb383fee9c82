//! The IdP-like provisioning flow the demo drives through the proxy, step by step: what each
//! IdP got, and what the upstream saw (source address, token); last, a token rotation that
//! invalidates the old token at once.

use http::{Method, StatusCode};
use serde_json::json;

use std::path::Path;

use super::{DEMO_EGRESS_IP, DEMO_ENTRA_TOKEN, DEMO_OKTA_TOKEN, DEMO_V2_TOKEN_PREFIX};
use crate::lab::client::{Answer, ScimClient};
use crate::lab::upstream::Upstream;

/// How each IdP shows in the printed steps, and the token it sends.
type Idp = (&'static str, Option<&'static str>);
const OKTA: Idp = ("okta ", Some(DEMO_OKTA_TOKEN));
const ENTRA: Idp = ("entra", Some(DEMO_ENTRA_TOKEN));
const USER_NAME: &str = "jane.doe@example.com";

struct Step<'a> {
    client: &'a ScimClient,
    upstream: &'a Upstream,
    v2_token: String,
    /// The token after the demo's rotation.
    rotated: Option<String>,
    n: usize,
}

impl Step<'_> {
    /// Sends one request as `idp`, prints what the IdP got and what the upstream saw, checks the status.
    async fn call(
        &mut self,
        what: &str,
        idp: (&str, Option<&str>),
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
        want: StatusCode,
    ) -> Result<Answer, String> {
        self.n += 1;
        let seen_before = self.upstream.requests().len();
        let answer = self
            .client
            .send(method.clone(), path, idp.1, body.as_ref())
            .await?;
        println!("{:>2}. {what}", self.n);
        println!("    {} {method} {path}  ->  {}", idp.0, answer.status);
        let seen = self.upstream.requests();
        match seen.get(seen_before..).unwrap_or_default() {
            [] => println!("    upstream saw nothing (refused at the proxy)"),
            reqs => {
                for r in reqs {
                    if r.peer.ip() != DEMO_EGRESS_IP {
                        return Err(format!(
                            "step {} ({what}): the upstream saw the request from {}, not from the fixed egress {DEMO_EGRESS_IP}",
                            self.n,
                            r.peer.ip()
                        ));
                    }
                    let sent = r
                        .headers
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default();
                    let token = match &self.rotated {
                        Some(new) if sent.ends_with(new.as_str()) => "the rotated v2 token",
                        Some(_) if sent.ends_with(&self.v2_token) => "the old v2 token",
                        None if sent.ends_with(&self.v2_token) => "the v2 token",
                        _ => "NO v2 token",
                    };
                    println!(
                        "    upstream saw {} {} from {} with {token}",
                        r.method,
                        r.path_and_query,
                        r.peer.ip(),
                    );
                }
            }
        }
        if answer.status != want {
            return Err(format!(
                "step {} ({what}): expected {want}, got {}: {}",
                self.n,
                answer.status,
                String::from_utf8_lossy(&answer.body)
            ));
        }
        Ok(answer)
    }
}

/// The flow; `token_file`: where the proxy reads the v2 token, rewritten by the last step.
pub(super) async fn drive(
    client: &ScimClient,
    upstream: &Upstream,
    v2_token: &str,
    token_file: &Path,
) -> Result<(), String> {
    let mut s = Step {
        client,
        upstream,
        v2_token: v2_token.to_owned(),
        rotated: None,
        n: 0,
    };
    connect_and_look_up(&mut s).await?;
    let user_id = provision_user(&mut s).await?;
    let group_id = push_group(&mut s, &user_id).await?;
    refuse_then_delete(&mut s, &user_id, &group_id).await?;
    rotate_the_token(&mut s, token_file).await
}

/// The v2 token rotated the way a managed rotation does it: the old token dies the moment the
/// new one is written. The proxy reads the file on the upstream's 401 and sends the request once
/// more, so the IdP never sees the 401.
async fn rotate_the_token(s: &mut Step<'_>, token_file: &Path) -> Result<(), String> {
    let new = format!("{DEMO_V2_TOKEN_PREFIX}{}", uuid::Uuid::new_v4().simple());
    s.upstream.set_token_file(Some(token_file.to_path_buf()));
    super::files::write_private(token_file, &new)?;
    s.rotated = Some(new);
    s.call(
        "The v2 token is rotated and the old one dies at once; Okta lists users",
        OKTA,
        Method::GET,
        "/SCIM/v2/Users?startIndex=1&count=2",
        None,
        StatusCode::OK,
    )
    .await?;
    println!(
        "    the upstream refused the old token (401); the proxy re-read the token file and sent the request once more"
    );
    Ok(())
}

/// Okta tests the connection; Entra looks for the user before creating it.
async fn connect_and_look_up(s: &mut Step<'_>) -> Result<(), String> {
    s.call(
        "Okta tests the connection",
        OKTA,
        Method::GET,
        "/SCIM/v2/Users?startIndex=1&count=2",
        None,
        StatusCode::OK,
    )
    .await?;
    let found = s
        .call(
            "Entra looks the user up (spaces as '+', as Entra sends them)",
            ENTRA,
            Method::GET,
            "/SCIM/V2/1234/Users?filter=userName+eq+%22jane.doe%40example.com%22",
            None,
            StatusCode::OK,
        )
        .await?;
    println!("    totalResults = {}", found.json()["totalResults"]);
    Ok(())
}

/// Entra creates and deactivates the user; Okta reads it back. Returns the user's id.
async fn provision_user(s: &mut Step<'_>) -> Result<String, String> {
    let created = s
        .call(
            "Entra creates the user",
            ENTRA,
            Method::POST,
            "/SCIM/V2/1234/Users",
            Some(json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                "userName": USER_NAME,
                "externalId": "0f4c8e3a-demo",
                "active": true,
                "name": {"givenName": "Jane", "familyName": "Doe"},
                "emails": [{"primary": true, "type": "work", "value": USER_NAME}]
            })),
            StatusCode::CREATED,
        )
        .await?;
    let user_id = created.json()["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    if user_id.is_empty() {
        return Err("the create answer has no id".into());
    }
    println!(
        "    id = {user_id}; Location = {}",
        created.header("location").unwrap_or("-")
    );
    s.call(
        "Entra deactivates the user (its default shape: \"Replace\" and the string \"False\")",
        ENTRA,
        Method::PATCH,
        &format!("/SCIM/V2/1234/Users/{user_id}"),
        Some(json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "Replace", "path": "active", "value": "False"}]
        })),
        StatusCode::NO_CONTENT,
    )
    .await?;
    let read = s
        .call(
            "Okta reads the user back",
            OKTA,
            Method::GET,
            &format!("/SCIM/v2/Users/{user_id}"),
            None,
            StatusCode::OK,
        )
        .await?;
    println!("    active = {}", read.json()["active"]);
    Ok(user_id)
}

/// Okta pushes a group, adds the user to it and reads the members back; returns the group's id.
async fn push_group(s: &mut Step<'_>, user_id: &str) -> Result<String, String> {
    let group = s
        .call(
            "Okta pushes a group",
            OKTA,
            Method::POST,
            "/SCIM/v2/Groups",
            Some(json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                "displayName": "Netskope Users",
                "members": []
            })),
            StatusCode::CREATED,
        )
        .await?;
    let group_id = group.json()["id"].as_str().unwrap_or_default().to_string();
    s.call(
        "Okta adds the user to the group",
        OKTA,
        Method::PATCH,
        &format!("/SCIM/v2/Groups/{group_id}"),
        Some(json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "add", "path": "members", "value": [{"value": user_id, "display": USER_NAME}]}]
        })),
        StatusCode::NO_CONTENT,
    )
    .await?;
    let members = s
        .call(
            "Okta reads the group's members",
            OKTA,
            Method::GET,
            &format!("/SCIM/v2/Groups/{group_id}?attributes=members"),
            None,
            StatusCode::OK,
        )
        .await?;
    println!("    members = {}", members.json()["members"]);
    Ok(group_id)
}

/// A wrong token never reaches the upstream; then Entra deletes the user and Okta the group.
async fn refuse_then_delete(s: &mut Step<'_>, user_id: &str, group_id: &str) -> Result<(), String> {
    s.call(
        "An IdP with a wrong token is refused at the proxy",
        ("?    ", Some("not-a-configured-token")),
        Method::GET,
        "/SCIM/v2/Users",
        None,
        StatusCode::UNAUTHORIZED,
    )
    .await?;
    s.call(
        "Entra deletes the user",
        ENTRA,
        Method::DELETE,
        &format!("/SCIM/V2/1234/Users/{user_id}"),
        None,
        StatusCode::NO_CONTENT,
    )
    .await?;
    s.call(
        "Okta deletes the group",
        OKTA,
        Method::DELETE,
        &format!("/SCIM/v2/Groups/{group_id}"),
        None,
        StatusCode::NO_CONTENT,
    )
    .await?;
    Ok(())
}
