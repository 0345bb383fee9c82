//! Reading the upstream's answer to the list request: its SCIM Error detail, and whether a 2xx
//! body really is a SCIM ListResponse (or a captive portal's page, say).

use http::{Response, header};
use http_body_util::BodyExt;
use hyper::body::Incoming;

/// What the preflight reads of an answer at most.
const PREFLIGHT_BODY_LIMIT: usize = 64 * 1024;

const LIST_RESPONSE_URN: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";

/// The answer's SCIM Error `detail`, and why it is not a ListResponse (None when it is).
pub(super) async fn read_answer(
    res: Response<Incoming>,
    token: &str,
) -> (Option<String>, Option<String>) {
    let content_type = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("none")
        .to_owned();
    // Bounded: a captive portal or a wrong path may answer with anything.
    let body = http_body_util::Limited::new(res.into_body(), PREFLIGHT_BODY_LIMIT)
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let list = list_response_problem(&body).map(|why| {
        format!(
            "{why}; content type {content_type}, first bytes: {}",
            first_bytes(&body, token)
        )
    });
    let detail = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| {
            v.get("detail")
                .and_then(|d| d.as_str())
                .map(|d| truncate(d, 200))
        });
    (detail, list)
}

/// Why `body` is not a SCIM ListResponse (`schemas` holding its URN, `totalResults` an integer),
/// or None when it is.
fn list_response_problem(body: &[u8]) -> Option<String> {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
        return Some("the body is not JSON".into());
    };
    let urn = v
        .get("schemas")
        .and_then(|s| s.as_array())
        .is_some_and(|s| s.iter().any(|u| u.as_str() == Some(LIST_RESPONSE_URN)));
    if !urn {
        return Some(format!(
            "the JSON is not a SCIM ListResponse (no {LIST_RESPONSE_URN} in schemas)"
        ));
    }
    if !v.get("totalResults").is_some_and(|t| t.is_u64()) {
        return Some("the ListResponse has no integer totalResults".into());
    }
    None
}

/// The start of a body as printable text, for an admin to recognise it; never the token.
fn first_bytes(body: &[u8], token: &str) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(120)]);
    let text = if token.is_empty() {
        text.into_owned()
    } else {
        text.replace(token, "[v2 token]")
    };
    let shown: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    format!(
        "`{}{}`",
        shown.trim(),
        if body.len() > 120 { "…" } else { "" }
    )
}

fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}
