//! The forward proxy in an admin's words: its credentials header, and why its leg failed.

use super::tunnel::TunnelFailure;

/// Why the forward proxy leg failed, worded for an admin.
#[derive(Debug)]
pub struct ForwardProxyError {
    pub failure: TunnelFailure,
}

impl std::fmt::Display for ForwardProxyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.failure {
            TunnelFailure::Connect(why) => {
                write!(f, "could not connect to the forward proxy ({why})")
            }
            TunnelFailure::Auth {
                status,
                sent_credentials: false,
            } => write!(
                f,
                "the forward proxy demands authentication ({status}): set egress.via_proxy_auth_file or _env"
            ),
            TunnelFailure::Auth { status, .. } => write!(
                f,
                "the forward proxy refused the credentials ({status}): check egress.via_proxy_auth_file or _env"
            ),
            TunnelFailure::Refused { status, reason } => write!(
                f,
                "the forward proxy refused the CONNECT tunnel to the upstream ({status} {reason})"
            ),
            TunnelFailure::Protocol(why) => write!(f, "the forward proxy tunnel failed: {why}"),
        }
    }
}

impl std::error::Error for ForwardProxyError {}

/// The forward proxy's `user:password`, sent as `Proxy-Authorization: Basic`, never logged.
pub fn proxy_authorization(credentials: &str) -> Result<http::HeaderValue, String> {
    use base64::Engine;
    let credentials = credentials.trim();
    if !credentials.contains(':') {
        return Err("expected user:password".into());
    }
    let encoded = base64::engine::general_purpose::STANDARD.encode(credentials);
    let mut value = http::HeaderValue::from_str(&format!("Basic {encoded}"))
        .map_err(|_| "not usable in a header".to_string())?;
    value.set_sensitive(true);
    Ok(value)
}
