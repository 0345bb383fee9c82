//! Filters: `<path> eq <literal>` joined by `and`, parsed and matched against resources.

use serde_json::{Map, Value};

use super::attrs::get_ci;
use super::path::{AttrPath, parse_attr_path};

#[derive(Clone, Debug, PartialEq)]
pub(super) struct Cmp {
    pub(super) path: AttrPath,
    pub(super) value: Value,
}

pub(super) struct Parser<'a> {
    pub(super) s: &'a str,
    pub(super) i: usize,
}

impl<'a> Parser<'a> {
    pub(super) fn new(s: &'a str) -> Self {
        Parser { s, i: 0 }
    }
    pub(super) fn peek(&self) -> Option<u8> {
        self.s.as_bytes().get(self.i).copied()
    }
    pub(super) fn eof(&self) -> bool {
        self.i >= self.s.len()
    }
    pub(super) fn ws(&mut self) {
        while self.peek().is_some_and(|b| b.is_ascii_whitespace()) {
            self.i += 1;
        }
    }
    /// Up to the next whitespace outside brackets and quotes.
    fn attr_token(&mut self) -> &'a str {
        let start = self.i;
        let (mut depth, mut in_quote, mut escaped) = (0u32, false, false);
        while let Some(b) = self.peek() {
            if in_quote {
                match (escaped, b) {
                    (true, _) => escaped = false,
                    (false, b'\\') => escaped = true,
                    (false, b'"') => in_quote = false,
                    _ => {}
                }
            } else {
                match b {
                    b'"' => in_quote = true,
                    b'[' => depth = depth.saturating_add(1),
                    b']' => depth = depth.saturating_sub(1),
                    b if b.is_ascii_whitespace() && depth == 0 => break,
                    _ => {}
                }
            }
            self.i += 1;
        }
        self.s.get(start..self.i).unwrap_or_default()
    }
    fn word(&mut self) -> &'a str {
        let start = self.i;
        while self.peek().is_some_and(|b| !b.is_ascii_whitespace()) {
            self.i += 1;
        }
        self.s.get(start..self.i).unwrap_or_default()
    }
    fn literal(&mut self) -> Result<Value, String> {
        if self.peek() == Some(b'"') {
            let start = self.i;
            self.i += 1;
            let mut escaped = false;
            loop {
                match (self.peek(), escaped) {
                    (None, _) => return Err("unterminated string".into()),
                    (Some(_), true) => escaped = false,
                    (Some(b'\\'), false) => escaped = true,
                    (Some(b'"'), false) => break,
                    _ => {}
                }
                self.i += 1;
            }
            self.i += 1;
            let raw = self.s.get(start..self.i).unwrap_or_default();
            return serde_json::from_str::<String>(raw)
                .map(Value::String)
                .map_err(|e| format!("bad string literal: {e}"));
        }
        let w = self.word();
        match w.to_ascii_lowercase().as_str() {
            "true" => Ok(Value::Bool(true)),
            "false" => Ok(Value::Bool(false)),
            "null" => Ok(Value::Null),
            _ => match serde_json::from_str::<Value>(w) {
                Ok(n @ Value::Number(_)) => Ok(n),
                _ => Err(format!("bad comparison value {w:?}")),
            },
        }
    }
    pub(super) fn cmp(&mut self, allow_filter: bool) -> Result<Cmp, String> {
        self.ws();
        let token = self.attr_token();
        if token.starts_with('(') || token.eq_ignore_ascii_case("not") {
            return Err("grouping and 'not' are not supported".into());
        }
        let path = parse_attr_path(token, allow_filter)?;
        self.ws();
        let op = self.word();
        if !op.eq_ignore_ascii_case("eq") {
            return Err(format!("operator {op:?} is not supported (only eq)"));
        }
        self.ws();
        let value = self.literal()?;
        Ok(Cmp { path, value })
    }
}

/// `a eq "x" [and b eq "y" ...]`.
pub(super) fn parse_filter(s: &str) -> Result<Vec<Cmp>, String> {
    let mut p = Parser::new(s);
    let mut terms = vec![p.cmp(true)?];
    loop {
        p.ws();
        if p.eof() {
            return Ok(terms);
        }
        let w = p.word();
        if !w.eq_ignore_ascii_case("and") {
            return Err(format!("{w:?} is not supported (only and)"));
        }
        terms.push(p.cmp(true)?);
    }
}

impl Cmp {
    pub(super) fn matches(&self, resource: &Map<String, Value>) -> bool {
        let scope = match &self.path.container {
            Some(urn) => match get_ci(resource, urn) {
                Some(Value::Object(o)) => o,
                _ => return false,
            },
            None => resource,
        };
        let Some(top) = get_ci(scope, &self.path.attr) else {
            return false;
        };
        let elems: Vec<&Value> = match top {
            Value::Array(a) => a.iter().collect(),
            v => vec![v],
        };
        let leaf = self.path.sub.as_deref().unwrap_or(&self.path.attr);
        let case_exact = ["id", "externalId"]
            .iter()
            .any(|a| a.eq_ignore_ascii_case(leaf));
        elems
            .into_iter()
            .filter(|e| match &self.path.value_filter {
                Some(vf) => e.as_object().is_some_and(|o| vf.matches(o)),
                None => true,
            })
            .filter_map(|e| match &self.path.sub {
                Some(s) => e.as_object().and_then(|o| get_ci(o, s)),
                None => Some(e),
            })
            .any(|v| value_eq(v, &self.value, case_exact))
    }
}

fn value_eq(actual: &Value, wanted: &Value, case_exact: bool) -> bool {
    match (actual, wanted) {
        (Value::String(a), Value::String(w)) if case_exact => a == w,
        (Value::String(a), Value::String(w)) => a.to_lowercase() == w.to_lowercase(),
        (Value::Array(items), w) => items.iter().any(|a| value_eq(a, w, case_exact)),
        (Value::Number(a), Value::Number(w)) => a.as_f64() == w.as_f64(),
        (a, w) => a == w,
    }
}

#[cfg(test)]
mod tests {
    use super::super::query::percent_decode;
    use super::super::testkit::*;
    use super::*;

    #[tokio::test]
    async fn filters_decode_plus_and_percent_twenty() {
        let h = harness(true, None).await;
        let alice = h.create_user("alice@example.com").await;
        h.create_user("bob@example.com").await;
        let cases = [
            // Entra: `+` for spaces, plus its flag parameter.
            "/Users?filter=userName+eq+%22ALICE%40example.com%22&aadOptscim062020",
            // Okta: `%20`.
            "/Users?filter=userName%20eq%20%22alice@example.com%22&startIndex=1&count=100",
            "/Users?filter=externalId+eq+%22ext-alice%40example.com%22",
            "/Users?filter=emails%5Btype+eq+%22work%22%5D.value+eq+%22alice%40example.com%22",
            "/Users?filter=emails.value%20eq%20%22alice@example.com%22",
            "/Users?FILTER=USERNAME+EQ+%22alice%40example.com%22+AND+active+eq+true",
        ];
        for path in cases {
            let a = h.scim("GET", path, None).await;
            assert_eq!(a.status, StatusCode::OK, "{path}");
            let v = a.json();
            assert_eq!(v["schemas"], json!([LIST_URN]));
            assert_eq!(v["totalResults"], json!(1), "{path}: {v}");
            assert_eq!(v["itemsPerPage"], json!(1));
            assert_eq!(v["startIndex"], json!(1));
            assert_eq!(v["Resources"][0]["id"], alice["id"], "{path}");
        }
        let by_id = format!("/Users?filter=id+eq+%22{}%22", id(&alice));
        assert_eq!(
            h.scim("GET", &by_id, None).await.json()["totalResults"],
            json!(1)
        );
        let none = "/Users?filter=userName+eq+%22nobody%22";
        let v = h.scim("GET", none, None).await.json();
        assert_eq!(v["totalResults"], json!(0));
        assert_eq!(v["Resources"], json!([]));
        for bad in [
            "/Users?filter=userName+co+%22ali%22",
            "/Users?filter=userName+eq+%22a%22+or+userName+eq+%22b%22",
            "/Users?filter=userName+pr",
            "/Users?filter=%28userName+eq+%22a%22%29",
            "/Users?filter=userName+eq+%22unterminated",
            "/Users?filter=emails%5Btype+eq+%22work%22.value+eq+%22x%22",
        ] {
            assert_error(&h.scim("GET", bad, None).await, 400, Some("invalidFilter"));
        }
        // Groups by displayName, case-insensitively.
        let g = json!({"displayName": "Sales Team"}).to_string();
        h.scim("POST", "/Groups", Some(&g)).await;
        let q = "/Groups?excludedAttributes=members&filter=displayName+eq+%22sales+team%22";
        assert_eq!(
            h.scim("GET", q, None).await.json()["totalResults"],
            json!(1)
        );
        h.shutdown().await;
    }

    #[test]
    fn query_and_filter_parsing() {
        assert_eq!(percent_decode("a+b%20c%2", true), "a b c%2");
        assert_eq!(percent_decode("a+b%zz", false), "a+b%zz");
        assert_eq!(percent_decode("%E2%82%AC%ff", true), "\u{20ac}\u{fffd}");
        let f =
            parse_filter(r#"emails[type eq "work"].value eq "a\"b" and Active EQ true"#).unwrap();
        assert_eq!(f.len(), 2);
        assert_eq!(f[0].path.attr, "emails");
        assert_eq!(f[0].path.sub.as_deref(), Some("value"));
        assert_eq!(f[0].value, json!("a\"b"));
        assert_eq!(f[1].value, json!(true));
        let p = parse_attr_path(&format!("{ENTERPRISE_URN}:manager.value"), true).unwrap();
        assert_eq!(p.container.as_deref(), Some(ENTERPRISE_URN));
        assert_eq!(
            (p.attr.as_str(), p.sub.as_deref()),
            ("manager", Some("value"))
        );
        let p = parse_attr_path(&format!("{USER_URN}:userName"), true).unwrap();
        assert_eq!((p.container, p.attr.as_str()), (None, "userName"));
        for bad in ["", "a[b[c eq 1] eq 2]", "a b", "a[", "urn:x:", "a.b.c", "é"] {
            assert!(parse_attr_path(bad, true).is_err(), "{bad}");
        }
        for bad in [
            "",
            "x eq",
            "x eq 1 and",
            "x gt 1",
            "x eq \"\\u12\"",
            "x eq \u{fffd}",
        ] {
            assert!(parse_filter(bad).is_err(), "{bad}");
        }
    }
}
