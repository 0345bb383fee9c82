//! `scim-proxy report`: summarises traffic logs per IdP (counts by op and outcome, failures by reason).
//!
//! Reads JSON lines as `traffic_log` writes them; any other line (a tracing line, a torn line) is skipped
//! and counted. Timestamps are compared as text, which orders the writer's fixed-width UTC form.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Write};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Reads `inputs` (stdin when empty, or for `-`) and writes the report to `out`: text for a person, or one
/// JSON document with `json`.
pub fn run(inputs: &[PathBuf], json: bool, out: &mut impl Write) -> Result<(), String> {
    let mut report = Report::default();
    if inputs.is_empty() {
        report.read(io::stdin().lock(), "stdin")?;
    }
    for path in inputs {
        if path.as_os_str() == "-" {
            report.read(io::stdin().lock(), "stdin")?;
        } else {
            let file = File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
            report.read(BufReader::new(file), &path.display().to_string())?;
        }
    }
    let summary = report.summary();
    let written = if json {
        serde_json::to_writer_pretty(&mut *out, &summary)
            .map_err(io::Error::from)
            .and_then(|()| writeln!(out))
    } else {
        write_text(&summary, out)
    };
    match written.and_then(|()| out.flush()) {
        // `report … | head`: the reader has what it wanted; that is not a failure.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => other.map_err(|e| format!("cannot write the report: {e}")),
    }
}

/// The fields of a traffic record the report uses; `ts` and `status` make a line a record.
#[derive(Debug, Deserialize)]
struct Line {
    ts: String,
    status: u16,
    #[serde(default)]
    request_id: Option<String>,
    #[serde(default)]
    route: Option<String>,
    #[serde(default)]
    client: Option<String>,
    #[serde(default)]
    method: Option<String>,
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    upstream_status: Option<u16>,
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    op: Option<String>,
    #[serde(default)]
    subject: Option<String>,
    #[serde(default)]
    detail: Option<String>,
    #[serde(default, rename = "scimType")]
    scim_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Default)]
struct Report {
    records: u64,
    skipped: u64,
    idps: BTreeMap<(String, String), Idp>,
}

#[derive(Default)]
struct Idp {
    route: Option<String>,
    client: Option<String>,
    first_seen: String,
    last_seen: String,
    outcomes: Outcomes,
    ops: BTreeMap<String, Outcomes>,
    failures: BTreeMap<Reason, Failure>,
}

/// Requests by outcome: 2xx, 4xx and 5xx as the client saw them, `refused` when the proxy answered a
/// client fault itself (auth, route, bad target), `other` for 1xx/3xx.
#[derive(Debug, Default, Clone, Serialize, PartialEq, Eq)]
pub struct Outcomes {
    pub requests: u64,
    #[serde(rename = "2xx")]
    pub ok: u64,
    #[serde(rename = "4xx")]
    pub client_error: u64,
    #[serde(rename = "5xx")]
    pub server_error: u64,
    pub refused: u64,
    pub other: u64,
}

impl Outcomes {
    fn add(&mut self, outcome: Outcome) {
        self.requests += 1;
        match outcome {
            Outcome::Ok => self.ok += 1,
            Outcome::ClientError => self.client_error += 1,
            Outcome::ServerError => self.server_error += 1,
            Outcome::Refused => self.refused += 1,
            Outcome::Other => self.other += 1,
        }
    }
}

#[derive(Clone, Copy)]
enum Outcome {
    Ok,
    ClientError,
    ServerError,
    Refused,
    Other,
}

/// Why a request failed: what answered, with which status and SCIM error.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Reason {
    pub status: u16,
    /// `upstream` when Netskope answered, `proxy` when the proxy did.
    pub by: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Only for a refused authentication.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth: Option<String>,
    #[serde(rename = "scimType", skip_serializing_if = "Option::is_none")]
    pub scim_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Failure {
    #[serde(flatten)]
    pub reason: Reason,
    pub count: u64,
    pub first_seen: String,
    pub last_seen: String,
    /// The latest request with this reason.
    pub example: Example,
}

#[derive(Debug, Clone, Serialize)]
pub struct Example {
    pub ts: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub op: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

/// The report as printed with `--json`.
#[derive(Debug, Serialize)]
pub struct Summary {
    pub records: u64,
    /// Lines that were not traffic records.
    pub skipped_lines: u64,
    pub idps: Vec<IdpSummary>,
}

#[derive(Debug, Serialize)]
pub struct IdpSummary {
    /// `route/client`; `-` for what is unknown (e.g. no client when authentication failed).
    pub idp: String,
    pub route: Option<String>,
    pub client: Option<String>,
    pub first_seen: String,
    pub last_seen: String,
    pub outcomes: Outcomes,
    /// Busiest first.
    pub ops: Vec<OpSummary>,
    /// Most frequent first.
    pub failures: Vec<Failure>,
}

#[derive(Debug, Serialize)]
pub struct OpSummary {
    pub op: String,
    #[serde(flatten)]
    pub outcomes: Outcomes,
}

impl Report {
    fn read(&mut self, input: impl BufRead, name: &str) -> Result<(), String> {
        let mut input = input;
        let mut buf = Vec::new();
        loop {
            buf.clear();
            let n = input
                .read_until(b'\n', &mut buf)
                .map_err(|e| format!("{name}: {e}"))?;
            if n == 0 {
                return Ok(());
            }
            if buf.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            match serde_json::from_slice::<Line>(&buf) {
                Ok(line) => self.add(line),
                Err(_) => self.skipped += 1,
            }
        }
    }

    fn add(&mut self, line: Line) {
        self.records += 1;
        let key = (
            line.route.clone().unwrap_or_default(),
            line.client.clone().unwrap_or_default(),
        );
        let idp = self.idps.entry(key).or_insert_with(|| Idp {
            route: line.route.clone(),
            client: line.client.clone(),
            first_seen: line.ts.clone(),
            last_seen: line.ts.clone(),
            ..Idp::default()
        });
        if line.ts < idp.first_seen {
            idp.first_seen = line.ts.clone();
        }
        if line.ts > idp.last_seen {
            idp.last_seen = line.ts.clone();
        }
        let answered_by_proxy = line.upstream_status.is_none();
        let outcome = match line.status {
            400..=499 if answered_by_proxy => Outcome::Refused,
            200..=299 => Outcome::Ok,
            400..=499 => Outcome::ClientError,
            500..=599 => Outcome::ServerError,
            _ => Outcome::Other,
        };
        idp.outcomes.add(outcome);
        let op = line.op.clone().unwrap_or_else(|| "-".to_owned());
        idp.ops.entry(op).or_default().add(outcome);
        if line.status < 400 {
            return;
        }
        let reason = Reason {
            status: line.status,
            by: if answered_by_proxy {
                "proxy"
            } else {
                "upstream"
            },
            error: line.error.clone(),
            auth: line.auth.clone().filter(|a| a != "ok"),
            scim_type: line.scim_type.clone(),
            detail: line.detail.as_deref().map(generic_detail),
        };
        let example = Example {
            ts: line.ts.clone(),
            request_id: line.request_id,
            op: line.op,
            subject: line.subject,
            method: line.method,
            path: line.path,
        };
        match idp.failures.get_mut(&reason) {
            Some(f) => {
                f.count += 1;
                if line.ts < f.first_seen {
                    f.first_seen = line.ts.clone();
                }
                if line.ts >= f.last_seen {
                    f.last_seen = line.ts;
                    f.example = example;
                }
            }
            None => {
                idp.failures.insert(
                    reason.clone(),
                    Failure {
                        reason,
                        count: 1,
                        first_seen: line.ts.clone(),
                        last_seen: line.ts,
                        example,
                    },
                );
            }
        }
    }

    fn summary(self) -> Summary {
        let idps = self
            .idps
            .into_values()
            .map(|idp| {
                let mut ops: Vec<OpSummary> = idp
                    .ops
                    .into_iter()
                    .map(|(op, outcomes)| OpSummary { op, outcomes })
                    .collect();
                ops.sort_by(|a, b| {
                    b.outcomes
                        .requests
                        .cmp(&a.outcomes.requests)
                        .then_with(|| a.op.cmp(&b.op))
                });
                let mut failures: Vec<Failure> = idp.failures.into_values().collect();
                failures
                    .sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.reason.cmp(&b.reason)));
                IdpSummary {
                    idp: idp_label(idp.route.as_deref(), idp.client.as_deref()),
                    route: idp.route,
                    client: idp.client,
                    first_seen: idp.first_seen,
                    last_seen: idp.last_seen,
                    outcomes: idp.outcomes,
                    ops,
                    failures,
                }
            })
            .collect();
        Summary {
            records: self.records,
            skipped_lines: self.skipped,
            idps,
        }
    }
}

/// How a group of records is named: `route/client`, or `route/(unauthenticated)` for requests that
/// no configured client token matched (they are not an IdP of their own).
fn idp_label(route: Option<&str>, client: Option<&str>) -> String {
    format!(
        "{}/{}",
        route.unwrap_or("(no route)"),
        client.unwrap_or(UNAUTHENTICATED)
    )
}

const UNAUTHENTICATED: &str = "(unauthenticated)";

fn write_text(s: &Summary, out: &mut impl Write) -> io::Result<()> {
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
    writeln!(out)?;
    for idp in &s.idps {
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
        if idp.failures.is_empty() {
            writeln!(out)?;
            writeln!(out, "  no failures")?;
            continue;
        }
        writeln!(out)?;
        writeln!(out, "  failures by reason")?;
        for f in &idp.failures {
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

/// A detail with its hashed personal values (`h:` + 16 hex) made generic, so that "User h:… already
/// exists" groups as one reason whoever it names.
fn generic_detail(detail: &str) -> String {
    let mut out = String::with_capacity(detail.len());
    let mut rest = detail;
    while let Some(i) = rest.find("h:") {
        let after = &rest[i + 2..];
        let hashed = after.len() >= 16
            && after.as_bytes()[..16]
                .iter()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        let starts_word = !rest[..i].ends_with(|c: char| c.is_alphanumeric());
        if hashed && starts_word {
            out.push_str(&rest[..i]);
            out.push_str("h:…");
            rest = &after[16..];
        } else {
            out.push_str(&rest[..i + 2]);
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

fn plural(n: u64, one: &'static str, many: &'static str) -> &'static str {
    if n == 1 { one } else { many }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A morning of three IdPs behind one proxy, as the traffic log writes it (pii = hash).
    const LOG: &str = r#"{"ts":"2025-03-01T09:00:00.112Z","request_id":"e-001","route":"entra","client":"entra-prod","src_ip":"20.44.16.7","method":"GET","path":"/SCIM/v2/Users?filter=userName%20eq%20%22h:5f0c1d2e3a4b5c6d%22","upstream_path":"/api/v2/scim/Users?filter=userName%20eq%20%22h:5f0c1d2e3a4b5c6d%22","status":200,"upstream_status":200,"duration_ms":212,"upstream_ms":201,"bytes_in":0,"bytes_out":112,"auth":"ok","resource":"User","op":"user.lookup","subject":"h:5f0c1d2e3a4b5c6d"}
{"ts":"2025-03-01T09:00:00.530Z","request_id":"e-002","route":"entra","client":"entra-prod","src_ip":"20.44.16.7","method":"POST","path":"/SCIM/v2/Users","upstream_path":"/api/v2/scim/Users","status":201,"upstream_status":201,"duration_ms":388,"upstream_ms":377,"bytes_in":702,"bytes_out":655,"auth":"ok","resource":"User","op":"user.create","resource_id":"2819c223-7f76-453a-919d-413861904646","subject":"h:5f0c1d2e3a4b5c6d"}
{"ts":"2025-03-01T09:00:01.004Z","request_id":"e-003","route":"entra","client":"entra-prod","src_ip":"20.44.16.7","method":"GET","path":"/SCIM/v2/Users?filter=userName%20eq%20%22h:0a1b2c3d4e5f6071%22","upstream_path":"/api/v2/scim/Users?filter=userName%20eq%20%22h:0a1b2c3d4e5f6071%22","status":200,"upstream_status":200,"duration_ms":190,"upstream_ms":181,"bytes_in":0,"bytes_out":112,"auth":"ok","resource":"User","op":"user.lookup","subject":"h:0a1b2c3d4e5f6071"}
{"ts":"2025-03-01T09:00:01.390Z","request_id":"e-004","route":"entra","client":"entra-prod","src_ip":"20.44.16.7","method":"PATCH","path":"/SCIM/v2/Users/6e2e0c5f-0d36-4c8b-9f0e-3b9d2b1f7a10","upstream_path":"/api/v2/scim/Users/6e2e0c5f-0d36-4c8b-9f0e-3b9d2b1f7a10","status":204,"upstream_status":204,"duration_ms":240,"upstream_ms":229,"bytes_in":148,"bytes_out":0,"auth":"ok","resource":"User","op":"user.deactivate","resource_id":"6e2e0c5f-0d36-4c8b-9f0e-3b9d2b1f7a10"}
{"ts":"2025-03-01T09:40:12.007Z","request_id":"e-005","route":"entra","client":"entra-prod","src_ip":"20.44.16.7","method":"POST","path":"/SCIM/v2/Users","upstream_path":"/api/v2/scim/Users","status":504,"duration_ms":30002,"bytes_in":688,"bytes_out":160,"auth":"ok","resource":"User","op":"user.create","subject":"h:9d8c7b6a59483726","error":"upstream-timeout"}
2025-03-01T09:41:00.000Z  WARN scim_proxy: some tracing line that ended up in the file

{"ts":"2025-03-01T10:00:00.250Z","request_id":"o-001","route":"okta","client":"okta","src_ip":"52.5.1.9","method":"GET","path":"/SCIM/v2/Users?startIndex=1&count=2","upstream_path":"/api/v2/scim/Users?startIndex=1&count=2","status":200,"upstream_status":200,"duration_ms":150,"upstream_ms":141,"bytes_in":0,"bytes_out":900,"auth":"ok","resource":"User","op":"user.list"}
{"ts":"2025-03-01T10:02:10.000Z","request_id":"o-002","route":"okta","client":"okta","src_ip":"52.5.1.9","method":"POST","path":"/SCIM/v2/Users","upstream_path":"/api/v2/scim/Users","status":409,"upstream_status":409,"duration_ms":201,"upstream_ms":190,"bytes_in":530,"bytes_out":140,"auth":"ok","resource":"User","op":"user.create","subject":"h:1111aaaa2222bbbb","detail":"User already exists in the database.","scimType":"uniqueness"}
{"ts":"2025-03-01T10:02:40.000Z","request_id":"o-003","route":"okta","client":"okta","src_ip":"52.5.1.9","method":"POST","path":"/SCIM/v2/Users","upstream_path":"/api/v2/scim/Users","status":409,"upstream_status":409,"duration_ms":199,"upstream_ms":188,"bytes_in":528,"bytes_out":140,"auth":"ok","resource":"User","op":"user.create","subject":"h:3333cccc4444dddd","detail":"User already exists in the database.","scimType":"uniqueness"}
{"ts":"2025-03-01T10:01:00.000Z","request_id":"o-004","route":"okta","client":"okta","src_ip":"52.5.1.9","method":"GET","path":"/SCIM/v2/Users?filter=userName%20eq%20%22h:1111aaaa2222bbbb%22&startIndex=1&count=100","upstream_path":"/api/v2/scim/Users?filter=userName%20eq%20%22h:1111aaaa2222bbbb%22&startIndex=1&count=100","status":200,"upstream_status":200,"duration_ms":160,"upstream_ms":150,"bytes_in":0,"bytes_out":112,"auth":"ok","resource":"User","op":"user.lookup","subject":"h:1111aaaa2222bbbb"}
{"ts":"2025-03-01T11:00:00.000Z","request_id":"j-001","route":"jumpcloud","src_ip":"34.82.0.4","method":"GET","path":"/SCIM/v2/Users?filter=userName%20eq%20%22h:7777eeee8888ffff%22","status":401,"duration_ms":1,"bytes_in":0,"bytes_out":182,"auth":"unknown-token","resource":"User","op":"user.lookup","subject":"h:7777eeee8888ffff","error":"unauthorized"}
{"ts":"2025-03-01T11:00:05.000Z","request_id":"j-002","route":"jumpcloud","src_ip":"34.82.0.4","method":"POST","path":"/SCIM/v2/Users","status":401,"duration_ms":1,"bytes_in":0,"bytes_out":182,"auth":"unknown-token","resource":"User","op":"user.create","error":"unauthorized"}
{"ts":"2025-03-01T11:00:10.000Z","request_id":"j-003","route":"jumpcloud","src_ip":"34.82.0.4","method":"POST","path":"/SCIM/v2/Groups","status":401,"duration_ms":1,"bytes_in":0,"bytes_out":182,"auth":"unknown-token","resource":"Group","op":"group.create","error":"unauthorized"}
{"ts":"truncated
"#;

    fn report(input: &str, json: bool) -> String {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("traffic.log");
        std::fs::write(&path, input).unwrap();
        let mut out = Vec::new();
        run(&[path], json, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn text_report() {
        let want = r#"12 requests from 2 IdPs, 3 of them unauthenticated (2 lines skipped: not traffic records)

== entra/entra-prod ==
  first seen  2025-03-01T09:00:00.112Z
  last seen   2025-03-01T09:40:12.007Z
  requests    5: 4 2xx, 0 4xx, 1 5xx, 0 refused by proxy

  op               total    2xx    4xx    5xx  refused
  user.create          2      1      0      1        0
  user.lookup          2      2      0      0        0
  user.deactivate      1      1      0      0        0

  failures by reason
       1 x 504 from proxy (upstream-timeout)
           first 2025-03-01T09:40:12.007Z  last 2025-03-01T09:40:12.007Z
           e.g. 2025-03-01T09:40:12.007Z e-005 user.create h:9d8c7b6a59483726 POST /SCIM/v2/Users

== jumpcloud/(unauthenticated) (no configured client token matched) ==
  first seen  2025-03-01T11:00:00.000Z
  last seen   2025-03-01T11:00:10.000Z
  requests    3: 0 2xx, 0 4xx, 0 5xx, 3 refused by proxy

  op            total    2xx    4xx    5xx  refused
  group.create      1      0      0      0        1
  user.create       1      0      0      0        1
  user.lookup       1      0      0      0        1

  failures by reason
       3 x 401 refused by proxy (unauthorized, auth unknown-token)
           first 2025-03-01T11:00:00.000Z  last 2025-03-01T11:00:10.000Z
           e.g. 2025-03-01T11:00:10.000Z j-003 group.create - POST /SCIM/v2/Groups

== okta/okta ==
  first seen  2025-03-01T10:00:00.250Z
  last seen   2025-03-01T10:02:40.000Z
  requests    4: 2 2xx, 2 4xx, 0 5xx, 0 refused by proxy

  op           total    2xx    4xx    5xx  refused
  user.create      2      0      2      0        0
  user.list        1      1      0      0        0
  user.lookup      1      1      0      0        0

  failures by reason
       2 x 409 from upstream, scimType uniqueness: "User already exists in the database."
           first 2025-03-01T10:02:10.000Z  last 2025-03-01T10:02:40.000Z
           e.g. 2025-03-01T10:02:40.000Z o-003 user.create h:3333cccc4444dddd POST /SCIM/v2/Users
"#;
        assert_eq!(report(LOG, false), want);
    }

    #[test]
    fn json_report() {
        let v: serde_json::Value = serde_json::from_str(&report(LOG, true)).unwrap();
        assert_eq!(v["records"], 12);
        assert_eq!(v["skipped_lines"], 2);
        let idps = v["idps"].as_array().unwrap();
        let names: Vec<&str> = idps.iter().map(|i| i["idp"].as_str().unwrap()).collect();
        assert_eq!(
            names,
            [
                "entra/entra-prod",
                "jumpcloud/(unauthenticated)",
                "okta/okta"
            ]
        );

        let entra = &idps[0];
        assert_eq!(entra["route"], "entra");
        assert_eq!(entra["first_seen"], "2025-03-01T09:00:00.112Z");
        assert_eq!(entra["last_seen"], "2025-03-01T09:40:12.007Z");
        assert_eq!(
            entra["outcomes"],
            serde_json::json!({"requests": 5, "2xx": 4, "4xx": 0, "5xx": 1, "refused": 0, "other": 0})
        );
        assert_eq!(
            entra["ops"][0],
            serde_json::json!({"op": "user.create", "requests": 2, "2xx": 1, "4xx": 0, "5xx": 1, "refused": 0, "other": 0})
        );
        assert_eq!(
            entra["failures"][0],
            serde_json::json!({"status": 504, "by": "proxy", "error": "upstream-timeout", "count": 1,
                "first_seen": "2025-03-01T09:40:12.007Z", "last_seen": "2025-03-01T09:40:12.007Z",
                "example": {"ts": "2025-03-01T09:40:12.007Z", "request_id": "e-005", "op": "user.create",
                    "subject": "h:9d8c7b6a59483726", "method": "POST", "path": "/SCIM/v2/Users"}})
        );

        let jumpcloud = &idps[1];
        assert_eq!(jumpcloud["client"], serde_json::Value::Null);
        assert_eq!(jumpcloud["outcomes"]["refused"], 3);
        let f = &jumpcloud["failures"][0];
        assert_eq!(
            (
                f["status"].as_u64(),
                f["auth"].as_str(),
                f["count"].as_u64()
            ),
            (Some(401), Some("unknown-token"), Some(3))
        );

        let okta = &idps[2];
        assert_eq!(okta["failures"].as_array().unwrap().len(), 1);
        let f = &okta["failures"][0];
        assert_eq!(f["by"], "upstream");
        assert_eq!(f["scimType"], "uniqueness");
        assert_eq!(f["detail"], "User already exists in the database.");
        assert_eq!(f["count"], 2);
        assert_eq!(f["example"]["request_id"], "o-003", "the latest example");
        assert_eq!(f["first_seen"], "2025-03-01T10:02:10.000Z");
        assert_eq!(
            okta["first_seen"], "2025-03-01T10:00:00.250Z",
            "out-of-order lines"
        );
    }

    #[test]
    fn reads_what_the_writer_writes() {
        use crate::observe::traffic_log::{Pii, PiiPolicy, TrafficLog, TrafficRecord};
        use crate::scim::reading::read_request;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.log");
        let pii = PiiPolicy::new(Pii::Hash, b"k".to_vec());
        {
            let log = TrafficLog::file(&path, 1 << 20, 1).unwrap();
            let body = serde_json::json!({"userName": "a@b.c"});
            let reading = read_request(&http::Method::POST, "/Users", None, Some(&body));
            let mut rec = TrafficRecord::new(
                "r1",
                [10, 0, 0, 1].into(),
                &http::Method::POST,
                "/SCIM/v2/Users",
                &pii,
            );
            rec.route = Some("acme".into());
            rec.client = Some("okta".into());
            rec.status = 409;
            rec.upstream_status = Some(409);
            rec.set_reading(&reading, &pii);
            rec.set_upstream_error(
                &serde_json::json!({"scimType": "uniqueness", "detail": "a@b.c exists"}),
                &reading,
                &pii,
            );
            log.write(&rec);
        }
        let mut out = Vec::new();
        run(&[path], true, &mut out).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["records"], 1);
        let f = &v["idps"][0]["failures"][0];
        let h = pii.apply("a@b.c").unwrap();
        assert_eq!(f["detail"], "h:… exists", "grouped whoever it names");
        assert_eq!(f["example"]["subject"], h);
        assert_eq!(f["example"]["op"], "user.create");
    }

    #[test]
    fn hashed_names_in_details_group_together() {
        let line = |id: &str, h: &str| {
            format!(
                r#"{{"ts":"2025-03-01T10:0{id}:00.000Z","request_id":"r{id}","route":"okta","client":"okta","status":409,"upstream_status":409,"op":"user.create","subject":"{h}","detail":"User {h} already exists","scimType":"uniqueness"}}"#
            )
        };
        let log = [
            line("1", "h:1111aaaa2222bbbb"),
            line("2", "h:3333cccc4444dddd"),
        ]
        .join("\n");
        let v: serde_json::Value = serde_json::from_str(&report(&log, true)).unwrap();
        let failures = v["idps"][0]["failures"].as_array().unwrap();
        assert_eq!(failures.len(), 1);
        assert_eq!(failures[0]["detail"], "User h:… already exists");
        assert_eq!(failures[0]["count"], 2);
        assert_eq!(
            generic_detail("path:0123456789abcdef0 h:0123"),
            "path:0123456789abcdef0 h:0123"
        );
    }

    #[test]
    fn empty_input_and_missing_file() {
        assert_eq!(report("", false), "0 requests from 0 IdPs\n");
        let mut out = Vec::new();
        let err = run(
            &[PathBuf::from("/nonexistent/traffic.log")],
            false,
            &mut out,
        )
        .unwrap_err();
        assert!(err.starts_with("/nonexistent/traffic.log: "), "{err}");
    }

    #[test]
    fn several_files_add_up() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("x.log.1"), dir.path().join("x.log"));
        let mut lines = LOG.lines();
        std::fs::write(&a, lines.by_ref().take(3).collect::<Vec<_>>().join("\n")).unwrap();
        std::fs::write(&b, lines.collect::<Vec<_>>().join("\n")).unwrap();
        let mut out = Vec::new();
        run(&[a, b], true, &mut out).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            (v["records"].as_u64(), v["skipped_lines"].as_u64()),
            (Some(12), Some(2))
        );
    }
}
