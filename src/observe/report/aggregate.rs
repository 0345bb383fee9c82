//! Adding records up per IdP: outcomes by op, failures grouped by reason with first and last seen.

use std::collections::BTreeMap;
use std::io::BufRead;

use super::read::Line;
use super::summary::{Example, Failure, IdpSummary, OpSummary, Outcomes, Reason, Summary};

#[derive(Default)]
pub(super) struct Report {
    pub(super) records: u64,
    pub(super) skipped: u64,
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

impl Report {
    pub(super) fn add(&mut self, line: Line) {
        self.records += 1;
        let idp = self.idp_of(&line);
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
        if line.status >= 400 {
            idp.add_failure(line, answered_by_proxy);
        }
    }

    /// The IdP of `line` (its route and client), its first and last seen moved to take it in.
    fn idp_of(&mut self, line: &Line) -> &mut Idp {
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
        idp
    }

    pub(super) fn summary(self) -> Summary {
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

/// A detail with its hashed personal values (`h:` + 16 hex) made generic, so that "User h:… already
/// exists" groups as one reason whoever it names.
pub(super) fn generic_detail(detail: &str) -> String {
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

impl Idp {
    /// A failed request counted under its reason; the latest one is kept as the example.
    fn add_failure(&mut self, line: Line, answered_by_proxy: bool) {
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
        match self.failures.get_mut(&reason) {
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
                self.failures.insert(
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
}

impl Report {
    pub(super) fn read(&mut self, input: impl BufRead, name: &str) -> Result<(), String> {
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
}
