//! What is known about one request, filled in by the driver phase by phase (each phase's result
//! recorded as soon as it is known), and read once when the response is done (`logging`).

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Method;

use crate::error::ErrorKind;
use crate::scim::reading::ScimReading;

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
    /// Time waited for a send slot on a paced route (None: not paced, or refused before).
    pub waited: Option<Duration>,
    /// Why the request was sent a second time (`resend::TOKEN_ROTATED`).
    pub resent: Option<&'static str>,
    /// The rotated token's mask, when the answer came with a token newer than the snapshot's.
    pub rotated_redaction: Option<Arc<crate::body::rewrite::Needles>>,
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
            waited: None,
            resent: None,
            rotated_redaction: None,
            reading: None,
            request_json: None,
            response_json: None,
            bytes_in: Arc::new(AtomicU64::new(0)),
            client_slot: None,
        }
    }
}
