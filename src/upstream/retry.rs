//! One retry of a failed TCP connect, after a jittered pause.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use crate::body::BoxError;

/// Retries a failed TCP connect once after a short jitter. A connect failure means no byte of the
/// request was written, so this is safe for every method, POST included; TLS failures (after bytes
/// moved) are not retried.
#[derive(Clone, Debug)]
pub struct RetryConnect<C> {
    inner: C,
}

impl<C> RetryConnect<C> {
    pub fn new(inner: C) -> RetryConnect<C> {
        RetryConnect { inner }
    }
}

impl<C> tower::Service<http::Uri> for RetryConnect<C>
where
    C: tower::Service<http::Uri> + Clone + Send + 'static,
    C::Future: Send,
    C::Response: Send,
    C::Error: Into<BoxError> + Send,
{
    type Response = C::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<C::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let first = self.inner.call(uri.clone());
        let mut again = self.inner.clone();
        Box::pin(async move {
            match first.await {
                Ok(conn) => Ok(conn),
                Err(e) => {
                    let e: BoxError = e.into();
                    let pause = jitter(Duration::from_millis(50), Duration::from_millis(250));
                    tracing::debug!(error = %e, pause_ms = pause.as_millis() as u64, "upstream connect failed; retrying once");
                    tokio::time::sleep(pause).await;
                    std::future::poll_fn(|cx| again.poll_ready(cx))
                        .await
                        .map_err(Into::into)?;
                    again.call(uri).await.map_err(Into::into)
                }
            }
        })
    }
}

/// A pause in [min, max), spread so that many failing requests do not retry in lockstep.
fn jitter(min: Duration, max: Duration) -> Duration {
    let spread = max.saturating_sub(min).as_millis().max(1);
    let random = u128::from_le_bytes(*uuid::Uuid::new_v4().as_bytes());
    min + Duration::from_millis(u64::try_from(random % spread).unwrap_or(0))
}
