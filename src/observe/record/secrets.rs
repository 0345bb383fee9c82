//! Keeping the route's v2 token and the IdP tokens out of a record as it is written: every string
//! field is checked, paths also percent-decoded.

use percent_encoding::percent_decode_str;
use serde_json::Value;

use super::TrafficRecord;
use crate::observe::credentials::MASK;

impl TrafficRecord {
    /// The record as one JSON line (without its newline), no string in it holding a secret. Only a
    /// record that does hold one is copied to be masked; the usual one is written as it is.
    pub(crate) fn to_masked_json(&self) -> serde_json::Result<Vec<u8>> {
        if self.holds_any_secret() {
            serde_json::to_vec(&self.with_secrets_masked())
        } else {
            serde_json::to_vec(self)
        }
    }

    /// Whether [`Self::with_secrets_masked`] would change anything.
    fn holds_any_secret<'a>(&'a self) -> bool {
        let (secrets, hashes) = (&self.secrets, &self.token_hashes);
        if secrets.is_empty() && hashes.is_empty() {
            return false;
        }
        let path_holds = |s: &str| {
            holds_secret(s, secrets)
                || holds_secret(&percent_decode_str(s).decode_utf8_lossy(), secrets)
        };
        let paths = [Some(self.path.as_str()), self.upstream_path.as_deref()];
        // The two paths share most pieces (`Users`, the id): each distinct one is hashed once.
        let mut judged: Vec<&str> = Vec::with_capacity(16);
        let mut piece_is_token = |piece: &'a str| {
            if judged.contains(&piece) {
                return false;
            }
            judged.push(piece);
            is_token_piece(piece, hashes)
        };
        let fields = [
            &self.route,
            &self.client,
            &self.resource_id,
            &self.subject,
            &self.detail,
            &self.scim_type,
        ];
        paths.into_iter().flatten().any(path_holds)
            || paths
                .into_iter()
                .flatten()
                .flat_map(path_pieces)
                .any(|(piece, _)| piece_is_token(piece))
            || fields
                .into_iter()
                .flatten()
                .any(|s| holds_secret(s, secrets))
            || [&self.request_body, &self.response_body]
                .into_iter()
                .flatten()
                .any(|v| value_holds_secret(v, secrets))
    }

    /// A copy with every secret masked in every string field, paths also percent-decoded.
    fn with_secrets_masked(&self) -> TrafficRecord {
        let secrets = &self.secrets;
        let mut rec = self.clone();
        let mask = |s: &mut String| mask_secrets_in(s, secrets);
        let mask_path = |s: &mut String| {
            mask(s);
            mask_hashed_pieces(s, &self.token_hashes);
            let decoded = percent_decode_str(s).decode_utf8_lossy();
            if holds_secret(&decoded, secrets) {
                let mut d = decoded.into_owned();
                mask(&mut d);
                *s = d;
            }
        };
        mask_path(&mut rec.path);
        if let Some(p) = rec.upstream_path.as_mut() {
            mask_path(p);
        }
        for field in [
            &mut rec.route,
            &mut rec.client,
            &mut rec.resource_id,
            &mut rec.subject,
            &mut rec.detail,
            &mut rec.scim_type,
        ]
        .into_iter()
        .flatten()
        {
            mask(field);
        }
        for body in [&mut rec.request_body, &mut rec.response_body]
            .into_iter()
            .flatten()
        {
            mask_value(body, secrets);
        }
        rec
    }
}

/// The pieces of a path and query between `/ ? & ; =`, each with the separator after it.
fn path_pieces(s: &str) -> impl Iterator<Item = (&str, &str)> {
    s.split_inclusive(['/', '?', '&', ';', '='])
        .map(|piece| match piece.char_indices().last() {
            Some((k, '/' | '?' | '&' | ';' | '=')) => piece.split_at(k),
            _ => (piece, ""),
        })
}

/// A piece whose percent-decoded bytes hash to one of the IdP tokens' `hashes`.
fn is_token_piece(piece: &str, hashes: &[[u8; 32]]) -> bool {
    if hashes.is_empty() {
        return false;
    }
    let decoded: Vec<u8> = percent_decode_str(piece).collect();
    !decoded.is_empty() && hashes.contains(&crate::auth::token_sha256(&decoded))
}

/// Masks each piece of a path and query that is an IdP token (see [`is_token_piece`]): one put in
/// a path segment or a query value.
fn mask_hashed_pieces(s: &mut String, hashes: &[[u8; 32]]) {
    if hashes.is_empty() {
        return;
    }
    let mut out = String::with_capacity(s.len());
    let mut changed = false;
    for (piece, sep) in path_pieces(s) {
        if is_token_piece(piece, hashes) {
            out.push_str(MASK);
            changed = true;
        } else {
            out.push_str(piece);
        }
        out.push_str(sep);
    }
    if changed {
        *s = out;
    }
}

fn holds_secret(s: &str, secrets: &[Vec<u8>]) -> bool {
    secrets
        .iter()
        .any(|t| memchr::memmem::find(s.as_bytes(), t).is_some())
}

/// Replaces each secret in `s` with as many `*`.
fn mask_secrets_in(s: &mut String, secrets: &[Vec<u8>]) {
    if !holds_secret(s, secrets) {
        return;
    }
    let mut bytes = std::mem::take(s).into_bytes();
    for t in secrets {
        while let Some(k) = memchr::memmem::find(&bytes, t) {
            bytes[k..k + t.len()].fill(b'*');
        }
    }
    // Only whole UTF-8 sequences of a secret were replaced by ASCII.
    *s = String::from_utf8_lossy(&bytes).into_owned();
}

fn mask_value(v: &mut Value, secrets: &[Vec<u8>]) {
    match v {
        Value::String(s) => mask_secrets_in(s, secrets),
        Value::Array(a) => a.iter_mut().for_each(|x| mask_value(x, secrets)),
        Value::Object(m) => {
            if m.keys().any(|k| holds_secret(k, secrets)) {
                let entries = std::mem::take(m);
                for (mut k, x) in entries {
                    mask_secrets_in(&mut k, secrets);
                    m.insert(k, x);
                }
            }
            m.values_mut().for_each(|x| mask_value(x, secrets));
        }
        _ => {}
    }
}

/// Whether some string or key in `v` holds a secret (what [`mask_value`] would change).
fn value_holds_secret(v: &Value, secrets: &[Vec<u8>]) -> bool {
    match v {
        Value::String(s) => holds_secret(s, secrets),
        Value::Array(a) => a.iter().any(|x| value_holds_secret(x, secrets)),
        Value::Object(m) => m
            .iter()
            .any(|(k, x)| holds_secret(k, secrets) || value_holds_secret(x, secrets)),
        _ => false,
    }
}
