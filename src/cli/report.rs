//! `report`: traffic logs summarised per IdP, as text or one JSON document.

use std::path::PathBuf;
use std::process::ExitCode;

pub(super) fn run(files: &[PathBuf], json: bool, out_of_sync: bool) -> ExitCode {
    let mut out = std::io::stdout().lock();
    let done = if out_of_sync {
        crate::observe::report::run_out_of_sync(files, json, &mut out)
    } else {
        crate::observe::report::run(files, json, &mut out)
    };
    match done {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("report: {e}");
            ExitCode::FAILURE
        }
    }
}
