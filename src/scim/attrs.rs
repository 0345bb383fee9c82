//! SCIM attribute names and paths: case-insensitive lookup, and the segments of a path.

use serde_json::{Map, Value};

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

/// A top-level string attribute of a resource (bare or URN-qualified name), when not empty.
pub(crate) fn top_level_str(body: &Value, attr: &str) -> Option<String> {
    let obj = body.as_object()?;
    obj.iter()
        .filter(|(k, _)| attr_segments(k).len() == 1 && attr_is(k, attr))
        .find_map(|(_, v)| v.as_str())
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}
