//! PATCH as Okta and Entra send it, end to end through the upstream: users and group membership.

use super::super::testkit::*;

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
            Bytes::from_static(
                b"{\"Operations\":[{\"op\":\"add\",\"path\":\"title\",\"value\":\"\xff\xfe\"}]}",
            ),
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
    let remove = json!({"schemas": [PATCH_URN], "Operations": [{"op": "Remove", "path": "members",
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
