//! The annotated example config is the reference: every key the parser accepts is documented in it,
//! every key it mentions (commented out or not) is a real key, and `check` on it fails only on the
//! files it leaves to the operator.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

const EXAMPLE: &str = include_str!("../config/scim-proxy.example.toml");
const CONFIG_SRC: &str = include_str!("../src/config/raw.rs");

fn is_key(k: &str) -> bool {
    !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// `key = ` at the start of a line, commented out or not.
fn documented_keys() -> BTreeSet<String> {
    EXAMPLE
        .lines()
        .map(|l| l.trim_start_matches('#').trim())
        .filter_map(|l| l.split_once(" = ").map(|(k, _)| k.trim().to_string()))
        .filter(|k| is_key(k))
        .collect()
}

/// Field names of the `Raw*` structs that serde reads the file into.
fn accepted_keys() -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    let mut in_raw = false;
    for line in CONFIG_SRC.lines() {
        let t = line.trim();
        if t.starts_with("struct Raw") && t.ends_with('{') {
            in_raw = true;
        } else if in_raw && t == "}" {
            in_raw = false;
        } else if in_raw && let Some((name, _)) = t.split_once(':') {
            keys.insert(name.trim().to_string());
        }
    }
    keys
}

#[test]
fn every_accepted_key_is_documented_and_every_documented_key_exists() {
    let accepted = accepted_keys();
    let documented = documented_keys();
    assert!(
        accepted.len() > 30,
        "parsing src/config.rs found too few keys: {accepted:?}"
    );
    // Tables and arrays of tables appear as headers, not `key = ` lines.
    let tables: BTreeSet<String> = [
        "listen", "admin", "limits", "egress", "reload", "log", "runtime", "routes", "clients",
        "acme",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let missing: Vec<_> = accepted
        .difference(&documented)
        .filter(|k| !tables.contains(*k))
        .collect();
    assert!(
        missing.is_empty(),
        "keys accepted but not documented in the example: {missing:?}"
    );
    let unknown: Vec<_> = documented.difference(&accepted).collect();
    assert!(
        unknown.is_empty(),
        "keys in the example that the parser does not accept: {unknown:?}"
    );
}

#[test]
fn each_commented_key_parses_when_uncommented() {
    let dir = tempfile::tempdir().unwrap();
    for (i, line) in EXAMPLE.lines().enumerate() {
        let Some(rest) = line.strip_prefix("# ") else {
            continue;
        };
        let Some((key, _)) = rest.split_once(" = ") else {
            continue;
        };
        if !is_key(key) {
            continue;
        }
        let mut lines: Vec<&str> = EXAMPLE.lines().collect();
        lines[i] = rest;
        // token_env replaces token_file rather than adding to it.
        if key == "token_env" {
            lines.retain(|l| !l.starts_with("token_file"));
        }
        // Forward proxy credentials need the forward proxy.
        if key.starts_with("via_proxy_auth") {
            for l in lines.iter_mut() {
                if let Some(rest) = l.strip_prefix("# via_proxy = ") {
                    *l = l.strip_prefix("# ").unwrap_or(rest);
                }
            }
        }
        // A [listen.acme] key needs its table, its required keys, and no cert/key.
        if in_acme_table(i) {
            with_acme_table(&mut lines, key);
        }
        // Pacing's burst and max_queue_wait need its rate.
        if key == "burst" || key == "max_queue_wait" {
            for l in lines.iter_mut() {
                if let Some(rest) = l.strip_prefix("# max_requests_per_second = ") {
                    *l = l.strip_prefix("# ").unwrap_or(rest);
                }
            }
        }
        let text = lines.join("\n");
        let path = dir.path().join("example.toml");
        std::fs::write(&path, &text).unwrap();
        match scim_proxy::config::parse(&text, &path) {
            Ok(_) => {}
            Err(p) => panic!("uncommenting line {} ({key}) gives: {p}", i + 1),
        }
    }
}

/// Whether line `i` of the example lies in the commented-out `[listen.acme]` table.
fn in_acme_table(i: usize) -> bool {
    let lines: Vec<&str> = EXAMPLE.lines().collect();
    let Some(start) = lines.iter().position(|l| *l == "# [listen.acme]") else {
        return false;
    };
    let end = lines[start..]
        .iter()
        .position(|l| l.starts_with('['))
        .map_or(lines.len(), |n| start + n);
    i > start && i < end
}

/// Uncomments the `[listen.acme]` header and the keys every such table needs, and drops cert/key.
fn with_acme_table(lines: &mut Vec<&str>, key: &str) {
    lines.retain(|l| !l.starts_with("cert = ") && !l.starts_with("key = "));
    for l in lines.iter_mut() {
        let Some(rest) = l.strip_prefix("# ") else {
            continue;
        };
        let needed = rest == "[listen.acme]"
            || ["domains = ", "contact = ", "state_dir = "]
                .iter()
                .any(|k| rest.starts_with(k))
            || (key == "eab_hmac_key_file" || key == "eab_hmac_key_env")
                && rest.starts_with("eab_kid = ")
            || key == "eab_kid" && rest.starts_with("eab_hmac_key_file = ")
            || key == "http_addr" && rest.starts_with("challenge = ")
            || key == "challenge" && rest.starts_with("http_addr = ");
        if needed {
            *l = rest;
        }
    }
    if key == "challenge" || key == "http_addr" {
        for l in lines.iter_mut() {
            if *l == "challenge = \"tls-alpn-01\"" {
                *l = "challenge = \"http-01\"";
            }
        }
    }
}

#[test]
fn check_on_the_example_fails_only_on_operator_files() {
    let out = Command::new(env!("CARGO_BIN_EXE_scim-proxy"))
        .args(["check", "--config"])
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("config/scim-proxy.example.toml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let problems: Vec<&str> = stderr.lines().filter(|l| l.contains(".toml: ")).collect();
    assert_eq!(problems.len(), 3, "{stderr}");
    assert!(problems[0].contains("listen.cert: cannot read"), "{stderr}");
    assert!(problems[1].contains("listen.key: cannot read"), "{stderr}");
    assert!(problems[2].contains("routes[0].token_file:"), "{stderr}");
}
