//! Prometheus metrics (`/metrics` on the admin listener) and the readiness verdict (`/readyz`).

use std::sync::atomic::AtomicU64;
use std::sync::{Mutex, PoisonError};
use std::time::SystemTime;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::config::Config;
pub(crate) use crate::observe::log_drops::count_tracing_losses;
pub use crate::observe::log_drops::{LogDrops, tracing_dropped};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub route: String,
    pub client: String,
    pub op: String,
    pub status_class: StatusClass,
}

/// `1xx` … `5xx`, as dashboards expect to read them.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub struct StatusClass(u8);

impl StatusClass {
    pub fn of(status: u16) -> StatusClass {
        StatusClass(u8::try_from((status / 100).clamp(1, 5)).unwrap_or(5))
    }
}

impl EncodeLabelValue for StatusClass {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        use std::fmt::Write;
        write!(encoder, "{}xx", self.0)
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailureLabels {
    pub route: String,
    /// connect, tls, timeout, protocol, 5xx, auth (401/403)
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SinkLabels {
    /// traffic (the traffic log), tracing (stderr: events and, with the traffic log off, access lines)
    pub sink: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SignalLabels {
    pub route: String,
    /// retry_after (a 429 with Retry-After), remaining_zero (ratelimit-remaining: 0 with a reset)
    pub signal: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteOutcomeLabels {
    pub route: String,
    /// changed, unchanged, failed
    pub outcome: String,
}

/// Every `signal` of `upstream_rate_signals`.
pub const RATE_SIGNALS: [&str; 2] = ["retry_after", "remaining_zero"];

/// Every `outcome` of `token_rereads`.
pub const REREAD_OUTCOMES: [&str; 3] = ["changed", "unchanged", "failed"];

/// Every `kind` of `upstream_failures`, exported at 0 per route from the start.
pub const UPSTREAM_FAILURE_KINDS: [&str; 6] =
    ["connect", "tls", "timeout", "protocol", "5xx", "auth"];

/// Every `result` of `reloads`.
pub const RELOAD_RESULTS: [&str; 2] = ["ok", "failed"];

/// Every `reason` of `connections_refused`.
pub const REFUSAL_REASONS: [&str; 4] = ["max_connections", "allow_cidrs", "proxy_protocol", "tls"];

/// Latency buckets in seconds: SCIM calls take milliseconds to seconds; 30 s is the default timeout.
const LATENCY_BUCKETS: [f64; 14] = [
    0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub request_duration: Family<RouteLabels, Histogram, fn() -> Histogram>,
    pub upstream_duration: Family<RouteLabels, Histogram, fn() -> Histogram>,
    pub upstream_failures: Family<FailureLabels, Counter>,
    pub in_flight: Gauge,
    pub token_expiry_seconds: Family<RouteLabels, Gauge<f64, AtomicU64>>,
    pub token_expiry_stale: Family<RouteLabels, Gauge>,
    pub reloads: Family<ResultLabels, Counter>,
    pub connections_refused: Family<ReasonLabels, Counter>,
    pub open_connections: Gauge,
    pub log_records_dropped: Family<SinkLabels, Counter>,
    pub pacing: PacingMetrics,
    /// Renders bring the drop counters up to their sources one at a time (no double counting).
    log_drops_synced: Mutex<()>,
    pub acme_orders: Family<OutcomeLabels, Counter>,
    pub certificate_expiry_seconds: Family<CertLabels, Gauge<f64, AtomicU64>>,
    /// The ACME certificate's subject name and expiry, turned into seconds left at each render.
    acme_not_after: Mutex<Option<(String, SystemTime)>>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// issued, failed
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CertLabels {
    /// The certificate's first name (`listen.acme.domains[0]`)
    pub name: String,
}

/// Every `outcome` of `acme_orders`.
pub const ACME_ORDER_OUTCOMES: [&str; 2] = ["issued", "failed"];

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("scim_proxy");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "Requests answered, by route, IdP client, SCIM operation and status class",
            requests.clone(),
        );
        let request_duration =
            Family::<RouteLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                latency_histogram as fn() -> Histogram,
            );
        registry.register(
            "request_duration_seconds",
            "Time from request head to response head, as the IdP sees it",
            request_duration.clone(),
        );
        let upstream_duration =
            Family::<RouteLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                latency_histogram as fn() -> Histogram,
            );
        registry.register(
            "upstream_duration_seconds",
            "Time from sending upstream to the upstream's response head",
            upstream_duration.clone(),
        );
        let upstream_failures = Family::<FailureLabels, Counter>::default();
        registry.register(
            "upstream_failures",
            "Upstream failures by kind: connect, tls, timeout, protocol, 5xx, auth (401/403)",
            upstream_failures.clone(),
        );
        let in_flight = Gauge::default();
        registry.register(
            "in_flight_requests",
            "Requests being served now",
            in_flight.clone(),
        );
        let token_expiry_seconds = Family::<RouteLabels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "token_expiry_seconds",
            "Seconds until the route's REST API v2 token expires (negative: expired); only routes with token_expires",
            token_expiry_seconds.clone(),
        );
        let token_expiry_stale = Family::<RouteLabels, Gauge>::default();
        registry.register(
            "token_expiry_stale",
            "1 when the route's token changed but token_expires did not (the date is the previous token's); only routes with token_expires",
            token_expiry_stale.clone(),
        );
        let reloads = Family::<ResultLabels, Counter>::default();
        registry.register(
            "reloads",
            "Configuration reloads by result (ok, failed)",
            reloads.clone(),
        );
        let connections_refused = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "connections_refused",
            "Connections closed before HTTP: max_connections, allow_cidrs, proxy_protocol, tls",
            connections_refused.clone(),
        );
        let open_connections = Gauge::default();
        registry.register(
            "open_connections",
            "Client connections open now",
            open_connections.clone(),
        );
        // Series with labels known now start at 0: `increase()` then sees the first event and
        // dashboards show 0, not "no data" (Prometheus instrumentation advice).
        for result in RELOAD_RESULTS {
            let _ = reloads.get_or_create(&ResultLabels {
                result: result.to_string(),
            });
        }
        for reason in REFUSAL_REASONS {
            let _ = connections_refused.get_or_create(&ReasonLabels {
                reason: reason.to_string(),
            });
        }
        let log_records_dropped = Family::<SinkLabels, Counter>::default();
        registry.register(
            "log_records_dropped",
            "Log records dropped because the sink (traffic log, tracing on stderr) did not keep up",
            log_records_dropped.clone(),
        );
        for sink in ["traffic", "tracing"] {
            drop(log_records_dropped.get_or_create(&SinkLabels { sink: sink.into() }));
        }
        let acme_orders = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "acme_orders",
            "ACME certificate orders by outcome (issued, failed); only with [listen.acme]",
            acme_orders.clone(),
        );
        for outcome in ACME_ORDER_OUTCOMES {
            let _ = acme_orders.get_or_create(&OutcomeLabels {
                outcome: outcome.to_string(),
            });
        }
        let certificate_expiry_seconds = Family::<CertLabels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "acme_certificate_expiry_seconds",
            "Seconds until the certificate from the ACME CA expires (negative: expired); only while one is held",
            certificate_expiry_seconds.clone(),
        );
        let pacing = PacingMetrics::register(&mut registry);
        Metrics {
            registry,
            requests,
            request_duration,
            upstream_duration,
            upstream_failures,
            in_flight,
            token_expiry_seconds,
            token_expiry_stale,
            reloads,
            connections_refused,
            open_connections,
            log_records_dropped,
            pacing,
            log_drops_synced: Mutex::new(()),
            acme_orders,
            certificate_expiry_seconds,
            acme_not_after: Mutex::new(None),
        }
    }

    /// Exports every per-route series at 0 (failures by kind, latency histograms) for the
    /// config's routes; called at start and after each reload, so added routes appear at once.
    /// Routes that were removed keep their series until restart, as counters should.
    pub fn declare_routes(&self, config: &Config) {
        for route in &config.routes {
            let labels = RouteLabels {
                route: route.name.clone(),
            };
            let _ = self.request_duration.get_or_create(&labels);
            let _ = self.upstream_duration.get_or_create(&labels);
            for kind in UPSTREAM_FAILURE_KINDS {
                let _ = self.upstream_failures.get_or_create(&FailureLabels {
                    route: route.name.clone(),
                    kind: kind.to_string(),
                });
            }
            self.pacing
                .declare_route(&route.name, route.pacing.is_some());
        }
    }

    pub fn refused(&self, reason: &str) {
        self.connections_refused
            .get_or_create(&ReasonLabels {
                reason: reason.to_string(),
            })
            .inc();
    }

    pub fn upstream_failure(&self, route: &str, kind: &str) {
        self.upstream_failures
            .get_or_create(&FailureLabels {
                route: route.to_string(),
                kind: kind.to_string(),
            })
            .inc();
    }

    pub fn reload(&self, ok: bool) {
        self.reloads
            .get_or_create(&ResultLabels {
                result: if ok { "ok" } else { "failed" }.to_string(),
            })
            .inc();
    }

    pub fn acme_order(&self, issued: bool) {
        self.acme_orders
            .get_or_create(&OutcomeLabels {
                outcome: if issued { "issued" } else { "failed" }.to_string(),
            })
            .inc();
    }

    /// The ACME certificate now served (its expiry), for `acme_certificate_expiry_seconds`.
    pub fn acme_certificate(&self, name: &str, not_after: SystemTime) {
        *self
            .acme_not_after
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some((name.to_string(), not_after));
    }

    /// The Prometheus text exposition, with the token expiry gauges and drop counters brought up to date.
    /// `token_expiry`: per route with a `token_expires`, whether the date still applies to the token
    /// in use, and the date.
    pub fn render(&self, token_expiry: &[(&str, bool, SystemTime)], drops: &LogDrops) -> String {
        {
            let _one_at_a_time = self
                .log_drops_synced
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            for (sink, total) in [("traffic", drops.traffic), ("tracing", drops.tracing)] {
                let counter = self
                    .log_records_dropped
                    .get_or_create(&SinkLabels { sink: sink.into() });
                let counted = counter.get();
                if total > counted {
                    counter.inc_by(total - counted);
                }
            }
        }
        let now = SystemTime::now();
        self.token_expiry_seconds.clear();
        self.token_expiry_stale.clear();
        for &(route, applies, date) in token_expiry {
            let labels = RouteLabels {
                route: route.to_string(),
            };
            self.token_expiry_stale
                .get_or_create(&labels)
                .set(i64::from(!applies));
            // A date written for another token says nothing about this one.
            if applies {
                let secs = seconds_until(date, now);
                self.token_expiry_seconds.get_or_create(&labels).set(secs);
            }
        }
        let acme_not_after = self
            .acme_not_after
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some((name, not_after)) = acme_not_after {
            let secs = seconds_until(not_after, now);
            self.certificate_expiry_seconds.clear();
            self.certificate_expiry_seconds
                .get_or_create(&CertLabels { name })
                .set(secs);
        }
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// Pacing and the upstream's rate signals, and the token re-reads an upstream 401 triggers.
pub struct PacingMetrics {
    pub waiting: Family<RouteLabels, Gauge>,
    pub wait: Family<RouteLabels, Histogram, fn() -> Histogram>,
    pub refusals: Family<RouteLabels, Counter>,
    pub rate_signals: Family<SignalLabels, Counter>,
    pub token_rereads: Family<RouteOutcomeLabels, Counter>,
    pub token_resends: Family<RouteLabels, Counter>,
}

impl PacingMetrics {
    fn register(registry: &mut Registry) -> PacingMetrics {
        let m = PacingMetrics {
            waiting: Family::default(),
            wait: Family::new_with_constructor(latency_histogram as fn() -> Histogram),
            refusals: Family::default(),
            rate_signals: Family::default(),
            token_rereads: Family::default(),
            token_resends: Family::default(),
        };
        registry.register(
            "paced_requests_waiting",
            "Requests waiting now for their send slot on a paced route",
            m.waiting.clone(),
        );
        registry.register(
            "paced_wait_seconds",
            "Time a request on a paced route waited for its send slot",
            m.wait.clone(),
        );
        registry.register(
            "paced_refusals",
            "Requests answered 429 by the proxy because their slot was beyond max_queue_wait (not forwarded)",
            m.refusals.clone(),
        );
        registry.register(
            "upstream_rate_signals",
            "Upstream answers that held a paced route: retry_after (429 with Retry-After), remaining_zero (ratelimit-remaining: 0)",
            m.rate_signals.clone(),
        );
        registry.register(
            "token_rereads",
            "Token sources read at once after an upstream 401, by outcome: changed, unchanged, failed",
            m.token_rereads.clone(),
        );
        registry.register(
            "token_resends",
            "Requests sent once more with a rotated token after an upstream 401",
            m.token_resends.clone(),
        );
        m
    }

    /// The route's series at 0; the pacing ones only for a paced route.
    fn declare_route(&self, route: &str, paced: bool) {
        let labels = RouteLabels {
            route: route.to_string(),
        };
        if paced {
            let _ = self.waiting.get_or_create(&labels);
            let _ = self.wait.get_or_create(&labels);
            let _ = self.refusals.get_or_create(&labels);
            for signal in RATE_SIGNALS {
                let _ = self.rate_signals.get_or_create(&SignalLabels {
                    route: route.to_string(),
                    signal: signal.to_string(),
                });
            }
        }
        let _ = self.token_resends.get_or_create(&labels);
        for outcome in REREAD_OUTCOMES {
            let _ = self.token_rereads.get_or_create(&RouteOutcomeLabels {
                route: route.to_string(),
                outcome: outcome.to_string(),
            });
        }
    }

    pub fn rate_signal(&self, route: &str, signal: &str) {
        self.rate_signals
            .get_or_create(&SignalLabels {
                route: route.to_string(),
                signal: signal.to_string(),
            })
            .inc();
    }

    /// A request sent once more with a rotated token.
    pub fn token_resend(&self, route: &str) {
        self.token_resends
            .get_or_create(&RouteLabels {
                route: route.to_string(),
            })
            .inc();
    }

    pub fn token_reread(&self, route: &str, outcome: &str) {
        self.token_rereads
            .get_or_create(&RouteOutcomeLabels {
                route: route.to_string(),
                outcome: outcome.to_string(),
            })
            .inc();
    }
}

/// Seconds from `now` to `t`, negative once `t` has passed (the expiry gauges).
fn seconds_until(t: SystemTime, now: SystemTime) -> f64 {
    match t.duration_since(now) {
        Ok(d) => d.as_secs_f64(),
        Err(e) => -e.duration().as_secs_f64(),
    }
}
