//! Routing on the request path: `select_route` + `map_path` + `upstream_path_and_query` on the
//! targets Okta, Entra and JumpCloud really send, plus the upstream `Uri` the proxy builds from them.
//!
//! `cargo bench --bench route`. The config goes through the public parser, so the benchmark keeps
//! compiling when `Route` gains fields.

use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use scim_proxy::config::{self, Route};
use scim_proxy::proxy::route;

const HASH: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

/// Three tenants: two by host, one catch-all with the JumpCloud `/SCIM/V2/<tenantId>` form.
fn routes() -> Vec<Route> {
    let text = format!(
        r#"
[listen]
addr = "127.0.0.1:8443"
cert = "proxy.crt"
key = "proxy.key"

[[routes]]
name = "acme"
upstream = "https://acme.goskope.com/api/v2/scim"
token_env = "ACME_V2_TOKEN"
hosts = ["scim-proxy.acme.example", "addon-acme.goskope.com"]
[[routes.clients]]
name = "okta"
token_sha256 = "{HASH}"

[[routes]]
name = "globex"
upstream = "https://globex.eu.goskope.com/api/v2/scim"
token_env = "GLOBEX_V2_TOKEN"
hosts = ["addon-globex.eu.goskope.com"]
[[routes.clients]]
name = "entra"
token_sha256 = "{HASH}"

[[routes]]
name = "initech"
upstream = "https://initech.goskope.com/api/v2/scim"
token_env = "INITECH_V2_TOKEN"
legacy_tenant_id = "1234"
[[routes.clients]]
name = "jumpcloud"
token_sha256 = "{HASH}"
"#
    );
    config::parse(&text, Path::new("bench.toml"))
        .unwrap_or_else(|p| panic!("bench config: {p:?}"))
        .routes
}

/// (label, authority, path, query) as IdPs send them.
const TARGETS: [(&str, &str, &str, Option<&str>); 6] = [
    (
        "okta_list_page",
        "scim-proxy.acme.example",
        "/scim/v2/Users",
        Some("startIndex=101&count=100"),
    ),
    (
        "okta_filter",
        "scim-proxy.acme.example",
        "/scim/v2/Users",
        Some("filter=userName%20eq%20%22jdoe%40acme.example%22&startIndex=1&count=100"),
    ),
    (
        "okta_patch_user",
        "scim-proxy.acme.example:443",
        "/scim/v2/Users/00u1a2b3c4d5e6f7g8h9",
        None,
    ),
    (
        "entra_filter",
        "addon-globex.eu.goskope.com",
        "/SCIM/v2/Users",
        Some("filter=userName+eq+%22AlexW%40contoso.onmicrosoft.com%22"),
    ),
    (
        "entra_group",
        "addon-globex.eu.goskope.com",
        "/SCIM/v2/Groups/5d48a0a8-e9f0-4aa3-8008-9b2cd6f6e1c0",
        Some("excludedAttributes=members"),
    ),
    (
        "jumpcloud_legacy",
        "jc.initech.example",
        "/SCIM/V2/1234/Users/5f3c2a1b9e8d7c6b5a4f3e2d",
        None,
    ),
];

/// What `proxy::forward` does with a target, up to the upstream path and query.
fn route_one(routes: &[Route], authority: &str, path: &str, query: Option<&str>) -> String {
    let i = route::select_route(routes, Some(authority)).expect("route");
    let r = &routes[i];
    let mapped = route::map_path(r, path).expect("mapped");
    route::upstream_path_and_query(&r.upstream, mapped.rest, query)
}

fn bench(c: &mut Criterion) {
    let routes = routes();
    // Sanity: the table really maps where it should.
    assert_eq!(
        route_one(&routes, TARGETS[5].1, TARGETS[5].2, TARGETS[5].3),
        "/api/v2/scim/Users/5f3c2a1b9e8d7c6b5a4f3e2d"
    );

    let mut g = c.benchmark_group("route");
    g.throughput(Throughput::Elements(1));
    for (label, authority, path, query) in TARGETS {
        g.bench_function(format!("full/{label}"), |b| {
            b.iter(|| {
                route_one(
                    black_box(&routes),
                    black_box(authority),
                    black_box(path),
                    black_box(query),
                )
            })
        });
    }

    let (_, authority, path, query) = TARGETS[1];
    g.bench_function("select_route", |b| {
        b.iter(|| route::select_route(black_box(&routes), black_box(Some(authority))))
    });
    g.bench_function("select_route/catch_all", |b| {
        b.iter(|| route::select_route(black_box(&routes), black_box(Some("jc.initech.example"))))
    });
    g.bench_function("map_path", |b| {
        b.iter(|| route::map_path(black_box(&routes[0]), black_box(path)).map(|m| m.rest.len()))
    });
    g.bench_function("check_safe/long_id", |b| {
        let long = format!("/scim/v2/Users/{}", "a1b2c3d4".repeat(16));
        b.iter(|| route::check_safe(black_box(&long)))
    });
    g.bench_function("upstream_path_and_query", |b| {
        b.iter(|| {
            route::upstream_path_and_query(
                black_box(&routes[0].upstream),
                black_box("/Users"),
                black_box(query),
            )
        })
    });
    // The proxy then formats and parses an absolute URI for hyper's client (src/proxy.rs).
    g.bench_function("upstream_uri/format_parse", |b| {
        let pq = route_one(&routes, authority, path, query);
        b.iter(|| {
            format!(
                "https://{}{}",
                black_box(&routes[0].upstream.authority),
                black_box(&pq)
            )
            .parse::<http::Uri>()
            .expect("uri")
        })
    });
    g.bench_function("upstream_uri/from_parts", |b| {
        let pq = route_one(&routes, authority, path, query);
        let scheme = http::uri::Scheme::HTTPS;
        let authority: http::uri::Authority =
            routes[0].upstream.authority.parse().expect("authority");
        b.iter(|| {
            http::Uri::builder()
                .scheme(scheme.clone())
                .authority(authority.clone())
                .path_and_query(black_box(pq.as_str()))
                .build()
                .expect("uri")
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = bench
}
criterion_main!(benches);
