//! `scim-proxy report`: summarises traffic logs per IdP (counts by op and outcome, failures by reason).
//!
//! Reads JSON lines as `traffic_log` writes them; any other line (a tracing line, a torn line) is skipped
//! and counted. Timestamps are compared as text, which orders the writer's fixed-width UTC form.

mod aggregate;
mod out_of_sync;
mod read;
mod summary;
#[cfg(test)]
mod tests;
mod text;

use std::fs::File;
use std::io::{self, BufReader, Write};
use std::path::PathBuf;

use aggregate::Report;
pub use summary::{Example, Failure, IdpSummary, OpSummary, Outcomes, Reason, Summary};
use text::write_text;

/// `report --out-of-sync`: reads `inputs` like [`run`] and writes the users and groups whose latest
/// write failed (text, or the `/status.json` `out_of_sync` shape with `json`).
pub fn run_out_of_sync(inputs: &[PathBuf], json: bool, out: &mut impl Write) -> Result<(), String> {
    let mut writes = out_of_sync::Writes::default();
    if inputs.is_empty() {
        writes.read(io::stdin().lock(), "stdin")?;
    }
    for path in inputs {
        if path.as_os_str() == "-" {
            writes.read(io::stdin().lock(), "stdin")?;
        } else {
            let file = File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
            writes.read(BufReader::new(file), &path.display().to_string())?;
        }
    }
    let list = writes.out_of_sync();
    let written = if json {
        serde_json::to_writer_pretty(&mut *out, &list)
            .map_err(io::Error::from)
            .and_then(|()| writeln!(out))
    } else {
        out_of_sync::write_text(&list, out)
    };
    match written.and_then(|()| out.flush()) {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => other.map_err(|e| format!("cannot write the report: {e}")),
    }
}

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
