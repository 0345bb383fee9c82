//! `hash-token`: a bearer token on stdin becomes the `token_sha256` value for `[[routes.clients]]`.

use std::io::Read;
use std::process::ExitCode;

pub(super) fn run() -> ExitCode {
    let mut input = Vec::new();
    if let Err(e) = std::io::stdin().take(64 * 1024).read_to_end(&mut input) {
        eprintln!("cannot read the token from stdin: {e}");
        return ExitCode::FAILURE;
    }
    // A trailing newline from `echo` or a file is not part of the token.
    let token = input.trim_ascii();
    if token.is_empty() {
        eprintln!("no token on stdin (usage: printf '%s' \"$TOKEN\" | scim-proxy hash-token)");
        return ExitCode::from(2);
    }
    if crate::auth::bearer_token(&[b"Bearer ".as_slice(), token].concat()).is_none() {
        eprintln!(
            "warning: this token has characters a bearer token cannot carry; no IdP can send it"
        );
    }
    println!("{}", hex::encode(crate::auth::token_sha256(token)));
    ExitCode::SUCCESS
}
