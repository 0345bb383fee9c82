//! `scim-proxy report` over a real traffic log.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::*;

/// Waits (bounded) until `dir/traffic.log` holds at least `n` records.
async fn records_at_least(dir: &Path, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + WAIT;
    loop {
        let records = read_records(&dir.join("traffic.log"));
        if records.len() >= n {
            return records;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {n} traffic records within {WAIT:?}",
            records.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `refused` when the proxy answered a client fault itself, as the report counts outcomes.
fn outcome(r: &Value) -> &'static str {
    let status = r["status"].as_u64().unwrap();
    match status {
        200..=299 => "2xx",
        400..=499 if r.get("upstream_status").is_none() => "refused",
        400..=499 => "4xx",
        500..=599 => "5xx",
        _ => "other",
    }
}

fn outcomes_json(records: &[&Value]) -> Value {
    let n = |o: &str| records.iter().filter(|r| outcome(r) == o).count();
    json!({
        "requests": records.len(),
        "2xx": n("2xx"),
        "4xx": n("4xx"),
        "5xx": n("5xx"),
        "refused": n("refused"),
        "other": n("other"),
    })
}

/// `scim-proxy report … | head`: a reader that closes the pipe early is no failure.
#[test]
fn report_into_a_closed_pipe_exits_quietly() {
    use std::io::Read;
    use std::process::{Command, Stdio};
    // 3,000 IdPs: far more report than a pipe buffer holds.
    let mut log = String::new();
    for i in 0..3000 {
        log.push_str(&format!(
            "{{\"ts\":\"2026-11-23T17:34:54.035Z\",\"request_id\":\"r{i}\",\"route\":\"main\",\"client\":\"idp-{i}\",\"method\":\"GET\",\"path\":\"/SCIM/v2/Users\",\"status\":200,\"upstream_status\":200,\"op\":\"user.list\"}}\n"
        ));
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("traffic.log");
    std::fs::write(&path, log).unwrap();
    let mut child = Command::new(bin())
        .args(["report", path.to_str().unwrap()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 64];
    stdout.read_exact(&mut first).unwrap();
    drop(stdout); // like `head` after its lines
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("report did not exit after its reader went away");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(status.success(), "{status:?}: {stderr}");
    assert_eq!(stderr, "", "nothing on stderr for a closed pipe");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_summarises_a_mixed_multi_idp_run() {
    let mut prepared = Builder::new()
        .routes(vec![three_idps()])
        .limit("upstream_timeout", "\"2s\"")
        .prepare()
        .await;
    log_config(&mut prepared, "pii_key_file = \"pii.key\"\n");
    write_private(prepared.dir.path(), "pii.key", PII_KEY);
    let p = prepared.start().await;
    let (okta, entra, jc) = (
        Idp::okta(&p, Some(PII_KEY)),
        Idp::entra(&p, Some(PII_KEY)),
        Idp::jumpcloud(&p, Some(PII_KEY)),
    );
    okta_flow(&okta).await;
    entra_flow(&entra).await;
    jumpcloud_flow(&jc).await;
    // Failures: Okta assigns two users that already exist in the tenant.
    for who in ["dup.one@example.com", "dup.two@example.com"] {
        let body = okta_user(who, true);
        okta.step(
            Method::POST,
            "/SCIM/v2/Users",
            Some(body.clone()),
            201,
            want("User", "user.create").created().subject(who),
        )
        .await;
        okta.step(
            Method::POST,
            "/SCIM/v2/Users",
            Some(body),
            409,
            want("User", "user.create").subject(who),
        )
        .await;
    }
    // Netskope busy for Entra twice.
    for _ in 0..2 {
        p.upstream(0).push_override(canned(
            503,
            scim_error_body(503, "", "Service temporarily unavailable, retry later"),
            Duration::ZERO,
        ));
        entra
            .step(
                Method::GET,
                "/SCIM/v2/Users?filter=userName+eq+%22busy%40contoso.com%22",
                None,
                503,
                want("User", "user.lookup").subject("busy@contoso.com"),
            )
            .await;
    }
    // JumpCloud waits past upstream_timeout once.
    p.upstream(0)
        .push_override(canned(200, empty_list(), Duration::from_secs(4)));
    let a = send(
        &p,
        Some(JUMPCLOUD),
        Some("jumpcloud-timeout"),
        Method::GET,
        "/SCIM/v2/Groups",
        None,
    )
    .await;
    assert_eq!(a.status, StatusCode::GATEWAY_TIMEOUT);
    // An IdP still configured with a token the proxy does not know.
    for i in 0..2 {
        let a = send(
            &p,
            Some("stale-idp-token-0b7e"),
            Some(&format!("stale-{i}")),
            Method::GET,
            "/SCIM/v2/Users",
            None,
        )
        .await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    }
    let sent = (okta.seq.get() + entra.seq.get() + jc.seq.get()) as usize + 3;
    let records = records_at_least(p.dir(), sent).await;
    assert_eq!(records.len(), sent);
    let log = p.dir().join("traffic.log");
    let log_arg = log.to_str().unwrap();

    let out = run_cli(&["report", "--json", log_arg], b"", &[], STEP);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: Value = serde_json::from_slice(&out.stdout).expect("--json parses");
    assert_eq!(summary["records"], sent);
    assert_eq!(summary["skipped_lines"], 0);
    let idps = summary["idps"].as_array().expect("idps");
    let names: Vec<&str> = idps.iter().map(|i| i["idp"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "main/(unauthenticated)",
            "main/entra",
            "main/jumpcloud",
            "main/okta"
        ]
    );
    for idp in idps {
        let client = idp["client"].as_str();
        let mine: Vec<&Value> = records
            .iter()
            .filter(|r| r["client"].as_str() == client)
            .collect();
        let ctx = format!("{}", idp["idp"]);
        assert_eq!(idp["outcomes"], outcomes_json(&mine), "{ctx}");
        let first = mine
            .iter()
            .map(|r| r["ts"].as_str().unwrap())
            .min()
            .unwrap();
        let last = mine
            .iter()
            .map(|r| r["ts"].as_str().unwrap())
            .max()
            .unwrap();
        assert_eq!(idp["first_seen"], first, "{ctx}");
        assert_eq!(idp["last_seen"], last, "{ctx}");
        let ops: BTreeSet<&str> = mine
            .iter()
            .map(|r| r["op"].as_str().unwrap_or("-"))
            .collect();
        assert_eq!(idp["ops"].as_array().unwrap().len(), ops.len(), "{ctx}");
        for op in idp["ops"].as_array().unwrap() {
            let name = op["op"].as_str().unwrap();
            let of_op: Vec<&Value> = mine
                .iter()
                .copied()
                .filter(|r| r["op"].as_str().unwrap_or("-") == name)
                .collect();
            let mut want = outcomes_json(&of_op);
            want["op"] = json!(name);
            assert_eq!(op, &want, "{ctx}");
        }
    }
    let by_name = |n: &str| idps.iter().find(|i| i["idp"] == n).unwrap();
    // Failures grouped by upstream reason, with the latest as the example.
    let f = by_name("main/okta")["failures"].as_array().unwrap().clone();
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(f[0]["status"], 409);
    assert_eq!(f[0]["by"], "upstream");
    assert_eq!(f[0]["scimType"], "uniqueness");
    assert_eq!(f[0]["count"], 2);
    assert_eq!(f[0]["detail"], "User with userName \"h:…\" already exists");
    assert_eq!(f[0]["example"]["op"], "user.create");
    assert_eq!(
        f[0]["example"]["subject"],
        json!(pii_hash(PII_KEY, "dup.two@example.com"))
    );
    let f = by_name("main/entra")["failures"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(
        (f[0]["status"].clone(), f[0]["count"].clone()),
        (json!(503), json!(2))
    );
    assert_eq!(
        f[0]["detail"],
        "Service temporarily unavailable, retry later"
    );
    let f = by_name("main/jumpcloud")["failures"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(f[0]["status"], 504);
    assert_eq!(f[0]["by"], "proxy");
    assert_eq!(f[0]["error"], "upstream-timeout");
    assert_eq!(f[0]["example"]["request_id"], "jumpcloud-timeout");
    let f = by_name("main/(unauthenticated)")["failures"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(f[0]["auth"], "unknown-token");
    assert_eq!(f[0]["count"], 2);
    assert_eq!(f[0]["example"]["request_id"], "stale-1");

    // The text form says the same.
    let out = run_cli(&["report", log_arg], b"", &[], STEP);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.starts_with(&format!(
            "{sent} requests from 3 IdPs, 2 of them unauthenticated\n"
        )),
        "{text}"
    );
    for idp in idps {
        let head = format!("== {}", idp["idp"].as_str().unwrap());
        let at = text
            .find(&head)
            .unwrap_or_else(|| panic!("{head} missing:\n{text}"));
        let section = &text[at..];
        let section = &section[..section[3..].find("\n== ").map_or(section.len(), |i| i + 3)];
        assert!(
            section.contains(&format!(
                "first seen  {}",
                idp["first_seen"].as_str().unwrap()
            )),
            "{section}"
        );
        assert!(
            section.contains(&format!(
                "last seen   {}",
                idp["last_seen"].as_str().unwrap()
            )),
            "{section}"
        );
        let o = &idp["outcomes"];
        assert!(
            section.contains(&format!(
                "requests    {}: {} 2xx, {} 4xx, {} 5xx, {} refused by proxy",
                o["requests"], o["2xx"], o["4xx"], o["5xx"], o["refused"]
            )),
            "{section}"
        );
        for op in idp["ops"].as_array().unwrap() {
            let row: Vec<String> = [
                op["op"].as_str().unwrap().to_owned(),
                op["requests"].to_string(),
                op["2xx"].to_string(),
                op["4xx"].to_string(),
                op["5xx"].to_string(),
                op["refused"].to_string(),
            ]
            .into();
            assert!(
                section
                    .lines()
                    .any(|l| l.split_whitespace().collect::<Vec<_>>() == row),
                "no row {row:?} in\n{section}"
            );
        }
        for f in idp["failures"].as_array().unwrap() {
            assert!(
                section.contains(&format!("{:>4} x {}", f["count"], f["status"])),
                "{section}"
            );
            let e = &f["example"];
            assert!(
                section.contains(&format!(
                    "e.g. {} {}",
                    e["ts"].as_str().unwrap(),
                    e["request_id"].as_str().unwrap()
                )),
                "{section}"
            );
        }
    }
    assert!(
        text.contains("409 from upstream, scimType uniqueness"),
        "{text}"
    );
    assert!(text.contains("504 from proxy (upstream-timeout)"), "{text}");
    assert!(
        text.contains("401 refused by proxy (unauthorized, auth unknown-token)"),
        "{text}"
    );
    eprintln!("--- scim-proxy report ---\n{text}");
    let raw = std::fs::read_to_string(&log).unwrap();
    let sample = raw
        .lines()
        .find(|l| l.contains("\"op\":\"user.create\"") && l.contains("\"status\":201"))
        .expect("a create line");
    eprintln!("--- a traffic log line ---\n{sample}");
    p.stop().await;
}
