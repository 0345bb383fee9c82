//! Pure SCIM reading of one exchange: which resource, which operation, which id and which user or group.
//!
//! Only for logs, metrics and the report: nothing here changes what is forwarded. Unknown shapes give
//! `other` (or `*.update`), never an error.

use http::Method;
use serde::Serialize;
use serde_json::{Map, Value};

/// The SCIM resource a request addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Resource {
    User,
    Group,
    #[serde(rename = "discovery")]
    Discovery,
    #[serde(rename = "other")]
    Other,
}

impl Resource {
    pub fn as_str(self) -> &'static str {
        match self {
            Resource::User => "User",
            Resource::Group => "Group",
            Resource::Discovery => "discovery",
            Resource::Other => "other",
        }
    }
}

/// What a request means to a provisioning admin. `subject` is personal: apply the PII policy before logging.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScimReading {
    pub resource: Resource,
    pub op: &'static str,
    pub resource_id: Option<String>,
    pub subject: Option<String>,
}

/// Longest `detail` kept from an error body: a log line must stay a line.
const MAX_DETAIL: usize = 512;

/// Reads a request. `rest` is the path after the SCIM prefix (`""`, `/Users`, `/Users/{id}`), `query` the
/// raw query string, `body` the request body when it parsed as JSON.
pub fn read_request(
    method: &Method,
    rest: &str,
    query: Option<&str>,
    body: Option<&Value>,
) -> ScimReading {
    let mut segments: Vec<&str> = rest.split('/').skip(1).collect();
    // `/Users/` means `/Users`.
    if segments.last() == Some(&"") {
        segments.pop();
    }
    let reading = |resource, op| ScimReading {
        resource,
        op,
        resource_id: None,
        subject: None,
    };
    let Some(first) = segments.first().copied() else {
        return reading(Resource::Other, "other");
    };
    let resource = if first.eq_ignore_ascii_case("Users") {
        Resource::User
    } else if first.eq_ignore_ascii_case("Groups") {
        Resource::Group
    } else if [
        "ServiceProviderConfig",
        "ServiceProviderConfigs",
        "Schemas",
        "ResourceTypes",
    ]
    .iter()
    .any(|d| first.eq_ignore_ascii_case(d))
    {
        return reading(Resource::Discovery, "discovery");
    } else if first.eq_ignore_ascii_case("Bulk") && segments.len() == 1 {
        return reading(Resource::Other, "bulk");
    } else if first.eq_ignore_ascii_case(".search") && segments.len() == 1 {
        let mut r = reading(Resource::Other, "search");
        r.subject = body.and_then(search_subject_any);
        return r;
    } else {
        return reading(Resource::Other, "other");
    };
    let name_attr = subject_attr(resource);

    // Methods as text: `http::Method` constants cannot be match patterns.
    let method = method.as_str();
    match (segments.get(1).copied(), segments.len()) {
        // Collection: lookup, list, create.
        (None, _) => match method {
            "GET" => match query_param(query, "filter").filter(|f| !f.trim().is_empty()) {
                Some(filter) => {
                    let mut r = reading(resource, pick(resource, "user.lookup", "group.lookup"));
                    r.subject = filter_eq_value(&filter, name_attr);
                    r
                }
                None => reading(resource, pick(resource, "user.list", "group.list")),
            },
            "POST" => {
                let mut r = reading(resource, pick(resource, "user.create", "group.create"));
                r.subject = body.and_then(|b| top_level_str(b, name_attr));
                r
            }
            _ => reading(resource, "other"),
        },
        (Some(s), 2) if s.eq_ignore_ascii_case(".search") => {
            let mut r = reading(resource, "search");
            if method == "POST" {
                r.subject = body
                    .and_then(|b| get_ci(b.as_object()?, "filter")?.as_str())
                    .and_then(|f| filter_eq_value(f, name_attr));
            } else {
                r.op = "other";
            }
            r
        }
        (Some(id), 2) => {
            let mut r = match (resource, method) {
                (_, "GET") => reading(resource, pick(resource, "user.read", "group.read")),
                (_, "DELETE") => reading(resource, pick(resource, "user.delete", "group.delete")),
                (Resource::User, "PUT") => {
                    let mut r = reading(resource, put_user_op(body));
                    r.subject = body.and_then(|b| top_level_str(b, "userName"));
                    r
                }
                (Resource::Group, "PUT") => {
                    let mut r = reading(resource, "group.update");
                    r.subject = body.and_then(|b| top_level_str(b, "displayName"));
                    r
                }
                (Resource::User, "PATCH") => {
                    let ops = patch_operations(body);
                    let mut r = reading(resource, patch_user_op(&ops));
                    r.subject = patch_subject(&ops, "userName");
                    r
                }
                (Resource::Group, "PATCH") => {
                    let ops = patch_operations(body);
                    let mut r = reading(resource, patch_group_op(&ops));
                    r.subject = patch_subject(&ops, "displayName");
                    r
                }
                _ => reading(resource, "other"),
            };
            r.resource_id = Some(id.to_owned());
            r
        }
        _ => reading(resource, "other"),
    }
}

/// Fills `resource_id` and `subject` from a 2xx response body when the request did not carry them:
/// a single resource (read, create, update), or a lookup/search answered with exactly one match.
pub fn complete_from_response(reading: &mut ScimReading, status: u16, body: Option<&Value>) {
    if !(200..300).contains(&status) {
        return;
    }
    let Some(obj) = body.and_then(Value::as_object) else {
        return;
    };
    let attr = match reading.resource {
        Resource::User | Resource::Group => subject_attr(reading.resource),
        Resource::Discovery | Resource::Other => return,
    };
    let resource = match get_ci(obj, "Resources") {
        // A list names one resource only when it is the answer to a lookup.
        Some(Value::Array(items)) => {
            if !matches!(reading.op, "user.lookup" | "group.lookup" | "search") || items.len() != 1
            {
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
    if reading.resource_id.is_none() {
        reading.resource_id = get_ci(resource, "id")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned);
    }
    if reading.subject.is_none() {
        reading.subject = get_ci(resource, attr)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned);
    }
}

/// `(detail, scimType)` of an error body. Falls back to SCIM 1.1 `Errors[0].description` and to a
/// generic `message` when `detail` is absent, so a non-SCIM gateway error still says something.
pub fn scim_error(body: &Value) -> (Option<String>, Option<String>) {
    let Some(obj) = body.as_object() else {
        return (None, None);
    };
    let text = |v: &Value| match v {
        Value::String(s) if !s.trim().is_empty() => Some(truncate(s.trim(), MAX_DETAIL)),
        _ => None,
    };
    let detail = get_ci(obj, "detail")
        .and_then(text)
        .or_else(|| {
            get_ci(obj, "Errors")
                .and_then(|e| e.as_array()?.first()?.as_object().cloned())
                .and_then(|e| get_ci(&e, "description").and_then(text))
        })
        .or_else(|| {
            ["message", "error_description", "error"]
                .iter()
                .find_map(|k| get_ci(obj, k).and_then(text))
        });
    let scim_type = get_ci(obj, "scimType").and_then(text);
    (detail, scim_type)
}

fn pick(resource: Resource, user: &'static str, group: &'static str) -> &'static str {
    if resource == Resource::Group {
        group
    } else {
        user
    }
}

fn subject_attr(resource: Resource) -> &'static str {
    if resource == Resource::Group {
        "displayName"
    } else {
        "userName"
    }
}

/// PUT replaces the whole user: `active:false` is a deactivation (Okta AIW, JumpCloud). `active:true` is
/// what every full-object update carries, so it stays `user.update`: a reactivation by PUT cannot be
/// told from a profile update without the previous state.
fn put_user_op(body: Option<&Value>) -> &'static str {
    let active = body.and_then(Value::as_object).and_then(active_in_object);
    match active {
        Some(false) => "user.deactivate",
        _ => "user.update",
    }
}

/// The last `add`/`replace` of `active` decides (PATCH operations apply in order).
fn patch_user_op(ops: &[&Map<String, Value>]) -> &'static str {
    let mut active = None;
    for op in ops {
        let name = op_name(op);
        if !(name.eq_ignore_ascii_case("add") || name.eq_ignore_ascii_case("replace")) {
            continue;
        }
        let value = get_ci(op, "value");
        match op_path(op) {
            Some(path) => {
                if attr_is(path, "active")
                    && let Some(b) = value.and_then(truthy)
                {
                    active = Some(b);
                }
            }
            None => {
                if let Some(b) = value.and_then(Value::as_object).and_then(active_in_object) {
                    active = Some(b);
                }
            }
        }
    }
    match active {
        Some(false) => "user.deactivate",
        Some(true) => "user.reactivate",
        None => "user.update",
    }
}

/// Any removal of members wins (Okta sends remove + add in one request); then any add or non-empty
/// replace (`replace path members` is a full push: read as adding); otherwise a plain update.
/// A replace with no members empties the group, so it counts as a removal.
fn patch_group_op(ops: &[&Map<String, Value>]) -> &'static str {
    let (mut remove, mut add) = (false, false);
    for op in ops {
        let name = op_name(op);
        let members_value = match op_path(op) {
            Some(path) if attr_is(path, "members") => Some(get_ci(op, "value")),
            Some(_) => None,
            None => get_ci(op, "value")
                .and_then(Value::as_object)
                .and_then(|v| get_ci(v, "members"))
                .map(Some),
        };
        let Some(value) = members_value else {
            continue;
        };
        let empty = match value {
            None | Some(Value::Null) => true,
            Some(Value::Array(a)) => a.is_empty(),
            Some(_) => false,
        };
        if name.eq_ignore_ascii_case("remove") {
            remove = true;
        } else if name.eq_ignore_ascii_case("add") {
            add = true;
        } else if name.eq_ignore_ascii_case("replace") {
            if empty {
                remove = true;
            } else {
                add = true;
            }
        }
    }
    if remove {
        "group.members.remove"
    } else if add {
        "group.members.add"
    } else {
        "group.update"
    }
}

/// `userName` / `displayName` set by a PATCH, in path form or in a path-less value object.
fn patch_subject(ops: &[&Map<String, Value>], attr: &str) -> Option<String> {
    ops.iter().rev().find_map(|op| {
        let value = get_ci(op, "value")?;
        match op_path(op) {
            Some(path) if attr_is(path, attr) => value.as_str().map(str::to_owned),
            Some(_) => None,
            None => top_level_str(value, attr),
        }
    })
}

fn patch_operations(body: Option<&Value>) -> Vec<&Map<String, Value>> {
    body.and_then(Value::as_object)
        .and_then(|b| get_ci(b, "Operations"))
        .and_then(Value::as_array)
        .map(|ops| ops.iter().filter_map(Value::as_object).collect())
        .unwrap_or_default()
}

fn op_name(op: &Map<String, Value>) -> &str {
    get_ci(op, "op")
        .and_then(Value::as_str)
        .unwrap_or("")
        .trim()
}

fn op_path(op: &Map<String, Value>) -> Option<&str> {
    get_ci(op, "path")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|p| !p.is_empty())
}

/// `active` in a resource or path-less value object: bare or URN-qualified key.
fn active_in_object(o: &Map<String, Value>) -> Option<bool> {
    o.iter()
        .filter(|(k, _)| attr_is(k, "active"))
        .find_map(|(_, v)| truthy(v))
}

/// `false`, `"False"`, `"false"` (Entra's default sends strings), or a one-element array of those.
fn truthy(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::String(s) if s.trim().eq_ignore_ascii_case("true") => Some(true),
        Value::String(s) if s.trim().eq_ignore_ascii_case("false") => Some(false),
        Value::Array(a) if a.len() == 1 => truthy(&a[0]),
        _ => None,
    }
}

/// Whether an attribute path names `attr` at its top: `active`, `members[value eq "x"]`, `members.value`,
/// `urn:ietf:params:scim:schemas:core:2.0:User:active`; case-insensitive as RFC 7644 §3.10 says.
pub(crate) fn attr_is(path: &str, attr: &str) -> bool {
    attr_segments(path)
        .first()
        .is_some_and(|s| s.eq_ignore_ascii_case(attr))
}

/// The dotted segments of an attribute path, without value filters and without a schema URN prefix.
pub(crate) fn attr_segments(path: &str) -> Vec<String> {
    let mut plain = String::with_capacity(path.len());
    let mut depth = 0usize;
    for c in path.trim().chars() {
        match c {
            '[' => depth += 1,
            ']' => depth = depth.saturating_sub(1),
            _ if depth == 0 => plain.push(c),
            _ => {}
        }
    }
    let plain = if plain.len() >= 4 && plain[..4].eq_ignore_ascii_case("urn:") {
        // The attribute follows the last colon; the URN's `2.0` must not split it.
        plain.rsplit(':').next().unwrap_or("").to_owned()
    } else {
        plain
    };
    plain
        .split('.')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Case-insensitive object lookup (SCIM attribute names are case-insensitive); exact match first.
pub(crate) fn get_ci<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    obj.get(key).or_else(|| {
        obj.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    })
}

fn top_level_str(body: &Value, attr: &str) -> Option<String> {
    let obj = body.as_object()?;
    obj.iter()
        .filter(|(k, _)| attr_segments(k).len() == 1 && attr_is(k, attr))
        .find_map(|(_, v)| v.as_str())
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// Subject of a root `/.search`: a userName, else a displayName, in its filter.
fn search_subject_any(body: &Value) -> Option<String> {
    let filter = get_ci(body.as_object()?, "filter")?.as_str()?;
    filter_eq_value(filter, "userName").or_else(|| filter_eq_value(filter, "displayName"))
}

/// The value of the first `<attr> eq "<value>"` in a SCIM filter (attribute and operator case-insensitive).
pub fn filter_eq_value(filter: &str, attr: &str) -> Option<String> {
    let tokens = filter_tokens(filter);
    tokens.windows(3).find_map(|w| match w {
        [
            FilterToken::Word(a, _),
            FilterToken::Word(op, _),
            FilterToken::Str(v, _),
        ] if op.eq_ignore_ascii_case("eq")
            && attr_segments(a).len() == 1
            && attr_is(a, attr)
            && !v.is_empty() =>
        {
            Some(v.clone())
        }
        _ => None,
    })
}

/// A token of a SCIM filter with its byte span in the filter text; strings are unescaped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FilterToken {
    Word(String, std::ops::Range<usize>),
    Str(String, std::ops::Range<usize>),
    Punct(char, std::ops::Range<usize>),
}

/// Splits a filter into words, JSON-style strings and brackets. Never fails: an unterminated string runs
/// to the end.
pub(crate) fn filter_tokens(filter: &str) -> Vec<FilterToken> {
    let mut tokens = Vec::new();
    let mut chars = filter.char_indices().peekable();
    while let Some(&(start, c)) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if matches!(c, '(' | ')' | '[' | ']') {
            chars.next();
            tokens.push(FilterToken::Punct(c, start..start + 1));
        } else if c == '"' {
            chars.next();
            let mut value = String::new();
            let mut end = filter.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    '\\' => match chars.next() {
                        Some((_, 'n')) => value.push('\n'),
                        Some((_, 't')) => value.push('\t'),
                        Some((_, e)) => value.push(e),
                        None => {}
                    },
                    c => value.push(c),
                }
            }
            tokens.push(FilterToken::Str(value, start..end));
        } else {
            let mut end = filter.len();
            while let Some(&(i, c)) = chars.peek() {
                if c.is_whitespace() || matches!(c, '(' | ')' | '[' | ']' | '"') {
                    end = i;
                    break;
                }
                chars.next();
            }
            tokens.push(FilterToken::Word(filter[start..end].to_owned(), start..end));
        }
    }
    tokens
}

/// The decoded value of the first query parameter named `name` (case-insensitive).
pub(crate) fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    query?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        form_decode(k)
            .eq_ignore_ascii_case(name)
            .then(|| form_decode(v))
    })
}

/// `application/x-www-form-urlencoded` decoding: `+` is a space (Entra), `%XX` a byte (Okta); bad escapes
/// stay as they are; invalid UTF-8 is replaced.
pub(crate) fn form_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex_val(bytes[i + 1]), hex_val(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
        complete_from_response(&mut r, 201, Some(&body));
        assert_eq!(r.resource_id.as_deref(), Some(U));
        assert_eq!(
            r.subject.as_deref(),
            Some("Test_User_ab6490ee-1e48-479e-a20b-2d77186b5dd1@contoso.com")
        );
    }

    #[test]
    fn read_response_gives_the_subject() {
        let mut r = read_request(&Method::GET, &user_path(), None, None);
        complete_from_response(&mut r, 200, Some(&okta_user(true)));
        assert_eq!(r.subject.as_deref(), Some("test.user@okta.local"));
        assert_eq!(r.resource_id.as_deref(), Some(U));

        let mut r = read_request(&Method::GET, &group_path(), None, None);
        let group = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "id": G,
                           "displayName": "Test SCIMv2", "meta": {"resourceType": "Group"}});
        complete_from_response(&mut r, 200, Some(&group));
        assert_eq!(r.subject.as_deref(), Some("Test SCIMv2"));
    }

    #[test]
    fn deactivate_response_names_the_user() {
        let body = patch(json!([{"op": "replace", "value": {"active": false}}]));
        let mut r = read_request(&Method::PATCH, &user_path(), None, Some(&body));
        complete_from_response(&mut r, 200, Some(&okta_user(false)));
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
        complete_from_response(&mut r, 200, Some(&one));
        assert_eq!(r.resource_id.as_deref(), Some(U));
        assert_eq!(r.subject.as_deref(), Some("alice@contoso.com"));
        // The filter's subject is kept.
        let mut r = read_request(
            &Method::GET,
            "/Users",
            Some("filter=userName+eq+%22Alice%40contoso.com%22"),
            None,
        );
        complete_from_response(&mut r, 200, Some(&one));
        assert_eq!(r.subject.as_deref(), Some("Alice@contoso.com"));
        // No match, or a plain list page: nothing.
        let mut r = read_request(
            &Method::GET,
            "/Users",
            Some("filter=userName+eq+%22x%22"),
            None,
        );
        complete_from_response(&mut r, 200, Some(&list(json!([]))));
        assert_eq!(r.resource_id, None);
        let mut r = read_request(&Method::GET, "/Users", Some("startIndex=1&count=2"), None);
        complete_from_response(&mut r, 200, Some(&one));
        assert_eq!((r.resource_id, r.subject), (None, None));
    }

    #[test]
    fn errors_complete_nothing() {
        let mut r = read_request(&Method::GET, &user_path(), None, None);
        let err = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"],
                         "detail": "User not found", "status": "404"});
        complete_from_response(&mut r, 404, Some(&err));
        assert_eq!(r.subject, None);
        // Discovery answers are not resources.
        let mut r = read_request(&Method::GET, "/ResourceTypes/User", None, None);
        complete_from_response(&mut r, 200, Some(&json!({"id": "User", "name": "User"})));
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

    #[test]
    fn filter_and_query_decoding() {
        assert_eq!(form_decode("a+b%20c%2Bd%zz%4"), "a b c+d%zz%4");
        assert_eq!(
            query_param(Some("count=2&Filter=userName+eq+%22x%22"), "filter").as_deref(),
            Some("userName eq \"x\"")
        );
        assert_eq!(
            filter_eq_value("emails[type eq \"work\"].value eq \"a@b.c\"", "userName"),
            None
        );
        assert_eq!(
            filter_eq_value(
                "urn:ietf:params:scim:schemas:core:2.0:User:userName eq \"a\"",
                "userName"
            )
            .as_deref(),
            Some("a")
        );
        assert_eq!(filter_eq_value("userName sw \"a\"", "userName"), None);
        assert_eq!(
            filter_eq_value("userName eq \"unterminated", "userName").as_deref(),
            Some("unterminated")
        );
    }
}
