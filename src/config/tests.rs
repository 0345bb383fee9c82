//! The config's unit tests: whole files through `parse`, and the value parsers one by one.

use std::path::Path;

use super::problems::{fields_of, suggest_key};
use super::raw::RawRoute;
use super::*;

const HASH: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

fn minimal() -> String {
    format!(
        r#"
[listen]
addr = "127.0.0.1:8443"

[[routes]]
name = "acme"
upstream = "https://acme.goskope.com/api/v2/scim/"
public_url = "https://scim.example.com/SCIM/v2"
token_file = "acme.token"

[[routes.clients]]
name = "okta"
token_sha256 = "{HASH}"
"#
    )
}

fn problems(text: &str) -> Vec<String> {
    match parse(text, Path::new("/etc/scim-proxy/p.toml")) {
        Ok(_) => Vec::new(),
        Err(p) => p.0.iter().map(|p| p.to_string()).collect(),
    }
}

#[test]
fn minimal_config_validates_with_defaults() {
    let c = parse(&minimal(), Path::new("/etc/scim-proxy/p.toml")).unwrap();
    assert_eq!(c.listen.addr, "127.0.0.1:8443".parse().unwrap());
    assert!(c.listen.tls.is_none());
    assert_eq!(c.limits, Limits::default());
    let r = &c.routes[0];
    assert_eq!(r.upstream.url(), "https://acme.goskope.com/api/v2/scim");
    assert_eq!(
        r.token,
        TokenSource::File("/etc/scim-proxy/acme.token".into())
    );
    assert_eq!(r.upstream_auth, UpstreamAuth::Bearer);
    assert_eq!(hex::encode(r.clients[0].token_sha256[0]), HASH);
}

#[test]
fn unknown_keys_are_errors_and_all_are_reported() {
    let text = minimal().replace("[listen]", "[listen]\nadress = \"x\"")
        + "\n[egress]\nbindip = \"1.2.3.4\"\n";
    let p = problems(&text);
    assert_eq!(p.len(), 2, "{p:?}");
    assert!(
        p[0].contains("listen.adress: unknown key (misspelt"),
        "{p:?}"
    );
    assert!(
        p[1].contains("egress.bindip: unknown key; did you mean bind_ip?"),
        "{p:?}"
    );
}

#[test]
fn suggestions_come_from_the_table_the_key_is_in() {
    assert_eq!(suggest_key("routes[0].token_fiel"), Some("token_file"));
    assert_eq!(
        suggest_key("routes[2].clients[1].token_sha265"),
        Some("token_sha256")
    );
    assert_eq!(suggest_key("listn"), Some("listen"));
    assert_eq!(suggest_key("limits.idle_timout"), Some("idle_timeout"));
    // Nothing near: no guess.
    assert_eq!(suggest_key("listen.colour"), None);
    assert!(fields_of::<RawRoute>().contains(&"token_expires"));
}

#[test]
fn every_problem_is_reported_with_file_and_key() {
    let text = r#"
[listen]
addr = "nope"
cert = "a.crt"
[limits]
upstream_timeout = "soon"
[egress]
bind_ip = "0.0.0.0"
[[routes]]
name = "a b"
upstream = "http://acme.goskope.com/api/v2/scim"
token_file = "t"
token_env = "T"
upstream_auth = "basic"
hosts = []
[[routes.clients]]
name = "okta"
token_sha256 = "secret-token"
"#;
    let p = problems(text);
    let want = [
        "listen.addr:",
        "listen.key: required when listen.cert",
        "limits.upstream_timeout:",
        "egress.bind_ip:",
        "routes[0].name:",
        "routes[0].upstream:",
        "routes[0].token_file: set exactly one",
        "routes[0].hosts: empty list",
        "routes[0].upstream_auth:",
        "routes[0].clients[0].token_sha256: must be 64 hex",
    ];
    for w in want {
        assert!(
            p.iter()
                .any(|l| l.starts_with("/etc/scim-proxy/p.toml: ") && l.contains(w)),
            "missing {w:?} in {p:#?}"
        );
    }
    assert_eq!(p.len(), want.len(), "{p:#?}");
}

#[test]
fn public_url_is_validated_and_a_plain_listener_needs_it_or_hosts() {
    let c = parse(&minimal(), Path::new("/etc/scim-proxy/p.toml")).unwrap();
    let public = c.routes[0].public_url.clone().unwrap();
    assert_eq!(
        (
            public.scheme.as_str(),
            public.authority.as_str(),
            public.path.as_str()
        ),
        ("https", "scim.example.com", "/SCIM/v2")
    );
    for bad in [
        "scim.example.com/SCIM/v2",
        "ftp://scim.example.com/SCIM/v2",
        "https://scim.example.com",
        "https://scim.example.com/",
        "https://scim.example.com/SCIM/v2?x=1",
        "https://scim.example.com/SCIM/v2#f",
        "https://u@scim.example.com/SCIM/v2",
    ] {
        let text = minimal().replace("https://scim.example.com/SCIM/v2", bad);
        let p = problems(&text);
        assert!(
            p.len() == 1 && p[0].starts_with("/etc/scim-proxy/p.toml: routes[0].public_url: "),
            "{bad}: {p:#?}"
        );
    }
    let without = minimal().replace("public_url = \"https://scim.example.com/SCIM/v2\"\n", "");
    let p = problems(&without);
    assert_eq!(p.len(), 1, "{p:#?}");
    assert!(
        p[0].contains("routes[0].public_url: required on a plain listener")
            && p[0].contains("routes[0].hosts"),
        "{p:#?}"
    );
    assert!(
        problems(&without.replace("token_file", "hosts = [\"scim.example.com\"]\ntoken_file"))
            .is_empty()
    );
    assert!(
        problems(&without.replace("[listen]", "[listen]\ncert = \"a.crt\"\nkey = \"a.key\""))
            .is_empty()
    );
}

#[test]
fn cross_route_rules() {
    let route = |name: &str, hosts: &str| {
        format!(
            "[[routes]]\nname = \"{name}\"\nupstream = \"https://x.goskope.com/api/v2/scim\"\ntoken_env = \"T\"\n{hosts}\n[[routes.clients]]\nname = \"c\"\ntoken_sha256 = \"{HASH}\"\n"
        )
    };
    let text = format!(
        "[listen]\naddr = \"127.0.0.1:1\"\ncert = \"a.crt\"\nkey = \"a.key\"\n{}{}{}{}",
        route("a", ""),
        route("b", ""),
        route("a", "hosts = [\"H.example\"]"),
        route("d", "hosts = [\"h.example.\"]")
    );
    let p = problems(&text);
    assert!(
        p.iter()
            .any(|l| l.contains("routes[2].name") && l.contains("another route")),
        "{p:#?}"
    );
    assert!(
        p.iter()
            .any(|l| l.contains("routes[3].hosts") && l.contains("already served")),
        "{p:#?}"
    );
    assert!(
        p.iter()
            .any(|l| l.contains("at most one route may omit `hosts`")),
        "{p:#?}"
    );
}

#[test]
fn syntax_and_type_errors_name_the_file() {
    let p = problems("[listen\naddr=1");
    assert_eq!(p.len(), 1);
    assert!(p[0].starts_with("/etc/scim-proxy/p.toml: "), "{p:?}");
    let p = problems(&minimal().replace("\"127.0.0.1:8443\"", "8443"));
    assert!(p[0].contains("addr"), "{p:?}");
}

#[test]
fn upstream_url_rules() {
    assert_eq!(
        parse_upstream("https://A.goskope.com:443/api/v2/scim/")
            .unwrap()
            .authority,
        "a.goskope.com"
    );
    let b = parse_upstream("https://127.0.0.1:8444/api/v2/scim").unwrap();
    assert_eq!(
        (b.host.as_str(), b.port, b.authority.as_str()),
        ("127.0.0.1", 8444, "127.0.0.1:8444")
    );
    let b = parse_upstream("https://[::1]:9/x").unwrap();
    assert_eq!((b.host.as_str(), b.authority.as_str()), ("::1", "[::1]:9"));
    for bad in [
        "http://a/api",
        "a.goskope.com/api",
        "https://u:p@a/api",
        "https://a/api?x=1",
        "https://a/api/../x",
        "https://a/api%2f",
    ] {
        assert!(parse_upstream(bad).is_err(), "{bad}");
    }
}

#[test]
fn secrets_come_from_a_file_or_a_variable_not_both() {
    let text = minimal()
        + "\n[egress]\nvia_proxy = \"http://proxy.corp:3128\"\nvia_proxy_auth_file = \"p\"\nvia_proxy_auth_env = \"P\"\n[log]\npii_key_file = \"k\"\npii_key_env = \"K\"\n";
    let p = problems(&text);
    assert!(p.iter().any(|l| l.contains("egress.via_proxy_auth_file: set at most one of via_proxy_auth_file and via_proxy_auth_env")), "{p:#?}");
    assert!(
        p.iter().any(
            |l| l.contains("log.pii_key_file: set at most one of pii_key_file and pii_key_env")
        ),
        "{p:#?}"
    );
    assert_eq!(p.len(), 2, "{p:#?}");
    let one = minimal()
        + "\n[egress]\nvia_proxy = \"http://proxy.corp:3128\"\nvia_proxy_auth_env = \"P\"\n";
    let c = parse(&one, Path::new("/etc/scim-proxy/p.toml")).unwrap();
    let proxy = c.egress.via_proxy.unwrap();
    assert_eq!(proxy.url, "http://proxy.corp:3128");
    assert_eq!(proxy.credentials, Some(TokenSource::Env("P".into())));
}

#[test]
fn timestamps() {
    let t = |s| {
        parse_timestamp(s)
            .map(humantime::format_rfc3339_seconds)
            .map(|t| t.to_string())
    };
    assert_eq!(t("2026-03-21").as_deref(), Some("2026-03-21T00:00:00Z"));
    assert_eq!(
        t("2026-03-21T10:00:00Z").as_deref(),
        Some("2026-03-21T10:00:00Z")
    );
    assert_eq!(
        t("2026-03-21T10:00:00+02:00").as_deref(),
        Some("2026-03-21T08:00:00Z")
    );
    assert_eq!(
        t("2026-03-21T10:00:00-01:30").as_deref(),
        Some("2026-03-21T11:30:00Z")
    );
    assert_eq!(t("next tuesday"), None);
    assert_eq!(t("2026-03-21T10:00:00"), None);
}

#[test]
fn sizes() {
    assert_eq!(parse_size("4MiB"), Some(4 << 20));
    assert_eq!(parse_size("512 KiB"), Some(512 << 10));
    assert_eq!(parse_size("1MB"), Some(1_000_000));
    assert_eq!(parse_size("100"), Some(100));
    assert_eq!(parse_size("4 furlongs"), None);
    assert_eq!(parse_size("MiB"), None);
    assert_eq!(parse_size("99999999999999999999GiB"), None);
    let p = problems(&minimal().replace(
        "[listen]",
        "[limits]\nmax_body = \"big\"\nmax_header_bytes = 10\n[listen]",
    ));
    assert!(p.iter().any(|l| l.contains("limits.max_body")), "{p:?}");
    assert!(
        p.iter()
            .any(|l| l.contains("limits.max_header_bytes") && l.contains("out of range")),
        "{p:?}"
    );
    let p = problems(&minimal().replace("[listen]", "[listen]\nproxy_protocol = true"));
    assert!(
        p.iter()
            .any(|l| l.contains("listen.trusted_proxies: required")),
        "{p:?}"
    );
}

#[test]
fn host_normalisation() {
    assert_eq!(
        normalize_host("Addon-ACME.goskope.com").as_deref(),
        Some("addon-acme.goskope.com")
    );
    assert_eq!(normalize_host("[::1]").as_deref(), Some("::1"));
    assert_eq!(normalize_host("a.example:443"), None);
    assert_eq!(normalize_host("https://a"), None);
}

#[test]
fn pacing_keys_default_from_the_rate_and_are_checked() {
    let paced = |lines: &str| {
        minimal().replace(
            "token_file = \"acme.token\"\n",
            &format!("token_file = \"acme.token\"\n{lines}\n"),
        )
    };
    let c = parse(&minimal(), Path::new("/etc/scim-proxy/p.toml")).unwrap();
    assert_eq!(c.routes[0].pacing, None);
    let c = parse(
        &paced("max_requests_per_second = 2.5"),
        Path::new("/etc/scim-proxy/p.toml"),
    )
    .unwrap();
    let pacing = c.routes[0].pacing.unwrap();
    assert_eq!(pacing.interval, std::time::Duration::from_millis(400));
    // One second's worth by default, and a few seconds of queue.
    assert_eq!(pacing.burst, 3);
    assert_eq!(pacing.max_queue_wait, std::time::Duration::from_secs(5));
    let c = parse(
        &paced("max_requests_per_second = 10\nburst = 1\nmax_queue_wait = \"2s\""),
        Path::new("/etc/scim-proxy/p.toml"),
    )
    .unwrap();
    let pacing = c.routes[0].pacing.unwrap();
    assert_eq!(
        (pacing.burst, pacing.max_queue_wait),
        (1, std::time::Duration::from_secs(2))
    );

    let p = problems(&paced("burst = 5"));
    assert_eq!(
        p,
        [
            "/etc/scim-proxy/p.toml: routes[0].burst: only used with routes[0].max_requests_per_second, which is not set"
        ]
    );
    let p = problems(&paced("max_requests_per_second = 0"));
    assert!(
        p[0].contains("routes[0].max_requests_per_second: 0 is out of range"),
        "{p:?}"
    );
    let p = problems(&paced(
        "max_requests_per_second = 5\nmax_queue_wait = \"soon\"",
    ));
    assert!(p[0].contains("routes[0].max_queue_wait"), "{p:?}");
    let p = problems(&paced("max_requests_per_second = 5\nburst = 0"));
    assert!(p[0].contains("routes[0].burst: 0 is out of range"), "{p:?}");
}
