//! `check --live` with `[listen.acme]`: whether the ACME directory answers (through the same
//! HTTPS client and roots as ordering), and the certificate held in `state_dir`: issuer, names,
//! expiry.

use std::fmt::Write;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use instant_acme::{BodyWrapper, HttpClient};

use crate::config::Acme;
use crate::tls::acme::{AcmeHttp, Store, schedule};

/// The ACME block: whether it passed, and its lines.
pub struct AcmeCheck {
    pub ok: bool,
    pub lines: Vec<String>,
}

pub async fn check(acme: &Acme, timeout: Duration) -> AcmeCheck {
    let mut lines = vec![format!("domains     {}", acme.domains.join(", "))];
    let reached = tokio::time::timeout(timeout, directory(acme)).await;
    let directory_ok = match reached {
        Ok(Ok(summary)) => {
            lines.push(format!(
                "directory   {} reachable: {summary}",
                acme.directory
            ));
            true
        }
        Ok(Err(e)) => {
            lines.push(format!("directory   {} FAILED: {e}", acme.directory));
            false
        }
        Err(_) => {
            lines.push(format!(
                "directory   {} FAILED: no answer within {}",
                acme.directory,
                humantime::format_duration(timeout)
            ));
            false
        }
    };
    let (held_line, held_ok) = held(acme, SystemTime::now());
    lines.push(held_line);
    AcmeCheck {
        ok: directory_ok && held_ok,
        lines,
    }
}

/// GET the directory; what it offers, or why it cannot be used.
async fn directory(acme: &Acme) -> Result<String, String> {
    let http = AcmeHttp::new(acme.ca_file.as_deref())?;
    let request = http::Request::get(&acme.directory)
        .header(http::header::USER_AGENT, "scim-proxy check --live")
        .body(BodyWrapper::<Bytes>::default())
        .map_err(|e| format!("not a usable URL ({e})"))?;
    let mut response = http.request(request).await.map_err(|e| e.to_string())?;
    let status = response.parts.status;
    let body = response
        .body
        .into_bytes()
        .await
        .map_err(|e| format!("reading the answer: {e}"))?;
    if !status.is_success() {
        return Err(format!("answered {status}, not an ACME directory"));
    }
    let json: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|_| format!("answered {status} with something that is not JSON"))?;
    if json.get("newOrder").and_then(|v| v.as_str()).is_none() {
        return Err("the JSON has no newOrder: not an ACME directory".to_string());
    }
    let eab = json["meta"]["externalAccountRequired"].as_bool() == Some(true);
    let mut summary = String::from("an RFC 8555 directory");
    if eab {
        let _ = write!(
            summary,
            ", External Account Binding required ({})",
            if acme.eab.is_some() {
                "eab_kid is set"
            } else {
                "eab_kid is NOT set"
            }
        );
    }
    if eab && acme.eab.is_none() {
        return Err(summary);
    }
    Ok(summary)
}

/// The stored certificate: fine (held and valid), none yet (ordered at start), or a problem.
fn held(acme: &Acme, now: SystemTime) -> (String, bool) {
    let store = Store::new(&acme.state_dir);
    let held = match store.load_cert() {
        Ok(Some(h)) => h,
        Ok(None) => {
            return (
                format!(
                    "certificate none held in {} yet: serve orders one at start",
                    acme.state_dir.display()
                ),
                true,
            );
        }
        Err(e) => {
            return (
                format!("certificate FAILED: {e} (serve orders a new one)"),
                false,
            );
        }
    };
    let expiry = humantime::format_rfc3339_seconds(held.info.not_after);
    let mut line = format!(
        "certificate issuer {}; names {}; expires {expiry}",
        held.info.issuer,
        held.names.dns.join(", ")
    );
    let ok = held.is_valid(now);
    if !ok {
        line.push_str(" (EXPIRED: serve orders a new one)");
    } else if !schedule::covers_exactly(&held.names, &acme.domains) {
        line.push_str(" (other names than listen.acme.domains: serve orders a new one)");
    } else if let Ok(left) = held.info.not_after.duration_since(now) {
        let _ = write!(line, " (in {} days)", left.as_secs() / 86_400);
    }
    (line, ok)
}

/// The block as printed.
pub fn render(check: &AcmeCheck) -> String {
    let mut out = format!("listen.acme: {}\n", if check.ok { "OK" } else { "FAILED" });
    for l in &check.lines {
        let _ = writeln!(out, "  {l}");
    }
    out.push('\n');
    out
}
