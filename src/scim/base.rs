//! Pure URL rewriting between the upstream base and the base the client addressed, both directions.
//!
//! A URL is rewritten only when it starts with the base (scheme and authority case-insensitively, the
//! path exactly) and the base ends there, at `/`, `?` or `#`. Anything else is left as it is.

/// A base URL split once into origin (`https://host[:port]`) and path (`/api/v2/scim`, no trailing slash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Base {
    origin: String,
    /// The same origin with the scheme's default port spelt out (`https://host:443`), also matched.
    origin_default_port: Option<String>,
    path: String,
}

impl Base {
    /// `scheme` is `http` or `https`; `authority` is `host[:port]` as to be written; `path` without trailing slash.
    pub fn new(scheme: &str, authority: &str, path: &str) -> Base {
        let default_port = if scheme.eq_ignore_ascii_case("https") {
            ":443"
        } else {
            ":80"
        };
        let has_port = authority.rsplit_once(':').is_some_and(|(h, p)| {
            !h.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) && !authority.ends_with(']')
        });
        let origin = format!("{scheme}://{authority}");
        let origin_default_port = (!has_port).then(|| format!("{origin}{default_port}"));
        let origin = match authority.strip_suffix(default_port) {
            Some(bare) if has_port => format!("{scheme}://{bare}"),
            _ => origin,
        };
        Base {
            origin,
            origin_default_port,
            path: path.trim_end_matches('/').to_string(),
        }
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    /// `https://host[:port]` as written (a default port is dropped).
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The origin with the default port spelt out, also matched when present.
    pub fn origin_default_port(&self) -> Option<&str> {
        self.origin_default_port.as_deref()
    }

    /// The full base URL, e.g. `https://addon-acme.goskope.com/SCIM/v2`.
    pub fn url(&self) -> String {
        format!("{}{}", self.origin, self.path)
    }

    /// Length of the part of `s` that is this base (absolute form), if `s` starts with it.
    fn match_absolute(&self, s: &str) -> Option<usize> {
        let origins = std::iter::once(&self.origin).chain(self.origin_default_port.as_ref());
        for origin in origins {
            if s.len() >= origin.len()
                && s.is_char_boundary(origin.len())
                && s[..origin.len()].eq_ignore_ascii_case(origin)
                && let Some(n) = match_path(&self.path, &s[origin.len()..])
            {
                return Some(origin.len() + n);
            }
        }
        None
    }
}

/// Length of `base_path` at the start of `s` when followed by a boundary.
fn match_path(base_path: &str, s: &str) -> Option<usize> {
    let tail = s.strip_prefix(base_path)?;
    match tail.as_bytes().first() {
        None | Some(b'/' | b'?' | b'#') => Some(base_path.len()),
        _ => None,
    }
}

/// Rewrites an absolute URL from one base to another; `None` when it is not under `from`.
pub fn rewrite_absolute(value: &str, from: &Base, to: &Base) -> Option<String> {
    let n = from.match_absolute(value)?;
    let mut out = String::with_capacity(to.origin.len() + to.path.len() + value.len() - n);
    out.push_str(&to.origin);
    out.push_str(&to.path);
    out.push_str(&value[n..]);
    Some(out)
}

/// Rewrites a `Location`-style header value: absolute URLs under `from`, or a path-absolute
/// reference under `from`'s path (`/api/v2/scim/Users/1`), which becomes `to`'s path.
pub fn rewrite_location(value: &str, from: &Base, to: &Base) -> Option<String> {
    if let Some(v) = rewrite_absolute(value, from, to) {
        return Some(v);
    }
    if value.starts_with('/') && !value.starts_with("//") && !from.path.is_empty() {
        let n = match_path(&from.path, value)?;
        let mut out = String::with_capacity(to.path.len() + value.len() - n);
        out.push_str(&to.path);
        out.push_str(&value[n..]);
        if out.is_empty() {
            out.push('/');
        }
        return Some(out);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up() -> Base {
        Base::new("https", "acme.goskope.com", "/api/v2/scim")
    }
    fn client() -> Base {
        Base::new("https", "addon-acme.goskope.com:8443", "/scim/V2/1234")
    }

    #[test]
    fn absolute_urls() {
        let cases = [
            (
                "https://acme.goskope.com/api/v2/scim/Users/1",
                Some("https://addon-acme.goskope.com:8443/scim/V2/1234/Users/1"),
            ),
            (
                "HTTPS://ACME.goskope.com/api/v2/scim",
                Some("https://addon-acme.goskope.com:8443/scim/V2/1234"),
            ),
            (
                "https://acme.goskope.com:443/api/v2/scim/Groups?x=1",
                Some("https://addon-acme.goskope.com:8443/scim/V2/1234/Groups?x=1"),
            ),
            ("https://acme.goskope.com/api/v2/scimX", None),
            ("https://acme.goskope.com/API/v2/scim/Users", None),
            ("https://acme.goskope.com.evil/api/v2/scim/Users", None),
            ("http://acme.goskope.com/api/v2/scim/Users", None),
            ("https://other.goskope.com/api/v2/scim/Users", None),
            ("urn:ietf:params:scim:schemas:core:2.0:User", None),
            ("", None),
        ];
        for (input, want) in cases {
            assert_eq!(
                rewrite_absolute(input, &up(), &client()).as_deref(),
                want,
                "{input}"
            );
        }
    }

    #[test]
    fn round_trip_is_identity() {
        for tail in [
            "",
            "/",
            "/Users/2819c223",
            "/Groups?filter=displayName%20eq%20%22x%22",
            "#frag",
        ] {
            let original = format!("https://acme.goskope.com/api/v2/scim{tail}");
            let there = rewrite_absolute(&original, &up(), &client()).unwrap();
            assert_eq!(
                rewrite_absolute(&there, &client(), &up()).unwrap(),
                original
            );
        }
    }

    #[test]
    fn location_forms() {
        assert_eq!(
            rewrite_location("/api/v2/scim/Users/1", &up(), &client()).as_deref(),
            Some("/scim/V2/1234/Users/1")
        );
        assert_eq!(rewrite_location("/api/v2/scimx", &up(), &client()), None);
        assert_eq!(
            rewrite_location("//acme.goskope.com/api/v2/scim", &up(), &client()),
            None
        );
        assert_eq!(
            rewrite_location("https://elsewhere/x", &up(), &client()),
            None
        );
    }

    #[test]
    fn default_port_spelt_out_on_either_side() {
        let up443 = Base::new("https", "acme.goskope.com:443", "/api/v2/scim");
        assert_eq!(up443.url(), "https://acme.goskope.com/api/v2/scim");
        assert!(
            rewrite_absolute(
                "https://acme.goskope.com/api/v2/scim/Users",
                &up443,
                &client()
            )
            .is_some()
        );
        let v6 = Base::new("https", "[::1]", "/x");
        assert!(rewrite_absolute("https://[::1]:443/x/Users", &v6, &client()).is_some());
    }
}
