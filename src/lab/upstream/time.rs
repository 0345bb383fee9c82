//! Timestamps for `meta.created` / `meta.lastModified`: RFC 3339 UTC with milliseconds.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The latest instant RFC 3339 can write (9999-12-31T23:59:59.999Z); humantime refuses later ones.
const LAST_WRITABLE: Duration = Duration::from_millis(253_402_300_799_999);

/// Now, as `2024-01-01T00:00:00.000Z`.
pub(super) fn now_rfc3339() -> String {
    rfc3339_millis(SystemTime::now())
}

/// A clock before 1970 counts as the epoch, as humantime writes no earlier time.
fn rfc3339_millis(t: SystemTime) -> String {
    let clamped = t.clamp(UNIX_EPOCH, UNIX_EPOCH + LAST_WRITABLE);
    humantime::format_rfc3339_millis(clamped).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_rfc3339() {
        let day = |n: u64| UNIX_EPOCH + Duration::from_secs(n * 86_400);
        assert_eq!(rfc3339_millis(day(0)), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_millis(day(19_723)), "2024-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_millis(day(19_782)), "2024-02-29T00:00:00.000Z");
        let before_epoch = UNIX_EPOCH - Duration::from_secs(86_400);
        assert_eq!(rfc3339_millis(before_epoch), "1970-01-01T00:00:00.000Z");
        let t = day(19_782) + Duration::from_millis(3_723_045);
        assert_eq!(rfc3339_millis(t), "2024-02-29T01:02:03.045Z");
        let now = now_rfc3339();
        assert_eq!(now.len(), "2024-01-01T00:00:00.000Z".len());
        assert_eq!(&now[10..11], "T");
    }
}
