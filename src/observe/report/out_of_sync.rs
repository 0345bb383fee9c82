//! `report --out-of-sync`: the users and groups whose latest write failed, computed from traffic
//! logs with the same rules as the status page's live list (so it survives restarts and covers
//! several replicas). Writes are taken in arrival order (`ts`).

use std::io::{self, BufRead, Write};

use super::read::Line;
use crate::observe::status::view::{OutOfSyncStatus, resync};
use crate::observe::status::{Entry, Failure, Identity, OutOfSync, is_write};

/// The writes of traffic logs, replayed into one out-of-sync list.
#[derive(Default)]
pub(super) struct Writes {
    lines: Vec<Line>,
    pub(super) skipped: u64,
}

impl Writes {
    /// Keeps the write records of `input`; other records are not needed, other lines are skipped.
    pub(super) fn read(&mut self, mut input: impl BufRead, name: &str) -> Result<(), String> {
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
                Ok(line) => {
                    let method = line.method.as_deref().unwrap_or("");
                    if is_write(method, line.resource.as_deref(), line.op.as_deref()) {
                        self.lines.push(line);
                    }
                }
                Err(_) => self.skipped += 1,
            }
        }
    }

    /// The list, the latest failure first.
    pub(super) fn out_of_sync(mut self) -> OutOfSyncStatus {
        // Stable: lines of one file keep their order when they arrived in the same millisecond.
        self.lines.sort_by(|a, b| a.ts.cmp(&b.ts));
        let mut set = OutOfSync::new(usize::MAX);
        for line in self.lines {
            let (Some(route), Some(resource)) = (line.route.as_deref(), line.resource.as_deref())
            else {
                continue;
            };
            if (200..300).contains(&line.status) {
                set.succeeded(
                    route,
                    resource,
                    line.resource_id.as_deref(),
                    line.subject.as_deref(),
                );
            } else if line.status >= 400 {
                set.failed(failure(line));
            }
        }
        let entries = set.entries();
        OutOfSyncStatus {
            count: entries.len(),
            limit: None,
            evicted: 0,
            resync: resync(&entries),
            entries,
        }
    }
}

fn failure(line: Line) -> Failure {
    Failure {
        ts: line.ts,
        request_id: line.request_id.unwrap_or_default(),
        route: line.route,
        client: line.client,
        method: line.method.unwrap_or_default(),
        op: line.op,
        resource: line.resource,
        resource_id: line.resource_id,
        subject: line.subject,
        status: line.status,
        upstream_status: line.upstream_status,
        scim_type: line.scim_type,
        detail: line.detail,
        error: line.error,
    }
}

/// The list for a person: per IdP what to do, then one line per resource.
pub(super) fn write_text(s: &OutOfSyncStatus, out: &mut impl Write) -> io::Result<()> {
    writeln!(
        out,
        "{} {} out of sync (latest write failed, no success since)",
        s.count,
        if s.count == 1 {
            "resource"
        } else {
            "resources"
        }
    )?;
    for r in &s.resync {
        writeln!(out)?;
        writeln!(out, "== {}/{}: {} ==", r.route, r.client, r.count)?;
        writeln!(out, "  what to do: {}", r.what_to_do)?;
        for e in s
            .entries
            .iter()
            .filter(|e| e.route == r.route && e.last.client.as_deref().unwrap_or("-") == r.client)
        {
            write_entry(e, out)?;
        }
    }
    Ok(())
}

fn write_entry(e: &Entry, out: &mut impl Write) -> io::Result<()> {
    let who = match &e.identity {
        Identity::Id(id) => match &e.subject {
            Some(s) => format!("id {id} ({s})"),
            None => format!("id {id}"),
        },
        Identity::Subject(s) => format!("{s} (not created)"),
    };
    let f = &e.last;
    write!(
        out,
        "  {} {who}: {} {} -> {} by {}",
        e.resource,
        f.ts,
        f.op.as_deref().unwrap_or("-"),
        f.status,
        f.answered_by()
    )?;
    if let Some(t) = &f.scim_type {
        write!(out, " {t}")?;
    }
    if let Some(d) = &f.detail {
        write!(out, ": {d}")?;
    }
    if let Some(err) = &f.error {
        write!(out, " (proxy: {err})")?;
    }
    writeln!(
        out,
        " [{} failed since {}, request {}]",
        e.failures, e.since, f.request_id
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_comes_from_writes_in_arrival_order_and_a_later_success_clears() {
        let log = [
            r#"{"ts":"2026-01-01T00:00:02.000Z","request_id":"b","route":"acme","client":"okta","method":"PATCH","status":503,"upstream_status":503,"resource":"User","op":"user.update","resource_id":"7"}"#,
            r#"{"ts":"2026-01-01T00:00:01.000Z","request_id":"a","route":"acme","client":"okta","method":"POST","status":409,"upstream_status":409,"resource":"User","op":"user.create","subject":"h:1111111111111111","scimType":"uniqueness","detail":"exists"}"#,
            r#"{"ts":"2026-01-01T00:00:03.000Z","request_id":"c","route":"acme","client":"okta","method":"GET","status":500,"resource":"User","op":"user.read","resource_id":"9"}"#,
            "not a record",
            r#"{"ts":"2026-01-01T00:00:04.000Z","request_id":"d","route":"acme","client":"okta","method":"PATCH","status":200,"upstream_status":200,"resource":"User","op":"user.update","resource_id":"7"}"#,
        ]
        .join("\n");
        let mut writes = Writes::default();
        writes.read(log.as_bytes(), "t").unwrap();
        let s = writes.out_of_sync();
        assert_eq!(writes_skipped(&log), 1);
        assert_eq!(s.count, 1, "{s:?}");
        let e = &s.entries[0];
        assert_eq!(e.identity, Identity::Subject("h:1111111111111111".into()));
        assert_eq!(e.last.scim_type.as_deref(), Some("uniqueness"));
        let mut text = Vec::new();
        write_text(&s, &mut text).unwrap();
        let text = String::from_utf8(text).unwrap();
        assert!(
            text.contains("Retry failed tasks") && text.contains("(not created)"),
            "{text}"
        );
    }

    fn writes_skipped(log: &str) -> u64 {
        let mut w = Writes::default();
        w.read(log.as_bytes(), "t").unwrap();
        w.skipped
    }
}
