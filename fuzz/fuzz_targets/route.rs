//! Fuzzes request-target routing: never panics, and whatever it maps is safe to forward.
#![no_main]

use libfuzzer_sys::fuzz_target;
use scim_proxy::config::{Client, Route, TokenSource, UpstreamAuth, parse_upstream};
use scim_proxy::proxy::route::{check_safe, map_path, select_route, upstream_path_and_query};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (host, target) = text.split_once('\n').unwrap_or(("", text));
    let route = Route {
        name: "r".into(),
        upstream: parse_upstream("https://acme.goskope.com/api/v2/scim").unwrap(),
        token: TokenSource::Env("T".into()),
        hosts: vec![],
        public_url: None,
        legacy_tenant_id: Some("1234".into()),
        upstream_auth: UpstreamAuth::Bearer,
        token_expires: None,
        token_warn: std::time::Duration::ZERO,
        rewrite_body_urls: true,
        clients: vec![Client { name: "c".into(), token_sha256: vec![[0; 32]] }],
    };
    let _ = select_route(std::slice::from_ref(&route), Some(host));
    let (path, query) = target.split_once('?').map_or((target, None), |(p, q)| (p, Some(q)));
    if let Ok(m) = map_path(&route, path) {
        let up = upstream_path_and_query(&route.upstream, m.rest, query);
        assert!(up.starts_with("/api/v2/scim"));
        let up_path = up.split('?').next().unwrap_or("");
        assert!(check_safe(up_path).is_ok(), "mapped to an unsafe path: {up_path}");
        assert!(path.to_ascii_lowercase().starts_with("/scim/v2"));
    }
});
