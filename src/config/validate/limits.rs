//! `[limits]`: timeouts, sizes and counts, each within its range or left at its default.

use super::Validator;
use crate::config::model::Limits;
use crate::config::raw::RawLimits;

impl Validator {
    pub(super) fn limits(&mut self, raw: RawLimits) -> Limits {
        let mut limits = Limits::default();
        self.limit_timeouts(&raw, &mut limits);
        self.limit_sizes(raw, &mut limits);
        limits
    }

    /// Each timeout replaces its default when written and valid.
    fn limit_timeouts(&mut self, raw: &RawLimits, limits: &mut Limits) {
        let timeouts = [
            (
                "limits.upstream_timeout",
                &raw.upstream_timeout,
                &mut limits.upstream_timeout,
            ),
            (
                "limits.upstream_connect_timeout",
                &raw.upstream_connect_timeout,
                &mut limits.upstream_connect_timeout,
            ),
            (
                "limits.upstream_idle_timeout",
                &raw.upstream_idle_timeout,
                &mut limits.upstream_idle_timeout,
            ),
            (
                "limits.header_read_timeout",
                &raw.header_read_timeout,
                &mut limits.header_read_timeout,
            ),
            (
                "limits.body_read_timeout",
                &raw.body_read_timeout,
                &mut limits.body_read_timeout,
            ),
            (
                "limits.tls_handshake_timeout",
                &raw.tls_handshake_timeout,
                &mut limits.tls_handshake_timeout,
            ),
            (
                "limits.idle_timeout",
                &raw.idle_timeout,
                &mut limits.idle_timeout,
            ),
            (
                "limits.shutdown_grace",
                &raw.shutdown_grace,
                &mut limits.shutdown_grace,
            ),
        ];
        for (key, written, value) in timeouts {
            *value = self.duration(key, written.clone(), *value);
        }
    }

    /// Sizes and counts, each within the range the proxy can honour.
    fn limit_sizes(&mut self, raw: RawLimits, limits: &mut Limits) {
        limits.max_body = self.size(
            "limits.max_body",
            raw.max_body,
            limits.max_body,
            1,
            u64::MAX,
        );
        let max_header_bytes = limits.max_header_bytes;
        limits.max_header_bytes = self
            .size(
                "limits.max_header_bytes",
                raw.max_header_bytes,
                max_header_bytes as u64,
                8192,
                1 << 20,
            )
            .try_into()
            .unwrap_or(max_header_bytes);
        let counts = [
            (
                "limits.max_headers",
                raw.max_headers,
                &mut limits.max_headers,
                1000,
            ),
            (
                "limits.max_connections",
                raw.max_connections,
                &mut limits.max_connections,
                1_000_000,
            ),
            (
                "limits.max_requests_per_client",
                raw.max_requests_per_client,
                &mut limits.max_requests_per_client,
                1_000_000,
            ),
        ];
        for (key, written, value, max) in counts {
            *value = self.count(key, written, *value, 1, max);
        }
        let max_streams = limits.max_concurrent_streams;
        limits.max_concurrent_streams = self
            .count(
                "limits.max_concurrent_streams",
                raw.max_concurrent_streams,
                max_streams as usize,
                1,
                10_000,
            )
            .try_into()
            .unwrap_or(max_streams);
    }
}
