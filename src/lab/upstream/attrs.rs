//! Case-insensitive attribute access (RFC 7643 §2.1: attribute names are case-insensitive).

use serde_json::{Map, Value};

use super::ENTERPRISE_URN;

pub(super) fn key_ci(m: &Map<String, Value>, name: &str) -> Option<String> {
    m.keys().find(|k| k.eq_ignore_ascii_case(name)).cloned()
}

/// The proxy's own case-insensitive lookup: the lab reads attributes as the proxy does.
pub(super) use crate::scim::attrs::get_ci;

/// The value under `name` (any case); when absent and `create`, a new `empty` one under the
/// schema's spelling of `name`.
pub(super) fn slot_ci<'m>(
    m: &'m mut Map<String, Value>,
    name: &str,
    create: bool,
    empty: Value,
) -> Option<&'m mut Value> {
    let key = match key_ci(m, name) {
        Some(k) => k,
        None if create => {
            let k = canonical(name);
            m.insert(k.clone(), empty);
            k
        }
        None => return None,
    };
    m.get_mut(&key)
}

pub(super) fn remove_ci(m: &mut Map<String, Value>, name: &str) -> Option<Value> {
    let key = key_ci(m, name)?;
    m.remove(&key)
}

pub(super) fn set_ci(m: &mut Map<String, Value>, name: &str, v: Value) {
    let key = key_ci(m, name).unwrap_or_else(|| canonical(name));
    m.insert(key, v);
}

pub(super) fn merge_ci(dst: &mut Map<String, Value>, src: Map<String, Value>) {
    for (k, v) in src {
        set_ci(dst, &k, v);
    }
}

/// New keys get the schema's spelling, so `displayname` from a PATCH path is stored as `displayName`.
pub(super) fn canonical(name: &str) -> String {
    const KNOWN: &[&str] = &[
        "userName",
        "externalId",
        "displayName",
        "name",
        "givenName",
        "familyName",
        "middleName",
        "formatted",
        "honorificPrefix",
        "honorificSuffix",
        "nickName",
        "profileUrl",
        "title",
        "userType",
        "preferredLanguage",
        "locale",
        "timezone",
        "active",
        "password",
        "emails",
        "phoneNumbers",
        "addresses",
        "groups",
        "roles",
        "members",
        "value",
        "display",
        "type",
        "primary",
        "employeeNumber",
        "costCenter",
        "organization",
        "division",
        "department",
        "manager",
        ENTERPRISE_URN,
    ];
    KNOWN
        .iter()
        .find(|k| k.eq_ignore_ascii_case(name))
        .map_or_else(|| name.to_string(), |k| (*k).to_string())
}
