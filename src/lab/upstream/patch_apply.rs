//! Applying one PATCH operation to a resource's attributes, leniently as IdPs need.

use std::collections::HashSet;

use serde_json::{Map, Value};

use super::attrs::{canonical, get_ci, key_ci, merge_ci, remove_ci, set_ci};
use super::error::{ScimError, invalid_path, invalid_syntax};
use super::filter::Cmp;
use super::patch_request::OpKind;
use super::path::{AttrPath, parse_attr_path};

/// Applies one operation to `attrs`; the caller works on a copy, so an error leaves nothing half done.
pub(super) fn apply_op(
    attrs: &mut Map<String, Value>,
    op: OpKind,
    path: Option<&AttrPath>,
    value: Option<Value>,
) -> Result<(), ScimError> {
    let Some(path) = path else {
        return apply_pathless(attrs, op, value);
    };
    let create = op != OpKind::Remove;
    let scope = match &path.container {
        None => {
            if ["id", "meta"]
                .iter()
                .any(|k| k.eq_ignore_ascii_case(&path.attr))
            {
                return Err(ScimError::bad_request(
                    "mutability",
                    format!("{} is read-only", path.attr),
                ));
            }
            attrs
        }
        Some(urn) => match child_object(attrs, urn, create)? {
            Some(o) => o,
            None => return Ok(()),
        },
    };
    match (&path.value_filter, &path.sub) {
        (None, None) => apply_to_attr(scope, op, &path.attr, value),
        (None, Some(sub)) => {
            let Some(obj) = child_object(scope, &path.attr, create)? else {
                return Ok(());
            };
            match op {
                OpKind::Remove => {
                    remove_ci(obj, sub);
                }
                _ => set_ci(obj, sub, need_value(value)?),
            }
            Ok(())
        }
        (Some(filter), sub) => {
            let Some(items) = multi_valued(scope, &path.attr, create)? else {
                return Ok(());
            };
            match op {
                OpKind::Remove => remove_filtered(items, filter, sub.as_deref()),
                OpKind::Add | OpKind::Replace => {
                    set_filtered(items, filter, sub.as_deref(), need_value(value)?)?
                }
            }
            Ok(())
        }
    }
}

fn need_value(value: Option<Value>) -> Result<Value, ScimError> {
    value.ok_or_else(|| invalid_syntax("value is required"))
}

/// No path: the value is an object of attribute (or dotted/URN path) to value, each applied in turn.
fn apply_pathless(
    attrs: &mut Map<String, Value>,
    op: OpKind,
    value: Option<Value>,
) -> Result<(), ScimError> {
    if op == OpKind::Remove {
        return Err(ScimError::bad_request(
            "noTarget",
            "remove needs a path".into(),
        ));
    }
    let Some(Value::Object(obj)) = value else {
        return Err(invalid_syntax(
            "an operation without path needs an object value",
        ));
    };
    for (key, v) in obj {
        // Okta sends `id` along; read-only attributes are ignored here.
        if ["id", "meta", "schemas"]
            .iter()
            .any(|k| k.eq_ignore_ascii_case(&key))
        {
            continue;
        }
        let p = parse_attr_path(&key, true)
            .map_err(|e| invalid_path(format!("bad attribute {key:?}: {e}")))?;
        apply_op(attrs, op, Some(&p), Some(v))?;
    }
    Ok(())
}

/// A plain attribute: multi-valued ones gain or lose elements, complex ones merge.
fn apply_to_attr(
    scope: &mut Map<String, Value>,
    op: OpKind,
    attr: &str,
    value: Option<Value>,
) -> Result<(), ScimError> {
    let key = key_ci(scope, attr);
    let existing = key.and_then(|k| scope.get_mut(&k));
    match (op, existing, value) {
        // Entra's default: remove listed members by value.
        (OpKind::Remove, Some(Value::Array(items)), Some(v)) => {
            let drop: HashSet<String> = match v {
                Value::Array(a) => a.iter().map(element_key).collect(),
                one => HashSet::from([element_key(&one)]),
            };
            items.retain(|item| !drop.contains(&element_key(item)));
        }
        (OpKind::Remove, _, _) => {
            remove_ci(scope, attr);
        }
        (OpKind::Add, existing, value) => match (existing, need_value(value)?) {
            (Some(Value::Array(items)), v) => add_elements(items, v),
            (Some(Value::Object(existing)), Value::Object(new)) => merge_ci(existing, new),
            (_, v) => set_ci(scope, attr, v),
        },
        (OpKind::Replace, existing, value) => match (existing, need_value(value)?) {
            // RFC 7644 §3.5.2.3: sub-attributes not given stay unchanged.
            (Some(Value::Object(existing)), Value::Object(new)) => merge_ci(existing, new),
            (_, v) => set_ci(scope, attr, v),
        },
    }
    Ok(())
}

/// Adds the elements not there yet (by [`element_key`]), in order.
fn add_elements(items: &mut Vec<Value>, v: Value) {
    let new = match v {
        Value::Array(a) => a,
        one => vec![one],
    };
    let mut seen: HashSet<String> = items.iter().map(element_key).collect();
    for n in new {
        if seen.insert(element_key(&n)) {
            items.push(n);
        }
    }
}

/// The multi-valued attribute `attr` as a list, created (or a null made a list) when asked.
fn multi_valued<'m>(
    scope: &'m mut Map<String, Value>,
    attr: &str,
    create: bool,
) -> Result<Option<&'m mut Vec<Value>>, ScimError> {
    let key = match key_ci(scope, attr) {
        Some(k) => k,
        None if create => {
            let k = canonical(attr);
            scope.insert(k.clone(), Value::Array(Vec::new()));
            k
        }
        None => return Ok(None),
    };
    let Some(slot) = scope.get_mut(&key) else {
        return Ok(None);
    };
    if slot.is_null() {
        *slot = Value::Array(Vec::new());
    }
    match slot {
        Value::Array(items) => Ok(Some(items)),
        _ => Err(invalid_path(format!("{attr} is not multi-valued"))),
    }
}

fn filter_hits(filter: &Cmp, item: &Value) -> bool {
    item.as_object().is_some_and(|o| filter.matches(o))
}

/// `attr[filter]` removes the matching elements; `attr[filter].sub` only that sub-attribute.
fn remove_filtered(items: &mut Vec<Value>, filter: &Cmp, sub: Option<&str>) {
    match sub {
        Some(sub) => {
            for item in items.iter_mut().filter(|i| filter_hits(filter, i)) {
                if let Value::Object(o) = item {
                    remove_ci(o, sub);
                }
            }
        }
        None => items.retain(|i| !filter_hits(filter, i)),
    }
}

/// Sets (or merges into) the matching elements; with none, creates the element the filter names.
fn set_filtered(
    items: &mut Vec<Value>,
    filter: &Cmp,
    sub: Option<&str>,
    v: Value,
) -> Result<(), ScimError> {
    let mut found = false;
    for item in items.iter_mut().filter(|i| filter_hits(filter, i)) {
        found = true;
        match (sub, item, &v) {
            (Some(sub), Value::Object(o), _) => set_ci(o, sub, v.clone()),
            (None, Value::Object(o), Value::Object(new)) => merge_ci(o, new.clone()),
            (None, item, _) => *item = v.clone(),
            (Some(_), _, _) => {}
        }
    }
    if found {
        return Ok(());
    }
    // Lenient like most providers: create the element the filter names.
    let mut o = Map::new();
    o.insert(canonical(&filter.path.attr), filter.value.clone());
    match (sub, v) {
        (Some(sub), v) => set_ci(&mut o, sub, v),
        (None, Value::Object(new)) => merge_ci(&mut o, new),
        (None, _) => {
            return Err(ScimError::bad_request(
                "noTarget",
                "value filter matched nothing".into(),
            ));
        }
    }
    items.push(Value::Object(o));
    Ok(())
}

/// Identity of a multi-valued element: its `value` if it has one, else the whole element.
pub(super) fn element_key(v: &Value) -> String {
    match v.as_object().and_then(|o| get_ci(o, "value")) {
        Some(value) => format!("v:{value}"),
        None => format!("j:{v}"),
    }
}

/// The complex attribute `name` as an object, created when asked; `None` if absent.
pub(super) fn child_object<'m>(
    m: &'m mut Map<String, Value>,
    name: &str,
    create: bool,
) -> Result<Option<&'m mut Map<String, Value>>, ScimError> {
    let key = match key_ci(m, name) {
        Some(k) => k,
        None if create => {
            let k = canonical(name);
            m.insert(k.clone(), Value::Object(Map::new()));
            k
        }
        None => return Ok(None),
    };
    let Some(slot) = m.get_mut(&key) else {
        return Ok(None);
    };
    if slot.is_null() {
        if !create {
            return Ok(None);
        }
        *slot = Value::Object(Map::new());
    }
    match slot {
        Value::Object(o) => Ok(Some(o)),
        _ => Err(invalid_path(format!("{name} is not a complex attribute"))),
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::*;

    #[tokio::test]
    async fn patch_deactivate_and_update_users() {
        let h = harness(true, None).await;
        let uid = id(&h.create_user("carol@example.com").await);
        let user = format!("/Users/{uid}");
        // Entra's default shape: capitalised op, string boolean.
        let deactivate = json!({
            "schemas": [PATCH_URN],
            "Operations": [{"op": "Replace", "path": "active", "value": "False"}],
        })
        .to_string();
        let a = h.scim("PATCH", &user, Some(&deactivate)).await;
        assert_eq!(a.status, StatusCode::NO_CONTENT);
        assert!(a.body.is_empty());
        assert_eq!(a.header("etag"), "W/\"2\"");
        let v = h.scim("GET", &user, None).await.json();
        assert_eq!(v["active"], json!(false));
        assert_eq!(v["meta"]["version"], json!("W/\"2\""));

        // Okta: path-less replace; Entra with aadOptscim062020: dotted keys.
        let ops = json!({
            "schemas": [PATCH_URN],
            "Operations": [
                {"op": "replace", "value": {"active": true, "name.givenName": "Caroline",
                    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department": "Ops"}},
                {"op": "Add", "path": "title", "value": "Boss"},
                {"op": "replace", "path": "emails[type eq \"work\"].value", "value": "c@example.com"},
                {"op": "add", "path": "phoneNumbers[type eq \"mobile\"].value", "value": "+1 555"},
                {"op": "replace", "path": "name.familyName", "value": "Smith"},
                {"op": "Remove", "path": "externalId"},
            ],
        })
        .to_string();
        assert_eq!(
            h.scim("PATCH", &user, Some(&ops)).await.status,
            StatusCode::NO_CONTENT
        );
        let v = h.scim("GET", &user, None).await.json();
        assert_eq!(v["active"], json!(true));
        assert_eq!(
            v["name"],
            json!({"givenName": "Caroline", "familyName": "Smith"})
        );
        assert_eq!(v["title"], json!("Boss"));
        assert_eq!(v["emails"][0]["value"], json!("c@example.com"));
        assert_eq!(v["emails"][0]["primary"], json!(true));
        assert_eq!(
            v["phoneNumbers"],
            json!([{"type": "mobile", "value": "+1 555"}])
        );
        assert_eq!(v[ENTERPRISE_URN], json!({"department": "Ops"}));
        assert!(v.get("externalId").is_none());

        // Malformed PATCHes change nothing.
        let bad = [
            (
                r#"{"Operations":[{"op":"frobnicate","path":"active","value":true}]}"#,
                "invalidSyntax",
            ),
            (
                r#"{"Operations":[{"op":"replace","path":"emails[type eq","value":1}]}"#,
                "invalidPath",
            ),
            (
                r#"{"Operations":[{"op":"replace","path":"name.givenName.x","value":1}]}"#,
                "invalidPath",
            ),
            (
                r#"{"Operations":[{"op":"replace","path":"title.x","value":1}]}"#,
                "invalidPath",
            ),
            (r#"{"Operations":{}}"#, "invalidSyntax"),
            (
                r#"{"schemas":["urn:nope"],"Operations":[]}"#,
                "invalidSyntax",
            ),
            (
                r#"{"Operations":[{"op":"replace","path":"active","value":"maybe"}]}"#,
                "invalidValue",
            ),
            (
                r#"{"Operations":[{"op":"replace","value":"notAnObject"}]}"#,
                "invalidSyntax",
            ),
            (r#"{"Operations":[{"op":"remove"}]}"#, "noTarget"),
            (
                r#"{"Operations":[{"op":"remove","path":"userName"}]}"#,
                "invalidValue",
            ),
            ("{not json", "invalidSyntax"),
        ];
        for (body, scim_type) in bad {
            let a = h.scim("PATCH", &user, Some(body)).await;
            assert_error(&a, 400, Some(scim_type));
        }
        // Invalid UTF-8 inside a JSON string.
        let a = h
            .call_raw(
                "PATCH",
                &format!("/api/v2/scim{user}"),
                &[("authorization", "Bearer v2-token-1")],
                Bytes::from_static(b"{\"Operations\":[{\"op\":\"add\",\"path\":\"title\",\"value\":\"\xff\xfe\"}]}"),
            )
            .await;
        assert_error(&a, 400, Some("invalidSyntax"));
        assert_eq!(h.scim("GET", &user, None).await.json(), v);

        // PUT replaces (keeps id and created), never creates.
        let put = json!({"userName": "carol@example.com", "active": "False"}).to_string();
        let a = h.scim("PUT", &user, Some(&put)).await;
        assert_eq!(a.status, StatusCode::OK);
        let p = a.json();
        assert_eq!(
            (p["id"].clone(), p["active"].clone()),
            (json!(uid), json!(false))
        );
        assert_eq!(p["meta"]["created"], v["meta"]["created"]);
        assert!(p.get("title").is_none());
        let missing = "/Users/00000000-0000-4000-8000-000000000000";
        assert_error(&h.scim("PUT", missing, Some(&put)).await, 404, None);
        assert_error(
            &h.scim("PATCH", missing, Some(&deactivate)).await,
            404,
            None,
        );
        assert_error(&h.scim("GET", missing, None).await, 404, None);
        assert_error(&h.scim("DELETE", missing, None).await, 404, None);
        h.shutdown().await;
    }

    #[tokio::test]
    async fn group_membership_add_and_remove() {
        let h = harness(true, None).await;
        let u: Vec<String> = [
            h.create_user("m1@example.com").await,
            h.create_user("m2@example.com").await,
            h.create_user("m3@example.com").await,
        ]
        .iter()
        .map(id)
        .collect();
        let g = json!({"displayName": "Team", "members": []}).to_string();
        let gid = id(&h.scim("POST", "/Groups", Some(&g)).await.json());
        let group = format!("/Groups/{gid}");
        let members = |v: &Value| -> Vec<String> {
            v["members"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|m| m["value"].as_str().unwrap().to_string())
                        .collect()
                })
                .unwrap_or_default()
        };
        let with_members = format!("{group}?attributes=members");

        // Entra: Add with `$ref: null`; adding twice is a no-op.
        let add = json!({"schemas": [PATCH_URN], "Operations": [{"op": "Add", "path": "members",
            "value": [{"$ref": null, "value": u[0]}, {"value": u[1]}, {"value": u[0]}]}]})
        .to_string();
        assert_eq!(
            h.scim("PATCH", &group, Some(&add)).await.status,
            StatusCode::NO_CONTENT
        );
        let plain = h.scim("GET", &group, None).await.json();
        assert!(
            plain.get("members").is_none(),
            "members hidden by default: {plain}"
        );
        assert_eq!(plain["displayName"], json!("Team"));
        let v = h.scim("GET", &with_members, None).await.json();
        assert_eq!(members(&v), [u[0].clone(), u[1].clone()]);
        assert_eq!(
            v["members"][0]["$ref"],
            json!(format!("{}/api/v2/scim/Users/{}", h.origin, u[0]))
        );
        // Exclusion wins when both are given.
        let ex = format!("{with_members}&excludedAttributes=members");
        let v = h.scim("GET", &ex, None).await.json();
        assert!(v.get("members").is_none());
        let listed = h
            .scim("GET", "/Groups?attributes=members,displayName", None)
            .await
            .json();
        assert_eq!(
            members(&listed["Resources"][0]),
            [u[0].clone(), u[1].clone()]
        );

        // Okta: remove by filter and add in one request, after a path-less replace of id/displayName.
        let okta = json!({"schemas": [PATCH_URN], "Operations": [
            {"op": "replace", "value": {"id": gid, "displayName": "Team"}},
            {"op": "remove", "path": format!("members[value eq \"{}\"]", u[0])},
            {"op": "add", "path": "members", "value": [{"value": u[2], "display": "m3@example.com"}]},
        ]})
        .to_string();
        assert_eq!(
            h.scim("PATCH", &group, Some(&okta)).await.status,
            StatusCode::NO_CONTENT
        );
        let v = h.scim("GET", &with_members, None).await.json();
        assert_eq!(members(&v), [u[1].clone(), u[2].clone()]);
        assert_eq!(v["members"][1]["display"], json!("m3@example.com"));

        // Entra default removal: Remove with a value list.
        let remove =
            json!({"schemas": [PATCH_URN], "Operations": [{"op": "Remove", "path": "members",
            "value": [{"value": u[1]}]}]})
            .to_string();
        h.scim("PATCH", &group, Some(&remove)).await;
        assert_eq!(
            members(&h.scim("GET", &with_members, None).await.json()),
            [u[2].clone()]
        );

        // Deleting a user drops it from memberships.
        h.scim("PATCH", &group, Some(&add)).await;
        assert_eq!(
            h.scim("DELETE", &format!("/Users/{}", u[0]), None)
                .await
                .status,
            StatusCode::NO_CONTENT
        );
        assert_eq!(
            members(&h.scim("GET", &with_members, None).await.json()),
            [u[2].clone(), u[1].clone()]
        );

        // Remove without value clears all members; lowercase Netskope path names work.
        let clear = json!({"Operations": [{"op": "remove", "path": "members"},
            {"op": "replace", "path": "displayname", "value": "Team 2"}]})
        .to_string();
        let a = h.scim("PATCH", &group, Some(&clear)).await;
        assert_eq!(a.status, StatusCode::NO_CONTENT);
        let v = h.scim("GET", &with_members, None).await.json();
        assert!(members(&v).is_empty());
        assert!(v.get("displayName").is_none(), "attributes= projects: {v}");
        let v = h.scim("GET", &group, None).await.json();
        assert_eq!(v["displayName"], json!("Team 2"));
        assert!(v.get("displayname").is_none());
        let bad =
            json!({"Operations": [{"op": "add", "path": "members", "value": [{"display": "x"}]}]});
        assert_error(
            &h.scim("PATCH", &group, Some(&bad.to_string())).await,
            400,
            Some("invalidValue"),
        );

        assert_eq!(
            h.scim("DELETE", &group, None).await.status,
            StatusCode::NO_CONTENT
        );
        assert_error(&h.scim("GET", &group, None).await, 404, None);
        h.shutdown().await;
    }
}
