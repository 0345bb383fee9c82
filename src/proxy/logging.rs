//! The logging phase of a request: what happened (`Exchange`, filled in by the proxy as it goes),
//! written as one traffic-log record and counted in the metrics when the response body is done.

use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Method;
use http_body::{Body, Frame, SizeHint};

use super::conn::InFlight;
use crate::body::{BoxError, ProxyBody};
use crate::error::ErrorKind;
use crate::observe::metrics::{RequestLabels, RouteLabels, StatusClass};
use crate::observe::traffic_log::TrafficRecord;
use crate::scim::reading::{self, ScimReading};
use crate::state::{Shared, Snapshot};

/// Everything known about one request, filled in phase by phase.
pub struct Exchange {
    pub started: Instant,
    /// Wall-clock arrival, the record's `ts`.
    pub arrived: std::time::SystemTime,
    pub request_id: String,
    pub method: Method,
    pub path_and_query: String,
    pub client_ip: IpAddr,
    pub route: Option<String>,
    /// Index of the route in the snapshot (its token masks what the log keeps of bodies).
    pub route_index: Option<usize>,
    pub client: Option<String>,
    pub auth: Option<&'static str>,
    pub upstream_path: Option<String>,
    pub upstream_status: Option<u16>,
    pub upstream_time: Option<Duration>,
    pub error: Option<ErrorKind>,
    pub retried: bool,
    pub reading: Option<ScimReading>,
    pub request_json: Option<Bytes>,
    pub response_json: Option<crate::body::filter::UpstreamCopy>,
    /// Request body bytes read from the client so far.
    pub bytes_in: Arc<AtomicU64>,
    /// The IdP's `max_requests_per_client` slot, held until the response is done.
    pub client_slot: Option<crate::proxy::ClientSlot>,
}

impl Exchange {
    pub fn new(
        request_id: String,
        method: Method,
        path_and_query: String,
        client_ip: IpAddr,
    ) -> Exchange {
        Exchange {
            started: Instant::now(),
            arrived: std::time::SystemTime::now(),
            request_id,
            method,
            path_and_query,
            client_ip,
            route: None,
            route_index: None,
            client: None,
            auth: None,
            upstream_path: None,
            upstream_status: None,
            upstream_time: None,
            error: None,
            retried: false,
            reading: None,
            request_json: None,
            response_json: None,
            bytes_in: Arc::new(AtomicU64::new(0)),
            client_slot: None,
        }
    }
}

/// Wraps the response body; when it is done (or dropped, e.g. the client went away) the record
/// is written with the bytes actually sent.
pub struct Logged {
    inner: ProxyBody,
    done: Option<Done>,
}

/// Counts a request in `in_flight_requests` from its head until its response is done, or until
/// its handling is abandoned (the client went away mid-request).
pub struct InFlightGauge(prometheus_client::metrics::gauge::Gauge);

impl InFlightGauge {
    pub fn start(shared: &Shared) -> InFlightGauge {
        let gauge = shared.metrics.in_flight.clone();
        gauge.inc();
        InFlightGauge(gauge)
    }
}

impl Drop for InFlightGauge {
    fn drop(&mut self) {
        self.0.dec();
    }
}

struct Done {
    _gauge: InFlightGauge,
    exchange: Exchange,
    status: u16,
    head_time: Duration,
    bytes_out: u64,
    shared: Arc<Shared>,
    snapshot: Arc<Snapshot>,
    _in_flight: InFlight,
}

impl Logged {
    pub fn new(
        inner: ProxyBody,
        exchange: Exchange,
        status: u16,
        shared: Arc<Shared>,
        snapshot: Arc<Snapshot>,
        in_flight: InFlight,
        gauge: InFlightGauge,
    ) -> Logged {
        let head_time = exchange.started.elapsed();
        Logged {
            inner,
            done: Some(Done {
                _gauge: gauge,
                exchange,
                status,
                head_time,
                bytes_out: 0,
                shared,
                snapshot,
                _in_flight: in_flight,
            }),
        }
    }
}

impl Body for Logged {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(data), Some(done)) = (frame.data_ref(), self.done.as_mut()) {
                    done.bytes_out += data.len() as u64;
                }
            }
            Poll::Ready(None) => {
                if let Some(done) = self.done.take() {
                    done.finish(true);
                }
            }
            Poll::Ready(Some(Err(_))) => {
                if let Some(done) = self.done.take() {
                    done.finish(false);
                }
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Logged {
    fn drop(&mut self) {
        if let Some(done) = self.done.take() {
            // hyper drops a body it knows is empty without polling it: that is a complete answer.
            let complete = self.inner.is_end_stream();
            done.finish(complete);
        }
    }
}

impl Done {
    fn finish(self, complete: bool) {
        let Done {
            _gauge,
            mut exchange,
            status,
            head_time,
            bytes_out,
            shared,
            snapshot,
            _in_flight,
        } = self;
        let metrics = &shared.metrics;
        drop(_gauge);
        let route = exchange.route.clone().unwrap_or_else(|| "-".to_string());
        let client = exchange.client.clone().unwrap_or_else(|| "-".to_string());

        // The SCIM reading, completed from the upstream's answer, only feeds the traffic record:
        // without one, the answer is not parsed at all (the hot path stays lean).
        let response_bytes = exchange
            .response_json
            .as_ref()
            .and_then(|copy| copy.bytes());
        let response_value = match (&shared.traffic, &response_bytes) {
            (Some(_), Some(bytes)) => {
                let token = exchange
                    .route_index
                    .and_then(|i| snapshot.routes.get(i))
                    .map(|r| &r.token_redaction);
                let masked = match token {
                    Some(t) => crate::body::filter::redact(bytes, t),
                    None => bytes.clone(),
                };
                serde_json::from_slice::<serde_json::Value>(&masked).ok()
            }
            _ => None,
        };
        if shared.traffic.is_some()
            && let Some(reading) = exchange.reading.as_mut()
        {
            reading::complete_from_response(
                reading,
                exchange.upstream_status.unwrap_or(status),
                response_value.as_ref(),
            );
        }
        let op = exchange.reading.as_ref().map(|r| r.op).unwrap_or("-");

        metrics
            .requests
            .get_or_create(&RequestLabels {
                route: route.clone(),
                client,
                op: op.to_string(),
                status_class: StatusClass::of(status),
            })
            .inc();
        let route_labels = RouteLabels {
            route: route.clone(),
        };
        metrics
            .request_duration
            .get_or_create(&route_labels)
            .observe(head_time.as_secs_f64());
        if let Some(t) = exchange.upstream_time {
            metrics
                .upstream_duration
                .get_or_create(&route_labels)
                .observe(t.as_secs_f64());
        }
        match (exchange.error, exchange.upstream_status) {
            (Some(ErrorKind::UpstreamConnect), _) => metrics.upstream_failure(&route, "connect"),
            (Some(ErrorKind::UpstreamTls), _) => metrics.upstream_failure(&route, "tls"),
            (Some(ErrorKind::UpstreamTimeout), _) => metrics.upstream_failure(&route, "timeout"),
            (Some(ErrorKind::UpstreamProtocol), _) => metrics.upstream_failure(&route, "protocol"),
            (_, Some(s)) if s >= 500 => metrics.upstream_failure(&route, "5xx"),
            (_, Some(s @ (401 | 403))) => {
                metrics.upstream_failure(&route, "auth");
                shared.auth_watch.record(&route, s);
            }
            _ => {}
        }

        let Some(log) = &shared.traffic else {
            tracing::info!(
                target: "scim_proxy::access",
                request_id = %exchange.request_id,
                src_ip = %exchange.client_ip,
                method = %exchange.method,
                route = %route,
                client = exchange.client.as_deref().unwrap_or("-"),
                auth = exchange.auth.unwrap_or("-"),
                op,
                status,
                upstream_status = exchange.upstream_status.unwrap_or(0),
                error = exchange.error.map(|k| k.as_str()).unwrap_or("-"),
                duration_ms = exchange.started.elapsed().as_millis() as u64,
                "request"
            );
            return;
        };
        let pii = &snapshot.pii;
        let mut record = TrafficRecord::new(
            &exchange.request_id,
            exchange.client_ip,
            &exchange.method,
            &exchange.path_and_query,
            pii,
        );
        record.ts = crate::observe::traffic_log::rfc3339_millis(exchange.arrived);
        if let Some(route) = exchange.route_index.and_then(|i| snapshot.routes.get(i)) {
            record.add_secret(route.token_redaction.secret());
        }
        record.add_token_hashes(
            snapshot
                .config
                .routes
                .iter()
                .flat_map(|r| &r.clients)
                .flat_map(|c| c.token_sha256.iter().copied()),
        );
        record.route = exchange.route.clone();
        record.client = exchange.client.clone();
        record.status = status;
        record.upstream_status = exchange.upstream_status;
        record.duration_ms = millis(exchange.started.elapsed());
        record.upstream_ms = exchange.upstream_time.map(millis);
        record.bytes_in = exchange.bytes_in.load(Ordering::Relaxed);
        record.bytes_out = bytes_out;
        record.auth = exchange.auth;
        record.error = exchange
            .error
            .map(|k| k.as_str())
            .or((!complete).then_some("response-incomplete"));
        if let Some(p) = &exchange.upstream_path {
            record.set_upstream_path(p, pii);
        }
        if let Some(reading) = &exchange.reading {
            record.set_reading(reading, pii);
            if exchange.upstream_status.is_some_and(|s| s >= 400)
                && let Some(v) = &response_value
            {
                record.set_upstream_error(v, reading, pii);
            }
        }
        if snapshot.config.log.capture_bodies {
            if let Some(v) = exchange
                .request_json
                .as_ref()
                .and_then(|b| serde_json::from_slice::<serde_json::Value>(b).ok())
            {
                record.set_request_body(v, pii);
            }
            if let Some(v) = response_value {
                record.set_response_body(v, pii);
            }
        }
        log.write(&record);
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
