//! Sends the request upstream within `upstream_timeout` (504), once more when a bodiless
//! idempotent request met a reset before any answer, and says whose fault a failure was: the
//! inbound body's (413/400/408) or the upstream's (502).
//!
//! The upstream is a seam (`Upstream`): the snapshot's pooled client when serving, any tower
//! service (`InMemory(tower::service_fn(..))`) in tests.

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, Uri};
use http_body_util::{BodyExt, LengthLimitError};

use crate::body::{BoxError, ProxyBody};
use crate::config::Limits;
use crate::error::{ErrorKind, ProxyError};
use crate::proxy::LOG_TARGET;
use crate::proxy::counted::InboundFailure;
use crate::state::RetryBudget;
use crate::upstream::UpstreamClient;
use crate::upstream::classify::classify_upstream_error;

/// An answer from the upstream, or why there is none.
pub(crate) type UpstreamFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Response<ProxyBody>, BoxError>> + Send + 'a>>;

/// What the send phase calls: a request in, a response head (or why not) out.
pub(crate) trait Upstream: Sync {
    fn call(&self, req: Request<ProxyBody>) -> UpstreamFuture<'_>;
}

/// Serving: the snapshot's pooled client.
impl Upstream for UpstreamClient {
    fn call(&self, req: Request<ProxyBody>) -> UpstreamFuture<'_> {
        let answer = self.request(req);
        Box::pin(async move {
            let res = answer.await.map_err(BoxError::from)?;
            Ok(res.map(|body| body.map_err(Into::into).boxed_unsync()))
        })
    }
}

/// Tests: any tower service, e.g. a `tower::service_fn` answering from memory.
#[cfg(test)]
pub(crate) struct InMemory<S>(pub S);

#[cfg(test)]
impl<S> Upstream for InMemory<S>
where
    S: tower::Service<Request<ProxyBody>, Response = Response<ProxyBody>, Error = BoxError>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
{
    fn call(&self, req: Request<ProxyBody>) -> UpstreamFuture<'_> {
        use tower::ServiceExt;
        Box::pin(self.0.clone().oneshot(req))
    }
}

/// What the send phase learnt, kept for the log whatever the outcome.
pub(crate) struct Sent {
    /// From the request leaving to the answer (or the failure) of the last attempt.
    pub upstream_time: Duration,
    pub retried: bool,
    pub result: Result<Response<ProxyBody>, ProxyError>,
}

/// What else `send` needs: the limits, the process-wide retry budget, the inbound body's failure
/// record and the request id for the logs.
pub(crate) struct SendContext<'a> {
    limits: &'a Limits,
    retry_budget: &'a RetryBudget,
    inbound: &'a InboundFailure,
    request_id: &'a str,
}

impl<'a> SendContext<'a> {
    pub(crate) fn new(
        limits: &'a Limits,
        retry_budget: &'a RetryBudget,
        inbound: &'a InboundFailure,
        request_id: &'a str,
    ) -> SendContext<'a> {
        SendContext {
            limits,
            retry_budget,
            inbound,
            request_id,
        }
    }
}

/// Sends `req`; `replay` is the request kept to send again, which a bodiless read is after a
/// reset before any answer.
pub(crate) async fn send(
    upstream: &dyn Upstream,
    req: Request<ProxyBody>,
    replay: Option<&Replay>,
    cx: SendContext<'_>,
) -> Sent {
    let sent = Instant::now();
    let deadline = tokio::time::Instant::now() + cx.limits.upstream_timeout;
    let attempt = |req| tokio::time::timeout_at(deadline, upstream.call(req));
    let timed_out = |upstream_time, retried| Sent {
        upstream_time,
        retried,
        result: Err(ProxyError::upstream_timeout(cx.limits.upstream_timeout)),
    };
    let Ok(mut result) = attempt(req).await else {
        return timed_out(sent.elapsed(), false);
    };
    // Decided before the second attempt: the failed result is not held across it.
    let retry = match (&result, replay) {
        (Err(e), Some(replay))
            if replay.after_reset() && is_reset_before_answer(e) && cx.retry_budget.try_take() =>
        {
            tracing::info!(target: LOG_TARGET, request_id = %cx.request_id, error = %e, "connection to the upstream broke before an answer; retrying the idempotent request once");
            Some(replay)
        }
        _ => None,
    };
    let retried = retry.is_some();
    if let Some(replay) = retry {
        match attempt(replay.request()).await {
            Ok(again) => result = again,
            Err(_) => return timed_out(sent.elapsed(), true),
        }
    }
    Sent {
        upstream_time: sent.elapsed(),
        retried,
        result: result.map_err(|e| failure(&e, &cx)),
    }
}

/// Whose fault a failed call was. When the inbound body failed (over max_body, broken chunking,
/// the IdP went away), the client library may only report a reset stream: the fault is the IdP's.
fn failure(e: &BoxError, cx: &SendContext<'_>) -> ProxyError {
    if let Some(inbound) = cx.inbound.get() {
        tracing::debug!(target: LOG_TARGET, request_id = %cx.request_id, error = %e, "the request body failed on the way in");
        return inbound.into_error(cx.limits);
    }
    if crate::error::find_in_chain::<LengthLimitError>(&**e).is_some() {
        return ProxyError::payload_too_large(Some(cx.limits.max_body));
    }
    match e.downcast_ref::<hyper_util::client::legacy::Error>() {
        Some(client_error) => classify_upstream_error(client_error),
        None => ProxyError::new(
            ErrorKind::UpstreamProtocol,
            format!("the upstream connection failed: {e}"),
        ),
    }
}

/// A request kept before it goes, to send it again exactly: its head as sent and its whole body.
/// Only a request the proxy holds whole can be kept: a streamed body is gone once sent.
pub(crate) struct Replay {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
}

impl Replay {
    /// `whole`: the body as it goes up when the proxy holds it whole (empty: bodiless).
    pub(crate) fn of(parts: &http::request::Parts, whole: Option<&Bytes>) -> Option<Replay> {
        Some(Replay {
            method: parts.method.clone(),
            uri: parts.uri.clone(),
            headers: parts.headers.clone(),
            body: whole?.clone(),
        })
    }

    /// After a reset, only a bodiless read goes again: DELETE is idempotent in theory, but a
    /// retried DELETE that had already gone through answers 404, which would hide the real result
    /// from the IdP; a write may have been processed.
    fn after_reset(&self) -> bool {
        matches!(self.method, Method::GET | Method::HEAD | Method::OPTIONS) && self.body.is_empty()
    }

    /// The same request again.
    pub(crate) fn request(&self) -> Request<ProxyBody> {
        let mut again = Request::new(crate::body::full(self.body.clone()));
        *again.method_mut() = self.method.clone();
        *again.uri_mut() = self.uri.clone();
        *again.headers_mut() = self.headers.clone();
        again
    }
}

/// The pooled connection broke (reset, closed) after the request may have left but before any answer.
fn is_reset_before_answer(e: &BoxError) -> bool {
    if e.downcast_ref::<hyper_util::client::legacy::Error>()
        .is_some_and(|e| e.is_connect())
    {
        return false;
    }
    crate::error::error_chain(&**e).iter().any(|s| {
        s.downcast_ref::<hyper::Error>()
            .is_some_and(|h| h.is_incomplete_message() || h.is_canceled())
            || s.downcast_ref::<std::io::Error>().is_some_and(|io| {
                matches!(
                    io.kind(),
                    std::io::ErrorKind::ConnectionReset
                        | std::io::ErrorKind::ConnectionAborted
                        | std::io::ErrorKind::BrokenPipe
                        | std::io::ErrorKind::UnexpectedEof
                )
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::counted::Counted;
    use crate::proxy::testing::{parts, scim_get};
    use http_body_util::Full;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

    fn limits() -> Limits {
        Limits {
            upstream_timeout: Duration::from_millis(50),
            max_body: 4,
            ..Limits::default()
        }
    }

    async fn send_to(
        upstream: &dyn Upstream,
        req: Request<ProxyBody>,
        replay: Option<Replay>,
        inbound: &InboundFailure,
    ) -> Sent {
        let budget = RetryBudget::new(Duration::from_secs(60), 10);
        let limits = limits();
        let cx = SendContext::new(&limits, &budget, inbound, "rid");
        send(upstream, req, replay.as_ref(), cx).await
    }

    fn get() -> (Request<ProxyBody>, Option<Replay>) {
        let head = parts(scim_get("https://acme.goskope.com/api/v2/scim/Users"));
        let replay = Replay::of(&head, Some(&Bytes::new()));
        (Request::from_parts(head, crate::body::empty()), replay)
    }

    /// Answers 200 after `resets` connection resets, counting calls.
    fn flaky(resets: usize, calls: Arc<AtomicUsize>) -> impl Upstream {
        InMemory(tower::service_fn(move |_req: Request<ProxyBody>| {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            async move {
                if n < resets {
                    let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
                    return Err::<Response<ProxyBody>, BoxError>(Box::new(reset));
                }
                Ok(Response::new(crate::body::empty()))
            }
        }))
    }

    #[tokio::test]
    async fn no_answer_within_upstream_timeout_is_a_504() {
        let silent = InMemory(tower::service_fn(|_req: Request<ProxyBody>| async {
            tokio::time::sleep(Duration::from_secs(30)).await;
            Ok::<_, BoxError>(Response::new(crate::body::empty()))
        }));
        let (req, replay) = get();
        let sent = send_to(&silent, req, replay, &InboundFailure::default()).await;
        let e = sent.result.unwrap_err();
        assert_eq!(e.kind, ErrorKind::UpstreamTimeout);
        assert_eq!(e.detail, "the upstream did not answer within 50ms");
        assert!(!sent.retried && sent.upstream_time >= Duration::from_millis(50));
    }

    #[tokio::test]
    async fn a_bodiless_read_is_sent_once_more_after_a_reset() {
        let calls = Arc::new(AtomicUsize::new(0));
        let (req, replay) = get();
        let sent = send_to(
            &flaky(1, calls.clone()),
            req,
            replay,
            &InboundFailure::default(),
        )
        .await;
        assert_eq!(sent.result.unwrap().status(), 200);
        assert!(sent.retried);
        assert_eq!(calls.load(Ordering::SeqCst), 2);

        // Only once: a second reset is the upstream's failure.
        let calls = Arc::new(AtomicUsize::new(0));
        let (req, replay) = get();
        let sent = send_to(
            &flaky(2, calls.clone()),
            req,
            replay,
            &InboundFailure::default(),
        )
        .await;
        assert_eq!(sent.result.unwrap_err().kind, ErrorKind::UpstreamProtocol);
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_write_is_never_sent_twice() {
        let calls = Arc::new(AtomicUsize::new(0));
        let head =
            parts(scim_get("https://acme.goskope.com/api/v2/scim/Users").method(Method::POST));
        // Kept whole (for a token resend), and still not sent again after a reset.
        let replay = Replay::of(&head, Some(&Bytes::from_static(b"{}")));
        assert!(Replay::of(&head, None).is_none());
        let req = Request::from_parts(head, crate::body::empty());
        let sent = send_to(
            &flaky(1, calls.clone()),
            req,
            replay,
            &InboundFailure::default(),
        )
        .await;
        assert!(sent.result.is_err() && !sent.retried);
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_body_that_fails_on_the_way_in_is_the_clients_fault() {
        // The upstream reads the body, which is over max_body, and gives up on the stream.
        let reads_body = InMemory(tower::service_fn(|req: Request<ProxyBody>| async move {
            req.into_body().collect().await?;
            Ok::<_, BoxError>(Response::new(crate::body::empty()))
        }));
        let (counted, inbound) = Counted::new(
            Full::new(Bytes::from_static(b"too long")),
            &limits(),
            Arc::new(AtomicU64::new(0)),
        );
        let head =
            parts(scim_get("https://acme.goskope.com/api/v2/scim/Users").method(Method::POST));
        let req = Request::from_parts(head, counted.boxed_unsync());
        let sent = send_to(&reads_body, req, None, &inbound).await;
        let e = sent.result.unwrap_err();
        assert_eq!(e.kind, ErrorKind::PayloadTooLarge);
    }
}
