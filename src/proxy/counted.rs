//! The inbound request body as the proxy forwards it: limited to `max_body`, counted for the
//! traffic log, cut off when it stalls, and remembering why it failed (the client library upstream
//! may only report a reset stream, while the fault is the IdP's).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, LengthLimitError, Limited};

use crate::body::{BoxError, ProxyBody};
use crate::config::Limits;
use crate::error::{BodyStalled, ProxyError};

/// Why the inbound body failed, if it did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Inbound {
    TooLarge,
    Broken,
    /// No byte for `body_read_timeout`: the body fails, so the upstream request is aborted.
    Stalled,
}

/// Set once by the body when it fails; read by the send phase when the upstream call fails.
#[derive(Default)]
pub(crate) struct InboundFailure(std::sync::OnceLock<Inbound>);

impl InboundFailure {
    pub(crate) fn get(&self) -> Option<Inbound> {
        self.0.get().copied()
    }
}

impl Inbound {
    /// The client's fault, as the client is told it.
    pub(crate) fn into_error(self, limits: &Limits) -> ProxyError {
        match self {
            Inbound::TooLarge => ProxyError::payload_too_large(Some(limits.max_body)),
            Inbound::Broken => ProxyError::unreadable_body(),
            Inbound::Stalled => ProxyError::body_stalled(limits.body_read_timeout),
        }
    }
}

/// Counts request body bytes for the traffic log's `bytes_in`, and records why the body failed.
pub(crate) struct Counted {
    inner: ProxyBody,
    count: Arc<AtomicU64>,
    failure: Arc<InboundFailure>,
    stall_after: Duration,
    /// Armed while the body is waited on; reset by every frame.
    stall: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Counted {
    /// Wraps `body` under `limits`, counting into `count`; the failure record is shared with the caller.
    pub(crate) fn new<B>(
        body: B,
        limits: &Limits,
        count: Arc<AtomicU64>,
    ) -> (Counted, Arc<InboundFailure>)
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let limit = usize::try_from(limits.max_body).unwrap_or(usize::MAX);
        let failure = Arc::new(InboundFailure::default());
        let counted = Counted {
            inner: Limited::new(body, limit).boxed_unsync(),
            count,
            failure: failure.clone(),
            stall_after: limits.body_read_timeout,
            stall: None,
        };
        (counted, failure)
    }
}

impl Body for Counted {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if polled.is_pending() {
            let after = self.stall_after;
            let stall = self
                .stall
                .get_or_insert_with(|| Box::pin(tokio::time::sleep(after)));
            if stall.as_mut().poll(cx).is_ready() {
                let _ = self.failure.0.set(Inbound::Stalled);
                return Poll::Ready(Some(Err(Box::new(BodyStalled(after)))));
            }
            return Poll::Pending;
        }
        self.stall = None;
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.count.fetch_add(data.len() as u64, Ordering::Relaxed);
                }
            }
            Poll::Ready(Some(Err(e))) => {
                let kind = if crate::error::find_in_chain::<LengthLimitError>(&**e).is_some() {
                    Inbound::TooLarge
                } else {
                    Inbound::Broken
                };
                let _ = self.failure.0.set(kind);
            }
            _ => {}
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

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::Full;

    #[tokio::test]
    async fn counts_bytes_and_records_an_oversized_body() {
        let limits = Limits {
            max_body: 4,
            ..Limits::default()
        };
        let count = Arc::new(AtomicU64::new(0));
        let (ok, failure) = Counted::new(
            Full::new(Bytes::from_static(b"abc")),
            &limits,
            count.clone(),
        );
        assert!(ok.collect().await.is_ok());
        assert_eq!(count.load(Ordering::Relaxed), 3);
        assert_eq!(failure.get(), None);

        let (big, failure) = Counted::new(Full::new(Bytes::from_static(b"abcdef")), &limits, count);
        assert!(big.collect().await.is_err());
        assert_eq!(failure.get(), Some(Inbound::TooLarge));
        let e = Inbound::TooLarge.into_error(&limits);
        assert_eq!(e.kind, crate::error::ErrorKind::PayloadTooLarge);
    }
}
