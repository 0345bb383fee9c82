//! What a SCIM answer adds to the reading of its request (the id and name it returns), and the
//! fields of a SCIM error body.

use serde_json::Value;

use crate::scim::attrs::get_ci;
use crate::scim::request::{Resource, ScimReading, subject_attr};
use crate::scim::response_summary::{Answer, read_answer};

/// Longest `detail` kept from an error body: a log line must stay a line.
pub(crate) const MAX_DETAIL: usize = 512;

/// Fills `resource_id` and `subject` from a 2xx response body when the request did not carry them:
/// a single resource (read, create, update), or a lookup/search answered with exactly one match.
/// Only those attributes are read from `body` (the JSON as the upstream sent it, token masked).
pub fn complete_from_response(reading: &mut ScimReading, status: u16, body: Option<&[u8]>) {
    if !(200..300).contains(&status) || (reading.resource_id.is_some() && reading.subject.is_some())
    {
        return;
    }
    let attr = match reading.resource {
        Resource::User | Resource::Group => subject_attr(reading.resource),
        Resource::Discovery | Resource::Other => return,
    };
    let Some(answer) = body.and_then(|b| read_answer(b, attr)) else {
        return;
    };
    let resource = match answer {
        Answer::Resource(s) => s,
        // A list names one resource only when it is the answer to a lookup.
        Answer::List(n, first) => {
            if !matches!(reading.op, "user.lookup" | "group.lookup" | "search") || n != 1 {
                return;
            }
            match first {
                Some(s) => *s,
                None => return,
            }
        }
        Answer::Other => return,
    };
    let (id, subject) = resource.into_parts();
    let given = |s: Option<String>| s.filter(|s| !s.is_empty());
    if reading.resource_id.is_none() {
        reading.resource_id = given(id);
    }
    if reading.subject.is_none() {
        reading.subject = given(subject);
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
