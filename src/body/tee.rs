//! Keeping the upstream's own bytes of a streamed JSON answer for the traffic log, as the body
//! goes down unchanged ([`Tee`]), up to [`TEE_LIMIT`].

use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;

use crate::body::{BoxError, ProxyBody};

/// How much of a streamed JSON answer is kept for the traffic log; a longer one is not read.
pub const TEE_LIMIT: usize = 64 * 1024;

/// The upstream's own bytes of a JSON answer, for the traffic log: read whole, or teed off a
/// streamed body as it goes down (known once that body has ended).
#[derive(Clone, Debug)]
pub enum UpstreamCopy {
    Whole(Bytes),
    Teed(TeeCopy),
}

impl UpstreamCopy {
    /// The whole answer, if it was read whole or streamed to its end within [`TEE_LIMIT`].
    pub fn bytes(&self) -> Option<Bytes> {
        match self {
            UpstreamCopy::Whole(b) => Some(b.clone()),
            UpstreamCopy::Teed(t) => t.bytes(),
        }
    }
}

/// What a [`Tee`] has kept so far.
#[derive(Clone, Debug, Default)]
pub struct TeeCopy(Arc<Mutex<Kept>>);

#[derive(Debug, Default)]
struct Kept {
    bytes: Vec<u8>,
    /// More than [`TEE_LIMIT`] came: what was kept is dropped and nothing more is.
    overflowed: bool,
    ended: bool,
}

impl TeeCopy {
    fn bytes(&self) -> Option<Bytes> {
        let kept = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        (kept.ended && !kept.overflowed).then(|| Bytes::copy_from_slice(&kept.bytes))
    }

    fn keep(&self, data: &[u8]) {
        let mut kept = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if kept.overflowed {
            return;
        }
        if kept.bytes.len() + data.len() > TEE_LIMIT {
            kept.overflowed = true;
            kept.bytes = Vec::new();
        } else {
            kept.bytes.extend_from_slice(data);
        }
    }

    fn end(&self) {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).ended = true;
    }
}

/// Passes a body on unchanged, keeping its first [`TEE_LIMIT`] bytes in a [`TeeCopy`].
struct Tee {
    inner: ProxyBody,
    copy: TeeCopy,
}

impl Body for Tee {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.copy.keep(data);
                }
                // The last frame may be the last poll: hyper stops at `is_end_stream`.
                if self.inner.is_end_stream() {
                    self.copy.end();
                }
            }
            Poll::Ready(None) => self.copy.end(),
            Poll::Ready(Some(Err(_))) | Poll::Pending => {}
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

/// `body` teed into a fresh copy when `keep` (the traffic log wants it), else as it is.
pub(crate) fn tee(body: ProxyBody, keep: bool) -> (ProxyBody, Option<UpstreamCopy>) {
    if !keep {
        return (body, None);
    }
    let copy = TeeCopy::default();
    let teed = Tee {
        inner: body,
        copy: copy.clone(),
    };
    (teed.boxed_unsync(), Some(UpstreamCopy::Teed(copy)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::body::test_bodies::chunked;

    #[tokio::test]
    async fn a_streamed_answer_over_the_tee_limit_streams_on_whole_and_is_not_kept() {
        // A 1 MB list in 4 KiB chunks: all of it reaches the client, the copy never grows past the limit.
        let chunk = Bytes::from(vec![b' '; 4096]);
        let chunks: Vec<Bytes> = std::iter::once(Bytes::from_static(b"{\"Resources\":[]"))
            .chain(std::iter::repeat_n(chunk, 256))
            .chain(std::iter::once(Bytes::from_static(b"}")))
            .collect();
        let sent: usize = chunks.iter().map(Bytes::len).sum();
        let copy = TeeCopy::default();
        let mut teed = Tee {
            inner: chunked(chunks),
            copy: copy.clone(),
        };
        let mut passed = 0;
        while let Some(frame) = teed.frame().await {
            passed += frame.unwrap().into_data().map_or(0, |d| d.len());
            assert!(copy.0.lock().unwrap().bytes.len() <= TEE_LIMIT);
        }
        assert_eq!(passed, sent);
        assert!(sent > 1_000_000);
        assert_eq!(copy.bytes(), None);
    }

    #[tokio::test]
    async fn a_streamed_answer_that_broke_off_is_not_kept() {
        let copy = TeeCopy::default();
        let mut teed = Tee {
            inner: chunked(vec![Bytes::from_static(b"{\"id\":")]),
            copy: copy.clone(),
        };
        // The first frame only: the body never ends (the client went away).
        assert!(teed.frame().await.is_some());
        assert_eq!(copy.bytes(), None);
    }
}
