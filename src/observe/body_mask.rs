//! Capture mode: secrets and personal values masked in a captured JSON body.

use serde_json::{Map, Value};

use crate::observe::credentials::{MASK, is_secret_name};
use crate::observe::pii::{Pii, PiiPolicy, scrub_text};
use crate::observe::query_mask::mask_filter_literals;
use crate::scim::reading::{attr_segments, get_ci};

/// Capture mode: masks a JSON body in place.
///
/// - Secrets (`password` at any depth and in any case, keys naming a token, secret, API key or credential,
///   and the `value` of a PATCH operation whose `path` is such an attribute) become `"***"`.
/// - Personal values (`userName`, `displayName` except a Group's own, `name.*`, `emails`/`phoneNumbers`/
///   `ims`/`photos`/`addresses` values, `externalId`, members' `display`, `nickName`, `title`,
///   `employeeNumber`, `profileUrl`, the value of a PATCH op on such a path, `filter` literals) follow
///   the policy: `hash` -> `"h:…"`, `plain` -> unchanged, `omit` -> `null` (the key stays, so the shape of
///   the body can still be read). `type`, `primary` and `$ref` inside them are kept. E-mail-like words
///   in an error `detail` are replaced the same way.
pub fn mask_body(value: &mut Value, pii: &PiiPolicy) {
    match value {
        Value::Object(map) => mask_object(map, pii),
        Value::Array(items) => items.iter_mut().for_each(|v| mask_body(v, pii)),
        _ => {}
    }
}

fn mask_object(map: &mut Map<String, Value>, pii: &PiiPolicy) {
    let is_group = object_is_group(map);
    // A PATCH operation: its `value` is what its `path` names.
    let patch_path = get_ci(map, "op")
        .and(get_ci(map, "path"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    for (key, v) in map.iter_mut() {
        if key.eq_ignore_ascii_case("value")
            && let Some(path) = &patch_path
        {
            let segments = attr_segments(path);
            if segments.iter().any(|s| is_secret_name(s)) {
                mask_secret(v);
            } else if segments.iter().any(|s| is_personal(s, false)) {
                apply_pii_all(v, pii);
            } else {
                mask_body(v, pii);
            }
        } else if key.eq_ignore_ascii_case("path") && patch_path.is_some() {
            // `emails[value eq "alice@…"]`: literals of a path on personal data.
            if let Value::String(p) = v
                && attr_segments(p).iter().any(|s| is_personal(s, false))
                && pii.mode() != Pii::Plain
            {
                *p = mask_filter_literals(p, pii);
            }
        } else if is_secret_name(key) {
            mask_secret(v);
        } else if key.eq_ignore_ascii_case("detail") {
            // An error's free text may name the user.
            if let Value::String(d) = v {
                *d = scrub_text(d, None, pii);
            }
        } else if key.eq_ignore_ascii_case("filter") {
            if let Value::String(f) = v
                && pii.mode() != Pii::Plain
            {
                *f = mask_filter_literals(f, pii);
            }
        } else if attr_segments(key).iter().any(|s| is_personal(s, is_group)) {
            apply_pii_all(v, pii);
        } else {
            mask_body(v, pii);
        }
    }
}

fn mask_secret(v: &mut Value) {
    if !v.is_null() {
        *v = Value::String(MASK.to_owned());
    }
}

/// Personal attribute names (case-insensitive). A Group's own `displayName` is its name, not a person's.
fn is_personal(attr: &str, in_group: bool) -> bool {
    const PERSONAL: [&str; 17] = [
        "userName",
        "nickName",
        "title",
        "externalId",
        "name",
        "formatted",
        "givenName",
        "familyName",
        "middleName",
        "emails",
        "phoneNumbers",
        "ims",
        "photos",
        "addresses",
        "display",
        "employeeNumber",
        "profileUrl",
    ];
    (attr.eq_ignore_ascii_case("displayName") && !in_group)
        || PERSONAL.iter().any(|p| attr.eq_ignore_ascii_case(p))
}

/// A Group resource by its schema or `meta.resourceType`; anything unsure is treated as a user.
fn object_is_group(map: &Map<String, Value>) -> bool {
    let schema = get_ci(map, "schemas")
        .and_then(Value::as_array)
        .is_some_and(|s| {
            s.iter()
                .filter_map(Value::as_str)
                .any(|s| s.eq_ignore_ascii_case("urn:ietf:params:scim:schemas:core:2.0:Group"))
        });
    let meta = get_ci(map, "meta")
        .and_then(Value::as_object)
        .and_then(|m| get_ci(m, "resourceType"))
        .and_then(Value::as_str)
        .is_some_and(|t| t.eq_ignore_ascii_case("Group"));
    schema || meta
}

/// Every string (and number) under a personal attribute, except `type`/`primary`/`$ref`; secrets still masked.
fn apply_pii_all(v: &mut Value, pii: &PiiPolicy) {
    match v {
        Value::String(s) => {
            *v = pii.apply(s).map_or(Value::Null, Value::String);
        }
        Value::Number(n) => {
            *v = pii.apply(&n.to_string()).map_or(Value::Null, Value::String);
        }
        Value::Array(items) => items.iter_mut().for_each(|i| apply_pii_all(i, pii)),
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                if is_secret_name(k) {
                    mask_secret(v);
                } else if !["type", "primary", "$ref"]
                    .iter()
                    .any(|keep| k.eq_ignore_ascii_case(keep))
                {
                    apply_pii_all(v, pii);
                }
            }
        }
        Value::Bool(_) | Value::Null => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::test_support::{hash_policy, plain};
    use serde_json::json;

    #[test]
    fn bodies_mask_secrets_and_personal_values() {
        let pii = hash_policy();
        let h = |s: &str| pii.apply(s).unwrap();
        let mut okta = json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User",
                        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
            "userName": "test.user@okta.local",
            "name": {"givenName": "Test", "familyName": "User"},
            "emails": [{"primary": true, "value": "test.user@okta.local", "type": "work"}],
            "phoneNumbers": [{"value": "+1 555 0100", "type": "mobile"}],
            "addresses": [{"type": "work", "streetAddress": "1 Main St", "locality": "Springfield"}],
            "displayName": "Test User", "nickName": "Testy", "title": "Engineer",
            "locale": "en-US", "externalId": "00ujl29u0le5T6Aj10h7",
            "groups": [{"value": "g1", "display": "Sales"}],
            "PassWord": "1mz050nq", "active": true,
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {
                "employeeNumber": "701984", "department": "Tour Operations",
                "manager": {"value": "26118915-6090-4610-87e4-49d8ca9f808d", "displayName": "John Smith"}},
            "meta": {"resourceType": "User", "location": "https://x/Users/1"},
            "x": {"apiToken": "t", "client_secret": null, "nested": [{"password": "p"}]}
        });
        mask_body(&mut okta, &pii);
        assert_eq!(
            okta,
            json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User",
                            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
                "userName": h("test.user@okta.local"),
                "name": {"givenName": h("Test"), "familyName": h("User")},
                "emails": [{"primary": true, "value": h("test.user@okta.local"), "type": "work"}],
                "phoneNumbers": [{"value": h("+1 555 0100"), "type": "mobile"}],
                "addresses": [{"type": "work", "streetAddress": h("1 Main St"), "locality": h("Springfield")}],
                "displayName": h("Test User"), "nickName": h("Testy"), "title": h("Engineer"),
                "locale": "en-US", "externalId": h("00ujl29u0le5T6Aj10h7"),
                "groups": [{"value": "g1", "display": h("Sales")}],
                "PassWord": "***", "active": true,
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {
                    "employeeNumber": h("701984"), "department": "Tour Operations",
                    "manager": {"value": "26118915-6090-4610-87e4-49d8ca9f808d", "displayName": h("John Smith")}},
                "meta": {"resourceType": "User", "location": "https://x/Users/1"},
                "x": {"apiToken": "***", "client_secret": null, "nested": [{"password": "***"}]}
            })
        );
    }

    #[test]
    fn group_bodies_keep_the_group_name() {
        let pii = hash_policy();
        let mut group = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
            "id": "g1", "displayName": "Test SCIMv2",
            "members": [{"value": "u1", "display": "test.user@okta.local"}]});
        mask_body(&mut group, &pii);
        assert_eq!(group["displayName"], "Test SCIMv2");
        assert_eq!(group["members"][0]["value"], "u1");
        assert_eq!(
            group["members"][0]["display"],
            json!(pii.apply("test.user@okta.local"))
        );
    }

    #[test]
    fn patch_bodies_mask_by_path() {
        let pii = hash_policy();
        let h = |s: &str| json!(pii.apply(s));
        let mut entra = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [
            {"op": "Replace", "path": "emails[type eq \"work\"].value", "value": "TestBcwqnm@test.microsoft.com"},
            {"op": "Replace", "path": "name.givenName", "value": "Gtfd"},
            {"op": "Replace", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber", "value": "Eqpj"},
            {"op": "Replace", "path": "active", "value": "False"},
            {"op": "replace", "path": "password", "value": "hunter2"},
            {"op": "remove", "path": "members[value eq \"7f4bc1a3\"]"},
            {"op": "remove", "path": "emails[value eq \"old@contoso.com\"]"},
            {"op": "replace", "value": {"displayName": "Bjfe", "name.givenName": "Kkom", "active": false,
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber": "Aklq",
                "password": "x"}}
        ]});
        mask_body(&mut entra, &pii);
        let ops = &entra["Operations"];
        assert_eq!(ops[0]["value"], h("TestBcwqnm@test.microsoft.com"));
        assert_eq!(ops[0]["path"], "emails[type eq \"work\"].value");
        assert_eq!(ops[1]["value"], h("Gtfd"));
        assert_eq!(ops[2]["value"], h("Eqpj"));
        assert_eq!(ops[3]["value"], "False");
        assert_eq!(ops[4]["value"], "***");
        assert_eq!(ops[5]["path"], "members[value eq \"7f4bc1a3\"]");
        assert_eq!(
            ops[6]["path"],
            json!(format!(
                "emails[value eq \"{}\"]",
                pii.apply("old@contoso.com").unwrap()
            ))
        );
        assert_eq!(
            ops[7]["value"],
            json!({"displayName": h("Bjfe"), "name.givenName": h("Kkom"),
            "active": false,
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber": h("Aklq"),
            "password": "***"})
        );
        let mut search = json!({"filter": "userName eq \"bjensen\"", "startIndex": 1});
        mask_body(&mut search, &pii);
        assert_eq!(
            search["filter"],
            json!(format!("userName eq \"{}\"", pii.apply("bjensen").unwrap()))
        );
    }

    #[test]
    fn omit_nulls_and_plain_keeps_personal_values() {
        let body = json!({"userName": "a@b.c", "emails": [{"value": "a@b.c", "type": "work"}],
                          "password": "p", "active": true});
        let mut omitted = body.clone();
        mask_body(&mut omitted, &PiiPolicy::new(Pii::Omit, vec![]));
        assert_eq!(
            omitted,
            json!({"userName": null, "emails": [{"value": null, "type": "work"}],
                                   "password": "***", "active": true})
        );
        let mut kept = body.clone();
        mask_body(&mut kept, &plain());
        assert_eq!(
            kept,
            json!({"userName": "a@b.c", "emails": [{"value": "a@b.c", "type": "work"}],
                                "password": "***", "active": true})
        );
    }
}
