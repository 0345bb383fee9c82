//! The status page as HTML: a pure function of the `/status.json` document. Server-rendered, inline
//! CSS, no external assets, readable without JavaScript; `?refresh=N` adds a meta refresh.

use std::fmt::Write;

use super::view::{CertStatus, IdpActivity, RouteStatus, StatusDoc, TokenStatus};
use super::{Counts, Entry, Failure, Identity};

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:0 1.5em 2em;color:#1d2330;background:#f6f7f9}\
h1{font-size:1.5em;margin:.8em 0 .2em}h2{font-size:1.2em;margin:1.4em 0 .4em;border-bottom:2px solid #d5d9e0}\
h3{font-size:1.05em;margin:.8em 0 .3em}section.card{background:#fff;border:1px solid #d5d9e0;border-radius:6px;padding:.6em 1em;margin:.6em 0}\
table{border-collapse:collapse;width:100%;background:#fff;margin:.3em 0}th,td{border:1px solid #d5d9e0;padding:.25em .5em;text-align:left;vertical-align:top}\
th{background:#eef0f4;font-weight:600}td.n{text-align:right;font-variant-numeric:tabular-nums}code{font-size:.95em}\
.badge{display:inline-block;padding:.1em .6em;border-radius:1em;font-weight:600}\
.ok{background:#dff3e4;color:#17652f}.soon{background:#fff1cc;color:#7a5400}.bad{background:#fde0e0;color:#9b1c1c}.muted{color:#6b7280}\
.alert{background:#fde0e0;border:1px solid #e9a3a3;border-radius:6px;padding:.5em 1em;margin:.5em 0}\
.warn{background:#fff1cc;border:1px solid #e8c96a;border-radius:6px;padding:.5em 1em;margin:.5em 0}\
dl{display:grid;grid-template-columns:max-content auto;gap:.15em 1em;margin:.3em 0}dt{font-weight:600}dd{margin:0}";

/// The page lists at most this many out-of-sync resources (all are in `/status.json`).
const PAGE_OUT_OF_SYNC: usize = 500;

/// The page for `doc`; with `refresh`, the browser reloads it every that many seconds.
pub fn render(doc: &StatusDoc, refresh: Option<u32>) -> String {
    let mut out = String::with_capacity(16 * 1024);
    out.push_str("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">");
    out.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">");
    if let Some(secs) = refresh {
        let _ = write!(out, "<meta http-equiv=\"refresh\" content=\"{secs}\">");
    }
    let _ = write!(
        out,
        "<title>scim-proxy status</title><style>{STYLE}</style></head><body>"
    );
    header(&mut out, doc);
    out_of_sync(&mut out, doc);
    out.push_str("<h2 id=\"routes\">Routes</h2>");
    for route in &doc.routes {
        route_card(&mut out, route, doc.certificate.as_ref());
    }
    failures(&mut out, &doc.failures);
    let _ = writeln!(
        out,
        "<p class=\"muted\">Subjects are shown as the traffic log writes them (<code>[log] pii = \"{}\"</code>). \
         The same data for scripts: <a href=\"/status.json\">/status.json</a>. \
         Reload every 30 s: <a href=\"/?refresh=30\">/?refresh=30</a>.</p></body></html>",
        esc(doc.pii)
    );
    out
}

fn header(out: &mut String, doc: &StatusDoc) {
    let (class, text) = if doc.ready {
        ("ok", "ready")
    } else {
        ("bad", "NOT READY")
    };
    let _ = write!(
        out,
        "<h1>scim-proxy status <span id=\"readiness\" class=\"badge {class}\">{text}</span></h1>\
         <p class=\"muted\">As of {} (UTC).</p>",
        esc(&doc.generated_at)
    );
    for p in &doc.problems {
        let _ = write!(out, "<div class=\"alert\">Not ready: {}</div>", esc(p));
    }
    for w in &doc.warnings {
        let _ = write!(out, "<div class=\"warn\">{}</div>", esc(w));
    }
}

fn out_of_sync(out: &mut String, doc: &StatusDoc) {
    let s = &doc.out_of_sync;
    let _ = write!(
        out,
        "<h2 id=\"out-of-sync\">Out of sync: {} resource{}</h2>",
        s.count,
        plural(s.count)
    );
    out.push_str(
        "<p>Users and groups whose latest write through the proxy failed and has not succeeded since.</p>",
    );
    if s.entries.is_empty() {
        out.push_str("<p class=\"badge ok\">Nothing out of sync.</p>");
    } else {
        out.push_str("<ul id=\"resync\">");
        for r in &s.resync {
            let _ = write!(
                out,
                "<li><b>{}</b> on route <b>{}</b>: {} out of sync. What to do: {}</li>",
                esc(&r.client),
                esc(&r.route),
                r.count,
                esc(r.what_to_do)
            );
        }
        out.push_str("</ul><table id=\"out-of-sync-list\"><tr><th>route</th><th>IdP</th><th>resource</th><th>who</th><th>since</th><th>failed writes</th><th>last status</th><th>upstream reason</th><th>request id</th></tr>");
        for e in s.entries.iter().take(PAGE_OUT_OF_SYNC) {
            entry_row(out, e);
        }
        out.push_str("</table>");
        if s.entries.len() > PAGE_OUT_OF_SYNC {
            let _ = write!(
                out,
                "<p>The {PAGE_OUT_OF_SYNC} latest are shown; all {} are in <a href=\"/status.json\">/status.json</a>.</p>",
                s.entries.len()
            );
        }
    }
    if s.evicted > 0 {
        let _ = write!(
            out,
            "<p class=\"warn\">{} older entries were pushed out (the list keeps {}).</p>",
            s.evicted,
            s.limit.unwrap_or_default()
        );
    }
    let _ = write!(
        out,
        "<p class=\"muted\">The full history is in the traffic log ({}); \
         <code>scim-proxy report --out-of-sync FILE…</code> computes this list from it, across restarts and replicas.</p>",
        esc(&doc.traffic_log)
    );
}

fn entry_row(out: &mut String, e: &Entry) {
    let who = match &e.identity {
        Identity::Id(id) => format!(
            "id <code>{}</code>{}",
            esc(id),
            e.subject
                .as_deref()
                .map(|s| format!(" ({})", esc(s)))
                .unwrap_or_default()
        ),
        Identity::Subject(s) => format!("{} <span class=\"muted\">(not created)</span>", esc(s)),
    };
    let _ = write!(
        out,
        "<tr><td>{}</td><td>{}</td><td>{}</td><td>{who}</td><td>{}</td><td class=\"n\">{}</td><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
        esc(&e.route),
        esc(e.last.client.as_deref().unwrap_or("-")),
        esc(&e.resource),
        esc(&e.since),
        e.failures,
        status_cell(&e.last),
        reason(&e.last),
        esc(&e.last.request_id)
    );
}

fn route_card(out: &mut String, r: &RouteStatus, cert: Option<&CertStatus>) {
    let _ = write!(
        out,
        "<section class=\"card route\" id=\"route-{}\"><h3>Route <code>{}</code></h3><dl>\
         <dt>upstream</dt><dd><code>{}</code></dd><dt>egress</dt><dd>{}</dd>\
         <dt>v2 token</dt><dd>{}</dd><dt>serving certificate</dt><dd>{}</dd>\
         <dt>last upstream success</dt><dd>{}</dd></dl>",
        esc(&r.name),
        esc(&r.name),
        esc(&r.upstream),
        esc(&r.egress),
        token(&r.token),
        cert_text(cert),
        r.last_upstream_success
            .as_deref()
            .map_or_else(|| "<span class=\"muted\">none yet</span>".to_owned(), esc)
    );
    if let Some(b) = &r.auth_burst {
        let _ = write!(
            out,
            "<div class=\"alert auth-burst\"><b>Upstream {} burst</b> ({} refusals from {} to {}): {}</div>",
            b.last_status,
            b.count,
            esc(&b.window_start),
            esc(&b.last),
            esc(b.meaning)
        );
    }
    out.push_str("<table class=\"idps\"><tr><th>IdP</th><th>last seen</th><th>last hour</th><th>last day</th><th>last failure</th></tr>");
    if r.idps.is_empty() {
        out.push_str("<tr><td colspan=\"5\" class=\"muted\">no requests yet</td></tr>");
    }
    for idp in &r.idps {
        idp_row(out, idp);
    }
    out.push_str("</table></section>");
}

fn idp_row(out: &mut String, idp: &IdpActivity) {
    let name = if idp.client == "-" {
        "(unauthenticated)"
    } else {
        &idp.client
    };
    let last_failure = idp.last_failure.as_ref().map_or_else(
        || "<span class=\"muted\">none</span>".to_owned(),
        |f| {
            format!(
                "{} {} {}<br>{}",
                esc(&f.ts),
                esc(f.op.as_deref().unwrap_or("-")),
                status_cell(f),
                reason(f)
            )
        },
    );
    let _ = write!(
        out,
        "<tr class=\"idp\"><td><b>{}</b></td><td>{}</td><td>{}</td><td>{}</td><td>{last_failure}</td></tr>",
        esc(name),
        idp.last_seen.as_deref().map_or("-".to_owned(), esc),
        counts(&idp.last_hour),
        counts(&idp.last_day)
    );
    if !idp.ops.is_empty() {
        out.push_str("<tr><td></td><td colspan=\"4\"><details><summary>by operation</summary><table><tr><th>op</th><th>last hour</th><th>last day</th></tr>");
        for op in &idp.ops {
            let _ = write!(
                out,
                "<tr><td><code>{}</code></td><td>{}</td><td>{}</td></tr>",
                esc(&op.op),
                counts(&op.last_hour),
                counts(&op.last_day)
            );
        }
        out.push_str("</table></details></td></tr>");
    }
}

fn failures(out: &mut String, failures: &[Failure]) {
    let _ = write!(
        out,
        "<h2 id=\"failures\">Last {} failure{}</h2>",
        failures.len(),
        plural(failures.len())
    );
    if failures.is_empty() {
        out.push_str("<p class=\"badge ok\">No failures.</p>");
        return;
    }
    out.push_str("<table id=\"failure-list\"><tr><th>time</th><th>route / IdP</th><th>op</th><th>subject</th><th>status</th><th>upstream reason</th><th>request id</th></tr>");
    for f in failures {
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{} / {}</td><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
            esc(&f.ts),
            esc(f.route.as_deref().unwrap_or("-")),
            esc(f.client.as_deref().unwrap_or("-")),
            esc(f.op.as_deref().unwrap_or("-")),
            esc(f.subject.as_deref().unwrap_or("-")),
            status_cell(f),
            reason(f),
            esc(&f.request_id)
        );
    }
    out.push_str("</table>");
}

fn status_cell(f: &Failure) -> String {
    format!(
        "<span class=\"badge bad\">{}</span> <span class=\"muted\">by {}</span>",
        f.status,
        f.answered_by()
    )
}

/// `scimType: detail` of the upstream, or what the proxy found wrong.
fn reason(f: &Failure) -> String {
    let mut parts = Vec::new();
    if let Some(t) = &f.scim_type {
        parts.push(format!("<code>{}</code>", esc(t)));
    }
    if let Some(d) = &f.detail {
        parts.push(esc(d));
    }
    if let Some(e) = &f.error {
        parts.push(format!("proxy: <code>{}</code>", esc(e)));
    }
    if parts.is_empty() {
        "-".to_owned()
    } else {
        parts.join(" ")
    }
}

fn counts(c: &Counts) -> String {
    if c.requests == 0 {
        return "<span class=\"muted\">0</span>".to_owned();
    }
    format!(
        "{} req: {} 2xx, {} 4xx, {} 5xx, {} refused",
        c.requests, c.ok, c.client_error, c.server_error, c.refused
    )
}

fn token(t: &TokenStatus) -> String {
    let source = format!("read from {}", esc(&t.source));
    let (Some(expires), Some(left)) = (&t.expires, t.seconds_left) else {
        return format!("{source}; <span class=\"muted\">no token_expires set</span>");
    };
    let class = match t.state {
        "ok" => "ok",
        "soon" => "soon",
        _ => "bad",
    };
    let text = match t.state {
        "stale" => format!(
            "token rotated: update token_expires (still {})",
            esc(expires)
        ),
        _ => format!("{} ({})", countdown(left), esc(expires)),
    };
    format!(
        "{source}; <span class=\"badge {class} token-countdown\">{text}</span> <span class=\"muted\">warns {} days before</span>",
        t.warn_days
    )
}

fn cert_text(cert: Option<&CertStatus>) -> String {
    let Some(c) = cert else {
        return "<span class=\"muted\">plain HTTP (TLS ends in front)</span>".to_owned();
    };
    let class = match c.state {
        "ok" => "ok",
        "soon" => "soon",
        _ => "bad",
    };
    format!(
        "<span class=\"badge {class}\">{} ({})</span> <span class=\"muted\">{}</span>",
        countdown(c.seconds_left),
        esc(&c.not_after),
        esc(&c.subject)
    )
}

/// `expires in 12 d 3 h`, or `expired 2 d 1 h ago`.
pub fn countdown(seconds_left: i64) -> String {
    let s = seconds_left.unsigned_abs();
    let (d, h, m) = (s / 86_400, s % 86_400 / 3600, s % 3600 / 60);
    let span = if d > 0 {
        format!("{d} d {h} h")
    } else if h > 0 {
        format!("{h} h {m} min")
    } else {
        format!("{m} min")
    };
    if seconds_left > 0 {
        format!("expires in {span}")
    } else {
        format!("expired {span} ago")
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// Text made safe inside HTML elements and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::status::view::{OutOfSyncStatus, StatusDoc};

    fn doc() -> StatusDoc {
        StatusDoc {
            version: 1,
            generated_at: "2026-12-02T10:00:00.000Z".into(),
            ready: false,
            problems: vec!["the proxy listener is not accepting".into()],
            warnings: vec![],
            pii: "hash",
            traffic_log: "stdout".into(),
            certificate: None,
            routes: vec![],
            failures: vec![Failure {
                ts: "2026-12-02T09:59:00.000Z".into(),
                request_id: "r1".into(),
                route: Some("acme".into()),
                client: Some("okta".into()),
                method: "POST".into(),
                op: Some("user.create".into()),
                resource: Some("User".into()),
                resource_id: None,
                subject: Some("h:0123456789abcdef".into()),
                status: 409,
                upstream_status: Some(409),
                scim_type: Some("uniqueness".into()),
                detail: Some("<script>alert(1)</script>".into()),
                error: None,
            }],
            out_of_sync: OutOfSyncStatus {
                count: 0,
                limit: Some(10),
                evicted: 0,
                resync: vec![],
                entries: vec![],
            },
        }
    }

    #[test]
    fn the_page_escapes_what_upstreams_and_idps_sent_and_says_why_it_is_not_ready() {
        let page = render(&doc(), None);
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(!page.contains("<script>alert"));
        assert!(page.contains("NOT READY") && page.contains("not accepting"));
        assert!(page.contains("<code>uniqueness</code>") && page.contains("by upstream"));
        assert!(!page.contains("http-equiv=\"refresh\""));
        assert!(render(&doc(), Some(30)).contains("content=\"30\""));
    }

    #[test]
    fn countdowns_read_in_days_hours_or_minutes() {
        assert_eq!(countdown(3 * 86_400 + 7200), "expires in 3 d 2 h");
        assert_eq!(countdown(5400), "expires in 1 h 30 min");
        assert_eq!(countdown(-120), "expired 2 min ago");
    }
}
