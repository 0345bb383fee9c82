//! Listing: filter, one-based pagination capped as Netskope caps it, and projection.

use http::StatusCode;
use serde_json::{Value, json};

use super::LIST_URN;
use super::ctx::Ctx;
use super::error::ScimError;
use super::filter::parse_filter;
use super::kind::Kind;
use super::projection::Projection;
use super::query::Query;
use super::resource::render;
use super::response::{Resp, json_response};
use super::store::Store;

const DEFAULT_COUNT: i64 = 100;
// Netskope's filter maxResults.
const MAX_COUNT: i64 = 200;

pub(super) fn list(store: &Store, kind: Kind, ctx: &Ctx<'_>) -> Result<Resp, ScimError> {
    let filter = ctx
        .query
        .get("filter")
        .map(|f| {
            parse_filter(f).map_err(|e| {
                ScimError::bad_request("invalidFilter", format!("unsupported filter {f:?}: {e}"))
            })
        })
        .transpose()?;
    let start = parse_int(&ctx.query, "startIndex", 1)?.max(1);
    let count = parse_int(&ctx.query, "count", DEFAULT_COUNT)?.clamp(0, MAX_COUNT);
    let proj = Projection::from_query(&ctx.query);
    let matched: Vec<Value> = store
        .list(kind)
        .iter()
        .map(|r| render(kind, r, &ctx.base_url))
        .filter(|v| match (&filter, v.as_object()) {
            (Some(f), Some(m)) => f.iter().all(|c| c.matches(m)),
            _ => true,
        })
        .collect();
    let total = matched.len();
    let skip = usize::try_from(start - 1).unwrap_or(usize::MAX);
    let take = usize::try_from(count).unwrap_or(0);
    let page: Vec<Value> = matched
        .into_iter()
        .skip(skip)
        .take(take)
        .map(|v| proj.apply(kind, v))
        .collect();
    let body = json!({
        "schemas": [LIST_URN],
        "totalResults": total,
        "startIndex": start,
        "itemsPerPage": page.len(),
        "Resources": page,
    });
    Ok(json_response(StatusCode::OK, &body))
}

/// Integers as SCIM wants them: absent → default, out of range saturates, junk → 400.
fn parse_int(q: &Query, name: &str, default: i64) -> Result<i64, ScimError> {
    let Some(raw) = q.get(name) else {
        return Ok(default);
    };
    let s = raw.trim();
    if s.is_empty() {
        return Ok(default);
    }
    if let Ok(n) = s.parse::<i64>() {
        return Ok(n);
    }
    let digits = s.strip_prefix(['-', '+']).unwrap_or(s);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(if s.starts_with('-') {
            i64::MIN
        } else {
            i64::MAX
        });
    }
    Err(ScimError::bad_request(
        "invalidValue",
        format!("{name} must be an integer, got {raw:?}"),
    ))
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::*;

    #[tokio::test]
    async fn pagination_is_one_based_and_capped() {
        let h = harness(false, None).await;
        let mut ids = Vec::new();
        for i in 0..5 {
            ids.push(id(&h.create_user(&format!("u{i}@example.com")).await));
        }
        let v = h
            .scim("GET", "/Users?startIndex=2&count=2", None)
            .await
            .json();
        assert_eq!(v["totalResults"], json!(5));
        assert_eq!(v["startIndex"], json!(2));
        assert_eq!(v["itemsPerPage"], json!(2));
        let got: Vec<String> = v["Resources"].as_array().unwrap().iter().map(id).collect();
        assert_eq!(got, ids[1..3]);
        let v = h.scim("GET", "/Users?startIndex=0", None).await.json();
        assert_eq!(
            (v["startIndex"].clone(), v["itemsPerPage"].clone()),
            (json!(1), json!(5))
        );
        let v = h.scim("GET", "/Users?count=-3", None).await.json();
        assert_eq!(
            (v["totalResults"].clone(), v["itemsPerPage"].clone()),
            (json!(5), json!(0))
        );
        let v = h
            .scim(
                "GET",
                "/Users?count=99999999999999999999999&startIndex=99999999999999999999",
                None,
            )
            .await
            .json();
        assert_eq!(v["itemsPerPage"], json!(0));
        assert_eq!(v["startIndex"], json!(i64::MAX));
        let v = h
            .scim("GET", "/Users?startIndex=5&count=10", None)
            .await
            .json();
        assert_eq!(v["Resources"][0]["id"], json!(ids[4]));
        assert_error(
            &h.scim("GET", "/Users?count=ten", None).await,
            400,
            Some("invalidValue"),
        );
        h.shutdown().await;
    }
}
