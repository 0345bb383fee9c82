//! Header work on the request path, on header sets as Entra and Okta send them and as a SCIM
//! upstream answers: `upstream_request_headers` (hop-by-hop, credentials, Host, Expect),
//! `strip_hop_by_hop` on a response, the `Location` rewrite (`rewrite_location`, as `proxy.rs`
//! applies it to `Location` and `Content-Location`), and the per-request `Base::new` of the base the
//! client addressed.
//!
//! Each header benchmark clones its template map per iteration (`iter_batched`, clone not timed),
//! so the numbers are for the operation alone; `clone_only` shows what a clone costs.
//!
//! `cargo bench --bench headers`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use scim_proxy::proxy::headers;
use scim_proxy::scim::base::{self, Base};

fn map(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(
            HeaderName::from_bytes(k.as_bytes()).expect("name"),
            HeaderValue::from_str(v).expect("value"),
        );
    }
    h
}

/// An Entra ID provisioning PATCH as it reaches the proxy (HTTP/1.1, keep-alive).
fn entra_request() -> HeaderMap {
    map(&[
        ("host", "addon-acme.goskope.com"),
        ("user-agent", "Microsoft.AAD.Provisioning.Scim/1.0"),
        ("accept", "application/scim+json"),
        ("content-type", "application/scim+json; charset=utf-8"),
        ("content-length", "212"),
        (
            "authorization",
            "Bearer eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9.eyJpc3MiOiJlbnRyYSJ9.q8Z3k",
        ),
        ("client-request-id", "2b7d1a9e-6c3f-4f0e-9a8b-1d2c3e4f5a6b"),
        ("x-request-id", "9f0c1d2e-3b4a-5c6d-7e8f-90a1b2c3d4e5"),
        (
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        ),
        ("accept-encoding", "gzip, deflate"),
        ("expect", "100-continue"),
        ("connection", "Keep-Alive"),
    ])
}

/// An Okta list request, with a hop-by-hop header named in Connection.
fn okta_request() -> HeaderMap {
    map(&[
        ("host", "scim-proxy.acme.example"),
        ("user-agent", "Okta SCIM Client 1.0.0"),
        ("accept", "application/scim+json"),
        ("accept-charset", "utf-8"),
        (
            "authorization",
            "Bearer 00aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789",
        ),
        ("x-okta-request-id", "YxV3h2cAAAAAAAAAAAAAAAAAAAA"),
        ("accept-encoding", "gzip"),
        ("connection", "keep-alive, x-okta-hop"),
        ("x-okta-hop", "1"),
        ("keep-alive", "timeout=60"),
    ])
}

/// A 201 from the SCIM upstream: Location and Content-Location under the upstream base.
fn upstream_response() -> HeaderMap {
    map(&[
        ("date", "Mon, 23 Nov 2026 17:04:00 GMT"),
        ("content-type", "application/scim+json;charset=UTF-8"),
        ("content-length", "1043"),
        ("connection", "keep-alive"),
        ("keep-alive", "timeout=60"),
        (
            "location",
            "https://acme.goskope.com/api/v2/scim/Users/2819c223-7f76-453a-919d-413861904646",
        ),
        (
            "content-location",
            "https://acme.goskope.com/api/v2/scim/Users/2819c223-7f76-453a-919d-413861904646",
        ),
        ("etag", "W/\"e180ee84f0671b1\""),
        ("x-request-id", "9f0c1d2e-3b4a-5c6d-7e8f-90a1b2c3d4e5"),
        ("strict-transport-security", "max-age=31536000"),
        ("x-content-type-options", "nosniff"),
        ("cache-control", "no-store"),
    ])
}

fn upstream_base() -> Base {
    Base::new("https", "acme.goskope.com", "/api/v2/scim")
}

fn client_base() -> Base {
    Base::new("https", "addon-acme.goskope.com", "/SCIM/v2")
}

/// What `proxy.rs` does with `Location` and `Content-Location`.
fn rewrite_locations(h: &mut HeaderMap, upstream: &Base, client: &Base) {
    for name in [header::LOCATION, header::CONTENT_LOCATION] {
        if let Some(v) = h.get(&name).and_then(|v| v.to_str().ok())
            && let Some(new) = base::rewrite_location(v, upstream, client)
            && let Ok(new) = HeaderValue::from_str(&new)
        {
            h.insert(name, new);
        }
    }
}

fn bench(c: &mut Criterion) {
    let up = upstream_base();
    let client = client_base();
    {
        let mut h = upstream_response();
        rewrite_locations(&mut h, &up, &client);
        assert_eq!(
            h[header::LOCATION],
            "https://addon-acme.goskope.com/SCIM/v2/Users/2819c223-7f76-453a-919d-413861904646"
        );
    }

    let mut g = c.benchmark_group("headers");
    g.throughput(Throughput::Elements(1));
    for (label, template) in [("entra", entra_request()), ("okta", okta_request())] {
        g.bench_function(format!("upstream_request_headers/{label}"), |b| {
            b.iter_batched_ref(
                || template.clone(),
                |h| headers::upstream_request_headers(black_box(h)),
                BatchSize::SmallInput,
            )
        });
    }
    let response = upstream_response();
    g.bench_function("strip_hop_by_hop/response", |b| {
        b.iter_batched_ref(
            || response.clone(),
            |h| headers::strip_hop_by_hop(black_box(h)),
            BatchSize::SmallInput,
        )
    });
    g.bench_function("location_rewrite/two_headers", |b| {
        b.iter_batched_ref(
            || response.clone(),
            |h| rewrite_locations(black_box(h), &up, &client),
            BatchSize::SmallInput,
        )
    });
    g.bench_function("rewrite_location/one_value", |b| {
        let v = response[header::LOCATION].to_str().expect("ascii");
        b.iter(|| base::rewrite_location(black_box(v), &up, &client))
    });
    g.bench_function("response_pipeline", |b| {
        b.iter_batched_ref(
            || response.clone(),
            |h| {
                headers::strip_hop_by_hop(black_box(h));
                rewrite_locations(h, &up, &client);
            },
            BatchSize::SmallInput,
        )
    });
    // Built per request in proxy.rs from the client's authority and prefix.
    g.bench_function("client_base_new", |b| {
        b.iter(|| {
            Base::new(
                black_box("https"),
                black_box("addon-acme.goskope.com"),
                black_box("/SCIM/v2"),
            )
        })
    });
    let entra = entra_request();
    g.bench_function("clone_only/entra_request", |b| {
        b.iter(|| black_box(&entra).clone())
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
