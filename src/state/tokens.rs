//! Secrets the config names by file or variable: reading them, and reporting a failure under the
//! key that named them.

use crate::config::{ProblemList, TokenSource};

/// Reads a v2 token from its file or variable. Errors never contain the token.
pub fn read_token(source: &TokenSource) -> Result<String, String> {
    match source {
        TokenSource::File(path) => {
            std::fs::read_to_string(path).map_err(|e| format!("cannot read: {e}"))
        }
        TokenSource::Env(var) => std::env::var(var).map_err(|e| match e {
            std::env::VarError::NotPresent => "the variable is not set".to_string(),
            std::env::VarError::NotUnicode(_) => "the variable is not valid UTF-8".to_string(),
        }),
    }
}

/// The key a secret was configured under: `{prefix}_file` or `{prefix}_env`.
pub(super) fn source_key(prefix: &str, source: &TokenSource) -> String {
    match source {
        TokenSource::File(_) => format!("{prefix}_file"),
        TokenSource::Env(_) => format!("{prefix}_env"),
    }
}

/// Reads the secret `source` names and `make`s it into what it is for. A failure of either is
/// added under the key it was configured with, as "`what` from `source`: why" (never the secret).
pub(super) fn load_secret<T>(
    source: &TokenSource,
    key_prefix: &str,
    what: &str,
    problems: &mut ProblemList,
    make: impl FnOnce(String) -> Result<T, String>,
) -> Option<T> {
    match read_token(source).and_then(make) {
        Ok(value) => Some(value),
        Err(e) => {
            problems.add(
                &source_key(key_prefix, source),
                format!("{what} from {source}: {e}"),
            );
            None
        }
    }
}
