//! `report`: traffic logs summarised per IdP, as text or one JSON document.

use std::path::PathBuf;
use std::process::ExitCode;

pub(super) fn run(files: &[PathBuf], json: bool) -> ExitCode {
    let mut out = std::io::stdout().lock();
    match crate::observe::report::run(files, json, &mut out) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("report: {e}");
            ExitCode::FAILURE
        }
    }
}
