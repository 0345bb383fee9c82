//! The one place a refusal or failure becomes the answer: a SCIM Error response, the kind kept for
//! the log, and a warning when the fault was not the client's.

use http::Response;

use crate::body::ProxyBody;
use crate::error::{Origin, ProxyError};
use crate::proxy::LOG_TARGET;
use crate::proxy::logging::Exchange;

/// Answers `e` for the request `exchange` describes.
pub(crate) fn rescue(e: ProxyError, exchange: &mut Exchange) -> Response<ProxyBody> {
    exchange.error = Some(e.kind);
    if e.kind.origin() != Origin::Downstream {
        tracing::warn!(
            target: LOG_TARGET,
            request_id = %exchange.request_id,
            route = exchange.route.as_deref().unwrap_or("-"),
            kind = e.kind.as_str(),
            detail = %e.detail,
            "upstream failure"
        );
    }
    e.into_response()
}
