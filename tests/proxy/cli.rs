//! The command line: `hash-token`, `check`, `serve` (signals, grace, start-up log), `demo`, `upstream`,
//! the help text, and the README's lab block run as written.

use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::{Method, StatusCode};
use scim_proxy::lab::client::ScimClient;
use scim_proxy::lab::devcerts;
use scim_proxy::lab::upstream::Override;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::*;

/// Runs the real binary with `args` off the runtime (the test's servers keep running on it).
async fn cli_off_runtime(args: &[&str]) -> std::process::Output {
    run_cli_off_runtime(args, &[], Duration::from_secs(30)).await
}

#[test]
fn cli_hash_token_prints_the_sha256_of_stdin() {
    // sha256("abc"), the FIPS 180-2 test vector.
    let abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
    for input in [&b"abc"[..], b"abc\n", b"abc\r\n"] {
        let out = run_cli(&["hash-token"], input, &[], Duration::from_secs(30));
        assert!(out.status.success(), "{input:?}: {out:?}");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            abc,
            "{input:?}"
        );
    }
    let out = run_cli(
        &["hash-token"],
        format!("{OKTA}\n").as_bytes(),
        &[],
        Duration::from_secs(30),
    );
    assert!(out.status.success());
    let printed = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert_eq!(printed, sha256_hex(OKTA.as_bytes()));
    assert!(!String::from_utf8_lossy(&out.stderr).contains(OKTA));
    // Nothing to hash: an error, not the hash of the empty string.
    let out = run_cli(&["hash-token"], b"\n", &[], Duration::from_secs(30));
    assert!(!out.status.success(), "{out:?}");
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains(&sha256_hex(b"")),
        "{out:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_check_accepts_a_good_config_and_summarises_the_routes() {
    let prepared = Builder::new()
        .upstreams(2)
        .admin()
        .routes(vec![
            RouteSpec::new("acme")
                .upstream(0)
                .hosts(&["addon-acme.example"])
                .tenant("1234"),
            RouteSpec::new("globex")
                .upstream(1)
                .auth("netskope-api-token"),
        ])
        .prepare()
        .await;
    let path = prepared.config_path.to_str().unwrap().to_string();
    let out = tokio::task::spawn_blocking(move || {
        run_cli(
            &["check", "--config", &path],
            b"",
            &[],
            Duration::from_secs(60),
        )
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for want in [
        "acme",
        "globex",
        "addon-acme.example",
        &format!("https://{}/api/v2/scim", prepared.upstreams[0].addr()),
        &format!("https://{}/api/v2/scim", prepared.upstreams[1].addr()),
    ] {
        assert!(stdout.contains(want), "summary lacks {want:?}:\n{stdout}");
    }
    for t in &prepared.v2_tokens {
        assert!(
            !stdout.contains(t.as_str()),
            "the summary prints a v2 token"
        );
    }
    prepared.shutdown().await;
}

#[test]
fn cli_check_reports_every_syntax_level_mistake_with_file_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_file(
        dir.path(),
        "bad.toml",
        r#"
[listen]
addr = "127.0.0.1:0"
adress = "typo"

[limits]
upstream_timeout = "soon"

[egress]
bind_ip = "not-an-ip"

[[routes]]
name = "acme"
upstream = "http://acme.example/api/v2/scim"
token_file = "acme.token"

[[routes.clients]]
name = "okta"
token_sha256 = "not-hex"
"#,
    );
    let p = path.to_str().unwrap();
    let out = run_cli(&["check", "--config", p], b"", &[], Duration::from_secs(60));
    assert!(!out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    for key in [
        "listen.adress",
        "limits.upstream_timeout",
        "egress.bind_ip",
        "routes[0].upstream",
        "routes[0].clients[0].token_sha256",
    ] {
        assert!(
            stderr
                .lines()
                .any(|l| l.starts_with(&format!("{p}: {key}:"))),
            "no line `{p}: {key}: ...` in:\n{stderr}"
        );
    }
    assert!(out.stdout.is_empty() || !String::from_utf8_lossy(&out.stdout).contains(": OK"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_check_and_serve_report_every_load_level_mistake() {
    let ip = ["192.0.2.1", "198.51.100.77", "203.0.113.77"]
        .into_iter()
        .find(|ip| !can_bind(ip.parse().unwrap()))
        .expect("a documentation address not configured here");
    let mut prepared = Builder::new().bind_ip(ip).prepare().await;
    prepared.edit_config("cert = \"proxy.crt\"", "cert = \"missing.crt\"");
    prepared.edit_config("key = \"proxy.key\"", "key = \"missing.key\"");
    prepared.edit_config("ca_file = \"ca.pem\"", "ca_file = \"missing-ca.pem\"");
    prepared.edit_config(
        "token_file = \"main.token\"",
        "token_file = \"missing.token\"",
    );
    let path = prepared.config_path.to_str().unwrap().to_string();
    let out = tokio::task::spawn_blocking({
        let path = path.clone();
        move || {
            run_cli(
                &["check", "--config", &path],
                b"",
                &[],
                Duration::from_secs(60),
            )
        }
    })
    .await
    .unwrap();
    assert!(!out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    for (key, mentions) in [
        ("listen.cert", "missing.crt"),
        ("listen.key", "missing.key"),
        ("egress.ca_file", "missing-ca.pem"),
        ("egress.bind_ip", ip),
        ("routes[0].token_file", "missing.token"),
    ] {
        assert!(
            stderr
                .lines()
                .any(|l| l.starts_with(&format!("{path}: {key}:")) && l.contains(mentions)),
            "no line `{path}: {key}: ...{mentions}...` in:\n{stderr}"
        );
    }
    // `serve` refuses the same config and says why (the bind_ip among the rest).
    let out = tokio::task::spawn_blocking({
        let path = path.clone();
        move || {
            run_cli(
                &["serve", "--config", &path],
                b"",
                &[("RUST_LOG", "info")],
                Duration::from_secs(60),
            )
        }
    })
    .await
    .unwrap();
    assert!(!out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("egress.bind_ip"), "{stderr}");
    assert!(stderr.contains("routes[0].token_file"), "{stderr}");
    prepared.shutdown().await;
}

#[test]
fn cli_check_on_the_shipped_example_fails_only_on_operator_files() {
    let example = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/scim-proxy.example.toml"
    );
    assert!(
        std::path::Path::new(example).exists(),
        "config/scim-proxy.example.toml is missing"
    );
    let out = run_cli(
        &["check", "--config", example],
        b"",
        &[],
        Duration::from_secs(60),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    let problems: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with(&format!("{example}: ")))
        .collect();
    assert!(
        problems.iter().any(|l| l.contains(": listen.cert:")),
        "{stderr}"
    );
    assert!(
        problems
            .iter()
            .any(|l| l.contains("].token_file:") || l.contains("].token_env:")),
        "{stderr}"
    );
    for l in &problems {
        let key = l[example.len() + 2..]
            .split(": ")
            .next()
            .unwrap_or_default();
        let operator_file = key == "listen.cert"
            || key == "listen.key"
            || (key.starts_with("routes[")
                && (key.ends_with("].token_file") || key.ends_with("].token_env")));
        assert!(operator_file, "unexpected problem in the example: {l}");
    }
    // Nothing but problem lines and the count.
    for l in stderr.lines() {
        assert!(
            problems.contains(&l) || l.contains("problem"),
            "unexpected output: {l}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_serve_answers_then_drains_on_sigterm_and_exits_0() {
    let prepared = Builder::new()
        .limit("shutdown_grace", "\"15s\"")
        .prepare()
        .await;
    let mut serve = ServeChild::spawn(&prepared.config_path);
    let addr = serve.serving_addr(Duration::from_secs(30)).await;
    assert!(addr.ip().is_loopback() && addr.port() != 0, "{addr}");
    let client = ScimClient::new(
        &format!("https://localhost:{}", addr.port()),
        devcerts::client_config(&prepared.ca_pem, &[]).unwrap(),
        false,
    );
    let up = prepared.upstreams[0].clone();
    let a = client
        .send(Method::GET, "/SCIM/v2/Users", Some(OKTA), None)
        .await
        .expect("request");
    assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
    assert_eq!(up.requests().len(), 1);

    // A slow request is in flight when SIGTERM comes: it still completes.
    up.push_override(Override {
        status: StatusCode::OK,
        headers: vec![("content-type".into(), "application/scim+json".into())],
        body: Bytes::from_static(b"{\"slow\":true}"),
        delay: Duration::from_secs(2),
    });
    let slow = tokio::spawn({
        let client = client.clone();
        async move {
            client
                .send(Method::GET, "/SCIM/v2/Users", Some(ENTRA), None)
                .await
        }
    });
    let deadline = Instant::now() + Duration::from_secs(15);
    while up.requests().len() < 2 {
        assert!(
            Instant::now() < deadline,
            "the slow request never reached the upstream"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    serve.signal("TERM");
    let a = bounded("slow request", slow)
        .await
        .unwrap()
        .expect("slow request");
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(&a.body[..], b"{\"slow\":true}");
    let status = serve
        .exit_status(Duration::from_secs(20))
        .await
        .unwrap_or_else(|| {
            panic!(
                "serve still running 20 s after SIGTERM:\n{}",
                serve.stderr()
            )
        });
    assert_eq!(status.code(), Some(0), "{}", serve.stderr());
    let stderr = serve.stderr();
    assert!(stderr.contains("SIGTERM"), "{stderr}");
    // The port is closed now.
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());

    // A traffic line per request with method, path, route, client, status, duration; no token.
    let traffic = read_traffic(prepared.dir.path());
    let raw_traffic = std::fs::read_to_string(prepared.dir.path().join("traffic.log")).unwrap();
    assert_eq!(traffic.len(), 2, "{raw_traffic}");
    for (line, client) in traffic.iter().zip(["okta", "entra"]) {
        assert_eq!(line["method"], json!("GET"), "{line}");
        assert_eq!(line["path"], json!("/SCIM/v2/Users"), "{line}");
        assert_eq!(line["route"], json!("main"), "{line}");
        assert_eq!(line["client"], json!(client), "{line}");
        assert_eq!(line["status"], json!(200), "{line}");
        assert!(line["duration_ms"].is_u64(), "{line}");
    }
    for secret in [OKTA, ENTRA, prepared.v2_tokens[0].as_str()] {
        assert!(
            !stderr.contains(secret),
            "a token is in the logs:\n{stderr}"
        );
        assert!(
            !raw_traffic.contains(secret),
            "a token is in the traffic log"
        );
    }
    prepared.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_serve_exits_0_on_sigint() {
    let prepared = Builder::new().prepare().await;
    let mut serve = ServeChild::spawn(&prepared.config_path);
    let addr = serve.serving_addr(Duration::from_secs(30)).await;
    let a = raw_tls_exchange(
        addr,
        &prepared.ca_pem,
        &raw_request(
            "GET",
            "/SCIM/v2/Groups",
            "localhost",
            &[("Authorization", &bearer(OKTA))],
        ),
    )
    .await
    .expect("request");
    assert_eq!(a.status, StatusCode::OK);
    serve.signal("INT");
    let status = serve
        .exit_status(Duration::from_secs(20))
        .await
        .unwrap_or_else(|| panic!("serve still running 20 s after SIGINT:\n{}", serve.stderr()));
    assert_eq!(status.code(), Some(0), "{}", serve.stderr());
    prepared.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_serve_cuts_requests_still_running_after_the_grace_and_exits_0() {
    let prepared = Builder::new()
        .limit("shutdown_grace", "\"1s\"")
        .prepare()
        .await;
    let mut serve = ServeChild::spawn(&prepared.config_path);
    let addr = serve.serving_addr(Duration::from_secs(30)).await;
    let up = prepared.upstreams[0].clone();
    up.push_override(Override {
        status: StatusCode::OK,
        headers: vec![],
        body: Bytes::from_static(b"{}"),
        delay: Duration::from_secs(30),
    });
    let ca = prepared.ca_pem.clone();
    let stuck = tokio::spawn(async move {
        raw_tls_exchange(
            addr,
            &ca,
            &raw_request(
                "GET",
                "/SCIM/v2/Users",
                "localhost",
                &[("Authorization", &bearer(OKTA))],
            ),
        )
        .await
    });
    let deadline = Instant::now() + Duration::from_secs(15);
    while up.requests().is_empty() {
        assert!(
            Instant::now() < deadline,
            "the request never reached the upstream"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let signalled = Instant::now();
    serve.signal("TERM");
    let status = serve
        .exit_status(Duration::from_secs(15))
        .await
        .unwrap_or_else(|| panic!("serve did not bound the drain:\n{}", serve.stderr()));
    assert_eq!(status.code(), Some(0), "{}", serve.stderr());
    assert!(signalled.elapsed() < Duration::from_secs(15));
    let r = bounded("cut request", stuck).await.unwrap();
    assert!(
        r.as_ref().map_or(true, |a| a.status != StatusCode::OK),
        "the request cannot have completed: {r:?}"
    );
    prepared.shutdown().await;
}

/// The config mistakes admins make, as the real binary reports them: a misspelt key or table gets
/// a suggestion; a TOML syntax error keeps its line, column and caret excerpt on lines of their own.
#[test]
fn check_suggests_misspelt_keys_and_shows_toml_syntax_errors_readably() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("typo.toml");
    std::fs::write(
        &path,
        "[listn]\naddr = \"127.0.0.1:0\"\n[[routes]]\nname = \"a\"\ntoken_fiel = \"t\"\n",
    )
    .unwrap();
    let out = run_cli(
        &["check", "--config", path.to_str().unwrap()],
        b"",
        &[],
        Duration::from_secs(30),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("listn: unknown key; did you mean listen?"),
        "{stderr}"
    );
    assert!(
        stderr.contains("routes[0].token_fiel: unknown key; did you mean token_file?"),
        "{stderr}"
    );
    std::fs::write(&path, "[listen]\naddr = \n").unwrap();
    let out = run_cli(
        &["check", "--config", path.to_str().unwrap()],
        b"",
        &[],
        Duration::from_secs(30),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert!(
        lines[0].ends_with("TOML parse error at line 2, column 8"),
        "{stderr}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.trim_start().starts_with("2 | addr =")),
        "{stderr}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.trim() == "|        ^" || l.ends_with('^')),
        "{stderr}"
    );
}

/// Certificate and key swapped: each key says what its file holds and what it wants instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_says_when_listen_cert_and_key_are_swapped() {
    let mut prepared = Builder::new().prepare().await;
    prepared.edit_config(
        "cert = \"proxy.crt\"\nkey = \"proxy.key\"",
        "cert = \"proxy.key\"\nkey = \"proxy.crt\"",
    );
    let config = prepared.config_path.to_str().unwrap();
    let out = cli_off_runtime(&["check", "--config", config]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("listen.cert: ")
            && stderr
                .contains("this file holds a private key; this key wants the certificate chain"),
        "{stderr}"
    );
    assert!(
        stderr.contains("listen.key: ")
            && stderr.contains("this file holds a certificate; this key wants the private key"),
        "{stderr}"
    );
    prepared.shutdown().await;
}

/// Plain `check` warns (exit 0) about an upstream URL that does not end in /api/v2/scim.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_warns_of_an_upstream_path_other_than_api_v2_scim() {
    let prepared = Builder::new()
        .route(|r| r.target(Target::Url("https://127.0.0.1:1/SCIM/v2".into())))
        .prepare()
        .await;
    let config = prepared.config_path.to_str().unwrap();
    let out = cli_off_runtime(&["check", "--config", config]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("warning:")
            && stderr.contains("routes[0].upstream")
            && stderr.contains("does not end in /api/v2/scim"),
        "{stderr}"
    );
    prepared.shutdown().await;
}

/// `serve` on a listen.addr already in use names the key and the file, as admin.addr does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_on_a_listen_addr_in_use_names_the_key() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let mut prepared = Builder::new().prepare().await;
    prepared.edit_config(
        "[listen]\naddr = \"127.0.0.1:0\"",
        &format!("[listen]\naddr = \"127.0.0.1:{port}\""),
    );
    let config = prepared.config_path.to_str().unwrap();
    let out = cli_off_runtime(&["serve", "--config", config]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "scim-proxy.toml: listen.addr: cannot listen on 127.0.0.1:{port}"
        )) && stderr.to_lowercase().contains("in use"),
        "{stderr}"
    );
    drop(busy);
    prepared.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_demo_once_runs_the_flow_and_exits_0() {
    let tmp = tempfile::tempdir().unwrap();
    let tmp_path = tmp.path().to_str().unwrap().to_string();
    let out = tokio::task::spawn_blocking(move || {
        run_cli(
            &["demo", "--listen", "127.0.0.1:0", "--once"],
            b"",
            &[("TMPDIR", &tmp_path)],
            Duration::from_secs(120),
        )
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("The flow passed"), "{stdout}");
    assert!(!stdout.contains("FAILED"), "{stdout}");
    assert!(
        stdout.contains("upstream saw nothing"),
        "the refused step should show nothing forwarded:\n{stdout}"
    );
    // The upstream leg leaves from the fixed egress the demo config sets, not from 127.0.0.1.
    assert!(stdout.contains("bind_ip"), "{stdout}");
    let forwarded: Vec<&str> = stdout
        .lines()
        .filter(|l| l.contains("upstream saw ") && !l.contains("upstream saw nothing"))
        .collect();
    assert!(!forwarded.is_empty(), "{stdout}");
    for line in forwarded {
        assert!(line.contains(" from 127.0.0.2 "), "{line}");
    }
}

#[test]
fn cli_check_refuses_a_plain_listener_route_without_hosts_or_public_url() {
    let dir = tempfile::tempdir().unwrap();
    write_private(dir.path(), "acme.token", "v2-token\n");
    let config = |route_extra: &str| {
        format!(
            "[listen]\naddr = \"127.0.0.1:0\"\n\n[[routes]]\nname = \"acme\"\nupstream = \"https://acme.goskope.com/api/v2/scim\"\ntoken_file = \"acme.token\"\n{route_extra}\n[[routes.clients]]\nname = \"okta\"\ntoken_sha256 = \"{}\"\n",
            sha256_hex(OKTA.as_bytes())
        )
    };
    let path = write_file(dir.path(), "plain.toml", &config(""));
    let p = path.to_str().unwrap();
    let out = run_cli(&["check", "--config", p], b"", &[], Duration::from_secs(60));
    assert!(!out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.lines().any(|l| l.starts_with(&format!(
            "{p}: routes[0].public_url: required on a plain listener"
        )) && l.contains("routes[0].hosts")),
        "{stderr}"
    );
    for fixed in [
        "public_url = \"https://scim.example.com/SCIM/v2\"",
        "hosts = [\"scim.example.com\"]",
    ] {
        write_file(dir.path(), "plain.toml", &config(fixed));
        let out = run_cli(&["check", "--config", p], b"", &[], Duration::from_secs(60));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("public_url"), "{fixed}: {stderr}");
    }
}

/// Every flag of every subcommand says in `--help` what it does.
#[test]
fn every_subcommand_flag_has_a_help_line() {
    let top = run_cli(&["--help"], b"", &[], Duration::from_secs(30));
    let top = String::from_utf8_lossy(&top.stdout).into_owned();
    let commands: Vec<String> = top
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .filter(|c| c != "help")
        .collect();
    for expected in [
        "serve",
        "check",
        "hash-token",
        "report",
        "test-upstream",
        "dev-certs",
        "demo",
    ] {
        assert!(commands.iter().any(|c| c == expected), "{expected}: {top}");
    }
    for command in &commands {
        let out = run_cli(&[command, "--help"], b"", &[], Duration::from_secs(30));
        assert!(out.status.success(), "{command} --help");
        let help = String::from_utf8_lossy(&out.stdout).into_owned();
        let mut flags = 0;
        for line in help.lines() {
            let t = line.trim_start();
            if !(t.starts_with('-') || t.starts_with('[') || t.starts_with('<')) {
                continue;
            }
            flags += 1;
            // `  --flag <VALUE>  What it does`: the description follows two spaces or more.
            let (spec, text) = t.split_once("  ").unwrap_or((t, ""));
            assert!(
                !text.trim().is_empty(),
                "{command}: `{spec}` has no help line:\n{help}"
            );
        }
        assert!(flags >= 2, "{command}: no options listed:\n{help}");
    }
}

/// The start-up log says, in plain words, what is served where and where the traffic log goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_start_up_log_names_listeners_routes_and_the_traffic_log_plainly() {
    let prepared = Builder::new().admin().prepare().await;
    let mut serve = ServeChild::spawn(&prepared.config_path);
    let addr = serve.serving_addr(Duration::from_secs(30)).await;
    let messages: Vec<String> = serve
        .stderr()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| {
            let fields = v.get("fields").unwrap_or(&v);
            let msg = fields.get("message")?.as_str()?.to_string();
            let admin = fields.get("admin").and_then(|a| a.as_str()).unwrap_or("");
            Some(format!("{msg} {admin}"))
        })
        .collect();
    let all = messages.join("\n");
    assert!(!all.contains("Some("), "{all}");
    assert!(!all.contains("None"), "{all}");
    assert!(
        all.contains(&format!("listen   {addr} https")),
        "listener: {all}"
    );
    assert!(all.contains("admin    http://127.0.0.1:"), "admin: {all}");
    assert!(all.contains("route    main: "), "route: {all}");
    assert!(all.contains("IdPs: okta, entra"), "clients: {all}");
    let traffic = prepared.dir.path().join("traffic.log");
    assert!(
        all.contains(&format!("traffic  log to {}", traffic.display())),
        "traffic log location: {all}"
    );
    serve.signal("TERM");
    assert!(serve.exit_status(Duration::from_secs(30)).await.is_some());
    prepared.shutdown().await;
}

/// `test-upstream` logs each request with the address it came from, never the token: the lab's
/// way to see the fixed egress at work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_upstream_logs_each_request_with_its_source_address() {
    use std::io::BufRead;
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().unwrap();
    let token = "lab-v2-token-7f3a";
    let token_file = write_private(dir.path(), "v2.token", &format!("  {token}\n"));
    let mut child = ChildGuard(Some(
        Command::new(bin())
            .args(["test-upstream", "--listen", "127.0.0.1:0", "--token-file"])
            .arg(&token_file)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn test-upstream"),
    ));
    let stdout = child.child().stdout.take().expect("stdout");
    let (lines_tx, lines_rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let next_line = |what: &str| {
        lines_rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("no {what} line from test-upstream"))
    };
    let banner = next_line("serving");
    let addr: std::net::SocketAddr = banner
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no address in {banner:?}"));

    for (source, bearer, status) in [("127.0.0.3", token, 200), ("127.0.0.4", "wrong", 401)] {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
        let mut tcp = socket.connect(addr).await.expect("connect");
        let request = format!(
            "GET /api/v2/scim/Users?count=1 HTTP/1.1\r\nHost: lab\r\nAuthorization: Bearer {bearer}\r\nConnection: close\r\n\r\n"
        );
        tcp.write_all(request.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        bounded("answer", tcp.read_to_end(&mut answer))
            .await
            .unwrap();
        assert!(
            answer.starts_with(format!("HTTP/1.1 {status}").as_bytes()),
            "{}",
            String::from_utf8_lossy(&answer)
        );
        let line = next_line("request");
        assert_eq!(
            line,
            format!("{source} HTTP/1.1 GET /api/v2/scim/Users?count=1 -> {status}")
        );
        assert!(!line.contains(bearer));
    }
}

/// The README's "Try it on one machine" block, run as written (ports moved to free ones): two dev
/// PKIs, `test-upstream` over TLS, `check --live`, `serve`, and the Okta and Entra curl flows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_lab_runs_as_written() {
    use std::os::unix::process::CommandExt;
    use std::process::{Command, Stdio};
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let section = readme
        .split("\n## Try it on one machine\n")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .expect("a 'Try it on one machine' section in the README");
    let mut script = section
        .split("```bash\n")
        .nth(1)
        .and_then(|rest| rest.split("\n```").next())
        .expect("a bash block in the lab section")
        .to_string();
    for fixed in ["8443", "9443", "9090"] {
        let port = unused_port().await.to_string();
        script = script.replace(fixed, &port);
    }
    let dir = tempfile::tempdir().unwrap();
    let bin_dir = std::path::Path::new(bin()).parent().unwrap().to_path_buf();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out_file = dir.path().join("lab.out");
    let child = Command::new("bash")
        .args(["-euo", "pipefail", "-c", &script])
        .current_dir(dir.path())
        .env("PATH", path)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::from(std::fs::File::create(&out_file).unwrap()))
        .stderr(Stdio::from(
            std::fs::File::create(dir.path().join("lab.err")).unwrap(),
        ))
        // Its own process group: the whole lab (upstream, proxy) is stopped with it.
        .process_group(0)
        .spawn()
        .expect("bash");
    let group = child.id();
    let mut guard = ChildGuard(Some(child));
    let status = tokio::task::spawn_blocking(move || {
        let status = guard.wait_for(Duration::from_secs(120));
        let _ = Command::new("kill")
            .args(["-TERM", "--", &format!("-{group}")])
            .status();
        status
    })
    .await
    .unwrap();
    let out = std::fs::read_to_string(&out_file).unwrap_or_default();
    let err = std::fs::read_to_string(dir.path().join("lab.err")).unwrap_or_default();
    let status = status.unwrap_or_else(|| panic!("the lab did not finish:\n{out}\n{err}"));
    assert!(status.success(), "the lab failed ({status}):\n{out}\n{err}");
    for seen in [
        // The upstream saw the v2 path from the fixed egress, for each step of both flows.
        "127.0.0.2 HTTP/2.0 GET /api/v2/scim/Users?startIndex=1&count=1 -> 200",
        "127.0.0.2 HTTP/2.0 POST /api/v2/scim/Users -> 201",
        "127.0.0.2 HTTP/2.0 GET /api/v2/scim/Users?filter=userName+eq+%22grace%40lab.test%22 -> 200",
        "\"userName\":\"grace@lab.test\"",
        "\"active\":false",
        "\"status\":\"401\"",
    ] {
        assert!(out.contains(seen), "{seen:?} missing from:\n{out}\n{err}");
    }
    let patches = out
        .lines()
        .filter(|l| {
            l.starts_with("127.0.0.2 HTTP/2.0 PATCH /api/v2/scim/Users/")
                && (l.ends_with("-> 200") || l.ends_with("-> 204"))
        })
        .count();
    assert_eq!(patches, 2, "{out}");
    // Nothing unauthenticated reached the upstream, and no token was printed.
    assert!(!out.lines().any(|l| l.ends_with("-> 401")), "{out}");
    for token in ["lab-v2-token", "lab-okta-old-token", "lab-entra-old-token"] {
        let shown = out
            .lines()
            .chain(err.lines())
            .filter(|l| l.contains(token) && !l.contains("OKTA=") && !l.contains("echo"))
            .count();
        assert_eq!(shown, 0, "{token} printed:\n{out}\n{err}");
    }
    // check, check --live and report ran and said so.
    assert!(out.contains("OK"), "{out}");
    assert!(out.contains("okta") && out.contains("entra"), "{out}");
}

/// `check` refuses a token_expires in the past (naming the key) and warns inside token_warn_days.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_exits_non_zero_for_a_past_token_expires_and_warns_inside_token_warn_days() {
    let prepared = Builder::new()
        .routes(vec![
            route_expiring("past", SystemTime::now() - DAY),
            route_expiring("soon", SystemTime::now() + 3 * DAY).hosts(&["addon-a.example"]),
        ])
        .prepare()
        .await;
    let config = prepared.config_path.to_str().unwrap().to_string();
    let out = run_cli(&["check", "--config", &config], b"", &[], STEP);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("routes[0].token_expires: in the past"),
        "{stderr}"
    );
    assert!(
        stderr.contains("warning:")
            && stderr.contains("routes[1].token_expires")
            && stderr.contains("in 2 days"),
        "{stderr}"
    );
    prepared.shutdown().await;

    let prepared = Builder::new()
        .routes(vec![route_expiring("soon", SystemTime::now() + 3 * DAY)])
        .prepare()
        .await;
    let config = prepared.config_path.to_str().unwrap().to_string();
    let out = run_cli(&["check", "--config", &config], b"", &[], STEP);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("routes[0].token_expires"), "{stderr}");
    prepared.shutdown().await;
}
