//! What `token_expires` says about the v2 token in use: the date belongs to the token it was loaded
//! with, so a rotated token never inherits the old token's date. Pure; the callers log and report.

use std::time::{Duration, SystemTime};

use crate::auth::token_sha256;

/// The route's `token_expires`, tied to the token it was written for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TokenExpiry {
    /// `token_expires`.
    pub date: SystemTime,
    /// SHA-256 of the token that was in use when this date was loaded.
    written_for: [u8; 32],
    /// SHA-256 of the token in use now.
    current: [u8; 32],
}

/// Where the v2 token stands against its configured expiry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExpiryState {
    /// More than `token_warn_days` left.
    Fine { left: Duration },
    /// Inside `token_warn_days`.
    Soon { left: Duration },
    /// Past `token_expires`.
    Expired { ago: Duration },
    /// The token changed while `token_expires` did not: the date is the old token's.
    Stale,
}

impl TokenExpiry {
    /// The expiry for `token` under `date`, given the same route's expiry in the running config.
    /// A date that did not change across a token change stays with the old token (stale); a new
    /// date, a first load, or the old token back again make it the current token's.
    pub fn carry(
        date: Option<SystemTime>,
        token: &[u8],
        previous: Option<&TokenExpiry>,
    ) -> Option<TokenExpiry> {
        let date = date?;
        let current = token_sha256(token);
        let written_for = match previous {
            Some(p) if p.date == date => p.written_for,
            _ => current,
        };
        Some(TokenExpiry {
            date,
            written_for,
            current,
        })
    }

    /// The date is the one written for the token in use.
    pub fn applies(&self) -> bool {
        self.written_for == self.current
    }

    pub fn state(&self, now: SystemTime, warn: Duration) -> ExpiryState {
        if !self.applies() {
            return ExpiryState::Stale;
        }
        match self.date.duration_since(now) {
            Ok(left) if left > warn => ExpiryState::Fine { left },
            Ok(left) if !left.is_zero() => ExpiryState::Soon { left },
            Ok(_) => ExpiryState::Expired {
                ago: Duration::ZERO,
            },
            Err(e) => ExpiryState::Expired { ago: e.duration() },
        }
    }

    /// One line for an admin (`/readyz` warnings, the log, `check`), or None while all is well.
    /// Never holds the token; `source` names where it is read from.
    pub fn warning(
        &self,
        route: &str,
        source: &dyn std::fmt::Display,
        now: SystemTime,
        warn: Duration,
    ) -> Option<String> {
        let date = humantime::format_rfc3339_seconds(self.date);
        match self.state(now, warn) {
            ExpiryState::Fine { .. } => None,
            ExpiryState::Soon { left } => Some(format!(
                "route {route}: the REST API v2 token expires soon, at {date} (token_expires), in {} days: issue a new one, write it to {source} and update token_expires",
                left.as_secs() / 86_400
            )),
            ExpiryState::Expired { .. } => Some(format!(
                "route {route}: the REST API v2 token expired at {date} (token_expires): issue a new one, write it to {source} and update token_expires"
            )),
            ExpiryState::Stale => Some(format!(
                "route {route}: token rotated; update token_expires (it still holds {date}, the previous token's date)"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(86_400);

    fn at(days: u32) -> SystemTime {
        SystemTime::UNIX_EPOCH + DAY * days
    }

    #[test]
    fn no_date_no_expiry() {
        assert_eq!(TokenExpiry::carry(None, b"a", None), None);
    }

    #[test]
    fn a_first_load_ties_the_date_to_the_token() {
        let e = TokenExpiry::carry(Some(at(100)), b"a", None).unwrap();
        assert!(e.applies());
        assert_eq!(
            e.state(at(50), DAY * 14),
            ExpiryState::Fine { left: DAY * 50 }
        );
        assert_eq!(
            e.state(at(90), DAY * 14),
            ExpiryState::Soon { left: DAY * 10 }
        );
        assert_eq!(
            e.state(at(101), DAY * 14),
            ExpiryState::Expired { ago: DAY }
        );
    }

    #[test]
    fn a_rotated_token_under_the_same_date_is_stale_until_the_date_changes() {
        let old = TokenExpiry::carry(Some(at(100)), b"old", None).unwrap();
        let rotated = TokenExpiry::carry(Some(at(100)), b"new", Some(&old)).unwrap();
        assert_eq!(rotated.state(at(101), DAY), ExpiryState::Stale);
        // Another reload with nothing changed keeps it stale.
        let again = TokenExpiry::carry(Some(at(100)), b"new", Some(&rotated)).unwrap();
        assert!(!again.applies());
        // The admin updates the date: it is the new token's now.
        let dated = TokenExpiry::carry(Some(at(190)), b"new", Some(&again)).unwrap();
        assert!(dated.applies());
        // Back to the old token under the old date: that date applies again.
        let back = TokenExpiry::carry(Some(at(100)), b"old", Some(&rotated)).unwrap();
        assert!(back.applies());
    }

    #[test]
    fn warnings_name_the_key_and_never_the_token() {
        let e = TokenExpiry::carry(Some(at(100)), b"secret-token", None).unwrap();
        let w = e.warning("main", &"file /etc/t", at(101), DAY).unwrap();
        assert!(w.contains("expired") && w.contains("token_expires"), "{w}");
        assert!(!w.contains("secret-token"));
        assert_eq!(e.warning("main", &"f", at(10), DAY), None);
        let stale = TokenExpiry::carry(Some(at(100)), b"other", Some(&e)).unwrap();
        let w = stale.warning("main", &"f", at(10), DAY).unwrap();
        assert!(w.contains("token rotated; update token_expires"), "{w}");
    }
}
