//! Admission, before any body byte is read: framing the proxy understands (501, 400), a declared
//! size within `max_body` (413), and one of the IdP's `max_requests_per_client` slots (429).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use http::{HeaderMap, header};

use crate::config::Limits;
use crate::error::{ErrorKind, ProxyError};
use crate::state::RouteRuntime;

/// Only `chunked` framing is understood: any other transfer coding would reach the upstream as if
/// the bytes were plain (RFC 9112 §6.1: 501).
pub(crate) fn refuse_unknown_transfer_coding(headers: &HeaderMap) -> Result<(), ProxyError> {
    let unknown = headers
        .get_all(header::TRANSFER_ENCODING)
        .iter()
        .flat_map(|v| v.to_str().unwrap_or("?").split(','))
        .any(|coding| !coding.trim().eq_ignore_ascii_case("chunked"));
    if unknown {
        return Err(ProxyError::new(
            ErrorKind::NotImplemented,
            "unsupported transfer coding: only chunked is accepted",
        ));
    }
    Ok(())
}

/// A declared body within `max_body`, then a slot of client `client_index`, held until the
/// response is done.
pub(crate) fn admit(
    headers: &HeaderMap,
    limits: &Limits,
    runtime: &RouteRuntime,
    client_index: usize,
) -> Result<ClientSlot, ProxyError> {
    if content_length(headers)?.is_some_and(|n| n > limits.max_body) {
        return Err(ProxyError::payload_too_large(Some(limits.max_body)));
    }
    runtime
        .client_in_flight
        .get(client_index)
        .and_then(|counter| ClientSlot::take(counter, limits.max_requests_per_client))
        .ok_or_else(|| {
            ProxyError::new(
                ErrorKind::TooManyRequests,
                format!(
                    "this IdP already has {} requests in flight through the proxy",
                    limits.max_requests_per_client
                ),
            )
        })
}

/// One Content-Length, or none; several different ones are a smuggling attempt.
fn content_length(headers: &HeaderMap) -> Result<Option<u64>, ProxyError> {
    let mut found: Option<u64> = None;
    for v in headers.get_all(header::CONTENT_LENGTH) {
        let n = v
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .ok_or_else(|| ProxyError::new(ErrorKind::BadRequest, "invalid Content-Length"))?;
        if found.is_some_and(|f| f != n) {
            return Err(ProxyError::new(
                ErrorKind::BadRequest,
                "conflicting Content-Length headers",
            ));
        }
        found = Some(n);
    }
    Ok(found)
}

/// One of an IdP's `max_requests_per_client` slots, freed when the response body is done.
pub struct ClientSlot(Arc<AtomicUsize>);

impl ClientSlot {
    fn take(counter: &Arc<AtomicUsize>, max: usize) -> Option<ClientSlot> {
        counter
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| ClientSlot(counter.clone()))
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::testing::{fixture, parts, scim_get};

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut req = scim_get("/SCIM/v2/Users");
        for (k, v) in pairs {
            req = req.header(*k, *v);
        }
        parts(req).headers
    }

    #[test]
    fn a_declared_body_over_max_body_or_ambiguous_framing_is_refused() {
        let f = fixture("", "max_body = 10", "");
        let (limits, runtime) = (&f.snapshot.config.limits, &f.snapshot.routes[0]);
        let over = admit(&headers(&[("content-length", "11")]), limits, runtime, 0);
        let e = over.err().unwrap();
        assert_eq!(e.kind, ErrorKind::PayloadTooLarge);
        assert_eq!(
            e.detail,
            "the request body is larger than the proxy's limit of 10 bytes"
        );
        let twice = headers(&[("content-length", "1"), ("content-length", "2")]);
        let e = admit(&twice, limits, runtime, 0).err().unwrap();
        assert_eq!(
            (e.kind, e.detail.as_str()),
            (ErrorKind::BadRequest, "conflicting Content-Length headers")
        );
        assert!(admit(&headers(&[("content-length", "10")]), limits, runtime, 0).is_ok());
        let gzip = headers(&[("transfer-encoding", "gzip, chunked")]);
        assert_eq!(
            refuse_unknown_transfer_coding(&gzip).unwrap_err().kind,
            ErrorKind::NotImplemented
        );
        assert!(
            refuse_unknown_transfer_coding(&headers(&[("transfer-encoding", "Chunked")])).is_ok()
        );
    }

    #[test]
    fn an_idp_over_its_in_flight_cap_waits_and_a_done_request_frees_its_slot() {
        let f = fixture("", "max_requests_per_client = 2", "");
        let (limits, runtime) = (&f.snapshot.config.limits, &f.snapshot.routes[0]);
        let none = HeaderMap::new();
        let first = admit(&none, limits, runtime, 0).unwrap();
        let _second = admit(&none, limits, runtime, 0).unwrap();
        let e = admit(&none, limits, runtime, 0).err().unwrap();
        assert_eq!(e.kind, ErrorKind::TooManyRequests);
        assert_eq!(
            e.detail,
            "this IdP already has 2 requests in flight through the proxy"
        );
        drop(first);
        assert!(admit(&none, limits, runtime, 0).is_ok());
    }
}
