//! A resource as JSON: what the client sends is normalised on the way in (server-owned
//! attributes dropped, `active` and `members` made canonical) and given `id`/`meta` on the way out.

use std::collections::HashSet;

use http::StatusCode;
use http::header::ETAG;
use serde_json::{Map, Value, json};

use super::attrs::{get_ci, remove_ci};
use super::error::ScimError;
use super::kind::Kind;
use super::response::{Resp, json_response, with_header};
use super::store::Res;

pub(super) fn render(kind: Kind, res: &Res, base_url: &str) -> Value {
    let mut m = res.attrs.clone();
    // RFC 7643 §4.1: `password` is "returned: never".
    remove_ci(&mut m, "password");
    if get_ci(&m, "schemas").is_none() {
        m.insert("schemas".into(), json!([kind.schema()]));
    }
    let location = format!("{base_url}/{}/{}", kind.endpoint(), res.id);
    m.insert("id".into(), Value::from(res.id.clone()));
    m.insert(
        "meta".into(),
        json!({
            "resourceType": kind.resource_type(),
            "created": res.created,
            "lastModified": res.modified,
            "location": location,
            "version": res.etag(),
        }),
    );
    if let Some(Value::Array(members)) = m.get_mut("members") {
        for member in members.iter_mut().filter_map(Value::as_object_mut) {
            let endpoint = match get_ci(member, "type") {
                Some(Value::String(t)) if t.eq_ignore_ascii_case("group") => "Groups",
                _ => "Users",
            };
            if let Some(Value::String(v)) = member.get("value") {
                let r = format!("{base_url}/{endpoint}/{v}");
                member.insert("$ref".into(), Value::from(r));
            }
        }
    }
    Value::Object(m)
}

/// Server-side normalisation shared by POST, PUT and PATCH.
pub(super) fn sanitize(kind: Kind, attrs: &mut Map<String, Value>) -> Result<(), ScimError> {
    // Server-owned attributes are never taken from the client.
    remove_ci(attrs, "id");
    remove_ci(attrs, "meta");
    let unique = kind.unique_attr();
    match get_ci(attrs, unique) {
        Some(Value::String(s)) if !s.trim().is_empty() => {}
        _ => {
            return Err(ScimError::bad_request(
                "invalidValue",
                format!("{unique} is required and must be a non-empty string"),
            ));
        }
    }
    match kind {
        Kind::User => {
            let active = match remove_ci(attrs, "active") {
                None | Some(Value::Null) => true,
                Some(Value::Bool(b)) => b,
                // Entra's default sends "True"/"False".
                Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => true,
                Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => false,
                Some(other) => {
                    return Err(ScimError::bad_request(
                        "invalidValue",
                        format!("active must be a boolean, got {other}"),
                    ));
                }
            };
            attrs.insert("active".into(), Value::Bool(active));
        }
        Kind::Group => {
            if let Some(members) = remove_ci(attrs, "members") {
                attrs.insert("members".into(), normalize_members(members)?);
            }
        }
    }
    Ok(())
}

/// Members are stored as `{value, display?, type?}`, deduplicated; `$ref` is computed on output.
fn normalize_members(v: Value) -> Result<Value, ScimError> {
    let items = match v {
        Value::Null => Vec::new(),
        Value::Array(a) => a,
        obj @ Value::Object(_) => vec![obj],
        other => {
            return Err(ScimError::bad_request(
                "invalidValue",
                format!("members must be a list of objects, got {other}"),
            ));
        }
    };
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let Value::Object(m) = item else {
            return Err(ScimError::bad_request(
                "invalidValue",
                "each member must be an object with a value".into(),
            ));
        };
        let Some(Value::String(value)) = get_ci(&m, "value") else {
            return Err(ScimError::bad_request(
                "invalidValue",
                "each member needs a string value".into(),
            ));
        };
        if !seen.insert(value.clone()) {
            continue;
        }
        let mut member = Map::new();
        member.insert("value".into(), Value::from(value.clone()));
        for key in ["display", "type"] {
            if let Some(Value::String(s)) = get_ci(&m, key) {
                member.insert(key.into(), Value::from(s.clone()));
            }
        }
        out.push(Value::Object(member));
    }
    Ok(Value::Array(out))
}

pub(super) fn parse_object(body: &[u8]) -> Result<Map<String, Value>, ScimError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(ScimError::bad_request(
            "invalidSyntax",
            "request body must be a JSON object".into(),
        )),
        Err(e) => Err(ScimError::bad_request(
            "invalidSyntax",
            format!("request body is not valid JSON: {e}"),
        )),
    }
}

pub(super) fn resource_response(status: StatusCode, res: &Res, v: &Value) -> Resp {
    with_header(json_response(status, v), ETAG, &res.etag())
}
