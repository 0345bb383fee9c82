//! SCIM filters: their tokens, and the value a filter looks up (`userName eq "..."`).

use crate::scim::attrs::{attr_is, attr_segments};

/// The value of the first `<attr> eq "<value>"` in a SCIM filter (attribute and operator case-insensitive).
pub fn filter_eq_value(filter: &str, attr: &str) -> Option<String> {
    let tokens = filter_tokens(filter);
    tokens.windows(3).find_map(|w| match w {
        [
            FilterToken::Word(a, _),
            FilterToken::Word(op, _),
            FilterToken::Str(v, _),
        ] if op.eq_ignore_ascii_case("eq")
            && attr_segments(a).len() == 1
            && attr_is(a, attr)
            && !v.is_empty() =>
        {
            Some(v.clone())
        }
        _ => None,
    })
}

/// A token of a SCIM filter with its byte span in the filter text; strings are unescaped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FilterToken {
    Word(String, std::ops::Range<usize>),
    Str(String, std::ops::Range<usize>),
    Punct(char, std::ops::Range<usize>),
}

/// Splits a filter into words, JSON-style strings and brackets. Never fails: an unterminated string runs
/// to the end.
pub(crate) fn filter_tokens(filter: &str) -> Vec<FilterToken> {
    let mut tokens = Vec::new();
    let mut chars = filter.char_indices().peekable();
    while let Some(&(start, c)) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if matches!(c, '(' | ')' | '[' | ']') {
            chars.next();
            tokens.push(FilterToken::Punct(c, start..start + 1));
        } else if c == '"' {
            chars.next();
            let mut value = String::new();
            let mut end = filter.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    '\\' => match chars.next() {
                        Some((_, 'n')) => value.push('\n'),
                        Some((_, 't')) => value.push('\t'),
                        Some((_, e)) => value.push(e),
                        None => {}
                    },
                    c => value.push(c),
                }
            }
            tokens.push(FilterToken::Str(value, start..end));
        } else {
            let mut end = filter.len();
            while let Some(&(i, c)) = chars.peek() {
                if c.is_whitespace() || matches!(c, '(' | ')' | '[' | ']' | '"') {
                    end = i;
                    break;
                }
                chars.next();
            }
            tokens.push(FilterToken::Word(filter[start..end].to_owned(), start..end));
        }
    }
    tokens
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scim::query::{form_decode, query_param};

    #[test]
    fn filter_and_query_decoding() {
        assert_eq!(form_decode("a+b%20c%2Bd%zz%4"), "a b c+d%zz%4");
        assert_eq!(
            query_param(Some("count=2&Filter=userName+eq+%22x%22"), "filter").as_deref(),
            Some("userName eq \"x\"")
        );
        assert_eq!(
            filter_eq_value("emails[type eq \"work\"].value eq \"a@b.c\"", "userName"),
            None
        );
        assert_eq!(
            filter_eq_value(
                "urn:ietf:params:scim:schemas:core:2.0:User:userName eq \"a\"",
                "userName"
            )
            .as_deref(),
            Some("a")
        );
        assert_eq!(filter_eq_value("userName sw \"a\"", "userName"), None);
        assert_eq!(
            filter_eq_value("userName eq \"unterminated", "userName").as_deref(),
            Some("unterminated")
        );
    }
}
