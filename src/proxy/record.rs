//! What the logging phase writes from a finished `Exchange`: the metrics, the access line (no
//! traffic log) or the traffic record, with secrets masked and personal values as `log.pii` says.

use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;

use crate::error::ErrorKind;
use crate::observe::metrics::{RequestLabels, RouteLabels, StatusClass};
use crate::observe::status::{Failure, Seen, Succeeded, is_write};
use crate::observe::traffic_log::TrafficRecord;
use crate::observe::traffic_log::scrub_text;
use crate::proxy::exchange::Exchange;
use crate::scim::reading::scim_error;
use crate::state::{Shared, Snapshot};

/// How the response went out.
pub(crate) struct Outcome {
    pub status: u16,
    pub bytes_out: u64,
    /// The whole body was sent (not cut off by an error or the client leaving).
    pub complete: bool,
}

/// The upstream's JSON answer with the route's v2 token masked (and a rotated one's).
pub(crate) fn masked_response(exchange: &Exchange, snapshot: &Snapshot) -> Option<Bytes> {
    let bytes = exchange.response_json.as_ref()?.bytes()?;
    let token = exchange
        .route_index
        .and_then(|i| snapshot.routes.get(i))
        .map(|r| &r.token_redaction);
    let mut masked = match token {
        Some(t) => crate::body::filter::redact(&bytes, t),
        None => bytes.clone(),
    };
    if let Some(rotated) = &exchange.rotated_redaction {
        masked = crate::body::filter::redact(&masked, rotated);
    }
    Some(masked)
}

/// Counts the request, its durations and any upstream failure.
pub(crate) fn count(shared: &Shared, exchange: &Exchange, status: u16, head_time: Duration) {
    let metrics = &shared.metrics;
    let route = exchange.route.clone().unwrap_or_else(|| "-".to_string());
    let client = exchange.client.clone().unwrap_or_else(|| "-".to_string());
    metrics
        .requests
        .get_or_create(&RequestLabels {
            route: route.clone(),
            client,
            op: op(exchange).to_string(),
            status_class: StatusClass::of(status),
        })
        .inc();
    let route_labels = RouteLabels { route };
    let route = &route_labels.route;
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
        (Some(ErrorKind::UpstreamConnect), _) => metrics.upstream_failure(route, "connect"),
        (Some(ErrorKind::UpstreamTls), _) => metrics.upstream_failure(route, "tls"),
        (Some(ErrorKind::UpstreamTimeout), _) => metrics.upstream_failure(route, "timeout"),
        (Some(ErrorKind::UpstreamProtocol), _) => metrics.upstream_failure(route, "protocol"),
        (_, Some(s)) if s >= 500 => metrics.upstream_failure(route, "5xx"),
        (_, Some(s @ (401 | 403))) => {
            metrics.upstream_failure(route, "auth");
            shared.auth_watch.record(route, s);
        }
        _ => {}
    }
}

/// Feeds the status page: a counter update, and on a failure one small record with personal
/// values as the traffic log writes them (`log.pii`).
pub(crate) fn status(
    shared: &Shared,
    exchange: &Exchange,
    snapshot: &Snapshot,
    outcome: &Outcome,
    response_value: Option<&serde_json::Value>,
) {
    let pii = &snapshot.pii;
    let reading = exchange.reading.as_ref();
    let seen = Seen {
        at: exchange.arrived,
        route: exchange.route.as_deref(),
        client: exchange.client.as_deref(),
        op: op(exchange),
        status: outcome.status,
        upstream_status: exchange.upstream_status,
    };
    let resource = reading.map(|r| r.resource.as_str());
    let write = is_write(exchange.method.as_str(), resource, reading.map(|r| r.op));
    if outcome.status < 400 {
        let subject = || {
            reading
                .and_then(|r| r.subject.as_deref())
                .and_then(|s| pii.apply(s))
        };
        let succeeded = match (write, resource) {
            (true, Some(resource)) if (200..300).contains(&outcome.status) => Some(Succeeded {
                resource,
                resource_id: reading.and_then(|r| r.resource_id.as_deref()),
                subject: &subject,
            }),
            _ => None,
        };
        shared.status.record(seen, None, succeeded);
        return;
    }
    let (scim_type, detail) = match (reading, response_value) {
        (Some(r), Some(v)) if exchange.upstream_status.is_some_and(|s| s >= 400) => {
            let (detail, scim_type) = scim_error(v);
            let detail = detail.map(|d| scrub_text(&d, r.subject.as_deref(), pii));
            (scim_type, detail)
        }
        _ => (None, None),
    };
    let failure = Failure {
        ts: crate::observe::traffic_log::rfc3339_millis(exchange.arrived),
        request_id: exchange.request_id.clone(),
        route: exchange.route.clone(),
        client: exchange.client.clone(),
        method: exchange.method.as_str().to_owned(),
        op: reading.map(|r| r.op.to_owned()),
        resource: resource.map(str::to_owned),
        resource_id: reading.and_then(|r| r.resource_id.clone()),
        subject: reading
            .and_then(|r| r.subject.as_deref())
            .and_then(|s| pii.apply(s)),
        status: outcome.status,
        upstream_status: exchange.upstream_status,
        scim_type,
        detail,
        error: error_of(exchange, outcome).map(str::to_owned),
    };
    shared.status.record(seen, Some(failure), None);
}

/// The record's `error`: what the proxy found wrong, or a response cut off on its way out.
fn error_of(exchange: &Exchange, outcome: &Outcome) -> Option<&'static str> {
    exchange
        .error
        .map(|k| k.as_str())
        .or((!outcome.complete).then_some("response-incomplete"))
}

/// The SCIM operation, `-` when the request never got that far.
fn op(exchange: &Exchange) -> &'static str {
    exchange.reading.as_ref().map(|r| r.op).unwrap_or("-")
}

/// Without a traffic log, one line per request on the application log.
pub(crate) fn access_line(exchange: &Exchange, status: u16) {
    let route = exchange.route.as_deref().unwrap_or("-");
    tracing::info!(
        target: "scim_proxy::access",
        request_id = %exchange.request_id,
        src_ip = %exchange.client_ip,
        method = %exchange.method,
        route = %route,
        client = exchange.client.as_deref().unwrap_or("-"),
        auth = exchange.auth.unwrap_or("-"),
        op = op(exchange),
        status,
        upstream_status = exchange.upstream_status.unwrap_or(0),
        error = exchange.error.map(|k| k.as_str()).unwrap_or("-"),
        duration_ms = exchange.started.elapsed().as_millis() as u64,
        "request"
    );
}

/// The traffic-log record of the request: secrets masked, personal values as `log.pii` says.
pub(crate) fn traffic_record(
    exchange: &Exchange,
    snapshot: &Snapshot,
    outcome: Outcome,
    response_value: Option<serde_json::Value>,
) -> TrafficRecord {
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
    if let Some(rotated) = &exchange.rotated_redaction {
        record.add_secret(rotated.secret());
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
    record.status = outcome.status;
    record.upstream_status = exchange.upstream_status;
    record.duration_ms = millis(exchange.started.elapsed());
    record.upstream_ms = exchange.upstream_time.map(millis);
    record.waited_ms = exchange.waited.map(millis);
    record.resent = exchange.resent;
    record.bytes_in = exchange.bytes_in.load(Ordering::Relaxed);
    record.bytes_out = outcome.bytes_out;
    record.auth = exchange.auth;
    record.error = error_of(exchange, &outcome);
    if let Some(p) = &exchange.upstream_path {
        record.set_upstream_path(p, pii);
    }
    add_reading_and_bodies(&mut record, exchange, snapshot, response_value);
    record
}

/// The SCIM reading, the upstream's error and, with `log.capture_bodies`, both bodies.
fn add_reading_and_bodies(
    record: &mut TrafficRecord,
    exchange: &Exchange,
    snapshot: &Snapshot,
    response_value: Option<serde_json::Value>,
) {
    let pii = &snapshot.pii;
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
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
