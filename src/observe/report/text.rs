//! The report as text for a person: a header, then per IdP its outcomes, an ops table and the
//! failures by reason with an example each.

use std::io::{self, Write};

use super::summary::{Failure, IdpSummary, Reason, Summary};

pub(super) fn write_text(s: &Summary, out: &mut impl Write) -> io::Result<()> {
    write_totals(s, out)?;
    for idp in &s.idps {
        write_idp(idp, out)?;
    }
    Ok(())
}

/// The first line: requests, IdPs, unauthenticated requests and skipped lines.
fn write_totals(s: &Summary, out: &mut impl Write) -> io::Result<()> {
    let idps = s.idps.iter().filter(|i| i.client.is_some()).count() as u64;
    let unauthenticated: u64 = s
        .idps
        .iter()
        .filter(|i| i.client.is_none())
        .map(|i| i.outcomes.requests)
        .sum();
    write!(
        out,
        "{} {} from {} {}",
        s.records,
        plural(s.records, "request", "requests"),
        idps,
        plural(idps, "IdP", "IdPs"),
    )?;
    if unauthenticated > 0 {
        write!(out, ", {unauthenticated} of them unauthenticated")?;
    }
    if s.skipped_lines > 0 {
        write!(
            out,
            " ({} {} skipped: not traffic records)",
            s.skipped_lines,
            plural(s.skipped_lines, "line", "lines")
        )?;
    }
    writeln!(out)
}

/// One IdP's section: when it was seen, its outcomes, its ops and its failures.
fn write_idp(idp: &IdpSummary, out: &mut impl Write) -> io::Result<()> {
    writeln!(out)?;
    write!(out, "== {}", idp.idp)?;
    if idp.client.is_none() {
        write!(out, " (no configured client token matched)")?;
    }
    writeln!(out, " ==")?;
    writeln!(out, "  first seen  {}", idp.first_seen)?;
    writeln!(out, "  last seen   {}", idp.last_seen)?;
    let o = &idp.outcomes;
    write!(
        out,
        "  requests    {}: {} 2xx, {} 4xx, {} 5xx, {} refused by proxy",
        o.requests, o.ok, o.client_error, o.server_error, o.refused
    )?;
    if o.other > 0 {
        write!(out, ", {} other", o.other)?;
    }
    writeln!(out)?;
    writeln!(out)?;
    write_ops_table(idp, out)?;
    write_failures(&idp.failures, out)
}

fn write_failures(failures: &[Failure], out: &mut impl Write) -> io::Result<()> {
    if failures.is_empty() {
        writeln!(out)?;
        return writeln!(out, "  no failures");
    }
    writeln!(out)?;
    writeln!(out, "  failures by reason")?;
    for f in failures {
        writeln!(out, "    {:>4} x {}", f.count, reason_text(&f.reason))?;
        writeln!(
            out,
            "           first {}  last {}",
            f.first_seen, f.last_seen
        )?;
        let e = &f.example;
        writeln!(
            out,
            "           e.g. {} {} {} {} {} {}",
            e.ts,
            e.request_id.as_deref().unwrap_or("-"),
            e.op.as_deref().unwrap_or("-"),
            e.subject.as_deref().unwrap_or("-"),
            e.method.as_deref().unwrap_or("-"),
            e.path.as_deref().unwrap_or("-"),
        )?;
    }
    Ok(())
}

fn write_ops_table(idp: &IdpSummary, out: &mut impl Write) -> io::Result<()> {
    let width = idp
        .ops
        .iter()
        .map(|o| o.op.len())
        .chain(std::iter::once("op".len()))
        .max()
        .unwrap_or(2);
    let other = idp.outcomes.other > 0;
    write!(
        out,
        "  {:<width$}  {:>5}  {:>5}  {:>5}  {:>5}  {:>7}",
        "op", "total", "2xx", "4xx", "5xx", "refused"
    )?;
    if other {
        write!(out, "  {:>5}", "other")?;
    }
    writeln!(out)?;
    for op in &idp.ops {
        let o = &op.outcomes;
        write!(
            out,
            "  {:<width$}  {:>5}  {:>5}  {:>5}  {:>5}  {:>7}",
            op.op, o.requests, o.ok, o.client_error, o.server_error, o.refused
        )?;
        if other {
            write!(out, "  {:>5}", o.other)?;
        }
        writeln!(out)?;
    }
    Ok(())
}

/// `409 from upstream, scimType uniqueness: "User already exists"` / `401 refused by proxy (auth unknown-token)`.
fn reason_text(r: &Reason) -> String {
    let mut s = match (r.by, r.status) {
        ("upstream", status) => format!("{status} from upstream"),
        (_, status @ 400..=499) => format!("{status} refused by proxy"),
        (_, status) => format!("{status} from proxy"),
    };
    let mut extra = Vec::new();
    if let Some(e) = &r.error {
        extra.push(e.clone());
    }
    if let Some(a) = &r.auth {
        extra.push(format!("auth {a}"));
    }
    if !extra.is_empty() {
        s.push_str(&format!(" ({})", extra.join(", ")));
    }
    if let Some(t) = &r.scim_type {
        s.push_str(&format!(", scimType {t}"));
    }
    if let Some(d) = &r.detail {
        s.push_str(&format!(": {d:?}"));
    }
    s
}

fn plural(n: u64, one: &'static str, many: &'static str) -> &'static str {
    if n == 1 { one } else { many }
}
