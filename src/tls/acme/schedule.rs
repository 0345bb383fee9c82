//! When to order: now (no certificate, other names, renewal due) or at a time; and how long to
//! wait after a failure. Pure functions of the held certificate and the clock.

use std::time::{Duration, SystemTime};

use crate::tls::{CertInfo, CertNames};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Order now, for this reason (logged).
    OrderNow(&'static str),
    /// Nothing to do before this time.
    RenewAt(SystemTime),
}

/// Whether `names` are exactly `domains` (no more, no fewer; order aside).
pub fn covers_exactly(names: &CertNames, domains: &[String]) -> bool {
    let mut have: Vec<&str> = names.dns.iter().map(String::as_str).collect();
    let mut want: Vec<&str> = domains.iter().map(String::as_str).collect();
    have.sort_unstable();
    have.dedup();
    want.sort_unstable();
    names.ips.is_empty() && have == want
}

/// When the held certificate is renewed: `renew_before` its expiry, but never in the first third of
/// its life (a `renew_before` longer than the CA's lifetime would otherwise order without pause).
pub fn renew_at(info: &CertInfo, renew_before: Duration) -> SystemTime {
    let lifetime = info
        .not_after
        .duration_since(info.not_before)
        .unwrap_or_default();
    let earliest = info.not_before + lifetime / 3;
    let by_margin = info
        .not_after
        .checked_sub(renew_before)
        .unwrap_or(info.not_before);
    by_margin.max(earliest)
}

pub fn next(
    held: Option<(&CertInfo, &CertNames)>,
    domains: &[String],
    renew_before: Duration,
    now: SystemTime,
) -> Next {
    let Some((info, names)) = held else {
        return Next::OrderNow("no certificate held");
    };
    if !covers_exactly(names, domains) {
        return Next::OrderNow("the held certificate is for other names than listen.acme.domains");
    }
    if now > info.not_after {
        return Next::OrderNow("the held certificate expired");
    }
    let at = renew_at(info, renew_before);
    if now >= at {
        Next::OrderNow("renewal due")
    } else {
        Next::RenewAt(at)
    }
}

/// Wait after the `failures`-th failure in a row: 30 s doubling, at most 3 h (a CA's rate limits
/// count failed validations per hour).
pub fn backoff(failures: u32) -> Duration {
    let base = Duration::from_secs(30);
    let cap = Duration::from_secs(3 * 3600);
    base.saturating_mul(1u32 << failures.saturating_sub(1).min(16))
        .min(cap)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(86_400);

    fn info(issued: SystemTime, days: u32) -> CertInfo {
        CertInfo {
            subject: "CN=x".into(),
            issuer: "CN=ca".into(),
            not_before: issued,
            not_after: issued + DAY * days,
        }
    }

    fn names(dns: &[&str]) -> CertNames {
        CertNames {
            dns: dns.iter().map(|s| s.to_string()).collect(),
            ips: Vec::new(),
        }
    }

    #[test]
    fn a_fresh_certificate_for_the_names_waits_until_renew_before_its_expiry() {
        let t0 = SystemTime::UNIX_EPOCH + DAY * 20_000;
        let i = info(t0, 90);
        let domains = vec!["a.example".to_string(), "b.example".to_string()];
        let n = names(&["b.example", "a.example"]);
        assert_eq!(
            next(Some((&i, &n)), &domains, DAY * 30, t0 + DAY),
            Next::RenewAt(t0 + DAY * 60)
        );
        assert_eq!(
            next(Some((&i, &n)), &domains, DAY * 30, t0 + DAY * 60),
            Next::OrderNow("renewal due")
        );
        assert_eq!(
            next(Some((&i, &n)), &domains, DAY * 30, t0 + DAY * 91),
            Next::OrderNow("the held certificate expired")
        );
    }

    #[test]
    fn other_names_or_none_order_at_once() {
        let t0 = SystemTime::UNIX_EPOCH + DAY * 20_000;
        let i = info(t0, 90);
        let domains = vec!["a.example".to_string()];
        assert!(matches!(
            next(
                Some((&i, &names(&["a.example", "b.example"]))),
                &domains,
                DAY,
                t0
            ),
            Next::OrderNow(_)
        ));
        assert!(matches!(next(None, &domains, DAY, t0), Next::OrderNow(_)));
    }

    #[test]
    fn a_margin_longer_than_the_lifetime_renews_after_a_third_of_it() {
        let t0 = SystemTime::UNIX_EPOCH + DAY * 20_000;
        assert_eq!(renew_at(&info(t0, 9), DAY * 30), t0 + DAY * 3);
    }

    #[test]
    fn backoff_doubles_from_30_seconds_up_to_3_hours() {
        assert_eq!(backoff(1), Duration::from_secs(30));
        assert_eq!(backoff(2), Duration::from_secs(60));
        assert_eq!(backoff(4), Duration::from_secs(240));
        assert_eq!(backoff(30), Duration::from_secs(3 * 3600));
    }
}
