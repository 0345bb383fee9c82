//! Parsers of single config values (sizes, times, names, hosts, CIDRs, URLs), each returning the
//! value or why it is refused. No key names here: `validate` says where a value was written.

use std::net::IpAddr;
use std::time::Duration;

use http::uri::Authority;
use ipnet::IpNet;

use super::model::{PublicUrl, UpstreamBase};

/// RFC 3339 (`2026-03-21T00:00:00Z`, offsets allowed) or a date (`2026-03-21`, midnight UTC).
pub fn parse_timestamp(s: &str) -> Option<std::time::SystemTime> {
    let s = s.trim();
    if s.len() == 10 {
        return humantime::parse_rfc3339(&format!("{s}T00:00:00Z")).ok();
    }
    humantime::parse_rfc3339_weak(s.trim_end_matches('Z'))
        .ok()
        .filter(|_| s.ends_with('Z') || s.ends_with('z'))
        .or_else(|| parse_with_offset(s))
}

/// `2026-03-21T10:00:00+02:00` -> UTC.
fn parse_with_offset(s: &str) -> Option<std::time::SystemTime> {
    let (sign, at) = s
        .rfind('+')
        .map(|i| (1i64, i))
        .or_else(|| s.rfind('-').filter(|i| *i > 10).map(|i| (-1, i)))?;
    let (local, offset) = s.split_at(at);
    let (h, m) = offset.get(1..)?.split_once(':')?;
    let secs = sign * (h.parse::<i64>().ok()? * 3600 + m.parse::<i64>().ok()? * 60);
    let t = humantime::parse_rfc3339_weak(local).ok()?;
    let shift = Duration::from_secs(secs.unsigned_abs());
    if secs >= 0 {
        t.checked_sub(shift)
    } else {
        t.checked_add(shift)
    }
}

/// `4194304`, `"4MiB"`, `"512 KiB"`, `"1MB"`, `"10k"` -> bytes.
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let n: u64 = digits.parse().ok()?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1000,
        "kib" => 1024,
        "m" | "mb" => 1000 * 1000,
        "mib" => 1024 * 1024,
        "g" | "gb" => 1000 * 1000 * 1000,
        "gib" => 1024 * 1024 * 1024,
        _ => return None,
    };
    n.checked_mul(mult)
}

/// A route or client name: what logs and metrics show, so short and plain.
pub(super) fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// A tenant id as it appears in the old URL.
pub(super) fn is_tenant_id(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= 128
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A CIDR, or a single address taken as its own /32 or /128.
pub(super) fn parse_cidr(s: &str) -> Option<IpNet> {
    s.parse::<IpNet>()
        .ok()
        .or_else(|| s.parse::<IpAddr>().ok().map(IpNet::from))
        .map(|n| n.trunc())
}

/// Lower-cases a configured host name; `None` if it is not a bare host name or IP literal.
pub fn normalize_host(h: &str) -> Option<String> {
    let h = h.trim().to_ascii_lowercase();
    let h = h.strip_suffix('.').unwrap_or(&h).to_string();
    if h.is_empty() || h.len() > 253 {
        return None;
    }
    if let Some(inner) = h.strip_prefix('[').and_then(|x| x.strip_suffix(']')) {
        return inner
            .parse::<std::net::Ipv6Addr>()
            .ok()
            .map(|ip| ip.to_string());
    }
    if let Ok(ip) = h.parse::<std::net::Ipv6Addr>() {
        return Some(ip.to_string());
    }
    h.bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
        .then_some(h)
}

/// How one URL-valued key words its refusals. The checks are shared; the words differ because each
/// key has its own rules to explain (a scheme that would leak the token, where credentials go).
struct UrlRules {
    /// Appended to the "not a URL" and "no host" refusals: a good value, or nothing.
    example: &'static str,
    /// The refusal of a scheme (`None`: none written), or `None` when it is allowed.
    scheme: fn(&str, Option<&str>) -> Option<String>,
    /// The refusal of userinfo, after the quoted value.
    userinfo: &'static str,
    /// The refusal of a query or fragment, after the quoted value.
    query: &'static str,
}

const UPSTREAM: UrlRules = UrlRules {
    example: "",
    scheme: |s, scheme| match scheme {
        Some("https") => None,
        Some(other) => Some(format!(
            "{s:?}: scheme {other:?} is not allowed; the upstream must be https (the v2 token must never cross the network in clear)"
        )),
        None => Some(format!("{s:?} is not an absolute https:// URL")),
    },
    userinfo: "credentials in the URL are not allowed; use token_file or token_env",
    query: "a query or fragment is not allowed in the upstream base",
};

const PUBLIC_URL_EXAMPLE: &str = " (e.g. \"https://scim.example.com/SCIM/v2\")";

const PUBLIC_URL: UrlRules = UrlRules {
    example: PUBLIC_URL_EXAMPLE,
    scheme: |s, scheme| match scheme {
        Some("https" | "http") => None,
        _ => Some(format!(
            "{s:?} is not an absolute https:// or http:// URL{PUBLIC_URL_EXAMPLE}"
        )),
    },
    userinfo: "userinfo is not allowed",
    query: "a query or fragment is not allowed",
};

const FORWARD_PROXY: UrlRules = UrlRules {
    example: "",
    scheme: |s, scheme| {
        (scheme != Some("http")).then(|| {
            format!(
                "{s:?}: expected http://host:port (the tunnel to the upstream is TLS end to end inside it)"
            )
        })
    },
    userinfo: "credentials in the URL are not allowed; use via_proxy_auth_file or via_proxy_auth_env",
    // The forward proxy refuses any path or query in one message of its own.
    query: "",
};

/// An absolute URL of an allowed scheme, with a host part and without userinfo.
fn absolute_url(s: &str, rules: &UrlRules) -> Result<(http::Uri, Authority), String> {
    let example = rules.example;
    let uri: http::Uri = s
        .parse()
        .map_err(|e| format!("{s:?} is not a URL ({e}){example}"))?;
    if let Some(refusal) = (rules.scheme)(s, uri.scheme_str()) {
        return Err(refusal);
    }
    let authority = uri
        .authority()
        .cloned()
        .ok_or_else(|| format!("{s:?} has no host{example}"))?;
    if authority.as_str().contains('@') {
        return Err(format!("{s:?}: {}", rules.userinfo));
    }
    Ok((uri, authority))
}

/// The base of URLs (upstream or public): `absolute_url`, no query or fragment, a non-empty host
/// (lower-cased, IPv6 without brackets).
fn base_url(s: &str, rules: &UrlRules) -> Result<(http::Uri, Authority, String), String> {
    let (uri, authority) = absolute_url(s, rules)?;
    if uri.query().is_some() || s.contains('#') {
        return Err(format!("{s:?}: {}", rules.query));
    }
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase();
    if host.is_empty() {
        return Err(format!("{s:?} has no host{}", rules.example));
    }
    Ok((uri, authority, host))
}

/// The path of a base URL without its trailing slash; refused unless plain, because requests are
/// routed and rewritten by plain prefix.
fn plain_path(s: &str, uri: &http::Uri) -> Result<String, String> {
    let path = uri.path().trim_end_matches('/').to_string();
    if path.split('/').any(|seg| seg == "." || seg == "..") || path.contains('%') {
        return Err(format!(
            "{s:?}: the path must be plain, without dot segments or percent-encoding"
        ));
    }
    Ok(path)
}

/// `http://host:port` for a CONNECT forward proxy (credentials go in a file, never in the URL).
pub fn parse_forward_proxy(s: &str) -> Result<String, String> {
    let (uri, authority) = absolute_url(s, &FORWARD_PROXY)?;
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        return Err(format!("{s:?}: only http://host:port, without a path"));
    }
    let port = authority.port_u16().unwrap_or(80);
    Ok(format!(
        "http://{}:{port}",
        authority.host().to_ascii_lowercase()
    ))
}

/// Parses a route's `upstream`: https only, a host, optional port, a path; no query or credentials.
pub fn parse_upstream(s: &str) -> Result<UpstreamBase, String> {
    let (uri, authority, host) = base_url(s, &UPSTREAM)?;
    let port = authority.port_u16().unwrap_or(443);
    let authority = match authority.port_u16() {
        Some(p) if p != 443 => format!("{}:{p}", authority.host().to_ascii_lowercase()),
        _ => authority.host().to_ascii_lowercase(),
    };
    Ok(UpstreamBase {
        host,
        port,
        authority,
        path: plain_path(s, &uri)?,
    })
}

/// Validates a route's `public_url`: absolute http(s), a host, a path, no userinfo, query or fragment.
pub fn parse_public_url(s: &str) -> Result<PublicUrl, String> {
    let (uri, authority, host) = base_url(s, &PUBLIC_URL)?;
    // `http::Uri` reports `/` for a URL written without a path.
    let written_path = s
        .split_once("://")
        .map(|(_, rest)| rest.trim_start_matches(authority.as_str()))
        .unwrap_or_default();
    if written_path.is_empty() || uri.path().trim_end_matches('/').is_empty() {
        return Err(format!(
            "{s:?} needs the path the IdP uses{PUBLIC_URL_EXAMPLE}"
        ));
    }
    Ok(PublicUrl {
        scheme: uri.scheme_str().unwrap_or_default().to_string(),
        host,
        authority: authority.as_str().to_ascii_lowercase(),
        path: plain_path(s, &uri)?,
    })
}
