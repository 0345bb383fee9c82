//! What a PUT or PATCH of a user or group means: deactivation, reactivation, members added or
//! removed, and the name it sets.

use serde_json::{Map, Value};

use crate::scim::attrs::{attr_is, get_ci, top_level_str};

/// PUT replaces the whole user: `active:false` is a deactivation (Okta AIW, JumpCloud). `active:true` is
/// what every full-object update carries, so it stays `user.update`: a reactivation by PUT cannot be
/// told from a profile update without the previous state.
pub(crate) fn put_user_op(body: Option<&Value>) -> &'static str {
    let active = body.and_then(Value::as_object).and_then(active_in_object);
    match active {
        Some(false) => "user.deactivate",
        _ => "user.update",
    }
}

/// The last `add`/`replace` of `active` decides (PATCH operations apply in order).
pub(crate) fn patch_user_op(ops: &[&Map<String, Value>]) -> &'static str {
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
pub(crate) fn patch_group_op(ops: &[&Map<String, Value>]) -> &'static str {
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
pub(crate) fn patch_subject(ops: &[&Map<String, Value>], attr: &str) -> Option<String> {
    ops.iter().rev().find_map(|op| {
        let value = get_ci(op, "value")?;
        match op_path(op) {
            Some(path) if attr_is(path, attr) => value.as_str().map(str::to_owned),
            Some(_) => None,
            None => top_level_str(value, attr),
        }
    })
}

pub(crate) fn patch_operations(body: Option<&Value>) -> Vec<&Map<String, Value>> {
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
