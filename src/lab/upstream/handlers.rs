//! One resource at a time: create, read (304 on If-None-Match), replace, patch and delete
//! (412 on a stale If-Match).

use bytes::Bytes;
use http::header::{ETAG, HeaderName, IF_MATCH, IF_NONE_MATCH, LOCATION};
use http::{HeaderMap, StatusCode};
use serde_json::{Map, Value};

use super::SCIM_JSON;
use super::ctx::Ctx;
use super::error::ScimError;
use super::kind::Kind;
use super::patch::{apply_op, parse_patch};
use super::projection::Projection;
use super::resource::{parse_object, render, resource_response, sanitize};
use super::response::{Resp, response, with_header};
use super::store::{Res, Store};
use super::time::now_rfc3339;

pub(super) fn create(store: &mut Store, kind: Kind, ctx: &Ctx<'_>) -> Result<Resp, ScimError> {
    let mut attrs = parse_object(ctx.body)?;
    sanitize(kind, &mut attrs)?;
    store.check_unique(kind, &attrs, None)?;
    let now = now_rfc3339();
    let res = Res {
        id: uuid::Uuid::new_v4().to_string(),
        attrs,
        created: now.clone(),
        modified: now,
        version: 1,
    };
    let body = render(kind, &res, &ctx.base_url);
    let location = format!("{}/{}/{}", ctx.base_url, kind.endpoint(), res.id);
    let resp = resource_response(StatusCode::CREATED, &res, &body);
    store.list_mut(kind).push(res);
    Ok(with_header(resp, LOCATION, &location))
}

pub(super) fn get_one(
    store: &Store,
    kind: Kind,
    id: &str,
    ctx: &Ctx<'_>,
) -> Result<Resp, ScimError> {
    let res = &store.list(kind)[store.position(kind, id)?];
    let etag = res.etag();
    if header_etag_matches(ctx.headers, &IF_NONE_MATCH, &etag) == Some(true) {
        let resp = response(StatusCode::NOT_MODIFIED, SCIM_JSON, Bytes::new());
        return Ok(with_header(resp, ETAG, &etag));
    }
    let v = Projection::from_query(&ctx.query).apply(kind, render(kind, res, &ctx.base_url));
    Ok(resource_response(StatusCode::OK, res, &v))
}

/// Where resource `id` is, if the request's If-Match (when sent) names its current version.
fn current(store: &Store, kind: Kind, id: &str, ctx: &Ctx<'_>) -> Result<usize, ScimError> {
    let idx = store.position(kind, id)?;
    check_if_match(ctx, &store.list(kind)[idx])?;
    Ok(idx)
}

/// Normalises new attributes for the resource at `idx` and checks they keep names unique; the
/// resource to store them in.
fn validated<'s>(
    store: &'s mut Store,
    kind: Kind,
    idx: usize,
    id: &str,
    attrs: &mut Map<String, Value>,
) -> Result<&'s mut Res, ScimError> {
    sanitize(kind, attrs)?;
    store.check_unique(kind, attrs, Some(id))?;
    store
        .list_mut(kind)
        .get_mut(idx)
        .ok_or_else(|| ScimError::not_found(format!("{id} not found")))
}

fn check_if_match(ctx: &Ctx<'_>, res: &Res) -> Result<(), ScimError> {
    if header_etag_matches(ctx.headers, &IF_MATCH, &res.etag()) == Some(false) {
        return Err(ScimError::new(
            StatusCode::PRECONDITION_FAILED,
            None,
            format!("If-Match does not match the current version {}", res.etag()),
        ));
    }
    Ok(())
}

pub(super) fn replace(
    store: &mut Store,
    kind: Kind,
    id: &str,
    ctx: &Ctx<'_>,
) -> Result<Resp, ScimError> {
    let idx = current(store, kind, id, ctx)?;
    let mut attrs = parse_object(ctx.body)?;
    let res = validated(store, kind, idx, id, &mut attrs)?;
    res.attrs = attrs;
    res.touch();
    let v = render(kind, res, &ctx.base_url);
    Ok(resource_response(StatusCode::OK, res, &v))
}

pub(super) fn patch(
    store: &mut Store,
    kind: Kind,
    id: &str,
    ctx: &Ctx<'_>,
) -> Result<Resp, ScimError> {
    let idx = current(store, kind, id, ctx)?;
    let ops = parse_patch(ctx.body)?;
    // Atomic: work on a copy and commit only if every op succeeded.
    let mut attrs = store.list(kind)[idx].attrs.clone();
    for op in &ops {
        apply_op(&mut attrs, op.op, op.path.as_ref(), op.value.clone())?;
    }
    let res = validated(store, kind, idx, id, &mut attrs)?;
    if res.attrs != attrs {
        res.attrs = attrs;
        res.touch();
    }
    // Netskope's documented PATCH success: 204, empty body.
    let resp = response(StatusCode::NO_CONTENT, SCIM_JSON, Bytes::new());
    Ok(with_header(resp, ETAG, &res.etag()))
}

pub(super) fn delete(
    store: &mut Store,
    kind: Kind,
    id: &str,
    ctx: &Ctx<'_>,
) -> Result<Resp, ScimError> {
    let idx = current(store, kind, id, ctx)?;
    store.list_mut(kind).remove(idx);
    // A deleted user or group is no longer anyone's member.
    for group in &mut store.groups {
        if let Some(Value::Array(members)) = group.attrs.get_mut("members") {
            let before = members.len();
            members.retain(|m| m.get("value").and_then(Value::as_str) != Some(id));
            if members.len() != before {
                group.touch();
            }
        }
    }
    Ok(response(StatusCode::NO_CONTENT, SCIM_JSON, Bytes::new()))
}

/// `None` without the header; otherwise whether any listed tag (or `*`) matches, weakly.
fn header_etag_matches(headers: &HeaderMap, name: &HeaderName, etag: &str) -> Option<bool> {
    let mut values = headers.get_all(name).iter().peekable();
    values.peek()?;
    let opaque = |t: &str| t.trim().trim_start_matches("W/").to_string();
    let current = opaque(etag);
    let hit = values
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim() == "*" || opaque(t) == current);
    Some(hit)
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::*;

    #[tokio::test]
    async fn create_returns_location_etag_and_detects_duplicates() {
        let h = harness(true, None).await;
        let body = json!({
            "schemas": [USER_URN, ENTERPRISE_URN],
            "userName": "Alice@Example.com",
            "externalId": "a-1",
            "roles": [],
            ENTERPRISE_URN: {"employeeNumber": "42"},
        })
        .to_string();
        let a = h.scim("POST", "/Users", Some(&body)).await;
        assert_eq!(a.status, StatusCode::CREATED);
        assert_eq!(a.header("content-type"), SCIM_JSON);
        assert_eq!(a.header("content-length"), a.body.len().to_string());
        let v = a.json();
        let uid = id(&v);
        assert!(uuid::Uuid::parse_str(&uid).is_ok());
        let location = format!("{}/api/v2/scim/Users/{uid}", h.origin);
        assert_eq!(a.header("location"), location);
        assert_eq!(v["meta"]["location"], json!(location));
        assert_eq!(v["meta"]["resourceType"], json!("User"));
        assert_eq!(a.header("etag"), v["meta"]["version"].as_str().unwrap());
        assert!(v["meta"]["created"].as_str().unwrap().ends_with('Z'));
        assert_eq!(v["active"], json!(true));
        assert_eq!(v["roles"], json!([]));
        assert_eq!(v[ENTERPRISE_URN]["employeeNumber"], json!("42"));
        assert_eq!(v["schemas"], json!([USER_URN, ENTERPRISE_URN]));

        let dup = json!({"userName": "alice@example.COM"}).to_string();
        assert_error(
            &h.scim("POST", "/Users", Some(&dup)).await,
            409,
            Some("uniqueness"),
        );
        let a = h.scim("GET", &format!("/Users/{uid}"), None).await;
        assert_eq!(a.status, StatusCode::OK);
        assert_eq!(a.json()["userName"], json!("Alice@Example.com"));

        let g = json!({"schemas": [GROUP_URN], "displayName": "Eng", "members": []}).to_string();
        let a = h.scim("POST", "/Groups", Some(&g)).await;
        assert_eq!(a.status, StatusCode::CREATED);
        assert!(
            a.header("location")
                .starts_with(&format!("{}/api/v2/scim/Groups/", h.origin))
        );
        assert_error(
            &h.scim("POST", "/Groups", Some(&g)).await,
            409,
            Some("uniqueness"),
        );
        h.shutdown().await;
    }

    #[tokio::test]
    async fn etags_give_304_and_412() {
        let h = harness(true, None).await;
        let v = h.create_user("dave@example.com").await;
        let user = format!("/Users/{}", id(&v));
        let etag = v["meta"]["version"].as_str().unwrap().to_string();
        let a = h
            .scim_with("GET", &user, &[("if-none-match", &etag)], None)
            .await;
        assert_eq!(a.status, StatusCode::NOT_MODIFIED);
        assert!(a.body.is_empty());
        let a = h
            .scim_with("GET", &user, &[("if-none-match", "W/\"99\"")], None)
            .await;
        assert_eq!(a.status, StatusCode::OK);

        let put = json!({"userName": "dave@example.com"}).to_string();
        let stale = [("if-match", "W/\"99\"")];
        assert_error(
            &h.scim_with("PUT", &user, &stale, Some(&put)).await,
            412,
            None,
        );
        let patch = r#"{"Operations":[{"op":"replace","path":"active","value":false}]}"#;
        assert_error(
            &h.scim_with("PATCH", &user, &stale, Some(patch)).await,
            412,
            None,
        );
        assert_error(&h.scim_with("DELETE", &user, &stale, None).await, 412, None);

        let a = h
            .scim_with("PUT", &user, &[("if-match", &etag)], Some(&put))
            .await;
        assert_eq!(a.status, StatusCode::OK);
        let new_etag = a.header("etag").to_string();
        assert_ne!(new_etag, etag);
        let a = h
            .scim_with("PATCH", &user, &[("if-match", "*")], Some(patch))
            .await;
        assert_eq!(a.status, StatusCode::NO_CONTENT);
        let a = h
            .scim_with("DELETE", &user, &[("if-match", &etag)], None)
            .await;
        assert_eq!(a.status, StatusCode::PRECONDITION_FAILED);
        assert_eq!(
            h.scim("DELETE", &user, None).await.status,
            StatusCode::NO_CONTENT
        );
        h.shutdown().await;
    }
}
