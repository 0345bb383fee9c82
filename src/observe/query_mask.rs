//! The request target as logged: credential parameters masked, and the string literals of a
//! `filter` per the PII policy.

use crate::observe::credentials::{MASK, is_credential_param};
use crate::observe::pii::{Pii, PiiPolicy};
use crate::scim::reading::{FilterToken, attr_segments, filter_tokens, form_decode};

/// Masks the values of query parameters whose (decoded, case-insensitive) name looks like a credential:
/// `access_token=abc` -> `access_token=***`. Everything else is kept byte for byte.
pub fn mask_query_credentials(path_and_query: &str) -> String {
    map_query(path_and_query, |name, _| {
        is_credential_param(&form_decode(name)).then(|| MASK.to_owned())
    })
}

/// The request target as logged: credentials masked, and under `hash`/`omit` the string literals of a
/// `filter` (user names, e-mails) replaced per the policy. A rewritten filter is re-encoded (`%20`).
pub fn loggable_path(path_and_query: &str, pii: &PiiPolicy) -> String {
    map_query(path_and_query, |name, value| {
        let name = form_decode(name);
        if is_credential_param(&name) {
            Some(MASK.to_owned())
        } else if name.eq_ignore_ascii_case("filter") && pii.mode() != Pii::Plain {
            let masked = mask_filter_literals(&form_decode(value), pii);
            Some(query_encode(&masked))
        } else {
            None
        }
    })
}

/// Rebuilds `path?query`, replacing the raw value of each `name=value` pair for which `f` returns `Some`.
fn map_query(path_and_query: &str, f: impl Fn(&str, &str) -> Option<String>) -> String {
    let (path, query) = match path_and_query.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (path_and_query, None),
    };
    let mut out = String::with_capacity(path_and_query.len());
    // `;` parameters of the path (`/Users;access_token=x`); the first piece is the path itself.
    for (i, piece) in path.split_inclusive(';').enumerate() {
        if i == 0 {
            out.push_str(piece);
        } else {
            map_param(piece, &f, &mut out);
        }
    }
    if let Some(query) = query {
        out.push('?');
        // A second `?` or a `;` separates parameters too for some servers: each is judged.
        for piece in query.split_inclusive(['&', ';', '?']) {
            map_param(piece, &f, &mut out);
        }
    }
    out
}

/// One `name=value` piece (with its trailing separator, if any) through `f`.
fn map_param(piece: &str, f: &impl Fn(&str, &str) -> Option<String>, out: &mut String) {
    let (pair, sep) = match piece.char_indices().last() {
        Some((k, '&' | ';' | '?')) => piece.split_at(k),
        _ => (piece, ""),
    };
    match pair
        .split_once('=')
        .and_then(|(name, value)| Some((name, f(name, value)?)))
    {
        Some((name, new)) => {
            out.push_str(name);
            out.push('=');
            out.push_str(&new);
        }
        None => out.push_str(pair),
    }
    out.push_str(sep);
}

/// Replaces each string literal of a SCIM filter by the policy's form of it (`"***"` under omit), except
/// the values of `type` (`emails[type eq "work"]`), which say nothing about a person.
pub(crate) fn mask_filter_literals(filter: &str, pii: &PiiPolicy) -> String {
    let mut out = String::with_capacity(filter.len());
    let mut last = 0;
    let tokens = filter_tokens(filter);
    for (i, token) in tokens.iter().enumerate() {
        if let FilterToken::Str(value, span) = token {
            let of_type = i >= 2
                && matches!(&tokens[i - 2], FilterToken::Word(a, _)
                    if attr_segments(a).last().is_some_and(|s| s.eq_ignore_ascii_case("type")));
            if of_type {
                continue;
            }
            out.push_str(&filter[last..span.start]);
            let masked = pii.apply(value).unwrap_or_else(|| MASK.to_owned());
            out.push('"');
            out.push_str(&masked.replace('\\', "\\\\").replace('"', "\\\""));
            out.push('"');
            last = span.end;
        }
    }
    out.push_str(&filter[last..]);
    out
}

/// Percent-encodes a query value, keeping unreserved characters and the harmless `:@/()[],;!*'$`.
fn query_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~:@/()[],;!*'$".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::test_support::{hash_policy, plain};

    #[test]
    fn query_credentials_are_masked() {
        for (input, want) in [
            ("/SCIM/v2/Users", "/SCIM/v2/Users"),
            ("/SCIM/v2/Users?", "/SCIM/v2/Users?"),
            (
                "/SCIM/v2/Users?access_token=abc",
                "/SCIM/v2/Users?access_token=***",
            ),
            (
                "/SCIM/v2/Users?filter=userName+eq+%22a%22&Token=abc&count=2",
                "/SCIM/v2/Users?filter=userName+eq+%22a%22&Token=***&count=2",
            ),
            (
                "/x?API_KEY=1&apikey=2&key=3&secret=4",
                "/x?API_KEY=***&apikey=***&key=***&secret=***",
            ),
            (
                "/x?password=p&auth=a&Authorization=Bearer%20x",
                "/x?password=***&auth=***&Authorization=***",
            ),
            (
                "/x?bearer=b&code=c&sig=s&signature=t",
                "/x?bearer=***&code=***&sig=***&signature=***",
            ),
            (
                "/x?access%5Ftoken=abc&%74oken=def",
                "/x?access%5Ftoken=***&%74oken=***",
            ),
            (
                "/x?id_token=a&client_secret=b&subscription-key=c",
                "/x?id_token=***&client_secret=***&subscription-key=***",
            ),
            ("/x?token", "/x?token"),
            (
                "/x?monkey=1&keys=2&count=3&startIndex=1",
                "/x?monkey=1&keys=2&count=3&startIndex=1",
            ),
            (
                "/x?a=1&&b=%zz&aadOptscim062020",
                "/x?a=1&&b=%zz&aadOptscim062020",
            ),
            ("/x?token=a=b&x=y", "/x?token=***&x=y"),
        ] {
            assert_eq!(mask_query_credentials(input), want, "{input}");
        }
    }

    #[test]
    fn logged_path_follows_the_pii_policy() {
        let entra = "/SCIM/v2/Users?filter=userName+eq+%22alice%40contoso.com%22&access_token=x";
        assert_eq!(
            loggable_path(entra, &plain()),
            "/SCIM/v2/Users?filter=userName+eq+%22alice%40contoso.com%22&access_token=***"
        );
        let h = hash_policy().apply("alice@contoso.com").unwrap();
        assert_eq!(
            loggable_path(entra, &hash_policy()),
            format!("/SCIM/v2/Users?filter=userName%20eq%20%22{h}%22&access_token=***")
        );
        let okta = "/SCIM/v2/Users?filter=userName%20eq%20%22test.user%40okta.local%22&startIndex=1&count=100";
        assert_eq!(
            loggable_path(okta, &PiiPolicy::new(Pii::Omit, vec![])),
            "/SCIM/v2/Users?filter=userName%20eq%20%22***%22&startIndex=1&count=100"
        );
        let work = "/SCIM/v2/Users?filter=emails%5Btype+eq+%22work%22%5D.value+eq+%22a%40b.c%22";
        let h = hash_policy().apply("a@b.c").unwrap();
        assert_eq!(
            loggable_path(work, &hash_policy()),
            format!("/SCIM/v2/Users?filter=emails[type%20eq%20%22work%22].value%20eq%20%22{h}%22")
        );
    }

    #[test]
    fn credentials_after_a_second_question_mark_or_a_semicolon_are_masked() {
        for target in [
            "/SCIM/v2/Users?a=1?access_token=qs-SECRET",
            "/SCIM/v2/Users?a=1;token=qs-SECRET",
            "/SCIM/v2/Users;access_token=qs-SECRET?a=1",
            "/SCIM/v2/Users;x=1;token=qs-SECRET",
        ] {
            let masked = mask_query_credentials(target);
            assert!(!masked.contains("qs-SECRET"), "{target} -> {masked}");
            assert!(masked.starts_with("/SCIM/v2/Users"), "{masked}");
        }
        assert_eq!(
            mask_query_credentials("/SCIM/v2/Users?a=1&b=2;c=3"),
            "/SCIM/v2/Users?a=1&b=2;c=3"
        );
    }
}
