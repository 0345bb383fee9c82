//! The route's REST API v2 token: held once, sent as a sensitive header, never printed.

use std::fmt;

use http::HeaderValue;

use crate::config::UpstreamAuth;

/// A v2 token ready to send. `Debug` and `Display` never show it.
#[derive(Clone)]
pub struct V2Token {
    raw: Box<str>,
    header: HeaderValue,
}

impl V2Token {
    /// Builds the header value for `auth`. The token is trimmed of surrounding white space
    /// (a trailing newline in a secret file is the usual case); inner white space or control
    /// characters are refused, as is an empty token. The error never contains the token.
    pub fn new(token: &str, auth: UpstreamAuth) -> Result<V2Token, String> {
        let token = token.trim();
        if token.is_empty() {
            return Err("the token is empty".into());
        }
        if !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("the token contains white space, control or non-ASCII characters".into());
        }
        let value = match auth {
            UpstreamAuth::Bearer => format!("Bearer {token}"),
            UpstreamAuth::NetskopeApiToken => token.to_string(),
        };
        let mut header = HeaderValue::from_str(&value)
            .map_err(|_| "the token is not a valid header value".to_string())?;
        header.set_sensitive(true);
        Ok(V2Token {
            raw: token.into(),
            header,
        })
    }

    pub fn header_value(&self) -> HeaderValue {
        self.header.clone()
    }

    /// The raw token, only for redacting echoes of it.
    pub fn expose_for_redaction(&self) -> &str {
        &self.raw
    }

    /// A short non-secret fingerprint (first 8 hex of SHA-256) so operators can tell tokens apart.
    pub fn fingerprint(&self) -> String {
        hex::encode(&crate::auth::token_sha256(self.raw.as_bytes())[..4])
    }
}

impl fmt::Debug for V2Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "V2Token(sha256:{}…)", self.fingerprint())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_printed() {
        let t = V2Token::new("s3cr3t-v2\n", UpstreamAuth::Bearer).unwrap();
        assert!(!format!("{t:?}").contains("s3cr3t"));
        assert!(!format!("{:?}", t.header_value()).contains("s3cr3t"));
        assert_eq!(t.header_value().to_str().unwrap(), "Bearer s3cr3t-v2");
        let t = V2Token::new("abc", UpstreamAuth::NetskopeApiToken).unwrap();
        assert_eq!(t.header_value().to_str().unwrap(), "abc");
    }

    #[test]
    fn refuses_bad_tokens_without_echoing_them() {
        for bad in ["", "  \n", "a b", "tok\u{7f}", "tök"] {
            let e = V2Token::new(bad, UpstreamAuth::Bearer).unwrap_err();
            assert!(bad.trim().is_empty() || !e.contains(bad.trim()), "{e}");
        }
    }
}
