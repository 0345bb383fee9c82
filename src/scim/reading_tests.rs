//! Tests of the SCIM reading: every operation and request shape, and completing from answers.

use crate::scim::request::*;
use crate::scim::response::*;
use http::Method;
use serde_json::Value;
use serde_json::json;

/// The answer `body` as the upstream would send it, given to the reading.
fn complete(r: &mut ScimReading, status: u16, body: &Value) {
    let bytes = serde_json::to_vec(body).unwrap();
    complete_from_response(r, status, Some(&bytes));
}

const U: &str = "2819c223-7f76-453a-919d-413861904646";
const G: &str = "abf4dd94-a4c0-4f67-89c9-76b03340cb9b";

fn patch(ops: Value) -> Value {
    json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": ops})
}

struct Case {
    name: &'static str,
    method: Method,
    rest: String,
    query: Option<&'static str>,
    body: Option<Value>,
    resource: Resource,
    op: &'static str,
    id: Option<&'static str>,
    subject: Option<&'static str>,
}

#[allow(clippy::too_many_arguments)]
fn case(
    name: &'static str,
    method: Method,
    rest: &str,
    query: Option<&'static str>,
    body: Option<Value>,
    resource: Resource,
    op: &'static str,
    id: Option<&'static str>,
    subject: Option<&'static str>,
) -> Case {
    Case {
        name,
        method,
        rest: rest.to_owned(),
        query,
        body,
        resource,
        op,
        id,
        subject,
    }
}

fn user_path() -> String {
    format!("/Users/{U}")
}

fn group_path() -> String {
    format!("/Groups/{G}")
}

fn entra_user() -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User",
                    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
        "externalId": "0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef",
        "userName": "Test_User_ab6490ee-1e48-479e-a20b-2d77186b5dd1@contoso.com",
        "active": true,
        "displayName": "Test User",
        "emails": [{"primary": true, "type": "work", "value": "Test_User_fd0ea19b@contoso.com"}],
        "meta": {"resourceType": "User"},
        "name": {"formatted": "givenName familyName", "familyName": "familyName", "givenName": "givenName"},
        "roles": []
    })
}

fn okta_user(active: bool) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "id": U,
        "userName": "test.user@okta.local",
        "name": {"givenName": "Another", "middleName": "Excited", "familyName": "User"},
        "emails": [{"primary": true, "value": "test.user@okta.local", "type": "work",
                    "display": "test.user@okta.local"}],
        "active": active,
        "groups": [],
        "meta": {"resourceType": "User"}
    })
}

fn jumpcloud_user(active: Value) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "id": U,
        "userName": "jdoe@example.com",
        "name": {"givenName": "Jane", "familyName": "Doe"},
        "emails": [{"value": "jdoe@example.com", "type": "work", "primary": true}],
        "active": active
    })
}

// One line per argument would make this table unreadable.
#[rustfmt::skip]
fn cases() -> Vec<Case> {
    use Resource::*;
    let (get, post, put, del, pat) = (Method::GET, Method::POST, Method::PUT, Method::DELETE, Method::PATCH);
    let up = user_path();
    let gp = group_path();
    let some_u = Some(U);
    let some_g = Some(G);
    vec![
        // ---- Microsoft Entra ID
        case("entra test connection (random userName, + for spaces)", get.clone(), "/Users",
            Some("filter=userName+eq+%227d420df3-9f2a-4c0e-8d7b-5a2f1e0c9b61%22"), None,
            User, "user.lookup", None, Some("7d420df3-9f2a-4c0e-8d7b-5a2f1e0c9b61")),
        case("entra lookup: %2B is a plus, + a space", get.clone(), "/Users",
            Some("filter=userName+eq+%22alice%2Bscim%40contoso.com%22"), None,
            User, "user.lookup", None, Some("alice+scim@contoso.com")),
        case("entra lookup by externalId: no subject yet", get.clone(), "/Users",
            Some("filter=externalId+eq+%220a21f0f2%22"), None,
            User, "user.lookup", None, None),
        case("entra create", post.clone(), "/Users", None, Some(entra_user()),
            User, "user.create", None,
            Some("Test_User_ab6490ee-1e48-479e-a20b-2d77186b5dd1@contoso.com")),
        case("entra read cached id", get.clone(), &up, None, None, User, "user.read", some_u, None),
        case("entra default update: capitalised Replace ops", pat.clone(), &up, None, Some(patch(json!([
            {"op": "Replace", "path": "displayName", "value": "Pvlo"},
            {"op": "Replace", "path": "emails[type eq \"work\"].value", "value": "TestBcwqnm@test.microsoft.com"},
            {"op": "Replace", "path": "name.givenName", "value": "Gtfd"},
            {"op": "Replace", "path": "name.familyName", "value": "Pkqf"},
            {"op": "Replace", "path": "externalId", "value": "Eqpj"},
            {"op": "Replace", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber", "value": "Eqpj"}
        ]))), User, "user.update", some_u, None),
        case("entra default add of a single-value attribute", pat.clone(), &up, None,
            Some(patch(json!([{"op": "Add", "path": "nickName", "value": "Babs"}]))),
            User, "user.update", some_u, None),
        case("entra userName change names the subject", pat.clone(), &up, None,
            Some(patch(json!([{"op": "Replace", "path": "userName", "value": "ryan@contoso.com"}]))),
            User, "user.update", some_u, Some("ryan@contoso.com")),
        case("entra default disable: Replace active \"False\"", pat.clone(), &up, None,
            Some(patch(json!([{"op": "Replace", "path": "active", "value": "False"}]))),
            User, "user.deactivate", some_u, None),
        case("entra default enable: Replace active \"True\"", pat.clone(), &up, None,
            Some(patch(json!([{"op": "Replace", "path": "active", "value": "True"}]))),
            User, "user.reactivate", some_u, None),
        case("entra aadOptscim062020 disable: replace active false", pat.clone(), &up, None,
            Some(patch(json!([{"op": "replace", "path": "active", "value": false}]))),
            User, "user.deactivate", some_u, None),
        case("entra aadOptscim062020 enable: replace active true", pat.clone(), &up, None,
            Some(patch(json!([{"op": "replace", "path": "active", "value": true}]))),
            User, "user.reactivate", some_u, None),
        case("entra aadOptscim062020 path-less replace with dotted keys", pat.clone(), &up, None,
            Some(patch(json!([
                {"op": "replace", "path": "emails[type eq \"work\"].value", "value": "TestMhvaes@test.microsoft.com"},
                {"op": "replace", "value": {"displayName": "Bjfe", "name.givenName": "Kkom", "name.familyName": "Unua",
                    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber": "Aklq"}}
            ]))), User, "user.update", some_u, None),
        case("entra disable together with an attribute change", pat.clone(), &up, None,
            Some(patch(json!([
                {"op": "Replace", "path": "displayName", "value": "Leaver"},
                {"op": "Replace", "path": "active", "value": "False"}
            ]))), User, "user.deactivate", some_u, None),
        case("entra hard delete", del.clone(), &up, None, None, User, "user.delete", some_u, None),
        case("entra group lookup", get.clone(), "/Groups",
            Some("excludedAttributes=members&filter=displayName+eq+%22Sales+EMEA%22"), None,
            Group, "group.lookup", None, Some("Sales EMEA")),
        case("entra group create", post.clone(), "/Groups", None, Some(json!({
            "externalId": "8aa1a0c0-c4c3-4bc0-b4a5-2ef676900159", "displayName": "Sales EMEA",
            "meta": {"resourceType": "Group"}, "members": []})),
            Group, "group.create", None, Some("Sales EMEA")),
        case("entra group read", get.clone(), &gp, Some("excludedAttributes=members"), None,
            Group, "group.read", some_g, None),
        case("entra add member", pat.clone(), &gp, None, Some(patch(json!([
            {"op": "Add", "path": "members", "value": [{"$ref": null, "value": U}]}]))),
            Group, "group.members.add", some_g, None),
        case("entra default remove member (value list)", pat.clone(), &gp, None, Some(patch(json!([
            {"op": "Remove", "path": "members", "value": [{"value": "u1091"}]}]))),
            Group, "group.members.remove", some_g, None),
        case("entra aadOptscim062020 remove member (filter path)", pat.clone(), &gp, None, Some(patch(json!([
            {"op": "remove", "path": "members[value eq \"7f4bc1a3-285e-48ae-8202-5accb43efb0e\"]"}]))),
            Group, "group.members.remove", some_g, None),
        case("entra group rename", pat.clone(), &gp, None, Some(patch(json!([
            {"op": "Replace", "path": "displayName", "value": "Sales Europe"}]))),
            Group, "group.update", some_g, Some("Sales Europe")),
        case("entra group delete", del.clone(), &gp, None, None, Group, "group.delete", some_g, None),
        // ---- Okta
        case("okta connection test", get.clone(), "/Users", Some("startIndex=1&count=2"), None,
            User, "user.list", None, None),
        case("okta groups connection test", get.clone(), "/Groups", Some("startIndex=1&count=100"), None,
            Group, "group.list", None, None),
        case("okta import page", get.clone(), "/Users", Some("startIndex=101&count=100"), None,
            User, "user.list", None, None),
        case("okta lookup (%20 for spaces)", get.clone(), "/Users",
            Some("filter=userName%20eq%20%22test.user%40okta.local%22&startIndex=1&count=100"), None,
            User, "user.lookup", None, Some("test.user@okta.local")),
        case("okta create with password", post.clone(), "/Users", None, Some(json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": "test.user@okta.local",
            "name": {"givenName": "Test", "familyName": "User"},
            "emails": [{"primary": true, "value": "test.user@okta.local", "type": "work"}],
            "displayName": "Test User", "locale": "en-US", "externalId": "00ujl29u0le5T6Aj10h7",
            "groups": [], "password": "1mz050nq", "active": true})),
            User, "user.create", None, Some("test.user@okta.local")),
        case("okta read", get.clone(), &up, None, None, User, "user.read", some_u, None),
        case("okta OIN update is a PUT with active true", put.clone(), &up, None, Some(okta_user(true)),
            User, "user.update", some_u, Some("test.user@okta.local")),
        case("okta OIN deactivate: path-less replace {active:false}", pat.clone(), &up, None,
            Some(patch(json!([{"op": "replace", "value": {"active": false}}]))),
            User, "user.deactivate", some_u, None),
        case("okta OIN reactivate: path-less replace {active:true}", pat.clone(), &up, None,
            Some(patch(json!([{"op": "replace", "value": {"active": true}}]))),
            User, "user.reactivate", some_u, None),
        case("okta OIN password sync", pat.clone(), &up, None,
            Some(patch(json!([{"op": "replace", "value": {"password": "t1meMa$heen"}}]))),
            User, "user.update", some_u, None),
        case("okta AIW deactivate: PUT with active false", put.clone(), &up, None, Some(okta_user(false)),
            User, "user.deactivate", some_u, Some("test.user@okta.local")),
        case("op in upper case, active as lower-case string", pat.clone(), &up, None,
            Some(patch(json!([{"op": "REPLACE", "path": "active", "value": "false"}]))),
            User, "user.deactivate", some_u, None),
        case("add of active false", pat.clone(), &up, None,
            Some(patch(json!([{"op": "add", "path": "active", "value": false}]))),
            User, "user.deactivate", some_u, None),
        case("URN-qualified active path", pat.clone(), &up, None,
            Some(patch(json!([{"op": "Replace",
                "path": "urn:ietf:params:scim:schemas:core:2.0:User:active", "value": "False"}]))),
            User, "user.deactivate", some_u, None),
        case("lower-case operations key", pat.clone(), &up, None,
            Some(json!({"operations": [{"OP": "Replace", "Path": "Active", "Value": "False"}]})),
            User, "user.deactivate", some_u, None),
        case("remove of active is an update", pat.clone(), &up, None,
            Some(patch(json!([{"op": "remove", "path": "active"}]))),
            User, "user.update", some_u, None),
        case("okta group push", post.clone(), "/Groups", None, Some(json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
            "displayName": "Test SCIMv2", "members": []})),
            Group, "group.create", None, Some("Test SCIMv2")),
        case("okta path-less replace of {id, displayName}", pat.clone(), &gp, None, Some(patch(json!([
            {"op": "replace", "value": {"id": G, "displayName": "Test SCIMv2"}}]))),
            Group, "group.update", some_g, Some("Test SCIMv2")),
        case("okta remove and add in one request", pat.clone(), &gp, None, Some(patch(json!([
            {"op": "remove", "path": "members[value eq \"89bb1940-b905-4575-9e7f-6f887cfb368e\"]"},
            {"op": "add", "path": "members", "value": [{"value": U, "display": "test.user@okta.local"}]}]))),
            Group, "group.members.remove", some_g, None),
        case("okta full push: replace path members", pat.clone(), &gp, None, Some(patch(json!([
            {"op": "replace", "path": "members", "value": [
                {"value": U, "display": "test.user@okta.local"},
                {"value": "89bb1940-b905-4575-9e7f-6f887cfb368e", "display": "other@okta.local"}]}]))),
            Group, "group.members.add", some_g, None),
        case("replace members with nobody empties the group", pat.clone(), &gp, None, Some(patch(json!([
            {"op": "replace", "path": "members", "value": []}]))),
            Group, "group.members.remove", some_g, None),
        case("path-less add of members", pat.clone(), &gp, None, Some(patch(json!([
            {"op": "add", "value": {"members": [{"value": U}]}}]))),
            Group, "group.members.add", some_g, None),
        case("okta unlink with delete", del.clone(), &gp, None, None, Group, "group.delete", some_g, None),
        // ---- JumpCloud
        case("jumpcloud lookup", get.clone(), "/Users",
            Some("filter=userName%20eq%20%22jdoe%40example.com%22"), None,
            User, "user.lookup", None, Some("jdoe@example.com")),
        case("jumpcloud update: PUT active true", put.clone(), &up, None, Some(jumpcloud_user(json!(true))),
            User, "user.update", some_u, Some("jdoe@example.com")),
        case("jumpcloud deprovision: PUT active false", put.clone(), &up, None,
            Some(jumpcloud_user(json!(false))),
            User, "user.deactivate", some_u, Some("jdoe@example.com")),
        case("PUT with active as the string \"False\"", put.clone(), &up, None,
            Some(jumpcloud_user(json!("False"))),
            User, "user.deactivate", some_u, Some("jdoe@example.com")),
        case("jumpcloud member add without filter", pat.clone(), &gp, None, Some(patch(json!([
            {"op": "add", "path": "members", "value": [{"value": U}]}]))),
            Group, "group.members.add", some_g, None),
        case("jumpcloud member remove without filter", pat.clone(), &gp, None, Some(patch(json!([
            {"op": "remove", "path": "members", "value": [{"value": U}]}]))),
            Group, "group.members.remove", some_g, None),
        case("group PUT", put.clone(), &gp, None, Some(json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "id": G,
            "displayName": "Engineering", "members": [{"value": U}]})),
            Group, "group.update", some_g, Some("Engineering")),
        case("jumpcloud test user delete", del.clone(), &up, None, None, User, "user.delete", some_u, None),
        // ---- discovery, bulk, search, other
        case("service provider config", get.clone(), "/ServiceProviderConfig", None, None,
            Discovery, "discovery", None, None),
        case("schemas", get.clone(), "/Schemas", None, None, Discovery, "discovery", None, None),
        case("one schema", get.clone(), "/Schemas/urn:ietf:params:scim:schemas:core:2.0:User", None, None,
            Discovery, "discovery", None, None),
        case("resource types", get.clone(), "/ResourceTypes/User", None, None,
            Discovery, "discovery", None, None),
        case("bulk", post.clone(), "/Bulk", None, Some(json!({"Operations": []})),
            Other, "bulk", None, None),
        case("root search", post.clone(), "/.search", None,
            Some(json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
                        "filter": "userName eq \"bjensen\""})),
            Other, "search", None, Some("bjensen")),
        case("user search", post.clone(), "/Users/.search", None,
            Some(json!({"filter": "userName Eq \"bjensen\" and active eq true", "startIndex": 1})),
            User, "search", None, Some("bjensen")),
        case("base path", get.clone(), "", None, None, Other, "other", None, None),
        case("root slash", get.clone(), "/", None, None, Other, "other", None, None),
        case("unknown endpoint", get.clone(), "/Me", None, None, Other, "other", None, None),
        case("PUT on the collection", put.clone(), "/Users", None, Some(okta_user(false)),
            User, "other", None, None),
        case("POST on an id", post.clone(), &up, None, None, User, "other", some_u, None),
        case("too deep", get.clone(), &format!("{up}/x"), None, None, User, "other", None, None),
        case("trailing slash", get.clone(), "/Users/", None, None, User, "user.list", None, None),
        case("resource, parameter, attribute and operator in other cases", get.clone(), "/users",
            Some("FILTER=USERNAME+EQ+%22bob%22"), None, User, "user.lookup", None, Some("bob")),
        case("empty filter is a list", get.clone(), "/Users", Some("filter="), None,
            User, "user.list", None, None),
        case("filter with and, escaped quote", get.clone(), "/Users",
            Some("filter=%28userName+eq+%22o%5C%22neil%22%29+and+active+eq+true"), None,
            User, "user.lookup", None, Some("o\"neil")),
    ]
}

#[test]
fn every_op_and_shape() {
    for c in cases() {
        let r = read_request(&c.method, &c.rest, c.query, c.body.as_ref());
        assert_eq!(
            r,
            ScimReading {
                resource: c.resource,
                op: c.op,
                resource_id: c.id.map(str::to_owned),
                subject: c.subject.map(str::to_owned),
            },
            "{}",
            c.name
        );
    }
}

#[test]
fn every_op_is_covered() {
    let seen: std::collections::BTreeSet<&str> = cases().iter().map(|c| c.op).collect();
    for op in [
        "user.lookup",
        "user.list",
        "user.create",
        "user.read",
        "user.update",
        "user.deactivate",
        "user.reactivate",
        "user.delete",
        "group.lookup",
        "group.list",
        "group.create",
        "group.read",
        "group.update",
        "group.members.add",
        "group.members.remove",
        "group.delete",
        "discovery",
        "bulk",
        "search",
        "other",
    ] {
        assert!(seen.contains(op), "{op}");
    }
}

#[test]
fn resource_serialises_as_documented() {
    assert_eq!(
        serde_json::to_string(&[
            Resource::User,
            Resource::Group,
            Resource::Discovery,
            Resource::Other
        ])
        .unwrap(),
        r#"["User","Group","discovery","other"]"#
    );
    assert_eq!(Resource::Discovery.as_str(), "discovery");
}

#[test]
fn create_response_gives_the_id() {
    let mut r = read_request(&Method::POST, "/Users", None, Some(&entra_user()));
    let mut body = entra_user();
    body["id"] = json!(U);
    complete(&mut r, 201, &body);
    assert_eq!(r.resource_id.as_deref(), Some(U));
    assert_eq!(
        r.subject.as_deref(),
        Some("Test_User_ab6490ee-1e48-479e-a20b-2d77186b5dd1@contoso.com")
    );
}

#[test]
fn read_response_gives_the_subject() {
    let mut r = read_request(&Method::GET, &user_path(), None, None);
    complete(&mut r, 200, &okta_user(true));
    assert_eq!(r.subject.as_deref(), Some("test.user@okta.local"));
    assert_eq!(r.resource_id.as_deref(), Some(U));

    let mut r = read_request(&Method::GET, &group_path(), None, None);
    let group = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "id": G,
                       "displayName": "Test SCIMv2", "meta": {"resourceType": "Group"}});
    complete(&mut r, 200, &group);
    assert_eq!(r.subject.as_deref(), Some("Test SCIMv2"));
}

#[test]
fn deactivate_response_names_the_user() {
    let body = patch(json!([{"op": "replace", "value": {"active": false}}]));
    let mut r = read_request(&Method::PATCH, &user_path(), None, Some(&body));
    complete(&mut r, 200, &okta_user(false));
    assert_eq!(r.op, "user.deactivate");
    assert_eq!(r.subject.as_deref(), Some("test.user@okta.local"));
    // Netskope's documented answer: 204, no body.
    let mut r = read_request(&Method::PATCH, &user_path(), None, Some(&body));
    complete_from_response(&mut r, 204, None);
    assert_eq!(r.subject, None);
}

#[test]
fn lookup_with_one_match_gives_id_and_subject() {
    let list = |resources: Value| {
        json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
               "totalResults": resources.as_array().map_or(0, Vec::len),
               "startIndex": 1, "itemsPerPage": 1, "Resources": resources})
    };
    let one = list(json!([{"id": U, "userName": "alice@contoso.com", "active": true}]));
    // By externalId: the subject comes from the answer.
    let mut r = read_request(
        &Method::GET,
        "/Users",
        Some("filter=externalId+eq+%22e1%22"),
        None,
    );
    complete(&mut r, 200, &one);
    assert_eq!(r.resource_id.as_deref(), Some(U));
    assert_eq!(r.subject.as_deref(), Some("alice@contoso.com"));
    // The filter's subject is kept.
    let mut r = read_request(
        &Method::GET,
        "/Users",
        Some("filter=userName+eq+%22Alice%40contoso.com%22"),
        None,
    );
    complete(&mut r, 200, &one);
    assert_eq!(r.subject.as_deref(), Some("Alice@contoso.com"));
    // No match, or a plain list page: nothing.
    let mut r = read_request(
        &Method::GET,
        "/Users",
        Some("filter=userName+eq+%22x%22"),
        None,
    );
    complete(&mut r, 200, &list(json!([])));
    assert_eq!(r.resource_id, None);
    let mut r = read_request(&Method::GET, "/Users", Some("startIndex=1&count=2"), None);
    complete(&mut r, 200, &one);
    assert_eq!((r.resource_id, r.subject), (None, None));
}

#[test]
fn errors_complete_nothing() {
    let mut r = read_request(&Method::GET, &user_path(), None, None);
    let err = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"],
                     "detail": "User not found", "status": "404"});
    complete(&mut r, 404, &err);
    assert_eq!(r.subject, None);
    // Discovery answers are not resources.
    let mut r = read_request(&Method::GET, "/ResourceTypes/User", None, None);
    complete(&mut r, 200, &json!({"id": "User", "name": "User"}));
    assert_eq!(r.resource_id, None);
}

#[test]
fn scim_error_fields() {
    let okta_409 = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"],
                          "detail": "User already exists in the database.", "status": 409});
    assert_eq!(
        scim_error(&okta_409),
        (Some("User already exists in the database.".into()), None)
    );
    let rfc = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"],
                     "scimType": "uniqueness", "detail": "userName is not unique", "status": "409"});
    assert_eq!(
        scim_error(&rfc),
        (
            Some("userName is not unique".into()),
            Some("uniqueness".into())
        )
    );
    let scim11 = json!({"Errors": [{"description": "Resource 1 not found", "code": "404"}]});
    assert_eq!(
        scim_error(&scim11).0.as_deref(),
        Some("Resource 1 not found")
    );
    let gateway = json!({"status": "error", "message": "Invalid token"});
    assert_eq!(scim_error(&gateway).0.as_deref(), Some("Invalid token"));
    assert_eq!(scim_error(&json!("oops")), (None, None));
    assert_eq!(scim_error(&json!({"detail": "  "})), (None, None));
    let long = json!({"detail": "é".repeat(600)});
    let d = scim_error(&long).0.unwrap();
    assert!(d.len() <= MAX_DETAIL + "…".len() && d.ends_with('…'));
}

/// `complete_from_response` as it was over a parsed document (`get_ci` on every object): the
/// one-pass reading must agree with it on any body, keys in any case and order, duplicates too.
fn completed_from_document(r: &mut ScimReading, body: &[u8]) {
    use crate::scim::attrs::get_ci;
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return;
    };
    let Some(obj) = v.as_object() else { return };
    let attr = subject_attr(r.resource);
    let resource = match get_ci(obj, "Resources") {
        Some(Value::Array(items)) => {
            if !matches!(r.op, "user.lookup" | "group.lookup" | "search") || items.len() != 1 {
                return;
            }
            match items[0].as_object() {
                Some(o) => o,
                None => return,
            }
        }
        Some(_) => return,
        None => obj,
    };
    let text = |k| {
        get_ci(resource, k)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    };
    if r.resource_id.is_none() {
        r.resource_id = text("id").map(str::to_owned);
    }
    if r.subject.is_none() {
        r.subject = text(attr).map(str::to_owned);
    }
}

#[test]
fn the_answer_is_read_as_its_parsed_document_would_be() {
    let bodies = [
        r#"{"id":"1","userName":"a"}"#,
        r#"{"ID":"1","Id":"2","userName":"a","USERNAME":"b"}"#,
        r#"{"Id":"2","id":"1","iD":"3"}"#,
        r#"{"iD":"3","Id":"2"}"#,
        r#"{"id":"1","id":"4","username":"x","username":"y"}"#,
        r#"{"id":7,"userName":["a"],"ID":"8"}"#,
        r#"{"id":"","userName":""}"#,
        r#"{"Resources":[{"id":"9","userName":"n","Resources":[]}],"id":"top"}"#,
        r#"{"resources":[{"ID":"9","USERNAME":"n"}]}"#,
        r#"{"Resources":[{"id":"9"},{"id":"10"}]}"#,
        r#"{"Resources":[]}"#,
        r#"{"Resources":["x"]}"#,
        r#"{"Resources":{"id":"9"},"id":"1"}"#,
        r#"{"RESOURCES":[{"id":"9"}],"Resources":5}"#,
        r#"{"displayName":"g","id":"\u0031"}"#,
        r#"{"us\u0065rName":"esc","id":"1"}"#,
        r#"{"id":"1"} trailing"#,
        r#"{"id":"1""#,
        r#"["id","1"]"#,
        r#""just text""#,
        r#"{"meta":{"id":"inner"},"id":null}"#,
    ];
    let requests: [(&Method, &str, Option<&str>); 4] = [
        (&Method::GET, "/Users/u1", None),
        (
            &Method::GET,
            "/Users",
            Some("filter=externalId+eq+%22e1%22"),
        ),
        (
            &Method::GET,
            "/Groups",
            Some("filter=externalId+eq+%22e1%22"),
        ),
        (&Method::POST, "/Users", None),
    ];
    for body in bodies {
        for (method, path, query) in requests {
            let mut want = read_request(method, path, query, None);
            want.resource_id = None;
            let mut got = read_request(method, path, query, None);
            got.resource_id = None;
            completed_from_document(&mut want, body.as_bytes());
            complete_from_response(&mut got, 200, Some(body.as_bytes()));
            assert_eq!(
                (&got.resource_id, &got.subject),
                (&want.resource_id, &want.subject),
                "{body} for {method} {path}"
            );
        }
    }
}
