//! Applying one PATCH operation to a resource's attributes, leniently as IdPs need: without a
//! path, to a plain or complex attribute, or to a sub-attribute.

use std::collections::HashSet;

use serde_json::{Map, Value};

use super::super::attrs::{get_ci, key_ci, merge_ci, remove_ci, set_ci, slot_ci};
use super::super::error::{ScimError, invalid_path, invalid_syntax};
use super::super::path::{AttrPath, parse_attr_path};
use super::OpKind;
use super::filtered::{multi_valued, remove_filtered, set_filtered};

/// Applies one operation to `attrs`; the caller works on a copy, so an error leaves nothing half done.
pub(crate) fn apply_op(
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

/// Identity of a multi-valued element: its `value` if it has one, else the whole element.
fn element_key(v: &Value) -> String {
    match v.as_object().and_then(|o| get_ci(o, "value")) {
        Some(value) => format!("v:{value}"),
        None => format!("j:{v}"),
    }
}

/// The complex attribute `name` as an object, created when asked; `None` if absent.
fn child_object<'m>(
    m: &'m mut Map<String, Value>,
    name: &str,
    create: bool,
) -> Result<Option<&'m mut Map<String, Value>>, ScimError> {
    let Some(slot) = slot_ci(m, name, create, Value::Object(Map::new())) else {
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
