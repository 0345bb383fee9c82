//! Pure routing: request host + raw target -> (route, client prefix, upstream path). Refuses what it cannot map safely.
//!
//! Nothing here decodes or normalises what is forwarded: the rest of the path and the query go upstream
//! byte for byte (Entra encodes spaces as `+`, Okta as `%20`). Targets that could mean something else to
//! another parser (dot segments, encoded slashes, backslashes, NUL, malformed escapes) are refused.

use crate::config::{Route, UpstreamBase};

/// The legacy prefix, matched case-insensitively (`/SCIM/v2`, `/SCIM/V2`, `/scim/v2`, ...).
const LEGACY_PREFIX: &str = "/scim/v2";

/// Longest path accepted; longer is 414 (no SCIM path comes close).
pub const MAX_PATH_LEN: usize = 8 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteError {
    /// No route serves this host.
    UnknownHost,
    /// The path is not under a served prefix.
    NotFound,
    /// The target cannot be mapped safely; the reason is safe to show to the client.
    Unsafe(&'static str),
    TooLong,
}

/// Where a request goes, as slices of the inbound path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mapped<'a> {
    /// The prefix exactly as the client wrote it (`/scim/V2/1234`), without trailing slash.
    pub client_prefix: &'a str,
    /// The rest of the path after the prefix: empty or starting with one `/`.
    pub rest: &'a str,
}

/// Picks the route for a request's host (authority or Host header, port ignored).
/// A route listing the host wins; otherwise the one route without `hosts`, if any.
pub fn select_route(routes: &[Route], host: Option<&str>) -> Result<usize, RouteError> {
    if let Some(host) = host.and_then(host_without_port)
        && let Some(i) = routes
            .iter()
            .position(|r| r.hosts.iter().any(|h| h.eq_ignore_ascii_case(host)))
    {
        return Ok(i);
    }
    routes
        .iter()
        .position(|r| r.hosts.is_empty())
        .ok_or(RouteError::UnknownHost)
}

/// `host[:port]` -> `host`, brackets kept off IPv6 literals and one trailing dot dropped.
pub fn host_without_port(authority: &str) -> Option<&str> {
    let host = if let Some(rest) = authority.strip_prefix('[') {
        rest.split_once(']')?.0
    } else {
        match authority.rsplit_once(':') {
            Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
            _ => authority,
        }
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    (!host.is_empty()).then_some(host)
}

/// Maps an inbound path (no query) under the route's legacy prefixes.
pub fn map_path<'a>(route: &Route, path: &'a str) -> Result<Mapped<'a>, RouteError> {
    check_safe(path)?;
    let head = path
        .get(..LEGACY_PREFIX.len())
        .ok_or(RouteError::NotFound)?;
    if !head.eq_ignore_ascii_case(LEGACY_PREFIX) {
        return Err(RouteError::NotFound);
    }
    let mut prefix_len = LEGACY_PREFIX.len();
    let after = &path[prefix_len..];
    if !(after.is_empty() || after.starts_with('/')) {
        return Err(RouteError::NotFound);
    }
    // `/SCIM/V2/<tenantId>` form, when the route has one.
    if let Some(tenant) = &route.legacy_tenant_id {
        let seg = after.trim_start_matches('/');
        if let Some(tail) = seg.strip_prefix(tenant.as_str())
            && (tail.is_empty() || tail.starts_with('/'))
        {
            prefix_len = path.len() - tail.len();
        }
    }
    let (client_prefix, rest) = path.split_at(prefix_len);
    // An IdP configured with a trailing-slash base URL sends `/SCIM/V2//Users`: one slash is meant.
    let rest = match rest.trim_start_matches('/') {
        r if r.len() == rest.len() => rest,
        r => &rest[rest.len() - r.len() - 1..],
    };
    Ok(Mapped {
        client_prefix,
        rest,
    })
}

/// `<base path><rest>[?query]` for the upstream request.
pub fn upstream_path_and_query(base: &UpstreamBase, rest: &str, query: Option<&str>) -> String {
    let mut out =
        String::with_capacity(base.path.len() + rest.len() + query.map_or(0, |q| q.len() + 1) + 1);
    out.push_str(&base.path);
    out.push_str(rest);
    if out.is_empty() {
        out.push('/');
    }
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

/// Refuses targets whose meaning depends on who decodes them.
pub fn check_safe(path: &str) -> Result<(), RouteError> {
    if path.len() > MAX_PATH_LEN {
        return Err(RouteError::TooLong);
    }
    if !path.starts_with('/') {
        return Err(RouteError::Unsafe("the path must start with '/'"));
    }
    let bytes = path.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => return Err(RouteError::Unsafe("backslash in path")),
            b'\0' => return Err(RouteError::Unsafe("NUL in path")),
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or(RouteError::Unsafe("malformed percent-encoding in path"))?;
                match hex {
                    b'/' => return Err(RouteError::Unsafe("encoded slash (%2F) in path")),
                    b'\\' => return Err(RouteError::Unsafe("encoded backslash (%5C) in path")),
                    0 => return Err(RouteError::Unsafe("encoded NUL (%00) in path")),
                    _ => {}
                }
                i += 3;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    for segment in path.split('/') {
        // Judged as a server that decodes would see it: `%2e` is `.` to everyone who decodes,
        // `..;x` (or `%2e%2e%3b`) is `..` to servlet containers, and an overlong `%C0%AE` is `.`
        // to a lax UTF-8 decoder, so escapes that are not UTF-8 are refused outright.
        let decoded = percent_encoding::percent_decode_str(segment)
            .decode_utf8()
            .map_err(|_| RouteError::Unsafe("percent-encoding that is not UTF-8 in path"))?;
        let head = decoded.split(';').next().unwrap_or(&decoded);
        if head == "." || head == ".." {
            return Err(RouteError::Unsafe("dot segment in path"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Client, TokenSource, UpstreamAuth, parse_upstream};

    fn route(name: &str, hosts: &[&str], tenant: Option<&str>) -> Route {
        Route {
            name: name.into(),
            upstream: parse_upstream("https://acme.goskope.com/api/v2/scim").unwrap(),
            token: TokenSource::Env("T".into()),
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
            public_url: None,
            legacy_tenant_id: tenant.map(str::to_string),
            upstream_auth: UpstreamAuth::Bearer,
            token_expires: None,
            token_warn: std::time::Duration::ZERO,
            rewrite_body_urls: true,
            clients: vec![Client {
                name: "okta".into(),
                token_sha256: vec![[0; 32]],
            }],
            pacing: None,
        }
    }

    #[test]
    fn prefix_forms() {
        let r = route("a", &[], Some("1234"));
        let cases = [
            ("/SCIM/v2/Users", "/SCIM/v2", "/Users"),
            ("/scim/V2/Users/abc", "/scim/V2", "/Users/abc"),
            ("/SCIM/v2", "/SCIM/v2", ""),
            ("/SCIM/v2/", "/SCIM/v2", "/"),
            ("/SCIM/V2/1234/Groups", "/SCIM/V2/1234", "/Groups"),
            ("/SCIM/V2/1234", "/SCIM/V2/1234", ""),
            ("/SCIM/V2/12345/Groups", "/SCIM/V2", "/12345/Groups"),
            ("/SCIM/V2//Users", "/SCIM/V2", "/Users"),
            (
                "/SCIM/V2/urn:ietf:params:scim:schemas:core:2.0:User",
                "/SCIM/V2",
                "/urn:ietf:params:scim:schemas:core:2.0:User",
            ),
            ("/SCIM/v2/Users/a%20b", "/SCIM/v2", "/Users/a%20b"),
        ];
        for (path, prefix, rest) in cases {
            let m = map_path(&r, path).unwrap_or_else(|e| panic!("{path}: {e:?}"));
            assert_eq!((m.client_prefix, m.rest), (prefix, rest), "{path}");
        }
        assert_eq!(
            upstream_path_and_query(&r.upstream, "/Users", Some("filter=userName+eq+%22a%22")),
            "/api/v2/scim/Users?filter=userName+eq+%22a%22"
        );
        assert_eq!(
            upstream_path_and_query(&r.upstream, "", None),
            "/api/v2/scim"
        );
    }

    #[test]
    fn tenant_form_only_when_configured() {
        let r = route("a", &[], None);
        let m = map_path(&r, "/SCIM/V2/1234/Users").unwrap();
        assert_eq!(m.rest, "/1234/Users");
    }

    #[test]
    fn other_paths_are_not_found() {
        let r = route("a", &[], None);
        for p in [
            "/",
            "/api/v2/scim/Users",
            "/SCIM/v20/Users",
            "/SCIM/v2x",
            "/SCIM",
            "/SCIM/v2;x/Users",
            "/xSCIM/v2",
        ] {
            assert_eq!(map_path(&r, p), Err(RouteError::NotFound), "{p}");
        }
    }

    #[test]
    fn unsafe_targets_are_refused() {
        let r = route("a", &[], None);
        for p in [
            "/SCIM/v2/../admin",
            "/SCIM/v2/Users/..",
            "/SCIM/v2/./Users",
            "/SCIM/v2/%2e%2e/admin",
            "/SCIM/v2/%2e%2e%3b/admin",
            "/SCIM/v2/Users/%2E%2e%3Bx",
            "/SCIM/v2/%C0%AE%C0%AE/admin",
            "/SCIM/v2/Users/%FF",
            "/SCIM/v2/.%2E/admin",
            "/SCIM/v2/%2E/Users",
            "/SCIM/v2/..;/admin",
            "/SCIM%2fv2/Users",
            "/SCIM/v2/Users%2F1",
            "/SCIM/v2\\Users",
            "/SCIM%5cv2/Users",
            "/SCIM/v2/Users/%00",
            "/SCIM/v2/Users/%zz",
            "/SCIM/v2/Users/%2",
        ] {
            assert!(matches!(map_path(&r, p), Err(RouteError::Unsafe(_))), "{p}");
        }
        // Dots inside a segment are ordinary characters.
        assert!(map_path(&r, "/SCIM/v2/Users/a.b...c").is_ok());
        assert!(map_path(&r, "/SCIM/v2/Users/...").is_ok());
        let long = format!("/SCIM/v2/{}", "a".repeat(MAX_PATH_LEN));
        assert_eq!(map_path(&r, &long), Err(RouteError::TooLong));
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        fn segment() -> impl Strategy<Value = String> {
            prop_oneof![
                "[A-Za-z0-9_:.~-]{0,12}",
                Just("..".to_string()),
                Just(".".to_string()),
                Just("%2e%2E".to_string()),
                Just("%2F".to_string()),
                Just("a%5Cb".to_string()),
                Just("%00".to_string()),
                Just("1234".to_string()),
                Just("Users".to_string()),
                "%[0-9A-Fa-f]{2}",
            ]
        }

        fn path() -> impl Strategy<Value = String> {
            (
                prop_oneof![
                    Just("/SCIM/v2"),
                    Just("/scim/V2"),
                    Just("/SCIM/V2/1234"),
                    Just("/api/v2/scim"),
                    Just("")
                ],
                proptest::collection::vec(segment(), 0..6),
            )
                .prop_map(|(prefix, segs)| format!("{prefix}/{}", segs.join("/")))
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(512))]

            /// Whatever is mapped is forwarded under the upstream base, as a safe path,
            /// and the rest is the input's own tail (never invented or decoded).
            #[test]
            fn mapped_targets_stay_under_the_base_and_are_safe(p in path(), q in proptest::option::of("[a-zA-Z0-9=&%+]{0,20}")) {
                let r = route("a", &[], Some("1234"));
                if let Ok(m) = map_path(&r, &p) {
                    let up = upstream_path_and_query(&r.upstream, m.rest, q.as_deref());
                    let up_path = up.split('?').next().unwrap_or_default();
                    prop_assert!(up_path == "/api/v2/scim" || up_path.starts_with("/api/v2/scim/"));
                    prop_assert!(check_safe(up_path).is_ok());
                    prop_assert!(p.ends_with(m.rest));
                    prop_assert!(p.starts_with(m.client_prefix));
                    // The prefix is exactly what the client wrote (`/SCIM/v2//1234` included).
                    let collapsed = m.client_prefix.split('/').filter(|s| !s.is_empty()).collect::<Vec<_>>().join("/");
                    prop_assert!(collapsed.eq_ignore_ascii_case("scim/v2") || collapsed.eq_ignore_ascii_case("scim/v2/1234"));
                }
            }

            /// Any target with a dot segment, encoded slash or backslash, or NUL is refused.
            #[test]
            fn unsafe_inputs_never_map(p in path()) {
                let lower = p.to_ascii_lowercase();
                let unsafe_input = lower.split('/').any(|s| s == "." || s == ".." || s == "%2e%2e")
                    || lower.contains("%2f") || lower.contains("%5c") || lower.contains("%00");
                if unsafe_input {
                    prop_assert!(matches!(map_path(&route("a", &[], Some("1234")), &p), Err(RouteError::Unsafe(_))));
                }
            }

            /// Arbitrary strings never panic the router.
            #[test]
            fn never_panics(p in ".{0,64}", h in ".{0,32}") {
                let r = route("a", &["h.example"], Some("1234"));
                let _ = map_path(&r, &p);
                let _ = select_route(std::slice::from_ref(&r), Some(&h));
                let _ = host_without_port(&h);
            }
        }
    }

    #[test]
    fn host_selection() {
        let routes = vec![
            route("a", &["addon-a.goskope.com"], None),
            route("any", &[], None),
            route("b", &["b.example", "::1"], None),
        ];
        assert_eq!(
            select_route(&routes, Some("ADDON-A.goskope.com:8443")),
            Ok(0)
        );
        assert_eq!(select_route(&routes, Some("addon-a.goskope.com.")), Ok(0));
        assert_eq!(select_route(&routes, Some("b.example")), Ok(2));
        assert_eq!(select_route(&routes, Some("[::1]:443")), Ok(2));
        assert_eq!(select_route(&routes, Some("other")), Ok(1));
        assert_eq!(select_route(&routes, None), Ok(1));
        let only = vec![route("a", &["a"], None)];
        assert_eq!(select_route(&only, Some("b")), Err(RouteError::UnknownHost));
        assert_eq!(select_route(&only, None), Err(RouteError::UnknownHost));
    }
}
