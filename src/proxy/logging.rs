//! The logging phase of a request: when the response body is done (or dropped), what the
//! `Exchange` holds is counted in the metrics and written as one access line or traffic record.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use super::conn::InFlight;
use super::record;
use crate::body::{BoxError, ProxyBody};
pub use crate::proxy::exchange::Exchange;
use crate::scim::reading;
use crate::state::{Shared, Snapshot};

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
        drop(_gauge);
        // The SCIM reading, completed from the upstream's answer, only feeds the traffic record:
        // without one, the answer is not parsed at all (the hot path stays lean).
        // The status page needs the upstream's error (scimType, detail) even without a traffic log.
        let upstream_failed = exchange.upstream_status.is_some_and(|s| s >= 400);
        let traffic = shared.traffic.is_some();
        let masked = (traffic || upstream_failed)
            .then(|| record::masked_response(&exchange, &snapshot))
            .flatten();
        // Parsed whole only for what needs the document: an error's detail, captured bodies.
        let keep_document = upstream_failed || (traffic && snapshot.config.log.capture_bodies);
        let response_value = masked
            .as_deref()
            .filter(|_| keep_document)
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(b).ok());
        if traffic && let Some(reading) = exchange.reading.as_mut() {
            reading::complete_from_response(
                reading,
                exchange.upstream_status.unwrap_or(status),
                masked.as_deref(),
            );
        }
        record::count(&shared, &exchange, status, head_time);
        let outcome = record::Outcome {
            status,
            bytes_out,
            complete,
        };
        record::status(
            &shared,
            &exchange,
            &snapshot,
            &outcome,
            response_value.as_ref(),
        );
        let Some(log) = &shared.traffic else {
            record::access_line(&exchange, status);
            return;
        };
        log.write(&record::traffic_record(
            &exchange,
            &snapshot,
            outcome,
            response_value,
        ));
    }
}
