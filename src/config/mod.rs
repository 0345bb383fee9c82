//! The config file, in stages: `raw` (the TOML as serde reads it) -> `validate` -> `model` (the
//! validated `Config` every other folder reads). `values` parses single values; `problems` says
//! what is wrong. No I/O here.
//!
//! Every problem is collected (not just the first) and names the file, the key and the reason.
//! Unknown keys are errors: a misplaced key must never be silently ignored.

mod model;
mod problems;
mod raw;
mod validate;
mod values;

#[cfg(test)]
mod tests;

use std::path::Path;

pub use model::{
    Acme, AcmeChallenge, AcmeEab, Admin, Client, Config, Egress, ForwardProxy,
    LETS_ENCRYPT_DIRECTORY, Limits, Listen, Log, Pacing, PiiMode, PublicUrl, Reload, Route,
    TlsFiles, TokenSource, TrafficSink, UpstreamAuth, UpstreamBase,
};
pub(crate) use problems::ProblemList;
pub use problems::{Problem, Problems};
pub use values::{
    normalize_host, parse_forward_proxy, parse_public_url, parse_size, parse_timestamp,
    parse_upstream,
};

/// Parses and validates config text read from `file`. Relative paths resolve against `file`'s directory.
pub fn parse(text: &str, file: &Path) -> Result<Config, Problems> {
    let (raw, unknown) = raw::read(text).map_err(|e| {
        // toml's message already says the line, the column and the key; its caret excerpt only
        // reads right on lines of its own.
        Problems::whole_file(file, e.to_string().trim_end().to_string())
    })?;
    let base_dir = file.parent().map(Path::to_path_buf).unwrap_or_default();
    validate::Validator::new(file).config(raw, &unknown, &base_dir)
}
