//! What a SCIM request does, read from its method, path, query and body: which resource, which
//! operation, which id and which user or group.
//!
//! Only for logs, metrics and the report: nothing here changes what is forwarded. Unknown shapes give
//! `other` (or `*.update`), never an error.

use http::Method;
use serde::Serialize;
use serde_json::Value;

use crate::scim::attrs::{get_ci, top_level_str};
use crate::scim::filter::filter_eq_value;
use crate::scim::patch::{
    patch_group_op, patch_operations, patch_subject, patch_user_op, put_user_op,
};
use crate::scim::query::query_param;

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
    let resource = match addressed(&segments, body) {
        Ok(resource) => resource,
        Err(whole) => return whole,
    };
    // Methods as text: `http::Method` constants cannot be match patterns.
    let method = method.as_str();
    match (segments.get(1).copied(), segments.len()) {
        // Collection: lookup, list, create.
        (None, _) => read_collection(resource, method, query, body),
        (Some(s), 2) if s.eq_ignore_ascii_case(".search") => read_search(resource, method, body),
        (Some(id), 2) => {
            let mut r = read_item(resource, method, body);
            r.resource_id = Some(id.to_owned());
            r
        }
        _ => reading(resource, "other"),
    }
}

fn reading(resource: Resource, op: &'static str) -> ScimReading {
    ScimReading {
        resource,
        op,
        resource_id: None,
        subject: None,
    }
}

/// Users or Groups by the first path segment; any other path is read whole here (`Err`).
fn addressed(segments: &[&str], body: Option<&Value>) -> Result<Resource, ScimReading> {
    let Some(first) = segments.first().copied() else {
        return Err(reading(Resource::Other, "other"));
    };
    if first.eq_ignore_ascii_case("Users") {
        Ok(Resource::User)
    } else if first.eq_ignore_ascii_case("Groups") {
        Ok(Resource::Group)
    } else if [
        "ServiceProviderConfig",
        "ServiceProviderConfigs",
        "Schemas",
        "ResourceTypes",
    ]
    .iter()
    .any(|d| first.eq_ignore_ascii_case(d))
    {
        Err(reading(Resource::Discovery, "discovery"))
    } else if first.eq_ignore_ascii_case("Bulk") && segments.len() == 1 {
        Err(reading(Resource::Other, "bulk"))
    } else if first.eq_ignore_ascii_case(".search") && segments.len() == 1 {
        let mut r = reading(Resource::Other, "search");
        r.subject = body.and_then(search_subject_any);
        Err(r)
    } else {
        Err(reading(Resource::Other, "other"))
    }
}

/// `/Users` or `/Groups`: a lookup by filter, a list, or a create.
fn read_collection(
    resource: Resource,
    method: &str,
    query: Option<&str>,
    body: Option<&Value>,
) -> ScimReading {
    let name_attr = subject_attr(resource);
    match method {
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
    }
}

/// `/Users/.search` or `/Groups/.search`: only a POST searches.
fn read_search(resource: Resource, method: &str, body: Option<&Value>) -> ScimReading {
    let mut r = reading(resource, "search");
    if method == "POST" {
        r.subject = body
            .and_then(|b| get_ci(b.as_object()?, "filter")?.as_str())
            .and_then(|f| filter_eq_value(f, subject_attr(resource)));
    } else {
        r.op = "other";
    }
    r
}

/// `/Users/{id}` or `/Groups/{id}` (the id is set by the caller).
fn read_item(resource: Resource, method: &str, body: Option<&Value>) -> ScimReading {
    match (resource, method) {
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
    }
}

fn pick(resource: Resource, user: &'static str, group: &'static str) -> &'static str {
    if resource == Resource::Group {
        group
    } else {
        user
    }
}

pub(crate) fn subject_attr(resource: Resource) -> &'static str {
    if resource == Resource::Group {
        "displayName"
    } else {
        "userName"
    }
}

/// Subject of a root `/.search`: a userName, else a displayName, in its filter.
fn search_subject_any(body: &Value) -> Option<String> {
    let filter = get_ci(body.as_object()?, "filter")?.as_str()?;
    filter_eq_value(filter, "userName").or_else(|| filter_eq_value(filter, "displayName"))
}
