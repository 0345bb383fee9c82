//! Which requests are authenticated: a known v2 token as `Authorization: Bearer` or
//! `Netskope-Api-Token`, as Netskope accepts either; the token list, or the token file read per
//! request (a rotation that invalidates the old token at once).

use http::HeaderMap;
use http::header::AUTHORIZATION;

use super::lock;
use super::state::State;

impl State {
    pub(super) fn authenticated(&self, headers: &HeaderMap) -> bool {
        let from_file = lock(&self.token_file).as_ref().map(|f| {
            // An unreadable file accepts nothing, as a revoked token would.
            vec![
                std::fs::read_to_string(f)
                    .unwrap_or_default()
                    .trim()
                    .to_string(),
            ]
        });
        let tokens = match from_file {
            Some(t) => t,
            None => lock(&self.tokens).clone(),
        };
        let known = |t: &str| !t.is_empty() && tokens.iter().any(|k| k == t);
        let bearer = headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let (scheme, rest) = v.trim().split_once([' ', '\t'])?;
                scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
            });
        let api_token = headers
            .get("netskope-api-token")
            .and_then(|v| v.to_str().ok())
            .map(str::trim);
        bearer.is_some_and(known) || api_token.is_some_and(known)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;

    #[tokio::test]
    async fn auth_is_required_and_rejections_are_recorded() {
        let h = harness(true, None).await;
        let body = json!({"userName": "mallory@example.com"}).to_string();
        let a = h.call("POST", "/api/v2/scim/Users", &[], Some(&body)).await;
        assert_error(&a, 401, None);
        let a = h
            .call(
                "GET",
                "/api/v2/scim/Users",
                &[("authorization", "Bearer wrong")],
                None,
            )
            .await;
        assert_error(&a, 401, None);
        let recorded = h.up.requests();
        assert_eq!(recorded.len(), 2);
        assert!(!recorded[0].authenticated && !recorded[1].authenticated);
        assert_eq!(recorded[0].method, Method::POST);
        assert_eq!(recorded[0].body, Bytes::from(body));
        // The rejected POST created nothing.
        let list = h.scim("GET", "/Users", None).await.json();
        assert_eq!(list["totalResults"], json!(0));

        for headers in [
            [("authorization", "bearer v2-token-1")],
            [("netskope-api-token", "v2-token-1")],
        ] {
            let a = h.call("GET", "/api/v2/scim/Users", &headers, None).await;
            assert_eq!(a.status, StatusCode::OK);
        }
        assert!(h.up.requests().last().unwrap().authenticated);

        h.up.set_tokens(vec!["v2-token-2".into()]);
        assert_error(&h.scim("GET", "/Users", None).await, 401, None);
        let a = h
            .call(
                "GET",
                "/api/v2/scim/Users",
                &[("netskope-api-token", "v2-token-2")],
                None,
            )
            .await;
        assert_eq!(a.status, StatusCode::OK);
        h.up.clear_requests();
        assert!(h.up.requests().is_empty());
        h.shutdown().await;
    }
}
