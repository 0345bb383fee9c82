//! PATCH on `attr[filter]` and `attr[filter].sub`: the elements of a multi-valued attribute that
//! a value filter picks.

use serde_json::{Map, Value};

use super::super::attrs::{canonical, merge_ci, remove_ci, set_ci, slot_ci};
use super::super::error::{ScimError, invalid_path};
use super::super::filter::Cmp;

/// The multi-valued attribute `attr` as a list, created (or a null made a list) when asked.
pub(super) fn multi_valued<'m>(
    scope: &'m mut Map<String, Value>,
    attr: &str,
    create: bool,
) -> Result<Option<&'m mut Vec<Value>>, ScimError> {
    let Some(slot) = slot_ci(scope, attr, create, Value::Array(Vec::new())) else {
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
pub(super) fn remove_filtered(items: &mut Vec<Value>, filter: &Cmp, sub: Option<&str>) {
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
pub(super) fn set_filtered(
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
