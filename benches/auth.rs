//! Inbound authentication: `authenticate` against routes with 1, 3 and 10 clients (each with one
//! hash, plus a rotation hash on every third), for a known token (matched by the last client, though
//! the comparison is constant-time anyway), an unknown one, and the parts: `bearer_token` and
//! `token_sha256`.
//!
//! `cargo bench --bench auth`.

use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use scim_proxy::auth::{self, AuthOutcome};
use scim_proxy::config::{self, Client};

/// A 40-character token as Okta and Entra hold them.
fn token(i: usize) -> String {
    format!("okta{i:02}-9f2Kq7ZpX1c4Vb8Nm3Lh6Jg5Td0Rs2We")
}

fn clients(n: usize) -> Vec<Client> {
    let mut text = String::from(
        "[listen]\naddr = \"127.0.0.1:8443\"\n\n[[routes]]\nname = \"acme\"\n\
         upstream = \"https://acme.goskope.com/api/v2/scim\"\ntoken_env = \"ACME_V2_TOKEN\"\n\
         hosts = [\"scim-proxy.acme.example\"]\n",
    );
    for i in 0..n {
        let hash = hex::encode(auth::token_sha256(token(i).as_bytes()));
        text.push_str(&format!(
            "[[routes.clients]]\nname = \"idp{i}\"\ntoken_sha256 = \"{hash}\"\n"
        ));
        if i % 3 == 2 {
            let next = hex::encode(auth::token_sha256(format!("next-{i}").as_bytes()));
            text.push_str(&format!("additional_token_sha256 = [\"{next}\"]\n"));
        }
    }
    let mut config = config::parse(&text, Path::new("bench.toml"))
        .unwrap_or_else(|p| panic!("bench config: {p:?}"));
    config.routes.remove(0).clients
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("auth");
    g.throughput(Throughput::Elements(1));
    for n in [1usize, 3, 10] {
        let clients = clients(n);
        let good = format!("Bearer {}", token(n - 1));
        let bad = format!("Bearer {}", token(99));
        assert_eq!(
            auth::authenticate(&clients, std::iter::once(good.as_bytes())),
            AuthOutcome::Ok(n - 1)
        );
        assert_eq!(
            auth::authenticate(&clients, std::iter::once(bad.as_bytes())),
            AuthOutcome::UnknownToken
        );
        g.bench_with_input(BenchmarkId::new("authenticate/known", n), &n, |b, _| {
            b.iter(|| {
                auth::authenticate(
                    black_box(&clients),
                    std::iter::once(black_box(good.as_bytes())),
                )
            })
        });
        g.bench_with_input(BenchmarkId::new("authenticate/unknown", n), &n, |b, _| {
            b.iter(|| {
                auth::authenticate(
                    black_box(&clients),
                    std::iter::once(black_box(bad.as_bytes())),
                )
            })
        });
    }
    let value = format!("Bearer {}", token(0));
    g.bench_function("bearer_token", |b| {
        b.iter(|| auth::bearer_token(black_box(value.as_bytes())))
    });
    g.bench_function("token_sha256", |b| {
        b.iter(|| auth::token_sha256(black_box(&value.as_bytes()[7..])))
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
