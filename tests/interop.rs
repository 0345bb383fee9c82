//! Interop suite with peers nobody here wrote (issue 3).
//!
//! Upstream: scim2-server (PyPI) mounted at `/api/v2/scim` behind TLS with a throwaway CA, demanding
//! the v2 token (`tests/interop/upstream.py`). Client: scim2-cli's `scim2` command (PyPI), whose
//! `scim2 test` runs scim2-tester, an RFC 7644 compliance checker. Both come from `.venv`, which
//! `tests/run.sh` creates from the pins in `tests/interop/requirements.txt`; without it every test
//! here fails (never skips) and says so.
//!
//! The proxy runs in-process from a config file written the way an operator writes one. Every child
//! process is killed when its guard drops (panics included), every wait is bounded, and everything
//! listens on loopback only. Each test leaves its config, reports and logs in
//! `target/tmp/interop/<test>/` for a look after a failure.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write as _};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::Full;
use scim_proxy::lab::client::{Answer, ScimClient};
use scim_proxy::lab::devcerts::{self, DevPki};
use scim_proxy::{Running, state};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// The old bearer token the IdP keeps sending to `/SCIM/v2` (the proxy only knows its SHA-256).
const OLD_TOKEN: &str = "okta-old-scim-token-interop-4c1d";
/// The path prefix of REST API v2 SCIM on the upstream.
const UPSTREAM_PREFIX: &str = "/api/v2/scim";
/// The legacy path IdPs still address.
const LEGACY_PREFIX: &str = "/SCIM/v2";

/// Bounds on every wait.
const UPSTREAM_START: Duration = Duration::from_secs(60);
const SCIM2_TEST_TIMEOUT: Duration = Duration::from_secs(300);
const SCIM2_COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
const PROXY_STOP: Duration = Duration::from_secs(15);

/// scim2-tester's result statuses, as `scim2 test` prints them (`scim2_tester.Status`).
const STATUSES: [&str; 7] = [
    "SUCCESS",
    "COMPLIANT",
    "ACCEPTABLE",
    "DEVIATION",
    "ERROR",
    "CRITICAL",
    "SKIPPED",
];
/// The one status `scim2 test` counts as passed.
const PASSED: &str = "SUCCESS";
/// At least this many checks pass directly, or the pins in requirements.txt drifted.
const MIN_DIRECT_PASSES: usize = 100;

// ------------------------------------------------------------------------------------ the tests

/// Every check scim2-tester passes against scim2-server directly also passes through the proxy.
#[test]
fn scim2_test_passes_the_same_checks_through_the_proxy() {
    let rig = Rig::start("scim2_test");
    let direct = rig.scim2_direct(&["test", "--verbose"], None, SCIM2_TEST_TIMEOUT);
    let before = rig.upstream_requests();
    let via_proxy = rig.scim2_proxy(&["test", "--verbose"], None, SCIM2_TEST_TIMEOUT);
    let forwarded = rig.upstream_requests() - before;
    std::fs::write(rig.dir.join("report-direct.txt"), &direct.stdout).unwrap();
    std::fs::write(rig.dir.join("report-via-proxy.txt"), &via_proxy.stdout).unwrap();

    let direct_checks = parse_report(&direct.stdout);
    let proxy_checks = parse_report(&via_proxy.stdout);
    assert!(
        !direct_checks.is_empty(),
        "`scim2 test` reported no check directly against scim2-server ({}); is the upstream up?\n{}",
        direct.status,
        direct.transcript()
    );
    assert!(
        !proxy_checks.is_empty(),
        "`scim2 test` reported no check through the proxy ({})\n{}\n{}",
        via_proxy.status,
        via_proxy.transcript(),
        rig.logs()
    );

    let passed = |checks: &[Check]| checks.iter().filter(|c| c.status == PASSED).count();
    let summary = format!(
        "scim2 test: {}/{} direct, {}/{} via proxy ({forwarded} requests forwarded to scim2-server)",
        passed(&direct_checks),
        direct_checks.len(),
        passed(&proxy_checks),
        proxy_checks.len()
    );
    // Straight to stderr, past the test harness's capture: the counts show in every run.
    let _ = writeln!(std::io::stderr(), "interop: {summary}");

    // Parity with a server that fails scim2-tester would prove little.
    assert!(
        passed(&direct_checks) >= MIN_DIRECT_PASSES,
        "{summary}: scim2-server itself passes fewer than {MIN_DIRECT_PASSES} checks directly \
         (scim2-server 0.8.3 with scim2-tester 0.5.2 passes 135/135); see {}/report-direct.txt",
        rig.dir.display()
    );
    let diff = parity_diff(&direct_checks, &proxy_checks);
    if !diff.is_empty() {
        panic!(
            "{summary}\n{} check(s) pass directly against scim2-server but not through the proxy:\n{diff}\n\
             full reports: {}/report-direct.txt and report-via-proxy.txt\n\
             `scim2 test` via proxy: {}; its stderr:\n{}\n{}",
            diff.lines().filter(|l| l.starts_with("- ")).count(),
            rig.dir.display(),
            via_proxy.status,
            via_proxy.stderr.trim_end(),
            rig.logs()
        );
    }
    assert!(
        forwarded >= proxy_checks.len(),
        "{summary}: the proxied run should have reached the upstream at least once per check\n{}",
        rig.logs()
    );
}

/// scim2-cli's resource commands (create, query, replace, modify, search, bulk, delete) work through
/// the proxy with the old token, end to end.
#[test]
fn scim2_cli_commands_work_through_the_proxy() {
    let rig = Rig::start("scim2_cli");
    let user_name = "ada.lovelace@example.com";

    // create
    let created = rig
        .scim2_proxy(
            &["create", "user", "--no-indent"],
            Some(&json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                "userName": user_name,
                "displayName": "Ada Lovelace",
                "name": {"givenName": "Ada", "familyName": "Lovelace"},
                "emails": [{"value": user_name, "type": "work", "primary": true}]
            })),
            SCIM2_COMMAND_TIMEOUT,
        )
        .success_json(&rig, "create user");
    assert_eq!(created["userName"], user_name, "create: {created}");
    let id = created["id"].as_str().expect("create: no id").to_string();
    assert!(
        created["meta"]["location"].is_string(),
        "create: no meta.location: {created}"
    );

    // query one, query with a filter
    let one = rig
        .scim2_proxy(
            &["query", "user", &id, "--no-indent"],
            None,
            SCIM2_COMMAND_TIMEOUT,
        )
        .success_json(&rig, "query user <id>");
    assert_eq!(one["id"], id.as_str(), "query: {one}");
    assert_eq!(one["displayName"], "Ada Lovelace", "query: {one}");
    let filter = format!("userName eq \"{user_name}\"");
    let listed = rig
        .scim2_proxy(
            &["query", "user", "--filter", &filter, "--no-indent"],
            None,
            SCIM2_COMMAND_TIMEOUT,
        )
        .success_json(&rig, "query user --filter");
    assert_eq!(listed["totalResults"], 1, "query --filter: {listed}");
    assert_eq!(listed["Resources"][0]["id"], id.as_str(), "{listed}");

    // replace (PUT)
    let replaced = rig
        .scim2_proxy(
            &["replace", "user", "--no-indent"],
            Some(&json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                "id": id,
                "userName": user_name,
                "displayName": "Augusta Ada King",
                "title": "Analyst"
            })),
            SCIM2_COMMAND_TIMEOUT,
        )
        .success_json(&rig, "replace user");
    assert_eq!(replaced["id"], id.as_str(), "replace: {replaced}");
    assert_eq!(replaced["displayName"], "Augusta Ada King", "{replaced}");
    assert_eq!(replaced["title"], "Analyst", "replace: {replaced}");
    assert!(
        replaced.get("emails").is_none(),
        "replace keeps an attribute it was not given: {replaced}"
    );

    // modify (PATCH), then read it back
    rig.scim2_proxy(
        &[
            "modify",
            "user",
            &id,
            "replace",
            "displayName",
            "Countess of Lovelace",
            "add",
            "nickName",
            "Ada",
        ],
        None,
        SCIM2_COMMAND_TIMEOUT,
    )
    .success(&rig, "modify user");
    let modified = rig
        .scim2_proxy(
            &["query", "user", &id, "--no-indent"],
            None,
            SCIM2_COMMAND_TIMEOUT,
        )
        .success_json(&rig, "query user after modify");
    assert_eq!(
        modified["displayName"], "Countess of Lovelace",
        "{modified}"
    );
    assert_eq!(modified["nickName"], "Ada", "modify: {modified}");

    // a group whose member points at the user ($ref), added by PATCH
    let group = rig
        .scim2_proxy(
            &["create", "group", "--no-indent"],
            Some(&json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                "displayName": "Analytical Engine"
            })),
            SCIM2_COMMAND_TIMEOUT,
        )
        .success_json(&rig, "create group");
    let group_id = group["id"]
        .as_str()
        .expect("create group: no id")
        .to_string();
    let member = json!([{"value": id, "type": "User"}]).to_string();
    rig.scim2_proxy(
        &["modify", "group", &group_id, "add", "members", &member],
        None,
        SCIM2_COMMAND_TIMEOUT,
    )
    .success(&rig, "modify group add members");
    let group = rig
        .scim2_proxy(
            &["query", "group", &group_id, "--no-indent"],
            None,
            SCIM2_COMMAND_TIMEOUT,
        )
        .success_json(&rig, "query group");
    assert_eq!(group["members"][0]["value"], id.as_str(), "{group}");
    if let Some(r) = group["members"][0]["$ref"].as_str() {
        println!("note: members[0].$ref = {r}");
    }

    // search (POST /.search)
    let found = rig
        .scim2_proxy(
            &[
                "search",
                "user",
                "--filter",
                "displayName eq \"Countess of Lovelace\"",
                "--no-indent",
            ],
            None,
            SCIM2_COMMAND_TIMEOUT,
        )
        .success_json(&rig, "search user");
    assert_eq!(found["totalResults"], 1, "search: {found}");
    assert_eq!(found["Resources"][0]["id"], id.as_str(), "search: {found}");
    let none = rig
        .scim2_proxy(
            &[
                "search",
                "user",
                "--filter",
                "userName eq \"nobody\"",
                "--no-indent",
            ],
            None,
            SCIM2_COMMAND_TIMEOUT,
        )
        .success_json(&rig, "search user (no match)");
    assert_eq!(none["totalResults"], 0, "search: {none}");

    // bulk: a user and a group that names it by bulkId
    let bulk = rig
        .scim2_proxy(
            &["bulk", "--no-indent"],
            Some(&json!({
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"],
                "Operations": [
                    {"method": "POST", "path": "/Users", "bulkId": "u1", "data": {
                        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                        "userName": "charles.babbage@example.com"}},
                    {"method": "POST", "path": "/Groups", "bulkId": "g1", "data": {
                        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                        "displayName": "Difference Engine",
                        "members": [{"value": "bulkId:u1"}]}}
                ]
            })),
            SCIM2_COMMAND_TIMEOUT,
        )
        .success_json(&rig, "bulk");
    let ops = bulk["Operations"].as_array().expect("bulk: no Operations");
    assert_eq!(ops.len(), 2, "bulk: {bulk}");
    assert!(ops.iter().all(|op| op["status"] == "201"), "bulk: {bulk}");
    let id_of = |op: &Value| {
        let location = op["location"].as_str().expect("bulk: no location");
        location.rsplit('/').next().unwrap().to_string()
    };
    let (bulk_user, bulk_group) = (id_of(&ops[0]), id_of(&ops[1]));
    let group = rig
        .scim2_proxy(
            &["query", "group", &bulk_group, "--no-indent"],
            None,
            SCIM2_COMMAND_TIMEOUT,
        )
        .success_json(&rig, "query the bulk group");
    assert_eq!(group["members"][0]["value"], bulk_user.as_str(), "{group}");
    for (kind, id) in [("group", &bulk_group), ("user", &bulk_user)] {
        rig.scim2_proxy(&["delete", kind, id], None, SCIM2_COMMAND_TIMEOUT)
            .success(&rig, "delete what bulk made");
    }

    // delete, then the user is gone
    rig.scim2_proxy(&["delete", "user", &id], None, SCIM2_COMMAND_TIMEOUT)
        .success(&rig, "delete user");
    let gone = rig.scim2_proxy(&["query", "user", &id], None, SCIM2_COMMAND_TIMEOUT);
    assert!(
        !gone.status.success() && gone.stdout.contains("\"404\""),
        "query after delete: expected a 404 SCIM error\n{}",
        gone.transcript()
    );
    rig.scim2_proxy(&["delete", "group", &group_id], None, SCIM2_COMMAND_TIMEOUT)
        .success(&rig, "delete group");

    // only the old token opens the proxy: the v2 token itself, or any other, is refused there and
    // never reaches the upstream
    for (what, token) in [
        ("the v2 token", rig.v2_token.as_str()),
        ("a wrong token", "nope"),
    ] {
        let before = rig.upstream_requests();
        let refused = rig.scim2(
            &rig.proxy_url(),
            token,
            &rig.proxy_ca,
            &["query", "user"],
            None,
            SCIM2_COMMAND_TIMEOUT,
        );
        assert!(
            !refused.status.success() && refused.stderr.contains("Could not discover"),
            "{what} at the proxy: expected the discovery to be refused\n{}",
            refused.transcript()
        );
        assert_eq!(
            rig.upstream_requests(),
            before,
            "{what} at the proxy: a request was forwarded\n{}",
            rig.logs()
        );
    }
}

/// ETag preconditions survive the proxy: `If-None-Match` on GET gives 304, a stale `If-Match` on
/// PUT, PATCH and DELETE gives 412, and the current one lets the write through. Over HTTP/1.1 and
/// HTTP/2 to the proxy (the upstream speaks HTTP/1.x).
#[test]
fn etag_preconditions_round_trip_through_the_proxy() {
    let rig = Rig::start("etag");
    for http2 in [false, true] {
        etag_round_trip(&rig, http2);
    }
}

fn etag_round_trip(rig: &Rig, http2: bool) {
    let rt = &rig.rt;
    let client = ScimClient::new(
        &format!("https://localhost:{}", rig.proxy_port()),
        devcerts::client_config(&rig.proxy_ca_pem, &[]).unwrap(),
        http2,
    );
    let want_version = if http2 {
        http::Version::HTTP_2
    } else {
        http::Version::HTTP_11
    };
    let send = |method: Method, path: &str, headers: &[(&str, &str)], body: Option<Value>| {
        let mut req = Request::builder()
            .method(method.clone())
            .uri(format!("https://localhost:{}{path}", rig.proxy_port()))
            .header("authorization", format!("Bearer {OLD_TOKEN}"))
            .header("accept", "application/scim+json");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let body = match &body {
            Some(v) => {
                req = req.header("content-type", "application/scim+json");
                Bytes::from(v.to_string())
            }
            None => Bytes::new(),
        };
        let answer = rt
            .block_on(client.request(req.body(Full::new(body)).unwrap()))
            .unwrap_or_else(|e| panic!("{method} {path}: {e}\n{}", rig.logs()));
        println!(
            "{:?} {method} {path} {headers:?} -> {} etag={:?}",
            answer.version,
            answer.status,
            answer.header("etag")
        );
        assert_eq!(answer.version, want_version, "{method} {path}");
        answer
    };
    let expect = |what: &str, a: &Answer, want: StatusCode| {
        assert_eq!(
            a.status,
            want,
            "{what}: body {}\n{}",
            String::from_utf8_lossy(&a.body),
            rig.logs()
        );
    };
    let users = format!("{LEGACY_PREFIX}/Users");
    let user_name = format!(
        "grace.hopper.{}@example.com",
        if http2 { "h2" } else { "h1" }
    );

    let created = send(
        Method::POST,
        &users,
        &[],
        Some(json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": user_name,
            "displayName": "Grace Hopper"
        })),
    );
    expect("POST", &created, StatusCode::CREATED);
    let id = created.json()["id"].as_str().expect("no id").to_string();
    let user = format!("{users}/{id}");
    // Headers are rewritten already (bodies not yet): Location points back at the proxy.
    assert_eq!(
        created.header("location"),
        Some(format!("https://localhost:{}{user}", rig.proxy_port()).as_str()),
        "Location of the created user"
    );
    let v1 = etag_of(&created);

    let read = send(Method::GET, &user, &[], None);
    expect("GET", &read, StatusCode::OK);
    assert_eq!(etag_of(&read), v1, "GET gives another version than POST");

    let not_modified = send(Method::GET, &user, &[("if-none-match", &v1)], None);
    expect(
        "GET If-None-Match: current",
        &not_modified,
        StatusCode::NOT_MODIFIED,
    );
    assert!(
        not_modified.body.is_empty(),
        "a 304 has no body: {:?}",
        not_modified.body
    );
    let changed = send(
        Method::GET,
        &user,
        &[("if-none-match", "W/\"stale\"")],
        None,
    );
    expect("GET If-None-Match: other", &changed, StatusCode::OK);

    let stale = "W/\"0-stale\"";
    let put_body = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "id": id,
        "userName": user_name,
        "displayName": "Rear Admiral Grace Hopper"
    });
    let patch_body = json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "replace", "path": "title", "value": "Commodore"}]
    });
    let a = send(
        Method::PUT,
        &user,
        &[("if-match", stale)],
        Some(put_body.clone()),
    );
    expect("PUT If-Match: stale", &a, StatusCode::PRECONDITION_FAILED);
    let a = send(
        Method::PATCH,
        &user,
        &[("if-match", stale)],
        Some(patch_body.clone()),
    );
    expect("PATCH If-Match: stale", &a, StatusCode::PRECONDITION_FAILED);
    let a = send(Method::DELETE, &user, &[("if-match", stale)], None);
    expect(
        "DELETE If-Match: stale",
        &a,
        StatusCode::PRECONDITION_FAILED,
    );
    let unchanged = send(Method::GET, &user, &[], None);
    assert_eq!(etag_of(&unchanged), v1, "a refused write changed the user");

    let put = send(Method::PUT, &user, &[("if-match", &v1)], Some(put_body));
    expect("PUT If-Match: current", &put, StatusCode::OK);
    let v2 = etag_of(&put);
    assert_ne!(v1, v2, "PUT did not change the version");
    let a = send(
        Method::PATCH,
        &user,
        &[("if-match", &v1)],
        Some(patch_body.clone()),
    );
    expect(
        "PATCH If-Match: the version before PUT",
        &a,
        StatusCode::PRECONDITION_FAILED,
    );
    let patched = send(Method::PATCH, &user, &[("if-match", &v2)], Some(patch_body));
    assert!(
        matches!(patched.status, StatusCode::OK | StatusCode::NO_CONTENT),
        "PATCH If-Match: current: {} {}",
        patched.status,
        String::from_utf8_lossy(&patched.body)
    );
    let read = send(Method::GET, &user, &[], None);
    assert_eq!(read.json()["title"], "Commodore", "PATCH not applied");
    let v3 = etag_of(&read);
    let a = send(Method::GET, &user, &[("if-none-match", &v2)], None);
    expect("GET If-None-Match: older", &a, StatusCode::OK);
    let a = send(Method::GET, &user, &[("if-none-match", &v3)], None);
    expect("GET If-None-Match: newest", &a, StatusCode::NOT_MODIFIED);

    let deleted = send(Method::DELETE, &user, &[("if-match", &v3)], None);
    expect("DELETE If-Match: current", &deleted, StatusCode::NO_CONTENT);
    let gone = send(Method::GET, &user, &[], None);
    expect("GET after DELETE", &gone, StatusCode::NOT_FOUND);
}

/// The version of a resource: its `ETag` header, which must agree with `meta.version` when both are there.
fn etag_of(a: &Answer) -> String {
    let body = a.json();
    let version = body["meta"]["version"].as_str().map(str::to_string);
    match (a.header("etag"), version) {
        (Some(h), Some(v)) => {
            assert_eq!(h, v, "ETag header and meta.version disagree");
            v
        }
        (Some(h), None) => h.to_string(),
        (None, Some(v)) => v,
        (None, None) => panic!(
            "{} without ETag or meta.version: {}",
            a.status,
            String::from_utf8_lossy(&a.body)
        ),
    }
}

/// Issue 3: every URL the IdP is given points back at the address it used. `meta.location` (and a
/// Bulk operation's `location`) is under the proxy's legacy base, and no string anywhere in the
/// answer names the upstream.
fn assert_urls_point_at_proxy(what: &str, answer: &Value, rig: &Rig) {
    let proxy = rig.proxy_url();
    let upstream = format!("https://{}", rig.upstream_addr);
    let mut strings = Vec::new();
    collect_strings("", answer, &mut strings);
    for (path, s) in strings {
        assert!(
            !s.contains(&upstream),
            "{what}: {path} = {s:?} names the upstream ({upstream}); it must be under {proxy}\n{answer}"
        );
        if path.ends_with(".meta.location") || path.ends_with("].location") {
            assert!(
                s.starts_with(&format!("{proxy}/")),
                "{what}: {path} = {s:?} is not under the proxy's base {proxy}\n{answer}"
            );
        }
    }
}

/// Every string in a JSON value, with its path (`.Resources[0].meta.location`).
fn collect_strings(path: &str, v: &Value, out: &mut Vec<(String, String)>) {
    match v {
        Value::String(s) => out.push((path.to_string(), s.clone())),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                collect_strings(&format!("{path}[{i}]"), item, out);
            }
        }
        Value::Object(map) => {
            for (k, item) in map {
                collect_strings(&format!("{path}.{k}"), item, out);
            }
        }
        _ => {}
    }
}

// ------------------------------------------------------------------------------- report parsing

/// One result line of `scim2 test`, with what follows it (reason, and data with `--verbose`).
#[derive(Debug, Clone)]
struct Check {
    title: String,
    /// 1 for the first result with this title, 2 for the next, ...: scim2-tester runs its checks
    /// in a fixed order and several share a title (one per attribute, method or resource type).
    ordinal: usize,
    status: String,
    detail: String,
}

impl Check {
    fn key(&self) -> (String, usize) {
        (self.title.clone(), self.ordinal)
    }

    fn excerpt(&self, max: usize) -> String {
        let one_line = self.detail.split_whitespace().collect::<Vec<_>>().join(" ");
        if one_line.chars().count() > max {
            let cut: String = one_line.chars().take(max).collect();
            format!("{cut}…")
        } else {
            one_line
        }
    }
}

/// Parses `scim2 test` output: `STATUS title` lines, each followed by indented detail lines.
fn parse_report(text: &str) -> Vec<Check> {
    let mut checks: Vec<Check> = Vec::new();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for raw in text.lines() {
        let line = strip_ansi(raw);
        let head = STATUSES.iter().find_map(|s| {
            line.strip_prefix(s)
                .and_then(|rest| rest.strip_prefix(' '))
                .map(|title| (*s, title.trim()))
        });
        match head {
            Some((status, title)) => {
                let n = seen.entry(title.to_string()).or_default();
                *n += 1;
                checks.push(Check {
                    title: title.to_string(),
                    ordinal: *n,
                    status: status.to_string(),
                    detail: String::new(),
                });
            }
            None => {
                if let Some(c) = checks.last_mut() {
                    if !c.detail.is_empty() {
                        c.detail.push('\n');
                    }
                    c.detail.push_str(line.trim());
                }
            }
        }
    }
    checks
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Lines `- title #n: ...` for every check passed directly and not through the proxy, then every
/// result through the proxy that is not a pass, with what scim2-tester said. Empty when at parity.
fn parity_diff(direct: &[Check], via_proxy: &[Check]) -> String {
    let proxy: BTreeMap<(String, usize), &Check> = via_proxy.iter().map(|c| (c.key(), c)).collect();
    let count = |checks: &[Check], title: &str| checks.iter().filter(|c| c.title == title).count();
    let mut out = String::new();
    for d in direct.iter().filter(|c| c.status == PASSED) {
        match proxy.get(&d.key()) {
            Some(p) if p.status == PASSED => {}
            Some(p) => {
                let _ = writeln!(
                    out,
                    "- {} #{}: direct {}, via proxy {}\n    direct:    {}\n    via proxy: {}",
                    d.title,
                    d.ordinal,
                    d.status,
                    p.status,
                    d.excerpt(160),
                    p.excerpt(1200)
                );
            }
            None => {
                let _ = writeln!(
                    out,
                    "- {} #{}: direct {}, via proxy no counterpart ({} such results via proxy, {} direct)\n    direct:    {}",
                    d.title,
                    d.ordinal,
                    d.status,
                    count(via_proxy, &d.title),
                    count(direct, &d.title),
                    d.excerpt(160)
                );
            }
        }
    }
    if out.is_empty() {
        return out;
    }
    out.push_str("every result through the proxy that is not a pass:\n");
    for p in via_proxy.iter().filter(|c| c.status != PASSED) {
        let _ = writeln!(
            out,
            "  {} {} #{}: {}",
            p.status,
            p.title,
            p.ordinal,
            p.excerpt(600)
        );
    }
    out
}

// ------------------------------------------------------------------------------- the test rig

/// The interop venv's tools; a missing venv fails the test with what to run.
struct Venv {
    python: PathBuf,
    scim2: PathBuf,
}

fn venv() -> Venv {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let bin = root.join(".venv").join("bin");
    let venv = Venv {
        python: bin.join("python"),
        scim2: bin.join("scim2"),
    };
    for tool in [&venv.python, &venv.scim2] {
        assert!(
            tool.is_file(),
            "the interop peers are not installed: {} is missing.\n\
             Run tests/run.sh (it creates .venv from tests/interop/requirements.txt), or by hand:\n  \
             python3 -m venv .venv && .venv/bin/pip install -r tests/interop/requirements.txt",
            tool.display()
        );
    }
    venv
}

/// A child process killed (and reaped) when dropped, panics included.
struct Proc {
    name: &'static str,
    child: Child,
    /// Held open: the upstream exits by itself when it closes, should the test process die without
    /// unwinding (SIGKILL, abort) and so without running this guard.
    _stdin: Option<ChildStdin>,
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        // SIGKILL cannot be ignored, so this wait ends promptly.
        if let Ok(status) = self.child.wait()
            && !status.success()
            && std::thread::panicking()
        {
            eprintln!("{} ({}) stopped: {status}", self.name, self.child.id());
        }
    }
}

/// Runs `cmd` with stdout and stderr to files, optional stdin, killed after `timeout`.
fn run_bounded(
    name: &'static str,
    mut cmd: Command,
    stdin: Option<&str>,
    out: &Path,
    timeout: Duration,
) -> Output {
    let err = out.with_extension("stderr");
    cmd.stdout(std::fs::File::create(out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
    // Program and arguments only: the environment carries the bearer token.
    let shown = std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ");
    let mut proc = Proc {
        name,
        child: cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {shown}: {e}")),
        _stdin: None,
    };
    if let Some(input) = stdin {
        let mut pipe = proc.child.stdin.take().unwrap();
        // A child that exits without reading has its say in its exit status and output.
        let _ = pipe.write_all(input.as_bytes());
    }
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = proc.child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= deadline {
            drop(proc);
            panic!(
                "{shown} did not finish within {timeout:?}; output so far:\n{}\n{}",
                std::fs::read_to_string(out).unwrap_or_default(),
                std::fs::read_to_string(&err).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(25));
    };
    Output {
        command: shown,
        status,
        stdout: std::fs::read_to_string(out).unwrap_or_default(),
        stderr: std::fs::read_to_string(&err).unwrap_or_default(),
    }
}

struct Output {
    command: String,
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl Output {
    fn transcript(&self) -> String {
        format!(
            "$ {}\n-> {}\n--- stdout\n{}\n--- stderr\n{}",
            self.command, self.status, self.stdout, self.stderr
        )
    }

    fn success(&self, rig: &Rig, what: &str) -> &Self {
        assert!(
            self.status.success(),
            "{what} through the proxy failed\n{}\n{}",
            self.transcript(),
            rig.logs()
        );
        self
    }

    /// The JSON a successful command printed, with every URL in it checked to point at the proxy.
    fn success_json(&self, rig: &Rig, what: &str) -> Value {
        self.success(rig, what);
        let answer = serde_json::from_str(self.stdout.trim()).unwrap_or_else(|e| {
            panic!(
                "{what}: the output is not JSON ({e})\n{}",
                self.transcript()
            )
        });
        assert_urls_point_at_proxy(what, &answer, rig);
        answer
    }
}

/// scim2-server behind TLS, the proxy in front of it, and the means to run `scim2` at either.
struct Rig {
    dir: PathBuf,
    venv: Venv,
    // Field order is drop order: the proxy stops before its upstream is killed.
    running: Option<Running>,
    rt: tokio::runtime::Runtime,
    _upstream: Proc,
    upstream_addr: SocketAddr,
    upstream_ca: PathBuf,
    proxy_ca: PathBuf,
    proxy_ca_pem: String,
    v2_token: String,
    runs: std::cell::Cell<usize>,
}

impl Rig {
    fn start(name: &str) -> Rig {
        let venv = venv();
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| "scim_proxy=info".into()),
            )
            .with_test_writer()
            .try_init();
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join("interop")
            .join(name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let localhost = IpAddr::V4(Ipv4Addr::LOCALHOST);

        // Two throwaway CAs: the upstream's (the proxy trusts it by egress.ca_file) and the proxy's.
        let upstream_pki = DevPki::new("scim-proxy interop upstream CA").unwrap();
        let upstream_cert = upstream_pki.issue(&["localhost"], &[localhost]).unwrap();
        let proxy_pki = DevPki::new("scim-proxy interop proxy CA").unwrap();
        let proxy_cert = proxy_pki.issue(&["localhost"], &[localhost]).unwrap();
        let write = |file: &str, text: &str| {
            let path = dir.join(file);
            std::fs::write(&path, text).unwrap();
            path
        };
        let upstream_ca = write("upstream-ca.pem", upstream_pki.ca_pem());
        let upstream_crt = write("upstream.crt", &upstream_cert.cert_pem);
        let upstream_key = write("upstream.key", &upstream_cert.key_pem);
        let proxy_ca = write("proxy-ca.pem", proxy_pki.ca_pem());
        write("proxy.crt", &proxy_cert.cert_pem);
        write("proxy.key", &proxy_cert.key_pem);
        let v2_token = format!("interop-v2-{}", uuid::Uuid::new_v4().simple());
        write("v2.token", &v2_token);

        let (upstream, upstream_addr) =
            start_upstream(&venv, &dir, &upstream_crt, &upstream_key, &v2_token);

        let config = format!(
            r#"# Written by tests/interop.rs.
[listen]
addr = "127.0.0.1:0"
cert = "proxy.crt"
key = "proxy.key"

[egress]
ca_file = "upstream-ca.pem"   # the interop upstream's throwaway CA

[log]
traffic = "traffic.jsonl"     # one JSON line per request, bodies included, for a look after a failure
capture_bodies = true
pii = "plain"                 # test data only

[[routes]]
name = "interop"
upstream = "https://127.0.0.1:{port}{UPSTREAM_PREFIX}"
token_file = "v2.token"

[[routes.clients]]
name = "okta"
token_sha256 = "{hash}"   # sha256 of the old token
"#,
            port = upstream_addr.port(),
            hash = hex::encode(Sha256::digest(OLD_TOKEN.as_bytes())),
        );
        let config_path = write("scim-proxy.toml", &config);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let snapshot = state::read_config(&config_path)
            .and_then(|c| state::build(c, None))
            .unwrap_or_else(|p| panic!("the interop config does not load:\n{p}\n{config}"));
        let running = rt
            .block_on(scim_proxy::start(snapshot, None))
            .expect("starting the proxy");
        Rig {
            dir,
            venv,
            running: Some(running),
            rt,
            _upstream: upstream,
            upstream_addr,
            upstream_ca,
            proxy_ca,
            proxy_ca_pem: proxy_pki.ca_pem().to_string(),
            v2_token,
            runs: std::cell::Cell::new(0),
        }
    }

    fn proxy_port(&self) -> u16 {
        self.running.as_ref().unwrap().proxy_addr.port()
    }

    /// The legacy base an IdP addresses, on the proxy.
    fn proxy_url(&self) -> String {
        format!("https://localhost:{}{LEGACY_PREFIX}", self.proxy_port())
    }

    fn upstream_url(&self) -> String {
        format!("https://{}{UPSTREAM_PREFIX}", self.upstream_addr)
    }

    /// `scim2 ARGS` against the upstream, with the v2 token.
    fn scim2_direct(&self, args: &[&str], stdin: Option<&Value>, timeout: Duration) -> Output {
        self.scim2(
            &self.upstream_url(),
            &self.v2_token,
            &self.upstream_ca,
            args,
            stdin,
            timeout,
        )
    }

    /// `scim2 ARGS` through the proxy's legacy base, with the old token.
    fn scim2_proxy(&self, args: &[&str], stdin: Option<&Value>, timeout: Duration) -> Output {
        self.scim2(
            &self.proxy_url(),
            OLD_TOKEN,
            &self.proxy_ca,
            args,
            stdin,
            timeout,
        )
    }

    fn scim2(
        &self,
        url: &str,
        token: &str,
        ca: &Path,
        args: &[&str],
        stdin: Option<&Value>,
        timeout: Duration,
    ) -> Output {
        let n = self.runs.get() + 1;
        self.runs.set(n);
        let mut cmd = Command::new(&self.venv.scim2);
        cmd.arg("--url").arg(url).args(args);
        // The token goes by environment, never on a command line (scim2-cli's advice); httpx2 trusts
        // exactly SSL_CERT_FILE. No proxy from the environment may come between us and loopback.
        cmd.env("SCIM_CLI_HEADERS", format!("Authorization: Bearer {token}"))
            .env("SSL_CERT_FILE", ca)
            .env_remove("SSL_CERT_DIR")
            .env_remove("SCIM_CLI_URL")
            .env("NO_PROXY", "*")
            .env("no_proxy", "*")
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .env("PYTHONIOENCODING", "utf-8");
        for var in [
            "HTTP_PROXY",
            "HTTPS_PROXY",
            "ALL_PROXY",
            "http_proxy",
            "https_proxy",
            "all_proxy",
        ] {
            cmd.env_remove(var);
        }
        let input = stdin.map(Value::to_string);
        let out = self.dir.join(format!("scim2-{n:02}-{}.out", args[0]));
        run_bounded("scim2", cmd, input.as_deref(), &out, timeout)
    }

    /// How many requests the upstream has answered so far (one log line each).
    fn upstream_requests(&self) -> usize {
        std::fs::read_to_string(self.dir.join("upstream.log"))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.starts_with("upstream: \""))
            .count()
    }

    /// The upstream's log, for failure messages (the proxy's goes to the test output).
    fn logs(&self) -> String {
        let log = std::fs::read_to_string(self.dir.join("upstream.log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(60).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        format!(
            "--- upstream log (last {} lines of {dir}/upstream.log; the proxy's traffic log, bodies \
             included, is {dir}/traffic.jsonl)\n{}",
            tail.len(),
            tail.join("\n"),
            dir = self.dir.display(),
        )
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        if let Some(running) = self.running.take() {
            let stopped = self
                .rt
                .block_on(async { tokio::time::timeout(PROXY_STOP, running.stop()).await });
            if stopped.is_err() {
                eprintln!("the proxy did not stop within {PROXY_STOP:?}; dropping its runtime");
            }
        }
        // `upstream` (a Proc) is killed when the fields drop, after this.
    }
}

/// Starts tests/interop/upstream.py on a free loopback port and waits for it to listen.
fn start_upstream(
    venv: &Venv,
    dir: &Path,
    cert: &Path,
    key: &Path,
    v2_token: &str,
) -> (Proc, SocketAddr) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/upstream.py");
    let log_path = dir.join("upstream.log");
    let mut cmd = Command::new(&venv.python);
    cmd.arg(&script)
        .arg("--cert")
        .arg(cert)
        .arg("--key")
        .arg(key)
        .arg("--bearer-token")
        .arg(v2_token)
        .args([
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--prefix",
            UPSTREAM_PREFIX,
        ])
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("PYTHONUNBUFFERED", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log_path).unwrap());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", script.display()));
    let stdin = child.stdin.take();
    let stdout = child.stdout.take().unwrap();
    let proc = Proc {
        name: "upstream",
        child,
        _stdin: stdin,
    };
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(addr) = line.strip_prefix("LISTENING ") {
                let _ = tx.send(addr.trim().to_string());
            }
        }
    });
    let addr = match rx.recv_timeout(UPSTREAM_START) {
        Ok(addr) => addr,
        Err(_) => {
            drop(proc);
            panic!(
                "the scim2-server upstream did not start within {UPSTREAM_START:?}:\n{}",
                std::fs::read_to_string(&log_path).unwrap_or_default()
            );
        }
    };
    let addr: SocketAddr = addr
        .parse()
        .unwrap_or_else(|e| panic!("upstream printed a bad address {addr:?}: {e}"));
    (proc, addr)
}

#[test]
fn report_parsing() {
    let text = "Performing a SCIM compliance check on https://x/ ...\n\
                SUCCESS a\n  first\n\
                \u{1b}[31mERROR\u{1b}[0m a\n  second\n  data line\n\
                SUCCESS b\n\
                SKIPPED c\n  why\n";
    let checks = parse_report(text);
    let got: Vec<_> = checks
        .iter()
        .map(|c| {
            (
                c.title.as_str(),
                c.ordinal,
                c.status.as_str(),
                c.detail.as_str(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("a", 1, "SUCCESS", "first"),
            ("a", 2, "ERROR", "second\ndata line"),
            ("b", 1, "SUCCESS", ""),
            ("c", 1, "SKIPPED", "why"),
        ]
    );
    let proxy = parse_report("SUCCESS a\nSUCCESS a\n");
    let diff = parity_diff(&parse_report("SUCCESS a\nSUCCESS a\nSUCCESS b\n"), &proxy);
    assert!(
        diff.contains("- b #1") && diff.contains("no counterpart"),
        "{diff}"
    );
    let diff = parity_diff(
        &parse_report("SUCCESS a\n"),
        &parse_report("ERROR a\n  boom\n"),
    );
    assert!(
        diff.contains("- a #1: direct SUCCESS, via proxy ERROR"),
        "{diff}"
    );
    assert!(diff.contains("boom"), "{diff}");
    assert!(parity_diff(&checks, &checks).is_empty());
}
