//! Attribute paths: `attr`, `attr.sub`, `attr[sub eq "v"]`, `attr[sub eq "v"].sub`,
//! optionally URN-qualified.

use super::filter::{Cmp, Parser};
use super::{ENTERPRISE_URN, GROUP_URN, USER_URN};

#[derive(Clone, Debug, PartialEq)]
pub(super) struct AttrPath {
    /// Extension schema URN holding `attr`, e.g. the enterprise User extension.
    pub(super) container: Option<String>,
    pub(super) attr: String,
    pub(super) value_filter: Option<Box<Cmp>>,
    pub(super) sub: Option<String>,
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| s.get(prefix.len()..))
        .flatten()
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'$')
}

/// Index of the `]` closing the `[` at byte 0, skipping quoted strings.
fn find_close_bracket(s: &str) -> Option<usize> {
    let mut in_quote = false;
    let mut escaped = false;
    for (i, b) in s.bytes().enumerate().skip(1) {
        match (in_quote, escaped, b) {
            (true, true, _) => escaped = false,
            (true, false, b'\\') => escaped = true,
            (true, false, b'"') => in_quote = false,
            (false, _, b'"') => in_quote = true,
            (false, _, b']') => return Some(i),
            _ => {}
        }
    }
    None
}

/// `allow_filter` is false inside brackets, so nesting depth is bounded.
pub(super) fn parse_attr_path(s: &str, allow_filter: bool) -> Result<AttrPath, String> {
    let (container, s) = match split_urn(s.trim())? {
        Urn::WholeExtension => {
            return Ok(AttrPath {
                container: None,
                attr: ENTERPRISE_URN.to_string(),
                value_filter: None,
                sub: None,
            });
        }
        Urn::Split(container, rest) => (container, rest),
    };
    let name_end = s.find(['[', '.']).unwrap_or(s.len());
    let (attr, rest) = s.split_at(name_end);
    if !valid_name(attr) {
        return Err(format!("bad attribute name {attr:?}"));
    }
    let (value_filter, rest) = if rest.starts_with('[') {
        if !allow_filter {
            return Err("nested value filters are not supported".into());
        }
        let (cmp, rest) = value_filter(rest)?;
        (Some(Box::new(cmp)), rest)
    } else {
        (None, rest)
    };
    let mut sub = None;
    if let Some(s) = rest.strip_prefix('.') {
        if !valid_name(s) {
            return Err(format!("bad sub-attribute {s:?}"));
        }
        sub = Some(s.to_string());
    } else if !rest.is_empty() {
        return Err(format!("unexpected {rest:?} in attribute path"));
    }
    Ok(AttrPath {
        container,
        attr: attr.to_string(),
        value_filter,
        sub,
    })
}

/// What a leading schema URN makes of a path.
enum Urn<'a> {
    /// The enterprise extension itself, as a whole attribute.
    WholeExtension,
    /// The extension holding the attribute (none for the core schemas), and the path after it.
    Split(Option<String>, &'a str),
}

fn split_urn(s: &str) -> Result<Urn<'_>, String> {
    if strip_prefix_ci(s, "urn:").is_none() {
        return Ok(Urn::Split(None, s));
    }
    let core = [USER_URN, GROUP_URN]
        .iter()
        .find_map(|u| strip_prefix_ci(s, u).and_then(|r| r.strip_prefix(':')));
    if let Some(rest) = core {
        return Ok(Urn::Split(None, rest));
    }
    if s.eq_ignore_ascii_case(ENTERPRISE_URN) {
        return Ok(Urn::WholeExtension);
    }
    let head_end = s.find('[').unwrap_or(s.len());
    let colon = s
        .get(..head_end)
        .and_then(|h| h.rfind(':'))
        .ok_or_else(|| format!("bad attribute URN in {s:?}"))?;
    let urn = s.get(..colon).unwrap_or_default();
    let container = if urn.eq_ignore_ascii_case(ENTERPRISE_URN) {
        ENTERPRISE_URN.to_string()
    } else {
        urn.to_string()
    };
    Ok(Urn::Split(
        Some(container),
        s.get(colon + 1..).unwrap_or_default(),
    ))
}

/// `[sub eq "v"]` at the start of `rest`: the comparison, and what follows the `]`.
fn value_filter(rest: &str) -> Result<(Cmp, &str), String> {
    let close = find_close_bracket(rest).ok_or("unclosed '['")?;
    let inner = rest.get(1..close).unwrap_or_default();
    let mut p = Parser::new(inner);
    let cmp = p.cmp(false)?;
    p.ws();
    if !p.eof() {
        return Err(format!("unsupported value filter {inner:?}"));
    }
    if cmp.path.container.is_some() || cmp.path.sub.is_some() {
        return Err(format!("unsupported value filter {inner:?}"));
    }
    Ok((cmp, rest.get(close + 1..).unwrap_or_default()))
}
