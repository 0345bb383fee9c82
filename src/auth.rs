//! Pure inbound authentication: `Authorization: Bearer <old token>` -> the route's client, in constant time.

use sha2::{Digest, Sha256};
use subtle::{ConditionallySelectable, ConstantTimeEq};

use crate::config::Client;

/// Why a request was (or was not) let in; the traffic log's `auth` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthOutcome {
    /// Index of the matched client in the route's `clients`.
    Ok(usize),
    Missing,
    BadScheme,
    UnknownToken,
}

impl AuthOutcome {
    pub fn as_str(&self) -> &'static str {
        match self {
            AuthOutcome::Ok(_) => "ok",
            AuthOutcome::Missing => "missing",
            AuthOutcome::BadScheme => "bad-scheme",
            AuthOutcome::UnknownToken => "unknown-token",
        }
    }
}

/// SHA-256 of a token, as `token_sha256` holds it.
pub fn token_sha256(token: &[u8]) -> [u8; 32] {
    Sha256::digest(token).into()
}

/// Checks every `Authorization` header value of a request against the route's clients.
/// Several Authorization headers are ambiguous and refused.
pub fn authenticate<'a>(
    clients: &[Client],
    mut values: impl Iterator<Item = &'a [u8]>,
) -> AuthOutcome {
    let Some(value) = values.next() else {
        return AuthOutcome::Missing;
    };
    if values.next().is_some() {
        return AuthOutcome::BadScheme;
    }
    let Some(token) = bearer_token(value) else {
        return AuthOutcome::BadScheme;
    };
    match find_client(clients, &token_sha256(token)) {
        Some(i) => AuthOutcome::Ok(i),
        None => AuthOutcome::UnknownToken,
    }
}

/// The token of `Bearer <token>` (scheme case-insensitive, RFC 6750 token68 characters).
pub fn bearer_token(value: &[u8]) -> Option<&[u8]> {
    let (scheme, rest) = value.split_at(value.iter().position(|b| *b == b' ')?);
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return None;
    }
    let token = rest.trim_ascii();
    let token68 = |b: &u8| b.is_ascii_alphanumeric() || b"-._~+/=".contains(b);
    (!token.is_empty() && token.iter().all(token68)).then_some(token)
}

/// Compares against every hash of every client without stopping early, so timing tells nothing.
fn find_client(clients: &[Client], hash: &[u8; 32]) -> Option<usize> {
    let mut found = 0u32; // index + 1, 0 = none
    for (i, client) in clients.iter().enumerate() {
        let index = u32::try_from(i + 1).unwrap_or(u32::MAX);
        for known in &client.token_sha256 {
            let hit = known.ct_eq(hash) & found.ct_eq(&0);
            found = u32::conditional_select(&found, &index, hit);
        }
    }
    (found != 0).then(|| found as usize - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clients() -> Vec<Client> {
        vec![
            Client {
                name: "okta".into(),
                token_sha256: vec![token_sha256(b"okta-old")],
            },
            Client {
                name: "entra".into(),
                token_sha256: vec![token_sha256(b"entra-1"), token_sha256(b"entra-2")],
            },
        ]
    }

    fn auth(values: &[&str]) -> AuthOutcome {
        authenticate(&clients(), values.iter().map(|v| v.as_bytes()))
    }

    #[test]
    fn outcomes() {
        assert_eq!(auth(&["Bearer okta-old"]), AuthOutcome::Ok(0));
        assert_eq!(auth(&["bearer entra-2"]), AuthOutcome::Ok(1));
        assert_eq!(auth(&["BEARER  entra-1 "]), AuthOutcome::Ok(1));
        assert_eq!(auth(&[]), AuthOutcome::Missing);
        assert_eq!(auth(&["Basic b2t0YS1vbGQ="]), AuthOutcome::BadScheme);
        assert_eq!(auth(&["Bearer"]), AuthOutcome::BadScheme);
        assert_eq!(auth(&["Bearer "]), AuthOutcome::BadScheme);
        assert_eq!(auth(&["okta-old"]), AuthOutcome::BadScheme);
        assert_eq!(auth(&["Bearer okta old"]), AuthOutcome::BadScheme);
        assert_eq!(
            auth(&["Bearer okta-old", "Bearer okta-old"]),
            AuthOutcome::BadScheme
        );
        assert_eq!(auth(&["Bearer okta-olD"]), AuthOutcome::UnknownToken);
    }

    #[test]
    fn hash_matches_sha256sum() {
        // printf test | sha256sum
        assert_eq!(
            hex::encode(token_sha256(b"test")),
            "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
        );
    }
}
