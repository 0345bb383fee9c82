//! PATCH (RFC 7644 §3.5.2): reading a PatchOp request (its schema, and each operation's op,
//! path and value); `apply` carries the operations out.

mod apply;
mod filtered;
#[cfg(test)]
mod tests;

use serde_json::Value;

use super::PATCH_URN;
use super::attrs::get_ci;
use super::error::{ScimError, invalid_path, invalid_syntax};
use super::path::{AttrPath, parse_attr_path};
use super::resource::parse_object;

pub(super) use apply::apply_op;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum OpKind {
    Add,
    Replace,
    Remove,
}

pub(super) struct PatchOp {
    pub(super) op: OpKind,
    pub(super) path: Option<AttrPath>,
    pub(super) value: Option<Value>,
}

pub(super) fn parse_patch(body: &[u8]) -> Result<Vec<PatchOp>, ScimError> {
    let m = parse_object(body)?;
    if let Some(schemas) = get_ci(&m, "schemas") {
        let ok = schemas.as_array().is_some_and(|a| {
            a.iter().any(|s| {
                s.as_str()
                    .is_some_and(|s| s.eq_ignore_ascii_case(PATCH_URN))
            })
        });
        if !ok {
            return Err(invalid_syntax(format!("schemas must contain {PATCH_URN}")));
        }
    }
    let Some(Value::Array(ops)) = get_ci(&m, "Operations") else {
        return Err(invalid_syntax("Operations must be an array"));
    };
    ops.iter()
        .map(|op| {
            let Value::Object(o) = op else {
                return Err(invalid_syntax("each operation must be an object"));
            };
            let kind = match get_ci(o, "op").and_then(Value::as_str) {
                Some(s) if s.eq_ignore_ascii_case("add") => OpKind::Add,
                Some(s) if s.eq_ignore_ascii_case("replace") => OpKind::Replace,
                Some(s) if s.eq_ignore_ascii_case("remove") => OpKind::Remove,
                other => {
                    return Err(invalid_syntax(format!(
                        "op must be add, replace or remove, got {other:?}"
                    )));
                }
            };
            let path = match get_ci(o, "path") {
                None | Some(Value::Null) => None,
                Some(Value::String(p)) if p.trim().is_empty() => None,
                Some(Value::String(p)) => Some(
                    parse_attr_path(p, true)
                        .map_err(|e| invalid_path(format!("bad path {p:?}: {e}")))?,
                ),
                Some(other) => return Err(invalid_path(format!("path must be a string: {other}"))),
            };
            Ok(PatchOp {
                op: kind,
                path,
                value: get_ci(o, "value").cloned(),
            })
        })
        .collect()
}
